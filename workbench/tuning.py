"""Evaluate a model on a split, and choose hyper-parameters by grid search on validation.

The protocol everywhere: fit on ``train``, recommend the top ``k`` unseen items to every
user in ``test`` that the model knows, score with :func:`workbench.metrics.ranking_metrics`.
Test users the model never saw in training get no recommendations and so count as
misses (0), which is the honest reading of "every test user". Grid search is meant for
a validation split carved from training data (:func:`workbench.splits.validation`);
nothing here looks at a test split unless you pass it in.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.metrics import ranking_metrics
from workbench.models.base import Recommender
from workbench.schema import USER, require_columns


def parameter_grid(options: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of ``options`` (name -> values), as a list of dicts."""
    names = list(options)
    return [dict(zip(names, values)) for values in itertools.product(*(options[n] for n in names))]


def evaluate(model: Recommender, train: pd.DataFrame, test: pd.DataFrame, *, k: int = 10) -> dict[str, float]:
    """Fit ``model`` on ``train``, rank for ``test`` users; metrics plus timings.

    Returns every key of :func:`ranking_metrics` (with ``coverage``), ``fit_seconds``
    and ``recommend_seconds`` (wall clock, all test users in one blocked call).
    """
    require_columns(test, [USER], source="evaluate: test")
    if len(test) == 0:
        raise ValueError("evaluate: the test split is empty")
    start = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    users = np.unique(test[USER].to_numpy())
    recs = model.recommend(users[model.users.contains(users)], k=k)
    done = time.perf_counter()
    metrics = ranking_metrics(recs, test, k=k, n_items=len(model.items))
    return {**metrics, "fit_seconds": fitted - start, "recommend_seconds": done - fitted}


def evaluate_all(
    models: Mapping[str, Recommender], train: pd.DataFrame, test: pd.DataFrame, *, k: int = 10, progress: bool = True
) -> pd.DataFrame:
    """:func:`evaluate` every named model (each is fitted in place); one row per model."""
    rows = {name: evaluate(model, train, test, k=k) for name, model in tqdm(models.items(), disable=not progress)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def metric_records(results: pd.DataFrame, k: int) -> dict[str, float]:
    """Flatten an :func:`evaluate_all` table into named scalars for ``runs.record``:
    ``"ndcg@10/EASE"`` for ranking metrics, ``"fit_seconds/EASE"`` for timings."""
    out = {}
    for model, row in results.iterrows():
        for metric, value in row.items():
            name = metric if metric.endswith("_seconds") else f"{metric}@{k}"
            out[f"{name}/{model}"] = float(value)
    return out


#: Microsoft Recommenders' published ml-100k table (README of recommenders-team/recommenders),
#: same protocol; NaN where the issue quoting it gives nDCG only.
PUBLISHED_ML100K = pd.DataFrame(
    {
        "ndcg": [0.475, 0.442, 0.420, 0.396, 0.382],
        "precision": [0.412, 0.388, np.nan, np.nan, 0.331],
        "recall": [0.219, 0.213, np.nan, np.nan, 0.176],
        "map": [0.146, 0.132, np.nan, np.nan, 0.111],
    },
    index=pd.Index(["BiVAE", "BPR", "LightGCN", "NCF", "SAR"], name="model"),
)


def beside_published(results: pd.DataFrame, columns: Sequence[str] = ("ndcg", "precision", "recall", "map")) -> pd.DataFrame:
    """Our results and :data:`PUBLISHED_ML100K` in one table, a ``source`` column
    saying which is which, sorted by nDCG."""
    ours = results[list(columns)].assign(source="workbench")
    theirs = PUBLISHED_ML100K[list(columns)].assign(source="Microsoft Recommenders")
    return pd.concat([ours, theirs]).sort_values(columns[0], ascending=False)


def grid_search(
    make: Callable[..., Recommender],
    options: Mapping[str, Sequence],
    train: pd.DataFrame,
    valid: pd.DataFrame,
    *,
    fixed: Mapping[str, object] | None = None,
    k: int = 10,
    metric: str = "ndcg",
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate ``make(**fixed, **combination)`` for every combination of ``options``.

    ``make`` is a model class (or any callable taking its keyword options). Returns one
    row per combination -- the options, then the metrics of :func:`evaluate` -- sorted
    best ``metric`` first.
    """
    if not options:
        raise ValueError("grid_search: no options to search over")
    rows = []
    for combination in tqdm(parameter_grid(options), desc=getattr(make, "__name__", "grid"), disable=not progress):
        model = make(**dict(fixed or {}), **combination)
        rows.append({**combination, **evaluate(model, train, valid, k=k)})
    table = pd.DataFrame(rows)
    if metric not in table.columns:
        raise ValueError(f"grid_search: unknown metric {metric!r}; choose from {list(table.columns)}")
    return table.sort_values(metric, ascending=False, kind="stable").reset_index(drop=True)


def best_options(table: pd.DataFrame, options: Mapping[str, Sequence] | Sequence[str]) -> dict:
    """The option values of the best row of a :func:`grid_search` table, as plain Python."""
    best = table.iloc[0]
    return {name: best[name].item() if hasattr(best[name], "item") else best[name] for name in options}
