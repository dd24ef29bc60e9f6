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

import dataclasses
import sys
import time
from functools import partial
from pathlib import Path

from ..eval import registry
from ..exits import raise_pending
from ..presets import get_preset, preset_stages
from .cards import write_study_cards
from .layout import Layout, copy_results, finetune_config, study_locked
from .summary import Status, carry_over, not_run, print_summary, read_json, tokens_per_s, write_summary

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
    p = get_preset(preset)
    ds = p.downstream
    resolved = {t.name: dataclasses.asdict(finetune_config(ds.get(t.name, {}), **t.finetune_defaults))
                for t in registry.downstream_tasks()}
    if "ablation_glue" in ds:
        resolved["ablation_glue"] = dataclasses.asdict(finetune_config(ds["ablation_glue"]))
    return {**resolved, **{k: v for k, v in ds.items() if k not in resolved}, "budget_min": p.budget_min}


Outcome = Status | tuple[Status, str] | None  # what a stage function returns (None: Status.DONE)


@dataclasses.dataclass
class Study:
    """One `reproduce` call: the preset's configs and folders, what an earlier call recorded, and the summary this
    call writes (reproduce.json). The stage functions below each take it and return an Outcome."""
    preset: str
    cfgs: dict  # stage -> TeacherConfig / DistillConfig (stem, teacher, distill, control)
    models: dict  # role -> model folder
    lay: Layout
    ds: dict  # the preset's downstream settings
    tasks: dict  # task name -> eval.registry Task
    summary: dict
    earlier: dict  # reproduce.json of an earlier call ({} if none)
    progress: bool
    overwrite: bool
    t_all: float = dataclasses.field(default_factory=time.time)

    @property
    def distill_cfg(self):
        return self.cfgs["distill"]

    @property
    def data_dir(self):
        return self.distill_cfg.data_dir  # None -> $TINYDISTIL_DATA_DIR, then the hub

    @property
    def eval_dirs(self) -> dict:
        return {r: self.lay.eval_dir(r) for r in (*ROLES, D_ROLE)}

    def task_cfg(self, task):
        return finetune_config(self.ds.get(task.name, {}), **task.finetune_defaults)

    def save(self) -> None:
        self.summary["runs_started"] = runs_started(self.cfgs)
        carry_over(self.summary, self.earlier, all_stages())
        write_summary(self.summary, list(self.cfgs.items()), self.lay.records, self.t_all)


@study_locked
def reproduce(preset: str, root: str | None = None, teacher_overrides=None, distill_overrides=None,
              skip=(), progress: bool = True, overwrite: bool = False) -> dict:
    """Run (or finish) every stage of `preset`; returns the summary also written to reproduce.json.

    root: put every run under root/<preset>/ (and tables there) instead of the preset's folders.
    skip: stage names (see STAGES) or "downstream" to stop after pretraining and distillation.
    overwrite: replace tables, report and poster files in the output folders that tinydistil did not write.
    """
    st = open_study(preset, root, teacher_overrides, distill_overrides, parse_skip(skip), progress, overwrite)
    fns = stage_functions(st)
    todo = st.summary["stages"]
    for i, name in enumerate(todo, 1):
        _say(f"stage {i}/{len(todo)}: {name}")
        _run_stage(st, name, fns[name])
        _say(f"stage {i}/{len(todo)}: {name} {st.summary['stage_status'][name]} in "
             f"{st.summary['stage_wall_time_s'][name]:.0f}s (total {(time.time() - st.t_all) / 60:.1f} min)")
        st.save()
    # the models' cards (written when they were saved) with what this study measured of them
    st.summary["model_cards"] = [str(p) for p in write_study_cards(
        {r: st.cfgs[s].output_dir for r, s in (("teacher", "teacher"), ("student", "distill")) if s in st.cfgs},
        st.lay.tables_dir, st.summary.get("mlm_eval"))]
    st.summary["total_wall_time_s"] = round(time.time() - st.t_all, 1)
    _main_job_time(st.summary)
    st.save()
    print_summary(st.summary, st.lay.tables_dir)
    return st.summary


def open_study(preset, root, teacher_overrides, distill_overrides, skip: set, progress, overwrite) -> Study:
    """The Study of one call: configs and folders, the stages to run, the earlier call's record, the matmul probe."""
    from ..runtime import host_speed

    p = get_preset(preset)
    stages = preset_stages(preset, root=root, teacher_overrides=teacher_overrides,
                           distill_overrides=distill_overrides)
    cfgs = dict(stages)
    cfgs["control"] = _control_config(cfgs)
    d = cfgs["distill"]
    models = {"teacher": str(Path(cfgs["teacher"].output_dir) / "model") if "teacher" in cfgs else d.teacher,
              "student": str(Path(d.output_dir) / "model"), "control": str(Path(cfgs["control"].output_dir) / "model")}
    lay = Layout(preset, root)
    todo = [s for s in all_stages() if s not in skip and (s in cfgs or s not in PRETRAIN_STAGES)]
    summary = {"preset": preset, "budget_min": p.budget_min, "stage_budget_min": dict(p.stage_budget_min),
               "outside_budget": list(p.outside_budget),
               "stages": todo, "skipped": sorted(skip), **models,
               "eval_dirs": {r: str(lay.eval_dir(r)) for r in (*ROLES, D_ROLE)}, "tables_dir": str(lay.tables_dir),
               "stage_wall_time_s": {}, "stage_status": {}, "stage_note": {}}
    earlier, here = read_json(lay.records / "reproduce.json"), runs_started(cfgs)
    summary["from_scratch"] = not here  # no run of this study on disk yet: this call may be the whole main job
    if earlier and not describes_these_runs(earlier, here):
        # e.g. a fresh clone: the committed record is another machine's study, not of runs on this disk
        _say(f"{lay.records / 'reproduce.json'} records runs that are not on this disk: this call keeps none of it")
        earlier = {}
    st = Study(preset, cfgs, models, lay, p.downstream, {t.name: t for t in registry.downstream_tasks()}, summary,
               earlier, progress, overwrite)
    _say("measuring this machine's matmul rate (the yardstick for every wall time of the study)")
    # the study's yardstick is the machine its stages were measured on: a later call that finds them finished keeps
    # the first call's probe (its own goes to host_speed_this_call)
    summary["host_speed_this_call"] = host_speed()
    summary["host_speed"] = st.earlier.get("host_speed") or summary["host_speed_this_call"]
    return st


def _main_job_time(summary: dict) -> None:
    """main_job_call_s: the wall time of the main job (every stage but Preset.outside_budget) when this call ran all
    of it from scratch, uninterrupted: what the budget is about. A later call (`make curve`) keeps the first's."""
    outside = set(summary.get("outside_budget") or ())
    if summary.get("from_scratch") and set(summary.get("skipped") or ()) <= outside:
        ran_outside = sum(v for k, v in summary["stage_wall_time_s"].items() if k in outside)
        summary["main_job_call_s"] = round(summary["total_wall_time_s"] - ran_outside, 1)


def runs_started(cfgs: dict) -> dict:
    """stage -> the "started" stamp of its run folder's run.json (kept when a call resumes it), for the runs on disk."""
    stamps = {name: read_json(Path(cfg.output_dir) / "run.json").get("started") for name, cfg in cfgs.items()}
    return {name: s for name, s in stamps.items() if s}


def describes_these_runs(earlier: dict, here: dict) -> bool:
    """True when an earlier call's reproduce.json is a record of the runs on this disk (`here`: runs_started): some run
    it names is here with the same start stamp and none differs. A record older than the stamps counts when any run
    is here. Nothing on disk (a fresh clone beside a committed record): False."""
    if not here:
        return False
    recorded = earlier.get("runs_started")
    if recorded is None:
        return True
    common = recorded.keys() & here.keys()
    return bool(common) and all(recorded[k] == here[k] for k in common)


def stage_functions(st: Study) -> dict:
    """stage name -> a function of no arguments running it on `st` (the order is all_stages())."""
    fns = {name: partial(_pretrain, st, name) for name in PRETRAIN_STAGES if name in st.cfgs}
    fns.update(control=partial(_control, st), mlm_eval=partial(_mlm_eval_stage, st))
    for name, task in st.tasks.items():
        fns[name] = partial(_downstream, st, task)
        if task.soft_labels:
            fns[f"{name}_d"] = partial(_downstream_d, st, task)
    fns.update(squad_d=partial(_squad_d, st), curve=partial(_curve, st), speed=partial(_speed_stage, st),
               tables=partial(_tables, st), report=partial(_report, st))
    return fns


def _seed_globs(st: Study) -> dict:
    """fine-tuning stage -> [(role, glob of its per-seed result files in that role's eval folder)]."""
    return {**{t.name: [(r, f"{t.name}/{t.seed_glob}") for r in ROLES] for t in st.tasks.values()},
            **{f"{t.name}_d": [(D_ROLE, f"{t.name}/{t.seed_glob}")] for t in st.tasks.values() if t.soft_labels},
            "squad_d": [("student", "squad_d/seed*.json")]}


def _seed_runs(st: Study, name: str) -> tuple[int, float]:
    """(finished (task, seed) runs of a fine-tuning stage, the sum of their recorded wall times)."""
    files = [f for role, pattern in _seed_globs(st).get(name, []) for f in st.lay.eval_dir(role).glob(pattern)]
    return len(files), sum(float(read_json(f).get("wall_time_s", 0.0)) for f in files)


def _run_stage(st: Study, name: str, fn) -> None:
    """Run one stage and record its status, note and wall time in st.summary."""
    raise_pending()
    t0 = time.time()
    before = _seed_runs(st, name)[0]
    out = fn()
    status, note = out if isinstance(out, tuple) else (out or Status.DONE, "")
    after, seconds = _seed_runs(st, name)
    if out is None and name in _seed_globs(st) and after and after == before:
        status = Status.FINISHED  # every (task, seed) was done before this call
        st.summary.setdefault("seed_wall_time_s", {})[name] = round(seconds, 1)
    st.summary["stage_wall_time_s"][name] = round(time.time() - t0, 1)
    st.summary["stage_status"][name] = status
    st.summary["stage_note"][name] = note


# ---- the stages, in run order: each takes the Study and returns an Outcome ----------------------------------------

def _pretrain(st: Study, name: str):
    from ..train import Trainer

    cfg = st.cfgs[name]
    done = (Path(cfg.output_dir) / "summary.json").is_file()
    Trainer(cfg, resume=True, progress=st.progress).setup().train()
    if name == "distill":
        st.summary["distill_tokens_per_s"] = tokens_per_s(Path(cfg.output_dir) / "log.jsonl")
    return Status.FINISHED if done else None


def _control(st: Study):
    from ..snapshots import init_student_run

    done = (Path(st.cfgs["control"].output_dir) / "summary.json").is_file()
    init_student_run(st.cfgs["control"], progress=st.progress)
    return Status.FINISHED if done else None


def _mlm_eval_stage(st: Study):
    statuses = st.summary["stage_status"]
    # a model (re)made by this call, or by a call whose record is lost, is evaluated again
    retrained = any(statuses.get(s, Status.DONE) == Status.DONE for s in (*PRETRAIN_STAGES, "control") if s in st.cfgs)
    prev = st.earlier.get("mlm_eval", {})
    same = (st.earlier.get("teacher"), st.earlier.get("student")) == (st.models["teacher"], st.models["student"])
    if prev.get("split") and not retrained and same:
        st.summary["mlm_eval"] = prev  # the same models were evaluated by an earlier call
        return Status.FINISHED
    st.summary["mlm_eval"] = _mlm_eval({r: m for r, m in st.models.items() if Path(m).is_dir()}, st.distill_cfg)
    if "not run" in st.summary["mlm_eval"]:
        return not_run(st.summary["mlm_eval"]["not run"])


def _downstream(st: Study, task):
    for role in ROLES:
        if role == "control" and not Path(st.models["control"]).is_dir():
            continue  # the control stage was skipped
        task.run(st.models[role], st.task_cfg(task), st.ds, st.lay.eval_dir(role) / task.name, st.data_dir,
                 st.progress, role)


def _downstream_d(st: Study, task):
    task.run(st.models["student"], st.task_cfg(task), st.ds, st.lay.eval_dir(D_ROLE) / task.name, st.data_dir,
             st.progress, "student", soft_from=st.lay.eval_dir("teacher") / task.name)


def _squad_d(st: Study):
    from ..eval.squad import SQUAD_FINETUNE, SquadConfig, run_squad

    qa_teacher = st.lay.eval_dir("teacher") / "squad" / "model"
    if not (qa_teacher / "config.json").is_file():
        return not_run("no SQuAD-fine-tuned teacher (the squad stage did not run or had no data)")
    cfg = finetune_config(st.ds.get("squad", {}), **SQUAD_FINETUNE)
    run_squad(st.models["student"], cfg, SquadConfig(**st.ds.get("squad_opts", {})), str(qa_teacher),
              st.lay.eval_dir("student") / "squad_d", st.data_dir, st.progress)


def _curve(st: Study):
    from .curve import run_curve

    out = run_curve(Path(st.distill_cfg.output_dir), st.models, st.eval_dirs, st.lay, st.distill_cfg,
                    st.task_cfg(st.tasks["glue"]), st.ds, st.data_dir, st.lay.tables_dir, st.progress)
    return out


def _speed_stage(st: Study):
    return _speed(st.models["teacher"], st.models["student"], st.lay.eval_dir("student") / "glue" / "stsb" / "model",
                  st.data_dir, st.lay.tables_dir / "table3_speed.csv", st.ds.get("speed", {}), st.progress)


def _tables(st: Study):
    from .tables import write_majority, write_tables

    lay = st.lay
    write_tables([(role, str(folder)) for role, folder in st.eval_dirs.items() if folder.is_dir()], lay.tables_dir,
                 overwrite=st.overwrite)
    write_majority(lay.tables_dir / "glue_majority.csv", st.data_dir, st.ds.get("glue_tasks"), overwrite=st.overwrite)
    for role in [*st.eval_dirs, *lay.eval_roles("curve_")]:  # per-seed results (not the models) beside the tables
        if lay.eval_dir(role).is_dir():
            copy_results(lay.eval_dir(role), lay.copied_eval(role))


def _report(st: Study):
    from .poster import write_poster
    from .report import write_report

    st.save()  # the report reads the wall times from reproduce.json
    lay = st.lay
    st.summary["report"] = str(write_report(lay.tables_dir, lay.report_dir, st.preset, overwrite=st.overwrite))
    st.summary["poster"] = [str(x) for x in write_poster(lay.tables_dir, lay.poster_dir, st.preset,
                                                          overwrite=st.overwrite)]




def _speed(teacher, student, stsb_model: Path, data_dir, out_csv: Path, opts: dict, progress: bool):
    """Table 3 unless out_csv was written by a finished run of the same teacher and student."""
    from ..deploy.speed import run_speed
    from ..records import TABLE_FORMAT

    meta = out_csv.with_suffix(".json")
    if out_csv.is_file() and meta.is_file():
        prev = read_json(meta)
        same = lambda a, b: bool(a) and Path(a).resolve() == Path(b).resolve()  # noqa: E731
        # written after the models were saved (a fresh clone has the committed CSV but newly trained models)
        # (the model card, README.md, is rewritten after every study: it is not the model)
        models = [f for d in (teacher, student) if Path(d).is_dir() for f in Path(d).iterdir()
                  if f.is_file() and f.name != "README.md"]
        newer = all(meta.stat().st_mtime > f.stat().st_mtime for f in models)
        typed = prev.get("format") == TABLE_FORMAT  # a table written before the typed records is timed again
        if "wall_time_s" in prev and typed and newer and same(prev.get("teacher"), teacher) and \
                same(prev.get("student"), student):
            return Status.FINISHED
    stsb = str(stsb_model) if (stsb_model / "config.json").is_file() else None
    try:
        run_speed(teacher, student, data_dir, str(out_csv), progress=progress, stsb_model=stsb, **opts)
    except FileNotFoundError as e:
        return not_run(str(e))
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


