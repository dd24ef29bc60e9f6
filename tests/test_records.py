"""Typed table records (tinydistil/records.py): every table writes a JSON twin of its CSV whose floats are the
numbers its cells show, the study reads only those twins, and nothing in the study parses text it wrote."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from tiny_downstream import fixture_data  # noqa: F401

from tinydistil.records import TableRow, finite, read_table_json, row_from_cells, table_json_path, write_table_json
from tinydistil.study.cards import downstream_rows
from tinydistil.study.tables import TABLE1_TASKS, write_majority, write_table1, write_table2

STUDY = Path(__file__).resolve().parents[1] / "tinydistil" / "study"


def test_finite_takes_json_numbers_and_never_parses_text():
    assert finite(3) == 3.0 and finite(2.5) == 2.5
    for text in ("2.5", "1.7x", "93.1 %", "not run: no data", "—", "", None, True, math.nan, math.inf):
        assert finite(text) is None


def test_a_table_json_round_trips(tmp_path):
    rows = [TableRow({"Model": "student: s", "SST-2": "81.2"}, {"SST-2": 81.23}, "student", {"pairs": 300}),
            TableRow({"Model": "BERT-base", "source": "paper"})]
    write_table_json(tmp_path / "t.json", rows, ["Model", "SST-2", "source"], {"git_sha": "abc"})
    back, reason = read_table_json(tmp_path / "t.json")
    assert reason == "" and back == rows
    assert back[0].value("SST-2") == 81.23 and back[0].value("Model") is None and back[1].paper
    assert json.loads((tmp_path / "t.json").read_text())["git_sha"] == "abc"


def test_a_missing_or_foreign_json_is_a_reason_not_an_error(tmp_path):
    assert read_table_json(tmp_path / "none.json") == (None, f"{tmp_path / 'none.json'} not found")
    (tmp_path / "old.json").write_text(json.dumps({"rows": [{"Model": "x"}]}))  # Table 3's JSON before records
    rows, reason = read_table_json(tmp_path / "old.json")
    assert rows is None and "not a typed table" in reason


def test_an_unknown_role_is_refused(tmp_path):
    with pytest.raises(ValueError, match="role must be one of"):
        write_table_json(tmp_path / "t.json", [TableRow({"Model": "x"}, role="students")], ["Model"])


def test_row_from_cells_keeps_numbers_as_values():
    r = row_from_cells({"Model": "teacher (PyTorch fp32)", "Params (M)": 22.71, "Threads": 2, "note": ""})
    assert r.values == {"Params (M)": 22.71, "Threads": 2.0} and r["Params (M)"] == "22.71" and r["note"] == ""


def _cells_equal_values(path):
    """Every value of a typed table equals the number its CSV cell shows (to the cell's decimals)."""
    csv_rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    rows, _ = read_table_json(table_json_path(path))
    assert [r.cells for r in rows] == csv_rows
    for r in rows:
        for col, v in r.values.items():
            text = r[col]
            decimals = len(text.split(".")[1]) if "." in text else 0
            assert float(text) == pytest.approx(round(v, decimals)), (col, text, v)
    return rows


def test_tables_1_and_2_write_their_typed_twins(tmp_path):
    write_table1([{"Model": "teacher: t", "SST-2": 81.234, "CoLA": "not run: no data", "role": "teacher"},
                  {"Model": "student: s", "SST-2": 79.0, "teacher": "teacher: t", "role": "student"}],
                 tmp_path / "table1_glue.csv")
    rows = _cells_equal_values(tmp_path / "table1_glue.csv")
    student = next(r for r in rows if r.role == "student")
    assert student.value("retention") == pytest.approx(round(100 * 79.0 / 81.234, 1))  # 97.2, as the cell shows
    assert student.value("CoLA") is None and student["CoLA"] == "not run: no data"
    assert [r.role for r in rows if r.paper] == [None] * 3
    write_table2([{"Model": "student: s", "IMDb": 84.7312, "role": "student"}], tmp_path / "table2_downstream.csv")
    rows = _cells_equal_values(tmp_path / "table2_downstream.csv")
    assert rows[-1].value("IMDb") == 84.73 and rows[-1].value("SQuAD F1") is None
    assert downstream_rows(tmp_path, "student")[-1] == {"task": "IMDb", "value": "84.73", "paper": "92.82"}


def test_the_majority_table_writes_its_typed_twin(tmp_path, fixture_data):
    write_majority(tmp_path / "m.csv", fixture_data, "sst2,stsb,mnli")
    rows = {r["Task"]: r for r in _cells_equal_values(tmp_path / "m.csv")}
    assert rows["STS-B"].value("Score") is None and rows["STS-B"]["Score"] == "n/a"
    assert rows["SST-2"].value("Score") is not None and rows["MNLI"].value("Score") is None


def test_the_study_reads_no_text_it_wrote():
    """No regular expression, CSV reader or unit-stripping number parse anywhere in the study layer."""
    for path in STUDY.glob("*.py"):
        src = path.read_text()
        for bad in ("import re\n", "read_csv(", "DictReader(", "rstrip(\"x%\")", "def num("):
            assert bad not in src, f"{path.name}: {bad.strip()}"
    assert TABLE1_TASKS  # the tables module loads
