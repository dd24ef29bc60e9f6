"""Tables 1 and 2: the paper's rows verbatim, "not run: no data" strings (never numbers) for missing tasks,
Score over the tasks run (and said so), retention = student / teacher * 100."""
import csv

import pandas as pd
import pytest

from tinydistil.eval.runner import NOT_RUN
from tinydistil.paper import PAPER_TABLE1
from tinydistil.study.tables import (TABLE1_COLUMNS, TABLE1_TASKS, glue_row, imdb_row, write_table1,
                               write_table2)

PAPER_CSV_ROWS = {  # as they must read in the file
    "ELMo": "68.7,44.1,68.6,76.6,71.1,86.2,53.4,91.5,70.4,56.3",
    "BERT-base": "79.5,56.3,86.7,88.6,91.8,89.6,69.3,92.7,89.0,53.5",
    "DistilBERT": "77.0,51.3,82.2,87.5,89.2,88.5,59.9,91.3,86.9,56.3",
}


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_table1_paper_rows_verbatim_and_not_run_strings(tmp_path):
    teacher = {"Model": "teacher", "CoLA": 20.04, "RTE": 55.0, "SST-2": 80.0, "run_id": "runs/eval/t/glue"}
    student = {"Model": "student", "CoLA": 10.0, "RTE": 54.0, "SST-2": 76.0, "teacher": "teacher", "run_id": "s"}
    df = write_table1([teacher, student], tmp_path / "sub" / "table1_glue.csv")
    rows = _read(tmp_path / "sub" / "table1_glue.csv")
    assert list(rows[0]) == list(TABLE1_COLUMNS)
    assert list(rows[0])[:11] == ["Model", "Score", "CoLA", "MNLI", "MRPC", "QNLI", "QQP", "RTE", "SST-2", "STS-B", "WNLI"]
    for row in rows[:3]:
        assert ",".join(row[c] for c in ("Score", *TABLE1_TASKS)) == PAPER_CSV_ROWS[row["Model"]]
        assert row["source"] == "paper" and "all nine" in row["note"]
    assert [r["retention"] for r in rows[:3]] == ["", "", "96.9"]  # paper: DistilBERT keeps 97% of BERT
    t, s = rows[3], rows[4]
    assert (t["source"], t["run_id"]) == ("measured", "runs/eval/t/glue")
    for r in (t, s):
        for c in ("MNLI", "MRPC", "QNLI", "QQP", "STS-B", "WNLI"):
            assert r[c] == NOT_RUN
        assert "mean of the 3 tasks run (CoLA, RTE, SST-2)" in r["note"] and "averages all nine" in r["note"]
    assert t["CoLA"] == "20.0" and float(t["Score"]) == pytest.approx((20.04 + 55 + 80) / 3, abs=0.05)
    assert float(s["Score"]) == pytest.approx((10 + 54 + 76) / 3, abs=0.05)
    assert float(s["retention"]) == pytest.approx(100 * (10 + 54 + 76) / (20.04 + 55 + 80), abs=0.05)
    assert t["retention"] == ""
    assert df.shape == (5, len(TABLE1_COLUMNS))


def test_table1_retention_uses_common_tasks(tmp_path):
    rows = [{"Model": "t", "CoLA": 40.0, "RTE": 60.0}, {"Model": "s", "CoLA": 30.0, "teacher": "t"}]
    df = write_table1(rows, tmp_path / "t.csv").set_index("Model")
    assert df.loc["s", "retention"] == 75.0 and "mean over CoLA as % of t's" in df.loc["s", "note"]
    assert df.loc["t", "Score"] == 50.0 and df.loc["s", "Score"] == 30.0


def test_table1_all_nine_and_paper_teacher(tmp_path):
    row = {"Model": "ours", **{t: 80.0 for t in TABLE1_TASKS}, "teacher": "BERT-base"}
    df = write_table1([row], tmp_path / "t.csv").set_index("Model")
    assert df.loc["ours", "Score"] == 80.0 and "all nine tasks, as in the paper" in df.loc["ours", "note"]
    assert df.loc["ours", "retention"] == round(100 * 80 / 79.5, 1)  # the paper's Score, not its cells' mean


def test_table1_no_task_run_has_no_number(tmp_path):
    write_table1([{"Model": "empty"}], tmp_path / "t.csv")
    row = _read(tmp_path / "t.csv")[-1]
    assert all(row[c] == NOT_RUN for c in ("Score", *TABLE1_TASKS))


def test_table1_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown Table 1 column.*'SQuAD'"):
        write_table1([{"Model": "x", "SQuAD": 1.0}], tmp_path / "t.csv")
    with pytest.raises(ValueError, match="teacher 'nobody' of row 'x' is not a row"):
        write_table1([{"Model": "x", "CoLA": 1.0, "teacher": "nobody"}], tmp_path / "t.csv")


def test_glue_row_from_run_glue_frame():
    df = pd.DataFrame([{"task": "cola", "display": "CoLA", "score": 12.5, "seeds_run": 3},
                       {"task": "rte", "display": "RTE", "score": NOT_RUN, "seeds_run": 0}])
    row = glue_row("m", df, run_id="r", teacher="t")
    assert row["CoLA"] == 12.5 and row["RTE"] == NOT_RUN and row["note"] == "median of 3 seeds"
    assert (row["run_id"], row["teacher"]) == ("r", "t")


def test_table2_paper_rows_and_not_run(tmp_path):
    rows = [imdb_row("teacher", pd.DataFrame([{"score": 87.654, "seeds_run": 3}]), run_id="runs/eval/t/imdb"),
            imdb_row("student", pd.DataFrame([{"score": NOT_RUN, "seeds_run": 0}]))]
    write_table2(rows, tmp_path / "table2_downstream.csv")
    got = _read(tmp_path / "table2_downstream.csv")
    assert [(r["Model"], r["IMDb"], r["SQuAD EM"], r["SQuAD F1"], r["source"]) for r in got[:3]] == [
        ("BERT-base", "93.46", "81.2", "88.5", "paper"), ("DistilBERT", "92.82", "77.7", "85.8", "paper"),
        ("DistilBERT (D)", "—", "79.1", "86.9", "paper")]
    assert (got[3]["IMDb"], got[3]["SQuAD EM"], got[3]["SQuAD F1"]) == ("87.65", "not run", "not run")
    assert "median of 3 seeds" in got[3]["note"] and got[3]["run_id"] == "runs/eval/t/imdb"
    assert got[4]["IMDb"] == NOT_RUN


def test_paper_constants_match_the_brief():
    assert PAPER_TABLE1["BERT-base"][0] == 79.5 and PAPER_TABLE1["DistilBERT"][-1] == 56.3


def test_the_paper_table2_numbers_are_its_text():
    from tinydistil.paper import PAPER_TABLE2, PAPER_TABLE2_COLUMNS, PAPER_TABLE2_SCORES

    assert set(PAPER_TABLE2) == set(PAPER_TABLE2_SCORES)
    for name, texts in PAPER_TABLE2.items():
        for col, text in zip(PAPER_TABLE2_COLUMNS, texts):
            assert PAPER_TABLE2_SCORES[name][col] == (None if text == "—" else float(text))
