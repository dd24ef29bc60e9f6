"""SQuAD v1.1 extractive question answering: windows, n-best decoding, EM/F1, and DistilBERT (D).

    data = load_squad(data_dir)                                   # train / eval examples + where they came from
    run_squad("runs/cpu/teacher/model", cfg, opts)                # fine-tune, score, save the QA model
    run_squad("runs/cpu/student/model", cfg, opts,                # DistilBERT (D): second distillation step
              teacher="runs/eval/cpu_teacher/squad/model")        #   from the SQuAD-fine-tuned teacher

Windows follow the reference recipe: question + a chunk of the context, `max_seq_len` (384) tokens in all,
chunks overlapping by `doc_stride` (128) tokens (the fast tokenizer's overflow), with the offset mapping to
map token spans back to context characters. A training window that does not hold the answer points at [CLS].
Decoding takes the `n_best` (20) highest start and end logits of every window of a question and keeps the
best-scoring span (start + end logit) of at most `max_answer_length` (30) tokens inside the context.

(D): loss = alpha_task * CE + alpha_kl * T^2 * KL(teacher || student), both averaged over the start and the end
distributions (paper: 0.5 / 0.5, T = 2). The teacher's logits on the training windows are computed once,
before training (the teacher runs in eval mode, so they are the same every epoch).

Offline only the dev file exists (no train-v1.1.json): the dev *articles* are then split once, with a fixed
seed, into a fine-tuning part and a scoring part, and the results say so; they are not comparable with the
paper's (fine-tuned on 87.6K train questions, scored on all of dev).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..data import resolve_data_dir as _resolve_dir
from ..hf import check_vocab, first_line, load_hub_dataset, load_tokenizer, model_path, quiet
from ..losses import qa_distillation_loss
from .finetune import FinetuneConfig, finetune, predict
from .metrics import squad_metrics
from .registry import Downstream
from .squad_files import read_squad_json, split_articles
from .runner import (Fitted, NoData, Prepared, check_output_dir, default_output_dir, is_score, normalize_model,
                     run_seeds, summarize_seeds, train_subset)

HUB_DATASET = "rajpurkar/squad"
LOCAL_FOLDERS = ("squad-v1.1", "squad")
SQUAD_FINETUNE = dict(max_seq_len=384, epochs=2, batch_size=16)  # FinetuneConfig defaults for SQuAD (lr 5e-5)
DATA_DIR_HELP = ("set --data-dir (or TINYDISTIL_DATA_DIR) to a folder holding squad-v1.1/dev-v1.1.json "
                 "(and train-v1.1.json if you have it), or leave both unset to use the hub")


@dataclass
class SquadConfig:
    """SQuAD-specific settings; optimisation settings live in FinetuneConfig (max_seq_len = window length)."""

    doc_stride: int = 128  # tokens shared by consecutive windows of a long context
    n_best: int = 20  # start / end candidates per window
    max_answer_length: int = 30  # tokens
    temperature: float = 2.0  # (D) only
    alpha_task: float = 0.5  # (D): weight of the cross-entropy on the gold span (hard targets)
    alpha_kl: float = 0.5  # (D): weight of T^2 * KL to the teacher's start / end distributions (soft targets)
    dev_train_fraction: float = 0.5  # offline, no train file: share of dev articles used for fine-tuning
    max_eval_examples: int | None = None  # score a fixed random subset of the eval questions (CPU budgets)
    # earlier names (the reference SQuAD distiller's, and results written before the rename): alpha_ce was the
    # hard span cross-entropy, alpha_kd the KL; accepted as --alpha-ce / --alpha-kd and in saved settings
    RENAMED: ClassVar[dict] = {"alpha_ce": "alpha_task", "alpha_kd": "alpha_kl"}

    def validate(self, max_seq_len: int) -> None:
        checks = [
            (0 < self.doc_stride < max_seq_len // 2, f"doc_stride must be in (0, max_seq_len / 2 = {max_seq_len // 2})"),
            (self.n_best >= 1, "n_best must be >= 1"),
            (self.max_answer_length >= 1, "max_answer_length must be >= 1"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.alpha_task >= 0 and self.alpha_kl >= 0 and self.alpha_task + self.alpha_kl > 0,
             "alpha_task and alpha_kl must be >= 0, not both 0"),
            (0 < self.dev_train_fraction < 1, "dev_train_fraction must be in (0, 1)"),
            (self.max_eval_examples is None or self.max_eval_examples >= 1, "max_eval_examples must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"SquadConfig: {msg}")


@dataclass
class SquadData:
    train: object  # datasets.Dataset: id, title, context, question, answers {text: [...], answer_start: [...]}
    eval: object  # same columns
    source: str
    comparable: bool  # False when the eval questions are a part of dev and training used the rest


# ------------------------------------------------------------------ loading
def load_local(data_dir: Path, opts: SquadConfig) -> SquadData:
    import datasets

    folder = next((data_dir / f for f in LOCAL_FOLDERS if (data_dir / f).is_dir()), None)
    if folder is None or not (folder / "dev-v1.1.json").is_file():
        raise NoData(f"no {' or '.join(f + '/dev-v1.1.json' for f in LOCAL_FOLDERS)} in {data_dir}")
    dev = read_squad_json(folder / "dev-v1.1.json")
    if (folder / "train-v1.1.json").is_file():
        return SquadData(datasets.Dataset.from_list(read_squad_json(folder / "train-v1.1.json")),
                         datasets.Dataset.from_list(dev), str(folder), True)
    train, held = split_articles(dev, opts.dev_train_fraction)
    n_art = lambda rs: len({r["title"] for r in rs})  # noqa: E731
    source = (f"{folder}/dev-v1.1.json only: fine-tuned on {n_art(train)} dev articles ({len(train)} questions), "
              f"scored on the other {n_art(held)} ({len(held)} questions)")
    return SquadData(datasets.Dataset.from_list(train), datasets.Dataset.from_list(held), source, False)


def load_hub() -> SquadData:
    try:
        dd = load_hub_dataset(HUB_DATASET)
    except Exception as e:  # no network, hub down, ...
        raise NoData(f"hub {HUB_DATASET} unreachable ({type(e).__name__})") from None
    return SquadData(dd["train"], dd["validation"], f"hub:{HUB_DATASET}", True)


def load_squad(data_dir=None, opts: SquadConfig | None = None) -> SquadData:
    """Local files when a data directory is given (or TINYDISTIL_DATA_DIR is set), else the hub."""
    local = _resolve_dir(data_dir, DATA_DIR_HELP)
    return load_local(local, opts or SquadConfig()) if local is not None else load_hub()


# ------------------------------------------------------------------ windows
def _window(tokenizer, batch, max_seq_len: int, stride: int):
    enc = tokenizer([q.lstrip() for q in batch["question"]], batch["context"], truncation="only_second",
                    max_length=max_seq_len, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, return_token_type_ids=True)  # a BERT teacher needs segment ids
    return enc, enc.pop("overflow_to_sample_mapping"), enc.pop("offset_mapping")


def _context_span(seq_ids: list) -> tuple[int, int]:
    start = seq_ids.index(1)
    return start, len(seq_ids) - 1 - seq_ids[::-1].index(1)


def train_features(ds, tokenizer, max_seq_len: int, stride: int):
    """Windows with start_positions / end_positions (token indices; 0 = [CLS] when the window misses the
    answer). The first gold answer is the training target, as in the reference scripts."""
    def fn(batch):
        enc, sample_map, offsets = _window(tokenizer, batch, max_seq_len, stride)
        starts, ends = [], []
        for i, offs in enumerate(offsets):
            ans = batch["answers"][sample_map[i]]
            a_start = ans["answer_start"][0]
            a_end = a_start + len(ans["text"][0])
            c0, c1 = _context_span(enc.sequence_ids(i))
            if offs[c0][0] > a_start or offs[c1][1] < a_end:
                starts.append(0)
                ends.append(0)
                continue
            s = c0
            while s <= c1 and offs[s][0] <= a_start:
                s += 1
            e = c1
            while e >= c0 and offs[e][1] >= a_end:
                e -= 1
            starts.append(s - 1)
            ends.append(e + 1)
        enc["start_positions"], enc["end_positions"] = starts, ends
        return enc

    return ds.map(fn, batched=True, remove_columns=ds.column_names, desc="SQuAD train windows")


def eval_features(ds, tokenizer, max_seq_len: int, stride: int):
    """Windows with example_id and offset_mapping; offsets of question / special tokens are (-1, -1)."""
    def fn(batch):
        enc, sample_map, offsets = _window(tokenizer, batch, max_seq_len, stride)
        enc["example_id"] = [batch["id"][j] for j in sample_map]
        enc["offset_mapping"] = [[tuple(o) if sid == 1 else (-1, -1) for o, sid in zip(offs, enc.sequence_ids(i))]
                                 for i, offs in enumerate(offsets)]
        return enc

    return ds.map(fn, batched=True, remove_columns=ds.column_names, desc="SQuAD eval windows")


def decode_answers(examples, features, start_logits: np.ndarray, end_logits: np.ndarray,
                   n_best: int = 20, max_answer_length: int = 30) -> dict[str, str]:
    """Question id -> answer text: the best span (start + end logit) over all windows of the question.

    start_logits / end_logits: (num_features, L >= each window's length), rows in `features` order.
    A span counts only if both ends lie in the context, end >= start and it has <= max_answer_length tokens.
    A question with no valid span gets "" (scores 0).
    """
    by_example: dict[str, list[int]] = {}
    for i, eid in enumerate(features["example_id"]):
        by_example.setdefault(eid, []).append(i)
    offsets_all = features["offset_mapping"]
    answers = {}
    for ex in examples:
        best, text = -np.inf, ""
        for i in by_example.get(ex["id"], []):
            offs = offsets_all[i]
            n = len(offs)
            s_log, e_log = start_logits[i, :n], end_logits[i, :n]
            for s in np.argsort(s_log)[::-1][:n_best]:
                if offs[s][0] < 0:
                    continue
                for e in np.argsort(e_log)[::-1][:n_best]:
                    if offs[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = s_log[s] + e_log[e]
                    if score > best:
                        best, text = score, ex["context"][offs[s][0]:offs[e][1]]
        answers[ex["id"]] = text
    return answers


# ------------------------------------------------------------------ (D) loss
def _distillation_loss_fn(teacher_start: np.ndarray, teacher_end: np.ndarray, opts: SquadConfig):
    """finetune() loss_fn: the student's (D) loss against the teacher's precomputed logits of rows `idx`."""
    t_start, t_end = torch.from_numpy(teacher_start), torch.from_numpy(teacher_end)

    def loss_fn(model, batch, idx):
        out = model(**{k: v for k, v in batch.items() if k not in ("start_positions", "end_positions")})
        length = out.start_logits.shape[1]
        dev = out.start_logits.device
        loss, _, _ = qa_distillation_loss(out.start_logits, out.end_logits, t_start[idx, :length].to(dev),
                                          t_end[idx, :length].to(dev), batch["start_positions"],
                                          batch["end_positions"], batch["attention_mask"].bool(),
                                          opts.temperature, opts.alpha_task, opts.alpha_kl)
        return loss

    return loss_fn


# ------------------------------------------------------------------ loading models
def load_qa_model(name_or_path: str, tokenizer, seed: int = 0):
    """AutoModelForQuestionAnswering; a fresh span head (drawn from `seed`) unless the folder has one."""
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(seed)
    try:
        with quiet(bars=False):  # the "newly initialised qa_outputs" report is expected
            model = AutoModelForQuestionAnswering.from_pretrained(model_path(name_or_path))
    except OSError as e:
        raise ValueError(f"could not load model {name_or_path!r} ({first_line(e)}); "
                         "offline, pass a local model folder") from None
    check_vocab(name_or_path, tokenizer, model.get_input_embeddings().num_embeddings)
    return model


def _same_vocab(student_tok, teacher_tok, teacher: str) -> None:
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        raise ValueError(f"the (D) teacher {teacher!r} uses another vocabulary than the student; distil from a "
                         "teacher that shares the student's tokenizer (the student's own teacher, fine-tuned on SQuAD)")


# ------------------------------------------------------------------ run
@dataclass
class SquadTask:
    """SQuAD as an eval.runner.Task; with a (D) teacher, its logits on the training windows are computed once
    in `prepare` and every seed's loss mixes them in (qa_distillation_loss)."""
    opts: SquadConfig
    teacher: str | None = None
    teacher_tokenizer: object = None
    name: str = "squad"

    @property
    def display(self) -> str:
        return "SQuAD (D)" if self.teacher else "SQuAD"

    def load(self, data_dir) -> SquadData:
        return load_squad(data_dir, self.opts)

    def prepare(self, data: SquadData, tokenizer, cfg: FinetuneConfig) -> Prepared:
        train = train_subset(data.train, cfg.max_train_examples)
        held = train_subset(data.eval, self.opts.max_eval_examples)
        train_f = train_features(train, tokenizer, cfg.max_seq_len, self.opts.doc_stride)
        eval_f = eval_features(held, tokenizer, cfg.max_seq_len, self.opts.doc_stride)
        loss_fn, t0 = None, time.time()
        if self.teacher:
            t_logits = predict(load_qa_model(self.teacher, self.teacher_tokenizer), self.teacher_tokenizer, train_f, cfg)
            loss_fn = _distillation_loss_fn(t_logits["start_logits"], t_logits["end_logits"], self.opts)
        return Prepared(train_f, {"held": held, "eval_f": eval_f, "loss_fn": loss_fn,
                                  "references": {ex["id"]: ex["answers"]["text"] for ex in held}},
                        {"teacher": self.teacher, "squad": dataclasses.asdict(self.opts), "train_examples": len(train),
                         "train_windows": len(train_f), "eval_examples": len(held), "eval_windows": len(eval_f),
                         "teacher_logits_time_s": round(time.time() - t0, 1), "comparable": data.comparable})

    def fit(self, model: str, tokenizer, prep: Prepared, cfg: FinetuneConfig, seed: int, bar) -> Fitted:
        x = prep.extra
        qa = load_qa_model(model, tokenizer, seed=seed)
        res = finetune(qa, tokenizer, prep.train, cfg, seed, bar=bar, loss_fn=x["loss_fn"])
        logits = predict(res.model, tokenizer, x["eval_f"].remove_columns(["example_id", "offset_mapping"]), cfg)
        answers = decode_answers(x["held"], x["eval_f"], logits["start_logits"], logits["end_logits"],
                                 self.opts.n_best, self.opts.max_answer_length)
        metrics = squad_metrics(answers, x["references"])
        return Fitted(res.model, metrics["f1"], metrics, res.steps, res.train_time_s,
                      {"sample_predictions": {k: answers[k] for k in list(answers)[:5]}})


def run_squad(model: str, cfg: FinetuneConfig | None = None, opts: SquadConfig | None = None, teacher: str | None = None,
              output_dir=None, data_dir=None, progress: bool = True, save_model: bool = True):
    """Fine-tune `model` on SQuAD for cfg.seeds seeds and score EM / F1 on the eval questions.

    teacher: a SQuAD-fine-tuned QA model folder -> DistilBERT (D) (see qa_distillation_loss).
    The first seed's fine-tuned model is saved to `output_dir/model` (a (D) teacher for the student).
    Returns a one-row DataFrame: score (median F1), exact_match, f1 (medians, 0-100), comparable; score
    NOT_RUN without data. Finished seeds in `output_dir/seed<k>.json` are read back, not rerun.
    """
    cfg = cfg or FinetuneConfig(**SQUAD_FINETUNE)
    opts = opts or SquadConfig()
    cfg.validate()
    opts.validate(cfg.max_seq_len)
    model = normalize_model(model)
    teacher = normalize_model(teacher) if teacher else None
    out = Path(output_dir or default_output_dir(model, "squad_d" if teacher else "squad"))
    kind = _kind(opts, teacher)
    tokenizer = t_tok = None
    if any(not (out / f"seed{s}.json").is_file() for s in cfg.seed_list):
        tokenizer = load_tokenizer(model)  # checks the model folders before any data is read
        t_tok = load_tokenizer(teacher) if teacher else None
        if teacher:
            _same_vocab(tokenizer, t_tok, teacher)
    check_output_dir(out, model, cfg, kind, earlier_kinds=(_kind(opts, teacher, earlier_names=True),))
    run_seeds(SquadTask(opts, teacher, t_tok), model, tokenizer, cfg, out, data_dir, progress, save_model=save_model)
    df = summarize_squad(out)
    df.to_csv(out / "summary.csv", index=False)
    return df


def _kind(opts: SquadConfig, teacher: str | None, earlier_names: bool = False) -> str:
    """The settings an output folder's finetune.json records; earlier_names: as written before the rename."""
    d = {**dataclasses.asdict(opts), "teacher": teacher}
    if earlier_names:
        d = {old: d.pop(new) for old, new in SquadConfig.RENAMED.items()} | d
    return "squad " + json.dumps(d, sort_keys=True)


def summarize_squad(output_dir):
    """One-row DataFrame of the finished SQuAD runs in `output_dir` (see run_squad)."""
    return summarize_seeds(output_dir, "squad", "SQuAD", ["exact_match", "f1"], lambda rs: {
        "data": rs[0]["data"], "comparable": rs[0]["comparable"], "distilled_from": rs[0].get("teacher"),
        "train_examples": rs[0]["train_examples"], "eval_examples": rs[0]["eval_examples"]})


def table_cells(results) -> dict:
    """SQuAD EM / F1 cells (0-100) and a note from run_squad / summarize_squad output; "not run: <reason>"
    when nothing finished. Scores from a split of dev are marked as not comparable with the paper's."""
    rec = results.to_dict("records")[0]
    if not is_score(rec["score"]):
        reason = rec.get("reason") or "no data"
        cell = f"not run: {reason}" if reason != "not attempted" else "not run"
        return {"SQuAD EM": cell, "SQuAD F1": cell, "note": ""}
    note = f"SQuAD EM/F1 median of {int(rec['seeds_run'])} seed(s)"
    if rec.get("train_examples"):
        note += f", fine-tuned on {rec['train_examples']} questions, scored on {rec['eval_examples']}"
    if not rec.get("comparable", True):
        note += f" (drawn from: {rec['data']}; not comparable with the paper)"
    return {"SQuAD EM": rec["exact_match"], "SQuAD F1": rec["f1"], "note": note}


def _run_in_study(model, cfg, settings, folder, data_dir, progress, role) -> None:
    run_squad(model, cfg, SquadConfig(**settings.get("squad_opts", {})), None, folder, data_dir, progress)


DOWNSTREAM = Downstream("squad", _run_in_study, display="SQuAD", columns=("SQuAD EM", "SQuAD F1"), finetune_defaults=SQUAD_FINETUNE,
                        cells=lambda folder: table_cells(summarize_squad(folder)))
