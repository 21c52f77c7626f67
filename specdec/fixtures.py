"""Tiny random Llama pairs built in code, with tunable draft/target agreement (no downloads).

The target is a random L-layer Llama whose layers 2.. have their attention-output and MLP
down projections scaled by ``eps``; the draft is the target's first two layers with the same
embeddings and head. eps 0 makes the draft agree everywhere, larger eps less often. Scaling
the head makes the argmax decisive, so numerical near-ties are rare.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM


@dataclass(frozen=True)
class FixtureSpec:
    """Shape of a fixture pair; the defaults build a fast test-sized pair."""

    vocab_size: int = 256
    hidden_size: int = 64
    num_layers: int = 6
    draft_layers: int = 2
    num_heads: int = 4
    eps: float = 0.05
    head_scale: float = 30.0
    max_position_embeddings: int = 512
    seed: int = 0


def _config(spec: FixtureSpec, layers: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
        intermediate_size=spec.hidden_size * 4 // 1, num_hidden_layers=layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def random_model(spec: FixtureSpec, layers: int | None = None, seed: int | None = None) -> LlamaForCausalLM:
    """An untouched random Llama of the fixture's shape, in eval mode."""
    torch.manual_seed(spec.seed if seed is None else seed)
    model = LlamaForCausalLM(_config(spec, layers or spec.num_layers))
    return model.eval()


def fixture_pair(spec: FixtureSpec = FixtureSpec()) -> tuple[LlamaForCausalLM, LlamaForCausalLM]:
    """(target, draft) whose greedy agreement falls as ``spec.eps`` grows."""
    target = random_model(spec)
    with torch.no_grad():
        for layer in target.model.layers[spec.draft_layers:]:
            layer.self_attn.o_proj.weight.mul_(spec.eps)
            layer.mlp.down_proj.weight.mul_(spec.eps)
        target.lm_head.weight.mul_(spec.head_scale)
    draft = LlamaForCausalLM(_config(spec, spec.draft_layers)).eval()
    missing = draft.load_state_dict(target.state_dict(), strict=False)
    assert not missing.missing_keys, missing.missing_keys
    return target, draft
