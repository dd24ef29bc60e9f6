"""Downstream fine-tuning, task-agnostic: GLUE, IMDb (and later SQuAD) all go through these functions.

    tokenizer = load_tokenizer(model_name)                         # tinydistil.hf
    train = tokenize(train_ds, tokenizer, ("sentence1", "sentence2"), cfg.max_seq_len)
    model = load_classifier(model_name, num_labels=2, tokenizer=tokenizer, seed=seed)
    result = finetune(model, tokenizer, train, cfg, seed)          # AdamW, linear warm-up/decay
    logits = predict(result.model, tokenizer, dev, cfg)["logits"]  # (N, num_labels), dataset order

Batches are padded per batch (DataCollatorWithPadding) and drawn from length-grouped buckets, so
little compute goes into padding. Model selection is the caller's business: pass `select` to keep
the best epoch by a score computed on held-out data; without it the last epoch is kept (GLUE, as in
the paper: fixed epochs, no selection).
"""
from __future__ import annotations

import copy
import inspect
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..data import length_grouped_batches
from ..exits import raise_pending
from ..hf import check_vocab, first_line, model_path, quiet
from ..runtime import adamw, autocast
from ..runtime import resolve_runtime as _resolve


@dataclass
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run (BERT-style defaults; the paper reports the median of
    5 runs on GLUE dev). `seeds` is how many runs: seeds `seed`, `seed + 1`, ..."""

    lr: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    epochs: int = 3
    warmup_frac: float = 0.1  # of all updates, then linear decay to 0
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    max_grad_norm: float = 1.0
    max_seq_len: int = 128  # longer inputs are truncated
    seeds: int = 5
    seed: int = 0  # first seed
    max_train_examples: int | None = None  # keep a fixed random subset of N training examples (CPU budgets)
    group_by_length: bool = True  # batches of similar length (less padding); order still shuffled per epoch
    precision: str = "auto"  # auto | fp32 | fp16 | bf16; auto as pretraining (runtime.py): bf16 on native-bf16 CPUs
    device: str = "auto"

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def validate(self) -> None:
        """Raise ValueError naming the fix for values that cannot work."""
        checks = [
            (self.lr > 0, "lr must be > 0"),
            (self.batch_size >= 1 and self.eval_batch_size >= 1, "batch_size and eval_batch_size must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (0 <= self.warmup_frac < 1, "warmup_frac must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.max_grad_norm > 0, "max_grad_norm must be > 0"),
            (self.max_seq_len >= 8, "max_seq_len must be >= 8"),
            (self.seeds >= 1, "seeds must be >= 1 (the paper uses 5)"),
            (self.max_train_examples is None or self.max_train_examples >= 1,
             "max_train_examples must be >= 1 (or None for all)"),
            (self.precision in ("auto", "fp32", "fp16", "bf16"), "precision must be auto, fp32, fp16 or bf16"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"FinetuneConfig: {msg}")


@dataclass
class FinetuneResult:
    model: torch.nn.Module  # fine-tuned (best epoch's weights when `select` was given)
    steps: int  # optimizer updates done
    train_time_s: float
    epoch_scores: list[float]  # select(model) after each epoch; empty without `select`
    best_epoch: int  # 1-based epoch whose weights `model` holds


# ------------------------------------------------------------------ loading
def load_classifier(name_or_path: str, num_labels: int, tokenizer, seed: int = 0, regression: bool = False):
    """AutoModelForSequenceClassification with a fresh head of `num_labels` outputs (1 + regression=True
    for STS-B). Works for BERT, DistilBERT and tinydistil students (their MLM head is dropped).
    The head's random init depends on `seed` only."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)  # the new head (and BERT's pooler, absent from MLM checkpoints) is drawn here
    try:
        # the "newly initialised head" report is expected for every run; one loading bar per seed would bury
        # the task's bar
        with quiet():
            model = AutoModelForSequenceClassification.from_pretrained(
                model_path(name_or_path), num_labels=num_labels,
                problem_type="regression" if regression else "single_label_classification")
    except OSError as e:
        raise ValueError(f"could not load model {name_or_path!r} ({first_line(e)}); "
                         "offline, pass a local model folder") from None
    check_vocab(name_or_path, tokenizer, model.get_input_embeddings().num_embeddings)
    return model


# ------------------------------------------------------------------ data
def tokenize(ds, tokenizer, text_columns: tuple[str, ...], max_seq_len: int, label_column: str | None = "label",
             desc: str = "tokenising"):
    """`datasets.map` (batched, fast tokenizer): one or two text columns -> input_ids, attention_mask
    (token_type_ids when the tokenizer makes them) and `labels`; every other column is dropped.
    Truncates to `max_seq_len` tokens (longest text first for pairs); no padding here."""
    if not 1 <= len(text_columns) <= 2:
        raise ValueError(f"text_columns must name one or two columns, got {text_columns}")
    missing = [c for c in (*text_columns, *([label_column] if label_column else [])) if c not in ds.column_names]
    if missing:
        raise ValueError(f"dataset lacks columns {missing} (has {ds.column_names})")

    def fn(batch):
        enc = tokenizer(*(batch[c] for c in text_columns), truncation=True, max_length=max_seq_len)
        if label_column:
            enc["labels"] = batch[label_column]
        return enc

    return ds.map(fn, batched=True, remove_columns=ds.column_names, desc=desc)


def _batches(n: int, lengths, batch_size: int, generator, group_by_length: bool) -> list[list[int]]:
    if group_by_length:
        return length_grouped_batches(lengths, batch_size, generator)
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _collate_fn(model, tokenizer, device: torch.device):
    """Rows -> padded tensors holding only what model.forward accepts (DistilBERT has no token_type_ids)."""
    from transformers import DataCollatorWithPadding

    accepted = set(inspect.signature(model.forward).parameters)
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if device.type == "cuda" else None)

    def collate(ds, idx: list[int]) -> dict[str, torch.Tensor]:
        cols = {k: v for k, v in ds[idx].items() if k in accepted}
        keys = list(cols)
        features = [dict(zip(keys, vals)) for vals in zip(*(cols[k] for k in keys))]
        return {k: v.to(device) for k, v in collator(features).items()}

    return collate


# ------------------------------------------------------------------ device / precision
def resolve_runtime(cfg: FinetuneConfig) -> tuple[torch.device, str]:
    """(device, precision) of `cfg`, resolved as for pretraining (see runtime.py)."""
    return _resolve(cfg.device, cfg.precision)


# ------------------------------------------------------------------ loop
def num_updates(n_train: int, cfg: FinetuneConfig) -> int:
    return cfg.epochs * math.ceil(n_train / cfg.batch_size)


def finetune(model, tokenizer, train_ds, cfg: FinetuneConfig, seed: int,
             select: Callable[[torch.nn.Module], float] | None = None, bar=None,
             progress: bool = True, loss_fn: Callable | None = None) -> FinetuneResult:
    """Fine-tune `model` on the tokenised `train_ds` (columns of `tokenize`) for cfg.epochs epochs.

    AdamW (weight decay except on biases / LayerNorm), linear warm-up over `warmup_frac` of the updates
    then linear decay, grad-norm clipping. `seed` fixes the batch order and dropout.
    select(model) -> score (higher is better), called after every epoch on held-out data: the best
    epoch's weights are restored at the end (IMDb selects on dev). bar: a tqdm to advance per update
    (one bar per task); otherwise a bar of its own is shown when `progress`.
    loss_fn(model, batch, idx) -> loss replaces the head's own `model(**batch).loss` (idx: the batch's
    row numbers in `train_ds`; SQuAD (D) uses it to add a distillation term from precomputed teacher logits).
    """
    # one function on purpose (~70 lines): the fine-tuning loop read top to bottom, as train.py's
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    cfg.validate()
    if len(train_ds) == 0:
        raise ValueError("the training set is empty; pass at least one example")
    device, precision = resolve_runtime(cfg)
    model.to(device)
    collate = _collate_fn(model, tokenizer, device)
    lengths = [len(x) for x in train_ds["input_ids"]]
    total = num_updates(len(train_ds), cfg)

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    optimizer = adamw([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(cfg.warmup_frac * total), total)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=total, disable=not progress, desc="fine-tune", unit="upd")
    torch.manual_seed(seed)  # dropout
    gen = torch.Generator().manual_seed(seed)  # batch order, independent of the dropout stream
    step, t0 = 0, time.time()
    epoch_scores, best, best_state = [], -math.inf, None
    for epoch in range(cfg.epochs):
        model.train()
        for idx in _batches(len(train_ds), lengths, cfg.batch_size, gen, cfg.group_by_length):
            raise_pending()
            batch = collate(train_ds, idx)
            with autocast(device, precision):
                loss = model(**batch).loss if loss_fn is None else loss_fn(model, batch, idx)
            if precision != "fp16" and not math.isfinite(loss.item()):  # fp16: GradScaler skips such steps
                raise FloatingPointError(f"the fine-tuning loss became {loss.item()} at update {step + 1}; "
                                         "lower --lr or use --precision fp32")
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=round(loss.item(), 4), refresh=False)
        if select is not None:
            score = float(select(model))
            epoch_scores.append(score)
            if score > best:  # ties keep the earlier epoch
                best, best_state = score, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    if own_bar:
        bar.close()
    best_epoch = cfg.epochs
    if best_state is not None:
        best_epoch = epoch_scores.index(best) + 1
        model.load_state_dict(best_state)
    return FinetuneResult(model, step, time.time() - t0, epoch_scores, best_epoch)


def predict(model, tokenizer, ds, cfg: FinetuneConfig) -> dict[str, np.ndarray]:
    """Model outputs on the tokenised `ds` under torch.inference_mode, in dataset order.

    Returns output name -> float32 array with one row per example: "logits" (N, num_labels) for
    classification heads ((N, 1) for regression), "start_logits"/"end_logits" (N, L) for QA heads
    (L = longest batch; positions past a row's own batch length hold -1e4, i.e. never the answer).
    Batches are sorted by length for speed; rows are put back in order.
    """
    device, precision = resolve_runtime(cfg)
    model.to(device).eval()
    collate = _collate_fn(model, tokenizer, device)
    lengths = [len(x) for x in ds["input_ids"]]
    parts: dict[str, list] = {}
    order: list[int] = []
    with torch.inference_mode():
        for idx in _batches(len(ds), lengths, cfg.eval_batch_size, None, True):
            batch = collate(ds, idx)
            batch.pop("labels", None)
            with autocast(device, precision):
                out = model(**batch)
            for name in ("logits", "start_logits", "end_logits"):
                if getattr(out, name, None) is not None:
                    parts.setdefault(name, []).extend(out[name].float().cpu().numpy())
            order += idx
    inverse = np.argsort(np.asarray(order))
    result = {}
    for name, rows in parts.items():
        width = max(len(r) if np.ndim(r) else 1 for r in rows)
        if all(np.ndim(r) == 1 and len(r) == width for r in rows):
            arr = np.stack(rows)
        else:  # per-token outputs of batches with different padded lengths
            arr = np.full((len(rows), width), -1e4, dtype=np.float32)
            for i, r in enumerate(rows):
                arr[i, :len(r)] = r
        result[name] = arr[inverse]
    return result
