"""Cost of the MaskTune masking pass per image, as a ratio to one training step per image (same model, batch 128, 2 threads).

Run: `python benchmarks/masking_cost.py [--reps N] [--precision fp32|bf16]`. Prints spurnotes' pass (fastai hook, one
`autograd.grad`, threshold and mask on the same batch) and the `grad-cam` package's XGradCAM (heatmaps only, plus the same
threshold and mask). `--precision bf16` runs spurnotes' pass and the training step under CPU autocast in bfloat16, as a
`to_bf16()` learner's masking pass does (the grad-cam package has no precision option).
"""
import argparse, contextlib, time
import torch
from spurnotes.models import SmallCNN
from fastai.torch_core import set_seed
from spurnotes.saliency import saliency_heat, saliency_mask, apply_mask

def timeit(fs, reps):
    "Median seconds per call of each function, measured round-robin so that drifts in machine load hit all alike."
    for f in fs: f(); f()  # warm-up
    times = [[] for _ in fs]
    for _ in range(reps):
        for f, ts in zip(fs, times):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return [sorted(ts)[len(ts) // 2] for ts in times]

def main(reps=20, bs=128, threads=2, precision='fp32'):
    torch.set_num_threads(threads)
    dtype = {'fp32': None, 'bf16': torch.bfloat16}[precision]
    amp = lambda: torch.autocast('cpu', dtype=dtype) if dtype else contextlib.nullcontext()
    set_seed(0, reproducible=True)
    model = SmallCNN(3, 2)
    x, y = torch.rand(bs, 3, 28, 28), torch.randint(0, 2, (bs,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    def train_step():
        model.train(); opt.zero_grad()
        with amp(): loss = loss_fn(model(x).float(), y)
        loss.backward(); opt.step()
    def ours():
        apply_mask(x, saliency_mask(saliency_heat(model, model.features, x, dtype=dtype)))
    from pytorch_grad_cam import XGradCAM
    cam = XGradCAM(model=model, target_layers=[model.features])
    def package():
        model.eval()
        heat = torch.from_numpy(cam(input_tensor=x, targets=None))
        apply_mask(x, saliency_mask(heat))
    t_train, t_ours, t_pkg = timeit([train_step, ours, package], reps)
    print(f"SmallCNN, batch {bs}, {threads} threads, {precision}, median of {reps} interleaved reps")
    print(f"training step:            {1e3 * t_train / bs:.3f} ms/image")
    print(f"spurnotes masking pass:   {1e3 * t_ours / bs:.3f} ms/image = {t_ours / t_train:.2f}x a training step")
    print(f"grad-cam XGradCAM + mask: {1e3 * t_pkg / bs:.3f} ms/image = {t_pkg / t_train:.2f}x a training step")
    return t_ours / t_train, t_pkg / t_train

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reps', type=int, default=20)
    p.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'])
    a = p.parse_args()
    main(a.reps, precision=a.precision)
