"""Precision, compilation, threads and memory: the knobs of inference speed.

- Precisions: ``fp32``; ``bf16`` autocast (CPU and CUDA); ``fp16`` autocast (CUDA/MPS
  only); ``int8`` dynamic quantization of ``nn.Linear`` layers (CPU only, through
  ``torch.ao.quantization.quantize_dynamic``). An unknown precision, or one the device
  cannot run, is a :class:`PrecisionError` -- never a silent fallback.
- ``torch.compile`` is optional; if compiling fails the module runs eagerly and the
  returned notes say why (the benchmark records them).
- :class:`PeakMemory` measures peak memory of a block: CUDA's allocator peak, or the
  process RSS sampled every millisecond on CPU (so it includes allocator slack).
- :func:`auto_batch_size` grows the batch until out-of-memory or a memory budget, and
  backs off instead of crashing.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from workbench.devices import resolve_device

PRECISIONS = ("fp32", "bf16", "fp16", "int8")


class PrecisionError(ValueError):
    """The precision is unknown or unsupported on the chosen device."""


def cpu_has_native_bf16() -> bool:
    """True if this CPU advertises AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`PrecisionError` if ``precision`` cannot run on ``device``."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    kind = device.type
    if precision == "fp16" and kind == "cpu":
        raise PrecisionError("fp16 autocast needs a CUDA or MPS device; on CPU use 'bf16' or 'int8'")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"bf16 is not supported by {torch.cuda.get_device_name(device)}; use 'fp16'")
    if precision == "bf16" and kind == "mps":
        raise PrecisionError("bf16 autocast is not supported on MPS here; use 'fp16'")
    if precision == "int8" and kind != "cpu":
        raise PrecisionError("int8 dynamic quantization runs on CPU only; on GPUs use 'fp16' or 'bf16'")


@dataclass
class Prepared:
    """A module ready to run at one precision on one device."""

    module: nn.Module
    device: torch.device
    precision: str
    compiled: bool
    notes: list[str] = field(default_factory=list)

    def autocast(self):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()


def prepare(module: nn.Module, *, precision: str = "fp32", device: str | torch.device = "cpu", compile: bool = False) -> Prepared:
    """A copy of ``module`` in eval mode, on ``device``, quantized or compiled as asked."""
    dev = resolve_device(device)
    check_precision(precision, dev)
    notes: list[str] = []
    mod = copy.deepcopy(module).eval().to(dev)
    if precision == "int8":
        with warnings.catch_warnings():  # quantize_dynamic announces its successor (torchao)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
            mod = torch.ao.quantization.quantize_dynamic(mod, {nn.Linear}, dtype=torch.qint8)
        if not any("quantized" in type(m).__module__ for m in mod.modules()):
            notes.append("int8: the module has no nn.Linear layer to quantize; it ran in fp32")
    compiled = False
    if compile:
        try:
            mod = torch.compile(mod)
            compiled = True
        except Exception as err:  # noqa: BLE001 - any backend failure means: run eagerly
            notes.append(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); ran eagerly")
    return Prepared(mod, dev, precision, compiled, notes)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class PeakMemory:
    """``with PeakMemory(device) as m: ...`` then ``m.peak_mb``: the block's peak above its start.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: process RSS sampled every ~1 ms.
    """

    def __init__(self, device: str | torch.device = "cpu", *, interval_s: float = 0.001):
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.interval_s = interval_s
        self.peak_mb = 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            self._proc = psutil.Process()
            self._base = self._proc.memory_info().rss
            self._max = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._proc.memory_info().rss)
            time.sleep(self.interval_s)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._max, self._proc.memory_info().rss)
        self.peak_mb = max(0.0, (peak - self._base) / 2**20)


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA/MPS out-of-memory errors, and MemoryError on CPU."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


@dataclass
class BatchSearch:
    """Outcome of :func:`auto_batch_size`: the chosen size and every size tried."""

    batch_size: int
    tried: list[dict] = field(default_factory=list)


def auto_batch_size(
    run: Callable[[int], None],
    *,
    device: str | torch.device = "cpu",
    start: int = 1,
    limit: int = 4096,
    memory_budget_mb: float | None = None,
) -> BatchSearch:
    """Largest power-of-two batch (from ``start`` up to ``limit``) that ``run(batch)`` handles
    without running out of memory or exceeding ``memory_budget_mb``. Never raises for OOM:
    it backs off to the last size that fitted. Raises ``ValueError`` if even ``start`` fails.
    """
    if start < 1 or limit < start:
        raise ValueError(f"need 1 <= start <= limit, got start={start}, limit={limit}")
    dev = resolve_device(device)
    tried: list[dict] = []
    best = None
    size = start
    while size <= limit:
        try:
            with PeakMemory(dev) as mem:
                run(size)
        except Exception as err:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if not is_out_of_memory(err):
                raise
            tried.append({"batch_size": size, "status": "out of memory", "peak_mb": None})
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            break
        over = memory_budget_mb is not None and mem.peak_mb > memory_budget_mb
        tried.append({"batch_size": size, "status": "over budget" if over else "ok", "peak_mb": round(mem.peak_mb, 1)})
        if over:
            break
        best = size
        size *= 2
    if best is None:
        raise ValueError(
            f"batch size {start} already {tried[-1]['status']} on {dev}; "
            "lower the batch size, the memory budget's demands, or the model size"
        )
    return BatchSearch(best, tried)
