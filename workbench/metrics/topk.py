"""Metrics of top-k recommendation lists, vectorised over users.

They take the top-k recommendations as a DataFrame (``user_id``, ``item_id``,
``rank``; rank 1 is best) and the test interactions (``user_id``, ``item_id``). Every
user present in ``test`` is evaluated; a test user with no recommendation scores 0.
Relevance is binary (any test interaction is relevant). Definitions follow Microsoft
Recommenders so results compare with its benchmark table:

- precision@k = hits in top k / k
- recall@k = hits in top k / |relevant|
- nDCG@k = sum over hits 1/log2(rank+1) / sum_{i<=min(|relevant|,k)} 1/log2(i+1)
- MAP@k = sum over hits of precision at the hit's rank / |relevant|
- hit rate@k = 1 if any hit; MRR@k = 1 / rank of the first hit (0 if none)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data.schema import ITEM, RANK, USER, SchemaError, require_columns

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


def discount(ranks: np.ndarray) -> np.ndarray:
    """The DCG gain of a relevant item at 1-based ``ranks``: ``1 / log2(rank + 1)``."""
    return 1.0 / np.log2(np.asarray(ranks, dtype=np.float64) + 1.0)


def _per_user(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per test user: n_relevant, hits, dcg, idcg, ap_sum, first_hit_rank."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    require_columns(recs, [USER, ITEM, RANK], source="recommendations")
    require_columns(test, [USER, ITEM], source="test interactions")
    top = recs.loc[recs[RANK] <= k, [USER, ITEM, RANK]]
    if top.duplicated([USER, ITEM]).any():
        raise SchemaError("recommendations: an item is recommended twice to the same user")
    if top.duplicated([USER, RANK]).any():
        raise SchemaError("recommendations: two items share the same rank for one user")
    truth = test[[USER, ITEM]].drop_duplicates()
    n_rel = truth.groupby(USER).size().rename("n_relevant")
    hits = top.merge(truth, on=[USER, ITEM], how="inner").sort_values([USER, RANK])
    hits["hit_no"] = hits.groupby(USER).cumcount() + 1
    ranks = hits[RANK].to_numpy(dtype=np.float64)
    hits["gain"] = discount(ranks)
    hits["prec_at_hit"] = hits["hit_no"].to_numpy() / ranks
    agg = hits.groupby(USER).agg(
        hits=("gain", "size"), dcg=("gain", "sum"), ap_sum=("prec_at_hit", "sum"), first_hit=(RANK, "min")
    )
    out = n_rel.to_frame().join(agg, how="left").fillna({"hits": 0, "dcg": 0.0, "ap_sum": 0.0})
    discounts = np.cumsum(discount(np.arange(1, k + 1)))  # idcg for 1..k relevant
    out["idcg"] = discounts[np.minimum(out["n_relevant"].to_numpy(), k) - 1]
    return out


def per_user(recs: pd.DataFrame, test: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Every ranking metric per test user (index ``user_id``); for breakdowns by group."""
    u = _per_user(recs, test, k)
    first = u["first_hit"].to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "precision": u["hits"] / k,
            "recall": u["hits"] / u["n_relevant"],
            "ndcg": u["dcg"] / u["idcg"],
            "map": u["ap_sum"] / u["n_relevant"],
            "hit_rate": (u["hits"] > 0).astype(np.float64),
            "mrr": np.where(np.isnan(first), 0.0, 1.0 / first),
        },
        index=u.index,
    )


def ranking_metrics(
    recs: pd.DataFrame, test: pd.DataFrame, k: int = 10, *, n_items: int | None = None
) -> dict[str, float]:
    """All ranking metrics at once, averaged over test users.

    Keys: ``precision``, ``recall``, ``ndcg``, ``map``, ``hit_rate``, ``mrr`` and, when
    ``n_items`` (catalogue size) is given, ``coverage``.
    """
    means = per_user(recs, test, k).mean()
    out = {name: float(means[name]) for name in RANKING_METRICS}
    if n_items is not None:
        out["coverage"] = coverage(recs, n_items, k)
    return out


def _metric(name: str):
    def fn(recs: pd.DataFrame, test: pd.DataFrame, k: int = 10) -> float:
        return float(per_user(recs, test, k)[name].mean())

    fn.__name__ = f"{name}_at_k"
    fn.__doc__ = f"Mean {name}@k over test users (see module docstring for the definition)."
    return fn


precision_at_k = _metric("precision")
recall_at_k = _metric("recall")
ndcg_at_k = _metric("ndcg")
map_at_k = _metric("map")
hit_rate_at_k = _metric("hit_rate")
mrr_at_k = _metric("mrr")


def coverage(recs: pd.DataFrame, n_items: int, k: int = 10) -> float:
    """Catalogue coverage: distinct items in anyone's top k / catalogue size."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    return float(recs.loc[recs[RANK] <= k, ITEM].nunique() / n_items)
