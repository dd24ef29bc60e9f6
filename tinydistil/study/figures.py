"""The figures shared by the report, the poster and the notebooks, drawn from results/ only.

    paths = write_figures(load_results("results"), Path("report/figures"))   # {name: png}
"""
from __future__ import annotations

from pathlib import Path

from ..eval.glue import TASKS as GLUE_TASKS
from ..eval.registry import downstream_tasks
from ..losses import TERMS as LOSS_TERMS
from ..paper import PAPER_TABLE3
from ..records import ROLE_LABELS, finite
from .ablation import FULL_VARIANT, VARIANTS
from .curve import study_curve
from .effect import seed_scores, skilled_tasks
from .results import Results, ablation, paper_task_scores, per_task_retention, task_scores, teacher_student_pairs
from .stats import accuracy_diff_se, mean_interval
from .tables import TABLE1_TASKS

GLUE_DISPLAY = {name: t.display for name, t in GLUE_TASKS.items()}  # cola -> CoLA
# every task a per-seed record can name: the GLUE tasks and the other downstream stages (imdb -> IMDb)
TASK_DISPLAY = {**GLUE_DISPLAY, **{d.name: d.display or d.name for d in downstream_tasks() if d.name != "glue"}}


def agg_pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display): every figure of the report and poster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    from ..rundir import atomic_file

    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix[1:])
    plt.close(fig)
    return path


def loss_terms(log: list[dict]) -> list[str]:
    """Logged loss terms (keys starting with 'loss') that are not identically zero."""
    keys = [k for k in (log[0] if log else {}) if k.startswith("loss")]
    return [k for k in keys if any(finite(r.get(k)) for r in log)]


# one panel per logged term (losses.TERMS), then the weighted total
TERM_TITLES = {**{f"loss_{t.key}": t.title for t in LOSS_TERMS}, "loss": "weighted total (the loss trained)"}


def _curve_terms(log: list[dict]) -> list[str]:
    """A stage's plotted terms: its non-zero ones, less a total that is a single term itself (the teacher's)."""
    terms = loss_terms(log)
    return [t for t in terms if not (t == "loss" and len(terms) == 2)]


def fig_loss_curves(res: Results, path: Path) -> Path:
    """One panel per loss term (the MLM cross-entropy of teacher and student together), y = the term unweighted."""
    plt = agg_pyplot()
    stages = [(s, res.runs[s]["log"]) for s in ("teacher", "student")]
    panels = [t for t in TERM_TITLES if any(t in _curve_terms(log) for _, log in stages)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.6 * max(len(panels), 1), 3.4), squeeze=False)
    if not panels:
        axes[0][0].axis("off")
        axes[0][0].text(0.5, 0.5, "not run (no log.jsonl)", ha="center", va="center")
    for ax, term in zip(axes[0], panels):
        for i, (stage, log) in enumerate(stages):
            if term in _curve_terms(log):
                pts = [(r["step"], finite(r.get(term))) for r in log if finite(r.get(term)) is not None]
                ax.plot(*zip(*pts), lw=1.4, color=f"C{i}", label=stage)
        ax.set_title(TERM_TITLES[term], fontsize=9)
        ax.set_xlabel("update", fontsize=8)
        ax.set_ylabel(term if term == "loss" else f"{term} (unweighted)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(f"Training loss terms ({res.preset} preset, from log.jsonl)", fontsize=11)
    return _save(plt, fig, path)


def bar_tasks(res: Results) -> tuple[str, ...]:
    """The bars' tasks: those with a measured score among GLUE's then Table 2's columns (IMDb, SQuAD EM, SQuAD F1,
    any other registered task); all of them when nothing was measured."""
    tasks = (*TABLE1_TASKS, *res.table2_tasks())
    ours = task_scores(res)
    return tuple(t for t in tasks if any(v.get(t) is not None for v in ours.values())) or tasks


def _legend_below(ax, n: int) -> None:
    """The legend under the axes, outside the data."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=max(min(n, 4), 1))


def fig_task_bars(res: Results, path: Path) -> Path:
    """Per task: our roles' scores beside the paper's BERT-base and DistilBERT; a score of exactly 0 is labelled."""
    plt = agg_pyplot()
    import numpy as np

    ours, paper, tasks = task_scores(res), paper_task_scores(), bar_tasks(res)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    panels = [("measured (this repository)", {ROLE_LABELS.get(k, k): v for k, v in ours.items()}),
              ("paper (Sanh et al. 2019, Tables 1-2)", {k: paper[k] for k in ("BERT-base", "DistilBERT")})]
    x = np.arange(len(tasks))
    for ax, (title, models) in zip(axes, panels):
        names = list(models)
        w = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            vals = [models[name].get(t) for t in tasks]
            xs = x + (i - (len(names) - 1) / 2) * w
            ax.bar(xs, [v if v is not None else 0 for v in vals], w, label=name, color=f"C{i}")
            for xk, v in zip(xs, vals):  # a missing bar and a score of 0 (CoLA's MCC) must not look alike
                if v is None or abs(v) < 0.05:
                    ax.text(xk, 1, "not run" if v is None else "0", rotation=90 if v is None else 0, fontsize=6,
                            ha="center", va="bottom", color="0.4" if v is None else "k")
        if not names:
            ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center")
        ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if names:
            _legend_below(ax, len(names))
    axes[0].set_ylabel("score (0-100; CoLA MCC, STS-B Pearson/Spearman)")
    return _save(plt, fig, path)


def fig_retention(res: Results, path: Path) -> Path:
    """Each role's score as % of the teacher's, per task; tasks where the teacher does not beat the majority class
    are hatched (a ratio to a near-floor teacher says nothing about kept skill)."""
    plt = agg_pyplot()
    import numpy as np

    paper, tasks = paper_task_scores(), bar_tasks(res)
    series = [(f"{ROLE_LABELS.get(k, k)} / teacher (measured)", per_task_retention(t, s)) for k, t, s in
              teacher_student_pairs(task_scores(res))]
    series.append(("DistilBERT / BERT-base (paper)", per_task_retention(paper["BERT-base"], paper["DistilBERT"])))
    skilled = {GLUE_DISPLAY[t] for t in skilled_tasks(res)}
    floor = {t for t in tasks if t in TABLE1_TASKS and t not in skilled and res.tables.get("majority")}
    fig, ax = plt.subplots(figsize=(10, 4.4))
    x = np.arange(len(tasks))
    w = 0.8 / len(series)
    for i, (name, ret) in enumerate(series):
        xs = x + (i - (len(series) - 1) / 2) * w
        measured = "paper" not in name
        bars = ax.bar(xs, [ret.get(t, 0) for t in tasks], w, label=name, color=f"C{i}" if measured else "0.6")
        for bar, t in zip(bars, tasks):
            if measured and t in floor:
                bar.set_hatch("///")
                bar.set_alpha(0.45)
        for xk, t in zip(xs, tasks):
            if t not in ret:
                ax.text(xk, 2, "n/a", rotation=90, fontsize=6, ha="center")
    ax.axhline(100, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("student as % of teacher")
    ax.set_title("Retention per task (n/a: not run, or a teacher score of 0"
                 + ("; hatched: the teacher does not beat the majority class, the ratio is near-floor noise)"
                    if floor else ")"), fontsize=9)
    _legend_below(ax, len(series))
    return _save(plt, fig, path)


def fig_speed_size(res: Results, path: Path) -> Path:
    """Parameters vs inference time: the paper's (its CPU, the whole STS-B dev set) and ours on separate axes."""
    plt = agg_pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    pts = [(n, p, t) for n, (p, t) in PAPER_TABLE3.items()]
    axes[0].scatter([p for _, p, _ in pts], [t for _, _, t in pts], color="0.5", marker="s")
    for n, p, t in pts:  # labels inside the frame: left of the rightmost point
        right = p == max(q for _, q, _ in pts)
        axes[0].annotate(n, (p, t), fontsize=8, xytext=(-6 if right else 4, 4), textcoords="offset points",
                         ha="right" if right else "left")
    axes[0].margins(x=0.15, y=0.15)
    axes[0].set_title("paper (Table 3, CPU, STS-B dev)", fontsize=10)
    measured = [(r, r.value("Params (M)"), r.value("Inference time (s)")) for r in res.measured("table3")]
    measured = [m for m in measured if m[1] is not None and m[2] is not None]
    if measured:
        for i, (r, p, t) in enumerate(measured):
            where = ", ".join(str(r.get(k)) for k in ("Device", "Threads") if str(r.get(k, "")).strip())
            axes[1].scatter([p], [t], color=f"C{i}", label=f"{r['Model']} ({where})")
        axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        axes[1].text(0.5, 0.5, "measured: not run\n" + res.missing.get("table3", "no numeric rows"), ha="center",
                     va="center", transform=axes[1].transAxes, fontsize=9, wrap=True)
    axes[1].set_title("measured (table3_speed.json)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel("inference time (s)")
    return _save(plt, fig, path)


def fig_tokens_curve(res: Results, path: Path) -> Path:
    """Score vs distillation tokens (tokens_curve.json): held-out masked-token accuracy and each curve task's
    median over seeds (per-seed scores as dots), the control at 0 tokens, the teacher as a dashed line."""
    import statistics

    plt = agg_pyplot()
    curve, why = study_curve(res.results_dir, res.reproduce)
    if not curve:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "tokens curve: not run\n" + why.replace("`", ""), ha="center", va="center", wrap=True)
        return _save(plt, fig, path)
    panels = ["mlm_accuracy", *curve["tasks"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), squeeze=False)
    pts = curve["points"]
    x = [p["tokens"] / 1e6 for p in pts]
    teacher_mlm = finite(((res.reproduce or {}).get("mlm_eval") or {}).get("teacher", {}).get("mlm_accuracy"))
    teacher = {GLUE_DISPLAY.get(t, t): statistics.median(v.values()) for t, v in seed_scores(res, "teacher").items()}
    for ax, key in zip(axes[0], panels):
        ys = [finite(p.get(key)) for p in pts]
        ax.plot([a for a, y in zip(x, ys) if y is not None], [y for y in ys if y is not None], "o-", color="C0",
                lw=1.5, label="student (median)")
        for a, p in zip(x, pts):
            for v in (p.get("seed_scores", {}).get(key, {}) or {}).values():
                ax.plot(a, v, ".", color="C0", alpha=0.35, ms=4)
        ref = 100 * teacher_mlm if key == "mlm_accuracy" and teacher_mlm is not None else teacher.get(key)
        if ref is not None:
            ax.axhline(ref, ls="--", color="C3", lw=1.2, label="teacher")
        if ys and ys[0] is not None:
            ax.annotate("control", (0, ys[0]), textcoords="offset points", xytext=(4, -12), fontsize=7)
        ax.set_title("held-out MLM accuracy (%)" if key == "mlm_accuracy" else f"{key} (dev)", fontsize=9)
        ax.set_xlabel("distillation tokens (M)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("What distillation buys: the student vs distillation tokens (0 = no distillation)", fontsize=10)
    return _save(plt, fig, path)


def draw_loss_terms(ax, res: Results) -> None:
    """The student's distillation loss terms vs update on one axes (log scale; the poster's panel without a curve)."""
    log = res.runs["student"]["log"]
    for j, term in enumerate(loss_terms(log)):
        pts = [(r["step"], finite(r[term])) for r in log if finite(r.get(term))]
        ax.plot(*zip(*pts), label=term, color=f"C{j}", lw=1.3)
    if log:
        ax.set_yscale("log")
        ax.legend(fontsize=8, ncol=2)
    else:
        ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
    ax.set_xlabel("update", fontsize=9)
    ax.set_title("Distillation loss terms (student log.jsonl)", fontsize=11, loc="left")


def draw_curve_deltas(ax, res: Results) -> bool:
    """The tokens curve on one axes (the poster's panel): each score's change from the control (the point at 0
    tokens), in points, vs distillation tokens: held-out MLM accuracy, each curve task's median and their macro.
    False (nothing drawn) when this study has no curve."""
    curve, _ = study_curve(res.results_dir, res.reproduce)
    if not curve:
        return False
    pts = curve["points"]
    x = [p["tokens"] / 1e6 for p in pts]
    for j, key in enumerate(["mlm_accuracy", *curve["tasks"], "macro"]):
        base = finite(pts[0].get(key))
        ys = [finite(p.get(key)) for p in pts]
        if base is None:
            continue
        xy = [(a, y - base) for a, y in zip(x, ys) if y is not None]
        ax.plot(*zip(*xy), "o-", color=f"C{j}", lw=2 if key == "macro" else 1.3, ms=4,
                label="held-out MLM acc" if key == "mlm_accuracy" else "GLUE macro" if key == "macro" else key)
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set_xlabel("distillation tokens (M); 0 = the control, no distillation", fontsize=9)
    ax.set_ylabel("change vs the control (points)", fontsize=9)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("What distillation buys: score vs distillation tokens", fontsize=11, loc="left")
    return True


def fig_table4(res: Results, path: Path) -> Path:
    """Table 4 as two panels, one row per measured variant (VARIANTS order, top down), x = the variant minus the
    full triple loss: GLUE macro per paired seed (dots), their mean with its 95 % t interval, the paper's delta
    (open diamond); held-out MLM accuracy (points) with ±2 standard errors of the difference."""
    plt = agg_pyplot()
    ab = ablation(res)
    names = [v for v in VARIANTS if v != FULL_VARIANT and ab and (ab["extra"].get(v) or {}).get("paired")]
    if not names:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "Table 4: not run", ha="center", va="center")
        return _save(plt, fig, path)
    paper = dict(ab["paper"])
    full = ab["extra"].get(FULL_VARIANT, {})
    fig, (g, m) = plt.subplots(1, 2, figsize=(9, 0.55 * len(names) + 1.6), sharey=True)
    labelled = False
    for y, v in enumerate(reversed(names)):
        e = ab["extra"][v]
        g.plot(e["paired"], [y] * len(e["paired"]), ".", color="C0", alpha=0.45, ms=6)
        iv = mean_interval(e["paired"])
        if iv is not None:
            g.errorbar(iv[0], y, xerr=[[iv[0] - iv[1]], [iv[2] - iv[0]]], fmt="o", color="C0", capsize=3,
                       label=None if y else "mean of the paired seeds, 95 % interval")
        if v in paper:
            g.plot(paper[v], y, "D", mfc="none", color="C3", label=None if labelled else "the paper's delta")
            labelled = True
        n = e.get("mlm_tokens") or full.get("mlm_tokens")  # the same masked tokens for every row
        if e.get("mlm_delta") is not None and full.get("mlm_pct") is not None and n:
            se = 100 * accuracy_diff_se(e["mlm_pct"] / 100, full["mlm_pct"] / 100, int(n))
            m.errorbar(e["mlm_delta"], y, xerr=2 * se, fmt="s", color="C2", capsize=3,
                       label=None if m.lines else "±2 standard errors")
    for ax, title in ((g, "GLUE macro vs the full loss (points)"), (m, "held-out MLM accuracy vs the full loss (points)")):
        ax.axvline(0, color="0.4", lw=1)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    g.set_yticks(range(len(names)), list(reversed(names)), fontsize=8)
    g.legend(fontsize=7, loc="lower left")
    if m.lines:
        m.legend(fontsize=7, loc="lower left")
    fig.suptitle("Table 4: each row minus the full triple loss (dots: paired seeds)", fontsize=10)
    return _save(plt, fig, path)


FIGURES = ("loss_curves", "task_bars", "retention", "speed_size", "tokens_curve", "table4")  # report/figures/<name>.png


def write_figures(res: Results, fig_dir: Path) -> dict[str, Path]:
    fig_dir.mkdir(parents=True, exist_ok=True)
    return {"loss_curves": fig_loss_curves(res, fig_dir / "loss_curves.png"),
            "task_bars": fig_task_bars(res, fig_dir / "task_bars.png"),
            "retention": fig_retention(res, fig_dir / "retention.png"),
            "speed_size": fig_speed_size(res, fig_dir / "speed_size.png"),
            "tokens_curve": fig_tokens_curve(res, fig_dir / "tokens_curve.png"),
            "table4": fig_table4(res, fig_dir / "table4.png")}
