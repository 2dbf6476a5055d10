#!/usr/bin/env python
"""Build the docs site into `_site/` where Quarto is missing: `python tools/preview.py`, then open `_site/index.html`.

The pages carry the real site's content. nbdev's own processing (what `nbdev-proc-nbs` runs, less its attempt to
install Quarto with sudo) writes `_proc/`: the notebooks as nbdev hands them to Quarto, with a front-matter cell, one
`show_doc` block per exported name, and the export and `#| hide` cells gone. Each processed notebook is then converted
with nbconvert (the template below), doing what Quarto does with it:
- the front matter's title and description head the page, saved under its `output-file` (04_data_mixing -> data_mixing.html);
- the cell options `#| echo: false` (outputs only), `output: false`, `include: false`, `warning: false`,
  `output: asis` (the output is markdown of the page, as show_doc needs) and `code-fold: true|show` (a <details>);
  option lines never show in the code. Front matter and cell options are read with nbdev's own parsers (fastcore.nbio,
  which nbdev's processors use: `cell_frontmatter`, `NbCell.directives`, `remove_directives`), not by hand;
- nbdev's doc links (https://spurnotes.github.io/spurnotes/PAGE.html#name) and links to `NN_name.ipynb` become local;
  headings get Quarto's (pandoc's) ids, so `#name` anchors resolve;
- the sidebar lists nbs/sidebar.yml's pages in reading order under its sections (Foundations, Papers, Tools), with
  prev/next links at the bottom (page-navigation);
- maths is typeset offline by MathJax 3, from npm's tarball (cached under ~/.cache/spurnotes) copied into _site/mathjax;
- widget outputs show their static fallback, never an empty box.
Options: --out DIR (default _site/), NOTEBOOK ... to render only those pages (the sidebar still lists every page).
"""
import argparse, html, os, re, shutil, subprocess, sys, tarfile, time
from pathlib import Path
import jinja2, nbformat, yaml
from fastcore.nbio import NbCell, cell_frontmatter
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter

ROOT = Path(__file__).resolve().parents[1]
NBS, PROC = ROOT/'nbs', ROOT/'_proc'
MATHJAX, CACHE = '3.2.2', Path.home()/'.cache'/'spurnotes'
WIDGET = 'application/vnd.jupyter.widget-view+json'

# Quarto's HTML structure for cells (div.cell, div.cell-code, div.cell-output-stdout/-stderr/-display), so that
# nbs/styles.css applies as on the real site. No prompts anywhere.
TEMPLATE = r"""{%- extends 'display_priority.j2' -%}
{% block codecell scoped %}<div class="cell">
{{ super() }}
</div>
{% endblock codecell %}
{% block input_group %}{% if cell.metadata.get('code_fold') %}<details class="code-fold"{{ ' open' if cell.metadata.code_fold == 'show' }}><summary>Code</summary>
{{ super() }}</details>{% else %}{{ super() }}{% endif %}{% endblock input_group %}
{% block input %}<div class="sourceCode cell-code">{{ cell.source | highlight_code(metadata=cell.metadata) }}</div>{% endblock input %}
{% block execute_result scoped %}{% block data_priority scoped %}{{ super() }}{% endblock data_priority %}{% endblock execute_result %}
{% block stream_stdout scoped %}<div class="cell-output cell-output-stdout"><pre>{{ output.text | ansi2html }}</pre></div>
{% endblock stream_stdout %}
{% block stream_stderr scoped %}<div class="cell-output cell-output-stderr"><pre>{{ output.text | ansi2html }}</pre></div>
{% endblock stream_stderr %}
{% block error scoped %}<div class="cell-output cell-output-error"><pre>{{ output.traceback | join('\n') | ansi2html }}</pre></div>
{% endblock error %}
{% block data_png scoped %}<div class="cell-output cell-output-display"><img src="data:image/png;base64,{{ output.data['image/png'] }}" alt=""></div>
{% endblock data_png %}
{% block data_jpg scoped %}<div class="cell-output cell-output-display"><img src="data:image/jpeg;base64,{{ output.data['image/jpeg'] }}" alt=""></div>
{% endblock data_jpg %}
{% block data_svg scoped %}<div class="cell-output cell-output-display"><img src="data:image/svg+xml;base64,{{ output.data['image/svg+xml'] | text_base64 }}" alt=""></div>
{% endblock data_svg %}
{% block data_html scoped %}<div class="cell-output cell-output-display">{{ output.data['text/html'] }}</div>
{% endblock data_html %}
{% block data_markdown scoped %}<div class="cell-output cell-output-display">{{ output.data['text/markdown'] | markdown2html }}</div>
{% endblock data_markdown %}
{% block data_latex scoped %}<div class="cell-output cell-output-display">{{ output.data['text/latex'] }}</div>
{% endblock data_latex %}
{% block data_text scoped %}<div class="cell-output cell-output-display"><pre>{{ output.data['text/plain'] | ansi2html }}</pre></div>
{% endblock data_text %}
{% block markdowncell scoped %}{{ cell.source | markdown2html | strip_files_prefix }}
{% endblock markdowncell %}
{% block rawcell %}{% endblock rawcell %}
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title_text} – {site}</title>
<link rel="stylesheet" href="site.css"><link rel="stylesheet" href="styles.css">
<script>window.MathJax = {{tex: {{inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true}},
  startup: {{pageReady: () => MathJax.startup.defaultPageReady().then(() => {{ document.documentElement.dataset.mathjax = 'done'; }})}}}};</script>
<script defer src="mathjax/tex-mml-chtml.js"></script>
</head><body>
<nav id="sidebar"><a class="site-title" href="index.html">{site}</a>
<ul>
{sidebar}
</ul></nav>
<main id="content">
<header id="title-block-header"><h1 class="title">{title}</h1>{description}</header>
{body}
<nav class="page-navigation">{prev}{next}</nav>
</main>
</body></html>
"""

def run_nbdev_proc(retry=True):
    "nbdev's processing of nbs/ into _proc/ (`nbdev-proc-nbs` less the Quarto install it tries first); incremental"
    code = 'from nbdev.quarto import refresh_quarto_yml, proc_nbs; refresh_quarto_yml(); proc_nbs()'
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, 'MPLBACKEND': 'Agg'})
    if r.returncode or 'Error in notebook' in r.stderr: sys.exit(f"nbdev's processing failed:\n{(r.stdout + r.stderr)[-4000:]}")
    missing = [p.name for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')) and not (PROC/p.name).exists()]
    if missing and retry: return run_nbdev_proc(retry=False)   # another nbdev run cleared _proc/ meanwhile
    if missing: sys.exit(f"nbdev's processing left out {missing}:\n{(r.stdout + r.stderr)[-4000:]}")
    mixed = re.findall(r'Found cells containing imports and other code.*?\n---\n(.*?)\n---\n', r.stderr, re.S)
    bare = lambda s: cell_options(s)[1].strip()
    for src in map(bare, dict.fromkeys(mixed)):   # nbdev executes such cells alone when it builds the docs
        where = [p.name for p in sorted(NBS.glob('*.ipynb')) if any(bare(c.source) == src for c in read_nb(p).cells)]
        print(f"nbdev: a cell of {', '.join(where) or '?'} mixes imports with other code (see nbdev's FAQ): {src.splitlines()[0][:70]}")

def read_nb(path, tries=3):
    "A processed notebook (read again if another nbdev run is rewriting it right now)"
    for i in range(tries):
        try: return nbformat.read(path, as_version=4)
        except Exception:
            if i == tries - 1: raise
            time.sleep(1)

def front_matter(nb):
    "The front matter of the raw cell nbdev's FrontmatterProc writes first, parsed as nbdev parses it"
    return next((fm for c in nb.cells if c.cell_type == 'raw' and (fm := cell_frontmatter(c.source))), {})

def cell_options(src):
    "A code cell's `#| key: value` directives, read by nbdev's parser -> (options, the source without them)"
    cell = NbCell(0, dict(cell_type='code', source=src, metadata={}))
    opts = {k: True if v == '' else False if v.lower() == 'false' else v for k, v in cell.directives.items()}   # bare (or `true`) -> True
    cell.remove_directives()
    return opts, cell.source

def quarto_md(md):
    "pandoc attributes nbdev writes in markdown (show_doc's floated source link) -> HTML that means the same"
    md = re.sub(r'\[source\]\(([^)\s]+)\)\{[^}]*\}', r'<a class="source-link" href="\1" target="_blank">source</a>', md)
    return re.sub(r'(\]\([^)\s]+\))\{[^}]*\}', r'\1', md)

def as_markdown(o):
    "The text an `output: asis` cell hands to the page, or None for outputs that stay outputs (images)"
    if o.output_type == 'stream': return o.text
    return next((o.data[k] for k in ('text/markdown', 'text/html', 'text/plain') if k in o.get('data', {})), None)

def static_widget(o):
    "A widget output without its live view: the static fallback, or a note (never an empty box)"
    d = o.get('data', {})
    if WIDGET not in d: return o
    d = {k: v for k, v in d.items() if k != WIDGET}
    if set(d) <= {'text/plain'}:
        d = {'text/html': '<p class="widget-note">An interactive widget: run the notebook in Jupyter to use it.</p>'}
    return nbformat.from_dict({**o, 'data': d})

def prepare(nb):
    "Apply the Quarto cell options to a processed notebook, as Quarto renders it"
    cells = []
    for c in nb.cells:
        if c.cell_type == 'raw': continue
        if c.cell_type == 'markdown':
            c.source = quarto_md(c.source); cells.append(c); continue
        opts, c.source = cell_options(c.source)
        c.metadata.pop('execution', None)   # nbdev's timings (floats nbformat's schema refuses)
        if opts.get('include') is False: continue
        outs = [] if opts.get('output') is False else [static_widget(o) for o in c.get('outputs', [])]
        if opts.get('warning') is False: outs = [o for o in outs if o.get('name') != 'stderr']
        if opts.get('code-fold') in (True, 'show'): c.metadata['code_fold'] = opts['code-fold']
        echo = opts.get('echo', True) is not False and c.source.strip()
        md = [as_markdown(o) for o in outs]
        if opts.get('output') == 'asis' and outs and all(m is not None for m in md):
            if echo: c.outputs = []; cells.append(c)
            cells += [nbformat.v4.new_markdown_cell(quarto_md(m)) for m in md]
            continue
        c.outputs = outs
        if not echo:
            if not outs: continue
            c.metadata['transient'] = {'remove_source': True}
        cells.append(c)
    nb.cells = cells
    return nb

def pandoc_id(text):
    "pandoc's auto_identifiers: lower case, punctuation but _-. dropped, spaces -> -, nothing before the first letter"
    s = re.sub(r'\s+', '-', re.sub(r'[^\w\s.-]', '', text.lower()).strip())
    return re.sub(r'^[^a-z]+', '', s) or 'section'

def fix_html(body, hrefs, site_url, toc=None):
    "Quarto's heading ids (the h2s appended to `toc`); nbdev's absolute doc links and links to notebooks -> this site's pages"
    seen = {}
    def heading(m):
        inner = re.sub(r'<a class="anchor-link".*?</a>', '', m[2], flags=re.S)
        hid = pandoc_id(html.unescape(re.sub(r'<[^>]+>', '', inner)))
        seen[hid] = n = seen.get(hid, -1) + 1
        hid = f'{hid}-{n}' if n else hid
        if m[1] == '2' and toc is not None: toc.append((hid, re.sub(r'</?a\b[^>]*>', '', inner)))   # no link in a link
        return f'<h{m[1]} id="{hid}" class="anchored">{inner}<a class="anchor-link" href="#{hid}">¶</a></h{m[1]}>'
    body = re.sub(r'<h([1-6]) id="[^"]*">(.*?)</h\1>', heading, body, flags=re.S)
    def link(m):
        url = html.unescape(m[1])
        for base in (site_url, site_url.replace('https://', 'http://')):
            if url == base or url.startswith(base + '/'): url = url[len(base):].lstrip('/') or 'index.html'
        url = re.sub(r'^(?:\./)?([\w.-]+\.ipynb)(?=$|#)', lambda k: hrefs.get(k[1], k[0]), url)
        return f'href="{html.escape(url)}"'
    body = re.sub(r'href="([^"]*)"', link, body)
    # pandas tables: numbers right-aligned, text left-aligned (markdown tables carry their own alignment)
    return re.sub(r'<td([^>]*)>(\s*[-+−]?[\d.,]+(?:e[-+]?\d+)?%?(?:\s*±\s*[\d.,]+(?:e[-+]?\d+)?)?\s*)</td>',
                  lambda m: ('<td' + m[1].replace(' class="', ' class="num ') + '>' if 'class="' in m[1] else f'<td{m[1]} class="num">')
                  + f'{m[2]}</td>', body)

def inline_md(exporter, text):
    "Markdown of a title or description -> HTML without the wrapping paragraph"
    return re.sub(r'^<p>(.*)</p>\s*$', r'\1', exporter.markdown2html({}, text).strip(), flags=re.S)

def add_mathjax(out):
    "MathJax 3's tex-mml-chtml component and what it loads (fonts, TeX extensions, a11y), from npm's tarball"
    tgz = CACHE/f'mathjax-{MATHJAX}.tgz'
    if not tgz.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if not shutil.which('npm'): return print(f'npm missing and no {tgz}: maths stays raw TeX')
        subprocess.run(['npm', 'pack', '-q', f'mathjax@{MATHJAX}'], cwd=CACHE, check=True, capture_output=True)
    keep = ('es5/tex-mml-chtml.js', 'es5/input/tex/extensions/', 'es5/output/chtml/fonts/woff-v2/', 'es5/a11y/', 'es5/ui/', 'LICENSE')
    with tarfile.open(tgz) as tf:
        for m in tf.getmembers():
            rel = m.name.removeprefix('package/')
            if m.isfile() and rel.startswith(keep) and rel != 'es5/a11y/sre.js':
                dest = out/'mathjax'/rel.removeprefix('es5/')
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tf.extractfile(m).read())

def make_exporter():
    return HTMLExporter(template_name='basic', template_file='spurnotes.j2', exclude_input_prompt=True,
                        exclude_output_prompt=True, extra_loaders=[jinja2.DictLoader({'spurnotes.j2': TEMPLATE})])

def to_html(nb, exporter=None):
    "A processed notebook -> the HTML of its cells, as Quarto renders them"
    return (exporter or make_exporter()).from_notebook_node(prepare(nb))[0]

def sidebar_sections():
    "nbs/sidebar.yml as [(section title or None for top-level pages, [notebook names])], in order"
    def pages(items):
        for it in items or []:
            if isinstance(it, str): yield it
            elif isinstance(it, dict):
                if 'href' in it: yield it['href']
                yield from pages(it.get('contents'))
    cfg = yaml.safe_load((NBS/'sidebar.yml').read_text()) or {}
    out = []
    for it in cfg.get('website', {}).get('sidebar', {}).get('contents') or []:
        title = it.get('section') if isinstance(it, dict) else None
        names = [n for n in pages([it] if title is None else it.get('contents')) if n.endswith('.ipynb')]
        if title is None and out and out[-1][0] is None: out[-1][1].extend(names)
        else: out.append((title, names))
    return out

def sidebar_order():
    "Notebook names in nbs/sidebar.yml's order (strings, `href:` entries and nested `contents:` sections)"
    return [n for _, names in sidebar_sections() for n in names]

def sidebar_html(sections, entry, have):
    "The sidebar's list: top-level pages as entries, each section a titled sub-list (Quarto's `section:`)"
    items = []
    for title, names in sections:
        lis = '\n'.join(entry(n) for n in names if n in have)
        if title is None: items.append(lis)
        else: items.append(f'<li class="sidebar-section"><span class="section-title">{html.escape(title)}</span>\n<ul>\n{lis}\n</ul></li>')
    return '\n'.join(i for i in items if i)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', help='render only these (e.g. 01_testbeds); default: every notebook')
    ap.add_argument('--out', default=str(ROOT/'_site'))
    ap.add_argument('--no-proc', action='store_true', help='reuse _proc/ as it is (quick restyling)')
    a = ap.parse_args(argv)
    t0, out = time.time(), Path(a.out)
    if not a.no_proc: run_nbdev_proc()
    t_proc = time.time() - t0
    nbs = {p.name: read_nb(p) for p in sorted(PROC.glob('*.ipynb'))}
    sections = sidebar_sections()
    order = [n for n in sidebar_order() if n in nbs]
    meta = {n: front_matter(nb) for n, nb in nbs.items()}
    hrefs = {n: meta[n].get('output-file', Path(n).stem + '.html') for n in nbs}
    want = [n if n.endswith('.ipynb') else n + '.ipynb' for n in a.notebooks]
    todo = [n for n in order + sorted(set(nbs) - set(order)) if not want or n in want]
    site = yaml.safe_load((NBS/'nbdev.yml').read_text())['website']

    if out.exists() and (out/'.spurnotes-site').exists(): shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True); (out/'.spurnotes-site').touch()
    for d in PROC.iterdir():          # images and other assets the notebooks link to (nbs/images/colab-badge.svg)
        if d.is_dir() and not d.name.startswith(('.', '_')): shutil.copytree(d, out/d.name, dirs_exist_ok=True)
    (out/'site.css').write_text((ROOT/'tools'/'preview.css').read_text() + HtmlFormatter().get_style_defs('.highlight'))
    shutil.copy(NBS/'styles.css', out/'styles.css')
    add_mathjax(out)

    exporter = make_exporter()
    titles = {n: inline_md(exporter, str(meta[n].get('title', Path(n).stem))) for n in nbs}
    for n in todo:
        body = to_html(nbs[n], exporter)
        i = order.index(n) if n in order else None
        nav = lambda j, cls, label: (f'<a class="{cls}" href="{hrefs[order[j]]}"><small>{label}</small>{titles[order[j]]}</a>'
                                     if i is not None and 0 <= j < len(order) else '')
        desc, toc = meta[n].get('description'), []
        body = fix_html(body, hrefs, site['site-url'].rstrip('/'), toc)
        toc = ''.join(f'<li><a href="#{h}">{s}</a></li>' for h, s in toc)
        entry = lambda o: (f'<li><a href="{hrefs[o]}" class="active">{titles[o]}</a><ul class="toc">{toc}</ul></li>' if o == n
                           else f'<li><a href="{hrefs[o]}">{titles[o]}</a></li>')
        page = PAGE.format(
            site=html.escape(site['title']), title=titles[n], title_text=html.escape(re.sub(r'<[^>]+>', '', titles[n])),
            description=f'<div class="description"><p>{inline_md(exporter, str(desc))}</p></div>' if desc else '',
            sidebar=sidebar_html(sections, entry, nbs), body=body,
            prev=nav(i - 1 if i is not None else -1, 'nav-prev', '← Previous'), next=nav(i + 1 if i is not None else -1, 'nav-next', 'Next →'))
        (out/hrefs[n]).write_text(page)
    secs = time.time() - t0
    print(f'built {len(todo)} pages in {out} in {secs:.1f} s (nbdev processing {t_proc:.1f} s): open {out/"index.html"}')
    return dict(out=out, pages=[hrefs[n] for n in order], seconds=secs)

if __name__ == '__main__': main()
