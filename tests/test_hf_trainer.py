"""DistilLoss with any pair of Hugging Face masked LMs: the checks, the terms against an independent computation
from the models' own outputs, DistilTrainer inside transformers.Trainer, and Trainer vs our loop."""
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM, BertModel

from tinydistil.hf_compare import Agreement, trainer_vs_loop
from tinydistil.hf_trainer import DistilTrainer, check_batch, check_pair, distil_terms, freeze
from tinydistil.losses import DistilLoss
from tinydistil.presets import stage_config
from tinydistil.student import init_student


def bert(vocab=64, hidden=32, layers=2, cls=BertForMaskedLM):
    return cls(BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0))


def batch(vocab=64, b=3, length=10):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (b, length), generator=g)
    am = torch.ones(b, length, dtype=torch.long)
    am[1, 7:] = 0  # a padded row: its pad positions must not count
    labels = torch.full((b, length), -100)
    labels[:, 2] = ids[:, 2]
    labels[0, 5] = ids[0, 5]
    return {"input_ids": ids, "attention_mask": am, "labels": labels}


def test_bad_pairs_and_batches_are_one_clear_error_each():
    teacher = bert()
    with pytest.raises(ValueError, match="predicts 64 tokens and the student 80.*same vocabulary"):
        check_pair(teacher, bert(vocab=80))
    with pytest.raises(ValueError, match="hidden size is 32 and the student's 48.*alpha_cos=0.0"):
        check_pair(teacher, bert(hidden=48))
    check_pair(teacher, bert(hidden=48), DistilLoss(alpha_cos=0.0))  # no cosine term: widths may differ
    with pytest.raises(ValueError, match="student is a BertModel, not a masked LM.*AutoModelForMaskedLM"):
        check_pair(teacher, bert(cls=BertModel))
    b = batch()
    del b["attention_mask"]
    with pytest.raises(ValueError, match="no attention_mask.*input_ids, attention_mask and labels"):
        check_batch(b)
    with pytest.raises(ValueError, match="no labels"):
        check_batch({k: v for k, v in batch().items() if k != "labels"})
    with pytest.raises(ValueError, match="training mode"):
        distil_terms(bert().train(), init_student(teacher), batch())


def test_a_mismatched_pair_stops_before_trainer_builds_anything(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(ValueError, match="same vocabulary"):
        DistilTrainer(model=bert(vocab=80), teacher=bert(), args=TrainingArguments(str(tmp_path / "out"), use_cpu=True))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("chunked", [True, False])
def test_terms_equal_an_independent_computation_from_the_models_outputs(chunked):
    teacher = freeze(bert())
    student = init_student(teacher, [1])
    with torch.no_grad():  # move the student away from the teacher so every term is non-trivial
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    b = batch()
    loss = DistilLoss(chunked=chunked, chunk_size=4)
    terms = distil_terms(teacher, student, b, loss)
    value = {k: v.detach() for k, v in terms.items()}
    with torch.no_grad():
        t = teacher(**{k: b[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
        s = student(**{k: b[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
    keep = b["attention_mask"].flatten().bool()
    zt, zs = t.logits.flatten(0, 1)[keep], s.logits.flatten(0, 1)[keep]
    kl = 4 * F.kl_div(F.log_softmax(zs / 2, -1), F.log_softmax(zt / 2, -1), log_target=True, reduction="batchmean")
    ce = F.cross_entropy(s.logits.flatten(0, 1), b["labels"].flatten(), ignore_index=-100)
    cos = (1 - F.cosine_similarity(s.hidden_states[-1].flatten(0, 1)[keep], t.hidden_states[-1].flatten(0, 1)[keep])).mean()
    assert float(value["kl"]) == pytest.approx(float(kl), rel=1e-4) and float(value["kl"]) > 1e-3
    assert float(value["mlm"]) == pytest.approx(float(ce), rel=1e-5)
    assert float(value["cos"]) == pytest.approx(float(cos), rel=1e-4) and float(value["cos"]) > 1e-4
    assert float(value["total"]) == pytest.approx(float(5 * kl + 2 * ce + cos), rel=1e-4)
    terms["total"].backward()  # the student's gradient exists, the teacher's does not
    assert student.vocab_projector.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_distil_trainer_trains_the_student_with_named_terms_logged(tmp_path):
    from transformers import TrainingArguments

    teacher = bert()
    student = init_student(teacher, [0])
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    data = [{k: v[i] for k, v in batch().items()} for i in range(3)] * 2
    trainer = DistilTrainer(model=student, teacher=teacher.train(), train_dataset=data,
                            args=TrainingArguments(str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2,
                                                   logging_steps=1, use_cpu=True, report_to="none", save_strategy="no",
                                                   disable_tqdm=True, learning_rate=1e-3))
    assert not trainer.teacher.training  # frozen in eval mode whatever it was given in
    trainer.train()
    logs = [r for r in trainer.state.log_history if "loss_total" in r]
    assert [r["step"] for r in logs] == [1, 2, 3]
    for r in logs:  # the terms add up to the total with the paper's weights
        assert r["loss_total"] == pytest.approx(5 * r["loss_kl"] + 2 * r["loss_mlm"] + r["loss_cos"], rel=1e-5)
        assert r["loss"] == pytest.approx(r["loss_total"], rel=1e-3)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_agreement_is_refused_outside_its_tolerance():
    a = Agreement(steps=[1, 2], loop={"total": [10.0, 9.0]}, trainer={"total": [10.0, 9.0 + 2e-3]})
    assert not a.ok and a.worst()["total"] > 1
    assert Agreement(steps=[1, 2], loop={"total": [10.0, 9.0]}, trainer={"total": [10.0, 9.0005]}).ok


def test_trainer_and_loop_curves_agree_on_smoke(tmp_path, smoke_teacher):
    cfg = stage_config("smoke", "distill", teacher=str(smoke_teacher), max_steps=4)
    a = trainer_vs_loop(cfg, tmp_path / "cmp")
    assert a.ok, a.summary()
    assert a.steps == [1, 2, 3, 4] and set(a.loop) == {"total", "kl", "mlm", "cos", "lr", "grad_norm"}
    assert min(a.loop["kl"][1:]) > 0 and a.loop["total"][0] > 1  # real curves, not zeros
    assert trainer_vs_loop(cfg, tmp_path / "cmp").trainer == a.trainer  # a finished comparison is read back
