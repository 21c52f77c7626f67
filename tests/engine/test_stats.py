"""The per-token α estimator behind the cost model's predictions."""

import math
import random

import pytest

from specdec.engine.stats import alpha_from_counts


def test_alpha_from_counts_is_the_geometric_mle():
    assert alpha_from_counts([4, 1, 0], [4, 4, 4]) == pytest.approx(5 / 7)
    assert math.isnan(alpha_from_counts([0], [0]))
    # Simulated geometric acceptance: the MLE recovers α, the plain ratio is biased low.
    rng, alpha, n = random.Random(0), 0.8, 4
    acc = []
    for _ in range(4000):
        a = 0
        while a < n and rng.random() < alpha:
            a += 1
        acc.append(a)
    drafted = [n] * len(acc)
    assert alpha_from_counts(acc, drafted) == pytest.approx(alpha, abs=0.02)
    assert sum(acc) / sum(drafted) == pytest.approx(0.59, abs=0.02)
