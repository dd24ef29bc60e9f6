"""DistilBERT (D) on sentence tasks: the soft-label loss against hand-worked values, the teacher's training-set
outputs kept per seed, a student fine-tuned against them (GLUE and IMDb through the one runner), and the refusals."""
import json
import math

import numpy as np
import pytest
import torch

from tiny_downstream import fixture_data, one_thread, tiny_models  # noqa: F401
from tinydistil.eval.finetune import FinetuneConfig
from tinydistil.eval.glue import run_glue
from tinydistil.eval.imdb import run_imdb
from tinydistil.eval.runner import Prepared, load_train_logits, save_train_logits, soft_label_loss_fn, train_logits_path
from tinydistil.losses import soft_label_loss

FAST = dict(lr=1e-3, batch_size=16, epochs=1, seeds=2)


def test_classification_loss_hand_worked():
    # student uniform over 2 classes, teacher logits (ln 3, 0); T = 2, gold class 0
    s, t = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])
    p_t = [math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)]  # softmax((ln 3, 0) / 2)
    kl = 4 * sum(p * math.log(p / 0.5) for p in p_t)  # T^2 * KL(p_t || uniform)
    total, task, dist = soft_label_loss(s, torch.tensor([0]), t, temperature=2.0, alpha_task=0.5, alpha_kl=0.5)
    assert task.item() == pytest.approx(math.log(2), rel=1e-6)
    assert dist.item() == pytest.approx(kl, rel=1e-5)
    assert total.item() == pytest.approx(0.5 * math.log(2) + 0.5 * kl, rel=1e-5)


def test_regression_loss_is_mse_to_gold_and_to_teacher():
    total, task, dist = soft_label_loss(torch.tensor([[1.0], [2.0]]), torch.tensor([3.0, 2.0]),
                                        torch.tensor([[2.0], [0.0]]), alpha_task=0.5, alpha_kl=0.5)
    assert task.item() == pytest.approx((4 + 0) / 2) and dist.item() == pytest.approx((1 + 4) / 2)
    assert total.item() == pytest.approx(0.5 * 2 + 0.5 * 2.5)


def test_shape_mismatch_is_one_line():
    with pytest.raises(ValueError, match="differ in shape"):
        soft_label_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 2))


def test_loss_fn_uses_the_teacher_rows_of_the_batch():
    """finetune()'s loss_fn picks the teacher outputs of the batch's dataset rows (idx), not the first rows."""
    teacher = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 1.0]], dtype=np.float32)
    fn = soft_label_loss_fn(Prepared(train=None, extra={"teacher_logits": teacher}))
    model = torch.nn.Linear(4, 2)
    x = torch.randn(2, 4)
    wrap = lambda **b: type("Out", (), {"logits": model(b["x"])})  # noqa: E731
    got = fn(wrap, {"x": x, "labels": torch.tensor([1, 0])}, [2, 0])
    want = soft_label_loss(model(x), torch.tensor([1, 0]), torch.from_numpy(teacher[[2, 0]]))[0]
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert soft_label_loss_fn(Prepared(train=None)) is None  # no teacher: the head's own loss


def test_train_logits_round_trip_and_other_rows_refused(tmp_path):
    save_train_logits(tmp_path, 3, np.ones((4, 2)), [0, 1, 1, 0])
    assert train_logits_path(tmp_path, 3).is_file() and not list(tmp_path.rglob("*.tmp*"))
    assert load_train_logits(tmp_path, 3, [0, 1, 1, 0]).shape == (4, 2)
    with pytest.raises(ValueError, match="another training set"):
        load_train_logits(tmp_path, 3, [0, 1, 1, 1])


def test_glue_d_from_the_teacher_of_the_same_task_and_seed(tmp_path, tiny_models, fixture_data):
    cfg = FinetuneConfig(**FAST)
    teacher_dir = tmp_path / "teacher"
    run_glue(str(tiny_models["bert"]), "sst2,stsb", cfg, teacher_dir, fixture_data, progress=False,
             keep_train_logits=True)
    for task, width in (("sst2", 2), ("stsb", 1)):
        for seed in (0, 1):
            with np.load(train_logits_path(teacher_dir / task, seed)) as f:
                assert f["logits"].shape == (64, width)  # every training row, one output per class
    d = run_glue(str(tiny_models["distilbert"]), "sst2,stsb", cfg, tmp_path / "d", fixture_data, progress=False,
                 soft_from=teacher_dir)
    rec = json.loads((tmp_path / "d" / "stsb" / "seed1.json").read_text())
    assert rec["distilled_from"] == str(teacher_dir / "stsb") and rec["distillation"]["alpha_kl"] == 0.5
    assert all(np.isfinite(float(v)) for v in d["score"])
    # (D) changes the training: the plain student's scores differ from the (D) student's on the same seeds
    plain = run_glue(str(tiny_models["distilbert"]), "sst2,stsb", cfg, tmp_path / "plain", fixture_data,
                     progress=False)
    assert list(plain["seed_scores"]) != list(d["seed_scores"])


def test_d_without_teacher_outputs_is_not_run_with_the_reason(tmp_path, tiny_models, fixture_data):
    cfg = FinetuneConfig(**FAST)
    run_glue(str(tiny_models["bert"]), "sst2", cfg, tmp_path / "teacher", fixture_data, progress=False)  # not kept
    df = run_glue(str(tiny_models["distilbert"]), "sst2", cfg, tmp_path / "d", fixture_data, progress=False,
                  soft_from=tmp_path / "teacher")
    status = json.loads((tmp_path / "d" / "sst2" / "status.json").read_text())
    assert df["score"].iloc[0].startswith("not run") and "no teacher outputs for seed(s) [0, 1]" in status["reason"]


def test_imdb_d_goes_through_the_same_runner(tmp_path, tiny_models, fixture_data):
    cfg = FinetuneConfig(**{**FAST, "seeds": 1})
    run_imdb(str(tiny_models["bert"]), cfg, tmp_path / "teacher", fixture_data, progress=False, keep_train_logits=True)
    run_imdb(str(tiny_models["distilbert"]), cfg, tmp_path / "d", fixture_data, progress=False,
             soft_from=tmp_path / "teacher")
    rec = json.loads((tmp_path / "d" / "seed0.json").read_text())
    assert rec["distilled_from"] == str(tmp_path / "teacher") and 0 <= rec["score"] <= 100
    # a (D) folder is not a plain one: the same folder refuses the other kind of run
    with pytest.raises(ValueError, match="other settings"):
        run_imdb(str(tiny_models["distilbert"]), cfg, tmp_path / "d", fixture_data, progress=False)
