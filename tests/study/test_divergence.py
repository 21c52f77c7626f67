"""Greedy mismatch classification: identical, near-tie (within rounding) or unexplained."""

import torch

from specdec import autoregressive_generate, speculative_generate
from specdec.study.divergence import (
    IDENTICAL,
    NEAR_TIE,
    UNEXPLAINED,
    classify,
    first_difference,
    rounding_tolerance,
    top2_logits,
)
from specdec.testing import FixtureSpec, fixture_pair


def test_first_difference():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2, 3], [1, 2]) == 2


def test_top2_logits_match_a_direct_forward(pair, prompt):
    target, _ = pair
    with torch.no_grad():
        top = target(prompt).logits[0, -1].topk(2).values
    top1, top2 = top2_logits(target, prompt[0].tolist())
    assert abs(top1 - float(top[0])) < 1e-4 and abs(top2 - float(top[1])) < 1e-4


def test_rounding_tolerance_scales_with_dtype_and_magnitude():
    assert rounding_tolerance(20.0, torch.bfloat16) > 1000 * rounding_tolerance(20.0, torch.float32)
    assert rounding_tolerance(40.0, torch.bfloat16) == 2 * rounding_tolerance(20.0, torch.bfloat16)
    assert rounding_tolerance(0.1, torch.float32) == rounding_tolerance(1.0, torch.float32)


def test_fp32_speculative_pair_is_identical(pair, prompt):
    target, draft = pair
    a = autoregressive_generate(target, prompt, max_new_tokens=24).tokens
    b = speculative_generate(target, draft, prompt, num_draft_tokens=3, max_new_tokens=24).tokens
    assert classify(target, prompt[0].tolist(), a, b) == (IDENTICAL, None, None)


def test_flip_at_an_exact_tie_is_a_near_tie_and_a_decisive_flip_is_unexplained(prompt):
    target, _ = fixture_pair(FixtureSpec(eps=0.2, seed=3))
    ctx = prompt[0].tolist()
    with torch.no_grad():
        order = target(prompt).logits[0, -1].argsort(descending=True)
        best, second, last = int(order[0]), int(order[1]), int(order[-1])
        target.lm_head.weight[second] = target.lm_head.weight[best]  # an exact tie between the top two
    baseline = autoregressive_generate(target, prompt, max_new_tokens=4).tokens
    tied = second if baseline[0] == best else best
    kind, pos, margin = classify(target, ctx, baseline, [tied, *baseline[1:]])
    assert (kind, pos) == (NEAR_TIE, 0) and margin == 0.0
    kind, pos, margin = classify(target, ctx, baseline, [baseline[0], last, *baseline[2:]])
    assert (kind, pos) == (UNEXPLAINED, 1) and margin > rounding_tolerance(margin, torch.float32)
