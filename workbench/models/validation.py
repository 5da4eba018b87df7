"""How a fitted model scores itself on held-out interactions while it fits: the top-k
metrics behind early stopping (the two-tower) and fusion weights (the hybrid).

The evaluation protocols report the same numbers through :func:`topk_metrics`, so a
model is chosen on validation exactly as it is later measured on test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data.schema import ITEM, USER, require_columns
from workbench.metrics import ranking_metrics
from workbench.models.base import Recommender


def topk_metrics(model: Recommender, test: pd.DataFrame, *, k: int = 10, candidates=None) -> dict[str, float]:
    """Ranking metrics@k (:func:`workbench.metrics.ranking_metrics`) of ``model``'s top-k
    lists for the ``test`` users it knows, ranked among ``candidates`` (item ids; None:
    the model's whole catalogue), training items excluded.

    Test users the model has never seen are skipped; with ``candidates`` only test rows
    whose item is a candidate count as relevant. ``users`` in the result counts who was
    scored.
    """
    require_columns(test, [USER, ITEM], source="topk_metrics")
    test = test[model.users.contains(test[USER].to_numpy())]
    if candidates is not None:
        test = test[test[ITEM].isin(np.asarray(candidates))]
    users = np.unique(test[USER].to_numpy())
    if len(users) == 0:
        raise ValueError("topk_metrics: no test user is known to the model")
    recs = model.recommend(users, min(k, len(model.items)) if candidates is None else k, candidates=candidates)
    return {**ranking_metrics(recs, test, k), "users": len(users)}
