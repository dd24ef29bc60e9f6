"""Device and precision, resolved the same way for pretraining, distillation and fine-tuning.

precision "auto": fp16 on pre-Ampere CUDA (a T4), bf16 on newer CUDA, and on CPU bf16 autocast only where
the processor computes bf16 natively (AVX512-BF16 or AMX on x86, FEAT_BF16 on Arm), fp32 elsewhere: on a
CPU without it bf16 is emulated and slower than fp32. Master weights, optimiser state and the loss terms
stay float32 in every case (autocast only lowers the matmuls).
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
from pathlib import Path

import torch

# /proc/cpuinfo flags of x86 processors with native bf16 arithmetic
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The processor's feature flags (Linux /proc/cpuinfo 'flags' / 'Features'); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 arithmetic in hardware (detected, never assumed).

    TINYDISTIL_CPU_BF16=0 / 1 overrides the detection (the test suite sets 0, so precision "auto" means the
    same on every machine kind; the bf16 path is tested with precision "bf16" asked for explicitly)."""
    forced = os.environ.get("TINYDISTIL_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    flags = cpu_flags()
    if flags & set(X86_BF16_FLAGS) or "bf16" in flags:  # x86 AVX512-BF16 / AMX; Arm Linux 'Features: bf16'
        return True
    if platform.system() == "Darwin":  # Apple M2 and later
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            return out == "1"
        except (OSError, subprocess.SubprocessError):
            return False
    return False


def resolve_runtime(device: str = "auto", precision: str = "auto") -> tuple[torch.device, str]:
    """(device, precision): auto -> CUDA if present; see the module docstring for precision "auto"."""
    name = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name} asked for but this machine has no CUDA GPU; use --device auto or cpu")
    prec = precision
    if prec == "auto":
        if dev.type == "cuda":
            prec = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        else:
            prec = "bf16" if cpu_has_native_bf16() else "fp32"
    if prec == "fp16" and dev.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device; use --precision bf16 or fp32 on {name}")
    return dev, prec


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for `precision` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def matmul_gflops(dtype: torch.dtype = torch.float32, m: int = 4096, k: int = 384, n: int = 1536,
                  seconds: float = 1.0, device: str = "cpu") -> float:
    """This machine's plain matmul rate in GFLOP/s: (m, k) @ (k, n) in `dtype` (default: the cpu preset's FFN
    shape, a batch of 32 x 128 tokens), 2*m*k*n FLOPs a product, the best of repeated timings over about
    `seconds` (the best, not the mean: other processes can only slow it). The yardstick every timing here is read
    against, since two machines of one kind can differ 2x on the same code."""
    import time

    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(k, n, generator=gen).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.matmul(a, b)  # warm-up: first-call dispatch and allocation
    sync()
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end or best == float("inf"):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * n / best / 1e9


def host_speed(seconds: float = 1.0) -> dict:
    """{"matmul_gflops": {"fp32", "bf16"}, "matmul_shape", "threads"}: the machine's matmul rate, measured in a few
    seconds at the start of a study; bf16 only where the CPU has it natively (emulated bf16 runs ~100x slower
    than fp32 and is never used: precision "auto" is fp32 there)."""
    rates = {"fp32": round(matmul_gflops(torch.float32, seconds=seconds), 1)}
    off = os.environ.get("TINYDISTIL_CPU_BF16", "").strip() == "0"  # the override, not the hardware
    rates["bf16"] = (round(matmul_gflops(torch.bfloat16, seconds=seconds), 1) if cpu_has_native_bf16()
                     else "not measured: bf16 turned off (TINYDISTIL_CPU_BF16=0)" if off
                     else "not measured: no native bf16")
    return {"matmul_gflops": rates, "matmul_shape": [4096, 384, 1536], "threads": torch.get_num_threads()}


def cast_frozen_linears(model: torch.nn.Module, precision: str) -> int:
    """Cast the weights and biases of a frozen model's Linear layers to the autocast dtype of `precision` once
    ("bf16" only; a no-op otherwise), so autocast does not cast them again at every forward. Autocast would
    round them the same way (to nearest), so the model's outputs under autocast are unchanged. Layers whose
    weight is shared with an embedding (a tied vocabulary decoder) stay float32: the embedding lookup would
    change. Returns the number of layers cast."""
    if precision != "bf16":
        return 0
    shared = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and id(m.weight) not in shared and not m.weight.requires_grad:
            m.to(torch.bfloat16)
            n += 1
    return n


def adamw(param_groups, **kwargs) -> torch.optim.AdamW:
    """torch.optim.AdamW with the fused kernel (one vectorised pass over every tensor instead of ~7 separate
    element-wise ops per parameter) where the parameters are on CPU or CUDA; same update rule, same state_dict."""
    groups = list(param_groups)
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
                                 for p in params)
    return torch.optim.AdamW(groups, fused=fused, **kwargs)
