"The README is generated from nbs/index.ipynb; the HTML preview renders the executed notebooks with their figures."
import subprocess, sys
from pathlib import Path
from conftest import ROOT

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_readme_shows_the_two_commands():
    text = (ROOT/'README.md').read_text()
    assert 'pip install -e ".[dev]" && spurnotes run' in text and 'pip install -e ".[dev]" && pytest' in text

def test_preview_renders_figures(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'preview.py'), '01_data', '--out', str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    page = (tmp_path/'01_data.html').read_text()
    assert page.count('<img') >= 3 and 'Biased digits' in page
    assert 'from nbdev.showdoc import show_doc' not in page   # `#| hide` cells are dropped, as on the docs site

def test_docs_processing_runs():
    "nbdev's docs build (before Quarto) executes exported, import and show_doc cells in isolation: none may fail."
    import shutil
    nbdev_proc = shutil.which('nbdev-proc-nbs', path=str(Path(sys.executable).parent)) or shutil.which('nbdev-proc-nbs')
    r = subprocess.run([nbdev_proc], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert 'Error in notebook' not in r.stderr
    assert {p.name for p in (ROOT/'_proc').glob('*.ipynb')} >= {'00_core.ipynb', '01_data.ipynb', 'index.ipynb'}
