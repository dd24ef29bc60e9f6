"""Command line: python -m tinydistil COMMAND [--preset NAME] [--field value ...] [--resume]

The training commands (pretrain-teacher, distill, reproduce, ablate) take --preset (smoke, cpu, t4, paper) and
override any config field of their stage: --lr 1e-3, --max-steps 100, --student-layers [0,3], --teacher
bert-base-uncased. The downstream commands (glue, imdb, squad) skip finished (task, seed) runs when run again;
report reads only the files under --results-dir. Every command has its own help: python -m tinydistil COMMAND --help.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from .config import current_name, parse_value, replace
from .exits import interrupted_line, os_error_line, raise_pending, signals_as_interrupts
from .presets import PRESETS, get_preset, stage_config
# the commands import what they run inside their functions (lazy, on purpose): --help loads no torch or pandas


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
        name = current_name(key[2:].replace("-", "_"))
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


def _pop_option(extra: list[str], name: str, needs: str) -> tuple[str | None, list[str]]:
    """(value of `name`, the other arguments); ValueError naming what it needs when the value is missing."""
    if name not in extra:
        return None, extra
    i = extra.index(name)
    if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
        raise ValueError(f"{name} needs {needs}")
    return extra[i + 1], extra[:i] + extra[i + 2:]


def reproduce(preset: str, extra: list[str]) -> dict:
    """Every stage of the preset (see pipeline.py); finished stages are skipped, interrupted ones resumed.
    `--output-dir ROOT` puts everything under ROOT/<preset>/; `--skip speed,squad_d` (or `downstream`) leaves
    stages out; `--overwrite` replaces their files tinydistil did not write; other `--field value` pairs override the
    pretraining configs."""
    from .study.pipeline import reproduce as run_all

    overwrite = "--overwrite" in extra
    extra = [x for x in extra if x != "--overwrite"]
    skip, extra = _pop_option(extra, "--skip", "stage names, e.g. --skip speed,squad_d (or --skip downstream)")
    t_over, d_over = _parse_overrides(preset, extra)
    root = d_over.pop("output_dir", None)
    t_over.pop("output_dir", None)
    return run_all(preset, root=root, teacher_overrides=t_over, distill_overrides=d_over, skip=skip,
                   overwrite=overwrite)


def ablate(preset: str, extra: list[str]):
    """`ablate`: the paper's Table 4 (see ablation.py). --variants no_ce,random_init picks some; --table-only
    rebuilds the table from finished variants without training; --output-dir ROOT as for reproduce; other
    --field value pairs override the distillation config of every variant."""
    from .study.ablation import run_ablation

    variants, extra = _pop_option(extra, "--variants", "names, e.g. --variants no_ce,no_cos,no_mlm,random_init")
    table_only = "--table-only" in extra
    extra = [x for x in extra if x != "--table-only"]
    if table_only and variants:
        raise ValueError("--table-only trains nothing, so --variants does not apply; drop one of the two")
    _, d_over = _parse_overrides(preset, extra)
    root = d_over.pop("output_dir", None)
    df = run_ablation(preset, root=root, variants=variants, distill_overrides=d_over, table_only=table_only)
    print(df.to_string(index=False))
    return df


FINETUNE_OPTIONS = {"glue": ("model", "tasks", "data_dir", "output_dir"),
                    "imdb": ("model", "data_dir", "output_dir"),
                    "squad": ("model", "teacher", "data_dir", "output_dir"),
                    "tables": ("teacher", "student", "output_dir", "results_dir", "data_dir", "tasks")}


def _options(command: str, extra: list[str]) -> tuple[dict, dict]:
    """`--name value` pairs -> (command options, FinetuneConfig overrides)."""
    from .eval.finetune import FinetuneConfig

    opts, over, i = {}, {}, 0
    while i < len(extra):
        key = extra[i]
        if not key.startswith("--") or i + 1 >= len(extra) or extra[i + 1].startswith("--"):
            raise ValueError(f"cannot read {key!r}: options are written --name value (e.g. --model runs/cpu/student/model)")
        name = key[2:].replace("-", "_")
        if name in FINETUNE_OPTIONS[command]:
            opts[name] = extra[i + 1]
        elif command == "squad" and (name := current_name(name, _squad_config().RENAMED)) in {
                f.name for f in dataclasses.fields(_squad_config())}:
            opts.setdefault("squad", {})[name] = parse_value(_squad_config(), name, extra[i + 1])
        elif command == "tables":
            raise ValueError(f"unknown option {key} for tables; use --teacher, --student, --output-dir, --data-dir, "
                             "--tasks")
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


def _squad_config():
    from .eval.squad import SquadConfig

    return SquadConfig()


def finetune_command(command: str, extra: list[str]):
    """`glue` / `imdb`: fine-tune and evaluate one model; prints the per-task summary."""
    from .eval.finetune import FinetuneConfig

    opts, over = _options(command, extra)
    if "model" not in opts:
        raise ValueError(f"{command} needs --model PATH_OR_HUB_ID (e.g. runs/cpu/student/model or distilbert-base-uncased)")
    from .eval.squad import SQUAD_FINETUNE

    base = FinetuneConfig(**SQUAD_FINETUNE) if command == "squad" else FinetuneConfig()
    cfg = replace(base, **over)
    t0 = time.time()
    if command == "squad":
        from .eval.squad import run_squad

        opts_squad = dataclasses.replace(_squad_config(), **opts.get("squad", {}))
        df = run_squad(opts["model"], cfg, opts_squad, opts.get("teacher"), opts.get("output_dir"),
                       opts.get("data_dir"))
    elif command == "glue":
        from .eval.glue import parse_tasks, run_glue

        tasks = parse_tasks(opts.get("tasks"))  # unknown names fail before anything loads
        df = run_glue(opts["model"], tasks, cfg, opts.get("output_dir"), opts.get("data_dir"))
    else:
        from .eval.imdb import run_imdb

        df = run_imdb(opts["model"], cfg, opts.get("output_dir"), opts.get("data_dir"))
    cols = [c for c in df.columns if c not in ("reason", "data")]
    print(df[cols].to_string(index=False))
    print(f"[tinydistil] {command} done in {time.time() - t0:.0f}s", file=sys.stderr)
    # a task asked for by name (glue --tasks, imdb, squad) that could not run is an error; `reproduce` says "not run"
    missing = [f"{r.get('display', command)} not run: {r['reason']}" for r in df.to_dict("records")
               if r.get("reason") and not r.get("seeds_run") and (command != "glue" or "tasks" in opts)]
    if missing:
        raise ValueError("; ".join(missing) + " (add the missing file, or pass --data-dir to the folder that has it)")
    return df


def tables_command(extra: list[str]):
    from .study.tables import refuse_foreign_tables, write_majority, write_tables

    overwrite = "--overwrite" in extra
    opts, _ = _options("tables", [x for x in extra if x != "--overwrite"])
    evals = [(role, opts[role]) for role in ("teacher", "student") if role in opts]
    if not evals:
        raise ValueError("tables needs --teacher and/or --student: evaluation folders such as runs/eval/cpu_teacher")
    for role, folder in evals:
        if not Path(folder).is_dir():
            raise ValueError(f"--{role} {folder} does not exist; run `python -m tinydistil glue --model ...` first")
    out = Path(opts.get("output_dir") or opts.get("results_dir", "results"))
    refuse_foreign_tables([out / f for f in ("table1_glue.csv", "table2_downstream.csv", "glue_majority.csv")
                           if f != "glue_majority.csv" or "data_dir" in opts], overwrite)  # before any is written
    t1, t2 = write_tables(evals, out, overwrite=overwrite)
    print(t1.to_string(index=False))
    print(t2.to_string(index=False))
    if "data_dir" in opts:  # the majority-class baseline needs the GLUE data itself
        print(write_majority(out / "glue_majority.csv", opts["data_dir"], opts.get("tasks"),
                             overwrite=overwrite).to_string(index=False))
    return t1, t2


def speed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="teacher model folder, e.g. runs/cpu/teacher/model")
    p.add_argument("--student", required=True, help="student model folder, e.g. runs/cpu/student/model")
    p.add_argument("--data-dir", help="folder with glue/STS-B/dev.tsv (default $TINYDISTIL_DATA_DIR, then the hub)")
    p.add_argument("--max-examples", type=int, help="time only the first N dev pairs (smoke runs)")
    p.add_argument("--repeats", type=int, default=3, help="full passes; the median is reported")
    p.add_argument("--stsb-model", help="the student fine-tuned on STS-B: deployed forms report Pearson change")
    p.add_argument("--output-dir", default="results", help="folder for table3_speed.csv (+ .json provenance)")
    p.add_argument("--out", help=argparse.SUPPRESS)  # the CSV path itself (earlier name; --output-dir is the one)
    p.add_argument("--no-reference-archs", action="store_true", help="skip the BERT-base / DistilBERT architectures")
    p.add_argument("--no-deployed", action="store_true", help="skip PyTorch int8 / ONNX Runtime forms")
    p.add_argument("--overwrite", action="store_true", help="replace a table3_speed.csv tinydistil did not write")


def speed_command(a: argparse.Namespace):
    """`speed`: Table 3 (params, disk, STS-B dev CPU time at batch size 1) -> CSV + JSON provenance."""
    from .deploy.speed import run_speed

    a.out = a.out or str(Path(a.output_dir) / "table3_speed.csv")
    try:
        df = run_speed(a.teacher, a.student, a.data_dir, a.out, a.max_examples, a.repeats,
                       include_reference_archs=not a.no_reference_archs, deployed_forms=not a.no_deployed,
                       stsb_model=a.stsb_model, overwrite=a.overwrite)
    except (FileNotFoundError, FileExistsError) as e:
        raise ValueError(str(e)) from None
    print(df.drop(columns=["note", "run_id"]).to_string(index=False))
    print(f"[tinydistil] wrote {a.out} and {Path(a.out).with_suffix('.json')}", file=sys.stderr)
    return df


def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder written by save_pretrained")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--int8", action="store_true", help="ONNX Runtime dynamic int8 quantisation of the weights")
    p.add_argument("--output-dir", help="folder for model.onnx (or model_int8.onnx) and the tokenizer files "
                                         "(default MODEL/onnx)")
    p.add_argument("--output", help=argparse.SUPPRESS)  # earlier name: a folder or a path ending in .onnx
    p.add_argument("--overwrite", action="store_true", help="replace an existing .onnx file")
    p.add_argument("--push-to-hub", metavar="REPO", help="instead of ONNX: the folder with its README.md card to hub repo REPO")


def export_command(a: argparse.Namespace):
    """`export`: a model folder -> ONNX (+ tokenizer files), checked against PyTorch."""
    from .deploy.export import FP32_ATOL, check_export, export_onnx

    if a.push_to_hub:  # the model folder (weights, tokenizer, model card) to the hub in one commit
        from .deploy.hub import push_to_hub
        return print(f"pushed {a.model} to {a.push_to_hub}: {push_to_hub(a.model, a.push_to_hub)}")
    try:
        path = export_onnx(a.model, a.output or a.output_dir, int8=a.int8, overwrite=a.overwrite)
    except (FileNotFoundError, FileExistsError) as e:
        raise ValueError(str(e)) from None
    diff = check_export(a.model, path)
    tol = f" (tolerance {FP32_ATOL:g})" if not a.int8 else " (int8 weights: not exact)"
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); max |onnxruntime - pytorch| = {diff:.2e}{tol}")
    if not a.int8 and diff > FP32_ATOL:
        raise ValueError(f"ONNX outputs differ from PyTorch by {diff:.2e} > {FP32_ATOL:g}; do not use {path}")
    return path


def report_command(preset: str, extra: list[str]) -> tuple:
    """`report`: report/report.md + figures and the poster, from the files in --results-dir."""
    from .study.poster import write_poster
    from .study.report import write_report

    names = {"results_dir": "results", "output_dir": ".", "report_dir": None, "poster_dir": None}
    overwrite = "--overwrite" in extra
    extra = [x for x in extra if x != "--overwrite"]
    opts, i = dict(names), 0
    while i < len(extra):
        name = extra[i][2:].replace("-", "_") if extra[i].startswith("--") else ""
        if name not in names or i + 1 >= len(extra):
            raise ValueError(f"cannot read {extra[i]!r}: report takes --results-dir DIR, --output-dir DIR, "
                             "--overwrite (and --preset NAME)")
        opts[name] = extra[i + 1]
        i += 2
    # --output-dir DIR: DIR/report and DIR/poster; --report-dir / --poster-dir (earlier names) place each one
    opts["report_dir"] = opts["report_dir"] or str(Path(opts["output_dir"]) / "report")
    opts["poster_dir"] = opts["poster_dir"] or str(Path(opts["output_dir"]) / "poster")
    try:
        md = write_report(opts["results_dir"], opts["report_dir"], preset, overwrite=overwrite)
        pdf, png = write_poster(opts["results_dir"], opts["poster_dir"], preset, overwrite=overwrite)
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    for path in (md, pdf, png):
        print(path)
    return md, pdf, png


PRESET_HELP = f"one of {', '.join(PRESETS)} (default cpu)"
OVERRIDES = ("Any config field of the stage can be overridden: --lr 1e-3, --max-steps 100, --student-layers [0,2,5], "
             "--teacher bert-base-uncased, --output-dir DIR (python -m tinydistil show-config --preset NAME lists them).")
FINETUNE_HELP = ("Options: --model PATH_OR_HUB_ID, --data-dir DIR, --output-dir DIR{extra}, and any FinetuneConfig "
                 "field (--seeds 3, --epochs 3, --lr 5e-5, --max-train-examples N, --max-seq-len 128, ...). "
                 "Finished (task, seed) runs are skipped when run again.")
# name -> (one-line help, description, takes --preset, takes --resume, argument builder)
COMMANDS = {
    "pretrain-teacher": ("the teacher's masked LM (cpu: continue all-MiniLM-L6-v2 with a fresh MLM head)",
                         "Train the preset's teacher stage: continue masked-LM training from an encoder "
                         "(--init-from; the cpu preset: all-MiniLM-L6-v2) or train a small BERT from scratch. "
                         + OVERRIDES, True, True, None),
    "distill": ("distil the preset's teacher into a half-depth DistilBERT student",
                "Distil the preset's teacher (a folder or hub id with an MLM head) into a DistilBERT student "
                "initialised from every other teacher layer, with the triple loss. " + OVERRIDES, True, True, None),
    "reproduce": ("every stage of the preset in order, skipping finished ones",
                  "Teacher, distillation, held-out MLM, GLUE / IMDb / SQuAD of teacher and student, SQuAD (D), "
                  "Table 3, tables, report and poster; finished stages are skipped, interrupted ones resumed. "
                  "--skip speed,squad_d (or --skip downstream) leaves stages out; --output-dir ROOT puts "
                  "everything under ROOT/<preset>/ (--overwrite: replace files tinydistil did not write). " + OVERRIDES,
                  True, True, None),
    "ablate": ("the paper's Table 4 (after reproduce)",
               "Distil again without L_ce / L_cos / L_mlm, from random init and from the teacher's first layers, "
               "fine-tune each on GLUE -> results/table4_ablation.csv. --variants no_ce,random_init picks some; "
               "--table-only rebuilds the table from finished variants without training.", True, True, None),
    "show-config": ("print the resolved configs of the preset's stages; runs nothing",
                    "Print every stage's config of the preset (with overrides applied) and its downstream "
                    "settings. " + OVERRIDES, True, False, None),
    "glue": ("fine-tune and score one model on GLUE", FINETUNE_HELP.format(extra=", --tasks cola,rte"),
             False, False, None),
    "imdb": ("fine-tune one model on IMDb (epoch selected on dev), score on test", FINETUNE_HELP.format(extra=""),
             False, False, None),
    "squad": ("fine-tune one model on SQuAD v1.1; with --teacher: DistilBERT (D)",
              FINETUNE_HELP.format(extra=", --teacher SQUAD_FINETUNED_DIR (DistilBERT (D)), SquadConfig fields "
                                         "(--doc-stride 128, --max-eval-examples 500)"), False, False, None),
    "tables": ("Tables 1-2 from evaluation folders",
               "--teacher runs/eval/cpu_teacher [--student runs/eval/cpu_student] [--output-dir results] -> "
               "table1_glue.csv, table2_downstream.csv; with --data-dir DIR [--tasks cola,sst2,...] also "
               "glue_majority.csv (each GLUE task's majority-class baseline); --overwrite replaces tables there that "
               "tinydistil did not write", False, False, None),
    "speed": ("Table 3: size and CPU inference time", "Parameters, size on disk and STS-B dev CPU time at batch "
              "size 1 of the BERT-base / DistilBERT architectures, the teacher, the student and its int8 / ONNX "
              "Runtime forms.", False, False, speed_args),
    "export": ("a model folder -> ONNX (fp32 or int8)", "Export a model folder to ONNX (checked against PyTorch).",
               False, False, export_args),
    "report": ("report/report.md and the poster from results/",
               "Write the report and the poster from the files under --results-dir (DIR, default results) to "
               "--output-dir DIR (default .: report/ and poster/ there); --overwrite to replace files tinydistil "
               "did not write. "
               "--preset names the results layout.", True, False, None),
}


def show_downstream(preset: str) -> None:
    from .study.pipeline import downstream_settings

    print("downstream", json.dumps(downstream_settings(preset), indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tinydistil", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (short, desc, preset, resume, build) in COMMANDS.items():
        sp = sub.add_parser(name, help=short, description=desc)
        if preset:
            sp.add_argument("--preset", default="cpu", help=PRESET_HELP)
        if resume:
            sp.add_argument("--resume", action="store_true", help="continue the run in --output-dir" + (
                "" if name in ("pretrain-teacher", "distill") else " (this command always does)"))
        if build:
            build(sp)
    return parser


@signals_as_interrupts()  # SIGTERM / SIGHUP stop a command as Ctrl-C does: one line, exit 128 + N
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if COMMANDS[args.command][4] is not None and extra:  # commands with a fixed set of options
        parser.parse_args(argv)  # argparse's own "unrecognized arguments" message, exit 2
    args.preset = getattr(args, "preset", "cpu")
    args.resume = getattr(args, "resume", False)
    try:
        if args.command in ("glue", "imdb", "squad"):
            finetune_command(args.command, extra)
        elif args.command == "tables":
            tables_command(extra)
        elif args.command == "report":
            report_command(args.preset, extra)
        elif args.command == "speed":
            speed_command(args)
        elif args.command == "export":
            export_command(args)
        elif args.command == "reproduce":
            reproduce(args.preset, extra)
        elif args.command == "ablate":
            ablate(args.preset, extra)
        elif args.command == "show-config":
            for stage in ("teacher", "distill"):
                if stage == "teacher" and get_preset(args.preset).teacher is None:
                    continue
                over = dict(zip(("teacher", "distill"), _parse_overrides(args.preset, extra)))[stage]
                cfg = stage_config(args.preset, stage, **over)
                print(stage, json.dumps(dataclasses.asdict(cfg), indent=2))
            show_downstream(args.preset)
        else:
            stage = "teacher" if args.command == "pretrain-teacher" else "distill"
            stage_config(args.preset, stage)  # clear error for a preset without this stage
            over = dict(zip(("teacher", "distill"), _parse_overrides(args.preset, extra)))[stage]
            _run(stage_config(args.preset, stage, **over), stage, args.resume)
        raise_pending()  # a signal swallowed after the last check: the command says it was stopped
    except (ValueError, FloatingPointError, OSError, KeyboardInterrupt) as e:
        if os.environ.get("TINYDISTIL_DEBUG") == "1":
            raise
        if isinstance(e, KeyboardInterrupt):  # Ctrl-C, or SIGTERM / SIGHUP turned into one
            line, code = interrupted_line(e)
        elif isinstance(e, OSError):  # disk full, read-only folder, a file where a folder should be, ...
            line, code = f"error: {os_error_line(e)} (TINYDISTIL_DEBUG=1 shows the traceback)", 3
        else:
            line, code = f"error: {e}", 2
        print(line, file=sys.stderr)
        return code
    return 0
