"""The memory floor of one decode step: the time to stream the model's weights once from memory.

A one-token decode of a small model reads every weight once and does little arithmetic per
byte, so no implementation can beat the time the machine takes to read that many bytes. Measured
on the spot, in the same run, with buffers of the weights' size: a read (a sum: every byte read
once) and a copy (read + write, the figure usually quoted). The floor is the read.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import torch

from ..engine.timing import timed


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each storage counted once (tied weights once)."""
    seen, total = set(), 0
    for t in (*model.parameters(), *model.buffers()):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


@dataclass
class MemoryFloor:
    """Weight bytes and the medians of reading and of copying that many bytes (seconds)."""

    weight_bytes: int
    read_s: float
    copy_s: float

    @property
    def floor_s(self) -> float:
        return self.read_s

    def to_json(self) -> dict:
        gb = self.weight_bytes / 1e9
        return {**asdict(self), "floor_ms": self.floor_s * 1e3, "read_GB_per_s": gb / self.read_s,
                "copy_GB_per_s": 2 * gb / self.copy_s}


@torch.inference_mode()
def measure_memory_floor(model: torch.nn.Module, repeats: int = 9, warmup: int = 2) -> MemoryFloor:
    """Time a read and a copy of a weight-sized buffer on the model's device, interleaved."""
    nbytes = weight_bytes(model)
    device = next(model.parameters()).device
    src = torch.ones(max(1, nbytes // 4), dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    reads, copies = [], []
    for i in range(warmup + repeats):
        _, r = timed(lambda: src.sum(), device)
        _, c = timed(lambda: dst.copy_(src), device)
        if i >= warmup:
            reads.append(r)
            copies.append(c)
    return MemoryFloor(nbytes, statistics.median(reads), statistics.median(copies))
