#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb without Quarto (nbdev-readme needs Quarto, which is not installable everywhere).

usage: python tools/make_readme.py [--execute] [--check]
  --execute  first re-run nbs/index.ipynb in place from nbs/ (its tables, status lines and figures are read from
             results/), clean it with nbdev-clean, then write README.md: the one command that refreshes both
  --check    exit 1 if README.md differs from what the notebook gives (used by the tests)

nbdev directives are read and applied by nbdev itself: the notebook goes through nbdev's `NBProcessor` with its `hide_`
processor (as nbdev's docs build does), so `#| hide` drops a cell and every directive line leaves the code; the
cell's directives (nbdev's parse, `cell.directives_`) then decide the rest: `#| echo: false` keeps only the output.
Outputs: text/markdown verbatim, text/plain in a fence; an image output whose text form is a Markdown image
(`![alt](results/figures/x.png)`, as the index writes it) becomes that image, others are left to the docs site.
Links are made to work on GitHub from the repository root: `NN_name.ipynb` -> `nbs/NN_name.ipynb`, and the local
Colab badge image (nbs/images/, for the offline site) -> the badge Colab serves.
"""
import os, re, sys
from pathlib import Path
import nbformat
from fastcore.nbio import read_nb
from nbdev.process import NBProcessor
from nbdev.processors import hide_

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/'nbs'/'index.ipynb'
COLAB_BADGE = 'https://colab.research.google.com/assets/colab-badge.svg'

def _links(md:str) -> str:
    "Links of the docs site (relative to nbs/) as links that work in the README (relative to the repository root)."
    md = md.replace('](images/colab-badge.svg)', f']({COLAB_BADGE})')
    return re.sub(r'\]\((?![a-z]+://|/|#|nbs/)([\w.-]+\.ipynb(?:#[^)]*)?)\)', r'](nbs/\1)', md)

def _output(o):
    data = o.get('data', {})
    if 'image/png' in data:
        txt = ''.join(data.get('text/plain', '')).strip()
        return txt if txt.startswith('![') else None
    if 'text/markdown' in data: return ''.join(data['text/markdown']).strip()
    if 'text/plain' in data: return "```\n" + ''.join(data['text/plain']).rstrip() + "\n```"
    if o.get('output_type') == 'stream' and o.get('name') == 'stdout': return "```\n" + ''.join(o['text']).rstrip() + "\n```"

def readme_text(nb):
    "The README's Markdown from a notebook read by nbdev (`fastcore.nbio.read_nb`)."
    nb = NBProcessor(nb=nb, procs=[hide_], rm_directives=True, process=True).nb   # hidden cells gone, directive lines too
    parts = []
    for c in nb.cells:
        if c.cell_type == 'markdown': parts.append(c.source.strip()); continue
        if c.cell_type != 'code': continue
        code = c.source.strip()
        if code and c.directives_.get('echo') != 'false': parts.append(f"```python\n{code}\n```")
        parts += [_output(o) for o in c.get('outputs', [])]
    body = _links('\n\n'.join(p for p in parts if p))
    return "<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n" + body + '\n'

def execute_index():
    "Run nbs/index.ipynb in place with nbs/ as the working directory, then nbdev-clean it."
    from nbclient import NotebookClient
    from nbdev.clean import nbdev_clean
    nb = nbformat.read(NB, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(NB.parent)}},
                   extra_arguments=['--IPKernelApp.log_level=ERROR']).execute()
    nbformat.write(nb, NB)
    cwd = Path.cwd(); os.chdir(ROOT)
    try: nbdev_clean(fname=str(NB))
    finally: os.chdir(cwd)

def main(argv):
    if '--execute' in argv: execute_index()
    text = readme_text(read_nb(NB))
    readme = ROOT/'README.md'
    if '--check' in argv:
        if not readme.exists() or readme.read_text() != text:
            print("README.md is out of date: run `python tools/make_readme.py --execute`", file=sys.stderr); return 1
        return 0
    readme.write_text(text)
    return 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
