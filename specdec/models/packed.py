"""A target's packed twin: the same weights, its linear layers pre-packed for the verify's row counts.

On CPUs whose matrix library runs a one-row product as a fast matrix-vector kernel but a few-row one
as a general matrix product that re-packs the weight on every call (MKL's fp32 sgemm on AVX2: 2-5
rows cost 2.5-2.8x one row), verifying N + 1 tokens costs far more than one decode step, which is
what speculative decoding must not pay. MKL's packed sgemm packs each weight once for a given row
count. The twin shares every tensor of the model (only the packs are new), keeps a pack only where
it measured faster, and runs every other row count exactly as ``nn.Linear`` does, so plain decoding
through the original model, the baseline, is untouched.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

KEEP_BELOW = 0.95  # a pack is kept when its layers' time is under this fraction of the unpacked time


class PackUnavailable(ValueError):
    """Packed verification cannot run for this model here; the message is one line saying why."""


@dataclass(frozen=True)
class PackChoice:
    """One row count's measured time over every linear layer of the model (ms), packed and not."""

    rows: int
    unpacked_ms: float
    packed_ms: float
    kept: bool

    def to_json(self) -> dict:
        return asdict(self)


def _mkl_ops() -> bool:
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear") \
        and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight")


def _available_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def linear_bytes(model: torch.nn.Module) -> int:
    """Bytes of every ``nn.Linear`` weight in ``model`` (what one pack of each costs, about)."""
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, torch.nn.Linear))


def pack_refusal(model: torch.nn.Module, rows: Iterable[int]) -> str | None:
    """Why ``model`` cannot get packs for ``rows`` here (one line), or None: packs need fp32 weights on
    the CPU, torch built with MKL, and room for the packs in half the free memory."""
    weight = next(model.parameters())
    if weight.device.type != "cpu":
        return f"packed verify packs weights for the CPU's MKL; the model is on {weight.device.type}"
    if weight.dtype != torch.float32:
        dtype = str(weight.dtype).removeprefix("torch.")
        return f"packed verify needs float32 weights (MKL's packed sgemm); the model is {dtype}"
    if not _mkl_ops():
        return "packed verify needs torch built with MKL (x86 CPU wheels are); this torch has no MKL"
    count = len({int(r) for r in rows if int(r) > 1})
    need, free = count * linear_bytes(model), _available_bytes()
    if free is not None and need > free // 2:
        return (f"packed verify: {count} packs of {linear_bytes(model) / 2**30:.1f} GiB need {need / 2**30:.1f} GiB, "
                f"over half the {free / 2**30:.1f} GiB free; verify fewer N")
    return None


def check_packable(model: torch.nn.Module, rows: Iterable[int]) -> None:
    """Raise :class:`PackUnavailable` with :func:`pack_refusal`'s line when ``model`` cannot get packs here."""
    reason = pack_refusal(model, rows)
    if reason is not None:
        raise PackUnavailable(reason)


class PackedLinear(torch.nn.Module):
    """``nn.Linear`` over the same weight, whose inputs of a packed row count run MKL's packed sgemm."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, packs: dict[int, torch.Tensor]):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.packs = packs  # rows -> the weight packed for products of that many rows (not a buffer: never saved)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, rows: Iterable[int]) -> PackedLinear:
        weight = linear.weight.detach()
        return cls(linear.weight, linear.bias, {r: torch.ops.mkl._mkl_reorder_linear_weight(weight, r) for r in rows})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        pack = self.packs.get(rows)
        if pack is None:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, x.shape[-1]).contiguous()  # MKL reads rows packed densely
        out = torch.ops.mkl._mkl_linear(flat, pack, self.weight, self.bias, rows)
        return out.reshape(*x.shape[:-1], out.shape[-1])


def _time_layers(layers: list[torch.nn.Linear | PackedLinear], rows: int, repeats: int) -> float:
    """Median ms of one pass of ``rows``-row inputs through every layer (after one untimed pass)."""
    inputs = [torch.randn(rows, layer.weight.shape[1]) for layer in layers]
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        for layer, x in zip(layers, inputs):
            layer(x)
        if i:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def choose_packs(model: torch.nn.Module, rows: Iterable[int], repeats: int = 5) -> list[PackChoice]:
    """Time every linear layer of ``model`` at each row count, unpacked and packed, interleaved (A B A B);
    a row count keeps its pack when packed takes under ``KEEP_BELOW`` of the unpacked time. One row is
    measured too but never packed: it is the baseline's step, which runs the model itself, so its
    choice shows whether packing would have sped the baseline up as well."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    choices = []
    with torch.no_grad():
        for r in sorted({1, *(int(r) for r in rows)}):
            packed = [PackedLinear.from_linear(m, (r,)) for m in linears]
            plain, fast = [], []
            for _ in range(3):
                plain.append(_time_layers(linears, r, repeats))
                fast.append(_time_layers(packed, r, repeats))
            a, b = statistics.median(plain), statistics.median(fast)
            choices.append(PackChoice(r, round(a, 3), round(b, 3), r > 1 and b < KEEP_BELOW * a))
    return choices


def packed_twin(model: torch.nn.Module, rows: Iterable[int], calibrate: bool = True,
                repeats: int = 5) -> tuple[torch.nn.Module, list[PackChoice]]:
    """A twin of ``model`` sharing all its tensors, whose linear layers run blocks of ``rows`` rows
    through packed weights (only the row counts :func:`choose_packs` measured faster, unless
    ``calibrate`` is False), and the choices. ``model`` itself is not changed."""
    rows = sorted({int(r) for r in rows if int(r) > 1})
    check_packable(model, rows)
    choices = choose_packs(model, rows, repeats) if calibrate else [PackChoice(r, 0.0, 0.0, True) for r in rows]
    kept = [c.rows for c in choices if c.kept and c.rows in rows]
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    twin = copy.deepcopy(model, memo=shared)
    with torch.no_grad():
        for name, module in list(twin.named_modules()):
            if isinstance(module, torch.nn.Linear):
                twin.set_submodule(name, PackedLinear.from_linear(module, kept))
    # a name of its own, so costs measured through the twin (auto N's calibration cache) stay apart from the model's
    config = getattr(twin, "config", None)
    name = getattr(model, "name_or_path", "") or getattr(config, "_name_or_path", "") or type(model).__name__
    twin.name_or_path = f"packed-{'-'.join(map(str, kept)) or 'none'}:{name}"
    if config is not None:
        config._name_or_path = twin.name_or_path
    return twin.eval(), choices
