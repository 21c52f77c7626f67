"""Where a greedy speculative run departs from the baseline, how close were the target's top two logits?

A near-tie (a margin of one or two rounding steps of the dtype) means the flip is numerical: the
verify pass over N+1 positions rounded differently from a one-token step. A wide margin would
point at a bug. Usage:

    python scripts/divergence.py --dtype bfloat16 --n 1,2,3,4 --prompts 2
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from specdec.decoding import autoregressive_generate, speculative_generate
from specdec.models import load_pair
from specdec.prompts import study_prompts


@dataclass
class Divergence:
    """First differing position of one (prompt, N) run; ``position`` None when identical."""

    prompt_id: str
    n: int
    position: int | None
    baseline_token: int | None = None
    speculative_token: int | None = None
    margin: float | None = None  # target's top-1 minus top-2 logit there (one uncached forward over the context)


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first position where ``a`` and ``b`` differ (a length difference counts), else None."""
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    return k if k is not None or len(a) == len(b) else min(len(a), len(b))


@torch.no_grad()
def top2_margin(target, context: list[int]) -> float:
    """Top-1 minus top-2 logit of the target's next token after ``context`` (one forward, full prompt)."""
    logits = target(torch.tensor([context])).logits[0, -1].float()
    top = logits.topk(2).values
    return float(top[0] - top[1])


def check(target, draft, prompt_id: str, prompt_ids: list[int], n: int, new_tokens: int) -> Divergence:
    """Greedy baseline and speculative runs for one prompt and N, and where they part."""
    ids = torch.tensor([prompt_ids])
    a = autoregressive_generate(target, ids, max_new_tokens=new_tokens).tokens
    b = speculative_generate(target, draft, ids, num_draft_tokens=n, max_new_tokens=new_tokens).tokens
    k = first_difference(a, b)
    if k is None:
        return Divergence(prompt_id, n, None)
    return Divergence(prompt_id, n, k, a[k] if k < len(a) else None, b[k] if k < len(b) else None,
                      top2_margin(target, prompt_ids + a[:k]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="default")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--n", default="1,2,3,4", help="comma-separated draft lengths")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    target, draft = load_pair(args.pair, dtype=args.dtype)
    for p in study_prompts(target.tokenizer, args.prompt_len, args.prompts):
        for n in (int(x) for x in args.n.split(",")):
            d = check(target.model, draft.model, p.id, p.ids, n, args.new_tokens)
            if d.position is None:
                print(f"{d.prompt_id} N={n}: identical")
            else:
                print(f"{d.prompt_id} N={n}: first difference at answer token {d.position} "
                      f"(baseline {d.baseline_token}, speculative {d.speculative_token}); "
                      f"target top-2 logit margin there {d.margin:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
