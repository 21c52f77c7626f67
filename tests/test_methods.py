"""The method registry's default for ``specdec generate`` (pure: no model)."""

import pytest

from specdec.methods import GENERATE_METHODS, METHODS, default_method


@pytest.mark.parametrize("head, temperature, compiled, fixed_n, expected", [
    (True, 0.0, False, False, "eagle-tree-auto"),
    (True, 0.0, False, True, "eagle-tree"),
    (True, 0.7, False, False, "eagle-auto"),  # a tree is greedy only
    (True, 0.0, True, True, "eagle"),  # and eager only
    (False, 0.0, False, False, "auto"),
    (False, 0.7, True, True, "speculative"),
])
def test_default_method_is_the_fastest_drafter_that_can_run(head, temperature, compiled, fixed_n, expected):
    name = default_method(head, temperature, compiled, fixed_n)
    assert name == expected and name in GENERATE_METHODS
    method = METHODS[name]
    assert (method.samples or temperature == 0) and (method.modes != "eager" or not compiled)
    assert (method.study_n == "auto") != fixed_n
