"""``num_draft_tokens="auto"``: choose N each step from measured costs and a running α.

The policy keeps exponentially decayed counts of geometric-model successes (accepted drafts)
and failures (steps with a rejection), shrunk towards a prior α, and picks the N that
maximises :func:`specdec.auto.theory.predicted_speedup` with the calibrated c and v(N). When no
N ≥ 1 beats plain decoding it returns 0 (a plain target step) but probes with N = 1 after
``probe_every`` plain steps so the estimate can recover; each probe that leaves plain decoding
ahead doubles the wait (up to ``probe_max``), and the wait resets once drafting pays again.
A pair that could not beat plain decoding even with a draft right ``alpha_ceiling`` (0.9, the top of
what drafts reach in practice) of the time
(too slow a draft, or too costly a verification on this hardware) is never probed: the draft
model is then never run.
Policies made through a :class:`~specdec.auto.calibration.CalibrationCache` are kept there per pair,
so α̂ and the probe wait carry over from one generation to the next, like the costs.
A token tree drafted with ``width`` (:mod:`specdec.engine.tree`) is priced per level: N levels
cost N draft steps and a verify of at least N nodes (the tree keeps only the nodes that pay, at most
its :func:`~specdec.engine.tree.tree_size`), α̂ is the chance a level is accepted, and N stops at
``n_max // width`` levels (``n_max`` when ``max_nodes`` caps the verify). A tree is not gated by α̂:
every step asks for all its levels and the drafter grows the tree by the head's confidence (EAGLE-2)
at :meth:`AutoPolicy.tree_price`, down to no draft at all (a plain step) when none beats one, since a
single α̂ misjudges how a tree's depth pays (``benchmarks/replay_tree.py``) and, where v jumps at the
first drafted row (fp32 without AVX-512: v(1) 1.7), a noisy α̂ dipping under the break-even shut drafting
off for whole generations. A ``priced`` chain (a drafter that sizes its own drafts, like the feature
head's) is priced the same way, as a tree one candidate wide. A grown draft's α̂ (kept for the trace) is
the chance its first level is accepted (:meth:`AutoPolicy.observe`); a hopeless pair never drafts.
Verification is unchanged, so the output is exactly what fixed-N speculative decoding (and
plain decoding) would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
from transformers import PreTrainedModel

from ..engine.forward import Compiler
from ..engine.stats import GenerationStats
from ..engine.tree import TreePrice, tree_size
from .calibration import CalibrationCache, Costs, default_calibration_cache
from .theory import best_n, verify_cost_fn

# A sparse calibration (N+1 token passes, interpolated by theory.verify_cost_fn), up to the largest
# verify a policy may choose: a chain's n_max (16 by default: 4 × (2 + 8) = 40 forwards with
# repeats=3, warmup=1, plus two prefills), a token tree's nodes (up to 64).
AUTO_NS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
AUTO_REPEATS, AUTO_WARMUP = 3, 1


@dataclass
class AutoPolicy:
    """Callable ``policy(stats) -> N`` (0 = plain target step) with its per-step ``trace``.

    α̂ = (S + prior_alpha·prior_weight) / (S + F + prior_weight), where S and F are the
    successes and failures of past steps, each multiplied by ``decay`` per drafting step.
    """

    costs: Costs
    n_max: int = 16
    prior_alpha: float = 0.6
    prior_weight: float = 2.0
    decay: float = 0.9
    probe_every: int = 8
    probe_max: int = 64
    alpha_ceiling: float = 0.9
    width: int = 1  # a token tree's expansion per level, 1 for a chain
    max_nodes: int | None = None  # a token tree's verified nodes at most (None: N·width)
    priced: bool = False  # a chain whose drafter sizes each draft at tree_price (a tree always is)
    extra_rows: int = 0  # nodes a drafter may verify beyond its levels' (a lookup branch): tree_price covers them
    successes: float = 0.0
    failures: float = 0.0
    trace: list[int] = field(default_factory=list)  # N chosen at each step of this generation
    alpha_trace: list[float] = field(default_factory=list)  # α̂ behind each choice
    _stats: GenerationStats | None = None  # the generation being decoded
    _seen: int = 0  # its steps already folded into S and F
    _plain_run: int = 0  # consecutive plain steps since the last draft
    _probe_wait: int = 0  # plain steps before the next probe (0: not yet backed off)

    @cached_property
    def hopeless(self) -> bool:
        """True when no N ≥ 1 beats plain decoding even at α = ``alpha_ceiling`` (once: a policy's costs and
        settings are fixed for its life, and a grown draft asks every step)."""
        return best_n(self.alpha_ceiling, self.costs.c, self.level_cost, self.n_max)[0] == 0

    def level_cost(self, n: int) -> float:
        """v of a verify over N levels, priced as a chain's v(N): a tree grown by :meth:`tree_price`
        verifies the nodes that pay, as few as one a level, so its α̂ (per level) gates drafting as a
        chain's does."""
        return verify_cost_fn(self.costs.verify_cost)(n)

    def tree_price(self) -> TreePrice:
        """A token tree's prices in target steps: c a level, v(0 .. the nodes a draft may verify, its
        levels' and ``extra_rows``)."""
        v = verify_cost_fn(self.costs.verify_cost)
        most = tree_size(self.n_max, self.width, self.max_nodes) + self.extra_rows
        return TreePrice(level=max(0.0, self.costs.c), verify=tuple(v(n) for n in range(max(most, 1) + 1)))

    @property
    def grows(self) -> bool:
        """True when a drafting step offers every level and the drafter sizes the draft at :meth:`tree_price`."""
        return self.width > 1 or self.priced

    @property
    def alpha(self) -> float:
        """Current estimate of the per-token acceptance α."""
        w = self.prior_weight
        return (self.successes + self.prior_alpha * w) / (self.successes + self.failures + w)

    def observe(self, accepted: int, drafted: int) -> None:
        """Fold one step's outcome into S and F; steps that drafted nothing carry no evidence. A grown
        draft counts its first level only: the price ends drafts where the head turns unsure, so their
        last levels fail more often than a level does, and counting them would understate α̂."""
        if drafted <= 0:
            return
        if self.grows:
            accepted, drafted = min(accepted, 1), 1
        self.successes = self.decay * self.successes + accepted
        self.failures = self.decay * self.failures + (accepted < drafted)

    def __call__(self, stats: GenerationStats) -> int:
        if stats is not self._stats:  # a new generation: keep α̂ and the probe wait, not the trace
            self._stats, self._seen, self.trace, self.alpha_trace = stats, 0, [], []
        for a, k in zip(stats.accepted_per_step[self._seen:], stats.drafted_per_step[self._seen:]):
            self.observe(a, k)
        self._seen = len(stats.drafted_per_step)
        alpha = self.alpha
        # a grown draft: every level on offer, the drafter's price sizes it, to none when none pays
        n = (0 if self.hopeless else self.n_max) if self.grows else self._gated(alpha)
        self.trace.append(n)
        self.alpha_trace.append(alpha)
        return n

    def _gated(self, alpha: float) -> int:
        """The N that α̂ makes best, or 0 (a plain step) with a one-draft probe once the wait is up."""
        n, _ = best_n(alpha, self.costs.c, self.level_cost, self.n_max)
        if n > 0:
            self._probe_wait = 0
        elif self.probe_every > 0 and not self.hopeless:
            self._plain_run += 1
            if self._probe_wait == 0:
                self._probe_wait = self.probe_every
            elif self._plain_run == 1:  # the last probe did not make drafting pay: wait longer
                self._probe_wait = min(2 * self._probe_wait, max(self.probe_max, self.probe_every))
            if self._plain_run >= self._probe_wait:
                n = 1
        if n > 0:
            self._plain_run = 0
        return n


def auto_policy(target: PreTrainedModel, draft: PreTrainedModel | None, input_ids: torch.Tensor, *,
                calibration_cache: CalibrationCache | None = None, costs: Costs | None = None,
                n_max: int = 16, prior_alpha: float = 0.6, prior_weight: float = 2.0,
                decay: float = 0.9, probe_every: int = 8, probe_max: int = 64,
                alpha_ceiling: float = 0.9, compiler: Compiler | None = None, width: int = 1,
                max_nodes: int | None = None, priced: bool = False, extra_rows: int = 0) -> AutoPolicy:
    """An :class:`AutoPolicy` for the pair.

    ``costs`` injects fixed costs (no timing) and gives a fresh policy. Otherwise costs are
    measured once per pair/dtype/device (and eager or compiled) through ``calibration_cache`` (an
    in-process one by default), which also keeps the pair's policy, so later generations start
    from its α̂. Compiled, N stops at the largest compiled verify block and each N is priced at
    the block it pads up to (:func:`padded_costs`). ``width`` > 1 prices N levels of a token tree
    (kept apart from the pair's chain policy), its verify over at most ``max_nodes`` nodes; ``priced``
    (a drafter that sizes its drafts, width 1) prices a chain the same way. ``extra_rows``: nodes the
    drafter may verify beyond its levels' (a lookup branch), calibrated and priced too.
    """
    if width < 1 or extra_rows < 0:
        raise ValueError(f"width must be >= 1 and extra_rows >= 0, got {width}, {extra_rows}")
    levels = n_max if max_nodes is not None and width > 1 else max(1, n_max // width)
    settings = dict(n_max=levels, width=width, max_nodes=max_nodes, priced=priced and width == 1, prior_alpha=prior_alpha,
                    prior_weight=prior_weight, decay=decay, probe_every=probe_every, probe_max=probe_max,
                    alpha_ceiling=alpha_ceiling, extra_rows=extra_rows)
    if costs is not None:
        return AutoPolicy(costs, **settings)
    if compiler is not None and width > 1:
        raise ValueError("a token tree runs eager only")
    cache = default_calibration_cache() if calibration_cache is None else calibration_cache
    if compiler is None:
        reach = tree_size(levels, width, max_nodes) + extra_rows  # the widest verify the policy may choose
        ns = (*(n for n in AUTO_NS if n < reach), min((n for n in AUTO_NS if n >= reach), default=AUTO_NS[-1]))
    else:
        n_max = settings["n_max"] = min(n_max, compiler.max_draft)
        ns = tuple(r - 1 for r in compiler.block_rows if 1 <= r - 1 <= n_max) or (1,)
    costs = cache.get_or_measure(target, draft, input_ids, ns=ns, repeats=AUTO_REPEATS, warmup=AUTO_WARMUP,
                                 compiler=compiler)
    if compiler is not None:
        costs = padded_costs(costs, n_max)
    key = cache.key(target, draft, compiler is not None)[0] + (f";tree={width}" if width > 1 else "")
    key += f";nodes={max_nodes}" if width > 1 and max_nodes is not None else ""
    key += ";priced" if settings["priced"] else ""
    key += f";extra={extra_rows}" if extra_rows else ""
    policy = cache.policies.get(key)
    if policy is None or policy.costs != costs or any(getattr(policy, k) != v for k, v in settings.items()):
        policy = cache.policies[key] = AutoPolicy(costs, **settings)
    return policy


def padded_costs(costs: Costs, n_max: int) -> Costs:
    """``costs`` with v(N) for every N in 1..n_max set to that of the smallest measured N' >= N
    (a compiled verify of N drafts runs the graph of N' + 1 rows)."""
    measured = sorted(n for n in costs.verify_cost if n > 0)
    verify = {0: 1.0}
    for n in range(1, n_max + 1):
        up = next((m for m in measured if m >= n), measured[-1])
        verify[n] = costs.verify_cost[up]
    return Costs(costs.target_step_s, costs.draft_step_s, costs.c, verify)
