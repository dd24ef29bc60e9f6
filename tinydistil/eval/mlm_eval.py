"""Held-out masked-LM quality: the same masked WikiText-2 validation blocks scored by any masked LMs.

Masks are drawn once with a fixed seed (uniform 15%, 80/10/10) so teacher and student see identical
inputs; reports the MLM cross-entropy (and its exp, the masked-token perplexity) and top-1 accuracy.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..data import load_corpus, make_batches, tokenize_corpus
from ..masking import mask_tokens, token_weights
from ..mlm import mlm_parts
from ..teacher import check_tokenizer, load_teacher


@torch.inference_mode()
def evaluate_mlm(model_dirs: dict[str, str], data_dir: str | None = None, split: str = "valid",
                 block_size: int = 128, batch_size: int = 32, max_blocks: int | None = None,
                 seed: int = 0) -> dict[str, dict]:
    """{name: {"mlm_loss", "mlm_perplexity", "mlm_accuracy", "masked_tokens"}} for each model folder.

    All models must share one tokenizer (a teacher and its students do); the first one's is used.
    """
    models = {name: load_teacher(path) for name, path in model_dirs.items()}
    tokenizer = next(iter(models.values()))[1]
    for name, (model, _) in models.items():
        check_tokenizer(model, tokenizer, name)
        model.eval()
    blocks = tokenize_corpus(load_corpus(data_dir, split), tokenizer, block_size, packing=True)
    if max_blocks:
        blocks = blocks.select(range(min(max_blocks, len(blocks))))
    batches = make_batches(blocks, batch_size, tokenizer.pad_token_id, seed, packing=True)
    vocab = len(tokenizer)
    weights = token_weights(torch.ones(vocab), 0.0, tokenizer.all_special_ids)
    gen = torch.Generator().manual_seed(seed)
    sums = {name: [0.0, 0] for name in models}
    n_masked = 0
    for idx in tqdm(batches.order(0), desc="MLM eval", unit="batch"):
        batch = batches.get(idx)
        ids, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], weights,
                                  tokenizer.mask_token_id, gen)
        sel = labels != -100
        n_masked += int(sel.sum())
        for name, (model, _) in models.items():
            p = mlm_parts(model, ids, batch["attention_mask"])
            logits = torch.nn.functional.linear(p.feats[sel], p.weight, p.bias).float()
            sums[name][0] += float(torch.nn.functional.cross_entropy(logits, labels[sel], reduction="sum"))
            sums[name][1] += int((logits.argmax(-1) == labels[sel]).sum())
    out = {}
    for name, (loss_sum, correct) in sums.items():
        loss = loss_sum / max(n_masked, 1)
        out[name] = {"mlm_loss": round(loss, 4), "mlm_perplexity": round(math.exp(loss), 2),
                     "mlm_accuracy": round(correct / max(n_masked, 1), 4), "masked_tokens": n_masked}
    return out
