"Every experiment notebook runs end to end under papermill with the small CI parameters; a cell error fails the test."
import json, re
import pytest
from spurnotes.cli import experiment_notebooks, notebook_parameters, run_notebooks
from ci_params import CI_PARAMS
from conftest import NBS

NOTEBOOKS = experiment_notebooks(NBS)

def test_notebooks_found():
    names = [p.name for p in NOTEBOOKS]
    assert '00f_report.ipynb' in names and '01_testbeds.ipynb' in names, names
    assert '00_groups.ipynb' not in names and '99_moved.ipynb' not in names, names   # library pages: nothing to run with parameters

WRITES = re.compile(r'\b(write_results|write_headline|save_figure)\(.*\bout_dir\b')

def test_every_notebook_that_writes_results_starts_with_parameters():
    "A notebook that writes results or figures to its `out_dir` without a `parameters` cell first would be skipped by the runner: forbid it."
    writers = sorted(p.name for p in NBS.glob('*.ipynb') if any(
        c['cell_type'] == 'code' and WRITES.search(''.join(c['source'])) and not ''.join(c['source']).lstrip().startswith('#| export')
        for c in json.loads(p.read_text())['cells']))
    assert '01_testbeds.ipynb' in writers and '00_groups.ipynb' not in writers
    assert set(writers) <= {p.name for p in NOTEBOOKS}, sorted(set(writers) - {p.name for p in NOTEBOOKS})
    papers = sorted(p.name for p in NBS.glob('0[2-9]_*.ipynb'))   # the paper notebooks are experiments whatever they write
    assert set(papers) <= {p.name for p in NOTEBOOKS}, sorted(set(papers) - {p.name for p in NOTEBOOKS})

def test_every_notebook_has_ci_parameters():
    missing = [p.name for p in NOTEBOOKS if p.name not in CI_PARAMS]
    assert not missing, f"add small parameters for {missing} to tests/ci_params.py"
    for name, params in CI_PARAMS.items():
        declared = notebook_parameters(NBS/name)
        assert set(params) <= set(declared), f"{name}: CI parameters {set(params) - set(declared)} are not declared"

OTHERS = [p for p in sorted(NBS.glob('*.ipynb')) if p not in NOTEBOOKS]   # index, tooling notebooks: no parameters

@pytest.mark.parametrize('nb', OTHERS, ids=[p.stem for p in OTHERS])
def test_other_notebook_runs(nb, tmp_path):
    import papermill as pm
    pm.execute_notebook(str(nb), str(tmp_path/nb.name), cwd=str(NBS), progress_bar=False, kernel_name='python3')

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(nb, tmp_path):
    out = run_notebooks([nb.name], CI_PARAMS.get(nb.name, {}), out=tmp_path, nbs_dir=NBS, progress=False)
    executed = json.loads((out/'notebooks'/nb.name).read_text())
    errors = [o for c in executed['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not errors
    assert (out/'results.csv').exists() and (out/'timings.csv').exists()


def test_testbeds_notebook_on_a_real_benchmark_layout(tmp_path):
    "The README's promise: parameters point a notebook at a real dataset folder (a Waterbirds fixture, a ResNet)."
    from conftest import make_waterbirds
    root = make_waterbirds(tmp_path/'waterbirds')
    params = dict(datasets=['waterbirds'], data_root=str(root), arch='resnet18', size=32, epochs=1, bs=4)
    out = run_notebooks(['01_testbeds'], params, out=tmp_path/'run', nbs_dir=NBS, progress=False)
    import pandas as pd
    res = pd.read_csv(out/'results.csv')
    assert set(res['dataset']) == {'waterbirds'} and set(res['split']) == {'valid', 'test'}


def test_rare_spurious_notebook_on_mnist_layout(tmp_path):
    "Notebook 02 reads MNIST through torchvision when `dataset='mnist'` and `data_root` holds the raw files."
    from conftest import make_mnist
    root = make_mnist(tmp_path/'data', n_train=1200, n_test=200)
    params = {**CI_PARAMS['02_rare_spurious.ipynb'], 'dataset': 'mnist', 'data_root': str(root)}
    out = run_notebooks(['02_rare_spurious'], params, out=tmp_path/'run', nbs_dir=NBS, progress=False)
    import pandas as pd
    res = pd.read_csv(out/'results.csv')
    assert set(res['dataset']) == {'mnist'}

def test_paper_notebook_without_the_bird_photos(tmp_path, monkeypatch):
    "Without Debian's Tux Paint photos the digits still run and the birds section says what to install (and writes no birds rows)."
    monkeypatch.setenv('SPURNOTES_TUXPAINT', str(tmp_path/'no-tuxpaint'))
    out = run_notebooks(['04_data_mixing'], CI_PARAMS['04_data_mixing.ipynb'], out=tmp_path/'run', nbs_dir=NBS, progress=False)
    executed = json.loads((out/'notebooks'/'04_data_mixing.ipynb').read_text())
    text = ''.join(''.join(o.get('text', '')) for c in executed['cells'] for o in c.get('outputs', []))
    assert 'apt-get install tuxpaint-stamps-default tuxpaint-data' in text
    import pandas as pd
    res = pd.read_csv(out/'results.csv')
    assert 'digits_on_backgrounds' in set(res['dataset']) and 'birds_on_backgrounds' not in set(res['dataset'])
