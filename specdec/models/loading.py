"""Loading target/draft causal LMs: presets, local GGUF files, local directories and hub ids."""

from __future__ import annotations

import logging
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..engine.vocab import shared_vocab_size
from .assets import ASSETS, fetch_asset
from .converted import converted_dir, is_verified, write_converted
from .device import DTYPES, resolve_device, resolve_dtype
from .feature_head import FeatureHead, load_feature_head
from .presets import DRAFT_PRESET, DRAFT_TOKENIZER_PRESET, HEAD_PRESETS, draft_dir, resolve_pair, weights_dir
from .subvocab import load_causal_lm

log = logging.getLogger(__name__)
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


def _load_asset_preset(name: str, dtype: torch.dtype, device: torch.device, cache_dir) -> tuple[Any, Any, str]:
    """Load a registry preset from its converted copy when that copy verifies, else from the
    verified GGUF (re-fetched if needed), writing a fresh converted copy."""
    spec = ASSETS[name]
    converted = converted_dir(spec, dtype, cache_dir)
    if is_verified(converted):
        model, tokenizer = load_directory(converted, dtype, device)
        return model, tokenizer, str(converted)
    if converted.exists():
        log.warning("specdec: the converted copy %s does not match the size and checksum recorded when it "
                    "was written; rebuilding it from the verified GGUF", converted)
        shutil.rmtree(converted, ignore_errors=True)
    gguf = fetch_asset(spec, cache_dir=cache_dir)
    model, tokenizer = load_gguf(gguf, dtype, device)
    write_converted(model, tokenizer, converted)
    if is_verified(converted):  # same code path as every later load
        del model
        model, tokenizer = load_directory(converted, dtype, device)
    return model, tokenizer, str(gguf)


def _preset_tokenizer(name: str, cache_dir) -> Any:
    """The tokenizer of a registry preset, from a converted copy if any, else from its GGUF."""
    spec = ASSETS[name]
    for dtype in DTYPES.values():
        converted = converted_dir(spec, dtype, cache_dir)
        if is_verified(converted) and _has_tokenizer(converted):
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
    cache_dir: str | Path | None = None,
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


def load_pair(
    target_spec: str,
    draft_spec: str | None = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: str | Path | None = None,
) -> tuple[LoadedModel, LoadedModel]:
    """Load target and draft and refuse them unless they share a vocabulary."""
    target_spec, draft_spec = resolve_pair(target_spec, draft_spec)
    target = load_model(target_spec, device=device, dtype=dtype, cache_dir=cache_dir)
    draft = load_model(draft_spec, device=device, dtype=dtype, cache_dir=cache_dir)
    check_pair(target, draft)
    return target, draft


def check_pair(target: LoadedModel, draft: LoadedModel) -> int:
    """The vocabulary the loaded pair shares (:mod:`specdec.engine.vocab`), naming both in any refusal."""
    try:
        return shared_vocab_size(target.model, draft.model, target.tokenizer, draft.tokenizer)
    except ValueError as exc:
        raise ValueError(f"target {target.name!r} and draft {draft.name!r}: {exc}") from None


def load_head(spec: str, target: LoadedModel) -> LoadedModel:
    """A feature head (bundled name or directory) attached to ``target``; ValueError (one line) when
    it is missing or was made for another target."""
    path = weights_dir(spec) if spec in HEAD_PRESETS.values() else Path(spec).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"cannot load feature head {spec!r}: no such directory")
    head: FeatureHead = load_feature_head(path, target.model)
    return LoadedModel(model=head, tokenizer=target.tokenizer, name=spec, source=str(path.resolve()))
