"""The triple loss: each term against an independent straightforward computation, the empty-selection
guards, and the chunked fused KL + CE against the plain full-logits computation (value and gradients)."""
import math

import pytest
import torch
import torch.nn.functional as F

from tinydistil.losses import (DistilLoss, chunked_kl_ce, hidden_cosine_loss, mlm_cross_entropy,
                               soft_target_kl)
from tinydistil.mlm import MLMParts


# ------------------------------------------------------------------ independent references (float64)
def _softmax_rows(z):
    z = z - z.max(dim=-1, keepdim=True).values
    e = z.exp()
    return e / e.sum(dim=-1, keepdim=True)


def ref_kl(student, teacher, T):
    """T^2 * mean over rows of sum_v p_t (log p_t - log p_s), written out explicitly."""
    s, t = student.double(), teacher.double()
    total = 0.0
    for i in range(s.shape[0]):
        ps = _softmax_rows(s[i] / T)
        pt = _softmax_rows(t[i] / T)
        total += float((pt * (pt.log() - ps.log())).sum())
    return T * T * total / s.shape[0]


def ref_ce(logits, labels):
    z = logits.double()
    vals = []
    for i in range(z.shape[0]):
        if int(labels[i]) == -100:
            continue
        m = float(z[i].max())
        lse = m + math.log(float((z[i] - m).exp().sum()))
        vals.append(lse - float(z[i, labels[i]]))
    return sum(vals) / len(vals)


def ref_cos(hs, ht, mask):
    vals = []
    for i in range(hs.shape[0]):
        if not bool(mask[i]):
            continue
        a, b = hs[i].double(), ht[i].double()
        vals.append(1.0 - float(a @ b) / (float(a.norm()) * float(b.norm())))
    return sum(vals) / len(vals)


# ------------------------------------------------------------------ soft_target_kl
def test_kl_hand_worked_two_classes():
    # p_t = (3/4, 1/4) (logits ln3, 0 at T=1), p_s = (1/2, 1/2)
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    s = torch.tensor([[0.0, 0.0]])
    got1 = soft_target_kl(s, torch.tensor([[math.log(3.0), 0.0]]), 1.0)
    assert float(got1) == pytest.approx(expected, rel=1e-6)
    # at T=2 the teacher logits (2 ln3, 0) give the same p_t; the value is multiplied by T^2 = 4
    got2 = soft_target_kl(s, torch.tensor([[2 * math.log(3.0), 0.0]]), 2.0)
    assert float(got2) == pytest.approx(4 * expected, rel=1e-6)
    # and KL(p || p) = 0
    assert float(soft_target_kl(s, s, 2.0)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("T", [1.0, 2.0, 3.5])
def test_kl_matches_explicit_sum(T):
    g = torch.Generator().manual_seed(1)
    s = torch.randn(7, 11, generator=g) * 3
    t = torch.randn(7, 11, generator=g) * 3
    assert float(soft_target_kl(s, t, T)) == pytest.approx(ref_kl(s, t, T), rel=1e-5, abs=1e-7)


def test_kl_is_mean_over_rows_not_sum():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    per_row = [float(soft_target_kl(s[i:i + 1], t[i:i + 1], 2.0)) for i in range(4)]
    assert float(soft_target_kl(s, t, 2.0)) == pytest.approx(sum(per_row) / 4, rel=1e-5)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_kl_gradient_is_T_times_prob_difference(T):
    # d/dz_s [T^2 KL(p_t || p_s)] / n = T (p_s - p_t) / n : the T^2 factor keeps gradients O(T)
    g = torch.Generator().manual_seed(3)
    s = (torch.randn(5, 9, generator=g) * 2).requires_grad_()
    t = torch.randn(5, 9, generator=g) * 2
    soft_target_kl(s, t, T).backward()
    expected = T * (_softmax_rows(s.detach().double() / T) - _softmax_rows(t.double() / T)) / 5
    torch.testing.assert_close(s.grad.double(), expected, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ mlm_cross_entropy
def test_ce_matches_manual_mean_and_ignores_minus_100():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(9, 13, generator=g) * 2
    labels = torch.tensor([3, -100, 0, 12, -100, -100, 7, 7, -100])
    assert float(mlm_cross_entropy(z, labels)) == pytest.approx(ref_ce(z, labels), rel=1e-5)
    # changing logits of ignored rows changes nothing
    z2 = z.clone()
    z2[labels == -100] = torch.randn(4, 13, generator=g) * 10
    assert float(mlm_cross_entropy(z2, labels)) == pytest.approx(float(mlm_cross_entropy(z, labels)), rel=1e-6)


def test_ce_hand_worked():
    # two equal logits: CE = ln 2 on one row; a row with logit ln3 vs 0 on the label: ln(4/3)
    z = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    assert float(mlm_cross_entropy(z, torch.tensor([1, 0]))) == pytest.approx(
        (math.log(2) + math.log(4 / 3)) / 2, rel=1e-6)


# ------------------------------------------------------------------ hidden_cosine_loss
def test_cosine_matches_manual_over_masked_rows():
    g = torch.Generator().manual_seed(5)
    hs, ht = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1], dtype=torch.bool)
    assert float(hidden_cosine_loss(hs, ht, mask)) == pytest.approx(ref_cos(hs, ht, mask), rel=1e-5)


def test_cosine_hand_worked():
    hs = torch.tensor([[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    ht = torch.tensor([[0.0, 2.0], [2.0, 2.0], [-1.0, 7.0]])
    # rows 0 (orthogonal: 1) and 1 (parallel: 0); row 2 masked out
    assert float(hidden_cosine_loss(hs, ht, torch.tensor([True, True, False]))) == pytest.approx(0.5, abs=1e-6)


# ------------------------------------------------------------------ empty-selection guards
def _assert_zero_with_zero_grad(loss, leaf):
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert leaf.grad is not None
    assert torch.isfinite(leaf.grad).all()
    assert torch.count_nonzero(leaf.grad) == 0


def test_guard_ce_all_ignored():
    z = torch.randn(4, 7, requires_grad=True)
    _assert_zero_with_zero_grad(mlm_cross_entropy(z, torch.full((4,), -100)), z)


def test_guard_cosine_all_masked():
    hs = torch.randn(4, 7, requires_grad=True)
    _assert_zero_with_zero_grad(hidden_cosine_loss(hs, torch.randn(4, 7), torch.zeros(4, dtype=torch.bool)), hs)


def test_guard_kl_no_rows():
    z = torch.randn(4, 7, requires_grad=True)
    sel = torch.zeros(4, dtype=torch.bool)
    _assert_zero_with_zero_grad(soft_target_kl(z[sel], torch.randn(4, 7)[sel], 2.0), z)


def test_guard_chunked_nothing_selected():
    feats = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(6, 4, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    loss, kl, ce = chunked_kl_ce(feats, w, b, teacher_feats=torch.randn(5, 3), teacher_weight=torch.randn(6, 3),
                                 teacher_bias=torch.randn(6), kl_rows=torch.zeros(5, dtype=torch.bool),
                                 labels=torch.full((5,), -100), temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0,
                                 chunk_size=2)
    assert float(kl) == 0.0 and float(ce) == 0.0
    _assert_zero_with_zero_grad(loss, feats)
    for p in (w, b):
        assert torch.isfinite(p.grad).all() and torch.count_nonzero(p.grad) == 0


# ------------------------------------------------------------------ chunked_kl_ce vs the plain computation
N, D, DT, V = 13, 8, 6, 20


def _problem(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(N, D, generator=g, dtype=dtype)
    w = torch.randn(V, D, generator=g, dtype=dtype) * 0.5
    b = torch.randn(V, generator=g, dtype=dtype) * 0.5
    tf = torch.randn(N, DT, generator=g, dtype=dtype)
    tw = torch.randn(V, DT, generator=g, dtype=dtype) * 0.5
    tb = torch.randn(V, generator=g, dtype=dtype) * 0.5
    # rows 0,1 pad (neither), rows with KL only, rows with KL and CE, one CE row outside kl_rows
    kl_rows = torch.tensor([0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
    labels = torch.tensor([-100, -100, 4, -100, -100, 19, -100, 0, -100, 7, -100, -100, 3])
    return feats, w, b, tf, tw, tb, kl_rows, labels


def _plain(feats, w, b, tf, tw, tb, kl_rows, labels, T, a_kl, a_ce):
    z = feats @ w.T + b
    ce = mlm_cross_entropy(z, labels)
    if tf is None:
        kl = torch.zeros((), dtype=ce.dtype)
    else:
        zt = tf @ tw.T + tb
        kl = soft_target_kl(z[kl_rows], zt[kl_rows], T)
    return a_kl * kl + a_ce * ce, kl, ce


def _grads(fn, feats, w, b, upstream=1.0):
    leaves = [x.clone().requires_grad_() for x in (feats, w, b)]
    total, kl, ce = fn(*leaves)
    (upstream * total).backward()
    return total.detach(), kl.detach(), ce.detach(), [x.grad for x in leaves]


@pytest.mark.parametrize("chunk", [1, 7, N, N + 5])
@pytest.mark.parametrize("case", ["full", "no_teacher", "alpha_mlm_zero", "alpha_kl_zero", "no_ce_rows",
                                  "no_kl_rows"])
def test_chunked_equals_plain(chunk, case):
    feats, w, b, tf, tw, tb, kl_rows, labels = _problem(seed=11)
    T, a_kl, a_ce = 2.0, 5.0, 2.0
    if case == "no_teacher":
        tf = tw = tb = None
    elif case == "alpha_mlm_zero":
        a_ce = 0.0
    elif case == "alpha_kl_zero":
        a_kl = 0.0
    elif case == "no_ce_rows":
        labels = torch.full_like(labels, -100)
    elif case == "no_kl_rows":
        kl_rows = torch.zeros_like(kl_rows)

    def chunked(f, w_, b_):
        return chunked_kl_ce(f, w_, b_, teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=kl_rows,
                             labels=labels, temperature=T, alpha_kl=a_kl, alpha_mlm=a_ce, chunk_size=chunk)

    def plain(f, w_, b_):
        if case == "no_kl_rows":  # no KL row: the plain KL is the empty-selection 0
            z = f @ w_.T + b_
            ce = mlm_cross_entropy(z, labels)
            return a_ce * ce, torch.zeros(()), ce
        return _plain(f, w_, b_, tf, tw, tb, kl_rows, labels, T, a_kl, a_ce)

    c_tot, c_kl, c_ce, c_g = _grads(chunked, feats, w, b, upstream=0.7)
    p_tot, p_kl, p_ce, p_g = _grads(plain, feats, w, b, upstream=0.7)
    assert float(c_tot) == pytest.approx(float(p_tot), rel=1e-5, abs=1e-6)
    assert float(c_kl) == pytest.approx(float(p_kl), rel=1e-5, abs=1e-6)
    assert float(c_ce) == pytest.approx(float(p_ce), rel=1e-5, abs=1e-6)
    for name, cg, pg in zip(("feats", "weight", "bias"), c_g, p_g):
        torch.testing.assert_close(cg, pg, rtol=1e-4, atol=1e-6, msg=f"gradient wrt {name}")


def test_chunked_kl_and_ce_outputs_carry_no_gradient_and_total_is_weighted_sum():
    feats, w, b, tf, tw, tb, kl_rows, labels = _problem(seed=12)
    feats.requires_grad_()
    total, kl, ce = chunked_kl_ce(feats, w, b, teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=kl_rows,
                                  labels=labels, temperature=3.0, alpha_kl=1.5, alpha_mlm=0.25, chunk_size=4)
    assert total.requires_grad and not kl.requires_grad and not ce.requires_grad
    assert float(total.detach()) == pytest.approx(1.5 * float(kl) + 0.25 * float(ce), rel=1e-6)
    # against the independent references too
    z = (feats @ w.T + b).detach()
    zt = tf @ tw.T + tb
    assert float(kl) == pytest.approx(ref_kl(z[kl_rows], zt[kl_rows], 3.0), rel=1e-5)
    assert float(ce) == pytest.approx(ref_ce(z, labels), rel=1e-5)


def test_chunked_teacher_gets_no_gradient():
    feats, w, b, tf, tw, tb, kl_rows, labels = _problem(seed=13)
    tf.requires_grad_()
    tw.requires_grad_()
    feats.requires_grad_()
    total, _, _ = chunked_kl_ce(feats, w, b, teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=kl_rows,
                                labels=labels, temperature=2.0, alpha_kl=1.0, alpha_mlm=1.0, chunk_size=5)
    total.backward()
    assert tf.grad is None and tw.grad is None
    assert feats.grad is not None and torch.count_nonzero(feats.grad) > 0


def test_chunked_float64_matches_float64_autograd():
    feats, w, b, tf, tw, tb, kl_rows, labels = _problem(seed=14, dtype=torch.float64)

    def chunked(f, w_, b_):
        return chunked_kl_ce(f, w_, b_, teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=kl_rows,
                             labels=labels, temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, chunk_size=3)

    def plain(f, w_, b_):
        return _plain(f, w_, b_, tf, tw, tb, kl_rows, labels, 2.0, 5.0, 2.0)

    c_tot, _, _, c_g = _grads(chunked, feats, w, b)
    p_tot, _, _, p_g = _grads(plain, feats, w, b)
    assert float(c_tot) == pytest.approx(float(p_tot), rel=1e-5)
    for cg, pg in zip(c_g, p_g):
        assert cg.dtype == torch.float64  # gradients come back in the parameter dtype
        torch.testing.assert_close(cg, pg, rtol=1e-4, atol=1e-6)


def test_chunked_gradcheck_loose():
    """Finite differences (the function computes in float32 internally, hence the loose tolerances)."""
    g = torch.Generator().manual_seed(15)
    n, d, v = 4, 3, 5
    feats = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(v, generator=g, dtype=torch.float64, requires_grad=True)
    tf, tw, tb = torch.randn(n, 2, dtype=torch.float64), torch.randn(v, 2, dtype=torch.float64), torch.randn(v, dtype=torch.float64)
    kl_rows = torch.tensor([1, 1, 0, 1], dtype=torch.bool)
    labels = torch.tensor([2, -100, 4, 0])

    def f(x, w_, b_):
        return chunked_kl_ce(x, w_, b_, teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=kl_rows,
                             labels=labels, temperature=2.0, alpha_kl=1.0, alpha_mlm=1.0, chunk_size=3)[0]

    assert torch.autograd.gradcheck(f, (feats, w, b), eps=1e-3, atol=2e-3, rtol=2e-2)


# ------------------------------------------------------------------ DistilLoss: the assembled objective
def _parts(seed=0, B=3, L=5, D=8, V=20):
    g = torch.Generator().manual_seed(seed)
    s = MLMParts(torch.randn(B, L, D, generator=g), torch.randn(B, L, D, generator=g),
                 torch.randn(V, D, generator=g) * 0.5, torch.randn(V, generator=g) * 0.5)
    t = MLMParts(torch.randn(B, L, D, generator=g), torch.randn(B, L, D, generator=g),
                 torch.randn(V, D, generator=g) * 0.5, torch.randn(V, generator=g) * 0.5)
    am = torch.ones(B, L, dtype=torch.long)
    am[0, 3:] = 0  # padding
    labels = torch.full((B, L), -100)
    labels[0, 1], labels[1, 0], labels[2, 4] = 3, 17, 0
    return s, t, am, labels


def _reference_step(s, t, am, labels, T, a_kl, a_mlm, a_cos, masked_only=False):
    """The reference distiller's step() written out: full logits, masked_select, KLDivLoss(batchmean) * T^2,
    CrossEntropyLoss(ignore_index=-100), CosineEmbeddingLoss(target 1) over non-pad positions."""
    z_s = s.feats @ s.weight.T + s.bias
    z_t = t.feats @ t.weight.T + t.bias
    sel = (labels != -100) if masked_only else am.bool()
    V = z_s.shape[-1]
    zs_sel, zt_sel = z_s[sel].view(-1, V), z_t[sel].view(-1, V)
    kl = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(zs_sel / T, -1), F.softmax(zt_sel / T, -1)) * T**2
    mlm = torch.nn.CrossEntropyLoss(ignore_index=-100)(z_s.view(-1, V), labels.view(-1))
    hs, ht = s.hidden[am.bool()], t.hidden[am.bool()]
    cos = torch.nn.CosineEmbeddingLoss(reduction="mean")(hs, ht, torch.ones(hs.shape[0]))
    return {"kl": kl, "mlm": mlm, "cos": cos, "total": a_kl * kl + a_mlm * mlm + a_cos * cos}


@pytest.mark.parametrize("masked_only", [False, True])
@pytest.mark.parametrize("chunked", [True, False])
def test_distil_loss_equals_the_reference_step(chunked, masked_only):
    s, t, am, labels = _parts(seed=3)
    loss = DistilLoss(temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, alpha_cos=1.0, kl_on_masked_only=masked_only,
                      chunked=chunked, chunk_size=4)
    leaves = [x.clone().requires_grad_() for x in (s.hidden, s.feats, s.weight, s.bias)]
    got = loss(MLMParts(*leaves), labels, am, t)
    got["total"].backward()
    ref_leaves = [x.clone().requires_grad_() for x in (s.hidden, s.feats, s.weight, s.bias)]
    ref = _reference_step(MLMParts(*ref_leaves), t, am, labels, 2.0, 5.0, 2.0, 1.0, masked_only)
    ref["total"].backward()
    for k in ("kl", "mlm", "cos", "total"):
        assert float(got[k].detach()) == pytest.approx(float(ref[k].detach()), rel=1e-5), k
        assert got[k].dtype == torch.float32
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


def test_sentence_cosine_hand_worked():
    from tinydistil.losses import sentence_cosine_loss

    # sequence 0: tokens (1,0) and (3,0) pool to (2,0); the teacher's (0,1),(0,5) to (0,3): orthogonal -> 1.
    # sequence 1: its second token is padding, so the student pools to (1,1) and the teacher to (2,2): parallel -> 0.
    hs = torch.tensor([[[1.0, 0.0], [3.0, 0.0]], [[1.0, 1.0], [-9.0, 4.0]]])
    ht = torch.tensor([[[0.0, 1.0], [0.0, 5.0]], [[2.0, 2.0], [7.0, -7.0]]])
    am = torch.tensor([[1, 1], [1, 0]])
    assert float(sentence_cosine_loss(hs, ht, am)) == pytest.approx(0.5, abs=1e-6)
    # a sequence without tokens is left out of the mean; none at all: 0 with a zero gradient
    am3 = torch.tensor([[1, 1], [0, 0]])
    assert float(sentence_cosine_loss(hs, ht, am3)) == pytest.approx(1.0, abs=1e-6)
    leaf = hs.clone().requires_grad_()
    _assert_zero_with_zero_grad(sentence_cosine_loss(leaf, ht, torch.zeros(2, 2)), leaf)


@pytest.mark.parametrize("chunked", [True, False])
def test_the_sentence_term_adds_its_weighted_value_and_is_off_by_default(chunked):
    from tinydistil.losses import sentence_cosine_loss

    s, t, am, labels = _parts(seed=4)
    base = DistilLoss(chunked=chunked, chunk_size=4)
    assert base.alpha_sent == 0.0 and "sent" not in base(s, labels, am, t)  # the paper's objective: three terms
    on = DistilLoss(chunked=chunked, chunk_size=4, alpha_sent=3.0)(s, labels, am, t)
    want = float(sentence_cosine_loss(s.hidden, t.hidden, am))
    assert float(on["sent"]) == pytest.approx(want, rel=1e-6) and want > 0
    assert float(on["total"]) == pytest.approx(float(base(s, labels, am, t)["total"]) + 3.0 * want, rel=1e-5)


def test_objective_text_names_the_sentence_term_only_when_it_is_on():
    from tinydistil.losses import objective_text

    paper = {"alpha_kl": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0}  # a run made before the term existed
    assert objective_text(paper) == objective_text({**paper, "alpha_sent": 0.0})
    assert "mean h_s" not in objective_text(paper) and objective_text(paper).count("+") == 2
    assert objective_text({**paper, "alpha_sent": 2.0}).endswith("+ 2·(1 − cos(mean h_s, mean h_t))")


def test_mlm_only_is_the_masked_cross_entropy():
    s, _, am, labels = _parts(seed=5)
    got = DistilLoss.mlm_only()(s, labels, am)
    z = s.feats.flatten(0, 1) @ s.weight.T + s.bias
    assert float(got["total"]) == pytest.approx(float(F.cross_entropy(z, labels.flatten(), ignore_index=-100)), rel=1e-5)
    assert float(got["kl"]) == 0.0 and float(got["cos"]) == 0.0


def test_distil_loss_from_config_takes_the_kl_weight_by_its_one_name():
    from tinydistil.config import DistillConfig, from_dict, replace, to_dict

    loss = DistilLoss.from_config(DistillConfig(alpha_kl=3.0, alpha_mlm=0.5, alpha_cos=0.0, temperature=4.0,
                                                restrict_ce_to_mask=True))
    assert (loss.alpha_kl, loss.alpha_mlm, loss.alpha_cos, loss.temperature, loss.kl_on_masked_only) == (
        3.0, 0.5, 0.0, 4.0, True)
    # the earlier name (alpha_ce, the reference distiller's) still reads, as the same field
    saved = {("alpha_ce" if k == "alpha_kl" else k): v for k, v in to_dict(DistillConfig(alpha_kl=3.0)).items()}
    assert from_dict(saved) == DistillConfig(alpha_kl=3.0) and replace(DistillConfig(), alpha_ce=0.0).alpha_kl == 0.0
    with pytest.raises(ValueError, match="alpha_ce is the earlier name of alpha_kl"):
        replace(DistillConfig(), alpha_ce=1.0, alpha_kl=2.0)


# ------------------------------------------------------------------ the compiled fused chunk (issue 28)
def _all_kl_problem(seed=21):
    feats, w, b, tf, tw, tb, _, labels = _problem(seed=seed)
    return feats, w, b, tf, tw, tb, torch.ones(N, dtype=torch.bool), labels


@pytest.mark.parametrize("upstream", [1.0, 0.7])
@pytest.mark.parametrize("chunk", [4, N])
def test_fused_chunk_equals_plain(chunk, upstream):
    """Every row in the KL (packed blocks): the compiled kernel's loss and gradients are the plain computation's."""
    feats, w, b, tf, tw, tb, kl_rows, labels = _all_kl_problem()

    def fused(f, w_, b_):
        return chunked_kl_ce(f, w_, b_, teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=kl_rows,
                             labels=labels, temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, chunk_size=chunk, fused="on")

    def plain(f, w_, b_):
        return _plain(f, w_, b_, tf, tw, tb, kl_rows, labels, 2.0, 5.0, 2.0)

    f_tot, f_kl, f_ce, f_g = _grads(fused, feats, w, b, upstream=upstream)
    p_tot, p_kl, p_ce, p_g = _grads(plain, feats, w, b, upstream=upstream)
    for got, want in ((f_tot, p_tot), (f_kl, p_kl), (f_ce, p_ce)):
        assert float(got) == pytest.approx(float(want), rel=1e-5, abs=1e-6)
    for name, fg, pg in zip(("feats", "weight", "bias"), f_g, p_g):
        torch.testing.assert_close(fg, pg, rtol=1e-4, atol=1e-6, msg=f"gradient wrt {name}")


def test_fused_chunk_runs_only_where_every_row_enters_the_kl(monkeypatch):
    """Padding or KL on masked rows only: the eager loop, bit for bit as with fused off."""
    from tinydistil import chunked_loss as L

    feats, w, b, tf, tw, tb, kl_rows, labels = _problem(seed=22)  # rows 0, 1, 7 outside the KL
    monkeypatch.setattr(L, "_fused_forward", lambda *a, **k: pytest.fail("the fused chunk ran on a partial KL"))
    outs = [chunked_kl_ce(feats, w, b, teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=kl_rows,
                          labels=labels, temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, chunk_size=5, fused=f)
            for f in ("on", "off")]
    assert all(torch.equal(x, y) for x, y in zip(*outs))


def test_fused_chunk_falls_back_to_the_eager_loop_with_one_warning(monkeypatch):
    from tinydistil import chunked_loss as L

    def broken(*a, **k):
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore detail")

    monkeypatch.setitem(L._COMPILED, "chunk", broken)
    feats, w, b, tf, tw, tb, kl_rows, labels = _all_kl_problem(seed=23)
    kw = dict(teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=kl_rows, labels=labels,
              temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, chunk_size=5)
    with pytest.warns(RuntimeWarning, match=r"torch.compile of the fused KL\+CE chunk failed \(RuntimeError: "
                                            r"InvalidCxxCompiler: no working C\+\+ compiler found\)"):
        got = chunked_kl_ce(feats, w, b, fused="on", **kw)
    want = chunked_kl_ce(feats, w, b, fused="off", **kw)
    assert all(torch.equal(x, y) for x, y in zip(got, want))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call neither warns nor tries again
        again = chunked_kl_ce(feats, w, b, fused="on", **kw)
    assert all(torch.equal(x, y) for x, y in zip(again, want))


def test_fused_and_eager_chunks_under_bf16_autocast_agree_with_the_float32_loss():
    """bf16 projections, float32 softmaxes: both paths within bf16 rounding of the float32 loss and gradients."""
    g = torch.Generator().manual_seed(24)
    n, d, v = 40, 16, 300
    feats, w, b = torch.randn(n, d, generator=g), torch.randn(v, d, generator=g) * 0.3, torch.randn(v, generator=g)
    tf, tw, tb = torch.randn(n, d, generator=g), torch.randn(v, d, generator=g) * 0.3, torch.randn(v, generator=g)
    labels = torch.where(torch.rand(n, generator=g) < 0.3, torch.randint(0, v, (n,), generator=g), -100)
    kw = dict(teacher_feats=tf, teacher_weight=tw, teacher_bias=tb, kl_rows=torch.ones(n, dtype=torch.bool),
              labels=labels, temperature=2.0, alpha_kl=5.0, alpha_mlm=2.0, chunk_size=16)

    def run(fused, bf16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return _grads(lambda f, w_, b_: chunked_kl_ce(f, w_, b_, fused=fused, **kw), feats, w, b)

    ref_tot, _, _, ref_g = run("off", False)
    for fused in ("off", "on"):
        tot, _, _, grads = run(fused, True)
        assert float(tot) == pytest.approx(float(ref_tot), rel=2e-3)
        for gr, rg in zip(grads, ref_g):
            assert float((gr - rg).norm() / rg.norm()) < 3e-2
            assert gr.dtype == torch.float32


def test_fused_auto_is_on_for_large_vocabulary_products_on_cpu_only():
    from tinydistil.chunked_loss import fused_chunks_apply

    assert fused_chunks_apply("auto", "cpu", 512, 30522)  # the cpu preset's chunks
    assert not fused_chunks_apply("auto", "cpu", 64, 1000)  # test-sized models stay eager
    assert not fused_chunks_apply("auto", "cuda", 512, 30522)
    assert fused_chunks_apply("on", "cpu", 4, 20) and not fused_chunks_apply("off", "cpu", 512, 30522)
    with pytest.raises(ValueError, match="fused must be on, off or auto"):
        chunked_kl_ce(*_problem()[:3], kl_rows=torch.ones(N, dtype=torch.bool), labels=torch.full((N,), -100),
                      fused="yes")
