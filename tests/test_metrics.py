"""Tests for tinydistil.eval.metrics, checked against hand-worked values."""
import math
import warnings

import numpy as np
import pytest

from tinydistil.eval.metrics import (
    GLUE_TASK_METRICS,
    accuracy,
    exact_match_score,
    f1_score,
    glue_macro_score,
    glue_metrics,
    normalize_answer,
    squad_metrics,
    squad_metrics_from_lists,
    task_score,
)


# ------------------------------------------------------------------ GLUE
def test_matthews_hand_computed():
    # TP=3, FN=1, TN=2, FP=2 -> (3*2 - 2*1) / sqrt((3+2)(3+1)(2+2)(2+1))
    refs = [1, 1, 1, 1, 0, 0, 0, 0]
    preds = [1, 1, 1, 0, 0, 0, 1, 1]
    out = glue_metrics("cola", preds, refs)
    assert set(out) == {"matthews_correlation"}
    assert out["matthews_correlation"] == pytest.approx(4 / math.sqrt(240))


def test_matthews_one_class_predicted_is_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = glue_metrics("cola", np.ones(6, dtype=int), np.array([0, 1, 0, 1, 1, 0]))
    assert out["matthews_correlation"] == 0.0


def test_accuracy_and_f1_mrpc_hand_computed():
    # TP=2, FN=1, FP=1, TN=1 -> acc 3/5, F1 = 2TP/(2TP+FP+FN) = 4/6
    out = glue_metrics("mrpc", np.array([1, 0, 0, 1, 1]), [1, 1, 0, 0, 1])
    assert out == pytest.approx({"accuracy": 0.6, "f1": 2 / 3})
    assert all(type(v) is float for v in out.values())


def test_f1_uses_label_1_as_positive():
    # positive=1: TP=1, FP=1, FN=0 -> 2/3 (positive=0 would give 4/5)
    out = glue_metrics("qqp", [0, 0, 1, 1], [0, 0, 0, 1])
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(0.75)


def test_f1_no_positives_is_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = glue_metrics("mrpc", [0, 0, 0], [0, 0, 0])
    assert out == {"accuracy": 1.0, "f1": 0.0}


@pytest.mark.parametrize("task", ["sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli"])
def test_accuracy_tasks(task):
    out = glue_metrics(task, [0, 1, 2, 1], np.array([0, 1, 1, 1]))
    assert out == {"accuracy": 0.75}
    assert type(out["accuracy"]) is float


def test_plain_accuracy():
    assert accuracy(np.array([1, 0, 1, 1]), [1, 1, 1, 0]) == 0.5
    assert type(accuracy([1], [1])) is float


def test_pearson_hand_computed():
    # dx = [-1.5,-.5,.5,1.5], dy = [-3,-1,0,4]: sum dx*dy = 11, sum dx^2 = 5, sum dy^2 = 26
    out = glue_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0])
    assert out["pearson"] == pytest.approx(11 / math.sqrt(130))


def test_spearman_with_ties_uses_average_ranks():
    # ranks preds [1, 2.5, 2.5, 4], ranks refs [1, 3, 2, 4] -> Pearson of ranks
    # = 4.5 / sqrt(4.5 * 5); the no-ties shortcut 1 - 6*sum(d^2)/(n(n^2-1)) would give 0.95.
    # Values are non-linear in their ranks, so Pearson on raw values would differ.
    out = glue_metrics("stsb", [1.0, 2.0, 2.0, 10.0], [1.0, 3.0, 2.0, 40.0])
    assert out["spearmanr"] == pytest.approx(4.5 / math.sqrt(22.5))
    assert out["spearmanr"] != pytest.approx(0.95)
    assert out["pearson"] != pytest.approx(out["spearmanr"])
    assert set(out) == {"pearson", "spearmanr"}


def test_glue_task_metrics_keys_match_outputs():
    for task, names in GLUE_TASK_METRICS.items():
        preds = [0.1, 0.9, 0.4, 0.7] if task == "stsb" else [0, 1, 1, 0]
        assert tuple(sorted(glue_metrics(task, preds, [0, 1, 0, 1]))) == tuple(sorted(names))


def test_unknown_task_raises():
    with pytest.raises(ValueError, match="sst2"):
        glue_metrics("sst-2", [1], [1])
    with pytest.raises(ValueError, match="Unknown"):
        task_score("imdb", {"accuracy": 0.9})


def test_length_mismatch_and_empty_raise():
    with pytest.raises(ValueError, match="length"):
        glue_metrics("sst2", [1, 0], [1])
    with pytest.raises(ValueError, match="empty"):
        glue_metrics("cola", [], [])
    with pytest.raises(ValueError, match="length"):
        accuracy([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.array([]), np.array([]))


def test_task_score_conventions():
    assert task_score("mrpc", {"accuracy": 0.8, "f1": 0.9}) == pytest.approx(85.0)
    assert task_score("qqp", {"accuracy": 0.9, "f1": 0.7}) == pytest.approx(80.0)
    assert task_score("stsb", {"pearson": 0.9, "spearmanr": 0.8}) == pytest.approx(85.0)
    assert task_score("cola", {"matthews_correlation": 0.5}) == pytest.approx(50.0)
    assert task_score("sst2", {"accuracy": 0.925}) == pytest.approx(92.5)
    with pytest.raises(ValueError):
        task_score("mrpc", {"accuracy": 0.8})  # f1 missing


def test_task_score_from_glue_metrics():
    m = glue_metrics("mrpc", [1, 0, 0, 1, 1], [1, 1, 0, 0, 1])
    assert task_score("mrpc", m) == pytest.approx(100 * (0.6 + 2 / 3) / 2)


def test_glue_macro_score_is_plain_mean():
    assert glue_macro_score({"cola": 50.0, "sst2": 90.0, "mrpc": 85.0}) == pytest.approx(75.0)
    with pytest.raises(ValueError):
        glue_macro_score({})


# ------------------------------------------------------------------ SQuAD
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The  Cat!", "cat"),
        ("an apple a day", "apple day"),
        ("U.S.", "us"),
        ("theater", "theater"),
        ("Anthem of the Andes", "anthem of andes"),
        ("(a)", ""),  # punctuation removed first, then the bare article
        ("the-end", "theend"),  # punctuation removal joins the word, not an article
        ("  Hello,\tworld \n", "hello world"),
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_exact_match_uses_normalisation():
    assert exact_match_score("The Eiffel Tower.", "eiffel tower")
    assert not exact_match_score("Eiffel", "eiffel tower")


def test_f1_hand_computed():
    # "cat sat on mat" vs "cat on mat": 3 common, P=3/4, R=1 -> 6/7
    assert f1_score("the cat sat on mat", "a cat on the mat") == pytest.approx(6 / 7)
    # Counter overlap counts repeated tokens once per gold occurrence: P=1/3, R=1
    assert f1_score("cat cat cat", "cat") == pytest.approx(0.5)
    assert f1_score("dog", "cat") == 0.0


def test_f1_empty_prediction_is_zero():
    assert f1_score("", "cat") == 0.0
    assert f1_score("the", "cat") == 0.0  # normalises to empty


def test_squad_max_over_gold_answers():
    out = squad_metrics({"q": "Denver Broncos"}, {"q": ["Broncos", "Denver Broncos", "Denver"]})
    assert out == pytest.approx({"exact_match": 100.0, "f1": 100.0})
    out = squad_metrics({"q": "Denver"}, {"q": ["Broncos", "Denver Broncos"]})
    assert out == pytest.approx({"exact_match": 0.0, "f1": 100 * 2 / 3})


REFS = {"q1": ["Denver Broncos"], "q2": ["blue"], "q3": ["Paris France"]}


def test_squad_aggregate_on_0_100_scale():
    preds = {"q1": "the Denver Broncos", "q2": "red", "q3": "Paris"}
    out = squad_metrics(preds, REFS)
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)


def test_squad_missing_prediction_counts_zero():
    out = squad_metrics({"q1": "Denver Broncos", "q2": "blue"}, REFS)
    assert out == pytest.approx({"exact_match": 200 / 3, "f1": 200 / 3})


def test_squad_disjoint_ids_raise():
    with pytest.raises(ValueError, match="id"):
        squad_metrics({"x1": "blue"}, REFS)


def test_squad_from_lists():
    out = squad_metrics_from_lists(["blue", "Paris"], [["Blue."], ["Paris France", "Paris"]])
    assert out == pytest.approx({"exact_match": 100.0, "f1": 100.0})
    with pytest.raises(ValueError):
        squad_metrics_from_lists(["blue"], [["blue"], ["red"]])
