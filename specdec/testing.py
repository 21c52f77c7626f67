"""Tiny models built in code for tests and benchmarks (no downloads).

Tiny random Llama pairs with tunable draft/target agreement, and a byte-level tokenizer.

The target is a random L-layer Llama whose layers 2.. have their attention-output and MLP
down projections scaled by ``eps``; the draft is the target's first two layers with the same
embeddings and head. eps 0 makes the draft agree everywhere, larger eps less often. Scaling
the head makes the argmax decisive, so numerical near-ties are rare.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .models import LoadedModel

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


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
        intermediate_size=spec.hidden_size * 4, num_hidden_layers=layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def random_model(spec: FixtureSpec, layers: int | None = None, seed: int | None = None) -> LlamaForCausalLM:
    """An untouched random Llama of the fixture's shape, in eval mode."""
    torch.manual_seed(spec.seed if seed is None else seed)
    model = LlamaForCausalLM(_config(spec, layers or spec.num_layers))
    return model.eval()


def fixture_pair(spec: FixtureSpec | None = None) -> tuple[LlamaForCausalLM, LlamaForCausalLM]:
    """(target, draft) whose greedy agreement falls as ``spec.eps`` grows (default spec: eps 0.05)."""
    spec = spec or FixtureSpec()
    target = random_model(spec)
    with torch.no_grad():
        for layer in target.model.layers[spec.draft_layers:]:
            layer.self_attn.o_proj.weight.mul_(spec.eps)
            layer.mlp.down_proj.weight.mul_(spec.eps)
        target.lm_head.weight.mul_(spec.head_scale)
    draft = LlamaForCausalLM(_config(spec, spec.draft_layers)).eval()
    missing = draft.load_state_dict(target.state_dict(), strict=False).missing_keys
    if missing:
        raise RuntimeError(f"draft layers missing from the target: {missing}")
    return target, draft


def byte_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    """Every byte is one token (ids 0..255), so any text tokenizes within a 256-entry vocabulary."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_pair(eps: float = 0.05) -> tuple[LoadedModel, LoadedModel]:
    """(target, draft) LoadedModels sharing the byte tokenizer."""
    target, draft = fixture_pair(FixtureSpec(eps=eps))
    tok = byte_tokenizer()
    return (LoadedModel(target, tok, "tiny-target", "memory"), LoadedModel(draft, tok, "tiny-draft", "memory"))


def save_tiny_pair(root: Path, eps: float = 0.05) -> tuple[Path, Path]:
    """Save the tiny pair with tokenizers to ``root/target`` and ``root/draft``."""
    target, draft = tiny_pair(eps)
    paths = root / "target", root / "draft"
    for loaded, path in zip((target, draft), paths):
        loaded.model.save_pretrained(path)
        loaded.tokenizer.save_pretrained(path)
    return paths


@contextmanager
def one_thread():
    """Run torch on one thread: tiny models on a shared, busy CPU are far faster without thread contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def random_head(target: LlamaForCausalLM, seed: int = 0, **kw) -> torch.nn.Module:
    """A randomly initialised "tiny" feature head (:mod:`specdec.models.feature_head`) for ``target``."""
    from .models.feature_head import FeatureHead, FeatureHeadConfig

    torch.manual_seed(seed)
    return FeatureHead(FeatureHeadConfig.for_target(target, "tiny", **kw), target).eval()


def second_token_marginal(target: LlamaForCausalLM, prompt: torch.Tensor) -> torch.Tensor:
    """Exact distribution of the second new token when sampling from ``target`` at temperature 1."""
    with torch.inference_mode():
        p1 = target(prompt).logits[0, -1].softmax(-1)
        vocab = p1.shape[0]
        ext = torch.cat([prompt.expand(vocab, -1), torch.arange(vocab).view(-1, 1)], 1)
        p2 = target(ext).logits[:, -1].softmax(-1)
    return (p1.view(-1, 1) * p2).sum(0)


def chi_square(counts: torch.Tensor, expected_probs: torch.Tensor) -> float:
    """Pearson's χ² of observed ``counts`` against a distribution (``counts.sum()`` draws)."""
    expected = counts.sum() * expected_probs
    return float(((counts - expected) ** 2 / expected).sum())


# 0.1% critical values of χ² by degrees of freedom (a correct sampler fails one test in a thousand)
CHI2_CRITICAL_P001 = {3: 16.27, 9: 27.88, 15: 37.70}
