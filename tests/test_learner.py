"""spurnotes.learner: the ERM learner's optimizer styles, checkpoints with optimizer state, the learner's precision read in one
place, and the one evaluation loop (eval mode restored, the same outputs as a loop by hand)."""
import pytest
import torch
import torch.nn as nn
from fastai.torch_core import set_seed
from fastai.callback.fp16 import MixedPrecision
from spurnotes.groups import GroupInfo, GroupDataset
from spurnotes.loaders import group_dl, group_dls
from spurnotes.models import SmallCNN
from spurnotes.learner import (erm_learner, fit_with_checkpoints, load_checkpoint, learner_precision, set_precision,
                               eval_preds, evaluating, get_group_preds)
from cpu_amp import CPUMixedPrecision

INFO = GroupInfo(['a', 'b'], ['u', 'v'])

def _ds(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return GroupDataset(torch.rand(n, 3, 12, 12, generator=g), torch.arange(n) % 2, (torch.arange(n) // 2) % 2)

def _learner(tmp_path, **kw):
    set_seed(0, reproducible=True)
    return erm_learner(group_dls(_ds(), _ds(16, 1), bs=8, seed=0, device='cpu'), SmallCNN(3, 2, width=4, hidden=8), INFO, path=tmp_path, **kw)

def test_eval_preds_equals_a_loop_by_hand_and_restores_train_mode():
    set_seed(0, reproducible=True)
    m = SmallCNN(3, 2, width=4, hidden=8).train()     # BatchNorm: eval and train outputs differ
    ds = _ds()
    probs, y, a = eval_preds(m, group_dl(ds, bs=5, device='cpu'))
    assert m.training
    m.eval()
    with torch.no_grad(): ref = m(ds.x).softmax(-1)
    torch.testing.assert_close(probs, ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(y, ds.y) and torch.equal(a, ds.a)
    m.eval(); eval_preds(m, group_dl(ds, bs=8, device='cpu')); assert not m.training          # an eval model stays in eval

def test_eval_preds_raw_outputs_and_fn():
    m = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 2))
    ds = _ds()
    logits, _, _ = eval_preds(m, group_dl(ds, bs=7, device='cpu'), softmax=False)
    with torch.no_grad(): torch.testing.assert_close(logits, m(ds.x))
    flat, _, _ = eval_preds(m, group_dl(ds, bs=7, device='cpu'), fn=lambda mod, x: mod[0](x))
    assert flat.shape == (32, 3 * 12 * 12)

def test_evaluating_restores_on_an_exception():
    m = nn.Linear(2, 2).train()
    with pytest.raises(RuntimeError):
        with evaluating(m):
            assert not m.training
            raise RuntimeError
    assert m.training

def test_learner_precision_is_what_the_forward_autocasts_to(tmp_path):
    learn = _learner(tmp_path)
    assert learner_precision(learn) is None
    learn.add_cb(MixedPrecision(amp_mode='bf16'))
    assert learner_precision(learn) is None                                   # fastai autocasts CUDA: off on a CPU learner
    learn.remove_cb(MixedPrecision)
    learn.add_cb(CPUMixedPrecision(amp_mode='bf16'))
    assert learner_precision(learn) == torch.bfloat16
    seen = []
    class _Spy(MixedPrecision.__base__):
        order = 5   # before MixedPrecision's after_pred, which casts the prediction to float32
        def after_pred(self): seen.append((learner_precision(self.learn), self.learn.pred.dtype))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=_Spy())
    assert seen and all(p == torch.bfloat16 and d == torch.bfloat16 for p, d in seen)   # the reading agrees with the forward

def test_set_precision(tmp_path):
    learn = _learner(tmp_path)
    assert set_precision(learn, 'fp32') is learn and not any(isinstance(c, MixedPrecision) for c in learn.cbs)
    set_precision(learn, 'bf16'); assert any(isinstance(c, MixedPrecision) for c in learn.cbs)
    with pytest.raises(ValueError, match=r"precision='half': expected one of \['fp32', 'bf16', 'fp16'\]"): set_precision(learn, 'half')

def test_checkpoints_keep_the_optimizer_state(tmp_path):
    learn = _learner(tmp_path)
    fit_with_checkpoints(learn, 3, snapshots=[1])
    names = sorted(p.stem for p in (tmp_path/'models').glob('*.pth'))
    assert names == ['best', 'best_1', 'last', 'last_1']
    load_checkpoint(learn, 'last')
    assert sum(len(s) for s in learn.opt.state.values()) > 0
    learn.save('bare', with_opt=False)
    with pytest.raises(RuntimeError, match="Checkpoint 'bare' brought no optimizer state"): load_checkpoint(learn, 'bare')
    with pytest.raises(ValueError, match=r"snapshots \[3\]: expected epochs between 1 and 2"): fit_with_checkpoints(learn, 3, snapshots=[3])

def test_torch_weight_decay_matches_torch_sgd(tmp_path):
    set_seed(0, reproducible=True)
    ds = _ds(16)
    m = SmallCNN(3, 2, width=4, hidden=8); ref = SmallCNN(3, 2, width=4, hidden=8); ref.load_state_dict(m.state_dict())
    learn = erm_learner(group_dls(ds, ds, bs=16, device='cpu'), m, INFO, lr=0.1, wd=0.05, path=tmp_path)
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)
    for _ in range(2): opt.zero_grad(); nn.functional.cross_entropy(ref(ds.x), ds.y).backward(); opt.step()
    for p, q in zip(m.parameters(), ref.parameters()): torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="wd_style='adam'"): erm_learner(learn.dls, m, INFO, wd_style='adam')

def test_get_group_preds_matches_eval_preds(tmp_path):
    learn = _learner(tmp_path)
    p1, y1, a1 = get_group_preds(learn)
    p2, y2, a2 = eval_preds(learn.model, learn.dls.valid)
    torch.testing.assert_close(p1, p2); assert torch.equal(y1, y2) and torch.equal(a1, a2)
