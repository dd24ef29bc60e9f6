"""The student at chosen points of its distillation: after 0 updates (the no-distillation control) and after
given fractions of the run (DistillConfig.snapshot_fracs), each a normal model folder.

    control = init_student_run(replace(cfg, output_dir="runs/cpu/control"))   # model/ of the untrained student
    points = snapshot_points("runs/cpu/student")    # [{"update", "tokens", "fraction", "model"}], by update

The study's distillation-tokens curve (study/curve.py) scores them: how much the student gains per token.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from . import config as C
from .rundir import write_json_atomic

SNAPSHOTS = "snapshots"  # <run>/snapshots/update_<n>/


def snapshot_steps(fracs, total_steps: int) -> dict[int, float]:
    """{update: fraction} after which a copy is kept: round(fraction * total), at least 1; a fraction that rounds
    to the last update is left out (the final model is kept anyway)."""
    steps = {max(1, round(f * total_steps)): f for f in fracs}
    return {k: v for k, v in sorted(steps.items()) if k < total_steps}


def save_snapshot(model, tokenizer, run_dir: Path, record: dict) -> Path:
    """<run_dir>/snapshots/update_<n>/ (n = record["update"]): weights, tokenizer and snapshot.json = record,
    written to a temporary folder and renamed, so a kill mid-write leaves no half snapshot. A resumed run that
    passes update n again would write the same weights (exact resume): an existing snapshot is kept."""
    folder = Path(run_dir) / SNAPSHOTS / f"update_{record['update']}"
    if (folder / "snapshot.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_json_atomic(tmp / "snapshot.json", record)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def snapshot_points(run_dir) -> list[dict]:
    """[{"update", "tokens", "fraction", "model"}] of the finished snapshots of a run, by update."""
    out = []
    for f in (Path(run_dir) / SNAPSHOTS).glob("update_*/snapshot.json"):
        rec = json.loads(f.read_text())
        out.append({"update": rec["update"], "tokens": rec["tokens"], "fraction": rec["fraction"],
                    "model": str(f.parent)})
    return sorted(out, key=lambda r: r["update"])


def init_student_run(cfg: C.DistillConfig, progress: bool = True) -> Path:
    """The no-distillation control: the student `distill(cfg)` would start from (same teacher, layers, init and
    seed), saved after 0 updates as a normal run folder (run.json, model/, summary.json with steps 0) in
    cfg.output_dir; returns its model folder. A finished folder of the same settings is kept as it is."""
    from .train import Trainer

    if not isinstance(cfg, C.DistillConfig):
        raise ValueError("init_student_run needs a DistillConfig")
    trainer = Trainer(cfg, resume=True, progress=progress).setup()
    try:
        if trainer.step:
            raise ValueError(f"{trainer.out} holds a run at update {trainer.step}; the control needs a folder of its "
                             "own (another --output-dir)")
        if not (trainer.out / "summary.json").is_file():
            trainer.save_final(trainer.out / "model", {})
    finally:
        trainer.release()
    return trainer.out / "model"
