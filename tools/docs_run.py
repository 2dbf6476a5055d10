#!/usr/bin/env python
"""The documented run of notebooks: executed copies replace nbs/NB.ipynb, results and figures go to results/.

usage: python tools/docs_run.py NOTEBOOK [NOTEBOOK ...] [-p NAME VALUE ...] [--no-progress]

A maintainer's tool (it rewrites the committed notebooks): `spurnotes run` is the user's command and never touches
nbs/. Each selected notebook (a name or prefix, as `spurnotes run` takes them: 01_testbeds, testbeds, 03) is executed
by papermill in nbs/ with its documented defaults and any `-p` overrides; its executed copy is written back over the
source notebook. The notebooks write their results tables, headlines (results/headlines/NB.csv) and figures to their
default `out_dir`, ../results. `results/timings.csv` keeps one wall time per notebook (the other notebooks' are kept,
those of notebooks no longer in nbs/ dropped), and `results/results.csv` and `results.md` are gathered again from
every table in results/. Then the notebooks are cleaned with nbdev-clean (papermill's metadata and empty tags go) and
the package is re-exported (the exported modules name the notebooks' cell ids). The same steps as `spurnotes run`
(spurnotes.cli: select_notebooks, declared_parameters, execute_notebook, write_run_tables), with nbs/ and results/ as
the destinations. Commit the notebooks, their results and figures afterwards.
"""
import argparse, os, sys, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, RESULTS = ROOT/'nbs', ROOT/'results'
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)

def _drop_empty_tags(path):
    "papermill gives every cell `tags: []`; nbdev-clean keeps the key (papermill's `parameters` tag needs it): drop the empty ones."
    import nbformat
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.metadata.get('tags') == []: del c.metadata['tags']
    nbformat.write(nb, path)

def docs_run(names,                # notebook names or prefixes (at least one: a documented run is deliberate)
             params=None,          # parameter overrides, given to every selected notebook that declares them
             progress=True):       # show papermill's progress bars
    "Execute `names` in place in nbs/ (results to results/), record their timings, gather results, clean and re-export."
    import pandas as pd
    from nbdev.clean import nbdev_clean
    from nbdev.doclinks import nbdev_export
    from spurnotes.cli import select_notebooks, declared_parameters, execute_notebook, write_run_tables
    if not names: raise ValueError("Name the notebooks to run (e.g. 01_testbeds): the documented run rewrites them in nbs/.")
    sel, params = select_notebooks(names, NBS), dict(params or {})
    declared = declared_parameters(sel, params)
    RESULTS.mkdir(exist_ok=True)
    timings = []
    for p in sel:   # out_dir stays the notebook's default (../results) unless -p gives one
        print(f"{p.name} ...", flush=True)
        timings.append(dict(notebook=p.name, seconds=execute_notebook(p, p, {k: v for k, v in params.items() if k in declared[p]},
                                                                      NBS, progress)))
        print(f"{p.name}: {timings[-1]['seconds']} s", flush=True)
    write_run_tables(RESULTS, timings)
    t = pd.read_csv(RESULTS/'timings.csv')   # the timings of notebooks that no longer exist (renamed, split) go
    t[t['notebook'].map(lambda n: (NBS/n).exists())].to_csv(RESULTS/'timings.csv', index=False)
    cwd = Path.cwd(); os.chdir(ROOT)
    try:
        for p in sel: _drop_empty_tags(p); nbdev_clean(fname=str(p))
        nbdev_export(path=None)   # (no bare call: nbdev's docs build skips cells that contain one)
    finally: os.chdir(cwd)
    return sel

def main(argv=None):
    from spurnotes.cli import _value, headline_report
    ap = argparse.ArgumentParser(prog='tools/docs_run.py', description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='+', help="notebook names or prefixes, e.g. 01_testbeds or 03")
    ap.add_argument('-p', '--param', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'),
                    help="override a parameter (Python literal or string); the documented run uses the defaults")
    ap.add_argument('--no-progress', action='store_true', help="no progress bars")
    a = ap.parse_args(argv)
    t0 = time.time()
    try: sel = docs_run(a.notebooks, {k: _value(v) for k, v in a.param}, not a.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"docs_run: error: {e}", file=sys.stderr); return 2
    print("\n" + headline_report(RESULTS, [p.stem for p in sel]))
    print(f"\nExecuted notebooks written back to nbs/, results in results/; total {time.time() - t0:.0f} s")
    return 0

if __name__ == '__main__': sys.exit(main())
