"""The one vocabulary rule: which token ids a target and its drafter both score.

A model's logits may be wider than its tokenizer (rows padded for the matrix kernels); ids at
or above the shared size are masked. With tokenizers the shared size is the tokenizer's length
and the two tokenizers must map every token to the same id; without them the two output widths
may differ by padding only (at most 1% or 128 rows) and the narrower one is shared.
"""

from __future__ import annotations

from typing import Any

PADDING_ROWS = 128
PADDING_FRACTION = 0.01


def logits_width(model: Any) -> int:
    """Width of the logits a causal LM returns: ``config.vocab_size`` (a reduced head still
    returns full-width logits, with -inf where it does not score)."""
    return int(model.config.vocab_size)


def _first_difference(t_vocab: dict, d_vocab: dict) -> str:
    t_ids = {i: tok for tok, i in t_vocab.items()}
    d_ids = {i: tok for tok, i in d_vocab.items()}
    for i in sorted(set(t_ids) | set(d_ids)):
        if t_ids.get(i) != d_ids.get(i):
            return f"id {i} is {t_ids.get(i)!r} vs {d_ids.get(i)!r}"
    return "token-to-id maps differ"


def shared_vocab_size(target: Any, draft: Any | None = None, tokenizer: Any = None,
                      draft_tokenizer: Any = None) -> int:
    """Number of leading ids both models score; ValueError (one line) when they share none.

    ``draft`` None (a drafter without a model) shares the target's; ``tokenizer`` is the target's
    (or the pair's), ``draft_tokenizer`` the draft's when it has its own.
    """
    vt = logits_width(target)
    vd = logits_width(draft) if draft is not None else vt
    if tokenizer is not None and draft_tokenizer is not None and draft_tokenizer is not tokenizer:
        nt, nd = len(tokenizer), len(draft_tokenizer)
        if nt != nd:
            raise ValueError(f"refusing pair: tokenizers of {nt} vs {nd} tokens; no shared vocabulary")
        t_vocab, d_vocab = tokenizer.get_vocab(), draft_tokenizer.get_vocab()
        if t_vocab != d_vocab:
            raise ValueError(f"refusing pair: different tokenizers ({_first_difference(t_vocab, d_vocab)})")
    real = len(tokenizer) if tokenizer is not None else (len(draft_tokenizer) if draft_tokenizer is not None else None)
    if real is not None:
        if min(vt, vd) < real:
            raise ValueError(f"refusing pair: logits of {vt} (target) and {vd} (draft) rows do not cover "
                             f"the tokenizer's {real} tokens")
        return real
    shared = min(vt, vd)
    if abs(vt - vd) > max(PADDING_ROWS, int(shared * PADDING_FRACTION)):
        raise ValueError(f"refusing pair: output sizes {vt} (target) and {vd} (draft) differ by more "
                         "than padding; no shared vocabulary")
    return shared
