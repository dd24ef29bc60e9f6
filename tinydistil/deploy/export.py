"""Export a model folder to ONNX (fp32, or int8 weights with ONNX Runtime dynamic quantisation).

    python -m tinydistil export --model runs/cpu/student/model --format onnx [--int8] [--output DIR]

The folder gets `model.onnx` (or `model_int8.onnx`) plus the tokenizer files, so it runs with plain
onnxruntime + tokenizers, without tinydistil:

    sess = onnxruntime.InferenceSession("DIR/model.onnx")
    enc = transformers.AutoTokenizer.from_pretrained("DIR")("a sentence", return_tensors="np")
    out = sess.run(None, {i.name: enc[i.name] for i in sess.get_inputs()})[0]

Inputs: input_ids, attention_mask (+ token_type_ids for BERT), int64 [batch, seq] with dynamic batch and
sequence axes. Output: `logits` [batch, num_labels] for a *ForSequenceClassification folder (e.g. a
fine-tuned STS-B model), else the encoder's `last_hidden_state` [batch, seq, hidden] (an MLM checkpoint's
vocabulary head is not exported). fp32 outputs match PyTorch's to FP32_ATOL (checked by check_export).

Exporter: torch.onnx's TorchScript exporter (`dynamo=False`); the dynamo exporter needs onnxscript,
which is not a dependency.
"""
from __future__ import annotations

import inspect
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

FP32_ATOL = 1e-4  # max |onnxruntime - pytorch| on fp32 outputs (observed ~1e-6 on tiny models)
OPSET = 17


def check_model_dir(model_dir) -> Path:
    """The folder as a Path; FileNotFoundError / ValueError when it is missing or not a model folder."""
    path = Path(model_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model folder {path} does not exist; pass a folder written by save_pretrained "
                                "(e.g. runs/cpu/student/model)")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a model folder (no config.json); pass a folder written by save_pretrained")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ValueError(f"model folder {path} has no weights (*.safetensors / *.bin); save the model with "
                         "model.save_pretrained(folder)")
    return path


def load_for_inference(model_dir):
    """(model in eval mode, output name) of a folder or hub id: a *ForSequenceClassification model keeps
    its head ("logits"), anything else loads as the bare encoder with AutoModel ("last_hidden_state")."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from ..hf import first_line, is_local_path, quiet

    path = check_model_dir(model_dir) if is_local_path(str(model_dir)) else str(model_dir)  # else a hub id
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"could not load the config of {path} ({first_line(e)}); "
                         "offline, pass a local model folder") from None
    is_clf = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    cls, output = (AutoModelForSequenceClassification, "logits") if is_clf else (AutoModel, "last_hidden_state")
    try:
        with quiet():  # an MLM checkpoint's unused vocabulary head is expected here
            model = cls.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"could not load the model in {path} ({first_line(e)})") from None
    return model.eval(), output


def input_names(model, tokenizer=None) -> list[str]:
    """The inputs the model takes: token_type_ids only if forward() accepts them (BERT, not DistilBERT)
    and the tokenizer makes them."""
    names = ["input_ids", "attention_mask"]
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    if takes_types and (tokenizer is None or "token_type_ids" in tokenizer.model_input_names):
        names.append("token_type_ids")
    return names


class _TensorOutput(torch.nn.Module):
    """Keyword call + one tensor out: what the TorchScript exporter needs (positional order differs
    between model classes, and dict outputs are flattened)."""

    def __init__(self, model, names: list[str], output: str):
        super().__init__()
        self.model, self.names, self.output = model, names, output

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(**dict(zip(self.names, inputs)), return_dict=True), self.output)


def export_model(model, path, names: list[str], output: str, opset: int = OPSET) -> Path:
    """torch.onnx.export of an in-memory model to `path` with dynamic batch/sequence axes."""
    path = Path(path)
    example = torch.ones(1, 8, dtype=torch.long)
    seq_axes = {0: "batch", 1: "sequence"}
    dynamic = {n: seq_axes for n in names}
    dynamic[output] = seq_axes if output == "last_hidden_state" else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about python control flow on shapes (constant here)
        torch.onnx.export(_TensorOutput(model, names, output).eval(), tuple(example for _ in names), str(path),
                          input_names=names, output_names=[output], dynamic_axes=dynamic, opset_version=opset,
                          dynamo=False)
    return path


def quantize_onnx(fp32_path, int8_path) -> Path:
    """onnxruntime dynamic quantisation: int8 weights of MatMul/Gemm, activations quantised at run time."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" advice, logged on every call
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return Path(int8_path)


def onnx_session(path, threads: int | None = None):
    """A CPU onnxruntime session; `threads` intra-op threads (default: torch.get_num_threads(), so PyTorch
    and ONNX Runtime timings use the same number of cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_onnx(model_dir, output=None, int8: bool = False, overwrite: bool = False) -> Path:
    """Write `<output>/model.onnx` (or `model_int8.onnx`) and the tokenizer files; returns the .onnx path.

    output: a folder (default `<model_dir>/onnx`) or a path ending in .onnx. An existing .onnx file, or a
    tokenizer file there that is not the one this export writes, is not replaced unless overwrite=True
    (checked before anything is written).
    """
    from ..hf import load_tokenizer
    from ..rundir import copy_atomic, refuse_foreign

    src = check_model_dir(model_dir)
    tokenizer = load_tokenizer(str(src))
    out = Path(output).expanduser() if output else src / "onnx"
    target = out if out.suffix == ".onnx" else out / ("model_int8.onnx" if int8 else "model.onnx")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; choose another --output-dir or pass --overwrite")
    tok_dir = tempfile.TemporaryDirectory()  # the tokenizer files, written here first to compare with what is there
    tokenizer.save_pretrained(tok_dir.name)
    tok_files = sorted(Path(tok_dir.name).iterdir())
    if target.parent != src:  # the model's own folder already holds these files
        for f in tok_files:
            refuse_foreign(target.parent / f.name, lambda p: p.read_bytes() == f.read_bytes(), overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    model, output_name = load_for_inference(src)
    names = input_names(model, tokenizer)
    if int8:
        with tempfile.TemporaryDirectory() as tmp:
            quantize_onnx(export_model(model, Path(tmp) / "fp32.onnx", names, output_name), target)
    else:
        export_model(model, target, names, output_name)
    if target.parent != src:
        for f in tok_files:
            copy_atomic(f, target.parent / f.name)
    tok_dir.cleanup()
    return target


def check_export(model_dir, onnx_path, texts: list[str] | None = None) -> float:
    """Max |onnxruntime - pytorch| over the outputs of a padded batch of `texts` (padded positions of
    last_hidden_state excluded: they are not meaningful in either)."""
    from ..hf import load_tokenizer

    model, output = load_for_inference(model_dir)
    tokenizer = load_tokenizer(str(check_model_dir(model_dir)))
    texts = texts or ["the cat sat on the mat", "a short one", "another sentence that is a little bit longer"]
    names = input_names(model, tokenizer)
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = getattr(model(**{n: enc[n] for n in names}), output).numpy()
    sess = onnx_session(onnx_path)
    got = sess.run(None, {i.name: enc[i.name].numpy() for i in sess.get_inputs()})[0]
    diff = np.abs(got - ref)
    if output == "last_hidden_state":
        diff = diff[enc["attention_mask"].numpy().astype(bool)]
    return float(diff.max())

