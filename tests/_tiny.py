"""Tiny random model pair with a byte-level tokenizer of 256 tokens, built in code (no downloads)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from specdec.fixtures import FixtureSpec, fixture_pair
from specdec.models import LoadedModel

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


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
