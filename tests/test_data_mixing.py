"Data mixing: SpuriousMix inside a fastai training loop (balance, p = 0, validation), DFR/DISPEL against a linear toy, bad input, pretrained weights; the experiment (one seed at tiny sizes), its worst groups and its claims."
import os
import numpy as np
import pandas as pd
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
from spurnotes.data_mixing import (toy_head, toy_worst_group, TOY_INFO, experiment_data, mix_batch, mixed_pair_counts, split_halves, mixed_head,
                                   dispel_grid, head_probs, mix_run, first_epochs, epoch_preds, select_epoch, seed_run, ablation_variants,
                                   seed_worst_groups, mean_worst_group, SEL_AVG, SEL_WG, SEL_HALF, BIASED_DRAW, dfr_resampled, mixing_seed)
import spurnotes.data_mixing as dm   # (dm.claims_per_testbed: a name pytest would collect as a test)
from spurnotes.metrics import worst_group_accuracy
from spurnotes.learner import eval_preds
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
    f_dfr = dfr(xl, yl, al, info, n_fits=3, seed=0)
    f_dis = dispel(xl, yl, al, info, e_pool=x, y_pool=y, n_fits=3, s_grid=(1., 0.7), alpha_grid=(1., 0.6), C_grid=(1., 0.1), seed=0)
    assert erm_wga < 0.5
    assert wga(dispel_probs(f_dfr, xt)) > 0.75 and wga(dispel_probs(f_dis, xt)) > 0.75
    assert (f_dfr['s'], f_dfr['alpha']) == (1., 1.) and len(f_dis['grid']) == 8

def _l1(C):
    from sklearn.linear_model import LogisticRegression
    pen = dict(l1_ratio=1.) if str(LogisticRegression().get_params()['penalty']) == 'deprecated' else dict(penalty='l1')
    return LogisticRegression(**pen, C=C, solver='liblinear')

def test_dfr_fits_on_the_group_balanced_rows_themselves():
    "DFR as published: each head is an L1 fit on a group-balanced subsample of the labelled set, no row resampled."
    x, y, a = toy_data(500, rho=0.8, seed=7)
    g = y * 2 + a
    f = dfr(x, y, a, TOY_INFO, C_grid=(1.,), n_fits=1, seed=3)
    rows = f['rows'][0]
    assert np.bincount(g[rows]).tolist() == [np.bincount(g).min()] * 4 and len(set(rows.tolist())) == len(rows)
    direct = _l1(1.).fit(f['scaler'].transform(x)[rows], y[rows])   # scikit-learn on those rows, nothing else
    assert np.abs(f['head'][0] - direct.coef_).max() < 1e-3 and np.abs(f['head'][1] - direct.intercept_).max() < 1e-3
    # the final head is the mean of n_fits such fits; the grid holds one row per C, scored on the held-out half
    f3 = dfr(x, y, a, TOY_INFO, C_grid=(1., 0.1, 0.01), n_fits=3, seed=3)
    assert len(f3['rows']) == 3 and f3['grid'].C.tolist() == [1., 0.1, 0.01] and f3['C'] == f3['grid'].C[f3['grid'].valid_worst_group.idxmax()]
    mean = np.mean([_l1(f3['C']).fit(f3['scaler'].transform(x)[r], y[r]).coef_ for r in f3['rows']], 0)
    assert np.abs(f3['head'][0] - mean).max() < 1e-3
    # the resampled variant (DISPEL at s = 1, alpha = 1) is another estimator, under its own name
    fr = dfr_resampled(x, y, a, TOY_INFO, C_grid=(1.,), n_fits=1, pool_size=2000, seed=3)
    assert (fr['s'], fr['alpha']) == (1., 1.) and 'rows' not in fr

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


# --- worst groups: the package's metrics, with numpy's exact fractions ---------------------------------------------

def brute_worst_group(pred, y, a):
    "Worst-group accuracy by a loop over the groups present, in numpy float64."
    ok = np.asarray(pred) == np.asarray(y)
    return min(ok[(y == i) & (a == j)].mean() for i in np.unique(y) for j in np.unique(a) if ((y == i) & (a == j)).any())

def test_toy_worst_group_is_the_exact_fraction_of_the_worst_group():
    x, y, a = toy_data(3000, rho=0.9, seed=5)
    w, b = toy_head(x, y)[1]
    pred = (x @ w + b > 0).astype(int)
    got = toy_worst_group((w, b), x, y, a)
    assert got == brute_worst_group(pred, y, a)                                       # bit-identical to numpy
    assert abs(got - worst_group_accuracy(pred, y, a, TOY_INFO)) < 1e-6               # metrics' float32 value
    assert got < (pred == y).mean()                                                   # the shortcut costs the worst group

def test_dispel_grid_scores_each_head_by_its_held_out_worst_group():
    x, y, a = toy_data(600, rho=0.8, seed=1)
    g = y * 2 + a
    fit_i, val_i = split_halves(g, np.random.default_rng(0))
    P, Py = x[:0], y[:0]
    grid = dispel_grid(x, y, a, TOY_INFO, fit_i, val_i, P, Py, (1., 0.5), (1.,), (1., 0.01), 200, np.random.default_rng(3))
    rng = np.random.default_rng(3)   # the same draws, head by head, in the grid's order
    for _, r in grid.iterrows():
        h = mixed_head(x, y, g, fit_i, P, Py, r.s, r.alpha, r.C, 200, rng)
        assert r.valid_worst_group == brute_worst_group(head_probs(h, x[val_i]).argmax(1).numpy(), y[val_i], a[val_i])
    assert list(grid[['s', 'C']].itertuples(index=False, name=None)) == [(1., 1.), (1., 0.01), (0.5, 1.), (0.5, 0.01)]

# --- the stand-in batch, the embeddings ---------------------------------------------------------------------------

def test_mixed_pair_counts_count_every_mixed_row(dob):
    set_seed(0, reproducible=True)
    n = mixed_pair_counts(SpuriousMix(dob.spurious, p=0.25), dob, bs=100)
    sizes = [len(b[0]) for b in dob.dls(bs=100, seed=0, device='cpu').train]
    assert n.values.sum() == sum(round(0.25 * s) for s in sizes) and n.shape == (2, 2)

def test_embeddings_are_the_input_of_the_last_layer_and_keep_the_mode(dob):
    set_seed(0, reproducible=True)
    model = make_backbone('masktune_cnn', 3, 2).train()
    ds = dob.valid.subset(torch.arange(40))
    e = embeddings(model, ds, bs=16)
    assert model.training and e.shape == (40, 256) and e.dtype == torch.float32
    logits = eval_preds(model, [(ds.x,)], softmax=False)[0]
    assert torch.allclose(last_linear(model)(e), logits, atol=1e-5)

# --- the experiment: one seed at tiny sizes ------------------------------------------------------------------------

FIT = dict(bs=128, lr=0.01, wd=1e-4, precision='fp32')
MIX = dict(p=1., lam=0.8, beta_alpha=None, draw='uniform', **FIT)

@pytest.fixture(scope='module')
def run():
    data = experiment_data('digits_on_backgrounds', 0, 'sklearn', n_train=None)
    return seed_run(data, 0, dict(epochs=2, **FIT), MIX, dict(s_grid=(1., 0.8), alpha_grid=(1.,), C_grid=(1., 0.1), n_fits=1, pool_size=100, missing='drop'),
                    ft_epochs=1, ll_epochs=1)

def test_seed_run_rows(run):
    rows = pd.DataFrame(run['rows'])
    methods = ['ERM', 'input mixing (full network)', 'ERM continued (no mixing)', 'input mixing (last layer)', BIASED_DRAW, 'embedding mixing (DISPEL)', 'DFR']
    assert list(dict.fromkeys(rows.method)) == methods
    assert set(rows[rows.method == 'ERM'].selection) == {SEL_AVG, SEL_WG} and set(rows[rows.method == 'DFR'].selection) == {SEL_HALF}
    assert len(rows) == (5 * 2 + 2) * 4 and rows.value.between(0, 1).all() and (rows.split == 'test').all()
    assert set(rows.epoch.dropna()) <= {1, 2} and rows[rows.method == 'DFR'][['s', 'alpha']].drop_duplicates().values.tolist() == [[1., 1.]]

def test_seed_run_values_match_an_independent_evaluation(run):
    data, rows = run['data'], pd.DataFrame(run['rows'])
    # DFR: its head on the pre-trained model's test embeddings, worst group by a loop over the groups
    probs = dispel_probs(run['fits']['DFR'], embeddings(run['pretrained'], data['test']).numpy())
    got = rows[(rows.method == 'DFR') & (rows.metric == 'worst group')].value.item()
    assert abs(got - brute_worst_group(probs.argmax(1).numpy(), data['test'].y.numpy(), data['test'].a.numpy())) < 1e-6
    # ERM: the weights of the selected epoch, evaluated again; the learner is left at its last epoch
    erm, model = run['erm'], run['erm']['learn'].model
    e = select_epoch(erm, data.info, SEL_AVG)
    last = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(v, erm['epochs'][-1]['state'][k]) for k, v in last.items())
    model.load_state_dict(erm['epochs'][e]['state'])
    p, y, a = eval_preds(model, data.dl('test'))
    model.load_state_dict(last)
    got = rows[(rows.method == 'ERM') & (rows.selection == SEL_AVG) & (rows.metric == 'average (plain)')]
    assert got.epoch.item() == e + 1 and abs(got.value.item() - (p.argmax(1) == y).float().mean().item()) < 1e-6

def test_first_epochs_of_a_longer_run_are_the_shorter_run(run):
    "The ablation reuses the main run's first epochs: with a constant LR they are the run of fewer epochs."
    data = run['data']
    one, two = mix_run(run['pretrained'], data, 0, 1, **MIX), mix_run(run['pretrained'], data, 0, 2, **MIX)
    cut = first_epochs(two, 1)
    assert len(cut['epochs']) == 1 and all(torch.equal(v, cut['epochs'][0]['state'][k]) for k, v in one['epochs'][0]['state'].items())
    assert not all(torch.equal(v, two['epochs'][1]['state'][k]) for k, v in one['epochs'][0]['state'].items())
    assert torch.equal(epoch_preds(cut, data, 0)['test'][0], epoch_preds(one, data, 0)['test'][0])

def test_select_epoch_needs_a_known_rule(run):
    with pytest.raises(ValueError, match="expected SEL_AVG"): select_epoch(run['erm'], run['data'].info, 'last epoch')
    assert select_epoch(run['erm'], run['data'].info, SEL_WG) in (0, 1)

def test_ablation_variants_change_one_choice_each():
    v = ablation_variants(MIX, lams=[0.5, 0.8], betas=[2.0], ps=[0.5, 1.0], draws=['uniform', 'train'])
    assert v == [('main run', {}), ('λ = 0.5', {'lam': 0.5}), ('λ ~ Beta(2.0, 2.0)', {'beta_alpha': 2.0}), ('p = 0.5', {'p': 0.5}), ('draw = train', {'draw': 'train'})]

# --- reading the results: worst groups per seed, the claims' rules ----------------------------------------------------

def fake_results(values:dict, splits=('test_a', 'test_b')):
    "Tidy worst-group rows: method -> per-seed values on the first split (the second split is 0.05 higher)."
    rows = [dict(dataset='tb', method=m, split=sp, metric='worst group', value=v + 0.05 * k, seed=s, selection=SEL_HALF if m in ('DFR', 'embedding mixing (DISPEL)') else SEL_AVG)
            for m, vs in values.items() for s, v in enumerate(vs) for k, sp in enumerate(splits)]
    return pd.DataFrame(rows)

def test_seed_worst_groups_take_the_worse_split():
    r = fake_results({'ERM': [0.1, 0.3, 0.2]})
    assert seed_worst_groups(r, 'tb', method='ERM').tolist() == [0.1, 0.3, 0.2]
    assert abs(mean_worst_group(r, 'tb', 'test_b', method='ERM') - 0.25) < 1e-12 and abs(mean_worst_group(r, 'tb', method='ERM') - 0.2) < 1e-12
    assert np.isnan(mean_worst_group(r, 'tb', method='DFR'))

def test_testbed_claims_verdicts():
    r = fake_results({'ERM': [0.1, 0.1, 0.1], 'input mixing (full network)': [0.5, 0.4, 0.6], 'ERM continued (no mixing)': [0.45, 0.42, 0.5],
                      BIASED_DRAW: [0.3, 0.2, 0.4], 'input mixing (last layer)': [0.18, 0.2, 0.1], 'embedding mixing (DISPEL)': [0.7, 0.7, 0.7], 'DFR': [0.72, 0.72, 0.72]})
    c = {row['claim'].split(': ', 1)[1]: row for row in dm.claims_per_testbed(r, 'tb')}
    assert all({'claim', 'paper', 'here', 'verdict', 'rule', 'halves'} <= set(row) for row in c.values())   # report.claim_row's row
    full = c["fine-tuning with input mixing (full network) raises the pre-trained model's worst group"]
    assert full['verdict'] == 'reproduced' and '+40.0 pts [' in full['here'] and 'n=3' in full['here']   # +40 points on every seed
    assert full[dm.MEANS] == 'ERM 0.100 → 0.500'
    ctrl = c['the gain is due to the mixing (against the same fine-tuning without mixing)']
    assert ctrl['verdict'] == 'inconclusive' and '+4.3 pts [' in ctrl['here'] and 'seeds to decide' in ctrl['here']   # +5, -2, +10: the interval spans 0
    assert c['balance does the work: uniform draws beat draws that follow the training bias']['verdict'] == 'reproduced'   # +20 points on every seed
    assert c['input mixing of the last layer only raises the worst group']['verdict'] == 'inconclusive'   # +8, +10, 0 points: t interval of 3 seeds spans 0
    assert c['embedding mixing (DISPEL) is at least as good as DFR (worst group)']['verdict'] == 'not reproduced here'   # 2 points below on every seed: under the -1 point bar
    assert not any(row['verdict'] == 'partly' for row in c.values())
    only_heads = dm.claims_per_testbed(r[r.method.isin(['DFR', 'embedding mixing (DISPEL)', 'ERM'])], 'tb')
    assert len(only_heads) == 1   # no input mixing rows: only the DISPEL claim
    one = dm.claims_per_testbed(r[r.seed == 0], 'tb')   # one seed (the CI parameters): inconclusive, n=1, no error
    assert len(one) == 5 and all(row['verdict'] == 'inconclusive' and 'n=1' in row['here'] for row in one)

def test_toy_claims_over_data_draws():
    toys = {s: dm.toy_sweep([0, 0.95], [0.5, 0.95], n=1000, seed=s) for s in (0, 10, 20, 30, 40)}
    removed, kept = dm.toy_effects(toys)
    assert len(removed) == 5 and (removed > 0.5).all() and (kept > 0.5).all()
    rows = dm.toy_claim(toys)
    assert len(rows) == 2 and all(r['verdict'] == 'reproduced' and 'n=5' in r['here'] for r in rows)
    assert all(r['verdict'] == 'inconclusive' for r in dm.toy_claim({0: toys[0]}))   # one draw: no interval


# --- seeds in parallel; parameters checked before any work -----------------------------------------------------------

def test_mixing_seed_in_a_worker_equals_the_seed_alone():
    "run_seeds' worker processes give each seed exactly what running it alone in this process gives."
    from spurnotes.seeds import run_seeds
    kw = dict(datasets=['digits_on_backgrounds'], data=dict(source='sklearn', n_train=None), erm=dict(epochs=1, **FIT), mix=MIX,
              heads=dict(s_grid=(1.,), alpha_grid=(1.,), C_grid=(1.,), n_fits=1, pool_size=100, missing='drop'), ft_epochs=1, ll_epochs=1)
    alone = run_seeds(mixing_seed, [1], jobs=1, **kw)[0]   # this process, one torch thread (as every worker)
    par = run_seeds(mixing_seed, [0, 1], jobs=2, **kw)
    pd.testing.assert_frame_equal(pd.DataFrame(par[1]['rows']), pd.DataFrame(alone['rows']), check_exact=True)
    assert par[1]['test_splits'] == {'digits_on_backgrounds': ['test']}
    assert not pd.DataFrame(par[0]['rows']).equals(pd.DataFrame(alone['rows']))

def test_bad_parameter_fails_fast_in_the_validation_cell(tmp_path):
    import time
    from spurnotes.cli import run_notebooks, NotebookError
    from conftest import NBS
    t = time.perf_counter()
    with pytest.raises(NotebookError) as e:
        run_notebooks(['04_data_mixing.ipynb'], {'ft_epochs': -1}, out=tmp_path, nbs_dir=NBS, progress=False)
    assert 'ft_epochs' in e.value.evalue and '-1' in e.value.evalue, e.value.evalue
    assert e.value.ename == 'ParamError' and time.perf_counter() - t < 60   # the validation cell, before any data or training
    with pytest.raises(NotebookError) as e:
        run_notebooks(['04_data_mixing.ipynb'], {'ablation_seeds': [7]}, out=tmp_path/'b', nbs_dir=NBS, progress=False)
    assert 'ablation_seeds' in e.value.evalue, e.value.evalue
