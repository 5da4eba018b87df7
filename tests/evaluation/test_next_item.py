"""The next-item protocol: negatives, ranking every test user's held-out item through a
scorer, metrics from those ranks, scorers, phases and baselines, on answers known by hand.

Histories, windows and padding are tested in tests/data/test_sequences.py, the
leave-one-out split in tests/data/test_splits.py, and the rank metrics themselves in
tests/metrics/test_ranks.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data.matrix import IndexMap
from workbench.data.sequences import histories
from workbench.data.splits import leave_one_out
from workbench.evaluation.next_item import (
    baseline_candidates,
    by_history_length,
    choose_on_validation,
    last_items_recipe,
    last_items_scorer,
    metrics_from_ranks,
    phase,
    rank_held_out,
    results_table,
    sample_negatives,
    user_recipe,
    user_scorer,
)
from workbench.models import EASE, ItemKNN


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture
def log(sequence_log) -> pd.DataFrame:
    """Three users' time-ordered items (tests/conftest.py)."""
    return sequence_log


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


def test_rank_held_out_metrics_from_ranks_and_break_down_by_history_length(log):
    s = leave_one_out(log)
    h = histories(s.history)
    catalogue = IndexMap.from_ids(s.history.item_id)  # 10 11 12 20 21 30 31 (no 13, no 22)
    model = Fixed([10, 11, 12, 20, 21, 30, 31], [7.0, 6, 5, 4, 3, 2, 1])
    per_user = rank_held_out(user_scorer(model, catalogue), s.test, h, catalogue)
    assert per_user["history_length"].tolist() == [3, 2]
    assert np.isinf(per_user["rank"]).all()  # both test items are outside the catalogue
    test = pd.DataFrame({"user_id": [1, 2], "item_id": [30, 10]})
    neg = pd.DataFrame([[6], [6]], index=pd.Index([1, 2], name="user_id"))  # item 31
    per_user = rank_held_out(user_scorer(model, catalogue), test, h, catalogue, negatives=neg)
    assert per_user["rank"].tolist() == [3.0, 1.0]  # user 1: 20 and 21 above 30 (10-12 seen)
    assert per_user["sampled_rank"].tolist() == [1.0, 1.0]
    summary = metrics_from_ranks(per_user, k=2)
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


def test_phase_fits_on_what_may_be_seen_before_the_target(log):
    s = leave_one_out(log)
    valid = phase(s, "valid")
    assert valid.fit is s.train and valid.target is s.valid
    assert valid.history[1].tolist() == [10, 11] and valid.catalogue.ids_.tolist() == [10, 11, 20, 30]
    test = phase(s, "test")
    assert len(test.fit) == len(s.history) and test.target is s.test
    assert test.history[1].tolist() == [10, 11, 12] and 13 not in test.catalogue
    with pytest.raises(ValueError, match="valid"):
        phase(s, "train")


def test_recipes_build_the_scorer_of_the_named_model(log):
    s = leave_one_out(log)
    p = phase(s, "test")
    users = np.array([1, 2])
    got = user_recipe("EASE", reg=1.0, device="cpu")(p.fit, p.history, p.catalogue)(users)
    want = user_scorer(EASE(reg=1.0, device="cpu").fit(p.fit), p.catalogue)(users)
    torch.testing.assert_close(got, want)
    got = last_items_recipe(k=2, n_last=2)(p.fit, p.history, p.catalogue)(users)
    want = last_items_scorer(ItemKNN(k=2).fit(p.fit), p.history, p.catalogue, n_last=2)(users)
    torch.testing.assert_close(got, want)


def test_baselines_are_chosen_on_validation_best_first(log):
    candidates = baseline_candidates(ease_reg=(1.0, 10.0), knn_k=(2,), last_items=(1, 2))
    assert [(name, options) for name, options, _ in candidates] == [
        ("Popularity", {}),
        ("EASE", {"reg": 1.0}),
        ("EASE", {"reg": 10.0}),
        ("ItemKNN", {"k": 2}),
        ("last-item KNN", {"k": 2, "n_last": 1}),
        ("last-item KNN", {"k": 2, "n_last": 2}),
    ]
    best, table = choose_on_validation(leave_one_out(log), candidates, k=2)
    assert set(best) == {"Popularity", "EASE", "ItemKNN", "last-item KNN"} and len(table) == len(candidates)
    for name, group in table.groupby("model", sort=False):
        assert group["ndcg@2"].is_monotonic_decreasing  # best first within each model
        assert best[name][0] == group["options"].iloc[0]
