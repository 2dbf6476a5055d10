"""One ERM epoch in 2 CPU processes (gloo) through fastai's Accelerate integration (`spurnotes.distributed.distrib_ctx`).

Run as a script under a launcher, it trains and writes each rank's weights and metrics to OUT_DIR:
`torchrun --standalone --nproc_per_node 2 tests/test_distributed.py OUT_DIR` (on GPUs: `accelerate launch --multi_gpu --num_processes 2 ...`).
The test launches it and checks that both ranks end with identical weights and that the group metrics every rank
reports are those of the whole validation set (an evaluation of the final model on one process), not of its shard;
then the same for one GroupDRO epoch, and that both ranks end with identical group weights q, whose first step is the
one computed by hand from both shards' group losses pooled (not from one rank's batch).
"""
import json, math, os, subprocess, sys
from pathlib import Path
import pytest

N_TRAIN, N_VALID, BS = 512, 192, 32   # the validation set divides by 2 processes: no padded (repeated) examples
ETA = 0.5   # GroupDRO step size: large, so that q moves visibly in one epoch

def toy():
    "A seeded toy task: the label is the brightness of the left half, the attribute of the right half; 4 groups, unbalanced."
    import torch
    from spurnotes.groups import GroupDataset, GroupInfo, group_counts_of
    g = torch.Generator().manual_seed(0)
    def split(n):
        y, a = torch.randint(0, 2, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)
        a = torch.where(torch.rand(n, generator=g) < 0.8, y, a)
        x = 0.3 * torch.rand(n, 3, 16, 16, generator=g)
        x[..., :8] += 0.5 * y.view(-1, 1, 1, 1); x[..., 8:] += 0.5 * a.view(-1, 1, 1, 1)
        return GroupDataset(x, y, a)
    tr, va = split(N_TRAIN), split(N_VALID)
    info = GroupInfo(['y0', 'y1'], ['a0', 'a1'])
    info.train_counts = group_counts_of(tr.y, tr.a, info)
    return tr, va, info

def worker(out):
    import warnings; warnings.filterwarnings('ignore')
    import torch
    torch.set_num_threads(1)
    import torch.distributed as dist
    from spurnotes.models import SmallCNN
    from spurnotes.learner import erm_learner
    from spurnotes.loaders import group_dls
    from fastai.torch_core import set_seed
    from spurnotes.metrics import group_metrics
    from spurnotes.distributed import distrib_ctx
    tr, va, info = toy()
    set_seed(0, reproducible=True)
    learn = erm_learner(group_dls(tr, va, bs=BS, seed=0, device='cpu'), SmallCNN(3, 2, width=8, hidden=16), info, lr=0.05, path=out)
    with learn.no_bar(), distrib_ctx(learn):
        learn.fit(1)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    names = [m.name for m in learn.metrics]
    values = dict(zip(names, learn.recorder.values[-1][2:]))   # after train loss, valid loss
    torch.save(learn.model.state_dict(), Path(out)/f'weights_{rank}.pt')
    (Path(out)/f'metrics_{rank}.json').write_text(json.dumps(dict(world=world, metrics=values)))
    # GroupDRO: one epoch on the same shards; this rank's group loss sums and counts of the first training batch, q after it
    import torch.nn.functional as F
    from fastai.callback.core import Callback
    from spurnotes.baselines import GroupDRO, group_losses
    class FirstStep(Callback):
        order = 50
        def before_fit(self): self.rec = None
        def after_loss(self):
            if self.rec is not None or not self.learn.training: return
            y, a = self.learn.yb
            gl, n = group_losses(F.cross_entropy(self.learn.pred.float(), y, reduction='none'), info.group(y.long(), a.long()), info.n_groups)
            self.rec = dict(sums=(gl * n).tolist(), counts=n.tolist(), q=self.learn.loss_func.q.tolist())
    set_seed(0, reproducible=True)
    dro, first = GroupDRO(eta=ETA), FirstStep()
    learn = erm_learner(group_dls(tr, va, bs=BS, seed=0, device='cpu'), SmallCNN(3, 2, width=8, hidden=16), info, lr=0.05, path=out, cbs=[dro, first])
    with learn.no_bar(), distrib_ctx(learn):
        learn.fit(1)
    torch.save(learn.model.state_dict(), Path(out)/f'dro_weights_{rank}.pt')
    (Path(out)/f'dro_{rank}.json').write_text(json.dumps(dict(first=first.rec, q=dro.q.tolist(), history=[h.tolist() for h in dro.history],
                                                            metrics=dict(zip(names, learn.recorder.values[-1][2:])))))

def launch(out, timeout=300):
    "Run `worker` in 2 CPU processes with PyTorch's launcher; Accelerate's `Accelerator(cpu=True)` joins its gloo group."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', __file__, str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

def test_two_cpu_processes(tmp_path):
    pytest.importorskip('accelerate')
    import torch
    from spurnotes.models import SmallCNN
    from spurnotes.learner import erm_learner
    from spurnotes.loaders import group_dls
    from spurnotes.report import learner_group_report
    r = launch(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    w0, w1 = (torch.load(tmp_path/f'weights_{k}.pt') for k in (0, 1))
    assert set(w0) == set(w1)
    different = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    assert not different, f"the ranks' weights differ in {different}"
    m0, m1 = (json.loads((tmp_path/f'metrics_{k}.json').read_text()) for k in (0, 1))
    assert m0['world'] == m1['world'] == 2
    assert m0['metrics'] == m1['metrics']   # every rank reports the same, gathered, metrics
    # the whole validation set, evaluated on one process with rank 0's final weights
    tr, va, info = toy()
    model = SmallCNN(3, 2, width=8, hidden=16); model.load_state_dict(w0)
    learn = erm_learner(group_dls(tr, va, bs=BS, device='cpu'), model, info, path=tmp_path)
    rep = learner_group_report(learn, learn.dls.valid)
    full = {'plain_acc': rep.loc['average (plain)', 'accuracy'], 'worst_group_acc': rep.loc['worst group', 'accuracy'],
            'train_weighted_acc': rep.loc['average (train-weighted)', 'accuracy'], 'group_mean_acc': rep.loc['average (group mean)', 'accuracy']}
    for k, v in full.items(): assert abs(m0['metrics'][k] - v) < 1e-6, (k, m0['metrics'][k], v)
    # and not one shard's: the first half of the validation set gives other numbers (a check that the test can fail)
    half = learner_group_report(learn, group_dls(tr, va.subset(torch.arange(N_VALID // 2)), bs=BS, device='cpu').valid)
    assert any(abs(half.loc[n, 'accuracy'] - full[k]) > 1e-6 for n, k in [('average (plain)', 'plain_acc'), ('average (group mean)', 'group_mean_acc')])

    # GroupDRO: identical weights and q on both ranks, the same gathered metrics
    v0, v1 = (torch.load(tmp_path/f'dro_weights_{k}.pt') for k in (0, 1))
    different = [k for k in v0 if not torch.equal(v0[k], v1[k])]
    assert not different, f"the ranks' GroupDRO weights differ in {different}"
    d0, d1 = (json.loads((tmp_path/f'dro_{k}.json').read_text()) for k in (0, 1))
    assert d0['q'] == d1['q'] and d0['history'] == d1['history'], (d0['q'], d1['q'])
    assert abs(sum(d0['q']) - 1) < 1e-6 and max(abs(v - 0.25) for v in d0['q']) > 1e-3   # q moved
    assert d0['metrics'] == d1['metrics']
    # the first step by hand: per-group loss sums and counts of both shards pooled, then q <- q exp(eta * loss_g), normalised
    def step(sums, counts):
        q = [0.25 * math.exp(ETA * (s / c if c else 0.)) for s, c in zip(sums, counts)]
        return [v / sum(q) for v in q]
    f0, f1 = d0['first'], d1['first']
    pooled = step([a + b for a, b in zip(f0['sums'], f1['sums'])], [a + b for a, b in zip(f0['counts'], f1['counts'])])
    for f in (f0, f1): assert max(abs(a - b) for a, b in zip(f['q'], pooled)) < 1e-6, (f['q'], pooled)
    # and the check can fail: each rank's own batch alone gives another step
    own0, own1 = step(f0['sums'], f0['counts']), step(f1['sums'], f1['counts'])
    assert max(abs(a - b) for a, b in zip(own0, own1)) > 1e-4 and max(abs(a - b) for a, b in zip(own0, pooled)) > 1e-4

if __name__ == '__main__':
    worker(sys.argv[1])
