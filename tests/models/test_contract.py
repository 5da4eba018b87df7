"""One behaviour contract, run against every sparse CF model on a tiny matrix whose
right answer is known.

The matrix has two communities of four users: community A interacts with items
10-13, community B with items 20-23, and every user has seen three of their
community's four items. Any collaborative model must therefore put the one missing
item of the user's own community first. Popularity cannot know communities; its
known answer is the item count order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data.matrix import UnknownIdError
from workbench.data.schema import ITEM, RANK, SCORE, USER
from workbench.models import BPR, EASE, IALS, Blend, ItemKNN, NotFittedError, Popularity, Recommender, TwoStage
from workbench.retrieval import IndexConfig

COMMUNITIES = {"A": (1, [10, 11, 12, 13]), "B": (5, [20, 21, 22, 23])}  # first user id, items


def two_communities() -> tuple[pd.DataFrame, dict[int, int]]:
    """Interactions and each user's held-back item (the known right answer)."""
    rows, missing = [], {}
    for first_user, items in COMMUNITIES.values():
        for offset in range(4):
            user = first_user + offset
            missing[user] = items[offset]
            rows += [(user, item) for item in items if item != items[offset]]
    df = pd.DataFrame(rows, columns=[USER, ITEM]).assign(rating=1.0, timestamp=0)
    return df, missing


# small, fast settings; the behaviour under test does not depend on them
MODELS = {
    "Popularity": lambda: Popularity(),
    "ItemKNN": lambda: ItemKNN(k=5),
    "EASE": lambda: EASE(reg=1.0, device="cpu"),
    "IALS": lambda: IALS(factors=4, reg=0.1, alpha=10.0, epochs=10, device="cpu"),
    "BPR": lambda: BPR(factors=2, epochs=100, learning_rate=0.05, reg=0.01, batch_size=24, device="cpu"),
    "Blend": lambda: Blend(models=(EASE(reg=1.0, device="cpu"), ItemKNN(k=5)), weights=(0.5, 0.5)),
    "TwoStage": lambda: TwoStage(
        retriever=IALS(factors=4, reg=0.1, alpha=10.0, epochs=10, device="cpu"),
        ranker=EASE(reg=1.0, device="cpu"),
        candidates=6,
        index=IndexConfig(backend="hnsw", m=8),
    ),
}
PERSONAL = [name for name in MODELS if name != "Popularity"]
WITH_SIMILARITY = ["ItemKNN", "EASE", "IALS", "BPR"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return two_communities()


@pytest.fixture(scope="module")
def fitted(data):
    """Every model fitted once on the tiny matrix (module scope keeps the file fast)."""
    torch.manual_seed(0)
    return {name: make().fit(data[0]) for name, make in MODELS.items()}


@pytest.mark.parametrize("name", MODELS)
def test_recommend_returns_ranked_unseen_items(name, fitted, data):
    df, _ = data
    model = fitted[name]
    recs = model.recommend([1, 5], k=3)
    assert list(recs.columns) == [USER, ITEM, SCORE, RANK]
    assert recs.groupby(USER)[RANK].apply(list).tolist() == [[1, 2, 3], [1, 2, 3]]
    assert (recs.groupby(USER)[SCORE].diff().dropna() <= 0).all()
    seen = set(zip(df[USER], df[ITEM]))
    assert not any((u, i) in seen for u, i in zip(recs[USER], recs[ITEM]))


@pytest.mark.parametrize("name", PERSONAL)
def test_known_answer_first(name, fitted, data):
    _, missing = data
    recs = fitted[name].recommend(list(missing), k=1)
    assert dict(zip(recs[USER], recs[ITEM])) == missing


def test_popularity_known_answer():
    df = pd.DataFrame({USER: [1, 1, 1, 2, 2, 3], ITEM: [7, 8, 9, 8, 9, 9], "rating": 1.0})
    model = Popularity().fit(df)
    assert model.recommend([1], k=3, exclude_seen=False)[ITEM].tolist() == [9, 8, 7]
    recs = model.recommend([3], k=2)
    assert recs[ITEM].tolist() == [8, 7] and recs[SCORE].tolist() == pytest.approx([2 / 3, 1 / 3])


@pytest.mark.parametrize("name", MODELS)
def test_score_is_a_batch_by_catalogue_tensor(name, fitted):
    scores = fitted[name].score(np.array([0, 3, 7]))
    assert isinstance(scores, torch.Tensor) and scores.shape == (3, 8)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", MODELS)
def test_fewer_rows_when_fewer_unseen_items_than_k(name, fitted):
    recs = fitted[name].recommend([1], k=8)  # 8 items, 3 seen
    assert len(recs) == 5 and recs[RANK].tolist() == [1, 2, 3, 4, 5]
    assert len(fitted[name].recommend([1], k=8, exclude_seen=False)) == 8


@pytest.mark.parametrize("name", MODELS)
def test_bad_input_gives_clear_errors(name, fitted):
    model = fitted[name]
    with pytest.raises(UnknownIdError, match="1 unknown user id"):
        model.recommend([1, 99], k=2)  # a user with no training items
    with pytest.raises(ValueError, match="larger than the catalogue"):
        model.recommend([1], k=9)
    with pytest.raises(ValueError, match="positive integer"):
        model.recommend([1], k=0)
    with pytest.raises(ValueError, match="no interactions"):
        MODELS[name]().fit(pd.DataFrame({USER: [], ITEM: []}))
    with pytest.raises(ValueError, match="missing or non-integer id"):
        MODELS[name]().fit(pd.DataFrame({USER: [1.0, float("nan")], ITEM: [1, 2]}))
    with pytest.raises(NotFittedError):
        MODELS[name]().recommend([1])


@pytest.mark.parametrize("name", WITH_SIMILARITY)
def test_similar_items_stay_in_the_community(name, fitted):
    sims = fitted[name].similar_items([10, 20], k=2)
    assert list(sims.columns) == [ITEM, "similar_item_id", SCORE, RANK]
    for item, group in sims.groupby(ITEM):
        community = COMMUNITIES["A" if item < 20 else "B"][1]
        assert item not in group["similar_item_id"].tolist()
        assert set(group["similar_item_id"]) <= set(community)
    with pytest.raises(UnknownIdError, match="unknown item id"):
        fitted[name].similar_items([10, 42])


@pytest.mark.parametrize("name", ["Popularity", "Blend"])
def test_similar_items_undefined_is_a_clear_error(name, fitted):
    with pytest.raises(NotImplementedError, match="does not define item similarity"):
        fitted[name].similar_items([10], k=2)


@pytest.mark.parametrize("name", MODELS)
def test_refit_is_deterministic(name, data):
    first = MODELS[name]().fit(data[0]).recommend([1, 5, 6], k=4)
    again = MODELS[name]().fit(data[0]).recommend([1, 5, 6], k=4)
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.parametrize("name", MODELS)
def test_is_a_recommender_with_a_frozen_config(name):
    model = MODELS[name]()
    assert isinstance(model, Recommender)
    assert repr(model).startswith(f"{name}(")
    with pytest.raises(AttributeError):
        model.config.seed = 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ItemKNN(k=0), "k must be > 0"),
        (lambda: EASE(reg=0.0), "reg must be > 0"),
        (lambda: IALS(factors=0), "factors must be > 0"),
        (lambda: IALS(alpha=-1.0), "alpha must be >= 0"),
        (lambda: BPR(learning_rate=0.0), "learning_rate must be > 0"),
        (lambda: BPR(batch_size=0), "batch_size must be > 0"),
        (lambda: Blend(models=()), "at least one"),
        (lambda: Blend(models=(Popularity(),), weights=(0.5, 0.5)), "2 weights for 1 models"),
    ],
)
def test_out_of_range_options_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        EASE(100.0)
