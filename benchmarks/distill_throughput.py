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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from tinydistil.data import load_corpus, make_batches, token_counts, tokenize_corpus  # noqa: E402
from tinydistil.train import TERMS, Trainer  # noqa: E402
from tinydistil.masking import mask_tokens, token_weights  # noqa: E402
from tinydistil.presets import get_preset, stage_config  # noqa: E402
from tinydistil.rundir import git_sha, machine  # noqa: E402
from tinydistil.student import init_student  # noqa: E402
from tinydistil.teacher import load_teacher, new_teacher, train_tokenizer  # noqa: E402

# the module, not the function `tinydistil.train` that shadows it on the package
td_distill = sys.modules["tinydistil.train"]

VARIANTS = {  # key -> label in the table
    "reference": "reference (length-grouped sentence batches)",
    "reference_shuffled": "reference, ungrouped batches (info)",
    "tinydistil": "tinydistil default (KL on all non-pad)",
    "restrict": "tinydistil restrict_ce_to_mask",
}
MEMORY_VARIANTS = ["reference", "tinydistil", "restrict"]  # both reference orders peak at a full-width batch
REF_MIN_LEN = 11  # the reference dataset drops sequences of <= 11 tokens (LmSeqsDataset.remove_empty_sequences)
RTOL = 1e-4


# ---------------------------------------------------------------------------------------------- setup
def default_data_dir() -> str:
    return os.environ.get("TINYDISTIL_DATA_DIR") or str(REPO.parent / "shared" / "data")


def build_teacher(args, corpus, folder: Path) -> Path:
    """Random BertForMaskedLM of the cpu preset's teacher size + WordPiece vocabulary trained on the corpus."""
    tc = get_preset("cpu").teacher
    tok = train_tokenizer(iter(corpus["text"]), tc.vocab_size, folder)
    torch.manual_seed(args.seed)
    model = new_teacher(tc, tok)
    model.save_pretrained(folder)
    tok.save_pretrained(str(folder))
    return folder


def distill_config(args, teacher_dir: Path, run_dir: Path, restrict: bool):
    extra = {"loss_chunk_size": args.loss_chunk_size} if args.loss_chunk_size else {}
    return stage_config("cpu", "distill", teacher=str(teacher_dir), data_dir=args.data_dir, output_dir=str(run_dir),
                        block_size=args.block_size, batch_size=args.batch_size, packing=True,
                        restrict_ce_to_mask=restrict, device="cpu", precision="fp32", seed=args.seed, **extra)


def make_trainer(args, teacher_dir: Path, work: Path, restrict: bool) -> Trainer:
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    trainer = Trainer(distill_config(args, teacher_dir, run_dir, restrict), progress=False).setup()
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
    return Tiny(make_trainer(args, teacher_dir, work, restrict=key == "restrict"))


# ---------------------------------------------------------------------------------------------- checks
def agreement(ref: Reference, trainer: Trainer) -> tuple[list[str], bool]:
    """Loss terms (and total-loss gradient) of both implementations on one identical padded batch."""
    pads = [int((ref.batch(i)["attention_mask"] == 0).sum()) for i in range(min(20, len(ref.order)))]
    batch = ref.batch(max(range(len(pads)), key=pads.__getitem__))  # the most padded of the first 20
    model, teacher = trainer.model, trainer.teacher
    seen = {}

    def recording_mask_tokens(*a, **k):
        seen["ids"], seen["labels"] = out = mask_tokens(*a, **k)
        return out

    lines, ok = [], True
    shape = tuple(batch["input_ids"].shape)
    n_tok = int(batch["attention_mask"].sum())
    lines.append(f"loss agreement on one padded sentence batch {shape[0]} x {shape[1]} ({n_tok} non-pad tokens), "
                 "same masked inputs, same student and teacher weights, dropout off:")
    lines.append(f"  {'objective':<22}{'term':<10}{'reference':>14}{'tinydistil':>14}{'rel diff':>11}")
    model.eval()
    saved_restrict = trainer.cfg.restrict_ce_to_mask
    td_distill.mask_tokens = recording_mask_tokens  # capture the masking loss_terms draws
    try:
        for restrict in (False, True):
            trainer.cfg.restrict_ce_to_mask = restrict
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
        td_distill.mask_tokens = mask_tokens
        trainer.cfg.restrict_ce_to_mask = saved_restrict
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
    for key in MEMORY_VARIANTS:
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
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant (after --warmup)")
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
    p.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # internal: memory worker
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.data_dir = args.data_dir or default_data_dir()
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
            teacher_note = "random init, WordPiece vocabulary trained on the corpus"
        print(f"[bench] teacher ready ({time.time() - t_start:.0f}s); measuring memory in subprocesses",
              file=sys.stderr)
        mem = measure_memory(args, teacher_dir, work)
        print(f"[bench] memory done ({time.time() - t_start:.0f}s); setting up", file=sys.stderr)

        runners = {}
        for k in VARIANTS:
            runners[k] = make_runner(k, args, teacher_dir, work, corpus, data=runners.get("reference"))
        ref, trainer = runners["reference"], runners["tinydistil"].trainer
        check_lines, ok = agreement(runners["reference_shuffled"], trainer)
        print(f"[bench] agreement {'PASS' if ok else 'FAIL'} ({time.time() - t_start:.0f}s); timing",
              file=sys.stderr)

        for k, r in runners.items():
            for i in range(args.warmup):
                r.step(i)
        tokens = dict.fromkeys(VARIANTS, 0)
        seconds = dict.fromkeys(VARIANTS, 0.0)
        per_step = {k: [] for k in VARIANTS}
        keys = list(VARIANTS)
        for s in range(args.steps):
            for k in keys[s % len(keys):] + keys[:s % len(keys)]:  # rotate the order every round
                t0 = time.perf_counter()
                n = runners[k].step(args.warmup + s)
                dt = time.perf_counter() - t0
                tokens[k] += n
                seconds[k] += dt
                per_step[k].append(dt)

        t = get_preset("cpu").teacher
        st = trainer.model.config
        n_t = sum(p.numel() for p in trainer.teacher.parameters())
        n_s = sum(p.numel() for p in trainer.model.parameters())
        shape = {}
        for k in ("reference", "reference_shuffled"):
            rows = [runners[k].batch(args.warmup + s) for s in range(args.steps)]
            pad = 1 - sum(int(b["attention_mask"].sum()) for b in rows) / sum(b["attention_mask"].numel() for b in rows)
            widths = [int(b["input_ids"].shape[1]) for b in rows]
            shape[k] = f"{min(widths)}-{max(widths)} wide, {100 * pad:.1f}% padding"
        cfg = trainer.cfg

    tps = {k: tokens[k] / seconds[k] for k in VARIANTS}
    lines = [
        "tinydistil distillation step benchmark: tinydistil vs a reference-style step (fp32, CPU)",
        f"command: {command}",
        f"git: {git_sha()}   date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"machine: {json.dumps(machine())}",
        f"load average at start (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"teacher: BertForMaskedLM {t.num_layers} layers x {t.hidden_size} (ffn {t.intermediate_size}, "
        f"{t.num_heads} heads), vocab {trainer.teacher.config.vocab_size}, {n_t / 1e6:.1f}M params, {teacher_note}",
        f"student: DistilBertForMaskedLM {st.n_layers} layers x {st.dim}, {n_s / 1e6:.1f}M params "
        "(tinydistil.student.init_student)",
        f"loss: T={cfg.temperature}, alpha_kl={cfg.alpha_kl}, alpha_mlm={cfg.alpha_mlm}, alpha_cos={cfg.alpha_cos}; "
        f"tinydistil loss_chunk_size={cfg.loss_chunk_size}; AdamW + clip {cfg.max_grad_norm} every step",
        f"data: WikiText-2 train ({len(corpus)} non-empty lines); batches of {args.batch_size} sequences",
        f"  reference: {len(ref.batches.sequences)} sentences ([CLS] line [SEP], <= {args.block_size} tokens, "
        f"> {REF_MIN_LEN} tokens) padded to the longest of the batch;",
        f"    length-grouped batches (the reference's default group_by_size; tinydistil's sentence batching): "
        f"timed ones {shape['reference']}",
        f"    ungrouped (shuffled) batches: timed ones {shape['reference_shuffled']}",
        f"  tinydistil: {len(trainer.batches.sequences)} packed blocks of {args.block_size}, no padding",
        f"timing: {args.warmup} warm-up + {args.steps} timed steps per variant, interleaved (order rotated "
        f"every round), {torch.get_num_threads()} torch thread(s)",
        "",
        *check_lines,
        "",
        f"  {'variant':<44}{'non-pad tok/s':>14}{'x ref':>8}{'s/step':>8}{'peak MB':>10}{'x ref':>8}",
    ]
    for k, label in VARIANTS.items():
        med = sorted(per_step[k])[len(per_step[k]) // 2]
        row = f"  {label:<44}{tps[k]:>14.0f}{tps[k] / tps['reference']:>8.2f}{med:>8.2f}"
        if k in mem:
            row += f"{mem[k]['increase_mb']:>10.0f}{mem[k]['increase_mb'] / mem['reference']['increase_mb']:>8.2f}"
        else:
            row += f"{'as ref':>10}"
        lines.append(row)
    m = mem["reference"]
    lines += [
        f"  s/step: median; peak MB: {m['method']}; each variant in its own process, "
        f"{args.mem_steps} step(s) on its widest batches (reference widths {mem['reference']['widths']}); "
        f"baseline RSS reference {m['baseline_mb']:.0f} MB, tinydistil {mem['tinydistil']['baseline_mb']:.0f} MB",
    ]
    speed = tps["tinydistil"] / tps["reference"]
    memr = mem["tinydistil"]["increase_mb"] / mem["reference"]["increase_mb"]
    lines += [
        "",
        f"targets at the default objective: tokens/s >= 1.5x reference: {speed:.2f}x "
        f"{'MET' if speed >= 1.5 else 'NOT MET'}; peak memory <= 0.5x reference: {memr:.2f}x "
        f"{'MET' if memr <= 0.5 else 'NOT MET'}",
        f"restrict_ce_to_mask (reported separately): {tps['restrict'] / tps['reference']:.2f}x tokens/s, "
        f"{mem['restrict']['increase_mb'] / mem['reference']['increase_mb']:.2f}x peak memory",
        f"wall time {time.time() - t_start:.0f}s",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
