"""The paper's Tables 1 (GLUE dev) and 2 (IMDb, SQuAD) as CSV: the paper's rows verbatim, then ours.

    rows = [glue_row("teacher", run_glue(teacher, ...), run_id="runs/eval/cpu_teacher/glue"),
            glue_row("student", run_glue(student, ...), run_id=..., teacher="teacher")]
    write_table1(rows, "results/table1_glue.csv")

A measured cell of a task that was not run holds the string "not run: no data", never a number. Our
Score is the mean over the tasks actually run (the `note` column says which); the paper's averages all
nine. `retention` = a student's Score as % of its teacher's (over the tasks both ran).
"""
from __future__ import annotations

from pathlib import Path

from ..eval.glue import TASKS, load_tasks, majority_baseline, parse_tasks, summarize_glue
from ..eval.registry import downstream_tasks
from ..eval.runner import NOT_RUN, is_score, read_seed_result
from ..eval.metrics import glue_macro_score
from ..paper import PAPER_NOTE1, PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE2_COLUMNS, PAPER_TEACHERS
from ..records import ROLE_LABELS, TableRow, row_from_cells, table_json_path, write_table_json
from ..rundir import atomic_file, csv_with, refuse_foreign

TABLE1_TASKS = tuple(t.display for t in TASKS.values())  # CoLA MNLI MRPC QNLI QQP RTE SST-2 STS-B WNLI
TABLE1_COLUMNS = ("Model", "Score", *TABLE1_TASKS, "retention", "source", "run_id", "note")
TABLE2_META = ("source", "run_id", "note")


def table2_columns() -> tuple[str, ...]:
    """Model, the columns of every registered Table 2 task (eval.registry: IMDb, SQuAD EM, SQuAD F1, ...), then
    source, run_id, note."""
    return ("Model", *[c for t in downstream_tasks() for c in t.columns], *TABLE2_META)



def plural(n: int, noun: str) -> str:
    """'1 seed', '3 seeds', '1 layer'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def params_text(n) -> str:
    """A parameter count as read: '22.7 M', '4.4 M', '53 k' (never '0.0 M')."""
    n = float(n)
    return f"{n / 1e6:.1f} M" if n >= 1e5 else f"{n / 1e3:.0f} k" if n >= 1e3 else f"{n:.0f}"


def md_table(rows: list[dict], cols: list[str]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(esc(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(df, path, rows: list[TableRow] | None = None) -> "pd.DataFrame":  # noqa: F821
    """`df` to `path` as CSV (no index), written to a temporary file and renamed: a kill mid-write leaves the
    previous file whole. With `rows`, their typed twin (records.TableRow) beside it as `<path>.json`: what the
    report and the poster read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)
    if rows is not None:
        write_table_json(table_json_path(path), rows, df.columns)
    return df


def _check_rows(rows: list[dict], allowed: set, table: int, hint: str) -> None:
    """ValueError for a column Table `table` does not have, or a row without a 'Model' name."""
    unknown = sorted({k for r in rows for k in r} - allowed)
    if unknown:
        raise ValueError(f"unknown Table {table} column(s) {unknown}; {hint}")
    if any("Model" not in r for r in rows):
        raise ValueError(f"every Table {table} row needs a 'Model' name")


# ------------------------------------------------------------------ rows from results
def glue_row(model: str, results, run_id: str = "", teacher: str | None = None, note: str = "") -> dict:
    """A Table 1 row from run_glue / summarize_glue output (score per task, 0-100)."""
    row = {"Model": model, "run_id": run_id, "teacher": teacher, "note": note}
    seeds = set()
    for rec in results.to_dict("records"):
        row[rec["display"]] = rec["score"] if is_score(rec["score"]) else NOT_RUN
        if is_score(rec["score"]):
            seeds.add(int(rec["seeds_run"]))
    if seeds and not note:
        row["note"] = "1 seed" if seeds == {1} else f"median of {'/'.join(map(str, sorted(seeds)))} seeds"
    return row


def imdb_row(model: str, results, run_id: str = "", note: str = "") -> dict:
    """A Table 2 row from run_imdb / summarize_imdb output (test accuracy, 0-100)."""
    from ..eval.imdb import table_cells

    cells = table_cells(results)
    return {"Model": model, "IMDb": cells["IMDb"], "run_id": run_id, "note": note or cells["note"]}


# ------------------------------------------------------------------ Table 1
def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def write_table1(rows: list[dict], path) -> "pd.DataFrame":  # noqa: F821
    """Write Table 1 to `path` (CSV, columns TABLE1_COLUMNS): the paper's three rows, then `rows`.

    Each row: {"Model", one key per task display name (number 0-100 or NOT_RUN; missing = NOT_RUN),
    optional "teacher" (Model name of another row, e.g. "BERT-base"), "role" (records.ROLE_LABELS key), "run_id",
    "note", "source" (default "measured")}. Returns the table; its typed twin goes to `<path>.json`.
    """
    # one function on purpose (~60 lines): the paper's rows, ours, the Score and retention columns, in table order
    import pandas as pd

    table: list[dict] = []
    for name, values in PAPER_TABLE1.items():
        table.append({"Model": name, "Score": values[0], **dict(zip(TABLE1_TASKS, values[1:])),
                      "source": "paper", "run_id": "", "note": PAPER_NOTE1, "teacher": PAPER_TEACHERS.get(name)})
    _check_rows(rows, {*TABLE1_COLUMNS, "teacher", "role"}, 1, f"task columns are {', '.join(TABLE1_TASKS)}")
    for r in rows:
        row = {"Model": r["Model"], "source": r.get("source", "measured"), "run_id": r.get("run_id", ""),
               "teacher": r.get("teacher"), "role": r.get("role")}
        run = {}
        for t in TABLE1_TASKS:
            v = r.get(t, NOT_RUN)
            row[t] = round(float(v), 1) if is_score(v) else NOT_RUN
            if is_score(v):
                run[t] = float(v)
        row["_score"] = glue_macro_score(run) if run else None  # unrounded, for retention
        row["Score"] = round(row["_score"], 1) if run else NOT_RUN
        if len(run) == len(TABLE1_TASKS):
            scope = "Score = mean of all nine tasks, as in the paper"
        elif run:
            scope = (f"Score = mean of the {len(run)} tasks run ({', '.join(run)}), not comparable to the "
                     "paper's, which averages all nine")
        else:
            scope = "no task run"
        row["note"] = _join(scope, r.get("note", ""))
        row["_run"] = run
        table.append(row)
    by_name = {r["Model"]: r for r in table}
    for row in table:
        row["retention"] = ""
        if not row.get("teacher"):
            continue
        teacher = by_name.get(row["teacher"])
        if teacher is None:
            raise ValueError(f"teacher {row['teacher']!r} of row {row['Model']!r} is not a row of the table; "
                             f"use one of the Model names: {', '.join(by_name)}")
        if row["source"] == "paper":  # DistilBERT vs BERT-base: the paper's Scores
            row["retention"] = round(100.0 * row["Score"] / teacher["Score"], 1)
            continue
        t_run = teacher.get("_run") or {t: v for t, v in teacher.items() if t in TABLE1_TASKS and is_score(v)}
        common = [t for t in row["_run"] if t in t_run]
        if not common:
            continue
        if len(common) == len(row["_run"]) == len(t_run):  # same tasks: the Scores (the paper's own for its rows)
            row["retention"] = round(100.0 * row["_score"] / float(teacher.get("_score") or teacher["Score"]), 1)
            row["note"] = _join(row["note"], f"retention = Score as % of {row['teacher']}'s (same tasks)")
        else:
            s = glue_macro_score({t: row["_run"][t] for t in common})
            tt = glue_macro_score({t: t_run[t] for t in common})
            row["retention"] = round(100.0 * s / tt, 1)
            row["note"] = _join(row["note"], f"retention = mean over {', '.join(common)} as % of "
                                             f"{row['teacher']}'s mean over the same tasks")
    df = pd.DataFrame([{c: r.get(c, "") for c in TABLE1_COLUMNS} for r in table], columns=list(TABLE1_COLUMNS))
    return write_csv(df, path, [row_from_cells({c: r.get(c, "") for c in TABLE1_COLUMNS}, r.get("role"))
                                for r in table])


# ------------------------------------------------------------------ Table 2
def write_table2(rows: list[dict], path) -> "pd.DataFrame":  # noqa: F821
    """Write Table 2 to `path` (CSV, columns table2_columns()): the paper's rows, then `rows`.

    Each row: {"Model", one key per registered task column ("IMDb", "SQuAD EM", "SQuAD F1", ...: a number
    0-100, a "not run: <why>" string, or "—" for a task the row is not about; missing = "not run"), "run_id",
    "note", "source", optional "role" (records.ROLE_LABELS key)}. The paper's rows leave columns it did not report
    empty. Returns the table; its typed twin (the numbers as floats) goes to `<path>.json`.
    """
    import pandas as pd

    columns = table2_columns()
    decimals = {c: t.decimals for t in downstream_tasks() for c in t.columns}
    table = [{"Model": name, **dict(zip(PAPER_TABLE2_COLUMNS, values)), "source": "paper", "run_id": "",
              "note": "paper Table 2 (IMDb test accuracy; SQuAD v1.1 dev EM/F1)"} for name, values in PAPER_TABLE2.items()]
    _check_rows(rows, {*columns, "role"}, 2, f"use {', '.join(columns)}")
    typed = [TableRow({c: str(r.get(c, "")) for c in columns}, {c: float(r[c]) for c in decimals if is_score(r.get(c))})
             for r in table]  # the paper's rows
    for r in rows:
        row = {"Model": r["Model"], "source": r.get("source", "measured"), "run_id": r.get("run_id", ""),
               "note": r.get("note", "")}
        values = {}
        for c, k in decimals.items():
            v = r.get(c, "not run")
            row[c] = f"{float(v):.{k}f}" if is_score(v) else v
            if is_score(v):
                values[c] = round(float(v), k)  # the number the cell shows
        table.append(row)
        typed.append(TableRow({c: str(row.get(c, "")) for c in columns}, values, r.get("role")))
    # every cell a string: "93.46" stays "93.46" and "—" sits in a column of numbers
    df = pd.DataFrame([{c: str(r.get(c, "")) for c in columns} for r in table], columns=list(columns))
    return write_csv(df, path, typed)


# ------------------------------------------------------------------ majority-class baseline
MAJORITY_COLUMNS = ("Task", "Majority label", "Score", "Accuracy", "Eval examples", "source", "note")


def refuse_foreign_tables(paths, overwrite: bool = False) -> None:
    """ValueError naming --overwrite for any of `paths` (our CSV tables) that exists and was not written by
    tinydistil (its header lacks our Model/Task, source and note columns); checked before any table is written."""
    for p in paths:
        refuse_foreign(p, lambda f: csv_with(f, "source", "note") and (csv_with(f, "Model") or csv_with(f, "Task")),
                       overwrite)


def write_majority(path, data_dir=None, tasks=None, overwrite: bool = False) -> "pd.DataFrame":  # noqa: F821
    """The majority-class baseline of each GLUE task (eval.glue.majority_baseline) as CSV, so a reader sees the
    margin of every Table 1 score over it: one row per task, "not run: <why>" where the task has no data,
    "n/a" for STS-B (no classes)."""
    import pandas as pd

    refuse_foreign_tables([path], overwrite)
    rows, values = [], []
    for task, data, reason in load_tasks(parse_tasks(tasks), data_dir):
        if data is None:
            rows.append({"Task": task.display, "Score": f"not run: {reason}", "source": "baseline"})
            values.append({})
            continue
        b = majority_baseline(task, data)
        fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
        rows.append({"Task": b["task"], "Majority label": b["label"] or "n/a", "Score": fmt(b["score"]),
                     "Accuracy": fmt(b["accuracy"]), "Eval examples": b["eval_examples"], "source": "baseline",
                     "note": "regression: no majority class" if b["label"] is None else
                     "the train split's most frequent label for every dev example, scored as Table 1"})
        # the numbers as the cells show them (one decimal); STS-B's constant prediction has no score (None)
        values.append({k: round(b[key], 1) for k, key in (("Score", "score"), ("Accuracy", "accuracy"))
                       if b[key] is not None} | {"Eval examples": float(b["eval_examples"])})
    cells = [{c: str(r.get(c, "")) for c in MAJORITY_COLUMNS} for r in rows]
    df = pd.DataFrame(cells, columns=list(MAJORITY_COLUMNS))
    return write_csv(df, path, [TableRow(c, v) for c, v in zip(cells, values)])


# ------------------------------------------------------------------ from evaluation folders
def describe_eval(eval_dir, role: str) -> str:
    """'teacher: cpu_teacher (bert, 6 layers, 10.1 M params)' from the runs in `eval_dir`/{glue,imdb}."""
    for p in sorted(Path(eval_dir).glob("**/seed*.json")):
        rec = read_seed_result(p)
        info = rec.get("model_info", {})
        layers = info.get("layers")
        return (f"{role}: {rec['model']} ({info.get('model_type')}, "
                f"{plural(layers, 'layer') if isinstance(layers, int) else f'{layers} layers'}, "
                f"{params_text(info.get('parameters', 0))} params)")
    return f"{role}: {Path(eval_dir).name}"


def write_tables(evals: list[tuple[str, str]], results_dir="results", teacher_role: str = "teacher",
                 overwrite: bool = False):
    """Tables 1 and 2 from evaluation folders [(role, runs/eval/<model>), ...] holding one sub-folder per
    registered task (glue/, imdb/, squad/, ...) (the CLI's default layout). Roles: "teacher", "student",
    "control" (the no-distillation control), "student_d" (DistilBERT (D) of the tasks with soft labels; its
    SQuAD cells come from the student's squad_d/). A student's squad_d/ without a "student_d" role gives a (D)
    row of SQuAD alone. A role other than `teacher_role` gets retention vs the teacher row. A table there that
    tinydistil did not write is kept unless `overwrite`."""
    from ..eval.squad import DOWNSTREAM as SQUAD

    out = Path(results_dir)
    refuse_foreign_tables([out / "table1_glue.csv", out / "table2_downstream.csv"], overwrite)
    names = {role: describe_eval(folder, ROLE_LABELS.get(role, role)) for role, folder in evals}
    folders = dict(evals)
    t2_tasks = [t for t in downstream_tasks() if t.columns]
    t1, t2 = [], []
    for role, folder in evals:
        teacher = names.get(teacher_role) if role != teacher_role else None
        if role == "student_d" and "student" in folders:  # (D) is the student fine-tuned another way
            names[role] = names["student"].replace(":", " (D):", 1)
        typed_role = role if role in ROLE_LABELS else None
        t1.append({**glue_row(names[role], summarize_glue(Path(folder) / "glue"), str(Path(folder) / "glue"), teacher),
                   "role": typed_role})
        row = {"Model": names[role], "run_id": "", "note": "", "role": typed_role}
        for task in t2_tasks:
            src = Path(folder) / task.name
            if role == "student_d" and not task.soft_labels:
                src = Path(folders.get("student", folder)) / "squad_d" if task is SQUAD else None
            cells = task.cells(src) if src is not None else {c: "—" for c in task.columns} | {"note": ""}
            row.update({**cells, "note": _join(row["note"], cells["note"]),
                        "run_id": _join(row["run_id"], str(src or ""))})
        if role == "student_d":
            row["note"] = _join("second-step distillation: fine-tuned with the fine-tuned teacher of the same task and "
                                "seed as a second teacher (the paper: SQuAD only; GLUE and IMDb beyond the paper)",
                                row["note"])
        t2.append(row)
        if (Path(folder) / "squad_d").is_dir() and "student_d" not in folders:
            d = SQUAD.cells(Path(folder) / "squad_d")
            others = {c: "—" for t in t2_tasks if t is not SQUAD for c in t.columns}  # not tasks of (D)
            t2.append({"Model": names[role].replace(":", " (D):", 1), **others, **d, "role": "student_d",
                       "note": _join("second-step distillation from the SQuAD-fine-tuned teacher", d["note"]),
                       "run_id": str(Path(folder) / "squad_d")})
    return write_table1(t1, out / "table1_glue.csv"), write_table2(t2, out / "table2_downstream.csv")
