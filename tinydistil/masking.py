"""Dynamic masking as in the DistilBERT reference recipe.

A fixed share (`mlm_probability`, 15%) of the eligible tokens of a batch is chosen, never a special
token or padding. With `mlm_smoothing` s > 0 a token w is chosen with weight count(w)^-s (the
reference's 0.7), so frequent tokens are masked less often; s = 0 gives uniform choice. Of the chosen
tokens 80% become [MASK], 10% a random token and 10% stay unchanged. The caller passes a seeded
generator, so masks are new every epoch yet reproducible on resume.
"""
from __future__ import annotations

import torch


def token_weights(counts: torch.Tensor, smoothing: float, special_ids: list[int]) -> torch.Tensor:
    """(V,) float weights for choosing each vocabulary id; 0 for special tokens.

    counts: (V,) occurrences in the corpus (unseen tokens count as 1).
    """
    w = counts.double().clamp(min=1) ** (-smoothing)
    w[torch.tensor(special_ids, dtype=torch.long)] = 0
    return w.float()


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    weights: torch.Tensor,
    mask_token_id: int,
    generator: torch.Generator,
    mlm_probability: float = 0.15,
    word_mask: float = 0.8,
    word_keep: float = 0.1,
    word_rand: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (masked input_ids, labels), both (B, L); labels are -100 except at chosen positions.

    input_ids, attention_mask: (B, L) on CPU. weights: (V,) from `token_weights`.
    """
    pos_w = weights[input_ids] * attention_mask.float()
    flat = pos_w.flatten()
    eligible = int((flat > 0).sum())
    labels = torch.full_like(input_ids, -100)
    if eligible == 0:
        return input_ids.clone(), labels
    n = max(1, round(mlm_probability * eligible))
    chosen = torch.multinomial(flat, n, replacement=False, generator=generator)

    out = input_ids.clone().flatten()
    labels = labels.flatten()
    labels[chosen] = out[chosen]
    action = torch.multinomial(torch.tensor([word_mask, word_keep, word_rand]), n, replacement=True,
                               generator=generator)
    out[chosen[action == 0]] = mask_token_id
    rand_pos = chosen[action == 2]
    candidates = torch.nonzero(weights > 0).flatten()  # any non-special id
    out[rand_pos] = candidates[torch.randint(len(candidates), (len(rand_pos),), generator=generator)]
    return out.view_as(input_ids), labels.view_as(input_ids)


def mask_micro_batch(batch: dict, weights: torch.Tensor, mask_token_id: int, cfg, index: int,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, labels, attention_mask), each (B, L) on `device`: micro-batch number `index` of a run with config
    `cfg` (seed and masking rates) masked, from a generator seeded by (cfg.seed, index) alone, so a resumed or
    multi-process run masks each batch the same way. batch: input_ids, attention_mask (B, L) on CPU."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
    ids, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], weights, mask_token_id, gen,
                              cfg.mlm_probability, cfg.word_mask, cfg.word_keep, cfg.word_rand)
    return ids.to(device), labels.to(device), batch["attention_mask"].to(device)
