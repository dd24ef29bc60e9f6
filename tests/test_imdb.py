"""IMDb: the Sentiment/Text TSV (CSV quoting, <br />), errors naming the file, the hub's dev carve-out,
epoch selection on dev with the score on test, resumability."""
import json

import pytest

from tiny_downstream import one_thread, tiny_models, write_imdb_fixture  # noqa: F401
from tinydistil.eval import imdb
from tinydistil.eval.finetune import FinetuneConfig
from tinydistil.eval.runner import NOT_RUN
from tinydistil.eval.imdb import read_imdb_tsv, run_imdb

FAST = dict(lr=1e-3, batch_size=16, epochs=2, seeds=1)


def test_read_imdb_tsv(tmp_path):
    p = tmp_path / "dev.tsv"
    p.write_text('Sentiment\tText\nNegative\t"So bad. ""Pulp Fiction"" was robbed.<br /><br />Awful."\n'
                 "Positive\tLoved it.<br />Really.\n")
    assert read_imdb_tsv(p) == {"text": ['So bad. "Pulp Fiction" was robbed. Awful.', "Loved it. Really."],
                                "label": [0, 1]}


@pytest.mark.parametrize("text, phrase", [
    ("Sentiment\tText\nMixed\tso-so\n", "line 2: label 'Mixed' is not one of Negative, Positive"),
    ("label\ttext\tid\nPositive\tok\t1\n", "header is ['label', 'text', 'id']"),
    ("Sentiment\tText\nPositive\tok\textra\n", "line 2: 3 tab-separated fields, expected 2"),
    ("Sentiment\tText\n", "has no data rows"),
    ("", "is empty"),
])
def test_bad_imdb_files(tmp_path, text, phrase):
    p = tmp_path / "train.tsv"
    p.write_text(text)
    with pytest.raises(ValueError) as e:
        read_imdb_tsv(p)
    assert str(p) in str(e.value) and phrase in str(e.value)


def test_hub_dev_is_carved_from_train(monkeypatch):
    """Hub path: dev comes out of train (stratified, disjoint), test is the hub's test split untouched."""
    import datasets

    def fake(name, *a, **k):
        assert name == "stanfordnlp/imdb"
        feats = datasets.Features({"text": datasets.Value("string"),
                                   "label": datasets.ClassLabel(names=["neg", "pos"])})
        mk = lambda tag, n: datasets.Dataset.from_dict(  # noqa: E731
            {"text": [f"{tag} {i}<br />x" for i in range(n)], "label": [i % 2 for i in range(n)]}, features=feats)
        return datasets.DatasetDict({"train": mk("train", 200), "test": mk("test", 50), "unsupervised": mk("u", 5)})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    data = imdb.load_hub()
    train, dev, test = data.train, data.evals["dev"], data.evals["test"]
    assert (len(train), len(dev), len(test)) == (180, 20, 50)
    assert not set(train["text"]) & set(dev["text"]) and all(t.startswith("test") for t in test["text"])
    assert sum(dev["label"]) == 10 and "<br />" not in train["text"][0]


def test_hub_unreachable_is_not_run(tmp_path, monkeypatch, tiny_models):
    import datasets

    monkeypatch.delenv("TINYDISTIL_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))
    df = run_imdb(str(tiny_models["bert"]), FinetuneConfig(**FAST), tmp_path / "o", progress=False)
    assert df["score"].iloc[0] == NOT_RUN and df["accuracy"].iloc[0] == NOT_RUN
    assert "stanfordnlp/imdb unreachable" in df["reason"].iloc[0]


def test_run_imdb_selects_on_dev_and_scores_test(tmp_path, tiny_models, monkeypatch):
    """The dev set is evaluated after every epoch (selection); test exactly once per seed, after training."""
    sizes = []
    real = imdb.predict
    monkeypatch.setattr(imdb, "predict", lambda m, t, ds, c: sizes.append(len(ds)) or real(m, t, ds, c))
    data = write_imdb_fixture(tmp_path / "d", n_train=64, n_dev=32, n_test=20)
    cfg = FinetuneConfig(**{**FAST, "epochs": 3, "seeds": 2})
    df = run_imdb(str(tiny_models["distilbert"]), cfg, tmp_path / "o", data, progress=False)
    assert sizes == [32, 32, 32, 20] * 2  # dev (32 reviews) x 3 epochs, then test (20) once
    recs = [json.loads((tmp_path / "o" / f"seed{s}.json").read_text()) for s in (0, 1)]
    for r in recs:
        assert len(r["dev_accuracy_by_epoch"]) == 3
        best = max(r["dev_accuracy_by_epoch"])
        assert r["selected_epoch"] == r["dev_accuracy_by_epoch"].index(best) + 1 and r["metrics"]["dev_accuracy"] == best
        assert r["score"] == 100 * r["metrics"]["accuracy"] and r["eval_examples"] == {"dev": 32, "test": 20}
    row = df.iloc[0]
    assert row["score"] == pytest.approx(sum(r["score"] for r in recs) / 2)  # median of two = mean
    assert row["selected_epochs"] == [r["selected_epoch"] for r in recs]
    # resumable: nothing runs again
    sizes.clear()
    again = run_imdb(str(tiny_models["distilbert"]), cfg, tmp_path / "o", data, progress=False)
    assert sizes == [] and again["score"].iloc[0] == row["score"]


def test_run_imdb_learns(tmp_path, tiny_models):
    data = write_imdb_fixture(tmp_path / "d", n_train=300, n_dev=32, n_test=64)
    cfg = FinetuneConfig(lr=2e-3, batch_size=16, epochs=4, seeds=1)
    df = run_imdb(str(tiny_models["bert"]), cfg, tmp_path / "o", data, progress=False)
    assert df["score"].iloc[0] >= 90
