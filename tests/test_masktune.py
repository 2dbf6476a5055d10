"""MaskTune: XGradCAM against the `grad-cam` package, properties of `saliency_mask` / `apply_mask`, the masking pass under the
learner's precision, and the notebook's experiment functions at tiny sizes."""
from pathlib import Path
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
from cpu_amp import CPUMixedPrecision

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
# fastai's own MixedPrecision autocasts CUDA only: on these CPU learners a `to_bf16()` learner computes in float32, and
# `learner_precision` says so (None). `CPUMixedPrecision` (tests/cpu_amp.py) is the same callback with the CPU's autocast,
# so the bf16 masking pass runs here without a GPU.

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
    if precision.endswith('-cpu'): return learn.add_cb(CPUMixedPrecision(amp_mode=precision.removesuffix('-cpu')))
    return learn.to_bf16() if precision == 'bf16' else learn.to_fp16() if precision == 'fp16' else learn

class _Dtypes:
    "Record the dtype of `layer`'s output on every forward in eval mode (the saliency pass; training steps are in train mode)."
    def __init__(self, layer): self.seen, self.h = [], layer.register_forward_hook(lambda m, i, o: self.seen.append(o.dtype) if not m.training else None)
    def __enter__(self): return self
    def __exit__(self, *a): self.h.remove()

def test_learner_precision_of_the_masking_pass(tmp_path):
    ds = _data()
    assert learner_precision(_learner(ds, 'fp32', tmp_path)) is None
    # fastai's to_bf16()/to_fp16() autocast CUDA only: with the data on the CPU their learners compute in float32
    assert learner_precision(_learner(ds, 'bf16', tmp_path)) is None and learner_precision(_learner(ds, 'fp16', tmp_path)) is None
    assert learner_precision(_learner(ds, 'bf16-cpu', tmp_path)) == torch.bfloat16
    assert learner_precision(_learner(ds, 'fp16-cpu', tmp_path)) == torch.float16

def _iou(a, b): return ((a & b).flatten(1).sum(1).float() / (a | b).flatten(1).sum(1).clamp(min=1).float())

def test_dataset_masks_autocast_bf16_close_to_fp32(tmp_path):
    ds = _data()
    learn = _learner(ds, 'bf16-cpu', tmp_path)
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

@pytest.mark.parametrize('precision', ['fp32', 'bf16', 'bf16-cpu'])
def test_masktune_masking_pass_follows_learner_precision(precision, tmp_path):
    "`fit_masktune` reads the learner's precision: its saliency pass autocasts under a bf16 autocast, not under fp32 (nor under fastai's CUDA-only to_bf16 on a CPU)."
    ds = _data()
    learn = _learner(ds, precision, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fit_with_checkpoints(learn, 2)
        with _Dtypes(cam_layer(learn.model)) as rec: _, masks = fit_masktune(learn, ds, ds.subset(torch.arange(32)), bs=32)
    # eval-mode forwards: the masking pass, then validation (fastai's autocast is CUDA-only, so validation is fp32 on a CPU)
    want = torch.bfloat16 if precision == 'bf16-cpu' else torch.float32
    assert rec.seen[:3] == [want] * 3 and masks.shape == (len(ds), 28, 28)

def test_masktune_callback_follows_learner_precision(tmp_path):
    ds = _data()
    smodel = SmallCNN(3, 2, width=8, hidden=16).eval()
    for precision, want in [('fp32', torch.float32), ('bf16', torch.float32), ('bf16-cpu', torch.bfloat16)]:
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

def test_fit_masktune_rejects_masks_of_another_shape(tmp_path):
    ds = _data(64)
    learn = _learner(ds, 'fp32', tmp_path)
    fit_with_checkpoints(learn, 1)
    with pytest.raises(ValueError, match="expected one \\(H, W\\) mask per training image"):
        fit_masktune(learn, ds, ds.subset(torch.arange(32)), bs=32, masks=torch.zeros(10, 28, 28, dtype=torch.bool))


# --- the notebook's experiment functions, at tiny sizes (sklearn digits, the package's SmallCNN, 1-2 ERM epochs) -------
import pandas as pd
from spurnotes.metrics import SUMMARY_LABELS, worst_group_accuracy, plain_accuracy
from spurnotes.groups import group_counts_of
from spurnotes.learner import eval_preds
from spurnotes.masktune import (Regime, regime_run, main_rows, selective_rows, procedure_rows, attribute_blind_check, ablation_rows,
                                regime_ablations, steps_per_epoch, selection_label, decided, works_count, slim_run, restore_run, biased_digits_claims, selective_claims,
                                worst_group_claim, blind_claim, authors_claims,
                                mask_diagnostics, fresh_on_masked, SMALL_REGIME, AUTHOR_SETTINGS)

TINY = Regime(source='sklearn', n_train=None, arch='small_cnn', wd=0., epochs=2, bs=128, size=16)   # about 1,000 training digits of 16x16

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    "Biased digits, seed 0: ERM for 2 epochs with a snapshot after 1, then MaskTune from both lengths."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return regime_run('biased_digits', 0, TINY, lengths=[2, 1], path=tmp_path_factory.mktemp('ckpt'))

def test_regime_run_keeps_both_models_of_each_length(tiny_run):
    data, runs = tiny_run['data'], tiny_run['runs']
    assert sorted(runs) == [1, 2] and tiny_run['regime'] is TINY
    assert (runs[1]['best'], runs[1]['last'], runs[2]['best'], runs[2]['last']) == ('best_1', 'last_1', 'best', 'last')
    r = runs[2]
    assert r['masks'].dtype == torch.bool and r['masks'].shape == (len(data.train), 16, 16) and r['masks'].any()
    assert set(r['p_erm']) == set(r['p_mt']) == {'valid', 'test_biased', 'test_original'}
    p, y, a = eval_preds(r['erm'], data.dl('test_biased'))   # the stored predictions are those of the stored ERM model
    torch.testing.assert_close(p, r['p_erm']['test_biased'][0], atol=1e-5, rtol=0)
    assert torch.equal(y, r['p_erm']['test_biased'][1]) and torch.equal(a, r['p_erm']['test_biased'][2])
    assert not all(torch.equal(u, v) for u, v in zip(r['erm'].state_dict().values(), r['mt'].state_dict().values()))   # fine-tuned

def test_main_rows_are_tidy_and_match_the_metrics(tiny_run):
    data, r = tiny_run['data'], tiny_run['runs'][2]
    df = pd.DataFrame(main_rows(tiny_run, 0, variant_ks=[3.0]))
    assert list(dict.fromkeys(df.method)) == ['ERM', 'MaskTune', 'MaskTune (masks from best)', 'random-mask', 'MaskTune (k=3)']
    acc = df[df.metric != 'saliency share on spurious region']
    assert (acc.groupby(['method', 'split']).metric.apply(list) == pd.Series({k: SUMMARY_LABELS for k in acc.groupby(['method', 'split']).groups})).all()
    assert len(df[df.metric == 'saliency share on spurious region']) == 2   # ERM and MaskTune, first test split
    assert df.value.between(0, 1).all() and (df.notebook == '03_masktune').all() and (df.seed == 0).all()
    for split in data.test_splits:   # an independent computation from the stored predictions
        erm = acc[(acc.method == 'ERM') & (acc.split == split)].set_index('metric').value
        assert erm['worst group'] == pytest.approx(float(worst_group_accuracy(*r['p_erm'][split], data.info)))
        assert erm['average (plain)'] == pytest.approx(float(plain_accuracy(*r['p_erm'][split], data.info)))
    assert set(df[df.method == 'ERM'].selection) == {selection_label('ERM', 2)} == {'best epoch by validation average (of 2)'}
    assert set(df[df.method.isin(['MaskTune', 'random-mask'])].selection) == {"last fine-tuning epoch, from ERM's last; masks from ERM's last (masking iterations: 1)"}
    assert set(df[df.method == 'MaskTune (masks from best)'].selection) == {"last fine-tuning epoch, from ERM's last; masks from ERM's best (masking iterations: 1)"}
    # the per-seed comparison: MaskTune from each checkpoint's masks, the stored predictions of both
    mt = acc[(acc.method == 'MaskTune') & (acc.metric == 'worst group')].set_index('split').value
    alt = acc[(acc.method == 'MaskTune (masks from best)') & (acc.metric == 'worst group')].set_index('split').value
    for split in data.test_splits:
        assert mt[split] == pytest.approx(float(worst_group_accuracy(*r['p_mt'][split], data.info)))
        assert alt[split] == pytest.approx(float(worst_group_accuracy(*r['p_alt'][split], data.info)))

def test_masks_come_from_the_chosen_checkpoint(tiny_run, tmp_path):
    from spurnotes.learner import load_checkpoint
    r = tiny_run['runs'][2]
    assert r['mask_from'] == 'last' and r['alt_from'] == 'best' and tiny_run['mask_from'] == 'last'
    learn = load_checkpoint(tiny_run['learn'], 'last', with_opt=False)
    assert all(torch.equal(u, v) for u, v in zip(learn.model.state_dict().values(), r['mask_model'].state_dict().values()))
    with pytest.raises(ValueError, match="mask_from='middle'"):
        regime_run('biased_digits', 0, TINY, mask_from='middle', path=tmp_path)

def test_slim_run_restores_the_same_data_and_checkpoints(tiny_run):
    slim = slim_run(tiny_run)
    assert 'data' not in slim and 'learn' not in slim and 'masks' not in slim['runs'][2] and slim['seed'] == 0
    back = restore_run(slim)
    assert torch.equal(back['data'].train.x, tiny_run['data'].train.x) and torch.equal(back['data'].train.a, tiny_run['data'].train.a)
    erm = tiny_run['runs'][2]['erm']   # the restored learner holds the best checkpoint, the stored ERM model
    assert all(torch.equal(u, v) for u, v in zip(back['learn'].model.state_dict().values(), erm.state_dict().values()))
    assert slim_run(tiny_run, keep_masks=True)['runs'][2]['masks'] is tiny_run['runs'][2]['masks']

def test_selective_rows_at_full_coverage_is_the_error(tiny_run):
    data, r = tiny_run['data'], tiny_run['runs'][2]
    sel = pd.DataFrame(selective_rows(r, data, 0))
    assert len(sel) == 2 * len(data.test_splits) * 5   # two methods, five target coverages
    full = sel[(sel.metric == 'selective risk at 100% coverage') & (sel.method == 'ERM')].set_index('split')
    for split in data.test_splits:
        p, y, _ = r['p_erm'][split]
        assert full.loc[split, 'coverage'] == 1.0 and full.loc[split, 'value'] == pytest.approx(1 - (p.argmax(-1) == y).float().mean().item())
    assert sel.coverage.between(0, 1).all()

def test_procedure_rows_name_each_variant(tiny_run):
    df = pd.DataFrame(procedure_rows(tiny_run, 0, ft_epochs=[1, 2], ks=[AUTHOR_SETTINGS['k'], 3.0], max_iterations=2))
    assert list(dict.fromkeys(df.method)) == ['ERM', 'MaskTune', 'MaskTune (masks from best)', 'MaskTune (2 epochs)', 'MaskTune (k=3)',
                                              'MaskTune (2 iterations, accumulated)']   # k=2 is the main run; 1 epoch too
    assert (df.groupby('method').size() == 2 * len(SUMMARY_LABELS)).all()

def test_masktune_never_reads_the_attributes(tiny_run):
    blind = attribute_blind_check(tiny_run, 0)
    assert blind['masks_identical'] and blind['max_weight_diff'] == 0.0 and blind['attributes_moved'] > 0

def test_diagnostics_of_a_run(tiny_run):
    d = mask_diagnostics('tiny', tiny_run, 0)
    assert d['pixels_masked'] == pytest.approx(tiny_run['runs'][2]['masks'].float().mean().item())
    assert 0 <= d['square_covered'] <= 1 and 0 <= d['MaskTune_says_5-9_on_biased_test'] <= 1
    assert {k for k in d if k.startswith('digit_masked_')} == {f'digit_masked_{c}' for c in tiny_run['data'].info.class_names}
    fresh, data = fresh_on_masked(tiny_run, 0, 1), tiny_run['data']
    present = {f"{s}: {g}" for s in data.test_splits
               for g, n in zip(data.info.group_names, group_counts_of(data[s].y, data[s].a, data.info).flatten()) if n > 0}
    assert set(fresh) == present and all(0 <= v <= 1 for v in fresh.values())   # the groups each test split holds

def test_ablation_rows_run_each_change_from_the_base(tiny_run):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rows, runs = ablation_rows(tiny_run, 0, {'one ERM epoch': dict(epochs=1)}, lengths=[1, 2])
    assert [r['variant'] for r in rows] == ['working regime (the parameters above)', 'ERM length: 1 epochs', 'one ERM epoch']
    assert runs['one ERM epoch']['regime'].epochs == 1 and tiny_run['regime'].epochs == 2   # the base regime is not changed
    assert [r['erm_epochs'] for r in rows] == [2, 1, 1] and rows[0]['steps_per_epoch'] == steps_per_epoch(len(tiny_run['data'].train), 128)
    # the same seed and the same first epoch: the 1-epoch snapshot of the base run and the 1-epoch run agree
    assert rows[1]['ERM biased'] == pytest.approx(rows[2]['ERM biased'])

def test_steps_per_epoch_and_regime_ablations():
    assert [steps_per_epoch(n, 128) for n in (9000, 256, 255, 100)] == [70, 2, 1, 1]   # the last incomplete batch is dropped
    abl = regime_ablations(4, 9000, [3600, 18000])
    assert abl['images per epoch: 3,600 (same ERM steps)'] == dict(n_train=3600, epochs=10)
    assert abl['images per epoch: 18,000 (same ERM steps)'] == dict(n_train=18000, epochs=2)
    assert abl[SMALL_REGIME]['epochs'] == 20 and len(abl) == 7
    assert list(regime_ablations(4, 9000, factors=['weight decay'])) == ['weight decay: none', 'weight decay: fastai form (decoupled, none on BN/bias)']

def test_decided_follows_decide():
    # a clear gain on every seed: reproduced; a clear loss: not reproduced here; a gain within its spread: inconclusive
    assert decided('c', '', [0.5, 0.4, 0.6], 'gain')['verdict'] == 'reproduced'
    assert decided('c', '', [-0.1, -0.2, -0.15], 'gain')['verdict'] == 'not reproduced here'
    row = decided('c', '', [0.9, -0.5, -0.3], 'gain')             # a positive mean within its interval
    assert row['verdict'] == 'inconclusive' and 'seeds to decide' in row['here'] and 'n=3' in row['here']
    assert decided('c', '', [0.5, 0.4, 0.6], 'level', threshold=0.85, scale=1, unit='')['verdict'] == 'not reproduced here'   # below the bar
    # the median: one collapsed seed does not sink a gain the others show (9 seeds); 3 seeds are too few for its 95% interval
    assert decided('c', '', [0.9, 0.8, -0.1], 'gain')['verdict'] == 'inconclusive'
    assert decided('c', '', [0.9, 0.8, 0.01, 0.85, 0.7, 0.9, -0.6, 0.8, 0.75], 'gain', method='median')['verdict'] == 'reproduced'
    assert decided('c', '', [0.9, 0.8, 0.01], 'gain', method='median')['verdict'] == 'inconclusive'
    assert 'median' in decided('c', '', [0.9, 0.8, 0.01], 'gain', method='median')['rule']
    one = decided('c', '', [0.1], 'gain')   # one seed (CI parameters): no per-seed interval, so no decision
    assert one['verdict'] == 'inconclusive' and 'n=1' in one['here']
    assert works_count([0.9, 0.1, 0.85]) == 'worst group ≥ 0.85 on 2 of 3 seeds'

def _acc_rows(values):
    "Tidy rows of Biased MNIST: `values[(split, metric, method)]` = per-seed values."
    return pd.DataFrame([dict(dataset='biased_digits', split=s, metric=m, method=k, seed=i, value=v)
                         for (s, m, k), vs in values.items() for i, v in enumerate(vs)])

def test_biased_digits_claims_follow_their_rules():
    acc = _acc_rows({('test_biased', 'average (plain)', 'ERM'): [0.1, 0.2, 0.15], ('test_biased', 'worst group', 'ERM'): [0.0, 0.1, 0.0],
                     ('test_biased', 'worst group', 'MaskTune'): [0.9, 0.95, 0.9], ('test_biased', 'worst group', 'random-mask'): [0.0, 0.5, 0.9],
                     ('test_original', 'average (plain)', 'ERM'): [0.6, 0.6, 0.6], ('test_original', 'average (plain)', 'MaskTune'): [0.8, 0.8, 0.8]})
    rows = biased_digits_claims(acc)
    # ERM under 0.4 (t interval: decided); the MaskTune rows use the median, whose interval needs more than 3 seeds at 95%
    # ([min, max] of 3 seeds covers 75%): inconclusive however clear the seeds look
    assert [r['verdict'] for r in rows] == ['reproduced', 'inconclusive', 'inconclusive', 'inconclusive', 'inconclusive', 'inconclusive']
    assert rows[0]['here'].endswith('ERM best checkpoint 0.150 ± 0.050') and rows[1]['paper'] == ''
    assert rows[1]['here'].endswith('worst group ≥ 0.85 on 3 of 3 seeds') and 'median' in rows[1]['rule'] and 't interval' in rows[0]['rule']
    assert all(r['verdict'] != 'partly' for r in rows)

def test_worst_group_and_blind_claims():
    acc = pd.DataFrame([dict(dataset='d', split='t', metric='worst group', method=k, seed=i, value=v)
                        for k, vs in {'ERM': [0.5, 0.6, 0.7, 0.6], 'MaskTune': [0.6, 0.7, 0.8, 0.7]}.items() for i, v in enumerate(vs)])
    row = worst_group_claim(acc, 'd', 't')
    assert row['verdict'] == 'reproduced' and 'n=4' in row['here'] and 't interval' in row['rule']
    ok, bad = dict(seed=0, max_weight_diff=0.0, masks_identical=True), dict(seed=0, max_weight_diff=1e-3, masks_identical=True)
    assert blind_claim(ok)['verdict'] == 'reproduced' and blind_claim(bad)['verdict'] == 'not reproduced here'
    assert 'deterministic' in blind_claim(ok)['rule'] and 'n=1' in blind_claim(ok)['here']

def test_selective_claims_count_the_points():
    rows = [dict(dataset='d', split='t', metric=f'selective risk at {c}% coverage', method=k, seed=i, value=v)
            for i in range(3) for c, e, m in [(80, 0.2 + i / 100, 0.1), (100, 0.3, 0.3)] for k, v in [('ERM', e), ('MaskTune', m)]]
    row, = selective_claims(pd.DataFrame(rows), [('d', 't')])
    assert row['here'].endswith('lower at 1 of 2 target coverages (means over seeds)') and row['verdict'] == 'reproduced'

def test_authors_claims_pair_the_seeds():
    auth = pd.DataFrame(dict(seed=[0, 1, 2], mt_biased=[0.93, 0.95, 0.92], mt_original=[0.96, 0.95, 0.95]))
    pipe = pd.DataFrame(dict(side=['spurnotes'] * 3, seed=[2, 1, 0], mt_biased=[0.92, 0.95, 0.93], mt_original=[0.85, 0.85, 0.86]))
    am = pd.DataFrame(dict(seed=[0, 1, 2], iou_mean=[0.9999, 0.9995, 0.9998]))
    rows = authors_claims(auth, pipe, am)
    assert [r['verdict'] for r in rows] == ['reproduced', 'inconclusive', 'inconclusive']   # masks (t); the 0.02 rows are medians of 3 seeds: too few


def test_bad_parameter_fails_fast_in_the_validation_cell(tmp_path):
    import time
    from spurnotes.cli import run_notebooks, NotebookError
    t = time.time()
    with pytest.raises(NotebookError) as e:
        run_notebooks(['03_masktune'], {'mask_from': 'middle'}, out=tmp_path, nbs_dir=Path(__file__).parent.parent/'nbs', progress=False)
    assert "parameter mask_from='middle': expected one of 'last', 'best'" in e.value.evalue
    assert time.time() - t < 60   # the validation cell, not a later one
    with pytest.raises(NotebookError) as e:
        run_notebooks(['03_masktune'], {'ablation_seeds': [5], 'seeds': [0, 1]}, out=tmp_path/'b', nbs_dir=Path(__file__).parent.parent/'nbs', progress=False)
    assert "ablation_seeds [5]: expected seeds among seeds [0, 1]" in e.value.evalue
