"""The training loop: MLM pretraining of a teacher, or DistilBERT distillation of a student.

    trainer = Trainer(cfg).setup()     # data, models, optimiser; resumes when asked
    trainer.train()                    # -> folder of the final model (from_pretrained-ready)

One loop serves both: a `TeacherConfig` trains a fresh BERT with the MLM loss alone, a
`DistillConfig` trains a DistilBERT student against a frozen teacher with the triple loss.
Output folder: run.json (resolved config, git commit, machine; calls that resumed it), log.jsonl (one line per log step,
every loss term), checkpoint/state.pt (everything needed to continue exactly), model/ (final
weights + tokenizer), summary.json (wall time, final losses).

Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) the same loop runs one process per device with
DistributedDataParallel. The batch order of an epoch is global: each micro-step consumes the next
`world` batches of it and rank r trains on the r-th, so an update always sees `cfg.grad_accum` batches
of `batch_size` whatever the world size (each rank accumulates `grad_accum / world` of them, gradients are
all-reduced only on the last). The data position (epoch, batches consumed of its order, global batch
count) is therefore world-independent, and a checkpoint resumes with any number of processes. Rank 0
alone writes files, logs and shows the progress bar.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from . import config as C
from . import distributed as D
from .card import write_model_card
from .curves import LiveCurves
from .data import corpus_source, load_corpus, make_batches, token_counts, tokenize_corpus
from .exits import raise_pending
from .losses import TERMS as LOSS_TERMS
from .losses import DistilLoss
from .masking import mask_micro_batch, token_weights
from .mlm import MLMParts, PartsModule, mlm_parts
from .rundir import (RunInterrupted, claim_run_folder, config_diff, record_call, run_info, save_atomic,
                     tensor_bytes, write_json_atomic)
from .runtime import adamw, autocast, cast_frozen_linears, resolve_runtime
from .snapshots import save_snapshot, snapshot_steps
from .student import init_student
from .teacher import check_tokenizer, load_teacher, resolve_encoder, teacher_to_train

# log keys of the loss terms: the weighted total and DistilLoss's terms (the reference distiller, and logs written
# before the rename, call the soft-target KL "loss_ce": config.RENAMED)
# the paper's logged keys: the total, then each term (a run with alpha_sent > 0 logs loss_sent too: log_keys)
TERMS = ("loss", *(f"loss_{t.key}" for t in LOSS_TERMS if not t.optional))


class Trainer:
    def __init__(self, cfg: C.TrainConfig, resume: bool = False, progress: bool = True):
        cfg.validate()
        self.cfg, self.resume, self.progress = cfg, resume, progress
        self.out = Path(cfg.output_dir)
        self.is_distill = isinstance(cfg, C.DistillConfig)
        self.objective = DistilLoss.from_config(cfg) if self.is_distill else DistilLoss.mlm_only()
        self.log_keys = ("loss", *(f"loss_{k}" for k in self.objective.term_keys))  # what each log line holds
        self.teacher = None
        self.step = self.epoch = self.batch_idx = self.micro = self.tokens = 0
        self.elapsed = 0.0
        self._order_epoch, self._order = -1, []
        self.rank, self.world = 0, 1  # set by setup() under torchrun
        self.accum = cfg.grad_accum  # micro-batches per update on this rank
        self._unsynced_tokens = 0  # this rank's tokens not yet summed into self.tokens
        self._ddp = None
        self._saved_step = 0  # update of the last checkpoint written or loaded
        self._lock = None  # FolderLock of the output folder, held by rank 0 while the run works
        self._curves = LiveCurves()  # TensorBoard (cfg.tensorboard), opened by train() on rank 0

    # ------------------------------------------------------------------ setup
    def setup(self) -> "Trainer":
        self._setup_device()
        self.source = self.encoder_dir = None  # a teacher prepared from an encoder: where it comes from (run.json)
        with D.main_first():  # rank 0 downloads, writes run.json, the tokenizer and the datasets caches first
            # inputs are checked before anything is written: the encoder resolved and hash-checked, the teacher loaded,
            # the corpus found
            if not self.is_distill and self.cfg.init_from:
                self.encoder_dir, self.source = resolve_encoder(self.cfg.init_from)
            self._loaded_teacher = load_teacher(self.cfg.teacher) if self.is_distill else None
            self._check_against_teacher()
            corpus = load_corpus(self.cfg.data_dir, "train", self.cfg.max_train_texts, self.cfg.corpus)
            if self.rank == 0:
                self._setup_output()
            self._setup_models(corpus)
            self._setup_data(corpus)
        self._setup_optimizer()
        ckpt = self.out / "checkpoint" / "state.pt"
        if self.resume and ckpt.exists() and not ckpt.is_file():
            raise ValueError(f"cannot resume from {ckpt}: it is not a file; move it away to restart the run")
        if self.resume and ckpt.is_file():
            self._load_checkpoint()
        if self.world > 1:
            self._ddp = torch.nn.parallel.DistributedDataParallel(
                PartsModule(self.model), device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # the vocabulary head gets no gradient when only the cosine term is on
                find_unused_parameters=self.is_distill and self.cfg.alpha_kl == self.cfg.alpha_mlm == 0)
        return self

    # fields that may differ between the calls of one run (where it runs, how often it logs, which snapshots it
    # keeps, where its curves are shown: none changes what is trained)
    RESUME_IGNORES = frozenset({"save_every", "log_every", "device", "output_dir", "data_dir", "snapshot_fracs",
                                "tensorboard"})
    PATH_FIELDS = ("teacher", "grow_from", "init_from", "vocab_from", "data_dir")  # compared as resolved paths when local

    def config_diff(self, saved: dict) -> list[str]:
        """Fields of a saved config (run.json / checkpoint; earlier field names read as the current ones) that
        differ from this run's, paths resolved."""
        return config_diff(json.loads(json.dumps(C.to_dict(self.cfg))), C.current_names(saved), self.RESUME_IGNORES,
                           self.PATH_FIELDS, json.loads(json.dumps(C.to_dict(type(self.cfg)()))))

    def _setup_output(self) -> None:
        extra = {"teacher_source": self.source} if self.source else {}
        # what "auto" and an unset data_dir resolved to on this machine
        extra.update(data=corpus_source(self.cfg.data_dir, self.cfg.corpus), device=str(self.device),
                     precision=self.precision)
        record = {"config": json.loads(json.dumps(C.to_dict(self.cfg))), **run_info(), **extra}
        self._lock = claim_run_folder(self.out, self.resume, record, self.config_diff)

    def _check_against_teacher(self) -> None:
        """What can only be checked against the teacher, before anything is written: positions vs block_size,
        student layers vs the teacher's depth."""
        if self._loaded_teacher is None:
            return
        tcfg = self._loaded_teacher[0].config
        if tcfg.model_type == "distilbert":  # before its depth is looked at: name what it is
            raise ValueError(f"--teacher {self.cfg.teacher} is a DistilBERT student (a distilled model); a teacher "
                             "must be a BERT masked LM: the model/ folder written by `python -m tinydistil "
                             "pretrain-teacher` or a hub id such as bert-base-uncased")
        positions = getattr(tcfg, "max_position_embeddings", None)
        if positions is not None and self.cfg.block_size > positions:
            raise ValueError(f"block_size {self.cfg.block_size} exceeds the teacher's {positions} position "
                             f"embeddings; use --block-size {positions} or less")
        layers, n = self.cfg.student_layers, getattr(tcfg, "num_hidden_layers", None)
        if layers is not None and n is not None and max(layers) >= n:
            raise ValueError(f"student_layers {layers}: the teacher has layers 0..{n - 1} only")

    def _setup_device(self) -> None:
        self.device, self.precision = resolve_runtime(self.cfg.device, self.cfg.precision)
        if D.env_world_size() > 1:
            world = D.env_world_size()
            if self.cfg.grad_accum % world:
                raise ValueError(
                    f"tokens_per_update {self.cfg.tokens_per_update} = {self.cfg.grad_accum} batches of "
                    f"{self.cfg.batch_size} x {self.cfg.block_size} tokens per update, which {world} processes "
                    f"cannot share equally; make tokens_per_update / (batch_size * block_size) a multiple of "
                    f"{world} (e.g. --tokens-per-update "
                    f"{-(-self.cfg.grad_accum // world) * world * self.cfg.batch_size * self.cfg.block_size})")
            D.init(self.device.type)
            self.rank, self.world = D.rank(), D.world_size()
            self.accum = self.cfg.grad_accum // self.world
            if self.device.type == "cuda":
                self.device = torch.device("cuda", D.local_rank())
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")

    def _setup_models(self, corpus) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        if self.is_distill:
            teacher, self.tokenizer = self._loaded_teacher
            self._loaded_teacher = None
            self.teacher = teacher.to(self.device).eval().requires_grad_(False)
            self.model = init_student(teacher, cfg.student_layers, cfg.student_init, seed=cfg.seed)
            cast_frozen_linears(self.teacher, self.precision)  # bf16: the frozen teacher's weights cast once
        else:
            self.model, self.tokenizer = teacher_to_train(cfg, iter(corpus["text"]), self.out / "tokenizer",
                                                          self.encoder_dir)
        check_tokenizer(self.model, self.tokenizer)
        self.model.to(self.device)

    def _setup_data(self, corpus) -> None:
        cfg, tok = self.cfg, self.tokenizer
        tokenized = tokenize_corpus(corpus, tok, cfg.block_size, cfg.packing)
        self.batches = make_batches(tokenized, cfg.batch_size, tok.pad_token_id, cfg.seed, cfg.packing,
                                    on_disk=cfg.corpus != "wikitext2")
        vocab = self.model.config.vocab_size
        self.mask_weights = token_weights(token_counts(self.batches, vocab), cfg.mlm_smoothing,
                                          sorted(set(tok.all_special_ids) | set(range(len(tok), vocab))))
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(self.batches) / cfg.grad_accum))

    def _setup_optimizer(self) -> None:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.optimizer = adamw(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)  # fused kernel
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, round(cfg.warmup_frac * self.total_steps), self.total_steps)

    # ------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Run until `total_steps` updates; returns the folder of the final model."""
        final = self.out / "model"
        if (self.out / "summary.json").is_file() and final.is_dir():
            self.release()
            return final  # finished earlier
        if self.resume and self.rank == 0:
            record_call(self.out, self.step, C.current_names)
        self._curves = LiveCurves.open(self.out / "tensorboard", self.step + 1, self.rank == 0 and self.cfg.tensorboard)
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress or self.rank != 0,
                   desc="distil" if self.is_distill else "teacher MLM", unit="upd")
        try:
            return self._train(bar, final)
        except KeyboardInterrupt:
            ckpt = self._checkpoint_step()
            raise RunInterrupted(f"interrupted at update {self.step} of {self.total_steps}; "
                                 + (f"the last checkpoint (update {ckpt}) in {self.out} is kept: run the same "
                                    "command with --resume to continue from it" if ckpt else
                                    f"no checkpoint yet in {self.out}: run the same command with --resume to "
                                    "start it again")) from None
        finally:
            bar.close()  # before any error line reaches the console
            self.release()

    def release(self) -> None:
        """Let other processes work in the output folder (train() does this when it ends, however it ends)."""
        self._curves.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _checkpoint_step(self) -> int:
        """The update of the checkpoint on disk (0: none), from the step this process saved last."""
        return self._saved_step if (self.out / "checkpoint" / "state.pt").is_file() else 0

    def _train(self, bar, final: Path) -> Path:
        # one function on purpose (~70 lines): the loop is read top to bottom, as nanoGPT's
        cfg = self.cfg
        window = dict.fromkeys(self.log_keys, 0.0)
        window_micro, window_tokens, t_start = 0, 0, time.time()
        last = {}
        snaps = snapshot_steps(getattr(cfg, "snapshot_fracs", ()), self.total_steps)  # {update: fraction}
        while self.step < self.total_steps:
            raise_pending()
            self.model.train()
            if self.world > 1:  # dropout: a stream per (rank, update), so a resumed run repeats it exactly
                torch.manual_seed((cfg.seed * 1_000_003 + self.step) * 1009 + self.rank)
            for i in range(self.accum):
                batch = self._next_batch()
                # gradients are all-reduced on the last micro-batch of the update only
                sync = self._ddp is None or i == self.accum - 1
                with contextlib.nullcontext() if sync else self._ddp.no_sync():
                    with autocast(self.device, self.precision):
                        terms = self.loss_terms(batch)
                    self.scaler.scale(terms["loss"] / self.accum).backward()
                for k in self.log_keys:
                    window[k] += terms[k].detach()  # stays on the device: no sync per micro-batch
                window_micro += 1
                n_tok = int(batch["attention_mask"].sum())
                window_tokens += n_tok
                self._unsynced_tokens += n_tok
            if self.precision != "fp16" and not bool(torch.isfinite(window["loss"])):  # one sync per update
                ckpt = self._checkpoint_step()
                keep = (f"the last checkpoint (update {ckpt}) in {self.out} is intact, continue from it with --resume"
                        if ckpt else "no checkpoint was written yet; start again with other settings")
                raise FloatingPointError(f"the loss became {float(window['loss'])} at update {self.step + 1}: lower --lr "
                                         f"or use --precision fp32; {keep}")
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                dt = time.time() - t_start
                self.elapsed += dt
                # sums over all ranks (identity on one process): the log describes the global update
                tot = D.all_reduce_sum({**window, "micro": window_micro, "tokens": window_tokens,
                                        "new_tokens": self._unsynced_tokens}, self.device)
                self.tokens += int(tot["new_tokens"])
                self._unsynced_tokens = 0
                last = {"step": self.step, "epoch": round(self.epoch + self.batch_idx / len(self.batches), 4),
                        "lr": self.scheduler.get_last_lr()[0], "grad_norm": round(grad_norm, 4),
                        **{k: round(tot[k] / tot["micro"], 5) for k in self.log_keys},
                        "tokens": self.tokens, "tokens_per_s": round(tot["tokens"] / max(dt, 1e-9), 1),
                        "elapsed_s": round(self.elapsed, 1)}
                if self.rank == 0:
                    with open(self.out / "log.jsonl", "a") as f:
                        f.write(json.dumps(last) + "\n")
                    self._curves.log(last)
                bar.set_postfix({k.replace("loss_", ""): last[k] for k in self.log_keys} | {"tok/s": last["tokens_per_s"]})
                window = dict.fromkeys(self.log_keys, 0.0)
                window_micro, window_tokens, t_start = 0, 0, time.time()
            if self.step % cfg.save_every == 0 or self.step == self.total_steps:
                self.save_checkpoint()
            if self.step in snaps and self.rank == 0:  # a copy of the student for the tokens curve (snapshots.py)
                save_snapshot(self.model, self.tokenizer, self.out, {"update": self.step, "fraction": snaps[self.step],
                              "tokens": self.tokens + self._unsynced_tokens, "total_updates": self.total_steps})
        bar.close()
        if self.rank == 0:
            self.save_final(final, last)
        D.barrier()  # no rank returns before the model folder exists
        return final

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mask the batch (seeded by the global micro-batch index) and return every loss term.

        batch: input_ids, attention_mask (B, L) on CPU. Terms are float32 scalars under the log keys (log_keys):
        "loss" the weighted total, "loss_kl" the soft-target KL, "loss_mlm", "loss_cos". Without a teacher only
        the MLM term is active.
        """
        ids, labels, am = self.mask_batch(batch)
        s = mlm_parts(self.model, ids, am) if self._ddp is None else MLMParts(*self._ddp(ids, am))
        t = None
        if self.teacher is not None:
            with torch.inference_mode():
                t = mlm_parts(self.teacher, ids, am)
            # out of inference mode (autograd may save them); the weights are parameters already
            t = t._replace(hidden=t.hidden.clone(), feats=t.feats.clone())
        terms = self.objective(s, labels, am, t)
        return {"loss": terms["total"], **{f"loss_{k}": v for k, v in terms.items() if k != "total"}}

    def mask_batch(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, labels, attention_mask) (B, L) on the device: this micro-batch masked (mask_micro_batch)."""
        return mask_micro_batch(batch, self.mask_weights, self.tokenizer.mask_token_id, self.cfg,  # self.micro counts
                                self.micro - (self.world - 1 - self.rank), self.device)  # global batches: this rank's

    def _next_batch(self) -> dict[str, torch.Tensor]:
        """This rank's batch of the next micro-step: the global order advances by `world` batches and
        rank r reads the r-th of them (only that one is materialised)."""
        mine = [self._next_index() for _ in range(self.world)][self.rank]
        return self.batches.get(mine)

    def _next_index(self) -> torch.Tensor:
        if self._order_epoch != self.epoch:
            self._order, self._order_epoch = self.batches.order(self.epoch), self.epoch
        if self.batch_idx >= len(self._order):
            self.epoch, self.batch_idx = self.epoch + 1, 0
            return self._next_index()
        idx = self._order[self.batch_idx]
        self.batch_idx += 1
        self.micro += 1
        return idx

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write checkpoint/state.pt atomically (a crash mid-write leaves the previous one intact).

        Every rank takes part (token counts are summed), rank 0 alone writes. The position is global:
        `batch_idx` batches of size `batch_size` consumed from epoch `epoch`'s order, `micro` in total,
        so a run resumes with any number of processes."""
        if self._unsynced_tokens or self.world > 1:
            self.tokens += int(D.all_reduce_sum({"t": self._unsynced_tokens}, self.device)["t"])
            self._unsynced_tokens = 0
        folder = self.out / "checkpoint"
        if self.rank != 0:
            return folder / "state.pt"
        folder.mkdir(exist_ok=True)
        state = {
            "config": json.loads(json.dumps(C.to_dict(self.cfg))),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "position": {"step": self.step, "epoch": self.epoch, "batch_idx": self.batch_idx,
                         "micro": self.micro, "tokens": self.tokens, "elapsed": self.elapsed,
                         "world_size": self.world},  # world_size: information only
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }
        save_atomic(lambda tmp: torch.save(state, tmp), folder / "state.pt", tensor_bytes(state))
        self._saved_step = self.step
        return folder / "state.pt"

    def _load_checkpoint(self) -> None:
        path = self.out / "checkpoint" / "state.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            diff = self.config_diff(state["config"])
        except Exception as e:  # truncated or empty file, not a checkpoint
            first = (str(e).splitlines() or [""])[0][:200]
            raise ValueError(f"cannot resume from {path}: {type(e).__name__}: {first}; move that file away to "
                             "restart the run, or choose another --output-dir") from None
        if diff:
            raise ValueError(f"cannot resume from {path}: it belongs to a run with other settings ({', '.join(diff)}); "
                             "move that file away to restart the run, or choose another --output-dir")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            pos = state["position"]
        except Exception as e:  # other model, other optimizer layout, ...
            first = (str(e).splitlines() or [""])[0][:200]
            raise ValueError(f"cannot resume from {path}: {type(e).__name__}: {first}; "
                             "move that file away to restart the run, or choose another --output-dir") from None
        self._saved_step = pos["step"]
        self.step, self.epoch, self.batch_idx = pos["step"], pos["epoch"], pos["batch_idx"]
        self.micro, self.tokens, self.elapsed = pos["micro"], pos["tokens"], pos["elapsed"]
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def save_final(self, folder: Path, last: dict) -> None:
        """model/ (weights, tokenizer, card) and summary.json, which marks the run finished."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        summary = {"steps": self.step, "tokens": self.tokens, "train_wall_time_s": round(self.elapsed, 1),
                   "final_log": last, "model_dir": str(folder),
                   "parameters": sum(p.numel() for p in self.model.parameters())}
        write_model_card(self.out, summary)  # model/README.md: complete before summary.json marks the run finished
        write_json_atomic(self.out / "summary.json", summary)


def pretrain_teacher(cfg: C.TeacherConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train a WordPiece tokenizer and a small BERT with MLM; returns the teacher folder."""
    if not isinstance(cfg, C.TeacherConfig):
        raise ValueError("pretrain_teacher needs a TeacherConfig")
    return Trainer(cfg, resume, progress).setup().train()


def distill(cfg: C.DistillConfig, resume: bool = False, progress: bool = True) -> Path:
    """Distil cfg.teacher into a half-depth DistilBERT; returns the student folder."""
    if not isinstance(cfg, C.DistillConfig):
        raise ValueError("distill needs a DistillConfig")
    return Trainer(cfg, resume, progress).setup().train()
