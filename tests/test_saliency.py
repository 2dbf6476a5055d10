"""spurnotes.saliency: the threshold and mask against NumPy, the random-mask ablation's area, shares of the heat in a region,
and the heat's range and shape; the comparison with the `grad-cam` package lives in test_masktune.py."""
import numpy as np
import pytest
import torch
from fastai.torch_core import set_seed
from spurnotes.groups import GroupDataset
from spurnotes.models import SmallCNN
from spurnotes.saliency import (xgradcam, minmax, saliency_heat, saliency_threshold, saliency_mask, apply_mask,
                                random_square_mask, saliency_share, masked_share, dataset_heat)

def test_threshold_is_mean_plus_k_std_of_the_positive_heat():
    g = torch.Generator().manual_seed(0)
    heat = torch.rand(3, 6, 6, generator=g) * (torch.rand(3, 6, 6, generator=g) > 0.4)
    for k in (1., 2.):
        thr = saliency_threshold(heat, k)
        for i in range(3):
            pos = heat[i][heat[i] > 0].numpy()
            assert thr[i].item() == pytest.approx(pos.mean() + k * pos.std(), rel=1e-5)
        assert torch.equal(saliency_mask(heat, k), heat > thr.view(-1, 1, 1))

def test_apply_mask_zeroes_every_channel_and_checks_the_shape():
    x = torch.rand(2, 3, 4, 4) + 0.1
    m = torch.zeros(2, 4, 4, dtype=torch.bool); m[0, 1, 2] = True
    out = apply_mask(x, m)
    assert out[0, :, 1, 2].abs().sum() == 0 and (out != 0).sum() == 2 * 3 * 16 - 3
    with pytest.raises(ValueError, match=r"expected \(N, H, W\) = \(2, 4, 4\)"): apply_mask(x, m[:, :2])

def test_random_square_has_the_area_of_the_mask():
    m = torch.zeros(5, 10, 10, dtype=torch.bool); m[:, :3, :3] = True       # 9 pixels each
    r = random_square_mask(m, torch.Generator().manual_seed(0))
    assert r.flatten(1).sum(1).tolist() == [9] * 5 and not all(torch.equal(r[i], m[i]) for i in range(5))

def test_shares_of_a_region():
    region = torch.zeros(4, 4, dtype=torch.bool); region[:2] = True
    assert saliency_share(torch.ones(3, 4, 4), region).tolist() == pytest.approx([0.5] * 3)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool); masks[0, 0, :] = True; masks[1, 3, :] = True
    assert masked_share(masks, region).tolist() == pytest.approx([0.5, 0.0])

def test_heat_is_in_unit_range_at_input_size_and_restores_train_mode():
    set_seed(0, reproducible=True)
    model = SmallCNN(3, 2, width=4, hidden=8).train()
    x = torch.rand(4, 3, 16, 16)
    heat = saliency_heat(model, model.features, x)
    assert heat.shape == (4, 16, 16) and heat.min() >= 0 and heat.max() <= 1 + 1e-6 and model.training
    cam, logits = xgradcam(model, model.features, x)
    assert cam.shape == (4, 8, 8) and (cam >= 0).all() and logits.shape == (4, 2)
    torch.testing.assert_close(minmax(cam).flatten(1).amax(1), torch.ones(4), atol=1e-3, rtol=0)   # (eps 1e-7 in the denominator)
    ds = GroupDataset(x, torch.zeros(4), torch.zeros(4))
    torch.testing.assert_close(dataset_heat(model, model.features, ds, bs=3), heat)
