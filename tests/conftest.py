import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture(scope='session')
def nbs_dir(): return NBS
