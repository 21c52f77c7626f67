"""The one timer: wall seconds around a call, with the device synchronised on both sides."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def sync(device: torch.device | str) -> None:
    """Wait for queued device work (CUDA kernels run asynchronously; the CPU needs nothing)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device | str) -> tuple[T, float]:
    """``(fn(), seconds)``: the device is synchronised before the clock starts and before it stops."""
    sync(device)
    t0 = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - t0
