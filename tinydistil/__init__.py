"""tinydistil: DistilBERT (Sanh et al., 2019) re-implemented small and sharp."""
from .config import DistillConfig, TeacherConfig, TrainConfig
from .train import Trainer, distill, pretrain_teacher
from .losses import DistilLoss, chunked_kl_ce, hidden_cosine_loss, mlm_cross_entropy, soft_target_kl
from .presets import get_preset, stage_config
from .student import default_student_layers, init_student
from .finetune import FinetuneConfig, predict  # not `finetune`: it would hide the module of that name
from .glue import run_glue
from .imdb import run_imdb
from .tables import write_table1, write_table2

__all__ = ["DistillConfig", "TeacherConfig", "TrainConfig", "Trainer", "distill", "pretrain_teacher",
           "DistilLoss", "chunked_kl_ce", "hidden_cosine_loss", "mlm_cross_entropy", "soft_target_kl", "get_preset",
           "stage_config", "default_student_layers", "init_student", "FinetuneConfig", "predict",
           "run_glue", "run_imdb", "write_table1", "write_table2"]
__version__ = "0.1.0"
