"""The report's "Targets" section: each target a preset declares (presets.Preset.targets) set against what its
results show — met, missed (with the number), or not run — so a missed target is stated plainly.

    rows = check_targets(load_results("results", "cpu"))   # [{"target", "measured", "verdict"}, ...]

Every kind of target is one `Target` line of TARGETS, checked in one loop: the preset key its threshold comes
from (presets.TARGET_KEYS lists the same keys, so a mistyped one fails when the preset loads), the sentence the
report states it as, and how it is measured. A target is met when its measured value >= the threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..presets import PRESETS, TARGET_KEYS, check_keys, get_preset
from .effect import ROLES as EFFECT_ROLES
from .effect import compare, mlm_versus_control
from .effect import retention as effect_retention
from ..records import finite
from .results import Results, glue_retention, majority_margins, speedups, task_scores

# how a target is measured: (results, task or None) -> (the value set against the threshold, or None when not run;
# the measured number(s) as the report shows them, or when not run why, if the measure can tell)
Measure = Callable[[Results, "str | None"], "tuple[float | None, str]"]


@dataclass(frozen=True)
class Target:
    """One kind of target. `says` is its report line, with {t} the threshold and {task} the task; per_task: the
    preset gives {task: threshold}, one row each. A threshold of True (a yes/no target) is checked against 0."""
    key: str
    says: str
    measure: Measure
    per_task: bool = False


def _not_run(res: Results, task: str) -> str:
    """Why a target on `task` has no number: the study ran no model on it (a task left out of the preset's list
    or not run yet), or it ran and this model's score is missing."""
    ran = sorted({t for scores in task_scores(res).values() for t, v in scores.items() if v is not None})
    if task in ran:
        return "not run"
    return f"not run ({task} is not among the tasks this study scored: {', '.join(ran) or 'none'})"


def score(role: str, task: str | None = None, fmt: str = ".1f") -> Measure:
    """The measure "`role`'s score on `task`" (Table 1 / Table 2); task None: the preset's task of the row."""
    def measure(res: Results, row_task: str | None):
        v = task_scores(res).get(role, {}).get(task or row_task)
        return v, _not_run(res, task or row_task) if v is None else format(v, fmt)
    return measure


def mlm_accuracy(res: Results, _task=None):
    ev = ((res.reproduce or {}).get("mlm_eval") or {}).get("teacher") or {}
    acc = None if finite(ev.get("mlm_accuracy")) is None else 100 * finite(ev["mlm_accuracy"])
    return acc, "" if acc is None else f"{acc:.2f} %"  # as the run records it


def majority_margin(res: Results, task: str):
    m = next((m for m in majority_margins(res) if m["task"] == task), {})
    gap = m.get("margin")
    return gap, _not_run(res, task) if gap is None else f"{m['teacher']:.1f} vs majority {m['majority']:.1f}: {gap:+.1f}"


def retention(res: Results, _task=None):
    ret = next((r["retention"] for r in glue_retention(res)), None)
    return ret, "" if ret is None else f"{ret:.1f} %"


def squad_d_over_student(res: Results, _task=None):
    scores = task_scores(res)
    d, s = scores.get("student_d", {}).get("SQuAD F1"), scores.get("student", {}).get("SQuAD F1")
    return (None, _not_run(res, "SQuAD F1")) if d is None or s is None else (d - s, f"{d:.1f} vs {s:.1f}: {d - s:+.1f}")


def speedup(res: Results, _task=None):
    sp = next((r["speedup"] for r in speedups(res) if r["versus"] == "teacher"), None)
    return sp, "" if sp is None else f"{sp:.2f}x"


def above_control(res: Results, _task=None):
    """+1 when the distilled student is measurably above the no-distillation control on GLUE (study.effect.compare:
    higher by more than the control's seed sd and on every paired seed), else -1."""
    c = compare(res, "student", "control")
    if c is None:
        return None, ""
    sd = "n/a" if c["base_sd"] is None else f"{c['base_sd']:.2f}"
    return (1.0 if c["verdict"] == "measurably above" else -1.0,
            f"{c['delta']:+.2f} (control seed sd {sd}; higher on {c['higher']}/{len(c['paired'])} paired seeds)")


def above_control_mlm(res: Results, _task=None):
    m = mlm_versus_control(res)
    if m is None:
        return None, ""
    return (1.0 if m["verdict"] == "measurably above" else -1.0,
            f"{m['student']:.2f} vs {m['control']:.2f} % ({m['diff']:+.2f}, standard error {m['se']:.2f})")


def skilled_retention(res: Results, role: str):
    """A role's GLUE macro as % of the teacher's over the tasks the teacher beats the majority class on."""
    key = next((k for k, label in EFFECT_ROLES.items() if label == role), role)
    r = effect_retention(res, key)
    v = None if r is None else r["skilled"]
    return v, "" if v is None else f"{v:.1f} % (over {', '.join(r['skilled_tasks'])})"


TARGETS = (
    Target("teacher_mlm_accuracy", "teacher held-out masked-token accuracy >= {t:g} %", mlm_accuracy),
    Target("teacher_margin", "teacher {task} >= majority class + {t:g}", majority_margin, per_task=True),
    Target("teacher_min", "teacher {task} >= {t:g}", score("teacher"), per_task=True),
    Target("glue_retention", "student GLUE Score >= {t:g} % of the teacher's", retention),
    Target("imdb_teacher", "teacher IMDb accuracy >= {t:g}", score("teacher", "IMDb", ".2f")),
    Target("squad_teacher_f1", "teacher SQuAD F1 >= {t:g}", score("teacher", "SQuAD F1")),
    Target("squad_d_ge_student", "SQuAD F1 of DistilBERT (D) >= the plain student's", squad_d_over_student),
    Target("speedup", "student / teacher CPU inference speed-up >= {t:g}x (PyTorch fp32)", speedup),
    Target("above_control", "distilled student measurably above the no-distillation control on GLUE", above_control),
    Target("above_control_mlm", "distilled student measurably above the control on held-out masked-token accuracy",
           above_control_mlm),
    Target("skilled_retention", "{task} GLUE macro >= {t:g} % of the teacher's, over the tasks the teacher beats the "
           "majority class on", skilled_retention, per_task=True),
)


def _thresholds(target: Target, declared) -> list[tuple[str | None, float]]:
    """[(task or None, threshold)] the preset's value of `target` asks for, in its order."""
    if target.per_task:
        return list(declared.items())
    if isinstance(declared, bool):
        return [(None, 0.0)] if declared else []
    return [(None, declared)]


def check_targets(res: Results, targets: dict | None = None) -> list[dict]:
    """[{"target": what, "measured": the number(s), "verdict": "met" | "**missed**" | "not run"}] for the
    targets of `res.preset` (or `targets`: an unknown key is a ValueError), in the order of TARGETS; [] when it
    declares none."""
    if targets is None:
        targets = get_preset(res.preset).targets if res.preset in PRESETS else {}
    check_keys("targets", targets, TARGET_KEYS)
    rows = []
    for target in (t for t in TARGETS if t.key in targets):
        for task, t in _thresholds(target, targets[target.key]):
            value, measured = target.measure(res, task)
            verdict = "not run" if value is None else ("met" if value >= t else "**missed**")
            rows.append({"target": target.says.format(t=t, task=task),
                         "measured": (measured or "not run") if value is None else measured, "verdict": verdict})
    return rows
