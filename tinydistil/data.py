"""Where the MLM corpus comes from, how it is tokenised and how it becomes batches.

Local files (a data directory given as argument or $TINYDISTIL_DATA_DIR) win over the hub, so this
works offline; in Colab the hub copy of WikiText-2 (`Salesforce/wikitext`, `wikitext-2-raw-v1`) is used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

HUB_DATASET = ("Salesforce/wikitext", "wikitext-2-raw-v1")
# Looked up in this order below the data directory (raw text first, then the tokenised release).
LOCAL_LAYOUTS = [("wikitext-2-raw", "wiki.{split}.raw"), ("wikitext-2", "wiki.{split}.tokens"),
                 (".", "wiki.{split}.raw"), (".", "wiki.{split}.tokens")]
DATA_DIR_HELP = ("set --data-dir (or the environment variable TINYDISTIL_DATA_DIR) to a folder holding "
                 "wikitext-2/wiki.train.tokens or wikitext-2-raw/wiki.train.raw")


def resolve_data_dir(data_dir: str | os.PathLike | None, fix: str = DATA_DIR_HELP) -> Path | None:
    """The data directory (argument, else $TINYDISTIL_DATA_DIR), or None for the hub; `fix` is the hint
    given when the folder does not exist."""
    data_dir = data_dir or os.environ.get("TINYDISTIL_DATA_DIR")
    if not data_dir:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise ValueError(f"data directory {path} does not exist; {fix}")
    return path


def find_local_corpus(data_dir: Path, split: str = "train") -> Path:
    for folder, pattern in LOCAL_LAYOUTS:
        path = data_dir / folder / pattern.format(split=split)
        if path.is_file():
            return path
    raise ValueError(f"no WikiText-2 {split} file under {data_dir}; {DATA_DIR_HELP}")


def load_corpus(data_dir: str | None = None, split: str = "train", max_texts: int | None = None):
    """Non-empty lines of WikiText-2 split `split` (train | valid | test) as a `datasets.Dataset` with one
    column `text`."""
    import datasets

    local = resolve_data_dir(data_dir)
    if local is not None:
        path = find_local_corpus(local, split)
        if path.stat().st_size == 0:
            raise ValueError(f"{path} is empty; {DATA_DIR_HELP}")
        ds = datasets.load_dataset("text", data_files={split: str(path)}, split=split)
    else:
        try:
            ds = datasets.load_dataset(*HUB_DATASET, split={"valid": "validation"}.get(split, split))
        except Exception as e:  # no network, hub down, ...
            raise ValueError(f"could not load {HUB_DATASET[0]} from the hub ({type(e).__name__}); "
                             f"to work offline, {DATA_DIR_HELP}") from None
    ds = ds.filter(lambda b: [bool(t.strip()) for t in b["text"]], batched=True)
    if max_texts is not None:
        ds = ds.select(range(min(max_texts, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"the WikiText-2 {split} split is empty; {DATA_DIR_HELP}")
    return ds


def tokenize_corpus(ds, tokenizer, block_size: int, packing: bool = True):
    """Tokenise with the fast tokenizer through `datasets.map` (cached on disk).

    packing=True: lines are joined with [SEP] and cut into blocks `[CLS] ... [SEP]` of exactly
    `block_size` tokens, so no compute is spent on padding (remainder of each map batch dropped).
    packing=False: one sequence per line, `[CLS] line [SEP]`, truncated to `block_size`.
    Returns a dataset with one column `input_ids`.
    """
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        raise ValueError("the tokenizer has no [CLS]/[SEP] tokens; use a BERT-style (WordPiece) tokenizer")

    if packing:
        body = block_size - 2

        def fn(batch):
            ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
            stream = [t for line in ids for t in (*line, sep)]
            n = len(stream) // body
            return {"input_ids": [[cls, *stream[i * body:(i + 1) * body], sep] for i in range(n)]}
    else:
        def fn(batch):
            enc = tokenizer(batch["text"], truncation=True, max_length=block_size)
            return {"input_ids": enc["input_ids"]}

    out = ds.map(fn, batched=True, batch_size=2000, remove_columns=ds.column_names,
                 desc="tokenising" + (" + packing" if packing else ""))
    if len(out) == 0:
        raise ValueError(f"the corpus is too small for one block of {block_size} tokens; "
                         "use more text or a smaller block_size")
    return out


def length_grouped_batches(lengths, batch_size: int, generator: torch.Generator | None,
                           mega: int = 50) -> list[list[int]]:
    """Indices in batches of similar length, as transformers' LengthGroupedSampler: shuffle, cut into
    mega-batches of `mega * batch_size`, sort each by length (longest first), cut into batches, then
    shuffle the batch order. generator=None: no shuffling (evaluation)."""
    n = len(lengths)
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    size = mega * batch_size if generator is not None else n  # evaluation: one global sort
    batches = []
    for start in range(0, n, size):
        chunk = sorted(order[start:start + size], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


@dataclass
class Batches:
    """Deterministic batches for epoch `epoch`: the order depends only on (seed, epoch), so a run can
    resume at any batch index. Packed data gives (B, block_size) tensors; sentence data is grouped by
    length (sorted within windows of 50 batches) and padded to the longest sequence of each batch."""

    sequences: list[list[int]] | torch.Tensor
    batch_size: int
    pad_id: int
    seed: int

    def __len__(self) -> int:
        return -(-len(self.sequences) // self.batch_size)

    def order(self, epoch: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if isinstance(self.sequences, torch.Tensor):
            return list(torch.randperm(len(self.sequences), generator=g).split(self.batch_size))
        lengths = [len(s) for s in self.sequences]
        return [torch.tensor(b) for b in length_grouped_batches(lengths, self.batch_size, g)]

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(self.sequences, torch.Tensor):
            ids = self.sequences[idx]
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        seqs = [self.sequences[i] for i in idx.tolist()]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s)
            mask[row, :len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def make_batches(tokenized, batch_size: int, pad_id: int, seed: int, packing: bool) -> Batches:
    ids = tokenized["input_ids"]
    seqs = torch.tensor(ids, dtype=torch.long) if packing else [list(s) for s in ids]
    return Batches(seqs, batch_size, pad_id, seed)


def token_counts(batches: Batches, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) occurrence counts over the training sequences (for `mlm_smoothing`)."""
    seqs = batches.sequences
    flat = seqs.flatten() if isinstance(seqs, torch.Tensor) else torch.tensor([t for s in seqs for t in s])
    return torch.bincount(flat, minlength=vocab_size)[:vocab_size]
