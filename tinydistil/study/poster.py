"""A one-page 16:9 poster (poster/poster.pdf + poster/poster.png) from the same files as the report.

    pdf, png = write_poster("results", "poster", preset="cpu")

Nothing here holds a measured number: the tables, plots and headline figures are read through
report.load_results; the paper's numbers come from report/tables constants and are labelled "paper".
"""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from ..losses import DistilLoss, objective_text
from ..paper import (PAPER_RETENTION_TEXT, PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3, PAPER_TABLE4, paper_glue_retention,
                     paper_speedup)
from .ablation import FULL_VARIANT
from .effect import distillation_effect
from .figures import GLUE_DISPLAY, TASK_DISPLAY, agg_pyplot, draw_curve_deltas, draw_loss_terms
from ..records import ROLE_LABELS, finite
from .results import (TABLE_FILES, Results, ablation, glue_retention, label, load_results, main_records,
                      paper_task_scores, speedups, table4_protocol, task_scores, teacher_student_pairs)
from .stats import p_text
from .tables import TABLE1_TASKS, params_text
from .table4_text import separated_order
from .targets import check_targets

POSTER_SIZE = (20.0, 11.25)  # inches, 16:9
PNG_DPI = 100                # 2000 x 1125 px


def _short(v) -> str:
    s = str(v).strip()
    return "not run" if not s or s.lower().startswith("not run") else s


def _table(ax, rows: list[list[str]], cols: list[str], title: str, fontsize: float = 8.5, note: str = "",
           fit_all: bool = False):
    ax.axis("off")
    ax.set_title(title, fontsize=12, loc="left", fontweight="bold")
    if not rows:
        ax.text(0, 0.5, "not run", fontsize=11)
        return
    t = ax.table(cellText=rows, colLabels=cols, loc="upper center", cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(fontsize)
    t.scale(1, 1.35)
    t.auto_set_column_width(list(range(len(cols))) if fit_all else [0])  # names (or every cell) in full
    for (r, c), cell in t.get_celld().items():
        if r == 0:
            cell.set_facecolor("#dde6f0")
        elif rows[r - 1][-1] == "paper":
            cell.set_facecolor("#f2f2f2")
        if cell.get_text().get_text() == "not run":
            cell.get_text().set_color("0.45")
    if note:  # wrapped to the panel (wrap=True breaks at the figure's edge); an 8-pt character ~ 0.6 x 8 pt wide
        chars = int(ax.get_position().width * ax.figure.get_figwidth() * 72 / 4.8)
        ax.text(0, -0.02, textwrap.fill(note, chars, break_on_hyphens=False), fontsize=8, transform=ax.transAxes,
                va="top", color="0.3")


def _table1_rows(res: Results) -> list[list[str]]:
    rows = res.tables.get("table1")
    if rows is None:
        return [[n, str(v[0]), *map(str, v[1:]), "", "paper"] for n, v in PAPER_TABLE1.items()]
    return [[label(r), _short(r.get("Score")), *[_short(r.get(t)) for t in TABLE1_TASKS],
             str(r.get("retention", "")).strip() or "—", "paper" if r.paper else "ours"] for r in rows]


def _table2_rows(res: Results) -> list[list[str]]:
    rows = res.tables.get("table2")
    if rows is None:
        return [[n, *vals, "paper"] for n, vals in PAPER_TABLE2.items()]
    return [[label(r), *[_short(r.get(c)) for c in res.table2_tasks()], "paper" if r.paper else "ours"]
            for r in rows]


def _short_form(name: str) -> str:
    """'student fine-tuned on STS-B (ONNX Runtime int8)' -> 'STS-B student, ORT int8' (fits the headline box)."""
    for long, short in (("student fine-tuned on STS-B", "STS-B student"), (" architecture", " arch."),
                        ("ONNX Runtime", "ORT"), (" dynamic", ""), (" (", ", ")):
        name = name.replace(long, short)
    return name[:-1] if name.endswith(")") else name


def _why(res: Results, table: str, default: str) -> str:
    """Short reason for the headline box: 'no table3_speed.csv' (the report gives the full one)."""
    return f"no {TABLE_FILES[table]}" if table in res.missing else default


def _headlines(res: Results) -> list[str]:
    ret = glue_retention(res)
    sp = speedups(res)
    ab = ablation(res)
    lines = ["Distilled student vs no distillation (control):"]
    eff = distillation_effect(res)
    vs, mlm = eff["versus_control"]["student"], eff["mlm"]
    lines.append("   not run (no control in these results)" if vs is None else
                 f"   GLUE {vs['delta']:+.2f}, {vs['higher']}/{len(vs['paired'])} seeds: {vs['verdict']}")
    if mlm:
        lines.append(f"   held-out MLM {mlm['diff']:+.2f} pts (se {mlm['se']:.2f}): {mlm['verdict']}")
    lines.append("GLUE retention (student / teacher):")
    lines += [f"   ours: {r['retention']:.1f} %  ({r['label']})" for r in ret] or \
             [f"   ours: not run ({_why(res, 'table1', 'no student row')})"]
    for name, t, st in teacher_student_pairs(task_scores(res)) if ret else []:
        same = [k for k in t if k in st and t[k] == st[k]]
        if len(same) >= 2:
            lines.append(f"   caution: {ROLE_LABELS.get(name, name)} = teacher exactly on {len(same)} of")
            lines.append(f"   {len([k for k in t if k in st])} tasks (same-class baselines?)")
    lines.append(f"   paper: {PAPER_RETENTION_TEXT} %  ({paper_glue_retention():.1f} % from its Table 1)")
    where = {", ".join(r["row"].get(k).strip() + (" threads" if k == "Threads" else "") for k in ("Device", "Threads")
                       if r["row"].get(k).strip()) for r in sp}
    # like for like: the paper's ratio (DistilBERT vs BERT-base) beside our architecture ratio only; the student vs
    # its own teacher has no paper counterpart and gets a block of its own
    suffix = f" ({where.pop()})" if len(where) == 1 else ""
    pairs = lambda r: (f" ({r['pairs']} pairs{', tiny sample' if r['pairs'] < 100 else ''})"  # noqa: E731
                       if r.get("pairs") else "")
    arch = [r for r in sp if r["versus"] != "teacher"]
    lines.append("DistilBERT vs BERT-base arch speed-up" + suffix + ":")
    lines += [f"   ours: {r['speedup']:g}x" + pairs(r) for r in arch] or \
             [f"   ours: not run ({_why(res, 'table3', 'no architecture rows')})"]
    lines.append(f"   paper: {paper_speedup():.2f}x  ({PAPER_TABLE3['BERT-base'][1]} s / "
                 f"{PAPER_TABLE3['DistilBERT'][1]} s, its machine)")
    own = [r for r in sp if r["versus"] == "teacher"]  # one line each: the box holds ~22 lines
    lines += [f"vs own teacher (not in the paper): {r['speedup']:g}x "
              + _short_form(r["row"]["Model"]).removeprefix("student, ") for r in own]
    lines.append("Ablation order (most harmful first):")
    if ab:
        # like for like: our order of the paper's own rows (the rest: the line below)
        lines.append("   ours: " + " > ".join(v.replace("- ", "-") for v in ab["compared"]))
        # an order is a claim only between rows the decision rule separates from the full loss (report: the same)
        worse = [v.replace("- ", "-") for v, _ in ab["ours"] if v in ab["worse"]]
        beyond = separated_order(ab)
        verdict = (f"{len(ab['paper'])} of its variants measured" if ab["same_order"] is None else
                   "same" if ab["same_order"] else "differs, within seed noise" if beyond is None else
                   "same beyond noise" if beyond else "differs")
        lines.append("   paper: " + " > ".join(v.replace("- ", "-") for v, _ in ab["paper"]) + f"  ({verdict})")
        lines.append(f"   ours, beyond seed noise: {', '.join(worse) or 'none'}"
                     + ("; rest noise" if len(worse) < len(ab["ours"]) else ""))
    else:
        lines.append(f"   ours: not run ({_why(res, 'table4', 'no deltas')})")
        lines.append("   paper: " + " > ".join(v.replace("- ", "-") for v, _ in sorted(PAPER_TABLE4.items(),
                                                                              key=lambda x: x[1])))
    ev = (res.reproduce or {}).get("mlm_eval", {})
    if "teacher" in ev and "student" in ev:
        lines.append("Held-out MLM accuracy (WikiText-2 " + str(ev.get("split")) + "):")
        lines.append(f"   teacher {100 * ev['teacher']['mlm_accuracy']:.2f} %, "
                     f"student {100 * ev['student']['mlm_accuracy']:.2f} %")
    return lines


def _method(res: Results) -> str:
    t = (res.runs["teacher"]["run"] or {}).get("config", {})
    s = (res.runs["student"]["run"] or {}).get("config", {})
    tp = finite((res.runs["teacher"]["summary"] or {}).get("parameters"))
    sp = finite((res.runs["student"]["summary"] or {}).get("parameters"))
    walls = (res.reproduce or {}).get("stage_wall_time_s", {})
    teacher = (f"{t.get('num_layers')}-layer x {t.get('hidden_size')} BERT"
               + (f", {params_text(tp)} params" if tp else "") if t else "not run")
    nl = t.get("num_layers")
    student = (f"{nl // 2}-layer DistilBERT" if isinstance(nl, int) else "DistilBERT") + (
        f", {params_text(sp)} params" if sp else "" if s else ", not run")
    how = ("MLM continued" if t.get("init_from") else "MLM from scratch") if t else ""
    if t.get("init_from"):
        teacher = t["init_from"] + (f", {params_text(tp)} params" if tp else "")
    lines = [
        "1. Teacher: " + teacher,  # two lines: the column is ~55 monospace characters wide
        f"   {how} on WikiText-2" + (f" ({walls['teacher']:.0f} s)" if finite(walls.get("teacher")) else ""),
        "2. Student init: every other teacher layer",
        "   + embeddings + MLM head -> " + student,
        "3. Distil with the triple loss" + (f" ({walls['distill']:.0f} s)" if finite(walls.get("distill")) else ""),
        "4. Fine-tune teacher, student, control and (D):",
        "   GLUE dev (Table 1), IMDb + SQuAD (Table 2);",
        "   time inference (Table 3), ablate the loss (Table 4)",
    ]
    return "\n".join(lines)


def _settings_as_run(recs: list[dict]) -> str:
    """'SST-2 3x1200, STS-B 3x1200, IMDb 2x1000, SQuAD 1x2000': each task's seeds x most training examples."""
    out = []
    for task in dict.fromkeys(r.get("task") for r in recs if r.get("task")):
        rs = [r for r in recs if r.get("task") == task]
        seeds = len({r.get("seed") for r in rs})
        n = max((int(finite(r.get("train_examples")) or 0) for r in rs), default=0)
        out.append(f"{TASK_DISPLAY.get(task, task)} {seeds}x{n or '?'}")
    return ", ".join(out)


def _differences(res: Results) -> str:
    recs = main_records(res)
    tsum = res.runs["teacher"]["summary"] or {}
    init_from = ((res.runs["teacher"]["run"] or {}).get("config") or {}).get("init_from")
    hub = ((res.runs["student"]["run"] or {}).get("config") or {}).get("teacher")
    tokens = f" ({tsum['tokens']} tokens)" if tsum.get("tokens") else ""
    if init_from:
        teacher = [f"- Teacher: {init_from} (pretrained, itself distilled; saw NLI/QQP",
                   "  pairs), MLM head trained on WikiText-2" + tokens]
    elif tsum:
        teacher = ["- Teacher: small BERT trained from scratch on WikiText-2" + tokens,
                   "  instead of BERT-base on Wikipedia + BookCorpus"]
    elif hub:
        teacher = [f"- Teacher: {hub} as it is" + (" (the paper's)" if str(hub).endswith("bert-base-uncased") else "")]
    else:
        teacher = ["- Teacher: not run (no teacher run.json in the results)"]
    squad = [r for r in recs if r.get("task") == "squad"]
    lines = [
        *teacher,
        "- Fine-tuning (seeds x training examples, as run):",
        "  " + (_settings_as_run(recs) if recs else "not run"),
        "  (paper: median of 5 seeds, full training sets)",
        "- GLUE tasks without train/dev data are not run",
        "- SQuAD: " + ("not run" if not squad else "train split -> dev, as the paper"
                       if all(r.get("comparable", True) for r in squad) else "no train split: split of dev"),
        "- Details, provenance and caveats: report/report.md",
    ]
    targets = check_targets(res)
    if targets:
        count = lambda v: sum(v in t["verdict"] for t in targets)  # noqa: E731
        lines.insert(-1, f"- The preset's targets: {count('met')} met, {count('missed')} missed, "
                         f"{count('not run')} not run (report: Targets)")
    return "\n".join(lines)


def poster_figure(res: Results):
    """The poster as a matplotlib Figure (Agg): a header, then three columns of three panels."""
    plt = agg_pyplot()
    fig = plt.figure(figsize=POSTER_SIZE)
    gs = fig.add_gridspec(3, 3, left=0.03, right=0.985, top=0.86, bottom=0.05, hspace=0.45, wspace=0.18,
                          width_ratios=[1.0, 1.35, 1.0])
    _header(fig, res)
    # column 0: method, headlines, differences from the paper
    _method_panel(fig.add_subplot(gs[0, 0]), res)
    _text_panel(fig.add_subplot(gs[1, 0]), "Headline numbers", "\n".join(_headlines(res)), fontsize=9.0,
                family="monospace", bbox=dict(boxstyle="round", facecolor="#fff7e0", edgecolor="#d9b44a"))
    _text_panel(fig.add_subplot(gs[2, 0]), "Differs from the paper", _differences(res), fontsize=10)
    # column 1: Table 1, per-task bars, Table 2
    _table(fig.add_subplot(gs[0, 1]), _table1_rows(res), ["Model", "Score", *TABLE1_TASKS, "retention", "src"],
           "Table 1: GLUE dev", fontsize=8,
           note=res.missing.get("table1", "our Score = mean of the tasks run (see report), not comparable "
                                          "to the paper's 9-task mean"))
    _task_bars(fig.add_subplot(gs[1, 1]), res)
    _table(fig.add_subplot(gs[2, 1]), _table2_rows(res), ["Model", *res.table2_tasks(), "src"],
           "Table 2: IMDb test accuracy, SQuAD v1.1 EM/F1", fontsize=9, note=res.missing.get("table2", ""))
    # column 2: the tokens curve (the loss terms when there is none: they are in the report), size vs speed, Table 4
    if not draw_curve_deltas(ax := fig.add_subplot(gs[0, 2]), res):
        draw_loss_terms(ax, res)
    _speed_panel(fig.add_subplot(gs[1, 2]), res)
    rows, cols, note = _table4_rows(res)
    _table(fig.add_subplot(gs[2, 2]), rows, cols, "Table 4: ablation (GLUE macro, median over seeds)", fontsize=9,
           note=note, fit_all=True)
    return fig


def _header(fig, res: Results) -> None:
    rep = res.reproduce or {}
    m = rep.get("machine", {})
    where = (f" on {m['gpu']}" if m.get("gpu") else f" on {m['cpu_count']} CPU cores" if m.get("cpu_count") else "")
    fig.text(0.03, 0.955, f"tinydistil: DistilBERT (Sanh et al., 2019) reproduced{where}", fontsize=26,
             fontweight="bold", va="center")
    git = f"git {str(rep['git_sha'])[:10]}" if rep.get("git_sha") else "git not recorded"
    fig.text(0.03, 0.905, f"preset '{res.preset}'; {git}; "
             f"{m.get('cpu', 'machine not recorded')}; measured numbers read from "
             f"{res.results_dir}/ (grey rows / labels = the paper's numbers; 'not run' = not run yet)",
             fontsize=12, color="0.3", va="center")


def _text_panel(ax, title: str, text: str, **style) -> None:
    ax.axis("off")
    ax.set_title(title, fontsize=13, loc="left", fontweight="bold")
    ax.text(0, 0.98, text, va="top", **style)


def _method_panel(ax, res: Results) -> None:
    """What was distilled into what, and the objective with the weights the student's run used."""
    _text_panel(ax, "Method", _method(res), fontsize=9.8, family="monospace")
    s_cfg = (res.runs["student"]["run"] or {}).get("config", {})
    weights = s_cfg or dataclasses.asdict(DistilLoss())  # the paper's weights when no student has run
    ax.text(0, 0.05, f"$L = {objective_text(weights, latex=True)}$"
            + (f"    T = {s_cfg.get('temperature')}" if s_cfg else "   (paper weights)"), fontsize=13)


def _task_bars(ax, res: Results) -> None:
    """One bar per model and task we ran, ours beside the paper's."""
    import numpy as np

    ours = task_scores(res)
    paper = paper_task_scores()
    # the tasks we ran (all of them when none ran): a task with no measured bar would only show the paper's
    tasks = [t for t in (*TABLE1_TASKS, "IMDb") if any(v.get(t) is not None for v in ours.values())] \
        or [*TABLE1_TASKS, "IMDb"]
    series = [(f"{ROLE_LABELS.get(k, k)} (ours)", v, f"C{i}") for i, (k, v) in enumerate(ours.items())]
    series += [("BERT-base (paper)", paper["BERT-base"], "0.55"), ("DistilBERT (paper)", paper["DistilBERT"], "0.8")]
    series = [sr for sr in series if any(sr[1].get(t) is not None for t in tasks)]  # a legend entry has bars
    x = np.arange(len(tasks))
    w = 0.8 / max(len(series), 1)
    for i, (name, vals, color) in enumerate(series):
        xs = x + (i - (len(series) - 1) / 2) * w
        ax.bar(xs, [vals.get(t) or 0 for t in tasks], w, label=name, color=color)
        for xk, t in zip(xs, tasks):  # a score of exactly 0 (CoLA's MCC) is a result, not a missing bar
            if vals.get(t) is not None and abs(vals[t]) < 0.05:
                ax.text(xk, 1, "0", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, tasks, fontsize=9)
    ax.set_ylabel("dev/test score", fontsize=9)
    ax.set_title("Per task: ours and the paper's (tasks we ran)", fontsize=11, loc="left")
    ax.legend(fontsize=8, ncol=min(len(series), 4), loc="upper center", bbox_to_anchor=(0.5, -0.1))


def _speed_panel(ax, res: Results) -> None:
    """Our Table 3 timings as points (log-log); the paper's, on another machine and data, as text beside them."""
    import matplotlib

    # one axis per kind of timing: ours (a few hundred pairs, this machine) as points; the paper's (the whole STS-B
    # dev set on its CPU) as text, never on the same axis
    ax.text(0.01, 0.98, "the paper (whole STS-B dev set, its CPU):\n" + "\n".join(
        f"{n}: {p:g} M params, {t:g} s" for n, (p, t) in PAPER_TABLE3.items()), transform=ax.transAxes,
        fontsize=7.5, ha="left", va="top", color="0.35")
    ax.margins(x=0.25, y=0.25)
    ax.set_xlabel("parameters (M)", fontsize=9)
    ax.set_ylabel("CPU inference time (s)", fontsize=9)
    measured = [r for r in res.measured("table3")
                if r.value("Params (M)") is not None and r.value("Inference time (s)") is not None]
    title = "Table 3: size vs speed"
    # a fine-tuned copy of the student has its size and time: one point for both
    measured = [r for r in measured if "fine-tuned" not in str(r["Model"])]
    if measured:  # our models are far smaller and timed on another machine: log-log, one axis
        min_p, max_p = (f(r.value("Params (M)") for r in measured) for f in (min, max))
        for i, r in enumerate(measured):
            ax.scatter([r.value("Params (M)")], [r.value("Inference time (s)")], color=f"C{i}",
                       label=_short_form(r["Model"]).replace(", PyTorch fp32", ""))
        # ours run from small-and-fast (lower left) to large-and-slow (upper right): the lower right is empty
        ax.legend(fontsize=7, loc="lower right", title=f"ours ({measured[0].get('Device', '')}, "
                  f"{measured[0].get('Threads', '')} threads)", title_fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # "3x10^1 4x10^1" collide
        ax.set_xticks([t for t in (10, 20, 50, 100, 200) if 0.5 * min_p <= t <= 2 * max_p])
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        title += " (ours, log-log)"
    else:
        title += " — ours: not run"
    ax.set_title(title, fontsize=11, loc="left")


def _table4_rows(res: Results) -> tuple[list[list[str]], list[str], str]:
    """(Table 4 rows for the poster, their columns, the note under them); the paper's deltas alone when the ablation
    has not run. "p" (one-sided paired t-test) when the table's rule is that test, "seeds lower" otherwise; "Δ -WNLI"
    (the macro without WNLI) only when the ablation's tasks include WNLI; variants not run yet say so."""
    ab_rows = res.measured("table4")
    if not ab_rows:
        cols = ["Variant", "GLUE", "Delta", "seed sd", "seeds lower", "MLM acc %", "paper Δ"]
        rows = [[v, "not run", "not run", "—", "—", "—", f"{d:+.2f}"] for v, d in PAPER_TABLE4.items()]
        return rows, cols, "measured: " + res.missing.get("table4", "not run")

    def fmt(v, spec=".2f"):  # the poster keeps the number, the report the whole cell
        return "—" if v is None else format(v, spec)

    ab = ablation(res) or {}
    t_test = ab.get("paired_t_alpha") is not None
    p_values = ab.get("p_values") or {}
    with_wnli = any(r.extra.get("excl_delta") is not None for r in ab_rows)
    cols = ["Variant", "GLUE", "Delta", "seed sd", "p" if t_test else "seeds lower", "MLM acc %",
            *(["Δ -WNLI"] if with_wnli else []), "paper Δ"]

    def test_cell(r):
        if r["Variant"] == FULL_VARIANT or (t_test and p_values.get(r["Variant"]) is None):
            return "—"
        return p_text(p_values[r["Variant"]]) if t_test else \
            f"{r.extra['lower']}/{len(r.extra['paired'])}" if r.extra.get("paired") else "—"

    rows = [[r["Variant"], _short(r.get("Score")), "n/a" if r["Variant"] == FULL_VARIANT else _short(r.get("Delta")),
             fmt(r.extra.get("sd")), test_cell(r), fmt(r.value("Held-out MLM acc")),
             *(["n/a" if r["Variant"] == FULL_VARIANT else fmt(r.extra.get("excl_delta"), "+.2f")] if with_wnli else []),
             fmt(r.value("Paper delta"), "+.2f")]
            for r in ab_rows]
    done = {r["Variant"] for r in ab_rows}
    rows += [[v, "not run", *["—"] * (len(cols) - 3), f"{d:+.2f}"] for v, d in PAPER_TABLE4.items() if v not in done]
    proto = table4_protocol(res)
    note = ((f"every row: {len(proto['seeds'])} seeds, <= {proto['max_examples']} training examples per task; "
             if proto else "") + "seed sd: of the per-seed macro; "
            + (f"p: one-sided paired t-test vs the full loss (worse if p < {ab['paired_t_alpha']:g})" if t_test else
               "seeds lower: paired with the full loss's seed")
            + ("; Δ -WNLI: delta of the macro without WNLI" if with_wnli else ""))
    return rows, cols, note


def write_poster(results_dir="results", poster_dir="poster", preset: str = "cpu",
                 overwrite: bool = False) -> tuple[Path, Path]:
    """Write `poster_dir`/poster.pdf and poster.png from `results_dir`; returns (pdf, png). A poster file there
    that tinydistil (matplotlib) did not write is kept unless `overwrite`."""
    import matplotlib.pyplot as plt

    from ..rundir import atomic_file, made_by_matplotlib, refuse_foreign

    out = Path(poster_dir)
    pdf, png = out / "poster.pdf", out / "poster.png"
    for f in (pdf, png):
        refuse_foreign(f, made_by_matplotlib, overwrite)
    res = load_results(results_dir, preset)
    out.mkdir(parents=True, exist_ok=True)
    fig = poster_figure(res)
    with atomic_file(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})  # the same results give the same bytes
    with atomic_file(png) as tmp:
        fig.savefig(tmp, format="png", dpi=PNG_DPI)
    plt.close(fig)
    return pdf, png
