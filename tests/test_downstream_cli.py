"""python -m tinydistil glue / imdb / tables: runs on tiny models, one-line errors with exit code 2."""
import csv
import json

import pytest

from tiny_downstream import fixture_data, one_thread, tiny_models  # noqa: F401
from tinydistil import cli
from tinydistil.eval.runner import NOT_RUN


def _error(capsys) -> str:
    """The error message; asserts it is exactly one line, starting with 'error:', printed last on stderr."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert err.endswith(lines[0] + "\n"), f"error message is not a single final line: {err!r}"
    return lines[0]


@pytest.mark.parametrize("argv, phrase", [
    (["glue", "--model", "m", "--tasks", "cola,squad"],
     "unknown GLUE task 'squad'; valid tasks: cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli"),
    (["glue", "--tasks", "cola"], "glue needs --model PATH_OR_HUB_ID"),
    (["imdb", "--model", "m", "--no-such", "1"], "unknown option --no-such for imdb; use --model, --data-dir"),
    (["glue", "--model", "m", "--seeds", "two"], "--seeds: cannot read 'two'"),
    (["glue", "--model", "m", "--epochs", "0"], "epochs must be >= 1"),
    (["glue", "--model"], "options are written --name value"),
    (["glue", "--model", "m", "--data-dir", "/no/such/dir"], "data directory /no/such/dir does not exist"),
    (["tables"], "tables needs --teacher and/or --student"),
    (["tables", "--teacher", "/no/such/eval"], "--teacher /no/such/eval does not exist"),
    (["tables", "--model", "x"], "unknown option --model for tables"),
])
def test_errors_are_one_line(argv, phrase, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the repository
    assert cli.main(argv) == 2
    assert phrase in _error(capsys)
    assert not (tmp_path / "runs").exists()


def test_glue_model_folder_errors(capsys, tmp_path, tiny_models, fixture_data):
    argv = ["glue", "--tasks", "sst2", "--data-dir", str(fixture_data), "--output-dir", str(tmp_path / "o")]
    assert cli.main([*argv, "--model", str(tiny_models["no_tokenizer"])]) == 2
    assert "has no tokenizer" in _error(capsys)
    assert cli.main([*argv[:-1], str(tmp_path / "o2"), "--model", str(tiny_models["small_vocab"])]) == 2
    assert "do not belong together" in _error(capsys)


def test_glue_imdb_tables_end_to_end(capsys, tmp_path, tiny_models, fixture_data, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders: runs/eval/<model>/{glue,imdb}
    fast = ["--seeds", "2", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--max-train-examples", "48"]
    for role in ("bert", "distilbert"):
        model = str(tiny_models[role])
        # CoLA, asked for by name, has no files in the fixture: the other tasks run, then exit 2 naming CoLA's
        assert cli.main(["glue", "--model", model, "--tasks", "sst2,rte,stsb,cola", "--data-dir", str(fixture_data),
                         "--output-dir", f"runs/eval/{role}/glue", *fast]) == 2
        assert cli.main(["imdb", "--model", model, "--data-dir", str(fixture_data),
                         "--output-dir", f"runs/eval/{role}/imdb", *fast]) == 0
    out, err = capsys.readouterr()
    assert "sst2" in out and NOT_RUN in out and "CoLA not run: no train.tsv, dev.tsv in" in err
    rec = json.loads((tmp_path / "runs/eval/bert/glue/rte/seed1.json").read_text())
    assert rec["train_examples"] == 48 and rec["hyperparameters"]["seeds"] == 2
    assert cli.main(["tables", "--teacher", "runs/eval/bert", "--student", "runs/eval/distilbert",
                     "--output-dir", "res"]) == 0
    with open(tmp_path / "res" / "table1_glue.csv", newline="") as f:
        t1 = list(csv.DictReader(f))
    teacher, student = t1[3], t1[4]
    assert teacher["Model"].startswith("teacher: ") and "2 layers" in teacher["Model"]
    assert student["Model"].startswith("student: ") and "distilbert" in student["Model"]
    assert teacher["CoLA"] == NOT_RUN and teacher["MNLI"] == NOT_RUN and float(teacher["SST-2"]) >= 0
    assert student["retention"] != "" and teacher["retention"] == ""
    assert teacher["run_id"].endswith("runs/eval/bert/glue")
    with open(tmp_path / "res" / "table2_downstream.csv", newline="") as f:
        t2 = list(csv.DictReader(f))
    assert [r["Model"] for r in t2[:3]] == ["BERT-base", "DistilBERT", "DistilBERT (D)"]
    assert 0 <= float(t2[3]["IMDb"]) <= 100 and t2[3]["SQuAD EM"] == "not run"


def test_default_output_dir_from_model_path(tmp_path, monkeypatch):
    from tinydistil.eval.runner import default_output_dir, model_slug

    assert model_slug("runs/cpu/teacher/model") == "cpu_teacher"
    assert model_slug("./runs/cpu/student/model/") == "cpu_student"
    assert model_slug("distilbert-base-uncased") == "distilbert-base-uncased"
    assert default_output_dir("runs/cpu/student/model", "imdb") == "runs/eval/cpu_student/imdb"
