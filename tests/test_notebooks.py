"""Notebooks run top to bottom on the smoke preset (papermill), as CI and Colab users run them."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_notebook_01_smoke(tmp_path):
    papermill = pytest.importorskip("papermill")
    from transformers import BertForMaskedLM, DistilBertForMaskedLM

    out = tmp_path / "01.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "01_distill_pretraining.ipynb"), str(out),
                               parameters={"preset": "smoke", "runs_root": str(tmp_path / "runs")},
                               cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    student_dir = tmp_path / "runs" / "smoke" / "student"
    student = DistilBertForMaskedLM.from_pretrained(student_dir / "model")
    teacher = BertForMaskedLM.from_pretrained(tmp_path / "runs" / "smoke" / "teacher" / "model")
    assert student.config.n_layers * 2 == teacher.config.num_hidden_layers
    assert (student_dir / "loss_curves.png").stat().st_size > 1000
    import nbformat

    nb = nbformat.read(str(out), as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "student: 1 layers" in text and "teacher: 2 layers" in text
    # the notebooks switch live curves on: event files beside log.jsonl when tensorboard is installed
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        assert list((student_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "live curves:" in text  # outside Colab the TensorBoard panel is not started, its folder is named


def test_notebook_06_reuse_smoke(tmp_path, monkeypatch):
    """The ten-line DistilTrainer version runs, and Trainer and our loop give the same curves (asserted in the
    notebook too); the student shown has its model card."""
    import json

    papermill = pytest.importorskip("papermill")
    import nbformat

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "06.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "06_reuse_hf_trainer.ipynb"), str(out),
                               parameters={"preset": "smoke", "runs_root": str(tmp_path / "runs")},
                               cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    reuse = tmp_path / "runs" / "smoke" / "reuse"
    agreement = json.loads((reuse / "trainer_vs_loop_4" / "agreement.json").read_text())
    assert agreement["steps"] == [1, 2, 3, 4]
    for term, loop in agreement["loop"].items():  # the notebook's tolerance on CPU: 1e-4 + 1e-4 |loop|
        atol = 1e-12 if term == "lr" else 1e-4
        assert all(abs(a - b) <= atol + 1e-4 * abs(a) for a, b in zip(loop, agreement["trainer"][term])), term
    assert (reuse / "trainer_vs_loop_4" / "trainer_vs_loop.png").stat().st_size > 1000
    nb = nbformat.read(str(out), as_version=4)
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells for o in c.get("outputs", []))
    assert "agree over 4 updates" in text and "loss_total" in text and "pipeline_tag: fill-mask" in text


def _run_downstream_notebook(name, tmp_path, monkeypatch, **parameters):
    """Execute a downstream notebook on tiny models and fixture data; returns the printed text."""
    papermill = pytest.importorskip("papermill")
    import nbformat
    from tiny_downstream import save_tiny_model, write_glue_fixture, write_imdb_fixture

    # the kernel inherits this: tiny models crawl with 2 threads when another job holds the cores
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = write_imdb_fixture(write_glue_fixture(tmp_path / "data"))
    params = {"preset": "cpu", "teacher_model": str(save_tiny_model(tmp_path / "teacher")),
              "student_model": str(save_tiny_model(tmp_path / "student", "distilbert")),
              "runs_root": str(tmp_path / "runs"), "data_dir": str(data), "seeds": 1,
              "max_train_examples": 32, "finetune_overrides": {"epochs": 1, "batch_size": 16, "lr": 1e-3},
              "results_dir": str(tmp_path / "results"), **parameters}
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                               cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    nb = nbformat.read(str(out), as_version=4)
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells for o in c.get("outputs", []))


def test_notebook_02_glue_tiny(tmp_path, monkeypatch):
    import csv

    text = _run_downstream_notebook("02_glue", tmp_path, monkeypatch, tasks=["sst2", "rte", "stsb", "cola"])
    with open(tmp_path / "results" / "table1_glue.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["Model"] for r in rows[:3]] == ["ELMo", "BERT-base", "DistilBERT"]
    teacher, student = rows[3], rows[4]
    assert teacher["Model"].startswith("teacher: ") and student["Model"].startswith("student: ")
    assert teacher["CoLA"] == "not run: no data" and student["MNLI"] == "not run: no data"
    assert 0 <= float(student["SST-2"]) <= 100 and student["retention"] != ""
    assert (tmp_path / "runs" / "cpu" / "eval" / "glue_teacher_vs_student.png").stat().st_size > 1000  # Layout's
    assert "wrote" in text and "not run: no data" in text


def test_notebook_03_imdb_tiny(tmp_path, monkeypatch):
    import csv

    _run_downstream_notebook("03_imdb", tmp_path, monkeypatch)
    with open(tmp_path / "results" / "table2_downstream.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["Model"], r["IMDb"]) for r in rows[:3]] == [("BERT-base", "93.46"), ("DistilBERT", "92.82"),
                                                          ("DistilBERT (D)", "—")]
    assert all(0 <= float(r["IMDb"]) <= 100 and r["SQuAD F1"] == "not run" for r in rows[3:5])
    assert (tmp_path / "runs" / "cpu" / "eval" / "imdb_teacher_vs_student.png").stat().st_size > 1000


def test_notebook_05_speed_tiny(tmp_path, monkeypatch):
    import csv

    papermill = pytest.importorskip("papermill")
    from tiny_downstream import save_tiny_model, write_glue_fixture

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    params = {"preset": "cpu", "teacher_model": str(save_tiny_model(tmp_path / "teacher")),
              "student_model": str(save_tiny_model(tmp_path / "student", "distilbert")),
              "runs_root": str(tmp_path / "runs"), "data_dir": str(write_glue_fixture(tmp_path / "data")),
              "max_examples": 6, "repeats": 1, "include_reference_archs": False,
              "results_dir": str(tmp_path / "results")}
    papermill.execute_notebook(str(ROOT / "notebooks" / "05_speed.ipynb"), str(tmp_path / "05.ipynb"),
                               parameters=params, cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    with open(tmp_path / "results" / "table3_speed.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["Model"], r["source"]) for r in rows[:3]] == [("ELMo", "paper"), ("BERT-base", "paper"),
                                                            ("DistilBERT", "paper")]
    assert [r["Model"] for r in rows[3:]] == ["teacher (PyTorch fp32)", "student (PyTorch fp32)",
                                              "student (PyTorch int8 dynamic)", "student (ONNX Runtime fp32)",
                                              "student (ONNX Runtime int8)"]
    assert all(r["source"].startswith("measured") and "6 STS-B dev pairs" in r["note"] for r in rows[3:])
    assert rows[4]["Speed-up vs teacher"] != "" and rows[7]["Output change vs fp32"].startswith("max |diff|")
    assert (tmp_path / "results" / "table3_speed.json").is_file()
    assert (tmp_path / "results" / "table3_speed.png").stat().st_size > 1000
    # the last notebook ends with the report and the poster, from the tables folder
    assert (tmp_path / "results" / "report" / "report.md").read_text().startswith("# tinydistil")
    assert (tmp_path / "results" / "poster" / "poster.png").stat().st_size > 10_000


def test_notebook_04_squad_tiny(tmp_path, monkeypatch):
    import csv
    import shutil

    papermill = pytest.importorskip("papermill")
    from tiny_downstream import save_tiny_model, write_squad_fixture

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    teacher, student = save_tiny_model(tmp_path / "teacher"), save_tiny_model(tmp_path / "student", "distilbert")
    for f in ("tokenizer.json", "tokenizer_config.json"):  # a student shares its teacher's tokenizer
        shutil.copy(teacher / f, student / f)
    params = {"preset": "cpu", "teacher_model": str(teacher), "student_model": str(student),
              "runs_root": str(tmp_path / "runs"), "data_dir": str(write_squad_fixture(tmp_path / "data")),
              "seeds": 1, "finetune_overrides": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "max_seq_len": 48},
              "squad_overrides": {"doc_stride": 16}, "results_dir": str(tmp_path / "results")}
    papermill.execute_notebook(str(ROOT / "notebooks" / "04_squad.ipynb"), str(tmp_path / "04.ipynb"),
                               parameters=params, cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    with open(tmp_path / "results" / "table2_downstream.csv", newline="") as f:
        rows = {r["Model"].split(":")[0]: r for r in csv.DictReader(f)}
    d_run = next((tmp_path / "runs" / "cpu" / "eval").glob("*/squad_d/seed0.json"))
    import json

    rec = json.loads(d_run.read_text())
    assert rec["teacher"].endswith("squad/model")
    assert float(rows["student (D)"]["SQuAD F1"]) == pytest.approx(rec["metrics"]["f1"], abs=0.06)
    assert "not comparable" in rows["student (D)"]["note"] and rows["teacher"]["IMDb"] == "not run: no data"
    assert (tmp_path / "runs" / "cpu" / "eval" / "squad_teacher_vs_student.png").stat().st_size > 1000


def test_committed_notebooks_are_the_generators_output():
    """notebooks/*.ipynb are written by tools/make_notebooks.py: a hand edit (or a generator change not run) would
    make the two disagree, and the next regeneration would silently undo one of them."""
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "tools" / "make_notebooks.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, cells in gen.NOTEBOOKS.items():
        committed = (ROOT / "notebooks" / f"{name}.ipynb").read_text()
        assert nbformat.writes(gen.build(cells)) + "\n" == committed, (
            f"notebooks/{name}.ipynb differs from tools/make_notebooks.py's output: run `python tools/make_notebooks.py`")
