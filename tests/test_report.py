"""spurnotes.report: the group report against a count by hand, tidy tables, headlines and claims tables, and their errors."""
import numpy as np
import pandas as pd
import pytest
import torch
from spurnotes.groups import GroupInfo
from spurnotes.metrics import SUMMARY_LABELS
from spurnotes.report import (group_report, mean_std, mean_std_table, sem, mean_sem, write_results, headline_table,
                              write_headline, claims_table, RESULT_COLUMNS, VERDICTS)

def test_group_report_equals_counts_by_hand():
    info = GroupInfo(['0', '1'], ['p', 'q'], train_counts=[[30, 10], [10, 50]])
    g = torch.Generator().manual_seed(1)
    y, a = torch.randint(0, 2, (300,), generator=g), torch.randint(0, 2, (300,), generator=g)
    pred = torch.where(torch.rand(300, generator=g) < 0.7, y, 1 - y)
    rep = group_report(pred, y, a, info)
    accs = []
    for yi in (0, 1):
        for ai in (0, 1):
            sel = (y == yi) & (a == ai)
            accs.append((pred[sel] == y[sel]).float().mean().item())
            assert rep.loc[f'{yi} / {"pq"[ai]}', 'n_eval'] == sel.sum().item()
    np.testing.assert_allclose(rep['accuracy'][:4], accs, rtol=1e-6)
    assert list(rep.index[4:]) == SUMMARY_LABELS
    assert rep.loc['worst group', 'accuracy'] == pytest.approx(min(accs))
    assert rep.loc['average (group mean)', 'accuracy'] == pytest.approx(np.mean(accs))
    assert rep.loc['average (train-weighted)', 'accuracy'] == pytest.approx(np.dot(accs, [30, 10, 10, 50]) / 100)
    assert rep.loc['average (plain)', 'accuracy'] == pytest.approx((pred == y).float().mean().item())
    no_counts = group_report(pred, y, a, GroupInfo(['0', '1'], ['p', 'q']))
    assert 'average (train-weighted)' not in no_counts.index

def test_sem_and_mean_std():
    assert sem([1., 2., 3.]) == pytest.approx(np.std([1, 2, 3], ddof=1) / np.sqrt(3))
    assert np.isnan(sem([1.])) and np.isnan(mean_sem([0.4])[1]) and mean_sem([0.4])[0] == 0.4
    assert mean_std([0.5, 0.7]) == '0.600 ± 0.141' and mean_std([0.5]) == '0.500' and mean_std([]) == ''

def test_mean_std_table_pivots_over_seeds():
    df = pd.DataFrame(dict(method=['ERM'] * 4 + ['X'] * 2, seed=[0, 1, 0, 1, 0, 1],
                           metric=['worst group', 'worst group', 'average (plain)', 'average (plain)', 'worst group', 'worst group'],
                           value=[0.2, 0.4, 0.8, 0.9, 0.5, 0.5]))
    t = mean_std_table(df, 'method')
    assert list(t.columns) == ['worst group', 'average (plain)'] and t.loc['ERM', 'worst group'] == '0.300 ± 0.141'
    assert t.loc['X', 'average (plain)'] == ''
    with pytest.raises(ValueError, match=r"columns \['dataset'\] are not in the table"): mean_std_table(df, 'dataset')

def test_write_results_needs_the_columns(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"): write_results(pd.DataFrame(dict(value=[1.])), 'x', tmp_path)
    row = dict(zip(RESULT_COLUMNS, ['nb', 'd', 'm', 's', 'worst group', 0.5]))
    p = write_results(pd.DataFrame([row]), 'x', tmp_path)
    assert pd.read_csv(p).to_dict('records') == [row]

def test_headline_means_over_seeds(tmp_path):
    rows = pd.DataFrame(dict(dataset='d', split='test', method=['A'] * 4 + ['B'] * 2, selection='last epoch',
                             seed=[0, 0, 1, 1, 0, 0], metric=['worst group', 'average (plain)'] * 3, value=[.1, .8, .3, .9, .5, .6]))
    h = headline_table(rows)
    assert h.set_index('method').loc['A', 'seeds'] == 2 and h.set_index('method').loc['A', 'worst group'] == pytest.approx(0.2)
    assert list(h.columns) == ['dataset', 'split', 'method', 'selection', 'seeds', 'worst group', 'average (plain)']
    assert pd.read_csv(write_headline(h, '07_x', tmp_path)).shape == (2, 7) and (tmp_path/'headlines'/'07_x.csv').exists()

def test_claims_table_checks_its_rows():
    row = dict(claim='c', paper='1', here='2', verdict=VERDICTS[0], rule='r')
    assert list(claims_table([row]).columns[:5]) == ['claim', 'paper', 'here', 'verdict', 'rule']
    with pytest.raises(ValueError, match=r"rows lack \['rule'\]"): claims_table([{k: v for k, v in row.items() if k != 'rule'}])
    with pytest.raises(ValueError, match=r"verdicts \['maybe'\] are not among"): claims_table([{**row, 'verdict': 'maybe'}])

# ---- the decision rule ----
from spurnotes.report import decide, effect_interval, paired_effects, seeds_needed

@pytest.mark.parametrize('seed', range(5))
def test_decide_on_constructed_effects(seed):
    rng = np.random.default_rng(seed)
    assert decide(rng.normal(0.25, 0.05, 8))['verdict'] == 'reproduced'
    assert decide(rng.normal(-0.25, 0.05, 8))['verdict'] == 'not reproduced here'
    assert decide(rng.normal(0.25, 0.05, 8), threshold=0.5)['verdict'] == 'not reproduced here'
    works = rng.random(10) < 0.9                                           # bimodal: a seed works (+0.6) or collapses (-0.4)
    eff = np.where(works, 0.6, -0.4) + rng.normal(0, 0.02, 10)
    d = decide(eff, method='median')
    assert d['verdict'] == ('reproduced' if works.sum() >= 9 else 'inconclusive')

def test_noise_is_inconclusive_most_of_the_time():
    rng = np.random.default_rng(0)
    verdicts = [decide(rng.normal(0, 0.1, 6))['verdict'] for _ in range(200)]
    assert verdicts.count('inconclusive') / 200 > 0.9     # a 95% interval: about 5% decisive by chance

def test_t_interval_matches_scipy():
    from scipy import stats
    e = np.array([0.1, 0.3, 0.2, 0.5, 0.15])
    lo, hi = stats.t.interval(0.9, len(e) - 1, loc=e.mean(), scale=stats.sem(e))
    assert effect_interval(e, 0.9)[1:] == pytest.approx((lo, hi))
    assert seeds_needed([0.1, -0.05, 0.2, 0.0]) > 4 and seeds_needed([0.0, 0.0]) is None

def test_decide_bad_input():
    with pytest.raises(ValueError, match="needs at least 2 seeds"): decide([0.3])
    with pytest.raises(ValueError, match="hold NaN"): decide([0.3, float('nan'), 0.2])
    with pytest.raises(ValueError, match="the seeds differ"): paired_effects({0: .5, 1: .6}, {0: .4})
    with pytest.raises(ValueError, match="method='mode'"): effect_interval([0.1, 0.2], method='mode')


def test_bad_parameter_fails_fast_in_the_validation_cell(tmp_path):
    "`-p corr 1.5` stops 00f_report at its validation cell with one line naming the parameter."
    from conftest import bad_parameter_run
    e, failed, seconds = bad_parameter_run('00f_report.ipynb', {'corr': 1.5}, tmp_path)
    assert e.ename == 'ParamError' and 'parameter corr=1.5' in e.evalue and 'between 0.0 and 1.0' in e.evalue
    assert failed == ['f0valid0']   # the validation cell, not a later one
    assert seconds < 60
