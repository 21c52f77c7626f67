"""Loading target/draft causal LMs: presets, local GGUF files, local directories and hub ids."""

from __future__ import annotations

import copy
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from specdec.assets import ASSETS, AssetSpec, default_cache_dir, fetch_asset
from specdec.subvocab import load_causal_lm, logits_width

DRAFT_PRESET = "smollm2-draft"
DRAFT_TOKENIZER_PRESET = "smollm2-135m-instruct"
PAIRS: dict[str, tuple[str, str]] = {
    "default": ("smollm2-135m-instruct", DRAFT_PRESET),
    "smollm2": ("smollm2-135m-instruct", DRAFT_PRESET),
    "qwen-coder": ("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"),
    "llama-3.2": ("unsloth/Llama-3.2-3B-Instruct", "unsloth/Llama-3.2-1B-Instruct"),
}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_HUB_PROBE_TIMEOUT_S = 3.0


class ModelLoadError(ValueError):
    """A model spec could not be resolved or loaded; the message is one line."""


@dataclass
class LoadedModel:
    """A model in eval mode with its tokenizer, a display name and where it came from."""

    model: Any
    tokenizer: Any
    name: str
    source: str


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``) or ``auto`` (cuda when available) as a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name == "cuda" or name.startswith("cuda:"):
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; use cpu, cuda or auto")


def resolve_dtype(name: str, device: Union[str, torch.device] = "cpu") -> torch.dtype:
    """``float32``/``bfloat16``/``float16``, or ``auto``: bfloat16 on cpu, float16 on cuda."""
    if name == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use {', '.join(_DTYPES)} or auto")
    return _DTYPES[name]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _finish(model: Any, device: torch.device) -> Any:
    """Move to ``device`` and switch to eval mode."""
    return model.to(device).eval()


def _auto_model(source: str, dtype: torch.dtype, **kwargs: Any) -> Any:
    return load_causal_lm(source, dtype, **kwargs)


def _auto_tokenizer(source: str, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, **kwargs)


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / f).is_file() for f in _TOKENIZER_FILES)


def load_directory(path: Path, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any]:
    """Model and tokenizer (None when the directory ships none) from a local transformers dir."""
    model = _auto_model(str(path), dtype, local_files_only=True)
    tokenizer = _auto_tokenizer(str(path), local_files_only=True) if _has_tokenizer(path) else None
    return _finish(model, device), tokenizer


def load_gguf(path: Path, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any]:
    """Model and tokenizer from a local ``.gguf`` file, always de-quantized to a dense model."""
    from transformers import GgufConfig

    kwargs = {"gguf_file": path.name, "local_files_only": True}
    dense = GgufConfig(gguf_file=path.name, dequantize=True)
    model = _auto_model(str(path.parent), dtype, quantization_config=dense, **kwargs)
    tokenizer = _auto_tokenizer(str(path.parent), **kwargs)
    return _finish(model, device), tokenizer


def _converted_dir(spec: AssetSpec, dtype: torch.dtype, cache_dir: Optional[Path]) -> Path:
    """Where the de-quantized safetensors copy of a preset lives (keyed by sha256 and dtype)."""
    key = f"{spec.name}-{spec.sha256[:12]}-{_dtype_name(dtype)}"
    return default_cache_dir(cache_dir) / "converted" / key


def _save_converted(model: Any, tokenizer: Any, target: Path) -> None:
    """Best-effort atomic save of a de-quantized copy; failures only cost speed later."""
    from safetensors.torch import save_model

    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are already de-quantized
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        print(f"specdec: could not cache converted weights at {target}: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_asset_preset(name: str, dtype: torch.dtype, device: torch.device, cache_dir) -> tuple[Any, Any, str]:
    """Load a registry preset, from its converted copy when one is cached."""
    spec = ASSETS[name]
    converted = _converted_dir(spec, dtype, cache_dir)
    if (converted / "config.json").is_file():
        model, tokenizer = load_directory(converted, dtype, device)
        return model, tokenizer, str(converted)
    gguf = fetch_asset(spec, cache_dir=cache_dir)
    model, tokenizer = load_gguf(gguf, dtype, device)
    _save_converted(model, tokenizer, converted)
    if (converted / "config.json").is_file():  # same code path as every later load
        del model
        model, tokenizer = load_directory(converted, dtype, device)
    return model, tokenizer, str(gguf)


def draft_dir() -> Path:
    """Directory of the bundled SmolLM2 draft weights."""
    return Path(__file__).resolve().parent / "weights" / DRAFT_PRESET


def _preset_tokenizer(name: str, cache_dir) -> Any:
    """The tokenizer of a registry preset, from a converted copy if any, else from its GGUF."""
    spec = ASSETS[name]
    for dtype in _DTYPES.values():
        converted = _converted_dir(spec, dtype, cache_dir)
        if _has_tokenizer(converted):
            return _auto_tokenizer(str(converted), local_files_only=True)
    gguf = fetch_asset(spec, cache_dir=cache_dir)
    return _auto_tokenizer(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)


def _load_draft_preset(dtype: torch.dtype, device: torch.device, cache_dir) -> tuple[Any, Any, str]:
    """Load the bundled draft; its tokenizer is the SmolLM2 target's."""
    path = draft_dir()
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise ModelLoadError(
            f"the bundled draft '{DRAFT_PRESET}' is not available: {path} has no config.json and "
            "safetensors weights yet (it has not been trained/bundled); use another draft"
        )
    model = _finish(_auto_model(str(path), dtype, local_files_only=True), device)
    tokenizer = (
        _auto_tokenizer(str(path), local_files_only=True)
        if _has_tokenizer(path)
        else _preset_tokenizer(DRAFT_TOKENIZER_PRESET, cache_dir)
    )
    return model, tokenizer, str(path)


def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Quick probe of the model hub endpoint; False when offline mode is set or it fails."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def _hub_error(repo_id: str) -> ModelLoadError:
    presets = ", ".join([*ASSETS, DRAFT_PRESET])
    return ModelLoadError(
        f"cannot load {repo_id!r}: the model hub is unreachable from this machine and it is not in "
        f"the local HF cache; use an offline preset ({presets}) or a local directory/.gguf"
    )


def _load_hub(repo_id: str, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any, str]:
    """Load a hub id from the local HF cache, or from the hub after a quick reachability probe."""
    try:
        model = _auto_model(repo_id, dtype, local_files_only=True)
        tokenizer = _auto_tokenizer(repo_id, local_files_only=True)
        return _finish(model, device), tokenizer, f"hf-cache:{repo_id}"
    except OSError:
        pass
    if not hub_reachable():
        raise _hub_error(repo_id)
    try:
        model = _auto_model(repo_id, dtype)
        tokenizer = _auto_tokenizer(repo_id)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load {repo_id!r} from the model hub: {first}") from exc
    return _finish(model, device), tokenizer, f"hub:{repo_id}"


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.endswith(".gguf")


def _load_local_path(spec: str, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any, str]:
    """Load a local ``.gguf`` file or transformers directory."""
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        model, tokenizer = load_gguf(path.resolve(), dtype, device)
        return model, tokenizer, str(path.resolve())
    if path.is_dir() and (path / "config.json").is_file():
        model, tokenizer = load_directory(path, dtype, device)
        return model, tokenizer, str(path.resolve())
    if path.exists():
        raise ModelLoadError(f"cannot load {spec!r}: not a .gguf file nor a directory with config.json")
    raise ModelLoadError(f"cannot load {spec!r}: no such file or directory")


def load_model(
    spec: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: Union[str, Path, None] = None,
) -> LoadedModel:
    """Load a preset name, a ``.gguf`` path, a local transformers directory or a hub id."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if spec in ASSETS:
        model, tokenizer, source = _load_asset_preset(spec, torch_dtype, dev, cache_dir)
    elif spec == DRAFT_PRESET:
        model, tokenizer, source = _load_draft_preset(torch_dtype, dev, cache_dir)
    elif Path(spec).expanduser().exists() or _looks_like_path(spec):
        model, tokenizer, source = _load_local_path(spec, torch_dtype, dev)
    else:
        model, tokenizer, source = _load_hub(spec, torch_dtype, dev)
    return LoadedModel(model=model, tokenizer=tokenizer, name=spec, source=source)


def _logit_rows(loaded: LoadedModel) -> int:
    """The width of the logits the model returns."""
    return logits_width(loaded.model)


def _first_vocab_difference(target: LoadedModel, draft: LoadedModel) -> Optional[str]:
    """A short description of the first id whose token differs, or None when identical."""
    t_vocab, d_vocab = target.tokenizer.get_vocab(), draft.tokenizer.get_vocab()
    if t_vocab == d_vocab:
        return None
    t_ids = {i: tok for tok, i in t_vocab.items()}
    d_ids = {i: tok for tok, i in d_vocab.items()}
    for i in sorted(set(t_ids) | set(d_ids)):
        if t_ids.get(i) != d_ids.get(i):
            return f"id {i} is {t_ids.get(i)!r} vs {d_ids.get(i)!r}"
    return "token-to-id maps differ"


def shared_vocab_size(target: LoadedModel, draft: LoadedModel) -> int:
    """The real vocabulary both models share (ids >= it are padding to mask); ValueError if none."""
    rows_t, rows_d = _logit_rows(target), _logit_rows(draft)
    names = f"{target.name!r} (logits {rows_t}) and draft {draft.name!r} (logits {rows_d})"
    if target.tokenizer is None or draft.tokenizer is None:
        if rows_t != rows_d:
            raise ValueError(f"refusing pair: target {names} differ in vocabulary size and lack a tokenizer to compare")
        return rows_t
    n_t, n_d = len(target.tokenizer), len(draft.tokenizer)
    if n_t != n_d:
        raise ValueError(f"refusing pair: target {names} have tokenizers of {n_t} vs {n_d} tokens; no shared vocabulary")
    if rows_t < n_t or rows_d < n_d:
        raise ValueError(f"refusing pair: target {names} have fewer logits than the {n_t} tokenizer tokens")
    diff = _first_vocab_difference(target, draft)
    if diff is not None:
        raise ValueError(f"refusing pair: target {names} have different tokenizers ({diff})")
    return n_t


def resolve_pair(target_spec: str, draft_spec: Optional[str] = None) -> tuple[str, str]:
    """``(target, draft)`` specs; a lone ``target_spec`` naming a pair preset expands to it."""
    if draft_spec is not None:
        return target_spec, draft_spec
    if target_spec not in PAIRS:
        raise ValueError(f"unknown pair {target_spec!r}; known: {', '.join(PAIRS)} (or give a draft)")
    return PAIRS[target_spec]


def load_pair(
    target_spec: str,
    draft_spec: Optional[str] = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: Union[str, Path, None] = None,
) -> tuple[LoadedModel, LoadedModel]:
    """Load target and draft and refuse them unless they share a vocabulary."""
    target_spec, draft_spec = resolve_pair(target_spec, draft_spec)
    target = load_model(target_spec, device=device, dtype=dtype, cache_dir=cache_dir)
    draft = load_model(draft_spec, device=device, dtype=dtype, cache_dir=cache_dir)
    shared_vocab_size(target, draft)
    return target, draft
