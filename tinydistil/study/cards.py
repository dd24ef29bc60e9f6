"""The model cards of a study's teacher and student, rewritten once `reproduce` has measured them: the held-out
MLM accuracy and the downstream results (Tables 1-2 rows of that model), the paper's numbers beside them
(BERT-base for the teacher, DistilBERT for the student; labelled as the paper's)."""
from __future__ import annotations

from pathlib import Path

from ..card import write_model_card
from ..paper import PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE2_COLUMNS
from ..records import read_table_json
from .tables import TABLE1_TASKS

PAPER_ROW = {"teacher": "BERT-base", "student": "DistilBERT"}


def downstream_rows(tables_dir: str | Path, role: str) -> list[dict]:
    """[{"task", "value", "paper"}] of `role`'s measured cells in Tables 1-2 (their typed twins, *.json)."""
    rows, paper_name = [], PAPER_ROW[role]
    paper = {"GLUE Score": PAPER_TABLE1[paper_name][0],
             **dict(zip(TABLE1_TASKS, PAPER_TABLE1[paper_name][1:])),
             **dict(zip(PAPER_TABLE2_COLUMNS, PAPER_TABLE2[paper_name]))}
    for name, columns in (("table1_glue.json", ("Score", *TABLE1_TASKS)), ("table2_downstream.json", PAPER_TABLE2_COLUMNS)):
        table, _ = read_table_json(Path(tables_dir) / name)
        mine = next((r for r in table or [] if r.role == role), None)
        for col in columns if mine else ():
            if mine.value(col) is not None:
                task = "GLUE Score" if col == "Score" else col
                rows.append({"task": task + (" (dev)" if col in TABLE1_TASKS or col == "Score" else ""),
                             "value": mine[col], "paper": str(paper.get(task, "—"))})
    return rows


def write_study_cards(runs: dict, tables_dir: str | Path, mlm_eval: dict | None) -> list[Path]:
    """Rewrite the cards of runs {"teacher": run folder, "student": run folder} that finished; returns their paths."""
    out = []
    for role, run_dir in runs.items():
        if not (Path(run_dir) / "summary.json").is_file() or not (Path(run_dir) / "model").is_dir():
            continue
        acc = ((mlm_eval or {}).get(role) or {}).get("mlm_accuracy")
        out.append(write_model_card(run_dir, mlm_accuracy=acc, downstream=downstream_rows(tables_dir, role),
                                    paper_model=PAPER_ROW[role]))
    return out
