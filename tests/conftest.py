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
