"""Cost of a ULE step (student and teacher on one batch) as a ratio to an ERM step: same model, same batch, one thread.

Run: `python benchmarks/ule_cost.py [--reps N] [--small] [--csv PATH] [--arch masktune_cnn|small_cnn|lite_top|lite_image[,...]] [--bs 128] [--threads 1] [--format contiguous|channels_last] [--options]`.
Every repetition times each step once, round-robin (as `benchmarks/masking_cost.py`), so that drifts in machine load hit
all steps of a repetition alike; a step's time ratio is taken *per repetition* (its time / that repetition's ERM time),
and `repetitions` returns those ratios (`--csv PATH` writes them), so that a claim about the ratio can be decided on
them with an interval (`spurnotes.report.decide`); the printed table gives medians. Peak memory is the rise of the peak
resident set over one step in a fresh process (CPU; Linux) or `torch.cuda.max_memory_allocated` (GPU), median of 3 processes.
Steps compared: ERM (forward, backward, SGD step); the naive ULE step (the student: a forward and two backwards, its
input gradient then its loss; the teacher: a forward, its input gradient with `create_graph=True` and a backward
through it); and `spurnotes.ule`'s step for each differentiated output (for 'loss' the student's input and parameter
gradients come from one backward). Both memory formats by default: on CPUs channels_last makes the ERM step faster and
the double backward slower.

`--options` times the cheaper options of the `ULE` callback instead (issue 20, part 8), each as the callback runs it
('loss' output, MSE penalty): ERM, the exact step (`ule_loss`), the penalty on a random sub-batch of 1/2 and 1/4 of the
batch (`penalty_frac`: the teacher's input gradient and double backward on a forward pass of the sub-batch alone, the
student's input gradient of the same examples), and the penalty on every 2nd and 4th step (`penalty_every`: one call runs
k steps, the first with the penalty, the others plain; its time and ratio are divided by k, the amortised cost of a step),
and the finite-difference variant (`penalty_grad='fd'`: no double backward, a second forward and backward at a
perturbed input; another, smoothed penalty), with the target of at most `TARGET` ERM steps. The archs `lite_top` and `lite_image` are the pretrained regime of
issue 20: an ImageNet EfficientNet-Lite0 (`make_backbone('efficientnet_lite0', pretrained=True)`) split by
`lite_parts(m, 6)` into a frozen body and a trainable top; `lite_top` trains the top on random body features
`(bs, 192, 3, 3)` (the input gradients are then taken at the frozen body's output), `lite_image` trains the same top
as a `BodyTop` on 96 px images (the input gradients, and the double backward, go through the frozen body to the pixels).
Write the table's rows with `--csv` (several archs: one CSV); `--options --arch masktune_cnn,lite_top,lite_image`
(batch 128 for masktune_cnn, `--lite-bs 32` for the Lite archs) gives `results/ule_options/cost.csv`.
"""
import argparse, json, os, subprocess, sys, time
import torch
import torch.nn.functional as F
from spurnotes.models import make_backbone, SmallCNN
from fastai.torch_core import set_seed
from spurnotes.ule import student_step_grads, teacher_loss, output_of, ule_penalty, sub_batch_idx, sub_batch_penalty, penalty_total, fd_teacher_loss

KINDS = ['erm', 'naive', 'ule_logit', 'ule_loss']
OPTION_KINDS = ['erm', 'ule_loss', 'ule_loss_sub2', 'ule_loss_sub4', 'ule_loss_every2', 'ule_loss_every4', 'ule_loss_fd']   # `--options`
OPTIONS = {'ule_loss': (1., 1), 'ule_loss_sub2': (0.5, 1), 'ule_loss_sub4': (0.25, 1), 'ule_loss_every2': (1., 2), 'ule_loss_every4': (1., 4),
           'ule_loss_fd': (1., 1, 'fd')}   # (penalty_frac, penalty_every[, penalty_grad])
TARGET = 3.5   # issue 20, part 8: a step of at most 3.5 ERM steps in the same layout
LITE = ('lite_top', 'lite_image')   # the pretrained regime: the top of a frozen EfficientNet-Lite0, on features or on 96 px images

def lite_models(arch):
    "The trainable model of the pretrained regime and the size of its input: the top (`lite_top`) or the body and top as one model (`lite_image`)."
    from spurnotes.models import lite_parts, BodyTop
    body, top = lite_parts(make_backbone('efficientnet_lite0', 3, 2, pretrained=True), 6)
    return (top, (192, 3, 3)) if arch == 'lite_top' else (BodyTop(body, top), (3, 96, 96))

def setup(arch='masktune_cnn', bs=128, size=28, seed=0, device='cpu', fmt='contiguous'):
    "Teacher, student, their SGD optimizers and one batch; `fmt` the models' memory format."
    set_seed(seed, reproducible=True)
    shape = (3, size, size)
    if arch in LITE:   # the pre-trained student is a copy of the pre-trained teacher (as `ule_learner` makes it)
        import copy
        t, shape = lite_models(arch)
        t, s = t.to(device), copy.deepcopy(t).to(device)
    else:
        mk = (lambda: SmallCNN(3, 2, width=8, hidden=16)) if arch == 'small_cnn' else (lambda: make_backbone(arch, 3, 2))
        t, s = mk().to(device), mk().to(device)
    if fmt == 'channels_last': t, s = t.to(memory_format=torch.channels_last), s.to(memory_format=torch.channels_last)
    opt = lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x, y = torch.rand(bs, *shape, device=device), torch.randint(0, 2, (bs,), device=device)
    return t, s, opt(t), opt(s), x, y

def steps(t, s, topt, sopt, x, y):
    "The step functions, by kind."
    def erm():
        topt.zero_grad(); F.cross_entropy(t(x), y).backward(); topt.step()
    def naive():
        xs = x.clone().requires_grad_()
        sp = s(xs)
        g_s, = torch.autograd.grad(output_of(sp, y, 'logit'), xs, retain_graph=True)
        sopt.zero_grad(); F.cross_entropy(sp, y).backward(); sopt.step()
        xt = x.clone().requires_grad_()
        tp = t(xt)
        g_t, = torch.autograd.grad(output_of(tp, y, 'logit'), xt, create_graph=True)
        topt.zero_grad(); (F.cross_entropy(tp, y) + ule_penalty(g_t, g_s.detach())).backward(); topt.step()
    def ule(output):
        def step():
            xx = x.detach().requires_grad_()
            _, _, g_s, pg = student_step_grads(s, xx, (y,), F.cross_entropy, output)
            for p, g in zip([p for p in s.parameters() if p.requires_grad], pg): p.grad = g   # a frozen body (`lite_image`) has none
            sopt.step()
            tp = t(xx)
            total, _ = teacher_loss(tp, xx, y, F.cross_entropy(tp, y), g_s, output=output)
            topt.zero_grad(); total.backward(); topt.step()
        return step
    def option(frac, every, grad='exact', output='loss'):   # as `ULE(penalty_frac=frac, penalty_every=every)._cheaper_step` runs it: one call, `every` steps
        gen, lf = torch.Generator().manual_seed(0), lambda p, y: F.cross_entropy(p, y)
        def one(on):
            xx = x.detach().requires_grad_(on and frac == 1)   # the teacher's forward records the input gradient only for a whole-batch penalty
            xs = xx if xx.requires_grad or not on else x.detach().requires_grad_()
            _, _, g_s, pg = student_step_grads(s, xs, (y,), F.cross_entropy, output, input_grad=on)
            for p, g in zip([p for p in s.parameters() if p.requires_grad], pg): p.grad = g
            sopt.step()
            tp = t(xx); loss = F.cross_entropy(tp, y)
            if not on: total = loss
            elif grad == 'fd': total, _ = fd_teacher_loss(t, tp, xx, (y,), lf, loss, g_s, output=output, every=every)
            elif frac == 1: total, _ = teacher_loss(tp, xx, y, loss, g_s, output=output, every=every)
            else:
                i = sub_batch_idx(len(x), frac, gen)
                total = penalty_total(loss, sub_batch_penalty(t, x[i], (y[i],), lf, g_s[i], 'mse', output, 'l2'), every=every)
            topt.zero_grad(); total.backward(); topt.step()
        def step():
            for k in range(every): one(k == 0)
        return step
    out = dict(erm=erm, naive=naive, ule_logit=ule('logit'), ule_loss=ule('loss'))
    out.update({k: option(*v) for k, v in OPTIONS.items() if k != 'ule_loss'})
    return out

def interleaved_times(fs, reps:int, warmup:int=2):
    "Seconds of each call: `reps` repetitions, each calling every function of `fs` once in turn (after `warmup` calls each): `[rep][i]`."
    for f in fs:
        for _ in range(warmup): f()
    out = []
    for _ in range(reps):
        ts = []
        for f in fs:
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        out.append(ts)
    return out

def steps_per_call(kind): return OPTIONS.get(kind, (1., 1))[1]   # `ule_loss_every4`: one call runs 4 steps

def repetitions(reps=15, arch='masktune_cnn', bs=128, size=28, threads=1, fmt='contiguous', kinds=KINDS):
    "Tidy rows, one per repetition and step: rep, step, ms, time_ratio (the step's time / the same repetition's ERM step time; a call of k steps: divided by k)."
    torch.set_num_threads(threads)
    fs = steps(*setup(arch, bs, size, fmt=fmt))
    rows = []
    for r, ts in enumerate(interleaved_times([fs[k] for k in kinds], reps)):
        ts = [t / steps_per_call(k) for k, t in zip(kinds, ts)]
        rows += [dict(rep=r, step=k, format=fmt, arch=arch, bs=bs, size=size, threads=threads, ms=1e3 * t, time_ratio=t / ts[0]) for k, t in zip(kinds, ts)]
    return rows

def _median(v): v = sorted(v); return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

def _status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field): return int(line.split()[1]) * 1024
    return None

def one_step_memory(kind, arch, bs, size, threads, fmt='contiguous'):
    "Bytes by which one step of `kind` raises the peak memory (run in a fresh process)."
    torch.set_num_threads(threads)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    f = steps(*setup(arch, bs, size, device=dev, fmt=fmt))[kind]   # a call of k steps (`--options`' every-k kinds): the peak over the k
    if dev == 'cuda':
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        f(); torch.cuda.synchronize(); return torch.cuda.max_memory_allocated() - base
    try:
        with open('/proc/self/clear_refs', 'w') as fh: fh.write('5')   # reset the peak resident set (VmHWM)
    except OSError: return None
    base = _status('VmRSS:'); f(); return _status('VmHWM:') - base

def memory(kind, arch, bs, size, threads, procs=3, fmt='contiguous'):
    "Median over `procs` fresh processes of `one_step_memory`."
    vals = []
    for _ in range(procs):
        out = subprocess.run([sys.executable, __file__, '--memory-of', kind, '--arch', arch, '--bs', str(bs), '--size', str(size),
                              '--threads', str(threads), '--format', fmt], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        v = json.loads(out)
        if v is not None: vals.append(v)
    return sorted(vals)[len(vals) // 2] if vals else float('nan')

def option_table(per_rep):
    "Per arch and step: median ms, the median and the mean of the per-repetition time ratios with its 95% interval, and `decide` on 'at most `TARGET` ERM steps'."
    import pandas as pd
    from spurnotes.report import effect_interval, decide
    out = []
    for (arch, k), q in pd.DataFrame(per_rep).groupby(['arch', 'step'], sort=False):
        x = q.sort_values('rep').time_ratio.to_numpy()
        est, lo, hi = effect_interval(x) if len(x) > 1 else (x.mean(), float('nan'), float('nan'))
        v = decide(TARGET - x, 0., few='inconclusive')['verdict'] if k != 'erm' else ''
        out.append(dict(arch=arch, step=k, ms=q.ms.median(), ratio_median=float(pd.Series(x).median()), ratio_mean=est, low=lo, high=hi,
                         meets_target={'reproduced': 'yes', 'not reproduced here': 'no', 'inconclusive': 'undecided', '': ''}[v]))
    return out

def main_options(reps=15, archs=('masktune_cnn',), bs=128, size=28, threads=1, csv=None, lite_bs=32):
    "Time `OPTION_KINDS` on each arch (interleaved repetitions, one arch after another; `lite_bs` the batch of the `LITE` archs); print the table with the target; `csv`: the per-repetition rows of all archs."
    per_rep = [r for a in archs for r in repetitions(reps, a, lite_bs if a in LITE else bs, size, threads, 'contiguous', OPTION_KINDS)]
    if csv:
        import pandas as pd
        pd.DataFrame(per_rep).to_csv(csv, index=False)
    tab = option_table(per_rep)
    print(f"ULE's cheaper options, batch {bs} ({', '.join(LITE)}: {lite_bs}), {threads} thread(s), contiguous, {reps} interleaved reps; ratio to the same rep's ERM step; target <= {TARGET:g}x")
    print(f"{'arch':<13} {'step':<16} {'ms':>8} {'median x':>9} {'mean x [95% interval]':>24} {'<= target':>9}")
    for r in tab:
        print(f"{r['arch']:<13} {r['step']:<16} {r['ms']:8.1f} {r['ratio_median']:9.2f} {r['ratio_mean']:8.2f} [{r['low']:5.2f}, {r['high']:5.2f}]   {r['meets_target']:>9}")
    return tab

def main(reps=15, arch='masktune_cnn', bs=128, size=28, threads=1, with_memory=True, procs=3, fmt='contiguous', csv=None):
    "Print and return the table: median ms per step, median per-repetition time ratio to ERM, peak memory and its ratio to ERM (models in memory format `fmt`); `csv`: write the per-repetition rows there."
    per_rep = repetitions(reps, arch, bs, size, threads, fmt)
    if csv:
        import pandas as pd
        pd.DataFrame(per_rep).to_csv(csv, index=False)
    mem = {k: memory(k, arch, bs, size, threads, procs, fmt) for k in KINDS} if with_memory else {k: float('nan') for k in KINDS}
    med = lambda k, c: _median([r[c] for r in per_rep if r['step'] == k])
    rows = [dict(step=k, format=fmt, ms=med(k, 'ms'), time_ratio=med(k, 'time_ratio'), peak_mib=mem[k] / 2**20, memory_ratio=mem[k] / mem['erm']) for k in KINDS]
    print(f"{arch} ({fmt}), batch {bs}, {size}x{size}, {threads} thread(s), medians of {reps} interleaved reps (ratios per rep)" +
          (f"; memory: median of {procs} fresh processes" if with_memory else "; memory not measured"))
    print(f"{'step':<10} {'ms':>8} {'x ERM':>7}" + (f" {'peak MiB':>9} {'x ERM':>7}" if with_memory else ""))
    for r in rows: print(f"{r['step']:<10} {r['ms']:8.1f} {r['time_ratio']:7.2f}" + (f" {r['peak_mib']:9.1f} {r['memory_ratio']:7.2f}" if with_memory else ""))
    return rows

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=15, help='interleaved repetitions (>= 5 for an interval of the ratio; 15: about 20 s for masktune_cnn on one idle core)')
    p.add_argument('--arch', default='masktune_cnn')
    p.add_argument('--bs', type=int, default=128)
    p.add_argument('--size', type=int, default=28)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--format', default='both', choices=['both', 'contiguous', 'channels_last'], help="the models' memory format")
    p.add_argument('--small', action='store_true', help='tiny sizes (small_cnn, batch 16, 3 reps): a quick check that it runs')
    p.add_argument('--no-memory', action='store_true')
    p.add_argument('--csv', default=None, help='write the per-repetition rows (rep, step, ms, time_ratio) to this CSV (with --format both: the last format)')
    p.add_argument('--lite-bs', type=int, default=32, help='with --options: the batch of the lite_top and lite_image archs')
    p.add_argument('--options', action='store_true', help="time ULE's cheaper options (sub-batch, every k-th step) instead; --arch may list several, comma-separated")
    p.add_argument('--memory-of', default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.options:
        archs = a.arch.split(',')
        if a.small: main_options(reps=3, archs=['small_cnn'], bs=16, size=28, threads=a.threads, csv=a.csv)
        else: main_options(a.reps, archs, a.bs, a.size, a.threads, csv=a.csv, lite_bs=a.lite_bs)
    elif a.memory_of:
        import warnings; warnings.filterwarnings('ignore')
        print(json.dumps(one_step_memory(a.memory_of, a.arch, a.bs, a.size, a.threads, 'contiguous' if a.format == 'both' else a.format)))
    else:
        for fmt in (['contiguous', 'channels_last'] if a.format == 'both' else [a.format]):
            if a.small: main(reps=3, arch='small_cnn', bs=16, size=28, threads=a.threads, with_memory=not a.no_memory, procs=1, fmt=fmt, csv=a.csv)
            else: main(a.reps, a.arch, a.bs, a.size, a.threads, not a.no_memory, fmt=fmt, csv=a.csv)
