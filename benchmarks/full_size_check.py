"""Run the `t4` preset's code path at full BERT-base size on this machine, for a few updates.

No pretrained BERT is reachable offline, so the teacher is a randomly initialised `BertConfig()`
(bert-base-uncased's architecture: 12 layers, 768 wide, 30522 tokens) with a WordPiece vocabulary
of the same size trained on WikiText-2. This checks that shapes, the layer mapping
([0, 2, 4, 7, 9, 11]) and the loop hold at full size; loss values mean nothing here.

    python benchmarks/full_size_check.py --data-dir ../shared/data --out results/t4_full_size_check.txt
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM

from tinydistil.data import load_corpus
from tinydistil.train import Trainer
from tinydistil.presets import stage_config
from tinydistil.rundir import git_sha, machine
from tinydistil.student import default_student_layers
from tinydistil.teacher import train_tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines = [f"git {git_sha()}", f"machine {json.dumps(machine())}"]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = load_corpus(args.data_dir, "train")
        tok = train_tokenizer(iter(corpus["text"]), 30522, Path(tmp) / "teacher")
        torch.manual_seed(0)
        teacher = BertForMaskedLM(BertConfig(vocab_size=30522))
        teacher.save_pretrained(Path(tmp) / "teacher")
        cfg = stage_config("t4", "distill", teacher=str(Path(tmp) / "teacher"), data_dir=args.data_dir,
                           output_dir=str(Path(tmp) / "student"), max_steps=args.steps, batch_size=4,
                           tokens_per_update=4 * 256 * 2, log_every=1, save_every=args.steps)
        t0 = time.time()
        tr = Trainer(cfg, progress=False).setup()
        s, t = tr.model, tr.teacher
        n = lambda m: sum(p.numel() for p in m.parameters())
        layers = default_student_layers(t.config.num_hidden_layers)
        same = all(torch.equal(s.distilbert.transformer.layer[i].ffn.lin1.weight,
                               t.bert.encoder.layer[j].intermediate.dense.weight) for i, j in enumerate(layers))
        lines += [f"tokenizer size {len(tok)}", f"teacher {type(t).__name__} layers={t.config.num_hidden_layers} "
                  f"hidden={t.config.hidden_size} params={n(t) / 1e6:.1f}M",
                  f"student {type(s).__name__} layers={s.config.n_layers} dim={s.config.dim} params={n(s) / 1e6:.1f}M",
                  f"layer map {layers} weights copied: {same}",
                  f"t4 preset: block_size={cfg.block_size} precision(auto on this device)={tr.precision}; "
                  f"run here with batch_size=4, {cfg.grad_accum} micro-batches per update, {args.steps} updates"]
        tr.train()
        for rec in (json.loads(x) for x in (Path(tmp) / "student" / "log.jsonl").read_text().splitlines()):
            lines.append("log " + json.dumps(rec))
        lines.append(f"wall time {time.time() - t0:.0f}s")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("command: python benchmarks/full_size_check.py " +
                                  (f"--data-dir {args.data_dir} " if args.data_dir else "") +
                                  f"--steps {args.steps}\n" + text + "\n")


if __name__ == "__main__":
    main()
