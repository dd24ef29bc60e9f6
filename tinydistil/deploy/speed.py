"""Size and speed (paper Table 3): parameters, size on disk, CPU inference time on STS-B dev.

    df = run_speed("runs/cpu/teacher/model", "runs/cpu/student/model", data_dir="../shared/data")

Protocol (paper): one full pass over the STS-B dev set (1,500 pairs) at batch size 1 on CPU. Here each pair is
tokenised up front (max 128 tokens, no padding; tokenisation is not timed), the model runs once per pair
under torch.inference_mode, after `warmup` untimed pairs; the reported time is the median of `repeats` full
passes. On CUDA the pass is timed with CUDA events and a synchronize.

Timed models are encoders (AutoModel: BERT with its pooler, as the paper's 110M; no task head), or a
fine-tuned STS-B regression folder when one is given. Rows:
  * paper: ELMo, BERT-base, DistilBERT (params, time; Table 3 verbatim);
  * BERT-base / DistilBERT architectures from BertConfig() / DistilBertConfig() with random weights (timing
    does not depend on weight values), tokenised with the teacher's tokenizer;
  * the given teacher and student folders;
  * the student deployed as PyTorch int8 (quantize_dynamic on nn.Linear), ONNX Runtime fp32 and ONNX
    Runtime int8 (onnxruntime.quantization.quantize_dynamic).
Deployed forms carry their output change vs the fp32 PyTorch student on the same pairs: with a fine-tuned
STS-B model (`stsb_model`), the change in dev Pearson (x100); otherwise max / mean |difference| of the
outputs (last hidden state), because our students have no STS-B head saved.

`sweep(model_dir)` times one forward pass over a batch-size x sequence-length grid (random token ids).
"""
from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..paper import PAPER_TABLE3
from ..records import row_from_cells, write_table_json
from ..rundir import atomic_file, json_with, machine, refuse_foreign, run_info, torn
from .timing import Timing, describe_change, onnx_runner, output_change, time_pass, torch_runner
from .export import check_model_dir, export_model, input_names, load_for_inference, onnx_session, quantize_onnx

COLUMNS = ["Model", "Params (M)", "Disk (MB)", "Device", "Threads", "Inference time (s)", "Speed-up vs teacher",
           "Output change vs fp32", "source", "note", "run_id"]
MAX_SEQ_LEN = 128


# ------------------------------------------------------------------ size
def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """{"total", "without_embeddings"}: unique parameters (tied weights once); the embeddings are the
    base model's `embeddings` module (word, position, token-type, LayerNorm)."""
    total = sum(p.numel() for p in model.parameters())
    emb = getattr(getattr(model, "base_model", model), "embeddings", None)
    n_emb = sum(p.numel() for p in emb.parameters()) if emb is not None else 0
    return {"total": total, "without_embeddings": total - n_emb}


def disk_size_mb(model: torch.nn.Module) -> float:
    """MB (1e6 bytes) of the weights as saved: save_pretrained safetensors for a transformers model,
    torch.save(state_dict) for a quantised one (packed int8 weights cannot go to safetensors)."""
    with tempfile.TemporaryDirectory() as tmp:
        if any(m.__module__.startswith("torch.ao.nn.quantized") for m in model.modules()):
            buf = io.BytesIO()
            torch.save(model.state_dict(), buf)
            return len(buf.getvalue()) / 1e6
        from ..hf import quiet

        with quiet():
            model.save_pretrained(tmp)  # safetensors (the transformers default)
        return sum(p.stat().st_size for p in Path(tmp).glob("*.safetensors")) / 1e6


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """PyTorch dynamic quantisation: nn.Linear weights int8, activations quantised per batch (CPU only)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization -> torchao notice
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


# ------------------------------------------------------------------ data
def stsb_dev(data_dir=None, max_examples: int | None = None):
    """(pairs [(sentence1, sentence2)], scores) of STS-B dev; the first max_examples pairs if given."""
    from ..eval.glue import load_task
    from ..eval.runner import NoData

    try:
        dev = load_task("stsb", data_dir).evals["dev"]
    except NoData as e:
        raise FileNotFoundError(f"no STS-B dev set ({e}); pass --data-dir with glue/STS-B/dev.tsv") from None
    n = len(dev) if max_examples is None else min(max_examples, len(dev))
    if n < 1:
        raise ValueError(f"max_examples must be >= 1 (got {max_examples})")
    dev = dev.select(range(n))
    return list(zip(dev["sentence1"], dev["sentence2"])), np.asarray(dev["label"], dtype=np.float64)


def encode_pairs(tokenizer, pairs, names: list[str]) -> list[dict[str, torch.Tensor]]:
    """One [1, seq] encoding per pair (batch size 1: no padding), truncated to MAX_SEQ_LEN tokens."""
    out = []
    for a, b in pairs:
        enc = tokenizer(a, b, truncation=True, max_length=MAX_SEQ_LEN, return_tensors="pt")
        out.append({n: enc[n] for n in names})
    return out


# ------------------------------------------------------------------ table
def _sig(x: float, digits: int = 4) -> float:
    """`digits` significant figures (tiny test models have 0.04 M parameters and millisecond passes)."""
    return float(f"{x:.{digits}g}")


def paper_rows() -> list[dict]:
    bert_time = PAPER_TABLE3["BERT-base"][1]
    return [{"Model": m, "Params (M)": p, "Disk (MB)": "", "Device": "CPU", "Threads": "",
             "Inference time (s)": t, "Speed-up vs teacher": round(bert_time / t, 2), "Output change vs fp32": "",
             "source": "paper", "note": "Sanh et al. 2019, Table 3 (speed-up vs BERT-base)", "run_id": "",
             "extra": {"versus": "BERT-base", "form": "PyTorch fp32", "architecture": False}}
            for m, (p, t) in PAPER_TABLE3.items()]


def write_table3(rows: list[dict], path=None, provenance: dict | None = None):
    """Table 3 as a DataFrame (COLUMNS; the paper rows first if `rows` has none), written to `path` as CSV
    (nothing written when path is None) and, with `provenance`, `<path>.json`: it and the rows as typed records
    (records.TableRow; a row's optional "role" and "extra" keys — e.g. {"versus": the row its speed-up is
    against, "form", "pairs"} — go there, not into the CSV)."""
    import pandas as pd

    if not any(r.get("source") == "paper" for r in rows):
        rows = paper_rows() + list(rows)
    bad = [k for r in rows for k in r if k not in (*COLUMNS, "role", "extra")]
    if bad:
        raise ValueError(f"unknown Table 3 column(s) {sorted(set(bad))}; columns are {COLUMNS}")
    df = pd.DataFrame([{c: r.get(c, "") for c in COLUMNS} for r in rows], columns=COLUMNS)
    if path is None:
        return df
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)
    if provenance is not None:
        typed = [row_from_cells({c: r.get(c, "") for c in COLUMNS}, r.get("role"), r.get("extra")) for r in rows]
        write_table_json(path.with_suffix(".json"), typed, COLUMNS, provenance)
    return df


@dataclass
class _Entry:
    """One timed row: a model (or ONNX session) and its inputs, with what the row says about it."""
    name: str
    role: str | None  # records.ROLE_LABELS key of our models ("teacher", "student"); None for the architecture rows
    run: object
    enc: list  # its encoded STS-B pairs
    params: int | None
    disk_mb: float
    device: str
    form: str  # "PyTorch fp32", "ONNX Runtime int8", ...
    vs: str | None  # name of the row this one's speed-up is against
    note: str = ""
    collect: bool = False
    change_output: str | None = None  # compare outputs with the fp32 reference row


@dataclass
class _Bench:
    """What every timed row shares: the pairs, the tokenizers (by model key), the device."""
    pairs: list
    tokenizers: dict
    device: str
    dev_label: str
    entries: list = field(default_factory=list)

    def add(self, name, model, output, tok_key, vs, note="", collect=False, change_output=None, params=None,
            role="student", form="PyTorch fp32"):
        """Add a PyTorch row (the model moved to the device, its inputs encoded); returns the model."""
        model = model.to(self.device).eval()
        enc = encode_pairs(self.tokenizers[tok_key], self.pairs, input_names(model, self.tokenizers[tok_key]))
        self.entries.append(_Entry(name, role, torch_runner(model, output), enc,
                                   params or count_parameters(model)["total"], disk_size_mb(model), self.dev_label,
                                   form, vs, note, collect, change_output))
        return model


def run_speed(teacher, student, data_dir=None, out_csv="results/table3_speed.csv", max_examples: int | None = None,
              repeats: int = 3, include_reference_archs: bool = True, deployed_forms: bool = True,
              progress: bool = True, stsb_model=None, device: str = "cpu", warmup: int = 10, overwrite: bool = False):
    """Measure Table 3 and write `out_csv` (+ .json provenance; out_csv=None writes nothing); returns the
    table (paper rows first) as a DataFrame with COLUMNS.

    teacher, student: model folders (e.g. runs/cpu/teacher/model, runs/cpu/student/model) or hub ids.
    stsb_model: optional folder of the student fine-tuned on STS-B (AutoModelForSequenceClassification,
    1 output); the deployed forms are then built from it and report their change in dev Pearson.
    device: "cpu" (the paper's protocol) or "cuda" (PyTorch rows only; deployed forms are CPU-only).
    overwrite: replace an `out_csv` (or its .json) that tinydistil did not write; checked before timing.
    """
    from ..hf import is_local_path, load_tokenizer

    if out_csv is not None:
        _refuse_foreign_table(Path(out_csv), overwrite)
    if repeats < 1 or (max_examples is not None and max_examples < 1):
        raise ValueError(f"repeats and max_examples must be >= 1 (got {repeats}, {max_examples})")
    t_start, info = time.time(), run_info()
    models = {"teacher": teacher, "student": student, **({"stsb": stsb_model} if stsb_model is not None else {})}
    # folders are checked up front; a hub id (e.g. bert-base-uncased on Colab) is loaded as is
    folders = {k: check_model_dir(m) if is_local_path(str(m)) else str(m) for k, m in models.items()}
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda requested but torch.cuda.is_available() is False; use device='cpu'")
    pairs, labels = stsb_dev(data_dir, max_examples)
    log = (lambda msg: print(f"[speed] {msg}", flush=True)) if progress else (lambda msg: None)
    threads, mach = torch.get_num_threads(), machine()
    log(f"{len(pairs)} STS-B dev pairs, batch size 1, {threads} threads, {mach['cpu']}")
    bench = _Bench(pairs, {k: load_tokenizer(str(p)) for k, p in folders.items()}, device,
                   "CPU" if device == "cpu" else mach.get("gpu", device))
    ref_name, form_key, form_out = _add_pytorch_rows(bench, folders, include_reference_archs, deployed_forms)
    not_run: list[dict] = []  # rows of forms that could not be measured here, with the reason
    with tempfile.TemporaryDirectory() as tmp:
        if deployed_forms and device != "cpu":
            log("deployed forms are CPU-only: not run on " + device)
        elif deployed_forms:
            not_run = _add_deployed_rows(bench, folders[form_key], form_key, form_out, Path(tmp), threads, log)
        timings: dict[str, Timing] = {}
        for e in bench.entries:
            log(f"timing {e.name} ({repeats} passes of {len(e.enc)})")
            timings[e.name] = time_pass(e.run, e.enc, repeats, warmup,
                                        device if "onnx" not in e.device.lower() else "cpu", collect=e.collect)
            log(f"  {timings[e.name].seconds:.3f} s")
    run_id = f"{info['git_sha'][:12]} {info['started']}"
    source = f"measured: {mach['cpu']}"
    rows = [_measured_row(e, timings, ref_name, labels, stsb_model is not None, threads, source, run_id)
            for e in bench.entries]
    prov = {**info, "wall_time_s": round(time.time() - t_start, 1), "examples": len(pairs), "repeats": repeats,
            "warmup": warmup, "threads": threads, "device": device, "max_seq_len": MAX_SEQ_LEN,
            "data": data_dir and str(data_dir), "teacher": str(folders["teacher"]), "student": str(folders["student"]),
            "stsb_model": stsb_model and str(folders["stsb"]),
            "accuracy_proxy": "STS-B Pearson change" if stsb_model else "output difference vs fp32 student"}
    return write_table3(paper_rows() + rows + not_run, out_csv, prov)


def _refuse_foreign_table(out_csv: Path, overwrite: bool) -> None:
    """ValueError before any timing when out_csv (or its .json) exists and tinydistil did not write it."""
    meta = out_csv.with_suffix(".json")
    refuse_foreign(meta, lambda p: json_with(p, "rows", "git_sha"), overwrite)
    refuse_foreign(out_csv, lambda p: json_with(meta, "rows", "git_sha") or torn(meta), overwrite)


def _add_pytorch_rows(bench: _Bench, folders: dict, include_reference_archs: bool, deployed_forms: bool):
    """The PyTorch fp32 rows (architectures, teacher, student, the STS-B-fine-tuned student); returns (the row the
    deployed forms' outputs are compared with, the model key they are built from, its output name)."""
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    if include_reference_archs:
        torch.manual_seed(0)
        arch_note = "architecture only: random weights from {}() (timing does not depend on weight values); " \
                    "teacher's tokenizer"
        bench.add("BERT-base architecture (PyTorch fp32)", BertModel(BertConfig()), "last_hidden_state", "teacher",
                  None, arch_note.format("BertConfig"), role=None)
        bench.add("DistilBERT architecture (PyTorch fp32)", DistilBertModel(DistilBertConfig()), "last_hidden_state",
                  "teacher", "BERT-base architecture (PyTorch fp32)", arch_note.format("DistilBertConfig"), role=None)
    teacher_m, t_out = load_for_inference(folders["teacher"])
    bench.add("teacher (PyTorch fp32)", teacher_m, t_out, "teacher", None, str(folders["teacher"]), role="teacher")
    student_m, s_out = load_for_inference(folders["student"])
    bench.add("student (PyTorch fp32)", student_m, s_out, "student", "teacher (PyTorch fp32)",
              str(folders["student"]), collect=deployed_forms and "stsb" not in folders)
    if "stsb" not in folders:
        return "student (PyTorch fp32)", "student", s_out
    stsb_m, form_out = load_for_inference(folders["stsb"])
    if form_out != "logits" or stsb_m.config.num_labels != 1:
        raise ValueError(f"{folders['stsb']} is not an STS-B regression model (a *ForSequenceClassification "
                         "folder with num_labels=1)")
    ref_name = "student fine-tuned on STS-B (PyTorch fp32)"
    bench.add(ref_name, stsb_m, "logits", "stsb", "teacher (PyTorch fp32)", str(folders["stsb"]),
              collect=deployed_forms, change_output="logits")
    return ref_name, "stsb", "logits"


def _add_deployed_rows(bench: _Bench, folder, form_key: str, form_out: str, tmp: Path, threads: int, log) -> list:
    """The student's deployed forms (PyTorch int8 dynamic; ONNX Runtime fp32 and int8 when installed); returns the
    "not run" rows of the forms that cannot be measured here."""
    base, _ = load_for_inference(folder)
    params = count_parameters(base)["total"]  # packed int8 weights are not nn.Parameters: count before
    bench.add("student (PyTorch int8 dynamic)", quantize_int8(base), form_out, form_key, "teacher (PyTorch fp32)",
              "torch.ao.quantization.quantize_dynamic on nn.Linear; disk = torch.save(state_dict)",
              collect=True, change_output=form_out, params=params, form="PyTorch int8 dynamic")
    names = input_names(base, bench.tokenizers[form_key])
    missing_onnx = missing_modules("onnx", "onnxruntime")
    if missing_onnx:
        log(f"ONNX Runtime forms not run: pip install {' '.join(missing_onnx)}")
        return [{"Model": "student (ONNX Runtime fp32 / int8)", "source": "measured",
                 "note": f"not run: pip install {' '.join(missing_onnx)}"}]
    fp32 = export_model(base, tmp / "model.onnx", names, form_out)
    int8 = quantize_onnx(fp32, tmp / "model_int8.onnx")
    enc = encode_pairs(bench.tokenizers[form_key], bench.pairs, names)
    for label, path, note in (("fp32", fp32, "torch.onnx.export (TorchScript), opset 17"),
                              ("int8", int8, "onnxruntime.quantization.quantize_dynamic (QInt8 weights)")):
        bench.entries.append(_Entry(f"student (ONNX Runtime {label})", "student", onnx_runner(onnx_session(path, threads)),
                                    enc, params, path.stat().st_size / 1e6, "CPU (onnxruntime)",
                                    f"ONNX Runtime {label}", "teacher (PyTorch fp32)", note, True, form_out))
    return []


def _measured_row(e: _Entry, timings: dict, ref_name: str, labels, regression: bool, threads: int, source: str,
                  run_id: str) -> dict:
    """One measured Table 3 row: its time, speed-up, output change vs the fp32 reference row, and typed facts."""
    t = timings[e.name]
    change = ""
    if e.change_output is not None and timings[ref_name].outputs is not None:
        c = output_change(timings[ref_name].outputs, t.outputs, labels, regression=regression)
        change = describe_change(c, e.change_output)
        if e.name == ref_name:
            change = f"STS-B Pearson {c['pearson_fp32']:.2f} (reference)" if "pearson_fp32" in c else ""
    passes = ", ".join(f"{s:.3f}" for s in t.repeats)
    return {"Model": e.name, "Params (M)": _sig(e.params / 1e6), "Disk (MB)": _sig(e.disk_mb),
            "Device": e.device, "Threads": threads, "Inference time (s)": _sig(t.seconds),
            "Speed-up vs teacher": round(timings[e.vs].seconds / t.seconds, 2) if e.vs else 1.0,
            "Output change vs fp32": change, "source": source,
            "note": "; ".join(x for x in (e.note, f"{len(e.enc)} STS-B dev pairs, passes {passes} s") if x),
            "run_id": run_id, "role": e.role,
            # typed facts for the report: what the speed-up is against, the form, the pairs timed
            "extra": {"versus": e.vs, "architecture": e.role is None, "pairs": len(e.enc), "form": e.form}}


def missing_modules(*names: str) -> list[str]:
    """The optional packages among `names` that are not installed (pip names)."""
    import importlib.util

    return [n for n in names if importlib.util.find_spec(n) is None]


def sweep(model_dir, batch_sizes=(1, 8, 32), seq_lens=(32, 128), repeats: int = 3, warmup: int = 2,
          device: str = "cpu"):
    """Median seconds per forward pass of `model_dir` for each (batch size, sequence length) on random
    token ids (all real tokens); a DataFrame with batch_size, seq_len, seconds, sequences_per_s."""
    import pandas as pd

    model, output = load_for_inference(model_dir)
    model = model.to(device)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for bs in batch_sizes:
        for L in seq_lens:
            ids = torch.randint(0, model.config.vocab_size, (bs, L), generator=gen)
            enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            t = time_pass(torch_runner(model, output), [enc], repeats, warmup, device)
            rows.append({"batch_size": bs, "seq_len": L, "seconds": t.seconds, "sequences_per_s": bs / t.seconds})
    return pd.DataFrame(rows)
