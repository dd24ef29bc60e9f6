"""Read a masked LM in two halves: encoder output, then the vocabulary projection.

The chunked loss needs the features that enter the final (V x D) projection rather than the logits,
so the projection can run a chunk of rows at a time. BERT and DistilBERT are read directly; any
other `AutoModelForMaskedLM` falls back to a forward hook on its output embeddings (that path still
computes the full logits once, so it is slower and uses more memory).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from transformers import BertForMaskedLM, DistilBertForMaskedLM


class MLMParts(NamedTuple):
    hidden: torch.Tensor  # (B, L, D) final encoder hidden states
    feats: torch.Tensor  # (B, L, D') input of the vocabulary projection
    weight: torch.Tensor  # (V, D') projection weight
    bias: torch.Tensor  # (V,) projection bias


def mlm_parts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> MLMParts:
    """Run `model` on (B, L) inputs and return its MLMParts (logits = feats @ weight.T + bias)."""
    if isinstance(model, DistilBertForMaskedLM):
        hidden = model.distilbert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        feats = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))
        proj = model.vocab_projector
        return MLMParts(hidden, feats, proj.weight, proj.bias)
    if isinstance(model, BertForMaskedLM):
        hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        head = model.cls.predictions
        feats = head.transform(hidden)
        return MLMParts(hidden, feats, head.decoder.weight, head.decoder.bias)
    return _hooked_parts(model, input_ids, attention_mask)


def _hooked_parts(model, input_ids, attention_mask) -> MLMParts:
    proj = model.get_output_embeddings()
    if proj is None or getattr(proj, "bias", None) is None:
        raise ValueError(f"{type(model).__name__} has no linear output projection with a bias; "
                         "use a BERT-style masked LM as teacher")
    seen = {}
    handle = proj.register_forward_hook(lambda mod, args, out: seen.update(feats=args[0]))
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    finally:
        handle.remove()
    return MLMParts(out.hidden_states[-1], seen["feats"], proj.weight, proj.bias)


class PartsModule(torch.nn.Module):
    """`mlm_parts` as a module forward, so DistributedDataParallel sees (and syncs) the student's call."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(mlm_parts(self.model, input_ids, attention_mask))
