"""The reproduction report: report/report.md + report/figures/*.png, generated from results/ only.

    path = write_report("results", "report", preset="cpu")

Every measured number is read from the CSV/JSON files under `results_dir` (Tables 1-4, the preset's
reproduce.json, run.json, summary.json, log.jsonl, and the per-seed downstream JSONs); the paper's numbers
come from the constants below (or the paper rows of the CSVs) and are always labelled as the paper's.
A missing file or cell shows up as "not run" with the reason, never as a blank or a made-up number.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .ablation import PAPER_DELTA, SLUGS, TABLE4_COLUMNS
from .presets import PRESETS, get_preset
from .tables import PAPER_TABLE1, PAPER_TABLE2, TABLE1_COLUMNS, TABLE1_TASKS, TABLE2_COLUMNS

# Sanh et al. (2019), Table 3: parameters (millions) and CPU inference time (s) for the full STS-B dev set.
PAPER_TABLE3 = {"ELMo": (180, 895), "BERT-base": (110, 668), "DistilBERT": (66, 410)}
# Sanh et al. (2019), Table 4: GLUE macro-score delta vs the full triple loss.
PAPER_TABLE4 = PAPER_DELTA  # Table 4 deltas, held once in ablation.py
PAPER_RETENTION_TEXT = 97  # the paper's abstract/text: "retaining 97% of its language understanding"
TABLE3_COLUMNS = ("Model", "Params (M)", "Disk (MB)", "Device", "Threads", "Inference time (s)",
                  "Speed-up vs teacher", "Output change vs fp32", "source")
TABLE_FILES = {"table1": "table1_glue.csv", "table2": "table2_downstream.csv", "table3": "table3_speed.csv",
               "table4": "table4_ablation.csv"}


# ------------------------------------------------------------------ reading
def num(v) -> float | None:
    """A finite float from a CSV/JSON cell, else None ("not run: no data", "", "—", NaN)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(str(v).strip().rstrip("x%"))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def cell(v) -> str:
    """A cell as shown: the file's own text; an empty cell reads "not run"."""
    s = "" if v is None else str(v).strip()
    return s if s and s.lower() != "nan" else "not run"


def role(model: str) -> str:
    """'teacher: runs/cpu/teacher/model (bert, ...)' -> 'teacher'."""
    return str(model).split(":", 1)[0].strip()


@dataclass
class Results:
    """What write_report/write_poster read: tables as lists of {column: str} rows, or None + reason."""
    results_dir: Path
    preset: str
    tables: dict = field(default_factory=dict)    # name -> list[dict] | None
    missing: dict = field(default_factory=dict)   # name -> reason
    reproduce: dict | None = None
    runs: dict = field(default_factory=dict)      # stage -> {"run": run.json, "summary": summary.json, "log": [..]}
    evals: dict = field(default_factory=dict)     # eval folder name -> {"records": [...], "finetune": [...]}
    ablation_runs: dict = field(default_factory=dict)  # variant slug -> {"run": run.json, "summary": summary.json}

    def measured(self, name: str) -> list[dict]:
        return [r for r in self.tables.get(name) or [] if not r.get("source", "").startswith("paper")]

    def paper(self, name: str) -> list[dict]:
        return [r for r in self.tables.get(name) or [] if r.get("source", "").startswith("paper")]


def _read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[dict] | None, str]:
    import pandas as pd

    if not path.is_file():
        return None, f"{path} not found"
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as e:  # pandas' ParserError / EmptyDataError are ValueErrors
        return None, f"{path} could not be read ({type(e).__name__})"
    absent = [c for c in required if c not in df.columns]
    if absent:
        return None, f"{path} lacks column(s) {', '.join(absent)}"
    return df.to_dict("records"), ""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_log(path: Path) -> list[dict]:
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a half-written last line of an interrupted run
    return out


def load_results(results_dir="results", preset: str = "cpu") -> Results:
    """Read everything the report uses; nothing here raises for a missing file (it becomes "not run")."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist; pass --results-dir (e.g. results)")
    res = Results(root, preset)
    needed = {"table1": ("Model", "Score", "source"), "table2": ("Model", "IMDb", "source"),
              "table3": ("Model", "Params (M)", "Inference time (s)", "source"),
              "table4": ("Variant", "Score", "Delta")}
    hints = {"table1": "python -m tinydistil tables", "table2": "python -m tinydistil tables",
             "table3": "python -m tinydistil speed"}
    for name, fname in TABLE_FILES.items():
        rows, reason = _read_csv(root / fname, needed[name])
        res.tables[name] = rows
        if rows is None:
            res.missing[name] = reason + (f"; written by `{hints[name]}`" if name in hints else "")
    res.reproduce = _read_json(root / preset / "reproduce.json")
    for stage in ("teacher", "student"):
        d = root / preset / stage
        res.runs[stage] = {"run": _read_json(d / "run.json"), "summary": _read_json(d / "summary.json"),
                           "log": _read_log(d / "log.jsonl")}
    for slug in SLUGS.values():
        d = root / preset / "ablation" / slug
        if d.is_dir():
            res.ablation_runs[slug] = {"run": _read_json(d / "run.json"), "summary": _read_json(d / "summary.json")}
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


# ------------------------------------------------------------------ headline numbers
def glue_retention(res: Results) -> list[dict]:
    """[{"model", "retention" (str from the file), "teacher_score", "score"}] for measured Table 1 rows that
    have a retention value."""
    out = []
    for r in res.measured("table1"):
        if num(r.get("retention")) is not None:
            out.append({"model": r["Model"], "retention": r["retention"], "score": r.get("Score", "")})
    return out


def paper_glue_retention() -> float:
    """DistilBERT's Score as % of BERT-base's, from the paper's Table 1 (the text rounds it to 97 %)."""
    return 100.0 * PAPER_TABLE1["DistilBERT"][0] / PAPER_TABLE1["BERT-base"][0]


def task_scores(res: Results) -> dict:
    """{row role: {task: float}} for measured Table 1 rows (GLUE tasks) plus IMDb / SQuAD from Table 2."""
    out: dict[str, dict] = {}
    for r in res.measured("table1"):
        out.setdefault(role(r["Model"]), {}).update(
            {t: num(r.get(t)) for t in TABLE1_TASKS if num(r.get(t)) is not None})
    for r in res.measured("table2"):
        out.setdefault(role(r["Model"]), {}).update(
            {c: num(r.get(c)) for c in ("IMDb", "SQuAD EM", "SQuAD F1") if num(r.get(c)) is not None})
    return out


def paper_task_scores() -> dict:
    out = {name: dict(zip(TABLE1_TASKS, v[1:])) for name, v in PAPER_TABLE1.items()}
    for name, vals in PAPER_TABLE2.items():
        out.setdefault(name, {}).update({c: num(v) for c, v in zip(("IMDb", "SQuAD EM", "SQuAD F1"), vals)
                                         if num(v) is not None})
    return out


def per_task_retention(teacher: dict, student: dict) -> dict:
    """{task: 100 * student / teacher} over tasks both have, skipping a teacher score of 0 (undefined)."""
    return {t: 100.0 * student[t] / teacher[t] for t in teacher if t in student and teacher[t] not in (0, 0.0)}


def speedups(res: Results) -> list[dict]:
    """Measured Table 3 rows of students (Model names a student or DistilBERT) with a numeric speed-up."""
    return [r for r in res.measured("table3") if num(r.get("Speed-up vs teacher")) is not None
            and any(w in str(r["Model"]).lower() for w in ("student", "distil"))]


def paper_speedup() -> float:
    return PAPER_TABLE3["BERT-base"][1] / PAPER_TABLE3["DistilBERT"][1]


def ablation(res: Results) -> dict | None:
    """{"ours": [(variant, delta)], "paper": [(variant, paper delta)], "same_order": bool} sorted from the
    most harmful change (most negative delta) to the least, over the variants with a measured delta."""
    rows = res.measured("table4")
    ours = [(r["Variant"], num(r.get("Delta"))) for r in rows
            if r["Variant"] != "full triple loss" and num(r.get("Delta")) is not None]
    if not ours:
        return None
    paper = {}
    for r in rows:
        p = num(r.get("Paper delta"))
        paper[r["Variant"]] = p if p is not None else PAPER_TABLE4.get(r["Variant"])
    ours = sorted(ours, key=lambda x: x[1])
    theirs = sorted([(v, paper[v]) for v, _ in ours if paper.get(v) is not None], key=lambda x: x[1])
    compared = [v for v, _ in ours if paper.get(v) is not None]
    full = next((r for r in rows if r["Variant"] == "full triple loss"), {})
    sd = re.search(r"sd ([0-9.]+)", str(full.get("Spread", "")))  # the full loss's seed-to-seed spread
    extra = {r["Variant"]: {k: str(r.get(k, "")).strip()
                            for k in ("Paired deltas", "Held-out MLM acc", "Per-task delta", "Excl. WNLI")}
             for r in rows}
    return {"ours": ours, "paper": theirs, "same_order": [v for v, _ in theirs] == compared,
            "full_sd": float(sd.group(1)) if sd else None, "extra": extra}


def measurably_worse(delta: float | None, full_sd: float | None, paired: str) -> bool:
    """Lower than the full loss by more than its seed-to-seed sd AND lower on every paired seed ('k/n lower')."""
    lower = re.search(r"\((\d+)/(\d+) lower\)", paired or "")
    return (delta is not None and full_sd is not None and delta < -full_sd and lower is not None
            and lower.group(1) == lower.group(2))


# ------------------------------------------------------------------ markdown helpers
def md_table(rows: list[dict], cols: list[str]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(esc(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


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


def _fmt_s(x) -> str:
    x = num(x)
    return "not recorded" if x is None else f"{x:.0f} s"


# ------------------------------------------------------------------ sections
def _section_run(res: Results) -> str:
    rep = res.reproduce
    out = ["## What was run", ""]
    if rep is None:
        out.append(f"Pretraining/distillation: not run (no `{res.results_dir / res.preset / 'reproduce.json'}`).")
    else:
        m = rep.get("machine", {})
        out.append(f"* Preset `{rep.get('preset', res.preset)}`, command `{rep.get('command', 'not recorded')}`, "
                   f"git SHA `{rep.get('git_sha', 'not recorded')}`, finished {rep.get('finished', 'not recorded')}.")
        out.append(f"* Machine: {m.get('cpu', '?')} ({m.get('cpu_count', '?')} cores, {m.get('torch_threads', '?')} "
                   f"torch threads), {m.get('platform', '?')}, Python {m.get('python', '?')}, torch "
                   f"{m.get('torch', '?')}, transformers {m.get('transformers', '?')}"
                   + (f", GPU {m['gpu']}" if m.get("gpu") else "") + ".")
        walls = rep.get("stage_wall_time_s", {})
        study, call, budget = (num(rep.get(k)) for k in ("study_wall_time_s", "total_wall_time_s", "budget_min"))
        if budget is None and rep.get("preset") in PRESETS:
            budget = get_preset(rep["preset"]).budget_min
        if study is not None:
            one_call = call is not None and abs(call - study) <= max(60.0, 0.02 * study)
            out.append(f"* End to end: **{study / 60:.1f} min** "
                       + ("in one uninterrupted call" if one_call else
                          "summed over the stages of several calls (`stage_status` in reproduce.json)")
                       + (f"; budget {budget:.0f} min: **{'within' if study / 60 <= budget else 'over'}**" if budget
                          else "") + ".")
        out.append("* Wall time per stage: " + (", ".join(f"{k} {_fmt_s(v)}" for k, v in walls.items()) or
                                                 "not recorded") + ".")
    for stage in ("teacher", "student"):
        run, summ = res.runs[stage]["run"], res.runs[stage]["summary"]
        if run is None:
            out.append(f"* {stage.capitalize()}: not run (no `{res.preset}/{stage}/run.json`).")
            continue
        c = run.get("config", {})
        data = c.get("data_dir") or "not recorded in run.json (TINYDISTIL_DATA_DIR or the hub: WikiText-2)"
        desc = (f"{c.get('num_layers')} layers x {c.get('hidden_size')}, vocabulary {c.get('vocab_size')}"
                if stage == "teacher" else
                f"from `{c.get('teacher')}`, init `{c.get('student_init')}`, layers "
                f"{c.get('student_layers') or 'every other (default rule)'}, T = {c.get('temperature')}, "
                f"alpha ce/mlm/cos = {c.get('alpha_ce')}/{c.get('alpha_mlm')}/{c.get('alpha_cos')}")
        line = (f"* {stage.capitalize()}: {desc}; data {data}; seed {c.get('seed')}; {c.get('epochs')} epochs, "
                f"lr {c.get('lr')}, {c.get('tokens_per_update')} tokens/update; git SHA `{run.get('git_sha')}`")
        if summ:
            p = num(summ.get("parameters"))
            line += (f"; {summ.get('steps')} updates, {summ.get('tokens')} tokens, "
                     f"{_fmt_s(summ.get('train_wall_time_s'))} training"
                     + (f", {p / 1e6:.2f} M parameters" if p is not None else ""))
        out.append(line + ".")
    names = {slug: v for v, slug in SLUGS.items()}
    for slug, r in res.ablation_runs.items():  # each Table 4 variant's own distillation call
        run, summ = r["run"] or {}, r["summary"] or {}
        resumed = [f"`{x.get('command')}` at `{str(x.get('git_sha'))[:7]}` from update {x.get('from_step')}"
                   for x in run.get("resumed", [])]
        sha = str(run["git_sha"])[:7] if run.get("git_sha") else "not recorded"
        out.append(f"* Table 4 `{names.get(slug, slug)}` distilled by `{run.get('command', 'not recorded')}` at git "
                   f"SHA `{sha}`, started {run.get('started', 'not recorded')}"
                   + (f"; {summ.get('steps')} updates, {_fmt_s(summ.get('train_wall_time_s'))} training" if summ
                      else "; not finished") + (f"; resumed by {', '.join(resumed)}" if resumed else "") + ".")
    ev = (rep or {}).get("mlm_eval", {})
    if "teacher" in ev and "student" in ev:
        t, s = ev["teacher"], ev["student"]
        out.append(f"* Held-out MLM ({ev.get('split')} split, {t.get('masked_tokens')} masked tokens, same masks): "
                   f"teacher loss {t.get('mlm_loss')} / accuracy {100 * t['mlm_accuracy']:.2f} %, student loss "
                   f"{s.get('mlm_loss')} / accuracy {100 * s['mlm_accuracy']:.2f} %.")
    elif ev:
        out.append(f"* Held-out MLM evaluation: not run ({ev.get('not run', 'no reason recorded')}).")
    for name, ev in res.evals.items():
        recs, fts = ev["records"], ev["finetune"]
        if not recs:
            out.append(f"* Downstream `{name}`: not run (no per-seed JSONs).")
            continue
        wall = sum(num(r.get("wall_time_s")) or 0.0 for r in recs)
        seeds = sorted({r.get("seed") for r in recs if r.get("seed") is not None})
        hp = recs[0].get("hyperparameters", {})
        datas = sorted({str(r.get("data")) for r in recs if r.get("data")})
        shas = sorted({f.get("git_sha", "?") for f in fts})
        out.append(f"* Downstream `{name}`: {len(recs)} (task, seed) runs, seeds {seeds}, "
                   f"{hp.get('max_train_examples') or 'all'} training examples per task, {hp.get('epochs')} epochs, "
                   f"lr {hp.get('lr')}, batch {hp.get('batch_size')}; summed wall time {wall:.0f} s; data "
                   f"{', '.join(f'`{d}`' for d in datas)}; git SHA "
                   f"{', '.join(f'`{s}`' for s in shas) or 'not recorded'}.")
    return "\n".join(out)


GLUE_TASK_IDS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


def retention_by_seed(res: Results) -> list[tuple[int, float]]:
    """[(seed, student macro / teacher macro in %)] from the per-seed GLUE records of <preset>_teacher and
    <preset>_student, each seed's macro taken over the GLUE tasks both models ran with that seed."""
    def by_seed(name):
        out: dict[int, dict[str, float]] = {}
        for r in res.evals.get(f"{res.preset}_{name}", {}).get("records", []):
            if r.get("task") in GLUE_TASK_IDS and num(r.get("score")) is not None:
                out.setdefault(int(r["seed"]), {})[r["task"]] = num(r["score"])
        return out

    t, s = by_seed("teacher"), by_seed("student")
    pairs = []
    for seed in sorted(set(t) & set(s)):
        tasks = sorted(set(t[seed]) & set(s[seed]))
        tm = sum(t[seed][k] for k in tasks)
        if tasks and tm > 0:
            pairs.append((seed, 100 * sum(s[seed][k] for k in tasks) / tm))
    return pairs


def _section_headlines(res: Results) -> str:
    out = ["## Headline comparisons", ""]
    ret = glue_retention(res)
    paper_ret = paper_glue_retention()
    if ret:
        for r in ret:
            out.append(f"* GLUE retention (student Score as % of its teacher's): **{r['retention']} %** for "
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
                           f"{name}'s score equals the teacher's exactly ({', '.join(same)}); identical scores "
                           "usually mean both models predict the same class (e.g. the majority class), so this "
                           "retention compares baselines rather than measuring what distillation kept.")
    else:
        why = res.missing.get("table1", "no measured student row with a retention value")
        out.append(f"* GLUE retention: not run ({why}); the paper's DistilBERT: {PAPER_RETENTION_TEXT} % (paper).")
    sp = speedups(res)
    if sp:
        for r in sp:
            where = ", ".join(f"{k} {r[k]}" for k in ("Device", "Threads") if str(r.get(k, "")).strip())
            out.append(f"* Inference speed-up vs the teacher: **{r['Speed-up vs teacher']}x** for {r['Model']}"
                       + (f" ({where})" if where else "") + f" — the paper: {paper_speedup():.2f}x "
                       f"(= {PAPER_TABLE3['BERT-base'][1]} s / {PAPER_TABLE3['DistilBERT'][1]} s, paper Table 3).")
    else:
        why = res.missing.get("table3", "no measured student row with a speed-up")
        out.append(f"* Inference speed-up: not run ({why}); the paper: {paper_speedup():.2f}x "
                   f"(= {PAPER_TABLE3['BERT-base'][1]} s / {PAPER_TABLE3['DistilBERT'][1]} s, paper Table 3).")
    ab = ablation(res)
    if ab:
        ours = ", then ".join(f"{v} ({d:+.2f})" for v, d in ab["ours"])
        theirs = ", then ".join(f"{v} ({d:+.2f})" for v, d in ab["paper"])
        out.append(f"* Ablation ordering, most harmful first — ours: {ours}; the paper's: {theirs}; "
                   f"**{'same order' if ab['same_order'] else 'different order'}**.")
        within = [v for v, d in ab["ours"] if ab["full_sd"] is not None and abs(d) < ab["full_sd"]]
        if within:
            out.append(f"  * Within noise: {', '.join(within)} differ(s) from the full loss by less than the full "
                       f"loss's seed-to-seed standard deviation ({ab['full_sd']:.2f}), so not measurably.")
        full_acc = re.match(r"\s*([0-9.]+)", ab["extra"].get("full triple loss", {}).get("Held-out MLM acc", ""))
        full_acc = full_acc.group(1) if full_acc else None
        worse = []
        for v, d in ab["ours"]:
            e = ab["extra"].get(v, {})
            acc = re.match(r"\s*([0-9.]+)\s*\(([-+0-9.]+)\)", e.get("Held-out MLM acc", ""))
            bits = ([f"per seed vs the full loss's run of the same seed {e['Paired deltas']}"] if e.get("Paired deltas")
                    else []) + ([f"held-out MLM accuracy {acc.group(1)} % ({acc.group(2)} points; full loss "
                                 f"{full_acc} %)"] if acc and full_acc else [])
            if e.get("Per-task delta"):
                bits.append(f"per task (median vs median) {e['Per-task delta']}")
            if bits:
                out.append(f"  * {v}: " + "; ".join(bits) + ".")
            if measurably_worse(d, ab["full_sd"], e.get("Paired deltas", "")):
                worse.append(v)
        rest = [v for v, _ in ab["ours"] if v not in worse]
        out.append("  * Measurably worse on GLUE (lower by more than the full loss's seed sd, and on every paired "
                   f"seed): {', '.join(worse) or 'none'}" + (f"; not separable from the full loss on GLUE at this "
                                                             f"scale: {', '.join(rest)}" if rest else "") + ".")
        out.extend(_excl_wnli_lines(ab))
        out.extend(_mlm_lines(ab))
    else:
        why = res.missing.get("table4", "no measured ablation deltas")
        theirs = ", then ".join(f"{v} ({d:+.2f})" for v, d in sorted(PAPER_TABLE4.items(), key=lambda x: x[1]))
        out.append(f"* Ablation ordering: not run ({why}); the paper's, most harmful first: {theirs}.")
    return "\n".join(out)


def _excl_wnli_lines(ab: dict) -> list[str]:
    """The same verdict on the macro without WNLI (Table 4's 'Excl. WNLI' column), as a secondary view."""
    full = re.search(r"sd ([0-9.]+)", ab["extra"].get("full triple loss", {}).get("Excl. WNLI", ""))
    cells = {v: ab["extra"].get(v, {}).get("Excl. WNLI", "") for v, _ in ab["ours"]}
    deltas = {v: re.search(r"\(([-+][0-9.]+)\)", c) for v, c in cells.items()}
    if full is None or not any(deltas.values()):
        return []
    sd = float(full.group(1))
    worse = [v for v, m in deltas.items() if m and measurably_worse(float(m.group(1)), sd, cells[v])]
    rest = [v for v, m in deltas.items() if m and v not in worse]
    shown = ", ".join(f"{v} {m.group(1)}" for v, m in deltas.items() if m)
    return [f"  * Without WNLI (secondary view, chosen after a first ablation protocol showed a seed's WNLI score "
            f"(71 adversarial dev examples) jumping between the majority class and far below it, and declared "
            f"before the runs above (results/experiments/ablation_glue_protocol/); the paper's macro above stays "
            f"the headline): deltas "
            f"{shown} (full loss sd {sd:.2f}); measurably worse: {', '.join(worse) or 'none'}"
            + (f"; not separable: {', '.join(rest)}" if rest else "") + "."]


def _mlm_lines(ab: dict) -> list[str]:
    """Which variants' distilled students are worse at held-out MLM than the full loss's by more than two
    standard errors of a difference of two accuracies on n masked tokens (binomial, unpaired: conservative,
    since every model sees the same masks)."""
    full = re.match(r"\s*([0-9.]+)\s*\((\d+) masked tokens\)",
                    ab["extra"].get("full triple loss", {}).get("Held-out MLM acc", ""))
    if full is None:
        return []
    p0, n = float(full.group(1)) / 100, int(full.group(2))
    worse, rest, deltas = [], [], {}
    for v, _ in ab["ours"]:
        m = re.match(r"\s*([0-9.]+)\s*\(([-+0-9.]+)\)", ab["extra"].get(v, {}).get("Held-out MLM acc", ""))
        if m is None:
            continue
        p1, d = float(m.group(1)) / 100, float(m.group(2))
        se = 100 * math.sqrt(p0 * (1 - p0) / n + p1 * (1 - p1) / n)
        (worse if d < -2 * se else rest).append(f"{v} ({d:+.2f})")
        deltas[v] = d
    if not deltas:
        return []
    order = sorted(deltas, key=deltas.get)
    paper = [v for v, _ in ab["paper"] if v in deltas]
    return [f"  * On the distilled student itself (held-out MLM accuracy, {n:,} masked WikiText-2 validation tokens, "
            f"the same masks for each; lower by more than 2 standard errors of the difference): "
            f"{', '.join(worse) or 'none'}" + (f"; not: {', '.join(rest)}" if rest else "")
            + f". Ordered by this accuracy, most harmful first: {', then '.join(order)} — "
            + ("**the paper's GLUE order**." if order == paper else "not the paper's GLUE order.")]


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
    cols = [c for c in TABLE2_COLUMNS if c not in ("note", "run_id")]
    if rows is None:
        paper = [{"Model": n, "IMDb": a, "SQuAD EM": b, "SQuAD F1": c, "source": "paper"}
                 for n, (a, b, c) in PAPER_TABLE2.items()]
        return "\n".join(out + [md_table(_present(paper, cols), cols), "",
                                f"Measured rows: not run ({res.missing['table2']})."])
    scores = task_scores(res)
    t = next((v for k, v in scores.items() if k.startswith("teacher")), None)
    extra = []
    paper_imdb = 100 * num(PAPER_TABLE2["DistilBERT"][0]) / num(PAPER_TABLE2["BERT-base"][0])
    for k, v in scores.items():
        if t is not None and not k.startswith("teacher") and "IMDb" in v and t.get("IMDb"):
            extra.append(f"* IMDb retention, {k}: {100 * v['IMDb'] / t['IMDb']:.1f} % of the teacher "
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
    body = [md_table(_present(rows, cols, {"Output change vs fp32": "—"}), cols), _notes(rows)]
    return "\n".join(out + body)


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
        d = dict(r)
        if not str(d.get("Paper delta", "")).strip():
            d["Paper delta"] = PAPER_TABLE4.get(d["Variant"], "n/a" if d["Variant"] == "full triple loss"
                                                else "not in the paper")
        disp.append(d)
    for v, pd_ in PAPER_TABLE4.items():  # the paper's variants this table does not hold yet
        if v not in {r["Variant"] for r in rows}:
            disp.append({"Variant": v, "Score": f"not run (`ablate --variants {SLUGS[v]}` not run yet)",
                         **{c: "—" for c in ("Delta", "Spread", "Paired deltas", "Seeds", "Held-out MLM acc",
                                             "Per-task delta", "Excl. WNLI")},
                         "Paper delta": f"{pd_:+.2f}", "source": "measured"})
    cols = [c for c in TABLE4_COLUMNS if c not in ("note", "run_id") and c in rows[0] or c == "Paper delta"]
    na = {"Delta": "n/a", "Paper delta": "n/a", "source": "measured", "Paired deltas": "n/a", "Per-task delta": "n/a"}
    return "\n".join(out + [*_table4_protocol(res), md_table(_present(disp, cols, na), cols), _notes(rows)])


def table4_protocol(res: Results) -> dict | None:
    """{'seeds': [...], 'max_examples', 'epochs', 'lr'} of Table 4's fine-tuning, read from its per-seed runs."""
    rows = res.tables.get("table4") or []
    full = next((r for r in rows if r.get("Variant") == "full triple loss"), {})
    shared = "ablation" not in full.get("run_id", "")  # the full row reuses Table 1's student runs
    recs = [r for k, ev in res.evals.items()
            if _is_ablation(k) or (shared and k == f"{res.preset}_student") for r in ev["records"]]
    if not recs:
        return None
    hp = recs[0].get("hyperparameters", {})
    return {"seeds": sorted({r["seed"] for r in recs if r.get("seed") is not None}),
            "max_examples": int(max(num(r.get("train_examples")) or 0 for r in recs)),
            "epochs": hp.get("epochs"), "lr": hp.get("lr")}


def _table4_protocol(res: Results) -> list[str]:
    """One line naming Table 4's fine-tuning protocol (seeds, training examples) read from its per-seed runs."""
    p = table4_protocol(res)
    if p is None:
        return []
    return [f"Every row fine-tuned the same way: {len(p['seeds'])} seeds ({', '.join(map(str, p['seeds']))}), at "
            f"most {p['max_examples']} training examples per task (the same subset for every row and seed), "
            f"{p['epochs']} epochs, lr {p['lr']}.", ""]


# What a known encoder saw before it became our teacher (from its model card), keyed by TeacherConfig.init_from
ENCODER_NOTES = {
    "all-MiniLM-L6-v2": (
        "all-MiniLM-L6-v2 is itself a distilled model (MiniLM, from a larger teacher) and was then trained as a "
        "sentence encoder on about 1 B sentence pairs, which include SNLI, MultiNLI and QQP (none of which is "
        "scored locally here); its GLUE-style ability is not only what masked-LM pretraining gives."),
}


def prepared_teacher(run: dict, summary: dict) -> str | None:
    """One sentence on a teacher prepared from a pretrained encoder (TeacherConfig.init_from), from its run.json and
    summary.json: the encoder, where it came from (package / hub, sha256), the MLM updates; None otherwise."""
    cfg = (run or {}).get("config", {})
    name = cfg.get("init_from")
    if not name:
        return None
    src = run.get("teacher_source") or {}
    where = {"package": f"the PyPI package {src.get('package')}",
             "hub": f"the hub ({src.get('hub_id')} at {str(src.get('revision', ''))[:12]})",
             "folder": f"the folder {src.get('path')}"}.get(src.get("source"), "an unrecorded source")
    sha = (src.get("sha256") or {}).get("model.safetensors")
    params = num((summary or {}).get("parameters"))
    return (f"Here the teacher is {name} from {where}" + (f" (model.safetensors sha256 {sha[:16]}...)" if sha else "")
            + (f", {params / 1e6:.1f} M parameters with its MLM head" if params else "")
            + ": it has no MLM head, so masked-LM training of the whole encoder was continued with a fresh head "
            f"(decoder tied to the word embeddings) for {(summary or {}).get('steps', '?')} updates "
            f"({(summary or {}).get('tokens', '?')} tokens) of WikiText-2 train. " + ENCODER_NOTES.get(name, ""))


def _section_differences(res: Results) -> str:
    t_run, s_run = res.runs["teacher"]["run"] or {}, res.runs["student"]["run"] or {}
    t_sum, s_sum = res.runs["teacher"]["summary"] or {}, res.runs["student"]["summary"] or {}
    tc, sc = t_run.get("config", {}), s_run.get("config", {})
    tp, sp = num(t_sum.get("parameters")), num(s_sum.get("parameters"))
    ours_t = (f"a {tc.get('num_layers')}-layer, {tc.get('hidden_size')}-wide BERT"
              + (f" ({tp / 1e6:.1f} M parameters)" if tp else "") + f" trained from scratch for "
              f"{t_sum.get('steps', '?')} updates ({t_sum.get('tokens', '?')} tokens)") if tc else "not run"
    prepared = prepared_teacher(t_run, t_sum)
    ours_s = (f"{sp / 1e6:.1f} M parameters, {s_sum.get('steps', '?')} updates ({s_sum.get('tokens', '?')} tokens)"
              if sp else "not run")
    recs = main_records(res)
    seeds = sorted({r.get("seed") for r in recs if r.get("seed") is not None})
    subset = sorted({r.get("train_examples") for r in recs if r.get("train_examples") is not None})
    not_run = sorted({t for r in res.measured("table1") for t in TABLE1_TASKS
                      if num(r.get(t)) is None and t in r})
    lines = [
        "## What differs from the paper, and why", "",
        (f"* **Teacher.** The paper distils BERT-base ({PAPER_TABLE3['BERT-base'][0]} M parameters, paper Table 3), "
         "pretrained on English Wikipedia + Toronto BookCorpus. " + prepared if prepared else
         f"* **Teacher.** The paper distils BERT-base ({PAPER_TABLE3['BERT-base'][0]} M parameters, paper Table 3). "
         "Ours: not run (no teacher run.json in the results)." if not tc else
         f"* **Teacher.** The paper distils BERT-base ({PAPER_TABLE3['BERT-base'][0]} M parameters, paper Table 3), "
         "pretrained on English Wikipedia + Toronto BookCorpus. Offline on 2 CPU cores neither the hub checkpoint nor "
         f"that corpus is available, so the teacher here is {ours_t} on WikiText-2; it is far weaker, so every "
         "downstream number measures a small model, and retention compares two weak models."),
        "* **Student.** Same recipe (half the layers, every other teacher layer, triple loss"
        + (f" with alpha ce/mlm/cos {sc.get('alpha_ce')}/{sc.get('alpha_mlm')}/{sc.get('alpha_cos')}, "
           f"T = {sc.get('temperature')}" if sc else "") + f"), but at the small teacher's width: {ours_s}; "
        f"the paper's student has "
        f"{PAPER_TABLE3['DistilBERT'][0]} M (paper Table 3) and trains for far longer on a far larger corpus.",
        "* **Seeds.** The paper reports the median of 5 fine-tuning runs on GLUE; in Tables 1-2 here "
        + (f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))})" if seeds else "no downstream seeds were run")
        + ", to fit the CPU budget.",
        "* **Training subsets.** " + (f"Fine-tuning used at most {max(subset)} training examples per task"
                                      + (f" (fewer where a training set is smaller, down to {min(subset)})"
                                         if min(subset) != max(subset) else "")
                                      + "; the paper uses the full training sets" if subset else
                                      "No downstream fine-tuning was run") + ".",
        "* **Tasks.** " + (f"GLUE tasks without local train/dev files are not run ({', '.join(not_run)}), so our "
                           "GLUE Score averages fewer tasks than the paper's nine and is not comparable in absolute "
                           "terms" if not_run else "All nine GLUE tasks are in Table 1 when run") + ".",
        "* **SQuAD.** The SQuAD v1.1 training set is not available offline; where Table 2 has measured SQuAD numbers "
        "the model was fine-tuned on one split of the dev set and scored on the other (see the row's note), not "
        "on the official train/dev split.",
        "* **Speed.** The paper times CPU inference on the full STS-B dev set with batch size 1; Table 3's "
        "measured rows name their device, threads and setup, and time the small models here.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


BAR_TASKS = (*TABLE1_TASKS, "IMDb", "SQuAD EM", "SQuAD F1")


def fig_task_bars(res: Results, path: Path) -> Path:
    plt = _plt()
    import numpy as np

    ours, paper = task_scores(res), paper_task_scores()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    panels = [("measured (this repository)", ours), ("paper (Sanh et al. 2019, Tables 1-2)",
                                                      {k: paper[k] for k in ("BERT-base", "DistilBERT")})]
    x = np.arange(len(BAR_TASKS))
    for ax, (title, models) in zip(axes, panels):
        names = list(models)
        w = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            vals = [models[name].get(t) for t in BAR_TASKS]
            ax.bar(x + (i - (len(names) - 1) / 2) * w, [v if v is not None else 0 for v in vals], w, label=name,
                   color=f"C{i}")
            for k, v in enumerate(vals):
                if v is None:
                    ax.text(x[k] + (i - (len(names) - 1) / 2) * w, 1, "not run", rotation=90, fontsize=6,
                            ha="center", va="bottom", color="0.4")
        if not names:
            ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center")
        ax.set_xticks(x, BAR_TASKS, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("score (0-100; CoLA MCC, STS-B Pearson/Spearman)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def teacher_student_pairs(scores: dict) -> list[tuple[str, dict, dict]]:
    t = next(((k, v) for k, v in scores.items() if k.startswith("teacher")), None)
    if t is None:
        return []
    return [(k, t[1], v) for k, v in scores.items() if not k.startswith("teacher")]


def fig_retention(res: Results, path: Path) -> Path:
    plt = _plt()
    import numpy as np

    paper = paper_task_scores()
    series = [(f"{k} / teacher (measured)", per_task_retention(t, s)) for k, t, s in
              teacher_student_pairs(task_scores(res))]
    series.append(("DistilBERT / BERT-base (paper)", per_task_retention(paper["BERT-base"], paper["DistilBERT"])))
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(BAR_TASKS))
    w = 0.8 / len(series)
    for i, (name, ret) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * w, [ret.get(t, 0) for t in BAR_TASKS], w, label=name,
               color=f"C{i}" if "paper" not in name else "0.6")
        for k, t in enumerate(BAR_TASKS):
            if t not in ret:
                ax.text(x[k] + (i - (len(series) - 1) / 2) * w, 2, "n/a", rotation=90, fontsize=6, ha="center")
    ax.axhline(100, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, BAR_TASKS, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("student as % of teacher")
    ax.set_title("Retention per task (n/a: not run, or a teacher score of 0)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=len(series))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


FIGURES = ("loss_curves", "task_bars", "retention", "speed_size")  # report/figures/<name>.png


def write_figures(res: Results, fig_dir: Path) -> dict[str, Path]:
    fig_dir.mkdir(parents=True, exist_ok=True)
    return {"loss_curves": fig_loss_curves(res, fig_dir / "loss_curves.png"),
            "task_bars": fig_task_bars(res, fig_dir / "task_bars.png"),
            "retention": fig_retention(res, fig_dir / "retention.png"),
            "speed_size": fig_speed_size(res, fig_dir / "speed_size.png")}


# ------------------------------------------------------------------ the report
REPORT_TITLE = "# tinydistil: reproducing DistilBERT (Sanh et al., 2019)"


def write_report(results_dir="results", report_dir="report", preset: str = "cpu", overwrite: bool = False) -> Path:
    """Write `report_dir`/report.md and `report_dir`/figures/*.png from `results_dir`; returns report.md.
    A report.md or figure there that tinydistil did not write is kept unless `overwrite`."""
    from .rundir import made_by_matplotlib, refuse_foreign

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
        f"in `{results_dir}/` (pretraining run at git SHA `{sha}`). Every measured number below is read from those "
        "files; the paper's numbers are labelled as the paper's; anything not run says so.", "",
        _section_headlines(res), "", _section_run(res), "",
        _section_table1(res), "", f"![teacher vs student per task]({rel['task_bars']})", "",
        f"![retention per task]({rel['retention']})", "",
        _section_table2(res), "", _section_table3(res), "", f"![speed vs size]({rel['speed_size']})", "",
        _section_table4(res), "",
        "## Distillation loss curves", "",
        "Each logged term of `log.jsonl`, unweighted"
        + (f" (the student's `loss` = {sc['alpha_ce']:g}·loss_ce + {sc['alpha_mlm']:g}·loss_mlm + "
           f"{sc['alpha_cos']:g}·loss_cos, weights from its run.json)" if all(
               num(sc.get(k)) is not None for k in ("alpha_ce", "alpha_mlm", "alpha_cos")) else "")
        + "; identically-zero terms (the teacher's distillation terms) are left out.", "",
        f"![loss curves]({rel['loss_curves']})", "",
        _section_differences(res), "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path
