"""The top-k hold-out protocol: fit and score on a split, unknown users and items as
misses, the published table, and comparing fitted models among cold candidates.
Grid search is tested in tests/evaluation/test_search.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data import datasets, splits
from workbench.data.synthetic import config_for, generate
from workbench.evaluation.topk import compare, fit_and_score
from workbench.models import EASE, GenrePopularity, Popularity


@pytest.fixture(scope="module")
def fit_valid():
    df = generate(config_for("tiny", seed=0))[0]
    train, _ = splits.stratified(df, 0.75, seed=42)
    return splits.validation(train)


def test_fit_and_score_counts_unknown_test_users_and_items_as_misses():
    train = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [1, 2, 2, 3, 1], "rating": 1.0})
    test = pd.DataFrame({"user_id": [1, 2, 9], "item_id": [3, 1, 1]})  # user 9 never trained
    full = fit_and_score(Popularity(), train, test, k=1)
    assert full["hit_rate"] == pytest.approx(2 / 3)
    only_new_items = pd.DataFrame({"user_id": [1], "item_id": [42]})  # an item unseen in training
    assert fit_and_score(Popularity(), train, only_new_items, k=1)["ndcg"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        fit_and_score(Popularity(), train, test.iloc[:0], k=1)


def test_fit_and_score_all_metric_records_and_published_table(fit_valid):
    from workbench.evaluation.topk import PUBLISHED_ML100K, beside_published, fit_and_score_all, metric_records

    results = fit_and_score_all({"Popularity": Popularity(), "EASE": EASE(device="cpu")}, *fit_valid, progress=False)
    assert results.index.tolist() == ["Popularity", "EASE"] and results.index.name == "model"
    records = metric_records(results, k=10)
    assert records["ndcg@10/EASE"] == results.loc["EASE", "ndcg"]
    assert "fit_seconds/Popularity" in records and len(records) == 2 * results.shape[1]
    table = beside_published(results)
    assert len(table) == 2 + len(PUBLISHED_ML100K) and table["ndcg"].is_monotonic_decreasing
    assert set(table["source"]) == {"workbench", "Microsoft Recommenders"}


def test_compare_marks_models_that_cannot_score_cold_items():
    data = datasets.load("synthetic", size="tiny", seed=0)
    split = splits.cold_split(data.interactions, 0.1, seed=0)
    table = compare(
        {"EASE": EASE(device="cpu").fit(split.train), "genre": GenrePopularity(data.items).fit(split.train)},
        split.test,
        candidates=split.cold_items,
    )
    assert list(table.columns) == ["precision@10", "recall@10", "ndcg@10", "map@10", "note"]
    assert np.isnan(table.loc["EASE", "ndcg@10"]) and "cannot score" in table.loc["EASE", "note"]
    assert table.loc["genre", "ndcg@10"] > 0
