"""Live training curves in TensorBoard, beside log.jsonl (which stays the record of truth).

    curves = LiveCurves.open(run_dir / "tensorboard", first_step=trainer.step + 1)   # off when tensorboard is absent
    curves.log({"step": 10, "loss": 3.2, "lr": 4e-4, "grad_norm": 1.1, "tokens_per_s": 950.0, ...})
    curves.close()

Every numeric field of a log record but the step becomes a scalar: the loss terms under "loss/<key>", the
rest (lr, grad_norm, tokens_per_s, epoch, ...) under "train/<key>", so the keys follow log.jsonl's whatever the
terms are called. In Colab: `%load_ext tensorboard` then `%tensorboard --logdir runs` (notebook 01).
"""
from __future__ import annotations

import sys
from pathlib import Path

MISSING = ("[tinydistil] tensorboard is not installed: no live curves (pip install tensorboard, or "
           "pip install 'tinydistil[tensorboard]'); log.jsonl has every term")
NOT_CURVES = ("step", "tokens", "elapsed_s")  # counters, not curves: tokens is the x-axis of tokens_per_s


class LiveCurves:
    """A TensorBoard writer that may be off (no folder asked for, or the package missing)."""

    def __init__(self, writer=None):
        self.writer = writer

    @classmethod
    def open(cls, log_dir: str | Path, first_step: int = 1, on: bool = True) -> "LiveCurves":
        """Write events to `log_dir` (on=False: an off instance). first_step > 1 (a resumed run): events an earlier
        call wrote from that update on are hidden (TensorBoard's purge_step), as truncate_log drops their lines."""
        if not on:
            return cls()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises ImportError naming TensorBoard when the package is absent
            print(MISSING, file=sys.stderr, flush=True)
            return cls()
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        return cls(SummaryWriter(str(log_dir), purge_step=first_step if first_step > 1 else None))

    @property
    def on(self) -> bool:
        return self.writer is not None

    def log(self, record: dict) -> None:
        """One log record (a log.jsonl line) at its "step"."""
        if self.writer is None:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self.writer.add_scalar(f"{'loss' if key.startswith('loss') else 'train'}/{key}", float(value), step)
        self.writer.flush()  # live: a TensorBoard tab reading the folder sees each update as it is logged

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
