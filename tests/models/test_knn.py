"""ItemKNN: sparse row pruning and blocked cosine similarity against dense answers."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from workbench.models import knn
from workbench.models.knn import cosine_neighbours, prune_rows


def test_prune_rows_keeps_the_k_largest_per_row():
    m = sp.csr_matrix(np.array([[0.1, 0.5, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0], [0.9, 0.2, 0.4, 0.0]]))
    pruned = prune_rows(m, 2).toarray()
    np.testing.assert_array_equal(pruned, [[0.0, 0.5, 0.0, 0.3], [0, 0, 0, 0], [0.9, 0.0, 0.4, 0.0]])
    assert sp.issparse(prune_rows(m, 2)) and prune_rows(m, 10).nnz == m.nnz


def dense_topk_cosine(x: np.ndarray, k: int) -> np.ndarray:
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(sim, 0.0)
    out = np.zeros_like(sim)
    for i, row in enumerate(sim):
        top = np.argsort(-row, kind="stable")[:k]
        out[i, top] = row[top]
    return out


def test_blocked_cosine_neighbours_match_dense(monkeypatch):
    rng = np.random.default_rng(0)
    x = (rng.random((40, 30)) < 0.2).astype(np.float32)
    x[0] = 1.0  # every item has at least one interaction
    monkeypatch.setattr(knn, "SIMILARITY_BLOCK", 7)  # several blocks, a ragged last one
    got = cosine_neighbours(sp.csr_matrix(x), k=5)
    assert got.shape == (30, 30) and (np.diff(got.indptr) <= 5).all()
    expected = dense_topk_cosine(x, 5)
    # ties may pick different columns; the kept values per row must agree
    np.testing.assert_allclose(np.sort(got.toarray(), 1), np.sort(expected, 1), rtol=1e-5)
    assert got.diagonal().sum() == 0
