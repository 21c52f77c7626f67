import pytest

from benchmarks import bench_tree


def test_shapes_parse_with_cap_zero_meaning_none():
    assert bench_tree.parse_shapes("3:0:2,6:32:6,6:32:auto") == [(3, None, 2), (6, 32, 6), (6, 32, "auto")]
    assert len(bench_tree.parse_shapes(bench_tree.DEFAULT_SHAPES)) == 9


@pytest.mark.parametrize("bad", ["0:0:2", "3:-1:2", "3:0:0", "3:2", "3:0:2:1", "3:0:best"])
def test_bad_shapes_are_refused(bad):
    with pytest.raises(ValueError):
        bench_tree.parse_shapes(bad)


def test_a_bad_shape_exits_2_with_one_line(capsys):
    assert bench_tree.main(["--shapes", "3:x:2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
