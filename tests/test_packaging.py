"The wheel installs into a fresh virtualenv (not editable) where spurnotes imports and trains without the notebooks; it holds one module per concern, and 0.0.1's imports still resolve with a DeprecationWarning."
import subprocess, sys, sysconfig, textwrap
from pathlib import Path
import pytest
from conftest import ROOT

SCRIPT = textwrap.dedent('''
    import sys, torch, importlib.metadata as md
    import spurnotes
    from fastai.torch_core import set_seed
    from spurnotes.models import SmallCNN
    from spurnotes.learner import erm_learner
    from spurnotes.report import learner_group_report
    from spurnotes.testbeds import biased_digits
    assert "fresh" in spurnotes.__file__ and "site-packages" in spurnotes.__file__, spurnotes.__file__
    assert spurnotes.__version__ == md.version("spurnotes")
    reqs = " ".join(md.requires("spurnotes"))
    assert "fastai" in reqs and "torch" in reqs and "papermill" in reqs
    set_seed(0, reproducible=True)
    d = biased_digits(seed=0)
    learn = erm_learner(d.dls(bs=128, seed=0), SmallCNN(3, 2), d.info, path=sys.argv[1])
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    rep = learner_group_report(learn, d.dl("test_original"))
    assert 0 <= rep.loc["average (plain)", "accuracy"] <= 1
    f = learn.save("erm", with_opt=True)
    # fastai's load_model reads with weights_only=True; the optimizer state holds fastcore's L (a list), allow-listed
    from fastcore.foundation import L
    with torch.serialization.safe_globals([L]): state = torch.load(f, weights_only=True)
    assert set(state) == {"model", "opt"}
    refused = False
    try: torch.load(f, weights_only=True)            # without the allow-list, weights_only refuses the file
    except Exception as e: refused = "weights only" in str(e).lower()
    assert refused, "weights_only=True loaded a file with an unlisted global"
    w = learn.model.head[-1].weight.detach().clone()
    with torch.no_grad(): learn.model.head[-1].weight.zero_()
    learn.load("erm", with_opt=True)
    assert torch.equal(learn.model.head[-1].weight, w)
    # imports written for 0.0.1 resolve, to the same objects, and warn with the new home
    import warnings
    from spurnotes.groups import GroupInfo
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        from spurnotes.core import GroupInfo as OldGroupInfo
        from spurnotes.data import biased_digits as old_biased_digits
    assert OldGroupInfo is GroupInfo and old_biased_digits is biased_digits
    msgs = [str(x.message) for x in w if issubclass(x.category, DeprecationWarning)]
    assert any("spurnotes.core.GroupInfo" in m and "spurnotes.groups" in m for m in msgs), msgs
    assert any("spurnotes.data.biased_digits" in m and "spurnotes.testbeds" in m for m in msgs), msgs
    print("OK", spurnotes.__version__)
''')

NEW_MODULES = ['groups', 'loaders', 'metrics', 'models', 'learner', 'saliency', 'report', 'testbeds', 'datasets', 'distributed',
               'baselines', 'moved', 'cli', 'rare_spurious', 'masktune', 'data_mixing', 'ule']

def test_wheel_in_fresh_venv(tmp_path):
    dist = tmp_path/'dist'
    subprocess.run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(dist), str(ROOT)],
                   check=True, capture_output=True, text=True)
    whl = next(dist.glob('spurnotes-*.whl'))
    venv = tmp_path/'fresh'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    py = venv/'bin'/'python'
    new_site = Path(subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                                   capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies (torch alone is ~3 GB) are shared from this environment through a .pth path line; a path line
    # does not run that environment's own .pth files, so its editable spurnotes stays invisible
    (new_site/'_shared_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    r = subprocess.run([str(py), '-m', 'pip', 'install', '--no-index', '--no-deps', str(whl)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(py), '-c', SCRIPT, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                       env={'PATH': '/usr/bin:/bin', 'MPLBACKEND': 'Agg', 'HOME': str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().startswith('OK')
    # the wheel carries the package only: no notebooks, no tests
    import zipfile
    names = zipfile.ZipFile(whl).namelist()
    modules = {n.split('/')[1] for n in names if n.startswith('spurnotes/') and n.endswith('.py')}
    assert modules >= {f'{m}.py' for m in NEW_MODULES}, sorted(modules)
    assert not modules & {'core.py', 'data.py', 'benchmark.py'}, sorted(modules)   # the old modules are stand-ins now (moved.py)
    assert not any(n.startswith(('nbs/', 'tests/')) for n in names)
