"""Inference precision (``--precision`` of translate, evaluate and synthesize; ``precision=`` of the Python API):
the one place that decides the autocast dtype and the memory layout the inference networks run in.

Importing this module does not import torch: the command line builds its parsers from :data:`PRECISIONS`.
"""

from __future__ import annotations

from .errors import UserError

#: the values of ``--precision`` and of the API's ``precision=``
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
PRECISION_HELP = ("inference precision: fp32 (default), bf16 or fp16 autocast, or auto: bf16 where the device "
                  "computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), else fp32")


def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN then runs bf16 convolutions at about twice the fp32 rate; without them bf16 is
    emulated and no faster than fp32."""
    import torch

    if "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper():
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device) -> bool:
    """Whether the torch ``device`` computes bf16 natively (what ``auto`` picks bf16 for)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_native_bf16()


def resolve_precision(name: str, device) -> str:
    """'fp32', 'bf16', 'fp16' as given; 'auto' -> 'bf16' where :func:`native_bf16`, else 'fp32'."""
    if name not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def inference_autocast(device, precision: str):
    """The autocast region the inference networks run under: convolutions and matmuls in ``precision``;
    normalization statistics stay float32 (torch's autocast policy, and the feature normalizer promotes its
    input). fp32 is a disabled region, so fp32 results are exactly those without autocast."""
    import torch

    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def use_channels_last(device, precision: str) -> bool:
    """channels_last (NHWC) only where it is faster: on CUDA in bf16/fp16 (tensor-core convolutions read NHWC).
    On CPU benchmarks/bench_translate.py measured it slower than NCHW for these networks (docs/benchmarks.md)."""
    return device.type == "cuda" and precision in ("bf16", "fp16")
