"ULE: the penalty's second-order gradient against finite differences, its edge cases, the callback's plumbing, and the cost benchmark."
import copy, dataclasses, importlib.util, itertools, subprocess, sys, tempfile, warnings
from pathlib import Path
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import pandas as pd
from spurnotes.groups import GroupInfo, GroupDataset
from spurnotes.models import SmallCNN
from spurnotes.learner import erm_learner
from spurnotes.loaders import group_dls
from fastai.torch_core import set_seed
from fastai.callback.core import Callback
from spurnotes.learner import learner_precision
from spurnotes.ule import (ULE, ULEHistory, NORMS, OUTPUTS, PENALTIES, output_of, teacher_loss, ule_penalty, reinit, METHODS, SELECTIONS,
                           config_name, ule_learner, ule_run, history_rows, saliency_rows, spurious_view, erm_pair_cosine, sweep_rows)

ROOT = Path(__file__).resolve().parents[1]

def _penalty_grad_fd(penalty, norm, output, seed):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (7,), generator=g)
    g_s = torch.randn(7, 5, generator=g, dtype=torch.float64)
    def pen():
        xx = x.clone().requires_grad_()
        p = net(xx)
        return teacher_loss(p, xx, y, F.cross_entropy(p, y), g_s, penalty=penalty, output=output, norm=norm)[1]
    params = list(net.parameters())
    auto = [torch.zeros_like(w) if a is None else a for w, a in zip(params, torch.autograd.grad(pen(), params, allow_unused=True))]  # the last bias never reaches an input gradient
    for w, a in zip(params, auto):
        for idx in itertools.product(*map(range, w.shape)):
            old = w[idx].item()
            with torch.no_grad(): w[idx] = old + 1e-6
            hi = pen().item()
            with torch.no_grad(): w[idx] = old - 1e-6
            lo = pen().item()
            with torch.no_grad(): w[idx] = old
            assert abs((hi - lo) / 2e-6 - a[idx].item()) <= 1e-5 * max(1., abs(a[idx].item())), (w.shape, idx)

@pytest.mark.parametrize('penalty,norm,output', list(itertools.product(PENALTIES, NORMS, OUTPUTS)))
def test_penalty_gradient_matches_finite_differences(penalty, norm, output):
    _penalty_grad_fd(penalty, norm, output, seed=1)

@pytest.mark.parametrize('penalty', PENALTIES)
@pytest.mark.parametrize('norm', NORMS)
def test_zero_student_gradient_no_penalty_no_nan(penalty, norm):
    g_t = torch.randn(5, 3, 6, 6, requires_grad=True)
    p = ule_penalty(g_t, torch.zeros(5, 3, 6, 6), penalty, norm)
    p.backward()
    assert p.item() == 0. and torch.isfinite(g_t.grad).all()
    # a zero teacher gradient too: still defined
    z = torch.zeros(5, 3, 6, 6, requires_grad=True)
    q = ule_penalty(z, torch.randn(5, 3, 6, 6), penalty, norm); q.backward()
    assert torch.isfinite(q) and torch.isfinite(z.grad).all()

def test_bad_inputs_name_what_is_expected():
    with pytest.raises(ValueError, match=r"lam=-1: expected a weight >= 0"): ULE(lam=-1)
    with pytest.raises(ValueError, match=r"penalty='l2': expected one of \['mse', 'cos2', 'cos4'\]"): ULE(penalty='l2')
    with pytest.raises(ValueError, match=r"output='margin': expected one of"): ULE(output='margin')

INFO = GroupInfo(['0-4', '5-9'], ['no square', 'square'])

def _biased(n, seed):
    "Tiny Biased-digits-like data: the class is a blob's position (top or bottom half); a red square on 90% of class 0 and 10% of class 1."
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 3, 14, 14, generator=g) * 0.3
    for i in range(n):
        r = int(torch.randint(0, 5, (1,), generator=g)) + (7 if y[i] else 0)
        c = int(torch.randint(2, 10, (1,), generator=g))
        x[i, 1, r:r + 3, c:c + 3] = 1.
    a = (torch.rand(n, generator=g) < torch.where(y == 0, 0.9, 0.1)).long()
    x[a == 1, 0, :4, :4], x[a == 1, 1:, :4, :4] = 1., 0.
    return GroupDataset(x, y, a)

def _learner(ds, seed, cbs=()):
    set_seed(seed, reproducible=True)
    return erm_learner(group_dls(ds, ds.subset(torch.arange(32)), bs=32, seed=seed, device='cpu'), SmallCNN(3, 2, width=8, hidden=16), INFO,
                       lr=0.05, path=tempfile.mkdtemp(), cbs=list(cbs))

def _grads(model, x, y):
    model.eval(); xx = x.clone().requires_grad_()
    g, = torch.autograd.grad(output_of(model(xx), y, 'logit'), xx)
    return g.flatten(1)

def test_teacher_gradients_differ_from_student_more_than_two_erm_models():
    """On Biased digits (the package's testbed, scikit-learn digits): teacher vs student input gradients less alike than two ERM models'.

    Paired and averaged over seeds, so that it holds on another machine (one draw of this property failed on one: cosine
    0.369 vs 0.324). Per seed, the same student (it never depends on the teacher) is compared with the teacher of the
    penalty (λ = 1) and with the teacher of λ = 0, a second ERM model of the same initialisation and batches: only the
    penalty differs. The mean of the per-seed differences must clear its own standard error (here it is about 2 of them)."""
    import numpy as np
    torch.set_num_threads(1)
    from spurnotes.datasets import load_dataset
    data = load_dataset('biased_digits', seed=0, size=28, source='sklearn')
    test = data['test_biased']
    def fit(seed, cbs=()):
        set_seed(seed, reproducible=True)
        l = erm_learner(data.dls(bs=64, seed=seed, device='cpu'), SmallCNN(3, 2, width=8, hidden=16), data.info, lr=0.05,
                        path=tempfile.mkdtemp(), cbs=list(cbs), metrics=[])
        with l.no_bar(), l.no_logging(): l.fit(2)
        return l
    cos = lambda m1, m2: F.cosine_similarity(_grads(m1, test.x, test.y), _grads(m2, test.x, test.y), dim=1).mean().item()
    diffs = []
    for seed in range(3):
        pen, erm = ULE(penalty='cos2'), ULE(penalty='cos2', lam=0.)
        t_pen, t_erm = fit(seed, [pen]).model, fit(seed, [erm]).model
        for a, b in zip(pen.student.state_dict().values(), erm.student.state_dict().values()): assert torch.equal(a, b)   # one student
        diffs.append(cos(t_erm, erm.student) - cos(t_pen, pen.student))
    d = np.array(diffs)
    assert d.mean() > d.std(ddof=1) / np.sqrt(len(d)), diffs

def test_save_load_round_trips_both_models_and_best_checkpoint():
    from fastai.callback.tracker import SaveModelCallback
    ds = _biased(128, 0)
    ule = ULE()
    l = _learner(ds, 0, [ule])
    with l.no_bar(), l.no_logging(): l.fit(2, cbs=[SaveModelCallback(monitor='valid_loss', fname='best', every_epoch=True)])
    saved = torch.load(l.path/l.model_dir/'best_1.pth', weights_only=True)
    s_keys = [k for k in saved if k.startswith('ule_student.')]
    assert len(s_keys) == len(ule.student.state_dict())
    reinit(l.model); reinit(ule.student)
    l.load('best_1')
    for k, v in ule.student.state_dict().items(): assert torch.equal(v, saved['ule_student.' + k])
    for k, v in l.model.state_dict().items(): assert torch.equal(v, saved[k])

def test_student_on_the_learners_device_and_follows_the_schedule():
    import fastai.callback.schedule  # noqa: F401 (fit_one_cycle)
    ule = ULE(output='logit')
    l = _learner(_biased(64, 0), 0, [ule])
    lrs = []
    class _Watch(Callback):
        order = ULE.order + 1
        def after_batch(self):
            if self.training: lrs.append((ule.sopt.hypers[0]['lr'], self.learn.opt.hypers[0]['lr']))
    with l.no_bar(), l.no_logging(): l.fit_one_cycle(2, 0.05, cbs=[_Watch()])
    assert len(lrs) == 4 and all(a == b for a, b in lrs) and len(set(a for a, _ in lrs)) > 1
    assert next(ule.student.parameters()).device == next(l.model.parameters()).device

def test_cost_benchmark_runs_small(tmp_path):
    "The benchmark's per-repetition ratios: one row per repetition and step, each ratio to the same repetition's ERM step; a ULE step (two models, a double backward) is slower than ERM by the median of the paired ratios."
    spec = importlib.util.spec_from_file_location('ule_cost', ROOT/'benchmarks'/'ule_cost.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    reps = pd.DataFrame(mod.repetitions(reps=5, arch='small_cnn', bs=8, size=28, threads=1))
    assert list(reps.step.unique()) == ['erm', 'naive', 'ule_logit', 'ule_loss'] and len(reps) == 20
    assert (reps[reps.step == 'erm'].time_ratio == 1.).all()
    for _, r in reps.iterrows():   # each ratio is its own repetition's
        assert r.time_ratio == pytest.approx(r.ms / reps[(reps.rep == r.rep) & (reps.step == 'erm')].ms.item())
    assert (reps[reps.step != 'erm'].groupby('step').time_ratio.median() > 1).all()
    rows = mod.main(reps=5, arch='small_cnn', bs=8, size=28, threads=1, with_memory=False, csv=tmp_path/'reps.csv')
    assert [r['step'] for r in rows] == ['erm', 'naive', 'ule_logit', 'ule_loss'] and len(pd.read_csv(tmp_path/'reps.csv')) == 20
    out = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'ule_cost.py'), '--small', '--no-memory', '--format', 'contiguous'], capture_output=True, text=True, check=True).stdout
    assert 'x ERM' in out and 'ule_loss' in out

# --- precision: the student's passes run under the learner's autocast ---------------------------------------------
from cpu_amp import CPUMixedPrecision

class _Dtypes(Callback):
    "The dtype of the first conv layer's output, per model, on every training batch (a forward hook)."
    order = ULE.order + 1
    def before_fit(self):
        self.seen = {'teacher': [], 'student': []}
        ule = self.learn.ule
        self.hooks = [m.features[0].register_forward_hook(lambda mod, i, o, who=who: self.seen[who].append(o.dtype) if mod.training else None)
                      for who, m in [('teacher', self.learn.model), ('student', ule.student)]]
    def after_fit(self):
        for h in self.hooks: h.remove()

def _fit_precision(prec, output='loss', cbs=()):
    ule, watch = ULE(output=output, penalty='cos2'), _Dtypes()
    l = _learner(_biased(128, 0), 0, [ule])
    if prec == 'bf16-cpu': l.add_cb(CPUMixedPrecision(amp_mode='bf16'))
    elif prec == 'fp16-cpu': l.add_cb(CPUMixedPrecision(amp_mode='fp16'))
    elif prec == 'fastai-bf16': l = l.to_bf16()
    losses = []
    class _Loss(Callback):
        order = ULE.order + 2
        def after_loss(self): losses.append(self.learn.loss.detach().float())
    with warnings.catch_warnings(), l.no_bar(), l.no_logging():
        warnings.simplefilter('ignore')    # fastai's to_bf16 on a CPU: "CUDA is not available, disabling autocast"
        l.fit(1, cbs=[watch, _Loss(), *cbs])
    return l, ule, watch.seen, torch.stack(losses)

@pytest.mark.parametrize('output', ['loss', 'logit'])
def test_student_and_teacher_under_the_learners_bf16_autocast(output):
    l, ule, seen, losses = _fit_precision('bf16-cpu', output)
    assert ule.dtype == torch.bfloat16 and ule._scale == 1.   # read in before_fit (fastai clears its autocast after the fit)
    assert len(seen['student']) == 4 and set(seen['student']) == {torch.bfloat16}   # every training batch, in bf16
    assert set(seen['teacher']) == {torch.bfloat16}
    assert torch.isfinite(losses).all() and torch.isfinite(ule.penalty_value) and torch.isfinite(ule.student_loss)
    assert all(p.dtype == torch.float32 for p in ule.student.parameters())   # autocast: fp32 weights, bf16 compute

def test_full_precision_and_fastai_bf16_on_a_cpu_stay_float32():
    "No MixedPrecision: float32. fastai's to_bf16 on a CPU-only machine: its (CUDA) autocast is off, so both models stay float32."
    for prec in ['fp32', 'fastai-bf16']:
        l, ule, seen, losses = _fit_precision(prec)
        assert set(seen['student']) == set(seen['teacher']) == {torch.float32}, (prec, seen)
        assert ule.dtype is None or torch.cuda.is_available()
        assert torch.isfinite(losses).all()

def test_fp16_uses_a_loss_scale_and_trains():
    l, ule, seen, losses = _fit_precision('fp16-cpu')
    assert set(seen['student']) == set(seen['teacher']) == {torch.float16}
    assert ule._scale > 1 and torch.isfinite(losses).all()
    assert all(torch.isfinite(p).all() for p in [*l.model.parameters(), *ule.student.parameters()])

@pytest.mark.parametrize('prec', ['fp32', 'fastai-bf16', 'bf16-cpu', 'fp16-cpu'])
def test_ule_reads_the_learners_precision(prec):
    "One reader of the precision: during a fit the callback's dtype is `learner_precision`'s, and the student's forward passes run in it."
    read = []
    class _Read(Callback):
        order = ULE.order + 1
        def after_loss(self):
            if self.training: read.append(learner_precision(self.learn))
    l, ule, seen, losses = _fit_precision(prec, cbs=[_Read()])
    want = {'fp32': None, 'fastai-bf16': torch.bfloat16 if torch.cuda.is_available() else None,
            'bf16-cpu': torch.bfloat16, 'fp16-cpu': torch.float16}[prec]
    assert set(read) == {want} and ule.dtype == want, (prec, set(read), ule.dtype)
    assert set(seen['student']) == {want or torch.float32}

def _unscaled_penalty(net, x, y, g_s, output, norm):
    "The MSE penalty of the teacher's input gradient computed without any scale: autograd on the unscaled output, then `ule_penalty`."
    xx = x.clone().requires_grad_(); p = net(xx)
    out = F.cross_entropy(p, y) * len(y) if output == 'loss' else output_of(p, y, output)
    g_t, = torch.autograd.grad(out, xx, create_graph=True)
    return ule_penalty(g_t, g_s, 'mse', norm)

@pytest.mark.parametrize('output', OUTPUTS)
@pytest.mark.parametrize('norm', NORMS)
def test_teacher_loss_divides_out_its_scale(norm, output):
    "fp16's loss scale multiplies the teacher's input-gradient pass; `teacher_loss` must divide it out: its penalty and the total loss's parameter gradients at scale 1024 are those of an unscaled pass, computed independently. With norm='none' nothing else cancels the scale."
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y, g_s = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g), torch.randn(6, 4, generator=g, dtype=torch.float64)
    ref = _unscaled_penalty(net, x, y, g_s, output, norm)
    ref_grads = torch.autograd.grad(ref, list(net.parameters()), allow_unused=True)
    for scale in [1., 1024.]:
        xx = x.clone().requires_grad_(); p = net(xx)
        total, pen = teacher_loss(p, xx, y, F.cross_entropy(p, y), g_s, lam=1., penalty='mse', output=output, norm=norm, scale=scale)
        torch.testing.assert_close(pen, ref, rtol=1e-9, atol=1e-12, msg=lambda m: f"scale={scale}: {m}")
        grads = torch.autograd.grad(pen, list(net.parameters()), allow_unused=True)
        for a, b in zip(grads, ref_grads):
            if b is not None: torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

# --- the experiment functions at tiny sizes ------------------------------------------------------------------------
MAIN = dict(penalty='cos2', output='loss', norm='l2', lam=1., warmup=1)
TINY = dict(epochs=2, arch='small_cnn', bs=32)

@pytest.fixture(scope='module')
def tiny_data():
    "Biased digits from scikit-learn's digits, 96 images per split."
    from spurnotes.datasets import load_dataset
    torch.set_num_threads(1)
    data = load_dataset('biased_digits', seed=0, size=28, source='sklearn')
    return dataclasses.replace(data, splits={k: v.subset(torch.arange(min(len(v), 96))) for k, v in data.splits.items()})

@pytest.fixture(scope='module')
def tiny_run(tiny_data): return ule_run(tiny_data, 0, MAIN, **TINY)

def _accuracies(model, ds):
    "Plain accuracy, group accuracies (groups present) of `model` on `ds`, by a plain forward pass."
    model.eval()
    with torch.no_grad(): right = model(ds.x).argmax(1) == ds.y
    g = ds.y * 2 + ds.a
    return right.float().mean().item(), [right[g == k].float().mean().item() for k in range(4) if (g == k).any()]

def test_history_rows_are_the_models_accuracies(tiny_data, tiny_run):
    rows = pd.DataFrame(history_rows(tiny_run, 0, config_name(MAIN)))
    assert len(rows) == 2 * len(SELECTIONS) * len(tiny_data.test_splits) * 4 + 2   # models x selections x test splits x summaries, + training rows
    last = rows[rows.selection == 'last epoch']
    assert (last.epoch == 2).all() and set(rows.config) == {'cos2, loss, l2, λ=1, warm-up 1'}
    for model in ['student', 'teacher']:
        for split in tiny_data.test_splits:
            plain, groups = _accuracies(copy.deepcopy(tiny_run[model]), tiny_data[split])
            r = last[(last.method == METHODS[model]) & (last.split == split)].set_index('metric').value
            assert r['average (plain)'] == pytest.approx(plain) and r['worst group'] == pytest.approx(min(groups))
            assert r['average (group mean)'] == pytest.approx(sum(groups) / len(groups))
        train = rows[(rows.method == METHODS[model]) & (rows.split == 'train')].value.item()
        assert train == pytest.approx(_accuracies(copy.deepcopy(tiny_run[model]), tiny_data.train)[0])
        h = tiny_run['hist']
        for sel, crit in list(SELECTIONS.items())[1:]:   # the validation rules pick an epoch whose validation metric is the best
            e = rows[(rows.method == METHODS[model]) & (rows.selection == sel)].epoch.unique().item()
            v = h[(h.model == model) & (h.split == 'valid') & (h.metric == crit)].set_index('epoch').value
            assert v[e] == v.max()

def test_saliency_rows_measure_the_square(tiny_data, tiny_run):
    ds, region = spurious_view(tiny_data)
    assert len(ds) > 0 and (ds.a == 1).all() and region.shape == (len(ds), 28, 28) and region[0].sum() > 0
    rows = saliency_rows(tiny_run, 0, 'x')
    assert [r['metric'] for r in rows] == ['saliency share on spurious region (input gradient)', 'saliency share on spurious region (XGradCAM)'] * 2 + ['input-gradient cosine to the student']
    assert all(0 <= r['value'] <= 1 for r in rows[:4]) and -1 <= rows[4]['value'] <= 1
    assert erm_pair_cosine(tiny_run, tiny_run) == pytest.approx(1., abs=1e-5)   # a student with itself

def test_sweep_rows_rerun_the_configuration_exactly(tiny_data, tiny_run):
    "A sweep row with the main configuration and seed is the main run again, bit for bit; the reimplementation preset trains both models with Adam."
    teacher = [r for r in history_rows(tiny_run, 0, config_name(MAIN)) if r['method'] == METHODS['teacher']]
    assert sweep_rows(tiny_data, 0, MAIN, **TINY) == teacher
    preset = dict(preset='reimplementation', warmup=0)
    rows = sweep_rows(tiny_data, 0, preset, epochs=1, arch='small_cnn', bs=32)
    assert {r['method'] for r in rows} == set(METHODS.values()) and {r['config'] for r in rows} == {'reimplementation (Adam)'}
    from fastai.optimizer import Adam
    learn = ule_learner(tiny_data, 0, preset, arch='small_cnn', opt='adam')
    assert learn.opt_func.func is Adam and learn.ule.weighting == 'convex'
    with pytest.raises(ValueError, match="opt='rmsprop': expected 'sgd' or 'adam'"): ule_learner(tiny_data, 0, MAIN, opt='rmsprop')

def test_claims_are_decided_on_per_seed_effects():
    "Each claims row's verdict is `decide` on effects paired by seed (`claim_row`, with the halves column); the cost rows on per-repetition ratios, one row per bound."
    from spurnotes.ule import gain_claim, saliency_claim, cosine_claim, cost_claims
    cfg = config_name(dict(penalty='cos2', output='loss', norm='l2', lam=1., warmup=1))
    acc = pd.DataFrame([dict(dataset='d', split=sp, metric='worst group', method=METHODS[m], selection=sel, config=cfg, seed=s, value=v)
                        for sp, gains in [('t1', [.3, .28, .26]), ('t2', [-.1, -.05, .0]), ('t3', [.3, .25, .2])] for sel in SELECTIONS for s in range(3)
                        for m, v in [('student', .2 + .1 * s), ('teacher', .2 + .1 * s + gains[s])]])
    assert [gain_claim(acc, cfg, 'd', t)['verdict'] for t in ['t1', 't2', 't3']] == ['reproduced', 'not reproduced here', 'inconclusive']
    assert gain_claim(acc, cfg, 'd', 't1', 'validation average (no group labels)')['verdict'] == 'reproduced'
    sal = pd.DataFrame([dict(dataset='d', seed=s, method=METHODS[m], metric='saliency share on spurious region (input gradient)', value=v * f)
                        for s, v in enumerate([.5, .6, .4]) for m, f in [('student', 1.), ('teacher', .6 + .01 * s)]] +
                       [dict(dataset='d', seed=s, method=METHODS['teacher'], metric='input-gradient cosine to the student', value=v) for s, v in enumerate([.05, .04, .06])])
    assert saliency_claim(sal, 'd')['verdict'] == 'reproduced' and saliency_claim(sal, 'e') is None
    assert cosine_claim(sal, 'd', pd.Series({0: .15, 1: .14, 2: .13}))['verdict'] == 'reproduced'
    assert cosine_claim(sal, 'd', pd.Series({0: .01, 1: .02, 2: .015}))['verdict'] == 'not reproduced here'
    with pytest.raises(ValueError, match='seeds differ'): cosine_claim(sal, 'd', pd.Series({0: .15, 1: .14}))
    assert 'halves' in gain_claim(acc, cfg, 'd', 't1')
    reps = pd.DataFrame(dict(rep=[0, 1, 2] * 2, step=['naive'] * 3 + ['ule_loss'] * 3, time_ratio=[3.9, 4., 3.8, 3.5, 3.6, 3.4]))
    assert [r['verdict'] for r in cost_claims(reps, 'loss')] == ['reproduced', 'reproduced']
    assert [r['verdict'] for r in cost_claims(reps.assign(time_ratio=reps.time_ratio + 2), 'loss')] == ['reproduced', 'not reproduced here']
    assert [r['verdict'] for r in cost_claims(reps[reps.rep == 0], 'loss')] == ['inconclusive'] * 2   # one repetition: no interval


def test_seeds_in_workers_equal_seeds_alone():
    "`ule_seed` through `run_seeds` in two worker processes gives each seed's rows exactly as a call in this process."
    from spurnotes.seeds import run_seeds
    from spurnotes.ule import ule_seed
    kw = dict(dataset='biased_digits', cfg={**MAIN, 'warmup': 0}, data_kw=dict(source='sklearn'), epochs=1, arch='small_cnn', bs=64)
    par = run_seeds(ule_seed, [0, 1], jobs=2, **kw)
    alone = run_seeds(ule_seed, [1], jobs=1, **kw)[0]   # in this process, one thread as in a worker
    assert par[1]['rows'] == alone['rows'] and par[0]['rows'] != par[1]['rows']
    for a, b in zip(par[1]['teacher'].state_dict().values(), alone['teacher'].state_dict().values()): assert torch.equal(a, b)

def test_bad_parameter_fails_fast_in_the_validation_cell(tmp_path):
    "A bad `-p` stops the notebook in the validation cell after the parameters, with one line in the user's terms, before any training."
    import json, time
    from spurnotes.cli import run_notebooks, NotebookError
    t0 = time.time()
    with pytest.raises(NotebookError) as e:
        run_notebooks(['05_ule'], {'epochs': 2, 'warmup': 2}, out=tmp_path, nbs_dir=ROOT/'nbs', progress=False)
    assert e.value.evalue == "warmup=2 with epochs=2: expected fewer warm-up epochs than epochs (the teacher trains after the warm-up)."
    assert e.value.ename == 'ParamError' and time.time() - t0 < 60
    cells = json.loads((tmp_path/'notebooks'/'05_ule.ipynb').read_text())['cells']
    failed = [c for c in cells if any(o.get('output_type') == 'error' for o in c.get('outputs', []))]
    assert len(failed) == 1 and 'need_seeds' in ''.join(failed[0]['source'])   # the validation cell, not a later one

# --- the cheaper options (issue 20, part 8): penalty on a sub-batch, every k-th step -------------------------------
from spurnotes.ule import sub_batch_idx, sub_batch_penalty, penalty_total, kept_stats, student_step_grads

class _NoBN(nn.Module):
    "A small CNN with no batch-dependent layer (each example's gradients are its own): the sub-batch's penalty is then exactly the full penalty's terms."
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    def forward(self, x): return self.net(x)

def _fit_states(seed, cbs, epochs=2, n=128):
    "Teacher and student state dicts after a fit on `_biased(n, 0)`."
    l = _learner(_biased(n, 0), seed, cbs)
    with l.no_bar(), l.no_logging(): l.fit(epochs)
    ule = next(c for c in l.cbs if isinstance(c, ULE))
    return {k: v.clone() for k, v in l.model.state_dict().items() if not k.startswith('ule_student.')}, {k: v.clone() for k, v in ule.student.state_dict().items()}

def _equal_states(a, b): return all(torch.equal(a[k], b[k]) for k in a)

@pytest.mark.parametrize('penalty', ['mse', 'cos2'])
@pytest.mark.parametrize('output,norm', [('loss', 'l2'), ('logit', 'none'), ('sum', 'maxabs')])
def test_sub_batch_penalty_is_unbiased(penalty, output, norm):
    "For a penalty that is a mean over examples: the mean of the penalty's parameter gradients over the 4 sub-batches of a partition equals the full batch's (float64)."
    torch.manual_seed(0)
    net = _NoBN().double()
    x, y = torch.rand(12, 3, 14, 14, dtype=torch.float64), torch.randint(0, 2, (12,))
    a = torch.zeros_like(y)
    g_s = torch.randn(12, 3, 14, 14, dtype=torch.float64)
    g_s[3] = 0.   # an example on which the student has no gradient
    loss_func = lambda p, y, a: F.cross_entropy(p, y)
    params = list(net.parameters())
    xx = x.clone().requires_grad_(); p = net(xx)
    _, full = teacher_loss(p, xx, y, F.cross_entropy(p, y), g_s, penalty=penalty, output=output, norm=norm)
    grad = lambda q: [torch.zeros_like(w) if g is None else g for w, g in zip(params, torch.autograd.grad(q, params, allow_unused=True))]  # the last bias never reaches an input gradient
    ref = grad(full)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    parts = [perm[i:i + 3] for i in range(0, 12, 3)]
    pens = [sub_batch_penalty(net, x[i], (y[i], a[i]), loss_func, g_s[i], penalty, output, norm) for i in parts]
    torch.testing.assert_close(torch.stack(pens).mean(), full, rtol=1e-12, atol=1e-14)
    grads = [grad(q) for q in pens]
    for k, r in enumerate(ref):
        torch.testing.assert_close(sum(g[k] for g in grads) / len(grads), r, rtol=1e-10, atol=1e-12)

def test_sub_batch_draws_are_seeded_and_keep_batchnorm_statistics():
    i1, i2 = (sub_batch_idx(128, 0.25, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(i1, i2) and len(i1) == 32 and len(set(i1.tolist())) == 32 and (i1.diff() > 0).all()
    assert len(sub_batch_idx(10, 0.01)) == 1 and torch.equal(sub_batch_idx(7, 1.), torch.arange(7))
    m = SmallCNN(3, 2, width=4, hidden=8).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with kept_stats(m): m(torch.rand(8, 3, 14, 14))
    assert _equal_states(before, m.state_dict())
    m(torch.rand(8, 3, 14, 14)); assert not _equal_states(before, m.state_dict())   # outside it the forward pass updates them

def test_options_at_their_defaults_are_todays_path_exactly():
    "`penalty_frac=1, penalty_every=1` is the default: the same callback path, bit for bit (both models after two epochs)."
    ref = _fit_states(0, [ULE(penalty='cos2')])
    assert ULE(penalty_frac=1., penalty_every=1).exact
    for a, b in zip(ref, _fit_states(0, [ULE(penalty='cos2', penalty_frac=1., penalty_every=1)])): assert _equal_states(a, b)

@pytest.mark.parametrize('output', ['loss', 'logit'])
def test_the_student_is_the_same_whatever_the_option(output):
    "The student never depends on the teacher: its weights after a fit are the same bits with or without the cheaper options (its input gradient is skipped on the steps without the penalty)."
    _, ref = _fit_states(0, [ULE(output=output, warmup=1)], epochs=2)
    for kw in [dict(penalty_frac=0.25), dict(penalty_every=3), dict(penalty_frac=0.5, penalty_every=2)]:
        _, s = _fit_states(0, [ULE(output=output, warmup=1, **kw)], epochs=2)
        assert _equal_states(ref, s), kw

def _nobn_learner(seed, cbs, n=64):
    set_seed(seed, reproducible=True)
    ds = _biased(n, 0)
    return erm_learner(group_dls(ds, ds.subset(torch.arange(32)), bs=32, seed=seed, device='cpu'), _NoBN(), INFO, lr=0.05, path=tempfile.mkdtemp(), cbs=list(cbs))

def test_sub_batch_penalty_in_the_callback_is_the_drawn_sub_batchs():
    "With `penalty_frac`, the teacher's total loss is its loss on the whole batch + λ x `sub_batch_penalty` on the sub-batch drawn from a generator of `penalty_seed`, with the student's input gradients of those examples; a fit is reproducible from the seed."
    gen, out = torch.Generator().manual_seed(5), []
    class _Expect(Callback):   # before ULE's after_loss: the penalty it should compute, from copies of both models
        order = ULE.order - 1
        def after_loss(self):
            if not self.training: return
            ule, x = self.learn.ule, self.xb[0]
            _, _, g, _ = student_step_grads(copy.deepcopy(ule.student).train(), x.detach().clone().requires_grad_(), self.yb, self.learn.loss_func, 'loss')
            i = sub_batch_idx(len(x), 0.25, gen)
            self.expect = (self.learn.loss_grad.item(), sub_batch_penalty(copy.deepcopy(self.learn.model), x[i], tuple(t[i] for t in self.yb), self.learn.loss_func, g[i], 'cos2', 'loss', 'l2').item())
    class _Got(Callback):
        order = ULE.order + 1
        def after_loss(self):
            if self.training: out.append((exp.expect, self.learn.loss.item(), self.learn.ule.penalty_value.item()))
    exp = _Expect()
    l = _nobn_learner(0, [ULE(penalty='cos2', lam=2., penalty_frac=0.25, penalty_seed=5)])
    with l.no_bar(), l.no_logging(): l.fit(1, cbs=[exp, _Got()])
    assert len(out) == 2
    for (loss, pen), total, got in out:
        assert got == pytest.approx(pen, rel=1e-6) and total == pytest.approx(loss + 2 * pen, rel=1e-6) and pen > 0
    fit = lambda seed: _fit_learner_states(_nobn_learner(0, [ULE(penalty='cos2', penalty_frac=0.25, penalty_seed=seed)]))
    a, b, c = fit(5), fit(5), fit(6)
    assert _equal_states(a, b) and not _equal_states(a, c)

def _fit_learner_states(l, epochs=1):
    with l.no_bar(), l.no_logging(): l.fit(epochs)
    return {k: v.clone() for k, v in l.model.state_dict().items() if not k.startswith('ule_student.')}

def test_every_kth_step_off_steps_are_erm_on_steps_weighted_k():
    "`penalty_every=2`: on the steps without the penalty the teacher's parameter gradients are ERM's on the same batch; on the others the total is loss + 2λ x penalty."
    log = []
    class _Check(Callback):
        order = ULE.order + 1
        def after_loss(self):
            if self.training: self._loss = self.learn.loss_grad
        def after_backward(self):
            ule = self.learn.ule
            ref = copy.deepcopy(self.learn.model).train()
            for p in ref.parameters(): p.grad = None
            F.cross_entropy(ref(self.xb[0].detach()), self.yb[0]).backward()
            same = all(torch.equal(p.grad, q.grad) for p, q in zip(self.learn.model.parameters(), ref.parameters()) if p.grad is not None)
            log.append((ule._on, same, ule.penalty_value.item() if ule._on else None))
    ule = ULE(penalty='cos2', lam=1.5, penalty_every=2)
    l = _learner(_biased(128, 0), 0, [ule])
    with l.no_bar(), l.no_logging(): l.fit(1, cbs=[_Check()])
    assert [o for o, _, _ in log] == [True, False, True, False]
    assert all(same for o, same, _ in log if not o) and not any(same for o, same, _ in log if o)
    # the weight on the penalty's steps: total = loss + every * lam * penalty
    loss, pen = torch.tensor(0.7), torch.tensor(0.2)
    assert penalty_total(loss, pen, 1.5, 'add', 2).item() == pytest.approx(0.7 + 2 * 1.5 * 0.2)
    assert penalty_total(loss, pen, 0.9, 'convex', 4).item() == pytest.approx(0.9 * 0.7 + 4 * 0.1 * 0.2)
    assert penalty_total(loss, pen, 1.5, 'add').item() == (loss + 1.5 * pen).item()

def test_every_k_with_k_1_and_the_convex_weighting_off_steps():
    "`penalty_every=1` is today's path; with 'convex' weighting the off steps' loss is λ x loss (the same weight as on the penalty's steps)."
    losses = []
    class _L(Callback):
        order = ULE.order + 1
        def after_loss(self):
            if self.training: losses.append((self.learn.ule._on, self.learn.loss_grad.item()))
    ule = ULE.reimplementation(penalty_every=2)
    l = _learner(_biased(64, 0), 0, [ule])
    with l.no_bar(), l.no_logging(): l.fit(1, cbs=[_L()])
    off = [v for o, v in losses if not o]
    assert len(off) == 1 and ule.student_loss is not None and 0 < off[0] < 0.9 * 0.75   # 0.9 x a cross-entropy near log 2

def test_bad_option_values_name_what_is_expected():
    with pytest.raises(ValueError, match=r"penalty_frac=0: expected a fraction of the batch in \(0, 1\]"): ULE(penalty_frac=0)
    with pytest.raises(ValueError, match=r"penalty_frac=1.5: expected a fraction of the batch in \(0, 1\]"): ULE(penalty_frac=1.5)
    with pytest.raises(ValueError, match=r"penalty_every=0: expected a whole number of steps >= 1"): ULE(penalty_every=0)
    with pytest.raises(ValueError, match=r"penalty_every=1.5: expected a whole number of steps >= 1"): ULE(penalty_every=1.5)

def test_student_step_grads_without_input_gradient_same_parameter_gradients():
    torch.manual_seed(0)
    s = SmallCNN(3, 2, width=4, hidden=8).train()
    x, y = torch.rand(8, 3, 14, 14), torch.randint(0, 2, (8,))
    lf = lambda p, y: F.cross_entropy(p, y)
    for output in OUTPUTS:
        st = copy.deepcopy(s.state_dict())
        _, _, g, pg = student_step_grads(s, x.clone().requires_grad_(), (y,), lf, output)
        s.load_state_dict(st)
        _, _, g0, pg0 = student_step_grads(s, x.clone(), (y,), lf, output, input_grad=False)
        s.load_state_dict(st)
        assert g0 is None and g.shape == x.shape and all(torch.equal(a, b) for a, b in zip(pg, pg0)), output

def test_cost_benchmark_options_runs_small(tmp_path):
    "`--options`: the option kinds on one arch, an every-k call's time divided by k, the table's interval and target column; `lite_top` takes the body's features."
    spec = importlib.util.spec_from_file_location('ule_cost', ROOT/'benchmarks'/'ule_cost.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    reps = pd.DataFrame(mod.repetitions(reps=3, arch='small_cnn', bs=8, size=28, threads=1, kinds=mod.OPTION_KINDS))
    assert list(reps.step.unique()) == mod.OPTION_KINDS and (reps[reps.step == 'erm'].time_ratio == 1.).all()
    assert mod.steps_per_call('ule_loss_every4') == 4 and mod.steps_per_call('ule_loss_sub4') == 1
    tab = mod.main_options(reps=3, archs=['small_cnn'], bs=8, csv=tmp_path/'o.csv')
    assert [r['step'] for r in tab] == mod.OPTION_KINDS and len(pd.read_csv(tmp_path/'o.csv')) == 3 * len(mod.OPTION_KINDS)
    assert all(r['low'] <= r['ratio_mean'] <= r['high'] and r['meets_target'] in ('yes', 'no', 'undecided') for r in tab[1:])
    t, s, *_ , x, y = mod.setup('lite_top', bs=4)
    assert x.shape == (4, 192, 3, 3) and t(x).shape == (4, 2) and t is not s

def test_config_name_names_the_cheaper_options():
    assert config_name(MAIN) == 'cos2, loss, l2, λ=1, warm-up 1'
    assert config_name({**MAIN, 'penalty_frac': 0.25}) == 'cos2, loss, l2, λ=1, warm-up 1, penalty on 0.25 of each batch'
    assert config_name({**MAIN, 'penalty_every': 4, 'penalty_frac': 1.}) == 'cos2, loss, l2, λ=1, warm-up 1, penalty every 4 steps'
    from spurnotes.ule import ule_callback
    cb = ule_callback({**MAIN, 'penalty_every': 4})
    assert cb.penalty_every == 4 and cb.penalty_frac == 1 and not cb.exact

@pytest.mark.parametrize('kw', [dict(penalty_frac=0.5), dict(penalty_every=2)])
def test_cheaper_options_under_the_cpus_bf16_autocast(kw):
    "The sub-batch's forward pass and the student's follow the learner's autocast; the penalty stays finite."
    ule = ULE(penalty='cos2', **kw)
    l = _learner(_biased(128, 0), 0, [ule])
    l.add_cb(CPUMixedPrecision(amp_mode='bf16'))
    seen = []
    h = l.model.features[0].register_forward_hook(lambda mod, i, o: seen.append((len(o), o.dtype)) if mod.training else None)
    with warnings.catch_warnings(), l.no_bar(), l.no_logging():
        warnings.simplefilter('ignore')
        l.fit(1)
    h.remove()
    assert ule.dtype == torch.bfloat16 and torch.isfinite(ule.penalty_value) and all(d == torch.bfloat16 for _, d in seen)
    if 'penalty_frac' in kw: assert sorted({n for n, _ in seen}) == [16, 32]   # the whole batch's forward pass and the sub-batch's

# --- the finite-difference variant (a named variant: another, smoothed penalty) -------------------------------------
from spurnotes.ule import fd_teacher_loss

@pytest.mark.parametrize('penalty,output,norm', [('mse', 'loss', 'l2'), ('cos2', 'logit', 'none'), ('cos2', 'loss', 'l2')])
def test_fd_variant_matches_the_exact_penalty_gradient_in_float64_at_a_tiny_step(penalty, output, norm):
    "On a smooth float64 network (tanh, no BatchNorm), the surrogate's parameter gradient is the loss's + λ x the exact penalty gradient, to the finite difference's error."
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 5, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x, y = torch.rand(6, 3, 5, 5, dtype=torch.float64), torch.randint(0, 2, (6,))
    g_s = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    lf = lambda p, y, a: F.cross_entropy(p, y)
    params = list(net.parameters())
    gr = lambda q: [torch.zeros_like(w) if g is None else g for w, g in zip(params, torch.autograd.grad(q, params, allow_unused=True))]
    xx = x.clone().requires_grad_(); p = net(xx)
    total, pen = teacher_loss(p, xx, y, F.cross_entropy(p, y), g_s, lam=2., penalty=penalty, output=output, norm=norm)
    exact = gr(total)
    xx = x.clone().requires_grad_(); p = net(xx)
    sur, pen_fd = fd_teacher_loss(net, p, xx, (y, torch.zeros_like(y)), lf, F.cross_entropy(p, y), g_s, 2., penalty, output, norm, step=1e-6)
    assert pen_fd.item() == pytest.approx(pen.item(), rel=1e-12)
    for a, b in zip(gr(sur), exact): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)

def test_fd_variant_in_the_callback_trains_and_is_named():
    ule = ULE(penalty='cos2', penalty_grad='fd')
    assert not ule.exact and config_name({**MAIN, 'penalty_grad': 'fd'}) == 'cos2, loss, l2, λ=1, warm-up 1, finite-difference penalty (step 0.01)'
    t, s = _fit_states(0, [ule], epochs=1)
    _, s_ref = _fit_states(0, [ULE(penalty='cos2')], epochs=1)
    assert _equal_states(s, s_ref) and torch.isfinite(ule.penalty_value) and all(torch.isfinite(v).all() for v in t.values())
    with pytest.raises(ValueError, match="penalty_grad='hvp': expected 'exact' or 'fd'"): ULE(penalty_grad='hvp')
    with pytest.raises(ValueError, match=r"penalty_grad='fd' with penalty_frac=0.5: the finite difference takes the whole batch"): ULE(penalty_grad='fd', penalty_frac=0.5)
    with pytest.raises(ValueError, match=r"fd_step=0: expected a perturbation > 0"): ULE(penalty_grad='fd', fd_step=0)

def test_options_effect_summary_pairs_by_seed():
    "`benchmarks/ule_options_effect.py`'s summary: per-seed differences of the teachers, `decide` on them, ULE's own effect (teacher - student of the exact runs), the verdict."
    spec = importlib.util.spec_from_file_location('ule_options_effect', ROOT/'benchmarks'/'ule_options_effect.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    rows = []
    for seed in range(4):
        base = dict(dataset='d', split='test', selection='last epoch', seed=seed, run_seconds=1.)
        rows += [dict(base, option='exact', method=METHODS['student'], metric='worst group', value=.6 + .01 * seed),
                 dict(base, option='exact', method=METHODS['teacher'], metric='worst group', value=.3 + .01 * seed),    # ULE's effect: -30 pts
                 dict(base, option='sub4', method=METHODS['teacher'], metric='worst group', value=.3 + .01 * seed + [.01, -.01, .02, -.02][seed]),
                 dict(base, option='exact', method=METHODS['teacher'], metric=mod.COS, value=.05),
                 dict(base, option='sub4', method=METHODS['teacher'], metric=mod.COS, value=.05 + .1 * seed),              # the cosine moves
                 dict(base, option='exact', method='two ERM models', metric='input-gradient cosine, two ERM models', value=.15)]
    tab = mod.summary(pd.DataFrame(rows)).set_index('metric')
    wg, cos = tab.iloc[0], tab.iloc[1]
    assert wg['difference per seed'] == '+1.0, -1.0, +2.0, -2.0' and wg['unchanged within seed noise'] == 'yes'
    assert wg["ULE's own effect"].startswith('-30.0 pts') and wg['exact (mean)'] == pytest.approx(.315)
    assert cos['unchanged within seed noise'] == 'no' and cos["ULE's own effect"].startswith('+0.100')
