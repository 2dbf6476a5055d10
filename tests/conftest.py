import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture(scope='session')
def nbs_dir(): return NBS


def make_waterbirds(root, n=12):
    "A Waterbirds fixture in the release layout: metadata.csv and <species folder>/<image>.jpg."
    import pandas as pd
    from PIL import Image
    rows = []
    for i in range(n):
        fn = f"{i:03d}.Species_{i % 3}/Species_{i % 3}_{i:04d}.jpg"
        (root/fn).parent.mkdir(parents=True, exist_ok=True)
        Image.new('RGB', (40, 30), (0, 128 + 10 * (i % 2), 255)).save(root/fn)
        rows.append(dict(img_id=i + 1, img_filename=fn, y=i % 2, split=i % 3, place=(i // 2) % 2,
                         place_filename=f"/b/bamboo_forest/{i:08d}.jpg"))
    pd.DataFrame(rows).to_csv(root/'metadata.csv', index=False)
    return root
