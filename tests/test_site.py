"""The docs site in a browser: `tools/preview.py` builds the site, headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) opens the home page and every page, and each test below checks one thing a
reader would see on every page. Full-page screenshots land in runs/docs/ (look at them).

Skipped, with the reason, where selenium, chromium or chromedriver is missing (`.ci/run` installs the Debian packages
with apt-get where it can).
"""
import html, importlib.util, os, re, shutil, time
from pathlib import Path
from urllib.parse import urlparse, unquote
import pytest
from conftest import ROOT

SHOTS = ROOT/'runs'/'docs'
WIDTH = 1280

# the visible text of the article, outside code, preformatted outputs and typeset maths
VISIBLE_PROSE = """
const out = [], w = document.createTreeWalker(document.getElementById('content'), NodeFilter.SHOW_TEXT);
while (w.nextNode()) { const n = w.currentNode, p = n.parentElement;
  if (p.closest('pre, code, script, style, mjx-container') || !p.offsetParent) continue; out.push(n.textContent); }
return out.join('\\n');"""

def _browser_or_skip():
    try: from selenium import webdriver
    except ImportError: pytest.skip('selenium is not installed: pip install -e ".[dev]"')
    chrome = next((shutil.which(b) for b in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(b)), None)
    driver = shutil.which('chromedriver') or next((p for p in ('/usr/bin/chromedriver', '/usr/lib/chromium/chromedriver',
                  f"{os.environ.get('CHROMEWEBDRIVER', '/nonexistent')}/chromedriver") if Path(p).exists()), None)   # GitHub's runners
    if not chrome or not driver:
        pytest.skip(f"headless browser missing ({'chromium' if not chrome else 'chromedriver'} not found): "
                    "install Debian's chromium and chromium-driver (`.ci/run` does so with apt-get when it runs as root or with passwordless sudo)")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--hide-scrollbars',
              f'--window-size={WIDTH},1000', '--force-device-scale-factor=1'): opts.add_argument(a)
    try: return webdriver.Chrome(service=Service(driver), options=opts)
    except Exception as e: pytest.skip(f'chromium did not start headless: {str(e).splitlines()[0]}')

def _load_preview():
    spec = importlib.util.spec_from_file_location('preview', ROOT/'tools'/'preview.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "Builds the site once, opens every page once; returns what each page showed (and saves its screenshot)"
    browser = _browser_or_skip()
    try:
        preview = _load_preview()
        built = preview.main(['--out', str(tmp_path_factory.mktemp('site')/'_site')])
        out, order, build_s = built['out'], built['pages'], built['seconds']
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob('*.png'): old.unlink()
        pages = {}
        for name in order:
            browser.set_window_size(WIDTH, 1000)
            browser.get((out/name).as_uri())
            wait_until(browser, "return document.readyState === 'complete' && document.documentElement.dataset.mathjax === 'done'", 30)
            wait_until(browser, "return [...document.images].every(i => i.complete)", 15)
            height = browser.execute_script('return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)')
            browser.set_window_size(WIDTH, height)
            time.sleep(0.3)
            browser.save_screenshot(str(SHOTS/(Path(name).stem + '.png')))
            js = browser.execute_script
            pages[name] = dict(
                mathjax=js('return document.documentElement.dataset.mathjax || ""'),
                text=js('return document.getElementById("content").innerText'), prose=js(VISIBLE_PROSE),
                sidebar=js('return [...document.querySelectorAll("#sidebar a.site-title, #sidebar li > a:not(.toc a)")].map(a => a.href)'),
                sections=js('return [...document.querySelectorAll("#sidebar li.sidebar-section")].map(s => [s.querySelector(".section-title").innerText, [...s.querySelectorAll(":scope > ul > li > a")].map(a => a.href.split("/").pop())])'),
                links=js('return [...document.querySelectorAll("#content a[href], #sidebar .toc a")].map(a => a.href)'),
                broken_imgs=js('return [...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src.slice(0, 100))'),
                n_imgs=js('return document.images.length'), n_tables=js('return document.querySelectorAll("#content table").length'),
                stderr=js('return [...document.querySelectorAll(".cell-output-stderr")].map(e => e.innerText.slice(0, 200))'),
                errors=js('return [...document.querySelectorAll(".cell-output-error")].map(e => e.innerText.slice(0, 200))'),
                prev=js('const a = document.querySelector(".page-navigation a.nav-prev"); return a ? a.href : null'),
                next=js('const a = document.querySelector(".page-navigation a.nav-next"); return a ? a.href : null'),
                h1=js('return document.querySelector("h1.title").innerText'), height=height)
        yield dict(out=out, order=order, pages=pages, build_s=build_s)
    finally: browser.quit()

def wait_until(browser, script, timeout):
    t0 = time.time()
    while not browser.execute_script(script):
        if time.time() - t0 > timeout: return False
        time.sleep(0.1)
    return True

def local(url):
    "file:///.../page.html#x -> (Path, 'x')"
    u = urlparse(url)
    return (Path(unquote(u.path)), unquote(u.fragment)) if u.scheme == 'file' else (None, None)

def test_builds_every_page(site):
    assert site['order'][0] == 'index.html' and len(site['order']) >= 9, site['order']
    assert all((site['out']/n).is_file() for n in site['order'])
    print(f"built {len(site['order'])} pages in {site['build_s']:.0f} s")

def test_sidebar_links_resolve(site):
    for name, p in site['pages'].items():
        targets = [local(u)[0] for u in p['sidebar']]
        assert [t.name for t in targets[1:]] == site['order'], (name, 'sidebar order', [t.name for t in targets])
        assert all(t.is_file() for t in targets), (name, [str(t) for t in targets if not t.is_file()])

def test_sidebar_sections(site):
    "The sidebar groups the pages under nbs/sidebar.yml's sections, in its order: Foundations, Papers, Tools"
    preview = _load_preview()
    want = [(t, [n.replace('.ipynb', '') for n in names]) for t, names in preview.sidebar_sections() if t]
    assert [t for t, _ in want] == ['Foundations', 'Papers', 'Tools'], want
    hrefs = dict(zip([Path(n).stem for n in preview.sidebar_order()], site['order']))   # notebook -> page (nbdev's output-file)
    for name, p in site['pages'].items():
        got = [(t.upper(), pages) for t, pages in p['sections']]
        assert got == [(t.upper(), [hrefs[n] for n in names]) for t, names in want], (name, got)
    assert hrefs['01_testbeds'] in [pg for t, pgs in site['pages']['index.html']['sections'] if t.upper() == 'FOUNDATIONS' for pg in pgs]

def test_local_links_and_anchors_resolve(site):
    "nbdev's doc links and the links between notebooks point at pages of this site, and at ids on them"
    ids, bad = {}, []
    for name, p in site['pages'].items():
        for u in p['links']:
            path, frag = local(u)
            if path is None: continue
            if not path.is_file(): bad.append((name, u)); continue
            if frag and path.suffix == '.html':
                if path not in ids: ids[path] = set(re.findall(r'\sid="([^"]+)"', path.read_text()))
                if html.escape(frag) not in ids[path]: bad.append((name, f'{path.name}#{frag}'))
    assert not bad, f'{len(bad)} broken local links: {bad[:20]}'

def test_images_load(site):
    for name, p in site['pages'].items(): assert not p['broken_imgs'], (name, p['broken_imgs'])
    assert site['pages']['index.html']['n_imgs'] >= 1

def test_maths_typeset(site):
    "MathJax ran offline and no `$...$` is left in the visible prose"
    for name, p in site['pages'].items():
        assert p['mathjax'] == 'done', f'{name}: MathJax did not finish (missing _site/mathjax?)'
        raw = re.findall(r'\$[^$\n]{1,120}\$', p['prose'])
        assert not raw, (name, raw[:5])

def test_no_prompts_stderr_or_tracebacks(site):
    problems = {}
    for name, p in site['pages'].items():
        found = re.findall(r'(?:In|Out)\s?\[\s*\d*\s*\]:', p['text'])
        found += [f'stderr: {s}' for s in p['stderr']] + [f'error: {s}' for s in p['errors']]
        found += ['traceback'] * p['text'].count('Traceback (most recent call last)')
        if found: problems[name] = found[:5]
    assert not problems, problems

def test_home_page_is_the_index_notebook(site):
    import nbformat
    nb = nbformat.read(ROOT/'nbs'/'index.ipynb', as_version=4)
    prose = next(c.source for c in nb.cells[1:] if c.cell_type == 'markdown' and not c.source.lstrip().startswith(('#', '>', '[![', '<')))
    words = re.findall(r'\w+', re.sub(r'\]\([^)]*\)', ']', prose.split('\n\n')[0]))[:30]
    home = site['pages']['index.html']
    assert ' '.join(words) in ' '.join(re.findall(r'\w+', home['text'])), ('first paragraph missing', ' '.join(words))
    assert home['h1'] == nb.cells[0].source.splitlines()[0].lstrip('# ').strip() and home['n_tables'] >= 1

def test_prev_next(site):
    order, pages = site['order'], site['pages']
    for i, name in enumerate(order):
        p = pages[name]
        prev, nxt = (local(p['prev'])[0] if p['prev'] else None), (local(p['next'])[0] if p['next'] else None)
        assert (prev.name if prev else None) == (order[i - 1] if i else None), (name, 'prev', p['prev'])
        assert (nxt.name if nxt else None) == (order[i + 1] if i + 1 < len(order) else None), (name, 'next', p['next'])

def test_screenshots_saved(site):
    for name in site['order']: assert (SHOTS/(Path(name).stem + '.png')).stat().st_size > 10_000, name

def test_quarto_cell_options():
    "The converter honours the cell options as Quarto does (no browser needed)"
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    preview = _load_preview()
    md = lambda s: new_output('execute_result', data={'text/markdown': s, 'text/plain': 'x'}, execution_count=1)
    nb = new_notebook(cells=[
        new_markdown_cell('A link to [the testbeds page](01_testbeds.ipynb) and `x` doc link [`f`](https://spurnotes.github.io/spurnotes/core.html#f).'),
        new_code_cell('#| echo: false\nhidden_code_1()', outputs=[new_output('stream', name='stdout', text='shown output 1')]),
        new_code_cell('#| output: false\nshown_code_2()', outputs=[new_output('stream', name='stdout', text='hidden output 2')]),
        new_code_cell('#| include: false\nhidden_code_3()', outputs=[new_output('stream', name='stdout', text='hidden output 3')]),
        new_code_cell('#| echo: false\n#| output: asis\nshow_doc(f)', outputs=[md('### f\n\n*A docstring*')]),
        new_code_cell('#| code-fold: true\nfolded_code_5()', outputs=[]),
        new_code_cell('#| warning: false\nwarned_6()', outputs=[new_output('stream', name='stderr', text='hidden warning 6')]),
        new_code_cell('w', outputs=[new_output('display_data', data={'application/vnd.jupyter.widget-view+json': {'model_id': 'm'},
                                                                     'text/plain': 'interactive(children=...)'})]),
    ], metadata={'language_info': {'name': 'python'}})
    body = preview.fix_html(preview.to_html(nb), {'01_testbeds.ipynb': 'testbeds.html'}, 'https://spurnotes.github.io/spurnotes')
    assert 'hidden_code_1' not in body and 'shown output 1' in body
    assert 'shown_code_2' in body and 'hidden output 2' not in body
    assert 'hidden_code_3' not in body and 'hidden output 3' not in body
    assert '<h3 id="f" class="anchored">f' in body and '<em>A docstring</em>' in body and 'show_doc' not in body
    assert re.search(r'<details class="code-fold"><summary>Code</summary>\s*<div class="sourceCode cell-code">.*folded_code_5', body, re.S)
    assert 'warned_6' in body and 'hidden warning 6' not in body
    assert 'interactive(children' not in body and 'widget-note' in body
    assert 'href="testbeds.html"' in body and 'href="core.html#f"' in body
    assert '#|' not in body and 'In&nbsp;[' not in body
