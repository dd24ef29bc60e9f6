"""The paper's own numbers (Sanh et al., 2019), held once: every table, the report and the poster label them
as the paper's. A root module (constants only) so that deploy/ (Table 3's paper rows) and study/ both read it."""
from __future__ import annotations

# Table 1: GLUE dev; Score, then the nine tasks in registry order (CoLA MNLI MRPC QNLI QQP RTE SST-2 STS-B WNLI).
# BERT/DistilBERT: median of 5 runs.
PAPER_TABLE1 = {
    "ELMo": (68.7, 44.1, 68.6, 76.6, 71.1, 86.2, 53.4, 91.5, 70.4, 56.3),
    "BERT-base": (79.5, 56.3, 86.7, 88.6, 91.8, 89.6, 69.3, 92.7, 89.0, 53.5),
    "DistilBERT": (77.0, 51.3, 82.2, 87.5, 89.2, 88.5, 59.9, 91.3, 86.9, 56.3),
}
PAPER_TEACHERS = {"DistilBERT": "BERT-base"}
PAPER_NOTE1 = "paper Table 1 (GLUE dev); Score = mean of all nine tasks"
# Table 2: IMDb test accuracy, SQuAD v1.1 dev EM/F1; (D) = with a second distillation step.
PAPER_TABLE2_COLUMNS = ("IMDb", "SQuAD EM", "SQuAD F1")
PAPER_TABLE2 = {
    "BERT-base": ("93.46", "81.2", "88.5"),
    "DistilBERT": ("92.82", "77.7", "85.8"),
    "DistilBERT (D)": ("—", "79.1", "86.9"),
}
# the same numbers as numbers, for computing (None: not reported); PAPER_TABLE2 keeps the paper's text (93.46)
PAPER_TABLE2_SCORES = {
    "BERT-base": {"IMDb": 93.46, "SQuAD EM": 81.2, "SQuAD F1": 88.5},
    "DistilBERT": {"IMDb": 92.82, "SQuAD EM": 77.7, "SQuAD F1": 85.8},
    "DistilBERT (D)": {"IMDb": None, "SQuAD EM": 79.1, "SQuAD F1": 86.9},
}
# Table 3: parameters (millions) and CPU inference time (s) for the full STS-B dev set at batch size 1.
PAPER_TABLE3 = {"ELMo": (180, 895), "BERT-base": (110, 668), "DistilBERT": (66, 410)}
# Table 4: GLUE macro-score delta vs the full triple loss.
PAPER_TABLE4 = {"- L_ce": -2.96, "- L_cos": -1.46, "- L_mlm": -0.31, "random init": -3.69}
PAPER_RETENTION_TEXT = 97  # the abstract/text: "retaining 97% of its language understanding"


def paper_glue_retention() -> float:
    """DistilBERT's Score as % of BERT-base's, from the paper's Table 1 (the text rounds it to 97 %)."""
    return 100.0 * PAPER_TABLE1["DistilBERT"][0] / PAPER_TABLE1["BERT-base"][0]


def paper_speedup() -> float:
    """BERT-base's Table 3 CPU time over DistilBERT's (the paper's "60 % faster")."""
    return PAPER_TABLE3["BERT-base"][1] / PAPER_TABLE3["DistilBERT"][1]
