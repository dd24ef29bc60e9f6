"""The report's sections written from the run records: what was run (commands, SHAs, machine, wall times,
per stage and per evaluation folder) and what differs from the paper (teacher, corpus, data, preset)."""
from __future__ import annotations

from ..eval.glue import TASKS as GLUE_TASKS
from ..losses import objective_text
from ..paper import PAPER_TABLE3
from ..presets import PRESETS, get_preset
from .ablation import SLUGS
from ..records import finite
from .results import Results, main_records
from .tables import TABLE1_TASKS, params_text, plural


def _fmt_s(x) -> str:
    x = finite(x)
    return "not recorded" if x is None else f"{x:.0f} s"


def section_run(res: Results) -> str:
    """The report's "What was run": the call (command, SHA, machine, wall times), each run, each downstream folder."""
    return "\n".join(["## What was run", "", *_call_lines(res), *_pretrain_lines(res), *_ablation_run_lines(res),
                      *_mlm_eval_lines(res.reproduce or {}), *_downstream_lines(res)])


def _call_lines(res: Results) -> list[str]:
    rep = res.reproduce
    if rep is None:
        return [f"Pretraining/distillation: not run (no `{res.results_dir / res.preset / 'reproduce.json'}`)."]
    m = rep.get("machine", {})
    out = [f"* Preset `{rep.get('preset', res.preset)}`, command `{rep.get('command', 'not recorded')}` (the last "
           f"call; each run below names its own git SHA), git SHA `{rep.get('git_sha', 'not recorded')}`, finished "
           f"{rep.get('finished', 'not recorded')}."]
    lscpu = res.results_dir / res.preset / "lscpu.txt"  # saved beside a run recorded before the flags were
    flags = (f"; flags {m['cpu_flags']}" if m.get("cpu_flags") else
             f"; model and flags: `{lscpu.relative_to(res.results_dir)}`" if lscpu.is_file() else "")
    out.append(f"* Machine: {m.get('cpu', '?')} ({m.get('cpu_count', '?')} cores, {m.get('torch_threads', '?')} "
               f"torch threads{flags}), {m.get('platform', '?')}, Python {m.get('python', '?')}, torch "
               f"{m.get('torch', '?')}, transformers {m.get('transformers', '?')}"
               + (f", GPU {m['gpu']}" if m.get("gpu") else "") + ".")
    walls = rep.get("stage_wall_time_s", {})
    study, call, budget = (finite(rep.get(k)) for k in ("study_wall_time_s", "total_wall_time_s", "budget_min"))
    if call is None:  # the report stage itself runs before the call's total is known
        call = finite(rep.get("wall_time_so_far_s"))
    if budget is None and rep.get("preset") in PRESETS:
        budget = get_preset(rep["preset"]).budget_min
    if study is not None:
        one_call = call is not None and abs(call - study) <= max(60.0, 0.02 * study)
        # stages left to their own command (Preset.outside_budget, e.g. `make curve`) are not the main job's
        outside = {k: v for k, v in walls.items() if k in (rep.get("outside_budget") or ()) and finite(v) is not None}
        main = study - sum(outside.values())
        main_call = finite(rep.get("main_job_call_s"))  # the main job in one call from scratch (pipeline)
        if main_call is not None:
            main = main_call
        out.append(f"* End to end: **{study / 60:.1f} min** "
                   + ("in one uninterrupted call" if one_call else
                      "summed over the stages of several calls (`stage_status` and `stage_note` in reproduce.json)")
                   + (f"; the main job without {', '.join(outside)} (its own command: "
                      f"{', '.join(f'`make {k}`' for k in outside)}): **{main / 60:.1f} min**"
                      + (" in one uninterrupted call from scratch" if main_call is not None else "")
                      if outside else "")
                   + (f"; budget {budget:.0f} min: **{'within' if main / 60 <= budget else 'over'}**" if budget
                      else "") + ".")
    budgets = rep.get("stage_budget_min") or {}  # as recorded by the call (a later preset's may differ)
    out.append("* Wall time per stage: " + (", ".join(
        f"{k} {_fmt_s(v)}" + (f" (budget {budgets[k]:g} min{'' if v <= 60 * budgets[k] else ': **over**'})"
                              if k in budgets else "") for k, v in walls.items()) or "not recorded") + ".")
    return out


def _pretrain_lines(res: Results) -> list[str]:
    """One line per pretraining run (teacher, student): its objective, data, length and what it did."""
    out = []
    for stage in ("teacher", "student"):
        run, summ = res.runs[stage]["run"], res.runs[stage]["summary"]
        if run is None:
            out.append(f"* {stage.capitalize()}: not run (no `{res.preset}/{stage}/run.json`).")
            continue
        c = run.get("config", {})
        data = (f"`{run['data']}`" if run.get("data") else c.get("data_dir")
                or "not recorded in run.json (TINYDISTIL_DATA_DIR or the hub: WikiText-2)")
        data += f", {run['precision']} on {run.get('device', '?')}" if run.get("precision") else ""
        desc = (f"MLM continued from `{c['init_from']}` (its own layers, width and vocabulary; a fresh MLM head)"
                if stage == "teacher" and c.get("init_from") else
                f"{c.get('num_layers')} layers x {c.get('hidden_size')}, vocabulary {c.get('vocab_size')}"
                if stage == "teacher" else
                f"from `{c.get('teacher')}`, init `{c.get('student_init')}`, layers "
                f"{c.get('student_layers') or 'every other (default rule)'}, T = {c.get('temperature')}, "
                f"L = {objective_text(c)}")
        length = f"at most {c['max_steps']} updates" if c.get("max_steps") else f"{c.get('epochs')} epochs"
        line = (f"* {stage.capitalize()}: {desc}; data {data}; seed {c.get('seed')}; {length}, "
                f"lr {c.get('lr')}, {c.get('tokens_per_update')} tokens/update; git SHA `{run.get('git_sha')}`")
        if summ:
            p = finite(summ.get("parameters"))
            line += (f"; {summ.get('steps')} updates, {summ.get('tokens')} tokens, "
                     f"{_fmt_s(summ.get('train_wall_time_s'))} training"
                     + (f", {params_text(p)} parameters" if p is not None else ""))
        out.append(line + ".")
    return out


def _ablation_run_lines(res: Results) -> list[str]:
    """One line per Table 4 variant: its own distillation call."""
    names = {slug: v for v, slug in SLUGS.items()}
    out = []
    for slug, r in res.ablation_runs.items():
        run, summ = r["run"] or {}, r["summary"] or {}
        resumed = [f"`{x.get('command')}` at `{str(x.get('git_sha'))[:7]}` from update {x.get('from_step')}"
                   for x in run.get("resumed", [])]
        sha = str(run["git_sha"])[:7] if run.get("git_sha") else "not recorded"
        out.append(f"* Table 4 `{names.get(slug, slug)}` distilled by `{run.get('command', 'not recorded')}` at git "
                   f"SHA `{sha}`, started {run.get('started', 'not recorded')}"
                   + (f"; {summ.get('steps')} updates, {_fmt_s(summ.get('train_wall_time_s'))} training" if summ
                      else "; not finished") + (f"; resumed by {', '.join(resumed)}" if resumed else "") + ".")
    return out


def _mlm_eval_lines(rep: dict) -> list[str]:
    ev = rep.get("mlm_eval", {})
    if "teacher" in ev and "student" in ev:
        t, s = ev["teacher"], ev["student"]
        return [f"* Held-out MLM ({ev.get('split')} split, {t.get('masked_tokens')} masked tokens, same masks): "
                f"teacher loss {t.get('mlm_loss')} / accuracy {100 * t['mlm_accuracy']:.2f} %, student loss "
                f"{s.get('mlm_loss')} / accuracy {100 * s['mlm_accuracy']:.2f} %."]
    return [f"* Held-out MLM evaluation: not run ({ev.get('not run', 'no reason recorded')})."] if ev else []


def _downstream_lines(res: Results) -> list[str]:
    """One line per fine-tuned model's folder: runs, seeds, settings as run, wall time, data and SHA."""
    out = []
    for name, ev in res.evals.items():
        recs, fts = ev["records"], ev["finetune"]
        if not recs:
            out.append(f"* Downstream `{name}`: not run (no per-seed JSONs).")
            continue
        wall = sum(finite(r.get("wall_time_s")) or 0.0 for r in recs)
        seeds = sorted({r.get("seed") for r in recs if r.get("seed") is not None})
        datas = sorted({str(r.get("data")) for r in recs if r.get("data")})
        shas = sorted({f.get("git_sha", "?") for f in fts})
        out.append(f"* Downstream `{name}`: {len(recs)} (task, seed) runs, seeds {seeds}; {settings_by_task(recs)}; "
                   f"summed wall time {wall:.0f} s; data {', '.join(f'`{d}`' for d in datas)}; git SHA "
                   f"{', '.join(f'`{s}`' for s in shas) or 'not recorded'}.")
    return out


TASK_DISPLAY = {**{name: t.display for name, t in GLUE_TASKS.items()}, "imdb": "IMDb", "squad": "SQuAD"}


def settings_by_task(recs: list[dict]) -> str:
    """The fine-tuning settings as each task ran them, tasks with the same settings named together:
    "SST-2, STS-B: 1200 training examples, 3 epochs, lr 0.0001, batch 32; IMDb: ..." (tasks differ: IMDb and SQuAD
    have their own lr and lengths, WNLI has fewer examples than the cap)."""
    groups: dict[str, list[str]] = {}
    for r in recs:
        hp = r.get("hyperparameters", {})
        used = r.get("train_examples")
        text = (f"{used if used is not None else hp.get('max_train_examples') or 'all'} training examples, "
                f"{hp.get('epochs')} epochs, lr {hp.get('lr')}, batch {hp.get('batch_size')}"
                + (f", max length {hp['max_seq_len']}" if hp.get("max_seq_len") not in (None, 128) else ""))
        task = TASK_DISPLAY.get(r.get("task"), str(r.get("task")))
        if task not in groups.setdefault(text, []):
            groups[text].append(task)
    return "; ".join(f"{', '.join(tasks)}: {text}" for text, tasks in groups.items())


# What a known encoder saw before it became our teacher (from its model card), keyed by TeacherConfig.init_from
ENCODER_NOTES = {
    "all-MiniLM-L6-v2": (
        "all-MiniLM-L6-v2 is itself a distilled model (MiniLM, from a larger teacher) and was then trained as a "
        "sentence encoder on about 1 B sentence pairs, which include SNLI, MultiNLI and QQP (none of which is "
        "scored locally here); its GLUE-style ability is not only what masked-LM pretraining gives."),
}


def prepared_teacher(run: dict, summary: dict) -> str | None:
    """One sentence on a teacher prepared from a pretrained encoder (TeacherConfig.init_from), from its run.json and
    summary.json: the encoder, where it came from (package / hub, sha256), the MLM updates; None otherwise."""
    cfg = (run or {}).get("config", {})
    name = cfg.get("init_from")
    if not name:
        return None
    src = run.get("teacher_source") or {}
    where = {"package": f"the PyPI package {src.get('package')}",
             "hub": f"the hub ({src.get('hub_id')} at {str(src.get('revision', ''))[:12]})",
             "folder": f"the folder {src.get('path')}"}.get(src.get("source"), "an unrecorded source")
    sha = (src.get("sha256") or {}).get("model.safetensors")
    params = finite((summary or {}).get("parameters"))
    return (f"Here the teacher is {name} from {where}" + (f" (model.safetensors sha256 {sha[:16]}...)" if sha else "")
            + (f", {params / 1e6:.1f} M parameters with its MLM head" if params else "")
            + ": it has no MLM head, so masked-LM training of the whole encoder was continued with a fresh head "
            f"(decoder tied to the word embeddings) for {(summary or {}).get('steps', '?')} updates "
            f"({(summary or {}).get('tokens', '?')} tokens) of WikiText-2 train. " + ENCODER_NOTES.get(name, ""))


def _teacher_line(res: Results) -> str:
    """What our teacher is, from the records: a hub checkpoint (the student's config names it and no teacher
    stage ran), an encoder prepared by MLM continuation, or a BERT trained from scratch."""
    t_run, t_sum = res.runs["teacher"]["run"] or {}, res.runs["teacher"]["summary"] or {}
    tc = t_run.get("config", {})
    paper = (f"* **Teacher.** The paper distils BERT-base ({PAPER_TABLE3['BERT-base'][0]} M parameters, paper "
             "Table 3), pretrained on English Wikipedia + Toronto BookCorpus. ")
    prepared = prepared_teacher(t_run, t_sum)
    if prepared:
        return paper + prepared
    if tc:
        tp = finite(t_sum.get("parameters"))
        return paper + (f"Ours is a {tc.get('num_layers')}-layer, {tc.get('hidden_size')}-wide BERT"
                        + (f" ({params_text(tp)} parameters)" if tp else "") + f" trained from scratch for "
                        f"{t_sum.get('steps', '?')} updates ({t_sum.get('tokens', '?')} tokens): far weaker, so every "
                        "downstream number measures a small model, and retention compares two weak models.")
    hub = (res.runs["student"]["run"] or {}).get("config", {}).get("teacher")
    if hub:
        same = str(hub).split("/")[-1] in ("bert-base-uncased", "bert-base-cased")
        return paper + f"Ours is `{hub}`, loaded as it is" + (
            " — the paper's own teacher." if same else " (no teacher stage ran).")
    return paper + "Ours: not run (no teacher or student run.json in the results)."


def _corpus_line(res: Results) -> str:
    sc = (res.runs["student"]["run"] or {}).get("config", {})
    corpus = sc.get("corpus")
    if not corpus:
        return "* **Corpus.** Not recorded (no student run.json)."
    if corpus == "wikipedia+books":
        return "* **Corpus.** English Wikipedia + BookCorpus, as the paper."
    what = "WikiText-2 (about 2 M words of Wikipedia articles)" if corpus == "wikitext2" else f"`{corpus}`"
    return f"* **Corpus.** Distillation on {what}; the paper uses English Wikipedia + Toronto BookCorpus (3.3 B words)."


def _squad_line(res: Results) -> str:
    squad = [r for r in main_records(res) if r.get("task") == "squad"]
    if not squad:
        return "* **SQuAD.** Not run."
    if all(r.get("comparable", True) for r in squad):
        return "* **SQuAD.** Fine-tuned on the SQuAD v1.1 train split and scored on dev, as the paper."
    return ("* **SQuAD.** The SQuAD v1.1 training set was not available, so the model was fine-tuned on one part "
            "of the dev articles and scored on the rest (see the row's note): not the official train/dev split.")


def section_differences(res: Results) -> str:
    """What differs from the paper, from the recorded teacher, corpus, data and fine-tuning (any preset)."""
    s_run, s_sum = res.runs["student"]["run"] or {}, res.runs["student"]["summary"] or {}
    sc, sp = s_run.get("config", {}), finite(s_sum.get("parameters"))
    layers = (res.reproduce or {}).get("student_layers")
    ours_s = ((plural(layers, "layer") + ", " if isinstance(layers, int) else "")
              + f"{params_text(sp)} parameters, {s_sum.get('steps', '?')} updates ({s_sum.get('tokens', '?')} tokens)"
              if sp else "not run")
    recs = main_records(res)
    seeds = sorted({r.get("seed") for r in recs if r.get("seed") is not None})
    subset = sorted({r.get("train_examples") for r in recs if r.get("train_examples") is not None})
    not_run = sorted({t for r in res.measured("table1") for t in TABLE1_TASKS
                      if r.value(t) is None and t in r})
    lines = [
        "## What differs from the paper, and why", "",
        _teacher_line(res),
        _corpus_line(res),
        "* **Student.** Same recipe (half the layers, every other teacher layer, triple loss"
        + (f" L = {objective_text(sc)}, T = {sc.get('temperature')}" if sc else "") + f"): ours {ours_s}; the paper's student has "
        f"{PAPER_TABLE3['DistilBERT'][0]} M parameters (paper Table 3) and trains on batches of up to 4K examples for about 90 hours on 8 V100 GPUs (paper Section 3).",
        "* **Seeds.** The paper reports the median of 5 fine-tuning runs on GLUE; in Tables 1-2 here "
        + (f"{plural(len(seeds), 'seed')} ({', '.join(map(str, seeds))})" if seeds else "no downstream seeds were run")
        + (", to fit the preset's time budget" if seeds and len(seeds) < 5 else "") + ".",
        "* **Training subsets.** " + (f"Fine-tuning used at most {max(subset)} training examples per task"
                                      + (f" (fewer where a training set is smaller, down to {min(subset)})"
                                         if min(subset) != max(subset) else "")
                                      + "; the paper uses the full training sets" if subset else
                                      "No downstream fine-tuning was run") + ".",
        "* **Tasks.** " + (f"GLUE tasks without train/dev data are not run ({', '.join(not_run)}), so our "
                           "GLUE Score averages fewer tasks than the paper's nine and is not comparable in absolute "
                           "terms" if not_run else "All nine GLUE tasks are in Table 1 when run") + ".",
        _squad_line(res),
        "* **Speed.** The paper times CPU inference on the full STS-B dev set with batch size 1; Table 3's "
        "measured rows name their device, threads and setup.",
    ]
    return "\n".join(lines)
