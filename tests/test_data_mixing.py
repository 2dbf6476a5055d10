"Data mixing: SpuriousMix inside a fastai training loop (balance, p = 0, validation), DFR/DISPEL against a linear toy, bad input, pretrained weights."
import os
import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from fastai.callback.core import Callback
from fastai.torch_core import set_seed
from spurnotes.models import make_backbone, SmallCNN
from spurnotes.learner import erm_learner
from spurnotes.groups import GroupInfo, GroupDataset
from spurnotes.datasets import load_dataset
from spurnotes.groups import SpuriousData
from spurnotes.data_mixing import SpuriousMix, attr_probs, mix_learner, last_linear, embeddings, dispel, dfr, dispel_probs, balanced_indices, check_groups, pretrained_backbone, toy_data
from spurnotes.models import weights_path

@pytest.fixture(scope='module')
def dob():
    return load_dataset('digits_on_backgrounds', None, seed=0, size=28, source='sklearn')

class Capture(Callback):
    "Keeps the batch as the model will see it (order after SpuriousMix) or as the DataLoader made it (before)."
    def __init__(self, order): self.order, self.seen = order, []
    def before_batch(self):
        if self.training: self.seen.append(self.learn.xb[0].detach().clone())

def tiny_learner(data, seed=0):
    set_seed(seed, reproducible=True)
    return erm_learner(data.dls(bs=64, seed=seed, device='cpu'), SmallCNN(3, 2, width=4, hidden=8), data.info, lr=0.01)

def fit_one(learn, *cbs):
    with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=list(cbs))

def class_pvalues(pairs, n_classes, n_attrs):
    "Chi-square p-value of uniform mixed-in attributes, per class."
    n = torch.zeros(n_classes, n_attrs)
    n.index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs)), accumulate=True)
    return [chisquare(n[c].numpy()).pvalue for c in range(n_classes)], n

def test_every_class_attribute_pair_equally_often_over_a_training_epoch(dob):
    cb = SpuriousMix(dob.spurious, p=0.5, record=True)
    fit_one(tiny_learner(dob), cb)
    pairs = torch.cat(cb.pairs)
    assert len(pairs) == sum(round(0.5 * 64) for _ in range(len(dob.train) // 64))   # exactly p of every batch
    pv, n = class_pvalues(pairs, 2, 2)
    assert min(pv) > 1e-3, n
    # the same test has the power to reject a draw that follows the label
    cb = SpuriousMix(dob.spurious, p=0.5, probs=attr_probs('train', dob.info), record=True)
    fit_one(tiny_learner(dob), cb)
    assert max(class_pvalues(torch.cat(cb.pairs), 2, 2)[0]) < 1e-6

def test_p_zero_leaves_training_batches_bit_identical(dob):
    before, after = Capture(order=4), Capture(order=6)
    fit_one(tiny_learner(dob), before, SpuriousMix(dob.spurious, p=0.), after)
    assert len(before.seen) == len(after.seen) > 0
    assert all(torch.equal(b, a) for b, a in zip(before.seen, after.seen))
    before, after = Capture(order=4), Capture(order=6)
    fit_one(tiny_learner(dob), before, SpuriousMix(dob.spurious, p=1.), after)
    assert not any(torch.equal(b, a) for b, a in zip(before.seen, after.seen))

def test_validation_is_not_mixed(dob):
    learn = tiny_learner(dob)
    fit_one(learn)
    ref = learn.get_preds(dl=dob.dl('valid', device='cpu'))[0]
    learn.add_cb(SpuriousMix(dob.spurious, p=1., lam=1.))
    with learn.no_bar(): got = learn.get_preds(dl=dob.dl('valid', device='cpu'))[0]
    assert torch.equal(ref, got)
    with learn.no_bar(): val = learn.validate()
    learn.remove_cbs(learn.cbs.filter(lambda c: isinstance(c, SpuriousMix)))
    with learn.no_bar(): assert val == learn.validate()

def test_last_layer_fine_tuning_changes_only_the_last_layer(dob):
    set_seed(0, reproducible=True)
    model = make_backbone('masktune_cnn', 3, 2)
    learn = mix_learner(dob.dls(bs=64, seed=0, device='cpu'), model, dob.info, last_layer=True, lr=0.05)
    head = last_linear(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit_one(learn, SpuriousMix(dob.spurious, p=1.))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {k for k, _ in model.named_parameters() if any(p is _ for p in head.parameters())} == {'head.5.weight', 'head.5.bias'}

def test_dfr_and_dispel_undo_the_shortcut_of_a_linear_toy():
    "Embeddings from the linear toy: the shortcut coordinate is cleaner; a balanced head must weigh the core instead."
    info = GroupInfo(['c0', 'c1'], ['a0', 'a1'])
    x, y, a = toy_data(4000, rho=0.95, seed=0)                # the (unlabelled) pool: 95% of examples follow the shortcut
    xl, yl, al = toy_data(400, rho=0.5, seed=1)               # a small group-labelled set, balanced
    xt, yt, at = toy_data(4000, rho=0.5, seed=2)
    def wga(probs):
        ok = probs.argmax(1).numpy() == yt
        return min(ok[(yt == i) & (at == j)].mean() for i in (0, 1) for j in (0, 1))
    from sklearn.linear_model import LogisticRegression
    erm = LogisticRegression().fit(x, y)
    erm_wga = min((erm.predict(xt) == yt)[(yt == i) & (at == j)].mean() for i in (0, 1) for j in (0, 1))
    f_dfr = dfr(xl, yl, al, info, e_pool=x, y_pool=y, n_fits=3, seed=0)
    f_dis = dispel(xl, yl, al, info, e_pool=x, y_pool=y, n_fits=3, s_grid=(1., 0.7), alpha_grid=(1., 0.6), C_grid=(1., 0.1), seed=0)
    assert erm_wga < 0.5
    assert wga(dispel_probs(f_dfr, xt)) > 0.75 and wga(dispel_probs(f_dis, xt)) > 0.75
    assert (f_dfr['s'], f_dfr['alpha']) == (1., 1.) and len(f_dis['grid']) == 8

def test_balanced_indices_take_the_smallest_group_from_each():
    g = np.array([0] * 7 + [1] * 2 + [2] * 5 + [3] * 3)
    idx = balanced_indices(g, [0, 1, 2, 3], np.random.default_rng(0))
    assert np.bincount(g[idx]).tolist() == [2, 2, 2, 2] and len(set(idx)) == 8

# --- bad input: each error names what was expected

def test_dataset_without_a_spurious_set(dob):
    bare = SpuriousData('bare', dob.info, dob.splits, dob.test_splits, spurious=None)
    with pytest.raises(ValueError, match="needs spurious-only examples"): SpuriousMix(bare.spurious)
    with pytest.raises(ValueError, match="needs spurious-only examples"): SpuriousMix(GroupDataset(dob.train.x[:0], dob.train.y[:0], dob.train.a[:0]))

@pytest.mark.parametrize('p', [-0.1, 1.5])
def test_mixing_fraction_outside_unit_interval(dob, p):
    with pytest.raises(ValueError, match=r"p=.* share of each batch to mix; expected a number in \[0, 1\]"): SpuriousMix(dob.spurious, p=p)

def test_other_bad_mixing_settings(dob):
    with pytest.raises(ValueError, match=r"lam=1.2 .*expected a number in \[0, 1\]"): SpuriousMix(dob.spurious, lam=1.2)
    with pytest.raises(ValueError, match="positive number"): SpuriousMix(dob.spurious, alpha=0.)
    with pytest.raises(ValueError, match="rows sum to 1"): SpuriousMix(dob.spurious, probs=torch.tensor([[0.5, 0.6], [0.5, 0.5]]))
    only_one = GroupDataset(dob.spurious.x[:3], dob.spurious.y[:3], torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"no example of attribute\(s\) \[1\]"): SpuriousMix(only_one, probs=attr_probs('uniform', dob.info))
    with pytest.raises(ValueError, match="expected 'uniform', 'train' or 'counter'"): attr_probs('balanced', dob.info)

def test_group_labelled_set_that_lacks_a_group(dob):
    info = dob.info
    y, a = np.array([0, 0, 1, 1] * 5), np.array([0, 1, 0, 0] * 5)          # no (5-9, vertical)
    e = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match=r"The group-labelled set has no example of group\(s\) \['5-9 / vertical'\].*missing='drop'"):
        dfr(e, y, a, info)
    fit = dfr(e, y, a, info, missing='drop', n_fits=1)   # the documented fallback: balance over the groups present
    assert dispel_probs(fit, e).shape == (20, 2)
    with pytest.raises(ValueError, match="expected 'error' or 'drop'"): dfr(e, y, a, info, missing='ignore')
    y1, a1 = np.array([0, 0, 1, 1, 0, 1, 1]), np.array([0, 1, 0, 1, 0, 0, 0])   # (0-4, vertical) and (5-9, vertical) once: not in both halves
    with pytest.raises(ValueError, match="half of the group-labelled set has no example"): dfr(np.zeros((7, 2)), y1, a1, info)

# --- pretrained backbones through torchvision's weights API, offline

def test_missing_weights_name_the_weights_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    w, path = weights_path('resnet18')
    assert str(path).startswith(str(tmp_path)) and path.name.endswith('.pth')
    with pytest.raises(FileNotFoundError) as e: pretrained_backbone('resnet18')
    assert 'ResNet18_Weights.IMAGENET1K_V1' in str(e.value) and str(path) in str(e.value) and 'download=True' in str(e.value)
    with pytest.raises(ValueError, match="No torchvision weights 'NOPE'"): weights_path('resnet18', 'NOPE')

def test_cached_weights_are_loaded(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    _, path = weights_path('resnet18')
    path.parent.mkdir(parents=True)
    torch.manual_seed(3); ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), path)
    net, tfm = pretrained_backbone('resnet18', n_classes=3)
    assert torch.equal(net.net.conv1.weight, ref.conv1.weight) and torch.equal(net.net.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)
    assert net.net.fc.out_features == 3 and tfm is not None
    assert pretrained_backbone('resnet18', weights=None)[1] is None

# --- precision: SpuriousMix under fastai's mixed precision -------------------------------------------------------
import warnings
from cpu_amp import CPUMixedPrecision

class _ModelInput(Callback):
    "dtype of the first layer's output (a forward hook) and the batch the model sees, on training batches."
    order = 50
    def before_fit(self):
        self.dtypes, self.xs = [], []
        self.h = self.learn.model.features[0].register_forward_hook(lambda m, i, o: self.dtypes.append(o.dtype) if m.training else None)
    def before_batch(self):
        if self.training: self.xs.append(self.learn.xb[0].detach().clone())
    def after_fit(self): self.h.remove()

@pytest.mark.parametrize('prec', ['fastai bf16', 'cpu bf16'])
def test_spurious_mix_under_bf16(dob, prec):
    learn = tiny_learner(dob)
    learn = learn.to_bf16() if prec == 'fastai bf16' else learn.add_cb(CPUMixedPrecision(amp_mode='bf16'))
    mix, seen, raw = SpuriousMix(dob.spurious, p=0.5, lam=0.5, record=True), _ModelInput(), Capture(order=0)
    losses = []
    class _Loss(Callback):
        def after_loss(self):
            if self.training: losses.append(self.learn.loss.detach().float())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # fastai's to_bf16 on a CPU: "CUDA is not available, disabling autocast"
        fit_one(learn, mix, seen, raw, _Loss())
    n_batches = len(dob.train) // 64
    assert len(mix.pairs) == n_batches and len(losses) == n_batches and torch.isfinite(torch.stack(losses)).all()
    # exactly half of each batch is mixed; the batch stays float32 (the model's autocast casts inside)
    assert all(((x - r).abs().flatten(1).amax(1) > 0).sum() == 32 and x.dtype == torch.float32 for x, r in zip(seen.xs, raw.seen))
    assert set(seen.dtypes) == ({torch.bfloat16} if prec == 'cpu bf16' else {torch.float32})
