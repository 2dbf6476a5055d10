"""The real-benchmark loaders of spurnotes.datasets, on fixture folders in each release's canonical layout: they read it,
and every malformed or missing piece gets an error that says what was expected."""
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

# ---- Spawrious: spawrious224/{env}/{location}/{breed}/* ----
from spurnotes.datasets import load_spawrious, spawrious_files, load_urbancars, load_imagenet9, SPAWRIOUS_CLASSES, SPAWRIOUS_LOCATIONS, IN9_CLASSES
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

