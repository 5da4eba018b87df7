"""Fixtures shared by the serving tests: a tiny EASE whose answers the tests can derive."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from workbench.data import datasets
from workbench.models.base import Recommender


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
