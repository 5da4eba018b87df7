"""The hardware layer: which device, at which precision, and what it costs in memory.

- :func:`resolve_device` -- ``"auto"`` picks cuda, then mps, then cpu; a device asked for
  by name must be present (no silent fallback).
- :func:`autocast` -- the one mixed-precision context of the workbench, for training,
  validation and inference alike.
- :func:`synchronize` -- wait for queued GPU work, so that wall-clock timings are real.
- :func:`is_out_of_memory` and :func:`too_large` -- recognise an out-of-memory error and
  turn it into a :class:`BatchTooLargeError` that names a batch size to try.
- :class:`PeakMemory` (the peak of one block) and :func:`peak_memory_mb` (the high-water
  mark so far).

This module imports nothing from the workbench, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time

import psutil
import torch

#: what :func:`autocast` accepts; ``int8`` is a quantized module, run without autocast
AUTOCAST_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


class DeviceUnavailableError(RuntimeError):
    """An explicitly requested device is not present on this machine."""


class BatchTooLargeError(MemoryError):
    """A batch did not fit in memory; the message names a batch size to try."""


def available_devices() -> list[str]:
    """Devices present here, best first (always ends with ``"cpu"``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> the best present device; anything else must be present (no fallback)."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device(available_devices()[0])
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; choose 'auto', 'cpu', 'cuda' or 'mps'")
    if kind not in available_devices():
        raise DeviceUnavailableError(
            f"device {device!r} was requested but is not available here "
            f"(available: {available_devices()}); pass device='auto' to pick the best present"
        )
    return torch.device(device)


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device``.

    ``"auto"``: bf16 on CUDA GPUs that support it, float32 elsewhere (bf16 is slower than
    float32 on most CPUs); ``"bf16"``/``"fp16"``: autocast to that type on any device;
    ``"fp32"`` and ``"int8"`` (a quantized module): no autocast.
    """
    if precision not in AUTOCAST_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {list(AUTOCAST_PRECISIONS)}")
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16"):
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and the CPU allocator's failure."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def too_large(err: BaseException, batch_size: int | None, what: str) -> BatchTooLargeError:
    """The :class:`BatchTooLargeError` to raise from ``err`` (an out-of-memory error)."""
    if batch_size is None:
        return BatchTooLargeError(f"out of memory while {what}; try a smaller batch_size")
    return BatchTooLargeError(
        f"out of memory while {what} with batch_size={batch_size}; "
        f"try batch_size={max(1, batch_size // 2)} (or a shorter max_length)"
    )


def peak_memory_mb(device: torch.device) -> float:
    """The high-water mark so far: the CUDA allocator's peak on a GPU, the process's peak
    resident memory (``ru_maxrss``) otherwise. Free to call, unlike :class:`PeakMemory`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class PeakMemory:
    """``with PeakMemory(device) as m: ...`` then ``m.peak_mb``: the block's peak above its start.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: process RSS sampled every ~1 ms (so it
    includes allocator slack, and a sampling thread runs while the block does).
    """

    def __init__(self, device: str | torch.device = "cpu", *, interval_s: float = 0.001):
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.interval_s = interval_s
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
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
