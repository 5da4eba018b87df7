"""Serving a :class:`~workbench.models.two_stage.TwoStage` model: retrieve N candidates
from the index, re-rank only those, behind the same micro-batcher, cache and online
updates as every other adapter.

- **A user update changes the query vector.** With an iALS retriever the user's vector
  is folded in again from the whole history (one (f, f) solve, as
  :class:`~workbench.serving.adapters.FactorServable` does) and stored with the user's
  online state; other retrievers keep the trained vector, and a user first seen online is
  queried with the mean of their items' vectors. The ranker reads the current history
  too: EASE sums its weight rows over it, an iALS ranker folds the user in, a sequential
  ranker reads the sequence; any other ranker scores from training rows.
- **An item added online enters the index** (:meth:`TwoStageServable.add_item`, with its
  retriever vector): the next batch can retrieve it. A ranker trained before the item
  existed cannot score it, so its score is its retrieval score mapped onto the ranker's
  scale over the same candidates (matching mean and spread): a documented stand-in until
  the ranker is retrained.
- Seen items (training and online) are excluded by the index itself, so N candidates
  are N unseen items.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch

from workbench.models.ease import EASE
from workbench.models.two_stage import TwoStage, item_embeddings, user_embeddings
from workbench.serving.adapters import Recommendation, ServableModel


class DuplicateItem(ValueError):
    """An item added online whose id is already in the catalogue (HTTP 409)."""


class TwoStageServable(ServableModel):
    """A fitted TwoStage behind the serving protocol (see the module docstring)."""

    def __init__(self, model: TwoStage, *, version: str | None = None, state=None) -> None:
        if not isinstance(model, TwoStage):
            raise TypeError(f"TwoStageServable serves a TwoStage model, got {type(model).__name__}")
        super().__init__(model, version=version, state=state)
        self.index = model.index_.copy()  # items added online go here; the fitted model stays as trained
        self._item_vectors = torch.as_tensor(item_embeddings(model.retriever))  # (n_items, d), for new users
        self._new_ids: list[int] = []  # external ids of items added online: index n_items + position
        self._index_lock = threading.Lock()  # faiss indexes are not safe to add to while searched
        self._retriever_gram = _gram(model.retriever)
        self._ranker_gram = _gram(model.ranker)

    # -- online changes ------------------------------------------------------------------

    def add_item(self, item_id: int, vector) -> int:
        """Add a new item with its retriever ``vector`` (d,) to the index, retrievable
        by the next batch; returns its item index. A known id is a :class:`DuplicateItem`;
        a vector of another dimension, or NaN/infinite once float32, a ``ValueError``."""
        item_id = int(item_id)
        with self._index_lock:  # the check too: two concurrent adds of one id add it once
            if item_id in self.items or item_id in self._new_ids:
                raise DuplicateItem(f"item {item_id} is already in the catalogue")
            index = int(self.index.add(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0])
            self._new_ids.append(item_id)
        return index

    @property
    def catalogue_size(self) -> int:
        """Items the index holds: the trained catalogue plus those added online."""
        return len(self.index)

    def _update(self, user_id: int, history: np.ndarray):
        """The user's new query vector: iALS fold-in over the history, else None."""
        known = history[history < self.n_items]
        if self._retriever_gram is None or not len(known):
            return None
        return _fold_in(self.model.retriever, self._retriever_gram, known)

    # -- answering -----------------------------------------------------------------------

    def recommend_batch(self, requests: Sequence[tuple[int, int]]) -> list[Recommendation]:
        """``[(user_id, k), ...]`` -> one answer each: one index search for the batch
        (``max(candidates, k)`` per user, history excluded), one ranker call on them."""
        users_all = [int(user) for user, _ in requests]
        rows = self._rows(users_all)
        view = dict(zip(users_all, self.state.read(users_all)))
        out = [
            None if row >= 0 or view[user] is not None else self.cold_start(user, k)
            for (user, k), row in zip(requests, rows)
        ]
        known = [i for i, answer in enumerate(out) if answer is None]
        if not known:
            return out
        users, rows = [users_all[i] for i in known], rows[known]
        with self._lock, self._viewing(view):
            histories = [self._history(u, int(r)) for u, r in zip(users, rows)]
            versions = [view[u].updates if view[u] is not None else 0 for u in users]
            vectors = [view[u].vector if view[u] is not None else None for u in users]
        queries = self._queries(rows, histories, vectors)  # (B, d)
        with self._index_lock:
            k_max = min(max(requests[i][1] for i in known), len(self.index))
            n = min(max(self.model.config.candidates, k_max), len(self.index))
            found, retrieved = self.index.search(queries, n, exclude=histories)  # (B, N) each
        ranked = self._rank(rows, histories, found, retrieved)  # (B, N)
        val, pos = torch.topk(ranked, k_max, dim=1)  # (B, k_max)
        idx = np.take_along_axis(found, pos.numpy(), axis=1)  # (B, k_max)
        scores = val.numpy().astype(float)
        filled = np.isfinite(scores) & (idx >= 0)
        ids = np.full(idx.shape, -1, dtype=np.int64)
        ids[filled] = self._ids(idx[filled])  # one id lookup for the whole batch
        for b, i in enumerate(known):
            k = requests[i][1]
            keep = filled[b, :k]
            out[i] = Recommendation(
                users[b],
                tuple(ids[b, :k][keep].tolist()),
                tuple(scores[b, :k][keep].tolist()),
                False,
                self.version,
                versions[b],
            )
        return out

    def _ids(self, index: np.ndarray) -> np.ndarray:
        """Item indices (trained or added online) -> external item ids."""
        old = index < self.n_items
        ids = np.empty(len(index), dtype=np.int64)
        ids[old] = self.items.ids(index[old])
        ids[~old] = [self._new_ids[j - self.n_items] for j in index[~old]]
        return ids

    def _queries(self, rows: np.ndarray, histories: list[np.ndarray], vectors: list) -> np.ndarray:
        """(B, d) retriever query vectors: the folded-in one, the trained one, or the
        mean of the history's item vectors for a user first seen online."""
        out = np.empty((len(rows), self.index.dim), dtype=np.float32)
        trained = rows >= 0
        if trained.any():
            out[trained] = user_embeddings(self.model.retriever, rows[trained])
        for b, (row, history, vector) in enumerate(zip(rows, histories, vectors)):
            if vector is not None:
                out[b] = _with_bias(self.model.retriever, np.asarray(vector, dtype=np.float32))
            elif row < 0:
                known = history[history < self.n_items]
                out[b] = self._item_vectors[torch.as_tensor(known)].mean(0).numpy() if len(known) else 0.0
        return out

    def _rank(self, rows, histories, found: np.ndarray, retrieved: np.ndarray) -> torch.Tensor:
        """(B, N) ranker scores of the candidates; items the ranker never saw get their
        retrieval score mapped onto the ranker's scale; -inf for empty slots."""
        fresh = found >= self.n_items
        safe = np.where((found >= 0) & ~fresh, found, 0)
        scores = self._ranker_scores(rows, histories, safe)  # (B, N)
        if fresh.any():
            scores = _calibrated(scores, torch.as_tensor(retrieved), torch.as_tensor(fresh))
        scores[torch.as_tensor(found < 0)] = float("-inf")
        return scores

    def _ranker_scores(self, rows, histories, candidates: np.ndarray) -> torch.Tensor:
        ranker = self.model.ranker
        cols = torch.as_tensor(candidates)
        if isinstance(ranker, EASE):
            weights = ranker.weights_
            rows_out = []
            for history, c in zip(histories, cols):
                h = torch.as_tensor(history[history < self.n_items], device=weights.device)
                rows_out.append(weights[h][:, c.to(weights.device)].sum(0).float().cpu())
            return torch.stack(rows_out)
        if self._ranker_gram is not None:
            vectors = self._ranker_vectors(rows, histories)  # (B, f)
            factors = ranker.item_factors_
            items = factors.index_select(0, cols.to(factors.device).reshape(-1)).view(*cols.shape, -1)  # (B, N, f)
            # (B, N); a multiply and sum, not bmm: torch's CPU bmm of (B, N, f) by (B, f, 1) ran 6x slower
            return (items * vectors[:, None, :]).sum(-1).float().cpu()
        if hasattr(ranker, "score_sequences"):
            full = ranker.score_sequences([h[h < self.n_items] for h in histories]).float().cpu()
        else:
            full = torch.as_tensor(self._popularity, dtype=torch.float32).repeat(len(rows), 1)
            if (rows >= 0).any():
                full[torch.as_tensor(rows >= 0)] = ranker.score(rows[rows >= 0]).float().cpu()
        return torch.gather(full, 1, cols)

    def _ranker_vectors(self, rows: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        """(B, f) iALS ranker vectors: trained ones where the history is the training one,
        folded in from the current history where it grew online."""
        ranker, seen = self.model.ranker, self.model.seen
        trained_length = np.where(rows >= 0, seen.indptr[rows + 1] - seen.indptr[np.maximum(rows, 0)], -1)
        unchanged = (rows >= 0) & (np.array([len(h) for h in histories]) == trained_length)
        vectors = ranker.user_factors_[torch.as_tensor(np.maximum(rows, 0), device=ranker.user_factors_.device)]
        for b in np.flatnonzero(~unchanged):
            vectors[b] = _fold_in(ranker, self._ranker_gram, histories[b][histories[b] < self.n_items])
        return vectors


def _gram(model) -> torch.Tensor | None:
    """``Y^T Y + reg I`` of an iALS model (fold-in), None for any other."""
    if not (hasattr(model, "item_factors_") and hasattr(model.config, "alpha")):
        return None
    y = model.item_factors_.float()
    return y.T @ y + model.config.reg * torch.eye(y.shape[1], device=y.device)


def _fold_in(model, gram: torch.Tensor, history: np.ndarray) -> torch.Tensor:
    """iALS user vector for ``history``: ``(G + alpha Y_h^T Y_h) x = (1 + alpha) Y_h^T 1``."""
    y = model.item_factors_[torch.as_tensor(np.unique(history), device=gram.device)]  # (m, f)
    alpha = model.config.alpha
    return torch.linalg.solve(gram + alpha * (y.T @ y), (1.0 + alpha) * y.sum(0))


def _with_bias(model, vector: np.ndarray) -> np.ndarray:
    return np.append(vector, 1.0).astype(np.float32) if hasattr(model, "item_bias_") else vector


def _calibrated(scores: torch.Tensor, retrieved: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """Replace ``fresh`` entries by the retrieval score standardised over the row's other
    candidates and rescaled to the ranker's mean and spread there: (B, N) each."""
    out = scores.clone()
    for b in torch.nonzero(fresh.any(1))[:, 0]:
        old = ~fresh[b] & torch.isfinite(retrieved[b])
        if old.sum() < 2:
            out[b, fresh[b]] = retrieved[b, fresh[b]]
            continue
        r_mean, r_std = retrieved[b, old].mean(), retrieved[b, old].std().clamp_min(1e-6)
        s_mean, s_std = scores[b, old].mean(), scores[b, old].std()
        out[b, fresh[b]] = s_mean + s_std * (retrieved[b, fresh[b]] - r_mean) / r_std
    return out
