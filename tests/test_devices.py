"""The hardware layer: device choice, the one autocast, synchronisation, out-of-memory
recognition and the batch-size hint, and peak memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.devices import (
    BatchTooLargeError,
    DeviceUnavailableError,
    PeakMemory,
    autocast,
    available_devices,
    is_out_of_memory,
    peak_memory_mb,
    resolve_device,
    synchronize,
    too_large,
)

HAS_CUDA = torch.cuda.is_available()
CPU = torch.device("cpu")


def test_auto_device_and_absent_device_is_an_error():
    assert resolve_device("auto").type == available_devices()[0]
    assert available_devices()[-1] == "cpu"
    if not HAS_CUDA:
        with pytest.raises(DeviceUnavailableError, match="not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_resolve_device_takes_names_and_devices():
    assert resolve_device("cpu") == CPU == resolve_device(CPU)


def _matmul_dtype(precision: str) -> torch.dtype:
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(CPU, precision):
        return (a @ b).dtype


@pytest.mark.parametrize("precision", ["auto", "fp32", "int8"])
def test_autocast_is_a_no_op_on_cpu_for_auto_fp32_and_int8(precision):
    assert _matmul_dtype(precision) == torch.float32


def test_autocast_bf16_on_cpu_runs_matmuls_in_bfloat16():
    assert _matmul_dtype("bf16") == torch.bfloat16
    assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32  # only inside the context


@pytest.mark.parametrize("precision", ["fp8", "float16", "", "BF16"])
def test_autocast_rejects_an_unknown_precision(precision):
    with pytest.raises(ValueError, match="unknown precision"):
        autocast(CPU, precision)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_autocast_on_cuda():
    a, b = torch.randn(4, 8, device="cuda"), torch.randn(8, 3, device="cuda")
    cuda = torch.device("cuda")
    expected_auto = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    for precision, dtype in (("auto", expected_auto), ("fp32", torch.float32), ("fp16", torch.float16)):
        with autocast(cuda, precision):
            assert (a @ b).dtype == dtype, precision


def test_synchronize_is_a_no_op_on_cpu():
    assert synchronize(CPU) is None


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_synchronize_waits_for_cuda_work():
    x = torch.randn(512, 512, device="cuda")
    y = x @ x
    synchronize(torch.device("cuda"))
    assert torch.cuda.current_stream().query() and y.shape == (512, 512)


@pytest.mark.parametrize(
    "err",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
        MemoryError(),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
        BatchTooLargeError("out of memory while scoring"),
    ],
)
def test_out_of_memory_errors_are_recognised(err):
    assert is_out_of_memory(err)


@pytest.mark.parametrize("err", [RuntimeError("shape mismatch"), ValueError("out of memory"), KeyError("memory")])
def test_other_errors_are_not_out_of_memory(err):
    assert not is_out_of_memory(err)


def test_too_large_names_half_the_batch_size():
    err = too_large(RuntimeError("CUDA out of memory"), 64, "encoding texts")
    assert isinstance(err, BatchTooLargeError) and isinstance(err, MemoryError)
    assert "batch_size=64" in str(err) and "try batch_size=32" in str(err) and "encoding texts" in str(err)
    assert "try batch_size=1" in str(too_large(MemoryError(), 1, "scoring"))  # never below one
    assert "try batch_size=" not in str(too_large(MemoryError(), None, "scoring"))
    assert "smaller batch_size" in str(too_large(MemoryError(), None, "scoring"))
    with pytest.raises(MemoryError):
        raise too_large(MemoryError(), 8, "training")


def test_peak_memory_sees_a_large_cpu_allocation():
    with PeakMemory("cpu") as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        block += 1
    assert mem.peak_mb > 32


def test_peak_memory_mb_is_the_process_high_water_mark_on_cpu():
    before = peak_memory_mb(CPU)
    block = np.ones(16 * 2**20 // 8)  # 16 MB, touched
    block += 1
    assert 0 < before <= peak_memory_mb(CPU)  # a high-water mark never goes down
