"""Data-parallel training (torchrun, gloo on CPU): same updates as one process, resumable across world sizes.

Every comparison uses a teacher (hence student) without dropout, so a run is a deterministic function
of the data order and the masking, which the loop makes independent of the number of processes.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertForMaskedLM, DistilBertForMaskedLM

from tinydistil import config as C
from tinydistil.presets import stage_config
from tinydistil.train import Trainer

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, argv: list[str]) -> None:
    """python -m torch.distributed.run --nproc_per_node nproc ARGV, one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(WORKER.parent.parent), env.get("PYTHONPATH", "")])  # a checkout
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]


def torchrun(tmp_path: Path, cfg, nproc: int = 2, *args: str) -> list[dict]:
    """Run tests/ddp_worker.py on `cfg` with `nproc` processes; returns each rank's data position."""
    cfg_file = tmp_path / f"cfg_{len(list(tmp_path.glob('cfg_*')))}.json"
    cfg_file.write_text(json.dumps(C.to_dict(cfg)))
    launch(nproc, [str(WORKER), str(cfg_file), *args])
    return [json.loads((Path(cfg.output_dir) / f"position_rank{r}.json").read_text()) for r in range(nproc)]


@pytest.fixture(scope="module")
def no_dropout_teacher(smoke_teacher, tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher_nodrop")
    model = BertForMaskedLM.from_pretrained(smoke_teacher)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(smoke_teacher).save_pretrained(folder)
    return folder


def _cfg(tmp_path, teacher, name, **kw):
    kw = {"max_steps": 4, "save_every": 2, **kw}
    return stage_config("smoke", "distill", teacher=str(teacher), output_dir=str(tmp_path / name), **kw)


def _weights(folder):
    return DistilBertForMaskedLM.from_pretrained(folder).state_dict()


def _assert_close(a_dir, b_dir, atol=1e-5):
    a, b = _weights(a_dir), _weights(b_dir)
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < atol, worst


def _moved(model_dir, teacher) -> float:
    """Largest change of any student weight from its teacher initialisation (so 'close' is not vacuous)."""
    from tinydistil.student import init_student

    start = init_student(BertForMaskedLM.from_pretrained(teacher)).state_dict()
    end = _weights(model_dir)
    return max((end[k] - start[k]).abs().max().item() for k in end)


def _log(folder):
    return [json.loads(x) for x in (Path(folder) / "log.jsonl").read_text().splitlines()]


def test_two_processes_give_the_one_process_updates(tmp_path, no_dropout_teacher):
    """`torchrun --nproc_per_node 2 -m tinydistil distill --preset smoke`: each rank trains on its own half of
    every update's batches (same global batches, same masking), gradients are averaged, so weights, logged
    losses and token counts match one process; only rank 0 writes."""
    one = Trainer(_cfg(tmp_path, no_dropout_teacher, "one"), progress=False).setup()
    one.train()
    launch(2, ["-m", "tinydistil", "distill", "--preset", "smoke", "--teacher", str(no_dropout_teacher),
               "--output-dir", str(tmp_path / "two"), "--max-steps", "4", "--save-every", "2"])
    state = torch.load(tmp_path / "two" / "checkpoint" / "state.pt", weights_only=True)
    assert state["position"]["world_size"] == 2
    assert {k: state["position"][k] for k in ("step", "epoch", "batch_idx", "micro")} == {
        "step": one.step, "epoch": one.epoch, "batch_idx": one.batch_idx, "micro": one.micro}
    _assert_close(tmp_path / "one" / "model", tmp_path / "two" / "model")
    assert _moved(tmp_path / "one" / "model", no_dropout_teacher) > 10 * 1e-5  # well above the tolerance
    l1, l2 = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in l2] == [1, 2, 3, 4]  # one line per update: rank 0 alone logs
    assert [r["tokens"] for r in l2] == [r["tokens"] for r in l1] == [512 * s for s in (1, 2, 3, 4)]
    for k in ("loss", "loss_kl", "loss_mlm", "loss_cos"):
        assert [r[k] for r in l2] == pytest.approx([r[k] for r in l1], rel=1e-4, abs=1e-5), k
    assert state["position"]["tokens"] == 4 * 512 and not list((tmp_path / "two").glob("*rank*"))


def test_two_processes_of_batch_b_equal_one_process_of_batch_2b(tmp_path, no_dropout_teacher):
    """Per-process batch 4 on 2 processes vs batch 8 on one: the same sequences per update (the epoch's
    permutation cut into 4s vs 8s). Masking then differs, so the loss is made masking-independent: chosen
    tokens kept unchanged (word_keep 1) and no MLM term; KL and cosine over every position remain."""
    inv = dict(word_mask=0.0, word_keep=1.0, word_rand=0.0, alpha_mlm=0.0, max_steps=3)
    one = Trainer(_cfg(tmp_path, no_dropout_teacher, "b8", batch_size=8, **inv), progress=False).setup()
    one.train()
    pos = torchrun(tmp_path, _cfg(tmp_path, no_dropout_teacher, "b4x2", batch_size=4, **inv))
    assert [p["world"] for p in pos] == [2, 2]
    assert pos[0]["accum"] == 2 and one.accum == 2  # 512 tokens per update either way
    _assert_close(tmp_path / "b8" / "model", tmp_path / "b4x2" / "model")
    assert [r["tokens"] for r in _log(tmp_path / "b4x2")] == [r["tokens"] for r in _log(tmp_path / "b8")]


def test_resume_across_world_sizes(tmp_path, no_dropout_teacher):
    """A 2-process run checkpointed at update 3 continues on 1 process (and the reverse) from the same
    global data position, ending with the weights of an uninterrupted 1-process run."""
    kw = dict(max_steps=6, save_every=3)
    full = Trainer(_cfg(tmp_path, no_dropout_teacher, "full", **kw), progress=False).setup()
    full.train()
    per_update = full.cfg.grad_accum  # global batches per update

    # 2 processes -> 1 process
    torchrun(tmp_path, _cfg(tmp_path, no_dropout_teacher, "a", **kw), 2, "--stop-at", "3")
    resumed = Trainer(_cfg(tmp_path, no_dropout_teacher, "a", **kw), resume=True, progress=False).setup()
    assert (resumed.step, resumed.epoch, resumed.batch_idx, resumed.micro) == (3, 0, 3 * per_update, 3 * per_update)
    resumed.train()
    _assert_close(tmp_path / "full" / "model", tmp_path / "a" / "model")
    assert [r["step"] for r in _log(tmp_path / "a")] == list(range(1, 7))

    # 1 process -> 2 processes
    cut = Trainer(_cfg(tmp_path, no_dropout_teacher, "b", **kw), progress=False).setup()
    cut.total_steps = 3
    cut.train()
    (tmp_path / "b" / "summary.json").unlink()
    pos = torchrun(tmp_path, _cfg(tmp_path, no_dropout_teacher, "b", **kw), 2, "--resume")
    assert pos[0]["start"] == pos[1]["start"] == {"step": 3, "epoch": 0, "batch_idx": 3 * per_update,
                                                  "micro": 3 * per_update}
    assert pos[0]["end"]["micro"] == full.micro
    _assert_close(tmp_path / "full" / "model", tmp_path / "b" / "model")


def test_indivisible_accumulation_is_a_clear_error(tmp_path, smoke_teacher, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")  # checked before any process group is joined
    cfg = _cfg(tmp_path, smoke_teacher, "x")  # 512 tokens per update = 2 batches of 8 x 32; 3 x 8 x 32 = 768
    with pytest.raises(ValueError, match=r"3 processes cannot share equally.*--tokens-per-update 768"):
        Trainer(cfg, progress=False).setup()
    assert not (tmp_path / "x").exists()  # nothing written


# ------------------------------------------------------------------ corpora larger than memory

def _write_corpus(folder: Path, n_files=3, lines=1500) -> list[str]:
    """Several local text files, 4500 unique lines in all: more than one 2000-line tokenise + pack buffer."""
    words = "the history of music and science in the city was known for its river".split()
    folder.mkdir()
    texts = []
    for f in range(n_files):
        rows = [f"{words[(f * 7 + i) % len(words)]} {f} {i} {words[i % len(words)]} {i * 31 % 997}"
                for i in range(lines)]
        (folder / f"part{f}.txt").write_text("\n".join(rows) + "\n\n")  # trailing blank line: skipped
        texts += rows
    return texts


def _expected_blocks(texts, tok, block_size, buffer=2000) -> list[tuple]:
    """Packing computed independently: per buffer of lines, tokens + [SEP] joined, cut into full blocks."""
    out, body = [], block_size - 2
    for start in range(0, len(texts), buffer):
        stream = []
        for t in texts[start:start + buffer]:
            stream += tok(t, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
        out += [(tok.cls_token_id, *stream[i:i + body], tok.sep_token_id)
                for i in range(0, len(stream) - body + 1, body)]
    return out


def test_file_corpus_is_read_once_per_epoch_from_disk(tmp_path, smoke_teacher):
    from collections import Counter

    import datasets

    texts = _write_corpus(tmp_path / "corpus")
    cfg = _cfg(tmp_path, smoke_teacher, "big", corpus=str(tmp_path / "corpus" / "*.txt"), max_steps=1000)
    t = Trainer(cfg, progress=False).setup()
    seqs = t.batches.sequences
    assert isinstance(seqs, datasets.Dataset) and seqs.cache_files  # memory-mapped Arrow, not a RAM tensor
    expected = _expected_blocks(texts, t.tokenizer, cfg.block_size)
    assert len(seqs) == len(expected) > 3 * (2000 // 100)  # several buffers' worth of blocks

    seen = []
    n_batches = len(t.batches)
    for _ in range(n_batches):
        seen += [tuple(r) for r in t._next_batch()["input_ids"].tolist()]
    assert (t.epoch, t.batch_idx) == (0, n_batches)
    assert Counter(seen) == Counter(expected)  # every block once: none duplicated, none skipped
    t._next_batch()
    assert (t.epoch, t.batch_idx) == (1, 1)  # then the next epoch starts


def test_file_corpus_resumes_at_the_exact_data_position(tmp_path, smoke_teacher):
    from collections import Counter

    texts = _write_corpus(tmp_path / "corpus")
    cfg = _cfg(tmp_path, smoke_teacher, "r", corpus=str(tmp_path / "corpus" / "part*.txt"), max_steps=1000,
               save_every=3)
    cut = Trainer(cfg, progress=False).setup()
    cut.total_steps = 3
    cut.train()
    (tmp_path / "r" / "summary.json").unlink()
    t = Trainer(cfg, resume=True, progress=False).setup()
    order = t.batches.order(0)
    assert t.batch_idx == 3 * cfg.grad_accum
    # blocks trained on before the checkpoint + blocks read after resuming = the whole epoch, once each
    before = [tuple(r) for idx in order[:t.batch_idx] for r in t.batches.get(idx)["input_ids"].tolist()]
    after = []
    while t.epoch == 0:
        batch = t._next_batch()
        if t.epoch == 0:
            after += [tuple(r) for r in batch["input_ids"].tolist()]
    assert not set(before) & set(after)
    assert Counter(before + after) == Counter(_expected_blocks(texts, t.tokenizer, cfg.block_size))


def test_bad_corpus_globs_are_clear_errors(tmp_path, smoke_teacher):
    with pytest.raises(ValueError, match="no file matches"):
        Trainer(_cfg(tmp_path, smoke_teacher, "x", corpus=str(tmp_path / "none*.txt")), progress=False).setup()
    (tmp_path / "a.txt").write_text("hello\n")
    (tmp_path / "b.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="mix of parquet and text"):
        Trainer(_cfg(tmp_path, smoke_teacher, "y", corpus=f"{tmp_path}/a.txt,{tmp_path}/b.parquet"),
                progress=False).setup()


def test_parquet_corpus_keeps_file_order_and_needs_a_text_column(tmp_path):
    import pandas as pd

    from tinydistil.data import load_large_corpus

    (tmp_path / "p").mkdir()
    pd.DataFrame({"text": ["b one", "", "b two"], "id": [1, 2, 3]}).to_parquet(tmp_path / "p" / "b.parquet")
    pd.DataFrame({"text": ["a one", "a two"], "id": [4, 5]}).to_parquet(tmp_path / "p" / "a.parquet")
    ds = load_large_corpus(f"{tmp_path}/p/*.parquet")
    assert ds.column_names == ["text"] and ds["text"][:] == ["a one", "a two", "b one", "b two"]  # sorted, no blanks
    pd.DataFrame({"body": ["x"]}).to_parquet(tmp_path / "c.parquet")
    with pytest.raises(ValueError, match="no 'text' column"):
        load_large_corpus(str(tmp_path / "c.parquet"))
