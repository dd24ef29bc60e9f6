"""Roofline helpers shared by the performance benchmarks: FLOPs of a step counted analytically, a plain-matmul
probe at the step's own GEMM shapes, and the CPU description (lscpu model + flags).

FLOPs (one multiply-add = 2 FLOPs; only matrix products are counted: softmax, LayerNorm, GELU, the loss
arithmetic and the optimiser are left out, so the count is a lower bound of the work and the fraction of the
matmul rate an upper bound of what is reachable). Per token of a sequence of length L (padded length where
there is padding), for a BERT-style encoder layer of width H and FFN width I:

    layer(H, I, L) = 8 H^2      Q, K, V and output projections (4 x H x H)
                   + 4 H I      FFN in and out (H x I, I x H)
                   + 4 L H      attention: Q K^T and P V over the L keys (all heads together)
    mlm_head(H, V) = 2 H^2 + 2 H V   head transform (H x H) + vocabulary projection (H x V)

A distillation step per token = teacher forward (layers + head; the teacher's vocabulary projection runs on
the KL rows: every non-pad token by default) + 3 x student forward (forward + backward, backward = 2 x forward:
gradient of the input and of the weight of every product). A fine-tuning step per token = 3 x the encoder's
layers, plus per sequence 3 x (2 H^2 pooler / pre-classifier + 2 H n_labels classifier).
`tests/test_roofline.py` checks both against torch.utils.flop_counter.FlopCounterMode on tiny models.
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Encoder:
    layers: int
    hidden: int
    intermediate: int
    heads: int = 1

    @classmethod
    def of(cls, config) -> "Encoder":
        """From a transformers BertConfig or DistilBertConfig."""
        if hasattr(config, "n_layers"):  # DistilBERT
            return cls(config.n_layers, config.dim, config.hidden_dim, config.n_heads)
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size,
                   config.num_attention_heads)


def layer_flops(enc: Encoder, seq_len: int) -> dict[str, int]:
    """FLOPs per token of ONE encoder layer, forward, by part."""
    H, I = enc.hidden, enc.intermediate
    return {"projections": 8 * H * H, "ffn": 4 * H * I, "attention": 4 * seq_len * H}


def forward_flops(enc: Encoder, seq_len: int) -> int:
    """FLOPs per token of the encoder's layers, forward (embeddings have no matmul)."""
    return enc.layers * sum(layer_flops(enc, seq_len).values())


def head_flops(hidden: int, vocab: int) -> dict[str, int]:
    """FLOPs per token of an MLM head, forward: transform (H x H) and vocabulary projection (H x V)."""
    return {"transform": 2 * hidden * hidden, "vocab": 2 * hidden * vocab}


def distill_step_flops(teacher: Encoder, student: Encoder, vocab: int, seq_len: int,
                       kl_fraction: float = 1.0) -> dict[str, float]:
    """FLOPs per (non-pad) token of one distillation step, by part, and "total".

    kl_fraction: the share of tokens whose teacher logits are computed (1 = KL on every non-pad token, the
    default objective; the masked share with restrict_ce_to_mask). The student's vocabulary projection runs
    on every token either way (the default objective's KL covers all of them)."""
    th, sh = head_flops(teacher.hidden, vocab), head_flops(student.hidden, vocab)
    parts = {
        "teacher_layers_fwd": forward_flops(teacher, seq_len),
        "teacher_head_fwd": th["transform"] + kl_fraction * th["vocab"],
        "student_layers_fwd": forward_flops(student, seq_len),
        "student_head_fwd": sh["transform"] + sh["vocab"],
    }
    parts["student_bwd"] = 2 * (parts["student_layers_fwd"] + parts["student_head_fwd"])
    parts["total"] = sum(parts.values())
    parts["vocab_share"] = (kl_fraction * th["vocab"] + 3 * sh["vocab"]) / parts["total"]
    return parts


def finetune_step_flops(enc: Encoder, seq_len: int, n_labels: int, tokens: int, sequences: int) -> float:
    """FLOPs of one fine-tuning step (forward + backward = 3 x forward) on `sequences` padded to `seq_len`
    holding `tokens` positions in all (padded positions included: the encoder computes them)."""
    per_seq_head = 2 * enc.hidden * enc.hidden + 2 * enc.hidden * n_labels
    return 3 * (tokens * forward_flops(enc, seq_len) + sequences * per_seq_head)


def describe_distill(teacher: Encoder, student: Encoder, vocab: int, seq_len: int) -> list[str]:
    f = distill_step_flops(teacher, student, vocab, seq_len)
    m = 1e6
    return [
        "FLOPs per token, counted analytically (matrix products only, 2 per multiply-add; benchmarks/roofline.py):",
        f"  layer = 8H^2 (Q,K,V,O) + 4HI (FFN) + 4LH (attention, L={seq_len}); head = 2H^2 (transform) + 2HV "
        f"(vocabulary projection, V={vocab}); backward = 2 x forward for the trained student, teacher forward only",
        f"  teacher forward {(f['teacher_layers_fwd'] + f['teacher_head_fwd']) / m:.1f} MFLOP "
        f"({teacher.layers} layers x {teacher.hidden}, FFN {teacher.intermediate}: {f['teacher_layers_fwd'] / m:.1f}; "
        f"head {f['teacher_head_fwd'] / m:.1f})",
        f"  student forward {(f['student_layers_fwd'] + f['student_head_fwd']) / m:.1f} MFLOP "
        f"({student.layers} layers x {student.hidden}: {f['student_layers_fwd'] / m:.1f}; head "
        f"{f['student_head_fwd'] / m:.1f}), backward {f['student_bwd'] / m:.1f}",
        f"  step total {f['total'] / m:.1f} MFLOP per token; the two vocabulary projections are "
        f"{100 * f['vocab_share']:.0f} % of it",
    ]


# ---------------------------------------------------------------------------------------------- GEMM shapes
def _linear(m: int, k: int, n: int, trained: bool, count: int = 1) -> list[tuple[str, int, int, int, int]]:
    """The GEMMs of a linear layer x (m x k) @ W^T (k x n): forward, and if trained d(input) and d(weight)."""
    out = [("fwd", m, k, n, count)]
    if trained:
        out += [("dX", m, n, k, count), ("dW", n, m, k, count)]
    return out


def encoder_gemms(enc: Encoder, tokens: int, trained: bool) -> list[tuple[str, int, int, int, int]]:
    """(form, M, K, N, count) of the projections and FFN of all layers (attention products: see attention_bmms)."""
    H, I = enc.hidden, enc.intermediate
    return (_linear(tokens, H, H, trained, 4 * enc.layers) + _linear(tokens, H, I, trained, enc.layers)
            + _linear(tokens, I, H, trained, enc.layers))


def attention_bmms(enc: Encoder, sequences: int, seq_len: int, trained: bool) -> list[tuple[str, int, int, int, int, int]]:
    """(form, batch, M, K, N, count): Q K^T and P V per layer (batch = sequences x heads); backward 2 of each."""
    b, d = sequences * enc.heads, enc.hidden // enc.heads
    out = [("QK", b, seq_len, d, seq_len, enc.layers), ("PV", b, seq_len, seq_len, d, enc.layers)]
    if trained:
        out += [("dQK", b, seq_len, seq_len, d, 2 * enc.layers), ("dPV", b, seq_len, d, seq_len, enc.layers),
                ("dPV", b, seq_len, seq_len, d, enc.layers)]
    return out


def _merge(items, width):
    """Sum the counts of identical shapes (one probe call per distinct shape)."""
    merged: dict = {}
    for it in items:
        key = it[1:width]
        merged[key] = merged.get(key, 0) + it[width]
    return [("x", *k, c) for k, c in merged.items()]


def distill_gemms(teacher: Encoder, student: Encoder, vocab: int, sequences: int, seq_len: int):
    """(gemms, bmms) of one distillation step on `sequences` x `seq_len` tokens, at the batch's full size (the
    vocabulary projections as one (tokens x H) @ (H x V) product: the chunking is the implementation's choice)."""
    n = sequences * seq_len
    gemms = (encoder_gemms(teacher, n, False) + _linear(n, teacher.hidden, teacher.hidden, False)
             + _linear(n, teacher.hidden, vocab, False)
             + encoder_gemms(student, n, True) + _linear(n, student.hidden, student.hidden, True)
             + _linear(n, student.hidden, vocab, True))
    bmms = attention_bmms(teacher, sequences, seq_len, False) + attention_bmms(student, sequences, seq_len, True)
    return _merge(gemms, 4), _merge(bmms, 5)


def finetune_gemms(enc: Encoder, sequences: int, seq_len: int):
    """(gemms, bmms) of one fine-tuning step of the encoder on `sequences` x `seq_len` (the per-sequence head
    is left out: < 0.1 % of the FLOPs)."""
    return (_merge(encoder_gemms(enc, sequences * seq_len, True), 4),
            _merge(attention_bmms(enc, sequences, seq_len, True), 5))


class MatmulProbe:
    """Plain torch.matmul (out=, preallocated) at a list of GEMM shapes, in one dtype. One `round()` runs
    every distinct shape once; the rate is the FLOP-weighted one of the step: sum(count x flops) over
    sum(count x time), i.e. how fast the step's own products run as plain matmuls."""

    def __init__(self, gemms, bmms=(), dtype=torch.float32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = []  # (flops per call, count, fn)
        for _form, m, k, n, count in gemms:
            a, b = torch.randn(m, k, generator=g).to(dtype), torch.randn(k, n, generator=g).to(dtype)
            c = torch.empty(m, n, dtype=dtype)
            self.items.append((2 * m * k * n, count, lambda a=a, b=b, c=c: torch.matmul(a, b, out=c)))
        for _form, bt, m, k, n, count in bmms:
            a, b = torch.randn(bt, m, k, generator=g).to(dtype), torch.randn(bt, k, n, generator=g).to(dtype)
            c = torch.empty(bt, m, n, dtype=dtype)
            self.items.append((2 * bt * m * k * n, count, lambda a=a, b=b, c=c: torch.bmm(a, b, out=c)))
        self.times: list[list[float]] = [[] for _ in self.items]
        self.dtype = dtype
        for _, _, fn in self.items:  # warm-up (first touches, kernel selection)
            fn()

    def round(self) -> float:
        """Run each product once; returns this round's rate in GFLOP/s."""
        num = den = 0.0
        for i, (flops, count, fn) in enumerate(self.items):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            self.times[i].append(dt)
            num += count * flops
            den += count * dt
        return num / den / 1e9

    def rate(self) -> float:
        """GFLOP/s over all rounds, each product at its median time."""
        num = sum(c * f for f, c, _ in self.items)
        den = sum(c * sorted(t)[len(t) // 2] for (_, c, _), t in zip(self.items, self.times))
        return num / den / 1e9

    def free(self) -> None:
        self.items.clear()


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# ---------------------------------------------------------------------------------------------- machine
def lscpu() -> dict[str, str]:
    """lscpu's model name, family, model, thread/core counts, and the flags (all of them)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    info = {}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("Model name", "CPU family", "Model", "CPU(s)", "Thread(s) per core", "L2 cache",
                           "L3 cache", "Flags", "Hypervisor vendor"):
            info[key.strip()] = val.strip()
    return info


def cpu_lines() -> list[str]:
    from tinydistil.runtime import X86_BF16_FLAGS, cpu_has_native_bf16

    info = lscpu()
    flags = set(info.get("Flags", "").split())
    key = ["avx2", "fma", "avx512f", "avx512_vnni", *X86_BF16_FLAGS, "amx_tile"]
    return [
        f"cpu (lscpu): {info.get('Model name', '?')}, family {info.get('CPU family', '?')} model "
        f"{info.get('Model', '?')}, {info.get('CPU(s)', '?')} CPUs, L2 {info.get('L2 cache', '?')}, "
        f"L3 {info.get('L3 cache', '?')}, hypervisor {info.get('Hypervisor vendor', 'none')}",
        "cpu flags that matter: " + " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in key)
        + f"; tinydistil native bf16: {cpu_has_native_bf16()}",
        f"lscpu flags: {info.get('Flags', '?')}",
    ]


def target_line(name: str, value: float, target: float, unit: str = "", higher: bool = True,
                note: str = "") -> str:
    ok = value >= target if higher else value <= target
    rel = ">=" if higher else "<="
    return (f"target {name}: {value:.3g}{unit} ({rel} {target:g}{unit}): {'MET' if ok else 'MISSED'}"
            + (f" ({note})" if note else ""))


def gflops_per_s(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9

