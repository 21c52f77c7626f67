"""Named model pairs and the bundled draft; the weights behind preset names live in :mod:`.assets`."""

from __future__ import annotations

from pathlib import Path

DRAFT_PRESET = "smollm2-draft"
DRAFT_TOKENIZER_PRESET = "smollm2-135m-instruct"
PAIRS: dict[str, tuple[str, str]] = {
    "default": ("smollm2-135m-instruct", DRAFT_PRESET),
    "smollm2": ("smollm2-135m-instruct", DRAFT_PRESET),
    "qwen-coder": ("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"),
    "llama-3.2": ("unsloth/Llama-3.2-3B-Instruct", "unsloth/Llama-3.2-1B-Instruct"),
}


def draft_dir() -> Path:
    """Directory of the bundled SmolLM2 draft weights."""
    return Path(__file__).resolve().parent.parent / "weights" / DRAFT_PRESET


def resolve_pair(target_spec: str, draft_spec: str | None = None) -> tuple[str, str]:
    """``(target, draft)`` specs; a lone ``target_spec`` naming a pair preset expands to it."""
    if draft_spec is not None:
        return target_spec, draft_spec
    if target_spec not in PAIRS:
        raise ValueError(f"unknown pair {target_spec!r}; known: {', '.join(PAIRS)} (or give a draft)")
    return PAIRS[target_spec]
