"""The one interface every recommender in the workbench shares.

``Model(**options)`` or ``Model(config=ModelConfig(...))`` (see :mod:`.config`);
``fit(interactions, progress=False) -> self``; ``recommend(user_ids, k, exclude_seen,
candidates)`` -> DataFrame (``user_id``, ``item_id``, ``score``, ``rank``);
``similar_items(item_ids, k)``; and the batched ``score(user_index)`` -> (B, n_items)
tensor that the GPU and serving layers call. Subclasses set ``config_class`` and
implement ``_fit(matrix, progress=...)`` on the CSR user x item matrix and ``score``;
top-k, masking, candidate sets and id mapping live here, once.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench.data.matrix import IndexMap, interaction_matrix
from workbench.data.schema import ITEM, RANK, SCORE, USER, SchemaError, require_columns
from workbench.models.config import make_config, signature

#: scores for one block of users are at most this many bytes (float32)
BLOCK_BYTES = 64 * 2**20


class NotFittedError(RuntimeError):
    """The model was used before ``fit``."""


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


def to_frame(
    ids: np.ndarray, idx: np.ndarray, val: np.ndarray, items: IndexMap, *, id_col: str = USER, item_col: str = ITEM
) -> pd.DataFrame:
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


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The config of a model without hyper-parameters (so every model has one)."""


class Recommender(ABC):
    """Base class: options, id maps, seen-item masking and blocked top-k for every model."""

    #: the frozen dataclass of the model's options (see :mod:`workbench.models.config`)
    config_class: ClassVar[type] = NoOptions
    users: IndexMap
    items: IndexMap
    seen: sp.csr_matrix  # (n_users, n_items) training interactions, binary

    def __init__(self, *, config: Any = None, **options: Any) -> None:
        self.config = make_config(self.config_class, config, options, owner=type(self).__name__)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = signature(cls, cls.config_class)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._options_repr()})"

    def _options_repr(self) -> str:
        """``name=value`` for every option, as the constructor takes them."""
        return ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config))

    # -- fitting ---------------------------------------------------------------------

    def fit(self, interactions: pd.DataFrame, *, progress: bool = False) -> Recommender:
        """Fit on interactions (all rows count as positives); returns ``self``.
        ``progress`` shows a ``tqdm.auto`` bar where fitting takes a while."""
        self._index(interactions)
        self._fit(self.seen, progress=progress)
        return self

    def _index(self, interactions: pd.DataFrame, *, catalogue=None, columns=(USER, ITEM)) -> None:
        """Set ``users``, ``items`` (the interacted items, or the ``catalogue`` item ids of a
        model that scores items nobody interacted with) and the binary ``seen`` matrix from
        ``interactions``; checks the ids first."""
        source = f"{type(self).__name__}.fit"
        require_columns(interactions, list(columns), source=source)
        if len(interactions) == 0:
            raise ValueError(f"{source}: no interactions to fit on")
        for col in (USER, ITEM):
            ids = pd.to_numeric(interactions[col], errors="coerce")
            if ids.isna().any() or (ids != ids.round()).any():
                bad = interactions[col][ids.isna() | (ids != ids.round())].iloc[0]
                raise SchemaError(f"{source}: column {col!r} holds a missing or non-integer id ({bad!r})")
        self.users = IndexMap.from_ids(interactions[USER], kind="user")
        self.items = IndexMap.from_ids(interactions[ITEM] if catalogue is None else catalogue, kind="item")
        self.seen = interaction_matrix(interactions, self.users, self.items)
        self.seen.data[:] = 1.0

    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix, *, progress: bool) -> None:
        """Learn from the binary (n_users, n_items) CSR matrix."""

    @abstractmethod
    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """Scores for a batch of user *indices*: (B,) -> (B, n_items) float tensor."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "seen"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(interactions) first")

    # -- recommending ----------------------------------------------------------------

    def recommend(
        self,
        user_ids,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates=None,
        block_size: int | None = None,
    ) -> pd.DataFrame:
        """Top-k items for each user id -> (``user_id``, ``item_id``, ``score``, ``rank``).

        ``candidates`` (item ids) restricts the ranking to those items, e.g. cold-start
        items; the model must know every one (else :class:`~workbench.data.matrix.UnknownIdError`)
        and ``k`` larger than the candidate set returns all of them. Without candidates,
        ``k`` larger than the catalogue raises ``ValueError``. Unknown user ids raise
        :class:`~workbench.data.matrix.UnknownIdError`; a user with fewer than ``k``
        unseen items gets fewer rows.
        """
        self._check_fitted()
        user_ids = np.asarray(user_ids, dtype=np.int64).ravel()
        rows = self.users.index(user_ids)
        if candidates is None:
            exclude = self.seen if exclude_seen else None
            idx, val = topk_blocked(
                self.score, rows, k, n_items=len(self.items), exclude=exclude, block_size=block_size
            )
            return to_frame(user_ids, idx, val, self.items)
        catalogue = IndexMap.from_ids(candidates, kind="item")
        cols = self.items.index(catalogue.ids_)
        exclude = sp.csr_matrix(self.seen[:, cols]) if exclude_seen else None

        def scores(block: np.ndarray) -> torch.Tensor:
            s = self.score(block)  # (B, n_items)
            return s[:, torch.as_tensor(cols, device=s.device)]  # (B, n_candidates)

        n = len(catalogue)
        idx, val = topk_blocked(scores, rows, min(k, n), n_items=n, exclude=exclude, block_size=block_size)
        return to_frame(user_ids, idx, val, catalogue)

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
