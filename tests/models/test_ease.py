"""EASE: the torch closed form equals Steck's formula and each column is the ridge
regression of that item on the others with a zero diagonal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.models import EASE


def test_weights_equal_the_closed_form():
    rng = np.random.default_rng(0)
    x = (rng.random((50, 12)) < 0.3).astype(np.float64)
    x[:, x.sum(0) == 0] = 1.0
    users, items = np.nonzero(x)
    df = pd.DataFrame({"user_id": users, "item_id": items, "rating": 1.0})
    model = EASE(reg=3.0, device="cpu").fit(df)
    p = np.linalg.inv(x.T @ x + 3.0 * np.eye(12))
    expected = -p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights_.numpy(), expected, rtol=1e-3, atol=1e-5)
    # column j minimises |x_j - X b|^2 + reg |b|^2 subject to b_j = 0
    j = 4
    others = np.delete(np.arange(12), j)
    ridge = np.linalg.solve(x[:, others].T @ x[:, others] + 3.0 * np.eye(11), x[:, others].T @ x[:, j])
    np.testing.assert_allclose(model.weights_.numpy()[others, j], ridge, rtol=1e-3, atol=1e-5)
