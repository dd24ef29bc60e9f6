"""The same distillation run twice, once with tinydistil's loop and once with Hugging Face `Trainer` +
`DistilTrainer`, on the same masked batches, seed and settings; the two loss curves must agree.

    agreement = trainer_vs_loop(stage_config("smoke", "distill", teacher="runs/smoke/teacher/model"), "runs/cmp")
    agreement.ok, agreement.frame()      # per update: each term from both runs; agreement.json in the folder

What is the same: the student (init_student of the teacher, same seed), every masked batch (recorded from the
loop and fed to Trainer in order, one micro-batch per dataloader item), AdamW (Trainer's "adamw_torch": torch's
AdamW, as the loop), lr schedule (linear, the loop's warm-up steps), gradient clipping, accumulation, precision.
Dropout is off in both (the teacher is copied with dropout 0, which the student inherits): dropout masks are
drawn from each framework's own RNG stream, and with them the curves would differ by that noise only.

Tolerance: |loop - trainer| <= ATOL + RTOL * |loop| for every term and the gradient norm at every update, and
|loop - trainer| <= RTOL * |loop| for the lr (logged unrounded; the loop logs it after its scheduler step, i.e.
the next update's, so Trainer's is shifted by one update to match).
On CPU in fp32 the two runs do the same float operations in the same order, so they agree to the rounding of
log.jsonl (5 decimals; grad norm 4): ATOL 1e-4, RTOL 1e-4. In fp16 / bf16 on a GPU, kernels need not be
deterministic: pass a wider rtol there (the notebook uses 2e-2 on a GPU).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .losses import TERMS as LOSS_TERMS, active_terms

RTOL, ATOL = 1e-4, 1e-4
# term (DistilLoss's name) -> key in DistilTrainer's logs (loss_<term>); the loop logs loss_<term> too (train.TERMS)
HF_KEYS = {"total": "loss_total", **{t.key: f"loss_{t.key}" for t in LOSS_TERMS}, "lr": "learning_rate",
           "grad_norm": "grad_norm"}


@dataclass
class Agreement:
    steps: list[int]
    loop: dict[str, list[float]]  # term -> value per update, from the loop's log.jsonl
    trainer: dict[str, list[float]]  # the same from Trainer's log history
    rtol: float = RTOL
    atol: float = ATOL
    folders: dict = field(default_factory=dict)  # "loop", "trainer": the two run folders

    def worst(self) -> dict[str, float]:
        """Per term, the largest |loop - trainer| / (atol + rtol |loop|) over updates: <= 1 is within tolerance."""
        def atol(k):  # the lr is logged unrounded: relative only (an absolute 1e-4 would hide any lr of 1e-4)
            return 1e-12 if k == "lr" else self.atol
        return {k: max((abs(a - b) / (atol(k) + self.rtol * abs(a)) for a, b in zip(self.loop[k], self.trainer[k])),
                       default=0.0) for k in self.loop}

    @property
    def ok(self) -> bool:
        return len(self.steps) > 0 and all(len(self.trainer[k]) == len(self.steps) for k in self.loop) \
            and all(v <= 1.0 for v in self.worst().values())

    def frame(self):
        import pandas as pd

        cols = {"step": self.steps}
        for k in self.loop:
            cols[f"{k} (loop)"], cols[f"{k} (Trainer)"] = self.loop[k], self.trainer[k]
        return pd.DataFrame(cols)

    def summary(self) -> str:
        w = self.worst()
        return (f"{'agree' if self.ok else 'DIFFER'} over {len(self.steps)} updates (|loop - Trainer| <= "
                f"{self.atol:g} + {self.rtol:g}·|loop|); worst fraction of the tolerance used: "
                + ", ".join(f"{k} {v:.2f}" for k, v in w.items()))


def no_dropout_copy(teacher: str, folder: str | Path) -> str:
    """Save `teacher` (folder or hub id) with its dropout set to 0 in `folder` (kept when already there)."""
    from .teacher import load_teacher

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        model, tokenizer = load_teacher(teacher)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
            if hasattr(model.config, name):
                setattr(model.config, name, 0.0)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)


def _loop_trainer_class():
    from .train import Trainer

    class Recording(Trainer):
        """tinydistil's loop, keeping every masked micro-batch it trains on (on the CPU)."""

        recorded: list

        def mask_batch(self, batch):
            ids, labels, am = super().mask_batch(batch)
            self.recorded.append({"input_ids": ids.cpu(), "labels": labels.cpu(), "attention_mask": am.cpu()})
            return ids, labels, am

    return Recording


def training_arguments(cfg, output_dir: str | Path, total_steps: int, **overrides):
    """transformers.TrainingArguments doing what tinydistil's loop does with `cfg` for `total_steps` updates."""
    from transformers import TrainingArguments

    from .runtime import resolve_runtime

    device, precision = resolve_runtime(cfg.device, cfg.precision)
    report = "none"
    if cfg.tensorboard:
        import importlib.util

        report = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    args = dict(output_dir=str(output_dir), per_device_train_batch_size=cfg.batch_size,
                gradient_accumulation_steps=cfg.grad_accum, max_steps=total_steps, learning_rate=cfg.lr,
                adam_beta1=cfg.betas[0], adam_beta2=cfg.betas[1], adam_epsilon=cfg.eps, weight_decay=cfg.weight_decay,
                optim="adamw_torch", lr_scheduler_type="linear", warmup_steps=round(cfg.warmup_frac * total_steps),
                max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, fp16=precision == "fp16", bf16=precision == "bf16",
                use_cpu=device.type == "cpu", logging_steps=cfg.log_every, save_strategy="no", report_to=report,
                dataloader_pin_memory=False)
    return TrainingArguments(**{**args, **overrides})


def _first(items):
    return items[0]  # each dataset item is one whole micro-batch already


def trainer_vs_loop(cfg, out_dir: str | Path, rtol: float = RTOL, atol: float = ATOL,
                    progress: bool = False) -> Agreement:
    """Distil cfg.teacher into a student with tinydistil's loop and with Trainer (see the module docstring);
    returns the Agreement, also written to out_dir/agreement.json. A folder holding a finished comparison is
    read back, not trained again; any other non-empty folder is refused."""
    from . import config as C
    from .losses import DistilLoss
    from .student import init_student
    from .hf_trainer import DistilTrainer
    from .teacher import load_teacher

    out = Path(out_dir)
    done = out / "agreement.json"
    if done.is_file():
        return Agreement(**{**json.loads(done.read_text()), "rtol": rtol, "atol": atol})
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no finished comparison; choose another folder")
    if not isinstance(cfg, C.DistillConfig):
        raise ValueError("trainer_vs_loop needs a DistillConfig (stage_config(preset, 'distill', ...))")
    teacher_dir = no_dropout_copy(cfg.teacher, out / "teacher_no_dropout")
    cfg = C.replace(cfg, teacher=teacher_dir, output_dir=str(out / "loop"), log_every=1)

    loop = _loop_trainer_class()(cfg, progress=progress).setup()
    loop.recorded = []
    loop.train()
    rows = [json.loads(x) for x in (out / "loop" / "log.jsonl").read_text().splitlines() if x.strip()]
    # the loop's log keys of the total and each term of the objective (an optional term at weight 0 left out)
    loop_keys = {"total": "loss", **{t.key: f"loss_{t.key}" for t in active_terms(C.to_dict(cfg))},
                 "lr": "lr", "grad_norm": "grad_norm"}

    teacher, _ = load_teacher(teacher_dir)
    student = init_student(teacher, cfg.student_layers, cfg.student_init, seed=cfg.seed)  # as the loop's setup
    hf = DistilTrainer(model=student, teacher=teacher, distil_loss=DistilLoss.from_config(cfg),
                       args=training_arguments(cfg, out / "trainer", loop.total_steps, per_device_train_batch_size=1,
                                               train_sampling_strategy="sequential", remove_unused_columns=False,
                                               disable_tqdm=not progress),
                       train_dataset=loop.recorded, data_collator=_first)
    hf.train()
    logs = [r for r in hf.state.log_history if "loss_total" in r]
    # Trainer logs the lr its update used; the loop the one after its scheduler step (the next update's)
    lrs = [r["learning_rate"] for r in logs[1:]] + [hf.lr_scheduler.get_last_lr()[0]]
    logs = [{**r, "learning_rate": lr} for r, lr in zip(logs, lrs)]
    agreement = Agreement(steps=[r["step"] for r in rows],
                          loop={k: [float(r[v]) for r in rows] for k, v in loop_keys.items()},
                          trainer={k: [float(r[HF_KEYS[k]]) for r in logs] for k in loop_keys},
                          rtol=rtol, atol=atol, folders={"loop": str(out / "loop"), "trainer": str(out / "trainer")})
    if [r["step"] for r in logs] != agreement.steps:
        raise RuntimeError(f"Trainer logged updates {[r['step'] for r in logs]}, the loop {agreement.steps}")
    done.write_text(json.dumps(asdict(agreement), indent=1))
    return agreement
