"""Choosing among settings: every combination of a grid, grid search on validation,
the best options of a search."""

from __future__ import annotations

import functools

import pytest

from workbench import models
from workbench.data import splits
from workbench.data.synthetic import config_for, generate
from workbench.evaluation.search import best_options, grid_search, parameter_grid
from workbench.models import EASE


@pytest.fixture(scope="module")
def fit_valid():
    df = generate(config_for("tiny", seed=0))[0]
    train, _ = splits.stratified(df, 0.75, seed=42)
    return splits.validation(train)


def test_parameter_grid():
    assert parameter_grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]


def test_grid_search_sorts_best_first_and_names_the_options(fit_valid):
    table = grid_search(EASE, {"reg": [1.0, 50.0, 1e6]}, *fit_valid, fixed={"device": "cpu"}, progress=False)
    assert table.columns[0] == "reg" and {"ndcg", "precision", "recall", "map", "fit_seconds"} <= set(table.columns)
    assert table["ndcg"].is_monotonic_decreasing and len(table) == 3
    assert best_options(table, ["reg"]) == {"reg": table["reg"].iloc[0]}
    with pytest.raises(ValueError, match="unknown metric"):
        grid_search(EASE, {"reg": [1.0]}, *fit_valid, metric="auc", progress=False)
    with pytest.raises(TypeError):  # a misspelt option is not swallowed
        grid_search(EASE, {"regularisation": [1.0]}, *fit_valid, progress=False)


def test_grid_search_takes_a_registry_builder(fit_valid):
    make = functools.partial(models.build, "ease")
    table = grid_search(make, {"reg": [1.0, 1e6]}, *fit_valid, fixed={"device": "cpu"}, progress=False)
    direct = grid_search(EASE, {"reg": [1.0, 1e6]}, *fit_valid, fixed={"device": "cpu"}, progress=False)
    assert table[["reg", "ndcg"]].equals(direct[["reg", "ndcg"]])
