"""HF assisted generation (``target.generate(assistant_model=draft)``) as a comparable baseline.

Returns the engine's :class:`~specdec.engine.stats.GenerationResult`. HF does not expose drafted
or accepted counts, so ``drafted = accepted = 0``; target and draft forward passes are counted
with forward hooks (removed afterwards), so τ = new tokens / target passes is available. HF's
first target pass covers the prompt and the first drafts together, so its τ counts one pass
fewer than the engine's (whose prefill is a pass of its own).

transformers 5.18 defaults (``GenerationConfig._get_default_generation_params``): N = 20
(``num_assistant_tokens``), schedule ``"constant"``, ``assistant_confidence_threshold`` 0.4
(drafting stops once q's top probability falls below it; adapted per call when sklearn is
installed). The draft's generation config is replaced by a copy for the call and the original
object put back afterwards, so calls are independent (the "heuristic" schedule would otherwise
carry its N across calls).

Timing: the whole ``generate`` call is ``decode_s``; ``prefill_s`` is 0 and ``phases_timed`` False
(not separable).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from transformers import PreTrainedModel

from ..engine.loop import validate_request
from ..engine.stats import GenerationResult, GenerationStats
from ..engine.timing import timed


class _ForwardCounter:
    """Counts a module's forward calls through a forward hook; a context manager removes it."""

    def __init__(self, module: torch.nn.Module | None) -> None:
        self.count = 0
        self._handle = module.register_forward_hook(self._hook) if module is not None else None

    def _hook(self, module, args, output) -> None:
        self.count += 1

    def __enter__(self) -> _ForwardCounter:
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()


def _pinned_config(draft: PreTrainedModel, n: int | None):
    """A copy of q's generation config, pinned to a constant N with no confidence stop when n is set."""
    config = copy.deepcopy(draft.generation_config)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_draft_tokens must be an integer >= 1 or None, got {n!r}")
        config.num_assistant_tokens_schedule = "constant"
        config.num_assistant_tokens = n
        config.assistant_confidence_threshold = 0.0
    return config


def hf_generate_kwargs(target: PreTrainedModel, eos_token_id: int | Iterable[int] | None, temperature: float,
                       top_k: int, top_p: float, seed: int | None) -> dict:
    """``generate`` keyword arguments for our settings: EOS (None: never stop), padding, greedy or
    sampling (torch's global RNG seeded with ``seed``: ``generate`` takes no generator)."""
    eos = [eos_token_id] if isinstance(eos_token_id, int) else (
        None if eos_token_id is None else [int(t) for t in eos_token_id])
    pad = target.generation_config.pad_token_id
    if pad is None:
        pad = eos[0] if eos else 0
    sampling = {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_k": top_k, "top_p": top_p}
        if seed is not None:
            torch.manual_seed(seed)
    return {"eos_token_id": eos, "pad_token_id": pad, **sampling}


def hf_assisted_generate(
    target: PreTrainedModel,
    draft: PreTrainedModel,
    input_ids: torch.Tensor,
    num_draft_tokens: int | None,
    max_new_tokens: int,
    eos_token_id: int | Iterable[int] | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    tokenizer=None,
) -> GenerationResult:
    """HF assisted generation with a fixed N (``num_draft_tokens``) or HF's defaults (None).

    ``eos_token_id=None`` disables EOS stopping (overriding the target's generation config),
    giving exactly ``max_new_tokens`` tokens. Sampling (temperature > 0) uses torch's global
    RNG, seeded with ``seed`` when given: HF's ``generate`` takes no generator.
    """
    validate_request(target, input_ids, max_new_tokens)
    kwargs = hf_generate_kwargs(target, eos_token_id, temperature, top_k, top_p, seed)
    original = draft.generation_config
    draft.generation_config = _pinned_config(draft, num_draft_tokens)
    stats = GenerationStats(phases_timed=False)
    try:
        with _ForwardCounter(target) as p_calls, _ForwardCounter(draft) as q_calls:
            out, stats.decode_s = timed(lambda: target.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), assistant_model=draft,
                max_new_tokens=max_new_tokens, **kwargs), input_ids.device)
    finally:
        draft.generation_config = original
    stats.target_forwards, stats.draft_forwards = p_calls.count, q_calls.count
    return GenerationResult.finish(out[0, input_ids.shape[1]:].tolist(), stats, tokenizer)
