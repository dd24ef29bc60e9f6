"""runtime.cast_frozen_linears: the frozen teacher's Linear weights cast to bf16 once (issue 28) change nothing
that bf16 autocast computes, and the student is still initialised from the float32 teacher."""
import copy

import torch
from transformers import BertConfig, BertForMaskedLM

from tinydistil import runtime as R
from tinydistil.losses import DistilLoss
from tinydistil.mlm import mlm_parts
from tinydistil.presets import stage_config
from tinydistil.train import Trainer


def _teacher():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                     max_position_embeddings=64)
    return BertForMaskedLM(cfg).eval().requires_grad_(False)


def test_cast_teacher_outputs_under_bf16_autocast_are_bit_identical():
    plain = _teacher()
    cast = copy.deepcopy(plain)
    tied = cast.cls.predictions.decoder.weight
    assert R.cast_frozen_linears(cast, "bf16") == 2 * 6 + 1  # Q, K, V, O, FFN in/out per layer + head transform
    assert tied.dtype == torch.float32  # the decoder shares the word embeddings: left float32
    assert cast.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 101, (3, 16), generator=g)
    am = torch.ones(3, 16, dtype=torch.long)
    am[0, 10:] = 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = mlm_parts(plain, ids, am), mlm_parts(cast, ids, am)
    for name, x, y in zip(a._fields, a, b):
        assert torch.equal(x, y), name
    # and the loss that consumes them (student = a float32 copy, the same for both)
    student = mlm_parts(_teacher().train(), ids, am)
    labels = torch.full((3, 16), -100)
    labels[:, ::5] = ids[:, ::5]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        la = DistilLoss(chunk_size=8)(student, labels, am, a)
        lb = DistilLoss(chunk_size=8)(student, labels, am, b)
    assert all(torch.equal(la[k], lb[k]) for k in la)


def test_cast_is_bf16_only_and_skips_trained_layers():
    m = _teacher()
    assert R.cast_frozen_linears(m, "fp32") == 0 and R.cast_frozen_linears(m, "fp16") == 0
    m.requires_grad_(True)
    assert R.cast_frozen_linears(m, "bf16") == 0
    assert all(p.dtype == torch.float32 for p in m.parameters())


def test_trainer_casts_the_teacher_after_initialising_the_student(tmp_path, smoke_teacher):
    students = {}
    for prec in ("fp32", "bf16"):
        cfg = stage_config("smoke", "distill", teacher=str(smoke_teacher), output_dir=str(tmp_path / prec),
                           precision=prec)
        t = Trainer(cfg, progress=False).setup()
        dtypes = {p.dtype for n, p in t.teacher.named_parameters() if "attention.self.query" in n}
        assert dtypes == {torch.bfloat16 if prec == "bf16" else torch.float32}
        assert all(p.dtype == torch.float32 for p in t.model.parameters())
        students[prec] = t.model.state_dict()
        t.release()
    for k, v in students["fp32"].items():  # the student starts from the float32 teacher either way
        assert torch.equal(v, students["bf16"][k]), k
