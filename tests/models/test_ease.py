"""EASE: the torch closed form equals Steck's formula and each column is the ridge
regression of that item on the others with a zero diagonal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from workbench.models import EASE, ease


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


def test_gram_matrix_in_blocks_equals_the_sparse_product(monkeypatch):
    x = sp.random(40, 13, density=0.3, random_state=2, format="csr", dtype=np.float32)
    x.data[:] = 1.0
    monkeypatch.setattr(ease, "GRAM_BLOCK", 5)  # three blocks, the last one short
    got = ease.gram_matrix(x, torch.device("cpu"))
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), (x.T @ x).toarray())


def test_a_catalogue_too_large_for_memory_is_refused_before_allocating():
    """200,000 items would need 320 GB: refused at once, naming what it would need."""
    n = 200_000
    df = pd.DataFrame({"user_id": np.arange(n) // 4, "item_id": np.arange(n)})
    with pytest.raises(ease.EASEMemoryError, match=r"EASE on 200,000 items needs about 320\.0 GB on cpu") as err:
        EASE(device="cpu").fit(df)
    assert "available; refused before allocating" in str(err.value)
    assert ease.fit_memory_bytes(20_000) == 3_200_000_000


def test_the_memory_check_reads_what_is_available(monkeypatch):
    monkeypatch.setattr(ease, "available_bytes", lambda device: 10_000)
    with pytest.raises(ease.EASEMemoryError, match=r"EASE on 40 items needs about 0\.0 GB"):
        ease.check_fits(40, torch.device("cpu"))
    ease.check_fits(35, torch.device("cpu"))  # 9,800 bytes: fits
