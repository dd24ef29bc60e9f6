"""GLUE: TSV formats (header / no header, BOM, string labels, quotes), clear errors for wrong files,
run_glue (learns, regression head, median over seeds, resumable, not-run tasks), the real data files."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tiny_downstream import fixture_data, one_thread, synthetic_rows, tiny_models, write_glue_fixture  # noqa: F401
from tinydistil.eval import glue
from tinydistil.eval.finetune import FinetuneConfig
from tinydistil.eval.glue import TASKS, load_local, parse_tasks, read_glue_tsv, run_glue
from tinydistil.eval.runner import NOT_RUN, median_over_seeds

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(lr=1e-3, batch_size=16, epochs=1, seeds=1)


def _write(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


# ------------------------------------------------------------------ TSV formats
def test_cola_has_no_header(tmp_path):
    p = _write(tmp_path / "dev.tsv", 'gj04\t1\t\tThe sailors rode the "breeze.\ngj04\t0\t*\tHer said she.\n')
    assert read_glue_tsv(p, "cola") == {"sentence": ['The sailors rode the "breeze.', "Her said she."],
                                        "label": [1, 0]}


def test_mrpc_bom_header_and_quotes_verbatim(tmp_path):
    text = ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
            '1\t1\t2\tHe said "it is fine.\t"The pie business does not fit.\n'
            "0\t3\t4\tA b.\tC d.\n")
    got = read_glue_tsv(_write(tmp_path / "dev.tsv", text, bom=True), "mrpc")
    assert got == {"sentence1": ['He said "it is fine.', "A b."],
                   "sentence2": ['"The pie business does not fit.', "C d."], "label": [1, 0]}


def test_sst2_header(tmp_path):
    got = read_glue_tsv(_write(tmp_path / "dev.tsv", "sentence\tlabel\nit 's \"charming\" . \t1\nbleak \t0\n"), "sst2")
    assert got == {"sentence": ["it 's \"charming\" . ", "bleak "], "label": [1, 0]}


def test_stsb_picks_columns_by_name(tmp_path):
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man dances.\tA man is dancing.\t4.750\n"
    got = read_glue_tsv(_write(tmp_path / "dev.tsv", head + row), "stsb")
    assert got == {"sentence1": ["A man dances."], "sentence2": ["A man is dancing."], "label": [4.75]}


@pytest.mark.parametrize("task, header, labels, expected", [
    ("rte", "index\tsentence1\tsentence2\tlabel", ["not_entailment", "entailment", "0", "1"], [1, 0, 0, 1]),
    ("qnli", "index\tquestion\tsentence\tlabel", ["entailment", "not_entailment"], [0, 1]),
    ("wnli", "index\tsentence1\tsentence2\tlabel", ["0", "1", "entailment"], [0, 1, 1]),
])
def test_nli_string_and_int_labels_follow_the_hub(tmp_path, task, header, labels, expected):
    rows = "".join(f"{i}\ta {i}\tb {i}\t{lab}\n" for i, lab in enumerate(labels))
    got = read_glue_tsv(_write(tmp_path / "dev.tsv", header + "\n" + rows), task)
    assert got["label"] == expected and got[TASKS[task].text_columns[0]][1] == "a 1"


def test_mnli_and_qqp_layouts(tmp_path):
    mnli_head = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
                 "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")
    rows = "".join(f"{i}\t1\t1\tfiction\t(\t(\t(\t(\tpremise {i}\thyp {i}\t{g}\t{g}\n"
                   for i, g in enumerate(["entailment", "neutral", "contradiction"]))
    got = read_glue_tsv(_write(tmp_path / "m.tsv", mnli_head + rows), "mnli")
    assert got == {"premise": ["premise 0", "premise 1", "premise 2"], "hypothesis": ["hyp 0", "hyp 1", "hyp 2"],
                   "label": [0, 1, 2]}
    qqp = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t1\t2\tWhy?\tHow?\t1\n"
    assert read_glue_tsv(_write(tmp_path / "q.tsv", qqp), "qqp") == {"question1": ["Why?"], "question2": ["How?"],
                                                                   "label": [1]}


@pytest.mark.parametrize("task, text, phrase", [
    ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n", "line 3: label 'maybe'"),
    ("sst2", "sentence\tlabel\ngood\t2\n", "label '2' is not one of negative, positive"),
    ("stsb", "index\tsentence1\tsentence2\tscore\n0\ta\tb\thigh\n", "score 'high' is not a number"),
    ("stsb", "index\tsentence1\tsentence2\tscore\n0\ta\tb\t7.5\n", "outside STS-B's 0-5 range"),
    ("cola", "gj04\t1\tThe sentence.\n", "line 1: 3 tab-separated fields, expected 4"),
    ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tc\tentailment\n", "line 2: 5 tab-separated fields"),
    ("rte", "index\tpremise\thypothesis\tlabel\n0\ta\tb\tentailment\n", "header lacks column"),
    ("mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n", "has no data rows"),
    ("sst2", "", "is empty"),
    ("cola", "", "has no data rows"),
])
def test_bad_files_raise_naming_the_file(tmp_path, task, text, phrase):
    p = _write(tmp_path / "odd" / "dev.tsv", text)
    with pytest.raises(ValueError) as e:
        read_glue_tsv(p, task)
    msg = str(e.value)
    assert str(p) in msg and phrase in msg and f"GLUE {TASKS[task].display} file" in msg and "\n" not in msg


def test_blank_lines_are_skipped(tmp_path):
    got = read_glue_tsv(_write(tmp_path / "d.tsv", "sentence\tlabel\na\t1\n\nb\t0\n\n"), "sst2")
    assert got["label"] == [1, 0]


# ------------------------------------------------------------------ names, data availability
def test_parse_tasks():
    assert parse_tasks(None) == ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli"]
    assert parse_tasks("CoLA,sst-2,STS-B,cola") == ["cola", "sst2", "stsb"]
    with pytest.raises(ValueError, match="unknown GLUE task 'squad'; valid tasks: cola, mnli, mrpc, qnli, qqp"):
        parse_tasks("cola,squad")


def test_missing_split_is_no_data(tmp_path):
    _write(tmp_path / "glue" / "QNLI" / "dev.tsv", "index\tquestion\tsentence\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(glue.NoData, match="no train.tsv"):
        load_local("qnli", tmp_path)
    with pytest.raises(glue.NoData, match="dev_matched.tsv, dev_mismatched.tsv"):
        load_local("mnli", tmp_path)


def test_data_dir_must_exist(tmp_path):
    with pytest.raises(ValueError, match="does not exist; set --data-dir"):
        glue.resolve_data_dir(tmp_path / "nope")


def test_env_data_dir_and_glue_folder_itself(tmp_path, monkeypatch, fixture_data):
    monkeypatch.setenv("TINYDISTIL_DATA_DIR", str(fixture_data))
    assert len(glue.load_task("sst2").train) == 64
    assert len(load_local("rte", fixture_data / "glue").evals["dev"]) == 32  # data_dir = the glue folder


def test_hub_unreachable_is_not_run_and_asked_once(tmp_path, monkeypatch, tiny_models):
    import datasets

    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("no network")

    monkeypatch.delenv("TINYDISTIL_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    df = run_glue(str(tiny_models["bert"]), "rte,cola", FinetuneConfig(**FAST), tmp_path / "out", progress=False)
    assert list(df["score"]) == [NOT_RUN, NOT_RUN] and len(calls) == 1
    assert all(r.startswith("hub nyu-mll/glue unreachable (ConnectionError)") for r in df["reason"])


# ------------------------------------------------------------------ run_glue
def test_run_glue_learns_and_reports(tmp_path, tiny_models):
    """SST-2-format synthetic task ('good' vs 'bad'): dev accuracy >= 0.9; missing tasks never get a number."""
    data = write_glue_fixture(tmp_path / "data", n_train=300, n_dev=64)
    cfg = FinetuneConfig(lr=2e-3, batch_size=16, epochs=4, seeds=1)
    df = run_glue(str(tiny_models["bert"]), "sst2,cola,stsb", cfg, tmp_path / "out", data, progress=False)
    rows = df.set_index("task")
    assert rows.loc["sst2", "score"] >= 90 and rows.loc["sst2", "accuracy"] == rows.loc["sst2", "score"] / 100
    assert rows.loc["cola", "score"] == NOT_RUN and rows.loc["cola", "matthews_correlation"] == NOT_RUN
    assert rows.loc["cola", "accuracy"] == NOT_RUN and "no train.tsv, dev.tsv" in rows.loc["cola", "reason"]
    assert np.isfinite(rows.loc["stsb", "pearson"]) and np.isfinite(rows.loc["stsb", "spearmanr"])
    assert rows.loc["stsb", "score"] == pytest.approx(50 * (rows.loc["stsb", "pearson"] + rows.loc["stsb", "spearmanr"]))
    rec = json.loads((tmp_path / "out" / "sst2" / "seed0.json").read_text())
    assert rec["hyperparameters"]["lr"] == 2e-3 and rec["seed"] == 0 and rec["train_examples"] == 300
    assert rec["eval_examples"] == {"dev": 64} and rec["wall_time_s"] > 0 and rec["model_info"]["layers"] == 2
    assert (tmp_path / "out" / "summary.csv").is_file()


def test_run_glue_distilbert_pairs(tmp_path, tiny_models, fixture_data):
    """DistilBERT has no token_type_ids: sentence pairs (RTE) must still run."""
    df = run_glue(str(tiny_models["distilbert"]), ["rte"], FinetuneConfig(**FAST), tmp_path / "o", fixture_data,
                  progress=False)
    assert 0 <= df["score"].iloc[0] <= 100
    assert json.loads((tmp_path / "o" / "rte" / "seed0.json").read_text())["model_info"]["model_type"] == "distilbert"


def test_mnli_matched_scores_mismatched_reported(tmp_path, tiny_models):
    head = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
            "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")
    names = ["entailment", "neutral", "contradiction"]
    for f, seed in (("train.tsv", 1), ("dev_matched.tsv", 2), ("dev_mismatched.tsv", 3)):
        rows = "".join(f"{i}\t1\t1\tg\t(\t(\t(\t(\t{s}\tthe day\t{names[y]}\t{names[y]}\n"
                       for i, (s, y) in enumerate(synthetic_rows(24, seed)))
        _write(tmp_path / "glue" / "MNLI" / f, head + rows)
    df = run_glue(str(tiny_models["bert"]), ["mnli"], FinetuneConfig(**FAST), tmp_path / "out", tmp_path,
                  progress=False)
    row = df.iloc[0]
    assert row["score"] == pytest.approx(100 * row["accuracy"])
    assert 0 <= row["accuracy_mismatched"] <= 1
    assert json.loads((tmp_path / "out" / "mnli" / "seed0.json").read_text())["eval_examples"] == \
           {"matched": 24, "mismatched": 24}


def test_median_over_seeds_hand_example():
    results = [{"seed": s, "score": sc, "metrics": {"accuracy": a, "f1": f}}
               for s, sc, a, f in [(0, 70.0, 0.7, 0.1), (1, 50.0, 0.5, 0.9), (2, 90.0, 0.9, 0.3), (3, 60.0, 0.6, 0.2)]]
    m = median_over_seeds(results)
    assert m["score"] == 65.0 and m["accuracy"] == pytest.approx(0.65) and m["f1"] == pytest.approx(0.25)
    assert m["seeds_run"] == 4 and m["seed_scores"] == [70.0, 50.0, 90.0, 60.0]
    assert median_over_seeds(results[:3])["score"] == 70.0


def test_run_glue_median_from_seed_files(tmp_path, tiny_models, fixture_data, monkeypatch):
    """The table's score is the median of the per-seed scores in the JSON files."""
    scores = iter([10.0, 40.0, 20.0])
    monkeypatch.setattr(glue, "task_score", lambda task, m: next(scores))
    df = run_glue(str(tiny_models["bert"]), ["sst2"], FinetuneConfig(**{**FAST, "seeds": 3}), tmp_path / "o",
                  fixture_data, progress=False)
    assert df["score"].iloc[0] == 20.0 and df["seed_scores"].iloc[0] == [10.0, 40.0, 20.0]


def test_run_glue_is_resumable(tmp_path, tiny_models, fixture_data, monkeypatch):
    """A rerun skips finished (task, seed) runs; more seeds only run the new ones; other settings are refused."""
    calls = []
    real = glue.finetune
    monkeypatch.setattr(glue, "finetune", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    model, out = str(tiny_models["bert"]), tmp_path / "out"
    cfg = FinetuneConfig(**{**FAST, "seeds": 2})
    first = run_glue(model, "sst2,rte", cfg, out, fixture_data, progress=False)
    assert calls == [0, 1, 0, 1]
    files = sorted(out.glob("*/seed*.json"))
    mtimes = [p.stat().st_mtime_ns for p in files]
    again = run_glue(model, "sst2,rte", cfg, out, fixture_data, progress=False)
    assert calls == [0, 1, 0, 1] and [p.stat().st_mtime_ns for p in files] == mtimes
    assert again[["task", "score"]].equals(first[["task", "score"]])
    run_glue(model, "sst2", FinetuneConfig(**{**FAST, "seeds": 3}), out, fixture_data, progress=False)
    assert calls == [0, 1, 0, 1, 2]
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        run_glue(model, "sst2", FinetuneConfig(**{**FAST, "lr": 2e-3}), out, fixture_data, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(model\)"):
        run_glue(str(tiny_models["distilbert"]), "sst2", cfg, out, fixture_data, progress=False)


def test_run_glue_refuses_foreign_folder(tmp_path, tiny_models, fixture_data):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no tinydistil fine-tuning results"):
        run_glue(str(tiny_models["bert"]), "sst2", FinetuneConfig(**FAST), tmp_path, fixture_data, progress=False)


def test_max_train_examples_same_subset_for_every_model(tmp_path, tiny_models, fixture_data, monkeypatch):
    seen = []
    real = glue.finetune
    monkeypatch.setattr(glue, "finetune", lambda *a, **k: seen.append(a[2]["input_ids"]) or real(*a, **k))
    cfg = FinetuneConfig(**{**FAST, "max_train_examples": 10})
    for i, kind in enumerate(("bert", "bert")):
        run_glue(str(tiny_models[kind]), "sst2", FinetuneConfig(**{**FAST, "max_train_examples": 10, "seed": i}),
                 tmp_path / f"o{i}", fixture_data, progress=False)
    assert len(seen[0]) == 10 and seen[0] == seen[1]
    rec = json.loads((tmp_path / "o0" / "sst2" / "seed0.json").read_text())
    assert rec["train_examples"] == 10 and rec["hyperparameters"]["max_train_examples"] == cfg.max_train_examples


# ------------------------------------------------------------------ the real files
def _real_data() -> Path | None:
    for p in (ROOT.parent / "shared" / "data", ROOT / ".." / "shared" / "data"):
        if (p / "glue").is_dir():
            return p
    return None


REAL = _real_data()
# rows per split from shared/data/README.md (train / dev); label counts from each folder's SOURCE.txt
REAL_COUNTS = {"cola": (8551, {"dev": 1043}), "sst2": (67349, {"dev": 872}), "mrpc": (3668, {"dev": 408}),
               "stsb": (5749, {"dev": 1500}), "rte": (2490, {"dev": 277}), "wnli": (635, {"dev": 71})}
REAL_DEV_LABELS = {"cola": {1: 721, 0: 322}, "sst2": {1: 444, 0: 428}, "mrpc": {1: 279, 0: 129}}


@pytest.mark.skipif(REAL is None, reason="no shared/data next to the repository")
def test_real_glue_files_load():
    from collections import Counter

    loaded = []
    for name, task in TASKS.items():
        folder = glue.task_folder(REAL, task)
        try:
            data = load_local(task, REAL)
        except glue.NoData:
            # a split present on its own must still parse (QNLI has dev only)
            for _, f, _ in task.evals:
                if (folder / f).is_file() and name == "qnli":
                    labels = read_glue_tsv(folder / f, task)["label"]
                    assert len(labels) == 5463 and Counter(labels) == {0: 2702, 1: 2761}
            continue
        loaded.append(name)
        if name in REAL_COUNTS:
            assert (len(data.train), {k: len(v) for k, v in data.evals.items()}) == REAL_COUNTS[name], name
        if name in REAL_DEV_LABELS:
            assert Counter(data.evals["dev"]["label"]) == REAL_DEV_LABELS[name], name
        for split, pq in (("dev", "validation"), ("train", "train")):  # hub exports beside the TSVs
            path = folder / f"hf-parquet_{pq}.parquet"
            if path.is_file():
                import pandas as pd

                hub = pd.read_parquet(path)
                ds = data.evals["dev"] if split == "dev" else data.train
                assert hub["label"].tolist() == ds["label"], (name, split)
                assert all(hub[c].tolist() == ds[c] for c in task.text_columns), (name, split)
    assert set(REAL_COUNTS) <= set(loaded)
    mrpc = load_local("mrpc", REAL).evals["dev"][0]
    assert mrpc["sentence2"].startswith('"The foodservice pie business')  # quote kept verbatim
    stsb = load_local("stsb", REAL).evals["dev"][0]
    assert (stsb["sentence1"], stsb["label"]) == ("A man with a hard hat is dancing.", 5.0)


@pytest.mark.skipif(REAL is None or not (REAL / "imdb-kaushik2020-orig").is_dir(), reason="no shared IMDb copy")
def test_real_imdb_files_load():
    from collections import Counter

    from tinydistil.eval.imdb import load_local as imdb_local

    data = imdb_local(REAL)
    assert (len(data.train), len(data.evals["dev"]), len(data.evals["test"])) == (1707, 245, 488)
    assert Counter(data.train["label"]) == {1: 856, 0: 851} and Counter(data.evals["test"]["label"]) == {1: 245, 0: 243}
    assert all("<br />" not in t for t in data.evals["dev"]["text"])
    assert any('"Pulp Fiction"' in t for t in data.evals["dev"]["text"])  # CSV quoting undone: "" -> "


def test_majority_baseline_hand_worked():
    """The train split's most frequent label for every dev example, scored as Table 1 (worked by hand)."""
    import datasets

    from tinydistil.eval.runner import TaskData

    def data(train, dev):
        return TaskData(datasets.Dataset.from_dict({"label": train}), {"dev": datasets.Dataset.from_dict(
            {"label": dev})}, "fixture")

    sst2 = glue.majority_baseline("sst2", data([1, 1, 0], [1, 0, 0, 1]))
    assert (sst2["label"], sst2["score"], sst2["accuracy"], sst2["eval_examples"]) == ("positive", 50.0, 50.0, 4)
    # MRPC: all "equivalent" on [1, 0, 1, 1]: accuracy 3/4, F1 = 2*3 / (2*3 + 1) = 6/7; score = their mean
    mrpc = glue.majority_baseline("mrpc", data([0, 1, 1], [1, 0, 1, 1]))
    assert mrpc["score"] == pytest.approx(100 * (0.75 + 6 / 7) / 2)
    assert glue.majority_baseline("cola", data([1, 1, 0], [1, 0]))["score"] == 0.0  # MCC of a constant
    assert glue.majority_baseline("rte", data([1, 1, 0], [0, 0, 1]))["label"] == "not_entailment"
    stsb = glue.majority_baseline("stsb", data([1.0, 2.5], [3.0, 4.0]))
    assert stsb["score"] is None and stsb["label"] is None  # no classes, no correlation


def test_write_majority_from_files_and_missing_tasks(tmp_path, fixture_data):
    from tinydistil.study.tables import write_majority

    df = write_majority(tmp_path / "m.csv", fixture_data, "sst2,mnli")
    rows = {r["Task"]: r for r in df.to_dict("records")}
    dev = read_glue_tsv(fixture_data / "glue" / "SST-2" / "dev.tsv", "sst2")["label"]
    train = read_glue_tsv(fixture_data / "glue" / "SST-2" / "train.tsv", "sst2")["label"]
    top = [lab for lab in set(train) if train.count(lab) == max(map(train.count, train))]  # ties: any of them
    assert any(float(rows["SST-2"]["Score"]) == pytest.approx(100 * dev.count(lab) / len(dev), abs=0.05)
               for lab in top)
    assert rows["MNLI"]["Score"].startswith("not run")  # the fixture has no MNLI files
    assert (tmp_path / "m.csv").read_text().startswith("Task,Majority label,Score")
