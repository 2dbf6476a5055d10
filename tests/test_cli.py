"The `spurnotes` command: runs notebooks with overrides, prints a headline table per notebook, refuses bad input; the README's results tables are the committed results."
import re, subprocess, sys, os
import pandas as pd
import pytest
from conftest import NBS, ROOT

def spurnotes(*args, cwd=ROOT):
    return subprocess.run([sys.executable, '-c', 'import sys; from spurnotes.cli import main; sys.exit(main())', *args],
                          cwd=cwd, capture_output=True, text=True, env={**os.environ, 'MPLBACKEND': 'Agg'})

def test_run_writes_table_and_figures(tmp_path):
    r = spurnotes('run', '01_testbeds', '-p', 'epochs', '1', '--out', str(tmp_path), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    res = pd.read_csv(tmp_path/'results.csv')
    assert set(res['dataset']) == {'biased_digits', 'digits_on_backgrounds'}
    assert res['value'].between(0, 1).all()
    md = (tmp_path/'results.md').read_text()
    assert md.startswith('### 01_testbeds') and '| dataset' in md and 'average (train-weighted)' in md   # the full table: every metric
    assert (tmp_path/'figures'/'erm_baseline_groups.png').stat().st_size > 1000
    assert (tmp_path/'notebooks'/'01_testbeds.ipynb').exists()
    # the override reached the notebook: papermill injected it
    assert 'epochs = 1' in (tmp_path/'notebooks'/'01_testbeds.ipynb').read_text()
    # the notebook wrote its headline beside its results, and the command printed that file: the two headline
    # metrics, the model selection with the run's epochs, test splits only, the CSV holding the rest, and no kernel
    # or warning noise on stderr
    head = pd.read_csv(tmp_path/'headlines'/'01_testbeds.csv')
    assert list(head.columns) == ['dataset', 'split', 'method', 'selection', 'worst group', 'average (plain)']
    assert (head['selection'] == 'last epoch (of 1)').all() and 'valid' not in set(head['split'])
    out = r.stdout
    assert '### 01_testbeds' in out and 'worst group' in out and 'average (plain)' in out and 'biased_digits' in out
    assert 'last epoch (of 1)' in out and 'erm_baseline.csv' in out
    assert 'average (train-weighted)' not in out and '| valid ' not in out
    table = [l for l in out.splitlines() if l.startswith('|')]
    assert len(table) == 2 + 3   # header, rule, three test splits (biased: 2, backgrounds: 1)
    for (_, row), line in zip(head.iterrows(), table[2:]):   # the printed numbers are the file's, to three decimals
        assert f"{row['worst group']:.3f}" in line and f"{row['average (plain)']:.3f}" in line and row['split'] in line
    assert 'Warning' not in r.stderr and 'WARNING' not in r.stderr, r.stderr

def test_notebook_without_headline_gets_a_plain_line(tmp_path):
    "00f_report (the toy) writes no results and no headline: the command says so instead of a table."
    r = spurnotes('run', '00f_report', '-p', 'epochs', '1', '--out', str(tmp_path), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    section = r.stdout.split('### 00f_report')[1]
    assert '00f_report wrote no headline table' in section and '00f_report wrote no results table' in section
    assert not any(l.startswith('|') for l in section.splitlines())

def test_docs_option_is_gone():
    "The documented run (it rewrites nbs/) is a maintainer's tool, tools/docs_run.py, not an option of the user's command."
    r = spurnotes('run', '01_testbeds', '--docs')
    assert r.returncode == 2 and 'unrecognized arguments: --docs' in r.stderr
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'docs_run.py'), '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and 'usage: tools/docs_run.py' in r.stdout and 'notebooks' in r.stdout
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'docs_run.py'), '77_nothing'], capture_output=True, text=True)
    assert r.returncode == 2 and "No experiment notebook matches '77_nothing'" in r.stderr

def test_help_is_quiet_and_quick():
    "No torch.jit FutureWarning (with a site-packages path) on `--help`: the cli filters it before any fastai import."
    r = spurnotes('run', '--help')
    assert r.returncode == 0 and 'usage: spurnotes run' in r.stdout
    assert r.stderr == '', r.stderr
    assert 'fastai' not in subprocess.run([sys.executable, '-c', 'import sys, spurnotes.cli; print(" ".join(sys.modules))'],
                                          capture_output=True, text=True).stdout.split()

def test_list():
    r = spurnotes('list')
    assert r.returncode == 0 and '01_testbeds.ipynb' in r.stdout and 'epochs=' in r.stdout

def test_unknown_parameter_is_refused(tmp_path):
    r = spurnotes('run', '00f_report', '-p', 'epochz', '3', '--out', str(tmp_path))
    assert r.returncode == 2 and "epochz" in r.stderr and "declare" in r.stderr

def test_unknown_notebook_is_refused(tmp_path):
    r = spurnotes('run', '77_nothing', '--out', str(tmp_path))
    assert r.returncode == 2 and "No experiment notebook matches '77_nothing'" in r.stderr

def test_outside_a_checkout(tmp_path):
    r = spurnotes('run', cwd=tmp_path)
    assert r.returncode == 2 and "--nbs" in r.stderr

# ---- headline tables on the committed results --------------------------------------------------------------------
from spurnotes.cli import experiment_notebooks, gather_results, headline_file, headline_markdown

RESULTS = ROOT/'results'
RES = gather_results(RESULTS)
KEYS = ['dataset', 'split', 'method', 'selection', 'seeds']
WITH_RESULTS = [p.stem for p in experiment_notebooks(NBS) if p.stem in set(RES['notebook'])]
HEADLINES = sorted(p.stem for p in (RESULTS/'headlines').glob('*.csv'))

@pytest.mark.parametrize('nb', WITH_RESULTS)
def test_committed_results_have_a_headline(nb):
    "A notebook whose documented run wrote results also wrote its headline (`write_headline`), which the index shows."
    assert headline_file(RESULTS, nb), f"{nb} has results in results/ but no results/headlines/{nb}.csv: end its experiments with write_headline"

@pytest.mark.parametrize('nb', HEADLINES)
def test_headline_is_compact(nb):
    "Each committed headline: a few metrics, no empty cells, a model selection on every row, test splits only, the notebook's own rows."
    t = pd.read_csv(headline_file(RESULTS, nb))
    metrics = [c for c in t.columns if c not in KEYS and not c.startswith('seeds with')]   # a success count (03) is a count, not a metric
    assert 1 <= len(metrics) <= 3 and {'dataset', 'split', 'method', 'selection'} <= set(t.columns), list(t.columns)
    assert t[metrics].notna().all().all(), t
    assert (t['selection'].astype(str).str.len() > 1).all()
    assert not t['split'].isin(['valid', 'train']).any()
    assert len(t) <= 40 and not t.duplicated(['dataset', 'split', 'method', 'selection']).any()
    mine = RES[RES['notebook'] == nb]
    assert set(t['dataset']) <= set(mine['dataset']) and set(t['split']) <= set(mine['split'])

def test_headline_means_match_the_csv():
    "An independent computation: 01's ERM worst group and plain average on each test split, straight from erm_baseline.csv."
    f = headline_file(RESULTS, '01_testbeds')
    if f is None: pytest.skip("no committed headline of 01_testbeds")
    t, raw = pd.read_csv(f), pd.read_csv(RESULTS/'erm_baseline.csv')
    assert len(t) == raw[raw.split != 'valid'][['dataset', 'split']].drop_duplicates().shape[0]
    for _, row in t.iterrows():
        for m in ['worst group', 'average (plain)']:
            v = raw[(raw.dataset == row.dataset) & (raw.split == row.split) & (raw.method == row.method) & (raw.metric == m)]['value']
            assert len(v) == 1 and abs(row[m] - v.iloc[0]) < 1e-12

# ---- the README's results are the committed results -------------------------------------------------------------
README = (ROOT/'README.md').read_text()
STALE = "README.md is stale: regenerate it with `python tools/make_readme.py --execute`"

@pytest.mark.parametrize('nb', HEADLINES)
def test_readme_tables_are_the_results(nb):
    "Each notebook's committed headline, formatted here from results/headlines/, is in the README verbatim, with its selection labels."
    table = headline_markdown(headline_file(RESULTS, nb))
    assert table in README, f"{STALE} ({nb}'s table differs from results/headlines/{nb}.csv)"
    assert '| selection ' in table.splitlines()[0]

def test_readme_says_which_headlines_are_missing():
    "A notebook the README presents without a committed headline gets the line saying how to write it, not a stale table."
    for nb in [p.stem for p in experiment_notebooks(NBS) if p.stem[:2] in ('01', '02', '03', '04', '05', '06')]:
        if headline_file(RESULTS, nb) is None: assert f"No headline of {nb} in `results/headlines/` yet" in README, (STALE, nb)

def test_readme_numbers_by_hand():
    "Independently of the cli's code: 01's ERM worst group on test_biased (one seed) as in erm_baseline.csv, on its README row."
    raw = pd.read_csv(RESULTS/'erm_baseline.csv')
    v = raw[(raw.split == 'test_biased') & (raw.metric == 'worst group')]['value'].mean()
    section = README.split('**Notebook:** [01_testbeds]')[1].split('## The papers')[0]
    rows = [l for l in section.splitlines() if l.startswith('| biased_digits') and '| test_biased ' in l and '| ERM ' in l]
    assert len(rows) == 1 and re.search(rf"\| +{v:.3f} \|", rows[0]), (STALE, rows)

def test_readme_claims_and_timings():
    for f in sorted(RESULTS.glob('*_claims.csv')):
        c = pd.read_csv(f, keep_default_na=False).rename(columns={'ours': 'here'})
        for _, r in c.iterrows():
            assert str(r['here']).replace('|', '\\|') in README and str(r['verdict']) in README, (STALE, f.name, r['claim'])
    tm = pd.read_csv(RESULTS/'timings.csv')
    for _, r in tm.iterrows():
        assert re.search(rf"\| {re.escape(r['notebook'])} +\| +{r['seconds'] / 60:.1f} \|", README), (STALE, r['notebook'])

def test_readme_figures_and_links_work_from_the_root():
    "Images are paths from the repository root that exist; notebook links point into nbs/; the badge is Colab's own."
    imgs = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', README)
    local = [i for i in imgs if not i.startswith('https://')]
    assert len(local) >= 5 and all((ROOT/i).exists() for i in local), local
    assert 'https://colab.research.google.com/assets/colab-badge.svg' in README and 'images/colab-badge.svg' not in README
    links = re.findall(r'\]\(([\w./-]+\.ipynb)\)', README)
    assert links and all(l.startswith('nbs/') and (ROOT/l).exists() for l in links), links
    for n in ['2202.05189', '2210.00055', '2305.14521v1', '2409.02792']: assert f'https://arxiv.org/abs/{n}' in README


def _toy_checkout(root, body):
    "A folder laid out like a clone: nbs/01_toy.ipynb (a parameters cell, then `body`) and tests/ci_params.py."
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("epochs = 3\nout_dir = '.'", metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell(body)]
    nb.metadata['kernelspec'] = dict(name='python3', display_name='python3', language='python')
    (root/'nbs').mkdir(parents=True); (root/'tests').mkdir()
    nbformat.write(nb, root/'nbs'/'01_toy.ipynb')
    (root/'tests'/'ci_params.py').write_text("CI_PARAMS = {'01_toy.ipynb': {'epochs': 1}}\n")
    return root/'nbs'

CHECK = ("from spurnotes.params import need_int\nneed_int('epochs', epochs, 1, 50)\nimport os\n"
         "from spurnotes.seeds import run_seeds, seeded_draw\n"
         "print(epochs, os.environ.get('SPURNOTES_JOBS'), run_seeds(seeded_draw, [0, 1], jobs=1, label='ERM · toy')[1][0])")

def test_a_bad_parameter_fails_in_one_line_with_the_executed_notebook(tmp_path):
    nbs = _toy_checkout(tmp_path/'clone', CHECK)
    r = spurnotes('run', '01_toy', '-p', 'epochs', '-1', '--nbs', str(nbs), '--out', str(tmp_path/'run'), '--no-progress')
    assert r.returncode == 1, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert err[0].startswith('spurnotes: 01_toy.ipynb stopped: ParamError: parameter epochs=-1: expected a whole number between 1 and 50'), err
    assert 'the executed notebook:' in err[0] and err[0].rstrip(')').endswith('01_toy.ipynb'), err
    assert 'Traceback' not in r.stdout + r.stderr

def test_progress_jobs_and_quick(tmp_path):
    "The seed runner's lines are shown with the notebook's name; --jobs reaches the kernel; --quick uses the CI parameters and says so."
    nbs = _toy_checkout(tmp_path/'clone', CHECK)
    r = spurnotes('run', '01_toy', '--nbs', str(nbs), '--out', str(tmp_path/'run'), '--jobs', '3', '--quick')
    assert r.returncode == 0, r.stderr
    assert '01_toy · ERM · toy · seed 1: training' in r.stdout and '01_toy · ERM · toy · seed 1: done (2 of 2)' in r.stdout, r.stdout
    import json
    cells = json.loads((tmp_path/'run'/'notebooks'/'01_toy.ipynb').read_text())['cells']
    printed = ''.join(''.join(o.get('text', '')) for c in cells for o in c.get('outputs', []))
    assert printed.startswith('1 3 '), printed   # epochs from ci_params (1), SPURNOTES_JOBS from --jobs (3)
    assert 'QUICK CHECK, not the documented results' in r.stdout and '### 01_toy (quick check)' in r.stdout, r.stdout
    bad = spurnotes('run', '01_toy', '--nbs', str(nbs), '--jobs', '0')
    assert bad.returncode == 2 and '--jobs 0: expected a whole number of worker processes >= 1' in bad.stderr, bad.stderr
