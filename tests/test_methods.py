"""The method registry's default for ``specdec generate`` (pure: no model)."""

import pytest

from specdec.methods import GENERATE_METHODS, METHODS, default_method


@pytest.mark.parametrize("head, temperature, compiled, fixed_n, dtype, expected", [
    (True, 0.0, False, False, "bfloat16", "eagle-tree-auto"),
    (True, 0.0, False, True, "float16", "eagle-tree"),
    (True, 0.0, False, False, "float32", "eagle-auto"),  # a tree's extra rows are dear in fp32
    (True, 0.7, False, False, "bfloat16", "eagle-auto"),  # a tree is greedy only
    (True, 0.0, True, True, "bfloat16", "eagle"),  # and eager only
    (False, 0.0, False, False, "bfloat16", "auto"),
    (False, 0.7, True, True, "float32", "speculative"),
])
def test_default_method_is_the_fastest_drafter_that_can_run(head, temperature, compiled, fixed_n, dtype, expected):
    name = default_method(head, temperature, compiled, fixed_n, dtype)
    assert name == expected and name in GENERATE_METHODS
    method = METHODS[name]
    assert (method.samples or temperature == 0) and (method.modes != "eager" or not compiled)
    assert (method.study_n == "auto") != fixed_n
