#!/usr/bin/env python
"""GLUE fine-tuning step against the machine's own matmul rate (roofline), student and teacher sizes, one process.

    python benchmarks/finetune_throughput.py [--task mrpc] [--steps 6] [--precision fp32] [--out FILE]

Models: the cpu preset's shapes with random weights (speed does not depend on them): the teacher a
BertForSequenceClassification of all-MiniLM-L6-v2's shape (6 x 384, FFN 1536, 12 heads, vocabulary 30,522), the
student a DistilBertForSequenceClassification of 3 x 384 (what tinydistil.student.init_student makes of it). Data: the
task's train split from --data-dir (GLUE TSVs), tokenised with MiniLM's tokenizer (`finetune.tokenize`, max_seq_len
128), batches of 32 drawn as `finetune.finetune` draws them (length-grouped buckets, `group_by_length=True`, its
default), padded per batch by its collator. The step is the body of finetune()'s loop: forward under
`runtime.autocast`, backward, unscale, clip, AdamW, scheduler.

In the same run, interleaved (probe round, student step, teacher step, rotated): plain torch.matmul / bmm in the
step's precision at the GEMM shapes of the median timed batch (benchmarks/roofline.py), and each step's FLOPs counted
analytically on its padded batch (3 x the encoder's forward + the classifier head). Printed: non-pad tokens/s,
effective GFLOP/s and its fraction of the matmul rate (target >= 60 %).
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import torch  # noqa: E402

from roofline import (Encoder, MatmulProbe, cpu_lines, finetune_gemms, finetune_step_flops, forward_flops,  # noqa: E402
                      median, target_line)
from tinydistil.eval.finetune import FinetuneConfig, _batches, _collate_fn, tokenize  # noqa: E402
from tinydistil.eval.glue import TASKS, load_task  # noqa: E402
from tinydistil.rundir import git_sha, machine  # noqa: E402
from tinydistil.runtime import adamw, autocast, cpu_has_native_bf16  # noqa: E402
from tinydistil.teacher import resolve_encoder  # noqa: E402


def default_data_dir() -> str:
    return os.environ.get("TINYDISTIL_DATA_DIR") or str(REPO.parent / "shared" / "data")


def models(n_labels: int, seed: int):
    """{"student": DistilBertForSequenceClassification 3 x 384, "teacher": BertForSequenceClassification 6 x 384},
    random weights, plus MiniLM's tokenizer."""
    from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, DistilBertConfig,
                              DistilBertForSequenceClassification)

    enc, _ = resolve_encoder("all-MiniLM-L6-v2")
    tcfg = BertConfig.from_pretrained(enc, num_labels=n_labels)
    scfg = DistilBertConfig(vocab_size=tcfg.vocab_size, dim=tcfg.hidden_size, n_layers=3,
                            n_heads=tcfg.num_attention_heads, hidden_dim=tcfg.intermediate_size,
                            max_position_embeddings=tcfg.max_position_embeddings, num_labels=n_labels)
    torch.manual_seed(seed)
    return ({"student": DistilBertForSequenceClassification(scfg), "teacher": BertForSequenceClassification(tcfg)},
            AutoTokenizer.from_pretrained(enc))


class Step:
    """finetune()'s loop body for one model (its own AdamW, schedule and scaler)."""

    def __init__(self, model, tokenizer, cfg: FinetuneConfig, total: int, loop_adamw: bool = False):
        from transformers import get_linear_schedule_with_warmup

        self.model, self.cfg = model.train(), cfg
        self.device, self.precision = torch.device("cpu"), cfg.precision
        self.collate = _collate_fn(model, tokenizer, self.device)
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        # loop_adamw: the per-tensor AdamW of before issue 28 (timed beside today's fused one)
        self.optimizer = (torch.optim.AdamW(groups, lr=cfg.lr, foreach=False) if loop_adamw
                          else adamw(groups, lr=cfg.lr))
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, round(cfg.warmup_frac * total), total)
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)

    def __call__(self, ds, idx) -> None:
        batch = self.collate(ds, idx)
        with autocast(self.device, self.precision):
            loss = self.model(**batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError("loss not finite")
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="mrpc", help="GLUE task (registry name: cola, sst2, mrpc, stsb, rte, ...)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per model (after --warmup), one probe round each")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare-adamw", action="store_true",
                   help="also time the student with the per-tensor AdamW used before issue 28")
    p.add_argument("--out", default=None, help="also write the report to this file")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    t_start, load = time.time(), os.getloadavg()
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/finetune_throughput.py", *sys.argv[1:]])

    task = TASKS[args.task]
    data = load_task(task, args.data_dir)
    nets, tok = models(task.num_labels, args.seed)
    train = tokenize(data.train, tok, task.text_columns, args.max_seq_len)
    cfg = FinetuneConfig(batch_size=args.batch_size, max_seq_len=args.max_seq_len, precision=args.precision,
                         device="cpu", lr=1e-4)
    lengths = [len(x) for x in train["input_ids"]]
    order = _batches(len(train), lengths, cfg.batch_size, torch.Generator().manual_seed(args.seed), cfg.group_by_length)
    order = [idx for idx in order if len(idx) == cfg.batch_size][:args.warmup + args.steps]
    widths = [max(lengths[i] for i in idx) for idx in order]
    steps = {k: Step(m, tok, cfg, total=1000) for k, m in nets.items()}
    encs = {"student": Encoder.of(nets["student"].config), "teacher": Encoder.of(nets["teacher"].config)}
    if args.compare_adamw:  # a copy of the student with the per-tensor AdamW
        import copy

        steps["student_loop_adamw"] = Step(copy.deepcopy(nets["student"]), tok, cfg, total=1000, loop_adamw=True)
        encs["student_loop_adamw"] = encs["student"]
    timed_w = widths[args.warmup:]
    mid = median(timed_w) if len(timed_w) % 2 else sorted(timed_w)[len(timed_w) // 2]
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    probes = {k: MatmulProbe(*finetune_gemms(encs[k], cfg.batch_size, mid), dtype=dtype) for k in ("student", "teacher")}
    probes["student_loop_adamw"] = probes["student"]

    for i in range(args.warmup):
        for k in steps:
            steps[k](train, order[i])
    keys = list(steps)
    secs = {k: [] for k in keys}
    flops = {k: [] for k in keys}
    toks = {k: [] for k in keys}
    frac = {k: [] for k in keys}
    rates = {k: [] for k in keys}
    for s in range(args.steps):
        idx = order[args.warmup + s]
        L = widths[args.warmup + s]
        for k in keys[s % len(keys):] + keys[:s % len(keys)]:
            rates[k].append(probes[k].round())
            t0 = time.perf_counter()
            steps[k](train, idx)
            dt = time.perf_counter() - t0
            f = finetune_step_flops(encs[k], L, task.num_labels, tokens=len(idx) * L, sequences=len(idx))
            secs[k].append(dt)
            flops[k].append(f)
            toks[k].append(sum(lengths[i] for i in idx))
            frac[k].append(f / dt / 1e9 / rates[k][-1])
        print(f"[bench] step {s + 1}/{args.steps} ({time.time() - t_start:.0f}s)", file=sys.stderr)

    pad = 1 - sum(sum(t) for t in toks.values()) / sum(len(order[args.warmup + s]) * timed_w[s] * len(keys)
                                                        for s in range(args.steps))
    lines = [
        f"GLUE fine-tuning step: roofline ({args.precision}, CPU), task {task.display}",
        f"command: {command}",
        f"git: {git_sha()}   date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"machine: {machine()}",
        *cpu_lines(),
        f"load average at start (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; at end: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (the machine was shared with other jobs: ratios measured side by side are what count)",
        f"data: {task.display} train ({len(train)} examples, {data.source}), MiniLM tokenizer, max_seq_len "
        f"{args.max_seq_len}; batches of {cfg.batch_size} from finetune's length-grouped buckets (group_by_length="
        f"{cfg.group_by_length}); timed batches {min(timed_w)}-{max(timed_w)} tokens wide, {100 * pad:.1f} % padding",
        f"timing: {args.warmup} warm-up + {args.steps} timed steps per model, interleaved (a probe round before each "
        f"step, order rotated), {torch.get_num_threads()} torch thread(s)",
        "FLOPs, counted analytically per padded batch (benchmarks/roofline.py): 3 x forward (backward = 2 x forward), "
        "forward per token = layers x (8H^2 + 4HI + 4LH), L = the batch's width, + per sequence 2H^2 (pooler / "
        "pre-classifier) + 2H x labels (classifier); padding positions are computed, so they count",
    ]
    for k in ("student", "teacher"):
        e = encs[k]
        lines.append(f"  {k}: {e.layers} layers x {e.hidden} (FFN {e.intermediate}, {e.heads} heads): "
                     f"{3 * forward_flops(e, mid) / 1e6:.1f} MFLOP per token at L={mid}")
    lines += [f"matmul probe: plain torch.matmul / bmm ({args.precision}, out= preallocated) at the GEMM shapes of a "
              f"{cfg.batch_size} x {mid} batch (the median timed width), FLOP-weighted, per model", "",
              f"  {'model':<20}{'non-pad tok/s':>14}{'s/step':>8}{'GFLOP/s':>9}{'matmul GFLOP/s':>16}{'of mm':>7}"]
    for k in keys:
        tps = sum(toks[k]) / sum(secs[k])
        eff = sum(flops[k]) / sum(secs[k]) / 1e9
        lines.append(f"  {k:<20}{tps:>14.0f}{median(secs[k]):>8.3f}{eff:>9.1f}{probes[k].rate():>16.1f}"
                     f"{100 * median(frac[k]):>6.0f}%")
    lines += ["  of mm: median over steps of (the step's effective GFLOP/s / the probe round just before it)"]
    if "student_loop_adamw" in keys:
        r = (sum(toks["student"]) / sum(secs["student"])) / (sum(toks["student_loop_adamw"]) /
                                                               sum(secs["student_loop_adamw"]))
        lines += ["", "kept change (issue 28), measured in this run: AdamW with the fused kernel (runtime.adamw) instead "
                  f"of the per-tensor loop: student step {r:.2f}x tokens/s"]
    lines += ["", "targets (issue 28):"]
    for k in ("student", "teacher"):
        lines.append(target_line(f"fine-tuning {k} ({args.precision}), fraction of the matmul rate",
                                 100 * median(frac[k]), 60, " %"))
    if args.precision == "bf16" and not cpu_has_native_bf16():
        lines.append("bf16 on this CPU is emulated (no avx512_bf16 / amx_bf16): the numbers above say nothing about "
                     "a native-bf16 CPU")
    lines.append(f"wall time {time.time() - t_start:.0f}s")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
