"""The distillation-tokens curve: how much the student gains per distillation token.

    rows = run_curve(...)          # the `curve` stage of reproduce
    rows = read_curve("results")   # [{"point", "update", "tokens", "fraction", "mlm_accuracy", <task>: score, ...}]

Points, in order of distillation tokens: the no-distillation control (0 updates), the student's snapshots
(DistillConfig.snapshot_fracs, kept by the distillation run in <run>/snapshots/update_<n>/) and the final
student. Each is scored on held-out masked-token accuracy (the same masks for every point) and fine-tuned on the
preset's curve tasks (downstream["curve_tasks"]) with the study's GLUE settings and seeds; the two ends reuse the
control's and the student's own GLUE runs. Writes <tables_dir>/tokens_curve.{csv,json}.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..eval.glue import TASKS as GLUE_TASKS
from ..eval.glue import parse_tasks, run_glue
from ..rundir import write_json_atomic
from ..snapshots import snapshot_points
from .ablation import task_seed_scores
from .stats import macro, per_seed_macro
from .summary import Status, not_run, read_json
from .tables import write_csv

CURVE_FILES = ("tokens_curve.csv", "tokens_curve.json")


def run_curve(run_dir: Path, models: dict, eval_dirs: dict, lay, distill_cfg, glue_cfg, settings: dict, data_dir,
              tables_dir: Path, progress: bool = True):
    """The `curve` stage: fine-tune each snapshot on the curve tasks, score it on held-out MLM, and write the
    curve. Returns None, Status.FINISHED when it measured nothing new, or (Status.NOT_RUN, why)."""
    from ..eval.mlm_eval import evaluate_mlm

    if not settings.get("curve_tasks"):
        return not_run("the preset names no curve_tasks")
    tasks = parse_tasks(settings["curve_tasks"])
    snaps = snapshot_points(run_dir)
    if not snaps:
        return not_run("the distillation kept no snapshots (DistillConfig.snapshot_fracs)")
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    points = [{"point": "control (no distillation)", "update": 0, "tokens": 0, "fraction": 0.0,
               "model": models["control"], "glue": eval_dirs["control"] / "glue", "eval": eval_dirs["control"]},
              *[{**s, "point": f"snapshot at update {s['update']}", "glue": lay.eval_dir(f"curve_u{s['update']}") /
                 "glue", "eval": lay.eval_dir(f"curve_u{s['update']}")} for s in snaps],
              {"point": "student (distilled)", "update": summary["steps"], "tokens": summary["tokens"],
               "fraction": 1.0, "model": models["student"], "glue": eval_dirs["student"] / "glue",
               "eval": eval_dirs["student"]}]
    def results_files():  # what this stage writes: per-seed scores and held-out MLM of the snapshots
        return {f for p in points[1:-1] for f in Path(p["eval"]).glob("**/*.json")} | \
            {Path(p["eval"]) / "mlm_eval.json" for p in points if (Path(p["eval"]) / "mlm_eval.json").is_file()}

    before = results_files()
    for p in points[1:-1]:  # the ends are fine-tuned by the glue stage
        run_glue(p["model"], tasks, glue_cfg, p["glue"], data_dir, progress)
    rows = []
    for p in points:
        mlm_file = Path(p["eval"]) / "mlm_eval.json"  # the same masks for every point: scored once each
        if not mlm_file.is_file():
            try:
                acc = evaluate_mlm({"m": p["model"]}, distill_cfg.data_dir, "valid", distill_cfg.block_size)["m"]
            except ValueError as e:  # no validation split (the smoke sample)
                acc = {"not run": str(e)}
            write_json_atomic(mlm_file, acc)
        acc = json.loads(mlm_file.read_text()).get("mlm_accuracy")
        per_task = {GLUE_TASKS[t].display: v for t, v in task_seed_scores(p["glue"], tasks).items()}
        rows.append({"point": p["point"], "update": p["update"], "tokens": p["tokens"], "fraction": p["fraction"],
                     "mlm_accuracy": None if acc is None else round(100 * acc, 2),
                     **{t: round(_median(v), 2) for t, v in per_task.items()},
                     "macro": None if macro(per_task) is None else round(macro(per_task), 2),
                     "per_seed_macro": {s: round(v, 2) for s, v in per_seed_macro(per_task).items()},
                     "seed_scores": per_task})
    started = read_json(Path(run_dir) / "run.json").get("started")
    write_curve(rows, [GLUE_TASKS[t].display for t in tasks], tables_dir, student_run_started=started)
    # nothing new measured: the stage keeps the wall time an earlier call measured (summary.carry_over)
    return Status.FINISHED if before and results_files() == before else None


def _median(values: dict) -> float:
    import statistics

    return statistics.median(values.values())


def write_curve(rows: list[dict], tasks: list[str], tables_dir: Path, student_run_started: str | None = None) -> None:
    """tokens_curve.json (every field, per-seed scores included; the distilled student's run.json "started" stamp,
    which says which study the curve belongs to) and tokens_curve.csv (one row per point)."""
    import pandas as pd

    tables_dir = Path(tables_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(tables_dir / CURVE_FILES[1], {"tasks": tasks, "points": rows,
                                                     "student_run_started": student_run_started})
    cols = ["point", "update", "tokens", "fraction", "mlm_accuracy", *tasks, "macro"]
    write_csv(pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols), tables_dir / CURVE_FILES[0])


def read_curve(results_dir) -> dict | None:
    """tokens_curve.json as written (None when the curve has not run)."""
    try:
        return json.loads((Path(results_dir) / CURVE_FILES[1]).read_text())
    except (OSError, ValueError):
        return None


def study_curve(results_dir, reproduce: dict | None) -> tuple[dict | None, str]:
    """(the curve, "") when tokens_curve.json belongs to the study recorded in `reproduce` (reproduce.json), else
    (None, why). A curve left from another study (the main job skips the curve stage: `make curve` runs it) names
    another student run; one written before the stamp existed is taken as the study's."""
    curve = read_curve(results_dir)
    if curve is None:
        return None, "no `tokens_curve.csv`; `make curve` (the `curve` stage of `reproduce`) writes it"
    theirs = curve.get("student_run_started")
    ours = ((reproduce or {}).get("runs_started") or {}).get("distill")
    if theirs and ours and theirs != ours:
        return None, (f"`tokens_curve.csv` is of another study's student (its run started {theirs}, this study's "
                      f"{ours}); `make curve` measures this one's")
    return curve, ""
