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


def test_top_k_mask_breaks_ties_by_lower_column_like_prune_rows():
    sim = np.array([[0.5, 0.2, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [0.1, 0.3, 0.3, 0.2, 0.3]], np.float32)
    got = knn.top_k_mask(sim, 2)
    expected = prune_rows(sp.csr_matrix(sim), 2).toarray() != 0
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[0], [True, False, True, False, False])  # three tied at 0.5: the first two
    assert not got[1].any()  # zeros are never neighbours
    np.testing.assert_array_equal(knn.top_k_mask(sim, 9), sim > 0)


def test_blocks_bounded_by_bytes_give_the_same_neighbours(monkeypatch):
    rng = np.random.default_rng(3)
    x = sp.csr_matrix((rng.random((60, 45)) < 0.15).astype(np.float32))
    whole = cosine_neighbours(x, k=4)
    monkeypatch.setattr(knn, "SIMILARITY_BLOCK_BYTES", 4 * 45 * 4)  # four items per block
    blocked = cosine_neighbours(x, k=4)
    assert (blocked != whole).nnz == 0 and whole.nnz > 0
    np.testing.assert_array_equal(whole.toarray(), prune_rows(whole, 4).toarray())
