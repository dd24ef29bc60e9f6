"""Corpus loading, tokenisation / packing and deterministic batching."""
import random
import time
from collections import Counter

import datasets
import pytest
import torch

from tinydistil.data import Batches, load_corpus, make_batches, token_counts, tokenize_corpus
from tinydistil.teacher import train_tokenizer

WORDS = ("the cat dog sat on mat a big small red blue house tree river runs quickly slowly over under bird "
         "sings song night day sun moon star light dark green").split()


def _lines(n=300, seed=0, long_every=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(40, 60) if long_every and i % long_every == 0 else rng.randint(1, 14)
        out.append(" ".join(rng.choice(WORDS) for _ in range(k)))
    return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(iter(_lines(400, seed=1)), 120, tmp_path_factory.mktemp("tok"))


def _stream(tok, lines):
    """The independent expectation: every line's ids followed by [SEP], concatenated."""
    out = []
    for line in lines:
        out += tok.encode(line, add_special_tokens=False) + [tok.sep_token_id]
    return out


# ------------------------------------------------------------------ tokenize_corpus
@pytest.mark.parametrize("block_size", [8, 16, 33])
def test_packing_blocks(tok, block_size):
    lines = _lines(300)
    out = tokenize_corpus(datasets.Dataset.from_dict({"text": lines}), tok, block_size, packing=True)
    assert out.column_names == ["input_ids"]
    blocks = out["input_ids"]
    stream = _stream(tok, lines)
    assert len(blocks) == len(stream) // (block_size - 2)
    body = []
    for b in blocks:
        assert len(b) == block_size
        assert b[0] == tok.cls_token_id and b[-1] == tok.sep_token_id
        assert tok.pad_token_id not in b
        assert tok.cls_token_id not in b[1:]
        body += b[1:-1]
    # the blocks' bodies, concatenated, are the [SEP]-joined stream minus a dropped remainder
    assert body == stream[:len(body)]
    assert len(stream) - len(body) < block_size - 2


def test_sentence_mode_one_sequence_per_line(tok):
    block_size = 16
    lines = _lines(120, long_every=10)
    out = tokenize_corpus(datasets.Dataset.from_dict({"text": lines}), tok, block_size, packing=False)
    seqs = out["input_ids"]
    assert len(seqs) == len(lines)
    truncated = 0
    for line, s in zip(lines, seqs):
        ids = tok.encode(line, add_special_tokens=False)
        assert s == [tok.cls_token_id, *ids[:block_size - 2], tok.sep_token_id]
        assert len(s) <= block_size
        truncated += len(ids) > block_size - 2
    assert truncated >= 10  # the truncation path was exercised


def test_packing_too_small_corpus_raises(tok):
    with pytest.raises(ValueError, match="too small"):
        tokenize_corpus(datasets.Dataset.from_dict({"text": ["the cat"]}), tok, 64, packing=True)


# ------------------------------------------------------------------ Batches
def _packed(tok, batch_size=8, seed=3):
    out = tokenize_corpus(datasets.Dataset.from_dict({"text": _lines(300)}), tok, 16, packing=True)
    return make_batches(out, batch_size, tok.pad_token_id, seed, packing=True)


def _sentences(tok, batch_size=4, seed=3, n=500):
    out = tokenize_corpus(datasets.Dataset.from_dict({"text": _lines(n, long_every=17)}), tok, 24, packing=False)
    return make_batches(out, batch_size, tok.pad_token_id, seed, packing=False)


@pytest.mark.parametrize("mode", ["packed", "sentences"])
def test_order_deterministic_distinct_and_complete(tok, mode):
    b = _packed(tok) if mode == "packed" else _sentences(tok)
    n = len(b.sequences)
    o0 = b.order(0)
    again = (_packed(tok) if mode == "packed" else _sentences(tok)).order(0)  # a fresh object: resumable
    assert [x.tolist() for x in o0] == [x.tolist() for x in again]
    for epoch in range(3):
        order = b.order(epoch)
        assert len(order) == len(b)
        assert all(len(x) <= b.batch_size for x in order)
        flat = torch.cat(order)
        assert sorted(flat.tolist()) == list(range(n))  # every sequence exactly once
    assert torch.cat(b.order(0)).tolist() != torch.cat(b.order(1)).tolist()
    other_seed = _packed(tok, seed=4) if mode == "packed" else _sentences(tok, seed=4)
    assert torch.cat(other_seed.order(0)).tolist() != torch.cat(o0).tolist()


def test_packed_get(tok):
    b = _packed(tok)
    assert isinstance(b.sequences, torch.Tensor)
    idx = b.order(0)[0]
    batch = b.get(idx)
    assert torch.equal(batch["input_ids"], b.sequences[idx])
    assert (batch["attention_mask"] == 1).all()


def test_sentence_batches_pad_to_own_longest(tok):
    b = _sentences(tok)
    lengths = [len(s) for s in b.sequences]
    assert len(set(lengths)) > 5
    widths = set()
    for idx in b.order(1):
        batch = b.get(idx)
        ids, am = batch["input_ids"], batch["attention_mask"]
        own = [lengths[i] for i in idx.tolist()]
        assert ids.shape == (len(own), max(own))
        assert am.sum(1).tolist() == own
        widths.add(ids.shape[1])
        for row, i in enumerate(idx.tolist()):
            assert ids[row, :own[row]].tolist() == b.sequences[i]
            assert (ids[row, own[row]:] == tok.pad_token_id).all()
            assert (am[row, :own[row]] == 1).all() and (am[row, own[row]:] == 0).all()
        # grouped by length: sorted longest first inside a batch
        assert own == sorted(own, reverse=True)
    assert len(widths) > 1  # not everything padded to one global width


def test_sentence_batches_reduce_padding(tok):
    # grouping by length inside windows wastes far less padding than random batches would
    b = _sentences(tok, batch_size=4, n=1200)
    lengths = torch.tensor([len(s) for s in b.sequences])
    grouped = sum(int(lengths[idx].max()) * len(idx) for idx in b.order(0))
    g = torch.Generator().manual_seed(0)
    rand = sum(int(lengths[idx].max()) * len(idx) for idx in torch.randperm(len(lengths), generator=g).split(4))
    assert grouped < 0.9 * rand


def test_token_counts(tok):
    for b in (_packed(tok), _sentences(tok)):
        seqs = b.sequences.tolist() if isinstance(b.sequences, torch.Tensor) else b.sequences
        c = Counter(t for s in seqs for t in s)
        counts = token_counts(b, len(tok))
        assert counts.shape == (len(tok),)
        assert counts.tolist() == [c.get(i, 0) for i in range(len(tok))]


def test_batches_len():
    b = Batches([[1, 2]] * 10, batch_size=4, pad_id=0, seed=0)
    assert len(b) == 3 and len(b.order(0)) == 3


# ------------------------------------------------------------------ load_corpus
def _write_corpus(root, text, layout=("wikitext-2", "wiki.train.tokens")):
    folder = root / layout[0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / layout[1]).write_text(text)
    return root


CORPUS = " = Title = \n\n first line of text \n \n second line \n\n\n = = Section = = \n last \n"
NONBLANK = [" = Title = ", " first line of text ", " second line ", " = = Section = = ", " last "]


def test_load_corpus_local_drops_blank_lines(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYDISTIL_DATA_DIR", raising=False)
    root = _write_corpus(tmp_path / "data", CORPUS)
    ds = load_corpus(str(root))
    assert list(ds["text"]) == NONBLANK
    assert list(load_corpus(str(root), max_texts=2)["text"]) == NONBLANK[:2]


def test_load_corpus_from_env_and_raw_layout_first(tmp_path, monkeypatch):
    root = _write_corpus(tmp_path / "data", CORPUS)
    _write_corpus(root, " raw one \n\n raw two \n", ("wikitext-2-raw", "wiki.train.raw"))
    monkeypatch.setenv("TINYDISTIL_DATA_DIR", str(root))
    assert list(load_corpus(None)["text"]) == [" raw one ", " raw two "]


def test_load_corpus_missing_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYDISTIL_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="TINYDISTIL_DATA_DIR"):
        load_corpus(str(tmp_path / "nope"))


def test_load_corpus_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYDISTIL_DATA_DIR", raising=False)
    (tmp_path / "data" / "wikitext-2").mkdir(parents=True)
    (tmp_path / "data" / "wikitext-2" / "wiki.valid.tokens").write_text("x\n")
    with pytest.raises(ValueError, match="TINYDISTIL_DATA_DIR"):
        load_corpus(str(tmp_path / "data"))


def test_load_corpus_only_blank_lines(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYDISTIL_DATA_DIR", raising=False)
    root = _write_corpus(tmp_path / "data", "\n  \n\n")
    with pytest.raises(ValueError, match="TINYDISTIL_DATA_DIR"):
        load_corpus(str(root))


def test_load_corpus_empty_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYDISTIL_DATA_DIR", raising=False)
    root = _write_corpus(tmp_path / "data", "")
    with pytest.raises(ValueError, match="TINYDISTIL_DATA_DIR"):
        load_corpus(str(root))


def test_load_corpus_hub_offline_gives_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("TINYDISTIL_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # both libraries read the variable at import time: set their module-level flags as well
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    t0 = time.time()
    with pytest.raises(ValueError, match="TINYDISTIL_DATA_DIR") as e:
        load_corpus(None)
    assert "hub" in str(e.value)
    assert time.time() - t0 < 30  # offline mode fails fast instead of waiting on the network


def test_wikitext_markers_are_joined_and_unk_becomes_the_tokenizers_unknown(tmp_path, tok):
    from tinydistil.data import undo_wikitext_markers

    assert undo_wikitext_markers("a 1 @,@ 000 @-@ strong well @-@ known 3 @.@ 5 m") == "a 1,000-strong well-known 3.5 m"
    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2" / "wiki.train.tokens").write_text(" the <unk> of 1 @,@ 000 men \n")
    ds = load_corpus(str(tmp_path), "train")
    assert ds["text"] == [" the <unk> of 1,000 men "]
    blocks = tokenize_corpus(ds, tok, 64, packing=False)
    assert tok.unk_token_id in blocks[0]["input_ids"]
    pieces = tok.convert_ids_to_tokens(blocks[0]["input_ids"])
    assert "<" not in pieces and ">" not in pieces and "##k" not in pieces  # not read as "<", "un", "##k", ">"
