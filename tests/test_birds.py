"The birds_on_backgrounds testbed: every bird file labelled, species and background pixels never in two splits, the group proportions, clear errors."
from pathlib import Path
import numpy as np, pytest, torch
from spurnotes.birds import (BIRDS, BACKGROUNDS, REGIONS, LABELS, bird_files, photo_files, bird_table, identity_splits,
                             birds_on_backgrounds, _band_width, INSTALL_HINT, TUXPAINT, BIRDS_DIR)
from spurnotes.datasets import load_dataset

HAVE = (TUXPAINT/BIRDS_DIR).is_dir() and (TUXPAINT/'templates').is_dir()
needs_photos = pytest.mark.skipif(not HAVE, reason=f"Tux Paint's photos are not installed ({INSTALL_HINT})")

def test_missing_packages_name_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install tuxpaint-stamps-default tuxpaint-data"): bird_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="tuxpaint-data"): photo_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install"): load_dataset('birds_on_backgrounds', root=tmp_path, size=32)

@needs_photos
def test_every_bird_file_is_labelled_and_a_new_one_fails():
    t = bird_table()
    assert set(t.index) == set(bird_files()) and set(t.label) == {'landbird', 'waterbird', 'excluded'}
    assert all(v[1] in (None, *LABELS) for v in BIRDS.values())

def test_an_unlabelled_bird_file_is_refused(tmp_path):
    (tmp_path/BIRDS_DIR).mkdir(parents=True)
    for f in ['drake', 'dodo']: (tmp_path/BIRDS_DIR/f'{f}.png').write_bytes(b'')
    with pytest.raises(ValueError, match=r"Bird files without a label: \['dodo'\]"): bird_table(tmp_path)

@needs_photos
@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_no_species_in_two_splits(seed):
    sp = identity_splits(seed)
    ids = {s: {BIRDS[f][2] for f in fs} for s, fs in sp.items()}
    assert not (ids['train'] & ids['valid']) and not (ids['train'] & ids['test']) and not (ids['valid'] & ids['test']), ids
    for s, fs in sp.items(): assert {BIRDS[f][1] for f in fs} == set(LABELS), (s, fs)   # both labels in every split

@needs_photos
def test_groups_regions_masks_and_determinism():
    d = birds_on_backgrounds(size=32, seed=1, n_train=400, n_valid=40, n_test=80, n_spurious=10)
    assert d.info.train_counts.tolist() == [[190, 10], [10, 190]]     # 95% agree, exactly, per class
    for s, n in (('valid', 40), ('test', 80)): assert d.summary()[s].tolist() == [n // 4] * 4
    used = {s: {BIRDS[sorted(BIRDS)[i]][2] for i in d[s].bird.tolist()} for s in ('train', 'valid', 'test')}
    assert not (used['train'] & used['test'])
    m = d.train.fg_mask.float().mean((1, 2))
    assert (m > 0.01).all() and (m < 0.8).all(), (m.min(), m.max())      # every image shows a bird (a flying heron is thin), none fills it
    assert d.spurious.x.shape == (20, 3, 32, 32) and (d.spurious.y == -1).all()
    e = load_dataset('birds_on_backgrounds', size=32, seed=1, n_train=400, n_valid=40, n_test=80, n_spurious=10)
    assert torch.equal(d['test'].x, e['test'].x) and torch.equal(d.train.a, e.train.a)

@needs_photos
@pytest.mark.parametrize('corr', [0.5, 0.9, 1.0])
def test_background_agreement_is_exact_per_class(corr):
    "The proportions are placed, not sampled: round(corr * n) images of each class on their own background (no binomial error at all)."
    t = birds_on_backgrounds(size=16, seed=2, n_train=200, n_valid=8, n_test=8, n_spurious=1, corr=corr).train
    for c in (0, 1): assert int(((t.y == c) & (t.a == c)).sum()) == round(corr * 100) and int((t.y == c).sum()) == 100

@needs_photos
def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match=f"between 16 and {_band_width()}"): birds_on_backgrounds(size=400)
    with pytest.raises(ValueError, match="n_test=10: expected a positive multiple of 4"): birds_on_backgrounds(size=16, n_test=10)
    with pytest.raises(ValueError, match="corr=1.5"): birds_on_backgrounds(size=16, corr=1.5)
    with pytest.raises(ValueError, match="leave the valid split no"): identity_splits(0, fracs=(0.95, 0.0, 0.05))
