"""The base of the recommenders that score items by their text.

A text recommender's catalogue is the *item table* it is built with, not only the items
seen in training, so it can score items nobody has interacted with yet (cold start).
A user is represented by their history: ``user = normalise(W @ mean(history vectors of
the items they interacted with))`` and ``score(u, i) = scale * cos(user, item vector)``.
:class:`~workbench.models.text.frozen.FrozenText` uses the pretrained encoder's
mean-pooled embeddings as both item and history vectors with ``W = I`` -- the
zero-training baseline; :class:`~workbench.models.text.two_tower.TwoTower` fine-tunes
the item vectors and ``W``.

``fit(interactions)`` takes histories from ``interactions`` (and trains, where there is
training); :meth:`TextRecommender.fold_in` replaces the histories without retraining,
e.g. with the full training set after a model was trained on a validation carve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench.data.schema import ITEM, require_columns
from workbench.models.base import Recommender
from workbench.models.text.encoder import Encoder, item_texts


class TextRecommender(Recommender):
    """Base of the text models: catalogue from an item table, users from histories.

    Subclasses set ``item_vectors_`` ((n_items, d), unit rows), ``history_vectors_``
    ((n_items, h), what a history averages), ``user_map_`` (a (d, h) tensor, or None for
    identity) and ``scale_`` in :meth:`_train`.
    """

    def __init__(self, items: pd.DataFrame, *, encoder: Encoder | None, **options) -> None:
        require_columns(items, [ITEM, "text"], source=f"{type(self).__name__} items")
        if items[ITEM].duplicated().any():
            raise ValueError(f"{type(self).__name__}: the item table repeats item ids")
        super().__init__(**options)
        self.catalogue = items.reset_index(drop=True)
        self.encoder = encoder

    # -- fitting ---------------------------------------------------------------------

    def fit(
        self, interactions: pd.DataFrame, *, validation: pd.DataFrame | None = None, progress: bool = False
    ) -> TextRecommender:
        """Take histories from ``interactions`` and train (if the model trains); ``self``."""
        self._set_histories(interactions)
        self._train(validation, progress=progress)
        return self

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        raise TypeError(f"{type(self).__name__} needs item text: call fit(interactions)")

    def _set_histories(self, interactions: pd.DataFrame) -> None:
        self._index(interactions, catalogue=self.catalogue[ITEM])

    def fold_in(self, interactions: pd.DataFrame) -> TextRecommender:
        """Replace every user's history (and the seen mask) by ``interactions``; no training."""
        self._check_fitted()
        self._set_histories(interactions)
        return self

    def _train(self, validation: pd.DataFrame | None, *, progress: bool) -> None:
        raise NotImplementedError

    def texts(self) -> list[str]:
        """The catalogue's texts in item-index order (empty text -> a placeholder)."""
        order = self.items.index(self.catalogue[ITEM].to_numpy())
        texts = item_texts(self.catalogue)
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
