"""What the report, the poster and the notebooks read from results/: the tables as typed rows (the JSON twin
of each CSV: records.TableRow, cells to show and floats to compute with), the run records, and the numbers
derived from them (retention, speed-ups, the ablation's ordering and verdicts). No CSV or markdown we wrote is
read back: numbers come from JSON numbers only.

    res = load_results("results", preset="cpu")

Nothing here raises for a missing file: it becomes "not run" with the reason (res.missing).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import current_names
from ..paper import PAPER_TABLE1, PAPER_TABLE2_COLUMNS, PAPER_TABLE2_SCORES
from ..records import ROLE_LABELS, TableRow, finite, read_table_json, table_json_path
from .ablation import CONTROL_VARIANT, FULL_VARIANT, SLUGS, paired_deltas
from .stats import measurably_worse, paired_t_lower, spread
from .tables import TABLE1_TASKS, TABLE2_META


TABLE3_COLUMNS = ("Model", "Params (M)", "Disk (MB)", "Device", "Threads", "Inference time (s)",
                  "Speed-up vs teacher", "Output change vs fp32", "source")


TABLE_FILES = {"table1": "table1_glue.csv", "table2": "table2_downstream.csv", "table3": "table3_speed.csv",
               "table4": "table4_ablation.csv", "majority": "glue_majority.csv"}


def label(row: TableRow) -> str:
    """How a row is named in sentences: its role's label ("student, no distillation"), else its Model cell."""
    return ROLE_LABELS.get(row.role, row.get("Model"))


@dataclass
class Results:
    """What write_report/write_poster read: tables as lists of records.TableRow, or None + reason."""
    results_dir: Path
    preset: str
    tables: dict = field(default_factory=dict)    # name -> list[TableRow] | None
    missing: dict = field(default_factory=dict)   # name -> reason
    reproduce: dict | None = None
    runs: dict = field(default_factory=dict)      # stage -> {"run": run.json, "summary": summary.json, "log": [..]}
    evals: dict = field(default_factory=dict)     # eval folder name -> {"records": [...], "finetune": [...]}
    ablation_runs: dict = field(default_factory=dict)  # variant slug -> {"run": run.json, "summary": summary.json}
    table4_json: dict | None = None  # table4_ablation.json: the floats behind Table 4 (verdicts come from these)

    def measured(self, name: str) -> list[TableRow]:
        return [r for r in self.tables.get(name) or [] if not r.paper]

    def paper(self, name: str) -> list[TableRow]:
        return [r for r in self.tables.get(name) or [] if r.paper]

    def table2_tasks(self) -> list[str]:
        """Table 2's score columns as written (IMDb, SQuAD EM, SQuAD F1, then any other registered task's);
        the paper's when the file is missing."""
        rows = self.tables.get("table2")
        return [c for c in rows[0].cells if c not in ("Model", *TABLE2_META)] if rows else list(PAPER_TABLE2_COLUMNS)


def _read_table(path: Path, required: tuple[str, ...]) -> tuple[list[TableRow] | None, str]:
    """The typed twin (`<table>.json`) of the CSV table at `path`, or (None, why)."""
    rows, reason = read_table_json(table_json_path(path))
    if rows is None:
        return None, reason
    absent = [c for c in required if rows and c not in rows[0]]
    if absent:
        return None, f"{table_json_path(path)} lacks column(s) {', '.join(absent)}"
    return rows, ""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_log(path: Path) -> list[dict]:
    """log.jsonl records, earlier term names (loss_ce: config.RENAMED) read as the current ones."""
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(current_names(json.loads(line)))
            except ValueError:
                continue  # a half-written last line of an interrupted run
    return out


def _read_run(path: Path) -> dict | None:
    """run.json, earlier config field names (alpha_ce: config.RENAMED) read as the current ones."""
    rec = _read_json(path)
    if isinstance(rec, dict) and isinstance(rec.get("config"), dict):
        rec["config"] = current_names(rec["config"])
    return rec


def load_results(results_dir="results", preset: str = "cpu") -> Results:
    """Read everything the report uses; nothing here raises for a missing file (it becomes "not run")."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist; pass --results-dir (e.g. results)")
    res = Results(root, preset)
    needed = {"table1": ("Model", "Score", "source"), "table2": ("Model", "IMDb", "source"),
              "table3": ("Model", "Params (M)", "Inference time (s)", "source"),
              "table4": ("Variant", "Score", "Delta"), "majority": ("Task", "Score")}
    hints = {"table1": "python -m tinydistil tables", "table2": "python -m tinydistil tables",
             "table3": "python -m tinydistil speed", "majority": "python -m tinydistil tables --data-dir DIR"}
    for name, fname in TABLE_FILES.items():
        rows, reason = _read_table(root / fname, needed[name])
        res.tables[name] = rows
        if rows is None:
            res.missing[name] = reason + (f"; written by `{hints[name]}`" if name in hints else "")
    res.table4_json = _read_json(root / "table4_ablation.json") if res.tables.get("table4") is not None else None
    res.reproduce = _read_json(root / preset / "reproduce.json")
    for stage in ("teacher", "student"):
        d = root / preset / stage
        res.runs[stage] = {"run": _read_run(d / "run.json"), "summary": _read_json(d / "summary.json"),
                           "log": _read_log(d / "log.jsonl")}
    for slug in SLUGS.values():
        d = root / preset / "ablation" / slug
        if d.is_dir():
            res.ablation_runs[slug] = {"run": _read_run(d / "run.json"), "summary": _read_json(d / "summary.json")}
    for folder in sorted((root / "runs" / "eval").glob(f"{preset}_*")):
        recs = [r for p in sorted(folder.glob("**/seed*.json")) if (r := _read_json(p))]
        fts = [r for p in sorted(folder.glob("*/finetune.json")) if (r := _read_json(p))]
        res.evals[folder.name] = {"records": recs, "finetune": fts}
    return res


def main_records(res: Results) -> list[dict]:
    """Per-seed fine-tuning records of Tables 1-2 (teacher, student, SQuAD (D)); Table 4's runs, which may use
    their own protocol (runs/eval/<preset>_ablation_*), left out."""
    return [r for k, ev in res.evals.items() if not _is_ablation(k) for r in ev["records"]]


def _is_ablation(eval_folder: str) -> bool:
    """True for Table 4's fine-tuning folders (<preset>_ablation_<variant>, as ablation.run_ablation names them)."""
    return "_ablation_" in eval_folder


def glue_retention(res: Results) -> list[dict]:
    """[{"role", "label", "model", "retention" (float, as Table 1 shows it), "score"}] for measured Table 1 rows that have
    a retention value."""
    return [{"role": r.role, "label": label(r), "model": r.get("Model"), "retention": r.value("retention"),
             "score": r.value("Score")}
            for r in res.measured("table1") if r.value("retention") is not None]


def _row_key(r: TableRow) -> str:
    return r.role or r.get("Model")  # a row from outside a study (no role) keeps its own name


def task_scores(res: Results) -> dict:
    """{row role (records.ROLE_LABELS key; the Model name of a row without one): {task: float}} for measured Table 1
    rows (GLUE tasks) plus Table 2's columns (IMDb, SQuAD, ...)."""
    out: dict[str, dict] = {}
    for r in res.measured("table1"):
        out.setdefault(_row_key(r), {}).update({t: r.value(t) for t in TABLE1_TASKS if r.value(t) is not None})
    for r in res.measured("table2"):
        out.setdefault(_row_key(r), {}).update({c: r.value(c) for c in res.table2_tasks() if r.value(c) is not None})
    return out


def paper_task_scores() -> dict:
    out = {name: dict(zip(TABLE1_TASKS, v[1:])) for name, v in PAPER_TABLE1.items()}
    for name, vals in PAPER_TABLE2_SCORES.items():
        out.setdefault(name, {}).update({c: v for c, v in vals.items() if v is not None})
    return out


def per_task_retention(teacher: dict, student: dict) -> dict:
    """{task: 100 * student / teacher} over tasks both have, skipping a teacher score of 0 (undefined)."""
    return {t: 100.0 * student[t] / teacher[t] for t in teacher if t in student and teacher[t] not in (0, 0.0)}


def speedups(res: Results) -> list[dict]:
    """Measured Table 3 rows that compare like for like, as the paper does (PyTorch fp32 against a PyTorch fp32
    reference; int8 and ONNX Runtime forms are another comparison): {"row" (TableRow), "speedup" (float),
    "pairs" (STS-B dev pairs timed, None if unrecorded), "versus": "teacher" (our student) or "BERT-base
    architecture" (the DistilBERT architecture, the paper's own comparison)}. One per comparison: the first (a
    fine-tuned copy of the student has the same shape and time)."""
    out, seen = [], set()
    for r in res.measured("table3"):
        x = r.extra
        if r.value("Speed-up vs teacher") is None or not x.get("versus") or x.get("form") != "PyTorch fp32":
            continue
        versus = "BERT-base architecture" if x.get("architecture") else "teacher"
        if versus in seen:
            continue
        seen.add(versus)
        out.append({"row": r, "speedup": r.value("Speed-up vs teacher"), "pairs": x.get("pairs"), "versus": versus})
    return out


def ablation(res: Results) -> dict | None:
    """{"ours": [(variant, delta)], "paper": [(variant, paper delta)], "same_order": bool, "compared": [the
    paper's variants in our order]} sorted from the most harmful change (most negative delta) to the least, over the
    variants with a measured delta; plus table4_verdicts' keys."""
    rows = res.measured("table4")
    ours = [(r["Variant"], r.value("Delta")) for r in rows
            if r["Variant"] != FULL_VARIANT and r.value("Delta") is not None]
    if not ours:
        return None
    paper = {r["Variant"]: r.value("Paper delta") for r in rows}
    ours = sorted(ours, key=lambda x: x[1])
    theirs = sorted([(v, paper[v]) for v, _ in ours if paper.get(v) is not None], key=lambda x: x[1])
    compared = [v for v, _ in ours if paper.get(v) is not None]
    full = next((r for r in rows if r["Variant"] == FULL_VARIANT), None)
    # per variant: the Paired deltas and Per-task delta cells as shown, and the typed numbers behind the others
    extra = {r["Variant"]: {"Paired deltas": r.get("Paired deltas").strip(), "Per-task delta": r.get("Per-task delta").strip(),
                            "mlm_pct": r.value("Held-out MLM acc"), **r.extra} for r in rows}
    # an order needs two variants: with one measured, "same order" would say nothing (None: not comparable yet)
    out = {"ours": ours, "paper": theirs, "same_order": [v for v, _ in theirs] == compared if len(compared) > 1 else None,
           "compared": compared,  # the paper's rows in our order (most harmful first)
           "full_sd": full.extra.get("sd") if full is not None else None, "extra": extra}
    return {**out, **table4_verdicts(res.table4_json or {})}


def table4_verdicts(table4: dict) -> dict:
    """The decision rule applied to Table 4's floats (table4_ablation.json, never its formatted cells):
    {"rule": min paired seeds lower (None: every one), "worse": [variants measurably worse on the GLUE macro],
    "excl_sd", "excl_deltas": {variant: delta}, "excl_worse": [...] (the same on the macro without WNLI)}; under the
    paired t-test also "p_values" (lower than the full loss), "better" / "p_better" (higher than the full loss: for
    a row that adds something) and "vs_control": {row: (mean paired delta over the control, p of higher)}."""
    declared = table4.get("rule") or {}
    variants, rule, alpha = table4.get("variants", {}), declared.get("min_paired_seeds_lower"), declared.get("paired_t_alpha")
    full = variants.get(FULL_VARIANT)
    out = {"rule": rule, "paired_t_alpha": alpha, "p_values": {}, "worse": [], "excl_sd": None, "excl_deltas": {},
           "excl_worse": [], "better": [], "p_better": {}, "vs_control": {}}
    if not full:
        return out
    if alpha is not None:  # the same one-sided test the other way: above the full loss, above the control
        for name, r in variants.items():
            if name != FULL_VARIANT and r.get("score") is not None:
                better, p = paired_t_lower([-d for d in paired_deltas(r, full)], alpha)
                out["p_better"][name] = p
                if better:
                    out["better"].append(name)
        control = variants.get(CONTROL_VARIANT)
        for name, r in variants.items():
            if control and control.get("score") is not None and name != CONTROL_VARIANT and r.get("score") is not None:
                d = paired_deltas(r, control)
                out["vs_control"][name] = (sum(d) / len(d) if d else None, paired_t_lower([-x for x in d], alpha)[1])
    for key in ("", "excl"):
        base = full.get(key) if key else full
        sp = spread((base or {}).get("per_seed", []))
        if not base or base.get("score") is None or sp is None:
            continue
        for name, r in variants.items():
            mine = r.get(key) if key else r
            if name == FULL_VARIANT or not mine or mine.get("score") is None:
                continue
            delta = mine["score"] - base["score"]
            if key:
                out["excl_deltas"][name] = delta
            paired = paired_deltas(mine, base)
            if alpha is not None:  # the paired t-test of the issue-26 protocol
                worse, p = paired_t_lower(paired, alpha)
                if not key:
                    out["p_values"][name] = p
            else:  # the sd-and-count rule of the earlier protocol (results/table4_protocol.md)
                worse = measurably_worse(delta, sp["sd"], paired, rule)
            if worse:
                out["excl_worse" if key else "worse"].append(name)
        if key:
            out["excl_sd"] = sp["sd"]
    return out


GLUE_TASK_IDS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


def retention_by_seed(res: Results) -> list[tuple[int, float]]:
    """[(seed, student macro / teacher macro in %)] from the per-seed GLUE records of <preset>_teacher and
    <preset>_student, each seed's macro taken over the GLUE tasks both models ran with that seed."""
    def by_seed(name):
        out: dict[int, dict[str, float]] = {}
        for r in res.evals.get(f"{res.preset}_{name}", {}).get("records", []):
            if r.get("task") in GLUE_TASK_IDS and finite(r.get("score")) is not None:
                out.setdefault(int(r["seed"]), {})[r["task"]] = finite(r["score"])
        return out

    t, s = by_seed("teacher"), by_seed("student")
    pairs = []
    for seed in sorted(set(t) & set(s)):
        tasks = sorted(set(t[seed]) & set(s[seed]))
        tm = sum(t[seed][k] for k in tasks)
        if tasks and tm > 0:
            pairs.append((seed, 100 * sum(s[seed][k] for k in tasks) / tm))
    return pairs


def table4_protocol(res: Results) -> dict | None:
    """{'seeds': [...], 'max_examples', 'epochs', 'lr'} of Table 4's fine-tuning, read from its per-seed runs."""
    rows = res.tables.get("table4") or []
    full = next((r for r in rows if r.get("Variant") == FULL_VARIANT), {})
    shared = "ablation" not in full.get("run_id", "")  # the full row reuses Table 1's student runs
    recs = [r for k, ev in res.evals.items()
            if _is_ablation(k) or (shared and k == f"{res.preset}_student") for r in ev["records"]]
    if not recs:
        return None
    hp = recs[0].get("hyperparameters", {})
    return {"seeds": sorted({r["seed"] for r in recs if r.get("seed") is not None}),
            "max_examples": int(max(finite(r.get("train_examples")) or 0 for r in recs)),
            "epochs": hp.get("epochs"), "lr": hp.get("lr")}


def teacher_student_pairs(scores: dict) -> list[tuple[str, dict, dict]]:
    """[(role, the teacher's scores, the role's scores)] for every role of task_scores beside the teacher."""
    if "teacher" not in scores:
        return []
    return [(k, scores["teacher"], v) for k, v in scores.items() if k != "teacher"]


def majority_margins(res: Results) -> list[dict]:
    """[{"task", "majority" (float | None), "teacher", "student" (floats or None), "margin" (teacher - majority)}]
    for each task of glue_majority.csv, with the measured Table 1 scores beside it."""
    scores = task_scores(res)
    teacher, student = scores.get("teacher", {}), scores.get("student", {})
    out = []
    for r in res.tables.get("majority") or []:
        t, m = r["Task"], r.value("Score")
        out.append({"task": t, "majority": m, "teacher": teacher.get(t), "student": student.get(t),
                    "margin": None if m is None or teacher.get(t) is None else teacher[t] - m})
    return out

