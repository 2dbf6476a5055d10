#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb without Quarto (nbdev-readme needs Quarto, which is not installable everywhere).

usage: python tools/make_readme.py [--execute] [--check]
  --execute  first re-run nbs/index.ipynb in place (its table is read from results/), then write README.md
  --check    exit 1 if README.md differs from what the notebook gives (used by the tests)

nbdev directives are honoured the way nbdev's docs do: `#| hide` drops a cell, `#| echo: false` keeps only its output.
Outputs: text/markdown verbatim, text/plain in a fence; images are left to the docs site.
"""
import sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/'nbs'/'index.ipynb'

def _directives(src):
    d = {}
    for line in src.splitlines():
        if line.startswith('#|'):
            k, _, v = line[2:].strip().partition(':')
            d[k.strip()] = v.strip() or True
    return d

def readme_text(nb):
    parts = []
    for c in nb.cells:
        if c.cell_type == 'markdown': parts.append(c.source.strip()); continue
        if c.cell_type != 'code': continue
        d = _directives(c.source)
        if d.get('hide') is True or 'default_exp' in d: continue
        code = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip()
        if code and d.get('echo') != 'false': parts.append(f"```python\n{code}\n```")
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if 'text/markdown' in data: parts.append(''.join(data['text/markdown']).strip())
            elif 'text/plain' in data: parts.append("```\n" + ''.join(data['text/plain']).rstrip() + "\n```")
            elif o.get('output_type') == 'stream' and o.get('name') == 'stdout': parts.append("```\n" + ''.join(o['text']).rstrip() + "\n```")
    body = '\n\n'.join(p for p in parts if p)
    return "<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n" + body + '\n'

def main(argv):
    if '--execute' in argv:
        from nbclient import NotebookClient
        nb = nbformat.read(NB, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(NB.parent)}}).execute()
        for c in nb.cells:
            if c.cell_type == 'code': c.execution_count = None; [o.pop('execution_count', None) for o in c.outputs]
        nbformat.write(nb, NB)
    text = readme_text(nbformat.read(NB, as_version=4))
    readme = ROOT/'README.md'
    if '--check' in argv:
        if not readme.exists() or readme.read_text() != text:
            print("README.md is out of date: run `python tools/make_readme.py`", file=sys.stderr); return 1
        return 0
    readme.write_text(text)
    return 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
