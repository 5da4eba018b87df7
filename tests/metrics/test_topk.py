"""Metrics: hand-computed known answers and cross-checks against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm

from workbench import metrics
from workbench.data.schema import SchemaError

ALL = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


def recs(lists: dict[int, list[int]]) -> pd.DataFrame:
    """``{user: [item at rank 1, item at rank 2, ...]}`` -> a recommendations frame."""
    rows = [(u, i, r) for u, items in lists.items() for r, i in enumerate(items, start=1)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


def truth(sets: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(u, i) for u, items in sets.items() for i in items]
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


def D(rank: int) -> float:
    """The DCG discount of a hit at ``rank``."""
    return 1.0 / math.log2(rank + 1)


# --------------------------------------------------------------------------- known answers


def test_perfect_ranking_scores_one():
    test = truth({1: [5, 6, 7], 2: [8]})
    top = recs({1: [7, 5, 6], 2: [8]})

    result = metrics.ranking_metrics(top, test, k=3)

    for name in ("recall", "ndcg", "map", "hit_rate", "mrr"):
        assert result[name] == pytest.approx(1.0), name
    assert result["precision"] == pytest.approx((3 / 3 + 1 / 3) / 2)  # user 2 has one relevant item
    assert metrics.precision_at_k(recs({1: [7, 5, 6]}), truth({1: [5, 6, 7]}), k=3) == 1.0


def test_perfect_top_k_of_a_long_list_is_one():
    """More relevant items than k: the ideal DCG is capped at k, so a perfect top 10 is 1."""
    test = truth({1: list(range(100, 120))})
    result = metrics.ranking_metrics(recs({1: list(range(100, 110))}), test, k=10)
    assert result["ndcg"] == pytest.approx(1.0)
    assert result["precision"] == 1.0
    assert result["recall"] == pytest.approx(0.5)
    assert result["map"] == pytest.approx(10 / 20)  # divided by the 20 relevant, not the 10 hits


def test_no_hits_scores_zero():
    result = metrics.ranking_metrics(recs({1: [1, 2, 3], 2: [4]}), truth({1: [9], 2: [8, 7]}), k=3)
    assert result == dict.fromkeys(ALL, 0.0)


def test_hand_computed_case():
    test = truth({1: [10, 20, 30], 2: [40], 3: [50]})
    top = recs(
        {
            1: [10, 11, 20, 12, 13],  # hits at ranks 1 and 3, 3 relevant
            2: [14, 15, 40],  # a hit at rank 3, only three recommendations
            # user 3 got nothing: counts as 0
            4: [10, 40],  # not a test user: ignored
        }
    )

    per_user = metrics.per_user(top, test, k=5)
    got = metrics.ranking_metrics(top, test, k=5)

    expected_per_user = {
        "precision": [2 / 5, 1 / 5, 0.0],  # divided by k, not by the number recommended
        "recall": [2 / 3, 1.0, 0.0],
        "ndcg": [(D(1) + D(3)) / (D(1) + D(2) + D(3)), D(3) / D(1), 0.0],
        "map": [(1 / 1 + 2 / 3) / 3, (1 / 3) / 1, 0.0],  # precision at each hit / |relevant|
        "hit_rate": [1.0, 1.0, 0.0],
        "mrr": [1.0, 1 / 3, 0.0],
    }
    assert per_user.index.tolist() == [1, 2, 3]
    for name, values in expected_per_user.items():
        assert per_user[name].tolist() == pytest.approx(values), name
        assert got[name] == pytest.approx(sum(values) / 3), name
    assert got["ndcg"] == pytest.approx(((1 + 0.5) / (1 + 1 / math.log2(3) + 0.5) + 0.5) / 3)


def test_no_recommendations_at_all_scores_zero():
    empty = recs({}).astype("int64")
    result = metrics.ranking_metrics(empty, truth({1: [3], 2: [4]}), k=5, n_items=10)
    assert result == {**dict.fromkeys(ALL, 0.0), "coverage": 0.0}


def test_map_divides_by_the_number_relevant():
    top = recs({1: [1, 9, 8, 2]})
    test = truth({1: [1, 2, 3, 4]})
    assert metrics.map_at_k(top, test, k=4) == pytest.approx((1 / 1 + 2 / 4) / 4)
    assert metrics.map_at_k(top, test, k=1) == pytest.approx(1 / 4)  # the second hit is beyond k


def test_ranks_beyond_k_are_ignored():
    top = recs({1: [9, 8, 1]})
    test = truth({1: [1]})
    assert metrics.ranking_metrics(top, test, k=2) == dict.fromkeys(ALL, 0.0)
    assert metrics.mrr_at_k(top, test, k=3) == pytest.approx(1 / 3)


def test_each_function_matches_the_combined_call():
    rng = np.random.default_rng(0)
    top = recs({u: list(rng.choice(30, 10, replace=False)) for u in range(20)})
    test = truth({u: list(rng.choice(30, 4, replace=False)) for u in range(20)})
    combined = metrics.ranking_metrics(top, test, k=7)
    for name, fn in [
        ("precision", metrics.precision_at_k),
        ("recall", metrics.recall_at_k),
        ("ndcg", metrics.ndcg_at_k),
        ("map", metrics.map_at_k),
        ("hit_rate", metrics.hit_rate_at_k),
        ("mrr", metrics.mrr_at_k),
    ]:
        assert fn(top, test, k=7) == pytest.approx(combined[name]), name
    assert 0 < combined["ndcg"] < 1


def test_duplicate_test_rows_count_once():
    test = pd.concat([truth({1: [1, 2]}), truth({1: [2]})])
    assert metrics.recall_at_k(recs({1: [2]}), test, k=1) == pytest.approx(1 / 2)


def test_rank_order_not_row_order_decides():
    shuffled = recs({1: [1, 2, 3]}).iloc[[2, 0, 1]]
    assert metrics.mrr_at_k(shuffled, truth({1: [2]}), k=3) == pytest.approx(1 / 2)


def test_coverage():
    top = recs({1: [1, 2, 3], 2: [2, 3, 4]})
    assert metrics.coverage(top, n_items=10, k=3) == pytest.approx(4 / 10)
    assert metrics.coverage(top, n_items=10, k=1) == pytest.approx(2 / 10)
    assert metrics.ranking_metrics(top, truth({1: [1]}), k=3, n_items=8)["coverage"] == pytest.approx(4 / 8)
    assert "coverage" not in metrics.ranking_metrics(top, truth({1: [1]}), k=3)
    with pytest.raises(ValueError, match="n_items must be >= 1"):
        metrics.coverage(top, n_items=0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("k", [0, -3, 2.5, "10"])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        metrics.ranking_metrics(recs({1: [1]}), truth({1: [1]}), k=k)


def test_numpy_integer_k_is_accepted():
    assert metrics.ndcg_at_k(recs({1: [1]}), truth({1: [1]}), k=np.int64(5)) == 1.0


def test_duplicate_recommendation_is_refused():
    top = pd.DataFrame({"user_id": [1, 1], "item_id": [5, 5], "rank": [1, 2]})
    with pytest.raises(SchemaError, match="recommended twice to the same user"):
        metrics.ranking_metrics(top, truth({1: [5]}), k=2)


def test_shared_rank_is_refused():
    top = pd.DataFrame({"user_id": [1, 1], "item_id": [5, 6], "rank": [1, 1]})
    with pytest.raises(SchemaError, match="two items share the same rank"):
        metrics.ranking_metrics(top, truth({1: [5]}), k=2)


def test_missing_columns_are_named():
    with pytest.raises(SchemaError, match=r"recommendations: missing column\(s\) \['rank'\]"):
        metrics.ranking_metrics(recs({1: [1]}).drop(columns="rank"), truth({1: [1]}))
    with pytest.raises(SchemaError, match=r"test interactions: missing column\(s\) \['item_id'\]"):
        metrics.ranking_metrics(recs({1: [1]}), truth({1: [1]}).drop(columns="item_id"))


# --------------------------------------------------------------------------- cross-checks


@pytest.fixture
def random_rankings():
    """40 users x 60 items: binary relevance (>= 1 per user) and distinct random scores."""
    rng = np.random.default_rng(11)
    n_users, n_items = 40, 60
    relevance = (rng.random((n_users, n_items)) < rng.uniform(0.02, 0.3, size=(n_users, 1))).astype(int)
    relevance[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1
    scores = rng.random((n_users, n_items))
    return relevance, scores


def frames(relevance: np.ndarray, scores: np.ndarray, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.argsort(-scores, axis=1)[:, :k]  # (n_users, k) item indices, best first
    top = recs({u: order[u].tolist() for u in range(len(order))})
    test = truth({u: np.flatnonzero(relevance[u]).tolist() for u in range(len(relevance))})
    return top, test


@pytest.mark.parametrize("k", [1, 5, 10, 60])
def test_ndcg_agrees_with_sklearn(random_rankings, k):
    relevance, scores = random_rankings
    top, test = frames(relevance, scores, k)

    ours = metrics.per_user(top, test, k=k)["ndcg"]
    theirs = [skm.ndcg_score(relevance[[u]], scores[[u]], k=k) for u in range(len(relevance))]

    np.testing.assert_allclose(ours.to_numpy(), theirs, rtol=1e-12)
    assert metrics.ndcg_at_k(top, test, k=k) == pytest.approx(skm.ndcg_score(relevance, scores, k=k))


@pytest.mark.parametrize("k", [3, 10])
def test_precision_and_recall_agree_with_sklearn(random_rankings, k):
    relevance, scores = random_rankings
    top, test = frames(relevance, scores, k)
    predicted = np.zeros_like(relevance)
    np.put_along_axis(predicted, np.argsort(-scores, axis=1)[:, :k], 1, axis=1)  # top k -> 1

    per_user = metrics.per_user(top, test, k=k)

    for u in range(len(relevance)):
        assert per_user.loc[u, "precision"] == pytest.approx(
            skm.precision_score(relevance[u], predicted[u], zero_division=0)
        )
        assert per_user.loc[u, "recall"] == pytest.approx(skm.recall_score(relevance[u], predicted[u]))


def test_map_over_the_full_ranking_is_sklearns_average_precision(random_rankings):
    relevance, scores = random_rankings
    n_items = relevance.shape[1]
    top, test = frames(relevance, scores, n_items)

    ours = metrics.per_user(top, test, k=n_items)["map"]
    theirs = [skm.average_precision_score(relevance[u], scores[u]) for u in range(len(relevance))]

    np.testing.assert_allclose(ours.to_numpy(), theirs, rtol=1e-12)


def test_roc_auc_agrees_with_sklearn_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=500)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # few distinct values: many ties
    assert len(np.unique(scores)) < 20

    assert metrics.roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores), rel=1e-12)


def test_roc_auc_known_answers():
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # pairs (pos, neg): (0.4, 0.1) win, (0.4, 0.6) lose, (0.7, 0.1) win, (0.7, 0.6) win -> 3/4
    assert metrics.roc_auc([1, 0, 1, 0], [0.4, 0.1, 0.7, 0.6]) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="both positive and negative"):
        metrics.roc_auc([1, 1], [0.3, 0.4])


def test_roc_auc_is_over_the_whole_set_not_a_batch_mean():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.2])  # each half alone is perfectly ranked
    batch_mean = np.mean([metrics.roc_auc(labels[:2], scores[:2]), metrics.roc_auc(labels[2:], scores[2:])])
    assert batch_mean == 1.0
    assert metrics.roc_auc(labels, scores) == pytest.approx(3 / 4) == skm.roc_auc_score(labels, scores)


def test_log_loss_agrees_with_sklearn():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, size=300)
    probabilities = rng.uniform(0.01, 0.99, size=300)

    assert metrics.log_loss(labels, probabilities) == pytest.approx(skm.log_loss(labels, probabilities), rel=1e-12)
    assert metrics.log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_log_loss_clips_certain_mistakes():
    assert metrics.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))
    assert metrics.log_loss([0, 1], [0.0, 1.0]) == pytest.approx(-math.log(1 - 1e-7))


def test_rmse_and_mae():
    assert metrics.rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert metrics.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert metrics.rmse([3.5], [3.5]) == 0.0
    rng = np.random.default_rng(6)
    y, p = rng.integers(1, 6, 200), rng.uniform(1, 5, 200)
    assert metrics.rmse(y, p) == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)))
    assert metrics.mae(y, p) == pytest.approx(skm.mean_absolute_error(y, p))


@pytest.mark.parametrize("fn", [metrics.rmse, metrics.mae, metrics.roc_auc, metrics.log_loss])
def test_rating_metrics_refuse_bad_arrays(fn):
    with pytest.raises(ValueError, match="shape mismatch"):
        fn([1, 0, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="empty input"):
        fn([], [])
    with pytest.raises(ValueError, match="NaN in input"):
        fn([1, 0], [0.5, np.nan])
