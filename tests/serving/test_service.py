"""The serving core: validation, the cache in the request path, invalidation on update,
cold start without the batcher, and the priority lane for the first read after an update."""

from __future__ import annotations

import asyncio
import threading

import pytest

from workbench.serving.adapters import servable
from workbench.serving.service import InvalidRequest, RecommendationService, ServingConfig


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_service_validates_caches_and_invalidates(ease):
    model = servable(ease)
    user = int(ease.users.ids_[0])

    async def main():
        async with RecommendationService(model, ServingConfig(max_wait_ms=0)) as service:
            for bad in (0, -1, 10**6, 2.5, True, "3"):
                with pytest.raises(InvalidRequest):
                    await service.recommend(user, bad)
            with pytest.raises(InvalidRequest):
                await service.recommend(-1, 5)
            with pytest.raises(InvalidRequest):
                await service.add_interaction(user, int(ease.items.ids_.max()) + 1)
            first = await service.recommend(user, 5)
            second = await service.recommend(user, 5)
            await service.add_interaction(user, first.items[0])
            third = await service.recommend(user, 5)
            return first, second, third, service.snapshot()

    first, second, third, snap = run(main())
    assert second is first  # served from the cache
    assert third.user_version == 1 and first.items[0] not in third.items
    assert snap["cache_hits"] == 1 and snap["counts"]["ok"] == 3
    assert snap["counts"]["invalid"] == 7 and snap["counts"]["invalid_updates"] == 1  # each endpoint its own


def test_an_answer_computed_before_an_update_is_never_cached(ease):
    model = servable(ease)
    user = int(ease.users.ids_[1])
    gate = threading.Event()
    original = model._scores

    def slow(*args):  # runs after the state snapshot, outside the lock
        gate.wait(10)
        return original(*args)

    model._scores = slow

    async def main():
        async with RecommendationService(model, ServingConfig(max_wait_ms=0)) as service:
            in_flight = asyncio.ensure_future(service.recommend(user, 5))
            await asyncio.sleep(0.05)  # its batch is inside the model, state already read
            await service.add_interaction(user, int(ease.items.ids_[0]))
            gate.set()
            stale = await in_flight
            fresh = await service.recommend(user, 5)
            return stale, fresh

    stale, fresh = run(main())
    assert stale.user_version == 0 and fresh.user_version == 1  # not the stale list from the cache


def test_cold_start_answers_skip_the_batcher(ease):
    model = servable(ease)

    async def main():
        async with RecommendationService(model) as service:
            answer = await service.recommend(10**9, 4)
            return answer, service.snapshot()

    answer, snap = run(main())
    assert answer.cold_start and snap["counts"]["cold_start"] == 1 and snap["batch_sizes"] == {}


def test_first_read_after_an_update_takes_the_priority_lane(ease):
    model = servable(ease)
    user, other = (int(u) for u in ease.users.ids_[2:4])

    async def main():
        config = ServingConfig(max_wait_ms=0, cache_size=0)
        async with RecommendationService(model, config) as service:
            await service.recommend(user, 5)
            await service.add_interaction(user, int(ease.items.ids_[0]))
            await service.add_interaction(user, int(ease.items.ids_[1]))
            fresh = await service.recommend(user, 5)  # priority: the user's first answer since the updates
            again = await service.recommend(user, 5)  # the updates are shown: back in the main lane
            await service.recommend(other, 5)
            return fresh, again, service.snapshot()

    fresh, again, snap = run(main())
    assert fresh.user_version == 2 and again.user_version == 2
    assert snap["counts"]["priority"] == 1 and snap["priority_batches"] == 1
    assert sum(snap["batch_sizes"].values()) == 4
