"""spurnotes.moved: code written for 0.0.1 keeps working for one release, with a DeprecationWarning naming the new home."""
import importlib
import pytest
from spurnotes.moved import MOVED

def test_old_imports_warn_and_resolve():
    with pytest.warns(DeprecationWarning, match=r"spurnotes\.core\.GroupInfo moved to spurnotes\.groups\.GroupInfo"):
        from spurnotes.core import GroupInfo
    from spurnotes.groups import GroupInfo as new
    assert GroupInfo is new
    with pytest.warns(DeprecationWarning, match="spurnotes.data.biased_digits moved to spurnotes.testbeds.biased_digits"):
        import spurnotes.data as data
        data.biased_digits

@pytest.mark.parametrize('old', sorted(MOVED))
def test_every_old_name_resolves(old):
    module = importlib.import_module(f'spurnotes.{old}')
    for name, (mod, new) in MOVED[old].items():
        home = getattr(importlib.import_module(mod if '.' in mod else f'spurnotes.{mod}'), new)
        if name in vars(module): obj = getattr(module, name)   # a paper module that imports it from its new home: no warning needed
        else:
            with pytest.warns(DeprecationWarning): obj = getattr(module, name)
        if (old, name) == ('ule', 'SUMMARIES') and name not in vars(module): assert obj == {s.label: s.kind for s in home}   # 0.0.1's shape
        else: assert obj is home or (old, name) == ('core', 'set_seed')

def test_unknown_names_still_fail():
    import spurnotes.core as core
    with pytest.raises(AttributeError, match="module 'spurnotes.core' has no attribute 'nothing'"): core.nothing
