"""The hold-out protocol for top-k lists (notebooks 02 and 03), beside the published table.

- :func:`fit_and_score` / :func:`fit_and_score_all` -- fit on ``train``, recommend the
  top ``k`` unseen items to every user in ``test`` that the model knows, score with
  :func:`workbench.metrics.ranking_metrics`, and time both steps. Test users the model
  never saw in training get no recommendations and so count as misses (0), which is the
  honest reading of "every test user".
- :func:`compare` -- already fitted models, one row each, optionally ranked among
  candidate items only (cold start); users a model does not know are skipped there
  (:func:`workbench.models.validation.topk_metrics`).
- :func:`metric_records`, :data:`PUBLISHED_ML100K`, :func:`beside_published`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.data.matrix import UnknownIdError
from workbench.data.schema import USER, require_columns
from workbench.metrics import ranking_metrics
from workbench.models.base import Recommender
from workbench.models.validation import topk_metrics

#: metrics reported by :func:`compare`
COLUMNS = ("precision", "recall", "ndcg", "map")


def fit_and_score(model: Recommender, train: pd.DataFrame, test: pd.DataFrame, *, k: int = 10) -> dict[str, float]:
    """Fit ``model`` on ``train``, rank for ``test`` users; metrics plus timings.

    Returns every key of :func:`ranking_metrics` (with ``coverage``), ``fit_seconds``
    and ``recommend_seconds`` (wall clock, all test users in one blocked call).
    """
    require_columns(test, [USER], source="fit_and_score: test")
    if len(test) == 0:
        raise ValueError("fit_and_score: the test split is empty")
    start = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    users = np.unique(test[USER].to_numpy())
    recs = model.recommend(users[model.users.contains(users)], k=k)
    done = time.perf_counter()
    metrics = ranking_metrics(recs, test, k=k, n_items=len(model.items))
    return {**metrics, "fit_seconds": fitted - start, "recommend_seconds": done - fitted}


def fit_and_score_all(
    models: Mapping[str, Recommender], train: pd.DataFrame, test: pd.DataFrame, *, k: int = 10, progress: bool = True
) -> pd.DataFrame:
    """:func:`fit_and_score` every named model (each is fitted in place); one row per model."""
    rows = {name: fit_and_score(model, train, test, k=k) for name, model in tqdm(models.items(), disable=not progress)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def metric_records(results: pd.DataFrame, k: int) -> dict[str, float]:
    """Flatten a :func:`fit_and_score_all` table into named scalars for ``runs.record``:
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


def beside_published(
    results: pd.DataFrame, columns: Sequence[str] = ("ndcg", "precision", "recall", "map")
) -> pd.DataFrame:
    """Our results and :data:`PUBLISHED_ML100K` in one table, a ``source`` column
    saying which is which, sorted by nDCG."""
    ours = results[list(columns)].assign(source="workbench")
    theirs = PUBLISHED_ML100K[list(columns)].assign(source="Microsoft Recommenders")
    return pd.concat([ours, theirs]).sort_values(columns[0], ascending=False)


def compare(models: dict[str, Recommender], test: pd.DataFrame, *, k: int = 10, candidates=None) -> pd.DataFrame:
    """One row per named (fitted) model: precision/recall/nDCG/MAP@k on ``test``, ranked
    among ``candidates`` if given; NaN, with a note, where a model cannot score them."""
    rows = []
    for name, model in models.items():
        try:
            m = topk_metrics(model, test, k=k, candidates=candidates)
        except UnknownIdError as err:  # a CF model cannot score never-seen items
            rows.append({"model": name, **dict.fromkeys(COLUMNS, np.nan), "note": f"cannot score: {err}"[:80]})
            continue
        rows.append({"model": name, **{c: m[c] for c in COLUMNS}, "note": ""})
    table = pd.DataFrame(rows).set_index("model")
    table.columns = [f"{c}@{k}" if c in COLUMNS else c for c in table.columns]
    return table
