"""Hybrid CF + text fusion: the end points of the weight, CF scores carried to cold items
through text neighbours (known answer), and the weight chosen on validation.
(Per-user standardisation is tested in tests/models/test_fusion.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data import datasets, splits
from workbench.data.schema import ITEM, USER
from workbench.models import EASE
from workbench.models.hybrid import Hybrid
from workbench.models.text.base import TextRecommender
from workbench.models.text.encoder import load_encoder
from workbench.models.text.frozen import FrozenText
from workbench.models.validation import topk_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", size="tiny", seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_encoder_path):
    return load_encoder(tiny_encoder_path, device="cpu")


def _top(model, users, k=10):
    return model.recommend(users, k=k).groupby(USER)[ITEM].apply(list).to_dict()


def test_weight_one_ranks_like_cf_and_zero_like_text(data, tiny):
    train = data.interactions
    users = train[USER].unique()[:8]
    warm_items = data.items[data.items[ITEM].isin(train[ITEM])]
    frozen = FrozenText(warm_items, encoder=tiny).fit(train, progress=False)
    ease = EASE(device="cpu").fit(train)
    cf_only = Hybrid(cf=EASE(device="cpu"), text=frozen, weight=1.0).fit(train)
    assert _top(cf_only, users) == _top(ease, users)
    text_only = Hybrid(cf=EASE(device="cpu"), text=frozen, weight=0.0).fit(train)
    assert _top(text_only, users) == _top(frozen, users)


class Vectors(TextRecommender):
    """A text model with hand-set item vectors (known answers for the carry-over)."""

    def __init__(self, items, vectors):
        super().__init__(items, encoder=None)
        self.given = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=1)

    def _train(self, validation, *, progress):
        self.item_vectors_ = self.history_vectors_ = self.given
        self.user_map_, self.scale_ = None, 1.0


def test_cf_scores_reach_cold_items_through_text_neighbours():
    items = pd.DataFrame({ITEM: [1, 2, 3, 4], "text": ["a", "b", "c", "d"]})
    # item 4 (no interactions) is text-identical to item 1 and orthogonal to 2 and 3
    vectors = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]
    train = pd.DataFrame({USER: [1, 1, 2, 2, 3], ITEM: [1, 2, 2, 3, 1]})
    model = Hybrid(
        cf=EASE(reg=0.5, device="cpu"), text=Vectors(items, vectors).fit(train), weight=1.0, neighbours=2
    ).fit(train)
    cf = model.cf_scores(np.arange(3))  # (3 users, 4 items)
    torch.testing.assert_close(cf[:, 3], cf[:, 0])  # all similarity mass on item 1
    recs = model.recommend([2], k=1, candidates=[4])
    assert recs[ITEM].tolist() == [4]


def test_weight_is_chosen_on_a_validation_carve(data, tiny):
    train, _ = splits.stratified(data.interactions, 0.75, seed=42)
    frozen = FrozenText(data.items, encoder=tiny).fit(train, progress=False)
    model = Hybrid(cf=EASE(device="cpu"), text=frozen, step=0.25).fit(train)
    assert model.validation_["cf_weight"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    best = model.validation_.set_index("cf_weight")["valid_ndcg@10"].idxmax()
    assert model.weight_ == best
    assert model.seen.nnz == len(train)  # refitted on everything after choosing


def test_cold_target_chooses_on_pseudo_cold_items(data, tiny):
    split = splits.cold_split(data.interactions, 0.1, seed=0)
    frozen = FrozenText(data.items, encoder=tiny).fit(split.train, progress=False)
    model = Hybrid(cf=EASE(device="cpu"), text=frozen, step=0.5, target="cold").fit(split.train)
    assert len(model.validation_) == 3 and 0.0 <= model.weight_ <= 1.0
    m = topk_metrics(model, split.test, candidates=split.cold_items)
    assert m["users"] > 0 and np.isfinite(m["ndcg"])


def test_bad_options(data, tiny):
    with pytest.raises(TypeError, match="text recommender"):
        Hybrid(cf=EASE(), text=EASE())
    frozen = FrozenText(data.items, encoder=tiny)
    with pytest.raises(ValueError, match="weight"):
        Hybrid(cf=EASE(), text=frozen, weight=1.5)
    with pytest.raises(ValueError, match="target"):
        Hybrid(cf=EASE(), text=frozen, target="lukewarm")


def test_step_must_divide_one(data, tiny):
    frozen = FrozenText(data.items, encoder=tiny).fit(data.interactions, progress=False)
    with pytest.raises(ValueError, match="divide 1"):
        Hybrid(cf=EASE(device="cpu"), text=frozen, step=0.3).fit(data.interactions)
