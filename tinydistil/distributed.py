"""The few torch.distributed helpers the training loop needs (one process per device).

`torchrun --nproc_per_node N` and `accelerate launch` both set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
and MASTER_PORT, so `init()` uses the env:// rendezvous of `torch.distributed`. Without WORLD_SIZE (or
with WORLD_SIZE=1) nothing is initialised and every helper is a cheap no-op: single-process runs are
exactly what they were before.
"""
from __future__ import annotations

import atexit
import contextlib
import os

import torch
import torch.distributed as dist


def env_world_size() -> int:
    """WORLD_SIZE set by the launcher (1 when not launched by torchrun / accelerate)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; unset it or launch "
                         "with torchrun") from None


def init(device_type: str = "cpu") -> None:
    """Join the process group (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1; idempotent."""
    if env_world_size() <= 1 or dist.is_initialized():
        return
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun or "
                         "accelerate launch, or unset WORLD_SIZE for one process")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())  # before the group: nccl binds to the current device
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    atexit.register(cleanup)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (writes caches, tokenizer, run.json); the others then run it and
    find what rank 0 wrote."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_reduce_sum(values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, float]:
    """Sum each value over all ranks (one collective for the whole dict); returns Python floats.

    Used for logged metrics only: loss sums, micro-batch and token counts of a log window.
    """
    keys = list(values)
    flat = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=device) for k in keys])
    if dist.is_initialized():
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return dict(zip(keys, flat.tolist()))


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
