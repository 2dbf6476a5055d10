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
    "JTT on a toy: the error set is what the stage-one model misclassifies, each appearing lam_up + 1 times (the authors' up_weight), and stage two is a new model."
    tr, va = toy(128, 0), toy(64, 1)
    r = jtt(make, tr, va, T=1, lam_up=4, epochs=1, bs=32, device='cpu')
    first = r['identification'].model.eval()
    with torch.no_grad(): wrong = first(tr.x).argmax(1) != tr.y
    assert torch.equal(r['errors'], wrong)
    counts = torch.bincount(r['indices'], minlength=len(tr))
    assert wrong.any() and torch.equal(counts, torch.where(wrong, 5, 1)) and torch.equal(counts.float(), jtt_weights(wrong, 4))
    assert len(r['learner'].dls.train.dataset) == len(tr) + 4 * int(wrong.sum())
    assert r['learner'].model is not r['identification'].model
    with pytest.raises(ValueError, match="lam_up=-1"): jtt_indices(wrong, -1)
    with pytest.raises(ValueError, match="T=0"): jtt(make, tr, va, T=0)

def test_jtt_indices_as_the_authors_up_weight_block():
    "The upsampled index multiset of the JTT authors' run_expt.py, written out: the training set once, then Subset(train, aug_indices * up_weight)."
    errors = torch.tensor([0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    aug_indices = [1, 2, 5]                                   # np.where(train_col['wrong_1_times'] == 1)[0]
    for up_weight in (0, 1, 2, 6, 20):
        authors = list(range(len(errors))) + aug_indices * up_weight   # ConcatDataset([train_data, Subset(train_data, list(aug_indices) * up_weight)])
        ours = jtt_indices(errors, up_weight).tolist()
        assert sorted(ours) == sorted(authors)
        assert all(ours.count(i) == (up_weight + 1 if i in aug_indices else 1) for i in range(len(errors)))

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


# ---------------------------------------------------------------------------------------------------------------
# error_set runs through learner.eval_preds
# ---------------------------------------------------------------------------------------------------------------
def test_error_set_in_eval_mode_and_mode_restored():
    "A model with BatchNorm in training mode: the error set is that of its eval-mode outputs, and it stays in training mode."
    set_seed(0, reproducible=True)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad(): model[1].running_mean.fill_(0.3); model[1].running_var.fill_(2.)
    ds = toy(40, 3)
    model.train()
    errors = error_set(model, ds, bs=16, device='cpu')
    assert model.training
    model.eval()
    with torch.no_grad(): ref = model(ds.x).argmax(1) != ds.y
    assert errors.dtype == torch.bool and torch.equal(errors, ref)


# ---------------------------------------------------------------------------------------------------------------
# The benchmark runner at tiny sizes
# ---------------------------------------------------------------------------------------------------------------
from spurnotes.baselines import (BenchSetup, BENCH_METHODS, FROM_ERM, BENCH_SEL_LAST, BENCH_SEL_WG, BENCH_SEL_HALF, method_rows, run_benchmark,
                                 prediction_rows, method_table, per_seed_values, benchmark_claims, recipe_hours, RECIPE,
                                 wall_ratio, recipe_table)
from spurnotes.metrics import SUMMARY_LABELS, worst_group_accuracy, plain_accuracy
from spurnotes.learner import load_checkpoint, eval_preds
from spurnotes.report import RESULT_COLUMNS, headline_table
import pandas as pd

TINY = dict(source='sklearn', n_train=None, arch='small_cnn', bs=64)
SETTINGS = {'JTT': dict(T=1, lam_up=3), 'input mixing': dict(epochs=1), 'MaskTune': dict(epochs=1), 'ULE': dict(warmup=1),
            'DISPEL': dict(s_grid=[1.0, 0.8], alpha_grid=[1.0], C_grid=[1.0], n_fits=2, pool_size=100),
            'DFR': dict(C_grid=[1.0], n_fits=2)}   # DFR as published fits on the balanced set itself: no pool size

def tiny_data(setup, seed=0):
    "The sklearn testbed cut to 256 training and 128 validation and test images."
    data = setup.data(seed)
    for k in list(data.splits): data.splits[k] = data.splits[k].subset(torch.arange(min(len(data.splits[k]), 256 if k == 'train' else 128)))
    return data

def test_method_rows_every_method():
    "One seed of each method: the rows' splits, selections and counts; ERM trained once and shared; wall time last."
    setup = BenchSetup(epochs=1, **TINY)
    data, erms, extras = tiny_data(setup), {}, {}
    n_groups = data.info.n_groups
    for method in BENCH_METHODS:
        rows, extras[method] = method_rows(method, data, 0, setup, erms, SETTINGS)
        assert rows[-1]['metric'] == 'wall time (s)' and rows[-1]['value'] > 0 and rows[-1]['split'] == 'train'
        acc = pd.DataFrame(rows[:-1])
        sels = {BENCH_SEL_HALF} if method in ('DISPEL', 'DFR') else {BENCH_SEL_LAST} if method == 'MaskTune' else {BENCH_SEL_LAST, BENCH_SEL_WG}
        splits = {'test'} if method in ('DISPEL', 'DFR') else {'valid', 'test'}
        assert set(acc.selection) == sels and set(acc.split) == splits, method
        assert len(acc) == len(sels) * len(splits) * (n_groups + len(SUMMARY_LABELS)), method
        assert acc.value.between(0, 1).all() and set(acc.method) == {method} and set(acc.seed) == {0}
        if method in FROM_ERM: assert rows[-1]['value'] >= erms[0][2]   # ERM's pre-training counted
    assert list(erms) == [0]
    assert {m: sorted(e) for m, e in extras.items() if e} == {'GroupDRO': ['q'], 'JTT': ['errors', 'identification', 'indices', 'learner'],
                                                           'DISPEL': ['fit'], 'DFR': ['fit'], 'ULE': ['student']}
    assert len(extras['GroupDRO']['q']) == 1 and torch.equal(extras['JTT']['indices'].bincount(minlength=len(data.train)).gt(1), extras['JTT']['errors'])
    assert (extras['JTT']['indices'].bincount(minlength=len(data.train))[extras['JTT']['errors']] == SETTINGS['JTT']['lam_up'] + 1).all()
    import pickle
    from spurnotes.baselines import _portable
    sent = {m: _portable(m, e) for m, e in extras.items()}   # what a worker process sends back: no learners or models
    assert sorted(sent['JTT']) == ['errors', 'indices'] and sent['ULE'] == {} and sent['DFR'] is extras['DFR']
    pickle.dumps(sent)

def test_group_dro_trains_on_group_balanced_batches_by_default():
    "bench_group_dro's training loader is a GroupBalancedDL (the authors' --reweight_groups) unless balanced=False: every batch holds each group equally."
    from spurnotes.baselines import bench_group_dro
    from spurnotes.loaders import GroupBalancedDL
    import inspect
    assert inspect.signature(bench_group_dro).parameters['balanced'].default is True
    setup = BenchSetup(epochs=1, **TINY)
    data = tiny_data(setup)
    g_train = data.info.group(data.train.y, data.train.a)
    assert g_train.bincount(minlength=4).min() * 4 < len(g_train) // 4   # the training set itself is far from balanced
    learn, extra = bench_group_dro(data, 0, setup)
    dl = learn.dls.train
    assert isinstance(dl, GroupBalancedDL)
    n = 0
    for x, y, a in dl:
        counts = data.info.group(y, a).bincount(minlength=4)
        assert counts.max() - counts.min() <= 1, counts   # bs 64 over 4 groups: 16 each
        n += 1
    assert n == len(data.train) // setup.bs and len(extra['q']) == 1
    learn2, _ = bench_group_dro(data, 0, setup, balanced=False)
    assert not isinstance(learn2.dls.train, GroupBalancedDL)

def test_method_rows_match_an_independent_evaluation():
    "ERM's 'last epoch' rows equal the metrics of the model at its 'last' checkpoint evaluated through eval_preds; 'best' is no worse on valid."
    setup = BenchSetup(epochs=3, **TINY)
    data, erms = tiny_data(setup), {}
    rows = pd.DataFrame(method_rows('ERM', data, 0, setup, erms)[0][:-1])
    learn = erms[0][0]
    load_checkpoint(learn, 'last', with_opt=False)
    probs, y, a = eval_preds(learn.model, data.dl('valid', device='cpu'))
    got = rows[(rows.split == 'valid') & (rows.selection == BENCH_SEL_LAST)].set_index('metric').value
    assert abs(got['worst group'] - float(worst_group_accuracy(probs, y, a, data.info))) < 1e-6
    assert abs(got['average (plain)'] - float(plain_accuracy(probs, y, a, data.info))) < 1e-6
    wg = rows[(rows.split == 'valid') & (rows.metric == 'worst group')].set_index('selection').value
    assert wg[BENCH_SEL_WG] >= wg[BENCH_SEL_LAST]   # the best checkpoint by validation worst group

def test_method_rows_are_seeded():
    "The same seed gives the same rows (GroupDRO, whose q also depends on every batch); another seed gives other rows."
    setup = BenchSetup(epochs=1, **TINY)
    data = tiny_data(setup)
    v = lambda seed: [r['value'] for r in method_rows('GroupDRO', data, seed, setup, {}, SETTINGS)[0][:-1]]
    a, b, c = v(0), v(0), v(1)
    assert a == b and a != c

def test_run_benchmark_two_seeds():
    "Every method asked for on every seed, in order; tidy columns; extras by (method, seed); the headline's rows; two worker processes give the rows of one."
    setup = BenchSetup(epochs=1, **TINY)
    run = run_benchmark(setup, ['ERM', 'DFR'], seeds=[0, 1], settings=SETTINGS, jobs=2)
    res = run['results']
    assert set(RESULT_COLUMNS + ['seed', 'selection']) <= set(res.columns)
    assert list(res.drop_duplicates(['seed', 'method'])[['seed', 'method']].itertuples(index=False, name=None)) == [(0, 'ERM'), (0, 'DFR'), (1, 'ERM'), (1, 'DFR')]
    assert set(run['extras']) == {(m, s) for m in ['ERM', 'DFR'] for s in [0, 1]} and 'fit' in run['extras'][('DFR', 1)]
    one = run_benchmark(setup, ['ERM', 'DFR'], seeds=[1], settings=SETTINGS, jobs=1)['results']
    acc = lambda r: r[r.metric != 'wall time (s)'].reset_index(drop=True)
    pd.testing.assert_frame_equal(acc(res[res.seed == 1]), acc(one))   # seed 1 in a worker beside seed 0 = seed 1 alone, here
    head = headline_table(res[res.split.isin(run['test_splits'])])
    assert list(head.method) == ['ERM', 'ERM', 'DFR'] and (head.seeds == 2).all()
    with pytest.raises(ValueError, match=r"methods \['Mixup'\]"): run_benchmark(setup, ['Mixup'])
    with pytest.raises(ValueError, match="precision='fp8'"): BenchSetup(precision='fp8')

def _fake_results():
    "Tidy rows by hand: worst group on the test split, ERM 0.5 / 0.6, GroupDRO 0.7 / 0.8, JTT 0.45 / 0.55 over two seeds."
    vals = {'ERM': [0.5, 0.6], 'GroupDRO': [0.7, 0.8], 'JTT': [0.45, 0.55]}
    rows = [dict(notebook='06_benchmark', dataset='d', method=m, split='test', metric=metric, value=v + (0.1 if metric != 'worst group' else 0),
                 seed=s, selection=BENCH_SEL_WG) for m, vs in vals.items() for s, v in enumerate(vs) for metric in SUMMARY_LABELS]
    rows += [dict(notebook='06_benchmark', dataset='d', method=m, split='train', metric='wall time (s)', value=w, seed=s, selection='-')
             for m, ws in {'ERM': [10., 20.], 'GroupDRO': [11., 19.], 'JTT': [30., 50.]}.items() for s, w in enumerate(ws)]
    return pd.DataFrame(rows)

def _claim_results(gains, erm=(0.5, 0.6, 0.55, 0.52, 0.58, 0.61), seeds=None):
    "Tidy worst-group rows on the test split: ERM's per seed, and each method's = ERM's + its per-seed gains."
    seeds = list(range(len(erm))) if seeds is None else seeds
    vals = {'ERM': list(erm), **{m: [e + g for e, g in zip(erm, gs)] for m, gs in gains.items()}}
    return pd.DataFrame([dict(notebook='06_benchmark', dataset='d', method=m, split='test', metric='worst group', value=v, seed=s,
                              selection=BENCH_SEL_WG) for m, vs in vals.items() for s, v in zip(seeds, vs)])

def test_claims_decided_by_the_package_rule():
    "benchmark_claims: decide on the per-seed gains over ERM (paired by seed), rows from claim_row; no 'partly'; halves shown."
    from spurnotes.report import decide
    gains = {'GroupDRO': [0.2, 0.18, 0.22, 0.19, 0.21, 0.2],       # a clear gain
             'JTT': [-0.05, -0.04, -0.06, -0.05, -0.03, -0.05]}    # a clear loss
    res = _claim_results(gains)
    assert np.allclose(per_seed_values(res, 'GroupDRO', 'test').values, np.add([0.5, 0.6, 0.55, 0.52, 0.58, 0.61], gains['GroupDRO']))
    claims = {c['claim'].split()[0]: c for c in benchmark_claims(res, 'test')}
    assert claims['GroupDRO']['verdict'] == 'reproduced' and claims['JTT']['verdict'] == 'not reproduced here'
    assert all(c['verdict'] != 'partly' and 'halves' in c for c in claims.values())
    assert claims['GroupDRO']['here'].startswith(f"{100 * np.mean([0.5, 0.6, 0.55, 0.52, 0.58, 0.61]) + 20:.1f} vs ERM 56.0")
    # noise around 0: inconclusive, as decide says on the same gains
    noisy = [0.1, -0.12, 0.05, -0.03, 0.08, -0.09]
    c = benchmark_claims(_claim_results({'JTT': noisy}), 'test')[0]
    assert c['verdict'] == decide(noisy, 0.)['verdict'] == 'inconclusive'
    # halves that disagree make a decisive-looking mean inconclusive (decide's replication)
    split = [0.3, -0.01, 0.3, -0.01, 0.3, -0.01]
    assert benchmark_claims(_claim_results({'JTT': split}), 'test')[0]['verdict'] == decide(split, 0.)['verdict']
    # one seed (the CI run): inconclusive, not an error
    one = benchmark_claims(_claim_results({'GroupDRO': [0.2]}, erm=[0.5]), 'test')[0]
    assert one['verdict'] == 'inconclusive'
    # pairs by seed: a method on other seeds than ERM is an error
    bad = pd.concat([_claim_results({}), _claim_results({'GroupDRO': [0.1] * 6}, seeds=[10, 11, 12, 13, 14, 15]).query("method == 'GroupDRO'")])
    with pytest.raises(ValueError, match="paired by seed"): benchmark_claims(bad, 'test')
    assert benchmark_claims(res[res.method != 'ERM'], 'test') == []

def test_method_table_and_recipe_by_hand():
    res = _fake_results()
    tab = method_table(res, 'test')
    assert list(tab.index) == ['ERM', 'GroupDRO', 'JTT'] and list(tab.columns) == ['selection'] + SUMMARY_LABELS + ['wall time (s)']
    assert tab.loc['GroupDRO', 'worst group'].startswith('0.750 ± 0.071') and tab.loc['JTT', 'wall time (s)'].startswith('40 ± 14')
    assert wall_ratio(res, 'JTT', 'ERM') == np.median([3., 2.5]) and wall_ratio(res, 'ULE') is None
    wb = RECIPE['Waterbirds']
    h = 300 * (4795 + 1199 / 3) / 2500 / 3600
    assert recipe_hours(wb, 'ERM', 2500) == f"{h:.1f}" and recipe_hours(wb, 'JTT', 2500) == f"≥ {h * 360 / 300:.1f}"
    assert recipe_hours(wb, 'ULE', 2500, 3.0) == f"{3 * h:.1f}"
    assert list(recipe_table(['ERM', 'ULE', 'MaskTune'], 2500).index) == ['ERM']   # ULE needs its factor; MaskTune is not in the recipe


# ---------------------------------------------------------------------------------------------------------------
# Notebook 06 checks its parameters right after the parameters cell
# ---------------------------------------------------------------------------------------------------------------
def test_notebook_rejects_a_bad_parameter_at_once(tmp_path):
    "A bad -p value stops notebook 06 in its validation cell (the cell after the parameters), with one line naming it, before any training."
    import time
    from spurnotes.cli import run_notebooks
    nbs = Path(__file__).parents[1]/'nbs'
    for bad, msg in (({'jtt_lam_up': -1}, "jtt_lam_up=-1: expected a whole number >= 0"),):
        t0 = time.time()
        with pytest.raises(Exception) as e: run_notebooks(['06_benchmark'], bad, out=tmp_path/'run', nbs_dir=nbs, progress=False)
        assert msg in str(getattr(e.value, 'evalue', e.value)), str(e.value)[:500]
        assert time.time() - t0 < 120   # a kernel's start and the imports (a shared machine), no training
        import json
        nb = json.load(open(tmp_path/'run'/'notebooks'/'06_benchmark.ipynb'))
        failed = [c for c in nb['cells'] if c['cell_type'] == 'code' and any(o.get('output_type') == 'error' for o in c.get('outputs', []))]
        assert len(failed) == 1 and 'need_subset' in ''.join(failed[0]['source'])   # the validation cell, nothing after it ran
