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
recommended.

Online state (items added, update count, folded-in vector) lives in a state backend
(:mod:`.state`): this process's memory by default, or Redis shared by replicas
(``servable(model, state="redis://...")``). A batch reads its users' states once (one
Redis round trip) and computes from that snapshot; an update is one atomic
read-modify-write of the user's state. No lock is held during a model call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from workbench.data.matrix import row_pairs, rows_matrix
from workbench.models.base import Recommender
from workbench.serving.state import Identity, InProcessState, RedisState, UserState, open_state


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

    def __init__(
        self, model: Recommender, *, version: str | None = None, state: str | InProcessState | RedisState | None = None
    ) -> None:
        self.model = model
        self.items = model.items
        self.n_items = len(model.items)
        self.version = version or f"{type(model).__name__.lower()}-1"
        self._lock = threading.Lock()
        # where users' online state lives: a backend, a URL ("redis://...") or None (this process)
        self.state = state if isinstance(state, (InProcessState, RedisState)) else open_state(state, self.identity)
        self._local = threading.local()  # .view: user id -> UserState read for the batch (or update) at hand
        counts = np.asarray(model.seen.sum(axis=0), dtype=np.float64).ravel()  # (n_items,)
        self._popular = np.argsort(-counts, kind="stable")  # item indices, most popular first
        self._popularity = counts / max(counts.max(), 1.0)

    # -- the protocol -------------------------------------------------------------------

    def knows(self, user_id: int) -> bool:
        """True when the user has a training history or an online one."""
        return self.trained(user_id) or self._online(user_id) is not None

    def trained(self, user_id: int) -> bool:
        """True when the user has a training history (no state read)."""
        return user_id in self.model.users

    def identity(self) -> Identity:
        """What shared state must belong to: this version label, the training data and
        the model's options (see :func:`identity`)."""
        return identity(self.model, self.version)

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
        view = dict(zip((int(user) for user, _ in requests), self.state.read([int(user) for user, _ in requests])))
        out = [
            None if row >= 0 or view[int(user)] is not None else self.cold_start(user, k)
            for (user, k), row in zip(requests, rows)
        ]
        known = [i for i, answer in enumerate(out) if answer is None]
        if not known:
            return out
        users = [int(requests[i][0]) for i in known]
        with self._lock, self._viewing(view):  # one snapshot: histories, versions, model state
            histories = [self._history(users[j], int(rows[i])) for j, i in enumerate(known)]
            versions = [view[u].updates if view[u] is not None else 0 for u in users]
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
        :class:`~workbench.data.matrix.UnknownIdError` (nothing is changed); a shared
        state backend that cannot be reached raises
        :class:`~workbench.serving.state.StateUnavailable` (nothing is changed)."""
        user_id, index = int(user_id), int(self.items.index(np.asarray([item_id]))[0])

        def change(old: UserState) -> UserState:  # atomic per user; may run again after a conflict
            with self._viewing({user_id: old}):  # not the adapter's lock: a batch holds it while reading state
                vector = self._update(user_id, np.append(self.history(user_id), index))  # may raise: nothing changed
            return UserState((*old.added, index), old.updates + 1, None if vector is None else _numpy(vector))

        return self.state.update(user_id, change).updates

    def history(self, user_id: int) -> np.ndarray:
        """(n,) item indices of the user, training first then online, oldest first."""
        return self._history(user_id, int(self._rows([user_id])[0]))

    def _online(self, user_id: int) -> UserState | None:
        """The user's online state: from the snapshot being worked on, else read now."""
        view = getattr(self._local, "view", None)
        if view is not None and user_id in view:
            return view[user_id]
        return self.state.read([user_id])[0]

    @contextlib.contextmanager
    def _viewing(self, view: dict[int, UserState | None]):
        """Make ``view`` what :meth:`_online` answers from, in this thread, for the block."""
        before, self._local.view = getattr(self._local, "view", None), view
        try:
            yield
        finally:
            self._local.view = before

    def _rows(self, user_ids: Sequence[int]) -> np.ndarray:
        """Training-matrix rows of ``user_ids`` (-1 for users without one), in one lookup."""
        ids = np.asarray(user_ids, dtype=np.int64)
        users = self.model.users
        return np.where(users.contains(ids), np.searchsorted(users.ids_, ids), -1)

    def _history(self, user_id: int, row: int) -> np.ndarray:
        online = self._online(user_id)
        added = online.added if online is not None else ()
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

    def _update(self, user_id: int, history: np.ndarray) -> np.ndarray | torch.Tensor | None:
        """Model state after the user's history grew (one update of a user at a time): None, or
        the user's new (f,) vector, stored with their state and read back by
        :meth:`_online` (``.vector``)."""
        return None


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

    def __init__(
        self, model: Recommender, *, version: str | None = None, state: str | InProcessState | RedisState | None = None
    ) -> None:
        super().__init__(model, version=version, state=state)
        y = model.item_factors_.float()  # (n_items, f)
        self._gram = y.T @ y + model.config.reg * torch.eye(y.shape[1], device=y.device)  # (f, f)

    def _state(self, users, histories) -> torch.Tensor:
        base = self.model.user_factors_
        rows = []
        for u in users:
            online = self._online(u)
            if online is not None and online.vector is not None:
                rows.append(torch.as_tensor(online.vector, device=base.device))
            else:
                rows.append(base[int(self.model.users.index(np.asarray([u]))[0])])
        return torch.stack(rows)  # (B, f): a copy, so later updates do not touch it

    def _scores(self, users, histories, state: torch.Tensor) -> torch.Tensor:
        return state @ self.model.item_factors_.T  # (B, n_items)

    def _update(self, user_id: int, history: np.ndarray) -> torch.Tensor:
        y = self.model.item_factors_[torch.as_tensor(np.unique(history), device=self._gram.device)]  # (m, f)
        alpha = self.model.config.alpha
        lhs = self._gram + alpha * (y.T @ y)  # (f, f)
        rhs = (1.0 + alpha) * y.sum(0)  # (f,)
        return torch.linalg.solve(lhs, rhs)  # the user's folded-in (f,) vector


class SequenceServable(ServableModel):
    """SASRec / BERT4Rec: the model reads the user's item sequence, so an update is the
    item appended to it; scores come from ``model.score_sequences``."""

    def _base_history(self, user_index: int) -> np.ndarray:
        return np.asarray(self.model.sequences_[user_index], dtype=np.int64)

    def _scores(self, users, histories, state) -> torch.Tensor:
        return self.model.score_sequences(histories)  # (B, n_items)


def servable(
    model: Recommender, *, version: str | None = None, state: str | InProcessState | RedisState | None = None
) -> ServableModel:
    """The adapter that fits ``model`` (see the module docstring's table); ``state``: where
    online state lives (None: this process; ``"redis://HOST:PORT/DB"``: Redis, shared)."""
    if hasattr(model, "score_sequences") and hasattr(model, "sequences_"):
        return SequenceServable(model, version=version, state=state)
    if hasattr(model, "item_factors_") and hasattr(model, "user_factors_") and hasattr(model.config, "alpha"):
        return FactorServable(model, version=version, state=state)
    n_items = len(model.items)
    if getattr(getattr(model, "weights_", None), "shape", None) == (n_items, n_items):  # not Blend's (n_models,)
        return SimilarityServable(model, version=version, state=state)
    return ServableModel(model, version=version, state=state)


def identity(model: Recommender, version: str) -> Identity:
    """The identity shared state is kept under: ``version``; a SHA-256 of the training
    data as the model holds it (user and item ids, the seen matrix); one of the model's
    ``repr``, its class and options, a two-stage model's parts included (``device`` left
    out: replicas on different devices serve the same model)."""
    data = hashlib.sha256()
    seen = model.seen.tocsr()
    for array in (model.users.ids_, model.items.ids_, seen.indptr, seen.indices):
        data.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    described = re.sub(r"device=[^,)]*|at 0x[0-9a-f]+", "", repr(model))  # Name(options), parts' included
    return Identity(version, data.hexdigest(), hashlib.sha256(described.encode()).hexdigest())


def _numpy(vector) -> np.ndarray:
    """A (f,) vector as float32 numpy (what the state backends store)."""
    if isinstance(vector, torch.Tensor):
        return vector.detach().float().cpu().numpy()
    return np.asarray(vector, dtype=np.float32)
