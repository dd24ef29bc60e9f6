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
from .presets import PRESETS, get_preset, stage_config


def _overrides(preset: str, stage: str, extra: list[str]) -> dict:
    base = stage_config(preset, stage)
    out, i = {}, 0
    while i < len(extra):
        key = extra[i]
        if not key.startswith("--") or i + 1 >= len(extra) or extra[i + 1].startswith("--"):
            raise ValueError(f"cannot read {key!r}: overrides are written --field value (e.g. --lr 1e-3)")
        name = key[2:].replace("-", "_")
        out[name] = parse_value(base, name, extra[i + 1])
        i += 2
    return out


def _run_stage(preset: str, stage: str, extra: list[str], resume: bool):
    from .distill import Trainer

    cfg = stage_config(preset, stage, **_overrides(preset, stage, extra))
    print(f"[tinydistil] {stage} ({preset}) -> {cfg.output_dir}", file=sys.stderr)
    t0 = time.time()
    folder = Trainer(cfg, resume=resume).setup().train()
    print(f"[tinydistil] {stage} done in {time.time() - t0:.0f}s: {folder}", file=sys.stderr)
    return folder


def reproduce(preset: str, extra: list[str]) -> dict:
    """Teacher (if the preset has one) then distillation; each stage resumes or is skipped when finished."""
    p = get_preset(preset)
    stages = (["teacher"] if p.teacher is not None else []) + ["distill"]
    times = {}
    for stage in stages:
        t0 = time.time()
        _run_stage(preset, stage, extra, resume=True)
        times[stage] = round(time.time() - t0, 1)
    summary = {"preset": preset, "stage_wall_time_s": times,
               "student": str(Path(p.distill.output_dir) / "model")}
    print(json.dumps(summary, indent=2))
    return summary


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
                cfg = stage_config(args.preset, stage, **_overrides(args.preset, stage, extra))
                print(stage, json.dumps(dataclasses.asdict(cfg), indent=2))
        else:
            stage = "teacher" if args.command == "pretrain-teacher" else "distill"
            _run_stage(args.preset, stage, extra, args.resume)
    except (ValueError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
