"""What distillation buys, read from the per-seed results on floats: the distilled student and DistilBERT (D)
against the no-distillation control (the same student before any distillation update), and retention stated as a
reader needs it — over all tasks (the paper's figure), over the tasks where the teacher beats the majority class,
per seed, and as the share of the teacher's margin over the majority class the student keeps.

    eff = distillation_effect(load_results("results", "cpu"))
    eff["versus_control"]["student"]   # {"delta", "control_sd", "paired", "higher", "verdict", ...}
    eff["retention"]["student"]        # {"all", "skilled", "per_seed_skilled", "margin"}
"""
from __future__ import annotations

import statistics

from ..eval.glue import TASKS as GLUE_TASKS
from ..records import ROLE_LABELS, finite
from .results import Results
from .stats import accuracy_diff_se, macro, paired_deltas, per_seed_macro, spread

ROLES = {r: ROLE_LABELS[r] for r in ("student", "student_d", "control")}
DISPLAY_TO_ID = {t.display: name for name, t in GLUE_TASKS.items()}
MAJORITY_ROUNDING = 0.05  # half the last decimal of glue_majority.csv


def seed_scores(res: Results, role: str) -> dict[str, dict[int, float]]:
    """{GLUE task id: {seed: score}} of the per-seed records of <preset>_<role> (Table 1's runs)."""
    out: dict[str, dict[int, float]] = {}
    for r in res.evals.get(f"{res.preset}_{role}", {}).get("records", []):
        if r.get("task") in GLUE_TASKS and finite(r.get("score")) is not None:
            out.setdefault(r["task"], {})[int(r["seed"])] = finite(r["score"])
    return out


def majority(res: Results) -> dict[str, float]:
    """{GLUE task id: majority-class score} from glue_majority.json; STS-B (no classes) scores 0: a constant
    prediction has no correlation."""
    out = {}
    for r in res.tables.get("majority") or []:
        tid = DISPLAY_TO_ID.get(r.get("Task"))
        if tid:
            out[tid] = r.value("Score") if r.value("Score") is not None else 0.0
    return out


def skilled_tasks(res: Results) -> list[str]:
    """The GLUE tasks where the teacher's median beats the majority class (ids, Table 1 order): the tasks where a
    student can show what it kept of the teacher's skill."""
    teacher, base = seed_scores(res, "teacher"), majority(res)
    # glue_majority.csv holds one decimal: a teacher that predicts the majority class everywhere (RTE: 52.708 vs
    # "52.7") must not count as beating it
    return [t for t in GLUE_TASKS if t in teacher and t in base
            and statistics.median(teacher[t].values()) > base[t] + MAJORITY_ROUNDING]


def _only(scores: dict, tasks) -> dict:
    return {t: v for t, v in scores.items() if t in tasks}


def retention(res: Results, role: str) -> dict | None:
    """{"all": %, "skilled": %, "skilled_tasks": [...], "per_seed_skilled": {seed: %}, "margin": %} of a role's
    GLUE macro-score against the teacher's, over the tasks both ran; None without both."""
    teacher, mine = seed_scores(res, "teacher"), seed_scores(res, role)
    common = [t for t in teacher if t in mine]
    if not common:
        return None
    skilled = [t for t in skilled_tasks(res) if t in common]
    ratio = lambda a, b: None if a is None or not b else 100.0 * a / b  # noqa: E731
    out = {"all": ratio(macro(_only(mine, common)), macro(_only(teacher, common))), "all_tasks": common,
           "skilled_tasks": skilled, "skilled": None, "per_seed_skilled": {}, "margin": None}
    if skilled:
        out["skilled"] = ratio(macro(_only(mine, skilled)), macro(_only(teacher, skilled)))
        ts, ms = per_seed_macro(_only(teacher, skilled)), per_seed_macro(_only(mine, skilled))
        out["per_seed_skilled"] = {s: ratio(ms[s], ts[s]) for s in sorted(set(ts) & set(ms))}
        base = majority(res)
        t_margin = sum(statistics.median(teacher[t].values()) - base[t] for t in skilled)
        m_margin = sum(statistics.median(mine[t].values()) - base[t] for t in skilled)
        out["margin"] = ratio(m_margin, t_margin)
    return out


def compare(res: Results, role: str, base_role: str, tasks=None, min_higher: int | None = None) -> dict | None:
    """`role` against `base_role` on the GLUE macro (mean over tasks of the median over seeds), with the Table 4
    rule turned around: measurably above when higher by more than the base's seed sd AND higher on at least
    `min_higher` paired seeds (None: on every one). {"delta", "base_sd", "paired", "higher", "verdict", "tasks",
    "per_task": {task: delta of medians}}; None without both."""
    mine, base = seed_scores(res, role), seed_scores(res, base_role)
    tasks = [t for t in (tasks or GLUE_TASKS) if t in mine and t in base]
    if not tasks:
        return None
    mine, base = _only(mine, tasks), _only(base, tasks)
    paired = paired_deltas(per_seed_macro(mine), per_seed_macro(base))
    sd = (spread(per_seed_macro(base).values()) or {}).get("sd")
    delta = macro(mine) - macro(base)
    higher = sum(d > 0 for d in paired)
    need = len(paired) if min_higher is None else min_higher
    above = sd is not None and bool(paired) and delta > sd and higher >= need
    return {"delta": delta, "base_sd": sd, "paired": paired, "higher": higher, "tasks": tasks,
            "verdict": "measurably above" if above else "not measurably above",
            "per_task": {t: statistics.median(mine[t].values()) - statistics.median(base[t].values()) for t in tasks}}


def mlm_versus_control(res: Results) -> dict | None:
    """Held-out masked-token accuracy of the student and the control (same masks), the difference in points and
    its standard error (two binomial proportions; conservative, as the masks are shared)."""
    ev = (res.reproduce or {}).get("mlm_eval") or {}
    s, c = ev.get("student") or {}, ev.get("control") or {}
    ps, pc = finite(s.get("mlm_accuracy")), finite(c.get("mlm_accuracy"))
    if ps is None or pc is None:
        return None
    n = int(s.get("masked_tokens") or 0)
    se = 100 * accuracy_diff_se(ps, pc, n) if n else None
    diff = 100 * (ps - pc)
    return {"student": 100 * ps, "control": 100 * pc, "diff": diff, "se": se, "tokens": n,
            "verdict": "measurably above" if se is not None and diff > 2 * se else "not measurably above"}


def distillation_effect(res: Results, min_higher: int | None = None) -> dict:
    """Everything above for the report: {"versus_control": {role: compare}, "d_versus_student": compare,
    "retention": {role: retention}, "skilled_tasks", "mlm": mlm_versus_control}."""
    return {"versus_control": {r: compare(res, r, "control", min_higher=min_higher) for r in ("student", "student_d")},
            "d_versus_student": compare(res, "student_d", "student", min_higher=min_higher),
            "retention": {r: retention(res, r) for r in ROLES}, "skilled_tasks": skilled_tasks(res),
            "mlm": mlm_versus_control(res)}
