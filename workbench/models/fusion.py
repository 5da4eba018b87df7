"""Score fusion, shared by :class:`~workbench.models.blend.Blend` and
:class:`~workbench.models.hybrid.Hybrid`: per-user z-scores, so that scales as different
as EASE's and a cosine can be added, and the grid of weights tried on validation."""

from __future__ import annotations

import itertools

import numpy as np
import torch


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """(B, n_items) -> per-row z-scores (zero mean, unit variance); a constant row becomes all zeros."""
    mean = scores.mean(1, keepdim=True)
    std = scores.std(1, keepdim=True)
    return (scores - mean) / torch.where(std > 0, std, torch.ones_like(std))


def simplex_grid(n: int, step: float) -> np.ndarray:
    """(n_points, n) weight vectors: non-negative multiples of ``step`` summing to 1, the
    first weight rising slowest (for ``n=2``: (0, 1), (step, 1 - step), ..., (1, 0))."""
    ticks = round(1 / step)
    if not np.isclose(ticks * step, 1.0):
        raise ValueError(f"step must divide 1 evenly, got {step}")
    points = [c for c in itertools.product(range(ticks + 1), repeat=n) if sum(c) == ticks]
    return np.asarray(points, dtype=np.float64) / ticks
