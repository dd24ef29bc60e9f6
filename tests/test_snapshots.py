"""The student at chosen points of its distillation: the no-distillation control (bit-identical to init_student,
0 updates, a normal run folder), snapshots along a run (which updates, atomic, training unchanged), and the
tokens curve's choice of points."""
import json

import pytest
import torch
from transformers import DistilBertForMaskedLM

from tinydistil.config import replace
from tinydistil.presets import stage_config
from tinydistil.snapshots import init_student_run, snapshot_points, snapshot_steps
from tinydistil.student import init_student
from tinydistil.teacher import load_teacher
from tinydistil.train import distill


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_snapshot_steps_rounding_and_ends():
    assert snapshot_steps((0.25, 0.5), 274) == {68: 0.25, 137: 0.5}
    assert snapshot_steps((0.001,), 274) == {1: 0.001}  # never update 0: that is the control
    assert snapshot_steps((0.999,), 274) == {}  # rounds to the last update: the final model is kept anyway
    assert list(snapshot_steps((0.5, 0.25), 8)) == [2, 4]  # in update order


def test_snapshot_fracs_are_validated():
    with pytest.raises(ValueError, match="snapshot_fracs"):
        stage_config("smoke", "distill", snapshot_fracs=(0.5, 1.0))


def test_control_is_the_initialised_student_after_0_updates(tmp_path, smoke_teacher):
    cfg = stage_config("smoke", "distill", teacher=str(smoke_teacher), output_dir=str(tmp_path / "control"))
    model_dir = init_student_run(cfg, progress=False)
    control = DistilBertForMaskedLM.from_pretrained(model_dir)
    expected = init_student(load_teacher(str(smoke_teacher))[0], cfg.student_layers, cfg.student_init, seed=cfg.seed)
    assert _same_weights(control, expected)
    summary = json.loads((tmp_path / "control" / "summary.json").read_text())
    assert summary["steps"] == 0 and summary["tokens"] == 0
    assert json.loads((tmp_path / "control" / "run.json").read_text())["config"]["teacher"] == str(smoke_teacher)
    again = init_student_run(cfg, progress=False)  # finished: kept as it is
    assert again == model_dir and _same_weights(DistilBertForMaskedLM.from_pretrained(again), expected)


def test_snapshots_do_not_change_training(tmp_path, smoke_teacher):
    base = stage_config("smoke", "distill", teacher=str(smoke_teacher), max_steps=4, save_every=100)
    plain = distill(replace(base, output_dir=str(tmp_path / "plain")), progress=False)
    snap_run = tmp_path / "snap"
    snapped = distill(replace(base, output_dir=str(snap_run), snapshot_fracs=(0.5,)), progress=False)
    final_a, final_b = (DistilBertForMaskedLM.from_pretrained(p) for p in (plain, snapped))
    assert _same_weights(final_a, final_b)  # keeping a copy does not touch the run
    points = snapshot_points(snap_run)
    assert [p["update"] for p in points] == [2] and points[0]["fraction"] == 0.5
    assert points[0]["tokens"] == 2 * base.tokens_per_update  # packed blocks: every token counts
    mid = DistilBertForMaskedLM.from_pretrained(points[0]["model"])
    start = DistilBertForMaskedLM.from_pretrained(init_student_run(replace(base, output_dir=str(tmp_path / "c")),
                                                                   progress=False))
    assert not _same_weights(mid, final_b) and not _same_weights(mid, start)
    assert not list((snap_run / "snapshots").glob("*.tmp"))
