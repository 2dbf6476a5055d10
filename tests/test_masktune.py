"MaskTune: XGradCAM against the `grad-cam` package, and properties of `saliency_mask` / `apply_mask`."
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from spurnotes.core import SmallCNN, set_seed
from spurnotes.masktune import xgradcam, saliency_heat, saliency_mask, saliency_threshold, apply_mask, random_square_mask

pytest.importorskip('pytorch_grad_cam')
from pytorch_grad_cam import XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

@pytest.mark.parametrize('seed', [0, 1])
def test_xgradcam_matches_grad_cam_package(seed):
    set_seed(seed)
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
    set_seed(0)
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
