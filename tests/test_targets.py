"""Targets as data: each kind one `Target` line checked in one loop, and a preset whose `targets` or `downstream`
names a key nothing reads fails when it loads, naming the key."""
import json
import dataclasses

import pytest
from test_report import make_results

from tinydistil import presets
from tinydistil.eval import registry
from tinydistil.presets import DOWNSTREAM_KEYS, PRESETS, TARGET_KEYS, get_preset
from tinydistil.study import targets
from tinydistil.study.results import load_results
from tinydistil.study.targets import TARGETS, Target, check_targets, score


def test_the_preset_keys_and_the_targets_are_one_list():
    assert [t.key for t in TARGETS] == list(TARGET_KEYS)  # one Target per key a preset may set, in one order
    assert set(registry.TASKS) <= set(DOWNSTREAM_KEYS)  # every registered task's fine-tuning settings
    for name in PRESETS:  # the presets as shipped use known keys only
        get_preset(name)


@pytest.mark.parametrize("field, key", [("targets", "speedupp"), ("downstream", "squad_opt")])
def test_a_mistyped_key_fails_when_the_preset_loads(monkeypatch, field, key):
    cpu = PRESETS["cpu"]
    monkeypatch.setitem(PRESETS, "typo", lambda: dataclasses.replace(cpu(), **{
        field: {**getattr(cpu(), field), key: 2.0}}))
    with pytest.raises(ValueError, match=rf"preset 'typo': unknown {field} key\(s\) '{key}'; valid: "):
        get_preset("typo")


def test_check_targets_refuses_an_unknown_key_instead_of_leaving_it_out(tmp_path):
    with pytest.raises(ValueError, match="unknown targets key.*'speedupp'"):
        check_targets(load_results(make_results(tmp_path / "r"), "cpu"), {"speedup": 1.8, "speedupp": 2.0})


def test_a_target_is_one_line(monkeypatch, tmp_path):
    """A new kind of target: its Target line (here reusing a measure) and its key; the loop does the rest."""
    monkeypatch.setattr(targets, "TARGETS", (*TARGETS, Target("student_min", "student {task} >= {t:g}",
                                                               score("student"), per_task=True)))
    monkeypatch.setitem(presets.TARGET_KEYS, "student_min", "{task: the student's score}")
    res = load_results(make_results(tmp_path / "r"), "cpu")
    rows = check_targets(res, {"student_min": {"SST-2": 70, "CoLA": 40}, "speedup": 1.8})
    assert [r["target"] for r in rows] == ["student / teacher CPU inference speed-up >= 1.8x (PyTorch fp32)",
                                           "student SST-2 >= 70", "student CoLA >= 40"]
    assert [(r["measured"], r["verdict"]) for r in rows[1:]] == [("85.7", "met"), ("33.8", "**missed**")]


def test_a_yes_no_target_is_checked_against_zero_and_skipped_when_false(tmp_path):
    root = make_results(tmp_path / "r")  # (D) 30.9; the plain student's SQuAD F1 set here
    table = json.loads((root / "table2_downstream.json").read_text())  # the typed table the report reads
    for r in table["rows"]:
        if r["role"] == "student":
            r["cells"]["SQuAD F1"], r["values"]["SQuAD F1"] = "31.5", 31.5
    (root / "table2_downstream.json").write_text(json.dumps(table))
    res = load_results(root, "cpu")
    (row,) = check_targets(res, {"squad_d_ge_student": True})
    assert row == {"target": "SQuAD F1 of DistilBERT (D) >= the plain student's", "measured": "30.9 vs 31.5: -0.6",
                   "verdict": "**missed**"}
    assert check_targets(res, {"squad_d_ge_student": False}) == []


def test_a_target_on_a_task_the_study_did_not_run_says_why(tmp_path):
    """The fixture's study scored no QQP: the row says so (and lists what it scored) instead of a bare "not run"."""
    res = load_results(make_results(tmp_path / "r"), "cpu")
    qqp, cola = check_targets(res, {"teacher_min": {"QQP": 80, "CoLA": 10}})
    assert qqp["verdict"] == "not run" and qqp["measured"].startswith(
        "not run (QQP is not among the tasks this study scored: CoLA, IMDb, MRPC, RTE, SQuAD EM")
    assert (cola["measured"], cola["verdict"]) == ("41.3", "met")
