"""Nearest items by title, one column per model (notebooks 02 and 03): what "similar"
means to each model, in words a reader can judge."""

from __future__ import annotations

import pandas as pd

from workbench.models.base import Recommender


def similar_titles(
    models: dict[str, Recommender], item_ids: list[int], titles: pd.Series, *, k: int = 5
) -> pd.DataFrame:
    """Each model's ``k`` most similar items to each query, by title.

    Rows: (query title, rank 1..k); columns: model names. ``titles`` maps item id ->
    title. Query ids a model never saw in training are left out of its column.
    """
    columns = {}
    for name, model in models.items():
        known = [i for i in item_ids if i in model.items]
        sims = model.similar_items(known, k=k)
        columns[name] = pd.Series(
            sims["similar_item_id"].map(titles).to_numpy(),
            index=pd.MultiIndex.from_arrays([sims["item_id"].map(titles), sims["rank"]], names=["query", "rank"]),
        )
    return pd.DataFrame(columns)
