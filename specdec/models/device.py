"""The one device and dtype rule.

``auto`` dtype: bfloat16 where the hardware computes it natively (a CUDA device that supports
it, a CPU with AVX-512-BF16 or AMX), else float16 on CUDA and float32 on CPU. On a CPU without
native bf16 an (N+1)-token verify costs ~3× a one-token pass in (emulated) bf16 against ~1.7×
in fp32 (~1.3× with pre-packed weights, :mod:`.packed`), so speculation can only pay in fp32 there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..hardware import cpu_has_native_bf16

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``) or ``auto`` (cuda when available) as a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name == "cuda" or name.startswith("cuda:"):
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; use cpu, cuda or auto")


def _cuda_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def auto_dtype_name(device_type: str, native_bf16: Callable[[], bool] | None = None) -> str:
    """The dtype ``auto`` means on ``device_type`` (``cpu`` or ``cuda``); ``native_bf16`` answers
    whether that device computes bf16 in hardware (default: ask the CPU or the CUDA device)."""
    if native_bf16 is None:
        native_bf16 = _cuda_bf16 if device_type == "cuda" else cpu_has_native_bf16
    if native_bf16():
        return "bfloat16"
    return "float16" if device_type == "cuda" else "float32"


def dtype_name(name: str, device: str | torch.device = "cpu") -> str:
    """A dtype name with ``auto`` resolved for ``device``; ValueError for an unknown name."""
    if name == "auto":
        return auto_dtype_name(torch.device(device).type)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use {', '.join(DTYPES)} or auto")
    return name


def resolve_dtype(name: str, device: str | torch.device = "cpu") -> torch.dtype:
    """``float32``/``bfloat16``/``float16``, or ``auto`` (see the module docstring), as a torch dtype."""
    return DTYPES[dtype_name(name, device)]
