"""Does torch.compile of the encoders' layers speed up the bf16 distillation step? Side by side, interleaved.

    python benchmarks/compile_layers.py --teacher runs/cpu/teacher/model [--with-teacher] [--steps 6] [--out FILE]

Two trainers of the cpu preset's distillation config in bf16 (batches of 32 x 128): one eager, one with each of the
student's transformer layers (and with --with-teacher the frozen teacher's too) under `Module.compile(dynamic=False)`;
the first step of each is timed apart (the compile), then --steps updates alternate between the two.
A measurement of something not kept: see benchmarks/README.md.
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

from bf16_throughput import teacher_folder, trainer  # noqa: E402
from distill_throughput import Tiny, default_data_dir  # noqa: E402
from roofline import cpu_lines  # noqa: E402
from tinydistil.rundir import git_sha, machine  # noqa: E402
from tinydistil.runtime import autocast  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default=None, help="a prepared teacher folder (default: MiniLM with a fresh head)")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--with-teacher", action="store_true", help="compile the teacher's layers too")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    lines = [f"# torch.compile'd encoder layers, bf16 distillation step ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)",
             f"command: python {shlex.join(['benchmarks/compile_layers.py', *(argv or sys.argv[1:])])}",
             f"git: {git_sha()}", f"machine: {machine()}", *cpu_lines()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        teacher = teacher_folder(args, work)
        runs = {"eager": Tiny(trainer(args, teacher, work, "bf16")),
                "compiled": Tiny(trainer(args, teacher, work / "compiled", "bf16"))}
        tr = runs["compiled"].trainer
        for layer in [*tr.model.distilbert.transformer.layer, *(tr.teacher.bert.encoder.layer if args.with_teacher else [])]:
            layer.compile(dynamic=False)
        seconds, tokens = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0)
        for i in range(args.steps + 1):
            for key in (list(runs) if i % 2 else list(runs)[::-1]):
                run = runs[key]
                t0 = time.perf_counter()
                with autocast(run.trainer.device, run.trainer.precision):
                    n = run.step(i)
                dt = time.perf_counter() - t0
                if i == 0:
                    lines.append(f"first step ({key}): {dt:.1f} s")
                else:
                    seconds[key] += dt
                    tokens[key] += n
    tps = {k: tokens[k] / seconds[k] for k in runs}
    what = "student's and teacher's" if args.with_teacher else "student's"
    lines += [f"tokens/s over {args.steps} interleaved updates: eager {tps['eager']:.0f}, the {what} layers compiled "
              f"{tps['compiled']:.0f}: {tps['compiled'] / tps['eager']:.3f}x"]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
