"""Device and precision: bf16 autocast on CPU only where it is native, fp32 master weights and loss terms."""
import pytest
import torch

import tinydistil.runtime as R
from tinydistil.presets import stage_config
from tinydistil.runtime import resolve_runtime
from tinydistil.train import Trainer


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(R, "cpu_has_native_bf16", lambda: native)
    assert resolve_runtime("cpu", "auto") == (torch.device("cpu"), expected)
    assert resolve_runtime("cpu", "fp32")[1] == "fp32"  # --precision fp32 forces the old path
    assert resolve_runtime("cpu", "bf16")[1] == "bf16"  # asked for explicitly: allowed (emulated if not native)


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    monkeypatch.delenv("TINYDISTIL_CPU_BF16")  # conftest's override, tested below
    R.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(R, "cpu_flags", lambda: {"avx2", "avx512f", "amx_bf16", "amx_tile"})
    assert R.cpu_has_native_bf16()
    R.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(R, "cpu_flags", lambda: {"avx2", "avx512f", "avx512bw"})  # bf16 emulated only
    monkeypatch.setattr(R.platform, "system", lambda: "Linux")
    assert not R.cpu_has_native_bf16()
    R.cpu_has_native_bf16.cache_clear()
    monkeypatch.setenv("TINYDISTIL_CPU_BF16", "1")  # the override wins over the flags, both ways
    assert R.cpu_has_native_bf16()
    R.cpu_has_native_bf16.cache_clear()
    monkeypatch.setattr(R, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setenv("TINYDISTIL_CPU_BF16", "0")
    assert not R.cpu_has_native_bf16()
    R.cpu_has_native_bf16.cache_clear()


def test_fp16_and_missing_cuda_are_clear_errors():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_runtime("cpu", "fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_runtime("cuda", "auto")


def test_bf16_distillation_step_matches_fp32_with_fp32_weights_and_terms(tmp_path, smoke_teacher):
    """The same masked batch through the bf16-autocast and the fp32 loss: terms are float32 and agree to 2%."""
    terms = {}
    for prec in ("fp32", "bf16"):
        cfg = stage_config("smoke", "distill", teacher=str(smoke_teacher), output_dir=str(tmp_path / prec),
                           precision=prec)
        t = Trainer(cfg, progress=False).setup()
        batch = t.batches.get(t.batches.order(0)[0])
        with R.autocast(t.device, t.precision):
            out = t.loss_terms(batch)
        out["loss"].backward()
        assert all(p.dtype == torch.float32 for p in t.model.parameters())
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in t.model.parameters())
        terms[prec] = {k: float(v.detach()) for k, v in out.items()}
        assert all(v.dtype == torch.float32 for v in out.values())
    for k, v in terms["fp32"].items():
        assert terms["bf16"][k] == pytest.approx(v, rel=0.02, abs=1e-3), k


def test_machine_record_names_the_speed_flags(monkeypatch):
    """Every run's machine record says which speed-deciding flags the CPU has and whether bf16 is native."""
    from tinydistil import rundir

    monkeypatch.setattr(R, "cpu_flags", lambda: {"avx2", "fma", "avx512f", "avx512_bf16", "sse4_2"})
    monkeypatch.setenv("TINYDISTIL_CPU_BF16", "1")
    R.cpu_has_native_bf16.cache_clear()
    m = rundir.machine()
    R.cpu_has_native_bf16.cache_clear()
    assert m["cpu_flags"] == "avx2 fma avx512f avx512_bf16"  # in SPEED_FLAGS order, sse4_2 not among them
    assert m["native_bf16"] is True


def test_host_speed_says_why_bf16_was_not_measured(monkeypatch):
    from tinydistil.runtime import host_speed

    monkeypatch.setenv("TINYDISTIL_CPU_BF16", "0")  # turned off here, whatever the CPU has
    rates = host_speed(seconds=0.05)["matmul_gflops"]
    assert rates["fp32"] > 0 and rates["bf16"] == "not measured: bf16 turned off (TINYDISTIL_CPU_BF16=0)"
