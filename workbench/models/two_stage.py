"""Retrieve, then re-rank: a cheap embedding model and an index pick ``candidates`` items
per user, a heavier ranker scores only those.

    TwoStage(retriever=IALS(), ranker=EASE(), candidates=200,
             index=IndexConfig(backend="hnsw", ef_search=256))

The retriever is any model with user and item embeddings (iALS and BPR factors -- BPR's
item bias enters as one more dimension --, the text models' user and item vectors); its
item embeddings go into a :mod:`workbench.retrieval` index and each user's embedding is
the query, with the user's seen items excluded by the index. The ranker is any
recommender fitted on the same interactions (EASE, SASRec, BERT4Rec, the two-tower):
EASE scores the candidates from its weight columns alone (``|history| x N`` entries),
iALS and BPR by N dot products, any other ranker through its full ``score`` row, of which
the candidates are kept.
``recommend`` asks the index for ``max(candidates, k)`` items, so ``k`` up to the
catalogue still returns ``k`` items; when that covers the catalogue, the ranker ranks
every item itself (no retrieval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench.models.base import Recommender, _check_k, to_frame
from workbench.models.config import check_options
from workbench.models.ease import EASE
from workbench.models.ials import IALS
from workbench.retrieval import IndexConfig, ItemIndex, build_index

#: the default index: HNSW with knobs that keep recall@10 high on catalogues up to 10^6
DEFAULT_INDEX = IndexConfig(backend="hnsw", m=32, ef_construction=200, ef_search=256)


@dataclass(frozen=True, kw_only=True)
class TwoStageConfig:
    """``candidates``: items retrieved per user (N); ``index``: the retrieval index's
    backend, metric and knobs."""

    candidates: int = 200
    index: IndexConfig = DEFAULT_INDEX

    def __post_init__(self) -> None:
        check_options(self, positive=("candidates",))
        if not isinstance(self.index, IndexConfig):
            raise TypeError(f"TwoStageConfig: index must be an IndexConfig, got {type(self.index).__name__}")


def item_embeddings(model: Recommender) -> np.ndarray:
    """(n_items, d) item vectors of a fitted embedding model (see the module docstring)."""
    if hasattr(model, "item_vectors_") and hasattr(model, "user_vectors"):
        return torch.as_tensor(model.item_vectors_).float().cpu().numpy()
    if hasattr(model, "item_factors_") and hasattr(model, "user_factors_"):
        items = model.item_factors_.float().cpu()
        if hasattr(model, "item_bias_"):
            items = torch.cat([items, model.item_bias_.float().cpu()[:, None]], dim=1)  # (n_items, f + 1)
        return items.numpy()
    raise TypeError(
        f"{type(model).__name__} has no user and item embeddings to retrieve with; "
        "use IALS, BPR, FrozenText or TwoTower as the retriever"
    )


def user_embeddings(model: Recommender, rows: np.ndarray) -> np.ndarray:
    """(B,) user rows -> (B, d) query vectors matching :func:`item_embeddings`."""
    if hasattr(model, "item_vectors_") and hasattr(model, "user_vectors"):
        return torch.as_tensor(model.user_vectors(rows)).float().cpu().numpy()
    users = model.user_factors_[torch.as_tensor(rows, device=model.user_factors_.device)].float().cpu()
    if hasattr(model, "item_bias_"):
        users = torch.cat([users, torch.ones(len(users), 1)], dim=1)  # (B, f + 1): the bias term
    return users.numpy()


def candidate_scores(ranker: Recommender, rows: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
    """The ranker's scores of each row's candidates: (B,) rows, (B, N) item indices
    (-1 = none) -> (B, N) float CPU tensor, -inf where there is no candidate."""
    safe = np.where(candidates >= 0, candidates, 0)
    weights = getattr(ranker, "weights_", None)
    if isinstance(ranker, EASE) and isinstance(weights, torch.Tensor):
        seen = ranker.seen
        out = torch.empty(candidates.shape)
        for b, row in enumerate(rows):  # score_u(c) = sum over the user's items i of W[i, c]
            history = torch.as_tensor(seen.indices[seen.indptr[row] : seen.indptr[row + 1]], device=weights.device)
            cols = torch.as_tensor(safe[b], device=weights.device)
            out[b] = weights[history][:, cols].sum(0).float().cpu()
    elif hasattr(ranker, "item_factors_") and hasattr(ranker, "user_factors_"):  # iALS, BPR: N dot products
        device = ranker.item_factors_.device
        cols = torch.as_tensor(safe, device=device)
        users = ranker.user_factors_[torch.as_tensor(rows, device=device)]  # (B, f)
        out = torch.einsum("bf,bnf->bn", users, ranker.item_factors_[cols])  # (B, N)
        if hasattr(ranker, "item_bias_"):
            out = out + ranker.item_bias_[cols]
        out = out.float().cpu()
    else:
        full = torch.as_tensor(ranker.score(rows)).float().cpu()  # (B, n_items)
        out = torch.gather(full, 1, torch.as_tensor(safe))
    out[torch.as_tensor(candidates < 0)] = float("-inf")
    return out


class TwoStage(Recommender):
    """Retriever + index for candidates, ranker for their order; see the module docstring."""

    config_class = TwoStageConfig

    def __init__(self, *, retriever: Recommender | None = None, ranker: Recommender | None = None, **options) -> None:
        super().__init__(**options)
        self.retriever = retriever if retriever is not None else IALS()
        self.ranker = ranker if ranker is not None else EASE()

    def __repr__(self) -> str:
        return f"TwoStage(retriever={self.retriever!r}, ranker={self.ranker!r}, {self._options_repr()})"

    def fit(
        self,
        interactions: pd.DataFrame,
        *,
        progress: bool = False,
        parts_fitted: bool = False,
        index: ItemIndex | None = None,
    ) -> TwoStage:
        """Fit the retriever and the ranker on ``interactions``, then index the items.
        ``parts_fitted=True``: both are already fitted on these interactions; ``index``:
        an index already built over the retriever's item embeddings (used as it is)."""
        if not parts_fitted:
            self.retriever.fit(interactions, progress=progress)
            self.ranker.fit(interactions, progress=progress)
        self._given_index = index
        super().fit(interactions)
        for part in (self.retriever, self.ranker):
            if not np.array_equal(part.items.ids_, self.items.ids_):
                raise ValueError(f"TwoStage: {type(part).__name__} indexes other items than the interactions hold")
        return self

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        given, self._given_index = getattr(self, "_given_index", None), None
        if given is not None and (
            len(given) != matrix.shape[1] or given.dim != item_embeddings(self.retriever).shape[1]
        ):
            raise ValueError(f"TwoStage: the given index holds {len(given)} x {given.dim}, not the retriever's items")
        self.index_: ItemIndex = (
            given if given is not None else build_index(item_embeddings(self.retriever), self.config.index)
        )

    def retrieve(self, rows: np.ndarray, n: int, *, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(B,) user rows -> the index's top ``n`` ``(item indices, retrieval scores)``,
        each (B, n), seen items excluded (-1 where fewer are left)."""
        exclude = self.seen[rows] if exclude_seen else None
        return self.index_.search(user_embeddings(self.retriever, rows), min(n, len(self.index_)), exclude=exclude)

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items): the ranker's scores on the retrieved
        candidates; every other item scores below the row's lowest candidate."""
        rows = np.asarray(user_index, dtype=np.int64)
        if self.config.candidates >= len(self.items):  # every item is a candidate
            return torch.as_tensor(self.ranker.score(rows)).float().cpu()
        candidates, _ = self.retrieve(rows, self.config.candidates)
        ranked = candidate_scores(self.ranker, rows, candidates)  # (B, N)
        finite = torch.where(torch.isfinite(ranked), ranked, torch.inf)
        floor = torch.where(torch.isfinite(finite.min(1).values), finite.min(1).values - 1.0, 0.0)  # (B,)
        out = floor[:, None].repeat(1, len(self.items))  # (B, n_items)
        keep = torch.as_tensor(candidates >= 0)
        out[torch.nonzero(keep)[:, 0], torch.as_tensor(candidates[keep.numpy()])] = ranked[keep]
        return out

    def recommend(
        self, user_ids, k: int = 10, *, exclude_seen: bool = True, candidates=None, block_size: int | None = None
    ) -> pd.DataFrame:
        """As :meth:`Recommender.recommend`; without ``candidates`` only the retrieved
        ``max(config.candidates, k)`` items per user are scored by the ranker."""
        if candidates is not None:
            return super().recommend(user_ids, k, exclude_seen=exclude_seen, candidates=candidates)
        self._check_fitted()
        _check_k(k, len(self.items))
        user_ids = np.asarray(user_ids, dtype=np.int64).ravel()
        rows = self.users.index(user_ids)
        if max(self.config.candidates, k) >= len(self.items):  # every item is a candidate: no retrieval
            return self.ranker.recommend(user_ids, k, exclude_seen=exclude_seen)
        found, _ = self.retrieve(rows, max(self.config.candidates, k), exclude_seen=exclude_seen)
        ranked = candidate_scores(self.ranker, rows, found)  # (B, N)
        val, pos = torch.topk(ranked, k, dim=1)  # (B, k)
        idx = np.take_along_axis(found, pos.numpy(), axis=1)
        idx[torch.isneginf(val).numpy()] = -1
        return to_frame(user_ids, idx, val.numpy(), self.items)
