#!/usr/bin/env python
"""The documented run of notebooks: executed copies replace nbs/NB.ipynb, results and figures go to results/.

usage: python tools/docs_run.py NOTEBOOK [NOTEBOOK ...] [-p NAME VALUE ...] [--no-progress]

A maintainer's tool (it rewrites the committed notebooks): `spurnotes run` is the user's command and never touches
nbs/. Each selected notebook (a name or prefix, as `spurnotes run` takes them: 01_testbeds, 01_t, 03) is executed by
papermill in nbs/ with its documented defaults and any `-p` overrides; its executed copy is written back over the
source notebook. The notebooks write their results tables, headlines (results/headlines/NB.csv) and figures to
their default `out_dir`, ../results; `results/timings.csv` keeps one wall time per notebook (those not run this time
are kept) and `results/results.csv`/`results.md` are gathered again from every table in results/. Then the notebooks
are cleaned with nbdev-clean (papermill's metadata gone) and the package is re-exported (the exported modules name
the notebooks' cell ids). Commit the notebooks, their results and figures afterwards.
"""
import argparse, os, sys, time, warnings
from pathlib import Path
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NBS, RESULTS = ROOT/'nbs', ROOT/'results'
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)

def docs_run(names,                # notebook names or prefixes (at least one: a documented run is deliberate)
             params=None,          # parameter overrides, given to every selected notebook that declares them
             progress=True):       # show papermill's progress bars
    "Execute `names` in place in nbs/ (results to results/), record their timings, gather results, clean and re-export."
    import papermill as pm
    from nbdev.clean import nbdev_clean
    from nbdev.doclinks import nbdev_export
    from spurnotes.cli import notebook_parameters, gather_results, results_markdown
    try: from spurnotes.cli import select_notebooks
    except ImportError: from spurnotes.cli import _select as select_notebooks   # (the CLI before issue 17)
    if not names: raise ValueError("Name the notebooks to run (e.g. 01_testbeds): the documented run rewrites them in nbs/.")
    sel, params = select_notebooks(names, NBS), dict(params or {})
    declared = {p: notebook_parameters(p) for p in sel}
    unknown = [k for k in params if not any(k in d for d in declared.values())]
    if unknown: raise ValueError(f"No selected notebook declares the parameter(s) {unknown}; they declare: " +
                                 "; ".join(f"{p.name}: {', '.join(d)}" for p, d in declared.items()))
    RESULTS.mkdir(exist_ok=True)
    timings = []
    for p in sel:
        print(f"{p.name} ...", flush=True)
        t0 = time.time()
        pm.execute_notebook(str(p), str(p), parameters={k: v for k, v in params.items() if k in declared[p]},
                            cwd=str(NBS), progress_bar=progress, kernel_name='python3',
                            extra_arguments=['--IPKernelApp.log_level=ERROR'])
        timings.append(dict(notebook=p.name, seconds=round(time.time() - t0, 1)))
        print(f"{p.name}: {timings[-1]['seconds']} s", flush=True)
    timings = pd.DataFrame(timings)
    if (RESULTS/'timings.csv').exists():   # documented runs go one by one: keep the other notebooks' timings
        old = pd.read_csv(RESULTS/'timings.csv')
        timings = pd.concat([old[~old['notebook'].isin(timings['notebook'])], timings]).sort_values('notebook')
    timings.to_csv(RESULTS/'timings.csv', index=False)
    res = gather_results(RESULTS)
    res.to_csv(RESULTS/'results.csv', index=False)
    (RESULTS/'results.md').write_text(results_markdown(res))
    cwd = Path.cwd(); os.chdir(ROOT)
    try:
        for p in sel: nbdev_clean(fname=str(p))
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
