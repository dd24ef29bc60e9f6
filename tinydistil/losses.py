"""The DistilBERT objective: `DistilLoss` and the float32 terms it is made of.

    L = alpha_kl  * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))    soft targets        term "kl"
      + alpha_mlm * CE(z_s, masked labels)                             hard targets        term "mlm"
      + alpha_cos * (1 - cos(h_s, h_t))                                 hidden alignment    term "cos"
      [+ alpha_sent * (1 - cos(mean(h_s), mean(h_t)))                   sentence alignment  term "sent"]

The bracketed term is beyond the paper and off by default (alpha_sent = 0): the mean-pooled final hidden state of
each sequence pulled toward the teacher's, as sentence-transformers' layer reduction does, for a teacher whose
sentence geometry (STS-B) comes from contrastive training rather than from MLM.

`DistilLoss` holds the temperature and the weights and returns the named terms and their weighted "total";
teacher pretraining is the same object with only the MLM weight (`DistilLoss.mlm_only()`). The soft-target weight
is `alpha_kl` everywhere (`DistillConfig.alpha_kl`, logged as `loss_kl`), since the term is a KL divergence, not the
MLM cross-entropy; the reference distiller (and run folders written before the rename) call them `alpha_ce` /
`loss_ce` (config.RENAMED reads those).

Conventions follow the reference distiller: the KL is summed over the vocabulary and averaged over
the selected positions (every non-pad token, or only masked ones), the CE is averaged over masked
tokens, the cosine term over non-pad tokens. Every term is 0 (with a zero gradient) when it has no
position to average over.

`chunked_kl_ce` (chunked_loss.py) computes the same KL and CE from the hidden features and the projection
weights, a chunk of rows at a time, so the (rows x vocabulary) logits never exist for the whole batch;
`DistilLoss(chunked=False)` is its plain twin on full logits (tested equal).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .chunked_loss import auto_chunk_rows, chunked_kl_ce  # noqa: F401 (chunked_kl_ce re-exported)
from .mlm import MLMParts


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean over rows of KL(p_t || p_s) at temperature T. logits: (N, V) of the selected rows."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(s, t, log_target=True, reduction="sum") / student_logits.shape[0]
    return kl * temperature**2


def mlm_cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over positions whose label is not -100. logits: (N, V), labels: (N,)."""
    if not bool((labels != -100).any()):
        return student_logits.sum() * 0.0
    return F.cross_entropy(student_logits.float(), labels, ignore_index=-100)


def hidden_cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(h_s, h_t) over rows where mask is true. hidden: (N, D), mask: (N,) bool."""
    if not bool(mask.any()):
        return student_hidden.sum() * 0.0
    cos = F.cosine_similarity(student_hidden[mask].float(), teacher_hidden[mask].float(), dim=-1)
    return (1.0 - cos).mean()


def sentence_cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                         attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of 1 - cos(mean-pooled h_s, mean-pooled h_t), pooling over non-pad tokens.
    hidden: (B, L, D), attention_mask: (B, L), 0 = padding; sequences without a token are left out."""
    m = attention_mask.to(torch.float32).unsqueeze(-1)  # (B, L, 1)
    keep = m.sum(dim=(1, 2)) > 0
    if not bool(keep.any()):
        return student_hidden.sum() * 0.0
    n = m.sum(dim=1).clamp(min=1.0)  # (B, 1)
    s = (student_hidden.float() * m).sum(dim=1) / n  # (B, D)
    t = (teacher_hidden.float() * m).sum(dim=1) / n
    return (1.0 - F.cosine_similarity(s[keep], t[keep], dim=-1)).mean()


@dataclass(frozen=True)
class Term:
    """One weighted term of the distillation objective, as every reader of it names it. Adding a term = its line
    here, its weight field on DistilLoss and DistillConfig, and its computation in DistilLoss.__call__: the loop's
    log (loss_<key>), the HF Trainer's logs, the loss-curve figure, the report, poster and model cards follow."""
    key: str  # in DistilLoss's output ("kl"); logged as "loss_<key>" (train.py, log.jsonl, DistilTrainer)
    weight: str  # the DistilLoss / DistillConfig field weighing it
    title: str  # what it is (the loss-curve panel's title)
    text: str  # in the report and the model cards
    latex: str  # on the poster (matplotlib mathtext)
    # beyond the paper, off by default: named in an objective only when its weight is > 0 (runs made before the
    # term existed have no weight for it, which means 0)
    optional: bool = False


TERMS = (Term("kl", "alpha_kl", "soft-target KL (at T)", "T²·KL(teacher ‖ student at T)",
              r"T^2\,\mathrm{KL}(p_t^T\,\|\,p_s^T)"),
         Term("mlm", "alpha_mlm", "masked-LM cross-entropy", "MLM", r"L_{mlm}"),
         Term("cos", "alpha_cos", "hidden-state cosine loss", "(1 − cos(h_s, h_t))", r"(1-\cos(h_s,h_t))"),
         Term("sent", "alpha_sent", "sentence cosine loss (mean-pooled)", "(1 − cos(mean h_s, mean h_t))",
              r"(1-\cos(\bar h_s,\bar h_t))", optional=True))


def active_terms(weights: dict) -> list[Term]:
    """The TERMS an objective with `weights` ({weight field: value}) names: every paper term, and an optional one
    only when its weight is a number > 0."""
    def on(t):
        v = weights.get(t.weight)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    return [t for t in TERMS if not t.optional or on(t)]


def objective_text(weights: dict, latex: bool = False) -> str:
    """The weighted sum of TERMS with `weights` ({weight field: value}, e.g. a run's config):
    "5·T²·KL(teacher ‖ student at T) + 2·MLM + 1·(1 − cos(h_s, h_t))"; "?" for a weight not given."""
    def w(t):
        v = weights.get(t.weight)
        return "?" if not isinstance(v, (int, float)) or isinstance(v, bool) else f"{v:g}"

    if latex:
        return " + ".join(rf"{w(t)}\,{t.latex}" for t in active_terms(weights))
    return " + ".join(f"{w(t)}·{t.text}" for t in active_terms(weights))


@dataclass(frozen=True)
class DistilLoss:
    """The weighted triple loss over one batch of student (and teacher) MLMParts.

    temperature: T of the soft targets (the KL is multiplied by T^2).
    alpha_kl, alpha_mlm, alpha_cos, alpha_sent: weights of the terms (alpha_sent beyond the paper, 0 by default);
        a weight of 0 skips its term's computation.
    kl_on_masked_only: KL on masked positions only instead of every non-pad one (`restrict_ce_to_mask`).
    chunked: compute KL + CE with `chunked_kl_ce` (chunk_size rows at a time, 0 = auto) or on full logits.
    """

    temperature: float = 2.0
    alpha_kl: float = 5.0
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    alpha_sent: float = 0.0
    kl_on_masked_only: bool = False
    chunked: bool = True
    chunk_size: int = 0
    fused: str = "auto"  # the compiled fused chunk of chunked_kl_ce: on / off / auto (fused_chunks_apply)

    @property
    def term_keys(self) -> tuple[str, ...]:
        """The keys of the terms __call__ returns besides "total" (active_terms of these weights)."""
        return tuple(t.key for t in active_terms(asdict(self)))

    @classmethod
    def mlm_only(cls, chunk_size: int = 0) -> "DistilLoss":
        """Teacher pretraining: the MLM cross-entropy alone."""
        return cls(temperature=1.0, alpha_kl=0.0, alpha_mlm=1.0, alpha_cos=0.0, chunk_size=chunk_size)

    @classmethod
    def from_config(cls, cfg) -> "DistilLoss":
        """From a DistillConfig."""
        return cls(temperature=cfg.temperature, **{t.weight: getattr(cfg, t.weight) for t in TERMS},
                   kl_on_masked_only=cfg.restrict_ce_to_mask, chunk_size=cfg.loss_chunk_size, fused=cfg.fused_loss)

    def __call__(self, student: MLMParts, labels: torch.Tensor, attention_mask: torch.Tensor,
                 teacher: MLMParts | None = None) -> dict[str, torch.Tensor]:
        """{"kl", "mlm", "cos", "total"} and "sent" when alpha_sent > 0 (the keys of active_terms): float32
        scalars; only "total" carries a gradient through the chunked path.

        student / teacher: MLMParts with hidden (B, L, D), feats (B, L, D'), weight (V, D'), bias (V,); teacher
        None (pretraining) leaves KL and cosine at 0. labels: (B * L,) or (B, L), -100 = not masked.
        attention_mask: (B, L), 0 = padding.
        """
        labels = labels.flatten()
        nonpad = attention_mask.flatten().bool()
        kl_rows = labels != -100 if self.kl_on_masked_only else nonpad
        zero = student.feats.new_zeros((), dtype=torch.float32)
        use_kl = teacher is not None and self.alpha_kl > 0
        s_feats = student.feats.flatten(0, 1)
        t_feats = teacher.feats.flatten(0, 1) if use_kl else None
        if self.chunked:
            total, kl, mlm = chunked_kl_ce(
                s_feats, student.weight, student.bias, teacher_feats=t_feats,
                teacher_weight=teacher.weight if use_kl else None, teacher_bias=teacher.bias if use_kl else None,
                kl_rows=kl_rows, labels=labels, temperature=self.temperature, alpha_kl=self.alpha_kl if use_kl else 0.0,
                alpha_mlm=self.alpha_mlm, chunk_size=self.chunk_size, fused=self.fused)
        else:
            z = F.linear(s_feats, student.weight, student.bias)
            mlm = mlm_cross_entropy(z, labels)
            kl = zero
            if use_kl:
                zt = F.linear(t_feats, teacher.weight, teacher.bias).detach()
                kl = soft_target_kl(z[kl_rows], zt[kl_rows], self.temperature)
            total = self.alpha_kl * kl + self.alpha_mlm * mlm
        cos = zero
        if teacher is not None and self.alpha_cos > 0:
            cos = hidden_cosine_loss(student.hidden.flatten(0, 1), teacher.hidden.flatten(0, 1).detach(), nonpad)
            total = total + self.alpha_cos * cos
        out = {"kl": kl, "mlm": mlm, "cos": cos}
        if self.alpha_sent > 0:  # beyond the paper: a key only when the term is on
            out["sent"] = zero
            if teacher is not None:
                out["sent"] = sentence_cosine_loss(student.hidden, teacher.hidden.detach(), attention_mask)
                total = total + self.alpha_sent * out["sent"]
        return {**out, "total": total}


# ------------------------------------------------------------------ SQuAD, DistilBERT (D)
def qa_distillation_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, teacher_start: torch.Tensor,
                         teacher_end: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor,
                         mask: torch.Tensor, temperature: float = 2.0, alpha_task: float = 0.5,
                         alpha_kl: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha_task * CE + alpha_kl * T^2 * KL, CE, T^2 * KL); CE and KL each averaged over start and end.

    alpha_task weighs the task's own loss, the cross-entropy on the gold span (hard targets); alpha_kl the soft
    targets, as in DistilLoss (the reference SQuAD distiller: alpha_ce / alpha_kd, SquadConfig.RENAMED).

    logits: (B, L) student / teacher; positions: (B,) gold token indices; mask: (B, L) bool, True on real
    tokens. Padding gets -1e4 in both distributions so it carries no probability. Computed in float32.
    """
    neg = torch.tensor(-1e4, dtype=torch.float32, device=start_logits.device)
    fill = lambda x: torch.where(mask, x.float(), neg)  # noqa: E731
    s_start, s_end, t_start, t_end = fill(start_logits), fill(end_logits), fill(teacher_start), fill(teacher_end)
    ce = (F.cross_entropy(s_start, start_positions) + F.cross_entropy(s_end, end_positions)) / 2
    kl = (soft_target_kl(s_start, t_start, temperature) + soft_target_kl(s_end, t_end, temperature)) / 2
    return alpha_task * ce + alpha_kl * kl, ce, kl


# ------------------------------------------------------------------ (D) on any classification / regression task
def soft_label_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor,
                    temperature: float = 2.0, alpha_task: float = 0.5,
                    alpha_kl: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha_task * task loss + alpha_kl * distillation term, task loss, distillation term): the paper's second
    step ("DistilBERT (D)": a fine-tuned teacher's outputs as extra targets) for a sentence-level task.

    Classification: logits, teacher_logits (B, C), labels (B,) class ids; task loss = CE, distillation term =
    T^2 * KL(softmax(teacher / T) || softmax(student / T)) (soft_target_kl). Regression (STS-B): logits,
    teacher_logits (B, 1), labels (B,) scores; task loss = MSE to the gold score, distillation term = MSE to the
    teacher's prediction (a softmax over one output would be constant). Weights default to the paper's SQuAD (D)
    0.5 / 0.5, T = 2. Computed in float32.
    """
    s, t = logits.float(), teacher_logits.float().to(logits.device)
    if s.shape != t.shape:
        raise ValueError(f"student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} differ in shape")
    if s.shape[-1] == 1:  # regression
        task = F.mse_loss(s.squeeze(-1), labels.float())
        dist = F.mse_loss(s, t)
    else:
        task = F.cross_entropy(s, labels)
        dist = soft_target_kl(s, t, temperature)
    return alpha_task * task + alpha_kl * dist, task, dist
