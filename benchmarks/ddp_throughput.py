#!/usr/bin/env python
"""Distillation throughput with 1 process vs N data-parallel processes (torchrun, gloo on CPU), side by side.

    python benchmarks/ddp_throughput.py [--updates 8] [--nproc 2] [--data-dir DIR] [--out FILE]

Both sides run the real `Trainer` loop on the cpu preset's distillation config (student of a randomly
initialised cpu-preset-size teacher with a WordPiece vocabulary trained on WikiText-2; speed does not depend on
the weight values), batch 32 x 128 per process, the same global tokens per update (--nproc such batches).
The 1-process side gets all --threads; each of the N processes gets --threads / N, so both use the same cores;
a 1-process run with --threads / N threads is timed too, to separate the effect of more processes from that of
fewer threads per process. Reported: median non-pad tokens/s over the updates after the first (warm-up), from
the loop's own log (tokens_per_s of each update, log_every=1, summed over ranks).
On a CPU the N processes share the machine's cores and memory bandwidth; on GPUs each has its own device.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing


def default_data_dir() -> str:
    return os.environ.get("TINYDISTIL_DATA_DIR") or str(REPO.parent / "shared" / "data")


def worker(cfg_file: str) -> None:
    """One side of the comparison (run by itself or by torchrun)."""
    from tinydistil import config as C
    from tinydistil.train import Trainer

    Trainer(C.from_dict(json.loads(Path(cfg_file).read_text())), progress=False).setup().train()


def build_teacher(data_dir: str, folder: Path) -> None:
    import torch

    from tinydistil.data import load_corpus
    from tinydistil.presets import get_preset
    from tinydistil.teacher import new_teacher, train_tokenizer

    tc = get_preset("cpu").teacher
    tok = train_tokenizer(iter(load_corpus(data_dir, "train")["text"]), tc.vocab_size, folder)
    torch.manual_seed(0)
    new_teacher(tc, tok).save_pretrained(folder)
    tok.save_pretrained(str(folder))


def run_side(nproc: int, threads: int, cfg, work: Path) -> dict:
    from tinydistil import config as C

    cfg_file = work / f"cfg_{nproc}x{threads}.json"
    cfg_file.write_text(json.dumps(C.to_dict(cfg)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    me = [str(Path(__file__).resolve()), "--worker", str(cfg_file)]
    launch = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                                  str(nproc), "--master_addr", "127.0.0.1", "--master_port", "29731"]
    t0 = time.time()
    proc = subprocess.run(launch + me, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{nproc}-process run failed:\n{proc.stderr[-3000:]}")
    log = [json.loads(x) for x in (Path(cfg.output_dir) / "log.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in log[1:]]  # the first update includes warm-up
    return {"processes": nproc, "threads_per_process": threads, "updates": len(log),
            "tokens_per_update": log[0]["tokens"], "median_tokens_per_s": statistics.median(rates),
            "wall_s_incl_setup": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--updates", type=int, default=8)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads in all, split over processes")
    ap.add_argument("--data-dir", default=default_data_dir())
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)

    from tinydistil.presets import stage_config
    from tinydistil.rundir import git_sha, machine

    load_before = os.getloadavg()  # other jobs on the machine skew both sides
    t_start, started = time.time(), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="ddp_throughput-"))
    build_teacher(args.data_dir, work / "teacher")
    sides = []
    share = max(1, args.threads // args.nproc)
    plan = [(1, args.threads)] + ([(1, share)] if share != args.threads else []) + [(args.nproc, share)]
    for nproc, threads in plan:
        cfg = stage_config("cpu", "distill", teacher=str(work / "teacher"), data_dir=args.data_dir,
                           output_dir=str(work / f"run{nproc}x{threads}"), max_steps=args.updates, log_every=1,
                           tokens_per_update=args.nproc * 32 * 128, batch_size=32, block_size=128,
                           save_every=10**9, device="cpu", precision="fp32")
        sides.append(run_side(nproc, threads, cfg, work))
    base = sides[0]["median_tokens_per_s"]
    lines = [f"command: python {shlex.join(sys.argv)}", f"git_sha: {git_sha()}", f"machine: {json.dumps(machine())}",
             f"cpu preset distillation, block 128, batch 32 per process, {sides[0]['tokens_per_update']} tokens per "
             f"update, {args.updates} updates (first excluded)",
             f"started {started}, total wall time {time.time() - t_start:.0f} s (teacher set-up + every side)",
             f"load average (1/5/15 min) before: {load_before}, after: {os.getloadavg()} on {os.cpu_count()} cores", "",
             f"{'processes':>9} {'threads/proc':>12} {'median tokens/s':>16} {'ratio':>6} {'wall s (incl. setup)':>21}"]
    for s in sides:
        lines.append(f"{s['processes']:>9} {s['threads_per_process']:>12} {s['median_tokens_per_s']:>16.0f} "
                     f"{s['median_tokens_per_s'] / base:>6.2f} {s['wall_s_incl_setup']:>21}")
    if max(load_before[0], os.getloadavg()[0]) > (os.cpu_count() or 1):
        lines += ["", "NOTE: the machine was busy with other jobs (load average above the core count): the sides ran",
                  "one after the other under different loads, so these ratios are not a clean scaling measurement."]
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
