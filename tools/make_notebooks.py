"""Write notebooks/*.ipynb from the cell sources below (keeps them output-free and reviewable).

    python tools/make_notebooks.py
"""
from pathlib import Path

import nbformat as nbf

COLAB_SETUP = '''# Colab set-up: clone and install tinydistil (skipped outside Colab; Colab already has torch).
import os, subprocess, sys
IN_COLAB = "google.colab" in sys.modules
REPO_URL = os.environ.get("TINYDISTIL_REPO", "https://github.com/tinydistil/tinydistil")
if IN_COLAB and not os.path.isdir("tinydistil"):
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "tinydistil"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "tinydistil"], check=True)
    sys.path.insert(0, os.path.abspath("tinydistil"))'''

NB01 = [
    ("md", """# 01 · Distillation pretraining (DistilBERT, Sanh et al. 2019)

Distil a BERT teacher into a half-depth DistilBERT student with the paper's triple loss
`L = 5·T²·KL(teacher‖student at T=2) + 2·MLM + 1·(1 − cos(h_s, h_t))` on WikiText-2.

* **Colab (`preset = "t4"`)**: teacher `bert-base-uncased` from the hub → 6-layer student, fp16 on a T4.
  Set `use_drive = True` to keep the run on Google Drive: a disconnected session continues where it stopped.
* **Offline (`preset = "cpu"`)**: no hub — a WordPiece tokenizer and a small 6-layer BERT teacher are first
  trained on WikiText-2 from `data_dir`, then distilled into a 3-layer student (~40 min on 2 CPU cores).
* **`preset = "smoke"`**: seconds, on the bundled 500-line sample (CI runs this)."""),
    ("code", COLAB_SETUP),
    ("params", '''preset = "t4"          # smoke | cpu | t4
data_dir = None        # folder with wikitext-2/wiki.train.tokens; None -> $TINYDISTIL_DATA_DIR, then the hub
output_root = None     # None -> runs/<preset>/...; e.g. "/content/drive/MyDrive/tinydistil"
use_drive = False      # Colab: mount Google Drive and keep runs there (resumable)
teacher_overrides = {} # e.g. {"epochs": 1.0}
distill_overrides = {} # e.g. {"max_steps": 200, "alpha_cos": 0.0}
resume = True          # continue an interrupted run in the same folder'''),
    ("code", '''if use_drive and IN_COLAB:
    from google.colab import drive
    drive.mount("/content/drive")
    output_root = output_root or "/content/drive/MyDrive/tinydistil"

from tinydistil.presets import preset_configs
teacher_cfg, distill_cfg = preset_configs(preset, root=output_root, data_dir=data_dir,
                                          teacher_overrides=teacher_overrides, distill_overrides=distill_overrides)
print("teacher stage:", teacher_cfg.output_dir if teacher_cfg else f"hub teacher {distill_cfg.teacher}")
print("student stage:", distill_cfg.output_dir)'''),
    ("md", "## 1 · Teacher\nOffline presets pretrain a small BERT with MLM (same loop, same resume); `t4` uses the hub teacher."),
    ("code", '''from tinydistil import pretrain_teacher, distill
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
    return pd.DataFrame([json.loads(l) for l in (Path(folder) / "log.jsonl").read_text().splitlines()])

runs = ([("teacher MLM", teacher_cfg.output_dir)] if teacher_cfg else []) + [("distillation", distill_cfg.output_dir)]
fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
for ax, (title, folder) in zip(axes[0], runs):
    log = read_log(folder)
    for term in ["loss", "loss_ce", "loss_mlm", "loss_cos"]:
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


def build(cells):
    nb = nbf.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}, "accelerator": "GPU"}
    for kind, src in cells:
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


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "notebooks"
    out.mkdir(exist_ok=True)
    nbf.write(build(NB01), out / "01_distill_pretraining.ipynb")
    print("wrote", out / "01_distill_pretraining.ipynb")
