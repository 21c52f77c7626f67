"""Speculative decoding's cost model (Leviathan et al. 2023), with a measured verification cost.

Names follow the paper: α per-token acceptance, N drafts per step, c = draft step / target
step. v(N) is the measured cost of one target pass over N + 1 tokens relative to one token
(v(0) = 1); the paper assumes v ≡ 1, which holds on accelerators in low precision but not on a
CPU in fp32 (``benchmarks/README.md``). Pure math: no torch.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping

# v as a function of N, a table N -> v (interpolated, see verify_cost_fn), or a constant.
VerifyCost = Callable[[int], float] | Mapping[int, float] | float | int


def expected_tokens(alpha: float, n: int) -> float:
    """E(α, N) = (1 − α^(N+1)) / (1 − α): tokens per target pass, bonus token included."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if alpha == 1.0:
        return float(n + 1)
    return (1.0 - alpha ** (n + 1)) / (1.0 - alpha)


def verify_cost_fn(v: VerifyCost) -> Callable[[int], float]:
    """v as a callable N -> cost with v(0) = 1.

    A table is linearly interpolated between its keys (a key 0 → 1 is implied) and held
    constant beyond its largest key, so a sparse calibration covers every N.
    """
    if callable(v):
        return lambda n: 1.0 if n == 0 else float(v(n))
    if isinstance(v, (int, float)):
        const = float(v)
        return lambda n: 1.0 if n == 0 else const
    table = {0: 1.0, **{int(k): float(x) for k, x in v.items()}}
    keys = sorted(table)

    def interp(n: int) -> float:
        if n in table:
            return table[n]
        if n >= keys[-1]:
            return table[keys[-1]]
        i = bisect_left(keys, n)
        lo, hi = keys[i - 1], keys[i]
        return table[lo] + (table[hi] - table[lo]) * (n - lo) / (hi - lo)

    return interp


def predicted_speedup(alpha: float, c: float, n: int, v: VerifyCost = 1.0) -> float:
    """Walltime speedup over plain decoding: E(α, N) / (N·c + v(N)); N = 0 gives 1.0."""
    return expected_tokens(alpha, n) / (n * c + verify_cost_fn(v)(n))


def best_n(alpha: float, c: float, v: VerifyCost = 1.0, n_max: int = 16) -> tuple[int, float]:
    """(N, speedup) maximising :func:`predicted_speedup` over 1..n_max; (0, 1.0) when none beats plain."""
    vf = verify_cost_fn(v)
    best = (0, 1.0)
    for n in range(1, n_max + 1):
        s = expected_tokens(alpha, n) / (n * c + vf(n))
        if s > best[1]:
            best = (n, s)
    return best
