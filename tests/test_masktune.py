"MaskTune: XGradCAM against the `grad-cam` package, properties of `saliency_mask` / `apply_mask`, and the masking pass under the learner's precision."
import warnings
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from spurnotes.groups import GroupDataset, GroupInfo
from spurnotes.models import SmallCNN, cam_layer
from spurnotes.learner import erm_learner
from spurnotes.loaders import group_dls
from fastai.torch_core import set_seed
from spurnotes.saliency import xgradcam, saliency_heat, saliency_mask, saliency_threshold, apply_mask, random_square_mask
from spurnotes.masktune import dataset_masks, fit_masktune, MaskTune
from spurnotes.learner import learner_precision, fit_with_checkpoints

@pytest.mark.parametrize('seed', [0, 1])
def test_xgradcam_matches_grad_cam_package(seed):
    pytest.importorskip('pytorch_grad_cam')
    from pytorch_grad_cam import XGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    set_seed(seed, reproducible=True)
    model = SmallCNN(3, 2, width=8)
    with torch.no_grad():  # make BatchNorm's eval statistics non-trivial
        model.train(); model(torch.rand(64, 3, 28, 28))
    model.eval()
    x = torch.rand(12, 3, 28, 28)
    ours = saliency_heat(model, model.features, x)
    preds = model(x).argmax(1)
    with XGradCAM(model=model, target_layers=[model.features]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(p)) for p in preds])
    assert ours.shape == ref.shape == (12, 28, 28)
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-3)

def test_xgradcam_uses_predicted_class_and_eval_mode():
    set_seed(0, reproducible=True)
    model = SmallCNN(3, 2, width=8).train()
    x = torch.rand(4, 3, 28, 28)
    cam, logits = xgradcam(model, model.features, x)
    assert model.training  # restored
    model.eval()
    cam_t, _ = xgradcam(model, model.features, x, target=model(x).argmax(1))
    torch.testing.assert_close(cam, cam_t)
    assert all(p.grad is None for p in model.parameters())  # only the activations get a gradient

heats = st.integers(1, 4).flatmap(lambda n: st.tuples(st.just(n), st.integers(4, 12), st.integers(4, 12), st.integers(0, 2**31 - 1)))

@settings(max_examples=60, deadline=None)
@given(heats, st.floats(0.0, 3.0))
def test_saliency_mask_properties(spec, k):
    n, h, w, seed = spec
    g = torch.Generator().manual_seed(seed)
    heat = torch.rand(n, h, w, generator=g) * (torch.rand(n, h, w, generator=g) > 0.3)
    x = torch.rand(n, 3, h, w, generator=g) + 0.01  # no pixel is zero to start with
    mask = saliency_mask(heat, k)
    assert mask.dtype == torch.bool and mask.shape == (n, h, w)
    tau = saliency_threshold(heat, k)
    assert torch.equal(mask, heat > tau.view(-1, 1, 1))
    for i in range(n):  # threshold: mean + k * population std of the positive values, image by image
        pos = heat[i][heat[i] > 0].double()
        if len(pos): assert abs(tau[i].item() - (pos.mean() + k * pos.std(unbiased=False)).item()) < 1e-5
    xm = apply_mask(x, mask)
    m3 = mask[:, None].expand_as(x)
    assert (xm[m3] == 0).all()                  # masked pixels are exactly zero, in every channel
    assert torch.equal(xm[~m3], x[~m3])         # the rest is untouched
    assert torch.equal((xm == 0).all(1), mask)  # and nothing else became zero

@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(4, 16), st.integers(0, 200), st.integers(0, 1000))
def test_random_square_mask_same_area(n, size, area, seed):
    area = min(area, size * size)
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    mask.view(n, -1)[:, :area] = True
    r = random_square_mask(mask, torch.Generator().manual_seed(seed))
    side = round(area ** 0.5)
    assert r.shape == mask.shape and (r.flatten(1).sum(1) == side * side).all()


# --- the masking pass under the learner's precision (fastai's MixedPrecision: to_bf16() / to_fp16()) ---------------
# CPU autocast supports bfloat16, so these run without a GPU: fastai's own MixedPrecision autocasts CUDA only, but the
# masking pass autocasts on the learner's device type with the learner's dtype.

def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 28, 28, generator=g) * 0.3
    y = torch.arange(n) % 2
    x[y == 1, 0, :6, :6] = 1.   # a red square on class 1: something for the saliency to find
    return GroupDataset(x, y, torch.zeros(n, dtype=torch.long))

def _learner(ds, precision, tmp_path, seed=0):
    set_seed(seed, reproducible=True)
    learn = erm_learner(group_dls(ds, ds.subset(torch.arange(32)), bs=32, seed=seed, device='cpu'), SmallCNN(3, 2, width=8, hidden=16),
                        GroupInfo(['0', '1'], ['u']), path=tmp_path/precision)
    return learn.to_bf16() if precision == 'bf16' else learn.to_fp16() if precision == 'fp16' else learn

class _Dtypes:
    "Record the dtype of `layer`'s output on every forward in eval mode (the saliency pass; training steps are in train mode)."
    def __init__(self, layer): self.seen, self.h = [], layer.register_forward_hook(lambda m, i, o: self.seen.append(o.dtype) if not m.training else None)
    def __enter__(self): return self
    def __exit__(self, *a): self.h.remove()

def test_learner_amp_dtype(tmp_path):
    ds = _data()
    assert learner_precision(_learner(ds, 'fp32', tmp_path)) is None
    assert learner_precision(_learner(ds, 'bf16', tmp_path)) == torch.bfloat16
    assert learner_precision(_learner(ds, 'fp16', tmp_path)) == torch.float16

def _iou(a, b): return ((a & b).flatten(1).sum(1).float() / (a | b).flatten(1).sum(1).clamp(min=1).float())

def test_dataset_masks_autocast_bf16_close_to_fp32(tmp_path):
    ds = _data()
    learn = _learner(ds, 'bf16', tmp_path)
    with warnings.catch_warnings(), learn.no_bar(), learn.no_logging():
        warnings.simplefilter('ignore'); learn.fit(2)
    model, layer = learn.model.eval(), cam_layer(learn.model)
    with _Dtypes(layer) as rec: m32 = dataset_masks(model, layer, ds, bs=32)
    assert set(rec.seen) == {torch.float32}
    with _Dtypes(layer) as rec: m16 = dataset_masks(model, layer, ds, bs=32, dtype=learner_precision(learn))
    assert set(rec.seen) == {torch.bfloat16} and len(rec.seen) == 3   # three batches, each forward under bf16 autocast
    assert m16.dtype == torch.bool and m16.shape == m32.shape == (len(ds), 28, 28) and m16.device == m32.device
    assert (m16 == m32).float().mean() > 0.99     # pixels that agree
    assert _iou(m16, m32).mean() > 0.9            # masks that overlap: bf16 moves the threshold by a pixel here and there
    h32, h16 = (saliency_heat(model, layer, ds.x[:32], dtype=d) for d in (None, torch.bfloat16))
    assert h16.dtype == torch.float32 and (h16 - h32).abs().mean() < 0.02   # the heat itself, in [0, 1]

@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_masktune_masking_pass_follows_learner_precision(precision, tmp_path):
    "`masktune` reads the learner's precision: its saliency pass autocasts under a bf16 learner, not under an fp32 one."
    ds = _data()
    learn = _learner(ds, precision, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fit_with_checkpoints(learn, 2)
        with _Dtypes(cam_layer(learn.model)) as rec: _, masks = fit_masktune(learn, ds, ds.subset(torch.arange(32)), bs=32)
    # eval-mode forwards: the masking pass, then validation (fastai's autocast is CUDA-only, so validation is fp32 on a CPU)
    want = torch.bfloat16 if precision == 'bf16' else torch.float32
    assert rec.seen[:3] == [want] * 3 and masks.shape == (len(ds), 28, 28)

def test_masktune_callback_follows_learner_precision(tmp_path):
    ds = _data()
    smodel = SmallCNN(3, 2, width=8, hidden=16).eval()
    for precision, want in [('fp32', torch.float32), ('bf16', torch.bfloat16)]:
        learn = _learner(ds, precision, tmp_path)
        cb = MaskTune(smodel)
        with _Dtypes(cam_layer(cb.smodel)) as rec, warnings.catch_warnings(), learn.no_bar(), learn.no_logging():
            warnings.simplefilter('ignore'); learn.fit(1, cbs=[cb])
        assert set(rec.seen) == {want} and len(rec.seen) == 3   # one saliency pass per training batch

class _FromDisk(torch.utils.data.Dataset):
    "A dataset like the real benchmarks' (`ImageGroupDataset`): images produced on access, `x` not in memory."
    def __init__(self, ds): self.ds, self.y, self.a, self.x = ds, ds.y, ds.a, None
    def __len__(self): return len(self.ds)
    def __getitem__(self, i): return self.ds[i]

def test_masktune_on_images_read_from_disk(tmp_path):
    "Datasets not held in memory are masked batch by batch by the `MaskTune` callback: the same fine-tuning as the in-memory path."
    ds = _data()
    out = {}
    for kind in ['memory', 'disk']:
        learn = _learner(ds, 'fp32', tmp_path/kind)
        fit_with_checkpoints(learn, 2)
        tr, va = (ds, ds.subset(torch.arange(32))) if kind == 'memory' else (_FromDisk(ds), _FromDisk(ds.subset(torch.arange(32))))
        learn, masks = fit_masktune(learn, tr, va, bs=32)
        out[kind] = (torch.cat([p.detach().flatten() for p in learn.model.parameters()]), masks)
    assert out['disk'][1] is None and out['memory'][1].shape == (len(ds), 28, 28)
    torch.testing.assert_close(out["disk"][0], out["memory"][0], atol=1e-5, rtol=0)   # the same masks, so the same epoch
    with pytest.raises(ValueError, match="need the training images in memory"):
        fit_masktune(learn, _FromDisk(ds), _FromDisk(ds), bs=32, accumulate=True)
