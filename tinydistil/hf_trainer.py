"""The triple loss with any teacher / student pair of Hugging Face masked LMs: in your own loop, or in `Trainer`.

    from transformers import DataCollatorForLanguageModeling, TrainingArguments
    from tinydistil.hf_trainer import DistilTrainer

    trainer = DistilTrainer(model=student, teacher=teacher, args=TrainingArguments("out", max_steps=100),
                            train_dataset=tokenized, data_collator=DataCollatorForLanguageModeling(tokenizer))
    trainer.train()            # logs loss_kl / loss_mlm / loss_cos / loss_total beside Trainer's own loss

    terms = distil_terms(teacher, student, batch)   # your own loop: {"kl", "mlm", "cos", "total"}; total.backward()

The pair: two masked LMs (`AutoModelForMaskedLM`) with the same output vocabulary (the KL compares their
distributions token by token) and, while the cosine term is on, the same hidden size. A batch: input_ids,
attention_mask and labels (-100 = not masked), each (B, L), as `DataCollatorForLanguageModeling` makes them.
`check_pair` / `check_batch` say what is wrong before any step runs. The teacher runs in eval mode under
`torch.inference_mode`, as in tinydistil's own loop; BERT and DistilBERT students take the chunked path (the
batch x length x vocabulary logits never exist at once), other masked LMs the plain one through a hook.
"""
from __future__ import annotations

import torch
from transformers import Trainer

from .losses import DistilLoss
from .mlm import mlm_parts


def hidden_size(model) -> int | None:
    """Width of the final hidden states (BERT: hidden_size, DistilBERT: dim)."""
    cfg = model.config
    return getattr(cfg, "hidden_size", None) or getattr(cfg, "dim", None)


def output_vocab(model) -> int | None:
    """Rows of the vocabulary projection: the tokens the model predicts."""
    proj = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return proj.weight.shape[0] if proj is not None else None


def check_masked_lm(model, role: str) -> None:
    """ValueError unless `model` is a Hugging Face masked LM (a model with a vocabulary head)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    name = type(model).__name__
    if name not in set(MODEL_FOR_MASKED_LM_MAPPING_NAMES.values()) or output_vocab(model) is None:
        raise ValueError(f"the {role} is a {name}, not a masked LM: load it with AutoModelForMaskedLM (an encoder "
                         "without an MLM head, e.g. all-MiniLM-L6-v2, needs one trained first: `python -m tinydistil "
                         "pretrain-teacher --init-from ...`)")


def check_pair(teacher, student, loss: DistilLoss = DistilLoss()) -> None:
    """ValueError naming what is expected when `teacher` and `student` cannot be distilled with `loss`."""
    check_masked_lm(teacher, "teacher")
    check_masked_lm(student, "student")
    vt, vs = output_vocab(teacher), output_vocab(student)
    if vt != vs:
        raise ValueError(f"the teacher predicts {vt} tokens and the student {vs}: the KL compares their "
                         "distributions token by token, so both need the same vocabulary (build the student from the "
                         "teacher's config / tokenizer, e.g. tinydistil.init_student(teacher))")
    ht, hs = hidden_size(teacher), hidden_size(student)
    for name, key, alpha in (("cosine", "cos", loss.alpha_cos), ("sentence cosine", "sent", loss.alpha_sent)):
        if alpha > 0 and ht != hs:
            raise ValueError(f"the teacher's hidden size is {ht} and the student's {hs}: the {name} term compares "
                             f"their hidden states, so it needs equal sizes; turn it off with DistilLoss(alpha_{key}=0.0)"
                             f" (--alpha-{key} 0) or use a student of the teacher's width")


def check_batch(batch) -> None:
    """ValueError unless `batch` holds input_ids, attention_mask and labels of one (B, L) shape."""
    keys = set(batch.keys()) if hasattr(batch, "keys") else set()
    if "attention_mask" not in keys:
        raise ValueError("the batch has no attention_mask: the KL and cosine terms average over non-pad positions, so "
                         "a batch needs input_ids, attention_mask and labels (a tokenizer's output collated by "
                         "DataCollatorForLanguageModeling has them; all ones when nothing is padded)")
    if "input_ids" not in keys or "labels" not in keys:
        missing = sorted({"input_ids", "labels"} - keys)
        raise ValueError(f"the batch has no {' or '.join(missing)}: it needs input_ids, attention_mask and labels "
                         "(-100 where not masked), as DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15) "
                         "makes them")
    shapes = {k: tuple(batch[k].shape) for k in ("input_ids", "attention_mask", "labels")}
    if len(set(shapes.values())) != 1 or len(shapes["input_ids"]) != 2:
        raise ValueError(f"input_ids, attention_mask and labels must all be (batch, length); got {shapes}")


def freeze(teacher):
    """The teacher as distillation wants it: eval mode (no dropout), no gradients."""
    return teacher.eval().requires_grad_(False)


def distil_terms(teacher, student, batch, loss: DistilLoss = DistilLoss(), check: bool = True) -> dict:
    """{"kl", "mlm", "cos", "total"}: float32 scalars of `loss` on one batch; "total" carries the student's gradient.

    batch: input_ids, attention_mask, labels (B, L) on the models' device. The teacher must be in eval mode
    (`freeze(teacher)`); it runs under inference_mode. check=False skips the pair / batch checks (done once).
    """
    if check:
        check_pair(teacher, student, loss)
        check_batch(batch)
    if teacher.training:
        raise ValueError("the teacher is in training mode (dropout on): freeze it first with "
                         "tinydistil.hf_trainer.freeze(teacher) (teacher.eval())")
    ids, am, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    s = mlm_parts(student, ids, am)
    t = None
    if loss.alpha_kl > 0 or loss.alpha_cos > 0 or loss.alpha_sent > 0:
        with torch.inference_mode():
            t = mlm_parts(teacher, ids, am)
        t = t._replace(hidden=t.hidden.clone(), feats=t.feats.clone())  # out of inference mode, for autograd
    return loss(s, labels, am, t)


class DistilTrainer(Trainer):
    """`transformers.Trainer` training `model` (the student) with tinydistil's triple loss against `teacher`.

    distil_loss: the DistilLoss (default: the paper's T = 2, alphas 5 / 2 / 1). The teacher is frozen in eval
    mode and moved to the training device. Each micro-batch's terms are its own means, as in tinydistil's loop,
    so `num_items_in_batch` is not used and Trainer divides the loss by the accumulation steps
    (`loss_is_scaled_for_ga = False`). Logged every logging step, averaged over it: loss_kl, loss_mlm, loss_cos
    and loss_total (Trainer's own "loss" is the same total, rounded). One device per process.
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args, teacher=None, distil_loss: DistilLoss | None = None, **kwargs):
        if teacher is None:
            raise ValueError("DistilTrainer needs teacher=<a masked LM>")
        model = kwargs.get("model", args[0] if args else None)
        self.distil_loss = distil_loss or DistilLoss()
        check_pair(teacher, model, self.distil_loss)  # before Trainer builds anything
        super().__init__(*args, **kwargs)
        if self.args.world_size > 1:
            raise ValueError("DistilTrainer runs on one device per job (the student's parts are read outside the "
                             "DDP wrapper); to distil on several use `torchrun ... -m tinydistil distill`")
        self.teacher = freeze(teacher).to(self.args.device)
        self._sums, self._n = {}, 0

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        check_batch(inputs)
        # mlm_parts calls the student's submodules, not its forward, where accelerate's autocast hook sits
        with self.accelerator.autocast():
            terms = distil_terms(self.teacher, model, inputs, self.distil_loss, check=False)
        if model.training:
            for k, v in terms.items():
                self._sums[k] = self._sums.get(k, 0.0) + v.detach()
            self._n += 1
        return (terms["total"], {"loss": terms["total"], **terms}) if return_outputs else terms["total"]

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._n:  # a training log: the terms since the last one
            for k, v in self._sums.items():
                logs[f"loss_{k}"] = float(self.accelerator.reduce(v / self._n, reduction="mean"))
            self._sums, self._n = {}, 0
        super().log(logs, *args, **kwargs)
