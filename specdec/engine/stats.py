"""Counters and timings of one generation, and the result type every generator returns.

Counters are raw, as llama.cpp keeps them; rates are derived:
- ``drafted``: draft tokens sent to the target for verification (a token tree counts its levels,
  one per position it reaches; a grafted lookup branch is not counted, so α stays the drafter's);
  ``accepted``: those kept.
- acceptance rate α̂ = accepted / drafted (NaN when nothing was drafted).
- per-token α (``alpha_geometric``): the geometric-model MLE of :func:`alpha_from_counts`,
  the α that E(α, N) expects; α̂ counts drafts after a rejection as failures and so sits below it.
- τ (``tokens_per_step``) = new tokens / target forward passes, the prefill pass included
  (it yields the first token); plain decoding scores exactly 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def alpha_from_counts(accepted_per_step: Sequence[int], drafted_per_step: Sequence[int]) -> float:
    """Per-token acceptance α, the MLE under the geometric model that E(α, N) assumes.

    Each drafted token is kept with probability α until the first rejection, so a step with
    a accepted of k drafted contributes α^a, times (1 − α) if a < k (a rejection was observed).
    The MLE is successes / (successes + failures) with successes = Σ a and failures = number
    of steps with a < k. The plain ratio Σa / Σk counts the drafts after a rejection, which
    were never tested, as failures, so it is biased low for E(α, N): with α = 0.8 and N = 4
    it converges to E[a]/N = 0.59, not 0.8. NaN when nothing was drafted.
    """
    if len(accepted_per_step) != len(drafted_per_step):
        raise ValueError("accepted_per_step and drafted_per_step differ in length")
    successes = failures = 0
    for a, k in zip(accepted_per_step, drafted_per_step):
        if a > k or a < 0:
            raise ValueError(f"accepted {a} outside 0..drafted {k}")
        successes += a
        failures += a < k
    total = successes + failures
    return successes / total if total else math.nan


@dataclass
class GenerationStats:
    """Raw counters and timings of one generation; see the module docstring for definitions."""

    new_tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0
    accepted_per_step: list[int] = field(default_factory=list)
    drafted_per_step: list[int] = field(default_factory=list)
    draft_early_stops: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    phases_timed: bool = True  # False when prefill and decode could not be timed apart (HF generate)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else math.nan

    @property
    def alpha_geometric(self) -> float:
        return alpha_from_counts(self.accepted_per_step, self.drafted_per_step)

    @property
    def tokens_per_step(self) -> float:
        return self.new_tokens / self.target_forwards if self.target_forwards else math.nan

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.total_s if self.total_s > 0 else math.nan


@dataclass
class GenerationResult:
    """New token ids only (prompt excluded), their text when a tokenizer was given, and stats."""

    tokens: list[int]
    stats: GenerationStats
    text: str | None = None

    @classmethod
    def finish(cls, tokens: list[int], stats: GenerationStats, tokenizer=None) -> GenerationResult:
        """The result of a finished generation: sets ``stats.new_tokens`` and decodes the text."""
        stats.new_tokens = len(tokens)
        text = tokenizer.decode(tokens, skip_special_tokens=True) if tokenizer is not None else None
        return cls(tokens, stats, text)
