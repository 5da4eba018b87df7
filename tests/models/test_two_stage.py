"""TwoStage (workbench.models.two_stage): retrieval then re-ranking, against its two
known answers -- N = all is the ranker alone, and only retrieved items are ranked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data.schema import ITEM, USER
from workbench.models import BPR, EASE, IALS, Popularity, TwoStage
from workbench.models.two_stage import candidate_scores, item_embeddings, user_embeddings
from workbench.retrieval import IndexConfig, build_index

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXACT = IndexConfig(backend="exact")


@pytest.fixture(scope="module")
def train(tiny_data):
    return tiny_data.interactions


@pytest.fixture(scope="module")
def ease(train):
    return EASE(reg=50.0, device="cpu").fit(train)


@pytest.fixture(scope="module")
def ials(train):
    return IALS(factors=16, epochs=5, device="cpu").fit(train)


def two_stage(ials, ease, **options) -> TwoStage:
    """A TwoStage around already fitted parts (fit refits them identically)."""
    return TwoStage(retriever=ials, ranker=ease, **options)


def test_all_candidates_is_the_ranker_alone(train, ials, ease):
    users = np.unique(train[USER])[:30]
    model = two_stage(ials, ease, candidates=len(ease.items), index=EXACT).fit(train)
    pd.testing.assert_frame_equal(
        model.recommend(users, k=10), ease.recommend(users, k=10), check_exact=False, rtol=1e-4
    )


def test_only_retrieved_items_are_ranked_in_ranker_order(train, ials, ease):
    users = np.unique(train[USER])[:20]
    model = two_stage(ials, ease, candidates=15, index=EXACT).fit(train)
    recs = model.recommend(users, k=5)
    retrieved = ials.recommend(users, k=15)
    for user, group in recs.groupby(USER):
        pool = retrieved[retrieved[USER] == user][ITEM].tolist()
        assert set(group[ITEM]) <= set(pool)
        order = ease.recommend([user], k=5, candidates=pool)
        assert group[ITEM].tolist() == order[ITEM].tolist()
    assert len(model.recommend(users[:1], k=40)) == 40  # k > N: N grows to k


def test_bpr_bias_rides_along_as_one_more_dimension():
    bpr = BPR(factors=4, device="cpu")  # factors set by hand: what is tested is the embedding, not training
    gen = torch.Generator().manual_seed(0)
    bpr.user_factors_, bpr.item_factors_ = torch.randn(10, 4, generator=gen), torch.randn(30, 4, generator=gen)
    bpr.item_bias_, bpr.device_ = torch.randn(30, generator=gen), torch.device("cpu")
    rows = np.arange(10)
    index = build_index(item_embeddings(bpr))
    _, scores = index.search(user_embeddings(bpr, rows), 5)
    np.testing.assert_allclose(scores, torch.topk(bpr.score(rows), 5).values.numpy(), rtol=1e-4, atol=1e-5)


def test_candidate_scores_match_the_full_scores(train, ials, ease):
    popularity = Popularity().fit(train)
    rows = np.array([0, 3, 5])
    candidates = np.array([[1, 2, -1], [7, 0, 4], [9, 9, 3]])
    for ranker in (ease, ials, popularity):  # EASE columns, factor dot products, the generic gather
        got = candidate_scores(ranker, rows, candidates)
        full = ranker.score(rows).float()
        for b in range(3):
            for j in range(3):
                want = float("-inf") if candidates[b, j] < 0 else float(full[b, candidates[b, j]])
                assert float(got[b, j]) == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_bad_parts_and_options_are_named(train):
    with pytest.raises(TypeError, match="EASE has no user and item embeddings"):
        TwoStage(retriever=EASE(device="cpu"), ranker=EASE(device="cpu")).fit(train)
    with pytest.raises(ValueError, match="candidates must be > 0"):
        TwoStage(candidates=0)
    with pytest.raises(TypeError, match="index must be an IndexConfig"):
        TwoStage(index={"backend": "hnsw"})
