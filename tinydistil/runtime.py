"""Device and precision, resolved the same way for pretraining, distillation and fine-tuning."""
from __future__ import annotations

import contextlib

import torch


def resolve_runtime(device: str = "auto", precision: str = "auto") -> tuple[torch.device, str]:
    """(device, precision): auto -> CUDA if present; fp16 on pre-Ampere CUDA (T4), bf16 on newer, fp32 on CPU."""
    name = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    prec = precision
    if prec == "auto":
        prec = "fp32"
        if dev.type == "cuda":
            prec = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if prec in ("fp16", "bf16") and dev.type != "cuda":
        raise ValueError(f"precision {prec} needs a CUDA device; use --precision fp32 on {name}")
    return dev, prec


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for `precision` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
