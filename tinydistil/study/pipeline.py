"""`reproduce`: every stage of a preset in order, each skipped when finished and resumed when interrupted.

    stem -> teacher -> distill          pretraining (offline teacher) and distillation (train.py)
    control                             the no-distillation control: the student as distillation starts from
                                        it (train.init_student_run), 0 updates
    mlm_eval                            teacher vs student vs control masked-LM accuracy on WikiText-2 valid
    glue, imdb, squad                   fine-tuning of teacher, student and control: one stage per task of
                                        eval.registry
    glue_d, imdb_d, squad_d             DistilBERT (D): the student fine-tuned with the fine-tuned teacher of the
                                        same task (and seed) as a second teacher
    curve                               the distillation-tokens curve: the student's snapshots (DistillConfig.
                                        snapshot_fracs) scored on held-out MLM and the preset's curve tasks
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
from .cards import write_study_cards
from .layout import Layout, copy_results, finetune_config, study_locked

PRETRAIN_STAGES = ("stem", "teacher", "distill")
# fine-tuned models of a study, by role: their eval folders are Layout.eval_dir(role)
ROLES = ("teacher", "student", "control")
D_ROLE = "student_d"  # DistilBERT (D) of the tasks with soft labels (squad_d stays in the student's folder)


def d_stages() -> tuple[str, ...]:
    """The (D) stages: "<task>_d" for each registered task that takes soft labels, then squad_d."""
    return (*[f"{t.name}_d" for t in registry.downstream_tasks() if t.soft_labels], "squad_d")


def downstream_stages() -> tuple[str, ...]:
    """control (the no-distillation student the downstream stages fine-tune beside the distilled one), mlm_eval, one
    stage per registered task (eval.registry.TASKS), the (D) stages, curve, speed, tables, report."""
    return ("control", "mlm_eval", *registry.TASKS, *d_stages(), "curve", "speed", "tables", "report")


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
    from ..runtime import host_speed
    from ..snapshots import init_student_run
    from ..train import Trainer

    p = get_preset(preset)
    skip = parse_skip(skip)
    stages = preset_stages(preset, root=root, teacher_overrides=teacher_overrides,
                           distill_overrides=distill_overrides)
    stages = [*stages, ("control", _control_config(dict(stages)))]
    cfgs = dict(stages)
    distill_cfg = cfgs["distill"]
    teacher = str(Path(cfgs["teacher"].output_dir) / "model") if "teacher" in cfgs else distill_cfg.teacher
    student = str(Path(distill_cfg.output_dir) / "model")
    control = str(Path(cfgs["control"].output_dir) / "model")
    models = {"teacher": teacher, "student": student, "control": control}
    lay = Layout(preset, root)
    eval_dirs = {r: lay.eval_dir(r) for r in (*ROLES, D_ROLE)}
    tables_dir, results, report_dir, poster_dir = lay.tables_dir, lay.records, lay.report_dir, lay.poster_dir
    data_dir = distill_cfg.data_dir  # None -> $TINYDISTIL_DATA_DIR, then the hub
    ds = p.downstream
    tasks = {t.name: t for t in registry.downstream_tasks()}
    todo = [s for s in all_stages() if s not in skip and (s in cfgs or s not in PRETRAIN_STAGES)]
    summary = {"preset": preset, "budget_min": p.budget_min, "stage_budget_min": dict(p.stage_budget_min),
               "stages": todo, "skipped": sorted(skip),
               "teacher": teacher, "student": student, "control": control,
               "eval_dirs": {k: str(v) for k, v in eval_dirs.items()}, "tables_dir": str(tables_dir),
               "stage_wall_time_s": {}, "stage_status": {}}
    t_all = time.time()
    earlier = _read_json(results / "reproduce.json")  # an interrupted invocation's measured stage times
    _say("measuring this machine's matmul rate (the yardstick for every wall time of the study)")
    # the study's yardstick is the machine its stages were measured on: a later call that finds them finished keeps
    # the first call's probe (its own goes to host_speed_this_call)
    summary["host_speed_this_call"] = host_speed()
    summary["host_speed"] = earlier.get("host_speed") or summary["host_speed_this_call"]

    seed_globs = {**{t.name: [(r, f"{t.name}/{t.seed_glob}") for r in ROLES] for t in tasks.values()},
                  **{f"{t.name}_d": [(D_ROLE, f"{t.name}/{t.seed_glob}")] for t in tasks.values() if t.soft_labels},
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
            if cfg is distill_cfg:
                summary["distill_tokens_per_s"] = _tokens_per_s(Path(cfg.output_dir) / "log.jsonl")
            return "already finished" if done else None
        return fn

    def control_stage():
        done = (Path(cfgs["control"].output_dir) / "summary.json").is_file()
        init_student_run(cfgs["control"], progress=progress)
        return "already finished" if done else None

    def mlm_eval():
        retrained = any(not str(summary["stage_status"].get(s, "")).startswith(("already", "done in")) for s in cfgs)
        prev = earlier.get("mlm_eval", {})
        if prev.get("split") and not retrained and (earlier.get("teacher"), earlier.get("student")) == (teacher, student):
            summary["mlm_eval"] = prev  # the same models were evaluated by an earlier call
            return "already finished"
        summary["mlm_eval"] = _mlm_eval({r: m for r, m in models.items() if Path(m).is_dir()}, distill_cfg)
        if "not run" in summary["mlm_eval"]:
            return f"not run: {summary['mlm_eval']['not run']}"

    def task_cfg(task):
        return finetune_config(ds.get(task.name, {}), **task.finetune_defaults)

    def downstream(task):
        def fn():
            for role in ROLES:
                if role == "control" and not Path(control).is_dir():
                    continue  # the control stage was skipped
                task.run(models[role], task_cfg(task), ds, eval_dirs[role] / task.name, data_dir, progress, role)
        return fn

    def downstream_d(task):
        def fn():
            task.run(student, task_cfg(task), ds, eval_dirs[D_ROLE] / task.name, data_dir, progress, "student",
                     soft_from=eval_dirs["teacher"] / task.name)
        return fn

    def curve():
        from .curve import run_curve

        return run_curve(Path(distill_cfg.output_dir), models, eval_dirs, lay, distill_cfg,
                         task_cfg(tasks["glue"]), ds, data_dir, tables_dir, progress)

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

        write_tables([(role, str(folder)) for role, folder in eval_dirs.items() if folder.is_dir()], tables_dir,
                     overwrite=overwrite)
        write_majority(tables_dir / "glue_majority.csv", data_dir, ds.get("glue_tasks"), overwrite=overwrite)
        for role in [*eval_dirs, *lay.eval_roles("curve_")]:  # per-seed results (not the models) beside the tables
            if lay.eval_dir(role).is_dir():
                copy_results(lay.eval_dir(role), lay.copied_eval(role))

    def report():
        from .poster import write_poster
        from .report import write_report

        _write_summary(summary, stages, results, t_all)  # the report reads the wall times from it
        summary["report"] = str(write_report(tables_dir, report_dir, preset, overwrite=overwrite))
        summary["poster"] = [str(x) for x in write_poster(tables_dir, poster_dir, preset, overwrite=overwrite)]

    fns = {**{name: pretrain(cfg) for name, cfg in stages}, "control": control_stage,
           **{name: downstream(t) for name, t in tasks.items()},
           **{f"{name}_d": downstream_d(t) for name, t in tasks.items() if t.soft_labels},
           "mlm_eval": mlm_eval, "squad_d": squad_d, "curve": curve, "speed": speed, "tables": tables, "report": report}
    for i, name in enumerate(todo, 1):
        run_stage(i, name, fns[name])
        _carry_over(summary, earlier)
        _write_summary(summary, stages, results, t_all)
    # the models' cards (written when they were saved) with what this study measured of them
    summary["model_cards"] = [str(p) for p in write_study_cards(
        {r: cfgs[s].output_dir for r, s in (("teacher", "teacher"), ("student", "distill")) if s in cfgs},
        tables_dir, summary.get("mlm_eval"))]
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
    # a stage skipped in this call that an earlier call finished keeps that call's record (a study finished in parts)
    for name in summary.get("skipped", ()):
        if name not in times and str(before_status.get(name, "")).startswith("done") and name in before:
            times[name] = before[name]
            status[name] = (before_status[name] if before_status[name].startswith("done in")
                            else f"done in an earlier call ({earlier.get('git_sha', '?')[:12]})")
    order = {name: i for i, name in enumerate(all_stages())}
    for d in (times, status):
        ordered = sorted(d.items(), key=lambda kv: order.get(kv[0], len(order)))
        d.clear()
        d.update(ordered)
    summary["study_wall_time_s"] = round(sum(times.values()), 1)


def _speed(teacher, student, stsb_model: Path, data_dir, out_csv: Path, opts: dict, progress: bool):
    """Table 3 unless out_csv was written by a finished run of the same teacher and student."""
    from ..deploy.speed import run_speed
    from ..records import TABLE_FORMAT

    meta = out_csv.with_suffix(".json")
    if out_csv.is_file() and meta.is_file():
        prev = _read_json(meta)
        same = lambda a, b: bool(a) and Path(a).resolve() == Path(b).resolve()  # noqa: E731
        # written after the models were saved (a fresh clone has the committed CSV but newly trained models)
        # (the model card, README.md, is rewritten after every study: it is not the model)
        models = [f for d in (teacher, student) if Path(d).is_dir() for f in Path(d).iterdir()
                  if f.is_file() and f.name != "README.md"]
        newer = all(meta.stat().st_mtime > f.stat().st_mtime for f in models)
        typed = prev.get("format") == TABLE_FORMAT  # a table written before the typed records is timed again
        if "wall_time_s" in prev and typed and newer and same(prev.get("teacher"), teacher) and \
                same(prev.get("student"), student):
            return "already finished"
    stsb = str(stsb_model) if (stsb_model / "config.json").is_file() else None
    try:
        run_speed(teacher, student, data_dir, str(out_csv), progress=progress, stsb_model=stsb, **opts)
    except FileNotFoundError as e:
        return f"not run: {e}"
    return None


def _mlm_eval(models: dict[str, str], cfg) -> dict:
    """Teacher vs student (vs control) on the same masked WikiText-2 validation blocks (see mlm_eval.py)."""
    from ..eval.mlm_eval import evaluate_mlm

    try:
        scores = evaluate_mlm(models, cfg.data_dir, "valid", cfg.block_size)
    except ValueError as e:  # e.g. the smoke sample has no validation split
        return {"not run": str(e)}
    t, s = scores["teacher"]["mlm_accuracy"], scores["student"]["mlm_accuracy"]
    scores["student_accuracy_retention_pct"] = round(100 * s / t, 1) if t else None
    return {"split": "valid", **scores}


def _control_config(cfgs: dict):
    """The control's DistillConfig: the distillation stage's (same teacher, layers, init, seed) in its own folder
    beside the student's (runs/<preset>/control)."""
    from ..config import replace

    d = cfgs["distill"]
    return replace(d, output_dir=str(Path(d.output_dir).parent / "control"), snapshot_fracs=())


def _tokens_per_s(log: Path) -> float | None:
    """The median tokens/s over a run's log lines (its distillation throughput on this machine)."""
    import statistics

    rates = [r["tokens_per_s"] for r in _read_jsonl(log) if r.get("tokens_per_s")]
    return round(statistics.median(rates), 1) if rates else None


def _read_jsonl(path: Path) -> list[dict]:
    from ..rundir import read_jsonl

    return read_jsonl(path) if path.is_file() else []


def _write_summary(summary: dict, stages, dest: Path, t_all: float) -> None:
    """Copy each finished pretraining stage's run.json / log.jsonl / summary.json to dest/<stage>/, note how
    the student loads, and write dest/reproduce.json (with git SHA, machine, wall time so far)."""
    from ..rundir import copy_atomic, run_info

    for name, cfg in stages:
        folder = "student" if name == "distill" else name
        if (Path(cfg.output_dir) / "summary.json").is_file():
            (dest / folder).mkdir(parents=True, exist_ok=True)
            for f in ("run.json", "log.jsonl", "summary.json"):
                if (Path(cfg.output_dir) / f).is_file():  # the control has no log: it never trains
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
