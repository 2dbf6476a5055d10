"GroupDRO and JTT against hand computations; the throughput script runs on the CPU with tiny sizes."
import importlib.util, math, tempfile
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from spurnotes.groups import GroupInfo, GroupDataset
from spurnotes.models import SmallCNN
from spurnotes.learner import erm_learner
from spurnotes.loaders import group_dls
from fastai.torch_core import set_seed
from spurnotes.baselines import GroupDROLoss, GroupDRO, group_losses, error_set, jtt_indices, jtt_weights, jtt

torch.set_num_threads(1)
INFO = GroupInfo(['a', 'b'], ['u', 'v'], train_counts=[[40, 10], [5, 45]])
PRED = torch.tensor([[2., 0.], [0., 1.], [1., 1.], [0.5, -0.5], [-1., 2.], [0., 0.3], [1.5, 0.2]])
Y, A = torch.tensor([0, 0, 1, 1, 1, 0, 1]), torch.tensor([0, 1, 0, 1, 1, 0, 1])

def test_group_dro_two_steps_by_hand():
    "q and the loss after two steps on a fixed batch, with the group adjustment C/sqrt(n_g), written out in plain Python."
    eta, C = 0.3, 2.0
    logits, ys, gs = PRED.tolist(), Y.tolist(), (Y * 2 + A).tolist()
    ce = [math.log(sum(math.exp(v) for v in row)) - row[t] for row, t in zip(logits, ys)]
    lg = []
    for k in range(4):
        m = [c for c, g in zip(ce, gs) if g == k]
        lg.append(sum(m) / len(m) if m else 0.)
    n = [40, 10, 5, 45]
    q = [0.25] * 4
    dro = GroupDROLoss(INFO, eta=eta, adj=C)
    for _ in range(2):
        q = [qi * math.exp(eta * (l + C / math.sqrt(ni))) for qi, l, ni in zip(q, lg, n)]
        s = sum(q); q = [qi / s for qi in q]
        loss = sum(qi * l for qi, l in zip(q, lg))
        out = dro(PRED, Y, A)
        assert abs(out.item() - loss) < 1e-5
        assert np.allclose(dro.q.numpy(), q, atol=1e-6)

def test_group_dro_absent_group_and_gradient():
    "A group absent from the batch has loss 0; the gradient is that of sum_g q_g * mean loss of g."
    p = PRED[:3].clone().requires_grad_()
    gl, counts = group_losses(F.cross_entropy(p, Y[:3], reduction='none'), (Y * 2 + A)[:3], 4)
    assert counts.tolist() == [1, 1, 1, 0] and gl[3].item() == 0
    dro = GroupDROLoss(INFO, eta=0.)
    dro(p, Y[:3], A[:3]).backward()
    pp = PRED[:3].clone().requires_grad_()
    (0.25 * F.cross_entropy(pp, Y[:3], reduction='none')).sum().backward()
    assert torch.allclose(p.grad, pp.grad)

def test_group_dro_errors():
    with pytest.raises(ValueError, match="GroupDRO needs group labels"): GroupDROLoss(INFO)(PRED, Y)
    with pytest.raises(ValueError, match="needs the training group counts"): GroupDROLoss(GroupInfo(['a', 'b'], ['u', 'v']), adj=1.)

def toy(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g); a = torch.where(torch.rand(n, generator=g) < 0.9, y, 1 - y)
    x = 0.2 * torch.rand(n, 3, 8, 8, generator=g); x[..., :4] += 0.4 * y.view(-1, 1, 1, 1); x[..., 4:] += 0.8 * a.view(-1, 1, 1, 1)
    return GroupDataset(x, y, a)

def make(dls, seed=0, cbs=()):
    set_seed(seed, reproducible=True)
    return erm_learner(dls, SmallCNN(3, 2, width=4, hidden=8), INFO, lr=0.05, path=tempfile.mkdtemp(), cbs=list(cbs))

def test_group_dro_callback_moves_q_on_training_batches_only():
    from fastai.callback.core import Callback
    class QAfterEpoch(Callback):
        order = 50
        def before_fit(self): self.qs = []
        def after_epoch(self): self.qs.append(self.learn.loss_func.q.clone())   # after the validation pass
    ds = toy()
    cb, rec = GroupDRO(eta=0.1), QAfterEpoch()
    learn = make(group_dls(ds, ds.subset(torch.arange(32)), bs=32, seed=0, device='cpu'), cbs=[cb, rec])
    old = learn.loss_func
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    assert learn.loss_func is old and len(cb.history) == 2
    assert not torch.allclose(cb.history[0], torch.full((4,), 0.25)) and abs(cb.q.sum().item() - 1) < 1e-6
    for q_epoch, q_train in zip(rec.qs, cb.history): assert torch.equal(q_epoch, q_train)   # the validation pass left q as it was
    with learn.no_bar(): learn.get_preds()
    assert len(cb.history) == 2   # get_preds adds no entry
    assert not torch.equal(cb.history[0], cb.history[1])

def test_jtt_error_set_and_upsampling():
    "JTT on a toy: the error set is what the stage-one model misclassifies, each appearing lam_up times, and stage two is a new model."
    tr, va = toy(128, 0), toy(64, 1)
    r = jtt(make, tr, va, T=1, lam_up=4, epochs=1, bs=32, device='cpu')
    first = r['identification'].model.eval()
    with torch.no_grad(): wrong = first(tr.x).argmax(1) != tr.y
    assert torch.equal(r['errors'], wrong)
    counts = torch.bincount(r['indices'], minlength=len(tr))
    assert torch.equal(counts, torch.where(wrong, 4, 1)) and torch.equal(counts.float(), jtt_weights(wrong, 4))
    assert len(r['learner'].dls.train.dataset) == len(tr) + 3 * int(wrong.sum())
    assert r['learner'].model is not r['identification'].model
    with pytest.raises(ValueError, match="lam_up=0"): jtt_indices(wrong, 0)
    with pytest.raises(ValueError, match="T=0"): jtt(make, tr, va, T=0)

def test_throughput_script_on_cpu():
    spec = importlib.util.spec_from_file_location('throughput', Path(__file__).parents[1]/'benchmarks'/'throughput.py')
    tp = importlib.util.module_from_spec(spec); spec.loader.exec_module(tp)
    rows = tp.main('small_cnn', 16, 8, 2, 1, device='cpu', threads=1)
    assert [r['method'] for r in rows] == tp.METHODS
    for r in rows: assert r['fastai_img_s'] > 0 and r['plain_img_s'] > 0 and math.isfinite(r['ratio'])
    with pytest.raises(ValueError, match="on a CPU use fp32 or bf16"): tp.main('small_cnn', 16, 8, 2, 1, precision='fp16', device='cpu')

@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_throughput_script_bf16_on_cpu():
    "`--precision bf16` on a CPU goes through fastai's to_bf16(), its autocast swapped for the CPU's: every method trains in bf16."
    spec = importlib.util.spec_from_file_location('throughput', Path(__file__).parents[1]/'benchmarks'/'throughput.py')
    tp = importlib.util.module_from_spec(spec); spec.loader.exec_module(tp)
    rows = tp.main('small_cnn', 16, 8, 2, 1, precision='bf16', device='cpu', threads=1, quiet=True)
    assert [r['method'] for r in rows] == tp.METHODS and all(r['ratio'] > 0 and math.isfinite(r['ratio']) for r in rows)
    # the swapped autocast is on: the model's outputs in a fastai step are bf16
    ds, spur = tp.synthetic(32, 16, 'cpu')
    learn = tp.fastai_learner('ERM', tp.make_model('small_cnn', 'cpu', False), ds, spur, 8, 'bf16', False)
    dtypes = []
    h = learn.model.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    h.remove()
    assert dtypes and all(d == torch.bfloat16 for d in dtypes), dtypes
