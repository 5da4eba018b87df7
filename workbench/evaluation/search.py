"""Choosing among settings: grid search on a validation split (over
:func:`~workbench.evaluation.grid.parameter_grid`), the best options of a search, and the
quality-cost Pareto front.

Grid search is meant for a validation split carved from training data
(:func:`workbench.data.splits.validation`); nothing here looks at a test split unless
you pass it in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.evaluation.grid import parameter_grid
from workbench.evaluation.topk import fit_and_score
from workbench.models.base import Recommender


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
    """Fit and score ``make(**fixed, **combination)`` for every combination of ``options``.

    ``make`` is a model class (or any callable taking its keyword options, such as
    ``functools.partial(models.build, "EASE")``). Returns one row per combination -- the
    options, then the metrics of :func:`~workbench.evaluation.topk.fit_and_score` -- sorted
    best ``metric`` first.
    """
    if not options:
        raise ValueError("grid_search: no options to search over")
    rows = []
    for combination in tqdm(parameter_grid(options), desc=getattr(make, "__name__", "grid"), disable=not progress):
        model = make(**dict(fixed or {}), **combination)
        rows.append({**combination, **fit_and_score(model, train, valid, k=k)})
    table = pd.DataFrame(rows)
    if metric not in table.columns:
        raise ValueError(f"grid_search: unknown metric {metric!r}; choose from {list(table.columns)}")
    return table.sort_values(metric, ascending=False, kind="stable").reset_index(drop=True)


def best_options(table: pd.DataFrame, options: Mapping[str, Sequence] | Sequence[str]) -> dict:
    """The option values of the best row of a :func:`grid_search` table, as plain Python."""
    best = table.iloc[0]
    return {name: best[name].item() if hasattr(best[name], "item") else best[name] for name in options}


def pareto_front(frame: pd.DataFrame, *, cost: str, quality: str) -> np.ndarray:
    """Boolean mask of the rows no other row beats: none is at least as cheap (lower
    ``cost``) and at least as good (higher ``quality``) while strictly better in one."""
    x, y = frame[cost].to_numpy(dtype=float), frame[quality].to_numpy(dtype=float)
    better_or_equal = (x[None, :] <= x[:, None]) & (y[None, :] >= y[:, None])
    strictly = (x[None, :] < x[:, None]) | (y[None, :] > y[:, None])
    return ~(better_or_equal & strictly).any(axis=1)
