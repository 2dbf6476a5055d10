#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb without Quarto (nbdev-readme needs Quarto, which is not installable everywhere).

usage: python tools/make_readme.py [--execute] [--check]
  --execute  first re-run nbs/index.ipynb in place from nbs/ (its tables, status lines and figures are read from
             results/), clean it with nbdev-clean, then write README.md: the one command that refreshes both
  --check    exit 1 if README.md differs from what the notebook gives (used by the tests)

nbdev directives are honoured the way nbdev's docs do: `#| hide` drops a cell, `#| echo: false` keeps only its output.
Outputs: text/markdown verbatim, text/plain in a fence; an image output whose text form is a Markdown image
(`![alt](results/figures/x.png)`, as the index writes it) becomes that image, others are left to the docs site.
Links are made to work on GitHub from the repository root: `NN_name.ipynb` -> `nbs/NN_name.ipynb`, and the local
Colab badge image (nbs/images/, for the offline site) -> the badge Colab serves.
"""
import os, re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/'nbs'/'index.ipynb'
COLAB_BADGE = 'https://colab.research.google.com/assets/colab-badge.svg'

def _directives(src):
    d = {}
    for line in src.splitlines():
        if line.startswith('#|'):
            k, _, v = line[2:].strip().partition(':')
            d[k.strip()] = v.strip() or True
    return d

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
    parts = []
    for c in nb.cells:
        if c.cell_type == 'markdown': parts.append(c.source.strip()); continue
        if c.cell_type != 'code': continue
        d = _directives(c.source)
        if d.get('hide') is True or 'default_exp' in d: continue
        code = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip()
        if code and d.get('echo') != 'false': parts.append(f"```python\n{code}\n```")
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
    text = readme_text(nbformat.read(NB, as_version=4))
    readme = ROOT/'README.md'
    if '--check' in argv:
        if not readme.exists() or readme.read_text() != text:
            print("README.md is out of date: run `python tools/make_readme.py --execute`", file=sys.stderr); return 1
        return 0
    readme.write_text(text)
    return 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
