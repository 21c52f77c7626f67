"""De-quantized safetensors copies of GGUF presets, checked against what was recorded when written.

Converting a GGUF takes seconds to minutes, so the dense copy is cached. A copy is trusted only
when its ``model.safetensors`` has the size and SHA-256 recorded in ``converted.json`` at write
time; anything else (truncated, edited, from an older version) is rebuilt from the GGUF, whose
own SHA-256 is pinned in the registry.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..files import default_cache_dir
from .assets import AssetSpec, sha256_file

STAMP = "converted.json"
WEIGHTS = "model.safetensors"
log = logging.getLogger(__name__)


def converted_dir(spec: AssetSpec, dtype: torch.dtype, cache_dir: Path | None) -> Path:
    """Where the de-quantized copy of a preset lives (keyed by the GGUF's sha256 and the dtype)."""
    key = f"{spec.name}-{spec.sha256[:12]}-{str(dtype).removeprefix('torch.')}"
    return default_cache_dir(cache_dir) / "converted" / key


def is_verified(directory: Path) -> bool:
    """True when ``directory`` holds a config and weights matching the recorded size and SHA-256."""
    weights, stamp = directory / WEIGHTS, directory / STAMP
    if not ((directory / "config.json").is_file() and weights.is_file() and stamp.is_file()):
        return False
    try:
        recorded = json.loads(stamp.read_text())
        size, digest = int(recorded["size"]), str(recorded["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return weights.stat().st_size == size and sha256_file(weights) == digest


def write_converted(model: Any, tokenizer: Any, directory: Path) -> None:
    """Save a de-quantized copy with its size and SHA-256 stamp, atomically (a temporary directory
    renamed into place); a failure only costs speed later, so it is logged, not raised."""
    from safetensors.torch import save_model

    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.partial")
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are already de-quantized
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(tmp)
        save_model(model, str(tmp / WEIGHTS))
        tokenizer.save_pretrained(tmp)
        stamp = {"size": (tmp / WEIGHTS).stat().st_size, "sha256": sha256_file(tmp / WEIGHTS)}
        (tmp / STAMP).write_text(json.dumps(stamp) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
    except OSError as exc:
        log.warning("specdec: could not cache converted weights at %s: %s", directory, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
