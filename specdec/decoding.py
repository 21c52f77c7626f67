"""Plain autoregressive decoding (the baseline) and speculative decoding, one result type.

Counters (raw, as llama.cpp keeps them; rates are derived):
- ``drafted``: draft tokens sent to the target for verification; ``accepted``: those kept.
- acceptance rate α̂ = accepted / drafted (NaN when nothing was drafted).
- per-token α (``alpha_geometric``): the geometric-model MLE of :func:`specdec.theory.alpha_from_counts`,
  the α that E(α, N) expects; α̂ counts drafts after a rejection as failures and so sits below it.
- τ (``tokens_per_step``) = new tokens / target forward passes, the prefill pass included
  (it yields the first token); plain decoding scores exactly 1.0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Union

import torch
from transformers import DynamicCache, PreTrainedModel

from .cache import crop_to
from .drafters import Draft, Drafter, ModelDrafter
from .sampling import SamplingParams, probs_from_logits, sample
from .subvocab import logits_width
from .theory import alpha_from_counts
from .verify import greedy_accept, rejection_accept

# (accepted draft tokens, the target's own token or None when EOS cut the step short)
StepCallback = Callable[[list[int], "int | None"], None]
NPolicy = Callable[["GenerationStats"], int]


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


def _eos_set(eos_token_id: int | Iterable[int] | None) -> frozenset[int]:
    if eos_token_id is None:
        return frozenset()
    if isinstance(eos_token_id, int):
        return frozenset({eos_token_id})
    return frozenset(int(t) for t in eos_token_id)


def _generator(seed: int | None, generator: torch.Generator | None, device: torch.device):
    if generator is not None:
        return generator
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def context_length(model: PreTrainedModel) -> int | None:
    """The model's maximum sequence length, if its config states one."""
    return getattr(model.config, "max_position_embeddings", None)


def validate_request(model: PreTrainedModel, input_ids: torch.Tensor, max_new_tokens: int) -> None:
    """Raise ValueError naming the problem for an unusable prompt or length."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape (1, L), got {tuple(input_ids.shape)}")
    if input_ids.shape[1] == 0:
        raise ValueError("the prompt is empty: input_ids has no tokens")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    limit = context_length(model)
    if limit is not None and input_ids.shape[1] + max_new_tokens > limit:
        raise ValueError(
            f"prompt length {input_ids.shape[1]} + max_new_tokens {max_new_tokens} exceeds "
            f"the target's context of {limit} tokens")


def pair_vocab_size(target: PreTrainedModel, draft: PreTrainedModel, real_vocab: int | None = None) -> int:
    """Vocabulary the pair shares; ids at or above it are masked in both models' scores.

    Output sizes may differ only by padding (at most 1% or 128 rows); ``real_vocab`` (e.g.
    ``len(tokenizer)``) narrows the shared range when known.
    """
    vt, vd = logits_width(target), logits_width(draft)
    shared = min(vt, vd)
    if abs(vt - vd) > max(128, shared // 100):
        raise ValueError(
            f"target and draft do not share a vocabulary: output sizes {vt} and {vd} differ by "
            "more than padding")
    if real_vocab is not None:
        if real_vocab > shared:
            raise ValueError(f"tokenizer has {real_vocab} tokens but a model scores only {shared}")
        shared = real_vocab
    return shared


def _choose(logits: torch.Tensor, params: SamplingParams, generator) -> torch.Tensor:
    if params.greedy:
        return logits.argmax(-1)
    return sample(probs_from_logits(logits, params), generator)


def _finish(tokens: list[int], stats: GenerationStats, tokenizer) -> GenerationResult:
    stats.new_tokens = len(tokens)
    text = tokenizer.decode(tokens, skip_special_tokens=True) if tokenizer is not None else None
    return GenerationResult(tokens, stats, text)


@torch.inference_mode()
def autoregressive_generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | Iterable[int] | None = None,
    tokenizer=None,
) -> GenerationResult:
    """One target forward per token with a KV cache; greedy output equals ``model.generate``."""
    validate_request(model, input_ids, max_new_tokens)
    params = SamplingParams(temperature, top_k, top_p)
    device = input_ids.device
    gen = _generator(seed, generator, device)
    eos = _eos_set(eos_token_id)
    stats = GenerationStats()
    cache = DynamicCache(config=model.config)
    t0 = time.perf_counter()
    logits = model(input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    token = _choose(logits, params, gen)
    _sync(device)
    t1 = time.perf_counter()
    out = [token]
    stopped = bool(eos) and int(token) in eos
    for _ in range(max_new_tokens - 1):
        if stopped:
            break
        logits = model(token.view(1, 1), past_key_values=cache, use_cache=True).logits[:, -1]
        token = _choose(logits, params, gen)
        out.append(token)
        stopped = bool(eos) and int(token) in eos
    tokens = torch.cat(out).tolist()
    _sync(device)
    stats.prefill_s, stats.decode_s = t1 - t0, time.perf_counter() - t1
    stats.target_forwards = len(tokens)
    return _finish(tokens, stats, tokenizer)


def _fixed_n(n: int) -> NPolicy:
    return lambda stats: n


@torch.inference_mode()
def speculative_generate(
    target: PreTrainedModel,
    draft: PreTrainedModel | None,
    input_ids: torch.Tensor,
    num_draft_tokens: Union[int, str, NPolicy] = 4,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | Iterable[int] | None = None,
    tokenizer=None,
    drafter: Drafter | None = None,
    min_draft_confidence: float = 0.0,
    on_step: StepCallback | None = None,
) -> GenerationResult:
    """Lossless speculative decoding: greedy output equals the target's greedy output, sampled
    output keeps the target's distribution.

    ``draft`` is a causal LM sharing the target's vocabulary, or None when ``drafter`` (e.g.
    :class:`~specdec.drafters.PromptLookupDrafter`) proposes tokens. ``num_draft_tokens`` is N,
    or ``"auto"`` to choose N each step from measured costs and running acceptance
    (:mod:`specdec.autotune`), or a callable ``policy(stats) -> N`` (0 = a plain target step),
    e.g. an :class:`~specdec.autotune.AutoPolicy` built with fixed costs. ``on_step`` receives
    each step's accepted drafts and the target's own token, for streaming.
    """
    validate_request(target, input_ids, max_new_tokens)
    params = SamplingParams(temperature, top_k, top_p)
    if drafter is None:
        if draft is None:
            raise ValueError("speculative_generate needs a draft model or a drafter")
        drafter = ModelDrafter(draft, min_confidence=min_draft_confidence)
    vocab = (pair_vocab_size(target, draft, len(tokenizer) if tokenizer is not None else None)
             if draft is not None else logits_width(target))
    policy = _n_policy(num_draft_tokens, target, draft, input_ids)
    device = input_ids.device
    gen = _generator(seed, generator, device)
    eos = _eos_set(eos_token_id)
    stats = GenerationStats()
    prompt_len = input_ids.shape[1]
    seq = input_ids.new_empty(1, prompt_len + max_new_tokens)  # committed tokens live here
    seq[:, :prompt_len] = input_ids

    t0 = time.perf_counter()
    cache = DynamicCache(config=target.config)
    logits = target(input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    seq[0, prompt_len] = _choose(logits[0, -1, :vocab], params, gen)
    drafter.start(input_ids, params, vocab, gen)
    pos, stats.target_forwards = prompt_len + 1, 1  # committed length; cache holds pos - 1
    _sync(device)
    t1 = time.perf_counter()
    done = bool(eos) and int(seq[0, prompt_len]) in eos
    if on_step is not None:
        on_step([], int(seq[0, prompt_len]))

    while not done and pos < prompt_len + max_new_tokens:
        # 1. Draft: at most one token fewer than the budget left, since the target adds one.
        n = min(policy(stats), prompt_len + max_new_tokens - pos - 1)
        proposal = drafter.propose(seq[:, :pos], n) if n > 0 else Draft(seq.new_empty(0))
        k = len(proposal)
        # 2. Verify: one target pass over [last committed, d1 .. dk].
        block = torch.cat([seq[:, pos - 1: pos], proposal.tokens.view(1, k)], dim=1)
        logits = target(block, past_key_values=cache, use_cache=True).logits[0, :, :vocab]
        # 3. Accept: the kept drafts plus the target's correction or bonus token.
        if k == 0:
            n_acc, next_token = 0, int(_choose(logits[0], params, gen))
        elif params.greedy:
            n_acc, next_token = greedy_accept(proposal.tokens, logits.argmax(-1))
        else:
            n_acc, next_token = rejection_accept(
                proposal.tokens, proposal.q, probs_from_logits(logits, params), gen)
        new = proposal.tokens[:n_acc].tolist() + [next_token]
        if eos:
            stop_at = next((i for i, t in enumerate(new) if t in eos), None)
            if stop_at is not None:
                new, done = new[: stop_at + 1], True
        seq[0, pos: pos + len(new)] = torch.tensor(new, dtype=seq.dtype)
        pos += len(new)
        # 4. Crop both caches back to the committed length - 1 (the rule in specdec.cache).
        crop_to(cache, pos - 1)
        drafter.commit(pos)
        # 5. Record.
        stats.target_forwards += 1
        stats.drafted += k
        stats.accepted += n_acc
        stats.drafted_per_step.append(k)
        stats.accepted_per_step.append(n_acc)
        if on_step is not None:
            on_step(new[:n_acc], new[n_acc] if len(new) > n_acc else None)

    _sync(device)
    stats.prefill_s, stats.decode_s = t1 - t0, time.perf_counter() - t1
    stats.draft_forwards = drafter.forwards
    stats.draft_early_stops = getattr(drafter, "early_stops", 0)
    return _finish(seq[0, prompt_len:pos].tolist(), stats, tokenizer)


def _n_policy(num_draft_tokens, target, draft, input_ids) -> NPolicy:
    if num_draft_tokens == "auto":
        from .autotune import auto_policy  # measured costs and running acceptance

        return auto_policy(target, draft, input_ids)
    if callable(num_draft_tokens):
        return num_draft_tokens
    if isinstance(num_draft_tokens, bool) or not isinstance(num_draft_tokens, int):
        raise ValueError(f"num_draft_tokens must be an integer >= 1 or 'auto', got {num_draft_tokens!r}")
    if num_draft_tokens < 1:
        raise ValueError(f"num_draft_tokens (N) must be >= 1, got {num_draft_tokens}")
    return _fixed_n(num_draft_tokens)
