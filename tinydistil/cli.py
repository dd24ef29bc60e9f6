"""Command line: python -m tinydistil COMMAND --preset NAME [--field value ...] [--resume]

    pretrain-teacher   WordPiece tokenizer + small BERT teacher with MLM (offline path)
    distill            DistilBERT student from the preset's teacher (folder or hub id)
    reproduce          every stage of the preset in order; finished stages are skipped, interrupted ones resumed

Any config field can be overridden: --lr 1e-3, --max-steps 100, --student-layers [0,3], --teacher bert-base-uncased.

Downstream evaluation (finished (task, seed) runs are skipped when run again):

    glue     --model PATH_OR_HUB_ID [--tasks cola,rte] [--data-dir DIR] [--output-dir DIR] [--seeds 3]
             [--max-train-examples N] [any FinetuneConfig field, e.g. --epochs 2 --lr 1e-4]
    imdb     --model PATH_OR_HUB_ID [--data-dir DIR] [--output-dir DIR] [FinetuneConfig fields]
    tables   --teacher runs/eval/cpu_teacher [--student runs/eval/cpu_student] [--results-dir results]
             -> table1_glue.csv, table2_downstream.csv
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from .config import parse_value
from .presets import PRESETS, get_preset, preset_configs, stage_config


def _parse_overrides(preset: str, extra: list[str]) -> tuple[dict, dict]:
    """Split `--field value` pairs into (teacher, distill) overrides: a field goes to every stage whose
    config has it, and is an error only if no stage has it."""
    p = get_preset(preset)
    stages = {"distill": p.distill, **({"teacher": p.teacher} if p.teacher is not None else {})}
    out = {"teacher": {}, "distill": {}}
    i = 0
    while i < len(extra):
        key = extra[i]
        if not key.startswith("--") or i + 1 >= len(extra) or extra[i + 1].startswith("--"):
            raise ValueError(f"cannot read {key!r}: overrides are written --field value (e.g. --lr 1e-3)")
        name = key[2:].replace("-", "_")
        owners = [st for st, cfg in stages.items() if name in {f.name for f in dataclasses.fields(cfg)}]
        if not owners:
            parse_value(p.distill, name, extra[i + 1])  # raises the unknown-field error with the valid names
        for st in owners:
            out[st][name] = parse_value(stages[st], name, extra[i + 1])
        i += 2
    return out["teacher"], out["distill"]


def _run(cfg, stage: str, resume: bool):
    from .train import Trainer  # imported late: torch/transformers load only when a run starts

    print(f"[tinydistil] {stage} -> {cfg.output_dir}", file=sys.stderr)
    t0 = time.time()
    folder = Trainer(cfg, resume=resume).setup().train()
    print(f"[tinydistil] {stage} done in {time.time() - t0:.0f}s: {folder}", file=sys.stderr)
    return folder


def reproduce(preset: str, extra: list[str]) -> dict:
    """Teacher (if the preset has one) then distillation; each stage resumes or is skipped when finished.
    `--output-dir ROOT` puts the stages in ROOT/<preset>/teacher and ROOT/<preset>/student."""
    t_over, d_over = _parse_overrides(preset, extra)
    root = d_over.pop("output_dir", None)
    t_over.pop("output_dir", None)
    teacher_cfg, distill_cfg = preset_configs(preset, root=root, teacher_overrides=t_over,
                                              distill_overrides=d_over)
    times = {}
    for stage, cfg in (("teacher", teacher_cfg), ("distill", distill_cfg)):
        if cfg is None:
            continue
        t0 = time.time()
        _run(cfg, stage, resume=True)
        times[stage] = round(time.time() - t0, 1)
    summary = {"preset": preset, "stage_wall_time_s": times,
               "teacher": str(Path(teacher_cfg.output_dir) / "model") if teacher_cfg else distill_cfg.teacher,
               "student": str(Path(distill_cfg.output_dir) / "model")}
    summary["mlm_eval"] = _mlm_eval(summary["teacher"], summary["student"], distill_cfg)
    results = get_preset(preset).results_dir
    if results and root is None:
        summary["results"] = results
        collect_results(teacher_cfg, distill_cfg, Path(results), summary)
    print(json.dumps(summary, indent=2))
    return summary


def _mlm_eval(teacher: str, student: str, cfg) -> dict:
    """Teacher vs student on the same masked WikiText-2 validation blocks (see mlm_eval.py)."""
    from .mlm_eval import evaluate_mlm

    try:
        scores = evaluate_mlm({"teacher": teacher, "student": student}, cfg.data_dir, "valid", cfg.block_size)
    except ValueError as e:  # e.g. the smoke sample has no validation split
        return {"not run": str(e)}
    t, s = scores["teacher"]["mlm_accuracy"], scores["student"]["mlm_accuracy"]
    scores["student_accuracy_retention_pct"] = round(100 * s / t, 1) if t else None
    return {"split": "valid", **scores}


def collect_results(teacher_cfg, distill_cfg, dest: Path, summary: dict) -> None:
    """Copy each finished stage's run.json / log.jsonl / summary.json to `dest/<stage>/`, check that the
    student loads with DistilBertForMaskedLM.from_pretrained, and write dest/reproduce.json."""
    import shutil

    from transformers import DistilBertForMaskedLM

    from .provenance import run_info

    for stage, cfg in (("teacher", teacher_cfg), ("student", distill_cfg)):
        if cfg is None or not (Path(cfg.output_dir) / "summary.json").is_file():
            continue
        (dest / stage).mkdir(parents=True, exist_ok=True)
        for name in ("run.json", "log.jsonl", "summary.json"):
            shutil.copyfile(Path(cfg.output_dir) / name, dest / stage / name)
    student_dir = Path(distill_cfg.output_dir) / "model"
    if student_dir.is_dir():
        student = DistilBertForMaskedLM.from_pretrained(student_dir)
        summary["student_loads_with"] = "DistilBertForMaskedLM.from_pretrained"
        summary["student_layers"] = student.config.n_layers
        summary["student_parameters"] = sum(p.numel() for p in student.parameters())
    dest.mkdir(parents=True, exist_ok=True)
    info = run_info()
    info["finished"] = info.pop("started")
    (dest / "reproduce.json").write_text(json.dumps({**summary, **info}, indent=2))


FINETUNE_OPTIONS = {"glue": ("model", "tasks", "data_dir", "output_dir"),
                    "imdb": ("model", "data_dir", "output_dir"),
                    "tables": ("teacher", "student", "results_dir")}


def _options(command: str, extra: list[str]) -> tuple[dict, dict]:
    """`--name value` pairs -> (command options, FinetuneConfig overrides)."""
    from .finetune import FinetuneConfig

    opts, over, i = {}, {}, 0
    while i < len(extra):
        key = extra[i]
        if not key.startswith("--") or i + 1 >= len(extra) or extra[i + 1].startswith("--"):
            raise ValueError(f"cannot read {key!r}: options are written --name value (e.g. --model runs/cpu/student/model)")
        name = key[2:].replace("-", "_")
        if name in FINETUNE_OPTIONS[command]:
            opts[name] = extra[i + 1]
        elif command == "tables":
            raise ValueError(f"unknown option {key} for tables; use --teacher, --student, --results-dir")
        else:
            try:
                over[name] = parse_value(FinetuneConfig(), name, extra[i + 1])
            except ValueError as e:
                if not str(e).startswith("unknown"):
                    raise
                fields = ", ".join("--" + f.name.replace("_", "-") for f in dataclasses.fields(FinetuneConfig))
                raise ValueError(f"unknown option {key} for {command}; use "
                                 f"{', '.join('--' + o.replace('_', '-') for o in FINETUNE_OPTIONS[command])} "
                                 f"or a FinetuneConfig field ({fields})") from None
        i += 2
    return opts, over


def finetune_command(command: str, extra: list[str]):
    """`glue` / `imdb`: fine-tune and evaluate one model; prints the per-task summary."""
    from .config import replace
    from .finetune import FinetuneConfig

    opts, over = _options(command, extra)
    if "model" not in opts:
        raise ValueError(f"{command} needs --model PATH_OR_HUB_ID (e.g. runs/cpu/student/model or distilbert-base-uncased)")
    cfg = replace(FinetuneConfig(), **over)
    t0 = time.time()
    if command == "glue":
        from .glue import parse_tasks, run_glue

        tasks = parse_tasks(opts.get("tasks"))  # unknown names fail before anything loads
        df = run_glue(opts["model"], tasks, cfg, opts.get("output_dir"), opts.get("data_dir"))
    else:
        from .imdb import run_imdb

        df = run_imdb(opts["model"], cfg, opts.get("output_dir"), opts.get("data_dir"))
    cols = [c for c in df.columns if c not in ("reason", "data")]
    print(df[cols].to_string(index=False))
    print(f"[tinydistil] {command} done in {time.time() - t0:.0f}s", file=sys.stderr)
    return df


def tables_command(extra: list[str]):
    from .tables import write_tables

    opts, _ = _options("tables", extra)
    evals = [(role, opts[role]) for role in ("teacher", "student") if role in opts]
    if not evals:
        raise ValueError("tables needs --teacher and/or --student: evaluation folders such as runs/eval/cpu_teacher")
    for role, folder in evals:
        if not Path(folder).is_dir():
            raise ValueError(f"--{role} {folder} does not exist; run `python -m tinydistil glue --model ...` first")
    t1, t2 = write_tables(evals, opts.get("results_dir", "results"))
    print(t1.to_string(index=False))
    print(t2.to_string(index=False))
    return t1, t2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinydistil", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pretrain-teacher", "distill", "reproduce", "show-config", "glue", "imdb",
                                            "tables"])
    parser.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)} (default cpu)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command in ("glue", "imdb"):
            finetune_command(args.command, extra)
        elif args.command == "tables":
            tables_command(extra)
        elif args.command == "reproduce":
            reproduce(args.preset, extra)
        elif args.command == "show-config":
            for stage in ("teacher", "distill"):
                if stage == "teacher" and get_preset(args.preset).teacher is None:
                    continue
                over = dict(zip(("teacher", "distill"), _parse_overrides(args.preset, extra)))[stage]
                cfg = stage_config(args.preset, stage, **over)
                print(stage, json.dumps(dataclasses.asdict(cfg), indent=2))
        else:
            stage = "teacher" if args.command == "pretrain-teacher" else "distill"
            stage_config(args.preset, stage)  # clear error for a preset without this stage
            over = dict(zip(("teacher", "distill"), _parse_overrides(args.preset, extra)))[stage]
            _run(stage_config(args.preset, stage, **over), stage, args.resume)
    except (ValueError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
