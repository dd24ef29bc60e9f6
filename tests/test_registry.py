"""eval.registry: the downstream tasks a study runs. A task added as one module plus one registry line runs as a
`reproduce` stage for teacher and student, with the preset's settings, and its column reaches Table 2, the
report and the figures."""
import csv
import json
import sys
import types
from pathlib import Path

import pytest

from tinydistil.eval import registry
from tinydistil.study import pipeline


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_registered_tasks_are_the_paper_tasks_in_order():
    tasks = registry.downstream_tasks()
    assert [t.name for t in tasks] == list(registry.TASKS) == ["glue", "imdb", "squad"]
    assert [c for t in tasks for c in t.columns] == ["IMDb", "SQuAD EM", "SQuAD F1"]  # GLUE fills Table 1
    assert pipeline.all_stages().index("squad") < pipeline.all_stages().index("squad_d")


def _toy_module(calls: list):
    """What a new task's file would define: a runner writing seed files and a cells reader."""
    def run(model, cfg, settings, folder, data_dir, progress, role):
        if (folder / "seed0.json").is_file():
            return  # finished seeds are skipped, as every task's runner does
        calls.append((model, role, Path(folder).name, cfg.epochs, settings.get("toy_opts")))
        folder.mkdir(parents=True, exist_ok=True)
        score = 61.25 if role == "teacher" else 57.5
        (folder / "seed0.json").write_text(json.dumps({"task": "toy", "seed": 0, "score": score, "model": model,
                                                        "model_info": {}, "wall_time_s": 0.1}))

    def cells(folder):
        recs = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("seed*.json"))]
        return ({"Toy acc": recs[0]["score"], "note": "toy accuracy, 1 seed"} if recs
                else {"Toy acc": "not run: no data", "note": ""})

    mod = types.ModuleType("tinydistil.eval.toy")
    mod.DOWNSTREAM = registry.Downstream("toy", run, columns=("Toy acc",), cells=cells, decimals=2,
                                         finetune_defaults={"epochs": 7})
    return mod


@pytest.fixture
def toy_task(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "tinydistil.eval.toy", _toy_module(calls))
    monkeypatch.setattr(registry, "TASKS", (*registry.TASKS, "toy"))  # the one registry line
    return calls


def test_a_registered_task_is_a_stage_with_settings(toy_task):
    assert pipeline.parse_skip("toy") == {"toy"} and "toy" in pipeline.parse_skip("downstream")
    stages = pipeline.all_stages()
    assert stages.index("squad") < stages.index("toy") < stages.index("squad_d")
    assert pipeline.downstream_settings("smoke")["toy"]["epochs"] == 7  # its FinetuneConfig defaults


def test_a_registered_task_runs_and_reaches_table2_and_the_report(toy_task, tmp_path):
    skip = [s for s in pipeline.all_stages() if s not in ("toy", "tables", "report")]
    summary = pipeline.reproduce("smoke", root=str(tmp_path), skip=skip, progress=False)
    assert summary["stage_status"]["toy"] == "done"
    assert [(role, folder, epochs) for _, role, folder, epochs, _ in toy_task] == [
        ("teacher", "toy", 7), ("student", "toy", 7)]
    res = tmp_path / "smoke" / "results"
    rows = {r["Model"].split(":")[0]: r for r in _rows(res / "table2_downstream.csv")}
    assert rows["teacher"]["Toy acc"] == "61.25" and rows["student"]["Toy acc"] == "57.50"
    assert rows["BERT-base"]["Toy acc"] == "" and rows["BERT-base"]["IMDb"] == "93.46"  # the paper has no such task
    assert rows["student"]["IMDb"] == "not run: no data" and "toy accuracy, 1 seed" in rows["student"]["note"]
    report = (res / "report" / "report.md").read_text()
    table2 = report[report.index("## Table 2"):report.index("## Table 3")]
    assert "| Model | IMDb | SQuAD EM | SQuAD F1 | Toy acc | source |" in table2 and "| 57.50 |" in table2
    again = pipeline.reproduce("smoke", root=str(tmp_path), skip=skip + ["report"], progress=False)
    assert "earlier call" in again["stage_status"]["toy"] and len(toy_task) == 2  # nothing rerun


def test_a_module_whose_entry_has_another_name_is_refused(monkeypatch, toy_task):
    mod = sys.modules["tinydistil.eval.toy"]
    monkeypatch.setattr(mod, "DOWNSTREAM", registry.Downstream("other", mod.DOWNSTREAM.run))
    with pytest.raises(ValueError, match="eval/toy.py defines DOWNSTREAM named 'other'"):
        registry.downstream_tasks()
