"""Run configurations: small dataclasses, saved in every checkpoint, overridable field by field.

`TrainConfig` holds what every masked-LM training run needs (data, masking, optimiser, I/O).
`TeacherConfig` adds the architecture of an offline teacher trained from scratch;
`DistillConfig` adds the teacher to distil from and the triple loss.
"""
from __future__ import annotations

import dataclasses
import json
import re
import math
import sys
import types
import typing
from dataclasses import dataclass


@dataclass
class TrainConfig:
    # data
    data_dir: str | None = None  # local corpus folder; None -> $TINYDISTIL_DATA_DIR, then the hub
    # wikitext2 (in RAM, from data_dir or the hub) | "wikipedia+books" (hub) | comma-separated local file globs
    # ('corpus/*.txt', 'shards/*.parquet' with a text column): tokenised + packed once into an on-disk Arrow
    # cache and read memory-mapped, for corpora larger than memory (data_dir is then unused)
    corpus: str = "wikitext2"
    block_size: int = 128  # tokens per training sequence
    packing: bool = True  # pack the corpus into full blocks (no padding); False -> sentence batches grouped by length
    max_train_texts: int | None = None  # keep only the first N non-empty corpus lines (tiny runs)
    # masking (paper / reference recipe)
    mlm_probability: float = 0.15
    word_mask: float = 0.8  # of the chosen tokens: replaced by [MASK]
    word_keep: float = 0.1  # kept unchanged
    word_rand: float = 0.1  # replaced by a random token
    mlm_smoothing: float = 0.7  # choose token w with weight count(w)^-smoothing; 0 = uniform
    # optimisation
    batch_size: int = 32  # sequences per micro-batch
    tokens_per_update: int = 4096  # gradient accumulation is derived from this
    epochs: float = 1.0
    max_steps: int = 0  # optimizer updates; 0 -> derived from epochs
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.0
    warmup_frac: float = 0.05
    max_grad_norm: float = 5.0
    precision: str = "auto"  # auto | fp32 | fp16 | bf16  (auto: fp16 on pre-Ampere CUDA, bf16 on newer, fp32 on CPU)
    device: str = "auto"
    seed: int = 42
    # output
    output_dir: str = "runs/out"
    save_every: int = 100  # updates between checkpoints
    log_every: int = 10  # updates between log lines
    tensorboard: bool = False  # also live curves in <output_dir>/tensorboard (needs the tensorboard package)

    @property
    def grad_accum(self) -> int:
        return max(1, round(self.tokens_per_update / (self.batch_size * self.block_size)))

    def validate(self) -> None:
        """Raise ValueError naming the fix for values that cannot work."""
        checks = [
            (self.block_size >= 8, "block_size must be >= 8"),
            (bool(str(self.corpus).strip()), 'corpus must be "wikitext2", "wikipedia+books" or local file globs'),
            (self.corpus == "wikitext2" or self.packing, "a corpus other than wikitext2 needs packing=True"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0 < self.mlm_probability < 1, "mlm_probability must be in (0, 1)"),
            (abs(self.word_mask + self.word_keep + self.word_rand - 1) < 1e-6,
             "word_mask + word_keep + word_rand must sum to 1"),
            (self.mlm_smoothing >= 0, "mlm_smoothing must be >= 0 (0 = uniform masking)"),
            (self.max_steps >= 0, "max_steps must be >= 0 (0 = derived from epochs)"),
            (self.tokens_per_update >= 1, "tokens_per_update must be >= 1"),
            (math.isfinite(self.epochs) and self.epochs >= 0, "epochs must be a finite number >= 0"),
            (self.epochs > 0 or self.max_steps > 0, "set epochs > 0 or max_steps > 0"),
            (math.isfinite(self.lr) and self.lr > 0, "lr must be a finite number > 0"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas must be two numbers in [0, 1)"),
            (0 <= self.warmup_frac < 1, "warmup_frac must be in [0, 1)"),
            (self.precision in ("auto", "fp32", "fp16", "bf16"), "precision must be auto, fp32, fp16 or bf16"),
            (self.save_every >= 1 and self.log_every >= 1, "save_every and log_every must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"{type(self).__name__}: {msg}")


@dataclass
class TeacherConfig(TrainConfig):
    """Pretrain a small BERT teacher from scratch (offline path): WordPiece tokenizer + MLM."""

    vocab_size: int = 8192  # WordPiece vocabulary trained on the corpus
    hidden_size: int = 256
    num_layers: int = 6
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512  # room for 384-token SQuAD windows when fine-tuning
    # A shallower teacher folder to grow this one from by stacking its layers (Gong et al. 2019): a deep
    # post-LN BERT trained from scratch sits on the unigram plateau (loss ~ unigram entropy) for thousands of
    # updates, a 2-layer one leaves it within ~150; its stacked copy starts off the plateau. Tokenizer from it.
    grow_from: str | None = None
    # A pretrained encoder to continue masked-LM training from instead of training from scratch: a folder, a
    # hub id, or a known name (teacher.ENCODERS, e.g. "all-MiniLM-L6-v2": pinned package / hub revision, sha256
    # checked). Its architecture and tokenizer are used, so the size fields above do not apply; a missing MLM
    # head is initialised fresh with its decoder tied to the word embeddings.
    init_from: str | None = None
    # A tokenizer folder to use instead of training a WordPiece vocabulary on the corpus. Trained vocabularies
    # differ between processes (tokenizers' trainer breaks count ties in hash-map order: huggingface/tokenizers
    # #1794), so bit-identical fresh runs need a fixed one; the smoke preset uses a bundled one.
    vocab_from: str | None = None

    def validate(self) -> None:
        super().validate()
        if self.init_from is not None:
            if not str(self.init_from).strip():
                raise ValueError("TeacherConfig: init_from must be an encoder folder, hub id or known name (or unset)")
            if self.grow_from is not None:
                raise ValueError("TeacherConfig: set init_from or grow_from, not both")
            if self.vocab_from is not None:
                raise ValueError("TeacherConfig: init_from brings its own vocabulary: unset vocab_from "
                                 "(--vocab-from none)")
            return  # the architecture comes from the encoder
        if self.hidden_size % self.num_heads:
            raise ValueError("TeacherConfig: hidden_size must be divisible by num_heads")
        if self.max_position_embeddings < self.block_size:
            raise ValueError("TeacherConfig: max_position_embeddings must be >= block_size")
        if self.grow_from is not None and not str(self.grow_from).strip():
            raise ValueError("TeacherConfig: grow_from must be a teacher folder (or unset)")
        if self.vocab_from is not None and (not str(self.vocab_from).strip() or self.grow_from is not None):
            raise ValueError("TeacherConfig: vocab_from must be a tokenizer folder, and a grown teacher keeps its "
                             "stem's vocabulary (unset one of grow_from / vocab_from)")


@dataclass
class DistillConfig(TrainConfig):
    """Distil `teacher` (path or hub id of a BERT-like masked LM) into a half-depth DistilBERT."""

    teacher: str = "bert-base-uncased"
    student_layers: list[int] | None = None  # teacher layers copied into the student; None -> every other layer
    student_init: str = "teacher"  # teacher | random (paper Table 4 ablation)
    temperature: float = 2.0
    alpha_kl: float = 5.0  # soft-target KL (x T^2); alpha_ce in the reference distiller and old runs
    alpha_mlm: float = 2.0  # masked-LM cross-entropy
    alpha_cos: float = 1.0  # 1 - cos(h_s, h_t) on final hidden states
    # beyond the paper, off by default: 1 - cos of the mean-pooled final hidden states (losses.sentence_cosine_loss)
    alpha_sent: float = 0.0
    restrict_ce_to_mask: bool = False  # KL only on masked positions instead of every non-pad one
    loss_chunk_size: int = 0  # rows per chunk of the vocabulary projection + KL/CE; 0 = auto (see chunked_loss.auto_chunk_rows)
    # each chunk of the KL + CE as one torch.compile'd kernel: on / off / auto (CPU, large vocabulary products:
    # chunked_loss.fused_chunks_apply); a few seconds of compilation at the first update
    fused_loss: str = "auto"
    # fractions of the run's updates (each in (0, 1)) after which a copy of the student is kept in
    # snapshots/update_<n>/ (the study's distillation-tokens curve scores them); training is unchanged by it
    snapshot_fracs: tuple[float, ...] = ()

    def validate(self) -> None:
        super().validate()
        if self.temperature <= 0:
            raise ValueError("DistillConfig: temperature must be > 0")
        alphas = (self.alpha_kl, self.alpha_mlm, self.alpha_cos, self.alpha_sent)
        if min(alphas) < 0 or sum(alphas) == 0:
            raise ValueError("DistillConfig: alphas must be >= 0 and at least one > 0")
        if self.student_init not in ("teacher", "random"):
            raise ValueError("DistillConfig: student_init must be 'teacher' or 'random'")
        if self.loss_chunk_size < 0:
            raise ValueError("DistillConfig: loss_chunk_size must be >= 0 (0 = auto)")
        if self.fused_loss not in ("on", "off", "auto"):
            raise ValueError(f"DistillConfig: fused_loss must be on, off or auto, not {self.fused_loss!r}")
        if any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1 for f in self.snapshot_fracs):
            raise ValueError(f"DistillConfig: snapshot_fracs {list(self.snapshot_fracs)} must be fractions of the run "
                             "in (0, 1), e.g. [0.25,0.5] (the final model is kept anyway)")
        layers = self.student_layers
        if layers is not None:
            if (not isinstance(layers, (list, tuple)) or not layers
                    or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers)):
                raise ValueError(f"DistillConfig: student_layers {layers!r} must be a non-empty list of teacher layer "
                                 "indices (integers >= 0), e.g. [0,2,5]")
            if any(b <= a for a, b in zip(layers, layers[1:])):
                raise ValueError(f"DistillConfig: student_layers {list(layers)} must be strictly increasing "
                                 "(each teacher layer once, bottom to top)")


# Earlier names, as run folders written before the rename hold them (the reference distiller's): a DistillConfig field
# in run.json / checkpoint/state.pt, a term in log.jsonl. Read under the current name; `--alpha-ce` still works.
RENAMED = {"alpha_ce": "alpha_kl", "loss_ce": "loss_kl"}


def current_names(d: dict, renamed: dict = RENAMED) -> dict:
    """`d` (a saved config or a log record) with each earlier name in `renamed` replaced by the current one, in
    place of the old key (order kept); ValueError when both names are there with different values."""
    out = {}
    for k, v in d.items():
        new = renamed.get(k, k)
        if new != k and new in d and d[new] != v:
            raise ValueError(f"{k} is the earlier name of {new}; give one of them, not both ({v!r} and {d[new]!r})")
        out[new] = v
    return out


def current_name(name: str, renamed: dict = RENAMED) -> str:
    """The current name of a field given on the command line; an earlier one (--alpha-ce: a deprecated alias) is
    accepted with a note on stderr."""
    if name in renamed:
        print(f"note: --{name.replace('_', '-')} is the earlier name of --{renamed[name].replace('_', '-')}",
              file=sys.stderr)
    return renamed.get(name, name)


def to_dict(cfg: TrainConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["_kind"] = type(cfg).__name__
    return d


def from_dict(d: dict) -> TrainConfig:
    d = dict(d)
    kind = d.pop("_kind", "DistillConfig")
    cls = {"TeacherConfig": TeacherConfig, "DistillConfig": DistillConfig}.get(kind)
    if cls is None:
        raise ValueError(f"unknown config kind {kind!r}")
    return replace(cls(), **d)


def replace(cfg: TrainConfig, **changes) -> TrainConfig:
    """dataclasses.replace that rejects unknown keys with the list of valid ones, then validates; an earlier
    field name (RENAMED: a saved config, an old call) counts as the current one."""
    changes = current_names(changes)
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown {type(cfg).__name__} field(s) {unknown}; valid fields: {', '.join(sorted(names))}")
    if "betas" in changes and changes["betas"] is not None:
        changes["betas"] = tuple(changes["betas"])
    hints = typing.get_type_hints(type(cfg))
    for name, value in changes.items():
        check_type(type(cfg).__name__, name, value, hints[name])
    new = dataclasses.replace(cfg, **changes)
    new.validate()
    return new


def check_type(owner: str, name: str, value, hint) -> None:
    """ValueError naming the field when `value` does not fit its annotation (str, int, float, bool, None,
    tuple/list of numbers); ints are accepted for floats, bools are not numbers here."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    if value is None:
        if type(None) in args:
            return
    else:
        for t in args:
            origin = typing.get_origin(t) or t
            if origin is bool and isinstance(value, bool):
                return
            if isinstance(value, bool):
                continue
            if origin is float and isinstance(value, (int, float)):
                return
            if origin in (int, str) and isinstance(value, origin):
                return
            if origin in (list, tuple) and isinstance(value, (list, tuple)):
                return
    raise ValueError(f"{owner}.{name}: {value!r} is not a {getattr(hint, '__name__', str(hint))}")


def parse_value(cfg: TrainConfig, name: str, text: str):
    """Turn a command-line string into the type of field `name` (e.g. '--lr 1e-3', '--betas [0.9,0.99]')."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    if name not in fields:
        raise ValueError(f"unknown {type(cfg).__name__} field {name!r}; valid fields: {', '.join(sorted(fields))}")
    hint = str(typing.get_type_hints(type(cfg))[name])
    if text.lower() in ("none", "null") and "None" in hint:
        return None
    try:
        if "bool" in hint:
            if text.lower() in ("1", "true", "yes"):
                return True
            if text.lower() in ("0", "false", "no"):
                return False
            raise ValueError(text)
        if "tuple" in hint or "list" in hint:
            value = json.loads(text if text.startswith("[") else f"[{text}]")
            return tuple(value) if "tuple" in hint else value
        if "int" in hint and "float" not in hint:
            return int(text)
        if "float" in hint:
            return float(text)
    except (ValueError, json.JSONDecodeError):
        readable = re.sub(r"<class '(\w+)'>", r"\1", hint).replace("typing.", "")  # "<class 'float'>" -> "float"
        raise ValueError(f"--{name.replace('_', '-')}: cannot read {text!r} as {readable}") from None
    return text
