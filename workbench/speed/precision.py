"""Precision and compilation: preparing a module to run fast on one device.

- Precisions: ``fp32``; ``bf16`` autocast (CPU and CUDA); ``fp16`` autocast (CUDA/MPS
  only); ``int8`` dynamic quantization of ``nn.Linear`` layers (CPU only, through
  ``torch.ao.quantization.quantize_dynamic``). An unknown precision, or one the device
  cannot run, is a :class:`PrecisionError` -- never a silent fallback. The autocast
  itself is :func:`workbench.devices.autocast`, the one the training loop uses too.
- ``torch.compile`` is optional; if compiling fails the module runs eagerly and the
  returned notes say why (the benchmark records them).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from workbench.devices import autocast, resolve_device

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
        """The autocast context this module runs under (none for fp32 and int8)."""
        return autocast(self.device, self.precision)


def prepare(
    module: nn.Module, *, precision: str = "fp32", device: str | torch.device = "cpu", compile: bool = False
) -> Prepared:
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
        except Exception as err:
            notes.append(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); ran eagerly")
    return Prepared(mod, dev, precision, compiled, notes)
