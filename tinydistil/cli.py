"""Command line: python -m tinydistil COMMAND --preset NAME [--field value ...] [--resume]

    pretrain-teacher   WordPiece tokenizer + small BERT teacher with MLM (offline path)
    distill            DistilBERT student from the preset's teacher (folder or hub id)
    reproduce          every stage of the preset in order; finished stages are skipped, interrupted ones resumed

Any config field can be overridden: --lr 1e-3, --max-steps 100, --student-layers [0,3], --teacher bert-base-uncased.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinydistil", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pretrain-teacher", "distill", "reproduce", "show-config"])
    parser.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)} (default cpu)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "reproduce":
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
