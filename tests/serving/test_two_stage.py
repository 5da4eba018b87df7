"""Serving a TwoStage model (workbench.serving.two_stage): the same answers as the model,
an update that moves the query vector, an item added online that is retrieved at once,
and the service (batcher + cache) in front of it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from workbench.data.schema import ITEM, USER
from workbench.models import IALS, Popularity, TwoStage
from workbench.retrieval import IndexConfig
from workbench.serving.service import RecommendationService, ServingConfig
from workbench.serving.two_stage import TwoStageServable

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def serve(model) -> TwoStageServable:
    return TwoStageServable(model)  # a fresh in-process state per test


def test_answers_are_the_models(fitted):
    users = fitted.users.ids_[:12]
    answers = serve(fitted).recommend_batch([(int(u), 10) for u in users])
    recs = fitted.recommend(users, k=10)
    for answer in answers:
        expected = recs[recs[USER] == answer.user_id][ITEM].tolist()
        assert list(answer.items) == expected and not answer.cold_start


def test_an_update_changes_the_query_and_hides_the_item(fitted):
    adapter = serve(fitted)
    user = int(fitted.users.ids_[0])
    before = adapter.recommend_batch([(user, 10)])[0]
    item = before.items[0]
    assert adapter.add_interaction(user, item) == 1
    after = adapter.recommend_batch([(user, 10)])[0]
    assert item not in after.items and after.user_version == 1
    row = fitted.users.index(np.asarray([user]))
    trained = fitted.retriever.user_factors_[int(row[0])].numpy()
    history = adapter.history(user)
    moved = adapter._queries(row, [history], [adapter._update(user, history)])  # the query the next batch sends
    assert not np.allclose(moved, trained)


def test_a_new_user_is_served_from_their_online_items(fitted):
    adapter = serve(fitted)
    new_user = 10**6
    assert adapter.recommend_batch([(new_user, 5)])[0].cold_start
    adapter.add_interaction(new_user, int(fitted.items.ids_[0]))
    answer = adapter.recommend_batch([(new_user, 5)])[0]
    assert not answer.cold_start and len(answer.items) == 5 and int(fitted.items.ids_[0]) not in answer.items


def test_an_item_added_online_is_retrieved_and_ranked_at_once(fitted):
    adapter = serve(fitted)
    user = int(fitted.users.ids_[3])
    row = int(fitted.users.index(np.asarray([user]))[0])
    query = fitted.retriever.user_factors_[row].numpy()
    new_id = 99_999
    index = adapter.add_item(new_id, 100 * query)  # far the best match for this user
    assert index == len(fitted.items)
    answer = adapter.recommend_batch([(user, 10)])[0]
    assert new_id in answer.items
    with pytest.raises(ValueError, match="item 99999 is already in the catalogue"):
        adapter.add_item(new_id, query)


def test_behind_the_service(fitted):
    async def run():
        async with RecommendationService(serve(fitted), ServingConfig(max_batch_size=8)) as service:
            users = [int(u) for u in fitted.users.ids_[:8]]
            return await asyncio.gather(*(service.recommend(u, 5) for u in users))

    answers = asyncio.run(run())
    assert [len(a.items) for a in answers] == [5] * 8


def test_only_two_stage_models(interactions):
    with pytest.raises(TypeError, match="serves a TwoStage model, got Popularity"):
        TwoStageServable(Popularity().fit(interactions))


def test_an_ials_ranker_folds_the_user_in_on_update(interactions):
    model = TwoStage(
        retriever=IALS(factors=8, epochs=3, device="cpu"),
        ranker=IALS(factors=12, epochs=3, device="cpu", seed=1),
        candidates=40,
        index=IndexConfig(backend="ivf", nlist=8, nprobe=8),
    ).fit(interactions)
    adapter = serve(model)
    users = [int(u) for u in model.users.ids_[:4]]
    before = adapter.recommend_batch([(u, 10) for u in users])
    recs = model.recommend(users, k=10)
    assert [list(a.items) for a in before] == [recs[recs[USER] == u][ITEM].tolist() for u in users]
    adapter.add_interaction(users[0], before[0].items[0])
    after = adapter.recommend_batch([(u, 10) for u in users])
    assert before[0].items[0] not in after[0].items
    assert [a.items for a in after[1:]] == [a.items for a in before[1:]]  # other users untouched
