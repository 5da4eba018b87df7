"""Precision checks, prepared modules, peak memory and the OOM-safe batch-size search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workbench import acceleration as acc
from workbench.devices import DeviceUnavailableError, available_devices, resolve_device

HAS_CUDA = torch.cuda.is_available()


def test_auto_device_and_absent_device_is_an_error():
    assert resolve_device("auto").type == available_devices()[0]
    assert available_devices()[-1] == "cpu"
    if not HAS_CUDA:
        with pytest.raises(DeviceUnavailableError, match="not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.parametrize("precision, match", [("fp8", "unknown precision"), ("fp16", "needs a CUDA")])
def test_unsupported_precisions_on_cpu_are_clear_errors(precision, match):
    with pytest.raises(acc.PrecisionError, match=match):
        acc.prepare(nn.Linear(4, 4), precision=precision, device="cpu")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))


def test_int8_quantizes_linear_layers_and_stays_close():
    model, x = _mlp(), torch.randn(8, 32)
    prep = acc.prepare(model, precision="int8")
    assert any("quantized" in type(m).__module__ for m in prep.module.modules())
    with torch.inference_mode():
        ref, out = model(x), prep.module(x)
    assert torch.allclose(ref, out, atol=0.05) and not torch.equal(ref, out)
    assert acc.prepare(nn.Sequential(nn.ReLU()), precision="int8").notes  # nothing to quantize: said so


def test_bf16_autocast_runs_in_bfloat16_on_cpu():
    prep = acc.prepare(_mlp(), precision="bf16")
    with torch.inference_mode(), prep.autocast():
        out = prep.module(torch.randn(4, 32))
    assert out.dtype == torch.bfloat16


def test_prepare_copies_and_leaves_the_original_alone():
    model = _mlp().train()
    prep = acc.prepare(model, precision="int8")
    assert model.training and prep.module is not model
    assert isinstance(model[0], nn.Linear)


def test_compile_failure_falls_back_with_a_note(monkeypatch):
    def broken(module, *a, **k):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    prep = acc.prepare(_mlp(), compile=True)
    assert not prep.compiled and "torch.compile failed" in prep.notes[0] and "no C++ compiler" in prep.notes[0]


def test_peak_memory_sees_a_large_cpu_allocation():
    with acc.PeakMemory("cpu") as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        block += 1
    assert mem.peak_mb > 32


def test_auto_batch_size_backs_off_on_out_of_memory_instead_of_crashing():
    calls = []

    def run(batch: int) -> None:
        calls.append(batch)
        if batch > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    search = acc.auto_batch_size(run, start=1, limit=4096)
    assert search.batch_size == 64
    assert search.tried[-1] == {"batch_size": 128, "status": "out of memory", "peak_mb": None}
    assert calls == [1, 2, 4, 8, 16, 32, 64, 128]


def test_auto_batch_size_respects_a_memory_budget():
    held = []

    def run(batch: int) -> None:
        held.append(np.ones(batch * 2**20 // 8))  # batch MB, kept alive
        held[-1] += 1
        held.clear()

    search = acc.auto_batch_size(run, start=8, limit=1024, memory_budget_mb=100)
    assert search.batch_size < 128 and search.tried[-1]["status"] == "over budget"


def test_auto_batch_size_reraises_other_errors_and_rejects_bad_bounds():
    def run(batch: int) -> None:
        raise KeyError("a bug, not memory")

    with pytest.raises(KeyError):
        acc.auto_batch_size(run)
    with pytest.raises(ValueError):
        acc.auto_batch_size(lambda b: None, start=0)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_fp16_and_bf16_match_fp32():
    model, x = _mlp(), torch.randn(64, 32)
    ref = model(x)
    for precision in ("fp16", "bf16"):
        prep = acc.prepare(model, precision=precision, device="cuda")
        with torch.inference_mode(), prep.autocast():
            out = prep.module(x.cuda())
        assert torch.allclose(out.float().cpu(), ref, atol=0.05)
    with pytest.raises(acc.PrecisionError, match="CPU only"):
        acc.prepare(model, precision="int8", device="cuda")
