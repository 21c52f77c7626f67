"""What a run ran on: versions, commit, CPU model and flags, threads, dtype and configuration."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from ..hardware import cpu_has_native_bf16, cpu_name, isa_limits, simd_summary
from .config import StudyConfig


def git_commit() -> str | None:
    """The checkout's commit when specdec runs from a git clone, else None."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now() -> str:
    """UTC time in ISO format, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine() -> dict:
    """Where a figure was measured: CPU model, its matrix flags, the instruction-set caps set, torch's
    threads and the versions (the record every benchmark and study run carries)."""
    import torch
    import transformers

    return {"cpu": cpu_name(), "cpu_flags": simd_summary(), "isa_limits": isa_limits(),
            "threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def provenance(cfg: StudyConfig) -> dict:
    """Versions, hardware and configuration of this run."""
    import torch

    from .. import __version__

    gpu = torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") and torch.cuda.is_available() else None
    where = machine()
    versions = {k: where.pop(k) for k in ("python", "torch", "transformers")}
    return {
        "versions": {**versions, "specdec": __version__}, "git_commit": git_commit(), **where, "gpu": gpu,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "dtype": cfg.dtype, "device": cfg.device, "config": cfg.fingerprint(),
        "grids": {"prompt_lengths": list(cfg.prompt_lengths), "max_tokens": list(cfg.max_tokens),
                  "n": list(cfg.ns)},
        "started": now(),
    }
