"""The load generator: bounded in count and time, exact outcome accounting (nothing lost or
misrouted), in-process and over HTTP, and the freshness measurement."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time

import httpx
import numpy as np
import pytest

from workbench.serving import load as loadtest
from workbench.serving import scenarios
from workbench.serving.adapters import Recommendation
from workbench.serving.app import ServerThread, create_app
from workbench.serving.load import LoadSpec, run_load
from workbench.serving.service import RecommendationService, ServingConfig


class _Identity:
    def ids(self, indices):
        return np.asarray(indices)


class Shifted:
    """The servable protocol: user u's list is u+1..u+k plus its update count, seen
    items skipped; each batch sleeps ``delay_s``. Item ids are their indices."""

    n_items = 500
    version = "shifted-1"
    items = _Identity()

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.updates: dict[int, int] = {}
        self.seen: dict[int, set[int]] = {}

    def knows(self, user):
        return True

    def cold_start(self, user, k):  # pragma: no cover - every user is known
        raise AssertionError

    def recommend_batch(self, requests):
        time.sleep(self.delay_s)
        out = []
        for u, k in requests:
            v = self.updates.get(u, 0)
            items = tuple(
                i for i in range(u + v + 1, u + v + 1 + k + len(self.seen.get(u, ()))) if i not in self.seen.get(u, ())
            )
            out.append(Recommendation(u, items[:k], (1.0,) * k, False, self.version, v))
        return out

    def add_interaction(self, user, item):
        self.seen.setdefault(user, set()).add(item)
        self.updates[user] = self.updates.get(user, 0) + 1
        return self.updates[user]

    def history(self, user):
        return np.asarray(sorted(self.seen.get(user, ())), dtype=np.int64)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(mode="sideways"), "mode"),
        (dict(level=0), "level"),
        (dict(level=-1), "level"),
        (dict(mode="open", level=0), "level"),
        (dict(mode="open", level=-2.5), "level"),
        (dict(level=0.5), "level"),  # a closed loop needs at least one client
        (dict(requests=0), "requests"),
        (dict(requests=-3), "requests"),
        (dict(duration_s=0), "duration_s"),
        (dict(duration_s=-1.0), "duration_s"),
    ],
)
def test_load_spec_rejects_bad_values(options, match):
    with pytest.raises(ValueError, match=match):
        LoadSpec(**options)


def test_load_spec_defaults_are_keyword_only_and_frozen():
    spec = LoadSpec()
    assert (spec.mode, spec.level, spec.requests, spec.duration_s, spec.k, spec.seed) == (
        "closed",
        16,
        2000,
        5.0,
        10,
        0,
    )
    assert LoadSpec(mode="open", level=0.5).level == 0.5  # an open loop may send less than one request a second
    with pytest.raises(TypeError):
        LoadSpec("closed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.level = 4


def test_run_load_dispatches_closed_and_open_loops():
    in_flight, peak, ks = 0, 0, set()

    async def slow(user, k):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        ks.add(k)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return "ok"

    closed = run(run_load(slow, range(10), LoadSpec(mode="closed", level=3, requests=30, duration_s=20, k=7)))
    assert (closed.mode, closed.level, closed.sent) == ("closed", 3, 30) and closed.outcomes == {"ok": 30, "lost": 0}
    assert peak == 3 and ks == {7}  # a closed loop never has more than `level` requests outstanding
    peak, ks = 0, set()
    opened = run(run_load(slow, range(10), LoadSpec(mode="open", level=2000, requests=60, duration_s=20, k=4)))
    assert (opened.mode, opened.level, opened.sent) == ("open", 2000, 60) and opened.outcomes == {"ok": 60, "lost": 0}
    assert peak > 3 and ks == {4}  # arrivals do not wait for answers


def test_closed_loop_in_process_is_bounded_by_count_and_accounts_for_everything():
    async def main():
        async with RecommendationService(Shifted(), ServingConfig(max_wait_ms=1, cache_size=0)) as service:
            return await run_load(
                loadtest.service_caller(service),
                range(50),
                LoadSpec(mode="closed", level=8, requests=300, duration_s=30),
            )

    result = run(main())
    assert result.sent == 300 and result.outcomes == {"ok": 300, "lost": 0}
    assert len(result.latencies_ms) == 300 and result.throughput > 0
    row = result.summary()
    assert row["mode"] == "closed" and row["level"] == 8 and row["p50_ms"] <= row["p99_ms"]


def test_closed_loop_stops_at_its_duration():
    async def main():
        async with RecommendationService(Shifted(delay_s=0.01), ServingConfig(max_batch_size=1)) as service:
            return await run_load(
                loadtest.service_caller(service),
                range(50),
                LoadSpec(mode="closed", level=2, requests=100_000, duration_s=0.3),
            )

    result = run(main())
    assert 0 < result.sent < 100_000 and result.duration_s < 15
    assert sum(v for v in result.outcomes.values()) == result.sent


def test_open_loop_overload_every_request_is_answered_or_rejected():
    config = ServingConfig(max_batch_size=1, max_wait_ms=0, max_queue=4, timeout_ms=None, cache_size=0)

    async def main():
        async with RecommendationService(Shifted(delay_s=0.01), config) as service:
            return await run_load(
                loadtest.service_caller(service),
                range(50),
                LoadSpec(mode="open", level=2000, requests=300, duration_s=5),
            )

    result = run(main())
    outcomes = result.outcomes
    assert outcomes.get("rejected", 0) > 0 and outcomes.get("ok", 0) > 0
    assert outcomes["ok"] + outcomes["rejected"] == result.sent  # no timeouts, errors, lost or misrouted
    assert outcomes["lost"] == 0 and "misrouted" not in outcomes
    assert len(result.rejected_ms) == outcomes["rejected"] and len(result.latencies_ms) == outcomes["ok"]
    # a rejection never waits for the model (10 ms a request): it comes back before an answer would
    assert result.summary()["p99_rejected_ms"] < np.median(result.latencies_ms)


def test_requests_unanswered_after_the_drain_are_counted_lost():
    async def never(user, k):
        await asyncio.sleep(3600)

    async def main():
        return await run_load(never, [1], LoadSpec(mode="open", level=1000, requests=5, duration_s=1), drain_s=0.1)

    result = run(main())
    assert result.sent == 5 and result.outcomes == {"lost": 5}


def test_misrouted_answers_are_counted():
    class Wrong:
        async def recommend(self, user, k):
            return Recommendation(user + 1, (), (), False, "v", 0)

    async def main():
        return await run_load(loadtest.service_caller(Wrong()), [1, 2], LoadSpec(mode="closed", level=2, requests=10))

    assert run(main()).outcomes == {"misrouted": 10, "lost": 0}


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_http_load_accounts_for_every_request_with_either_client(client):
    with ServerThread(create_app(RecommendationService(Shifted(), ServingConfig(max_wait_ms=1)))) as server:
        closed = run(
            loadtest.http_load(server.url, range(20), LoadSpec(level=4, requests=100, duration_s=20), client=client)
        )
        opened = run(
            loadtest.http_load(
                server.url, range(20), LoadSpec(mode="open", level=200, requests=50, duration_s=20), client=client
            )
        )
    assert closed.outcomes == {"ok": 100, "lost": 0} and closed.sent == 100
    assert opened.outcomes == {"ok": 50, "lost": 0} and opened.sent == 50
    with pytest.raises(ValueError):
        run(loadtest.http_load("http://127.0.0.1:9", [1], LoadSpec(), client="curl"))


def test_aiohttp_caller_names_every_outcome():
    import aiohttp

    model = Shifted()
    with ServerThread(create_app(RecommendationService(model, ServingConfig(max_wait_ms=1)))) as server:

        async def main():
            async with aiohttp.ClientSession(server.url) as session:
                call = loadtest.aiohttp_caller(session)
                return await call(3, 2), await call(-1, 3), await call(3, 0)

        assert run(main()) == ("ok", "invalid", "invalid")
        port = server.port

    async def refused():
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            return await loadtest.aiohttp_caller(session)(3, 2)

    assert run(refused()) == "refused"  # the server has stopped


def test_http_closed_and_open_loop_against_the_server():
    with ServerThread(create_app(RecommendationService(Shifted(), ServingConfig(max_wait_ms=1)))) as server:

        async def main():
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                call = loadtest.http_caller(client)
                closed = await run_load(call, range(20), LoadSpec(mode="closed", level=4, requests=100, duration_s=20))
                opened = await run_load(call, range(20), LoadSpec(mode="open", level=200, requests=50, duration_s=20))
                invalid = await call(-1, 3)
                return closed, opened, invalid

        closed, opened, invalid = run(main())
    assert closed.outcomes == {"ok": 100, "lost": 0}
    assert opened.outcomes == {"ok": 50, "lost": 0}
    assert invalid == "invalid"


def test_freshness_every_update_is_reflected_in_the_next_answer():
    model = Shifted()

    async def main():
        async with RecommendationService(model, ServingConfig(max_wait_ms=1)) as service:
            await service.recommend(3, 5)  # cached before the update
            return await loadtest.freshness(service, [(3, 4), (3, 6), (7, 9)], k=5)

    table = run(main())
    assert table["reflected"].all() and len(table) == 3
    assert (table["fresh_ms"] >= table["update_ms"]).all()


def test_update_pairs_pick_unseen_items():
    model = Shifted()
    model.add_interaction(1, 0)
    pairs = loadtest.update_pairs(model, [1, 2], 20, seed=0)
    assert len(pairs) == 20 and all(item not in model.seen.get(user, ()) for user, item in pairs)


def test_latency_curves_and_run_sync_work_inside_a_running_loop():
    setups = {"per-request": ServingConfig(max_batch_size=1, cache_size=0), "batching": ServingConfig(max_wait_ms=1)}

    async def inside_a_loop():  # like a Jupyter cell or a widget callback
        return scenarios.latency_curves(Shifted(), setups, range(30), [1, 4], LoadSpec(requests=40, duration_s=5))

    table = asyncio.run(inside_a_loop())
    assert list(table["setup"]) == ["per-request", "per-request", "batching", "batching"]
    assert (table["ok"] == 40).all() and (table["lost"] == 0).all()
    assert table.loc[0, "batch_sizes"] == {1: 40} and table.loc[0, "mean_batch"] == 1.0


def test_inprocess_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        run(scenarios.inprocess(Shifted(), ServingConfig(), [1], LoadSpec(mode="sideways")))


def test_a_cancelled_load_leaves_no_clients_behind():
    async def instant(user, k):  # like a cache hit: never suspends
        return "ok"

    async def main():
        before = asyncio.all_tasks()
        load = asyncio.ensure_future(
            run_load(instant, [1], LoadSpec(mode="closed", level=4, requests=10**9, duration_s=3600))
        )
        await asyncio.sleep(0.05)  # the event loop still gets here
        load.cancel()
        await asyncio.gather(load, return_exceptions=True)
        await asyncio.sleep(0.01)
        return asyncio.all_tasks() - before

    assert run(main()) == set()


def test_a_cancelled_load_stops_even_a_client_whose_cancellation_was_swallowed():
    """On Python < 3.12, ``asyncio.wait_for`` (the batcher's deadline) can swallow a
    cancellation that meets a finishing request; such a caller returns normally. The load
    must stop at once anyway, not run on until its duration (this hung notebook 07 once)."""
    swallowed = []

    async def swallowing(user, k):
        if swallowed:  # after the cancellation: quick answers, as a busy service gives
            await asyncio.sleep(0.01)
            return "ok"
        try:
            await asyncio.sleep(3600)  # every client waits here when the load is cancelled
        except asyncio.CancelledError:
            swallowed.append(user)
            return "ok"  # what wait_for does when the answer and the cancellation race
        return "ok"

    async def main():
        load = asyncio.ensure_future(
            run_load(swallowing, [1], LoadSpec(mode="closed", level=4, requests=10**9, duration_s=3), drain_s=1)
        )
        await asyncio.sleep(0.05)
        load.cancel()
        started = time.perf_counter()
        await asyncio.gather(load, return_exceptions=True)
        return time.perf_counter() - started

    assert run(main()) < 1.0  # without the stop flag: ~3 s, the clients sending until the duration ends
    assert len(swallowed) == 4


def test_load_runs_freeze_the_gc_once_and_restore_it():
    import gc

    assert gc.get_freeze_count() == 0
    inside = []

    async def probe():
        inside.append(gc.get_freeze_count())

    with loadtest.frozen_gc():
        outer = gc.get_freeze_count()
        loadtest.run_sync(probe)  # nested: still frozen, not frozen twice
        assert gc.get_freeze_count() == outer > 0
    assert inside == [outer] and gc.get_freeze_count() == 0
    loadtest.run_sync(probe)
    assert inside[-1] > 0 and gc.get_freeze_count() == 0


# -- scenarios: notebook 07's experiments (workbench.serving.scenarios) -------------------


def test_inprocess_and_over_http_run_one_spec_and_return_the_snapshot():
    config = ServingConfig(max_wait_ms=1, cache_size=0)
    result, snap = loadtest.run_sync(
        lambda: scenarios.inprocess(Shifted(), config, range(20), LoadSpec(level=4, requests=40, duration_s=20))
    )
    assert result.mode == "closed" and result.outcomes == {"ok": 40, "lost": 0}
    assert snap["counts"]["ok"] == 40 and sum(s * n for s, n in snap["batch_sizes"].items()) == 40
    for client in ("aiohttp", "httpx"):
        result, snap = scenarios.over_http(
            Shifted(), config, range(20), LoadSpec(mode="open", level=200, requests=30, duration_s=20), client=client
        )
        assert result.mode == "open" and result.outcomes == {"ok": 30, "lost": 0} and snap["counts"]["ok"] == 30


def test_freshness_under_load_reflects_every_update():
    updates = [(3, 4), (7, 9), (11, 2)]
    for background in (0, 2):
        table = scenarios.freshness_under_load(
            Shifted(delay_s=0.001), ServingConfig(max_wait_ms=1), range(30), updates, background=background, k=5
        )
        assert len(table) == 3 and table["reflected"].all()
        assert (table["fresh_ms"] >= table["update_ms"]).all()


def test_a_server_that_exits_before_answering_is_reported_not_waited_for():
    started = time.monotonic()
    with (
        pytest.raises(RuntimeError, match="server did not start"),
        loadtest.served_process([sys.executable, "-c", "pass"], 9, timeout_s=60),
    ):
        pass
    assert time.monotonic() - started < 30
