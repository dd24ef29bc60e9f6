"""Growing a teacher from a shallower stem (progressive stacking)."""
import pytest
import torch

from tinydistil.config import TeacherConfig
from tinydistil.teacher import grow_teacher, load_teacher


def test_grown_teacher_repeats_the_stem_layers(smoke_teacher):
    stem, tok = load_teacher(str(smoke_teacher))
    n = stem.config.num_hidden_layers
    c = stem.config
    cfg = TeacherConfig(grow_from=str(smoke_teacher), num_layers=2 * n, hidden_size=c.hidden_size,
                        num_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                        max_position_embeddings=c.max_position_embeddings, block_size=32)
    big = grow_teacher(cfg, tok)
    assert big.config.num_hidden_layers == 2 * n
    for i in range(2 * n):  # [0, 1] -> [0, 1, 0, 1]
        for (name, p), (_, q) in zip(big.bert.encoder.layer[i].named_parameters(),
                                     stem.bert.encoder.layer[i % n].named_parameters()):
            assert torch.equal(p, q), name
    assert torch.equal(big.bert.embeddings.word_embeddings.weight, stem.bert.embeddings.word_embeddings.weight)
    assert torch.equal(big.cls.predictions.decoder.weight, stem.cls.predictions.decoder.weight)


def test_grow_rejects_sizes_that_do_not_stack(smoke_teacher):
    stem, tok = load_teacher(str(smoke_teacher))
    c = stem.config
    base = dict(grow_from=str(smoke_teacher), hidden_size=c.hidden_size, num_heads=c.num_attention_heads,
                intermediate_size=c.intermediate_size, max_position_embeddings=c.max_position_embeddings, block_size=32)
    with pytest.raises(ValueError, match="multiple of"):
        grow_teacher(TeacherConfig(**base, num_layers=c.num_hidden_layers + 1), tok)
    with pytest.raises(ValueError, match="hidden_size"):
        grow_teacher(TeacherConfig(**{**base, "hidden_size": c.hidden_size * 2, "num_heads": 2},
                                   num_layers=2 * c.num_hidden_layers), tok)
