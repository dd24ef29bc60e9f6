"""How Table 3 times a model: one call per example, the median of full passes (CUDA events on a GPU), and how far a
deployed form's outputs move from the fp32 model's.

    timing = time_pass(torch_runner(model, "last_hidden_state"), encoded, repeats=3)
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Timing:
    seconds: float  # median over repeats of one full pass
    repeats: list[float]
    outputs: list[np.ndarray] | None = field(default=None, repr=False)  # per example, last pass


def torch_runner(model, output: str):
    def run(enc):
        return getattr(model(**enc), output)
    return run


def onnx_runner(session):
    names = [i.name for i in session.get_inputs()]

    def run(enc):
        return session.run(None, {n: enc[n].numpy() for n in names})[0]
    return run


def time_pass(run, encoded: list[dict], repeats: int = 3, warmup: int = 10, device: str = "cpu",
              collect: bool = False) -> Timing:
    """Median wall time of `repeats` full passes of `run` over `encoded` (one call per example),
    after `warmup` untimed calls. collect=True keeps the last pass's outputs (numpy, per example)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1 (got {repeats})")
    cuda = device.startswith("cuda")
    if cuda:
        encoded = [{k: v.to(device) for k, v in e.items()} for e in encoded]
    with torch.inference_mode():
        for enc in (encoded * (warmup // len(encoded) + 1))[:warmup]:
            run(enc)
        times, outputs = [], None
        for r in range(repeats):
            keep = collect and r == repeats - 1
            outs = []
            if cuda:  # GPU kernels are asynchronous: events measure device time, synchronize waits for it
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
            t0 = time.perf_counter()
            for enc in encoded:
                out = run(enc)
                if keep:
                    outs.append(out)
            if cuda:
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                times.append(time.perf_counter() - t0)
            if keep:
                outputs = [o.detach().float().cpu().numpy() if torch.is_tensor(o) else np.asarray(o) for o in outs]
    return Timing(statistics.median(times), times, outputs)


def output_change(ref: list[np.ndarray], got: list[np.ndarray], labels: np.ndarray | None = None,
                  regression: bool = False) -> dict:
    """How far `got` is from `ref` (same examples): max / mean |difference| over all values; for STS-B
    regression outputs also both Pearson correlations with `labels` (x100) and their difference."""
    diff = np.concatenate([np.abs(g.astype(np.float64) - r).ravel() for r, g in zip(ref, got, strict=True)])
    res = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    if regression and labels is not None and len(labels) > 1:
        from scipy.stats import pearsonr

        p_ref = 100 * pearsonr(np.array([r.ravel()[0] for r in ref]), labels)[0]
        p_got = 100 * pearsonr(np.array([g.ravel()[0] for g in got]), labels)[0]
        res.update(pearson_fp32=float(p_ref), pearson=float(p_got), pearson_delta=float(p_got - p_ref))
    return res


def describe_change(change: dict, output: str) -> str:
    if "pearson_delta" in change:
        return (f"STS-B Pearson {change['pearson']:.2f} vs {change['pearson_fp32']:.2f} fp32 "
                f"({change['pearson_delta']:+.2f})")
    return f"max |diff| {change['max_abs_diff']:.2e}, mean |diff| {change['mean_abs_diff']:.2e} ({output})"
