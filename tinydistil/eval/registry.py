"""The downstream tasks of a study, in the order `reproduce` runs them: one line per task.

    TASKS = ("glue", "imdb", "squad")        # eval/<name>.py, each defining DOWNSTREAM
    for task in downstream_tasks(): ...      # their Downstream entries (imports the modules)

Adding a task = one module `eval/<name>.py` (its loader, an eval.runner.Task, a `run_<name>` and
`DOWNSTREAM = Downstream(...)`; imdb.py is the smallest example) plus its name in TASKS (and in
presets.DOWNSTREAM_KEYS, the keys a preset's settings may use). `reproduce` then
runs it for teacher and student as a stage of that name (`--skip <name>` leaves it out), reads its
fine-tuning settings from the preset's `downstream[<name>]` (FinetuneConfig overrides), and Table 2, the
report and the figures get its columns. GLUE fills Table 1 instead (columns=()).
This module imports nothing heavy, so the CLI can list stage names without loading torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

TASKS = ("glue", "imdb", "squad")


@dataclass(frozen=True)
class Downstream:
    """One downstream stage.

    run(model, cfg, settings, folder, data_dir, progress, role[, soft_from]): fine-tune and score `model` (a
        folder or hub id) into `folder` (runs/eval/<model>/<name>), skipping finished seeds; `cfg` is the
        resolved FinetuneConfig, `settings` the preset's whole `downstream` dict (for task options such as
        "glue_tasks"), `role` "teacher", "student" or "control" (the teacher keeps its outputs on the training
        sets when the task has soft_labels).
    cells(folder): {column: number 0-100 or "not run: <why>", "note": str} for its Table 2 row.
    """
    name: str
    run: Callable[..., None]
    display: str = ""  # how tables, report and poster name it ("IMDb"); the name itself when empty
    columns: tuple[str, ...] = ()  # Table 2 columns it fills, in order
    cells: Callable[..., dict] | None = None
    decimals: int = 1  # Table 2 cell format
    seed_glob: str = "seed*.json"  # its finished (task, seed) runs, relative to its folder
    finetune_defaults: dict = field(default_factory=dict)  # FinetuneConfig defaults before the preset's overrides
    # run(..., soft_from=<the teacher's folder of this task>) fine-tunes with the teacher's outputs as extra
    # targets (DistilBERT (D)): `reproduce` then runs a stage "<name>_d" for the student
    soft_labels: bool = False


def downstream_tasks() -> list[Downstream]:
    """The Downstream entry of every module named in TASKS, in order."""
    out = []
    for name in TASKS:
        entry = importlib.import_module(f"{__package__}.{name}").DOWNSTREAM
        if entry.name != name:
            raise ValueError(f"eval/{name}.py defines DOWNSTREAM named {entry.name!r}; the names must match")
        out.append(entry)
    return out
