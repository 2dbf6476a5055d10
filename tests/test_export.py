"`learn.export` / `load_learner` round-trip for the package's learners: plain ERM, ERM on group-balanced augmented batches, and ULE (the teacher is `learn.model`)."
import pytest
import torch
from fastai.learner import load_learner
from fastai.torch_core import set_seed
from spurnotes.models import make_backbone
from spurnotes.learner import erm_learner, get_group_preds
from spurnotes.datasets import load_dataset

@pytest.fixture(scope='module')
def data():
    return load_dataset('biased_digits', None, seed=0, size=28, source='sklearn')

def fit_export_load(learn, tmp_path):
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    learn.export(tmp_path/'learner.pkl')
    return load_learner(tmp_path/'learner.pkl')

@pytest.mark.filterwarnings("ignore:load_learner:UserWarning")
def test_erm_learner_exports(data, tmp_path):
    set_seed(0, reproducible=True)
    learn = erm_learner(data.dls(bs=64, seed=0, device='cpu'), make_backbone('small_cnn'), data.info, lr=0.01)
    back = fit_export_load(learn, tmp_path)
    assert len(back.dls.train.dataset) == 0            # the data is not pickled, only its empty shell
    ref, got = get_group_preds(learn, data.dl('valid', device='cpu'))[0], get_group_preds(back, data.dl('valid', device='cpu'))[0]
    assert torch.allclose(ref, got)

@pytest.mark.filterwarnings("ignore:load_learner:UserWarning")
def test_ule_learner_exports_the_teacher(data, tmp_path):
    from spurnotes.ule import ULE
    set_seed(0, reproducible=True)
    learn = erm_learner(data.dls(bs=64, seed=0, device='cpu'), make_backbone('small_cnn'), data.info, lr=0.01, cbs=ULE(penalty='cos2'))
    back = fit_export_load(learn, tmp_path)
    dl = data.dl('valid', device='cpu')
    ref, got = get_group_preds(learn, dl)[0], get_group_preds(back, dl)[0]
    assert torch.allclose(ref, got)                     # the exported model is the teacher

@pytest.mark.filterwarnings("ignore:load_learner:UserWarning")
def test_balanced_augmented_learner_exports(data, tmp_path):
    "A learner on group-balanced, augmented DataLoaders (`GroupBalancedDL`: methods, no lambdas) exports and loads."
    from spurnotes.loaders import GroupBalancedDL, RandomResizedCropFlip
    set_seed(0, reproducible=True)
    learn = erm_learner(data.dls(bs=64, seed=0, device='cpu', balanced=True, augment=RandomResizedCropFlip(seed=0)),
                        make_backbone('small_cnn'), data.info, lr=0.01)
    back = fit_export_load(learn, tmp_path)
    assert isinstance(back.dls.train, GroupBalancedDL) and len(back.dls.train.dataset) == 0
    dl = data.dl('valid', device='cpu')
    ref, got = get_group_preds(learn, dl)[0], get_group_preds(back, dl)[0]
    assert torch.allclose(ref, got)
