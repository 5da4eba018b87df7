"""Fitted recommenders made servable: batched top-k, online updates and cold start.

The serving layer sees a model only through :class:`ServableModel`:

- ``recommend_batch(requests)`` -- ``[(user_id, k), ...]`` -> one :class:`Recommendation`
  each, from one batched model call (what the micro-batcher calls, in a worker thread);
- ``add_interaction(user_id, item_id)`` -- the user's state changes at once: the next
  batch already reads it; returns the user's new update count;
- ``knows(user_id)``, ``cold_start(user_id, k)`` -- users with no history at all get the
  most popular items, flagged ``cold_start=True``;
- ``version`` -- part of every cache key.

:func:`servable` picks the adapter by what the model holds:

=====================  ==========================================  ==========================
adapter                models                                      online update
=====================  ==========================================  ==========================
SequenceServable       SASRec, BERT4Rec (``score_sequences``)      item appended to history
FactorServable         iALS (``item_factors_``, ``config.alpha``)  fold-in: one (f, f) solve
SimilarityServable     EASE, ItemKNN (item x item ``weights_``)    sparse row ``x_u @ W``
ServableModel          anything else (Popularity, BPR, Blend)      item excluded from top-k
=====================  ==========================================  ==========================

A user first seen through ``add_interaction`` is served from then on (a new row, a new
history or a folded-in vector). Seen items -- training and online -- are never
recommended. State reads and writes take one lock, held only to copy or swap small
objects, never during a model call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from workbench.data.matrix import row_pairs, rows_matrix
from workbench.models.base import Recommender


@dataclass(frozen=True)
class Recommendation:
    """One answer: ``items`` (ids, best first) with their ``scores``; ``cold_start``
    marks a popularity answer for a user without history; ``user_version`` counts the
    online updates of this user that the answer reflects."""

    user_id: int
    items: tuple[int, ...]
    scores: tuple[float, ...]
    cold_start: bool
    model_version: str
    user_version: int

    def as_dict(self) -> dict:
        return {
            "user_id": self.user_id,
            "items": list(self.items),
            "scores": list(self.scores),
            "cold_start": self.cold_start,
            "model_version": self.model_version,
            "user_version": self.user_version,
        }

    def to_json(self) -> bytes:
        """:meth:`as_dict` as JSON bytes (what the HTTP service sends, without FastAPI's
        generic encoder: a tenth of the time)."""
        return json.dumps(self.as_dict(), allow_nan=False).encode()


class ServableModel:
    """A fitted :class:`~workbench.models.base.Recommender` behind the serving protocol.

    This base class scores known users with ``model.score`` and lets online updates
    only hide the new item; subclasses override :meth:`_scores` (and :meth:`_update`)
    to make an update change the scores themselves.
    """

    def __init__(self, model: Recommender, *, version: str | None = None) -> None:
        self.model = model
        self.items = model.items
        self.n_items = len(model.items)
        self.version = version or f"{type(model).__name__.lower()}-1"
        self._lock = threading.Lock()
        self._added: dict[int, list[int]] = {}  # user id -> item indices added online, oldest first
        self._updates: dict[int, int] = {}  # user id -> online updates applied
        counts = np.asarray(model.seen.sum(axis=0), dtype=np.float64).ravel()  # (n_items,)
        self._popular = np.argsort(-counts, kind="stable")  # item indices, most popular first
        self._popularity = counts / max(counts.max(), 1.0)

    # -- the protocol -------------------------------------------------------------------

    def knows(self, user_id: int) -> bool:
        """True when the user has a training history or an online one."""
        return user_id in self.model.users or user_id in self._added

    def cold_start(self, user_id: int, k: int) -> Recommendation:
        """The ``k`` most popular items, flagged as a cold-start answer."""
        top = self._popular[:k]
        return Recommendation(
            int(user_id),
            tuple(int(i) for i in self.items.ids(top)),
            tuple(float(s) for s in self._popularity[top]),
            True,
            self.version,
            0,
        )

    def recommend_batch(self, requests: Sequence[tuple[int, int]]) -> list[Recommendation]:
        """``[(user_id, k), ...]`` -> one answer each, best first, seen items excluded.

        One model call for the whole batch, with the largest ``k``; unknown users get
        :meth:`cold_start`. Runs in the batcher's worker thread.
        """
        rows = self._rows([user for user, _ in requests])  # training row per user, -1 if none
        out = [
            None if row >= 0 or user in self._added else self.cold_start(user, k)
            for (user, k), row in zip(requests, rows)
        ]
        known = [i for i, answer in enumerate(out) if answer is None]
        if not known:
            return out
        users = [int(requests[i][0]) for i in known]
        with self._lock:  # a consistent snapshot: histories, versions, model state
            histories = [self._history(users[j], int(rows[i])) for j, i in enumerate(known)]
            versions = [self._updates.get(u, 0) for u in users]
            state = self._state(users, histories)
        scores = torch.as_tensor(self._scores(users, histories, state)).float()  # (B, n_items)
        scores = _mask(scores, histories)
        k_max = min(max(requests[i][1] for i in known), self.n_items)
        val, idx = torch.topk(scores, k_max, dim=1)  # (B, k_max)
        val, idx = val.cpu().numpy(), idx.cpu().numpy()
        ids = self.items.ids(idx)  # (B, k_max) external item ids
        for row, i in enumerate(known):
            user, k = requests[i]
            keep = np.isfinite(val[row, :k])
            out[i] = Recommendation(
                int(user),
                tuple(ids[row, :k][keep].tolist()),
                tuple(val[row, :k][keep].astype(float).tolist()),
                False,
                self.version,
                versions[row],
            )
        return out

    def add_interaction(self, user_id: int, item_id: int) -> int:
        """Record that ``user_id`` interacted with ``item_id``, effective for the next
        batch; returns the user's update count. Unknown items raise
        :class:`~workbench.data.matrix.UnknownIdError` (nothing is changed)."""
        user_id, index = int(user_id), int(self.items.index(np.asarray([item_id]))[0])
        with self._lock:
            self._update(user_id, np.append(self.history(user_id), index))  # may raise: nothing changed yet
            self._added.setdefault(user_id, []).append(index)
            self._updates[user_id] = version = self._updates.get(user_id, 0) + 1
        return version

    def history(self, user_id: int) -> np.ndarray:
        """(n,) item indices of the user, training first then online, oldest first."""
        return self._history(user_id, int(self._rows([user_id])[0]))

    def _rows(self, user_ids: Sequence[int]) -> np.ndarray:
        """Training-matrix rows of ``user_ids`` (-1 for users without one), in one lookup."""
        ids = np.asarray(user_ids, dtype=np.int64)
        users = self.model.users
        return np.where(users.contains(ids), np.searchsorted(users.ids_, ids), -1)

    def _history(self, user_id: int, row: int) -> np.ndarray:
        added = self._added.get(user_id, ())
        if row >= 0:
            base = self._base_history(row)
            return np.concatenate([base, np.asarray(added, dtype=np.int64)]) if added else base
        return np.asarray(added, dtype=np.int64)

    # -- what subclasses change ---------------------------------------------------------

    def _base_history(self, user_index: int) -> np.ndarray:
        seen = self.model.seen
        return seen.indices[seen.indptr[user_index] : seen.indptr[user_index + 1]].astype(np.int64)

    def _state(self, users: list[int], histories: list[np.ndarray]):
        """Copy whatever mutable state :meth:`_scores` needs (called under the lock)."""
        return None

    def _scores(self, users: list[int], histories: list[np.ndarray], state) -> torch.Tensor:
        """(B,) users -> (B, n_items) scores (outside the lock, in the worker thread)."""
        rows = self._rows(users)
        known = rows >= 0  # users first seen online have no training row: popularity, minus their items
        scores = torch.as_tensor(self._popularity, dtype=torch.float32).repeat(len(users), 1)  # (B, n_items)
        if known.any():
            scores[torch.as_tensor(known)] = torch.as_tensor(self.model.score(rows[known])).float().cpu()
        return scores

    def _update(self, user_id: int, history: np.ndarray) -> None:
        """Refresh model state after the user's history grew (called under the lock)."""


def _mask(scores: torch.Tensor, histories: list[np.ndarray]) -> torch.Tensor:
    """Set each row's history items to -inf (a copy; the model's tensors stay intact)."""
    rows, cols = row_pairs(histories)
    scores = scores.clone()
    scores[torch.as_tensor(rows), torch.as_tensor(cols, device=scores.device)] = float("-inf")
    return scores


class SimilarityServable(ServableModel):
    """Item x item models (EASE, ItemKNN): ``scores = x_u @ W`` from the user's current
    row, so an update is one more nonzero in ``x_u``."""

    def _scores(self, users, histories, state) -> torch.Tensor:
        rows = rows_matrix(histories, self.n_items)  # (B, n_items)
        weights = self.model.weights_  # (n_items, n_items): dense tensor or sparse matrix
        if isinstance(weights, torch.Tensor):
            return torch.as_tensor(rows.toarray(), device=weights.device) @ weights
        return torch.from_numpy(np.asarray((rows @ weights).todense(), dtype=np.float32))


class FactorServable(ServableModel):
    """iALS: scores ``X[u] @ Y^T``; an update re-solves the user's vector with the item
    factors fixed (fold-in, one (f, f) system):
    ``(Y^T Y + reg I + alpha Y_u^T Y_u) x = (1 + alpha) Y_u^T 1``."""

    def __init__(self, model: Recommender, *, version: str | None = None) -> None:
        super().__init__(model, version=version)
        y = model.item_factors_.float()  # (n_items, f)
        self._gram = y.T @ y + model.config.reg * torch.eye(y.shape[1], device=y.device)  # (f, f)
        self._vectors: dict[int, torch.Tensor] = {}  # user id -> folded-in (f,) vector

    def _state(self, users, histories) -> torch.Tensor:
        base = self.model.user_factors_
        rows = []
        for u in users:
            if u in self._vectors:
                rows.append(self._vectors[u])
            else:
                rows.append(base[int(self.model.users.index(np.asarray([u]))[0])])
        return torch.stack(rows)  # (B, f): a copy, so later updates do not touch it

    def _scores(self, users, histories, state: torch.Tensor) -> torch.Tensor:
        return state @ self.model.item_factors_.T  # (B, n_items)

    def _update(self, user_id: int, history: np.ndarray) -> None:
        y = self.model.item_factors_[torch.as_tensor(np.unique(history), device=self._gram.device)]  # (m, f)
        alpha = self.model.config.alpha
        lhs = self._gram + alpha * (y.T @ y)  # (f, f)
        rhs = (1.0 + alpha) * y.sum(0)  # (f,)
        self._vectors[user_id] = torch.linalg.solve(lhs, rhs)


class SequenceServable(ServableModel):
    """SASRec / BERT4Rec: the model reads the user's item sequence, so an update is the
    item appended to it; scores come from ``model.score_sequences``."""

    def _base_history(self, user_index: int) -> np.ndarray:
        return np.asarray(self.model.sequences_[user_index], dtype=np.int64)

    def _scores(self, users, histories, state) -> torch.Tensor:
        return self.model.score_sequences(histories)  # (B, n_items)


def servable(model: Recommender, *, version: str | None = None) -> ServableModel:
    """The adapter that fits ``model`` (see the module docstring's table)."""
    if hasattr(model, "score_sequences") and hasattr(model, "sequences_"):
        return SequenceServable(model, version=version)
    if hasattr(model, "item_factors_") and hasattr(model, "user_factors_") and hasattr(model.config, "alpha"):
        return FactorServable(model, version=version)
    n_items = len(model.items)
    if getattr(getattr(model, "weights_", None), "shape", None) == (n_items, n_items):  # not Blend's (n_models,)
        return SimilarityServable(model, version=version)
    return ServableModel(model, version=version)
