"""benchmarks/roofline.py: the analytic FLOP counts against torch's FlopCounterMode on tiny models, a hand-worked
count at the cpu preset's sizes, and the matmul probe's arithmetic."""
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from roofline import (Encoder, MatmulProbe, attention_bmms, distill_gemms, distill_step_flops,  # noqa: E402
                      encoder_gemms, finetune_step_flops, forward_flops)

from tinydistil.losses import DistilLoss  # noqa: E402
from tinydistil.mlm import mlm_parts  # noqa: E402
from tinydistil.student import init_student  # noqa: E402


def test_cpu_preset_count_by_hand():
    """The issue's numbers: teacher 6 x 384 (FFN 1536), student 3 x 384, V = 30,522, L = 128."""
    t, s = Encoder(6, 384, 1536, 12), Encoder(3, 384, 1536, 12)
    layer = 8 * 384**2 + 4 * 384 * 1536 + 4 * 128 * 384  # 1,179,648 + 2,359,296 + 196,608
    assert layer == 3_735_552
    head = 2 * 384**2 + 2 * 384 * 30522
    f = distill_step_flops(t, s, 30522, 128)
    assert f["teacher_layers_fwd"] + f["teacher_head_fwd"] == 6 * layer + head  # 46.1 M
    assert f["student_layers_fwd"] + f["student_head_fwd"] == 3 * layer + head  # 34.9 M
    assert f["total"] == 6 * layer + head + 3 * (3 * layer + head) == 150_976_512
    assert f["vocab_share"] == pytest.approx(4 * 2 * 384 * 30522 / 150_976_512)  # 62 %


# eager attention: FlopCounterMode has no formula for CPU's fused SDPA kernel, it counts the eager matmuls
def tiny_teacher(vocab=97, hidden=32, layers=2, inter=48, heads=4):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=inter, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, attn_implementation="eager")
    return BertForMaskedLM(cfg)


def addmm_(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def test_distill_step_count_matches_flop_counter():
    """A whole distillation step (teacher forward, student forward, chunked KL + CE, backward) on a tiny model
    counts what FlopCounterMode sees, exactly."""
    teacher = tiny_teacher().eval().requires_grad_(False)
    student = init_student(teacher, [0, 1], seed=0).train()
    student.set_attn_implementation("eager")
    B, L, V = 3, 16, teacher.config.vocab_size
    ids = torch.randint(5, V, (B, L))
    am = torch.ones(B, L, dtype=torch.long)
    labels = torch.full((B * L,), -100)
    labels[::4] = ids.flatten()[::4]
    loss = DistilLoss(chunk_size=7)  # several chunks, a ragged last one
    # the in-place addmm_ (the loss accumulates the projection's weight gradient with it) has no formula there
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_}) as fc:
        with torch.inference_mode():
            t = mlm_parts(teacher, ids, am)
        t = t._replace(hidden=t.hidden.clone(), feats=t.feats.clone())
        s = mlm_parts(student, ids, am)
        loss(s, labels, am, t)["total"].backward()
    want = distill_step_flops(Encoder.of(teacher.config), Encoder.of(student.config), V, L)["total"] * B * L
    assert fc.get_total_flops() == want


@pytest.mark.parametrize("n_labels", [1, 3])
def test_finetune_step_count_matches_flop_counter(n_labels):
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=64,
                           num_labels=n_labels, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0,
                           attn_implementation="eager")
    model = DistilBertForSequenceClassification(cfg).train()
    B, L = 4, 12
    ids = torch.randint(5, 97, (B, L))
    with FlopCounterMode(display=False) as fc:
        model(input_ids=ids, attention_mask=torch.ones(B, L, dtype=torch.long)).logits.sum().backward()
    assert fc.get_total_flops() == finetune_step_flops(Encoder.of(cfg), L, n_labels, tokens=B * L, sequences=B)


def test_probe_shapes_carry_the_step_flops():
    """The probe's GEMMs and attention products add up to the analytic count (less the vocabulary and head)."""
    enc, B, L = Encoder(3, 32, 48, 4), 2, 8
    gemm = sum(2 * m * k * n * c for _, m, k, n, c in encoder_gemms(enc, B * L, trained=True))
    bmm = sum(2 * b * m * k * n * c for _, b, m, k, n, c in attention_bmms(enc, B, L, trained=True))
    assert gemm + bmm == 3 * forward_flops(enc, L) * B * L
    gemm_f = sum(2 * m * k * n * c for _, m, k, n, c in encoder_gemms(enc, B * L, trained=False))
    bmm_f = sum(2 * b * m * k * n * c for _, b, m, k, n, c in attention_bmms(enc, B, L, trained=False))
    assert gemm_f + bmm_f == forward_flops(enc, L) * B * L


def test_distill_probe_shapes_are_the_step():
    t, s, V, B, L = Encoder(3, 32, 48, 4), Encoder(2, 32, 48, 4), 50, 2, 8
    gemms, bmms = distill_gemms(t, s, V, B, L)
    total = sum(2 * m * k * n * c for _, m, k, n, c in gemms) + sum(2 * b * m * k * n * c for _, b, m, k, n, c in bmms)
    assert total == distill_step_flops(t, s, V, L)["total"] * B * L
    assert len({g[1:4] for g in gemms}) == len(gemms)  # one probe call per distinct shape


def test_probe_rate_is_flop_weighted():
    probe = MatmulProbe([("fwd", 8, 8, 8, 3)], [("QK", 2, 4, 4, 4, 1)])
    probe.round()
    probe.times = [[1.0, 3.0, 2.0], [0.5]]  # medians 2.0 and 0.5 s
    assert probe.rate() == pytest.approx((3 * 2 * 8**3 + 2 * 2 * 4**3) / (3 * 2.0 + 0.5) / 1e9)
