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
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from .finetune import FinetuneConfig
from .glue import (NOT_RUN, NoData, TaskData, _write_json, check_output_dir, default_output_dir, model_description,
                   normalize_model, resolve_data_dir, summarize_seeds)
from .metrics import accuracy

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
    with open(path, encoding="utf-8-sig", newline="") as f:
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
    import datasets

    try:
        dd = datasets.load_dataset(HUB_DATASET)
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


def run_imdb(model: str, cfg: FinetuneConfig | None = None, output_dir=None, data_dir=None, progress: bool = True):
    """Fine-tune `model` on IMDb for cfg.seeds seeds, selecting the epoch on dev, scoring on test.

    Returns a one-row DataFrame: score (median test accuracy, 0-100), accuracy (median, fraction),
    dev_accuracy (median of the selected epochs' dev accuracy), selected_epochs; score NOT_RUN
    without data. Finished seeds in `output_dir/seed<k>.json` are read back, not rerun.
    """
    from tqdm.auto import tqdm

    from .finetune import finetune, load_classifier, load_tokenizer, num_updates, predict, tokenize

    cfg = cfg or FinetuneConfig()
    cfg.validate()
    model = normalize_model(model)
    out = Path(output_dir or default_output_dir(model, "imdb"))
    check_output_dir(out, model, cfg, "imdb")
    folder = out  # one task: seed<k>.json sit next to finetune.json
    todo = [s for s in cfg.seed_list if not (folder / f"seed{s}.json").is_file()]
    if todo:
        tokenizer = load_tokenizer(model)  # checks the model folder before any data is read
        folder.mkdir(exist_ok=True)
        try:
            data = load_imdb(data_dir)
        except NoData as e:
            _write_json(folder / "status.json", {"task": "imdb", "status": NOT_RUN, "reason": str(e)})
            todo = []
    if todo:
        (folder / "status.json").unlink(missing_ok=True)
        train = data.train
        if cfg.max_train_examples is not None and cfg.max_train_examples < len(train):
            train = train.shuffle(seed=0).select(range(cfg.max_train_examples))  # same subset for every run
        tok = lambda ds, split: tokenize(ds, tokenizer, ("text",), cfg.max_seq_len,  # noqa: E731
                                         desc=f"tokenising IMDb {split}")
        train_t, dev_t, test_t = tok(train, "train"), tok(data.evals["dev"], "dev"), tok(data.evals["test"], "test")
        dev_labels, test_labels = np.asarray(dev_t["labels"]), np.asarray(test_t["labels"])
        with tqdm(total=len(todo) * num_updates(len(train_t), cfg), disable=not progress, desc="IMDb",
                  unit="upd") as bar:
            for seed in todo:
                bar.set_description(f"IMDb seed {seed}")
                t0 = time.time()
                clf = load_classifier(model, len(LABELS), tokenizer, seed=seed)
                dev_acc = lambda m: accuracy(predict(m, tokenizer, dev_t, cfg)["logits"].argmax(-1), dev_labels)  # noqa: E731
                res = finetune(clf, tokenizer, train_t, cfg, seed, select=dev_acc, bar=bar)
                test_acc = accuracy(predict(res.model, tokenizer, test_t, cfg)["logits"].argmax(-1), test_labels)
                _write_json(folder / f"seed{seed}.json", {
                    "task": "imdb", "seed": seed, "score": 100.0 * test_acc,
                    "metrics": {"accuracy": test_acc, "dev_accuracy": res.epoch_scores[res.best_epoch - 1]},
                    "dev_accuracy_by_epoch": res.epoch_scores, "selected_epoch": res.best_epoch, "model": model,
                    "model_info": model_description(res.model), "hyperparameters": dataclasses.asdict(cfg),
                    "train_examples": len(train_t), "eval_examples": {"dev": len(dev_t), "test": len(test_t)},
                    "updates": res.steps, "train_time_s": round(res.train_time_s, 1),
                    "wall_time_s": round(time.time() - t0, 1), "data": data.source})
                bar.set_postfix(test_acc=round(test_acc, 4), refresh=False)
    df = summarize_imdb(out)
    df.to_csv(out / "summary.csv", index=False)
    return df


def summarize_imdb(output_dir):
    """One-row DataFrame of the finished IMDb runs in `output_dir` (see run_imdb)."""
    return summarize_seeds(output_dir, "imdb", "IMDb", ["accuracy", "dev_accuracy"], lambda rs: {
        "selected_epochs": [r["selected_epoch"] for r in rs], "data": rs[0]["data"]})
