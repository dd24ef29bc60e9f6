"""Teachers: load any masked LM (hub id or folder), or build a small BERT from scratch offline.

The offline path trains a WordPiece vocabulary on the corpus with the `tokenizers` library and
pretrains a small `BertForMaskedLM` with MLM (the same training loop as distillation).
"""
from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM, BertTokenizerFast

from .config import TeacherConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def load_teacher(name_or_path: str):
    """(model, tokenizer) from a local folder or the hub; clear errors when neither works."""
    local = Path(name_or_path).expanduser()
    looks_local = local.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local and not (local / "config.json").is_file():
        raise ValueError(f"teacher folder {local} has no config.json; train one first with "
                         "`python -m tinydistil pretrain-teacher` or pass a hub id such as bert-base-uncased")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if looks_local else name_or_path)
        model = AutoModelForMaskedLM.from_pretrained(str(local) if looks_local else name_or_path)
    except OSError as e:
        where = "folder" if looks_local else "hub id"
        raise ValueError(f"could not load teacher {where} {name_or_path!r} ({str(e).splitlines()[0][:160]}); "
                         "offline, pretrain a teacher with `python -m tinydistil pretrain-teacher --preset cpu` "
                         "and pass its folder as --teacher") from None
    check_tokenizer(model, tokenizer, name_or_path)
    return model, tokenizer


def check_tokenizer(model, tokenizer, name: str = "the model") -> None:
    """The tokenizer must produce ids the model has, and have [MASK]/[CLS]/[SEP]/[PAD]."""
    vocab = model.config.vocab_size
    if len(tokenizer) > vocab:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but {name} has only {vocab} embeddings: "
                         "they do not belong together; save the teacher's own tokenizer next to it")
    missing = [t for t in ("mask", "cls", "sep", "pad") if getattr(tokenizer, f"{t}_token_id") is None]
    if missing:
        raise ValueError(f"tokenizer of {name} lacks special tokens {missing}; use a BERT-style WordPiece tokenizer")


def train_tokenizer(texts, vocab_size: int, out_dir: str | Path) -> BertTokenizerFast:
    """Train an uncased WordPiece vocabulary on an iterable of strings; saved to `out_dir`."""
    from tokenizers import BertWordPieceTokenizer

    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    wp.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                           show_progress=False)
    pad, unk, cls, sep, mask = SPECIAL_TOKENS
    tok = BertTokenizerFast(tokenizer_object=wp._tokenizer, do_lower_case=True, strip_accents=True,
                            pad_token=pad, unk_token=unk, cls_token=cls, sep_token=sep, mask_token=mask)
    tok.save_pretrained(str(out_dir))
    return tok


def grow_teacher(cfg: TeacherConfig, tokenizer) -> BertForMaskedLM:
    """The model of `cfg.grow_from` with its encoder layers stacked to cfg.num_layers (progressive stacking,
    Gong et al. 2019: layers 0..n-1 are copied on top of themselves, [0, 1] -> [0, 1, 0, 1]). Every other
    weight (embeddings, MLM head) is copied unchanged. ValueError when the sizes do not allow it."""
    import copy

    small, _ = load_teacher(cfg.grow_from)
    sc = small.config
    n = sc.num_hidden_layers
    if sc.model_type != "bert":
        raise ValueError(f"grow_from {cfg.grow_from!r} is a {sc.model_type} model; grow from a BERT teacher folder")
    if cfg.num_layers % n or cfg.num_layers <= n:
        raise ValueError(f"cannot stack the {n} layers of {cfg.grow_from!r} into {cfg.num_layers}; num_layers must "
                         f"be a multiple of {n} larger than it")
    mismatched = [f"{k} {getattr(sc, k)} != {v}" for k, v in (
        ("hidden_size", cfg.hidden_size), ("num_attention_heads", cfg.num_heads),
        ("intermediate_size", cfg.intermediate_size), ("max_position_embeddings", cfg.max_position_embeddings),
        ("vocab_size", len(tokenizer))) if getattr(sc, k) != v]
    if mismatched:
        raise ValueError(f"grow_from {cfg.grow_from!r} differs from the teacher config ({', '.join(mismatched)}); "
                         "use the same sizes (only num_layers may grow)")
    config = copy.deepcopy(sc)
    config.num_hidden_layers = cfg.num_layers
    big = BertForMaskedLM(config)
    target = big.state_dict()  # tensors share storage with the model: copy_ writes into it
    prefix = "bert.encoder.layer."
    for k, v in small.state_dict().items():
        if k.startswith(prefix):
            i, rest = k[len(prefix):].split(".", 1)
            for copy_i in range(int(i), cfg.num_layers, n):
                target[f"{prefix}{copy_i}.{rest}"].copy_(v)
        elif k in target:
            target[k].copy_(v)
    return big


def new_teacher(cfg: TeacherConfig, tokenizer) -> BertForMaskedLM:
    """A randomly initialised BertForMaskedLM of the configured size for `tokenizer`."""
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings, pad_token_id=tokenizer.pad_token_id,
    )
    return BertForMaskedLM(config)
