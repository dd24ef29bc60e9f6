"""What distillation buys, on hand-worked per-seed numbers: the tasks the teacher beats the majority class on,
retention over all of them / over those / per seed / of the margin, and the control comparison's verdict."""
from pathlib import Path

import pytest

from tinydistil.records import TableRow
from tinydistil.study.effect import compare, mlm_versus_control, retention, skilled_tasks
from tinydistil.study.results import Results


def _res(scores: dict, majority: dict, mlm=None) -> Results:
    """scores: {role: {task: [seed0, seed1, seed2]}} -> per-seed records as load_results reads them."""
    res = Results(Path("."), "cpu")
    for role, tasks in scores.items():
        recs = [{"task": t, "seed": s, "score": v} for t, vs in tasks.items() for s, v in enumerate(vs)]
        res.evals[f"cpu_{role}"] = {"records": recs, "finetune": []}
    res.tables["majority"] = [TableRow({"Task": k, "Score": "n/a" if v is None else f"{v:.1f}"},
                                       {} if v is None else {"Score": v}) for k, v in majority.items()]
    res.reproduce = {"mlm_eval": mlm} if mlm else None
    return res


SCORES = {"teacher": {"sst2": [80, 82, 81], "rte": [52.7076, 52.7076, 52.7076], "stsb": [80, 80, 80]},
          "student": {"sst2": [78, 79, 80], "rte": [55, 53, 54], "stsb": [30, 34, 32]},
          "control": {"sst2": [76, 77, 75], "rte": [52.7076, 52.7076, 52.7076], "stsb": [20, 22, 24]}}
MAJORITY = {"SST-2": 50.9, "RTE": 52.7, "STS-B": None}


def test_the_teacher_at_the_majority_class_is_not_skilled():
    # RTE: the teacher predicts the majority class (52.7076 vs the file's rounded 52.7): not a task it beats
    assert skilled_tasks(_res(SCORES, MAJORITY)) == ["sst2", "stsb"]


def test_retention_hand_worked():
    r = retention(_res(SCORES, MAJORITY), "student")
    # all tasks: (79 + 54 + 32) / 3 over (81 + 52.7076 + 80) / 3
    assert r["all"] == pytest.approx(100 * (79 + 54 + 32) / (81 + 52.7076 + 80))
    assert r["skilled"] == pytest.approx(100 * (79 + 32) / (81 + 80))
    # per seed over SST-2 and STS-B: seed 0 (78 + 30) / (80 + 80), ...
    assert r["per_seed_skilled"] == pytest.approx({0: 100 * 108 / 160, 1: 100 * 113 / 162, 2: 100 * 112 / 161})
    # margins over the majority (STS-B's constant prediction scores 0): (79 - 50.9 + 32) / (81 - 50.9 + 80)
    assert r["margin"] == pytest.approx(100 * (79 - 50.9 + 32) / (81 - 50.9 + 80))


def test_student_above_the_control_needs_the_sd_and_every_paired_seed():
    c = compare(_res(SCORES, MAJORITY), "student", "control")
    # per-seed macros: student (78+55+30)/3 ... control (76+52.7076+20)/3 ...
    assert c["delta"] == pytest.approx((79 + 54 + 32 - 76 - 52.7076 - 22) / 3)
    assert c["higher"] == 3 and c["verdict"] == "measurably above"
    # one seed where the control wins: not measurably above under the all-seeds rule, above under 2 of 3
    worse = {**SCORES, "student": {**SCORES["student"], "stsb": [30, 34, 5]}}
    assert compare(_res(worse, MAJORITY), "student", "control")["verdict"] == "not measurably above"
    assert compare(_res(worse, MAJORITY), "student", "control", min_higher=2)["higher"] == 2
    assert compare(_res(SCORES, MAJORITY), "student_d", "control") is None  # no (D) runs: not run


def test_mlm_versus_control_uses_the_standard_error():
    ev = {"student": {"mlm_accuracy": 0.25, "masked_tokens": 30000}, "control": {"mlm_accuracy": 0.24}}
    m = mlm_versus_control(_res(SCORES, MAJORITY, ev))
    se = 100 * ((0.25 * 0.75 + 0.24 * 0.76) / 30000) ** 0.5  # ~0.35 points
    assert m["diff"] == pytest.approx(1.0) and m["se"] == pytest.approx(se) and m["verdict"] == "measurably above"
    ev["student"]["mlm_accuracy"] = 0.2450  # +0.5 points: within 2 standard errors
    assert mlm_versus_control(_res(SCORES, MAJORITY, ev))["verdict"] == "not measurably above"
