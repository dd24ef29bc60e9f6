#!/usr/bin/env python
"""CPU inference speed-ups of Table 3, measured side by side in one process on STS-B dev (batch size 1).

    python benchmarks/speed_ratios.py [--max-examples N] [--repeats 3] [--threads 2] [--data-dir DIR]
                                      [--student FOLDER] [--stsb-model FOLDER] [--tokenizer FOLDER] [--out FILE]

Ratios (targets from the issue):
  1. DistilBERT vs BERT-base architecture, PyTorch fp32 (12 -> 6 layers, 768 wide)         target >= 1.9x
  2. student PyTorch int8 (quantize_dynamic on nn.Linear) vs student PyTorch fp32          target >= 1.8x
  3. student ONNX Runtime int8 (quantize_dynamic) vs student PyTorch fp32                   target >= 4x
each with its output change vs the fp32 student on the same pairs (max / mean |diff| of the outputs; with
--stsb-model, the change in STS-B dev Pearson).

Models: BertConfig() / DistilBertConfig() with random weights (the speed does not depend on weight values);
the "student" is the DistilBERT architecture unless --student or --stsb-model gives a folder. Pairs are
tokenised up front (max 128 tokens, no padding) with --tokenizer, the model folder's tokenizer, or else a
WordPiece vocabulary trained here on STS-B train (uncased, <= 30522 tokens). All variants are timed in
rounds, one full pass each, in an order that rotates every round; the median pass is reported.
ONNX Runtime uses as many intra-op threads as torch.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tinydistil.deploy.export import export_model, input_names, load_for_inference, onnx_session, quantize_onnx  # noqa: E402
from tinydistil.rundir import run_info  # noqa: E402
from tinydistil.deploy.speed import count_parameters, encode_pairs, quantize_int8, stsb_dev  # noqa: E402
from tinydistil.deploy.timing import (describe_change, onnx_runner, output_change, time_pass,  # noqa: E402
                                      torch_runner)

TARGETS = {"DistilBERT arch / BERT-base arch (PyTorch fp32)": 1.9,
           "student PyTorch int8 / student PyTorch fp32": 1.8,
           "student ONNX Runtime int8 / student PyTorch fp32": 4.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("TINYDISTIL_DATA_DIR", str(REPO.parent / "shared" / "data")))
    p.add_argument("--max-examples", type=int, default=None, help="first N dev pairs (default all 1,500)")
    p.add_argument("--repeats", type=int, default=3, help="timed full passes per variant (median reported)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per variant first")
    p.add_argument("--threads", type=int, default=0, help="torch (and onnxruntime) threads; 0 = torch default")
    p.add_argument("--student", help="student folder (default: DistilBertConfig() architecture, random weights)")
    p.add_argument("--stsb-model", help="student fine-tuned on STS-B: the output change becomes the Pearson change")
    p.add_argument("--tokenizer", help="folder with the tokenizer for the architecture pair")
    p.add_argument("--out", help="also write the report here (e.g. results/benchmarks/speed_ratios.txt)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoTokenizer, BertConfig, BertModel, DistilBertConfig, DistilBertModel

    transformers.logging.set_verbosity_error()
    t_start, info = time.time(), run_info()
    info["command"] = " ".join(shlex.quote(a) for a in ["python", os.path.relpath(__file__, REPO), *sys.argv[1:]])
    load = os.getloadavg()
    threads = torch.get_num_threads()
    pairs, labels = stsb_dev(args.data_dir, args.max_examples)
    tmp = tempfile.TemporaryDirectory(prefix="speed-ratios-")
    work = Path(tmp.name)

    student_dir = args.stsb_model or args.student
    if args.tokenizer:
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    elif student_dir:
        tok = AutoTokenizer.from_pretrained(student_dir)
    else:
        from tinydistil.eval.glue import load_task
        from tinydistil.teacher import train_tokenizer

        train = load_task("stsb", args.data_dir).train
        tok = train_tokenizer(iter(list(train["sentence1"]) + list(train["sentence2"])), 30522, work / "tok")
    print(f"[bench] {len(pairs)} STS-B dev pairs, {threads} threads; building models", file=sys.stderr)

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=max(30522, len(tok)))).eval()
    arch = DistilBertModel(DistilBertConfig(vocab_size=max(30522, len(tok)))).eval()
    if student_dir:
        student, out_name = load_for_inference(student_dir)
        student_note = f"folder {student_dir}"
    else:
        student, out_name, student_note = arch, "last_hidden_state", "DistilBertConfig() architecture, random weights"
    names = input_names(student, tok)
    onnx_int8 = quantize_onnx(export_model(student, work / "student.onnx", names, out_name), work / "student_int8.onnx")
    variants = {  # name -> (runner, encoded pairs, outputs compared with the fp32 student)
        "BERT-base arch (PyTorch fp32)": (torch_runner(bert, "last_hidden_state"), input_names(bert, tok), False),
        "DistilBERT arch (PyTorch fp32)": (torch_runner(arch, "last_hidden_state"), input_names(arch, tok), False),
        "student PyTorch fp32": (torch_runner(student, out_name), names, True),
        "student PyTorch int8": (torch_runner(quantize_int8(student), out_name), names, True),
        "student ONNX Runtime int8": (onnx_runner(onnx_session(onnx_int8, threads)), names, True),
    }
    enc = {k: encode_pairs(tok, pairs, n) for k, (_, n, _) in variants.items()}
    print(f"[bench] timing ({time.time() - t_start:.0f}s)", file=sys.stderr)
    for k, (run, _, _) in variants.items():
        time_pass(run, enc[k][:1], repeats=1, warmup=args.warmup)
    passes = {k: [] for k in variants}
    outputs = {}
    keys = list(variants)
    for r in range(args.repeats):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:  # rotate the order every round
            t = time_pass(variants[k][0], enc[k], repeats=1, warmup=0, collect=variants[k][2] and r == 0)
            passes[k].append(t.repeats[0])
            if t.outputs is not None:
                outputs[k] = t.outputs
        print(f"[bench] round {r + 1}/{args.repeats} ({time.time() - t_start:.0f}s)", file=sys.stderr)
    sec = {k: sorted(v)[len(v) // 2] if len(v) % 2 else sum(sorted(v)[len(v) // 2 - 1:len(v) // 2 + 1]) / 2
           for k, v in passes.items()}
    regression = args.stsb_model is not None
    change = {k: describe_change(output_change(outputs["student PyTorch fp32"], outputs[k], labels, regression),
                                 out_name) for k in ("student PyTorch int8", "student ONNX Runtime int8")}
    ratios = [("DistilBERT arch / BERT-base arch (PyTorch fp32)",
               sec["BERT-base arch (PyTorch fp32)"] / sec["DistilBERT arch (PyTorch fp32)"],
               "n/a: different architectures, random weights"),
              ("student PyTorch int8 / student PyTorch fp32",
               sec["student PyTorch fp32"] / sec["student PyTorch int8"], change["student PyTorch int8"]),
              ("student ONNX Runtime int8 / student PyTorch fp32",
               sec["student PyTorch fp32"] / sec["student ONNX Runtime int8"], change["student ONNX Runtime int8"])]

    lines = [f"# {info['command']}",
             f"# git {info['git_sha']}  started {info['started']}  wall {time.time() - t_start:.0f}s",
             f"# cpu {info['machine']['cpu']}  cores {os.cpu_count()}  threads {threads}  "
             f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
             f"# torch {torch.__version__}  transformers {transformers.__version__}  onnxruntime "
             f"{__import__('onnxruntime').__version__}",
             f"# STS-B dev: {len(pairs)} pairs, batch size 1, max 128 tokens, tokenised up front; "
             f"median of {args.repeats} passes (interleaved, rotating order) after {args.warmup} warm-up calls",
             f"# student: {student_note}; tokenizer: "
             f"{args.tokenizer or student_dir or 'WordPiece trained on STS-B train'} ({len(tok)} tokens)", "",
             f"{'variant':<34}{'params (M)':>11}{'pass (s)':>10}   passes (s)"]
    models = {"BERT-base arch (PyTorch fp32)": bert, "DistilBERT arch (PyTorch fp32)": arch,
              "student PyTorch fp32": student, "student PyTorch int8": student, "student ONNX Runtime int8": student}
    for k in variants:
        lines.append(f"{k:<34}{count_parameters(models[k])['total'] / 1e6:>11.1f}{sec[k]:>10.3f}   "
                     + " ".join(f"{s:.3f}" for s in passes[k]))
    lines += ["", f"{'ratio (speed-up)':<50}{'measured':>9}{'target':>8}  {'':<5}output change vs fp32 student"]
    for name, ratio, ch in ratios:
        ok = "PASS" if ratio >= TARGETS[name] else "MISS"
        lines.append(f"{name:<50}{ratio:>8.3f}x{TARGETS[name]:>7.1f}x  {ok:<5}{ch}")
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
