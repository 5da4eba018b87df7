"""Fixtures shared by the model tests."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from workbench.data import datasets
from workbench.data.matrix import IndexMap, interaction_matrix
from workbench.data.schema import ITEM, USER
from workbench.models import EASE, FrozenText, Popularity
from workbench.models.base import Recommender
from workbench.models.text.encoder import Encoder, load_encoder


class FixedScores(Recommender):
    """Scores given up front: ``scores[u][i]`` by id (a known-answer stub)."""

    def __init__(self, scores: dict[int, dict[int, float]], items: list[int]):
        super().__init__()
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
def fixed_model() -> FixedScores:
    """Users 1 and 2 over items 10..14, having seen 10 and 11 respectively; user 1 scores
    10 > 13 > 14 > 12, user 2 scores 12 > 13 (the rest 0)."""
    train = pd.DataFrame({USER: [1, 2], ITEM: [10, 11]})
    return FixedScores({1: {10: 9.0, 12: 1.0, 13: 3.0, 14: 2.0}, 2: {12: 5.0, 13: 1.0}}, [10, 11, 12, 13, 14]).fit(
        train
    )


@pytest.fixture(scope="session")
def tiny_data():
    """The tiny synthetic data set (150 users, 300 items)."""
    return datasets.load("synthetic", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_encoder_path) -> Encoder:
    """The tiny random BERT of tests/conftest.py, loaded on the CPU."""
    return load_encoder(tiny_encoder_path, device="cpu")


@pytest.fixture
def dependencies(tiny_data, tiny_encoder):
    """``make(name)`` -> what model ``name`` is built *from* (its named constructor
    arguments: item table, encoder, component models); the same objects on every call
    of one test, so two builds compare equal."""
    blend_models = (EASE(device="cpu"), Popularity())
    hybrid = {"cf": EASE(device="cpu"), "text": FrozenText(tiny_data.items, encoder=tiny_encoder)}

    def make(name: str) -> dict:
        if name == "GenrePopularity":
            return {"items": tiny_data.items}
        if name in ("FrozenText", "TwoTower"):
            return {"items": tiny_data.items, "encoder": tiny_encoder}
        if name == "Blend":
            return {"models": blend_models}
        if name == "Hybrid":
            return dict(hybrid)
        return {}

    return make
