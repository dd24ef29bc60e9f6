"""SQuAD v1.1 JSON files: rows, answer-offset checks, and the fixed article split used offline.

    rows = read_squad_json("../shared/data/squad-v1.1/dev-v1.1.json")   # ValueError naming the file if malformed
    train, held = split_articles(rows, 0.5)                            # no context shared between the two
"""
from __future__ import annotations

import json
import random
from pathlib import Path


def read_squad_json(path) -> list[dict]:
    """Rows (id, title, context, question, answers) of a SQuAD v1.1 JSON file; ValueError if malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        rows = []
        for article in data:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    answers = qa["answers"]
                    rows.append({"id": str(qa["id"]), "title": article.get("title", ""), "context": para["context"],
                                 "question": qa["question"],
                                 "answers": {"text": [a["text"] for a in answers],
                                             "answer_start": [int(a["answer_start"]) for a in answers]}})
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a SQuAD v1.1 JSON file ({type(e).__name__}: {e}); expected "
                         '{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers"}]}]}]}') \
            from None
    if not rows:
        raise ValueError(f"{path} holds no questions; pass the official train-v1.1.json / dev-v1.1.json")
    check_field_types(rows, path)
    for r in rows:
        if not r["answers"]["text"]:
            raise ValueError(f"{path}: question {r['id']} has no answer; SQuAD v1.1 needs one per question "
                             "(v2.0 unanswerable questions are not supported)")
    check_answer_spans(rows, path)
    return rows


def check_field_types(rows: list[dict], path) -> None:
    """ValueError naming the question and field of the first value of the wrong type (a null answer text, a
    number as context, ...), which would otherwise fail deep inside tokenisation."""
    for r in rows:
        fields = [("context", r["context"], str), ("question", r["question"], str)]
        fields += [(f"answers[{k}].text", t, str) for k, t in enumerate(r["answers"]["text"])]
        for name, value, kind in fields:
            if not isinstance(value, kind):
                raise ValueError(f"{path}: question {r['id']!r} has a {type(value).__name__} as {name}, expected "
                                 f"a {kind.__name__}; fix that field or pass the official SQuAD v1.1 file")


MAX_BAD_SPANS = 0.5  # a file where more answers than this miss their context is refused


def check_answer_spans(rows: list[dict], path) -> int:
    """Check that each answer's text is at its `answer_start` in the context (a wrong offset would silently
    train on the [CLS] label). A mismatched answer whose text occurs in the context is moved to the occurrence
    nearest its offset (warned, counted); a file where more than MAX_BAD_SPANS of the answers mismatch is
    refused. Returns the number of mismatches."""
    import warnings

    total = bad = moved = 0
    first = None
    for r in rows:
        ctx, starts = r["context"], r["answers"]["answer_start"]
        for k, (text, start) in enumerate(zip(r["answers"]["text"], starts)):
            total += 1
            if ctx[start:start + len(text)] == text:
                continue
            bad += 1
            first = first or (r["id"], start, text)
            hits = [i for i in range(len(ctx)) if ctx.startswith(text, i)] if text else []
            if hits:
                starts[k] = min(hits, key=lambda i: abs(i - start))
                moved += 1
    if bad > MAX_BAD_SPANS * total:
        raise ValueError(f"{path}: {bad} of {total} answers are not at their answer_start in the context (e.g. "
                         f"question {first[0]}: {first[2][:40]!r} at {first[1]}); the offsets must be character "
                         "positions in the context, as in the official SQuAD files")
    if bad:
        warnings.warn(f"{path}: {bad} of {total} answers were not at their answer_start (e.g. question {first[0]}); "
                      f"{moved} moved to where their text occurs, {bad - moved} left (trained as no-answer windows)",
                      stacklevel=2)
    return bad


def split_articles(rows: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Rows of a fixed random `fraction` of the articles (by title), then the rest's: no context is shared."""
    titles = sorted({r["title"] for r in rows})
    random.Random(seed).shuffle(titles)
    chosen = set(titles[:max(1, round(fraction * len(titles)))])
    if len(chosen) == len(titles):
        raise ValueError("the dev file has a single article: it cannot be split into fine-tuning and scoring parts")
    return [r for r in rows if r["title"] in chosen], [r for r in rows if r["title"] not in chosen]
