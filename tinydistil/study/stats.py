"""Statistics of the study on plain floats: GLUE macro-scores over seeds, paired deltas, spread, and the
Table 4 decision rule. Formatting happens elsewhere (tables, report); verdicts are computed here, once.

    per_task = {"cola": {0: 12.1, 1: 14.0}, "sst2": {0: 80.3, 1: 81.0}}    # task -> seed -> score
    macro(per_task)                  # mean over tasks of each task's median over seeds
    per_seed_macro(per_task)         # {seed: mean over tasks of that seed's scores} (seeds every task has)
"""
from __future__ import annotations

import math
import statistics


def macro(per_task: dict[str, dict[int, float]]) -> float | None:
    """Mean over tasks of each task's median over seeds; None without any task."""
    medians = [statistics.median(v.values()) for v in per_task.values() if v]
    return sum(medians) / len(medians) if medians else None


def per_seed_macro(per_task: dict[str, dict[int, float]]) -> dict[int, float]:
    """{seed: mean over the tasks of seed k's scores}, for the seeds present in every task."""
    tasks = [v for v in per_task.values() if v]
    if not tasks:
        return {}
    common = sorted(set.intersection(*(set(v) for v in tasks)))
    return {s: sum(v[s] for v in tasks) / len(tasks) for s in common}


def paired_deltas(mine: dict[int, float], base: dict[int, float]) -> list[float]:
    """mine[s] - base[s] over the seeds both have, in seed order."""
    return [mine[s] - base[s] for s in sorted(set(mine) & set(base))]


def spread(values) -> dict | None:
    """{'sd' (sample standard deviation), 'min', 'max'} of two or more values, else None."""
    values = list(values)
    if len(values) < 2:
        return None
    return {"sd": statistics.stdev(values), "min": min(values), "max": max(values)}


def measurably_worse(delta: float | None, full_sd: float | None, paired: list[float],
                     min_lower: int | None = None) -> bool:
    """The Table 4 decision rule: lower than the full loss by more than its seed standard deviation, AND lower
    on at least `min_lower` of the paired seeds (None: on every one of them, the rule of the earlier protocols).
    The rule of the first Table 4 protocol (results/table4_protocol.md); the second uses paired_t_lower."""
    if delta is None or full_sd is None or not paired or not math.isfinite(delta):
        return False
    lower = sum(d < 0 for d in paired)
    need = len(paired) if min_lower is None else min_lower  # fewer paired seeds than declared: undecided
    return delta < -full_sd and lower >= need


def paired_t_lower(paired: list[float], alpha: float) -> tuple[bool, float | None]:
    """The Table 4 rule of the protocol declared for issue 26: a one-sided paired t-test that the mean of the paired
    deltas (variant minus base, one per seed) is below 0. (lower at level alpha, p-value); (False, None) with fewer
    than two pairs or no spread to test against."""
    from scipy import stats

    if len(paired) < 2 or not all(math.isfinite(d) for d in paired) or statistics.stdev(paired) == 0:
        return False, None
    p = float(stats.ttest_1samp(paired, 0.0, alternative="less").pvalue)
    return p < alpha, p


def p_text(p: float) -> str:
    """A p-value as the report and poster print it: three decimals, "< 0.001" below that (never "0.000")."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def detectable_delta(sd_paired: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean paired delta a one-sided paired t-test on n seeds detects with the given power,
    for paired deltas of standard deviation sd_paired (the usual approximation (t_{1-alpha} + t_{power}) sd / sqrt n,
    both quantiles at n - 1 degrees of freedom)."""
    from scipy import stats

    return (stats.t.ppf(1 - alpha, n - 1) + stats.t.ppf(power, n - 1)) * sd_paired / math.sqrt(n)


def mean_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float] | None:
    """(mean, low, high): the two-sided t interval of the mean of `values` (e.g. a row's paired deltas over
    seeds); None with fewer than two values."""
    from scipy import stats

    if len(values) < 2:
        return None
    m = statistics.fmean(values)
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def accuracy_diff_se(p1: float, p0: float, n: int) -> float:
    """Standard error of p1 - p0, two accuracies (fractions) each on n tokens, as two independent binomial
    proportions: conservative when both models saw the same masked tokens (their errors correlate)."""
    return math.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / n)


def holm_adjusted(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of `p_values` for testing them all (family-wise error rate): the i-th smallest
    of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j))."""
    m, out, running = len(p_values), {}, 0.0
    for i, (name, p) in enumerate(sorted(p_values.items(), key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - i) * p))
        out[name] = running
    return out
