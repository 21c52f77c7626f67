import importlib.util
import sys
from pathlib import Path

import torch

_SPEC = importlib.util.spec_from_file_location(
    "divergence", Path(__file__).resolve().parents[1] / "scripts" / "divergence.py")
divergence = importlib.util.module_from_spec(_SPEC)
sys.modules["divergence"] = divergence  # dataclasses look their module up there
_SPEC.loader.exec_module(divergence)


def test_first_difference():
    assert divergence.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert divergence.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert divergence.first_difference([1, 2, 3], [1, 2]) == 2


def test_top2_margin_matches_a_direct_forward(pair, prompt):
    target, _ = pair
    ctx = prompt[0].tolist()
    with torch.no_grad():
        top = target(prompt).logits[0, -1].topk(2).values
    assert abs(divergence.top2_margin(target, ctx) - float(top[0] - top[1])) < 1e-5
    assert divergence.top2_margin(target, ctx) >= 0


def test_fp32_speculative_run_has_no_divergence(pair, prompt):
    target, draft = pair
    d = divergence.check(target, draft, "p", prompt[0].tolist(), n=3, new_tokens=24)
    assert d.position is None and d.margin is None
