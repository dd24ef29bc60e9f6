"""Tiny random models and fixture data for the downstream tests (GLUE, IMDb, notebooks 02/03).

Models: 2-layer, 32-wide BERT / DistilBERT (~40 K parameters) with a WordPiece tokenizer trained by
tinydistil.teacher.train_tokenizer on the fixture words. Data: a learnable synthetic sentiment task
(a sentence is positive iff it contains "good") written in GLUE / IMDb file formats.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM

from tinydistil.teacher import train_tokenizer

FILLER = ("the cat dog sat on mat a big small red blue house tree river runs over under bird song day "
          "movie film story actor plot scene").split()


def sentence(rng: random.Random, label: int, n: int | None = None) -> str:
    """A filler sentence with "good" (label 1) or "bad" (label 0) at a random position."""
    words = [rng.choice(FILLER) for _ in range(n or rng.randint(3, 9))]
    words.insert(rng.randrange(len(words) + 1), "good" if label else "bad")
    return " ".join(words)


def corpus(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng, i % 2) for i in range(n)] + ["entailment not_entailment positive negative ."] * 5


def save_tiny_model(folder: Path, kind: str = "bert", vocab_delta: int = 0, with_tokenizer: bool = True) -> Path:
    """A random tiny masked LM + tokenizer saved in `folder` (kind: bert | distilbert)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(iter(corpus()), 120, folder)
    if not with_tokenizer:
        for p in folder.iterdir():
            p.unlink()
    torch.manual_seed(0)
    vocab = len(tok) + vocab_delta
    if kind == "bert":
        model = BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, intermediate_size=64,
                                           max_position_embeddings=64, pad_token_id=tok.pad_token_id))
    else:
        model = DistilBertForMaskedLM(DistilBertConfig(vocab_size=vocab, dim=32, n_layers=1, n_heads=2,
                                                       hidden_dim=64, max_position_embeddings=64,
                                                       pad_token_id=tok.pad_token_id))
    model.save_pretrained(folder)
    return folder


def synthetic_rows(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(sentence(rng, label), label) for label in (rng.randint(0, 1) for _ in range(n))]


def write_glue_fixture(root: Path, n_train: int = 64, n_dev: int = 32) -> Path:
    """<root>/glue/{SST-2,RTE,STS-B}/{train,dev}.tsv in GLUE formats, synthetic but learnable."""
    root = Path(root)
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        rows = synthetic_rows(n, seed)
        sst = root / "glue" / "SST-2"
        sst.mkdir(parents=True, exist_ok=True)
        (sst / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s} \t{y}\n" for s, y in rows))
        rte = root / "glue" / "RTE"
        rte.mkdir(parents=True, exist_ok=True)
        names = ("entailment", "not_entailment")
        (rte / f"{split}.tsv").write_text("index\tsentence1\tsentence2\tlabel\n" + "".join(
            f"{i}\t{s}\tthe {'good' if y else 'bad'} day\t{names[1 - y]}\n" for i, (s, y) in enumerate(rows)))
        sts = root / "glue" / "STS-B"
        sts.mkdir(parents=True, exist_ok=True)
        head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        (sts / f"{split}.tsv").write_text(head + "".join(
            f"{i}\tmain\tx\t2012\t{i:04d}\tnone\tnone\t{s}\tthe good day\t{5.0 * y:.3f}\n"
            for i, (s, y) in enumerate(rows)))
    return root


def write_imdb_fixture(root: Path, n_train: int = 64, n_dev: int = 32, n_test: int = 32) -> Path:
    """<root>/imdb-kaushik2020-orig/{train,dev,test}.tsv (header Sentiment<TAB>Text, CSV quoting)."""
    folder = Path(root) / "imdb-kaushik2020-orig"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 3), ("dev", n_dev, 4), ("test", n_test, 5)):
        lines = ["Sentiment\tText"]
        for s, y in synthetic_rows(n, seed):
            lines.append(f"{'Positive' if y else 'Negative'}\t{s}<br /><br />the end")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return Path(root)


# ------------------------------------------------------------------ fixtures (import them into a test module)
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run ~100x slower with 2 intra-op threads when another job holds the cores (OpenMP
    spin-waits); one thread keeps these tests at well under a second each."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{"bert": 2-layer BERT, "distilbert": 1-layer DistilBERT, "no_tokenizer": BERT without tokenizer files,
    "small_vocab": BERT with 10 embeddings fewer than its tokenizer} (folders)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {"bert": save_tiny_model(root / "bert"),
            "distilbert": save_tiny_model(root / "distilbert", "distilbert"),
            "no_tokenizer": save_tiny_model(root / "no_tokenizer", with_tokenizer=False),
            "small_vocab": save_tiny_model(root / "small_vocab", vocab_delta=-10)}


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory):
    """A data directory with glue/{SST-2,RTE,STS-B} (64 train / 32 dev) and imdb-kaushik2020-orig."""
    root = tmp_path_factory.mktemp("fixture_data")
    write_glue_fixture(root)
    write_imdb_fixture(root)
    return root


def squad_json(n_articles: int = 6, paragraphs: int = 3, seed: int = 3, context_words: int = 30) -> dict:
    """A SQuAD v1.1-format dict: filler contexts holding "good" once; each question asks for it (gold answers
    "good" and, for a second annotator, "good" plus the word after it when there is one)."""
    rng = random.Random(seed)
    data = []
    for a in range(n_articles):
        paras = []
        for p in range(paragraphs):
            words = [rng.choice(FILLER) for _ in range(context_words)]
            pos = rng.randrange(context_words)
            words.insert(pos, "good")
            context = " ".join(words)
            start = len(" ".join(words[:pos])) + (1 if pos else 0)
            answers = [{"answer_start": start, "text": "good"}]
            if pos + 1 < len(words):
                answers.append({"answer_start": start, "text": f"good {words[pos + 1]}"})
            paras.append({"context": context, "qas": [
                {"id": f"a{a}p{p}q{q}", "question": f"the {'good' if q else 'movie'} ?", "answers": answers}
                for q in range(2)]})
        data.append({"title": f"article_{a}", "paragraphs": paras})
    return {"version": "1.1", "data": data}


def write_squad_fixture(root: Path, **kw) -> Path:
    """<root>/squad-v1.1/dev-v1.1.json (dev only, as in ../shared/data)."""
    import json

    folder = Path(root) / "squad-v1.1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dev-v1.1.json").write_text(json.dumps(squad_json(**kw)))
    return Path(root)
