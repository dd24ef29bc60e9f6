"""The reproduction report: report/report.md + report/figures/*.png, generated from results/ only.

    path = write_report("results", "report", preset="cpu")

Every measured number is read from the CSV/JSON files under `results_dir` (Tables 1-4, the preset's
reproduce.json, run.json, summary.json, log.jsonl, and the per-seed downstream JSONs); the paper's numbers
come from the constants below (or the paper rows of the CSVs) and are always labelled as the paper's.
A missing file or cell shows up as "not run" with the reason, never as a blank or a made-up number.
"""
from __future__ import annotations

from pathlib import Path

from ..losses import active_terms
from ..paper import (PAPER_RETENTION_TEXT, PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE2_COLUMNS, PAPER_TABLE2_SCORES,
                     PAPER_TABLE3, PAPER_TABLE4,
                     paper_glue_retention, paper_speedup)
from .ablation import FULL_VARIANT, SLUGS, TABLE4_COLUMNS, VARIANTS
from .answer import section_effect
from .figures import FIGURES, write_figures
from ..records import ROLE_LABELS, finite
from .results import (TABLE3_COLUMNS, Results, glue_retention, load_results, majority_margins,
                      retention_by_seed, speedups, table4_protocol, task_scores, teacher_student_pairs)
from .tables import TABLE1_COLUMNS, TABLE1_TASKS, md_table
from .targets import check_targets
from .table4_text import table4_lines
from .what_ran import section_differences, section_run


# ------------------------------------------------------------------ markdown helpers
def _present(rows: list[dict], cols: list[str], na: dict | None = None) -> list[dict]:
    """Rows for display: file text, 'not run' for an empty measured cell, `na` text for not-applicable ones."""
    na = na or {}
    out = []
    for r in rows:
        paper = str(r.get("source", "")).startswith("paper")
        d = {}
        for c in cols:
            v = str(r.get(c, "")).strip()
            if not v:
                v = na.get(c, "—" if paper else "not run")
            d[c] = v
        out.append(d)
    return out


def _notes(rows: list[dict]) -> str:
    """'Notes:' and one bullet per row with a note (and its run id), or '' when no row has one."""
    lines = [f"* **{r['Model'] if 'Model' in r else r.get('Variant')}**: {r['note']}" + (
        f" (run: `{r['run_id']}`)" if r.get("run_id") else "") for r in rows if str(r.get("note", "")).strip()]
    return "\n".join(["", "Notes:", "", *lines]) if lines else ""


# ------------------------------------------------------------------ sections


def _section_headlines(res: Results) -> str:
    return "\n".join(["## Headline comparisons", "", *_retention_lines(res), *_speedup_lines(res),
                      *table4_lines(res)])


def _retention_lines(res: Results) -> list[str]:
    """GLUE retention beside the paper's, per seed, and a caution where a student only matches a baseline."""
    out = []
    ret = glue_retention(res)
    paper_ret = paper_glue_retention()
    if ret:
        for r in ret:
            out.append(f"* GLUE retention (student Score as % of its teacher's): **{r['retention']:.1f} %** for "
                       f"{r['model']} — the paper's DistilBERT: {PAPER_RETENTION_TEXT} % "
                       f"(paper text; {paper_ret:.1f} % from the paper's Table 1 Scores).")
        per_seed = retention_by_seed(res)
        if len(per_seed) >= 2:
            out.append("  * Per seed (seed k's mean over the GLUE tasks both ran, student / teacher): "
                       + ", ".join(f"seed {k} {v:.1f} %" for k, v in per_seed)
                       + " — at this scale the retention is known to a few points, not to a decimal.")
        for name, t, s in teacher_student_pairs(task_scores(res)):
            same = [k for k in t if k in s and t[k] == s[k]]
            if len(same) >= 2:
                out.append(f"  * Caution: on {len(same)} of {len([k for k in t if k in s])} tasks run by both, "
                           f"{ROLE_LABELS.get(name, name)}'s score equals the teacher's exactly ({', '.join(same)}); identical scores "
                           "usually mean both models predict the same class (e.g. the majority class), so this "
                           "retention compares baselines rather than measuring what distillation kept.")
    else:
        why = res.missing.get("table1", "no measured student row with a retention value")
        out.append(f"* GLUE retention: not run ({why}); the paper's DistilBERT: {PAPER_RETENTION_TEXT} % (paper).")
    return out


def _speedup_lines(res: Results) -> list[str]:
    """Each measured speed-up, set beside the paper's only where like for like (architecture vs architecture)."""
    out = []
    sp = speedups(res)
    if sp:
        for r in sp:
            where = ", ".join(f"{k} {r['row'][k]}" for k in ("Device", "Threads") if r["row"].get(k).strip())
            n = r.get("pairs")
            out.append(f"* Inference speed-up vs the {r['versus']}: **{r['speedup']:g}x** for {r['row']['Model']}"
                       + (f" ({where})" if where else "")
                       + (f", timed on {n} STS-B dev pairs" + (" — a tiny sample: a rough figure only" if n < 100
                                                               else "") if n else "")
                       # like for like only: the paper's ratio is DistilBERT vs BERT-base, i.e. our architecture row
                       + (f" — the paper: {paper_speedup():.2f}x (= {PAPER_TABLE3['BERT-base'][1]} s / "
                          f"{PAPER_TABLE3['DistilBERT'][1]} s, paper Table 3, DistilBERT vs BERT-base)."
                          if r["versus"] != "teacher" else
                          " — no paper counterpart (the paper times DistilBERT against BERT-base: the line above, "
                          "where measured)."))
    else:
        why = res.missing.get("table3", "no measured PyTorch fp32 student row with a speed-up")
        out.append(f"* Inference speed-up: not run ({why}); the paper: {paper_speedup():.2f}x "
                   f"(= {PAPER_TABLE3['BERT-base'][1]} s / {PAPER_TABLE3['DistilBERT'][1]} s, paper Table 3).")
    return out


def _section_table1(res: Results) -> str:
    out = ["## Table 1: GLUE dev", "", "Paper rows (`source` = paper) verbatim from Sanh et al. (2019), Table 1; "
           "measured rows from `table1_glue.csv`."]
    rows = res.tables.get("table1")
    cols = [c for c in TABLE1_COLUMNS if c not in ("note", "run_id")]
    if rows is None:
        paper = [{"Model": n, "Score": v[0], **dict(zip(TABLE1_TASKS, v[1:])), "source": "paper"}
                 for n, v in PAPER_TABLE1.items()]
        return "\n".join(out + ["", md_table(_present(paper, cols, {"retention": "—"}), cols), "",
                                f"Measured rows: not run ({res.missing['table1']})."])
    return "\n".join(out + ["", md_table(_present(rows, cols, {"retention": "n/a"}), cols), _notes(rows)])


def _section_table2(res: Results) -> str:
    out = ["## Table 2: downstream (IMDb test accuracy, SQuAD v1.1 EM/F1)", ""]
    rows = res.tables.get("table2")
    cols = ["Model", *res.table2_tasks(), "source"]
    if rows is None:
        paper = [{"Model": n, **dict(zip(PAPER_TABLE2_COLUMNS, v)), "source": "paper"} for n, v in PAPER_TABLE2.items()]
        return "\n".join(out + [md_table(_present(paper, cols), cols), "",
                                f"Measured rows: not run ({res.missing['table2']})."])
    scores = task_scores(res)
    t = scores.get("teacher")
    extra = []
    paper_imdb = 100 * PAPER_TABLE2_SCORES["DistilBERT"]["IMDb"] / PAPER_TABLE2_SCORES["BERT-base"]["IMDb"]
    for k, v in scores.items():
        if t is not None and k != "teacher" and "IMDb" in v and t.get("IMDb"):
            extra.append(f"* IMDb retention, {ROLE_LABELS.get(k, k)}: {100 * v['IMDb'] / t['IMDb']:.1f} % of the teacher "
                         f"(the paper: {paper_imdb:.1f} %).")
    return "\n".join(out + [md_table(_present(rows, cols), cols), _notes(rows), "", *extra])


def _section_table3(res: Results) -> str:
    out = ["## Table 3: size and inference speed", ""]
    rows = res.tables.get("table3")
    if rows is None:
        paper = [{"Model": n, "Params (M)": p, "Inference time (s)": t, "source": "paper"}
                 for n, (p, t) in PAPER_TABLE3.items()]
        cols = ["Model", "Params (M)", "Inference time (s)", "source"]
        return "\n".join(out + ["The paper's Table 3 (CPU inference on the STS-B dev set, batch 1):", "",
                                md_table(paper, cols), "", f"Measured rows: not run ({res.missing['table3']})."])
    cols = [c for c in TABLE3_COLUMNS if c in rows[0]]
    rows = [r.cells for r in rows]
    # one column, two references: the paper's rows and our architecture rows are timed against BERT-base, our
    # models against their teacher; the table says which, row by row
    ratio = "Speed-up vs teacher"
    if ratio in cols:
        typed = res.tables["table3"]
        rows = [{**r, "Speed-up": r.get(ratio), "relative to": "BERT-base" if t.paper or t.extra.get("architecture")
                 else "teacher"} for r, t in zip(rows, typed)]
        i = cols.index(ratio)
        cols = [*cols[:i], "Speed-up", "relative to", *cols[i + 1:]]
    body = [md_table(_present(rows, cols, {"Output change vs fp32": "—"}), cols), _notes(rows)]
    return "\n".join(out + body)


def _section_targets(res: Results) -> str:
    """Markdown: the preset's targets, what was measured, met or missed; the majority-class baseline per task."""
    out = ["## Targets", ""]
    rows = check_targets(res)
    if not rows:
        out.append(f"The `{res.preset}` preset declares no targets.")
    else:
        missed = [r["target"] for r in rows if "missed" in r["verdict"]]
        out += [f"What the `{res.preset}` preset set out to reach (`presets.py`, `targets`), against this study's "
                f"files: {sum(r['verdict'] == 'met' for r in rows)} met, {len(missed)} missed, "
                f"{sum(r['verdict'] == 'not run' for r in rows)} not run.", "",
                md_table(rows, ["target", "measured", "verdict"])]
    margins = [m for m in majority_margins(res) if m["majority"] is not None or m["teacher"] is not None]
    if margins:  # tasks without data (no baseline, no score) left out
        cells = lambda m, k: "n/a" if m[k] is None else f"{m[k]:.1f}"  # noqa: E731
        table = [{"Task": m["task"], "majority class": cells(m, "majority"), "teacher": cells(m, "teacher"),
                  "teacher − majority": "n/a" if m["margin"] is None else f"{m['margin']:+.1f}",
                  "student": cells(m, "student")} for m in margins]
        out += ["", "Majority-class baseline (`glue_majority.csv`: the train split's most frequent label for every "
                "dev example, scored as Table 1; STS-B has no classes):", "",
                md_table(table, ["Task", "majority class", "teacher", "teacher − majority", "student"])]
    return "\n".join(out)


def _section_table4(res: Results) -> str:
    out = ["## Table 4: ablation (GLUE macro-score, median over seeds)", ""]
    rows = res.tables.get("table4")
    if rows is None:
        paper = [{"Variant": v, "Paper delta": d} for v, d in PAPER_TABLE4.items()]
        return "\n".join(out + ["The paper's Table 4 (delta vs the full triple loss):", "",
                                md_table(paper, ["Variant", "Paper delta"]), "",
                                f"Measured: not run ({res.missing['table4']})."])
    disp = []
    for r in rows:
        d = dict(r.cells)
        if not str(d.get("Paper delta", "")).strip():
            d["Paper delta"] = PAPER_TABLE4.get(d["Variant"], "n/a" if d["Variant"] == FULL_VARIANT
                                                else "not in the paper")
        disp.append(d)
    for v in VARIANTS:  # the variants this table does not hold yet
        if v != FULL_VARIANT and v not in {r["Variant"] for r in rows}:
            disp.append({"Variant": v, "Score": f"not run (`ablate --variants {SLUGS[v]}` not run yet)",
                         **{c: "—" for c in ("Delta", "Spread", "Paired deltas", "Seeds", "Held-out MLM acc",
                                             "Per-task delta", "Excl. WNLI")},
                         "Paper delta": f"{PAPER_TABLE4[v]:+.2f}" if v in PAPER_TABLE4 else "not in the paper",
                         "source": "—"})
    # the macro without WNLI only when the ablation's tasks include WNLI (a row then fills it)
    with_wnli = any(str(r.cells.get("Excl. WNLI", "")).strip() for r in rows)
    cols = [c for c in TABLE4_COLUMNS if c not in ("note", "run_id") and c in rows[0] or c == "Paper delta"]
    cols = [c for c in cols if with_wnli or c != "Excl. WNLI"]
    na = {"Delta": "n/a", "Paper delta": "n/a", "source": "measured", "Paired deltas": "n/a", "Per-task delta": "n/a",
          "Excl. WNLI": "n/a"}  # empty when the protocol has no WNLI
    return "\n".join(out + [*_table4_protocol(res), md_table(_present(disp, cols, na), cols), _notes(rows)])


def _table4_protocol(res: Results) -> list[str]:
    """One line naming Table 4's fine-tuning protocol (seeds, training examples) read from its per-seed runs."""
    p = table4_protocol(res)
    if p is None:
        return []
    return [f"Every row fine-tuned the same way: {len(p['seeds'])} seeds ({', '.join(map(str, p['seeds']))}), at "
            f"most {p['max_examples']} training examples per task (the same subset for every row and seed), "
            f"{p['epochs']} epochs, lr {p['lr']}.", ""]


# ------------------------------------------------------------------ the report
REPORT_TITLE = "# tinydistil: reproducing DistilBERT (Sanh et al., 2019)"


def write_report(results_dir="results", report_dir="report", preset: str = "cpu", overwrite: bool = False) -> Path:
    """Write `report_dir`/report.md and `report_dir`/figures/*.png from `results_dir`; returns report.md.
    A report.md or figure there that tinydistil did not write is kept unless `overwrite`."""
    from ..rundir import atomic_file, made_by_matplotlib, refuse_foreign

    out = Path(report_dir)
    refuse_foreign(out / "report.md", lambda p: p.read_text(errors="replace").startswith(REPORT_TITLE), overwrite)
    for name in FIGURES:
        refuse_foreign(out / "figures" / f"{name}.png", made_by_matplotlib, overwrite)
    res = load_results(results_dir, preset)
    figs = write_figures(res, out / "figures")
    rel = {k: p.relative_to(out).as_posix() for k, p in figs.items()}
    sha = (res.reproduce or {}).get("git_sha", "not recorded")
    sc = (res.runs["student"]["run"] or {}).get("config", {})
    parts = [
        REPORT_TITLE, "",
        f"Generated by `python -m tinydistil report --results-dir {results_dir} --preset {preset}` from the files "
        f"in `{results_dir}/`" + (f" (the last study call at git SHA `{sha}`; each run names its own below)" if res.reproduce else "") +
        ". Every measured number below is read from those "
        "files; the paper's numbers are labelled as the paper's; anything not run says so.", "",
        section_effect(res, rel["tokens_curve"]), "",
        _section_headlines(res), "", _section_targets(res), "", section_run(res), "",
        _section_table1(res), "", f"![teacher vs student per task]({rel['task_bars']})", "",
        f"![retention per task]({rel['retention']})", "",
        _section_table2(res), "", _section_table3(res), "", f"![speed vs size]({rel['speed_size']})", "",
        _section_table4(res), "", f"![Table 4]({rel['table4']})", "",
        "## Distillation loss curves", "",
        "Each logged term of `log.jsonl`, unweighted"
        + (f" (the student's `loss` = " + " + ".join(f"{sc[t.weight]:g}·loss_{t.key}" for t in active_terms(sc))
           + ", weights from its run.json)" if all(finite(sc.get(t.weight)) is not None for t in active_terms(sc))
           else "")
        + "; identically-zero terms (the teacher's distillation terms) are left out.", "",
        f"![loss curves]({rel['loss_curves']})", "",
        section_differences(res), "",
    ]
    path = out / "report.md"
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(parts))
    return path
