"""The one dtype rule: auto = bf16 where the hardware computes it natively."""

import pytest
import torch

from specdec.hardware import cpu_flags, cpu_has_native_bf16, cpu_name, isa_limits
from specdec.models.device import auto_dtype_name, dtype_name, resolve_device, resolve_dtype

AMD_AVX2 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
ZEN5 = "model name\t: AMD EPYC 9B45\nflags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n"
SPR = "model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: avx2 avx512f amx_bf16 amx_tile\n"


@pytest.mark.parametrize("info, native", [(AMD_AVX2, False), (ZEN5, True), (SPR, True)])
def test_native_bf16_read_from_cpu_flags(info, native):
    assert cpu_has_native_bf16(cpu_flags(info)) is native


@pytest.mark.parametrize("cap, native", [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True),
                                         ("AVX512_CORE_AMX", True), ("DEFAULT", True), ("", True)])
def test_onednn_cap_below_bf16_means_emulated(cap, native):
    assert cpu_has_native_bf16(cpu_flags(SPR), {"ONEDNN_MAX_CPU_ISA": cap}) is native
    assert cpu_has_native_bf16(cpu_flags(AMD_AVX2), {"ONEDNN_MAX_CPU_ISA": cap}) is False


def test_isa_limits_names_only_the_caps_set():
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "", "PATH": "/bin", "ATEN_CPU_CAPABILITY": "avx2"}
    assert isa_limits(env) == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert isa_limits({}) == {}


def test_cpu_name_from_cpuinfo():
    assert cpu_name(SPR) == "Intel(R) Xeon(R) Platinum 8481C"


@pytest.mark.parametrize("device, native, expected", [
    ("cpu", True, "bfloat16"), ("cpu", False, "float32"),
    ("cuda", True, "bfloat16"), ("cuda", False, "float16"),
])
def test_auto_dtype(device, native, expected):
    assert auto_dtype_name(device, lambda: native) == expected


def test_explicit_dtypes_and_errors():
    assert dtype_name("float16", "cpu") == "float16"
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype("auto", "cpu") is (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
