"""The training loop: exact resume, output-folder protection, clear errors, a loadable student."""
import json
from pathlib import Path

import pytest
import torch
from transformers import DistilBertForMaskedLM

from tinydistil.train import Trainer, distill
from tinydistil.presets import SAMPLE_DATA, stage_config


def _cfg(tmp_path, teacher, name, **kw):
    return stage_config("smoke", "distill", teacher=str(teacher), output_dir=str(tmp_path / name), **kw)


def _weights(folder):
    return DistilBertForMaskedLM.from_pretrained(folder).state_dict()


def test_resume_is_bit_identical(tmp_path, smoke_teacher):
    full = distill(_cfg(tmp_path, smoke_teacher, "full", max_steps=6, save_every=3), progress=False)

    # stop after the checkpoint at update 3 (the loop is cut short by lowering total_steps)
    t = Trainer(_cfg(tmp_path, smoke_teacher, "cut", max_steps=6, save_every=3), progress=False).setup()
    t.total_steps = 3
    t.train()
    assert (tmp_path / "cut" / "checkpoint" / "state.pt").is_file()
    # a resumed run continues from update 3 with the same optimizer, scheduler, RNG and data position
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = Trainer(_cfg(tmp_path, smoke_teacher, "cut", max_steps=6, save_every=3), resume=True,
                      progress=False).setup()
    assert resumed.step == 3
    folder = resumed.train()
    a, b = _weights(full), _weights(folder)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))
    full_log = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == [r["loss"] for r in full_log]
    # run.json names the call that resumed it and from which update
    run = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert [r["from_step"] for r in run["resumed"]] == [3] and run["resumed"][0]["git_sha"] == run["git_sha"]


def _earlier_names(d: dict, old: dict) -> dict:
    """`d` with keys spelled as before the rename (old: {current: earlier}), in place."""
    return {old.get(k, k): v for k, v in d.items()}


def test_a_run_written_with_the_earlier_names_resumes_exactly(tmp_path, smoke_teacher):
    """A folder from before the rename (alpha_ce in run.json and the checkpoint, loss_ce in log.jsonl) is the same
    run: --resume compares it field by field, continues it bit-identically and leaves it in the current names."""
    full = distill(_cfg(tmp_path, smoke_teacher, "full", max_steps=6, save_every=3, log_every=1), progress=False)
    t = Trainer(_cfg(tmp_path, smoke_teacher, "old", max_steps=6, save_every=3, log_every=1), progress=False).setup()
    t.total_steps = 3
    t.train()
    old = tmp_path / "old"
    (old / "summary.json").unlink()
    run = json.loads((old / "run.json").read_text())
    earlier = {"alpha_kl": "alpha_ce", "loss_kl": "loss_ce"}
    (old / "run.json").write_text(json.dumps({**run, "config": _earlier_names(run["config"], earlier)}))
    ckpt = old / "checkpoint" / "state.pt"
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "config": _earlier_names(state["config"], earlier)}, ckpt)
    lines = [json.loads(x) for x in (old / "log.jsonl").read_text().splitlines()]
    (old / "log.jsonl").write_text("".join(json.dumps(_earlier_names(r, earlier)) + "\n" for r in lines))
    assert '"alpha_ce": 5.0' in (old / "run.json").read_text() and '"loss_ce"' in (old / "log.jsonl").read_text()
    # compared, not ignored: another soft-target weight is another run
    with pytest.raises(ValueError, match=r"other settings \(alpha_kl\)"):
        Trainer(_cfg(tmp_path, smoke_teacher, "old", max_steps=6, save_every=3, log_every=1, alpha_kl=4.0),
                resume=True, progress=False).setup()
    resumed = Trainer(_cfg(tmp_path, smoke_teacher, "old", max_steps=6, save_every=3, log_every=1), resume=True,
                      progress=False).setup()
    assert resumed.step == 3
    a, b = _weights(full), _weights(resumed.train())
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(x) for x in (old / "log.jsonl").read_text().splitlines()]
    full_log = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7)) and all("loss_ce" not in r for r in log)
    assert [(r["loss"], r["loss_kl"]) for r in log] == [(r["loss"], r["loss_kl"]) for r in full_log]
    config = json.loads((old / "run.json").read_text())["config"]
    assert config["alpha_kl"] == 5.0 and "alpha_ce" not in config


def test_the_committed_cpu_student_run_reads_as_the_cpu_preset(tmp_path):
    """The 2026-12-02 study's cpu/student/run.json (kept in results/experiments/minilm_study_20261202/) predates the
    rename (alpha_ce): it loads, and --resume would compare it equal to the cpu preset's distillation stage; its
    committed log reads with the current term name."""
    from tinydistil import config as C
    from tinydistil.study.results import load_results

    root = Path(__file__).resolve().parents[1] / "results" / "experiments" / "minilm_study_20261202"
    saved = json.loads((root / "cpu" / "student" / "run.json").read_text())["config"]
    assert saved["alpha_ce"] == 5.0 and "alpha_kl" not in saved  # the committed file as it is
    assert C.from_dict(saved).alpha_kl == 5.0
    # the preset's distillation as it was when that run was made (issue 25 changed its length and lr since)
    before = {k: saved[k] for k in ("epochs", "lr", "warmup_frac")}
    assert Trainer(stage_config("cpu", "distill", **before), progress=False).config_diff(saved) == []
    assert Trainer(stage_config("cpu", "distill", alpha_kl=1.0, **before),
                   progress=False).config_diff(saved) == ["alpha_kl"]
    res = load_results(root, "cpu")
    assert res.runs["student"]["run"]["config"]["alpha_kl"] == 5.0
    log = res.runs["student"]["log"]
    assert log and all("loss_kl" in r and "loss_ce" not in r for r in log)


def test_a_run_stopped_before_its_first_checkpoint_restarts_clean(tmp_path, smoke_teacher, monkeypatch):
    cfg = _cfg(tmp_path, smoke_teacher, "r", max_steps=4, save_every=100, log_every=1)
    t = Trainer(cfg, progress=False).setup()
    t.total_steps = 2  # stops after 2 logged updates, no checkpoint (save_every 100)
    t.save_checkpoint = lambda: None
    t.train()
    (tmp_path / "r" / "summary.json").unlink()
    import shutil
    shutil.rmtree(tmp_path / "r" / "model")
    import tinydistil.rundir as R

    monkeypatch.setattr(R, "run_info", lambda: {"command": "second call", "git_sha": "b" * 40, "machine": {},
                                                "started": "later"})
    Trainer(cfg, resume=True, progress=False).setup().train()
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    # every update was trained by the second call, so run.json is that call's (not the first's)
    assert run["command"] == "second call" and "resumed" not in run and run["config"]["max_steps"] == 4
    steps = [json.loads(x)["step"] for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the first call's lines for updates 1-2 are not left beside the new ones


def test_student_is_half_depth_distilbert_and_learns(tmp_path, smoke_teacher):
    folder = distill(_cfg(tmp_path, smoke_teacher, "s", max_steps=8, lr=3e-3), progress=False)
    student = DistilBertForMaskedLM.from_pretrained(folder)
    assert student.config.n_layers == 1  # the smoke teacher has 2 layers
    run = json.loads((tmp_path / "s" / "run.json").read_text())
    assert run["config"]["alpha_kl"] == 5.0 and "alpha_ce" not in run["config"] and run["git_sha"]
    # what the run resolved: the corpus file it read (the smoke preset's bundled sample), device and precision
    assert Path(run["data"]).is_file() and Path(run["data"]).is_relative_to(Path(SAMPLE_DATA))
    assert (run["device"], run["precision"]) == ("cpu", "fp32")  # the suite pins TINYDISTIL_CPU_BF16=0
    assert {"cpu_flags", "native_bf16"} <= set(run["machine"])
    log = [json.loads(x) for x in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss_kl"] >= 0 and r["loss_mlm"] > 0 and 0 <= r["loss_cos"] <= 2 for r in log)
    total = [5 * r["loss_kl"] + 2 * r["loss_mlm"] + r["loss_cos"] for r in log]
    assert total == pytest.approx([r["loss"] for r in log], rel=1e-4)


def test_existing_run_is_never_overwritten(tmp_path, smoke_teacher):
    distill(_cfg(tmp_path, smoke_teacher, "r", max_steps=2), progress=False)
    before = (tmp_path / "r" / "model" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        Trainer(_cfg(tmp_path, smoke_teacher, "r", max_steps=2)).setup()
    with pytest.raises(ValueError, match="other settings .*lr"):
        Trainer(_cfg(tmp_path, smoke_teacher, "r", max_steps=2, lr=1e-2), resume=True).setup()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no tinydistil run"):
        Trainer(_cfg(tmp_path, smoke_teacher, "other")).setup()
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "r" / "model" / "model.safetensors").read_bytes() == before


def test_corrupt_checkpoint_gives_clear_error(tmp_path, smoke_teacher):
    distill(_cfg(tmp_path, smoke_teacher, "c", max_steps=2), progress=False)
    (tmp_path / "c" / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot resume from .*state.pt"):
        Trainer(_cfg(tmp_path, smoke_teacher, "c", max_steps=2), resume=True).setup()


def test_mlm_eval_scores_identical_models_identically(tmp_path, smoke_teacher):
    """A student keeping every teacher layer computes the teacher's function, so on the same masked
    blocks it must get the teacher's loss and accuracy; perplexity is exp(loss)."""
    import math

    from transformers import AutoTokenizer, BertForMaskedLM

    from tinydistil.eval.mlm_eval import evaluate_mlm
    from tinydistil.presets import SAMPLE_DATA
    from tinydistil.student import init_student

    teacher = BertForMaskedLM.from_pretrained(smoke_teacher)
    init_student(teacher, layers=list(range(teacher.config.num_hidden_layers))).save_pretrained(tmp_path / "s")
    AutoTokenizer.from_pretrained(smoke_teacher).save_pretrained(tmp_path / "s")
    scores = evaluate_mlm({"t": str(smoke_teacher), "s": str(tmp_path / "s")}, SAMPLE_DATA, "train",
                          block_size=32, max_blocks=40)
    assert scores["t"]["masked_tokens"] == scores["s"]["masked_tokens"] > 100
    assert scores["s"]["mlm_loss"] == pytest.approx(scores["t"]["mlm_loss"], abs=1e-3)
    assert scores["s"]["mlm_accuracy"] == pytest.approx(scores["t"]["mlm_accuracy"], abs=1e-3)
    assert scores["t"]["mlm_perplexity"] == pytest.approx(math.exp(scores["t"]["mlm_loss"]), rel=1e-3)


def test_resume_is_bit_identical_with_the_fused_loss(tmp_path, smoke_teacher, monkeypatch):
    """fused_loss on (the compiled KL + CE chunk): a run stopped at its checkpoint and resumed equals the run that was
    never stopped, and differs from the eager loss only by rounding."""
    from tinydistil import chunked_loss as L

    calls = []
    real = L._fused_forward
    monkeypatch.setattr(L, "_fused_forward", lambda *a: calls.append(1) or real(*a))
    kw = dict(max_steps=4, save_every=2, fused_loss="on")
    full = distill(_cfg(tmp_path, smoke_teacher, "full", **kw), progress=False)
    t = Trainer(_cfg(tmp_path, smoke_teacher, "cut", **kw), progress=False).setup()
    t.total_steps = 2
    t.train()
    (tmp_path / "cut" / "summary.json").unlink()
    folder = Trainer(_cfg(tmp_path, smoke_teacher, "cut", **kw), resume=True, progress=False).setup().train()
    a, b = _weights(full), _weights(folder)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(calls) >= 8  # every update of both runs took the fused path (packed blocks: every row in the KL)
    eager = _weights(distill(_cfg(tmp_path, smoke_teacher, "eager", **{**kw, "fused_loss": "off"}), progress=False))
    assert all(torch.allclose(a[k], eager[k], rtol=1e-3, atol=1e-5) for k in a)
    with pytest.raises(ValueError, match="fused_loss must be on, off or auto"):
        _cfg(tmp_path, smoke_teacher, "bad", fused_loss="yes").validate()


def test_the_sentence_term_is_logged_only_when_it_is_on_and_joins_the_total(tmp_path, smoke_teacher):
    """alpha_sent (beyond the paper, 0 by default): the paper's run logs its three terms only; a run with it on logs
    loss_sent > 0, and each line's total is the weighted sum of all four."""
    def _log(run):
        return [json.loads(x) for x in (Path(run) / "log.jsonl").read_text().splitlines() if x.strip()]

    paper = _log(distill(_cfg(tmp_path, smoke_teacher, "paper", max_steps=2, log_every=1), progress=False).parent)
    assert [k for k in paper[0] if k.startswith("loss")] == ["loss", "loss_kl", "loss_mlm", "loss_cos"]
    on = _log(distill(_cfg(tmp_path, smoke_teacher, "sent", max_steps=2, log_every=1, alpha_sent=3.0),
                      progress=False).parent)
    for r in on:
        assert r["loss_sent"] > 0
        assert r["loss"] == pytest.approx(5 * r["loss_kl"] + 2 * r["loss_mlm"] + r["loss_cos"] + 3 * r["loss_sent"],
                                          rel=1e-4)
