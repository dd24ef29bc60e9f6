"""The paper's Table 4 ablation: distil the same student again with one change each, fine-tune each on GLUE.

    df = run_ablation("cpu")      # what `python -m tinydistil ablate --preset cpu` runs
    -> results/table4_ablation.csv: Variant, Score, Delta, Spread, Paired deltas, Seeds, Held-out MLM acc,
       Per-task delta, Excl. WNLI, Paper delta, source, run_id, note

Variants (Sanh et al. 2019, Table 4, GLUE macro-score differences from the full triple loss):
    - L_ce        alpha_kl = 0      (no soft-target KL)                    paper -2.96
    - L_cos       alpha_cos = 0     (no hidden-state cosine)               paper -1.46
    - L_mlm       alpha_mlm = 0     (no masked-LM cross-entropy)           paper -0.31
    random init   student_init = random (no every-other-layer copy)       paper -3.69
    first layers  student_layers = the teacher's bottom half ([0, 1, 2] of 6) instead of every other layer
                  (not in the paper: why every other layer?)
    + L_sent      alpha_sent = 1    (the full loss plus the sentence term, losses.sentence_cosine_loss; not in the
                  paper: does a teacher's sentence geometry survive when it is distilled explicitly?)
    no distillation  the control: the full row's student after 0 updates (not in the paper: what the
                  distillation updates add to the copied layers)

Every variant uses the preset's distillation budget and one GLUE protocol (the preset's `ablation_glue`
settings, else its `glue` ones: same tasks, seeds, training subsets), so the only difference is the change
itself. The full-loss row reuses `reproduce`'s student, and its GLUE runs too when the protocol is Table 1's;
otherwise it is fine-tuned again under the ablation protocol in its own folder (Table 1 stays as it is).
Score = mean over the GLUE tasks run of each task's median over seeds; Spread = standard deviation and range over seeds of the per-seed macro score (seed k's scores averaged over the
tasks), so a difference smaller than the spread is noise. Paired deltas = that per-seed macro minus the full
loss's for the same seed (same training subset, data order and head initialisation), a finer test than the
spread when seed effects are shared. Held-out MLM acc = top-1 accuracy on masked WikiText-2 validation tokens
(same masks for every variant, see mlm_eval.py; the full row names the number of masked tokens): the distilled
student itself, before any fine-tuning noise.
Per-task delta = each task's median minus the full loss's, so a reader sees which task moves the macro.
Excl. WNLI = the same macro without WNLI, as "score; sd X" (full loss) or "score (delta); paired deltas (k/n
lower)": WNLI's 71 dev examples are adversarial (a model that learns anything from train scores below the
majority class), so at this scale its per-seed score jumps by ~20 points between "majority class" and
"learned something" and can dominate a 6-task macro; BERT's own GLUE average leaves it out. The paper's macro
(with WNLI) stays the headline Score.
Resumable: finished distillations, MLM evaluations and (task, seed) fine-tuning runs are skipped.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from ..config import current_names, replace, to_dict
from ..paper import PAPER_TABLE4
from ..records import TableRow, table_json
from ..rundir import atomic_file, config_diff, copy_atomic, run_info, torn, write_json_atomic
from .layout import Layout, copy_results, finetune_config, study_locked
from .stats import macro, per_seed_macro
from .stats import paired_deltas as stats_paired

FULL_VARIANT = "full triple loss"  # the row every other row is compared with
VARIANTS = {
    FULL_VARIANT: {},
    "- L_ce": {"alpha_kl": 0.0},
    "- L_cos": {"alpha_cos": 0.0},
    "- L_mlm": {"alpha_mlm": 0.0},
    "random init": {"student_init": "random"},
    "first layers": {"student_layers": "bottom half"},  # resolved against the teacher's depth (variant_config)
    "+ L_sent": {"alpha_sent": 1.0},  # adds a term: judged as better or not (table4_verdicts' "better")
    "no distillation": {},  # the control: the full row's student before any update (snapshots.init_student_run)
}
CONTROL_VARIANT = "no distillation"
ADDED_TERM_VARIANTS = ("+ L_sent",)  # rows that add to the objective: the report asks whether they are better
SLUGS = {FULL_VARIANT: "full", "- L_ce": "no_ce", "- L_cos": "no_cos", "- L_mlm": "no_mlm",
         "random init": "random_init", "first layers": "first_layers", "+ L_sent": "sent",
         CONTROL_VARIANT: "control"}
TABLE4_COLUMNS = ("Variant", "Score", "Delta", "Spread", "Paired deltas", "Seeds", "Held-out MLM acc",
                  "Per-task delta", "Excl. WNLI", "Paper delta", "source", "run_id", "note")
HOST_SPEED_FILE = "host_speed.json"  # per row folder: the machine and matmul rate of each call that ran it
NOISY_TASKS = ("wnli",)  # left out of the secondary "Excl. WNLI" macro (see the module doc)
ROW_KEYS = ("score", "per_seed", "seeds", "tasks", "medians", "excl", "mlm_accuracy", "mlm_tokens", "run_id", "note")


def variant_config(base_cfg, name: str, output_dir: str):
    """The distillation config of variant `name`: base_cfg with the variant's change ("bottom half" student
    layers become the teacher's first n/2 layers, n read from the teacher's config)."""
    over = dict(VARIANTS[name])
    if over.get("student_layers") == "bottom half":
        from transformers import AutoConfig

        from ..student import default_student_layers

        n = AutoConfig.from_pretrained(base_cfg.teacher).num_hidden_layers
        over["student_layers"] = list(range(len(default_student_layers(n))))
    return replace(base_cfg, **over, output_dir=output_dir)


def parse_variants(variants) -> list[str]:
    """Names or slugs ('no_ce,random_init') -> variant names in table order; 'full triple loss' always included."""
    if variants is None:
        return list(VARIANTS)
    items = [v.strip() for v in (variants.split(",") if isinstance(variants, str) else variants) if v.strip()]
    by_slug = {s: n for n, s in SLUGS.items()}
    out = {FULL_VARIANT}
    for v in items:
        name = by_slug.get(v, v)
        if name not in VARIANTS:
            raise ValueError(f"unknown ablation variant {v!r}; choose from {', '.join(SLUGS.values())}")
        out.add(name)
    return [n for n in VARIANTS if n in out]


def _same_run(folder: Path, cfg) -> bool:
    """True when `folder` holds a finished distillation whose config equals `cfg` apart from output paths
    (earlier field names, config.RENAMED, read as the current ones; a field added since it ran counts as its
    default, as on resume)."""
    from ..train import Trainer

    run, done = folder / "run.json", folder / "summary.json"
    if not (run.is_file() and done.is_file()):
        return False
    saved = current_names(json.loads(run.read_text())["config"])
    return not config_diff(json.loads(json.dumps(to_dict(cfg))), saved, Trainer.RESUME_IGNORES,
                           defaults=json.loads(json.dumps(to_dict(type(cfg)()))))


def task_seed_scores(glue_dir: Path, tasks: list[str]) -> dict[str, dict[int, float]]:
    """{task: {seed: score}} of the finished (task, seed) runs in a GLUE folder (tasks without any left out)."""
    per_task: dict[str, dict[int, float]] = {}
    for t in tasks:
        seeds = {int(r["seed"]): float(r["score"]) for r in map(json.loads, (p.read_text() for p in
                                                                             sorted((Path(glue_dir) / t).glob("seed*.json"))))}
        if seeds:
            per_task[t] = seeds
    return per_task


def variant_scores(glue_dir: Path, tasks: list[str]) -> dict:
    """{'score', 'per_seed', 'seeds', 'tasks', 'medians'} from finished GLUE runs: the macro of per-task medians
    over seeds ('medians': {task: median}), and for each seed present in every task (listed in 'seeds') the
    macro of that seed's task scores (study.stats)."""
    per_task = task_seed_scores(glue_dir, tasks)
    by_seed = per_seed_macro(per_task)
    return {"score": macro(per_task), "per_seed": list(by_seed.values()), "seeds": list(by_seed),
            "tasks": sorted(per_task), "medians": {t: statistics.median(v.values()) for t, v in per_task.items()}}


def scores_without(sc: dict, glue_dir: Path, drop=NOISY_TASKS) -> dict:
    """variant_scores over `sc`'s tasks minus `drop` (the secondary macro); {} when nothing would be left out."""
    keep = [t for t in sc.get("tasks", []) if t not in drop]
    return variant_scores(glue_dir, keep) if keep and len(keep) < len(sc.get("tasks", [])) else {}


def paired_deltas(row: dict, full: dict) -> list[float]:
    """Per-seed macro of `row` minus that of `full`, over the seeds both have (rows as from variant_scores;
    without 'seeds', per_seed entries are taken as seeds 0, 1, ...)."""
    by_seed = lambda r: dict(zip(r.get("seeds") or range(len(r.get("per_seed", []))), r.get("per_seed", [])))  # noqa: E731
    return stats_paired(by_seed(row), by_seed(full))


def recorded_wall_s(run_dir: Path, glue_dir: Path) -> tuple[float, float]:
    """(distillation, GLUE fine-tuning) seconds as the runs recorded them (summary.json's train_wall_time_s, the
    seed<k>.json wall_time_s): a row finished across several calls, or restored, reports what it took."""
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    glue = sum(float(json.loads(f.read_text()).get("wall_time_s", 0.0)) for f in glue_dir.glob("*/seed*.json"))
    return float(summary.get("train_wall_time_s", 0.0)), glue


def held_out_mlm(model_dir: Path, data_dir, block_size: int) -> dict:
    """{'mlm_accuracy', ...} of one distilled student on the masked validation blocks, cached beside its run
    folder (<run>/mlm_eval_valid.json); {'not run': why} when the corpus has no validation split."""
    from ..eval.mlm_eval import evaluate_mlm

    cache = Path(model_dir).parent / "mlm_eval_valid.json"
    if cache.is_file() and not torn(cache):  # a torn one (written before caches were atomic) is measured again
        return json.loads(cache.read_text())
    try:
        out = evaluate_mlm({"student": str(model_dir)}, data_dir, "valid", block_size)["student"]
    except ValueError as e:  # e.g. the bundled smoke sample has no validation split
        return {"not run": str(e)}
    write_json_atomic(cache, out)
    return out


def _spread(ps: list[float]) -> str:
    return f"sd {statistics.stdev(ps):.2f}; range {min(ps):.2f}-{max(ps):.2f}" if len(ps) >= 2 else ""


def _paired(r: dict, full: dict) -> str:
    d = paired_deltas(r, full)
    return " ".join(f"{x:+.2f}" for x in d) + (f" ({sum(x < 0 for x in d)}/{len(d)} lower)" if d else "")


def _per_task(r: dict, full: dict) -> str:
    from ..eval.glue import TASKS

    m, f = r.get("medians") or {}, full.get("medians") or {}
    return ", ".join(f"{TASKS[t].display if t in TASKS else t} {m[t] - f[t]:+.2f}" for t in sorted(m) if t in f)


def _excl(r: dict, full: dict | None) -> str:
    x = r.get("excl") or {}
    if x.get("score") is None:
        return ""
    if full is None or r is full:
        ps = x.get("per_seed", [])
        return f"{x['score']:.2f}" + (f"; sd {statistics.stdev(ps):.2f}" if len(ps) >= 2 else "")
    fx = full.get("excl") or {}
    if fx.get("score") is None:
        return f"{x['score']:.2f}"
    return f"{x['score']:.2f} ({x['score'] - fx['score']:+.2f}); {_paired(x, fx)}".rstrip("; ")


def write_table4(rows: list[dict], path, meta: dict | None = None) -> "pd.DataFrame":  # noqa: F821
    """Table 4 CSV (TABLE4_COLUMNS) from rows {Variant, score, per_seed, seeds, medians, excl, mlm_accuracy,
    mlm_tokens, run_id, note} (excl: the variant_scores dict without NOISY_TASKS); Delta, Paired deltas,
    Per-task delta and Excl. WNLI vs the full row; MLM accuracy in percent (its change vs the full row in
    brackets; the full row names the number of masked tokens). Beside it, `<path>.json`: `meta` (provenance,
    protocol, decision rule) and the rows' floats, from which the report's verdicts are computed."""
    import pandas as pd

    full = next((r for r in rows if r["Variant"] == FULL_VARIANT), None)
    out, typed = [], []
    for r in rows:
        ok = r.get("score") is not None
        delta = ""
        if ok and full is not None and full.get("score") is not None:
            delta = f"{r['score'] - full['score']:+.2f}" if r is not full else "0.00"
        versus = ok and full is not None and r is not full
        acc, full_acc = r.get("mlm_accuracy"), (full or {}).get("mlm_accuracy")
        mlm = "" if acc is None else f"{100 * acc:.2f}" + (
            f" ({100 * (acc - full_acc):+.2f})" if full_acc is not None and r is not full else
            f" ({r['mlm_tokens']} masked tokens)" if r is full and r.get("mlm_tokens") else "")
        out.append({"Variant": r["Variant"], "Score": f"{r['score']:.2f}" if ok else f"not run: {r.get('reason', '')}",
                    "Delta": delta, "Spread": _spread(r.get("per_seed", [])),
                    "Paired deltas": _paired(r, full) if versus else "", "Seeds": len(r.get("per_seed", [])),
                    "Held-out MLM acc": mlm, "Per-task delta": _per_task(r, full) if versus else "",
                    "Excl. WNLI": _excl(r, full) if ok else "",
                    "Paper delta": _paper_delta(r["Variant"]),
                    "source": "measured", "run_id": r.get("run_id", ""), "note": r.get("note", "")})
        typed.append(TableRow({c: str(v) for c, v in out[-1].items()}, _row_values(r, full), extra=_row_extra(r, full)))
    df = pd.DataFrame(out, columns=list(TABLE4_COLUMNS))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)
    write_json_atomic(path.with_suffix(".json"), {**table_json(typed, TABLE4_COLUMNS, meta), "variants": {
        r["Variant"]: {k: r.get(k) for k in ROW_KEYS} for r in rows}}, default=str)
    return df


def _row_values(r: dict, full: dict | None) -> dict:
    """The floats behind a Table 4 row's numeric cells (Score, Delta, Paper delta, Seeds, Held-out MLM acc in %)."""
    out = {"Seeds": float(len(r.get("per_seed", [])))}
    if r.get("score") is not None:
        out["Score"] = r["score"]
        if full is not None and full.get("score") is not None:
            out["Delta"] = r["score"] - full["score"] if r is not full else 0.0
    if r["Variant"] == FULL_VARIANT or r["Variant"] in PAPER_TABLE4:
        out["Paper delta"] = PAPER_TABLE4.get(r["Variant"], 0.0)
    if r.get("mlm_accuracy") is not None:
        out["Held-out MLM acc"] = 100 * r["mlm_accuracy"]
    return out


def _row_extra(r: dict, full: dict | None) -> dict:
    """What the cells of a Table 4 row hold beside their first number, typed: the per-seed sd, the paired deltas
    against the full loss (and how many are lower), the held-out MLM change and masked-token count, the delta of
    the macro without WNLI."""
    ps = r.get("per_seed", [])
    versus = full is not None and r is not full and r.get("score") is not None
    paired = paired_deltas(r, full) if versus else []
    acc, f_acc = r.get("mlm_accuracy"), (full or {}).get("mlm_accuracy")
    x, fx = r.get("excl") or {}, (full or {}).get("excl") or {}
    return {"sd": statistics.stdev(ps) if len(ps) >= 2 else None, "paired": paired,
            "lower": sum(d < 0 for d in paired), "mlm_tokens": r.get("mlm_tokens"),
            "mlm_delta": 100 * (acc - f_acc) if versus and acc is not None and f_acc is not None else None,
            "excl_delta": x["score"] - fx["score"] if versus and x.get("score") is not None
            and fx.get("score") is not None else None}


def _paper_delta(variant: str) -> str:
    """The paper's Table 4 delta of `variant`: "0.00" for the full loss, "" for a variant it does not have."""
    if variant == FULL_VARIANT:
        return "0.00"
    return f"{PAPER_TABLE4[variant]:+.2f}" if variant in PAPER_TABLE4 else ""


def protocol(preset: str, distill_overrides=None) -> tuple["FinetuneConfig", list[str], dict]:  # noqa: F821
    """(GLUE fine-tuning config, GLUE tasks, DistillConfig overrides) every Table 4 row of `preset` gets: the
    preset's `ablation_glue` / `ablation_tasks` / `ablation_distill` (defaults: its `glue` settings and
    tasks, no overrides), then `distill_overrides` on top."""
    from ..eval.glue import parse_tasks
    from ..presets import get_preset

    ds = get_preset(preset).downstream
    glue_cfg = finetune_config(ds.get("ablation_glue", ds.get("glue", {})))
    tasks = parse_tasks(ds.get("ablation_tasks", ds.get("glue_tasks")))
    return glue_cfg, tasks, {**ds.get("ablation_distill", {}), **(distill_overrides or {})}


@study_locked
def run_ablation(preset: str = "cpu", root: str | None = None, variants=None, distill_overrides=None,
                 progress: bool = True, table_only: bool = False):
    """Distil and GLUE-fine-tune each variant of `preset` (see module doc); writes Table 4 and returns it.
    table_only: train nothing, rebuild Table 4 (CSV + JSON) from the variants already finished."""
    # one function on purpose (~60 lines): each variant distilled, fine-tuned and recorded, read in order
    from ..eval.glue import parse_tasks, run_glue  # lazy: `--help` stays fast without the GLUE stack
    from ..presets import get_preset, preset_stages
    from ..snapshots import init_student_run
    from ..train import Trainer

    names = [] if table_only else parse_variants(variants)
    p = get_preset(preset)
    glue_cfg, tasks, distill_overrides = protocol(preset, distill_overrides)
    base_cfg = dict(preset_stages(preset, root=root, distill_overrides=distill_overrides))["distill"]
    for stage, cfg in preset_stages(preset, root=root):
        if stage != "distill" and not (Path(cfg.output_dir) / "summary.json").is_file():
            raise ValueError(f"the {stage} of preset {preset!r} is not trained yet ({cfg.output_dir}); run "
                             f"`python -m tinydistil reproduce --preset {preset}` first (or --skip downstream)")
    lay = Layout(preset, root)
    runs, main_eval, tables_dir = lay.runs, lay.eval_dir("student") / "glue", lay.tables_dir
    table1_protocol = glue_cfg == finetune_config(p.downstream.get("glue", {})) and \
        tasks == parse_tasks(p.downstream.get("glue_tasks"))
    data_dir = base_cfg.data_dir
    rows, t_all = {}, time.time()
    info = run_info()

    def write():  # after every variant, so an interrupted call loses nothing finished
        return write_table4([rows[n] for n in VARIANTS if n in rows], tables_dir / "table4_ablation.csv", {
            **info, "preset": preset, "wall_time_s": round(time.time() - t_all, 1), "glue": glue_cfg.__dict__,
            "tasks": tasks, "rule": p.downstream.get("ablation_rule"), "distill_overrides": distill_overrides})

    # variants finished by an earlier call first (they stay in the table, untouched), then this call's
    for name in [n for n in VARIANTS if n not in names] + names:
        cfg = variant_config(base_cfg, name, str(runs / "ablation" / SLUGS[name]))
        glue_dir = lay.eval_dir(f"ablation_{SLUGS[name]}") / "glue"
        if name == FULL_VARIANT and _same_run(Path(base_cfg.output_dir), cfg):
            cfg = base_cfg  # reproduce's student (and its GLUE runs, under Table 1's protocol)
            glue_dir = main_eval if table1_protocol else glue_dir
        distilled = False
        if name in names:
            print(f"[tinydistil] ablation {names.index(name) + 1}/{len(names)}: {name}", file=sys.stderr, flush=True)
            distilled = not (Path(cfg.output_dir) / "summary.json").is_file()
            if distilled and name == CONTROL_VARIANT:
                init_student_run(cfg, progress=progress)
            elif distilled:
                Trainer(cfg, resume=True, progress=progress).setup().train()
            elif not _same_run(Path(cfg.output_dir), cfg):  # finished: not trained again, but it must be this row
                raise ValueError(f"{cfg.output_dir} holds a finished distillation with other settings than the "
                                 f"{name!r} row; move it away or use another --output-dir")
            pending = any(not (glue_dir / t / f"seed{s}.json").is_file() for t in tasks for s in glue_cfg.seed_list)
            if (Path(cfg.output_dir) / "model" / "config.json").is_file():  # else a finished row restored from
                run_glue(str(Path(cfg.output_dir) / "model"), tasks, glue_cfg, glue_dir, data_dir, progress)  # results/
            if (distilled or pending) and cfg is not base_cfg:
                record_host_speed(Path(cfg.output_dir))
        elif not (Path(cfg.output_dir) / "summary.json").is_file():
            continue
        row = _variant_row(name, cfg, glue_dir, tasks, glue_cfg, data_dir)
        if name not in names and row["score"] is None:
            continue
        rows[name] = row
        if glue_dir != main_eval:  # provenance next to the table: per-seed GLUE results, the run's config/log
            copy_results(glue_dir, lay.copied_eval(f"ablation_{SLUGS[name]}") / "glue")
        if cfg is not base_cfg:
            _copy_run_files(Path(cfg.output_dir), tables_dir / preset / "ablation" / SLUGS[name])
        df = write()
    return df


def _variant_row(name: str, cfg, glue_dir: Path, tasks, glue_cfg, data_dir) -> dict:
    """A Table 4 row of one finished variant: its GLUE scores (per seed, per task), held-out MLM accuracy, note."""
    from ..eval.glue import TASKS

    mlm = held_out_mlm(Path(cfg.output_dir) / "model", data_dir, cfg.block_size)
    sc = variant_scores(glue_dir, tasks)
    d_s, g_s = recorded_wall_s(Path(cfg.output_dir), glue_dir)
    note = (f"{', '.join(TASKS[t].display for t in sc['tasks'])}; {len(sc['per_seed'])} seeds x <= "
            f"{glue_cfg.max_train_examples} examples; wall {d_s + g_s:.0f} s as recorded (distillation "
            f"{d_s:.0f} s + GLUE {g_s:.0f} s)")
    speed = host_speed_text(Path(cfg.output_dir))
    note += f"; machine {speed}" if speed else ""
    row = {"Variant": name, **sc, "excl": scores_without(sc, glue_dir), "mlm_accuracy": mlm.get("mlm_accuracy"),
           "mlm_tokens": mlm.get("masked_tokens"), "run_id": str(glue_dir), "note": note}
    if sc["score"] is None:
        row["reason"] = "no GLUE task with data"
    return row


def record_host_speed(run_dir: Path) -> list[dict]:
    """Append this call's machine and matmul probe (runtime.host_speed) to `run_dir`/host_speed.json, a list with
    one entry per call that distilled or fine-tuned the row: a row resumed in a later session may have run on
    another machine, and its wall time means something only beside that machine's rate. Returns the list."""
    from ..runtime import host_speed

    path = run_dir / HOST_SPEED_FILE
    calls = json.loads(path.read_text()) if path.is_file() else []
    calls.append({**run_info(), **host_speed()})
    write_json_atomic(path, calls)
    return calls


def host_speed_text(run_dir: Path) -> str:
    """'matmul fp32 186.3 / bf16 414.9 GFLOP/s' for each call recorded in `run_dir`/host_speed.json ('; '-joined),
    '' when none was recorded (rows run before the file existed)."""
    path = run_dir / HOST_SPEED_FILE
    calls = json.loads(path.read_text()) if path.is_file() else []

    def one(rates: dict) -> str:
        bf16 = rates.get("bf16")
        return f"matmul fp32 {rates['fp32']}" + (f" / bf16 {bf16}" if isinstance(bf16, (int, float)) else "") + \
            " GFLOP/s"
    return "; ".join(one(c["matmul_gflops"]) for c in calls)


def _copy_run_files(run_dir: Path, dest: Path) -> None:
    """A variant's run.json / log.jsonl / summary.json / held-out MLM / host speed beside the table (not the
    model)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("run.json", "log.jsonl", "summary.json", "mlm_eval_valid.json", HOST_SPEED_FILE):
        if (run_dir / f).is_file():
            copy_atomic(run_dir / f, dest / f)
