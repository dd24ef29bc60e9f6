"""GLUE (paper Table 1): task registry, loaders (GLUE TSVs or the hub) and `run_glue`.

    df = run_glue("runs/cpu/student/model", ["cola", "rte"], FinetuneConfig(seeds=3),
                  output_dir="runs/eval/cpu_student/glue", data_dir="../shared/data")

Data: local files when a data directory is given (argument or $TINYDISTIL_DATA_DIR), laid out as GLUE's
download script leaves them: `<data_dir>/glue/<CoLA|SST-2|MRPC|QQP|STS-B|MNLI|QNLI|RTE|WNLI>/train.tsv`
and `dev.tsv` (MNLI: `dev_matched.tsv`, `dev_mismatched.tsv`); otherwise the hub (`nyu-mll/glue`).
Labels become the hub's integer ids (e.g. RTE entailment=0, not_entailment=1). A task without a train
and a dev split is reported as "not run: no data", never as a number.

Protocol (paper): fine-tune each task for a fixed number of epochs, evaluate on dev, no model
selection; report the median over seeds of the task score (MRPC/QQP mean of F1 and accuracy, STS-B
mean of Pearson and Spearman, CoLA Matthews, MNLI matched accuracy, others accuracy).
Each finished (task, seed) is written to `<output_dir>/<task>/seed<k>.json`; a rerun skips it.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import resolve_data_dir as _resolve_dir
from ..data import utf8_errors
from ..hf import load_hub_dataset, load_tokenizer
from .finetune import FinetuneConfig, finetune, load_classifier, predict, tokenize
from .metrics import GLUE_TASK_METRICS, glue_metrics, task_score
from .registry import Downstream
from .runner import (NOT_RUN, Fitted, NoData, Prepared, TaskData, check_output_dir, default_output_dir, fill_not_run,
                     normalize_model, record_not_run, run_seeds, soft_label_loss_fn, summary_row, train_subset)

HUB_DATASET = "nyu-mll/glue"
DATA_DIR_HELP = ("set --data-dir (or TINYDISTIL_DATA_DIR) to a folder holding glue/<TASK>/{train,dev}.tsv, "
                 "e.g. ../shared/data")


@dataclass(frozen=True)
class GlueTask:
    name: str  # registry key = hub config name (cola, sst2, ...)
    display: str  # Table 1 column and GLUE folder name (CoLA, SST-2, ...)
    text_columns: tuple[str, ...]  # hub column names of the one or two input texts
    labels: tuple[str, ...] | None  # hub label names in id order; None = regression (STS-B)
    tsv_text: tuple[str | int, ...]  # TSV header names of the texts (column indices when header=False)
    tsv_label: str | int
    header: bool = True
    n_fields: int = 0  # field count of a header-less TSV
    # (split name, local file, hub split); the first one gives the Table 1 score
    evals: tuple[tuple[str, str, str], ...] = (("dev", "dev.tsv", "validation"),)

    @property
    def regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Keys of a run's "metrics": glue_metrics' names on the first eval split, then `<name>_<split>`
        for further splits (MNLI: accuracy, accuracy_mismatched)."""
        names = GLUE_TASK_METRICS[self.metric_task(self.evals[0][0])]
        return names + tuple(f"{n}_{split}" for split, _, _ in self.evals[1:]
                             for n in GLUE_TASK_METRICS[self.metric_task(split)])

    def metric_task(self, split: str) -> str:
        """Task name for metrics.glue_metrics on eval split `split`."""
        return f"mnli_{split}" if self.name == "mnli" else self.name

    # the eval.runner.Task protocol
    def load(self, data_dir: Path | None) -> TaskData:
        return load_local(self, data_dir) if data_dir is not None else load_hub(self)

    def prepare(self, data: TaskData, tokenizer, cfg: FinetuneConfig) -> Prepared:
        tok = lambda ds, split: tokenize(ds, tokenizer, self.text_columns, cfg.max_seq_len,  # noqa: E731
                                         desc=f"tokenising {self.display} {split}")
        train = tok(train_subset(data.train, cfg.max_train_examples), "train")
        evals = {split: tok(ds, split) for split, ds in data.evals.items()}
        return Prepared(train, {"evals": evals},
                        {"train_examples": len(train), "eval_examples": {s: len(d) for s, d in evals.items()}})

    def fit(self, model: str, tokenizer, prep: Prepared, cfg: FinetuneConfig, seed: int, bar) -> Fitted:
        """Fixed epochs, no model selection (the paper's GLUE protocol); scored on every eval split."""
        clf = load_classifier(model, self.num_labels, tokenizer, seed=seed, regression=self.regression)
        res = finetune(clf, tokenizer, prep.train, cfg, seed, bar=bar, loss_fn=soft_label_loss_fn(prep))
        metrics, first = {}, None
        for split, ds in prep.extra["evals"].items():
            logits = predict(res.model, tokenizer, ds, cfg)["logits"]
            preds = logits[:, 0] if self.regression else logits.argmax(-1)
            m = glue_metrics(self.metric_task(split), preds, np.asarray(ds["labels"]))
            if first is None:
                first = m
                metrics.update(m)
            else:  # MNLI mismatched: reported next to the matched score, not part of it
                metrics.update({f"{k}_{split}": v for k, v in m.items()})
        return Fitted(res.model, task_score(self.name, first), metrics, res.steps, res.train_time_s)


_NLI2 = ("entailment", "not_entailment")
TASKS: dict[str, GlueTask] = {t.name: t for t in [  # Table 1 column order
    GlueTask("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), (3,), 1, header=False, n_fields=4),
    GlueTask("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
             ("sentence1", "sentence2"), "gold_label",
             evals=(("matched", "dev_matched.tsv", "validation_matched"),
                    ("mismatched", "dev_mismatched.tsv", "validation_mismatched"))),
    GlueTask("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
             ("#1 String", "#2 String"), "Quality"),
    GlueTask("qnli", "QNLI", ("question", "sentence"), _NLI2, ("question", "sentence"), "label"),
    GlueTask("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"),
             ("question1", "question2"), "is_duplicate"),
    GlueTask("rte", "RTE", ("sentence1", "sentence2"), _NLI2, ("sentence1", "sentence2"), "label"),
    GlueTask("sst2", "SST-2", ("sentence",), ("negative", "positive"), ("sentence",), "label"),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), None, ("sentence1", "sentence2"), "score"),
    GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
             ("sentence1", "sentence2"), "label"),
]}


# ------------------------------------------------------------------ names
def parse_tasks(tasks) -> list[str]:
    """'cola,rte' / ['CoLA', 'sst-2'] / None (all nine) -> registry names; unknown -> ValueError listing them."""
    if tasks is None:
        return list(TASKS)
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t.strip()]
    out = []
    for t in tasks:
        key = t.strip().lower().replace("-", "")
        if key not in TASKS:
            raise ValueError(f"unknown GLUE task {t!r}; valid tasks: {', '.join(TASKS)}")
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"no GLUE task given; valid tasks: {', '.join(TASKS)}")
    return out


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data directory (argument, else $TINYDISTIL_DATA_DIR), or None for the hub."""
    return _resolve_dir(data_dir, DATA_DIR_HELP)


def task_folder(data_dir: Path, task: GlueTask) -> Path:
    """`<data_dir>/glue/<Task>`; `<data_dir>/<Task>` also works when data_dir is the glue folder itself."""
    for folder in (data_dir / "glue" / task.display, data_dir / task.display):
        if folder.is_dir():
            return folder
    return data_dir / "glue" / task.display


# ------------------------------------------------------------------ TSV parsing
def parse_label(task: GlueTask, text: str):
    """A TSV label -> the hub's id (int) or score (float, STS-B); ValueError (message without location)."""
    text = text.strip()
    if task.regression:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"score {text!r} is not a number") from None
        if not 0.0 <= value <= 5.0:
            raise ValueError(f"score {value} is outside STS-B's 0-5 range")
        return value
    if text in task.labels:
        return task.labels.index(text)
    if text.isdigit() and int(text) < len(task.labels):
        return int(text)
    raise ValueError(f"label {text!r} is not one of {', '.join(task.labels)} "
                     f"(or 0..{len(task.labels) - 1}) for {task.display}")


def read_glue_tsv(path: str | os.PathLike, task: GlueTask | str) -> dict[str, list]:
    """Rows of a GLUE TSV as {hub text column: [...], "label": [...]}.

    Read with quoting off (GLUE text contains unbalanced quotes, kept verbatim) and a UTF-8 BOM
    dropped (MRPC). Header files are matched by column name, CoLA (no header) by position. Rows with
    another field count, labels outside the task's set and files without data rows raise ValueError
    naming the file (and line).
    """
    task = TASKS[task] if isinstance(task, str) else task
    path = Path(path)
    where = f"is this the GLUE {task.display} file?"
    columns = {c: [] for c in task.text_columns}
    columns["label"] = []
    with utf8_errors(path, where), open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if task.header:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path} is empty; {where}")
            missing = [c for c in (*task.tsv_text, task.tsv_label) if c not in header]
            if missing:
                raise ValueError(f"{path}: header lacks column(s) {missing} (has {header}); {where}")
            width = len(header)
            text_idx = [header.index(c) for c in task.tsv_text]
            label_idx = header.index(task.tsv_label)
        else:
            width, text_idx, label_idx = task.n_fields, list(task.tsv_text), task.tsv_label
        for row in reader:
            if not row:  # blank line
                continue
            if len(row) != width:
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} tab-separated fields, expected "
                                 f"{width}; {where}")
            try:
                label = parse_label(task, row[label_idx])
            except ValueError as e:
                raise ValueError(f"{path}, line {reader.line_num}: {e}; {where}") from None
            for col, i in zip(task.text_columns, text_idx):
                columns[col].append(row[i])
            columns["label"].append(label)
    if not columns["label"]:
        raise ValueError(f"{path} has no data rows; {where}")
    return columns


def _as_dataset(columns: dict[str, list], task: GlueTask):
    import datasets

    features = datasets.Features({**{c: datasets.Value("string") for c in task.text_columns},
                                  "label": datasets.Value("float32" if task.regression else "int64")})
    return datasets.Dataset.from_dict(columns, features=features)


# ------------------------------------------------------------------ loading
def load_local(task: GlueTask | str, data_dir: Path) -> TaskData:
    """Train and eval splits from GLUE TSVs; NoData when a file is missing."""
    task = TASKS[task] if isinstance(task, str) else task
    folder = task_folder(Path(data_dir), task)
    files = {"train": folder / "train.tsv", **{name: folder / file for name, file, _ in task.evals}}
    absent = [p.name for p in files.values() if not p.is_file()]
    if absent:
        raise NoData(f"no {', '.join(absent)} in {folder}")
    splits = {name: _as_dataset(read_glue_tsv(path, task), task) for name, path in files.items()}
    train = splits.pop("train")
    return TaskData(train, splits, str(folder))


def load_hub(task: GlueTask | str) -> TaskData:
    """Train and eval splits of `nyu-mll/glue` (the registry's text columns are the hub's names);
    NoData when the hub cannot be reached."""
    task = TASKS[task] if isinstance(task, str) else task
    try:
        dd = load_hub_dataset(HUB_DATASET, task.name)
    except Exception as e:  # no network, hub down, ...
        raise NoData(f"hub {HUB_DATASET} unreachable ({type(e).__name__}); {DATA_DIR_HELP}") from None
    keep = [*task.text_columns, "label"]
    pick = lambda split: dd[split].select_columns(keep)  # noqa: E731
    return TaskData(pick("train"), {name: pick(hub) for name, _, hub in task.evals},
                    f"hub:{HUB_DATASET}/{task.name}")


def load_task(task: GlueTask | str, data_dir=None) -> TaskData:
    """Local files when a data directory is given (argument or $TINYDISTIL_DATA_DIR), else the hub.
    Raises NoData when the train or an eval split is unavailable, ValueError for malformed files."""
    local = resolve_data_dir(data_dir)
    return load_local(task, local) if local is not None else load_hub(task)


def load_tasks(names, data_dir=None):
    """(task, TaskData or None, why not) for each task name, in order: local files when a data directory is given
    (argument or $TINYDISTIL_DATA_DIR), else the hub, which is asked once, not again for every task when it
    cannot be reached."""
    local = resolve_data_dir(data_dir)
    hub_error = None
    for name in names:
        task = TASKS[name]
        try:
            if local is None and hub_error:
                raise NoData(hub_error)
            data, reason = task.load(local), None
        except NoData as e:
            hub_error = str(e) if local is None else None
            data, reason = None, str(e)
        yield task, data, reason


# ------------------------------------------------------------------ baseline
def majority_baseline(task: GlueTask | str, data: TaskData) -> dict:
    """The train split's most frequent label predicted for every example of the first eval split, scored as in
    Table 1: {"task", "label", "score" (0-100), "accuracy" (0-100), "eval_examples"}. STS-B (regression) has no
    majority class and a constant prediction no correlation: label and scores None."""
    from collections import Counter

    task = TASKS[task] if isinstance(task, str) else task
    split, _, _ = task.evals[0]
    refs = np.asarray(data.evals[split]["label"])
    out = {"task": task.display, "label": None, "score": None, "accuracy": None, "eval_examples": len(refs)}
    if task.regression:
        return out
    label = Counter(data.train["label"]).most_common(1)[0][0]
    preds = np.full_like(refs, label)
    return {**out, "label": task.labels[label], "score": task_score(task.name, glue_metrics(
        task.metric_task(split), preds, refs)), "accuracy": 100.0 * float((preds == refs).mean())}


# ------------------------------------------------------------------ results
def run_glue(model: str, tasks=None, cfg: FinetuneConfig | None = None, output_dir=None, data_dir=None,
             progress: bool = True, save_models: tuple[str, ...] = (), keep_train_logits: bool = False,
             soft_from=None):
    """Fine-tune `model` (folder or hub id) on each GLUE task for cfg.seeds seeds; evaluate on dev.

    Returns a DataFrame, one row per task (registry order): task, display, score (median over seeds of
    the Table-1 score, 0-100) and each metric's median; tasks without data have score NOT_RUN.
    Finished (task, seed) runs in `output_dir` are read back instead of run again (eval.runner).
    save_models: tasks whose first seed's fine-tuned model is saved to `output_dir/<task>/model`
    (e.g. ("stsb",): Table 3 measures how much int8 / ONNX forms of it change the STS-B score).
    keep_train_logits: keep each run's outputs on its training set (a teacher for (D) runs).
    soft_from: a teacher's GLUE folder run with keep_train_logits: DistilBERT (D), each (task, seed) fine-tuned
    with the teacher's outputs of the same task and seed as extra targets (eval.runner.run_seeds).
    """
    cfg = cfg or FinetuneConfig()
    cfg.validate()
    names = parse_tasks(tasks)
    model = normalize_model(model)
    out = Path(output_dir or default_output_dir(model, "glue"))
    local = resolve_data_dir(data_dir)
    pending = [n for n in names if any(not (out / n / f"seed{s}.json").is_file() for s in cfg.seed_list)]
    # the model and its tokenizer are checked before any data is read (only when something is left to run)
    tokenizer = load_tokenizer(model) if pending else None
    check_output_dir(out, model, cfg, "glue" if soft_from is None else f"glue (D) from {normalize_model(soft_from)}")
    for task, data, reason in load_tasks(pending, local):
        if data is None:
            record_not_run(task, out / task.name, reason)
            continue
        run_seeds(task, model, tokenizer, cfg, out / task.name, local, progress, save_model=task.name in save_models,
                  data=data, keep_train_logits=keep_train_logits,
                  soft_from=None if soft_from is None else Path(soft_from) / task.name)
    df = summarize_glue(out, names)
    df.to_csv(out / "summary.csv", index=False)
    return df


def summarize_glue(output_dir, tasks=None):
    """DataFrame of the finished runs in `output_dir` (see run_glue); tasks without results -> NOT_RUN."""
    import pandas as pd

    rows = []
    for name in parse_tasks(tasks):
        task = TASKS[name]
        row = summary_row(Path(output_dir) / name, name, task.display, lambda rs: {"data": rs[0]["data"]})
        if row["score"] == NOT_RUN:
            row.update(dict.fromkeys(task.metric_names, NOT_RUN))
        rows.append(row)
    df = pd.DataFrame(rows)
    metric_cols = [c for c in df.columns if c not in ("task", "display", "score", "seeds_run", "seed_scores",
                                                      "data", "reason")]
    return fill_not_run(df, metric_cols)


def _run_in_study(model, cfg, settings, folder, data_dir, progress, role, soft_from=None) -> None:
    # the student's STS-B model is kept: Table 3 scores its int8 / ONNX forms on STS-B; the teacher's outputs on
    # the training sets are kept for the (D) runs
    run_glue(model, settings.get("glue_tasks"), cfg, folder, data_dir, progress,
             save_models=("stsb",) if role == "student" else (), keep_train_logits=role == "teacher",
             soft_from=soft_from)


DOWNSTREAM = Downstream("glue", _run_in_study, display="GLUE", soft_labels=True, seed_glob="*/seed*.json")  # fills Table 1 (study.tables.glue_row)
