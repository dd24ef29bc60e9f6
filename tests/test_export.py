"""ONNX export: outputs equal PyTorch's, dynamic shapes, usable with plain onnxruntime, clear errors."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_downstream import one_thread, save_tiny_model, tiny_models  # noqa: F401  (fixtures)
from tokenizers import Tokenizer
from transformers import AutoModel, DistilBertConfig, DistilBertForSequenceClassification

from tinydistil.cli import main
from tinydistil.deploy.export import FP32_ATOL, check_export, export_onnx, input_names

TEXTS = ["the cat sat on the mat", "good", "a big red house by the river and a small blue tree over it"]


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_fp32_matches_pytorch_with_plain_onnxruntime(tiny_models, tmp_path, kind):
    path = export_onnx(tiny_models[kind], tmp_path / "onnx")
    assert path == tmp_path / "onnx" / "model.onnx"
    # only onnxruntime + the tokenizer file written beside the model: no tinydistil, no transformers
    tok = Tokenizer.from_file(str(tmp_path / "onnx" / "tokenizer.json"))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == (["input_ids", "attention_mask", "token_type_ids"] if kind == "bert"
                     else ["input_ids", "attention_mask"])
    model = AutoModel.from_pretrained(tiny_models[kind]).eval()
    for batch in ([TEXTS[0]], TEXTS):  # batch 1 and a padded batch of 3, other lengths than the export's
        tok.enable_padding(pad_id=0)
        encs = tok.encode_batch(batch)
        feed = {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}
        got = sess.run(None, {n: feed[n] for n in names})[0]
        with torch.no_grad():
            ref = model(**{n: torch.from_numpy(feed[n]) for n in names}).last_hidden_state.numpy()
        real = feed["attention_mask"].astype(bool)
        assert got.shape == ref.shape
        assert np.abs(got - ref)[real].max() < FP32_ATOL
    assert check_export(tiny_models[kind], path) < FP32_ATOL


def test_classifier_exports_logits(tiny_models, tmp_path):
    folder = tmp_path / "clf"
    clf = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=200, dim=32, n_layers=1, n_heads=2,
                                                               hidden_dim=64, num_labels=1))
    clf.save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (folder / f).write_bytes((tiny_models["distilbert"] / f).read_bytes())
    path = export_onnx(folder, tmp_path / "out" / "stsb.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].name == "logits"
    assert check_export(folder, path) < FP32_ATOL


def test_int8_has_integer_matmuls_and_close_outputs(tiny_models, tmp_path):
    path = export_onnx(tiny_models["distilbert"], tmp_path, int8=True)
    assert path.name == "model_int8.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    diff = check_export(tiny_models["distilbert"], path)
    assert 0 < diff < 0.1  # quantised: not exact, but close (hidden states are LayerNorm'd, scale ~1)


def test_input_names_follow_the_model():
    from transformers import BertConfig, BertModel, DistilBertModel

    assert input_names(BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=64))) == ["input_ids", "attention_mask", "token_type_ids"]
    assert input_names(DistilBertModel(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64))) == \
        ["input_ids", "attention_mask"]


def test_bad_input(tiny_models, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        export_onnx(tmp_path / "empty")
    with pytest.raises(ValueError, match="no tokenizer"):
        export_onnx(tiny_models["no_tokenizer"], tmp_path / "o1")
    export_onnx(tiny_models["distilbert"], tmp_path / "o2")
    before = (tmp_path / "o2" / "model.onnx").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_onnx(tiny_models["bert"], tmp_path / "o2")
    assert (tmp_path / "o2" / "model.onnx").read_bytes() == before  # the user's file is untouched
    assert main(["export", "--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_export(tiny_models, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_models["bert"]), "--format", "onnx",
                 "--output-dir", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "x" / "model.onnx").is_file() and "max |onnxruntime - pytorch|" in out
