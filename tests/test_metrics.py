"""spurnotes.metrics: the group metrics against a brute-force loop on random predictions (hypothesis), and the worst group
never above an average."""
import numpy as np
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
settings.register_profile('ci', deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile('ci')
from spurnotes.groups import GroupInfo
from spurnotes.metrics import group_accuracies, plain_accuracy, train_weighted_accuracy, group_mean_accuracy, worst_group_accuracy

# ---- group metrics against a brute-force loop ----
@st.composite
def predictions(draw):
    n_cls, n_att = draw(st.integers(2, 4)), draw(st.integers(1, 3))
    n = draw(st.integers(1, 60))
    ints = lambda k: st.lists(st.integers(0, k - 1), min_size=n, max_size=n)
    y, a, p = draw(ints(n_cls)), draw(ints(n_att)), draw(ints(n_cls))
    counts = draw(st.lists(st.integers(1, 50), min_size=n_cls * n_att, max_size=n_cls * n_att))
    info = GroupInfo([str(i) for i in range(n_cls)], [str(i) for i in range(n_att)], np.array(counts).reshape(n_cls, n_att))
    return torch.tensor(p), torch.tensor(y), torch.tensor(a), info

def brute(p, y, a, info):
    accs, ns = {}, {}
    for g in range(info.n_groups):
        idx = [i for i in range(len(y)) if int(y[i]) * info.n_attrs + int(a[i]) == g]
        if idx: accs[g], ns[g] = sum(int(p[i]) == int(y[i]) for i in idx) / len(idx), len(idx)
    w = {g: info.train_counts.flatten()[g] for g in accs}
    return dict(groups=accs, plain=sum(int(p[i]) == int(y[i]) for i in range(len(y))) / len(y),
                worst=min(accs.values()), mean=sum(accs.values()) / len(accs),
                tw=sum(accs[g] * w[g] for g in accs) / sum(w.values()))

@given(predictions())
def test_group_metrics_equal_brute_force(case):
    p, y, a, info = case
    b = brute(p, y, a, info)
    acc = group_accuracies(p, y, a, info)
    for g in range(info.n_groups):
        if g in b['groups']: assert abs(acc[g].item() - b['groups'][g]) < 1e-6
        else: assert torch.isnan(acc[g])
    assert abs(plain_accuracy(p, y, a, info) - b['plain']) < 1e-6
    assert abs(worst_group_accuracy(p, y, a, info) - b['worst']) < 1e-6
    assert abs(group_mean_accuracy(p, y, a, info) - b['mean']) < 1e-6
    assert abs(train_weighted_accuracy(p, y, a, info) - b['tw']) < 1e-5

@given(predictions())
def test_worst_group_never_above_an_average(case):
    p, y, a, info = case
    w = worst_group_accuracy(p, y, a, info)
    for f in (plain_accuracy, train_weighted_accuracy, group_mean_accuracy):
        assert w <= f(p, y, a, info) + 1e-6
