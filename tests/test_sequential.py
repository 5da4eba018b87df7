"""Sequences, the leave-one-out split and full / sampled ranking, on answers known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import metrics, splits
from workbench.matrix import IndexMap
from workbench.sequential import (
    by_history_length,
    evaluate,
    full_ranks,
    histories,
    last_items_scorer,
    leave_one_out,
    pad,
    rank_metrics,
    results_table,
    sample_negatives,
    sampled_ranks,
    summarize,
    user_scorer,
    windows,
)


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture
def log() -> pd.DataFrame:
    # user 1: 10 -> 11 -> 12 -> 13 (12 and 13 tie in time: input order decides)
    # user 2: 20 -> 21 -> 22; user 3 has 2 rows only
    return frame([
        (1, 11, 5, 200), (2, 21, 4, 20), (1, 10, 4, 100), (1, 12, 3, 300), (1, 13, 3, 300),
        (2, 20, 4, 10), (2, 22, 1, 30), (3, 30, 5, 1), (3, 31, 5, 2),
    ])


def test_histories_are_time_ordered_with_ties_in_input_order(log):
    h = histories(log)
    assert list(h.index) == [1, 2, 3]
    assert h[1].tolist() == [10, 11, 12, 13] and h[2].tolist() == [20, 21, 22]
    assert h[1].dtype == np.int64
    assert histories(log.iloc[:0]).empty


def test_leave_one_out_holds_out_the_last_two_like_leave_last_out(log):
    s = leave_one_out(log)
    assert dict(zip(s.test.user_id, s.test.item_id)) == {1: 13, 2: 22}
    assert dict(zip(s.valid.user_id, s.valid.item_id)) == {1: 12, 2: 21, 3: 31}  # user 3: no test
    assert sorted(s.train.item_id) == [10, 11, 20, 30]
    _, last = splits.leave_last_out(log, 1, min_history=3)
    assert dict(zip(last.user_id, last.item_id)) == {1: 13, 2: 22}
    assert len(s.history) == len(s.train) + len(s.valid)


def test_windows_cover_long_sequences_newest_first():
    seq = np.arange(10)
    assert [w.tolist() for w in windows(seq, 4)] == [[6, 7, 8, 9], [2, 3, 4, 5], [0, 1]]
    # overlap=1: every transition (a -> a+1) appears once as (input, shifted label)
    assert [w.tolist() for w in windows(seq, 4, overlap=1)] == [[6, 7, 8, 9], [3, 4, 5, 6], [0, 1, 2, 3]]
    assert windows(np.arange(1), 4) == [] and [w.tolist() for w in windows(np.arange(3), 4)] == [[0, 1, 2]]
    with pytest.raises(ValueError):
        windows(seq, 4, overlap=4)


def test_pad_left_and_right_to_the_longest():
    rows = [np.array([1, 2, 3]), np.array([4]), np.array([], dtype=np.int64)]
    assert pad(rows, side="left").tolist() == [[1, 2, 3], [0, 0, 4], [0, 0, 0]]
    assert pad(rows, side="right", value=-1).tolist() == [[1, 2, 3], [4, -1, -1], [-1, -1, -1]]
    assert pad([], side="left").shape == (0, 1)


def test_full_ranks_exclude_seen_items_and_split_ties():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.2], [1.0, 2.0, 3.0, 4.0]])
    targets = torch.tensor([2, 1, -1])
    exclude = torch.tensor([[0, 0], [0, 2]])  # row 0: items 0 and 2 seen... but 2 is its target
    ranks = full_ranks(scores, targets, exclude)
    assert ranks[0] == 2.0  # item 0 excluded, item 1 above, the target itself never excluded
    assert ranks[1] == 2.0  # three-way tie: 1 + 2 ties / 2
    assert torch.isinf(ranks[2])  # unknown target
    assert torch.isinf(full_ranks(torch.tensor([[-np.inf, 1.0]]), torch.tensor([0])))[0]


def test_sampled_ranks_among_negatives_only():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.5]])
    assert sampled_ranks(scores, torch.tensor([2]), torch.tensor([[0, 3]])).item() == 1.0
    assert sampled_ranks(scores, torch.tensor([2]), torch.tensor([[1, 4]])).item() == 2.5
    assert torch.isinf(sampled_ranks(scores, torch.tensor([-1]), torch.tensor([[0, 3]])))[0]


def test_rank_metrics_known_answer():
    out = rank_metrics(np.array([1.0, 3.0, 11.0, np.inf]), k=10)
    assert out["hr@10"] == pytest.approx(0.5)
    assert out["ndcg@10"] == pytest.approx((1.0 + 1.0 / np.log2(4.0)) / 4)
    assert out["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11) / 4)


def test_full_ranking_agrees_with_the_metrics_module():
    rng = np.random.default_rng(0)
    scores = torch.as_tensor(rng.normal(size=(50, 40)), dtype=torch.float32)
    targets = torch.as_tensor(rng.integers(0, 40, size=50))
    ranks = full_ranks(scores, targets)
    top = torch.topk(scores, 10, dim=1).indices.numpy()
    recs = pd.DataFrame({"user_id": np.repeat(np.arange(50), 10), "item_id": top.ravel(), "rank": np.tile(np.arange(1, 11), 50)})
    test = pd.DataFrame({"user_id": np.arange(50), "item_id": targets.numpy()})
    expected = metrics.ranking_metrics(recs, test, k=10)
    got = rank_metrics(ranks, 10)
    assert got["hr@10"] == pytest.approx(expected["hit_rate"]) and got["ndcg@10"] == pytest.approx(expected["ndcg"])


def test_sample_negatives_avoid_history_and_target_and_are_seeded(log):
    s = leave_one_out(log)
    catalogue = IndexMap.from_ids(log.item_id)
    neg = sample_negatives(histories(s.history), s.test, catalogue, n=3, seed=1)
    assert neg.shape == (2, 3) and list(neg.index) == [1, 2]
    for user, row in neg.iterrows():
        ids = set(catalogue.ids(row.to_numpy()))
        assert not ids & set(log.loc[log.user_id == user, "item_id"]) and len(ids) == 3
    assert neg.equals(sample_negatives(histories(s.history), s.test, catalogue, n=3, seed=1))
    with pytest.raises(ValueError, match="cannot sample"):
        sample_negatives(histories(s.history), s.test, catalogue, n=6)


class Fixed:
    """A model stand-in: ``score`` returns one fixed row for everyone."""

    def __init__(self, items, row, similarity=None):
        self.items, self.users = IndexMap.from_ids(items), IndexMap.from_ids([1, 2, 3])
        self.row, self.similarity = torch.tensor(row), similarity

    def score(self, user_index):
        return self.row.expand(len(user_index), -1)

    def item_similarity(self, item_index):
        return self.similarity[torch.as_tensor(item_index)]


def test_evaluate_summarize_and_break_down_by_history_length(log):
    s = leave_one_out(log)
    h = histories(s.history)
    catalogue = IndexMap.from_ids(s.history.item_id)  # 10 11 12 20 21 30 31 (no 13, no 22)
    model = Fixed([10, 11, 12, 20, 21, 30, 31], [7.0, 6, 5, 4, 3, 2, 1])
    per_user = evaluate(user_scorer(model, catalogue), s.test, h, catalogue)
    assert per_user["history_length"].tolist() == [3, 2]
    assert np.isinf(per_user["rank"]).all()  # both test items are outside the catalogue
    test = pd.DataFrame({"user_id": [1, 2], "item_id": [30, 10]})
    neg = pd.DataFrame([[6], [6]], index=pd.Index([1, 2], name="user_id"))  # item 31
    per_user = evaluate(user_scorer(model, catalogue), test, h, catalogue, negatives=neg)
    assert per_user["rank"].tolist() == [3.0, 1.0]  # user 1: 20 and 21 above 30 (10-12 seen)
    assert per_user["sampled_rank"].tolist() == [1.0, 1.0]
    summary = summarize(per_user, k=2)
    assert summary["hr@2"] == 0.5 and summary["sampled_hr@2"] == 1.0 and summary["mrr"] == pytest.approx(2 / 3)
    table = results_table({"fixed": per_user, "again": per_user}, k=2)
    assert list(table.index) == ["fixed", "again"] and "sampled_ndcg@2" in table.columns
    lengths = by_history_length({"fixed": per_user}, bins=(0, 3, np.inf), k=2)
    assert list(lengths.index) == ["0-2", "3+"] and lengths["users"].tolist() == [1, 1]
    assert lengths["fixed"].tolist() == [1.0, 0.0]


def test_last_items_scorer_sums_similarity_of_the_most_recent_items():
    sim = torch.eye(4)[[1, 2, 3, 0]]  # item i is most similar to item i + 1
    model = Fixed([1, 2, 3, 4], [0.0] * 4, similarity=sim)
    catalogue = IndexMap.from_ids([1, 2, 3, 4, 5])
    h = pd.Series({1: np.array([1, 3]), 2: np.array([], dtype=np.int64), 3: np.array([2, 9])})
    scores = last_items_scorer(model, h, catalogue, n_last=1)(np.array([1, 2, 3]))
    assert scores.shape == (3, 5) and torch.isinf(scores[:, 4]).all()  # item 5 unknown to the model
    assert scores[0, :4].tolist() == [0, 0, 0, 1] and scores[1, :4].tolist() == [0, 0, 0, 0]
    assert scores[2, :4].tolist() == [0, 0, 1, 0]  # item 9 is unknown: the last known item is 2
    two = last_items_scorer(model, h, catalogue, n_last=2)(np.array([1]))
    assert two[0, :4].tolist() == [0, 1, 0, 1]
