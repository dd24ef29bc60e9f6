"""Faults and bad input: one clear error before anything is written, atomic run files, one process per run
folder, resume that refuses what is not its own, Ctrl-C that says how to continue."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from transformers import DistilBertForMaskedLM

from tinydistil import cli
from tinydistil.presets import stage_config
from tinydistil.rundir import FolderLock, read_jsonl, write_json_atomic
from tinydistil.train import RunInterrupted, Trainer, distill


def _cfg(tmp_path, teacher, name="run", **kw):
    return stage_config("smoke", "distill", teacher=str(teacher), output_dir=str(tmp_path / name), **kw)


def _weights(folder):
    return DistilBertForMaskedLM.from_pretrained(folder).state_dict()


def _cut_after(cfg, steps):
    """Train `cfg` and stop after `steps` updates (as a kill after the checkpoint at `steps` would)."""
    t = Trainer(cfg, progress=False).setup()
    t.total_steps = steps
    t.train()
    (t.out / "summary.json").unlink()
    shutil.rmtree(t.out / "model")


# ------------------------------------------------------------------ validated before anything is written
@pytest.mark.parametrize("change, message", [
    ({"max_steps": -5}, "max_steps must be >= 0"),
    ({"tokens_per_update": -100}, "tokens_per_update must be >= 1"),
    ({"lr": float("inf")}, "lr must be a finite number"),
    ({"student_layers": [1, 0]}, "strictly increasing"),
    ({"student_layers": [0, 0]}, "strictly increasing"),
    ({"student_layers": [0.5]}, "integers >= 0"),
    ({"lr": "abc"}, "'abc' is not a float"),
])
def test_values_that_make_no_sense_are_refused(tmp_path, smoke_teacher, change, message):
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, smoke_teacher, **change)


@pytest.mark.parametrize("change, message", [
    ({"block_size": 600}, "exceeds the teacher's 512 position embeddings"),
    ({"student_layers": [0, 5]}, "the teacher has layers 0..1 only"),
    ({"teacher": "/nonexistent/teacher"}, "has no config.json"),
])
def test_what_needs_the_teacher_is_checked_before_the_folder_is_claimed(tmp_path, smoke_teacher, change, message):
    teacher = change.pop("teacher", smoke_teacher)
    with pytest.raises(ValueError, match=message):
        Trainer(_cfg(tmp_path, teacher, **change), progress=False).setup()
    assert not (tmp_path / "run").exists()
    # the corrected command then works in the same folder
    Trainer(_cfg(tmp_path, smoke_teacher, max_steps=1), progress=False).setup().train()


def test_output_dir_that_is_a_file_is_one_line(tmp_path, smoke_teacher, capsys):
    (tmp_path / "file").write_text("mine")
    args = ["distill", "--preset", "smoke", "--teacher", str(smoke_teacher), "--max-steps", "1"]
    assert cli.main(args + ["--output-dir", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "mine"
    assert cli.main(args + ["--output-dir", str(tmp_path / "file" / "under")]) == 3  # NotADirectoryError
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: Not a directory") and "a file is in the way" in last and "Traceback" not in err


# ------------------------------------------------------------------ atomic files, torn lines
def test_write_json_atomic_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = write_json_atomic(tmp_path / "run.json", {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": Boom()})  # json.dumps fails half way
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_torn_last_log_line_is_dropped_on_resume(tmp_path, smoke_teacher):
    cfg = _cfg(tmp_path, smoke_teacher, max_steps=4, save_every=2, log_every=1)
    _cut_after(cfg, 2)
    log = tmp_path / "run" / "log.jsonl"
    log.write_text(log.read_text() + '{"step": 3, "loss": 1.')  # killed mid-line
    assert [r["step"] for r in read_jsonl(log)] == [1, 2]
    Trainer(cfg, resume=True, progress=False).setup().train()
    assert [r["step"] for r in read_jsonl(log)] == [1, 2, 3, 4]
    assert all(json.loads(line) for line in log.read_text().splitlines())


# ------------------------------------------------------------------ one process per folder
def test_a_second_process_on_the_same_folder_gets_the_holders_pid(tmp_path, smoke_teacher):
    cfg = _cfg(tmp_path, smoke_teacher, max_steps=4, save_every=2)
    _cut_after(cfg, 2)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from tinydistil.rundir import FolderLock; "
        "FolderLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(60)"),
        os.getcwd(), str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"another process \\(PID {holder.pid}\\)"):
            Trainer(cfg, resume=True, progress=False).setup()
    finally:
        holder.kill()
        holder.wait()
    Trainer(cfg, resume=True, progress=False).setup().train()  # free again once the holder is gone
    lock = FolderLock(tmp_path / "run").acquire()  # and released when training ended
    lock.release()


# ------------------------------------------------------------------ resume refuses what is not its own
def test_a_checkpoint_of_another_run_is_refused_with_the_fields(tmp_path, smoke_teacher):
    _cut_after(_cfg(tmp_path, smoke_teacher, "a", max_steps=4, save_every=2, lr=1e-3), 2)
    b = _cfg(tmp_path, smoke_teacher, "b", max_steps=4, save_every=2, lr=2e-3)
    _cut_after(b, 2)
    shutil.copyfile(tmp_path / "a" / "checkpoint" / "state.pt", tmp_path / "b" / "checkpoint" / "state.pt")
    with pytest.raises(ValueError, match=r"belongs to a run with other settings \(lr\)"):
        Trainer(b, resume=True, progress=False).setup()


@pytest.mark.parametrize("damage, message", [("empty", "cannot resume from"), ("folder", "it is not a file")])
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path, smoke_teacher, damage, message):
    cfg = _cfg(tmp_path, smoke_teacher, max_steps=4, save_every=2)
    _cut_after(cfg, 2)
    state = tmp_path / "run" / "checkpoint" / "state.pt"
    state.unlink()
    if damage == "empty":
        state.write_bytes(b"")
    else:
        state.mkdir()
    with pytest.raises(ValueError, match=message):
        Trainer(cfg, resume=True, progress=False).setup()


def test_the_same_teacher_by_a_relative_path_is_the_same_run(tmp_path, smoke_teacher, monkeypatch):
    cfg = _cfg(tmp_path, smoke_teacher, max_steps=4, save_every=2)
    _cut_after(cfg, 2)
    monkeypatch.chdir(smoke_teacher.parent)
    rel = _cfg(tmp_path, os.path.join(".", smoke_teacher.name), max_steps=4, save_every=2)
    assert Trainer(rel, resume=True, progress=False).setup().step == 2


# ------------------------------------------------------------------ Ctrl-C and a diverging loss
def test_ctrl_c_names_the_checkpoint_to_resume_from_and_resume_is_exact(tmp_path, smoke_teacher, capsys):
    full = distill(_cfg(tmp_path, smoke_teacher, "full", max_steps=4, save_every=2), progress=False)
    cfg = _cfg(tmp_path, smoke_teacher, max_steps=4, save_every=2)
    t = Trainer(cfg, progress=False).setup()
    real = t.loss_terms

    def interrupt_at_update_3(batch):
        if t.step == 2:
            raise KeyboardInterrupt
        return real(batch)

    t.loss_terms = interrupt_at_update_3
    with pytest.raises(RunInterrupted, match=r"interrupted at update 2 of 4; the last checkpoint \(update 2\)"):
        t.train()
    folder = Trainer(cfg, resume=True, progress=False).setup().train()
    a, b = _weights(full), _weights(folder)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_in_the_cli_is_one_line_and_exit_130(tmp_path, smoke_teacher, monkeypatch, capsys):
    def interrupted(self):
        raise RunInterrupted("interrupted at update 1 of 4; no checkpoint yet")

    monkeypatch.setattr(Trainer, "train", interrupted)
    code = cli.main(["distill", "--preset", "smoke", "--teacher", str(smoke_teacher), "--output-dir",
                     str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted at update 1 of 4; no checkpoint yet"
    assert "Traceback" not in err


def test_a_diverging_loss_before_any_checkpoint_does_not_promise_one(tmp_path, smoke_teacher):
    t = Trainer(_cfg(tmp_path, smoke_teacher, max_steps=4, save_every=100), progress=False).setup()
    real = t.loss_terms
    t.loss_terms = lambda batch: {k: v * float("nan") for k, v in real(batch).items()}
    with pytest.raises(FloatingPointError, match="no checkpoint was written yet"):
        t.train()


# ------------------------------------------------------------------ a user's files are not replaced
def test_speed_out_does_not_replace_a_users_file(tmp_path, smoke_teacher):
    from tinydistil.deploy.speed import run_speed

    mine = tmp_path / "mine.csv"
    mine.write_text("my,numbers\n")
    (tmp_path / "mine.json").write_text('{"mine": true}')
    with pytest.raises(ValueError, match="not written by tinydistil; pass --overwrite"):
        run_speed(str(smoke_teacher), str(smoke_teacher), out_csv=str(mine), max_examples=2, repeats=1)
    assert mine.read_text() == "my,numbers\n" and (tmp_path / "mine.json").read_text() == '{"mine": true}'
    with pytest.raises(ValueError, match="is a folder"):
        run_speed(str(smoke_teacher), str(smoke_teacher), out_csv=str(tmp_path), max_examples=2, repeats=1)


def test_report_does_not_replace_a_users_report_or_poster(tmp_path, capsys):
    (tmp_path / "results").mkdir()  # no results yet: the report says "not run" everywhere
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.md").write_text("# my notes\n")
    (tmp_path / "post").mkdir()
    (tmp_path / "post" / "poster.png").write_bytes(b"\x89PNG my drawing")
    args = ["report", "--results-dir", str(tmp_path / "results"), "--preset", "smoke"]
    assert cli.main(args + ["--report-dir", str(tmp_path / "rep"), "--poster-dir", str(tmp_path / "p2")]) == 2
    assert "report.md exists and was not written by tinydistil" in capsys.readouterr().err
    assert (tmp_path / "rep" / "report.md").read_text() == "# my notes\n"
    assert cli.main(args + ["--report-dir", str(tmp_path / "r2"), "--poster-dir", str(tmp_path / "post")]) == 2
    assert (tmp_path / "post" / "poster.png").read_bytes() == b"\x89PNG my drawing"
    # our own outputs are replaced when generated again, and --overwrite replaces the user's
    assert cli.main(args + ["--report-dir", str(tmp_path / "r3"), "--poster-dir", str(tmp_path / "p3")]) == 0
    assert cli.main(args + ["--report-dir", str(tmp_path / "r3"), "--poster-dir", str(tmp_path / "p3")]) == 0
    assert cli.main(args + ["--report-dir", str(tmp_path / "rep"), "--poster-dir", str(tmp_path / "post"),
                            "--overwrite"]) == 0
    assert (tmp_path / "rep" / "report.md").read_text().startswith("# tinydistil")


def test_a_model_that_is_not_a_masked_lm_is_named(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tinydistil.teacher import load_teacher

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50, n_positions=16)).save_pretrained(folder)
    with pytest.raises(ValueError, match="is a gpt2 model, not a masked LM"):
        load_teacher(str(folder))


def _squad_file(path, offsets):
    ctx = "The cat sat on the mat. The dog sat too."
    qas = [{"id": f"q{i}", "question": "Who sat?", "answers": [{"text": "dog", "answer_start": o}]}
           for i, o in enumerate(offsets)]
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": qas}]}]}))
    return path


def test_squad_answers_off_their_context_are_moved_or_refused(tmp_path):
    from tinydistil.eval.squad import read_squad_json

    right = "The cat sat on the mat. The dog sat too.".index("dog")
    with pytest.warns(UserWarning, match="1 of 3 answers were not at their answer_start.*1 moved"):
        rows = read_squad_json(_squad_file(tmp_path / "few.json", [right, right, 3]))
    assert [r["answers"]["answer_start"][0] for r in rows] == [right] * 3
    with pytest.raises(ValueError, match="2 of 3 answers are not at their answer_start"):
        read_squad_json(_squad_file(tmp_path / "most.json", [right, 0, 3]))


def test_a_binary_corpus_file_is_one_line(tmp_path):
    from tinydistil.data import load_corpus

    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2" / "wiki.train.tokens").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ValueError, match="is not a text file"):
        load_corpus(str(tmp_path), "train")


# ------------------------------------------------------------------ real kills, a full disk
def _distill_cmd(teacher, out, *extra):
    return [sys.executable, "-m", "tinydistil", "distill", "--preset", "smoke", "--teacher", str(teacher),
            "--output-dir", str(out), "--max-steps", "6", "--save-every", "2", "--log-every", "1", *extra]


@pytest.fixture(scope="module")
def uninterrupted(smoke_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(_distill_cmd(smoke_teacher, out), check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return _weights(out / "model")


@pytest.mark.parametrize("when", ["run.json", "first checkpoint", "later"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, smoke_teacher, uninterrupted, when):
    """SIGKILL the real CLI at a point in its run (polling the folder), then resume to the end."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_distill_cmd(smoke_teacher, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ready = {"run.json": lambda: (out / "run.json").exists(),
             "first checkpoint": lambda: (out / "checkpoint" / "state.pt").exists(),
             "later": lambda: len(read_jsonl(out / "log.jsonl")) >= 3}[when]
    deadline = time.time() + 120
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = subprocess.run(_distill_cmd(smoke_teacher, out, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    got = _weights(out / "model")
    assert all(torch.equal(got[k], uninterrupted[k]) for k in uninterrupted)
    assert [r["step"] for r in read_jsonl(out / "log.jsonl")] == list(range(1, 7))


def test_disk_full_during_a_checkpoint_is_one_line_and_resume_recovers(tmp_path, smoke_teacher, monkeypatch, capsys):
    import errno

    import tinydistil.train as T

    base = ["distill", "--preset", "smoke", "--teacher", str(smoke_teacher), "--max-steps", "6", "--save-every", "2",
            "--log-every", "1"]
    assert cli.main(base + ["--output-dir", str(tmp_path / "full")]) == 0  # in this process: same threads
    uninterrupted = _weights(tmp_path / "full" / "model")
    real_save, calls = torch.save, []

    def save_until_full(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:  # the checkpoint at update 4: the disk fills up mid-write
            with open(f, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(T.torch, "save", save_until_full)
    args = base + ["--output-dir", str(tmp_path / "run")]
    assert cli.main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "No space left on device" in err and "the disk is full: free space, then continue a run with --resume" in err
    monkeypatch.setattr(T.torch, "save", real_save)
    assert cli.main(args + ["--resume"]) == 0  # the checkpoint at update 2 survived the failed write
    got = _weights(tmp_path / "run" / "model")
    assert all(torch.equal(got[k], uninterrupted[k]) for k in uninterrupted)


def test_a_read_only_folder_is_one_line(tmp_path, smoke_teacher, monkeypatch, capsys):
    """Root ignores permission bits, so the read-only filesystem is simulated where run.json is written."""
    import errno

    import tinydistil.train as T

    def read_only(path, obj, **kw):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(T, "write_json_atomic", read_only)
    code = cli.main(["distill", "--preset", "smoke", "--teacher", str(smoke_teacher), "--output-dir",
                     str(tmp_path / "ro"), "--max-steps", "1"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 3 and "Read-only file system" in last and "choose another path" in last


def test_two_fresh_smoke_teachers_are_the_same_bytes(tmp_path):
    """Separate processes (each with its own hash seeds), same preset: same tokenizer, same weights. The smoke
    teacher takes its vocabulary from the bundled tokenizer (vocab_from), not from a per-run WordPiece training."""
    code = ("import sys; from tinydistil.presets import stage_config; from tinydistil.train import pretrain_teacher; "
            "pretrain_teacher(stage_config('smoke', 'teacher', output_dir=sys.argv[1]), progress=False)")
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    for f in ("model/model.safetensors", "model/tokenizer.json", "tokenizer/tokenizer.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_a_glue_model_without_a_padding_token_is_named_before_anything_is_written(tmp_path, capsys):
    from tiny_downstream import save_tiny_model
    from transformers import AutoTokenizer

    folder = save_tiny_model(tmp_path / "nopad")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = None  # like GPT-2's tokenizer
    tok.save_pretrained(folder)
    capsys.readouterr()  # the fixture's own output
    out = tmp_path / "eval"
    assert cli.main(["glue", "--model", str(folder), "--tasks", "rte", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has no padding token" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
