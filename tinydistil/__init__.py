"""tinydistil: DistilBERT (Sanh et al., 2019) re-implemented small and sharp.

Names are imported on first use (PEP 562), so `python -m tinydistil --help` answers without loading torch.
"""
import importlib

_EXPORTS = {
    "DistillConfig": "config", "TeacherConfig": "config", "TrainConfig": "config",
    "Trainer": "train", "distill": "train", "pretrain_teacher": "train",
    "DistilLoss": "losses", "chunked_kl_ce": "chunked_loss", "hidden_cosine_loss": "losses",
    "mlm_cross_entropy": "losses", "soft_target_kl": "losses",
    "get_preset": "presets", "stage_config": "presets",
    "default_student_layers": "student", "init_student": "student",
    "FinetuneConfig": "eval.finetune", "predict": "eval.finetune",
    "run_glue": "eval.glue", "run_imdb": "eval.imdb", "write_table1": "study.tables", "write_table2": "study.tables",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'tinydistil' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
