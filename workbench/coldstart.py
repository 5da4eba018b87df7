"""Cold-start items: a split that holds items out entirely, ranking among candidates, and
the popularity-of-genre baseline.

:func:`cold_split` picks a share of the items at random and moves *all* their
interactions to the test part: no model sees them in training, so collaborative
filtering has no column for them, while a text model can still embed their text.
:func:`evaluate` ranks, for every test user, only a candidate set (the cold items) and
computes the usual ranking metrics (:mod:`workbench.metrics`) against the user's test
interactions. With ``candidates=None`` it is the warm protocol over the model's whole
catalogue, seen items excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench.matrix import IndexMap, UnknownIdError, interaction_matrix
from workbench.metrics import ranking_metrics
from workbench.models.base import Recommender, to_frame, topk_blocked
from workbench.schema import ITEM, USER, require_columns

#: metrics reported by :func:`compare`
COLUMNS = ("precision", "recall", "ndcg", "map")


@dataclass(frozen=True)
class ColdSplit:
    """``train``: interactions of warm items; ``test``: every interaction with a cold item
    by a user who has training history; ``cold_items``: the held-out item ids (sorted)."""

    train: pd.DataFrame
    test: pd.DataFrame
    cold_items: np.ndarray
    dropped_test_rows: int  # cold interactions of users left with no training history


def cold_split(interactions: pd.DataFrame, fraction: float = 0.1, seed: int = 0) -> ColdSplit:
    """Hold out ``round(fraction * n_items)`` of the interacted items with all their rows."""
    require_columns(interactions, [USER, ITEM], source="cold_split")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    items = np.unique(interactions[ITEM].to_numpy())
    n_cold = max(1, int(round(fraction * len(items))))
    if n_cold >= len(items):
        raise ValueError(f"fraction={fraction} leaves no warm items among {len(items)}")
    cold = np.sort(np.random.default_rng(seed).choice(items, size=n_cold, replace=False))
    is_cold = interactions[ITEM].isin(cold).to_numpy()
    train, test = interactions[~is_cold], interactions[is_cold]
    known = test[USER].isin(train[USER]).to_numpy()
    return ColdSplit(train, test[known], cold, int((~known).sum()))


def recommend_among(
    model: Recommender, user_ids, k: int = 10, *, candidates=None, exclude_seen: bool = True
) -> pd.DataFrame:
    """Top-k of ``candidates`` (item ids; None = the whole catalogue) for each user id.

    Raises :class:`~workbench.matrix.UnknownIdError` if the model cannot score some
    candidate (e.g. a CF model asked about an item it never saw).
    """
    model._check_fitted()
    user_ids = np.asarray(user_ids, dtype=np.int64).ravel()
    rows = model.users.index(user_ids)
    if candidates is None:
        cols, catalogue = None, model.items
    else:
        catalogue = IndexMap.from_ids(candidates, kind="item")
        cols = model.items.index(catalogue.ids_)
    n = len(catalogue)
    exclude = None
    if exclude_seen:
        exclude = model.seen if cols is None else sp.csr_matrix(model.seen[:, cols])

    def scores(block: np.ndarray) -> torch.Tensor:
        s = model.score(block)  # (B, n_items)
        return s if cols is None else s[:, torch.as_tensor(cols, device=s.device)]

    idx, val = topk_blocked(scores, rows, min(k, n), n_items=n, exclude=exclude)
    return to_frame(user_ids, idx, val, catalogue)


def evaluate(model: Recommender, test: pd.DataFrame, *, k: int = 10, candidates=None) -> dict[str, float]:
    """Ranking metrics@k of ``model`` on ``test`` (see :func:`recommend_among`).

    Test users the model has never seen are skipped; with ``candidates`` only test rows
    whose item is a candidate count as relevant. ``users`` in the result counts who was
    evaluated.
    """
    require_columns(test, [USER, ITEM], source="evaluate")
    test = test[model.users.contains(test[USER].to_numpy())]
    if candidates is not None:
        test = test[test[ITEM].isin(np.asarray(candidates))]
    users = np.unique(test[USER].to_numpy())
    if len(users) == 0:
        raise ValueError("evaluate: no test user is known to the model")
    recs = recommend_among(model, users, k, candidates=candidates)
    return {**ranking_metrics(recs, test, k), "users": int(len(users))}


def compare(models: dict[str, Recommender], test: pd.DataFrame, *, k: int = 10, candidates=None) -> pd.DataFrame:
    """One row per named model: precision/recall/nDCG/MAP@k; NaN where it cannot score."""
    rows = []
    for name, model in models.items():
        try:
            m = evaluate(model, test, k=k, candidates=candidates)
        except UnknownIdError as err:  # a CF model cannot score never-seen items
            rows.append({"model": name, **{c: np.nan for c in COLUMNS}, "note": f"cannot score: {err}"[:80]})
            continue
        rows.append({"model": name, **{c: m[c] for c in COLUMNS}, "note": ""})
    table = pd.DataFrame(rows).set_index("model")
    table.columns = [f"{c}@{k}" if c in COLUMNS else c for c in table.columns]
    return table


class GenrePopularity(Recommender):
    """Score of an item = mean over its genres of the genre's popularity (training
    interactions per training item of that genre); the same for every user.

    Needs only metadata, so it scores cold items: the baseline for cold start.
    """

    def __init__(self, items: pd.DataFrame) -> None:
        require_columns(items, [ITEM, "genres"], source="GenrePopularity items")
        self.catalogue = items.reset_index(drop=True)
        self.config = None

    def fit(self, interactions: pd.DataFrame) -> "GenrePopularity":
        require_columns(interactions, [USER, ITEM], source="GenrePopularity.fit")
        self.items = IndexMap.from_ids(self.catalogue[ITEM], kind="item")
        self.users = IndexMap.from_ids(interactions[USER], kind="user")
        self.seen = interaction_matrix(interactions, self.users, self.items)
        self.seen.data[:] = 1.0
        self._fit(self.seen)
        return self

    def _fit(self, matrix: sp.csr_matrix) -> None:
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
