"""tools/squad_lr_probe.py: its held-out questions come from train articles the study's training subset never
touches, and its SQuAD file writer round-trips through the reader."""
import importlib.util
import json
from pathlib import Path

import datasets

from tinydistil.eval.runner import train_subset
from tinydistil.eval.squad_files import read_squad_json

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("squad_lr_probe", ROOT / "tools" / "squad_lr_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def _train_file(tmp_path, articles=30, per_article=4):
    rows = []
    for a in range(articles):
        context = f"Article {a} says that the answer is word{a} here."
        for q in range(per_article):
            rows.append({"id": f"{a}-{q}", "title": f"T{a}", "context": context, "question": f"What {q} in {a}?",
                         "answers": {"text": [f"word{a}"], "answer_start": [context.index(f"word{a}")]}})
    path = tmp_path / "train-v1.1.json"
    path.write_text(json.dumps(probe.squad_json(rows)))
    return path, rows


def test_the_squad_writer_round_trips(tmp_path):
    path, rows = _train_file(tmp_path)
    assert read_squad_json(path) == rows


def test_heldout_questions_lie_outside_the_articles_of_the_training_subset(tmp_path):
    path, rows = _train_file(tmp_path)
    split = probe.heldout_folder(path, questions=20, heldout=15, dest=tmp_path / "data")
    held = read_squad_json(tmp_path / "data" / "squad-v1.1" / "dev-v1.1.json")
    used = train_subset(datasets.Dataset.from_list(rows), 20)  # what run_squad trains on (the same function)
    assert len(held) == 15 and not {r["title"] for r in held} & set(used["title"])
    assert split["heldout_questions"] == 15 and split["pool_questions"] == len(rows) - 4 * split["train_articles_used"]
    # the training file the probe's runs read is the real one, unchanged (so their subset is the study's)
    assert read_squad_json(tmp_path / "data" / "squad-v1.1" / "train-v1.1.json") == rows


def test_a_tie_goes_to_the_lower_lr():
    runs = [{"lr": 5e-5, "heldout_f1": 40.0}, {"lr": 1e-4, "heldout_f1": 51.0}, {"lr": 2e-4, "heldout_f1": 52.5}]
    assert probe.best(runs, tie=2.0)["lr"] == 1e-4
    assert probe.best(runs, tie=1.0)["lr"] == 2e-4
