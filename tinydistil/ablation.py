"""The paper's Table 4 ablation: distil the same student again with one change each, fine-tune each on GLUE.

    df = run_ablation("cpu")      # what `python -m tinydistil ablate --preset cpu` runs
    -> results/table4_ablation.csv: Variant, Score, Delta, Spread, Seeds, Paper delta, source, run_id, note

Variants (Sanh et al. 2019, Table 4, GLUE macro-score differences from the full triple loss):
    - L_ce        alpha_ce = 0      (no soft-target KL)                    paper -2.96
    - L_cos       alpha_cos = 0     (no hidden-state cosine)               paper -1.46
    - L_mlm       alpha_mlm = 0     (no masked-LM cross-entropy)           paper -0.31
    random init   student_init = random (no every-other-layer copy)       paper -3.69

Every variant uses the preset's distillation budget and the preset's GLUE settings (same tasks, seeds, training
subsets), so the only difference is the change itself. The full-loss row reuses `reproduce`'s student and its
GLUE runs when their settings match. Score = mean over the GLUE tasks run of each task's median over seeds;
Spread = standard deviation and range over seeds of the per-seed macro score (seed k's scores averaged over the
tasks), so a difference smaller than the spread is noise. Resumable: finished distillations and (task, seed)
fine-tuning runs are skipped.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from .config import replace

VARIANTS = {
    "full triple loss": {},
    "- L_ce": {"alpha_ce": 0.0},
    "- L_cos": {"alpha_cos": 0.0},
    "- L_mlm": {"alpha_mlm": 0.0},
    "random init": {"student_init": "random"},
}
PAPER_DELTA = {"- L_ce": -2.96, "- L_cos": -1.46, "- L_mlm": -0.31, "random init": -3.69}
SLUGS = {"full triple loss": "full", "- L_ce": "no_ce", "- L_cos": "no_cos", "- L_mlm": "no_mlm",
         "random init": "random_init"}
TABLE4_COLUMNS = ("Variant", "Score", "Delta", "Spread", "Seeds", "Paper delta", "source", "run_id", "note")


def parse_variants(variants) -> list[str]:
    """Names or slugs ('no_ce,random_init') -> variant names in table order; 'full triple loss' always included."""
    if variants is None:
        return list(VARIANTS)
    items = [v.strip() for v in (variants.split(",") if isinstance(variants, str) else variants) if v.strip()]
    by_slug = {s: n for n, s in SLUGS.items()}
    out = {"full triple loss"}
    for v in items:
        name = by_slug.get(v, v)
        if name not in VARIANTS:
            raise ValueError(f"unknown ablation variant {v!r}; choose from {', '.join(SLUGS.values())}")
        out.add(name)
    return [n for n in VARIANTS if n in out]


def _same_run(folder: Path, cfg) -> bool:
    """True when `folder` holds a finished distillation whose config equals `cfg` apart from output paths."""
    from .config import to_dict

    run, done = folder / "run.json", folder / "summary.json"
    if not (run.is_file() and done.is_file()):
        return False
    saved = json.loads(run.read_text())["config"]
    mine = json.loads(json.dumps(to_dict(cfg)))
    ignore = {"output_dir", "save_every", "log_every", "device", "data_dir"}
    return all(saved.get(k) == mine.get(k) for k in set(saved) | set(mine) if k not in ignore)


def variant_scores(glue_dir: Path, tasks: list[str]) -> dict:
    """{'score', 'per_seed', 'tasks'} from finished GLUE runs: the macro of per-task medians over seeds, and
    for each seed present in every task the macro of that seed's task scores."""
    per_task: dict[str, dict[int, float]] = {}
    for t in tasks:
        seeds = {}
        for p in sorted((glue_dir / t).glob("seed*.json")):
            rec = json.loads(p.read_text())
            seeds[int(rec["seed"])] = float(rec["score"])
        if seeds:
            per_task[t] = seeds
    if not per_task:
        return {"score": None, "per_seed": [], "tasks": []}
    medians = [statistics.median(v.values()) for v in per_task.values()]
    common = sorted(set.intersection(*(set(v) for v in per_task.values())))
    per_seed = [sum(v[s] for v in per_task.values()) / len(per_task) for s in common]
    return {"score": sum(medians) / len(medians), "per_seed": per_seed, "tasks": sorted(per_task)}


def write_table4(rows: list[dict], path) -> "pd.DataFrame":  # noqa: F821
    """Table 4 CSV (TABLE4_COLUMNS) from rows {Variant, score, per_seed, run_id, note}; Delta vs the full row."""
    import pandas as pd

    full = next((r for r in rows if r["Variant"] == "full triple loss"), None)
    out = []
    for r in rows:
        ok = r.get("score") is not None
        spread = ""
        if len(r.get("per_seed", [])) >= 2:
            ps = r["per_seed"]
            spread = f"sd {statistics.stdev(ps):.2f}; range {min(ps):.2f}-{max(ps):.2f}"
        delta = ""
        if ok and full is not None and full.get("score") is not None:
            delta = f"{r['score'] - full['score']:+.2f}" if r is not full else "0.00"
        out.append({"Variant": r["Variant"], "Score": f"{r['score']:.2f}" if ok else f"not run: {r.get('reason', '')}",
                    "Delta": delta, "Spread": spread, "Seeds": len(r.get("per_seed", [])),
                    "Paper delta": f"{PAPER_DELTA[r['Variant']]:+.2f}" if r["Variant"] in PAPER_DELTA else "0.00",
                    "source": "measured", "run_id": r.get("run_id", ""), "note": r.get("note", "")})
    df = pd.DataFrame(out, columns=list(TABLE4_COLUMNS))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return df


def run_ablation(preset: str = "cpu", root: str | None = None, variants=None, distill_overrides=None,
                 progress: bool = True):
    """Distil and GLUE-fine-tune each variant of `preset` (see module doc); writes Table 4 and returns it."""
    from .glue import TASKS, parse_tasks, run_glue
    from .pipeline import _finetune_cfg
    from .presets import get_preset, preset_stages
    from .provenance import run_info
    from .train import Trainer

    names = parse_variants(variants)
    p = get_preset(preset)
    base_cfg = dict(preset_stages(preset, root=root, distill_overrides=distill_overrides))["distill"]
    for stage, cfg in preset_stages(preset, root=root):
        if stage != "distill" and not (Path(cfg.output_dir) / "summary.json").is_file():
            raise ValueError(f"the {stage} of preset {preset!r} is not trained yet ({cfg.output_dir}); run "
                             f"`python -m tinydistil reproduce --preset {preset}` first (or --skip downstream)")
    runs = Path(root) / preset if root else Path("runs") / preset
    eval_root = Path(root) / preset / "eval" if root else Path("runs") / "eval"
    main_eval = eval_root / ("student" if root else f"{preset}_student") / "glue"
    tables_dir = Path(root) / preset / "results" if root else Path(p.tables_dir or runs / "results")
    glue_cfg = _finetune_cfg(p.downstream.get("glue", {}))
    tasks = parse_tasks(p.downstream.get("glue_tasks"))
    data_dir = base_cfg.data_dir
    rows, t_all = [], time.time()
    for i, name in enumerate(names, 1):
        print(f"[tinydistil] ablation {i}/{len(names)}: {name}", file=sys.stderr, flush=True)
        t0 = time.time()
        cfg = replace(base_cfg, **VARIANTS[name], output_dir=str(runs / "ablation" / SLUGS[name]))
        glue_dir = eval_root / f"{preset}_ablation_{SLUGS[name]}" / "glue" if not root else \
            eval_root / f"ablation_{SLUGS[name]}" / "glue"
        if name == "full triple loss" and _same_run(Path(base_cfg.output_dir), cfg):
            cfg, glue_dir = base_cfg, main_eval  # reproduce's student and its GLUE runs
        Trainer(cfg, resume=True, progress=progress).setup().train()
        run_glue(str(Path(cfg.output_dir) / "model"), tasks, glue_cfg, glue_dir, data_dir, progress)
        sc = variant_scores(glue_dir, tasks)
        row = {"Variant": name, **sc, "run_id": str(glue_dir),
               "note": f"{', '.join(TASKS[t].display for t in sc['tasks'])}; wall {time.time() - t0:.0f} s"
                       f"{' (incl. distillation)' if cfg is not base_cfg else ''}"}
        if sc["score"] is None:
            row["reason"] = "no GLUE task with data"
        rows.append(row)
        write_table4(rows, tables_dir / "table4_ablation.csv")
    info = run_info()
    (tables_dir / "table4_ablation.json").write_text(json.dumps(
        {**info, "preset": preset, "variants": {r["Variant"]: {k: r[k] for k in ("score", "per_seed", "tasks")}
                                                for r in rows},
         "wall_time_s": round(time.time() - t_all, 1), "glue": glue_cfg.__dict__,
         "distill_overrides": distill_overrides or {}}, indent=2, default=str))
    return write_table4(rows, tables_dir / "table4_ablation.csv")
