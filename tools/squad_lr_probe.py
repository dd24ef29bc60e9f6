"""Choose the cpu preset's SQuAD fine-tuning learning rate on held-out questions (never the ones the study reports).

    python tools/squad_lr_probe.py --teacher runs/cpu/teacher/model --data-dir ../shared/data \\
        --out results/experiments/squad_lr_probe

Protocol (declared in the output folder's README before the runs): the teacher is fine-tuned on the cpu preset's
SQuAD training subset (the same --questions questions every study run uses: eval.runner's train_subset), for the
preset's epochs, batch and window, once per learning rate in --lrs (seed 0), and scored on --heldout questions
drawn (seed 0) from the rest of the rows it fine-tunes from: articles none of whose questions is in that subset,
or paragraphs when every article has one (offline, where the study fine-tunes on half of dev's articles). The
best lr has the highest held-out F1; runs within --tie F1 points of it count as tied, and a tie goes to the lower
lr. Each run is resumable (a finished one is read back).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinydistil.eval.runner import train_subset  # noqa: E402
from tinydistil.eval.squad import SQUAD_FINETUNE, SquadConfig, run_squad  # noqa: E402
from tinydistil.eval.squad_files import read_squad_json, split_articles  # noqa: E402
from tinydistil.presets import get_preset  # noqa: E402
from tinydistil.rundir import run_info, write_json_atomic  # noqa: E402
from tinydistil.study.layout import finetune_config  # noqa: E402


def squad_json(rows: list[dict]) -> dict:
    """Rows (read_squad_json's) back into a SQuAD v1.1 file, grouped by article and context."""
    articles: dict[str, dict[str, list]] = {}
    for r in rows:
        articles.setdefault(r["title"], {}).setdefault(r["context"], []).append({
            "id": r["id"], "question": r["question"],
            "answers": [{"text": t, "answer_start": s}
                        for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]})
    return {"version": "1.1", "data": [{"title": t, "paragraphs": [{"context": c, "qas": q} for c, q in paras.items()]}
                                       for t, paras in articles.items()]}


def heldout_folder(data_dir: Path, questions: int, heldout: int, dest: Path, dev_train_fraction: float) -> dict:
    """dest/squad-v1.1/ for run_squad: train-v1.1.json = the rows the study fine-tunes from (train-v1.1.json, or
    offline the dev articles it fine-tunes on: squad.load_local), in the study's order, so that train_subset picks
    the study's `questions`; dev-v1.1.json = up to `heldout` questions (seed 0) outside that subset: from articles
    none of whose questions is in it, or, when every article has one (the dev-only case), from paragraphs none of
    whose questions is in it."""
    import datasets

    folder = data_dir / "squad-v1.1"
    if (folder / "train-v1.1.json").is_file():
        rows, source = read_squad_json(folder / "train-v1.1.json"), "train-v1.1.json"
    else:
        rows = split_articles(read_squad_json(folder / "dev-v1.1.json"), dev_train_fraction)[0]
        source = "the dev articles the study fine-tunes on (no train-v1.1.json)"
    used = train_subset(datasets.Dataset.from_list(rows), questions)
    by = "title" if set(r["title"] for r in rows) - set(used["title"]) else "context"
    taken = set(used[by])
    pool = [r for r in rows if r[by] not in taken]
    if not pool:
        raise ValueError(f"every {by} of the {len(rows)} rows has a training question; lower --questions")
    held = random.Random(0).sample(pool, min(heldout, len(pool)))
    out = dest / "squad-v1.1"
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "train-v1.1.json", squad_json(rows))
    write_json_atomic(out / "dev-v1.1.json", squad_json(held))
    again = train_subset(datasets.Dataset.from_list(read_squad_json(out / "train-v1.1.json")), questions)
    if again["id"] != used["id"]:  # the written file must give run_squad the study's subset, in its order
        raise RuntimeError("the training file written does not reproduce the study's training subset")
    return {"source": source, "disjoint_by": "article" if by == "title" else "paragraph",
            "training_questions": len(used), "heldout_questions": len(held), "pool_questions": len(pool),
            "heldout_articles": len({r["title"] for r in held})}


def best(runs: list[dict], tie: float) -> dict:
    top = max(r["heldout_f1"] for r in runs)
    return min((r for r in runs if r["heldout_f1"] >= top - tie), key=lambda r: r["lr"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True, help="the prepared teacher (the cpu preset's teacher stage)")
    ap.add_argument("--data-dir", required=True, help="the folder holding squad-v1.1/train-v1.1.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--lrs", default="5e-5,1e-4,2e-4")
    ap.add_argument("--questions", type=int, help="training questions (default: the cpu preset's)")
    ap.add_argument("--heldout", type=int, default=600)
    ap.add_argument("--tie", type=float, default=2.0, help="F1 points within which runs count as tied")
    a = ap.parse_args(argv)
    if not (Path(a.data_dir) / "squad-v1.1" / "dev-v1.1.json").is_file():
        print(f"error: no squad-v1.1/dev-v1.1.json in {a.data_dir}; give --data-dir the folder holding squad-v1.1/",
              file=sys.stderr)
        return 2
    if not (Path(a.teacher) / "config.json").is_file():
        print(f"error: {a.teacher} holds no model (config.json); run the cpu preset's teacher stage first",
              file=sys.stderr)
        return 2
    try:
        lrs = [float(x) for x in a.lrs.split(",") if x.strip()]
    except ValueError:
        print(f"error: --lrs {a.lrs!r} is not a comma-separated list of numbers, e.g. 5e-5,1e-4", file=sys.stderr)
        return 2
    ds = get_preset("cpu").downstream
    base = finetune_config(ds.get("squad", {}), **SQUAD_FINETUNE)
    questions = a.questions or base.max_train_examples
    out = Path(a.out)
    split = heldout_folder(Path(a.data_dir), questions, a.heldout, out / "data", SquadConfig().dev_train_fraction)
    runs = []
    for lr in lrs:
        name = f"lr{lr:g}"
        cfg = finetune_config({**ds.get("squad", {}), "seeds": 1, "lr": lr, "max_train_examples": questions},
                              **SQUAD_FINETUNE)
        t0 = time.time()
        df = run_squad(a.teacher, cfg, SquadConfig(), output_dir=out / "runs" / name, data_dir=out / "data",
                       save_model=False)
        runs.append({"name": name, "lr": lr, "heldout_f1": round(float(df["f1"].iloc[0]), 2),
                     "heldout_em": round(float(df["exact_match"].iloc[0]), 2),
                     "wall_s_this_call": round(time.time() - t0, 1)})
        print(json.dumps(runs[-1]), flush=True)
    chosen = best(runs, a.tie)
    write_json_atomic(out / "probe.json", {**run_info(), "questions": questions, "split": split, "tie": a.tie,
                                           "finetune": cfg.__dict__, "runs": runs, "chosen_lr": chosen["lr"]})
    print(f"chosen: lr {chosen['lr']:g} (held-out F1 {chosen['heldout_f1']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
