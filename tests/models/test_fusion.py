"""Score fusion shared by Blend and Hybrid: per-user z-scores and the weight simplex."""

from __future__ import annotations

import pytest
import torch

from workbench.models.fusion import simplex_grid, standardise


def test_standardise_rows():
    z = standardise(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    torch.testing.assert_close(z[0], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(z[1], torch.zeros(3))
    assert torch.equal(z[1], torch.zeros(3))  # a constant row is exactly zero, not NaN


def test_simplex_grid():
    grid = simplex_grid(3, 0.5)
    assert grid.tolist() == [[0, 0, 1], [0, 0.5, 0.5], [0, 1, 0], [0.5, 0, 0.5], [0.5, 0.5, 0], [1, 0, 0]]
    assert len(simplex_grid(2, 0.1)) == 11
    with pytest.raises(ValueError, match="divide 1"):
        simplex_grid(2, 0.3)
