"""Build the DistilBERT student from a BERT teacher: half the layers, same width.

The student is transformers' own `DistilBertForMaskedLM`, so it loads anywhere with `from_pretrained`.
Initialisation copies one teacher layer out of two (the reference's [0, 2, 4, 7, 9, 11] for 12
layers), the embeddings, LayerNorms and the MLM head. DistilBERT has no token-type embeddings: the
teacher's type-0 vector is folded into the position embeddings, which gives identical outputs for
single-segment inputs (token_type_ids all 0), the only kind used in MLM distillation.
"""
from __future__ import annotations

import warnings

import torch
from transformers import BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM


def default_student_layers(n_teacher_layers: int) -> list[int]:
    """Teacher layers kept for a half-depth student: every other layer from the bottom for the
    first half, mirrored from the top for the second half. 12 -> [0, 2, 4, 7, 9, 11]."""
    if n_teacher_layers < 2 or n_teacher_layers % 2:
        raise ValueError(f"the teacher has {n_teacher_layers} layers; the every-other-layer rule needs an even "
                         "number >= 2 (pass student_layers=[...] explicitly to choose layers yourself)")
    n = n_teacher_layers // 2
    low = [2 * i for i in range((n + 1) // 2)]
    high = [n_teacher_layers - 1 - 2 * i for i in reversed(range(n // 2))]
    return low + high


def _check_teacher(teacher) -> None:
    if not isinstance(teacher, BertForMaskedLM):
        raise ValueError(f"the teacher is a {type(teacher).__name__}; initialising a DistilBERT student from it "
                         "needs a BertForMaskedLM (use student_init='random' for other teachers)")
    cfg = teacher.config
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        raise ValueError("the teacher uses relative position embeddings, which DistilBERT cannot hold; "
                         "use a teacher with absolute positions or student_init='random'")
    if abs(cfg.layer_norm_eps - 1e-12) > 1e-15:
        warnings.warn(f"teacher layer_norm_eps={cfg.layer_norm_eps}; DistilBERT uses 1e-12, so outputs will "
                      "differ slightly from the copied layers", stacklevel=3)


def student_config(teacher_config, n_layers: int) -> DistilBertConfig:
    """DistilBertConfig with the teacher's width, vocabulary and dropout, and `n_layers` layers."""
    c = teacher_config

    def get(*names, default=None):  # BERT-style names first, then DistilBERT-style ones
        return next((getattr(c, n) for n in names if getattr(c, n, None) is not None), default)

    activation = get("hidden_act", "activation", default="gelu")
    if not isinstance(activation, str):
        raise ValueError("the teacher's activation is not a named function; DistilBERT needs e.g. 'gelu'")
    return DistilBertConfig(
        vocab_size=c.vocab_size, max_position_embeddings=c.max_position_embeddings, sinusoidal_pos_embds=False,
        n_layers=n_layers, n_heads=c.num_attention_heads, dim=c.hidden_size,
        hidden_dim=get("intermediate_size", "hidden_dim", default=4 * c.hidden_size),
        dropout=get("hidden_dropout_prob", "dropout", default=0.1),
        attention_dropout=get("attention_probs_dropout_prob", "attention_dropout", default=0.1),
        activation=activation, initializer_range=get("initializer_range", default=0.02),
        pad_token_id=get("pad_token_id", default=0), tie_word_embeddings=get("tie_word_embeddings", default=True),
    )


@torch.no_grad()
def init_student(teacher: BertForMaskedLM, layers: list[int] | None = None, init: str = "teacher",
                 seed: int = 0) -> DistilBertForMaskedLM:
    """A DistilBertForMaskedLM student of `teacher`.

    layers: teacher layer indices to copy, in order (default `default_student_layers`).
    init: "teacher" copies weights; "random" keeps transformers' random init (paper Table 4 ablation).
    """
    if init not in ("teacher", "random"):
        raise ValueError(f"init must be 'teacher' or 'random', not {init!r}")
    n_t = teacher.config.num_hidden_layers
    if layers is None:
        layers = default_student_layers(n_t)
    layers = list(layers)
    if not layers or any(not 0 <= i < n_t for i in layers):
        raise ValueError(f"student layers {layers} must be non-empty indices in [0, {n_t - 1}]")
    torch.manual_seed(seed)
    student = DistilBertForMaskedLM(student_config(teacher.config, len(layers)))
    if init == "random":
        return student
    _check_teacher(teacher)

    bert, s = teacher.bert, student.distilbert
    emb = bert.embeddings
    s.embeddings.word_embeddings.weight.copy_(emb.word_embeddings.weight)
    s.embeddings.position_embeddings.weight.copy_(emb.position_embeddings.weight + emb.token_type_embeddings.weight[0])
    s.embeddings.LayerNorm.load_state_dict(emb.LayerNorm.state_dict())
    for s_layer, t_idx in zip(s.transformer.layer, layers):
        t = bert.encoder.layer[t_idx]
        att = t.attention
        s_layer.attention.q_lin.load_state_dict(att.self.query.state_dict())
        s_layer.attention.k_lin.load_state_dict(att.self.key.state_dict())
        s_layer.attention.v_lin.load_state_dict(att.self.value.state_dict())
        s_layer.attention.out_lin.load_state_dict(att.output.dense.state_dict())
        s_layer.sa_layer_norm.load_state_dict(att.output.LayerNorm.state_dict())
        s_layer.ffn.lin1.load_state_dict(t.intermediate.dense.state_dict())
        s_layer.ffn.lin2.load_state_dict(t.output.dense.state_dict())
        s_layer.output_layer_norm.load_state_dict(t.output.LayerNorm.state_dict())
    head = teacher.cls.predictions
    student.vocab_transform.load_state_dict(head.transform.dense.state_dict())
    student.vocab_layer_norm.load_state_dict(head.transform.LayerNorm.state_dict())
    student.vocab_projector.weight.copy_(head.decoder.weight)
    student.vocab_projector.bias.copy_(head.decoder.bias)
    return student
