"The `spurnotes` command: runs notebooks with overrides, prints and writes the results table, refuses bad input."
import subprocess, sys, os
import pandas as pd
from conftest import NBS, ROOT

def spurnotes(*args, cwd=ROOT):
    return subprocess.run([sys.executable, '-c', 'import sys; from spurnotes.cli import main; sys.exit(main())', *args],
                          cwd=cwd, capture_output=True, text=True, env={**os.environ, 'MPLBACKEND': 'Agg'})

def test_run_writes_table_and_figures(tmp_path):
    r = spurnotes('run', '01_data', '-p', 'epochs', '1', '--out', str(tmp_path), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'worst group' in r.stdout and 'biased_digits' in r.stdout
    res = pd.read_csv(tmp_path/'results.csv')
    assert set(res['dataset']) == {'biased_digits', 'digits_on_backgrounds'}
    assert res['value'].between(0, 1).all()
    md = (tmp_path/'results.md').read_text()
    assert md.startswith('### 01_data') and '| dataset' in md
    assert (tmp_path/'figures'/'erm_baseline_groups.png').stat().st_size > 1000
    assert (tmp_path/'notebooks'/'01_data.ipynb').exists()
    # the override reached the notebook: papermill injected it
    assert 'epochs = 1' in (tmp_path/'notebooks'/'01_data.ipynb').read_text()

def test_list():
    r = spurnotes('list')
    assert r.returncode == 0 and '01_data.ipynb' in r.stdout and 'epochs=' in r.stdout

def test_unknown_parameter_is_refused(tmp_path):
    r = spurnotes('run', '00_core', '-p', 'epochz', '3', '--out', str(tmp_path))
    assert r.returncode == 2 and "epochz" in r.stderr and "declare" in r.stderr

def test_unknown_notebook_is_refused(tmp_path):
    r = spurnotes('run', '77_nothing', '--out', str(tmp_path))
    assert r.returncode == 2 and "No experiment notebook matches '77_nothing'" in r.stderr

def test_outside_a_checkout(tmp_path):
    r = spurnotes('run', cwd=tmp_path)
    assert r.returncode == 2 and "--nbs" in r.stderr
