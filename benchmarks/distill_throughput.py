#!/usr/bin/env python
"""Distillation step: tinydistil against a reference-style step, same data, same model sizes, one process.

    python benchmarks/distill_throughput.py [--steps 8] [--batch-size 32] [--block-size 128]
                                            [--data-dir DIR] [--teacher FOLDER] [--out FILE]

Reference step (written here, after the original DistilBERT distiller's `step()`): one WikiText line per
sequence ([CLS] line [SEP], truncated to --block-size, lines of <= 11 tokens dropped as in the reference
dataset), padded to the longest sequence of the batch (length-grouped batches, the reference's default;
an ungrouped, shuffled order is timed too, for information), full-vocabulary logits of student and teacher
at every position, masked_select copies of the selected rows, KLDivLoss(batchmean) at temperature T times
T^2, CrossEntropyLoss on the logits of all positions, CosineEmbeddingLoss on masked_select'ed final hidden
states, fp32.

tinydistil step: `Trainer.loss_terms` of a real `Trainer` (cpu preset distillation config, packed blocks
of --block-size, chunked fused KL+CE), then backward, gradient clipping and the optimiser step exactly as
in `Trainer.train`, once per micro-batch (the reference step also updates once per micro-batch here).

It checks that both compute the same loss terms (and gradient) on one identical padded batch, then times
all variants interleaved (non-pad tokens per second) and measures the peak RSS of each one in its own
process (VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS after setup).
Teacher: a randomly initialised BertForMaskedLM of the cpu preset's teacher size with a WordPiece
vocabulary trained on the corpus (or --teacher FOLDER); the speed does not depend on the weight values.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import gc
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from roofline import (Encoder, MatmulProbe, cpu_lines, describe_distill, distill_gemms,  # noqa: E402
                      distill_step_flops, median, target_line)
from tinydistil.data import load_corpus, make_batches, token_counts, tokenize_corpus  # noqa: E402
from tinydistil.chunked_loss import auto_chunk_rows  # noqa: E402
from tinydistil.train import TERMS, Trainer  # noqa: E402
from tinydistil.masking import mask_tokens, token_weights  # noqa: E402
from tinydistil.presets import stage_config  # noqa: E402
from tinydistil.rundir import git_sha, machine  # noqa: E402
from tinydistil.student import init_student  # noqa: E402
from tinydistil.teacher import load_teacher, resolve_encoder  # noqa: E402

# the module, not the function `tinydistil.train` that shadows it on the package

VARIANTS = {  # key -> label in the table
    "reference": "reference (length-grouped sentence batches)",
    "reference_shuffled": "reference, ungrouped batches (info)",
    "tinydistil": "tinydistil default (KL on all non-pad)",
    "previous": "tinydistil before issue 28 (its chunked loss)",
    "eager": "tinydistil, eager loss (fused_loss off)",
    "restrict": "tinydistil restrict_ce_to_mask",
}
DEFAULT_VARIANTS = "reference,tinydistil,previous,eager"
MEMORY_VARIANTS = ["reference", "tinydistil", "restrict"]  # both reference orders peak at a full-width batch
# the commit before issue 28's changes: its losses.py (loop allocating per chunk, ~8 MiB chunks: 68 rows at
# V=30,522) is timed as "previous", side by side with today's
PREVIOUS = "3ebbd21"
REF_MIN_LEN = 11  # the reference dataset drops sequences of <= 11 tokens (LmSeqsDataset.remove_empty_sequences)
RTOL = 1e-4


# ---------------------------------------------------------------------------------------------- setup
def default_data_dir() -> str:
    return os.environ.get("TINYDISTIL_DATA_DIR") or str(REPO.parent / "shared" / "data")


def build_teacher(args, corpus, folder: Path) -> Path:
    """Random BertForMaskedLM of the cpu preset's teacher shape (all-MiniLM-L6-v2: 6 x 384, FFN 1536, 12 heads,
    vocabulary 30,522) with that model's WordPiece tokenizer, both from its pinned package (no weights used)."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    enc, _ = resolve_encoder("all-MiniLM-L6-v2")
    cfg = BertConfig.from_pretrained(enc)
    torch.manual_seed(args.seed)
    BertForMaskedLM(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(enc).save_pretrained(str(folder))
    return folder


def previous_loss_module():
    """tinydistil/losses.py as of PREVIOUS (git show), imported as a module; None where git cannot show it."""
    import types

    try:
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{PREVIOUS}:tinydistil/losses.py"], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType("tinydistil._losses_previous")
    mod.__package__ = "tinydistil"
    sys.modules[mod.__name__] = mod  # dataclasses look their module up there
    exec(compile(src, f"{PREVIOUS}:tinydistil/losses.py", "exec"), mod.__dict__)
    return mod


def distill_config(args, teacher_dir: Path, run_dir: Path, restrict: bool, chunk: int | None = None,
                   fused_loss: str = "auto"):
    chunk = args.loss_chunk_size if chunk is None else chunk
    extra = {"loss_chunk_size": chunk} if chunk else {}
    extra["fused_loss"] = fused_loss
    return stage_config("cpu", "distill", teacher=str(teacher_dir), data_dir=args.data_dir, output_dir=str(run_dir),
                        block_size=args.block_size, batch_size=args.batch_size, packing=True,
                        restrict_ce_to_mask=restrict, device="cpu", precision="fp32", seed=args.seed, **extra)


def make_trainer(args, teacher_dir: Path, work: Path, restrict: bool, chunk: int | None = None,
                 fused_loss: str = "auto") -> Trainer:
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    trainer = Trainer(distill_config(args, teacher_dir, run_dir, restrict, chunk, fused_loss), progress=False).setup()
    trainer.model.train()
    return trainer


def full_batches(order: list[torch.Tensor], batch_size: int) -> list[torch.Tensor]:
    return [idx for idx in order if len(idx) == batch_size]


class Reference:
    """The reference distiller's step on padded sentence batches (its own student, optimiser and data)."""

    def __init__(self, args, teacher_dir: Path, corpus, grouped: bool = True, data: "Reference | None" = None):
        self.cfg = cfg = distill_config(args, teacher_dir, Path("unused"), restrict=False)
        teacher, self.tokenizer = load_teacher(str(teacher_dir))
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = init_student(teacher, seed=cfg.seed).train()
        if data is not None:  # share the tokenised sentences of another instance
            self.batches, self.mask_weights = data.batches, data.mask_weights
        else:
            tok = tokenize_corpus(corpus, self.tokenizer, args.block_size, packing=False)
            tok = tok.filter(lambda b: [len(x) > REF_MIN_LEN for x in b["input_ids"]], batched=True)
            self.batches = make_batches(tok, args.batch_size, self.tokenizer.pad_token_id, cfg.seed, packing=False)
            vocab = teacher.config.vocab_size
            specials = sorted(set(self.tokenizer.all_special_ids) | set(range(len(self.tokenizer), vocab)))
            self.mask_weights = token_weights(token_counts(self.batches, vocab), cfg.mlm_smoothing, specials)
        if grouped:  # the reference's default (--group_by_size)
            order = self.batches.order(0)
        else:
            g = torch.Generator().manual_seed(cfg.seed)
            order = list(torch.randperm(len(self.batches.sequences), generator=g).split(args.batch_size))
        self.order = full_batches(order, args.batch_size)
        params = [p for p in self.student.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
        from transformers import get_linear_schedule_with_warmup

        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, 10, 1000)
        self.ce_loss_fct = nn.KLDivLoss(reduction="batchmean")
        self.lm_loss_fct = nn.CrossEntropyLoss(ignore_index=-100)
        self.cosine_loss_fct = nn.CosineEmbeddingLoss(reduction="mean")

    def batch(self, i: int) -> dict[str, torch.Tensor]:
        return self.batches.get(self.order[i % len(self.order)])

    def loss_terms(self, student, teacher, input_ids, attention_mask, lm_labels, restrict: bool) -> dict:
        """The reference distiller's loss on (B, L) padded inputs, written as it is there."""
        cfg, T = self.cfg, self.cfg.temperature
        s_out = student(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        with torch.no_grad():
            t_out = teacher(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        s_logits, s_hidden_states = s_out.logits, s_out.hidden_states
        t_logits, t_hidden_states = t_out.logits, t_out.hidden_states
        if restrict:
            mask = (lm_labels > -1).unsqueeze(-1).expand_as(s_logits)
        else:
            mask = attention_mask.bool().unsqueeze(-1).expand_as(s_logits)
        s_logits_slct = torch.masked_select(s_logits, mask).view(-1, s_logits.size(-1))
        t_logits_slct = torch.masked_select(t_logits, mask).view(-1, s_logits.size(-1))
        loss_ce = self.ce_loss_fct(F.log_softmax(s_logits_slct / T, dim=-1),
                                   F.softmax(t_logits_slct / T, dim=-1)) * T**2
        loss = cfg.alpha_kl * loss_ce
        loss_mlm = self.lm_loss_fct(s_logits.view(-1, s_logits.size(-1)), lm_labels.view(-1))
        loss = loss + cfg.alpha_mlm * loss_mlm
        s_h, t_h = s_hidden_states[-1], t_hidden_states[-1]
        hmask = attention_mask.bool().unsqueeze(-1).expand_as(s_h)
        dim = s_h.size(-1)
        s_h_slct = torch.masked_select(s_h, hmask).view(-1, dim)
        t_h_slct = torch.masked_select(t_h, hmask).view(-1, dim)
        target = s_h_slct.new(s_h_slct.size(0)).fill_(1)
        loss_cos = self.cosine_loss_fct(s_h_slct, t_h_slct, target)
        loss = loss + cfg.alpha_cos * loss_cos
        return {"loss": loss, "loss_kl": loss_ce, "loss_mlm": loss_mlm, "loss_cos": loss_cos}  # tinydistil's log keys

    def step(self, i: int) -> int:
        cfg = self.cfg
        batch = self.batch(i)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + i)
        ids, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], self.mask_weights,
                                  self.tokenizer.mask_token_id, gen, cfg.mlm_probability, cfg.word_mask,
                                  cfg.word_keep, cfg.word_rand)
        terms = self.loss_terms(self.student, self.teacher, ids, batch["attention_mask"], labels, restrict=False)
        loss = terms["loss"]
        if (loss != loss).data.any():
            raise FloatingPointError("reference: NaN loss")
        loss.backward()
        _ = [terms[k].item() for k in TERMS]
        nn.utils.clip_grad_norm_(self.student.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()
        return int(batch["attention_mask"].sum())


class Tiny:
    """tinydistil's step: Trainer.loss_terms + the update of Trainer.train, on the trainer's packed batches."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.order = full_batches(trainer.batches.order(0), trainer.cfg.batch_size)

    def batch(self, i: int) -> dict[str, torch.Tensor]:
        return self.trainer.batches.get(self.order[i % len(self.order)])

    def step(self, i: int) -> int:
        tr = self.trainer
        batch = self.batch(i)
        tr.micro = i + 1  # what Trainer._next_batch does; seeds the masking
        terms = tr.loss_terms(batch)
        tr.scaler.scale(terms["loss"]).backward()
        _ = [terms[k].item() for k in TERMS]
        tr.scaler.unscale_(tr.optimizer)
        torch.nn.utils.clip_grad_norm_(tr.model.parameters(), tr.cfg.max_grad_norm)
        tr.scaler.step(tr.optimizer)
        tr.scaler.update()
        tr.scheduler.step()
        tr.optimizer.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())


def make_runner(key: str, args, teacher_dir: Path, work: Path, corpus, data=None):
    if key.startswith("reference"):
        return Reference(args, teacher_dir, corpus, grouped=key == "reference", data=data)
    if key.startswith("chunk"):  # chunk<N>: today's step at loss_chunk_size N
        return Tiny(make_trainer(args, teacher_dir, work, restrict=False, chunk=int(key[5:])))
    tiny = Tiny(make_trainer(args, teacher_dir, work, restrict=key == "restrict",
                             fused_loss="off" if key in ("eager", "previous") else "auto"))
    if key == "previous":
        old = previous_loss_module()
        if old is None:
            raise RuntimeError(f"variant previous needs git and commit {PREVIOUS} (git show); leave it out of --variants")
        o = tiny.trainer.objective
        tiny.trainer.objective = old.DistilLoss(temperature=o.temperature, alpha_kl=o.alpha_kl, alpha_mlm=o.alpha_mlm,
                                                alpha_cos=o.alpha_cos, kl_on_masked_only=o.kl_on_masked_only,
                                                chunk_size=o.chunk_size)
    return tiny


def label(key: str) -> str:
    return VARIANTS.get(key) or f"tinydistil, loss_chunk_size {key[5:]}"


# ---------------------------------------------------------------------------------------------- checks
def agreement(ref: Reference, trainer: Trainer) -> tuple[list[str], bool]:
    """Loss terms (and total-loss gradient) of both implementations on one identical padded batch."""
    pads = [int((ref.batch(i)["attention_mask"] == 0).sum()) for i in range(min(20, len(ref.order)))]
    batch = ref.batch(max(range(len(pads)), key=pads.__getitem__))  # the most padded of the first 20
    model, teacher = trainer.model, trainer.teacher
    seen = {}

    def recording_mask_batch(b):
        out = type(trainer).mask_batch(trainer, b)
        seen["ids"], seen["labels"] = out[0], out[1]
        return out

    lines, ok = [], True
    shape = tuple(batch["input_ids"].shape)
    n_tok = int(batch["attention_mask"].sum())
    lines.append(f"loss agreement on one padded sentence batch {shape[0]} x {shape[1]} ({n_tok} non-pad tokens), "
                 "same masked inputs, same student and teacher weights, dropout off:")
    lines.append(f"  {'objective':<22}{'term':<10}{'reference':>14}{'tinydistil':>14}{'rel diff':>11}")
    model.eval()
    saved = trainer.objective
    trainer.mask_batch = recording_mask_batch  # capture the masking loss_terms draws
    try:
        for restrict in (False, True):
            # the Trainer's objective is built once from its config: switch the objective itself
            trainer.objective = dataclasses.replace(saved, kl_on_masked_only=restrict)
            name = "restrict_ce_to_mask" if restrict else "default (all non-pad)"
            model.zero_grad(set_to_none=True)
            td = trainer.loss_terms(batch)
            td["loss"].backward()
            g_td = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            model.zero_grad(set_to_none=True)
            rf = ref.loss_terms(model, teacher, seen["ids"], batch["attention_mask"], seen["labels"], restrict)
            rf["loss"].backward()
            g_rf = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            model.zero_grad(set_to_none=True)
            for k, label in (("loss_kl", "KL"), ("loss_mlm", "MLM CE"), ("loss_cos", "cosine"), ("loss", "total")):
                a, b = rf[k].item(), td[k].item()
                rel = abs(a - b) / max(abs(a), 1e-12)
                ok &= rel <= RTOL
                lines.append(f"  {name:<22}{label:<10}{a:>14.6f}{b:>14.6f}{rel:>11.1e}")
            grel = float((g_td - g_rf).norm() / g_rf.norm())
            ok &= grel <= RTOL
            lines.append(f"  {name:<22}{'gradient':<10}{'||g_td - g_ref|| / ||g_ref|| =':>28}{grel:>11.1e}")
    finally:
        del trainer.mask_batch
        trainer.objective = saved
        model.train()
    lines.append(f"  -> {'PASS' if ok else 'FAIL'} (tolerance {RTOL:g} relative)")
    return lines, ok


# ---------------------------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_worker(args) -> None:
    """Run in a fresh process: set up one variant, reset the RSS high-water mark, run steps, print JSON."""
    work = Path(args.workdir)
    corpus = load_corpus(args.data_dir, "train")
    runner = make_runner(args.variant, args, Path(args.teacher), work, corpus)
    # the widest batches (a run's peak is reached at its widest batch); packed blocks are all full
    widths = [int(runner.batch(i)["input_ids"].shape[1]) for i in range(min(len(runner.order), 200))]
    pick = sorted(range(len(widths)), key=lambda i: -widths[i])[:args.mem_steps]
    del corpus
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed setup memory back, so the baseline is honest
    except OSError:
        pass
    baseline_kb = _status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        method = "VmHWM after writing 5 to /proc/self/clear_refs, minus VmRSS after setup"
    except OSError:
        method = "getrusage ru_maxrss (not resettable: includes setup) minus VmRSS after setup"
    for i in pick:
        runner.step(i)
    if method.startswith("VmHWM"):
        peak_kb = _status_kb("VmHWM")
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("RESULT " + json.dumps({"variant": args.variant, "baseline_mb": baseline_kb / 1024,
                                  "peak_mb": peak_kb / 1024, "increase_mb": (peak_kb - baseline_kb) / 1024,
                                  "widths": [widths[i] for i in pick], "method": method}), flush=True)


def measure_memory(args, teacher_dir: Path, work: Path) -> dict:
    out = {}
    for key in [k for k in MEMORY_VARIANTS if k in args.keys]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", key, "--teacher", str(teacher_dir),
               "--workdir", str(work), "--data-dir", args.data_dir, "--batch-size", str(args.batch_size),
               "--block-size", str(args.block_size), "--mem-steps", str(args.mem_steps),
               "--seed", str(args.seed), "--loss-chunk-size", str(args.loss_chunk_size), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not rows:
            raise RuntimeError(f"memory worker {key} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        out[key] = json.loads(rows[-1][len("RESULT "):])
    return out


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4, help="timed steps per variant (after --warmup), one probe round each")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help=f"comma-separated, from {', '.join(VARIANTS)} and chunk<N> (today's step at "
                        f"loss_chunk_size N); reference and tinydistil are always timed")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--no-probe", action="store_true", help="skip the matmul probe (no roofline lines)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per step, every variant")
    p.add_argument("--block-size", type=int, default=128, help="packed block / sentence truncation length")
    p.add_argument("--data-dir", default=None, help="folder with wikitext-2/ (default $TINYDISTIL_DATA_DIR, "
                                                     "else ../shared/data next to the repository)")
    p.add_argument("--teacher", default=None, help="existing teacher folder (default: random cpu-preset-size "
                                                   "teacher with a WordPiece vocabulary trained on the corpus)")
    p.add_argument("--mem-steps", type=int, default=2, help="steps per memory-measurement process")
    p.add_argument("--loss-chunk-size", type=int, default=0,
                   help="override tinydistil's loss_chunk_size (0: the package default, auto by vocabulary size)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default=None, help="also write the report to this file")
    p.add_argument("--variant", help=argparse.SUPPRESS)  # internal: memory worker
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.data_dir = args.data_dir or default_data_dir()
    keys = [k for k in args.variants.split(",") if k]
    args.keys = ["reference", "tinydistil"] + [k for k in keys if k not in ("reference", "tinydistil")]
    bad = [k for k in args.keys if k not in VARIANTS and not (k.startswith("chunk") and k[5:].isdigit())]
    if bad:
        p.error(f"unknown variant(s) {bad}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    if args.variant:
        memory_worker(args)
        return 0

    t_start = time.time()
    command = " ".join(shlex.quote(a) for a in ["python", os.path.relpath(__file__, REPO), *sys.argv[1:]])
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="distill-bench-") as tmp:
        work = Path(tmp)
        corpus = load_corpus(args.data_dir, "train")
        if args.teacher:
            teacher_dir, teacher_note = Path(args.teacher).resolve(), f"folder {args.teacher}"
        else:
            teacher_dir = build_teacher(args, corpus, work / "teacher")
            teacher_note = "random init, all-MiniLM-L6-v2 shape and tokenizer (pinned package)"
        print(f"[bench] teacher ready ({time.time() - t_start:.0f}s); measuring memory in subprocesses",
              file=sys.stderr)
        mem = {} if args.no_memory else measure_memory(args, teacher_dir, work)
        print(f"[bench] memory done ({time.time() - t_start:.0f}s); setting up", file=sys.stderr)

        runners = {}
        for k in args.keys:
            runners[k] = make_runner(k, args, teacher_dir, work, corpus, data=runners.get("reference"))
        ref, trainer = runners["reference"], runners["tinydistil"].trainer
        check_lines, ok = agreement(ref, trainer)
        print(f"[bench] agreement {'PASS' if ok else 'FAIL'} ({time.time() - t_start:.0f}s); timing",
              file=sys.stderr)
        t_enc, s_enc = Encoder.of(trainer.teacher.config), Encoder.of(trainer.model.config)
        vocab = trainer.model.config.vocab_size
        flops_tok = distill_step_flops(t_enc, s_enc, vocab, args.block_size)["total"]
        probe = None if args.no_probe else MatmulProbe(*distill_gemms(t_enc, s_enc, vocab, args.batch_size,
                                                                        args.block_size), dtype=torch.float32)

        for k, r in runners.items():
            for i in range(args.warmup):
                r.step(i)
        keys = list(runners)
        tokens = dict.fromkeys(keys, 0)
        seconds = dict.fromkeys(keys, 0.0)
        per_step = {k: [] for k in keys}
        frac = {k: [] for k in keys}  # per round: the step's effective rate / that round's probe rate
        probe_rates = []
        for s in range(args.steps):
            if probe is not None:
                probe_rates.append(probe.round())
            for k in keys[s % len(keys):] + keys[:s % len(keys)]:  # rotate the order every round
                t0 = time.perf_counter()
                n = runners[k].step(args.warmup + s)
                dt = time.perf_counter() - t0
                tokens[k] += n
                seconds[k] += dt
                per_step[k].append(dt)
                if probe is not None:
                    frac[k].append(n * flops_tok / dt / 1e9 / probe_rates[-1])
            print(f"[bench] round {s + 1}/{args.steps} ({time.time() - t_start:.0f}s)", file=sys.stderr)

        n_t = sum(p.numel() for p in trainer.teacher.parameters())
        n_s = sum(p.numel() for p in trainer.model.parameters())
        shape = {}
        for k in ("reference", "reference_shuffled"):
            if k not in runners:
                continue
            rows = [runners[k].batch(args.warmup + s) for s in range(args.steps)]
            pad = 1 - sum(int(b["attention_mask"].sum()) for b in rows) / sum(b["attention_mask"].numel() for b in rows)
            widths = [int(b["input_ids"].shape[1]) for b in rows]
            shape[k] = f"{min(widths)}-{max(widths)} wide, {100 * pad:.1f}% padding"
        cfg = trainer.cfg
        chunk = cfg.loss_chunk_size or auto_chunk_rows(vocab)
        tc = trainer.teacher.config

    tps = {k: tokens[k] / seconds[k] for k in keys}
    lines = [
        "tinydistil distillation step benchmark: roofline + tinydistil vs a reference-style step (fp32, CPU)",
        f"command: {command}",
        f"git: {git_sha()}   date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"machine: {json.dumps(machine())}",
        *cpu_lines(),
        f"load average at start (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; at end: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()) + (" (the machine was shared with other jobs: ratios "
                                                               "measured side by side are what count)"),
        f"teacher: BertForMaskedLM {tc.num_hidden_layers} layers x {tc.hidden_size} (ffn {tc.intermediate_size}, "
        f"{tc.num_attention_heads} heads), vocab {vocab}, {n_t / 1e6:.1f}M params, {teacher_note}",
        f"student: DistilBertForMaskedLM {s_enc.layers} layers x {s_enc.hidden}, {n_s / 1e6:.1f}M params "
        "(tinydistil.student.init_student)",
        f"loss: T={cfg.temperature}, alpha_kl={cfg.alpha_kl}, alpha_mlm={cfg.alpha_mlm}, alpha_cos={cfg.alpha_cos}; "
        f"tinydistil loss_chunk_size={cfg.loss_chunk_size} ({chunk} rows); AdamW + clip {cfg.max_grad_norm} every step",
        f"data: WikiText-2 train ({len(corpus)} non-empty lines); batches of {args.batch_size} sequences",
        f"  reference: {len(ref.batches.sequences)} sentences ([CLS] line [SEP], <= {args.block_size} tokens, "
        f"> {REF_MIN_LEN} tokens) padded to the longest of the batch;",
        f"    length-grouped batches (the reference's default group_by_size; tinydistil's sentence batching): "
        f"timed ones {shape['reference']}",
        *([f"    ungrouped (shuffled) batches: timed ones {shape['reference_shuffled']}"] if "reference_shuffled" in shape
          else []),
        f"  tinydistil: {len(trainer.batches.sequences)} packed blocks of {args.block_size}, no padding",
        f"timing: {args.warmup} warm-up + {args.steps} timed steps per variant, interleaved (order rotated "
        f"every round, one matmul-probe round before each), {torch.get_num_threads()} torch thread(s)",
        "",
        *check_lines,
        "",
        *describe_distill(t_enc, s_enc, vocab, args.block_size),
        "  (the reference computes the same products on its padded batches; its effective rate below counts the "
        "same FLOPs per non-pad token)",
    ]
    if probe is not None:
        pr = probe.rate()
        lines += [
            f"matmul probe: plain torch.matmul / bmm (fp32, out= preallocated) at the step's own shapes (batch "
            f"{args.batch_size} x {args.block_size} = {args.batch_size * args.block_size} rows; vocabulary products as "
            f"one {args.batch_size * args.block_size} x {s_enc.hidden} @ {s_enc.hidden} x {vocab}), FLOP-weighted: "
            f"{pr:.1f} GFLOP/s (per round: {', '.join(f'{x:.1f}' for x in probe_rates)})",
        ]
    lines += ["", f"  {'variant':<48}{'non-pad tok/s':>14}{'x ref':>8}{'s/step':>8}{'GFLOP/s':>9}{'of mm':>7}"
                  f"{'peak MB':>9}{'x ref':>7}"]
    for k in keys:
        med = median(per_step[k])
        eff = tps[k] * flops_tok / 1e9
        row = (f"  {label(k):<48}{tps[k]:>14.0f}{tps[k] / tps['reference']:>8.2f}{med:>8.2f}{eff:>9.1f}"
               + (f"{100 * median(frac[k]):>6.0f}%" if frac[k] else f"{'':>7}"))
        if k in mem:
            row += f"{mem[k]['increase_mb']:>9.0f}{mem[k]['increase_mb'] / mem['reference']['increase_mb']:>7.2f}"
        lines.append(row)
    if mem:
        m = mem["reference"]
        lines.append(f"  s/step: median; of mm: median over rounds of (effective GFLOP/s / that round's probe); "
                     f"peak MB: {m['method']}; each variant in its own process, {args.mem_steps} step(s) on its widest "
                     f"batches (reference widths {m['widths']}); baseline RSS reference {m['baseline_mb']:.0f} MB, "
                     f"tinydistil {mem['tinydistil']['baseline_mb']:.0f} MB")
    speed = tps["tinydistil"] / tps["reference"]
    lines += ["", "kept changes (issue 28), each measured in this run:"]
    if "previous" in tps:
        lines.append(f"  chunked KL+CE with four reused (chunk x V) buffers and {chunk}-row chunks (was: allocations per "
                     f"chunk, 68-row chunks at this vocabulary): today's step {tps['tinydistil'] / tps['previous']:.2f}x "
                     f"the previous step's tokens/s")
    if "eager" in tps:
        lines.append(f"  the fused chunk (fused_loss auto: each chunk's softmaxes, KL, CE and gradient as one "
                     f"torch.compile'd kernel): today's step {tps['tinydistil'] / tps['eager']:.2f}x the eager loss's "
                     "tokens/s")
    for k in keys:
        if k.startswith("chunk"):
            lines.append(f"  loss_chunk_size {k[5:]} instead of {chunk}: {tps[k] / tps['tinydistil']:.2f}x tokens/s")
    lines += ["", "targets (issue 28):"]
    if probe is not None:
        lines.append(target_line("fp32 step, fraction of the fp32 matmul rate", 100 * median(frac["tinydistil"]), 70,
                                 " %", note=f"{tps['tinydistil'] * flops_tok / 1e9:.1f} of {probe.rate():.1f} GFLOP/s"))
    lines.append(target_line("tokens/s vs the reference-style step (regression guard)", speed, 2.0, "x"))
    if mem:
        memr = mem["tinydistil"]["increase_mb"] / mem["reference"]["increase_mb"]
        lines.append(target_line("peak memory vs the reference-style step (regression guard)", memr, 0.5, "x",
                                 higher=False))
    lines += ["bf16 targets: not measured by this script (fp32); see bf16_throughput.py, which needs a CPU with "
              "native bf16 to mean anything",
              f"wall time {time.time() - t_start:.0f}s"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
