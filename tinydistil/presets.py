"""Named run sizes. Each preset is a teacher stage (None = use a hub teacher) and a distillation stage.

smoke  tiny random-size teacher on the bundled 500-line sample: seconds; used by tests and CI notebooks.
cpu    offline small teacher (WordPiece 8K, 6 x 256) pretrained on WikiText-2, then a 3-layer student.
       Budget on a 2-core CPU: teacher pretraining 2 epochs (~20 min) + distillation 1.5 epochs (~20 min).
t4     bert-base-uncased -> 6-layer DistilBERT on WikiText-2, fp16 on a 16 GB Colab T4 (~3 epochs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import DistillConfig, TeacherConfig, replace

SAMPLE_DATA = str(Path(__file__).resolve().parent / "sample_data")


@dataclass(frozen=True)
class Preset:
    teacher: TeacherConfig | None  # None: the distillation teacher comes from the hub
    distill: DistillConfig
    results_dir: str | None = None  # where `reproduce` copies logs and summaries of finished stages


def _smoke() -> Preset:
    common = dict(data_dir=SAMPLE_DATA, block_size=32, batch_size=8, tokens_per_update=512, max_steps=4,
                  save_every=2, log_every=1, mlm_smoothing=0.7)
    return Preset(
        TeacherConfig(**common, output_dir="runs/smoke/teacher", vocab_size=600, hidden_size=32, num_layers=2,
                      num_heads=2, intermediate_size=64, max_position_embeddings=512, lr=1e-3),
        DistillConfig(**common, output_dir="runs/smoke/student", teacher="runs/smoke/teacher/model"),
    )


def _cpu() -> Preset:
    common = dict(block_size=128, batch_size=32, tokens_per_update=8192, save_every=50, log_every=5)
    return Preset(
        TeacherConfig(**common, output_dir="runs/cpu/teacher", vocab_size=8192, hidden_size=256, num_layers=6,
                      num_heads=4, intermediate_size=1024, epochs=2.0, lr=1e-3, warmup_frac=0.05,
                      mlm_smoothing=0.0),  # BERT pretraining masks uniformly; 0.7 (rare tokens) stalled at loss ~8.2
        DistillConfig(**common, output_dir="runs/cpu/student", teacher="runs/cpu/teacher/model", epochs=1.5),
        results_dir="results/cpu",
    )


def _t4() -> Preset:
    return Preset(None, DistillConfig(
        teacher="bert-base-uncased", output_dir="runs/t4/student", block_size=256, batch_size=32,
        tokens_per_update=16384, epochs=3.0, save_every=50, log_every=10),
        results_dir="results/t4")


PRESETS = {"smoke": _smoke, "cpu": _cpu, "t4": _t4}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def preset_configs(preset: str, root: str | None = None, data_dir: str | None = None, teacher_overrides=None,
                   distill_overrides=None) -> tuple[TeacherConfig | None, DistillConfig]:
    """Both stages of `preset`, optionally moved under `root` (e.g. a Google Drive folder) with the
    distillation teacher pointing at the pretrained teacher's model folder."""
    p = get_preset(preset)
    common = {"data_dir": data_dir} if data_dir else {}
    t_over, d_over = dict(teacher_overrides or {}), dict(distill_overrides or {})
    teacher = None
    if p.teacher is not None:
        if root:
            t_over.setdefault("output_dir", str(Path(root) / preset / "teacher"))
        teacher = replace(p.teacher, **common, **t_over)
        d_over.setdefault("teacher", str(Path(teacher.output_dir) / "model"))
    if root:
        d_over.setdefault("output_dir", str(Path(root) / preset / "student"))
    return teacher, replace(p.distill, **common, **d_over)


def stage_config(preset: str, stage: str, **overrides):
    """The config of `stage` ('teacher' or 'distill') in `preset`, with fields overridden."""
    p = get_preset(preset)
    if stage not in ("teacher", "distill"):
        raise ValueError(f"unknown stage {stage!r}; use 'teacher' or 'distill'")
    cfg = p.teacher if stage == "teacher" else p.distill
    if cfg is None:
        raise ValueError(f"preset {preset!r} uses the hub teacher {p.distill.teacher}; there is no teacher to "
                         "pretrain (use --preset cpu for the offline teacher)")
    return replace(cfg, **overrides)
