"""The report's first section, the study's answer: what distillation buys (study/effect.py's numbers in words),
retention as a reader needs it, the distillation-tokens curve and the machine's speed."""
from __future__ import annotations

from .curve import study_curve
from .effect import ROLES, distillation_effect
from .figures import GLUE_DISPLAY as GLUE_NAMES
from ..records import ROLE_LABELS, finite
from .results import Results
from .tables import md_table


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.1f} %"


def section_effect(res: Results, curve_fig: str) -> str:
    """The study's answer first: the distilled student (and (D)) against the no-distillation control, retention as
    a reader needs it, the tokens curve, and the machine's speed."""
    eff = distillation_effect(res)
    out = ["## What distillation buys", ""]
    vs = eff["versus_control"]["student"]
    if vs is None:
        out.append("Not run: there is no no-distillation control in these results (the `control` stage of `reproduce`"
                   " fine-tunes the student as distillation starts from it, 0 updates, on every task). Without it "
                   "nothing below can say what the distillation updates added to the copied teacher layers.")
    else:
        sd = "n/a" if vs["base_sd"] is None else f"{vs['base_sd']:.2f}"
        out.append(f"**Distilled student vs the same student with no distillation (the control), GLUE macro over "
                   f"{', '.join(GLUE_NAMES.get(t, t) for t in vs['tasks'])}: {vs['delta']:+.2f} points (the control's "
                   f"seed sd {sd}; higher on {vs['higher']} of {len(vs['paired'])} paired seeds): "
                   f"{vs['verdict']}.**" + ("" if vs["verdict"] == "measurably above" else
                                            " At this distillation length the distillation updates do not measurably "
                                            "improve the student over its copy of the teacher's layers on GLUE: that "
                                            "is this study's finding."))
    mlm = eff["mlm"]
    if mlm:
        out.append(f"Held-out masked-token accuracy (WikiText-2 valid, {mlm['tokens']:,} masked tokens, the same masks): "
                   f"student {mlm['student']:.2f} % vs control {mlm['control']:.2f} % ({mlm['diff']:+.2f} points, "
                   f"standard error {mlm['se']:.2f}): {mlm['verdict']}.")
    d = eff["versus_control"]["student_d"]
    dv = eff["d_versus_student"]
    if d and dv:
        out.append(f"DistilBERT (D) (fine-tuned with the fine-tuned teacher as a second teacher; beyond the paper on "
                   f"GLUE): vs the control {d['delta']:+.2f} ({d['verdict']}), vs the plain student {dv['delta']:+.2f}"
                   f" (higher on {dv['higher']} of {len(dv['paired'])} paired seeds; {dv['verdict']}).")
    out += _beyond_glue_lines(res)
    out.append("")
    out += _retention_lines(eff) + _curve_lines(res, curve_fig) + _host_lines(res)
    return "\n".join(out)



def _retention_lines(eff: dict) -> list[str]:
    """Retention per role (all tasks, the tasks the teacher beats the majority on, per seed, margin kept)."""
    rows = []
    for role, label in ROLES.items():
        r = eff["retention"].get(role)
        if not r:
            rows.append({"Model": label, "All tasks run": "not run"})
            continue
        seeds = [v for v in r["per_seed_skilled"].values() if v is not None]
        rows.append({"Model": label, "All tasks run": _pct(r["all"]), "Tasks the teacher beats the majority on":
                     _pct(r["skilled"]), "Per seed (those tasks)": (f"{min(seeds):.1f}–{max(seeds):.1f} %" if seeds
                                                                     else "n/a"),
                     "Teacher's margin over the majority kept": _pct(r["margin"])})
    skilled = ", ".join(GLUE_NAMES.get(t, t) for t in eff["skilled_tasks"]) or "none measured"
    return ["Retention (GLUE macro as % of the teacher's, over the tasks both ran). The paper's 97 % averages all nine "
            "tasks with a teacher far above the majority class on each; here the teacher beats the majority class on "
            f"{skilled} only, so the second column is the one that measures kept skill, and the last the share of "
            "the teacher's margin over the majority class that the student keeps.", "",
            md_table(rows, ["Model", "All tasks run", "Tasks the teacher beats the majority on",
                            "Per seed (those tasks)", "Teacher's margin over the majority kept"]), ""]


def _curve_lines(res: Results, curve_fig: str) -> list[str]:
    """The tokens curve as a table and its figure, or why it is missing."""
    curve, why = study_curve(res.results_dir, res.reproduce)
    if curve:
        cols = ["point", "tokens", "mlm_accuracy", *curve["tasks"], "macro"]
        return ["Distillation-tokens curve (`tokens_curve.csv`): the control at 0 tokens, the student's snapshots, the "
                "final student; GLUE medians over the study's seeds, held-out MLM accuracy in %.", "",
                md_table([{c: ("" if p.get(c) is None else f"{p[c]:,}" if c == "tokens" else str(p[c])) for c in cols}
                          for p in curve["points"]], cols), "", f"![tokens curve]({curve_fig})", ""]
    return [f"Distillation-tokens curve: not run ({why}).", ""]


def _host_lines(res: Results) -> list[str]:
    """The machine's matmul rate and distillation tokens/s at the start of the study (wall times scale with them)."""
    host = (res.reproduce or {}).get("host_speed")
    if not host:
        return []
    g = host.get("matmul_gflops", {})
    tps = (res.reproduce or {}).get("distill_tokens_per_s")
    return [f"Machine speed at the start of the study: plain matmul {g.get('fp32')} GFLOP/s fp32, bf16 "
            f"{g.get('bf16')}" + (" GFLOP/s" if finite(g.get("bf16")) is not None else "")
            + f" ({host.get('threads')} threads, shape {host.get('matmul_shape')}); distillation ran at "
            + (f"{tps:,.0f} tokens/s" if tps else "an unrecorded rate")
            + ". Wall times scale with these: a machine with half the matmul rate takes about twice as long."]


def _beyond_glue_lines(res: Results) -> list[str]:
    """IMDb and SQuAD (Table 2) for the teacher, the control, the student and (D): medians over seeds, the student's
    and (D)'s difference from the control. With 1-2 seeds there is no seed spread to judge them by: stated, not
    called measurable either way."""
    rows = {r.role: r for r in res.measured("table2") if r.role}
    cols = [c for c in res.table2_tasks() if any(r.value(c) is not None for r in rows.values())]
    out = []
    for col in cols:
        vals = {role: rows[role].value(col) for role in ("teacher", "control", "student", "student_d")
                if role in rows and rows[role].value(col) is not None}
        if "control" not in vals or "student" not in vals:
            continue
        task = "squad" if col.startswith("SQuAD") else col.lower()
        seeds = len({r.get("seed") for r in res.evals.get(f"{res.preset}_student", {}).get("records", [])
                     if r.get("task") == task})
        parts = [f"{ROLE_LABELS[role]} {v:.2f}" + (f" ({v - vals['control']:+.2f} vs the control)"
                                                   if role in ("student", "student_d") else "")
                 for role, v in vals.items()]
        out.append(f"{col} ({seeds} seed{'s' if seeds != 1 else ''}; too few for a seed spread, so differences are "
                   f"stated, not judged): {', '.join(parts)}.")
    return out
