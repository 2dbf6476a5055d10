"ULE: the penalty's second-order gradient against finite differences, its edge cases, the callback's plumbing, and the cost benchmark."
import copy, importlib.util, itertools, subprocess, sys, tempfile, warnings
from pathlib import Path
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from spurnotes.groups import GroupInfo, GroupDataset
from spurnotes.models import SmallCNN
from spurnotes.learner import erm_learner
from spurnotes.loaders import group_dls
from fastai.torch_core import set_seed
from fastai.callback.core import Callback
from spurnotes.ule import ULE, ULEHistory, NORMS, OUTPUTS, PENALTIES, output_of, teacher_loss, ule_penalty, reinit

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
    "On Biased digits (the package's testbed, scikit-learn digits): teacher vs student input gradients less alike than two ERM models'."
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
    erm = [fit(seed).model for seed in [0, 1]]
    ule = ULE(penalty='cos2')
    teacher = fit(2, [ule]).model
    cos = lambda m1, m2: F.cosine_similarity(_grads(m1, test.x, test.y), _grads(m2, test.x, test.y), dim=1).mean().item()
    erm_pair, ule_pair = cos(*erm), cos(teacher, ule.student)
    assert ule_pair < erm_pair, (ule_pair, erm_pair)

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

def test_cost_benchmark_runs_small():
    spec = importlib.util.spec_from_file_location('ule_cost', ROOT/'benchmarks'/'ule_cost.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    rows = mod.main(reps=2, arch='small_cnn', bs=8, size=28, threads=1, with_memory=False)
    assert [r['step'] for r in rows] == ['erm', 'naive', 'ule_logit', 'ule_loss']
    assert all(r['time_ratio'] > 1 for r in rows[1:])
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

def _fit_precision(prec, output='loss'):
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
        l.fit(1, cbs=[watch, _Loss()])
    return l, ule, watch.seen, torch.stack(losses)

@pytest.mark.parametrize('output', ['loss', 'logit'])
def test_student_and_teacher_under_the_learners_bf16_autocast(output):
    l, ule, seen, losses = _fit_precision('bf16-cpu', output)
    assert ule._amp == ('cpu', torch.bfloat16) and ule._scale == 1.   # read in before_fit (fastai clears its autocast after the fit)
    assert len(seen['student']) == 4 and set(seen['student']) == {torch.bfloat16}   # every training batch, in bf16
    assert set(seen['teacher']) == {torch.bfloat16}
    assert torch.isfinite(losses).all() and torch.isfinite(ule.penalty_value) and torch.isfinite(ule.student_loss)
    assert all(p.dtype == torch.float32 for p in ule.student.parameters())   # autocast: fp32 weights, bf16 compute

def test_full_precision_and_fastai_bf16_on_a_cpu_stay_float32():
    "No MixedPrecision: float32. fastai's to_bf16 on a CPU-only machine: its (CUDA) autocast is off, so both models stay float32."
    for prec in ['fp32', 'fastai-bf16']:
        l, ule, seen, losses = _fit_precision(prec)
        assert set(seen['student']) == set(seen['teacher']) == {torch.float32}, (prec, seen)
        assert ule._amp is None or torch.cuda.is_available()
        assert torch.isfinite(losses).all()

def test_fp16_uses_a_loss_scale_and_trains():
    l, ule, seen, losses = _fit_precision('fp16-cpu')
    assert set(seen['student']) == set(seen['teacher']) == {torch.float16}
    assert ule._scale > 1 and torch.isfinite(losses).all()
    assert all(torch.isfinite(p).all() for p in [*l.model.parameters(), *ule.student.parameters()])

def test_teacher_loss_scale_does_not_change_the_penalty():
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y, g_s = torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g), torch.randn(6, 4, generator=g)
    def pen(scale):
        xx = x.clone().requires_grad_(); p = net(xx)
        return teacher_loss(p, xx, y, F.cross_entropy(p, y), g_s, penalty='mse', output='logit', norm='l2', scale=scale)[1]
    assert torch.allclose(pen(1.), pen(1024.), atol=1e-5)
