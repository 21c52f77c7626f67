"""What a run ran on: versions, commit, CPU model and flags, threads, dtype and configuration."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from ..hardware import cpu_flags, cpu_has_native_bf16, cpu_name, isa_limits, simd_summary
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


def provenance(cfg: StudyConfig) -> dict:
    """Versions, hardware and configuration of this run."""
    import torch
    import transformers

    from .. import __version__

    gpu = torch.cuda.get_device_name(0) if cfg.device.startswith("cuda") and torch.cuda.is_available() else None
    flags = cpu_flags()
    return {
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "specdec": __version__},
        "git_commit": git_commit(), "cpu": cpu_name(), "cpu_flags": simd_summary(flags), "isa_limits": isa_limits(), "gpu": gpu,
        "cpu_native_bf16": cpu_has_native_bf16(flags), "threads": torch.get_num_threads(),
        "dtype": cfg.dtype, "device": cfg.device, "config": cfg.fingerprint(),
        "grids": {"prompt_lengths": list(cfg.prompt_lengths), "max_tokens": list(cfg.max_tokens),
                  "n": list(cfg.ns)},
        "started": now(),
    }
