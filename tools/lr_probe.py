"""Size the cpu preset's distillation: a short probe of the peak learning rate, then of the warm-up, chosen on
held-out masked-token accuracy (WikiText-2 *test*: the study reports valid and GLUE dev, so neither chooses).

    python tools/lr_probe.py --teacher runs/cpu/teacher/model --data-dir ../shared/data \\
        --out results/experiments/distill_lr_probe

Protocol (declared in the output folder's README before the runs): each probe run is the cpu preset's
distillation (batch 32 x 128, 4,096 tokens per update, triple loss 5/2/1, T = 2) for --max-steps updates from
the same teacher and seed, with its own peak lr and warm-up fraction (linear warm-up, then linear decay to 0
over the probe). Step 1: lr in --lrs at warm-up --warmup. Step 2: the best lr of step 1 at warm-up
--warmup2. The best run has the highest held-out accuracy; runs within --tie points of it count as tied, and a
tie goes to the lower final training loss. The control (the student before any update) is scored beside them.
Each run is resumable (runs/probe/<name>/); a finished one is not trained again.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinydistil.config import replace  # noqa: E402
from tinydistil.eval.mlm_eval import evaluate_mlm  # noqa: E402
from tinydistil.presets import stage_config  # noqa: E402
from tinydistil.rundir import read_jsonl, run_info, write_json_atomic  # noqa: E402
from tinydistil.snapshots import init_student_run  # noqa: E402
from tinydistil.train import distill  # noqa: E402


def probe_run(name: str, base, runs: Path, lr: float, warmup: float, max_steps: int) -> dict:
    cfg = replace(base, lr=lr, warmup_frac=warmup, max_steps=max_steps, output_dir=str(runs / name))
    t0 = time.time()
    model = distill(cfg, resume=True)
    log = read_jsonl(runs / name / "log.jsonl")
    last = log[-2:]  # the last two log lines (20 updates): less noisy than one
    mean = lambda k: round(statistics.mean(r[k] for r in last), 4)  # noqa: E731
    return {"name": name, "lr": lr, "warmup_frac": warmup, "updates": max_steps, "model": str(model),
            "final_loss": mean("loss"), "final_kl": mean("loss_ce" if "loss_ce" in last[0] else "loss_kl"),
            "final_mlm": mean("loss_mlm"), "final_cos": mean("loss_cos"),
            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in log), 1),
            "wall_s_this_call": round(time.time() - t0, 1)}


def score(runs: list[dict], data_dir: str, block_size: int, out: Path, split: str) -> None:
    for r in runs:
        cache = out / f"heldout_{r['name']}.json"
        if not cache.is_file():
            write_json_atomic(cache, evaluate_mlm({"m": r["model"]}, data_dir, split, block_size)["m"])
        ev = json.loads(cache.read_text())
        r.update(heldout_accuracy=round(100 * ev["mlm_accuracy"], 2), heldout_loss=ev["mlm_loss"],
                 heldout_tokens=ev["masked_tokens"])


def best(runs: list[dict], tie: float) -> dict:
    top = max(r["heldout_accuracy"] for r in runs)
    tied = [r for r in runs if r["heldout_accuracy"] >= top - tie]
    return min(tied, key=lambda r: r["final_loss"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", default="runs/probe")
    ap.add_argument("--lrs", default="1e-4,2e-4,5e-4")
    ap.add_argument("--warmup", type=float, default=0.05)
    ap.add_argument("--warmup2", type=float, default=0.1)
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--preset", default="cpu", help="whose distillation settings (smoke: a seconds-long check)")
    ap.add_argument("--split", default="test", help="held-out WikiText-2 split that chooses")
    ap.add_argument("--tie", type=float, default=0.3, help="accuracy points within which runs count as tied")
    a = ap.parse_args()
    out, runs_dir = Path(a.out), Path(a.runs)
    out.mkdir(parents=True, exist_ok=True)
    base = stage_config(a.preset, "distill", teacher=a.teacher, data_dir=a.data_dir)
    t0 = time.time()
    control = init_student_run(replace(base, output_dir=str(runs_dir / "control")))
    step1 = [probe_run(f"lr{float(lr):g}_w{a.warmup:g}", base, runs_dir, float(lr), a.warmup, a.max_steps)
             for lr in a.lrs.split(",")]
    score(step1, a.data_dir, base.block_size, out, a.split)
    first = best(step1, a.tie)
    step2 = [probe_run(f"lr{first['lr']:g}_w{a.warmup2:g}", base, runs_dir, first["lr"], a.warmup2, a.max_steps)]
    score(step2, a.data_dir, base.block_size, out, a.split)
    chosen = best([first, *step2], a.tie)
    ctl = {"name": "control", "model": str(control)}
    score([ctl], a.data_dir, base.block_size, out, a.split)
    result = {"protocol": "tools/lr_probe.py docstring; README.md in this folder", "chosen": {
        "lr": chosen["lr"], "warmup_frac": chosen["warmup_frac"]}, "control_heldout_accuracy": ctl["heldout_accuracy"],
        "step1": step1, "step2": step2, "tie_points": a.tie, "heldout_split": f"WikiText-2 {a.split}",
        "wall_time_s_this_call": round(time.time() - t0, 1), **run_info()}
    write_json_atomic(out / "probe.json", result)
    lines = [f"{'run':<16} {'lr':>8} {'warmup':>7} {'held-out acc %':>15} {'held-out loss':>14} {'final loss':>11}"
             f" {'kl':>7} {'mlm':>7} {'cos':>7} {'tok/s':>7}"]
    for r in [*step1, *step2]:
        lines.append(f"{r['name']:<16} {r['lr']:>8g} {r['warmup_frac']:>7g} {r['heldout_accuracy']:>15.2f} "
                     f"{r['heldout_loss']:>14.4f} {r['final_loss']:>11.4f} {r['final_kl']:>7.4f} {r['final_mlm']:>7.4f}"
                     f" {r['final_cos']:>7.4f} {r['tokens_per_s']:>7.1f}")
    lines.append(f"control (0 updates): held-out accuracy {ctl['heldout_accuracy']:.2f} %")
    lines.append(f"chosen: lr {chosen['lr']:g}, warm-up {chosen['warmup_frac']:g}")
    (out / "probe.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
