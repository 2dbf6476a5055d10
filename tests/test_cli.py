"The `spurnotes` command: runs notebooks with overrides, prints a headline table per notebook, refuses bad input; the README's results tables are the committed results."
import re, subprocess, sys, os
import pandas as pd
import pytest
from conftest import NBS, ROOT

def spurnotes(*args, cwd=ROOT):
    return subprocess.run([sys.executable, '-c', 'import sys; from spurnotes.cli import main; sys.exit(main())', *args],
                          cwd=cwd, capture_output=True, text=True, env={**os.environ, 'MPLBACKEND': 'Agg'})

def test_run_writes_table_and_figures(tmp_path):
    r = spurnotes('run', '01_data', '-p', 'epochs', '1', '--out', str(tmp_path), '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    res = pd.read_csv(tmp_path/'results.csv')
    assert set(res['dataset']) == {'biased_digits', 'digits_on_backgrounds'}
    assert res['value'].between(0, 1).all()
    md = (tmp_path/'results.md').read_text()
    assert md.startswith('### 01_data') and '| dataset' in md and 'average (train-weighted)' in md   # the full table: every metric
    assert (tmp_path/'figures'/'erm_baseline_groups.png').stat().st_size > 1000
    assert (tmp_path/'notebooks'/'01_data.ipynb').exists()
    # the override reached the notebook: papermill injected it
    assert 'epochs = 1' in (tmp_path/'notebooks'/'01_data.ipynb').read_text()
    # the printed headline: the two headline metrics, the model selection with the run's epochs, test splits only,
    # the CSV holding the rest, and no kernel or warning noise on stderr
    out = r.stdout
    assert '### 01_data' in out and 'worst group' in out and 'average (plain)' in out and 'biased_digits' in out
    assert 'last epoch (of 1)' in out and 'erm_baseline.csv' in out
    assert 'average (train-weighted)' not in out and '| valid ' not in out
    table = [l for l in out.splitlines() if l.startswith('|')]
    assert len(table) == 2 + 3   # header, rule, three test splits (biased: 2, backgrounds: 1)
    assert 'Warning' not in r.stderr and 'WARNING' not in r.stderr, r.stderr

def test_help_is_quiet_and_quick():
    "No torch.jit FutureWarning (with a site-packages path) on `--help`: the cli filters it before any fastai import."
    r = spurnotes('run', '--help')
    assert r.returncode == 0 and 'usage: spurnotes run' in r.stdout
    assert r.stderr == '', r.stderr
    assert 'fastai' not in subprocess.run([sys.executable, '-c', 'import sys, spurnotes.cli; print(" ".join(sys.modules))'],
                                          capture_output=True, text=True).stdout.split()

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

# ---- headline tables on the committed results --------------------------------------------------------------------
from spurnotes.cli import HEADLINES, MAIN_METRICS, gather_results, headline_table, headline_markdown, notebook_parameters

RESULTS = ROOT/'results'
RES = gather_results(RESULTS)
KEYS = ['dataset', 'split', 'method', 'selection', 'seeds']

@pytest.mark.parametrize('nb', sorted(HEADLINES))
def test_headline_is_compact(nb):
    "Each committed notebook's headline: its few metrics, no empty cells, a model selection on every row, test splits only."
    if nb not in set(RES['notebook']): pytest.skip(f"no committed results of {nb}")
    t = headline_table(RES, nb, notebook_parameters(NBS/f'{nb}.ipynb'))
    metrics = [c for c in t.columns if c not in KEYS]
    assert metrics == [m for m in HEADLINES[nb]['metrics'] if m in metrics] and 1 <= len(metrics) <= 3
    assert t[metrics].notna().all().all(), t
    assert (t['selection'].str.len() > 1).all()
    assert not t['split'].isin(['valid', 'train']).any()
    assert len(t) <= 40 and not t.duplicated(['dataset', 'split', 'method', 'selection']).any()

def test_headline_means_match_the_csv():
    "An independent computation: the mean of 03's ERM worst group on test_biased over seeds, straight from masktune.csv."
    raw = pd.read_csv(RESULTS/'masktune.csv') if (RESULTS/'masktune.csv').exists() else None
    if raw is None: pytest.skip("no masktune.csv")
    sel = raw['selection'].fillna('') if 'selection' in raw else pd.Series('', index=raw.index)
    raw = raw[(raw.method == 'ERM') & (raw.split == 'test_biased') & (raw.metric == 'worst group')]
    t = headline_table(RES, '03_masktune')
    got = t[(t.method == 'ERM') & (t.split == 'test_biased')]
    assert len(got) == sel[raw.index].nunique() >= 1
    for s, rows in raw.groupby(sel[raw.index]):   # one headline row per model selection the CSV names
        row = got[got.selection == s] if s else got
        assert len(row) == 1 and abs(row['worst group'].iloc[0] - rows['value'].mean()) < 1e-12
        assert row['seeds'].iloc[0] == rows['seed'].nunique()

def test_unknown_notebook_falls_back_to_complete_metrics():
    df = pd.DataFrame(dict(notebook='77_new', dataset='d', method=['a', 'a', 'b', 'b'], split='test',
                           metric=['x', 'y', 'x', 'z'], value=[1., 2., 3., 4.]))
    t = headline_table(df, '77_new')
    assert [c for c in t.columns if c not in KEYS] == ['x'] and len(t) == 2
    both = pd.DataFrame(dict(notebook='78_new', dataset='d', method='a', split='test', metric=MAIN_METRICS + ['other'], value=[.1, .2, .3]))
    assert [c for c in headline_table(both, '78_new').columns if c not in KEYS] == MAIN_METRICS

# ---- the README's results are the committed results -------------------------------------------------------------
README = (ROOT/'README.md').read_text()
STALE = "README.md is stale: regenerate it with `python tools/make_readme.py --execute`"

@pytest.mark.parametrize('nb', sorted(HEADLINES))
def test_readme_tables_are_the_results(nb):
    "Each notebook's headline table, regenerated here from results/*.csv, is in the README verbatim, with its selection labels."
    if nb not in set(RES['notebook']):
        assert f"No results of {nb} in `results/` yet" in README, STALE
        return
    table = headline_markdown(RES, nb, notebook_parameters(NBS/f'{nb}.ipynb'))
    assert table in README, f"{STALE} ({nb}'s table differs from results/)"
    assert '| selection ' in table.splitlines()[0]

def test_readme_numbers_by_hand():
    "Independently of the cli's code: 01's ERM worst group on test_biased (one seed) as in erm_baseline.csv, on its README row."
    raw = pd.read_csv(RESULTS/'erm_baseline.csv')
    v = raw[(raw.split == 'test_biased') & (raw.metric == 'worst group')]['value'].mean()
    section = README.split('**Notebook:** [01_data]')[1].split('## The papers')[0]
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
