#!/usr/bin/env python
"""Local HTML preview of the executed notebooks, for machines without Quarto (nbdev-docs needs it).

usage: python tools/preview.py [NOTEBOOK ...] [--out _preview]
Renders nbs/*.ipynb with their committed outputs (the documented runs) through nbconvert's HTML exporter,
dropping `#| hide` cells the way the docs site does, and writes an index page linking them.
"""
import argparse, html
from pathlib import Path
import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path, out_dir):
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and any(l.strip() in ('#| hide', '#|hide') for l in c.source.splitlines()))]
    body, _ = HTMLExporter(template_name='lab').from_notebook_node(nb)
    dest = out_dir/(nb_path.stem + '.html')
    dest.write_text(body)
    return dest

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('notebooks', nargs='*')
    ap.add_argument('--out', default=str(ROOT/'_preview'))
    a = ap.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    nbs = [ROOT/'nbs'/(n if n.endswith('.ipynb') else n + '.ipynb') for n in a.notebooks] or sorted((ROOT/'nbs').glob('*.ipynb'))
    pages = [render(p, out) for p in nbs]
    links = ''.join(f'<li><a href="{p.name}">{html.escape(p.stem)}</a></li>' for p in pages)
    (out/'index.html').write_text(f'<html><body><h1>spurnotes preview</h1><ul>{links}</ul></body></html>')
    print(f"wrote {len(pages)} pages to {out}")

if __name__ == '__main__': main()
