"""What the base class gives every model: ranking among candidate items (known answers on
a stub model, and agreement with the full ranking of a real one)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.matrix import UnknownIdError
from workbench.data.schema import ITEM, RANK, SCORE, USER
from workbench.models import EASE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model(fixed_model):
    """The known-answer stub of tests/models/conftest.py."""
    return fixed_model


def by_user(recs: pd.DataFrame) -> dict[int, list[int]]:
    return recs.groupby(USER)[ITEM].apply(list).to_dict()


def test_ranking_among_candidates_known_answer(model):
    recs = model.recommend([1, 2], k=2, candidates=[12, 13, 14])
    assert by_user(recs) == {1: [13, 14], 2: [12, 13]}
    assert list(recs.columns) == [USER, ITEM, SCORE, RANK] and recs[RANK].tolist() == [1, 2, 1, 2]
    assert recs[SCORE].tolist() == [3.0, 2.0, 5.0, 1.0]
    # whole catalogue, seen items excluded: user 1 never gets item 10 back
    full = model.recommend([1], k=2)
    assert full[ITEM].tolist() == [13, 14]


def test_only_candidates_are_returned(model):
    recs = model.recommend([1, 2], k=2, candidates=[14, 12])  # the best items overall are not candidates
    assert set(recs[ITEM]) <= {12, 14}
    assert by_user(recs) == {1: [14, 12], 2: [12, 14]}


def test_seen_items_are_excluded_among_the_candidates(model):
    recs = model.recommend([1], k=3, candidates=[10, 12, 13])  # user 1 has seen item 10, the best
    assert recs[ITEM].tolist() == [13, 12] and recs[RANK].tolist() == [1, 2]
    kept = model.recommend([1], k=3, candidates=[10, 12, 13], exclude_seen=False)
    assert kept[ITEM].tolist() == [10, 13, 12]


def test_an_unknown_candidate_is_an_error(model):
    with pytest.raises(UnknownIdError, match=r"1 unknown item id.*99"):
        model.recommend([1], k=2, candidates=[12, 99])
    with pytest.raises(UnknownIdError, match="unknown user id"):
        model.recommend([7], k=2, candidates=[12])


def test_k_larger_than_the_candidate_set_returns_every_candidate(model):
    recs = model.recommend([1, 2], k=10, candidates=[12, 13, 14])
    assert by_user(recs) == {1: [13, 14, 12], 2: [12, 13, 14]}
    assert recs.groupby(USER)[RANK].apply(list).tolist() == [[1, 2, 3], [1, 2, 3]]
    assert len(model.recommend([1], k=10, candidates=[10, 12])) == 1  # 10 seen: one candidate left
    with pytest.raises(ValueError, match="larger than the catalogue"):  # without candidates it is an error
        model.recommend([1], k=10)


def test_candidates_rank_as_the_full_scores_restricted_to_them():
    rng = np.random.default_rng(0)
    x = rng.random((30, 25)) < 0.25
    users, items = np.nonzero(x)
    df = pd.DataFrame({USER: users + 1, ITEM: items + 100})
    ease = EASE(reg=2.0, device="cpu").fit(df)
    candidates = np.array([100, 103, 107, 110, 111, 115, 120, 124])
    recs = ease.recommend(ease.users.ids_, k=4, candidates=candidates, block_size=7)  # several blocks
    assert recs[USER].nunique() == len(ease.users)
    for user, group in recs.groupby(USER):
        scores = ease.score(ease.users.index([user]))[0].numpy()  # (n_items,)
        unseen = [c for c in candidates if not x[user - 1, c - 100]]
        expected = sorted(unseen, key=lambda c: -scores[ease.items.index([c])[0]])[:4]
        assert group[ITEM].tolist() == expected
        np.testing.assert_allclose(group[SCORE], scores[ease.items.index(expected)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["SASRec", "BERT4Rec", "FrozenText", "TwoTower", "GenrePopularity", "EASE"])
def test_fit_checks_integer_ids_for_every_model(name):
    from workbench import models
    from workbench.data.schema import SchemaError

    items = pd.DataFrame({ITEM: [1, 2, 3], "text": ["a", "b", "c"], "genres": [("A",), ("B",), ()]})
    needs = {"items": items} if name == "GenrePopularity" else {}
    if name in ("FrozenText", "TwoTower"):
        needs = {"items": items, "encoder": None}
    bad_user = pd.DataFrame({USER: [1.0, 1.5], ITEM: [1, 2], "timestamp": [1, 2]})
    bad_item = pd.DataFrame({USER: [1, 1], ITEM: [1.0, float("nan")], "timestamp": [1, 2]})
    for frame, column in ((bad_user, USER), (bad_item, ITEM)):
        with pytest.raises(SchemaError, match=f"column '{column}' holds a missing or non-integer id"):
            models.build(name, **needs).fit(frame)
