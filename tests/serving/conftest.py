"""Fixtures shared by the serving tests: a tiny EASE whose answers the tests can derive, and a
small two-stage model (iALS + HNSW retrieve, EASE re-ranks)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from workbench.data import datasets
from workbench.models import EASE, IALS, TwoStage
from workbench.models.base import Recommender
from workbench.retrieval import IndexConfig


class ToyEASE(Recommender):
    """EASE in closed form with numpy (the test's own known answer)."""

    def _fit(self, matrix: sp.csr_matrix, progress: bool = False) -> None:
        gram = (matrix.T @ matrix).toarray() + 10.0 * np.eye(matrix.shape[1])
        p = np.linalg.inv(gram)
        weights = p / -np.diag(p)
        np.fill_diagonal(weights, 0.0)
        self.weights_ = torch.as_tensor(weights, dtype=torch.float32)

    def score(self, user_index):
        return torch.as_tensor(self.seen[user_index].toarray()) @ self.weights_


@pytest.fixture(scope="module")
def interactions():
    """The tiny synthetic data set's interactions."""
    return datasets.load("synthetic", size="tiny", seed=0).interactions


@pytest.fixture(scope="module")
def ease(interactions):
    """:class:`ToyEASE` fitted on :func:`interactions`."""
    return ToyEASE().fit(interactions)


@pytest.fixture(scope="module")
def fitted(interactions):
    """A :class:`TwoStage` on :func:`interactions`: iALS-16 + HNSW retrieve 30, EASE re-ranks."""
    return TwoStage(
        retriever=IALS(factors=16, epochs=5, device="cpu"),
        ranker=EASE(reg=50.0, device="cpu"),
        candidates=30,
        index=IndexConfig(backend="hnsw", m=16, ef_search=64),
    ).fit(interactions)
