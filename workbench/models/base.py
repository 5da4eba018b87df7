"""The one interface every recommender in the workbench shares.

``fit(interactions) -> self``; ``recommend(user_ids, k, exclude_seen)`` -> DataFrame
(``user_id``, ``item_id``, ``score``, ``rank``); ``similar_items(item_ids, k)``; and the
batched ``score(user_index)`` -> (B, n_items) tensor that the GPU and serving layers
call. Subclasses implement ``_fit(matrix)`` on the CSR user x item matrix and
``score``; top-k, masking and id mapping live here, once.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench.matrix import IndexMap, interaction_matrix
from workbench.schema import ITEM, RANK, SCORE, USER, SchemaError, require_columns

#: scores for one block of users are at most this many bytes (float32)
BLOCK_BYTES = 64 * 2**20


class NotFittedError(RuntimeError):
    """The model was used before ``fit``."""


def check_options(config, *, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` naming the first option of ``config`` that is out of range."""
    name = type(config).__name__
    for field in positive:
        if not getattr(config, field) > 0:
            raise ValueError(f"{name}: {field} must be > 0, got {getattr(config, field)!r}")
    for field in non_negative:
        if not getattr(config, field) >= 0:
            raise ValueError(f"{name}: {field} must be >= 0, got {getattr(config, field)!r}")


def _check_k(k: int, n_items: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n_items:
        raise ValueError(f"k={k} is larger than the catalogue ({n_items} items)")


def topk_blocked(
    score_fn,
    rows: np.ndarray,
    k: int,
    *,
    n_items: int,
    exclude: sp.csr_matrix | None = None,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of ``score_fn(rows_block) -> (B, n_items)`` in memory-bounded blocks.

    Items with a stored entry in ``exclude[row]`` are masked with -inf first. Returns
    ``(indices, scores)``, each (len(rows), k); a slot with no candidate left holds
    index -1 and score -inf.
    """
    _check_k(k, n_items)
    rows = np.asarray(rows, dtype=np.int64)
    block = block_size or max(1, BLOCK_BYTES // (4 * max(n_items, 1)))
    out_idx = np.empty((len(rows), k), dtype=np.int64)
    out_val = np.empty((len(rows), k), dtype=np.float32)
    for start in range(0, len(rows), block):
        r = rows[start : start + block]
        scores = torch.as_tensor(score_fn(r)).float()  # (B, n_items)
        if exclude is not None:
            sub = exclude[r].tocoo()
            mask_rows = torch.as_tensor(sub.row, dtype=torch.long, device=scores.device)
            mask_cols = torch.as_tensor(sub.col, dtype=torch.long, device=scores.device)
            scores = scores.clone()  # never write into a model's own tensor
            scores[mask_rows, mask_cols] = float("-inf")
        val, idx = torch.topk(scores, k, dim=1)  # (B, k)
        idx[torch.isinf(val) & (val < 0)] = -1
        out_idx[start : start + len(r)] = idx.cpu().numpy()
        out_val[start : start + len(r)] = val.float().cpu().numpy()
    return out_idx, out_val


def to_frame(ids: np.ndarray, idx: np.ndarray, val: np.ndarray, items: IndexMap, *, id_col: str = USER, item_col: str = ITEM) -> pd.DataFrame:
    """(n, k) top-k arrays -> long DataFrame with ``rank`` 1..k, empty slots dropped."""
    n, k = idx.shape
    keep = (idx >= 0).ravel()
    return pd.DataFrame(
        {
            id_col: np.repeat(ids, k)[keep],
            item_col: items.ids(idx.ravel()[keep]),
            SCORE: val.ravel()[keep].astype(np.float64),
            RANK: np.tile(np.arange(1, k + 1), n)[keep],
        }
    )


class Recommender(ABC):
    """Base class: id maps, seen-item masking and blocked top-k for every model."""

    users: IndexMap
    items: IndexMap
    seen: sp.csr_matrix  # (n_users, n_items) training interactions
    config: object = None  # the model's frozen dataclass of hyper-parameters, if it has one

    def __repr__(self) -> str:
        if not dataclasses.is_dataclass(self.config):
            return f"{type(self).__name__}()"
        options = ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config))
        return f"{type(self).__name__}({options})"

    def fit(self, interactions: pd.DataFrame) -> "Recommender":
        """Fit on interactions (all rows count as positives); returns ``self``."""
        require_columns(interactions, [USER, ITEM], source=f"{type(self).__name__}.fit")
        if len(interactions) == 0:
            raise ValueError(f"{type(self).__name__}.fit: no interactions to fit on")
        for col in (USER, ITEM):
            ids = pd.to_numeric(interactions[col], errors="coerce")
            if ids.isna().any() or (ids != ids.round()).any():
                bad = interactions[col][ids.isna() | (ids != ids.round())].iloc[0]
                raise SchemaError(f"{type(self).__name__}.fit: column {col!r} holds a missing or non-integer id ({bad!r})")
        self.users = IndexMap.from_ids(interactions[USER], kind="user")
        self.items = IndexMap.from_ids(interactions[ITEM], kind="item")
        self.seen = interaction_matrix(interactions, self.users, self.items)
        self.seen.data[:] = 1.0
        self._fit(self.seen)
        return self

    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix) -> None:
        """Learn from the binary (n_users, n_items) CSR matrix."""

    @abstractmethod
    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """Scores for a batch of user *indices*: (B,) -> (B, n_items) float tensor."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "seen"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(interactions) first")

    def recommend(
        self, user_ids, k: int = 10, *, exclude_seen: bool = True, block_size: int | None = None
    ) -> pd.DataFrame:
        """Top-k items for each user id -> (``user_id``, ``item_id``, ``score``, ``rank``).

        Unknown user ids raise :class:`~workbench.matrix.UnknownIdError`. ``k`` larger
        than the catalogue raises ``ValueError``; a user with fewer than ``k`` unseen
        items gets fewer rows.
        """
        self._check_fitted()
        user_ids = np.asarray(user_ids, dtype=np.int64).ravel()
        rows = self.users.index(user_ids)
        idx, val = topk_blocked(
            self.score,
            rows,
            k,
            n_items=len(self.items),
            exclude=self.seen if exclude_seen else None,
            block_size=block_size,
        )
        return to_frame(user_ids, idx, val, self.items)

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """Similarity of a batch of item indices to every item: (B,) -> (B, n_items)."""
        raise NotImplementedError(f"{type(self).__name__} does not define item similarity")

    def similar_items(self, item_ids, k: int = 10) -> pd.DataFrame:
        """Most similar items -> (``item_id``, ``similar_item_id``, ``score``, ``rank``)."""
        self._check_fitted()
        item_ids = np.asarray(item_ids, dtype=np.int64).ravel()
        rows = self.items.index(item_ids)
        itself = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (np.arange(len(rows)), rows)), shape=(len(rows), len(self.items))
        )
        # mask each item itself: exclude rows are indexed by position in `rows`
        idx, val = topk_blocked(
            lambda pos: self.item_similarity(rows[pos]),
            np.arange(len(rows)),
            k,
            n_items=len(self.items),
            exclude=itself,
        )
        return to_frame(item_ids, idx, val, self.items, id_col=ITEM, item_col="similar_item_id")
