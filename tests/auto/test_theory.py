"""Cost model vs hand-computed values (Leviathan et al. 2023, Table and Section 3.4)."""


import pytest

from specdec.auto.theory import (
    best_n,
    expected_tokens,
    predicted_speedup,
    verify_cost_fn,
)


def test_expected_tokens():
    assert expected_tokens(0.5, 0) == 1.0
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.0, 8) == 1.0


@pytest.mark.parametrize("alpha,c,n,speedup", [
    (0.8, 0.1, 6, 2.47), (0.6, 0.1, 3, 1.67), (0.7, 0.1, 4, 1.98), (0.9, 0.1, 10, 3.43),
    (0.7, 0.3, 2, 1.37), (0.8, 0.3, 3, 1.55), (0.8, 0.5, 2, 1.22),
])
def test_best_n_matches_hand_values(alpha, c, n, speedup):
    got_n, got_s = best_n(alpha, c, 1.0)
    assert got_n == n
    assert got_s == pytest.approx(speedup, abs=0.005)
    assert predicted_speedup(alpha, c, n, lambda _: 1.0) == pytest.approx(got_s)


def test_low_alpha_chooses_plain_decoding():
    assert best_n(0.1, 0.1, 1.0) == (0, 1.0)
    assert predicted_speedup(0.1, 0.1, 0) == 1.0


def test_verification_cost_lowers_speedup_and_n():
    v = {1: 1.75, 2: 1.7, 4: 1.65, 8: 1.46}  # SmolLM2 fp32 on a CPU (ANCHORS.md), roughly
    n, s = best_n(0.8, 0.1, v)
    assert 1 <= n and s < best_n(0.8, 0.1, 1.0)[1]
    assert best_n(0.3, 0.1, v) == (0, 1.0)


def test_verify_cost_forms():
    f = verify_cost_fn({2: 1.2, 4: 1.6})
    assert f(0) == 1.0 and f(1) == pytest.approx(1.1) and f(3) == pytest.approx(1.4)
    assert f(10) == pytest.approx(1.6)
    assert verify_cost_fn(1.5)(0) == 1.0 and verify_cost_fn(1.5)(3) == 1.5
    assert verify_cost_fn(lambda n: 1 + 0.1 * n)(2) == pytest.approx(1.2)
