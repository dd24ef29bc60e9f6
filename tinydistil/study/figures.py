"""The figures shared by the report, the poster and the notebooks, drawn from results/ only.

    paths = write_figures(load_results("results"), Path("report/figures"))   # {name: png}
"""
from __future__ import annotations

from pathlib import Path

from ..eval.glue import TASKS as GLUE_TASKS
from ..paper import PAPER_TABLE3
from .results import Results, num, paper_task_scores, per_task_retention, role, task_scores, teacher_student_pairs
from .tables import TABLE1_TASKS

GLUE_DISPLAY = {name: t.display for name, t in GLUE_TASKS.items()}  # cola -> CoLA


def _plt():
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
    return [k for k in keys if any(num(r.get(k)) for r in log)]


def fig_loss_curves(res: Results, path: Path) -> Path:
    plt = _plt()
    stages = [(s, res.runs[s]["log"]) for s in ("teacher", "student")]
    ncols = max([len(loss_terms(log)) for _, log in stages] + [1])
    fig, axes = plt.subplots(2, ncols, figsize=(3.4 * ncols, 5.6), squeeze=False)
    for i, (stage, log) in enumerate(stages):
        terms = loss_terms(log)
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(terms):
                ax.axis("off")
                if not log and j == 0:
                    ax.text(0.5, 0.5, f"{stage}: not run\n(no log.jsonl)", ha="center", va="center")
                continue
            steps = [r["step"] for r in log if num(r.get(terms[j])) is not None]
            ax.plot(steps, [num(r[terms[j]]) for r in log if num(r.get(terms[j])) is not None], lw=1.4,
                    color=f"C{j}")
            ax.set_title(f"{stage}: {terms[j]}", fontsize=9)
            ax.set_xlabel("update", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"Training loss terms ({res.preset} preset, from log.jsonl)", fontsize=11)
    return _save(plt, fig, path)


def bar_tasks(res: Results) -> tuple[str, ...]:
    """The bars' tasks: GLUE's, then Table 2's columns (IMDb, SQuAD EM, SQuAD F1, any other registered task)."""
    return (*TABLE1_TASKS, *res.table2_tasks())


def fig_task_bars(res: Results, path: Path) -> Path:
    plt = _plt()
    import numpy as np

    ours, paper, tasks = task_scores(res), paper_task_scores(), bar_tasks(res)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    panels = [("measured (this repository)", ours), ("paper (Sanh et al. 2019, Tables 1-2)",
                                                      {k: paper[k] for k in ("BERT-base", "DistilBERT")})]
    x = np.arange(len(tasks))
    for ax, (title, models) in zip(axes, panels):
        names = list(models)
        w = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            vals = [models[name].get(t) for t in tasks]
            ax.bar(x + (i - (len(names) - 1) / 2) * w, [v if v is not None else 0 for v in vals], w, label=name,
                   color=f"C{i}")
            for k, v in enumerate(vals):
                if v is None:
                    ax.text(x[k] + (i - (len(names) - 1) / 2) * w, 1, "not run", rotation=90, fontsize=6,
                            ha="center", va="bottom", color="0.4")
        if not names:
            ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center")
        ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if names:
            ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("score (0-100; CoLA MCC, STS-B Pearson/Spearman)")
    return _save(plt, fig, path)


def fig_retention(res: Results, path: Path) -> Path:
    plt = _plt()
    import numpy as np

    paper, tasks = paper_task_scores(), bar_tasks(res)
    series = [(f"{k} / teacher (measured)", per_task_retention(t, s)) for k, t, s in
              teacher_student_pairs(task_scores(res))]
    series.append(("DistilBERT / BERT-base (paper)", per_task_retention(paper["BERT-base"], paper["DistilBERT"])))
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(tasks))
    w = 0.8 / len(series)
    for i, (name, ret) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * w, [ret.get(t, 0) for t in tasks], w, label=name,
               color=f"C{i}" if "paper" not in name else "0.6")
        for k, t in enumerate(tasks):
            if t not in ret:
                ax.text(x[k] + (i - (len(series) - 1) / 2) * w, 2, "n/a", rotation=90, fontsize=6, ha="center")
    ax.axhline(100, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, tasks, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("student as % of teacher")
    ax.set_title("Retention per task (n/a: not run, or a teacher score of 0)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=len(series))
    return _save(plt, fig, path)


def fig_speed_size(res: Results, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    pts = [(n, p, t) for n, (p, t) in PAPER_TABLE3.items()]
    axes[0].scatter([p for _, p, _ in pts], [t for _, _, t in pts], color="0.5", marker="s")
    for n, p, t in pts:
        axes[0].annotate(n, (p, t), fontsize=8, xytext=(4, 4), textcoords="offset points")
    axes[0].set_title("paper (Table 3, CPU, STS-B dev)", fontsize=10)
    measured = [(r["Model"], num(r.get("Params (M)")), num(r.get("Inference time (s)")), r)
                for r in res.measured("table3")]
    measured = [m for m in measured if m[1] is not None and m[2] is not None]
    if measured:
        for i, (n, p, t, r) in enumerate(measured):
            lab = f"{role(n)} ({', '.join(str(r[k]) for k in ('Device', 'Threads') if str(r.get(k, '')).strip())})"
            axes[1].scatter([p], [t], color=f"C{i}", label=lab)
        axes[1].legend(fontsize=7)
    else:
        axes[1].text(0.5, 0.5, "measured: not run\n" + res.missing.get("table3", "no numeric rows"), ha="center",
                     va="center", transform=axes[1].transAxes, fontsize=9, wrap=True)
    axes[1].set_title("measured (table3_speed.csv)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel("inference time (s)")
    return _save(plt, fig, path)


def fig_tokens_curve(res: Results, path: Path) -> Path:
    """Score vs distillation tokens (tokens_curve.json): held-out masked-token accuracy and each curve task's
    median over seeds (per-seed scores as dots), the control at 0 tokens, the teacher as a dashed line."""
    import statistics

    from .curve import read_curve
    from .effect import seed_scores

    plt = _plt()
    curve = read_curve(res.results_dir)
    if not curve:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "tokens curve: not run (no tokens_curve.json)", ha="center", va="center")
        return _save(plt, fig, path)
    panels = ["mlm_accuracy", *curve["tasks"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), squeeze=False)
    pts = curve["points"]
    x = [p["tokens"] / 1e6 for p in pts]
    teacher_mlm = num(((res.reproduce or {}).get("mlm_eval") or {}).get("teacher", {}).get("mlm_accuracy"))
    teacher = {GLUE_DISPLAY.get(t, t): statistics.median(v.values()) for t, v in seed_scores(res, "teacher").items()}
    for ax, key in zip(axes[0], panels):
        ys = [num(p.get(key)) for p in pts]
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


FIGURES = ("loss_curves", "task_bars", "retention", "speed_size", "tokens_curve")  # report/figures/<name>.png


def write_figures(res: Results, fig_dir: Path) -> dict[str, Path]:
    fig_dir.mkdir(parents=True, exist_ok=True)
    return {"loss_curves": fig_loss_curves(res, fig_dir / "loss_curves.png"),
            "task_bars": fig_task_bars(res, fig_dir / "task_bars.png"),
            "retention": fig_retention(res, fig_dir / "retention.png"),
            "speed_size": fig_speed_size(res, fig_dir / "speed_size.png"),
            "tokens_curve": fig_tokens_curve(res, fig_dir / "tokens_curve.png")}
