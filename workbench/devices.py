"""Device choice: ``"auto"`` picks cuda, then mps, then cpu; an absent device is an error."""

from __future__ import annotations

import torch


class DeviceUnavailableError(RuntimeError):
    """An explicitly requested device is not present on this machine."""


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
