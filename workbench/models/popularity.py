"""The popularity baseline: every user gets the most-interacted items they have not seen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from workbench.models.base import Recommender


@dataclass(frozen=True, kw_only=True)
class PopularityConfig:
    """Popularity has no hyper-parameters; the config exists so every model has one."""


class Popularity(Recommender):
    """Score of an item = the share of training users who interacted with it (0..1)."""

    def __init__(self) -> None:
        self.config = PopularityConfig()

    def _fit(self, matrix: sp.csr_matrix) -> None:
        counts = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()  # (n_items,)
        self.item_scores_ = torch.from_numpy(counts / matrix.shape[0])

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items): the same popularity row for everyone."""
        return self.item_scores_.expand(len(user_index), -1)
