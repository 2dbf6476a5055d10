import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture(scope='session')
def nbs_dir(): return NBS


def make_waterbirds(root, n=12):
    "A Waterbirds fixture in the release layout: metadata.csv and <species folder>/<image>.jpg."
    import pandas as pd
    from PIL import Image
    rows = []
    for i in range(n):
        fn = f"{i:03d}.Species_{i % 3}/Species_{i % 3}_{i:04d}.jpg"
        (root/fn).parent.mkdir(parents=True, exist_ok=True)
        Image.new('RGB', (40, 30), (0, 128 + 10 * (i % 2), 255)).save(root/fn)
        rows.append(dict(img_id=i + 1, img_filename=fn, y=i % 2, split=i % 3, place=(i // 2) % 2,
                         place_filename=f"/b/bamboo_forest/{i:08d}.jpg"))
    pd.DataFrame(rows).to_csv(root/'metadata.csv', index=False)
    return root


def make_mnist(root, folder='MNIST', n_train=40, n_test=10, seed=0):
    "torchvision's raw MNIST/FashionMNIST layout: root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."
    import struct
    import numpy as np
    raw = root/folder/'raw'; raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (('train', n_train), ('t10k', n_test)):
        x = np.zeros((n, 28, 28), np.uint8)
        x[:, 4:24, 4:24] = rng.integers(0, 256, (n, 20, 20))   # like MNIST: the digit in the central 20x20, blank border
        (raw/f'{split}-images-idx3-ubyte').write_bytes(struct.pack('>IIII', 2051, n, 28, 28) + x.tobytes())
        (raw/f'{split}-labels-idx1-ubyte').write_bytes(struct.pack('>II', 2049, n) + (np.arange(n) % 10).astype(np.uint8).tobytes())
    return root


def _tiny_image(path, colour):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (8, 8), colour).save(path)


def make_spawrious(root, n=10, envs=(0, 1)):
    "Spawrious' release layout: root/spawrious224/{env}/{location}/{breed}/<n images>.png, every location and breed."
    from spurnotes.datasets import SPAWRIOUS_CLASSES, SPAWRIOUS_LOCATIONS
    for env in envs:
        for li, loc in enumerate(SPAWRIOUS_LOCATIONS):
            for ci, breed in enumerate(SPAWRIOUS_CLASSES):
                for i in range(n): _tiny_image(root/'spawrious224'/str(env)/loc/breed/f"{i:04d}.png", (40 * li, 60 * ci, 10 * i))
    return root


def make_urbancars(root, n_train=(5, 1), n_eval=2):
    """UrbanCars' layout: root/urbancars/bg-0.95_co_occur_obj-0.95/train/obj-X_bg-Y_co_occur_obj-Z/*.jpg and bg-0.5_co_occur_obj-0.5/{val,test}.
    Training folders get n_train[0] images when bg and co-occurring object agree with the car, n_train[1] otherwise."""
    names = ['urban', 'country']
    for ratio, split in ((0.95, 'train'), (0.5, 'val'), (0.5, 'test')):
        for o in range(2):
            for b in range(2):
                for c in range(2):
                    k = (n_train[0] if (b == o and c == o) else n_train[1]) if split == 'train' else n_eval
                    d = root/'urbancars'/f"bg-{ratio}_co_occur_obj-{ratio}"/split/f"obj-{names[o]}_bg-{names[b]}_co_occur_obj-{names[c]}"
                    d.mkdir(parents=True, exist_ok=True)
                    for i in range(k): _tiny_image(d/f"{i:05d}.jpg", (200 * o, 100 * b, 100 * c))
    return root


def make_imagenet9(root, n=2, train_dir='original', variants=('original', 'mixed_same', 'mixed_rand', 'only_fg')):
    "ImageNet-9 backgrounds: root/<train_dir>/{train,val}/<class>/*.JPEG and root/bg_challenge/<variant>/val/<class>/*.JPEG."
    from spurnotes.datasets import IN9_CLASSES
    folders = [root/train_dir/'train', root/train_dir/'val'] + [root/'bg_challenge'/v/'val' for v in variants]
    for f in folders:
        for k, c in enumerate(IN9_CLASSES):
            for i in range(n): _tiny_image(f/c/f"n0000000{k}_{i}.JPEG", (25 * k, 0, 0))
    return root

def bad_parameter_run(nb, params, tmp_path):
    "Run notebook `nb` with a bad `params`: `(the NotebookError, ids of the cells that show an error, seconds taken)`; fails if it runs through."
    import json, time
    from spurnotes.cli import run_notebooks, NotebookError
    t0 = time.time()
    with pytest.raises(NotebookError) as e: run_notebooks([nb], params, out=tmp_path, nbs_dir=NBS, progress=False)
    failed = [c['id'] for c in json.load(open(e.value.dest))['cells'] if any(o.get('output_type') == 'error' for o in c.get('outputs', []))]
    return e.value, failed, time.time() - t0
