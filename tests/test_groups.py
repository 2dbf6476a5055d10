"""spurnotes.groups: the (x, y, a) schema: GroupInfo's group numbering and counts, GroupDataset's fields, SpuriousData's splits."""
import pickle
import numpy as np
import pytest
import torch
from spurnotes.groups import GroupInfo, GroupDataset, SpuriousData, group_counts_of, present_group_ids

def test_group_numbering_and_counts_agree_with_a_loop():
    info = GroupInfo(['c0', 'c1', 'c2'], ['a0', 'a1'])
    g = torch.Generator().manual_seed(0)
    y, a = torch.randint(0, 3, (200,), generator=g), torch.randint(0, 2, (200,), generator=g)
    counts = group_counts_of(y, a, info)
    brute = np.zeros((3, 2), int)
    for yi, ai in zip(y.tolist(), a.tolist()): brute[yi, ai] += 1
    np.testing.assert_array_equal(counts, brute)
    assert info.group(2, 1) == 5 and info.group_names[5] == 'c2 / a1' and info.n_groups == 6

def test_train_counts_shape_is_checked():
    with pytest.raises(ValueError, match=r"train_counts has shape \(3,\); expected \(n_classes, n_attrs\) = \(2, 2\)"):
        GroupInfo(['0', '1'], ['p', 'q'], train_counts=[1, 2, 3])

def test_present_group_ids_differ_from_group_when_a_group_is_absent():
    info = GroupInfo(['0', '1'], ['p', 'q'])
    y, a = torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1])       # group (0, q) absent
    ids, n = present_group_ids(GroupDataset(torch.rand(4, 1, 2, 2), y, a))
    assert n == 3 and ids.tolist() == [0, 1, 2, 2]
    assert info.group(y, a).tolist() == [0, 2, 3, 3]                      # GroupInfo numbers every (y, a) pair

def test_dataset_fields_subset_and_replace():
    x = torch.rand(6, 1, 3, 3)
    ds = GroupDataset(x, torch.arange(6) % 2, torch.zeros(6), fg=torch.arange(6))
    sub = ds.subset([4, 1])
    assert torch.equal(sub.x, x[[4, 1]]) and sub.fg.tolist() == [4, 1] and sub.y.tolist() == [0, 1]
    new = ds.replace(x=torch.zeros_like(x))
    assert new.x.sum() == 0 and new.y is ds.y and ds.x is x            # the others are shared, the original untouched
    assert len(ds.new_empty()) == 0 and list(ds.new_empty().extras) == ['fg']
    with pytest.raises(ValueError, match="`y` has 5 entries but x has 6"): GroupDataset(x, torch.zeros(5), torch.zeros(6))
    with pytest.raises(AttributeError): ds.nothing

def test_device_copy_is_remade_after_an_in_place_change_and_not_pickled():
    ds = GroupDataset(torch.rand(4, 1, 2, 2), torch.zeros(4), torch.zeros(4))
    meta = ds.on('meta')
    assert meta is not ds and meta.x.device.type == 'meta' and ds.on('meta') is meta   # made once
    ds.y[0] = 1                                                                        # in place: the copy is stale
    assert ds.on('meta') is not meta
    assert ds.on('cpu') is ds and '_held' not in pickle.loads(pickle.dumps(ds)).__dict__

def test_spurious_data_names_its_splits():
    ds = GroupDataset(torch.rand(8, 3, 4, 4), torch.tensor([0, 0, 0, 1, 1, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 1, 1, 0, 0]))
    info = GroupInfo(['0', '1'], ['p', 'q'])
    d = SpuriousData('toy', info, {'train': ds, 'valid': ds.subset([0, 3]), 'test': ds}, ['test'])
    assert d.train is ds and len(d.valid) == 2 and d['test'] is ds
    with pytest.raises(KeyError, match=r"No split 'tset' in toy; the splits are \['train', 'valid', 'test'\]"): d['tset']
    s = d.summary()
    assert s['train'].sum() == 8 and list(s.index) == info.group_names
    xb, yb, ab = d.dls(bs=4, seed=0, device='cpu').one_batch()
    assert xb.shape == (4, 3, 4, 4) and len(list(d.dl('test', bs=3, device='cpu'))) == 3
