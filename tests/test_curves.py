"""Live curves: TensorBoard event files beside log.jsonl holding the same numbers; a missing package is one line
and the run goes on; the switch is not a setting that stops --resume, and runs saved before it existed resume."""
import json
import sys

import pytest
import torch

from tinydistil.curves import MISSING, LiveCurves
from tinydistil.presets import stage_config
from tinydistil.train import Trainer, distill


def _cfg(tmp_path, teacher, name, **kw):
    return stage_config("smoke", "distill", teacher=str(teacher), output_dir=str(tmp_path / name), **kw)


def _log(folder):
    return [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines()]


def test_event_files_hold_every_logged_curve(tmp_path, smoke_teacher):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'tinydistil[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    distill(_cfg(tmp_path, smoke_teacher, "s", tensorboard=True), progress=False)
    assert list((tmp_path / "s" / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(tmp_path / "s" / "tensorboard"))
    acc.Reload()
    log = _log(tmp_path / "s")
    loss_keys = [k for k in log[0] if k.startswith("loss")]
    assert len(loss_keys) == 4  # the total and the three terms, whatever they are called
    for key in loss_keys + ["lr", "grad_norm", "tokens_per_s"]:
        tag = f"{'loss' if key.startswith('loss') else 'train'}/{key}"
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [r["step"] for r in log], tag
        assert [e.value for e in events] == pytest.approx([r[key] for r in log], rel=1e-6, abs=1e-9), tag


def test_without_tensorboard_one_line_and_the_run_goes_on(tmp_path, smoke_teacher, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` of it raises ImportError
    assert not LiveCurves.open(tmp_path / "tb").on
    assert capsys.readouterr().err.strip() == MISSING
    distill(_cfg(tmp_path, smoke_teacher, "s", tensorboard=True), progress=False)
    assert capsys.readouterr().err.count("tensorboard is not installed") == 1
    assert [r["step"] for r in _log(tmp_path / "s")] == [1, 2, 3, 4] and not (tmp_path / "s" / "tensorboard").exists()


def test_a_run_saved_before_the_switch_resumes_with_it_on(tmp_path, smoke_teacher):
    cut = Trainer(_cfg(tmp_path, smoke_teacher, "r", save_every=2), progress=False).setup()
    cut.total_steps = 2
    cut.train()
    (tmp_path / "r" / "summary.json").unlink()
    # as an older tinydistil wrote them: no tensorboard field in run.json nor in the checkpoint
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    del run["config"]["tensorboard"]
    (tmp_path / "r" / "run.json").write_text(json.dumps(run))
    state = torch.load(tmp_path / "r" / "checkpoint" / "state.pt", weights_only=True)
    del state["config"]["tensorboard"]
    torch.save(state, tmp_path / "r" / "checkpoint" / "state.pt")
    resumed = Trainer(_cfg(tmp_path, smoke_teacher, "r", save_every=2, tensorboard=True), resume=True,
                      progress=False).setup()
    assert resumed.step == 2
    resumed.train()
    assert [r["step"] for r in _log(tmp_path / "r")] == [1, 2, 3, 4]
    # and switching it off again is no other setting either
    assert Trainer(_cfg(tmp_path, smoke_teacher, "r", save_every=2), resume=True).config_diff(run["config"]) == []
