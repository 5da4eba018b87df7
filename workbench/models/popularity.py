"""Popularity baselines: the same ranking for every user.

- :class:`Popularity` -- the most-interacted items the user has not seen;
- :class:`GenrePopularity` -- an item's score is the popularity of its genres, so it also
  ranks items nobody has interacted with yet: the baseline for cold-start items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench.data.schema import ITEM, require_columns
from workbench.models.base import Recommender


@dataclass(frozen=True, kw_only=True)
class PopularityConfig:
    """Popularity has no hyper-parameters; the config exists so every model has one."""


class Popularity(Recommender):
    """Score of an item = the share of training users who interacted with it (0..1)."""

    config_class = PopularityConfig

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        counts = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()  # (n_items,)
        self.item_scores_ = torch.from_numpy(counts / matrix.shape[0])

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items): the same popularity row for everyone."""
        return self.item_scores_.expand(len(user_index), -1)


@dataclass(frozen=True, kw_only=True)
class GenrePopularityConfig:
    """Genre popularity has no hyper-parameters."""


class GenrePopularity(Recommender):
    """Score of an item = mean over its genres of the genre's popularity (training
    interactions per training item of that genre); the same for every user.

    Built from the item table (``item_id``, ``genres``), whose items are its catalogue:
    it needs only metadata, so it scores cold items.
    """

    config_class = GenrePopularityConfig

    def __init__(self, items: pd.DataFrame, **options) -> None:
        require_columns(items, [ITEM, "genres"], source="GenrePopularity items")
        super().__init__(**options)
        self.catalogue = items.reset_index(drop=True)

    def fit(self, interactions: pd.DataFrame, *, progress: bool = False) -> GenrePopularity:
        """Count interactions per genre; every catalogue item gets a score."""
        self._index(interactions, catalogue=self.catalogue[ITEM])
        self._fit(self.seen, progress=progress)
        return self

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        counts = np.asarray(matrix.sum(0)).ravel()  # (n_items,) in item-index order
        genres = self.catalogue.set_index(ITEM)["genres"].reindex(self.items.ids_)
        exploded = pd.DataFrame({"genre": genres.to_numpy(), "count": counts}).explode("genre")
        warm = exploded[exploded["count"] > 0]
        per_genre = warm.groupby("genre")["count"].mean()
        fallback = float(warm["count"].mean()) if len(warm) else 0.0
        exploded["pop"] = exploded["genre"].map(per_genre).fillna(fallback).astype(float)
        score = exploded.groupby(level=0)["pop"].mean().to_numpy(dtype=np.float32)  # (n_items,)
        self.item_scores_ = torch.from_numpy(score)

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items): the same genre-popularity row for everyone."""
        return self.item_scores_.expand(len(user_index), -1)
