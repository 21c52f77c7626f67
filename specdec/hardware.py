"""What the CPU is and what it can do: its model and flags (/proc/cpuinfo) and the instruction-set
caps set in the environment (no torch import)."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Environment variables that cap the instruction sets torch's kernels use (ATen's vectorised ops,
# oneDNN, MKL): a run under them measures a lesser CPU than /proc/cpuinfo's flags say.
ISA_LIMIT_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


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


def cpu_has_native_bf16(flags: frozenset[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when the CPU computes bf16 in hardware (AVX-512-BF16 or AMX-BF16), not by emulation, and
    no ``ONEDNN_MAX_CPU_ISA`` cap below those (e.g. ``AVX2``) makes torch's bf16 kernels emulate it."""
    cap = isa_limits(environ).get("ONEDNN_MAX_CPU_ISA", "DEFAULT").upper()
    capped = cap != "DEFAULT" and not any(k in cap for k in ("BF16", "AMX", "AVX10", "FP16"))
    return not capped and bool((cpu_flags() if flags is None else flags) & NATIVE_BF16_FLAGS)


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


def isa_limits(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The instruction-set caps set for this process (empty: the kernels may use every flag)."""
    env = os.environ if environ is None else environ
    return {k: env[k] for k in ISA_LIMIT_VARS if env.get(k)}
