"""Hugging Face helpers every loader shares: a quiet load, local folder vs hub id, the model's own tokenizer.

Every loader takes a local folder as well as a hub id (offline machines have no hub); errors are one line
naming the fix, never the library's traceback.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


@contextlib.contextmanager
def quiet(bars: bool = True):
    """transformers' logging at error level (and, with bars=True, its progress bars off) inside the block:
    the "newly initialised head" reports and per-load bars are expected where we use it. Restored after."""
    from transformers.utils import logging as hf_logging

    verbosity, enabled = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars and enabled:
            hf_logging.enable_progress_bar()


def load_hub_dataset(path: str, *args, **kwargs):
    """datasets.load_dataset(path, ...) from the hub, announced in one line (it may wait for retries when offline),
    with huggingface_hub's warning per retry kept back: a failure is the caller's one-line error."""
    import sys

    import datasets
    from huggingface_hub.utils import logging as hub_logging

    print(f"[tinydistil] {path}: from the hub (no local data folder given; --data-dir or TINYDISTIL_DATA_DIR "
          "reads local files)", file=sys.stderr, flush=True)
    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        return datasets.load_dataset(path, *args, **kwargs)
    finally:
        hub_logging.set_verbosity(level)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, at most 160 characters (for one-line errors)."""
    return (str(e).splitlines() or [""])[0][:160]


def is_local_path(name_or_path: str) -> bool:
    """True for something that names a folder on disk rather than a hub id ('org/name')."""
    return Path(name_or_path).expanduser().exists() or name_or_path.startswith((".", "/", "~")) \
        or name_or_path.count("/") > 1


def model_path(name_or_path: str) -> str:
    """A local path with ~ expanded, or the hub id unchanged."""
    return str(Path(name_or_path).expanduser()) if is_local_path(name_or_path) else name_or_path


def check_vocab(name: str, tokenizer, vocab: int) -> None:
    """ValueError when `tokenizer` makes ids beyond the model's `vocab` embeddings."""
    if len(tokenizer) > vocab:
        raise ValueError(f"the tokenizer of {name!r} has {len(tokenizer)} tokens but the model has only {vocab} "
                         "embeddings: they do not belong together; save the model's own tokenizer next to it")


def load_tokenizer(name_or_path: str):
    """Fast tokenizer of a model folder or hub id; ValueError when the folder has none, when it has no padding
    token, or when it makes ids the model has no embedding for (checked on the model's config, before any
    data is touched)."""
    from transformers import AutoConfig, AutoTokenizer

    local = is_local_path(name_or_path)
    path = Path(name_or_path).expanduser()
    if local and not (path / "config.json").is_file():
        raise ValueError(f"model folder {path} has no config.json; pass a folder written by save_pretrained "
                         "(e.g. runs/cpu/student/model) or a hub id such as distilbert-base-uncased")
    if local and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ValueError(f"model folder {path} has no tokenizer ({' / '.join(TOKENIZER_FILES)}); save the "
                         "model's own tokenizer next to it with tokenizer.save_pretrained(folder)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path) if local else name_or_path, use_fast=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"could not load the tokenizer of {name_or_path!r} ({first_line(e)}); "
                         "offline, pass a local model folder") from None
    if tok.pad_token_id is None:
        raise ValueError(f"the tokenizer of {name_or_path!r} has no padding token; fine-tuning batches need one: "
                         "use a BERT-style model, or set tokenizer.pad_token and save it next to the model")
    vocab = getattr(AutoConfig.from_pretrained(str(path) if local else name_or_path), "vocab_size", None)
    if vocab is not None:
        check_vocab(name_or_path, tok, vocab)
    return tok
