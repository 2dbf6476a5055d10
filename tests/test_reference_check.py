"""benchmarks/reference_check.py: spurnotes against the reference implementations (SpuCo; the GroupDRO and JTT authors' code).

The agreement run needs SpuCo (`pip install spuco`); without it, it is skipped. The authors' checkouts are used when the
environment names them (`REFERENCE_CHECK_GROUP_DRO`, `REFERENCE_CHECK_JTT`: folders holding loss.py / run_expt.py).
The missing-reference tests need nothing installed."""
import csv, importlib.util, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'reference_check.py'
HAS_SPUCO = importlib.util.find_spec('spuco') is not None

def run(*args, timeout=900):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)

@pytest.mark.parametrize('args, says', [
    (['--spuco-path', '/nonexistent/spuco-site'], 'holds no `spuco` package'),
    (['--group-dro', '/nonexistent/group_DRO'], 'kohpangwei/group_DRO'),
    (['--jtt', '/nonexistent/jtt'], 'anniesch/jtt'),
])
def test_missing_reference_exits_2(args, says, tmp_path):
    r = run(*args, '--out', str(tmp_path), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in r.stderr and 'downloads nothing' in r.stderr
    assert not (tmp_path / 'reference_check.csv').exists()

def test_spuco_not_importable_exits_2(tmp_path):
    "Without site-packages (`python -S`: the standard library only, which is all the script needs to get this far)."
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    r = subprocess.run([sys.executable, '-S', str(SCRIPT), '--out', str(tmp_path)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'pip install spuco' in r.stderr and 'downloads nothing' in r.stderr
    assert not (tmp_path / 'reference_check.csv').exists()

@pytest.mark.reference
@pytest.mark.skipif(not HAS_SPUCO, reason="SpuCo is not installed (`pip install spuco` to check agreement with it)")
def test_agreement_with_references_quick(tmp_path):
    extra = []
    for var, flag in (('REFERENCE_CHECK_GROUP_DRO', '--group-dro'), ('REFERENCE_CHECK_JTT', '--jtt')):
        if os.environ.get(var): extra += [flag, os.environ[var]]
    r = run('--quick', '--out', str(tmp_path), *extra)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    rows = list(csv.DictReader(open(tmp_path / 'reference_check.csv')))
    assert [c for c in rows[0]] == ['method', 'reference', 'compared', 'agreement', 'tolerance', 'verdict', 'date', 'version']
    expected = {'DISPEL': 'faithful within tolerance', 'DFR': 'faithful within tolerance', 'GroupDRO loss': 'exact', 'JTT': 'exact'}
    spuco = [r for r in rows if r['version'].startswith('spuco')]
    assert {r['method'] for r in spuco} == set(expected)
    for row in spuco: assert row['verdict'] == expected[row['method']], row
    md = (tmp_path / 'reference_check.md').read_text()
    assert '| method | reference | compared | agreement | tolerance | verdict | date | version |' in md
    assert 'Verdict rule' in r.stdout
    for row in rows:
        if row['version'].startswith('kohpangwei'): assert row['verdict'] == 'exact', row
        if row['version'].startswith('anniesch'): assert 'λ+1' in row['agreement'], row   # their up_weight: λ+1 copies
