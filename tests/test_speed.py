"""Table 3: parameter counts, disk size, int8 form, timing protocol, the CSV and its speed-ups, errors."""
import csv
import json
import re

import numpy as np
import pytest
import torch
import transformers
from scipy.stats import pearsonr
from tiny_downstream import fixture_data, one_thread, save_tiny_model, tiny_models  # noqa: F401  (fixtures)
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

from tinydistil.cli import main
from tinydistil.deploy.export import load_for_inference
from tinydistil.paper import PAPER_TABLE3
from tinydistil.deploy.speed import (COLUMNS, count_parameters, disk_size_mb, quantize_int8, run_speed,
                                     stsb_dev, sweep, write_table3)
from tinydistil.deploy.timing import time_pass


def bert_count(c: BertConfig) -> int:
    """Closed form for BertModel (with pooler): embeddings + layers + pooler."""
    H, I = c.hidden_size, c.intermediate_size
    emb = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * H + 2 * H
    layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    return emb + c.num_hidden_layers * layer + H * H + H


def distilbert_count(c: DistilBertConfig) -> int:
    H, I = c.dim, c.hidden_dim
    emb = (c.vocab_size + c.max_position_embeddings) * H + 2 * H
    layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    return emb + c.n_layers * layer


def test_parameter_counts_closed_form():
    with torch.device("meta"):  # full size without allocating weights
        bert, distil = BertModel(BertConfig()), DistilBertModel(DistilBertConfig())
        tiny = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                                    intermediate_size=12, max_position_embeddings=16))
    assert count_parameters(bert)["total"] == bert_count(BertConfig()) == 109_482_240  # paper: 110M
    assert count_parameters(distil)["total"] == distilbert_count(DistilBertConfig()) == 66_362_880  # paper: 66M
    assert count_parameters(tiny)["total"] == bert_count(tiny.config)
    emb = (30522 + 512 + 2) * 768 + 2 * 768
    assert count_parameters(bert)["without_embeddings"] == 109_482_240 - emb


def test_tied_weights_counted_once(tiny_models):
    mlm = transformers.BertForMaskedLM.from_pretrained(tiny_models["bert"])
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    unique = {id(p): p.numel() for p in mlm.parameters()}
    assert count_parameters(mlm)["total"] == sum(unique.values())


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_disk_size_is_four_bytes_per_parameter(tiny_models, kind):
    model, _ = load_for_inference(tiny_models[kind])
    n = count_parameters(model)["total"]
    assert disk_size_mb(model) * 1e6 == pytest.approx(4 * n, rel=0.05)  # fp32 + a small safetensors header
    assert disk_size_mb(model) * 1e6 >= 4 * n


def test_int8_quantises_every_linear_and_stays_close(tiny_models):
    model, _ = load_for_inference(tiny_models["distilbert"])
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    q = quantize_int8(model)
    qlin = [m for m in q.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert n_linear > 0 and len(qlin) == n_linear
    ids = torch.randint(5, 100, (1, 12))
    with torch.no_grad():
        diff = (q(input_ids=ids).last_hidden_state - model(input_ids=ids).last_hidden_state).abs().max()
    assert 0 < diff < 0.1
    assert disk_size_mb(q) < disk_size_mb(model)


def test_time_pass_median_and_warmup():
    calls = []
    t = time_pass(lambda enc: calls.append(enc["x"]) or torch.zeros(1), [{"x": i} for i in range(4)], repeats=3,
                  warmup=6, collect=True)
    assert calls == [0, 1, 2, 3, 0, 1] + [0, 1, 2, 3] * 3  # warm-up cycles the data, then full passes
    assert t.seconds == sorted(t.repeats)[1] and len(t.outputs) == 4


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_speed_table(tiny_models, fixture_data, tmp_path, monkeypatch):
    real = transformers.BertConfig, transformers.DistilBertConfig  # the reference architectures, made tiny
    monkeypatch.setattr(transformers, "BertConfig", lambda: real[0](hidden_size=32, num_hidden_layers=4,
                        num_attention_heads=2, intermediate_size=64, vocab_size=200))
    monkeypatch.setattr(transformers, "DistilBertConfig", lambda: real[1](dim=32, n_layers=2, n_heads=2,
                        hidden_dim=64, vocab_size=200))
    out = tmp_path / "res" / "table3_speed.csv"
    df = run_speed(tiny_models["bert"], tiny_models["distilbert"], fixture_data, out, max_examples=12, repeats=2,
                   progress=False)
    rows = _rows(out)
    assert list(rows[0]) == COLUMNS and list(df.columns) == COLUMNS
    assert [(r["Model"], float(r["Params (M)"]), float(r["Inference time (s)"]), r["source"]) for r in rows[:3]] \
        == [(m, p, t, "paper") for m, (p, t) in PAPER_TABLE3.items()]
    by = {r["Model"]: r for r in rows[3:]}
    assert list(by) == ["BERT-base architecture (PyTorch fp32)", "DistilBERT architecture (PyTorch fp32)",
                        "teacher (PyTorch fp32)", "student (PyTorch fp32)", "student (PyTorch int8 dynamic)",
                        "student (ONNX Runtime fp32)", "student (ONNX Runtime int8)"]
    assert all(r["source"].startswith("measured: ") and r["Threads"] == "1" for r in by.values())
    sec = {m: float(r["Inference time (s)"]) for m, r in by.items()}
    speedup = lambda m: float(by[m]["Speed-up vs teacher"])  # noqa: E731
    assert speedup("student (PyTorch fp32)") == pytest.approx(sec["teacher (PyTorch fp32)"]
                                                              / sec["student (PyTorch fp32)"], rel=0.01)
    assert speedup("DistilBERT architecture (PyTorch fp32)") == pytest.approx(
        sec["BERT-base architecture (PyTorch fp32)"] / sec["DistilBERT architecture (PyTorch fp32)"], rel=0.01)
    assert speedup("student (ONNX Runtime int8)") == pytest.approx(
        sec["teacher (PyTorch fp32)"] / sec["student (ONNX Runtime int8)"], rel=0.01)
    assert float(rows[2]["Speed-up vs teacher"]) == round(668 / 410, 2)
    student, _ = load_for_inference(tiny_models["distilbert"])
    for form in ("student (PyTorch fp32)", "student (PyTorch int8 dynamic)", "student (ONNX Runtime int8)"):
        assert float(by[form]["Params (M)"]) == pytest.approx(count_parameters(student)["total"] / 1e6, rel=1e-3)
    assert float(by["BERT-base architecture (PyTorch fp32)"]["Params (M)"]) == pytest.approx(
        bert_count(transformers.BertConfig()) / 1e6, rel=1e-3)
    assert "random weights" in by["BERT-base architecture (PyTorch fp32)"]["note"]
    # deployed forms: output difference vs the fp32 student (no STS-B model given)
    assert "max |diff| 0.00e+00" not in by["student (ONNX Runtime int8)"]["Output change vs fp32"]
    onnx_fp32 = by["student (ONNX Runtime fp32)"]["Output change vs fp32"]
    assert float(onnx_fp32.split("max |diff| ")[1].split(",")[0]) < 1e-4
    prov = json.loads(out.with_suffix(".json").read_text())
    assert {"command", "git_sha", "machine", "wall_time_s"} <= set(prov) and prov["examples"] == 12
    assert prov["accuracy_proxy"] == "output difference vs fp32 student"


def test_run_speed_with_stsb_model_reports_pearson(tiny_models, fixture_data, tmp_path):
    folder = tmp_path / "stsb"
    torch.manual_seed(0)
    DistilBertForSequenceClassification(DistilBertConfig(vocab_size=200, dim=32, n_layers=1, n_heads=2,
                                                         hidden_dim=64, num_labels=1)).save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (folder / f).write_bytes((tiny_models["distilbert"] / f).read_bytes())
    df = run_speed(tiny_models["bert"], tiny_models["distilbert"], fixture_data, None, max_examples=16, repeats=1,
                   include_reference_archs=False, progress=False, stsb_model=folder)
    by = df.set_index("Model")["Output change vs fp32"]
    # independent Pearson of the fp32 regression model on the same 16 pairs
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = DistilBertForSequenceClassification.from_pretrained(folder).eval()
    pairs, labels = stsb_dev(fixture_data, 16)
    with torch.no_grad():
        preds = [model(**{k: v for k, v in tok(a, b, return_tensors="pt").items() if k != "token_type_ids"})
                 .logits[0, 0].item() for a, b in pairs]
    ref = 100 * pearsonr(preds, labels)[0]
    assert by["student fine-tuned on STS-B (PyTorch fp32)"] == f"STS-B Pearson {ref:.2f} (reference)"
    for form in ("student (PyTorch int8 dynamic)", "student (ONNX Runtime fp32)", "student (ONNX Runtime int8)"):
        got, fp32, delta = re.fullmatch(r"STS-B Pearson (\S+) vs (\S+) fp32 \((\S+)\)", by[form]).groups()
        assert fp32 == f"{ref:.2f}" and float(delta) == pytest.approx(float(got) - ref, abs=0.006)
    assert abs(float(re.search(r"\((\S+)\)", by["student (ONNX Runtime fp32)"])[1])) < 0.1


def test_write_table3_adds_paper_rows_and_rejects_unknown_columns(tmp_path):
    df = write_table3([{"Model": "x", "Inference time (s)": 1.0, "source": "measured: cpu"}], tmp_path / "t.csv")
    assert list(df["Model"]) == ["ELMo", "BERT-base", "DistilBERT", "x"]
    with pytest.raises(ValueError, match="unknown Table 3 column"):
        write_table3([{"Model": "x", "Time": 1.0}], tmp_path / "t.csv")


def test_bad_input(tiny_models, fixture_data, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_speed(tmp_path / "missing", tiny_models["distilbert"], fixture_data, None, progress=False)
    (tmp_path / "nodata").mkdir()
    with pytest.raises(FileNotFoundError, match="STS-B"):
        run_speed(tiny_models["bert"], tiny_models["distilbert"], tmp_path / "nodata", None, progress=False)
    with pytest.raises(ValueError, match="repeats"):
        run_speed(tiny_models["bert"], tiny_models["distilbert"], fixture_data, None, repeats=0, progress=False)
    with pytest.raises(ValueError, match="not an STS-B regression model"):
        run_speed(tiny_models["bert"], tiny_models["distilbert"], fixture_data, None, max_examples=2,
                  include_reference_archs=False, progress=False, stsb_model=tiny_models["distilbert"])
    assert main(["speed", "--teacher", str(tmp_path / "missing"), "--student", str(tiny_models["distilbert"])]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_speed(tiny_models, fixture_data, tmp_path, capsys):
    out = tmp_path / "res" / "table3_speed.csv"  # --output-dir: the one output flag of every command
    assert main(["speed", "--teacher", str(tiny_models["bert"]), "--student", str(tiny_models["distilbert"]),
                 "--data-dir", str(fixture_data), "--max-examples", "3", "--repeats", "1", "--output-dir",
                 str(out.parent), "--no-reference-archs", "--no-deployed"]) == 0
    assert [r["Model"] for r in _rows(out)][3:] == ["teacher (PyTorch fp32)", "student (PyTorch fp32)"]
    assert "student (PyTorch fp32)" in capsys.readouterr().out


def test_sweep_grid(tiny_models):
    df = sweep(tiny_models["distilbert"], batch_sizes=(1, 4), seq_lens=(8, 16), repeats=1, warmup=0)
    assert list(zip(df["batch_size"], df["seq_len"])) == [(1, 8), (1, 16), (4, 8), (4, 16)]
    assert np.allclose(df["sequences_per_s"], df["batch_size"] / df["seconds"])


def test_missing_onnx_makes_its_rows_not_run(tiny_models, fixture_data, tmp_path, monkeypatch):
    import tinydistil.deploy.speed as S

    monkeypatch.setattr(S, "missing_modules", lambda *names: ["onnxruntime"])
    df = S.run_speed(tiny_models["bert"], tiny_models["distilbert"], fixture_data, str(tmp_path / "t3.csv"),
                     max_examples=4, repeats=1, include_reference_archs=False, progress=False, warmup=0)
    row = df[df["Model"].str.contains("ONNX")]
    assert len(row) == 1 and row["note"].iloc[0] == "not run: pip install onnxruntime"
    assert df["Model"].str.contains("PyTorch int8").any()  # the other deployed form still ran
