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
#: ``--precision`` of the commands that also take ``--optimize`` (translate, evaluate, serve)
PRECISION_HELP_OPTIMIZE = ("inference precision: fp32, bf16 or fp16 autocast, or auto: bf16 where the device "
                           "computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), else fp32; "
                           "not given: fp32, or auto with --optimize")
#: ``--optimize`` (the fast path, deepcascade.inference.fast); here so that the parsers need no torch
OPTIMIZE_HELP = ("compile the translate path (torch.compile: inductor with freezing on CPU, which needs a C++ "
                 "compiler; triton on CUDA) and cache the compiled code in RUN/cache/compiled; the first batch "
                 "waits for the compilation (a minute or more on a CPU, seconds once cached); falls back to eager "
                 "with one warning where compiling is not possible; makes --precision default to auto")


def _cpu_bf16_features() -> list[str]:
    """This CPU's instruction sets that compute bf16 natively: 'AMX', 'AVX512-BF16' (empty: none)."""
    import torch

    found = ["AMX"] if "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper() else []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    if "amx_bf16" in flags and not found:
        found.append("AMX")
    if "avx512_bf16" in flags:
        found.append("AVX512-BF16")
    return found


def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN then runs bf16 convolutions at about twice the fp32 rate; without them bf16 is
    emulated and no faster than fp32."""
    return bool(_cpu_bf16_features())


def native_bf16(device) -> bool:
    """Whether the torch ``device`` computes bf16 natively (what ``auto`` picks bf16 for)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_native_bf16()


def default_precision(name: str | None, optimize: bool = False) -> str:
    """``name`` as given; not given (None): 'auto' with the fast path (``optimize``), else 'fp32'."""
    if name is None:
        return "auto" if optimize else "fp32"
    return name


def resolve_precision(name: str | None, device, optimize: bool = False) -> str:
    """'fp32', 'bf16', 'fp16' as given; 'auto' -> 'bf16' where :func:`native_bf16`, else 'fp32'; None (not given)
    -> :func:`default_precision`."""
    name = default_precision(name, optimize)
    if name not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def precision_reason(name: str | None, device, optimize: bool = False) -> str:
    """Which precision ``name`` resolves to on ``device`` and why, for the log: ``precision bf16 (auto: this CPU
    computes bf16 natively: AVX512-BF16)``, ``precision fp32 (auto: bf16 would be emulated on this AVX2 CPU)``,
    ``precision fp32 (the default without --optimize)``."""
    import torch

    given = default_precision(name, optimize)
    chosen = resolve_precision(name, device, optimize)
    if given != "auto":
        return f"precision {chosen} ({'given' if name is not None else 'the default without --optimize'})"
    why = "auto" if name is not None else "auto, the default with --optimize"
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "GPU"
        native = (f"this GPU ({gpu}) computes bf16 natively" if chosen == "bf16"
                  else f"this GPU ({gpu}) has no native bf16")
    elif device.type == "cpu":
        if chosen == "bf16":
            native = f"this CPU computes bf16 natively: {' and '.join(_cpu_bf16_features()) or 'AVX512-BF16 or AMX'}"
        else:
            native = f"bf16 would be emulated on this {torch.backends.cpu.get_cpu_capability()} CPU"
    else:
        native = f"no native bf16 known for device {device.type}"
    return f"precision {chosen} ({why}: {native})"


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
