"""Training images/s of ERM, MaskTune, SpuriousMix and ULE through fastai, each as a ratio to a plain PyTorch loop doing the same step.

Run: `python benchmarks/throughput.py [--cpu-small] [--reps N] [--batches N] [--arch resnet50] [--size 224] [--bs 128]
[--precision fp32|bf16|fp16] [--channels-last] [--threads N]`.
Defaults are the GPU setting (ResNet-50, 224 px, batch 128); `--cpu-small` is SmallCNN, 28 px, batch 32 (what CI runs).
On a GPU: `python benchmarks/throughput.py --precision bf16 --channels-last` (ResNet-50, 224 px, bf16, channels_last).
Synthetic data is held on the device (a `GroupDataset` batched by tensor indexing, as the package's DataLoaders do).
For each method one repetition is a fastai epoch of `--batches` training batches (`Learner.fit(1)`, validation skipped,
no metrics, no bar or log) and the plain loop over the same number of batches of the same data (random indices,
`torch.optim.SGD` with the same momentum and weight decay), interleaved over methods and repetitions; medians.
The plain loops call the same package functions for the method's own computation (XGradCAM masks:
`spurnotes.masktune`; ULE's student and teacher gradients: `spurnotes.ule`) and mix the spurious images inline, so the
ratio is the cost of fastai's `Learner`, callbacks and optimizer around the same work. Precision: fastai's `to_bf16()`
/ `to_fp16()` against `torch.autocast` (and a `GradScaler` for fp16) in the plain loop, the masking and ULE passes under
the same autocast on both sides. fastai's `MixedPrecision` autocasts CUDA only; on a CPU, `--precision bf16` still
goes through `to_bf16()`, with `CPUAutocast` swapping its autocast for the CPU's (fp16 needs CUDA's `GradScaler`).
"""
import argparse, contextlib, copy, inspect, time, warnings
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback, CancelValidException
from fastai.callback.fp16 import MixedPrecision  # and Learner.to_bf16 / to_fp16
from spurnotes.groups import GroupDataset, GroupInfo
from spurnotes.models import SmallCNN, make_backbone, cam_layer
from spurnotes.learner import erm_learner
from spurnotes.loaders import group_dls
from fastai.torch_core import set_seed
from spurnotes.masktune import MaskTune
from spurnotes.saliency import saliency_heat, saliency_mask, apply_mask
from spurnotes.data_mixing import SpuriousMix
from spurnotes.ule import ULE, reinit, student_step_grads, teacher_loss

METHODS = ['ERM', 'MaskTune', 'SpuriousMix', 'ULE']
LR, MOM, WD = 0.01, 0.9, 1e-4

class _NoValidate(Callback):
    "Skip the validation pass: only training images are timed."
    def before_validate(self): raise CancelValidException()

class CPUAutocast(Callback):
    "After fastai's `MixedPrecision.before_fit` (order 10): on a CPU, its (CUDA) autocast replaced by the CPU's, same dtype."
    order = 11
    def before_fit(self):
        mp = [cb for cb in self.learn.cbs if isinstance(cb, MixedPrecision)]
        if mp and self.dls.device.type == 'cpu': mp[0].autocast = torch.autocast('cpu', dtype=mp[0].autocast.fast_dtype)

_HEAT_DTYPE = 'dtype' in inspect.signature(saliency_heat).parameters   # the masking pass takes the learner's precision

def _sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()

def synthetic(n, size, device, seed=0):
    "Random images (N, 3, size, size) with labels and attributes, on `device`; and 64 spurious-only images per attribute."
    g = torch.Generator().manual_seed(seed)
    ds = GroupDataset(torch.rand(n, 3, size, size, generator=g), torch.randint(0, 2, (n,), generator=g), torch.randint(0, 2, (n,), generator=g))
    sa = torch.arange(2).repeat_interleave(64)
    spur = GroupDataset(torch.rand(len(sa), 3, size, size, generator=g), torch.full_like(sa, -1), sa)
    return ds.replace(x=ds.x.to(device), y=ds.y.to(device), a=ds.a.to(device)), spur

def make_model(arch, device, channels_last):
    m = SmallCNN(3, 2) if arch == 'small_cnn' else make_backbone(arch, 3, 2)
    m = m.to(device)
    return m.to(memory_format=torch.channels_last) if channels_last else m

class Plain:
    "The plain PyTorch loop of one method: `epoch(n_batches)` runs that many training steps."
    def __init__(self, method, model, ds, spur, bs, precision, channels_last, seed=0):
        self.method, self.model, self.ds, self.bs, self.cl = method, model, ds, bs, channels_last
        self.device = ds.x.device
        self.opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOM, weight_decay=WD)
        self.dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler('cuda') if precision == 'fp16' else None
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        if method == 'MaskTune': self.smodel = copy.deepcopy(model).eval()
        if method == 'SpuriousMix':
            order = torch.argsort(spur.a, stable=True)
            self.s, self.counts = spur.x[order].to(self.device), torch.bincount(spur.a, minlength=2).to(self.device)
            self.starts = torch.cumsum(self.counts, 0) - self.counts
        if method == 'ULE':
            self.student = reinit(copy.deepcopy(model))
            self.sopt = torch.optim.SGD(self.student.parameters(), lr=LR, momentum=MOM, weight_decay=WD)
    def autocast(self): return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
    def batch(self):
        idx = torch.randint(len(self.ds), (self.bs,), device=self.device, generator=self.gen)
        x, y = self.ds.x[idx], self.ds.y[idx]
        return (x.contiguous(memory_format=torch.channels_last) if self.cl else x), y
    def mix(self, x, y):
        k = round(0.5 * len(x)); rows = torch.randperm(len(x), device=x.device)[:k]
        a2 = torch.randint(2, (k,), device=x.device)
        j = self.starts[a2] + (torch.rand(k, device=x.device) * self.counts[a2]).long().clamp(max=self.counts[a2] - 1)
        out = x.clone(); out[rows] = 0.5 * x[rows] + 0.5 * self.s[j]
        return out
    def backward_step(self, loss, opt):
        opt.zero_grad()
        if self.scaler: self.scaler.scale(loss).backward(); self.scaler.step(opt); self.scaler.update()
        else: loss.backward(); opt.step()
    def step(self):
        x, y = self.batch()
        self.model.train()
        if self.method == 'MaskTune':
            kw = dict(dtype=self.dtype) if _HEAT_DTYPE else {}
            x = apply_mask(x, saliency_mask(saliency_heat(self.smodel, cam_layer(self.smodel), x, **kw)))
        if self.method == 'SpuriousMix': x = self.mix(x, y)
        if self.method == 'ULE':
            xx = x.detach().requires_grad_()
            with self.autocast(): _, _, g_s, pg = student_step_grads(self.student, xx, (y,), F.cross_entropy, 'loss')
            for p, g in zip(self.student.parameters(), pg): p.grad = g
            self.sopt.step()
            with self.autocast():
                pred = self.model(xx).float()
                total, _ = teacher_loss(pred, xx, y, F.cross_entropy(pred, y), g_s, output='loss')
            return self.backward_step(total, self.opt)
        with self.autocast(): loss = F.cross_entropy(self.model(x).float(), y)
        self.backward_step(loss, self.opt)
    def epoch(self, n):
        for _ in range(n): self.step()

def fastai_learner(method, model, ds, spur, bs, precision, channels_last, seed=0):
    "The package's learner for `method` (the same SGD hypers as the plain loop), validation skipped, no metrics."
    info = GroupInfo(['0', '1'], ['0', '1'])
    dls = group_dls(ds, ds.subset(torch.arange(bs)), bs=bs, seed=seed, device=ds.x.device)
    cbs = [_NoValidate()]
    if method == 'MaskTune': cbs.append(MaskTune(model))
    if method == 'SpuriousMix': cbs.append(SpuriousMix(spur, p=0.5, lam=0.5))
    if method == 'ULE': cbs.append(ULE())
    if channels_last:
        class _CL(Callback):
            order = 1
            def before_batch(self): self.learn.xb = (self.xb[0].contiguous(memory_format=torch.channels_last),)
        cbs.append(_CL())
    learn = erm_learner(dls, model, info, lr=LR, mom=MOM, wd=WD, metrics=[], cbs=cbs)
    if precision == 'bf16': learn = learn.to_bf16()
    if precision == 'fp16': learn = learn.to_fp16()
    if precision != 'fp32' and ds.x.device.type == 'cpu': learn.add_cb(CPUAutocast())
    return learn

def main(arch='resnet50', size=224, bs=128, batches=10, reps=5, precision='fp32', channels_last=False, device=None, threads=None, quiet=False):
    "Print and return one row per method: images/s of fastai and of the plain loop, and their ratio (medians of interleaved reps)."
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if precision == 'fp16' and device.type != 'cuda': raise ValueError("--precision fp16 needs CUDA (its GradScaler); on a CPU use fp32 or bf16.")
    if precision not in ('fp32', 'bf16', 'fp16'): raise ValueError(f"--precision {precision}: expected fp32, bf16 or fp16.")
    if threads: torch.set_num_threads(threads)
    set_seed(0, reproducible=True)
    ds, spur = synthetic(max(4 * bs, batches * bs), size, device)
    runners = {}
    for m in METHODS:
        set_seed(0, reproducible=True); mf = make_model(arch, device, channels_last)
        set_seed(0, reproducible=True); mp = make_model(arch, device, channels_last)
        learn = fastai_learner(m, mf, ds, spur, bs, precision, channels_last)
        plain = Plain(m, mp, ds, spur, bs, precision, channels_last)
        def fa(learn=learn):
            with learn.no_bar(), learn.no_logging(): learn.fit(1)
        def pl(plain=plain): plain.epoch(len(learn.dls.train))
        runners[m] = (fa, pl, len(learn.dls.train) * bs)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for fa, pl, _ in runners.values(): fa(); pl()   # warm-up (cuDNN autotuning, allocator)
        times = {m: ([], []) for m in METHODS}
        for _ in range(reps):
            for m, (fa, pl, _) in runners.items():
                for f, ts in zip((fa, pl), times[m]):
                    _sync(device); t0 = time.perf_counter(); f(); _sync(device); ts.append(time.perf_counter() - t0)
    med = lambda ts: sorted(ts)[len(ts) // 2]
    rows = []
    for m in METHODS:
        n = runners[m][2]
        tf, tp = med(times[m][0]), med(times[m][1])
        rows.append(dict(method=m, fastai_img_s=n / tf, plain_img_s=n / tp, ratio=tp / tf))
    if not quiet:
        dev = torch.cuda.get_device_name(device) if device.type == 'cuda' else f"CPU, {torch.get_num_threads()} thread(s)"
        print(f"{arch}, {size}x{size}, batch {bs}, {precision}{', channels_last' if channels_last else ''}, {dev}; "
              f"{runners[METHODS[0]][2] // bs} batches per repetition, median of {reps} interleaved repetitions")
        print(f"{'method':<12} {'fastai img/s':>13} {'plain img/s':>12} {'ratio':>6}")
        for r in rows: print(f"{r['method']:<12} {r['fastai_img_s']:13.1f} {r['plain_img_s']:12.1f} {r['ratio']:6.2f}")
        print("ratio: fastai images/s over the plain loop's (1.00: as fast; target >= 0.90)")
    return rows

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cpu-small', action='store_true', help='SmallCNN, 28 px, batch 32, 8 batches, on the CPU')
    p.add_argument('--arch', default='resnet50'); p.add_argument('--size', type=int, default=224); p.add_argument('--bs', type=int, default=128)
    p.add_argument('--batches', type=int, default=10); p.add_argument('--reps', type=int, default=5)
    p.add_argument('--precision', default='fp32', choices=['fp32', 'bf16', 'fp16'])
    p.add_argument('--channels-last', action='store_true'); p.add_argument('--threads', type=int, default=None)
    a = p.parse_args()
    if a.cpu_small: main('small_cnn', 28, 32, 8, a.reps, a.precision, a.channels_last, 'cpu', a.threads or 1)
    else: main(a.arch, a.size, a.bs, a.batches, a.reps, a.precision, a.channels_last, threads=a.threads)
