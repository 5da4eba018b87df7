"""Tuning: evaluation on a split, grid search on validation, bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench import splits
from workbench.models import EASE, Popularity
from workbench.synthetic import config_for, generate
from workbench.tuning import best_options, evaluate, grid_search, parameter_grid


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


def test_evaluate_counts_unknown_test_users_and_items_as_misses():
    train = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [1, 2, 2, 3, 1], "rating": 1.0})
    test = pd.DataFrame({"user_id": [1, 2, 9], "item_id": [3, 1, 1]})  # user 9 never trained
    full = evaluate(Popularity(), train, test, k=1)
    assert full["hit_rate"] == pytest.approx(2 / 3)
    only_new_items = pd.DataFrame({"user_id": [1], "item_id": [42]})  # an item unseen in training
    assert evaluate(Popularity(), train, only_new_items, k=1)["ndcg"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        evaluate(Popularity(), train, test.iloc[:0], k=1)


def test_evaluate_all_metric_records_and_published_table(fit_valid):
    from workbench.tuning import PUBLISHED_ML100K, beside_published, evaluate_all, metric_records

    results = evaluate_all({"Popularity": Popularity(), "EASE": EASE(device="cpu")}, *fit_valid, progress=False)
    assert results.index.tolist() == ["Popularity", "EASE"] and results.index.name == "model"
    records = metric_records(results, k=10)
    assert records["ndcg@10/EASE"] == results.loc["EASE", "ndcg"]
    assert "fit_seconds/Popularity" in records and len(records) == 2 * results.shape[1]
    table = beside_published(results)
    assert len(table) == 2 + len(PUBLISHED_ML100K) and table["ndcg"].is_monotonic_decreasing
    assert set(table["source"]) == {"workbench", "Microsoft Recommenders"}
