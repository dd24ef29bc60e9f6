"""tools/squad_lr_probe.py: its held-out questions share no article (or, offline, no paragraph) with the study's
training subset and none with the questions the study scores; its SQuAD file writer round-trips through the reader."""
import importlib.util
import json
from pathlib import Path

import datasets

from tinydistil.eval.runner import train_subset
from tinydistil.eval.squad_files import read_squad_json, split_articles

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("squad_lr_probe", ROOT / "tools" / "squad_lr_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def _rows(articles=30, paragraphs=2, per_paragraph=2):
    rows = []
    for a in range(articles):
        for k in range(paragraphs):
            context = f"Article {a} paragraph {k} says that the answer is word{a}x{k} here."
            for q in range(per_paragraph):
                rows.append({"id": f"{a}-{k}-{q}", "title": f"T{a}", "context": context, "question": f"What {q}?",
                             "answers": {"text": [f"word{a}x{k}"], "answer_start": [context.index(f"word{a}x{k}")]}})
    return rows


def _data_dir(tmp_path, train=None, dev=None):
    folder = tmp_path / "data" / "squad-v1.1"
    folder.mkdir(parents=True)
    for name, rows in (("train-v1.1.json", train), ("dev-v1.1.json", dev)):
        if rows is not None:
            (folder / name).write_text(json.dumps(probe.squad_json(rows)))
    return tmp_path / "data"


def test_the_squad_writer_round_trips(tmp_path):
    rows = _rows()
    assert read_squad_json(_data_dir(tmp_path, train=rows) / "squad-v1.1" / "train-v1.1.json") == rows


def test_with_a_train_file_the_heldout_articles_lie_outside_the_training_subset(tmp_path):
    rows = _rows()
    split = probe.heldout_folder(_data_dir(tmp_path, train=rows, dev=_rows(3)), 20, 15, tmp_path / "out", 0.5)
    held = read_squad_json(tmp_path / "out" / "squad-v1.1" / "dev-v1.1.json")
    used = train_subset(datasets.Dataset.from_list(rows), 20)  # what run_squad trains on (the same function)
    assert split["disjoint_by"] == "article" and len(held) == 15
    assert not {r["title"] for r in held} & set(used["title"]) and not {r["id"] for r in held} & set(used["id"])
    # the training file the probe's runs read holds the same rows in the same order (so their subset is the study's)
    assert read_squad_json(tmp_path / "out" / "squad-v1.1" / "train-v1.1.json") == rows


def test_offline_the_heldout_paragraphs_lie_outside_the_training_subset_of_the_fine_tuning_half(tmp_path):
    dev = _rows(articles=6, paragraphs=10, per_paragraph=3)  # every article of the half gets a training question
    split = probe.heldout_folder(_data_dir(tmp_path, dev=dev), 40, 1000, tmp_path / "out", 0.5)
    half = split_articles(dev, 0.5)[0]  # the rows squad.load_local fine-tunes on without a train file
    used = train_subset(datasets.Dataset.from_list(half), 40)
    held = read_squad_json(tmp_path / "out" / "squad-v1.1" / "dev-v1.1.json")
    assert split["disjoint_by"] == "paragraph" and held and split["heldout_questions"] == len(held)
    assert not {r["context"] for r in held} & set(used["context"])
    assert {r["title"] for r in held} <= {r["title"] for r in half}  # never the articles the study scores
    assert read_squad_json(tmp_path / "out" / "squad-v1.1" / "train-v1.1.json") == half


def test_a_tie_goes_to_the_lower_lr():
    runs = [{"lr": 5e-5, "heldout_f1": 40.0}, {"lr": 1e-4, "heldout_f1": 51.0}, {"lr": 2e-4, "heldout_f1": 52.5}]
    assert probe.best(runs, tie=2.0)["lr"] == 1e-4
    assert probe.best(runs, tie=1.0)["lr"] == 2e-4
