"""A study's record across calls: reproduce.json (what each stage did, as a Status, and its wall time, carried over
from the call that measured it when a later call finds the stage finished or skips it) and the summary printed at the
end of `reproduce`."""
from __future__ import annotations

import json
import statistics
import time
from enum import Enum
from pathlib import Path

from ..rundir import copy_atomic, read_jsonl, run_info


class Status(str, Enum):
    """What a stage did, as reproduce.json's "stage_status" records it; the why or the where is in "stage_note"."""
    DONE = "done"  # ran (or finished) in this call; its wall time is this call's
    FINISHED = "already finished"  # found finished by this call, no earlier measurement of its time
    DONE_EARLIER = "done in an earlier call"  # its wall time is that call's (stage_note: that call's git SHA)
    DONE_IN_PARTS = "done in earlier calls"  # its wall time is the sum of its per-seed runs' recorded wall times
    NOT_RUN = "not run"  # stage_note says why (no data, no snapshots, ...)

    @classmethod
    def read(cls, text) -> tuple["Status", str]:
        """(status, note) of a stage_status value; a reproduce.json written before the enum held the note in the
        text ("done in an earlier call (87d02d757714)", "not run: no data"), so the known prefix is kept."""
        for st in sorted(cls, key=lambda m: -len(m.value)):
            if str(text).startswith(st.value):
                return st, str(text)[len(st.value):].strip(" :()")
        return cls.NOT_RUN, str(text)

    def __str__(self) -> str:  # the text, in messages and f-strings alike (a str Enum shows its name otherwise)
        return self.value

    __format__ = str.__format__


def not_run(why: str) -> tuple[Status, str]:
    """A stage's outcome when it could not run, with the reason the report shows."""
    return Status.NOT_RUN, why


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# what a stage writes into reproduce.json besides its time and status (the report reads them)
STAGE_OUTPUTS = {"distill": ("distill_tokens_per_s",), "mlm_eval": ("mlm_eval",), "report": ("report", "poster")}
# what a call records of itself that later calls of the same study keep (pipeline._main_job_time)
CALL_OUTPUTS = ("main_job_call_s",)


def carry_over(summary: dict, earlier: dict, stage_order=()) -> None:
    """Stages this call found finished (or skipped, or has not reached) keep the wall time an earlier call measured
    for them, so that `study_wall_time_s` (the sum over stages) is what the whole study took, across interruptions
    and parts; and a
    stage's outputs (STAGE_OUTPUTS) this call did not write are kept from the earlier call (a call that skips
    mlm_eval must not drop the held-out accuracies the report states)."""
    for keys in (*STAGE_OUTPUTS.values(), CALL_OUTPUTS):
        for key in keys:
            if key not in summary and key in earlier:
                summary[key] = earlier[key]
    times, status, notes = summary["stage_wall_time_s"], summary["stage_status"], summary.setdefault("stage_note", {})
    before, seeds = earlier.get("stage_wall_time_s", {}), summary.get("seed_wall_time_s", {})

    def measured_earlier(name: str) -> tuple[Status, str] | None:
        """(status, note) to record for a stage the earlier call measured; None when it did not."""
        was, note = Status.read(earlier.get("stage_status", {}).get(name, ""))
        if name not in before or was in (Status.NOT_RUN, Status.FINISHED):
            return None
        if was is Status.DONE:
            return Status.DONE_EARLIER, earlier.get("git_sha", "?")[:12]
        return was, earlier.get("stage_note", {}).get(name) or note

    for name in times:
        if status[name] != Status.FINISHED:
            continue
        rec = measured_earlier(name)
        if seeds.get(name, 0) > (before[name] if rec else 0):  # a fine-tuning stage cannot take less than its runs
            times[name], status[name], notes[name] = seeds[name], Status.DONE_IN_PARTS, "its per-seed runs' wall times"
        elif rec:
            times[name] = before[name]
            status[name], notes[name] = rec
    # a stage this call skips, or has not reached yet, keeps the record of the call that measured it (a study
    # finished in parts, or stopped before a stage it would have found finished)
    for name in before:
        if name not in times and (rec := measured_earlier(name)):
            times[name] = before[name]
            status[name], notes[name] = rec
    order = {name: i for i, name in enumerate(stage_order)}  # the records in run order
    for d in (times, status, notes):
        ordered = sorted(d.items(), key=lambda kv: order.get(kv[0], len(order)))
        d.clear()
        d.update(ordered)
    summary["study_wall_time_s"] = round(sum(times.values()), 1)


def tokens_per_s(log: Path) -> float | None:
    """The median tokens/s over a run's log lines (its distillation throughput on this machine)."""
    rates = [r["tokens_per_s"] for r in _read_jsonl(log) if r.get("tokens_per_s")]
    return round(statistics.median(rates), 1) if rates else None


def _read_jsonl(path: Path) -> list[dict]:
    return read_jsonl(path) if path.is_file() else []


def write_summary(summary: dict, stages, dest: Path, t_all: float) -> None:
    """Copy each finished pretraining stage's run.json / log.jsonl / summary.json to dest/<stage>/, note how
    the student loads, and write dest/reproduce.json (with git SHA, machine, wall time so far)."""
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


def print_summary(summary: dict, tables_dir: Path) -> None:
    lines = [f"reproduce --preset {summary['preset']}: {summary['total_wall_time_s'] / 60:.1f} min this call, "
             f"{summary['study_wall_time_s'] / 60:.1f} min for the whole study (sum over stages)"
             + (f"; budget {summary['budget_min']:.0f} min" if summary.get("budget_min") else "")]
    budgets, notes = summary.get("stage_budget_min") or {}, summary.get("stage_note", {})
    for name, t in summary["stage_wall_time_s"].items():
        budget = f" (budget {budgets[name]:g} min)" if name in budgets else ""
        note = f" ({notes[name]})" if notes.get(name) else ""
        lines.append(f"  {name:<9} {t:>7.0f} s{budget}  {Status(summary['stage_status'][name]).value}{note}")
    for f in ("table1_glue.csv", "table2_downstream.csv", "table3_speed.csv"):
        if (tables_dir / f).is_file():
            lines.append(f"  {f:<22} {tables_dir / f}")
    if "report" in summary:
        lines.append(f"  report                 {summary['report']}")
        lines.append(f"  poster                 {', '.join(summary['poster'])}")
    print("\n".join(lines))
