"""The report's "Targets" section: each target a preset declares (presets.Preset.targets) set against what its
results show — met, missed (with the number), or not run — so a missed target is stated plainly.

    rows = check_targets(load_results("results", "cpu"))   # [{"target", "measured", "verdict"}, ...]
"""
from __future__ import annotations

from ..presets import PRESETS, get_preset
from .results import Results, glue_retention, majority_margins, num, speedups, task_scores


def _verdict(value: float | None, ok: bool) -> str:
    return "not run" if value is None else ("met" if ok else "**missed**")


def _f(v: float | None, unit: str = "") -> str:
    return "not run" if v is None else f"{v:.1f}{unit}"


def check_targets(res: Results, targets: dict | None = None) -> list[dict]:
    """[{"target": what, "measured": the number(s), "verdict": "met" | "**missed**" | "not run"}] for the
    targets of `res.preset` (or `targets`); [] when it declares none."""
    if targets is None:
        targets = get_preset(res.preset).targets if res.preset in PRESETS else {}
    scores = task_scores(res)
    teacher, student = scores.get("teacher", {}), scores.get("student", {})
    rows = []
    if "teacher_mlm_accuracy" in targets:
        t = targets["teacher_mlm_accuracy"]
        ev = ((res.reproduce or {}).get("mlm_eval") or {}).get("teacher") or {}
        acc = None if num(ev.get("mlm_accuracy")) is None else 100 * num(ev["mlm_accuracy"])
        rows.append({"target": f"teacher held-out masked-token accuracy >= {t:g} %",
                     "measured": "not run" if acc is None else f"{acc:.2f} %",  # as the run records it
                     "verdict": _verdict(acc, acc is not None and acc >= t)})
    margins = {m["task"]: m for m in majority_margins(res)}
    for task, t in targets.get("teacher_margin", {}).items():
        m = margins.get(task, {})
        gap = m.get("margin")
        measured = ("not run" if gap is None else
                    f"{m['teacher']:.1f} vs majority {m['majority']:.1f}: {gap:+.1f}")
        rows.append({"target": f"teacher {task} >= majority class + {t:g}", "measured": measured,
                     "verdict": _verdict(gap, gap is not None and gap >= t)})
    for task, t in targets.get("teacher_min", {}).items():
        v = teacher.get(task)
        rows.append({"target": f"teacher {task} >= {t:g}", "measured": _f(v), "verdict": _verdict(v, v is not None
                                                                                              and v >= t)})
    if "glue_retention" in targets:
        t = targets["glue_retention"]
        ret = next((num(r["retention"]) for r in glue_retention(res)), None)
        rows.append({"target": f"student GLUE Score >= {t:g} % of the teacher's", "measured": _f(ret, " %"),
                     "verdict": _verdict(ret, ret is not None and ret >= t)})
    if "imdb_teacher" in targets:
        t, v = targets["imdb_teacher"], teacher.get("IMDb")
        rows.append({"target": f"teacher IMDb accuracy >= {t:g}", "measured": "not run" if v is None else f"{v:.2f}",
                     "verdict": _verdict(v, v is not None and v >= t)})
    if "squad_teacher_f1" in targets:
        t, v = targets["squad_teacher_f1"], teacher.get("SQuAD F1")
        rows.append({"target": f"teacher SQuAD F1 >= {t:g}", "measured": _f(v),
                     "verdict": _verdict(v, v is not None and v >= t)})
    if targets.get("squad_d_ge_student"):
        d, s = scores.get("student (D)", {}).get("SQuAD F1"), student.get("SQuAD F1")
        both = None if d is None or s is None else d - s
        rows.append({"target": "SQuAD F1 of DistilBERT (D) >= the plain student's",
                     "measured": "not run" if both is None else f"{d:.1f} vs {s:.1f}: {both:+.1f}",
                     "verdict": _verdict(both, both is not None and both >= 0)})
    if "speedup" in targets:
        t = targets["speedup"]
        sp = next((num(r["Speed-up vs teacher"]) for r in speedups(res) if r["versus"] == "teacher"), None)
        rows.append({"target": f"student / teacher CPU inference speed-up >= {t:g}x (PyTorch fp32)",
                     "measured": "not run" if sp is None else f"{sp:.2f}x",
                     "verdict": _verdict(sp, sp is not None and sp >= t)})
    return rows

