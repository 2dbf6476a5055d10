"""spurnotes.loaders: group-balanced sampling, augmentation on the device, batches held on the device, non-blocking copies."""
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_spawrious
from spurnotes.datasets import load_spawrious
from spurnotes.loaders import GroupBalancedDL, RandomResizedCropFlip, balanced_dl
from spurnotes.groups import GroupDataset, GroupInfo, SpuriousData

@pytest.fixture(scope='module')
def spawrious(tmp_path_factory): return make_spawrious(tmp_path_factory.mktemp('spawrious'))

# ---- group-balanced sampling ----
def _skewed(sizes=(500, 50, 30, 20), seed=0):
    y = torch.cat([torch.full((n,), g // 2) for g, n in enumerate(sizes)]); a = torch.cat([torch.full((n,), g % 2) for g, n in enumerate(sizes)])
    return GroupDataset(torch.rand(len(y), 1, 4, 4, generator=torch.Generator().manual_seed(seed)), y, a, idx=torch.arange(len(y)))

def test_group_balanced_epoch_counts():
    "Over an epoch each group is drawn bs // G times a batch plus a Binomial(n_batches, (bs % G) / G) share of the rest; members cycle."
    from scipy.stats import binom
    ds = _skewed()
    dl = balanced_dl(ds, bs=30, seed=0, device='cpu')
    assert len(dl) == 600 // 30
    for epoch in range(3):
        groups, seen = [], []
        for x, y, a in dl:
            g = 2 * y + a
            c = torch.bincount(g, minlength=4)
            assert c.max() - c.min() <= 1 and c.sum() == 30
            groups.append(g); seen.append(x)
        counts = torch.bincount(torch.cat(groups), minlength=4)
        lo, hi = binom.ppf([1e-6, 1 - 1e-6], 20, 2 / 4)
        assert ((counts >= 20 * 7 + lo) & (counts <= 20 * 7 + hi)).all(), counts
        chi2 = (((counts - 150.) ** 2) / 150.).sum()
        assert chi2 < 16.27   # the 0.999 quantile of chi-square with 3 degrees of freedom
    # members: the 20-image group is cycled (each member 7 or 8 times in ~150 draws), the 500-image group never repeats in an epoch
    idx = torch.as_tensor(dl.get_idxs())
    g = 2 * ds.y[idx] + ds.a[idx]
    small = torch.bincount(idx[g == 3], minlength=600)[ds.y * 2 + ds.a == 3]
    assert small.min() >= small.max() - 1
    big = idx[g == 0]
    assert len(big.unique()) == len(big)

def test_group_balanced_unshuffled_is_every_example_once():
    ds = _skewed()
    dl = balanced_dl(ds, bs=30, seed=0, device='cpu').new(shuffle=False, drop_last=False)
    assert torch.cat([x for x, _, _ in dl]).shape[0] == 600 and torch.equal(torch.as_tensor(dl.get_idxs()), torch.arange(600))
    with pytest.raises(ValueError, match="bs=3 is below the 4 groups present"): balanced_dl(ds, bs=3)

def test_group_balanced_dls_on_images(spawrious):
    "SpuriousData.dls(balanced=True) on lazily read images: batches hold the present groups equally."
    d = load_spawrious(spawrious, 'o2o_easy', size=8, total=10)
    dls = d.dls(bs=16, seed=0, device='cpu', balanced=True, num_workers=0)
    assert isinstance(dls.train, GroupBalancedDL)
    x, y, a = dls.one_batch()
    c = torch.bincount(y * 6 + a, minlength=24)
    assert x.shape == (16, 3, 8, 8) and (c[c > 0] == 2).all() and (c > 0).sum() == 8   # 8 (breed, location) groups, 2 each

# ---- training-time augmentation on the device ----
def test_random_resized_crop_flip_shapes_and_crop():
    x = torch.linspace(0, 1, 32).expand(5, 3, 32, 32).contiguous()   # value = horizontal position
    aug = RandomResizedCropFlip(size=24, scale=(0.25, 0.25), ratio=(1, 1), p_flip=0., seed=0)
    out = aug(x, split_idx=0)
    assert out.shape == (5, 3, 24, 24) and out.dtype == x.dtype
    width = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    assert torch.allclose(width, torch.full((5,), 0.5 * 23 / 24), atol=0.03)   # a crop of half the side, resampled
    again = RandomResizedCropFlip(size=24, scale=(0.25, 0.25), ratio=(1, 1), p_flip=0., seed=0)(x, split_idx=0)
    assert torch.equal(out, again)   # seeded: the same crops
    y = torch.arange(5)
    assert aug((x, y), split_idx=0)[1] is y   # labels pass through

@pytest.mark.parametrize('device', ['cpu'] + (['cuda'] if torch.cuda.is_available() else []))
def test_augmentation_runs_on_the_batch_device(device):
    x = torch.rand(4, 3, 16, 16, device=device)
    aug = RandomResizedCropFlip(seed=0)
    out = aug(x, split_idx=0)
    assert out.device == x.device and aug._gen.device.type == x.device.type

def test_augmentation_touches_training_batches_only():
    "Through SpuriousData.dls: validation batches are the stored images; training batches are flips of stored images."
    g = torch.Generator().manual_seed(0)
    tr, va = (GroupDataset(torch.rand(12, 3, 8, 8, generator=g), torch.arange(12) % 2, torch.arange(12) // 6) for _ in range(2))
    d = SpuriousData('toy', GroupInfo(['0', '1'], ['p', 'q']), {'train': tr, 'valid': va}, [])
    dls = d.dls(bs=6, seed=0, device='cpu', augment=RandomResizedCropFlip(scale=(1, 1), ratio=(1, 1), p_flip=1.))
    assert torch.equal(torch.cat([b[0] for b in dls.valid]), va.x)
    flipped = tr.x.flip(-1)
    for xb, yb, ab in dls.train:
        for img in xb: assert (flipped - img).abs().flatten(1).max(1).values.min() < 1e-5   # each is a stored image, flipped

def test_balanced_augmented_dls_train_an_erm_learner():
    "The balanced, augmented DataLoaders go through a fastai fit and get_preds on the training set (fastai's new(shuffle=False))."
    from spurnotes.learner import erm_learner, get_group_preds
    from spurnotes.models import make_backbone
    torch.set_num_threads(1)
    ds = _skewed((60, 10, 10, 60))
    ds = ds.replace(x=ds.x.repeat(1, 3, 7, 7))   # 28x28 RGB
    d = SpuriousData('toy', GroupInfo(['0', '1'], ['p', 'q']), {'train': ds, 'valid': ds.subset(torch.arange(0, 140, 7))}, [])
    d.info.train_counts = [[60, 10], [10, 60]]
    learn = erm_learner(d.dls(bs=20, seed=0, device='cpu', balanced=True, augment=RandomResizedCropFlip(seed=0)), make_backbone('small_cnn', 3, 2), d.info)
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    assert len(learn.recorder.values) == 1 and all(np.isfinite(v) for v in learn.recorder.values[0])
    probs, y, a = get_group_preds(learn, learn.dls.train.new(shuffle=False, drop_last=False))
    assert probs.shape == (140, 2) and torch.equal(y, ds.y)

# ---- built-in testbeds held on the device; non-blocking copies from the host ----
# 'meta' stands in for a GPU here: a device that is not the CPU, on which tensors index without data
from fastai.data.load import DataLoader
from spurnotes.groups import GroupInfo
from spurnotes.loaders import GroupDL, group_dl, group_dls
from spurnotes.metrics import group_correct_total, GroupMetric

def _counting_on(monkeypatch):
    "Count the device copies `GroupDataset.on` makes."
    made, orig = [], GroupDataset.on
    def on(self, device):
        before = self.__dict__.get('_held')
        out = orig(self, device)
        if out is not self and self.__dict__.get('_held') is not before: made.append(str(device))
        return out
    monkeypatch.setattr(GroupDataset, 'on', on)
    return made

def test_cpu_batches_index_the_dataset_itself(monkeypatch):
    "device='cpu': no copy of the dataset, every batch gathered from its own tensors (same storage before, during and after)."
    made = _counting_on(monkeypatch)
    ds = _skewed()
    ptr = ds.x.data_ptr()
    dl = group_dl(ds, bs=64, shuffle=True, seed=0, device='cpu')
    assert isinstance(dl, GroupDL) and not dl.held and dl.source() is ds and not dl.pin_memory
    for epoch in range(2):
        for xb, yb, ab in dl:
            assert dl.source().x.data_ptr() == ptr and xb.device.type == 'cpu'
    assert ds.x.data_ptr() == ptr and made == [] and ds.on('cpu') is ds
    assert group_dl(ds, device='cpu', hold_on_device=True).source() is ds   # already on that device

def test_same_batches_as_before(monkeypatch):
    "The epoch's indices split into batches on the device give fastai's own batches: the same order, the same drop_last."
    ds = _skewed()
    dl = group_dl(ds, bs=64, shuffle=True, drop_last=True, seed=3, device='cpu')
    torch.manual_seed(0); ours = [b[2].clone() for b in dl]
    monkeypatch.setattr(GroupDL, 'create_batches', DataLoader.create_batches)   # fastai's item-by-item path
    dl2 = group_dl(ds, bs=64, shuffle=True, drop_last=True, seed=3, device='cpu')
    theirs = [b[2] for b in dl2]
    assert len(ours) == 600 // 64 and all(torch.equal(p, q) for p, q in zip(ours, theirs))

def test_held_on_a_device_copied_once(monkeypatch):
    "On a device that is not the CPU the dataset is copied there once; every batch indexes that copy with indices on the device."
    made = _counting_on(monkeypatch)
    ds = _skewed()
    dls = group_dls(ds, ds.subset(torch.arange(100)), bs=32, seed=0, device='meta')
    tr = dls.train
    assert tr.held and tr.source().x.device.type == 'meta' and ds.x.device.type == 'cpu'   # the dataset object stays on the host
    seen = []
    orig_getitem = GroupDataset.__getitem__
    monkeypatch.setattr(GroupDataset, '__getitem__', lambda self, i: seen.append(torch.as_tensor(i).device.type) or orig_getitem(self, i))
    for epoch in range(3):
        for xb, yb, ab in tr: assert xb.device.type == yb.device.type == ab.device.type == 'meta'
    assert len(seen) == 3 * len(tr) and set(seen) == {'meta'}
    list(tr.new(shuffle=False, drop_last=False))                 # get_preds on the training set: the same copy
    assert made.count('meta') == 1
    ds.x.mul_(0.5)                                               # changed in place: the copy is remade, once
    list(tr); list(tr)
    assert made.count('meta') == 2
    assert not tr.pin_memory and tr.fake_l.num_workers == 0

def test_hold_on_device_false_stays_on_the_host(monkeypatch):
    made = _counting_on(monkeypatch)
    ds = _skewed()
    dl = group_dl(ds, bs=50, device='meta', hold_on_device=False)
    assert not dl.held and dl.source() is ds
    assert all(xb.device.type == 'meta' for xb, _, _ in dl) and made == []   # copied batch by batch instead

def test_pinned_memory_where_batches_cross_to_cuda(spawrious):
    "Batches that travel from the host to a CUDA device come from pinned memory (no CUDA needed to build the loaders)."
    d = load_spawrious(spawrious, 'o2o_easy', size=8, total=10)
    ds = _skewed()
    assert group_dl(d.train, device='cuda').pin_memory                       # images read from files
    assert balanced_dl(d.train, bs=16, device='cuda').pin_memory
    assert not group_dl(ds, device='cuda').pin_memory                        # held on the GPU: nothing to pin
    assert group_dl(ds, device='cuda', hold_on_device=False).pin_memory
    assert not group_dl(d.train, device='cpu').pin_memory and not balanced_dl(ds, bs=16, device='cpu').pin_memory

def test_pinned_batches_are_copied_non_blocking(monkeypatch, spawrious):
    import spurnotes.loaders as loaders
    flags, orig = [], loaders.to_device
    monkeypatch.setattr(loaders, 'to_device', lambda b, device=None, non_blocking=False: flags.append(non_blocking) or orig(b, device, non_blocking))
    d = load_spawrious(spawrious, 'o2o_easy', size=8, total=10)
    dl = group_dl(d.train, bs=16, device='cpu')
    list(dl); assert set(flags) == {False}
    flags.clear(); dl.pin_memory = True                                     # as on a CUDA machine (the loader itself pins nothing here)
    list(dl); assert flags and set(flags) == {True}

def test_balanced_batches_held_on_the_device(monkeypatch):
    made = _counting_on(monkeypatch)
    ds = _skewed()
    dl = balanced_dl(ds, bs=30, seed=0, device='meta')
    assert isinstance(dl, GroupDL) and dl.held
    for _ in range(2): assert all(xb.device.type == 'meta' and len(xb) == 30 for xb, _, _ in dl)
    assert made == ['meta']
    cpu = balanced_dl(ds, bs=30, seed=0, device='cpu')
    assert cpu.source() is ds and not cpu.held

def test_group_counts_accumulate_on_the_device(monkeypatch):
    "Group metrics keep their counts where the predictions are (no bincount, whose CUDA kernel reads the largest index back to the host)."
    monkeypatch.setattr(torch, 'bincount', lambda *a, **k: (_ for _ in ()).throw(AssertionError('bincount called')))
    info = GroupInfo(['0', '1'], ['p', 'q'])
    c, t = group_correct_total(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.tensor([0, 1, 1]), info)
    assert c.tolist() == [1, 0, 0, 1] and t.tolist() == [1, 1, 0, 1]
    m = GroupMetric('worst_group', info)
    from types import SimpleNamespace
    learn = SimpleNamespace(pred=torch.zeros(4, 2, device='meta'), yb=(torch.zeros(4, dtype=torch.long, device='meta'), torch.ones(4, dtype=torch.long, device='meta')))
    m.accumulate(learn); m.accumulate(learn)
    assert m.correct.device.type == 'meta' and m.total.device.type == 'meta'

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches():
    ds = _skewed()
    g, c = group_dl(ds, bs=64, shuffle=True, seed=1, device='cuda'), group_dl(ds, bs=64, shuffle=True, seed=1, device='cpu')
    assert g.held and g.source().x.is_cuda
    for (xg, yg, ag), (xc, yc, ac) in zip(g, c): assert xg.is_cuda and torch.equal(xg.cpu(), xc) and torch.equal(ag.cpu(), ac)
