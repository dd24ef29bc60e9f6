"""Where the MLM corpus comes from, how it is tokenised and how it becomes batches.

Local files (a data directory given as argument or $TINYDISTIL_DATA_DIR) win over the hub, so this
works offline; in Colab the hub copy of WikiText-2 (`Salesforce/wikitext`, `wikitext-2-raw-v1`) is used.

Corpora larger than memory (`corpus` = local file globs, or "wikipedia+books" from the hub) go through
`datasets`' on-disk Arrow files: tokenised and packed once by `datasets.map` into a cache file, then read
memory-mapped a batch at a time (`Batches` over a `datasets.Dataset`), never held in RAM.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .hf import load_hub_dataset

HUB_DATASET = ("Salesforce/wikitext", "wikitext-2-raw-v1")
# Looked up in this order below the data directory (raw text first, then the tokenised release).
LOCAL_LAYOUTS = [("wikitext-2-raw", "wiki.{split}.raw"), ("wikitext-2", "wiki.{split}.tokens"),
                 (".", "wiki.{split}.raw"), (".", "wiki.{split}.tokens")]
# corpus="wikipedia+books": the paper's corpus (English Wikipedia + BookCorpus) from the hub. Not reachable
# offline here, so not exercised by the tests; any local text/parquet files work the same way.
HUB_PAPER_CORPUS = [("wikimedia/wikipedia", "20231101.en"), ("bookcorpus/bookcorpus", None)]
CORPUS_HELP = ('corpus must be "wikitext2", "wikipedia+books" (hub) or comma-separated local file globs '
               '(.txt / .raw / .tokens: one text per line; .parquet: a "text" column)')
DATA_DIR_HELP = ("set --data-dir (or the environment variable TINYDISTIL_DATA_DIR) to a folder holding "
                 "wikitext-2/wiki.train.tokens or wikitext-2-raw/wiki.train.raw")


# WikiText's tokenised release (and the hub's raw one) splits numbers and hyphenated words with " @-@ ",
# " @,@ ", " @.@ "; a pretrained tokenizer never saw those, so they are joined back ("1 @,@ 000" -> "1,000").
WIKITEXT_MARKER = re.compile(r" @([-,.])@ ")
WIKITEXT_UNK = "<unk>"  # the tokenised release's unknown word; mapped to the tokenizer's own unknown token


def undo_wikitext_markers(text: str) -> str:
    return WIKITEXT_MARKER.sub(r"\1", text)


def resolve_data_dir(data_dir: str | os.PathLike | None, fix: str = DATA_DIR_HELP) -> Path | None:
    """The data directory (argument, else $TINYDISTIL_DATA_DIR), or None for the hub; `fix` is the hint
    given when the folder does not exist."""
    data_dir = data_dir or os.environ.get("TINYDISTIL_DATA_DIR")
    if not data_dir:
        return None
    path = Path(data_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"data directory {path} is a file, not a folder; {fix}")
    if not path.is_dir():
        raise ValueError(f"data directory {path} does not exist; {fix}")
    return path


@contextlib.contextmanager
def utf8_errors(path: Path, what: str):
    """Turn a UnicodeDecodeError raised while reading the text file `path` into not_utf8's ValueError."""
    try:
        yield
    except UnicodeDecodeError:
        raise not_utf8(path, what) from None


def not_utf8(path: Path, what: str) -> ValueError:
    """The error for a text file of `path` holding bytes that are not UTF-8: where (line, byte) and what to do."""
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
        where = ""
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        where = f" at line {line} (byte {e.start}: {raw[e.start:e.start + 1]!r})"
    return ValueError(f"{path} is not UTF-8 text{where}; {what}")


def check_text_file(path: Path, probe: int = 1 << 16, what: str = "the plain-text WikiText-2 file") -> None:
    """ValueError when `path` does not start like UTF-8 text (a binary or compressed file in its place)."""
    with open(path, "rb") as f:
        head = f.read(probe)
    if b"\0" in head:
        raise ValueError(f"{path} is not a text file (it holds NUL bytes: binary or compressed?); put {what} there")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a character cut at the probe's end
            raise ValueError(f"{path} is not UTF-8 text (byte {e.start}); put {what} there") from None


def find_local_corpus(data_dir: Path, split: str = "train") -> Path:
    for folder, pattern in LOCAL_LAYOUTS:
        path = data_dir / folder / pattern.format(split=split)
        if path.is_file():
            return path
    raise ValueError(f"no WikiText-2 {split} file under {data_dir}; {DATA_DIR_HELP}")


def corpus_source(data_dir: str | None = None, corpus: str = "wikitext2", split: str = "train") -> str:
    """Where load_corpus reads `split` from: the local file, hub:<dataset>/<config>, or the `corpus` spec
    (run.json records it, so a run says which data it saw even when the folder came from the environment)."""
    if corpus != "wikitext2":
        return corpus
    local = resolve_data_dir(data_dir)
    return str(find_local_corpus(local, split)) if local is not None else f"hub:{HUB_DATASET[0]}/{HUB_DATASET[1]}"


def corpus_files(spec: str) -> list[str]:
    """Expand comma-separated globs ('~/text/*.txt,books/*.parquet') into a sorted, duplicate-free file list."""
    files = []
    for pattern in (p.strip() for p in spec.split(",")):
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if pattern and not matches:
            raise ValueError(f"corpus: no file matches {pattern!r}; {CORPUS_HELP}")
        files += [m for m in matches if m not in files and os.path.isfile(m)]
    if not files:
        raise ValueError(f"corpus {spec!r} names no files; {CORPUS_HELP}")
    kinds = {"parquet" if f.endswith(".parquet") else "text" for f in files}
    if len(kinds) > 1:
        raise ValueError("corpus: mix of parquet and text files; convert them to one kind or list one kind")
    return files


def load_large_corpus(corpus: str, max_texts: int | None = None):
    """`corpus` (local file globs, or "wikipedia+books") as an on-disk, memory-mapped `datasets.Dataset`
    with one column `text` of non-empty texts, in file order."""
    import datasets

    if corpus == "wikipedia+books":
        parts = []
        for name, subset in HUB_PAPER_CORPUS:
            try:
                parts.append(load_hub_dataset(name, subset, split="train").select_columns(["text"]))
            except Exception as e:  # offline, hub down, dataset moved
                raise ValueError(f"could not load {name} from the hub ({type(e).__name__}); offline, pass local "
                                 "files instead: --corpus 'path/*.txt'") from None
        ds = datasets.concatenate_datasets(parts)
    else:
        files = corpus_files(corpus)
        kind = "parquet" if files[0].endswith(".parquet") else "text"
        for f in files if kind == "text" else ():  # checked here: datasets' own errors are tracebacks
            if Path(f).stat().st_size == 0:
                raise ValueError(f"corpus file {f} is empty; --corpus needs UTF-8 text files (one text per line)")
            check_text_file(Path(f), what="a UTF-8 text file (one text per line)")
        try:
            ds = datasets.load_dataset(kind, data_files={"train": files}, split="train")
        except Exception as e:  # a byte that is not UTF-8 past the first 64 KiB, a damaged parquet file, ...
            cause = e.__cause__ or e
            raise ValueError(f"corpus {corpus!r} could not be read as {kind} ({type(cause).__name__}: "
                             f"{(str(cause).splitlines() or [''])[0][:200]}); --corpus needs UTF-8 text files "
                             "(one text per line) or parquet files with a string column 'text'") from None
        if "text" not in ds.column_names:
            raise ValueError(f"corpus: the parquet files have no 'text' column (columns: {ds.column_names})")
        dtype = getattr(ds.features["text"], "dtype", None)
        if dtype not in ("string", "large_string"):
            raise ValueError(f"corpus {corpus!r}: the 'text' column holds {dtype or ds.features['text']}, not "
                             "strings; --corpus needs parquet files with a string column 'text'")
        ds = ds.select_columns(["text"])
    ds = ds.filter(lambda b: [bool(t and t.strip()) for t in b["text"]], batched=True)
    if max_texts is not None:
        ds = ds.select(range(min(max_texts, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"corpus {corpus!r} holds no non-empty text")
    return ds


def load_corpus(data_dir: str | None = None, split: str = "train", max_texts: int | None = None,
                corpus: str = "wikitext2"):
    """Non-empty lines of WikiText-2 split `split` (train | valid | test) as a `datasets.Dataset` with one
    column `text`; another `corpus` (training only) goes through `load_large_corpus`."""
    import datasets

    if corpus != "wikitext2":
        if split != "train":
            raise ValueError(f"corpus {corpus!r} has a training split only")
        return load_large_corpus(corpus, max_texts)
    local = resolve_data_dir(data_dir)
    if local is not None:
        path = find_local_corpus(local, split)
        if path.stat().st_size == 0:
            raise ValueError(f"{path} is empty; {DATA_DIR_HELP}")
        check_text_file(path)
        ds = datasets.load_dataset("text", data_files={split: str(path)}, split=split)
    else:
        try:
            ds = load_hub_dataset(*HUB_DATASET, split={"valid": "validation"}.get(split, split))
        except Exception as e:  # no network, hub down, ...
            raise ValueError(f"could not load {HUB_DATASET[0]} from the hub ({type(e).__name__}); "
                             f"to work offline, {DATA_DIR_HELP}") from None
    ds = ds.filter(lambda b: [bool(t.strip()) for t in b["text"]], batched=True)
    if max_texts is not None:
        ds = ds.select(range(min(max_texts, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"the WikiText-2 {split} split is empty; {DATA_DIR_HELP}")
    return ds.map(lambda b: {"text": [undo_wikitext_markers(t) for t in b["text"]]}, batched=True,
                  desc="joining @-@ markers")


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
    # "<unk>" would be read as the word pieces "<", "un", "##k", ">": use the tokenizer's unknown token
    unk = tokenizer.unk_token if tokenizer.unk_token and WIKITEXT_UNK not in tokenizer.get_vocab() else None

    def text_of(batch):
        return [t.replace(WIKITEXT_UNK, unk) for t in batch["text"]] if unk else batch["text"]

    if packing:
        body = block_size - 2

        def fn(batch):
            ids = tokenizer(text_of(batch), add_special_tokens=False)["input_ids"]
            stream = [t for line in ids for t in (*line, sep)]
            n = len(stream) // body
            return {"input_ids": [[cls, *stream[i * body:(i + 1) * body], sep] for i in range(n)]}
    else:
        def fn(batch):
            enc = tokenizer(text_of(batch), truncation=True, max_length=block_size)
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

    sequences: list[list[int]] | torch.Tensor | "datasets.Dataset"  # Dataset: packed rows, memory-mapped
    batch_size: int
    pad_id: int
    seed: int

    def __len__(self) -> int:
        return -(-len(self.sequences) // self.batch_size)

    def order(self, epoch: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if not isinstance(self.sequences, list):  # packed: a permutation of the blocks
            return list(torch.randperm(len(self.sequences), generator=g).split(self.batch_size))
        lengths = [len(s) for s in self.sequences]
        return [torch.tensor(b) for b in length_grouped_batches(lengths, self.batch_size, g)]

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(self.sequences, torch.Tensor):
            ids = self.sequences[idx]
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if not isinstance(self.sequences, list):  # on-disk Arrow rows, read for this batch only
            ids = torch.as_tensor(self.sequences[idx.tolist()]["input_ids"], dtype=torch.long)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        seqs = [self.sequences[i] for i in idx.tolist()]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s)
            mask[row, :len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def make_batches(tokenized, batch_size: int, pad_id: int, seed: int, packing: bool,
                 on_disk: bool = False) -> Batches:
    """on_disk (packed only): keep the blocks in the memory-mapped Arrow file instead of one tensor in RAM."""
    if on_disk:
        if not packing:
            raise ValueError("a corpus other than wikitext2 needs packing=True")
        return Batches(tokenized.with_format("numpy"), batch_size, pad_id, seed)
    ids = tokenized["input_ids"]
    seqs = torch.tensor(ids, dtype=torch.long) if packing else [list(s) for s in ids]
    return Batches(seqs, batch_size, pad_id, seed)


def token_counts(batches: Batches, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) occurrence counts over the training sequences (for `mlm_smoothing`)."""
    seqs = batches.sequences
    if not isinstance(seqs, (list, torch.Tensor)):  # on disk: count a chunk of rows at a time
        counts = torch.zeros(vocab_size, dtype=torch.long)
        for chunk in seqs.iter(batch_size=4096):
            counts += torch.bincount(torch.as_tensor(chunk["input_ids"]).flatten(), minlength=vocab_size)[:vocab_size]
        return counts
    flat = seqs.flatten() if isinstance(seqs, torch.Tensor) else torch.tensor([t for s in seqs for t in s])
    return torch.bincount(flat, minlength=vocab_size)[:vocab_size]
