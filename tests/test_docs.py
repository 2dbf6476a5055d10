"""The docs: README generated from nbs/index.ipynb; nbdev's docs processing runs; every notebook reads as an article
(title and summary, Colab badge and install cell, hidden parameters, no tracker talk, claims tables in the paper
notebooks) and its committed outputs are clean (no stderr, tracebacks, ANSI codes, machine paths or training logs)."""
import ast, io, json, re, subprocess, sys, tokenize
from pathlib import Path
import pytest
from conftest import ROOT, NBS

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_readme_shows_the_two_commands():
    text = (ROOT/'README.md').read_text()
    assert 'pip install -e ".[dev]" && spurnotes run' in text and 'pip install -e ".[dev]" && pytest' in text

def test_preview_renders_figures(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'preview.py'), '01_testbeds', '--out', str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pages = [tmp_path/'testbeds.html', tmp_path/'01_testbeds.html']   # nbdev's output-file name (the number dropped), or the notebook's
    page = next(p for p in pages if p.exists()).read_text()
    assert page.count('<img') >= 3 and 'Biased digits' in page
    assert 'from nbdev.showdoc import show_doc' not in page   # `#| hide` cells are dropped, as on the docs site

def test_docs_processing_runs():
    "nbdev's docs build (before Quarto) executes exported, import and show_doc cells in isolation: none may fail."
    import shutil
    nbdev_proc = shutil.which('nbdev-proc-nbs', path=str(Path(sys.executable).parent)) or shutil.which('nbdev-proc-nbs')
    r = subprocess.run([nbdev_proc], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert 'Error in notebook' not in r.stderr
    assert {p.name for p in (ROOT/'_proc').glob('*.ipynb')} >= {'00_groups.ipynb', '00f_report.ipynb', '01_testbeds.ipynb', 'index.ipynb'}


# ---------------------------------------------------------------------------------------------------------------
# Every notebook reads as an article (the conventions of CONTRIBUTING.md, "How a notebook reads")
# ---------------------------------------------------------------------------------------------------------------
NOTEBOOKS = sorted(NBS.glob('*.ipynb'))
IDS = [p.stem for p in NOTEBOOKS]
EXPERIMENT = re.compile(r'^(0[2-9]|[1-8][0-9])_')   # the paper notebooks: papermill runs them, parameters first
WRITES = re.compile(r'\b(write_results|write_headline|save_figure)\(.*\bout_dir\b')   # ... and any notebook that writes results (01_testbeds)
PAPER = re.compile(r'^0[2-5]_')                 # one paper each: they end with a claims table
WITH_PAPERS = re.compile(r'^0[2-6]_')           # their summary links the paper(s) on arXiv (06: the reference methods)

BADGE = "[![Open In Colab](images/colab-badge.svg)](https://colab.research.google.com/github/spurnotes/spurnotes/blob/main/nbs/{})"
INSTALL = """#| hide
# Colab only: clone the repository, install it, and work from its nbs/ folder as the notebooks expect; elsewhere nothing happens
import os, subprocess
if os.path.exists('/content') and not os.path.exists('/content/spurnotes/nbs'):
    subprocess.run('git clone -q --depth 1 https://github.com/spurnotes/spurnotes /content/spurnotes && pip install -q /content/spurnotes', shell=True, check=True)
if os.path.exists('/content/spurnotes/nbs'): os.chdir('/content/spurnotes/nbs')"""

def _cells(nb_path): return json.loads(Path(nb_path).read_text())['cells']
def _src(cell): s = cell.get('source', ''); return ''.join(s) if isinstance(s, list) else s
def _where(nb_path, i, cell): return f"{Path(nb_path).name} cell {i} (id {cell.get('id')})"

def _public_names():
    "Every name the package exports (the `__all__` of spurnotes/*.py): constants such as `TORCHVISION_BACKBONES` may appear in prose."
    names = set()
    for py in (ROOT/'spurnotes').glob('*.py'):
        for node in ast.parse(py.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '__all__' for t in node.targets):
                names |= set(ast.literal_eval(node.value))
    return names

TRACKER = [(re.compile(r'\bissues?\s+#?\d+', re.I), "names a tracker issue"),
           (re.compile(r'METHODS\.md'), "points to METHODS.md (not part of the site)"),
           (re.compile(r'\.\./shared\b|\bshared/[A-Z]+\w*\.md'), "points to ../shared (not part of the site)")]
CONSTANT = re.compile(r'(?<![\w.])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b')   # TARGET_GAIN, N_SEEDS, ... (ALLCAPS with an underscore)

def _notebook_constants(cells):
    "ALLCAPS names (with an underscore) that the notebook's own code cells assign: TARGET_GAIN, N_SEEDS, ..."
    names = set()
    for c in cells:
        if c['cell_type'] != 'code': continue
        code = '\n'.join(l for l in _src(c).splitlines() if not l.lstrip().startswith(('%', '!')))
        try: tree = ast.parse(code)
        except SyntaxError: continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and CONSTANT.fullmatch(node.id): names.add(node.id)
    return names

def _comments(code):
    "The comments of a code cell's source (tokenize: a `#` inside a string is not one)."
    try: return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, IndentationError, SyntaxError): return [l[l.index('#'):] for l in code.splitlines() if '#' in l]

def structure_problems(nb_path, public=None):
    "What keeps the notebook at `nb_path` from reading as an article of this site, as a list of messages."
    nb_path = Path(nb_path); name = nb_path.name
    public = _public_names() if public is None else public
    cells, out = _cells(nb_path), []
    if not cells: return [f"{name}: no cells"]
    # 1. the title cell: `# Title` and a `> summary`, nothing else (nbdev makes them the page's title and description)
    first, text = cells[0], _src(cells[0]).strip()
    if first['cell_type'] != 'markdown': out.append(f"{name}: cell 0 is {first['cell_type']}, expected markdown with `# Title` and `> summary`")
    else:
        title, _, rest = text.partition('\n')
        rest = rest.strip()
        if not title.startswith('# '): out.append(f"{name}: cell 0 starts with {title[:40]!r}, expected a `# Title` line")
        if not rest.startswith('> '): out.append(f"{name}: cell 0 has no `> summary` right after the title")
        elif '\n\n' in rest or re.search(r'^#', rest, re.M): out.append(f"{name}: cell 0 holds more than the title and the `> summary` (move the rest to its own cell)")
        if WITH_PAPERS.match(name) and not re.search(r'https://arxiv\.org/abs/\d{4}\.\d{4,5}', rest):
            out.append(f"{name}: the `> summary` names no paper with an https://arxiv.org/abs/NNNN.NNNNN link")
    # 2. the Colab badge, its own markdown cell right after the title
    badge = BADGE.format(name)
    if len(cells) < 2 or cells[1]['cell_type'] != 'markdown' or _src(cells[1]).strip() != badge:
        found = [i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and f"nbs/{name})" in _src(c) and 'colab.research.google.com' in _src(c)]
        out.append(f"{name}: cell 1 is not the Colab badge cell, exactly {badge!r}" + (f" (a badge-like link is in cell {found[0]})" if found else ""))
    # 3. code cells: the parameters first (hidden), the install cell before anything visible
    code = [(i, c) for i, c in enumerate(cells) if c['cell_type'] == 'code']
    if code:
        i0, c0 = code[0]
        writes = any(WRITES.search(_src(c)) and not _src(c).lstrip().startswith('#| export') for _, c in code)
        if EXPERIMENT.match(name) or writes:
            if 'parameters' not in c0.get('metadata', {}).get('tags', []): out.append(f"{_where(name, i0, c0)}: the first code cell is not tagged `parameters`")
            bad = [c for c in _comments(_src(c0)) if '=' in c]
            if bad: out.append(f"{_where(name, i0, c0)}: parameter comments contain '=' (papermill misreads them): {bad[0][:60]!r}")
        if not _src(c0).startswith('#| hide'): out.append(f"{_where(name, i0, c0)}: the first code cell does not start with `#| hide`")
    install = [i for i, c in code if _src(c).strip() == INSTALL]
    if not install: out.append(f"{name}: no Colab install cell (a code cell exactly as in CONTRIBUTING.md, starting with `#| hide`)")
    else:
        visible = [i for i, c in code if not re.match(r'#\|\s*(hide|default_exp|export)', _src(c))]
        if visible and visible[0] < install[0]: out.append(f"{name}: the Colab install cell (cell {install[0]}) comes after visible code (cell {visible[0]})")
    # 4. no tracker talk: references go to papers, to other notebooks, or to the index
    internal = _notebook_constants(cells)   # constants of the notebook's code that the package does not export
    for i, c in enumerate(cells):
        s = _src(c)
        for pat, why in TRACKER:
            m = pat.search(s)
            if m: out.append(f"{_where(name, i, c)} {why}: {m.group(0)!r}")
        if c['cell_type'] == 'markdown':
            prose = re.sub(r'```.*?```', '', re.sub(r'\]\([^)]*\)', '](...)', s), flags=re.S)   # link targets and code blocks are not prose
            consts = sorted(({m.group(0) for m in CONSTANT.finditer(prose)} & internal) - public)
            if consts: out.append(f"{_where(name, i, c)} names internal constants in prose: {consts}")
    # 5. a paper notebook ends with its computed claims table
    if PAPER.match(name) and not any('claims_table(' in _src(c) for _, c in code):
        out.append(f"{name}: no `claims_table(` call (a paper notebook ends with its claims table)")
    return out

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=IDS)
def test_notebook_reads_as_an_article(nb):
    problems = structure_problems(nb)
    assert not problems, '\n'.join(problems)


# ---------------------------------------------------------------------------------------------------------------
# Committed outputs are what a reader should see: no stderr, tracebacks, ANSI codes, machine paths, training logs
# ---------------------------------------------------------------------------------------------------------------
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
MACHINE_PATH = re.compile(r'(?<![\w:/.~-])(/work/|/home/|/tmp/|/root/|/usr/)|site-packages')
LOGS = [(re.compile(r'Better model found'), "a SaveModelCallback log line"),
        (re.compile(r'epoch\s+train_loss'), "a fastai training table"),
        (re.compile(r'class="fastprogress"|<progress\b'), "a fastai progress table or bar"),
        (re.compile(r'Traceback \(most recent call last\)'), "a traceback"),
        (re.compile(r'\b[A-Z]\w*Warning\b:'), "a warning")]
TEXT_TYPES = ('text/plain', 'text/html', 'text/markdown', 'text/latex', 'application/javascript')

def _output_texts(o):
    "The readable texts of one output (images are skipped)."
    if o.get('output_type') == 'stream': yield 'stream ' + o.get('name', ''), _src({'source': o.get('text', '')})
    elif o.get('output_type') == 'error': yield 'error', '\n'.join(o.get('traceback', [])) or o.get('evalue', '')
    else:
        for k, v in o.get('data', {}).items():
            if k in TEXT_TYPES: yield k, v if isinstance(v, str) else ''.join(v)

def output_problems(nb_path):
    "Every committed output of the notebook that a reader should not see, as messages naming the notebook and cell."
    out = []
    for i, c in enumerate(_cells(nb_path)):
        for o in c.get('outputs', []):
            at = _where(nb_path, i, c)
            if o.get('output_type') == 'error': out.append(f"{at}: an error output ({o.get('ename')}: {str(o.get('evalue'))[:80]})"); continue
            if o.get('output_type') == 'stream' and o.get('name') == 'stderr':
                out.append(f"{at}: a stderr stream: {_src({'source': o.get('text', '')})[:120]!r}"); continue
            for kind, text in _output_texts(o):
                if ANSI.search(text): out.append(f"{at}: ANSI escape codes in {kind}")
                m = MACHINE_PATH.search(text)
                if m: out.append(f"{at}: a machine path in {kind}: {text[max(0, m.start() - 40):m.end() + 40]!r}")
                for pat, why in LOGS:
                    m = pat.search(text)
                    if m: out.append(f"{at}: {why} in {kind}: {text[max(0, m.start() - 30):m.end() + 50]!r}")
    return out

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=IDS)
def test_committed_outputs_are_clean(nb):
    problems = output_problems(nb)
    assert not problems, '\n'.join(problems)


# the checks themselves, on notebooks made to break each rule
def _nb(tmp_path, name, cells):
    p = tmp_path/name
    p.write_text(json.dumps({'cells': cells, 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))
    return p

def _md(s, id='m'): return {'cell_type': 'markdown', 'id': id, 'metadata': {}, 'source': s}
def _code(s, id='c', tags=None, outputs=()):
    return {'cell_type': 'code', 'id': id, 'metadata': {'tags': tags} if tags else {}, 'source': s, 'outputs': list(outputs), 'execution_count': None}

def _good(name, extra=()):
    return [_md("# A title\n\n> Someone, *A paper* (2020, [arXiv 2001.00001](https://arxiv.org/abs/2001.00001)): the idea."),
            _md(BADGE.format(name)), _code("#| hide\nseed = 0   # a seed", tags=['parameters']), _code(INSTALL),
            _code("#| default_exp thing"), _md("Prose about `TORCHVISION_BACKBONES`, `IMAGENET1K_V2` and `TORCH_HOME`."),
            _code("TARGET_GAIN = 0.05\nTORCHVISION_BACKBONES = {}"), *extra]

def test_structure_check_passes_a_good_notebook(tmp_path):
    p = _nb(tmp_path, '03_thing.ipynb', _good('03_thing.ipynb', [_code("claims_table(rows)")]))
    assert structure_problems(p, public={'TORCHVISION_BACKBONES'}) == []

@pytest.mark.parametrize('change, message', [
    (lambda c: c.__setitem__(0, _md("Title without hash\n\n> summary")), "expected a `# Title` line"),
    (lambda c: c.__setitem__(0, _md("# T\n\n> summary\n\n## More")), "more than the title"),
    (lambda c: c.__setitem__(0, _md("# T\n\n> A paper without a link.")), "arxiv.org"),
    (lambda c: c.__setitem__(1, _md(BADGE.format('02_other.ipynb'))), "Colab badge"),
    (lambda c: c.__setitem__(2, _code("seed = 0", tags=['parameters'])), "does not start with `#| hide`"),
    (lambda c: c.__setitem__(2, _code("#| hide\nseed = 0  # a = 1", tags=['parameters'])), "contain '='"),
    (lambda c: c.__setitem__(2, _code("#| hide\nseed = 0")), "not tagged `parameters`"),
    (lambda c: c.pop(3), "no Colab install cell"),
    (lambda c: c.append(_md("as discussed in issue 11")), "tracker issue"),
    (lambda c: c.append(_md("see ../shared/METHODS.md §2")), "METHODS.md"),
    (lambda c: c.append(_md("the gain must exceed TARGET_GAIN")), "internal constants"),
    (lambda c: c.pop(-1), "claims_table"),
])
def test_structure_check_catches(tmp_path, change, message):
    cells = _good('03_thing.ipynb', [_code("claims_table(rows)")])
    change(cells)
    problems = structure_problems(_nb(tmp_path, '03_thing.ipynb', cells), public={'TORCHVISION_BACKBONES'})
    assert any(message in p for p in problems), problems

@pytest.mark.parametrize('output, message', [
    ({'output_type': 'stream', 'name': 'stderr', 'text': 'x'}, 'stderr'),
    ({'output_type': 'error', 'ename': 'ValueError', 'evalue': 'bad', 'traceback': []}, 'error output'),
    ({'output_type': 'stream', 'name': 'stdout', 'text': '\x1b[31mred\x1b[0m'}, 'ANSI'),
    ({'output_type': 'stream', 'name': 'stdout', 'text': 'read /work/main/results/x.csv'}, 'machine path'),
    ({'output_type': 'execute_result', 'data': {'text/plain': 'lib/python3.11/site-packages/torch/jit'}, 'metadata': {}}, 'machine path'),
    ({'output_type': 'stream', 'name': 'stdout', 'text': 'Better model found at epoch 3 with valid_loss value: 0.1.'}, 'SaveModelCallback'),
    ({'output_type': 'display_data', 'data': {'text/plain': 'epoch     train_loss  valid_loss'}, 'metadata': {}}, 'training table'),
    ({'output_type': 'display_data', 'data': {'text/html': '<table class="fastprogress">'}, 'metadata': {}}, 'progress'),
    ({'output_type': 'stream', 'name': 'stdout', 'text': 'x.py:3: RuntimeWarning: invalid value'}, 'a warning'),
])
def test_output_check_catches(tmp_path, output, message):
    p = _nb(tmp_path, '09_x.ipynb', [_code("f()", id='abc', outputs=[output])])
    problems = output_problems(p)
    assert any(message in m and '09_x.ipynb cell 0 (id abc)' in m for m in problems), problems

def test_output_check_passes_clean_outputs(tmp_path):
    ok = [{'output_type': 'stream', 'name': 'stdout', 'text': 'worst group 0.30; see results/erm_baseline.csv and https://example.org/home/x'},
          {'output_type': 'display_data', 'data': {'image/png': 'iVBORw0KGgo/work/', 'text/plain': '<Figure size 600x300 with 1 Axes>'}, 'metadata': {}}]
    assert output_problems(_nb(tmp_path, '09_x.ipynb', [_code("f()", outputs=ok)])) == []
