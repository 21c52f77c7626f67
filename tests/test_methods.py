"""The method registry's default for ``specdec generate`` (pure: no model)."""

import pytest

from specdec.methods import GENERATE_METHODS, METHODS, default_method


@pytest.mark.parametrize("head, compiled, fixed_n, dtype, expected", [
    (True, False, False, "bfloat16", "eagle-tree-lookup-auto"),
    (True, False, True, "float16", "eagle-tree"),
    (True, False, False, "float32", "eagle-lookup-auto"),  # a tree's extra rows are dear in fp32
    (True, True, True, "bfloat16", "eagle"),  # a tree runs eager only
    (True, True, False, "float32", "eagle-auto"),  # so does a lookup branch
    (False, False, False, "bfloat16", "auto-lookup"),  # the draft model's chain takes a branch too
    (False, True, False, "bfloat16", "auto"),
    (False, True, True, "float32", "speculative"),
])
def test_default_method_is_the_fastest_drafter_that_can_run(head, compiled, fixed_n, dtype, expected):
    name = default_method(head, compiled, fixed_n, dtype)
    assert name == expected and name in GENERATE_METHODS
    method = METHODS[name]
    assert method.modes != "eager" or not compiled
    assert (method.study_n == "auto") != fixed_n
