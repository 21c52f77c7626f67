"""Why a greedy speculative output differs from the baseline's: a near-tie or a bug.

Greedy speculative decoding must reproduce plain greedy decoding. In fp32 it does; in bf16 or
fp16 the target's (N+1)-row verify pass and its one-row decode step round differently, so where
the target's top two logits are within rounding of each other the argmax can flip. A pair that
differs is classified by the baseline's top-1 minus top-2 logit at the first differing token:
a *near-tie* when that margin is at most ``ROUNDING_STEPS`` rounding steps of the dtype at the
logit's magnitude (``eps · max(1, |top-1 logit|)`` each), otherwise *unexplained*, which is a bug
to chase in any dtype.
"""

from __future__ import annotations

import torch

ROUNDING_STEPS = 4
IDENTICAL, NEAR_TIE, UNEXPLAINED = "identical", "near-tie", "unexplained"


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first position where ``a`` and ``b`` differ (a length difference counts), else None."""
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    return k if k is not None or len(a) == len(b) else min(len(a), len(b))


@torch.inference_mode()
def top2_logits(target, context: list[int]) -> tuple[float, float]:
    """The target's two largest next-token logits after ``context`` (one uncached forward)."""
    ids = torch.tensor([context], device=target.device)
    top = target(ids, logits_to_keep=1).logits[0, -1].float().topk(2).values
    return float(top[0]), float(top[1])


def rounding_tolerance(top1: float, dtype: torch.dtype) -> float:
    """The largest margin still called a near-tie for a top-1 logit of this size in ``dtype``."""
    return ROUNDING_STEPS * torch.finfo(dtype).eps * max(1.0, abs(top1))


def classify(target, prompt_ids: list[int], baseline: list[int], candidate: list[int]) -> tuple[str, int | None, float | None]:
    """(class, first differing position, the baseline's top-2 margin there) for one greedy pair."""
    k = first_difference(baseline, candidate)
    if k is None:
        return IDENTICAL, None, None
    top1, top2 = top2_logits(target, prompt_ids + baseline[:k])
    margin = top1 - top2
    dtype = next(target.parameters()).dtype
    return (NEAR_TIE if margin <= rounding_tolerance(top1, dtype) else UNEXPLAINED), k, margin
