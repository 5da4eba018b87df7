"""Recommenders that score items by their text: the shared base and the frozen baseline.

A text recommender's catalogue is the *item table* it is built with, not only the items
seen in training, so it can score items nobody has interacted with yet (cold start).
A user is represented by their history: ``user = normalise(W @ mean(history vectors of
the items they interacted with))`` and ``score(u, i) = scale * cos(user, item vector)``.
:class:`FrozenText` uses the pretrained encoder's mean-pooled embeddings as both item and
history vectors with ``W = I`` -- the zero-training baseline;
:class:`~workbench.models.two_tower.TwoTower` fine-tunes the item vectors and ``W``.

``fit(interactions)`` takes histories from ``interactions`` (and trains, where there is
training); :meth:`TextRecommender.fold_in` replaces the histories without retraining,
e.g. with the full training set after a model was trained on a validation carve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench import text
from workbench.matrix import IndexMap, interaction_matrix
from workbench.models.base import Recommender, check_options
from workbench.schema import ITEM, USER, require_columns


class TextRecommender(Recommender):
    """Base of the text models: catalogue from an item table, users from histories.

    Subclasses set ``item_vectors_`` ((n_items, d), unit rows), ``history_vectors_``
    ((n_items, h), what a history averages), ``user_map_`` (a (d, h) tensor, or None for
    identity) and ``scale_`` in :meth:`_train`.
    """

    def __init__(self, items: pd.DataFrame, encoder: text.Encoder | None) -> None:
        require_columns(items, [ITEM, "text"], source=f"{type(self).__name__} items")
        if items[ITEM].duplicated().any():
            raise ValueError(f"{type(self).__name__}: the item table repeats item ids")
        self.catalogue = items.reset_index(drop=True)
        self.encoder = encoder

    # -- fitting ---------------------------------------------------------------------

    def fit(self, interactions: pd.DataFrame, *, validation: pd.DataFrame | None = None) -> "TextRecommender":
        """Take histories from ``interactions`` and train (if the model trains); ``self``."""
        require_columns(interactions, [USER, ITEM], source=f"{type(self).__name__}.fit")
        if len(interactions) == 0:
            raise ValueError(f"{type(self).__name__}.fit: no interactions to fit on")
        self.items = IndexMap.from_ids(self.catalogue[ITEM], kind="item")
        self._set_histories(interactions)
        self._train(validation)
        return self

    def _fit(self, matrix: sp.csr_matrix) -> None:
        raise TypeError(f"{type(self).__name__} needs item text: call fit(interactions)")

    def _set_histories(self, interactions: pd.DataFrame) -> None:
        self.users = IndexMap.from_ids(interactions[USER], kind="user")
        self.seen = interaction_matrix(interactions, self.users, self.items)
        self.seen.data[:] = 1.0

    def fold_in(self, interactions: pd.DataFrame) -> "TextRecommender":
        """Replace every user's history (and the seen mask) by ``interactions``; no training."""
        self._check_fitted()
        require_columns(interactions, [USER, ITEM], source=f"{type(self).__name__}.fold_in")
        self._set_histories(interactions)
        return self

    def _train(self, validation: pd.DataFrame | None) -> None:
        raise NotImplementedError

    def texts(self) -> list[str]:
        """The catalogue's texts in item-index order (empty text -> a placeholder)."""
        order = self.items.index(self.catalogue[ITEM].to_numpy())
        texts = text.item_texts(self.catalogue)
        out = [""] * len(texts)
        for pos, t in zip(order, texts):
            out[pos] = t
        return out

    # -- scoring ---------------------------------------------------------------------

    def user_vectors(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, d) unit user vectors from their histories."""
        self._check_fitted()
        rows = self.seen[np.asarray(user_index, dtype=np.int64)]  # (B, n_items) sparse
        counts = np.maximum(np.asarray(rows.sum(1)).ravel(), 1.0)[:, None]
        mean = torch.as_tensor(rows @ self.history_vectors_.numpy() / counts, dtype=torch.float32)  # (B, h)
        if self.user_map_ is not None:
            mean = mean @ self.user_map_.T
        return torch.nn.functional.normalize(mean, dim=1)

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items) scores ``scale * cos(user, item)``."""
        return self.scale_ * self.user_vectors(user_index) @ self.item_vectors_.T

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """(B,) item indices -> (B, n_items) cosine similarity of the item vectors."""
        self._check_fitted()
        return self.item_vectors_[torch.as_tensor(np.asarray(item_index, dtype=np.int64))] @ self.item_vectors_.T

    def item_embeddings(self) -> pd.DataFrame:
        """The item vectors as a frame indexed by ``item_id`` (for maps and inspection)."""
        self._check_fitted()
        return pd.DataFrame(self.item_vectors_.numpy(), index=pd.Index(self.items.ids_, name=ITEM))


@dataclass(frozen=True, kw_only=True)
class FrozenTextConfig:
    """``max_length``: tokens read per item; ``batch_size``: texts per forward pass."""

    max_length: int = 32  # ml-100k texts: 15.8 tokens on average, 34 at most (2 of 1682 longer than 32)
    batch_size: int = 128

    def __post_init__(self) -> None:
        check_options(self, positive=("max_length", "batch_size"))


class FrozenText(TextRecommender):
    """Pretrained text embeddings, no training: item-item cosine and the mean-history profile."""

    def __init__(self, items: pd.DataFrame, *, encoder: text.Encoder, max_length: int = FrozenTextConfig.max_length,
                 batch_size: int = FrozenTextConfig.batch_size, progress: bool = True) -> None:
        super().__init__(items, encoder)
        self.config = FrozenTextConfig(max_length=max_length, batch_size=batch_size)
        self.progress = progress

    def _train(self, validation: pd.DataFrame | None) -> None:
        vectors = text.embed_texts(self.encoder, self.texts(), max_length=self.config.max_length,
                                   batch_size=self.config.batch_size, progress=self.progress)
        self.item_vectors_ = torch.nn.functional.normalize(vectors, dim=1)  # (n_items, hidden)
        self.history_vectors_ = self.item_vectors_
        self.user_map_ = None
        self.scale_ = 1.0
