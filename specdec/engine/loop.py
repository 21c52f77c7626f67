"""Plain autoregressive decoding (the baseline) and speculative decoding, one result type.

The speculative loop is one screen: draft, verify in one target pass, accept, roll back the
caches (the rules in :mod:`specdec.engine.cache`), record; eager or compiled (:mod:`.forward`).
Counters and rates: :mod:`.stats`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from transformers import PreTrainedModel

from ..auto.autotune import AutoPolicy, auto_policy
from .drafters import Draft, Drafter, ModelDrafter
from .forward import Compiler, Forward, compiled_attention, resolve_compiler
from .sampling import SamplingParams, greedy_token, probs_from_logits, sample
from .stats import GenerationResult, GenerationStats
from .timing import sync
from .tree import contiguous_prefix, greedy_tree_accept, reached, sampled_tree_accept, tree_inputs
from .verify import greedy_accept, rejection_accept
from .vocab import shared_vocab_size

# (accepted draft tokens, the target's own token or None when EOS cut the step short)
StepCallback = Callable[[list[int], "int | None"], None]
NPolicy = Callable[["GenerationStats"], int]


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


def _choose(logits: torch.Tensor, params: SamplingParams, generator) -> torch.Tensor:
    if params.greedy:
        return greedy_token(logits)
    return sample(probs_from_logits(logits, params), generator)


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
    compile: bool | Compiler = False,
) -> GenerationResult:
    """One target forward per token with a KV cache; greedy output equals ``model.generate``.

    ``compile``: a static cache and compiled one-token forward (:mod:`specdec.engine.forward`),
    like ``model.generate`` with ``cache_implementation="static"`` and a compiled forward.
    """
    validate_request(model, input_ids, max_new_tokens)
    compiler = resolve_compiler(compile)
    params = SamplingParams(temperature, top_k, top_p)
    device = input_ids.device
    gen = _generator(seed, generator, device)
    eos = _eos_set(eos_token_id)
    with compiled_attention(compiler, model):
        stats = GenerationStats()
        t0 = time.perf_counter()
        forward = Forward.for_lm(model, compiler, input_ids.shape[1] + max_new_tokens)
        logits = forward(input_ids, logits_to_keep=1).logits[:, -1]
        token = _choose(logits, params, gen)
        sync(device)
        t1 = time.perf_counter()
        out = [token]
        stopped = bool(eos) and int(token) in eos
        for _ in range(max_new_tokens - 1):
            if stopped:
                break
            logits = forward(token.view(1, 1)).logits[:, -1]
            token = _choose(logits, params, gen)
            out.append(token)
            stopped = bool(eos) and int(token) in eos
        tokens = torch.cat(out).tolist()
        sync(device)
        stats.prefill_s, stats.decode_s = t1 - t0, time.perf_counter() - t1
        stats.target_forwards = len(tokens)
    return GenerationResult.finish(tokens, stats, tokenizer)


def _fixed_n(n: int) -> NPolicy:
    return lambda stats: n


@torch.inference_mode()
def speculative_generate(
    target: PreTrainedModel,
    draft: PreTrainedModel | None,
    input_ids: torch.Tensor,
    num_draft_tokens: int | str | NPolicy = 4,
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
    compile: bool | Compiler = False,
) -> GenerationResult:
    """Lossless speculative decoding: greedy output equals the target's greedy output, sampled
    output keeps the target's distribution.

    ``draft`` is a causal LM sharing the target's vocabulary, or None when ``drafter`` (e.g.
    :class:`~specdec.engine.drafters.PromptLookupDrafter`, or a
    :class:`~specdec.engine.drafters.FeatureHeadDrafter` reading the target's hidden states) proposes.
    ``num_draft_tokens`` is N (a token tree's levels), or ``"auto"`` to choose N each step from measured
    costs and running acceptance (:mod:`specdec.auto.autotune`), or a callable ``policy(stats) -> N``
    (0 = a plain target step), e.g. an :class:`~specdec.auto.autotune.AutoPolicy` built with fixed costs.
    ``on_step`` receives each step's accepted drafts and the target's own token, for streaming. ``compile``: static
    caches and compiled forwards for the target and the drafter (:mod:`specdec.engine.forward`).
    """
    validate_request(target, input_ids, max_new_tokens)
    compiler = resolve_compiler(compile)
    params = SamplingParams(temperature, top_k, top_p)
    if drafter is None:
        if draft is None:
            raise ValueError("speculative_generate needs a draft model or a drafter")
        drafter = ModelDrafter(draft, min_confidence=min_draft_confidence)
    vocab = shared_vocab_size(target, drafter.model, tokenizer)
    policy = _n_policy(num_draft_tokens, target, drafter.model, input_ids, compiler, drafter.tree_width,
                        drafter.tree_nodes, drafter.priced, drafter.extra_rows)
    grows = isinstance(policy, AutoPolicy) and policy.grows  # each drafting step offers every level, sized by price
    if grows and not drafter.priced:
        raise ValueError(f"this policy leaves each draft's size to the drafter, which {type(drafter).__name__} cannot do")
    # a drafter that sizes its drafts, or grafts a branch, is priced at auto N's costs
    price = policy.tree_price() if isinstance(policy, AutoPolicy) and (grows or drafter.extra_rows) else None
    features = drafter.wants_hidden_states  # the target's hidden states go to the drafter
    device = input_ids.device
    gen = _generator(seed, generator, device)
    eos = _eos_set(eos_token_id)
    stats = GenerationStats()
    prompt_len = input_ids.shape[1]
    seq = input_ids.new_empty(1, prompt_len + max_new_tokens)  # committed tokens live here
    seq[:, :prompt_len] = input_ids

    with compiled_attention(compiler, target, drafter.model):
        t0 = time.perf_counter()
        forward = Forward.for_lm(target, compiler, prompt_len + max_new_tokens)
        out = forward(input_ids, logits_to_keep=1, output_hidden_states=features)
        seq[0, prompt_len] = _choose(out.logits[0, -1, :vocab], params, gen)
        pos, stats.target_forwards = prompt_len + 1, 1  # committed length; cache holds pos - 1
        drafter.start(input_ids, params, vocab, gen, compiler, prompt_len + max_new_tokens, price)
        drafter.commit(pos, out.hidden_states, 0)
        sync(device)
        t1 = time.perf_counter()
        done = bool(eos) and int(seq[0, prompt_len]) in eos
        if on_step is not None:
            on_step([], int(seq[0, prompt_len]))

        while not done and pos < prompt_len + max_new_tokens:
            # 1. Draft: at most one token fewer than the budget left, since the target adds one.
            n = min(policy(stats), prompt_len + max_new_tokens - pos - 1)
            proposal = drafter.propose(seq[:, :pos], n) if n > 0 or drafter.extra_rows else Draft(seq.new_empty(0))
            k, tree = len(proposal), proposal.parents is not None
            # 2. Verify: one target pass over [committed tokens not cached yet (the last one at least),
            #    d1 .. dk]; a tree's nodes see only their ancestors (specdec.engine.tree).
            block_start, prefix = forward.length, pos - forward.length
            block = torch.cat([seq[:, block_start: pos], proposal.tokens.view(1, k)], dim=1)
            mask, positions = tree_inputs(proposal.parents, block_start, prefix, target.dtype) if tree else (None, None)
            out = forward(block, output_hidden_states=features, attention_mask=mask, position_ids=positions)
            logits = out.logits[0, prefix - 1:, :vocab]  # from the last committed token on
            # 3. Accept: the kept drafts plus the target's correction or bonus token.
            if k == 0:
                path, next_token = [], int(_choose(logits[0], params, gen))
            elif tree:
                path, next_token = (greedy_tree_accept(proposal.tokens, proposal.parents, greedy_token(logits)) if params.greedy
                                    else sampled_tree_accept(proposal.tokens, proposal.parents,
                                                             probs_from_logits(logits, params), gen, proposal.q))
            else:
                n_acc, next_token = (greedy_accept(proposal.tokens, greedy_token(logits)) if params.greedy else
                                     rejection_accept(proposal.tokens, proposal.q, probs_from_logits(logits, params), gen))
                path = list(range(n_acc))
            new = proposal.tokens[path].tolist() + [next_token]
            if eos:
                stop_at = next((i for i, t in enumerate(new) if t in eos), None)
                if stop_at is not None:
                    new, done = new[: stop_at + 1], True
            seq[0, pos: pos + len(new)] = torch.tensor(new, dtype=seq.dtype)
            pos, n_acc = pos + len(new), len(path)
            # 4. Roll both caches back (the rules in specdec.engine.cache): the target keeps the block's
            #    rows up to the last committed token, less a tree's off-front path (fed again next step);
            #    the drafter gets the committed rows' hidden states.
            forward.rollback(min(pos - 1, block_start + prefix + contiguous_prefix(path)))
            hidden = out.hidden_states
            if tree and hidden is not None:
                rows = torch.tensor(list(range(prefix)) + [prefix + i for i in path], device=device)
                hidden = tuple(h[:, rows] for h in hidden)
            drafter.commit(pos, hidden, block_start)
            # 5. Record (a tree's drafts count its levels, one per position it reaches; of a draft with a
            #    grafted branch, the drafter's own part: its drafts the target kept are those `new` follows).
            own = proposal if proposal.own is None else proposal.own
            depth, kept = own.levels, n_acc if own is proposal else reached(own.tokens, own.parents, new)
            stats.target_forwards += 1
            stats.drafted += depth
            stats.accepted += kept
            stats.drafted_per_step.append(depth)
            stats.accepted_per_step.append(kept)
            if on_step is not None:
                on_step(new[:n_acc], new[n_acc] if len(new) > n_acc else None)

        sync(device)
        stats.prefill_s, stats.decode_s = t1 - t0, time.perf_counter() - t1
        stats.draft_forwards = drafter.forwards
        stats.draft_early_stops = getattr(drafter, "early_stops", 0)
    return GenerationResult.finish(seq[0, prompt_len:pos].tolist(), stats, tokenizer)


def _n_policy(num_draft_tokens, target, draft, input_ids, compiler: Compiler | None, width: int = 1,
              max_nodes: int | None = None, priced: bool = False, extra_rows: int = 0) -> NPolicy:
    if num_draft_tokens == "auto":
        return auto_policy(target, draft, input_ids, compiler=compiler, width=width, max_nodes=max_nodes,
                           priced=priced, extra_rows=extra_rows)
    if callable(num_draft_tokens):
        return num_draft_tokens
    if isinstance(num_draft_tokens, bool) or not isinstance(num_draft_tokens, int):
        raise ValueError(f"num_draft_tokens must be an integer >= 1 or 'auto', got {num_draft_tokens!r}")
    if num_draft_tokens < 1:
        raise ValueError(f"num_draft_tokens (N) must be >= 1, got {num_draft_tokens}")
    return _fixed_n(num_draft_tokens)
