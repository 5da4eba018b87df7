"""Precision checks and prepared modules: int8 quantization, bf16 autocast, compile fallback."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.speed.precision import PRECISIONS, PrecisionError, check_precision, cpu_has_native_bf16, prepare

HAS_CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("precision, match", [("fp8", "unknown precision"), ("fp16", "needs a CUDA")])
def test_unsupported_precisions_on_cpu_are_clear_errors(precision, match):
    with pytest.raises(PrecisionError, match=match):
        prepare(nn.Linear(4, 4), precision=precision, device="cpu")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))


def test_int8_quantizes_linear_layers_and_stays_close():
    model, x = _mlp(), torch.randn(8, 32)
    prep = prepare(model, precision="int8")
    assert any("quantized" in type(m).__module__ for m in prep.module.modules())
    with torch.inference_mode():
        ref, out = model(x), prep.module(x)
    assert torch.allclose(ref, out, atol=0.05) and not torch.equal(ref, out)
    assert prepare(nn.Sequential(nn.ReLU()), precision="int8").notes  # nothing to quantize: said so


def test_bf16_autocast_runs_in_bfloat16_on_cpu():
    prep = prepare(_mlp(), precision="bf16")
    with torch.inference_mode(), prep.autocast():
        out = prep.module(torch.randn(4, 32))
    assert out.dtype == torch.bfloat16


def test_fp32_and_int8_run_without_autocast():
    for precision in ("fp32", "int8"):
        prep = prepare(_mlp(), precision=precision)
        with torch.inference_mode(), prep.autocast():
            out = prep.module(torch.randn(4, 32))
        assert out.dtype == torch.float32, precision


def test_check_precision_names_every_precision_and_what_this_cpu_has():
    assert PRECISIONS == ("fp32", "bf16", "fp16", "int8")
    for precision in ("fp32", "bf16", "int8"):
        check_precision(precision, torch.device("cpu"))  # all run on a CPU
    with pytest.raises(PrecisionError, match="unknown precision"):
        check_precision("fp64", torch.device("cpu"))
    assert isinstance(cpu_has_native_bf16(), bool)


def test_prepare_copies_and_leaves_the_original_alone():
    model = _mlp().train()
    prep = prepare(model, precision="int8")
    assert model.training and prep.module is not model
    assert isinstance(model[0], nn.Linear)


def test_compile_failure_falls_back_with_a_note(monkeypatch):
    def broken(module, *a, **k):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    prep = prepare(_mlp(), compile=True)
    assert not prep.compiled and "torch.compile failed" in prep.notes[0] and "no C++ compiler" in prep.notes[0]


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_fp16_and_bf16_match_fp32():
    model, x = _mlp(), torch.randn(64, 32)
    ref = model(x)
    for precision in ("fp16", "bf16"):
        prep = prepare(model, precision=precision, device="cuda")
        with torch.inference_mode(), prep.autocast():
            out = prep.module(x.cuda())
        assert torch.allclose(out.float().cpu(), ref, atol=0.05)
    with pytest.raises(PrecisionError, match="CPU only"):
        prepare(model, precision="int8", device="cuda")
