"""Run one Trainer from a saved config, for tests/test_distributed.py (launched through torchrun).

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py CONFIG.json [--resume] [--stop-at N]

--stop-at N ends the loop after update N (checkpoint written there) and removes summary.json, as a run
interrupted right after that checkpoint would leave it. Each rank writes its final data position to
OUTPUT_DIR/position_rank<R>.json.
"""
import argparse
import json
from pathlib import Path

from tinydistil import config as C
from tinydistil.train import Trainer

parser = argparse.ArgumentParser()
parser.add_argument("config")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--stop-at", type=int, default=0)
args = parser.parse_args()

cfg = C.from_dict(json.loads(Path(args.config).read_text()))
t = Trainer(cfg, resume=args.resume, progress=False).setup()
start = {"step": t.step, "epoch": t.epoch, "batch_idx": t.batch_idx, "micro": t.micro}
if args.stop_at:
    t.total_steps = args.stop_at
t.train()
out = Path(cfg.output_dir)
if args.stop_at and t.rank == 0:
    (out / "summary.json").unlink()
pos = {"start": start, "end": {"step": t.step, "epoch": t.epoch, "batch_idx": t.batch_idx, "micro": t.micro},
       "world": t.world, "accum": t.accum}
(out / f"position_rank{t.rank}.json").write_text(json.dumps(pos))
