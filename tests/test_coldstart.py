"""Cold-start items: the split, ranking among candidates (known answers on a stub
model), the comparison table and the popularity-of-genre baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import coldstart, datasets
from workbench.matrix import IndexMap, interaction_matrix
from workbench.models import EASE
from workbench.models.base import Recommender
from workbench.schema import ITEM, USER


class Fixed(Recommender):
    """Scores given up front: ``scores[u][i]`` by id (a known-answer stub)."""

    def __init__(self, scores: dict[int, dict[int, float]], items: list[int]):
        self.table = scores
        self.catalogue = items

    def fit(self, interactions):
        self.users = IndexMap.from_ids(list(self.table), kind="user")
        self.items = IndexMap.from_ids(self.catalogue, kind="item")
        self.seen = interaction_matrix(interactions, self.users, self.items)
        return self

    def _fit(self, matrix):
        pass

    def score(self, user_index):
        out = torch.zeros(len(user_index), len(self.items))
        for row, u in enumerate(self.users.ids(user_index)):
            for item, s in self.table[int(u)].items():
                out[row, self.items.index([item])[0]] = s
        return out


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", size="tiny", seed=0)


def test_cold_split_holds_items_out_with_all_their_interactions(data):
    inter = data.interactions
    split = coldstart.cold_split(inter, 0.1, seed=3)
    n_items = inter[ITEM].nunique()
    assert len(split.cold_items) == round(0.1 * n_items)
    assert not split.train[ITEM].isin(split.cold_items).any()
    assert split.test[ITEM].isin(split.cold_items).all()
    assert len(split.train) + len(split.test) + split.dropped_test_rows == len(inter)
    assert split.test[USER].isin(split.train[USER]).all()
    again = coldstart.cold_split(inter, 0.1, seed=3)
    np.testing.assert_array_equal(again.cold_items, split.cold_items)
    assert not np.array_equal(coldstart.cold_split(inter, 0.1, seed=4).cold_items, split.cold_items)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_cold_split_rejects_bad_fractions(data, fraction):
    with pytest.raises(ValueError, match="fraction"):
        coldstart.cold_split(data.interactions, fraction)


def test_ranking_among_candidates_known_answer():
    train = pd.DataFrame({USER: [1, 2], ITEM: [10, 11]})
    model = Fixed({1: {10: 9.0, 12: 1.0, 13: 3.0, 14: 2.0}, 2: {12: 5.0, 13: 1.0}}, [10, 11, 12, 13, 14]).fit(train)
    recs = coldstart.recommend_among(model, [1, 2], k=2, candidates=[12, 13, 14])
    assert recs.groupby(USER)[ITEM].apply(list).to_dict() == {1: [13, 14], 2: [12, 13]}
    # whole catalogue, seen items excluded: user 1 never gets item 10 back
    full = coldstart.recommend_among(model, [1], k=2)
    assert full[ITEM].tolist() == [13, 14]
    test = pd.DataFrame({USER: [1, 2, 2], ITEM: [14, 13, 10]})  # (2, 10) is not a candidate: ignored
    m = coldstart.evaluate(model, test, k=2, candidates=[12, 13, 14])
    # user 1: hit at rank 2 -> ndcg 1/log2(3); user 2: hit at rank 2 of one relevant -> same
    assert m["users"] == 2 and m["ndcg"] == pytest.approx(1 / np.log2(3))
    assert m["recall"] == pytest.approx(1.0) and m["precision"] == pytest.approx(0.5)


def test_compare_marks_models_that_cannot_score_cold_items(data):
    split = coldstart.cold_split(data.interactions, 0.1, seed=0)
    table = coldstart.compare(
        {"EASE": EASE(device="cpu").fit(split.train), "genre": coldstart.GenrePopularity(data.items).fit(split.train)},
        split.test, candidates=split.cold_items,
    )
    assert list(table.columns) == ["precision@10", "recall@10", "ndcg@10", "map@10", "note"]
    assert np.isnan(table.loc["EASE", "ndcg@10"]) and "cannot score" in table.loc["EASE", "note"]
    assert table.loc["genre", "ndcg@10"] > 0


def test_genre_popularity_known_answer():
    items = pd.DataFrame({ITEM: [1, 2, 3, 4, 5], "genres": [("A",), ("A",), ("B",), ("A", "B"), ()]})
    train = pd.DataFrame({USER: [1, 2, 3, 1], ITEM: [1, 1, 2, 3]})  # A items: 2 and 1 -> 1.5; B: 1
    model = coldstart.GenrePopularity(items).fit(train)
    s = model.score(np.array([0]))[0].tolist()
    # item 4 (cold, A and B) = mean(1.5, 1.0); item 5 (no genre) = mean count of warm items
    assert s == pytest.approx([1.5, 1.5, 1.0, 1.25, 4 / 3])
    recs = coldstart.recommend_among(model, [2], k=2, candidates=[4, 5])
    assert recs[ITEM].tolist() == [5, 4]
