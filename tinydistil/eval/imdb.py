"""IMDb sentiment (paper Table 2): loaders and `run_imdb`.

Local copy (a data directory given as argument or $TINYDISTIL_DATA_DIR):
`<data_dir>/imdb-kaushik2020-orig/{train,dev,test}.tsv`, header `Sentiment<TAB>Text`, labels
Negative/Positive (a 1707/245/488-review subset of IMDb chosen by Kaushik et al., 2020).
Hub: `stanfordnlp/imdb` (25k train / 25k test); the selection split is carved out of train (10%,
stratified, seed 0). Labels: Negative=0, Positive=1 (the hub's ids).

Protocol: the epoch is selected on dev (accuracy after each epoch, best kept), the selected model
is scored once on test; test is never used for selection. Median over seeds.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import resolve_data_dir, utf8_errors
from ..hf import load_hub_dataset, load_tokenizer
from .finetune import FinetuneConfig, finetune, load_classifier, predict, tokenize
from .metrics import accuracy
from .registry import Downstream
from .runner import (NOT_RUN, Fitted, NoData, Prepared, TaskData, check_output_dir, default_output_dir, is_score,
                     normalize_model, run_seeds, soft_label_loss_fn, summarize_seeds, train_subset)

LABELS = ("Negative", "Positive")
LOCAL_FOLDER = "imdb-kaushik2020-orig"
HUB_DATASET = "stanfordnlp/imdb"
DEV_FRACTION = 0.1  # of the hub's train split, held out for epoch selection


def clean_review(text: str) -> str:
    """IMDb reviews keep the site's HTML line breaks; they would only cost tokens."""
    return text.replace("<br /><br />", " ").replace("<br />", " ")


def read_imdb_tsv(path: str | os.PathLike) -> dict[str, list]:
    """{"text": [...], "label": [...]} of a `Sentiment<TAB>Text` file.

    Unlike GLUE these files use CSV quoting (a text with quotes is written "...""..."...") so they are
    read with csv's default quoting, which restores the original text. Bad header, field counts or
    labels and files without rows raise ValueError naming the file (and line).
    """
    path = Path(path)
    hint = f"expected a TSV with header Sentiment<TAB>Text and labels {'/'.join(LABELS)}"
    out = {"text": [], "label": []}
    with utf8_errors(path, hint), open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; {hint}")
        if [h.strip().lower() for h in header] != ["sentiment", "text"]:
            raise ValueError(f"{path}: header is {header}; {hint}")
        for row in reader:
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} tab-separated fields, expected 2; {hint}")
            label = row[0].strip().capitalize()
            if label not in LABELS:
                raise ValueError(f"{path}, line {reader.line_num}: label {row[0]!r} is not one of "
                                 f"{', '.join(LABELS)}; {hint}")
            out["text"].append(clean_review(row[1]))
            out["label"].append(LABELS.index(label))
    if not out["label"]:
        raise ValueError(f"{path} has no data rows; {hint}")
    return out


def _as_dataset(columns: dict):
    import datasets

    return datasets.Dataset.from_dict(columns, features=datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.Value("int64")}))


def load_local(data_dir) -> TaskData:
    folder = Path(data_dir) / LOCAL_FOLDER
    files = {s: folder / f"{s}.tsv" for s in ("train", "dev", "test")}
    absent = [p.name for p in files.values() if not p.is_file()]
    if absent:
        raise NoData(f"no {', '.join(absent)} in {folder}")
    splits = {s: _as_dataset(read_imdb_tsv(p)) for s, p in files.items()}
    return TaskData(splits.pop("train"), splits, str(folder))


def load_hub() -> TaskData:
    try:
        dd = load_hub_dataset(HUB_DATASET)
    except Exception as e:  # no network, hub down, ...
        raise NoData(f"hub {HUB_DATASET} unreachable ({type(e).__name__})") from None
    split = dd["train"].train_test_split(test_size=DEV_FRACTION, seed=0, stratify_by_column="label")
    clean = lambda ds: ds.select_columns(["text", "label"]).map(  # noqa: E731
        lambda b: {"text": [clean_review(t) for t in b["text"]]}, batched=True)
    return TaskData(clean(split["train"]), {"dev": clean(split["test"]), "test": clean(dd["test"])},
                    f"hub:{HUB_DATASET} (dev = {DEV_FRACTION:.0%} of train, seed 0)")


def load_imdb(data_dir=None) -> TaskData:
    """Train / dev (selection) / test splits: local files when a data directory is given, else the hub.
    NoData when unavailable, ValueError for malformed files."""
    local = resolve_data_dir(data_dir)
    return load_local(local) if local is not None else load_hub()


@dataclass(frozen=True)
class ImdbTask:
    """IMDb as an eval.runner.Task: the epoch is selected on dev, the selected model scored once on test."""
    name: str = "imdb"
    display: str = "IMDb"

    def load(self, data_dir) -> TaskData:
        return load_imdb(data_dir)

    def prepare(self, data: TaskData, tokenizer, cfg: FinetuneConfig) -> Prepared:
        tok = lambda ds, split: tokenize(ds, tokenizer, ("text",), cfg.max_seq_len,  # noqa: E731
                                         desc=f"tokenising IMDb {split}")
        train = tok(train_subset(data.train, cfg.max_train_examples), "train")
        dev, test = tok(data.evals["dev"], "dev"), tok(data.evals["test"], "test")
        return Prepared(train, {"dev": dev, "test": test},
                        {"train_examples": len(train), "eval_examples": {"dev": len(dev), "test": len(test)}})

    def fit(self, model: str, tokenizer, prep: Prepared, cfg: FinetuneConfig, seed: int, bar) -> Fitted:
        dev, test = prep.extra["dev"], prep.extra["test"]
        acc = lambda m, ds: accuracy(predict(m, tokenizer, ds, cfg)["logits"].argmax(-1),  # noqa: E731
                                     np.asarray(ds["labels"]))
        clf = load_classifier(model, len(LABELS), tokenizer, seed=seed)
        res = finetune(clf, tokenizer, prep.train, cfg, seed, select=lambda m: acc(m, dev), bar=bar,
                       loss_fn=soft_label_loss_fn(prep))
        test_acc = acc(res.model, test)
        return Fitted(res.model, 100.0 * test_acc,
                      {"accuracy": test_acc, "dev_accuracy": res.epoch_scores[res.best_epoch - 1]},
                      res.steps, res.train_time_s,
                      {"dev_accuracy_by_epoch": res.epoch_scores, "selected_epoch": res.best_epoch})


def run_imdb(model: str, cfg: FinetuneConfig | None = None, output_dir=None, data_dir=None, progress: bool = True,
             keep_train_logits: bool = False, soft_from=None):
    """Fine-tune `model` on IMDb for cfg.seeds seeds, selecting the epoch on dev, scoring on test.

    Returns a one-row DataFrame: score (median test accuracy, 0-100), accuracy (median, fraction),
    dev_accuracy (median of the selected epochs' dev accuracy), selected_epochs; score NOT_RUN
    without data. Finished seeds in `output_dir/seed<k>.json` are read back, not rerun.
    keep_train_logits / soft_from: as in eval.glue.run_glue (a teacher for (D) runs / a (D) run from its folder).
    """
    cfg = cfg or FinetuneConfig()
    cfg.validate()
    model = normalize_model(model)
    out = Path(output_dir or default_output_dir(model, "imdb"))  # one task: seed<k>.json beside finetune.json
    pending = any(not (out / f"seed{s}.json").is_file() for s in cfg.seed_list)
    tokenizer = load_tokenizer(model) if pending else None  # checks the model folder before any data is read
    check_output_dir(out, model, cfg, "imdb" if soft_from is None else f"imdb (D) from {normalize_model(soft_from)}")
    run_seeds(ImdbTask(), model, tokenizer, cfg, out, data_dir, progress, keep_train_logits=keep_train_logits,
              soft_from=None if soft_from is None else Path(soft_from))
    df = summarize_imdb(out)
    df.to_csv(out / "summary.csv", index=False)
    return df


def summarize_imdb(output_dir):
    """One-row DataFrame of the finished IMDb runs in `output_dir` (see run_imdb)."""
    return summarize_seeds(output_dir, "imdb", "IMDb", ["accuracy", "dev_accuracy"], lambda rs: {
        "selected_epochs": [r["selected_epoch"] for r in rs], "data": rs[0]["data"],
        "test_examples": (rs[0].get("eval_examples") or {}).get("test")})


def table_cells(results) -> dict:
    """IMDb's Table 2 cells from run_imdb / summarize_imdb output: {"IMDb": test accuracy 0-100 or NOT_RUN, "note"}."""
    rec = results.to_dict("records")[0]
    if not is_score(rec["score"]):
        return {"IMDb": NOT_RUN, "note": ""}
    n, n_test = int(rec["seeds_run"]), rec.get("test_examples")
    # a small test split: its binomial standard error tells a reader how close to a target "close" is
    size = ""
    if n_test and n_test == n_test:  # not NaN (summaries written before test_examples was recorded)
        p = rec["score"] / 100
        size = f" on {int(n_test)} reviews (standard error {100 * (p * (1 - p) / n_test) ** 0.5:.1f} points)"
    return {"IMDb": rec["score"],
            "note": f"IMDb test accuracy{size}, epoch selected on dev; " + (f"median of {n} seeds" if n > 1 else "1 seed")}


def _run_in_study(model, cfg, settings, folder, data_dir, progress, role, soft_from=None) -> None:
    run_imdb(model, cfg, folder, data_dir, progress, keep_train_logits=role == "teacher", soft_from=soft_from)


DOWNSTREAM = Downstream("imdb", _run_in_study, display="IMDb", soft_labels=True, columns=("IMDb",), decimals=2,
                        cells=lambda folder: table_cells(summarize_imdb(folder)))
