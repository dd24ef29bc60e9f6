"""Faults, second pass (issue 30): whole studies interrupted and resumed, torn study outputs, a disk that fills up
at a checkpoint, malformed input files, user files in output folders, tasks asked for by name without data, a
model of the wrong kind as teacher, notebook parameters of the wrong type."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_downstream import one_thread, save_tiny_model, tiny_models, write_glue_fixture, write_imdb_fixture  # noqa: F401
from transformers import DistilBertForMaskedLM

from tinydistil import cli
from tinydistil.rundir import FolderLock

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
SKIP = "speed,report"  # the study stages a signal test does not need (Table 3 timings, the report's figures)


def _reproduce_cmd(root, *extra):
    return [sys.executable, "-m", "tinydistil", "reproduce", "--preset", "smoke", "--output-dir", str(root), *extra]


def _tables(root: Path) -> dict[str, str]:
    """The study's Tables 1-2 with its root folder written as ROOT (run_id and model names hold paths)."""
    res = root / "smoke" / "results"
    return {f: (res / f).read_text().replace(str(root), "ROOT") for f in ("table1_glue.csv", "table2_downstream.csv")}


def _default_sigint():
    """In the child before exec: Ctrl-C's default action back (a shell without job control starts background
    jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _weights(folder):
    return DistilBertForMaskedLM.from_pretrained(folder).state_dict()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One uninterrupted smoke study without speed and report: its tables are what every resumed one reaches."""
    root = tmp_path_factory.mktemp("study") / "r"
    subprocess.run(_reproduce_cmd(root, "--skip", SKIP), check=True, capture_output=True, env=ENV)
    return root


# ------------------------------------------------------------------ 1. signals end in one line naming what works
@pytest.mark.parametrize("sig, when", [(signal.SIGINT, "distill"), (signal.SIGTERM, "glue")])
def test_a_signal_during_reproduce_is_one_line_and_the_rerun_reaches_the_same_tables(tmp_path, study, sig, when):
    root = tmp_path / "r"
    ready = {"distill": root / "smoke" / "student" / "run.json", "glue": root / "smoke" / "eval" / "teacher" / "glue"}
    proc = subprocess.Popen(_reproduce_cmd(root, "--skip", SKIP), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.time() + 300
    while not ready[when].exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate()
    assert proc.returncode == 128 + sig, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "run the same command" in last and "Traceback" not in err
    if sig != signal.SIGINT:
        assert f"stopped by {signal.Signals(sig).name}, exit {128 + sig}" in last
    # what the line says works: the same command, and with --resume
    done = subprocess.run(_reproduce_cmd(root, "--skip", SKIP, "--resume"), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _tables(root) == _tables(study)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_during_distill_say_how_to_continue(tmp_path, smoke_teacher, sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinydistil", "distill", "--preset", "smoke", "--teacher", str(smoke_teacher),
           "--output-dir", str(out), "--max-steps", "400", "--save-every", "2", "--log-every", "1"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint" / "state.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate()
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 128 + sig
    assert "the last checkpoint (update" in last and "--resume" in last and signal.Signals(sig).name in last
    assert "Traceback" not in err


def test_the_study_commands_take_resume():
    for command in ("reproduce", "ablate"):
        args, extra = cli.build_parser().parse_known_args([command, "--preset", "smoke", "--resume"])
        assert args.resume and extra == []


# ------------------------------------------------------------------ 2. atomic study outputs, torn ones redone, one lock
@pytest.fixture(scope="module")
def reported(study):
    """The study above finished with its report and poster (speed left out: it times nothing the report needs)."""
    subprocess.run(_reproduce_cmd(study, "--skip", "speed"), check=True, capture_output=True, env=ENV)
    return study


def test_a_torn_poster_is_redone_by_the_next_reproduce(reported):
    poster = reported / "smoke" / "results" / "poster" / "poster.pdf"
    poster.write_bytes(b"")  # what a kill mid-savefig left before outputs were written atomically
    done = subprocess.run(_reproduce_cmd(reported, "--skip", "speed"), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert poster.stat().st_size > 1000 and poster.read_bytes().rstrip().endswith(b"%%EOF")


def test_a_kill_mid_write_leaves_the_old_poster_and_report_whole(reported, monkeypatch):
    from matplotlib.figure import Figure

    from tinydistil.study.poster import write_poster
    from tinydistil.study.report import write_report

    res = reported / "smoke" / "results"
    before = {p: p.read_bytes() for p in (res / "poster" / "poster.pdf", res / "poster" / "poster.png",
                                          res / "report" / "report.md")}

    def killed_mid_write(self, fname, *a, **k):
        with open(fname, "wb") as f:
            f.write(b"%PDF-1.4\n half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        write_poster(res, res / "poster", "smoke")
    with pytest.raises(KeyboardInterrupt):
        write_report(res, res / "report", "smoke")
    assert {p: p.read_bytes() for p in before} == before
    assert not [p for p in res.rglob("*.tmp*")]


def test_torn_files_are_told_from_a_users_files(tmp_path):
    from tinydistil.rundir import torn

    cases = {"empty.pdf": b"", "cut.pdf": b"%PDF-1.4\n1 0 obj", "cut.json": b'{"rows": [1, ', "whole.pdf":
             b"%PDF-1.4\n1 0 obj\n%%EOF\n", "mine.png": b"\x89PNG my drawing", "notes.csv": b"my,own\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert {n for n in cases if torn(tmp_path / n)} == {"empty.pdf", "cut.pdf", "cut.json"}


def test_two_study_commands_on_one_root_are_refused(tmp_path):
    from tinydistil.study.ablation import run_ablation
    from tinydistil.study.pipeline import reproduce

    (tmp_path / "smoke").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from tinydistil.rundir import FolderLock; "
        "FolderLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(60)"),
        str(ROOT), str(tmp_path / "smoke")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        everything_but_tables = "stem,teacher,distill,mlm_eval,glue,imdb,squad,squad_d,speed,report"
        with pytest.raises(ValueError, match=f"another process \\(PID {holder.pid}\\)"):
            reproduce("smoke", root=str(tmp_path), skip=everything_but_tables, progress=False)
        with pytest.raises(ValueError, match=f"another process \\(PID {holder.pid}\\)"):
            run_ablation("smoke", root=str(tmp_path), table_only=True, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "smoke" / "results").exists()  # nothing written while refused
    FolderLock(tmp_path / "smoke").acquire().release()


# ------------------------------------------------------------------ 3. a disk that fills up at a checkpoint
def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True).returncode == 0
    except OSError:  # no mount command
        return False


def test_disk_full_at_a_checkpoint_is_one_line_without_the_tmp_file(tmp_path, smoke_teacher, monkeypatch, capsys):
    """A real full disk (a 900 KiB tmpfs: the first checkpoint fits, the second not beside it) where the test may
    mount one; else torch.save failing as it does on a full disk (RuntimeError from its zip writer)."""
    import tinydistil.train as T

    base = ["distill", "--preset", "smoke", "--teacher", str(smoke_teacher), "--max-steps", "6", "--save-every", "2",
            "--log-every", "1"]
    assert cli.main(base + ["--output-dir", str(tmp_path / "full")]) == 0  # in this process: same threads
    uninterrupted = _weights(tmp_path / "full" / "model")
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "900k")
    if not mounted:
        real_save, calls = torch.save, []

        def save_until_full(obj, f, *a, **k):
            calls.append(f)
            if len(calls) == 2:
                with open(f, "wb") as fh:
                    fh.write(b"PK partial")
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 448 vs 342")
            return real_save(obj, f, *a, **k)

        import shutil
        monkeypatch.setattr(T.torch, "save", save_until_full)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 20, 1 << 20, 10))
    try:
        args = base + ["--output-dir", str(disk / "run")]
        assert cli.main(args) == 3
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert "Traceback" not in err and "No space left on device" in last and "it needs about" in last
        assert "state.pt" in last and "free space, then continue a run with --resume" in last
        assert not (disk / "run" / "checkpoint" / "state.pt.tmp").exists()
        assert (disk / "run" / "checkpoint" / "state.pt").is_file()  # the previous checkpoint is kept
        if mounted:  # free space: a bigger disk
            subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        else:
            monkeypatch.undo()
        assert cli.main(args + ["--resume"]) == 0
        got = _weights(disk / "run" / "model")
        assert all(torch.equal(got[k], uninterrupted[k]) for k in uninterrupted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)  # lazy: the weights read are mapped


# ------------------------------------------------------------------ 4. user files in output folders
def test_export_keeps_a_users_tokenizer_file(tiny_models, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "tokenizer.json").write_text('{"mine": true}')
    args = ["export", "--model", str(tiny_models["bert"]), "--output-dir", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "tokenizer.json exists and was not written by tinydistil; pass --overwrite" in err
    assert (out / "tokenizer.json").read_text() == '{"mine": true}' and not (out / "model.onnx").exists()
    assert cli.main(args + ["--overwrite"]) == 0
    assert (out / "tokenizer.json").read_text() != '{"mine": true}'
    assert cli.main(args + ["--int8"]) == 0  # the tokenizer files it wrote itself are no reason to stop


def test_export_onto_an_existing_onnx_file_names_the_visible_flag(tiny_models, tmp_path, capsys):  # noqa: F811
    args = ["export", "--model", str(tiny_models["bert"]), "--output-dir", str(tmp_path)]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "choose another --output-dir or pass --overwrite" in err and "--output " not in err


def test_tables_keeps_a_users_table(tmp_path, capsys):
    (tmp_path / "eval").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "table1_glue.csv").write_text("my,own\n1,2\n")
    args = ["tables", "--teacher", str(tmp_path / "eval"), "--output-dir", str(out)]
    assert cli.main(args) == 2
    assert "table1_glue.csv exists and was not written by tinydistil; pass --overwrite" in capsys.readouterr().err
    assert (out / "table1_glue.csv").read_text() == "my,own\n1,2\n" and not (out / "table2_downstream.csv").exists()
    assert cli.main(args + ["--overwrite"]) == 0
    assert cli.main(args) == 0  # its own tables are replaced without --overwrite


# ------------------------------------------------------------------ 5, 6. malformed files: one line naming file and field
def _squad(ctx, text):
    return {"data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": [
        {"id": "q1", "question": "Who?", "answers": [{"text": text, "answer_start": 0}]}]}]}]}


@pytest.mark.parametrize("doc, message", [
    (_squad(12345, "dog"), "question 'q1' has a int as context, expected a str"),
    (_squad("The dog sat.", None), r"question 'q1' has a NoneType as answers\[0\].text, expected a str"),
])
def test_squad_fields_of_the_wrong_type_are_named(tmp_path, doc, message):
    from tinydistil.eval.squad_files import read_squad_json

    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        read_squad_json(path)


@pytest.mark.parametrize("kind, message", [
    ("empty", "corpus file .*a.txt is empty"),
    ("binary", "is not a text file"),
    ("latin-1 late", "could not be read as text"),
    ("parquet of ints", "the 'text' column holds int64, not strings"),
])
def test_a_corpus_file_of_the_wrong_kind_is_one_line(tmp_path, kind, message):
    from tinydistil.data import load_corpus

    if kind == "parquet of ints":
        import pandas as pd

        pd.DataFrame({"text": [1, 2, 3]}).to_parquet(tmp_path / "a.parquet")
        spec = str(tmp_path / "a.parquet")
    else:
        data = {"empty": b"", "binary": bytes(range(256)) * 4,
                "latin-1 late": b"plain line\n" * 8000 + "caf\u00e9\n".encode("latin-1")}[kind]
        (tmp_path / "a.txt").write_bytes(data)
        spec = str(tmp_path / "a.txt")
    with pytest.raises(ValueError, match=message):
        load_corpus(corpus=spec)


def test_a_cut_teacher_weights_file_is_named(tmp_path, tiny_models):  # noqa: F811
    import shutil

    from tinydistil.teacher import load_teacher

    folder = tmp_path / "teacher"
    shutil.copytree(tiny_models["bert"], folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ValueError, match="model.safetensors is damaged or cut short"):
        load_teacher(str(folder))


@pytest.mark.parametrize("content, message", [
    ('{"seed": 0, "score": "n/a", "metrics": {}}', "field 'score' is \"n/a\", expected a number"),
    ('{"seed": 0, "score": 50.0, "metrics": {"accuracy": "high"}}', "field 'metrics.accuracy'"),
    ('{"seed": 0, "score": 5\x01', "unreadable JSON"),
])
def test_a_per_seed_result_that_is_not_ours_is_named_by_tables(tmp_path, capsys, content, message):
    seed = tmp_path / "eval" / "glue" / "rte" / "seed0.json"
    seed.parent.mkdir(parents=True)
    seed.write_text(content)
    assert cli.main(["tables", "--teacher", str(tmp_path / "eval"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and str(seed) in err and "move it away" in err
    assert __import__("re").search(message, err), err


def test_someone_elses_finetune_json_is_one_line(tmp_path, tiny_models, capsys):  # noqa: F811
    out = tmp_path / "eval"
    out.mkdir()
    (out / "finetune.json").write_text('{"kind": "glue", "settings": {"lr": 1}}')
    code = cli.main(["glue", "--model", str(tiny_models["bert"]), "--tasks", "rte", "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "finetune.json is unreadable or was not written by tinydistil" in err


@pytest.mark.parametrize("reader", ["glue", "imdb"])
def test_a_tsv_with_bytes_that_are_not_utf8_names_the_file_and_line(tmp_path, reader):
    from tinydistil.eval.glue import read_glue_tsv
    from tinydistil.eval.imdb import read_imdb_tsv

    path = tmp_path / "dev.tsv"
    if reader == "glue":
        path.write_bytes(b"sentence\tlabel\na fine film \t1\nan \xff film \t0\n")
        read = lambda: read_glue_tsv(path, "sst2")  # noqa: E731
    else:
        path.write_bytes(b"Sentiment\tText\nPositive\tgood\nNegative\tbad \xff film\n")
        read = lambda: read_imdb_tsv(path)  # noqa: E731
    with pytest.raises(ValueError, match=f"{path} is not UTF-8 text at line 3 \\(byte \\d+: b'\\\\xff'\\)"):
        read()


def test_a_data_dir_that_is_a_file_is_called_a_file(tmp_path):
    from tinydistil.data import resolve_data_dir

    (tmp_path / "data.tsv").write_text("x")
    with pytest.raises(ValueError, match="data.tsv is a file, not a folder"):
        resolve_data_dir(str(tmp_path / "data.tsv"))


# ------------------------------------------------------------------ 7. a task asked for by name that cannot run
@pytest.mark.parametrize("command, missing", [("glue", "SST-2/dev.tsv"), ("imdb", "test.tsv")])
def test_a_task_asked_for_by_name_without_its_file_exits_2(tmp_path, tiny_models, capsys, command, missing):  # noqa: F811
    data = write_imdb_fixture(write_glue_fixture(tmp_path / "data"))
    gone = data / "glue" / missing if command == "glue" else data / "imdb-kaushik2020-orig" / missing
    gone.unlink()
    args = [command, "--model", str(tiny_models["bert"]), "--data-dir", str(data), "--output-dir", str(tmp_path / "e"),
            "--seeds", "1", "--max-train-examples", "8"] + (["--tasks", "sst2"] if command == "glue" else [])
    assert cli.main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"no {gone.name} in {gone.parent}" in last


# ------------------------------------------------------------------ 8. a model of the wrong kind as teacher
def test_a_student_given_as_teacher_is_named_before_the_folder_is_claimed(tmp_path, tiny_models, smoke_teacher,  # noqa: F811
                                                                         capsys):
    out = tmp_path / "run"
    args = ["distill", "--preset", "smoke", "--output-dir", str(out), "--max-steps", "1"]
    assert cli.main(args + ["--teacher", str(tiny_models["distilbert"])]) == 2
    assert "is a DistilBERT student" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(args + ["--teacher", str(smoke_teacher)]) == 0  # the corrected command, same folder


# ------------------------------------------------------------------ 9. notebook parameters of the wrong type
def test_a_notebook_parameter_of_the_wrong_type_is_named(tmp_path):
    papermill = pytest.importorskip("papermill")

    with pytest.raises(papermill.PapermillExecutionError, match="parameter finetune_overrides = 'epochs=2' is a "
                                                                "str; expected dict"):
        papermill.execute_notebook(str(ROOT / "notebooks" / "02_glue.ipynb"), str(tmp_path / "02.ipynb"),
                                   parameters={"preset": "smoke", "finetune_overrides": "epochs=2"},
                                   cwd=str(ROOT), progress_bar=False, kernel_name="python3")
