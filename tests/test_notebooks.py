"""Notebooks run top to bottom on the smoke preset (papermill), as CI and Colab users run them."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_notebook_01_smoke(tmp_path):
    papermill = pytest.importorskip("papermill")
    from transformers import BertForMaskedLM, DistilBertForMaskedLM

    out = tmp_path / "01.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "01_distill_pretraining.ipynb"), str(out),
                               parameters={"preset": "smoke", "output_root": str(tmp_path / "runs")},
                               cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    student_dir = tmp_path / "runs" / "smoke" / "student"
    student = DistilBertForMaskedLM.from_pretrained(student_dir / "model")
    teacher = BertForMaskedLM.from_pretrained(tmp_path / "runs" / "smoke" / "teacher" / "model")
    assert student.config.n_layers * 2 == teacher.config.num_hidden_layers
    assert (student_dir / "loss_curves.png").stat().st_size > 1000
    import nbformat

    nb = nbformat.read(str(out), as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "student: 1 layers" in text and "teacher: 2 layers" in text
