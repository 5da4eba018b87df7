"""EASE: a closed-form linear item-item model (Steck, "Embarrassingly Shallow
Autoencoders for Sparse Data", WWW 2019).

With the Gram matrix ``G = X^T X + reg * I`` and ``P = G^-1``, the item-item weights are
``B = I - P diag(1 / diag(P))``: the ridge regression of every item column on all the
others with the diagonal forced to zero. Fitting is one (n_items, n_items) inversion --
cubic in the catalogue size, quadratic in memory -- and scoring is ``X[u] @ B``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from workbench.devices import resolve_device
from workbench.models.base import Recommender
from workbench.models.config import check_options


@dataclass(frozen=True, kw_only=True)
class EASEConfig:
    """``reg``: L2 penalty added to the Gram diagonal (in interaction counts);
    ``device``: where the inversion and scoring run ("auto", "cpu", "cuda")."""

    reg: float = 600.0  # chosen on a validation split of ml-100k training data
    device: str = "auto"

    def __post_init__(self) -> None:
        check_options(self, positive=("reg",))


class EASE(Recommender):
    """Closed-form item-item model; see the module docstring."""

    config_class = EASEConfig

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        device = resolve_device(self.config.device)
        gram = torch.as_tensor((matrix.T @ matrix).toarray(), dtype=torch.float32, device=device)  # (n, n)
        gram.diagonal().add_(self.config.reg)
        chol = torch.linalg.cholesky(gram)  # (n, n) lower triangle
        del gram  # at most two (n, n) matrices are alive at once
        weights = torch.cholesky_inverse(chol)  # P = G^-1, (n, n) symmetric
        del chol
        weights.div_(-weights.diagonal().clone())  # B[i, j] = -P[i, j] / P[j, j]
        weights.diagonal().zero_()
        self.weights_ = weights  # (n_items, n_items)
        self.device_ = device

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items) scores ``X[u] @ B``."""
        rows = torch.as_tensor(self.seen[user_index].toarray(), device=self.device_)  # (B, n_items)
        return rows @ self.weights_

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """(B,) item indices -> (B, n_items): how much each item raises every other's score."""
        return self.weights_[torch.as_tensor(item_index, device=self.device_)]
