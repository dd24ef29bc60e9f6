#!/usr/bin/env python
"""Distillation on CPU in bf16 autocast vs fp32, side by side, on the cpu preset's sizes.

    python benchmarks/bf16_throughput.py [--steps 6] [--warmup 1] [--teacher FOLDER] [--out FILE]

Teacher: all-MiniLM-L6-v2 (6 x 384, vocabulary 30,522) from its pinned package with a fresh MLM head, or
--teacher FOLDER (a prepared teacher); student: 3-layer DistilBERT from teacher layers [0, 2, 5]; the cpu
preset's distillation config (batches of 32 x 128 tokens). Both precisions run the real `Trainer.loss_terms`
plus the update of `Trainer.train` (benchmarks/distill_throughput.py's `Tiny` step) inside `runtime.autocast`.

It prints (1) the CPU model, the flags that decide native bf16 and what precision "auto" picks here;
(2) the loss terms of both precisions on one identical masked batch, from identical weights, and their
relative difference (target <= 1 %); (3) tokens/s of each, timed interleaved (fp32, bf16, fp32, ...) over
--steps updates after --warmup, and the ratio (target >= 2x where the CPU has native bf16). On a CPU without
native bf16, bf16 is emulated and slower; the ratio is printed all the same.
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import torch  # noqa: E402

from distill_throughput import Tiny, default_data_dir  # noqa: E402
from tinydistil.presets import stage_config  # noqa: E402
from tinydistil.rundir import git_sha, machine  # noqa: E402
from tinydistil.runtime import X86_BF16_FLAGS, autocast, cpu_flags, cpu_has_native_bf16, resolve_runtime  # noqa: E402
from tinydistil.teacher import encoder_as_masked_lm, resolve_encoder  # noqa: E402
from tinydistil.train import TERMS, Trainer  # noqa: E402


def teacher_folder(args, work: Path) -> Path:
    if args.teacher:
        return Path(args.teacher)
    folder, _ = resolve_encoder("all-MiniLM-L6-v2")
    from transformers import AutoTokenizer

    out = work / "teacher"
    torch.manual_seed(0)
    encoder_as_masked_lm(folder).save_pretrained(out)
    AutoTokenizer.from_pretrained(folder).save_pretrained(out)
    return out


def trainer(args, teacher: Path, work: Path, precision: str) -> Trainer:
    cfg = stage_config("cpu", "distill", teacher=str(teacher), data_dir=args.data_dir, device="cpu",
                       precision=precision, output_dir=str(work / f"run-{precision}"), seed=0)
    t = Trainer(cfg, progress=False).setup()
    t.model.train()
    return t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=6, help="timed updates per precision")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--teacher", default=None, help="a prepared teacher folder (default: MiniLM with a fresh head)")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", default=None, help="also write the report to this file")
    args = p.parse_args(argv)

    flags = cpu_flags()
    lines = [f"# bf16 vs fp32 distillation on CPU ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)",
             f"command: python {shlex.join(['benchmarks/bf16_throughput.py', *(argv or sys.argv[1:])])}",
             f"git: {git_sha()}", f"machine: {machine()}",
             f"cpu flags: avx2={'avx2' in flags} avx512f={'avx512f' in flags} "
             + " ".join(f"{f}={f in flags}" for f in X86_BF16_FLAGS),
             f"native bf16: {cpu_has_native_bf16()}; precision 'auto' picks {resolve_runtime('cpu', 'auto')[1]}"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teacher = teacher_folder(args, work)
        runs = {prec: Tiny(trainer(args, teacher, work, prec)) for prec in ("fp32", "bf16")}
        # (2) identical weights (same seed) and the same masked batch (same micro index): compare the terms
        terms = {}
        for prec, run in runs.items():
            tr = run.trainer
            tr.micro = 1
            with torch.no_grad(), autocast(tr.device, tr.precision):
                out = tr.loss_terms(run.batch(0))
            terms[prec] = {k: float(out[k]) for k in TERMS}
        lines.append("loss terms on one identical batch (same weights, same masks):")
        worst = 0.0
        for k in TERMS:
            a, b = terms["fp32"][k], terms["bf16"][k]
            rel = abs(b - a) / abs(a) if a else 0.0
            worst = max(worst, rel) if k == "loss" else worst
            lines.append(f"  {k:<9} fp32 {a:.5f}  bf16 {b:.5f}  rel. diff {100 * rel:.3f} %")
        lines.append(f"total loss difference {100 * worst:.3f} % (target <= 1 %): {'met' if worst <= 0.01 else 'MISSED'}")
        print("\n".join(lines[-6:]), flush=True)
        # (3) interleaved timing
        tokens, seconds = dict.fromkeys(runs, 0), dict.fromkeys(runs, 0.0)
        for i in range(args.warmup + args.steps):
            for prec, run in runs.items():
                tr = run.trainer
                t0 = time.perf_counter()
                with autocast(tr.device, tr.precision):
                    n = run.step(i + 1)
                dt = time.perf_counter() - t0
                if i >= args.warmup:
                    tokens[prec] += n
                    seconds[prec] += dt
        tps = {k: tokens[k] / seconds[k] for k in runs}
        ratio = tps["bf16"] / tps["fp32"]
        target = "met" if ratio >= 2 else ("MISSED" if cpu_has_native_bf16() else "not applicable (no native bf16)")
        lines += [f"tokens/s over {args.steps} updates of 32 x 128 tokens, interleaved after {args.warmup} warm-up:",
                  f"  fp32 {tps['fp32']:.0f}   bf16 {tps['bf16']:.0f}   bf16 / fp32 = {ratio:.2f}x (target >= 2x): {target}"]
        print("\n".join(lines[-2:]), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
