"""What the CPU is and what it can do, read from ``/proc/cpuinfo`` (no torch import)."""

from __future__ import annotations

import platform
from pathlib import Path

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    return frozenset(f for line in text.splitlines() if line.startswith("flags")
                     for f in line.split(":", 1)[-1].split())


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 in hardware (AVX-512-BF16 or AMX-BF16), not by emulation."""
    return bool((cpu_flags() if flags is None else flags) & NATIVE_BF16_FLAGS)


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU model name from /proc/cpuinfo, or what platform reports."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def simd_summary(flags: frozenset[str] | None = None) -> str:
    """The flags that decide matrix-kernel speed here, e.g. ``avx2 avx512f avx512_bf16``."""
    flags = cpu_flags() if flags is None else flags
    keep = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    return " ".join(f for f in keep if f in flags) or "none of avx2/avx512/amx"
