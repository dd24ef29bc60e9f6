"""Offline evaluation metrics for GLUE, IMDb and SQuAD v1.1.

The definitions mirror the Hugging Face ``evaluate`` metrics ``glue`` and
``squad`` (which cannot be loaded offline):

* GLUE: CoLA -> Matthews correlation; MRPC/QQP -> accuracy and binary F1
  (positive label 1); STS-B -> Pearson and Spearman correlation; every other
  task (and IMDb) -> accuracy.  Values are fractions in [0, 1] (or [-1, 1]).
* SQuAD v1.1: answers are normalised as in the official ``evaluate-v1.1.py``
  (lower-case, strip punctuation, drop the articles a/an/the, collapse
  whitespace); exact match and token-level F1 take the maximum over the gold
  answers and are averaged over questions, reported on a 0-100 scale.

``task_score`` turns one task's metrics into the single 0-100 number used in
the paper's Table 1 and ``glue_macro_score`` averages those numbers.
"""
from __future__ import annotations

import re
import string
import warnings
from collections import Counter

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score as _sk_f1
from sklearn.metrics import matthews_corrcoef

GLUE_TASK_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearmanr"),
}


def _check_task(task: str) -> None:
    if task not in GLUE_TASK_METRICS:
        raise ValueError(
            f"Unknown GLUE task {task!r}; use one of: {', '.join(GLUE_TASK_METRICS)}."
        )


def _as_arrays(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    preds, refs = np.asarray(predictions).ravel(), np.asarray(references).ravel()
    if len(preds) != len(refs):
        raise ValueError(
            f"predictions ({len(preds)}) and references ({len(refs)}) differ in "
            "length; pass one prediction per reference."
        )
    if len(refs) == 0:
        raise ValueError("predictions and references are empty; pass at least one example.")
    return preds, refs


def accuracy(predictions, references) -> float:
    """Fraction of predictions equal to their reference (GLUE tasks and IMDb)."""
    preds, refs = _as_arrays(predictions, references)
    return float((preds == refs).mean())


def glue_metrics(task: str, predictions, references) -> dict[str, float]:
    """Metrics of ``evaluate.load("glue", task)`` for one GLUE task.

    ``predictions`` are class ids (regression scores for ``stsb``); returns a
    dict keyed by the names in ``GLUE_TASK_METRICS[task]`` with plain floats.
    """
    _check_task(task)
    preds, refs = _as_arrays(predictions, references)
    if task == "cola":
        with warnings.catch_warnings():  # one predicted class -> 0.0, quietly
            warnings.simplefilter("ignore")
            return {"matthews_correlation": float(matthews_corrcoef(refs, preds))}
    if task == "stsb":
        preds, refs = preds.astype(float), refs.astype(float)
        return {
            "pearson": float(pearsonr(preds, refs)[0]),
            "spearmanr": float(spearmanr(preds, refs)[0]),
        }
    result = {"accuracy": float((preds == refs).mean())}
    if task in ("mrpc", "qqp"):
        with warnings.catch_warnings():  # no positives -> 0.0, quietly
            warnings.simplefilter("ignore")
            result["f1"] = float(_sk_f1(refs, preds, zero_division=0.0))
    return result


def task_score(task: str, metrics: dict[str, float]) -> float:
    """Single Table-1 number (0-100): mean of the task's metrics, times 100.

    CoLA -> MCC, MRPC/QQP -> mean(F1, accuracy), STS-B -> mean(Pearson,
    Spearman), all other tasks -> accuracy.
    """
    _check_task(task)
    names = GLUE_TASK_METRICS[task]
    missing = [n for n in names if n not in metrics]
    if missing:
        raise ValueError(f"metrics for {task!r} lack {missing}; pass glue_metrics({task!r}, ...) output.")
    return 100.0 * sum(float(metrics[n]) for n in names) / len(names)


def glue_macro_score(task_scores: dict[str, float]) -> float:
    """Plain mean of the per-task scores given.

    The paper's GLUE score averages all nine tasks (CoLA, SST-2, MRPC, STS-B,
    QQP, MNLI, QNLI, RTE, WNLI); pass all nine to reproduce it.
    """
    if not task_scores:
        raise ValueError("task_scores is empty; pass at least one task score.")
    return float(sum(task_scores.values()) / len(task_scores))


# --------------------------------------------------------------- SQuAD v1.1
def normalize_answer(s: str) -> str:
    """Lower-case, remove punctuation, remove articles, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """True when the normalised strings are identical."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 between normalised answers (0 if no token is shared)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_tokens), num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict, references: dict) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 (0-100), averaged over ``references``' ids.

    ``predictions`` maps id -> answer text, ``references`` maps id -> list of
    gold answers; each question scores its best gold answer.  A missing
    prediction scores 0 (as in the official script).
    """
    if not references:
        raise ValueError("references is empty; pass at least one question.")
    if not set(predictions) & set(references):
        raise ValueError("no prediction id matches a reference id; check that both use question ids.")
    em = f1 = 0.0
    for qid, golds in references.items():
        if qid not in predictions:
            continue
        if isinstance(golds, str):
            golds = [golds]
        pred = predictions[qid]
        em += max(float(exact_match_score(pred, g)) for g in golds)
        f1 += max(f1_score(pred, g) for g in golds)
    n = len(references)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def squad_metrics_from_lists(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """``squad_metrics`` for parallel lists (question i <-> index i)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions ({len(predictions)}) and references ({len(references)}) differ in length."
        )
    return squad_metrics(dict(enumerate(predictions)), dict(enumerate(references)))
