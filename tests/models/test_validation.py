"""How a fitted model scores itself on held-out interactions (``topk_metrics``): known
answers on a stub model, among candidates or the whole catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data.matrix import IndexMap, interaction_matrix
from workbench.data.schema import ITEM, USER
from workbench.models.base import Recommender
from workbench.models.validation import topk_metrics


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

    def _fit(self, matrix, *, progress=False):
        pass

    def score(self, user_index):
        out = torch.zeros(len(user_index), len(self.items))
        for row, u in enumerate(self.users.ids(user_index)):
            for item, s in self.table[int(u)].items():
                out[row, self.items.index([item])[0]] = s
        return out


@pytest.fixture
def model() -> Fixed:
    train = pd.DataFrame({USER: [1, 2], ITEM: [10, 11]})
    return Fixed({1: {10: 9.0, 12: 1.0, 13: 3.0, 14: 2.0}, 2: {12: 5.0, 13: 1.0}}, [10, 11, 12, 13, 14]).fit(train)


def test_metrics_among_candidates_known_answer(model):
    test = pd.DataFrame({USER: [1, 2, 2], ITEM: [14, 13, 10]})  # (2, 10) is not a candidate: ignored
    m = topk_metrics(model, test, k=2, candidates=[12, 13, 14])
    # user 1: hit at rank 2 -> ndcg 1/log2(3); user 2: hit at rank 2 of one relevant -> same
    assert m["users"] == 2 and m["ndcg"] == pytest.approx(1 / np.log2(3))
    assert m["recall"] == pytest.approx(1.0) and m["precision"] == pytest.approx(0.5)


def test_whole_catalogue_skips_unknown_users_and_excludes_seen_items(model):
    test = pd.DataFrame({USER: [1, 9], ITEM: [13, 13]})  # user 9 is unknown to the model: skipped
    m = topk_metrics(model, test, k=1)
    assert m["users"] == 1 and m["ndcg"] == pytest.approx(1.0)  # 10 (score 9) is seen, 13 comes first
    assert topk_metrics(model, test, k=50)["users"] == 1  # k is capped at the catalogue
    with pytest.raises(ValueError, match="no test user is known"):
        topk_metrics(model, pd.DataFrame({USER: [9], ITEM: [13]}))
