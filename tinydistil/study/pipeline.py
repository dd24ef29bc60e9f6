"""`reproduce`: every stage of a preset in order, each skipped when finished and resumed when interrupted.

    stem -> teacher -> distill          pretraining (offline teacher) and distillation (train.py)
    mlm_eval                            teacher vs student masked-LM accuracy on WikiText-2 valid
    glue, imdb, squad, squad_d          fine-tuning of teacher and student: one stage per task of eval.registry,
                                        then squad_d (DistilBERT (D), from the SQuAD-fine-tuned teacher)
    speed                               Table 3 (params, disk, CPU inference time, int8 / ONNX forms)
    tables, report                      Tables 1-2 CSVs, report/report.md and the poster

    summary = reproduce("cpu")                       # what `python -m tinydistil reproduce --preset cpu` runs
    summary = reproduce("smoke", root="/tmp/runs")   # seconds, on the bundled samples

Each stage's wall time lands in <tables_dir>/<preset>/reproduce.json (cpu: results/cpu/) with the git SHA and machine.
Finished work is never redone: pretraining stages resume from their checkpoints, fine-tuning skips finished
(task, seed) runs, `speed` skips when its CSV was written by a finished run of the same models.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..eval import registry
from ..presets import get_preset, preset_stages
from .layout import Layout, copy_results, finetune_config, study_locked

PRETRAIN_STAGES = ("stem", "teacher", "distill")


def downstream_stages() -> tuple[str, ...]:
    """mlm_eval, one stage per registered task (eval.registry.TASKS), squad_d, speed, tables, report."""
    return ("mlm_eval", *registry.TASKS, "squad_d", "speed", "tables", "report")


def all_stages() -> tuple[str, ...]:
    return PRETRAIN_STAGES + downstream_stages()


STAGES = all_stages()  # with the tasks registered at import; the functions below read the registry when called


def parse_skip(skip) -> set[str]:
    """'speed,squad_d' / ['speed'] / 'downstream' -> set of stage names; ValueError for unknown names."""
    names = [s.strip() for s in (skip.split(",") if isinstance(skip, str) else (skip or [])) if s.strip()]
    out, stages = set(), all_stages()
    for n in names:
        if n == "downstream":
            out |= set(downstream_stages())
        elif n in stages:
            out.add(n)
        else:
            raise ValueError(f"unknown stage {n!r} in --skip; stages: {', '.join(stages)} (or 'downstream')")
    return out


def _say(msg: str) -> None:
    print(f"[tinydistil] {msg}", file=sys.stderr, flush=True)


def downstream_settings(preset: str) -> dict:
    """The fine-tuning configs `reproduce` (and `ablate`) use per task (preset overrides on FinetuneConfig's
    defaults), the other downstream options (SQuAD, speed, tasks, the ablation's) and the wall-time budget."""
    import dataclasses

    p = get_preset(preset)
    ds = p.downstream
    resolved = {t.name: dataclasses.asdict(finetune_config(ds.get(t.name, {}), **t.finetune_defaults))
                for t in registry.downstream_tasks()}
    if "ablation_glue" in ds:
        resolved["ablation_glue"] = dataclasses.asdict(finetune_config(ds["ablation_glue"]))
    return {**resolved, **{k: v for k, v in ds.items() if k not in resolved}, "budget_min": p.budget_min}


@study_locked
def reproduce(preset: str, root: str | None = None, teacher_overrides=None, distill_overrides=None,
              skip=(), progress: bool = True, overwrite: bool = False) -> dict:
    """Run (or finish) every stage of `preset`; returns the summary also written to reproduce.json.

    root: put every run under root/<preset>/ (and tables there) instead of the preset's folders.
    skip: stage names (see STAGES) or "downstream" to stop after pretraining and distillation.
    overwrite: replace tables, report and poster files in the output folders that tinydistil did not write.
    """
    from ..train import Trainer

    p = get_preset(preset)
    skip = parse_skip(skip)
    stages = preset_stages(preset, root=root, teacher_overrides=teacher_overrides,
                           distill_overrides=distill_overrides)
    cfgs = dict(stages)
    distill_cfg = cfgs["distill"]
    teacher = str(Path(cfgs["teacher"].output_dir) / "model") if "teacher" in cfgs else distill_cfg.teacher
    student = str(Path(distill_cfg.output_dir) / "model")
    lay = Layout(preset, root)
    eval_dirs = {r: lay.eval_dir(r) for r in ("teacher", "student")}
    tables_dir, results, report_dir, poster_dir = lay.tables_dir, lay.records, lay.report_dir, lay.poster_dir
    data_dir = distill_cfg.data_dir  # None -> $TINYDISTIL_DATA_DIR, then the hub
    ds = p.downstream
    tasks = {t.name: t for t in registry.downstream_tasks()}
    todo = [s for s in all_stages() if s not in skip and (s in cfgs or s not in PRETRAIN_STAGES)]
    summary = {"preset": preset, "budget_min": p.budget_min, "stage_budget_min": dict(p.stage_budget_min),
               "stages": todo, "skipped": sorted(skip),
               "teacher": teacher, "student": student,
               "eval_dirs": {k: str(v) for k, v in eval_dirs.items()}, "tables_dir": str(tables_dir),
               "stage_wall_time_s": {}, "stage_status": {}}
    t_all = time.time()
    earlier = _read_json(results / "reproduce.json")  # an interrupted invocation's measured stage times

    seed_globs = {**{t.name: [(r, f"{t.name}/{t.seed_glob}") for r in eval_dirs] for t in tasks.values()},
                  "squad_d": [("student", "squad_d/seed*.json")]}

    def seed_runs(name: str) -> tuple[int, float]:
        """(finished (task, seed) runs of a fine-tuning stage, the sum of their recorded wall times)."""
        files = [f for role, pattern in seed_globs.get(name, []) for f in eval_dirs[role].glob(pattern)]
        return len(files), sum(float(_read_json(f).get("wall_time_s", 0.0)) for f in files)

    def run_stage(i: int, name: str, fn) -> None:
        _say(f"stage {i}/{len(todo)}: {name}")
        t0 = time.time()
        before = seed_runs(name)[0]
        status = fn()
        after, seconds = seed_runs(name)
        if status is None and name in seed_globs and after and after == before:
            status = "already finished"  # every (task, seed) was done before this call
            summary.setdefault("seed_wall_time_s", {})[name] = round(seconds, 1)
        summary["stage_wall_time_s"][name] = round(time.time() - t0, 1)
        summary["stage_status"][name] = status or "done"
        _say(f"stage {i}/{len(todo)}: {name} {status or 'done'} in {time.time() - t0:.0f}s "
             f"(total {(time.time() - t_all) / 60:.1f} min)")

    def pretrain(cfg):
        def fn():
            done = (Path(cfg.output_dir) / "summary.json").is_file()
            Trainer(cfg, resume=True, progress=progress).setup().train()
            return "already finished" if done else None
        return fn

    def mlm_eval():
        retrained = any(not str(summary["stage_status"].get(s, "")).startswith(("already", "done in")) for s in cfgs)
        prev = earlier.get("mlm_eval", {})
        if prev.get("split") and not retrained and (earlier.get("teacher"), earlier.get("student")) == (teacher, student):
            summary["mlm_eval"] = prev  # the same models were evaluated by an earlier call
            return "already finished"
        summary["mlm_eval"] = _mlm_eval(teacher, student, distill_cfg)
        if "not run" in summary["mlm_eval"]:
            return f"not run: {summary['mlm_eval']['not run']}"

    def downstream(task):
        def fn():
            cfg = finetune_config(ds.get(task.name, {}), **task.finetune_defaults)
            for role, model in (("teacher", teacher), ("student", student)):
                task.run(model, cfg, ds, eval_dirs[role] / task.name, data_dir, progress, role)
        return fn

    def squad_cfgs():
        from ..eval.squad import SQUAD_FINETUNE, SquadConfig

        return finetune_config(ds.get("squad", {}), **SQUAD_FINETUNE), SquadConfig(**ds.get("squad_opts", {}))

    def squad_d():
        from ..eval.squad import run_squad

        qa_teacher = eval_dirs["teacher"] / "squad" / "model"
        if not (qa_teacher / "config.json").is_file():
            return "not run: no SQuAD-fine-tuned teacher (the squad stage did not run or had no data)"
        cfg, opts = squad_cfgs()
        run_squad(student, cfg, opts, str(qa_teacher), eval_dirs["student"] / "squad_d", data_dir, progress)

    def speed():
        return _speed(teacher, student, eval_dirs["student"] / "glue" / "stsb" / "model", data_dir,
                      tables_dir / "table3_speed.csv", ds.get("speed", {}), progress)

    def tables():
        from .tables import write_majority, write_tables

        write_tables([("teacher", str(eval_dirs["teacher"])), ("student", str(eval_dirs["student"]))], tables_dir,
                     overwrite=overwrite)
        write_majority(tables_dir / "glue_majority.csv", data_dir, ds.get("glue_tasks"), overwrite=overwrite)
        for role, folder in eval_dirs.items():  # per-seed results (not the models) next to the tables
            copy_results(folder, lay.copied_eval(role))

    def report():
        from .poster import write_poster
        from .report import write_report

        _write_summary(summary, stages, results, t_all)  # the report reads the wall times from it
        summary["report"] = str(write_report(tables_dir, report_dir, preset, overwrite=overwrite))
        summary["poster"] = [str(x) for x in write_poster(tables_dir, poster_dir, preset, overwrite=overwrite)]

    fns = {**{name: pretrain(cfg) for name, cfg in stages}, **{name: downstream(t) for name, t in tasks.items()},
           "mlm_eval": mlm_eval, "squad_d": squad_d, "speed": speed, "tables": tables, "report": report}
    for i, name in enumerate(todo, 1):
        run_stage(i, name, fns[name])
        _carry_over(summary, earlier)
        _write_summary(summary, stages, results, t_all)
    summary["total_wall_time_s"] = round(time.time() - t_all, 1)
    _carry_over(summary, earlier)
    _write_summary(summary, stages, results, t_all)
    _print_summary(summary, tables_dir, report_dir, poster_dir)
    return summary


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _carry_over(summary: dict, earlier: dict) -> None:
    """Stages this call found finished keep the wall time an earlier call measured for them, so that
    `study_wall_time_s` (the sum over stages) is what the whole study took, across interruptions."""
    times, status = summary["stage_wall_time_s"], summary["stage_status"]
    before, before_status = earlier.get("stage_wall_time_s", {}), earlier.get("stage_status", {})
    seeds = summary.get("seed_wall_time_s", {})
    for name in times:
        if status[name] != "already finished":
            continue
        measured = before.get(name) if str(before_status.get(name, "")).startswith("done") else None
        if seeds.get(name, 0) > (measured or 0):  # a fine-tuning stage cannot have taken less than its runs
            times[name] = seeds[name]
            status[name] = "done in earlier calls (time = sum of its per-seed runs' wall times)"
        elif measured is not None:
            times[name] = measured
            status[name] = (before_status[name] if before_status[name].startswith("done in")
                            else f"done in an earlier call ({earlier.get('git_sha', '?')[:12]})")
    summary["study_wall_time_s"] = round(sum(times.values()), 1)


def _speed(teacher, student, stsb_model: Path, data_dir, out_csv: Path, opts: dict, progress: bool):
    """Table 3 unless out_csv was written by a finished run of the same teacher and student."""
    from ..deploy.speed import run_speed

    meta = out_csv.with_suffix(".json")
    if out_csv.is_file() and meta.is_file():
        prev = _read_json(meta)
        same = lambda a, b: bool(a) and Path(a).resolve() == Path(b).resolve()  # noqa: E731
        # written after the models were saved (a fresh clone has the committed CSV but newly trained models)
        models = [f for d in (teacher, student) if Path(d).is_dir() for f in Path(d).iterdir() if f.is_file()]
        newer = all(meta.stat().st_mtime > f.stat().st_mtime for f in models)
        if "wall_time_s" in prev and newer and same(prev.get("teacher"), teacher) and same(prev.get("student"), student):
            return "already finished"
    stsb = str(stsb_model) if (stsb_model / "config.json").is_file() else None
    try:
        run_speed(teacher, student, data_dir, str(out_csv), progress=progress, stsb_model=stsb, **opts)
    except FileNotFoundError as e:
        return f"not run: {e}"
    return None


def _mlm_eval(teacher: str, student: str, cfg) -> dict:
    """Teacher vs student on the same masked WikiText-2 validation blocks (see mlm_eval.py)."""
    from ..eval.mlm_eval import evaluate_mlm

    try:
        scores = evaluate_mlm({"teacher": teacher, "student": student}, cfg.data_dir, "valid", cfg.block_size)
    except ValueError as e:  # e.g. the smoke sample has no validation split
        return {"not run": str(e)}
    t, s = scores["teacher"]["mlm_accuracy"], scores["student"]["mlm_accuracy"]
    scores["student_accuracy_retention_pct"] = round(100 * s / t, 1) if t else None
    return {"split": "valid", **scores}


def _write_summary(summary: dict, stages, dest: Path, t_all: float) -> None:
    """Copy each finished pretraining stage's run.json / log.jsonl / summary.json to dest/<stage>/, note how
    the student loads, and write dest/reproduce.json (with git SHA, machine, wall time so far)."""
    from ..rundir import copy_atomic, run_info

    for name, cfg in stages:
        folder = "student" if name == "distill" else name
        if (Path(cfg.output_dir) / "summary.json").is_file():
            (dest / folder).mkdir(parents=True, exist_ok=True)
            for f in ("run.json", "log.jsonl", "summary.json"):
                copy_atomic(Path(cfg.output_dir) / f, dest / folder / f)
    student_dir = Path(summary["student"])
    if "student_layers" not in summary and (student_dir / "config.json").is_file():
        from transformers import DistilBertForMaskedLM

        model = DistilBertForMaskedLM.from_pretrained(student_dir)
        summary.update({"student_loads_with": "DistilBertForMaskedLM.from_pretrained",
                        "student_layers": model.config.n_layers,
                        "student_parameters": sum(p.numel() for p in model.parameters())})
    info = run_info()
    info["finished"] = info.pop("started")
    dest.mkdir(parents=True, exist_ok=True)
    summary["wall_time_so_far_s"] = round(time.time() - t_all, 1)
    tmp = dest / "reproduce.json.tmp"
    tmp.write_text(json.dumps({**summary, **info}, indent=2, default=str))
    tmp.replace(dest / "reproduce.json")


def _print_summary(summary: dict, tables_dir: Path, report_dir: Path, poster_dir: Path) -> None:
    lines = [f"reproduce --preset {summary['preset']}: {summary['total_wall_time_s'] / 60:.1f} min this call, "
             f"{summary['study_wall_time_s'] / 60:.1f} min for the whole study (sum over stages)"
             + (f"; budget {summary['budget_min']:.0f} min" if summary.get("budget_min") else "")]
    budgets = summary.get("stage_budget_min") or {}
    for name, t in summary["stage_wall_time_s"].items():
        budget = f" (budget {budgets[name]:g} min)" if name in budgets else ""
        lines.append(f"  {name:<9} {t:>7.0f} s{budget}  {summary['stage_status'][name]}")
    for f in ("table1_glue.csv", "table2_downstream.csv", "table3_speed.csv"):
        if (tables_dir / f).is_file():
            lines.append(f"  {f:<22} {tables_dir / f}")
    if "report" in summary:
        lines.append(f"  report                 {summary['report']}")
        lines.append(f"  poster                 {', '.join(summary['poster'])}")
    print("\n".join(lines))
