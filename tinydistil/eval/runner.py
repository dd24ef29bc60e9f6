"""The one per-seed runner every downstream task goes through, and the folder rules they share.

    run_seeds(task, "runs/cpu/student/model", cfg, Path("runs/eval/cpu_student/imdb"), data_dir)

A task is a small object (the `Task` protocol): where its data comes from (`load`), how its splits become
model inputs (`prepare`), and how one seed is trained and scored (`fit`). The runner does the rest, the same
way for every task: the model and its tokenizer are checked before any data is read, the folder is claimed
only then (finetune.json) and refused if it holds other settings, a task without data is recorded as "not
run" with the reason (status.json), every model and seed trains on the same fixed subset of training
examples, and each finished seed is written atomically to `seed<k>.json` so that a rerun skips it.
Adding a task = one module holding its loader, a `Task`, a short `run_<task>` that checks the model, claims
the folder and calls `run_seeds`, and its `DOWNSTREAM` entry, plus its name in eval/registry.py's TASKS
(imdb.py is the smallest example).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..losses import soft_label_loss
from ..rundir import config_diff, run_info, write_json_atomic
from .finetune import FinetuneConfig, num_updates, predict

NOT_RUN = "not run: no data"


def is_score(v) -> bool:
    """True for a measured number (not a "not run: ..." string, a bool or NaN)."""
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and v == v


class NoData(Exception):
    """A task's train or eval split is not available (reported as NOT_RUN, not an error)."""


@dataclass
class TaskData:
    train: object  # datasets.Dataset: the task's text columns + label
    evals: dict  # split name -> datasets.Dataset
    source: str  # folder or "hub:<dataset>[/<config>]"
    comparable: bool = True  # False when the eval split is not the paper's (e.g. SQuAD without dev)


@dataclass
class Prepared:
    """What `fit` needs, made once for all seeds: the tokenised training set and anything else (eval sets,
    references, teacher logits) in `extra`; `record` goes into every seed<k>.json."""
    train: object  # datasets.Dataset of model inputs (what finetune() sees)
    extra: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)


@dataclass
class Fitted:
    """One seed's outcome: the fine-tuned model, its score (0-100, the table's number), its metrics and the
    task's own fields for seed<k>.json."""
    model: object
    score: float
    metrics: dict
    steps: int
    train_time_s: float
    record: dict = field(default_factory=dict)


class Task(Protocol):
    name: str  # "cola", "imdb", "squad": the seed<k>.json "task"
    display: str  # "CoLA", "IMDb": bar and table label

    def load(self, data_dir: str | None) -> TaskData: ...  # NoData when unavailable

    def prepare(self, data: TaskData, tokenizer, cfg: FinetuneConfig) -> Prepared: ...

    def fit(self, model: str, tokenizer, prep: Prepared, cfg: FinetuneConfig, seed: int, bar) -> Fitted: ...


def train_subset(train, n: int | None):
    """The first `n` examples of a fixed shuffle (seed 0, independent of the fine-tuning seed): the same
    subset for every seed and every model."""
    return train if n is None or n >= len(train) else train.shuffle(seed=0).select(range(n))


def run_seeds(task: Task, model: str, tokenizer, cfg: FinetuneConfig, folder: Path, data_dir, progress: bool = True,
              save_model: bool = False, data: TaskData | None = None, keep_train_logits: bool = False,
              soft_from: Path | None = None) -> None:
    """Fine-tune and score `model` on `task` for each of cfg.seed_list not finished in `folder`.
    save_model: the first seed's fine-tuned model (and tokenizer) go to `folder`/model.
    data: already loaded (else task.load(data_dir)); NoData writes status.json and returns.
    keep_train_logits: each seed's fine-tuned model's outputs on the training set are kept (train_logits/), so
        a student can later be fine-tuned against them.
    soft_from: the folder of a teacher's runs of this task kept with keep_train_logits: seed k is fine-tuned
        with the teacher's seed-k outputs as extra targets (DistilBERT (D), losses.soft_label_loss); a task
        whose teacher outputs are missing is recorded as not run, with the reason."""
    from tqdm.auto import tqdm

    todo = [s for s in cfg.seed_list if not (folder / f"seed{s}.json").is_file()]
    if not todo:
        return
    if soft_from is not None and (missing := [s for s in todo if not train_logits_path(soft_from, s).is_file()]):
        return record_not_run(task, folder, f"no teacher outputs for seed(s) {missing} in {Path(soft_from) / TRAIN_LOGITS}"
                                            " (the teacher's runs of this task did not keep them; rerun it)")
    try:
        data = data or task.load(data_dir)
    except NoData as e:
        return record_not_run(task, folder, str(e))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "status.json").unlink(missing_ok=True)
    prep = task.prepare(data, tokenizer, cfg)
    with tqdm(total=len(todo) * num_updates(len(prep.train), cfg), disable=not progress, desc=task.display,
              unit="upd") as bar:
        for seed in todo:
            bar.set_description(f"{task.display} seed {seed}")
            t0 = time.time()
            soft = {}
            if soft_from is not None:
                prep.extra["teacher_logits"] = load_train_logits(soft_from, seed, prep.train["labels"])
                soft = {"distilled_from": str(soft_from), "distillation": dict(SOFT_LABELS)}
            fit = task.fit(model, tokenizer, prep, cfg, seed, bar)
            if save_model and seed == cfg.seed_list[0]:
                fit.model.save_pretrained(folder / "model")
                tokenizer.save_pretrained(folder / "model")
            if keep_train_logits:  # before seed<k>.json: a finished seed always has them
                save_train_logits(folder, seed, predict(fit.model, tokenizer, prep.train, cfg)["logits"],
                                  prep.train["labels"])
            write_json_atomic(folder / f"seed{seed}.json", {
                "task": task.name, "seed": seed, "score": fit.score, "metrics": fit.metrics, "model": model,
                "model_info": model_description(fit.model), "hyperparameters": dataclasses.asdict(cfg),
                **prep.record, **fit.record, **soft, "updates": fit.steps, "train_time_s": round(fit.train_time_s, 1),
                "wall_time_s": round(time.time() - t0, 1), "data": data.source})
            bar.set_postfix(score=round(fit.score, 2), refresh=False)


# ------------------------------------------------------------------ (D): a fine-tuned teacher's outputs as targets
TRAIN_LOGITS = "train_logits"  # sub-folder of a teacher's task folder: its outputs on the training set, per seed
SOFT_LABELS = {"temperature": 2.0, "alpha_task": 0.5, "alpha_kl": 0.5}  # the paper's SQuAD (D) weights and T


def train_logits_path(folder: Path, seed: int) -> Path:
    return Path(folder) / TRAIN_LOGITS / f"seed{seed}.npz"


def save_train_logits(folder: Path, seed: int, logits: np.ndarray, labels) -> None:
    """train_logits/seed<k>.npz: logits (N, C) of the fine-tuned model on the N training rows, in dataset order,
    with their labels (so a student's training set can be checked to be the same rows); written atomically."""
    path = train_logits_path(folder, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, logits=np.asarray(logits, dtype=np.float32), labels=np.asarray(labels))
    os.replace(tmp, path)


def load_train_logits(folder: Path, seed: int, labels) -> np.ndarray:
    """The teacher's seed-k outputs on the training set (N, C); ValueError when they belong to other rows."""
    path = train_logits_path(folder, seed)
    try:
        with np.load(path) as f:
            logits, saved = f["logits"], f["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path} is unreadable ({type(e).__name__}); rerun the teacher's fine-tuning of this task") from None
    labels = np.asarray(labels)
    if saved.shape != labels.shape or not np.allclose(saved.astype(np.float64), labels.astype(np.float64)):
        raise ValueError(f"{path} holds the teacher's outputs on another training set ({len(saved)} rows vs "
                         f"{len(labels)}); fine-tune teacher and student with the same settings")
    return logits


def soft_label_loss_fn(prep: Prepared):
    """finetune()'s loss_fn for a (D) run (the teacher's outputs in prep.extra["teacher_logits"]); None otherwise."""
    teacher = prep.extra.get("teacher_logits")
    if teacher is None:
        return None
    t = torch.from_numpy(np.asarray(teacher, dtype=np.float32))

    def loss_fn(model, batch, idx):
        labels = batch.pop("labels")
        return soft_label_loss(model(**batch).logits, labels, t[idx], **SOFT_LABELS)[0]
    return loss_fn


def record_not_run(task: Task, folder: Path, reason: str) -> None:
    """status.json: `task` could not run in `folder` (no data), and why; the tables show it as not run."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "status.json", {"task": task.name, "status": NOT_RUN, "reason": reason})


# ------------------------------------------------------------------ folders
def check_output_dir(output_dir: Path, model: str, cfg: FinetuneConfig, kind: str, earlier_kinds=()) -> dict:
    """Claim `output_dir` for (model, cfg) or check that it holds results of the same settings.
    The number of seeds and the device may differ (more seeds add runs); `earlier_kinds`: the same `kind` as
    folders written before a rename spell it."""
    mine = {"kind": kind, "model": model, "config": dataclasses.asdict(cfg)}
    path = output_dir / "finetune.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            saved_config = saved["config"]
            if not isinstance(saved_config, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path} is unreadable or was not written by tinydistil (no fine-tuning config in it); "
                             "choose another --output-dir") from None
        diff = config_diff(mine["config"], saved_config, ignore={"seeds", "device", "eval_batch_size"})
        diff += [k for k in ("kind", "model") if saved.get(k) != mine[k]
                 and not (k == "kind" and saved.get(k) in earlier_kinds)]
        if diff:
            raise ValueError(f"{output_dir} holds {saved.get('kind')} results with other settings ({', '.join(diff)}); "
                             "use the same settings or another --output-dir")
        return saved
    if output_dir.exists() and any(p.name != "finetune.json" for p in output_dir.iterdir()):
        raise ValueError(f"{output_dir} is not empty and holds no tinydistil fine-tuning results; "
                         "choose another --output-dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {**mine, **run_info()})
    return mine


def model_description(model) -> dict:
    return {"model_type": model.config.model_type,
            "layers": getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layers", None),
            "parameters": sum(p.numel() for p in model.parameters())}


def normalize_model(model: str) -> str:
    """A local folder as a normalised path (./runs/x/ == runs/x), a hub id unchanged."""
    from ..hf import is_local_path

    return os.path.normpath(str(Path(model).expanduser())) if is_local_path(str(model)) else str(model)


def model_slug(model: str) -> str:
    """runs/cpu/teacher/model -> cpu_teacher; bert-base-uncased -> bert-base-uncased (output folder names)."""
    parts = [p for p in Path(model).parts if p not in ("", ".", "..", "/", "~")]
    if parts and parts[0] == "runs":
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] == "model":
        parts = parts[:-1]
    return "_".join(parts) or "model"


def default_output_dir(model: str, kind: str) -> str:
    return str(Path("runs") / "eval" / model_slug(model) / kind)


# ------------------------------------------------------------------ summaries
def median_over_seeds(results: list[dict]) -> dict:
    """Median over seeds of the score and of each metric separately (numpy median: the mean of the two
    middle values for an even count)."""
    out = {"score": float(np.median([r["score"] for r in results])), "seeds_run": len(results),
           "seed_scores": [round(r["score"], 4) for r in sorted(results, key=lambda r: r["seed"])]}
    for name in results[0]["metrics"]:
        out[name] = float(np.median([r["metrics"][name] for r in results]))
    return out


def read_seed_result(path: Path) -> dict:
    """One finished (task, seed) run's seed<k>.json; ValueError naming the file and the field when it is torn
    or not ours (a number that is not a number would otherwise fail inside numpy)."""
    def bad(why: str) -> ValueError:
        return ValueError(f"{path} is not a per-seed result of tinydistil ({why}); move it away and run the "
                          "same command again (that seed is then run again)")

    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"unreadable JSON: {e}") from None
    if not isinstance(rec, dict):
        raise bad(f"a JSON {type(rec).__name__}, expected an object")
    num = (int, float)
    checks = [("seed", rec.get("seed"), int), ("score", rec.get("score"), num)]
    checks += [("metrics", rec["metrics"], dict)] if "metrics" in rec else []
    checks += [(f"metrics.{k}", v, num) for k, v in (rec.get("metrics") or {}).items()] \
        if isinstance(rec.get("metrics"), dict) else []
    for name, value, kind in checks:
        if not isinstance(value, kind) or isinstance(value, bool):
            raise bad(f"field {name!r} is {json.dumps(value)[:40]}, expected a number" if kind is not dict else
                      f"field {name!r} is {json.dumps(value)[:40]}, expected an object")
    return rec


def summary_row(folder: Path, task: str, display: str, extra=None) -> dict:
    """{task, display, median over seeds (median_over_seeds), **extra(results)} of the finished seed<k>.json
    in `folder`; without any, score NOT_RUN with the reason from status.json."""
    results = sorted((read_seed_result(p) for p in Path(folder).glob("seed*.json")), key=lambda r: r["seed"])
    row = {"task": task, "display": display}
    if results:
        row.update(median_over_seeds(results))
        row.update(extra(results) if extra else {})
    else:
        status = Path(folder) / "status.json"
        reason = json.loads(status.read_text())["reason"] if status.is_file() else "not attempted"
        row.update({"score": NOT_RUN, "seeds_run": 0, "reason": reason})
    return row


def fill_not_run(df, metric_cols):
    """A task not run shows NOT_RUN in every measured column (never a number or NaN); other gaps -> ""."""
    df = df.astype(object)
    not_run = df["score"].map(lambda v: v == NOT_RUN)
    for c in metric_cols:
        df.loc[not_run, c] = NOT_RUN
    return df.where(df.notna(), "")


def summarize_seeds(output_dir, task: str, display: str, metric_cols, extra=None):
    """One-row DataFrame (summary_row) of a single-task folder (IMDb, SQuAD), NOT_RUN in every metric column
    when nothing ran."""
    import pandas as pd

    return fill_not_run(pd.DataFrame([summary_row(output_dir, task, display, extra)]), list(metric_cols))
