"""Model cards: the README.md of every model folder a run saves, written with huggingface_hub's `ModelCard` /
`ModelCardData`, so a pushed student says what it is.

    write_model_card("runs/cpu/student")                    # from run.json + summary.json (the Trainer does this)
    write_model_card("runs/cpu/student", mlm_accuracy=0.2336, downstream=rows)   # `reproduce` adds its results

The card names: the base model (the teacher's hub id and revision where known: a local teacher folder with our
card passes on its own base model), the licence, the corpus, the loss and its weights, T, the teacher layers
copied, tokens seen, wall time and machine, the held-out MLM accuracy when measured, and downstream results with
the paper's beside them (labelled as the paper's).

Licence rule (`licence_of`): a model derived from a known hub model takes that model's licence (all-MiniLM-L6-v2
and bert-base-uncased: Apache-2.0); a teacher trained from scratch here takes the project's, Apache-2.0 (its
training text's own licence, e.g. CC BY-SA 3.0 for WikiText, is stated in the card); any other base model:
"other", pointing at the base model's card, whose licence applies.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .hf import is_local_path

PROJECT_LICENCE = "apache-2.0"
KNOWN_LICENCES = {  # hub id -> licence id on the hub
    "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0",
    "bert-base-uncased": "apache-2.0", "google-bert/bert-base-uncased": "apache-2.0",
    "bert-base-cased": "apache-2.0", "google-bert/bert-base-cased": "apache-2.0",
    "distilbert-base-uncased": "apache-2.0", "distilbert/distilbert-base-uncased": "apache-2.0",
}
CORPUS_DATASETS = {"wikitext2": ["Salesforce/wikitext"],
                   "wikipedia+books": ["wikimedia/wikipedia", "bookcorpus/bookcorpus"]}
CORPUS_NAMES = {"wikitext2": "WikiText-2 train (CC BY-SA 3.0)",
                "wikipedia+books": "English Wikipedia 20231101 + BookCorpus"}
PAPER = "Sanh et al., 2019, DistilBERT"
# a local model folder without our card: its licence is not known here, the teacher's applies
UNKNOWN_LICENCE = {"license": "other", "license_name": "teacher-licence"}


def licence_of(base_model: str | None) -> dict:
    """ModelCardData licence fields of a model derived from `base_model` (None: trained from scratch here)."""
    if base_model is None:
        return {"license": PROJECT_LICENCE}
    if base_model in KNOWN_LICENCES:
        return {"license": KNOWN_LICENCES[base_model]}
    return {"license": "other", "license_name": "same-as-base-model",
            "license_link": f"https://huggingface.co/{base_model}"}


def hub_revision(repo_id: str) -> str | None:
    """The commit of `repo_id` in this machine's hub cache (what from_pretrained loaded), without the network."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the hub would not accept, a broken cache: the revision is then not known
        return None
    return Path(path).parent.name if isinstance(path, str) else None


def read_card_data(folder: str | Path) -> dict:
    """The metadata of the model card in `folder` ({} when it has none or it does not parse)."""
    from huggingface_hub import ModelCard

    path = Path(folder).expanduser() / "README.md"
    try:
        return ModelCard.load(path).data.to_dict() if path.is_file() else {}
    except Exception:  # a README that is not a model card
        return {}


def lineage(config: dict, run: dict) -> tuple[str | None, str | None, str, dict]:
    """(base model hub id, its revision, how this model came from it, licence fields) of a run's config and
    run.json."""
    from .teacher import ENCODERS

    if config.get("_kind") == "TeacherConfig":
        src, init = run.get("teacher_source") or {}, config.get("init_from")
        if init:
            known = ENCODERS.get(init)
            if known is not None:
                how = (f"masked-LM training continued from the encoder {known.hub_id} (revision {known.revision}, "
                       f"{'from the pinned package ' + known.package if src.get('source') == 'package' else 'hub'}, "
                       "sha256 checked) with a fresh MLM head tied to the word embeddings")
                return known.hub_id, known.revision, how, licence_of(known.hub_id)
            if src.get("source") == "hub" or not is_local_path(init):
                rev = src.get("revision") or hub_revision(init)
                return init, rev, f"masked-LM training continued from the encoder {init}", licence_of(init)
            return (None, None, f"masked-LM training continued from a local encoder folder ({Path(init).name})",
                    UNKNOWN_LICENCE)
        how = "trained from scratch by tinydistil" + (" (grown from a shallower stem by layer stacking)"
                                                      if config.get("grow_from") else "")
        return None, None, how, licence_of(None)
    teacher = str(config.get("teacher"))
    if is_local_path(teacher):
        data = read_card_data(teacher)
        base = data.get("base_model")
        rev = (data.get("tinydistil") or {}).get("base_model_revision")
        via = f"distilled from the local teacher {teacher}" + (f", itself derived from {base}" if base else "")
        # a teacher folder with our card passes its licence on; one without says nothing we could rely on
        licence = {k: data[k] for k in ("license", "license_name", "license_link") if k in data}
        return base, rev, via, licence or UNKNOWN_LICENCE
    return teacher, hub_revision(teacher), f"distilled from {teacher}", licence_of(teacher)


def _teacher_depth(teacher: str) -> int | None:
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(str(Path(teacher).expanduser()) if is_local_path(teacher) else teacher,
                                         local_files_only=True)
    except Exception:  # not cached offline: the layers are then described by the rule only
        return None
    return getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None)


def layers_copied(config: dict) -> str:
    """Which teacher layers initialised the student, e.g. "[0, 2, 5] of 6"."""
    from .student import default_student_layers

    if config.get("student_init") == "random":
        return "none (random initialisation, the paper's Table 4 ablation)"
    depth = _teacher_depth(str(config["teacher"]))
    layers = config.get("student_layers")
    if layers is None:
        if depth is None:
            return "every other teacher layer (tinydistil's default rule)"
        layers = default_student_layers(depth)
    return f"{list(layers)}" + (f" of the teacher's {depth} layers" if depth else "") + \
        " (and the embeddings and the MLM head)"


def _objective(config: dict) -> list[str]:
    from .config import from_dict
    from .losses import DistilLoss, objective_text

    cfg = from_dict(config)
    if config.get("_kind") == "TeacherConfig":
        return ["masked-LM cross-entropy alone"]
    loss = DistilLoss.from_config(cfg)  # the soft-target weight under the loss's own name, whatever the config's
    where = "masked positions" if loss.kl_on_masked_only else "every non-pad position"
    return [f"`L = {objective_text(dataclasses.asdict(loss))}`, T = {loss.temperature:g} (the paper's triple loss; "
            f"KL over {where})"]


def _machine(run: dict) -> str:
    m = run.get("machine") or {}
    where = m.get("gpu") or f"{m.get('cpu', 'unknown CPU')} ({m.get('cpu_count', '?')} cores)"
    extra = ", ".join(x for x in (run.get("device"), run.get("precision")) if x)
    return where + (f", {extra}" if extra else "") + (f", torch {m['torch']}" if m.get("torch") else "")


def model_card(run_dir: str | Path, summary: dict | None = None, mlm_accuracy: float | None = None,
               downstream: list[dict] | None = None, paper_model: str | None = None):
    """The ModelCard of `run_dir`/model from its run.json and summary.json (or `summary`).

    mlm_accuracy: held-out masked-token accuracy as a fraction (0.2336), when measured.
    downstream: rows {"task": "SST-2", "value": "78.6", "paper": "91.3"} (value and paper as shown; paper may be
    absent), the paper's column labelled with `paper_model` ("DistilBERT", "BERT-base").
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    run_dir = Path(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    summary = summary if summary is not None else json.loads((run_dir / "summary.json").read_text())
    config = run["config"]
    is_teacher = config.get("_kind") == "TeacherConfig"
    base, revision, how, licence = lineage(config, run)
    corpus = config.get("corpus", "wikitext2")
    name = f"tinydistil-{run_dir.resolve().parent.name}-{run_dir.name}"  # runs/cpu/student -> tinydistil-cpu-student
    evals = []
    if mlm_accuracy is not None:
        evals.append(EvalResult(task_type="fill-mask", dataset_type="Salesforce/wikitext", dataset_name="WikiText-2",
                                dataset_config="wikitext-2-raw-v1", dataset_split="validation", metric_type="accuracy",
                                metric_value=round(100 * mlm_accuracy, 2),
                                metric_name="held-out masked-token accuracy (%)"))
    own = {"kind": "teacher" if is_teacher else "student", "steps": summary.get("steps"),
           "tokens_seen": summary.get("tokens"), "train_wall_time_s": summary.get("train_wall_time_s"),
           "git_sha": run.get("git_sha"), **({"base_model_revision": revision} if revision else {})}
    data = ModelCardData(
        base_model=base, **licence, datasets=CORPUS_DATASETS.get(corpus), language="en",
        library_name="transformers", pipeline_tag="fill-mask", model_name=name, eval_results=evals or None,
        tags=["tinydistil", "distilbert", "knowledge-distillation"] if not is_teacher else ["tinydistil", "bert"],
        tinydistil=own)
    lines = [f"# {name}", "",
             (f"A DistilBERT-style student ({PAPER}) {how}." if not is_teacher else f"A BERT masked-LM teacher: {how}."),
             "It loads with `transformers.AutoModelForMaskedLM.from_pretrained`.", "", "## Training", "",
             f"* **Base model**: {base + (f' (revision {revision})' if revision else '') if base else 'none (see above)'}",
             f"* **Data**: {CORPUS_NAMES.get(corpus, 'local files ' + str(corpus))}, {config['block_size']}-token "
             f"blocks, {round(100 * config['mlm_probability'])} % of tokens masked",
             f"* **Loss**: {_objective(config)[0]}"]
    if not is_teacher:
        lines.append(f"* **Teacher layers copied**: {layers_copied(config)}")
    lines += [f"* **Length**: {summary.get('steps')} updates, {summary.get('tokens'):,} tokens seen",
              f"* **Wall time**: {summary.get('train_wall_time_s')} s on {_machine(run)}",
              f"* **Code**: tinydistil at git {run.get('git_sha', 'unknown')}; command `{run.get('command', '')}`",
              f"* **Licence**: {data.license}" + (
                  f" (that of {base}, which this model is derived from)" if base else
                  " (tinydistil's; the training text keeps its own licence)" if data.license == PROJECT_LICENCE else
                  " (the teacher's licence applies: check its model card before publishing)"), ""]
    lines += ["## Evaluation", ""]
    lines.append(f"* **Held-out masked-token accuracy** (WikiText-2 valid): {100 * mlm_accuracy:.2f} %"
                 if mlm_accuracy is not None else "* Held-out masked-token accuracy: not measured for this card")
    if downstream:
        label = f"paper's {paper_model} ({PAPER}; not this model)" if paper_model else "paper"
        lines += ["", f"| task | this model | {label} |", "| --- | --- | --- |"]
        lines += [f"| {r['task']} | {r['value']} | {r.get('paper', '—')} |" for r in downstream]
        lines += ["", "This model's numbers come from `python -m tinydistil reproduce` on this model (fine-tuning "
                  "settings in its run records); the paper's are quoted from the paper, measured on other data sizes."]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def write_model_card(run_dir: str | Path, summary: dict | None = None, **kw) -> Path:
    """Write `run_dir`/model/README.md (see model_card) and return its path."""
    path = Path(run_dir) / "model" / "README.md"
    model_card(run_dir, summary, **kw).save(path)
    return path
