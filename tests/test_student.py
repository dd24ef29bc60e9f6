"""Student construction: layer choice, exact equivalence with the teacher, weight copying, save/load."""
import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM, RobertaConfig,
                          RobertaForMaskedLM)

from tinydistil.student import default_student_layers, init_student

VOCAB, HIDDEN, HEADS, FFN, MAXPOS = 100, 32, 4, 64, 64


def _teacher(n_layers=4, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=n_layers, num_attention_heads=HEADS,
                     intermediate_size=FFN, max_position_embeddings=MAXPOS, pad_token_id=0)
    t = BertForMaskedLM(cfg).eval()
    with torch.no_grad():  # make every folded / copied piece non-trivial
        t.bert.embeddings.token_type_embeddings.weight.normal_(0, 0.5)
        t.cls.predictions.bias.normal_(0, 1.0)
        t.cls.predictions.decoder.bias.copy_(t.cls.predictions.bias)  # no-op when tied
        for name, p in t.named_parameters():
            if "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return t


def _inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (3, 12), generator=g)
    am = torch.ones_like(ids)
    am[1, 7:] = 0
    am[2, 4:] = 0
    ids[am == 0] = 0
    return ids, am


def _teacher_logits(t, ids, am):
    with torch.no_grad():
        return t(input_ids=ids, attention_mask=am, token_type_ids=torch.zeros_like(ids)).logits


def _student_logits(s, ids, am):
    with torch.no_grad():
        return s(input_ids=ids, attention_mask=am).logits


# ------------------------------------------------------------------ default_student_layers
def test_default_layers_reference_12():
    assert default_student_layers(12) == [0, 2, 4, 7, 9, 11]


@pytest.mark.parametrize("n", [2, 4, 6, 8, 10, 24])
def test_default_layers_even_depths(n):
    layers = default_student_layers(n)
    assert len(layers) == n // 2
    assert len(set(layers)) == len(layers)
    assert layers == sorted(layers)
    assert layers[0] == 0
    assert all(0 <= i < n for i in layers)
    if n >= 4:
        assert layers[-1] == n - 1


@pytest.mark.parametrize("n", [0, 1, 3, 5, 7, 11])
def test_default_layers_odd_or_small_raise(n):
    with pytest.raises(ValueError, match="student_layers"):
        default_student_layers(n)


# ------------------------------------------------------------------ init_student
def test_full_depth_student_equals_teacher():
    t = _teacher(4)
    s = init_student(t, layers=list(range(4))).eval()
    assert isinstance(s, DistilBertForMaskedLM) and s.config.n_layers == 4
    ids, am = _inputs()
    a, b = _teacher_logits(t, ids, am), _student_logits(s, ids, am)
    keep = am.bool()
    torch.testing.assert_close(b[keep], a[keep], rtol=0, atol=1e-5)
    # the check is meaningful: without folding token type 0 the outputs would differ
    with torch.no_grad():
        s.distilbert.embeddings.position_embeddings.weight.sub_(t.bert.embeddings.token_type_embeddings.weight[0])
    assert (_student_logits(s, ids, am)[keep] - a[keep]).abs().max() > 1e-3


def test_full_depth_student_reordered_layers_equal_reordered_teacher():
    # layers are copied in the order given: a student [1, 0] equals a teacher whose layers are swapped
    t = _teacher(2)
    s = init_student(t, layers=[1, 0]).eval()
    swapped = _teacher(2)
    swapped.load_state_dict(t.state_dict())
    enc = swapped.bert.encoder.layer
    enc[0], enc[1] = enc[1], enc[0]
    ids, am = _inputs()
    keep = am.bool()
    torch.testing.assert_close(_student_logits(s, ids, am)[keep], _teacher_logits(swapped, ids, am)[keep],
                               rtol=0, atol=1e-5)


def test_half_depth_student_copies_selected_layers():
    t = _teacher(4)
    s = init_student(t)
    chosen = default_student_layers(4)
    assert chosen == [0, 3]
    assert s.config.n_layers == 2 and s.config.dim == HIDDEN and s.config.hidden_dim == FFN
    assert s.config.n_heads == HEADS and s.config.vocab_size == VOCAB
    for s_layer, t_idx in zip(s.distilbert.transformer.layer, chosen):
        tl = t.bert.encoder.layer[t_idx]
        pairs = [
            (s_layer.attention.q_lin, tl.attention.self.query),
            (s_layer.attention.k_lin, tl.attention.self.key),
            (s_layer.attention.v_lin, tl.attention.self.value),
            (s_layer.attention.out_lin, tl.attention.output.dense),
            (s_layer.sa_layer_norm, tl.attention.output.LayerNorm),
            (s_layer.ffn.lin1, tl.intermediate.dense),
            (s_layer.ffn.lin2, tl.output.dense),
            (s_layer.output_layer_norm, tl.output.LayerNorm),
        ]
        for sm, tm in pairs:
            assert torch.equal(sm.weight, tm.weight) and torch.equal(sm.bias, tm.bias)
    # student layer 1 is teacher layer 3, not teacher layer 1
    assert not torch.equal(s.distilbert.transformer.layer[1].attention.q_lin.weight,
                           t.bert.encoder.layer[1].attention.self.query.weight)
    emb, temb = s.distilbert.embeddings, t.bert.embeddings
    assert torch.equal(emb.word_embeddings.weight, temb.word_embeddings.weight)
    torch.testing.assert_close(emb.position_embeddings.weight,
                               temb.position_embeddings.weight + temb.token_type_embeddings.weight[0])
    assert torch.equal(emb.LayerNorm.weight, temb.LayerNorm.weight)
    assert torch.equal(emb.LayerNorm.bias, temb.LayerNorm.bias)
    head = t.cls.predictions
    assert torch.equal(s.vocab_transform.weight, head.transform.dense.weight)
    assert torch.equal(s.vocab_transform.bias, head.transform.dense.bias)
    assert torch.equal(s.vocab_layer_norm.weight, head.transform.LayerNorm.weight)
    assert torch.equal(s.vocab_layer_norm.bias, head.transform.LayerNorm.bias)
    assert torch.equal(s.vocab_projector.bias, head.bias)
    # projector tied to the word embeddings (same storage), equal to the teacher's decoder
    assert s.vocab_projector.weight.data_ptr() == emb.word_embeddings.weight.data_ptr()
    assert torch.equal(s.vocab_projector.weight, head.decoder.weight)


def test_random_init_differs_from_teacher_and_is_seeded():
    t = _teacher(4)
    r = init_student(t, init="random", seed=3)
    assert isinstance(r, DistilBertForMaskedLM) and r.config.n_layers == 2
    assert not torch.allclose(r.distilbert.embeddings.word_embeddings.weight, t.bert.embeddings.word_embeddings.weight)
    assert not torch.allclose(r.distilbert.transformer.layer[0].attention.q_lin.weight,
                              t.bert.encoder.layer[0].attention.self.query.weight)
    r2 = init_student(t, init="random", seed=3)
    for (k, a), (_, b) in zip(r.state_dict().items(), r2.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("layers", [[], [4], [-1], [0, 7]])
def test_bad_layer_indices_raise(layers):
    with pytest.raises(ValueError, match="student layers"):
        init_student(_teacher(4), layers=layers)


def test_bad_init_raises():
    with pytest.raises(ValueError, match="init must be"):
        init_student(_teacher(2), init="copy")


def _distilbert_teacher():
    torch.manual_seed(0)
    return DistilBertForMaskedLM(DistilBertConfig(vocab_size=VOCAB, dim=HIDDEN, n_layers=2, n_heads=HEADS,
                                                  hidden_dim=FFN, max_position_embeddings=MAXPOS))


def test_non_bert_teacher_raises():
    with pytest.raises(ValueError, match="BertForMaskedLM"):
        init_student(_distilbert_teacher())


def test_random_init_accepts_non_bert_teacher():
    torch.manual_seed(0)
    teacher = RobertaForMaskedLM(RobertaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2,
                                               num_attention_heads=HEADS, intermediate_size=FFN,
                                               max_position_embeddings=MAXPOS))
    s = init_student(teacher, init="random")
    assert isinstance(s, DistilBertForMaskedLM) and s.config.n_layers == 1 and s.config.dim == HIDDEN


def test_save_and_reload_gives_identical_logits(tmp_path):
    s = init_student(_teacher(4)).eval()
    s.save_pretrained(tmp_path / "student")
    loaded = DistilBertForMaskedLM.from_pretrained(tmp_path / "student").eval()
    ids, am = _inputs()
    assert torch.equal(_student_logits(s, ids, am), _student_logits(loaded, ids, am))
    assert loaded.vocab_projector.weight.data_ptr() == loaded.distilbert.embeddings.word_embeddings.weight.data_ptr()
