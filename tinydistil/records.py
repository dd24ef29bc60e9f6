"""Typed table records: what every results table writes as JSON beside its CSV, and the only form in which
study.results reads a table back. The CSV (and the report's markdown, the poster) are outputs; nothing parses them.

    rows = [TableRow(cells={"Model": "student: ...", "SST-2": "81.2"}, values={"SST-2": 81.23}, role="student")]
    write_table_json("results/table1_glue.json", rows, columns=TABLE1_COLUMNS)
    rows, reason = read_table_json("results/table1_glue.json")    # (None, why) when missing or unreadable

A row holds its cells as the CSV shows them (for rendering), the float behind every numeric cell, the study role
that produced it (a key of ROLE_LABELS; None for the paper's rows and other models) and typed facts no column holds (`extra`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

TABLE_FORMAT = "tinydistil.table/1"  # the "format" key of every typed table JSON


# who a measured row of the study is: its key in every record, and how sentences name it
ROLE_LABELS = {"teacher": "teacher", "student": "student", "control": "student, no distillation",
               "student_d": "student (D)"}


def finite(x) -> float | None:
    """`x` as a float when it is a finite JSON number, else None. Strings are never parsed: a number we wrote is a
    JSON number, and text ("not run: ...", "—") means there is none."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class TableRow:
    """One row of a results table. cells: column -> the text the CSV shows; values: column -> the float behind a
    numeric cell (unrounded where the writer had it); role: a ROLE_LABELS key for a study's measured row, else None."""
    cells: dict
    values: dict = field(default_factory=dict)
    role: str | None = None
    extra: dict = field(default_factory=dict)

    def get(self, column: str, default: str = "") -> str:
        return self.cells.get(column, default)

    def __getitem__(self, column: str) -> str:
        return self.cells[column]

    def __contains__(self, column: str) -> bool:
        return column in self.cells

    def value(self, column: str) -> float | None:
        return finite(self.values.get(column))

    @property
    def paper(self) -> bool:
        return str(self.cells.get("source", "")).startswith("paper")


def row_from_cells(cells: dict, role: str | None = None, extra: dict | None = None) -> TableRow:
    """A TableRow of `cells` as a writer holds them before formatting: numbers become values (and their text the
    cell), everything else text. Use it where the writer's numbers are the ones the CSV shows."""
    values = {c: float(v) for c, v in cells.items() if finite(v) is not None}
    return TableRow({c: "" if v is None else str(v) for c, v in cells.items()}, values, role, dict(extra or {}))


def table_json_path(csv_path) -> Path:
    """results/table1_glue.csv -> results/table1_glue.json (the typed twin of a CSV table)."""
    return Path(csv_path).with_suffix(".json")


def table_json(rows: list[TableRow], columns, meta: dict | None = None) -> dict:
    """The JSON object of a typed table: `meta` (provenance), then format, columns and rows."""
    if any(r.role is not None and r.role not in ROLE_LABELS for r in rows):
        raise ValueError(f"a table row's role must be one of {', '.join(ROLE_LABELS)}")
    return {**(meta or {}), "format": TABLE_FORMAT, "columns": list(columns), "rows": [asdict(r) for r in rows]}


def write_table_json(path, rows: list[TableRow], columns, meta: dict | None = None) -> Path:
    from .rundir import write_json_atomic

    return write_json_atomic(path, table_json(rows, columns, meta), default=str)


def read_table_json(path) -> tuple[list[TableRow] | None, str]:
    """(rows, "") from a typed table JSON, or (None, why) when it is missing, unreadable or of another format."""
    path = Path(path)
    if not path.is_file():
        return None, f"{path} not found"
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"{path} could not be read ({type(e).__name__})"
    if not isinstance(obj, dict) or obj.get("format") != TABLE_FORMAT or not isinstance(obj.get("rows"), list):
        return None, f"{path} is not a typed table ({TABLE_FORMAT}); rewrite it with this version of tinydistil"
    return [TableRow(r.get("cells", {}), r.get("values", {}), r.get("role"), r.get("extra", {}))
            for r in obj["rows"]], ""
