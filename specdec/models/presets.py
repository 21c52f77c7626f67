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


# Feature heads bundled for a target (specdec.models.feature_head), by the target's preset name.
HEAD_PRESETS: dict[str, str] = {"smollm2-135m-instruct": "smollm2-head"}


def weights_dir(name: str) -> Path:
    """Directory of bundled weights ``name`` (a draft model or a feature head)."""
    return Path(__file__).resolve().parent.parent / "weights" / name


def default_head(target_spec: str) -> str | None:
    """The bundled feature head for a target preset, if one is bundled (and trained)."""
    name = HEAD_PRESETS.get(target_spec)
    return name if name is not None and (weights_dir(name) / "head_config.json").is_file() else None


def draft_dir() -> Path:
    """Directory of the bundled SmolLM2 draft weights."""
    return weights_dir(DRAFT_PRESET)


def resolve_pair(target_spec: str, draft_spec: str | None = None) -> tuple[str, str]:
    """``(target, draft)`` specs; a lone ``target_spec`` naming a pair preset expands to it."""
    if draft_spec is not None:
        return target_spec, draft_spec
    if target_spec not in PAIRS:
        raise ValueError(f"unknown pair {target_spec!r}; known: {', '.join(PAIRS)} (or give a draft)")
    return PAIRS[target_spec]
