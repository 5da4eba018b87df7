"""The HTTP service on a free loopback port: endpoints, validation, and every fault of
the issue (malformed input, unknown ids, a failing batch, a client that disconnects,
overload, shutdown under load). Each server is stopped by its context manager."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from workbench import models
from workbench.data.matrix import UnknownIdError
from workbench.serving.adapters import Recommendation
from workbench.serving.app import ServerThread, create_app, exposure_warning
from workbench.serving.service import RecommendationService, ServingConfig

N_ITEMS = 1000


class EchoModel:
    """The servable protocol with known answers: user u's top-k is items u+1..u+k
    (shifted by the user's update count); users >= 500 are unknown until updated; a
    batch holding a user of ``fail_users`` raises; each batch sleeps ``delay_s``."""

    n_items = N_ITEMS
    version = "echo-1"

    def __init__(self, *, delay_s: float = 0.0, fail_users=()):
        self.delay_s, self.fail_users = delay_s, set(fail_users)
        self.updates: dict[int, int] = {}
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def knows(self, user):
        return user < 500 or user in self.updates

    def cold_start(self, user, k):
        return Recommendation(user, tuple(range(k)), (0.0,) * k, True, self.version, 0)

    def recommend_batch(self, requests):
        with self.lock:
            self.batches.append([u for u, _ in requests])
        time.sleep(self.delay_s)
        if self.fail_users & {u for u, _ in requests}:
            raise RuntimeError("model failed for this batch")
        out = []
        for u, k in requests:
            v = self.updates.get(u, 0)
            out.append(Recommendation(u, tuple(u + v + 1 + j for j in range(k)), (1.0,) * k, False, self.version, v))
        return out

    def add_interaction(self, user, item):
        if not 0 <= item < N_ITEMS:
            raise UnknownIdError("item", np.asarray([item]))
        self.updates[user] = self.updates.get(user, 0) + 1
        return self.updates[user]


def serve(model=None, *, token: str | None = None, **options) -> ServerThread:
    config = ServingConfig(**{"max_wait_ms": 1.0, **options})
    return ServerThread(create_app(RecommendationService(model or EchoModel(), config), token=token), grace_s=5)


async def fetch_many(url: str, users, *, k: int = 3, timeout: float = 20.0):
    """Concurrent GETs -> list of (user, status, body or None, headers); errors as status 0."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=200)) as client:

        async def one(user):
            try:
                r = await client.get(f"/recommend/{user}", params={"k": k})
            except httpx.TransportError:
                return user, 0, None, {}
            return user, r.status_code, r.json() if r.status_code == 200 else None, r.headers

        return await asyncio.gather(*[one(u) for u in users])


def test_recommend_health_interactions_and_metrics():
    with serve() as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert server.url.startswith("http://127.0.0.1:")
        r = client.get("/recommend/5", params={"k": 3})
        assert r.status_code == 200
        assert r.json() == {
            "user_id": 5,
            "items": [6, 7, 8],
            "scores": [1.0, 1.0, 1.0],
            "cold_start": False,
            "model_version": "echo-1",
            "user_version": 0,
        }
        assert client.get("/recommend/5").json()["items"] == list(range(6, 16))  # k defaults to 10
        assert client.get("/health").json()["status"] == "ok"
        r = client.post("/interactions", json={"user_id": 5, "item_id": 42})
        assert r.status_code == 200 and r.json()["user_version"] == 1
        assert client.get("/recommend/5", params={"k": 3}).json()["items"] == [7, 8, 9]  # not the cached list
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        for line in (
            'workbench_requests_total{outcome="ok"} 3.0',
            'workbench_answers_total{source="model"} 3.0',
            "workbench_updates_total 1.0",
            'workbench_batch_size_bucket{le="1"} 3.0',
            "workbench_queue_depth 0.0",
            'workbench_request_latency_seconds{quantile="0.99"}',
            "workbench_cache_hit_rate 0.0",
        ):
            assert line in text, line


def test_unknown_user_gets_a_flagged_cold_start_answer():
    with serve() as server:
        body = httpx.get(f"{server.url}/recommend/777", params={"k": 2}, timeout=10).json()
        assert body["cold_start"] is True and body["items"] == [0, 1]


@pytest.fixture(scope="module")
def shared():
    """One server for the input-validation tests (they must leave its model untouched)."""
    model = EchoModel()
    with serve(model) as server:
        yield server, model


@pytest.mark.parametrize(
    "path",
    [
        "/recommend/5?k=0",
        "/recommend/5?k=-3",
        "/recommend/5?k=1001",
        "/recommend/5?k=99999999999999999999",
        "/recommend/5?k=ten",
        "/recommend/5?k=2.5",
        "/recommend/abc",
        "/recommend/-1",
        f"/recommend/{2**64}",
    ],
)
def test_bad_k_or_id_is_422(path, shared):
    server, _ = shared
    r = httpx.get(server.url + path, timeout=10)
    assert r.status_code == 422, r.text
    assert httpx.get(f"{server.url}/recommend/1", timeout=10).status_code == 200  # still serving


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"user_id": 1}',
        b'{"user_id": "1", "item_id": 2}',
        b'{"user_id": 1, "item_id": 2.5}',
        b'{"user_id": -1, "item_id": 2}',
        b'{"user_id": 1, "item_id": 2, "extra": 3}',
    ],
)
def test_bad_interaction_is_422_and_changes_nothing(body, shared):
    server, model = shared
    r = httpx.post(f"{server.url}/interactions", content=body, headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 422, r.text
    assert model.updates == {}


def test_a_failing_batch_fails_only_its_own_requests():
    model = EchoModel(delay_s=0.05, fail_users={13})
    with serve(model, max_batch_size=4, max_wait_ms=20) as server:
        results = asyncio.run(fetch_many(server.url, range(1, 41)))
        by_status = {s for _, s, _, _ in results}
        assert by_status <= {200, 500}
        failed_batch = next(b for b in model.batches if 13 in b)
        for user, status, body, _ in results:
            if status == 200:
                assert body["user_id"] == user and body["items"][0] == user + 1
            else:
                assert user in failed_batch
        assert {u: s for u, s, _, _ in results}[13] == 500
        assert httpx.get(f"{server.url}/recommend/2", timeout=10).status_code == 200


def test_client_that_disconnects_mid_request_disturbs_no_one():
    model = EchoModel(delay_s=0.2)
    with serve(model, max_batch_size=8, max_wait_ms=50) as server:
        host, port = "127.0.0.1", server.port

        def hang_up():
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(b"GET /recommend/3?k=2 HTTP/1.1\r\nHost: x\r\n\r\n")
            # closed before the answer

        async def main():
            others = asyncio.ensure_future(fetch_many(server.url, range(20, 30)))
            await asyncio.to_thread(hang_up)
            return await others

        results = asyncio.run(main())
        assert all(s == 200 and body["user_id"] == u for u, s, body, _ in results)
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def check_answers_and_rejections(results, model: EchoModel) -> None:
    """Each 200 is the caller's own answer, each 503 says when to retry, and the model
    computed exactly the answered requests (none twice, no rejected one)."""
    for user, status, body, headers in results:
        if status == 200:
            assert body["user_id"] == user
        else:
            assert headers["retry-after"] == "1"
    served = sorted(u for batch in model.batches for u in batch)
    assert served == sorted(u for u, s, _, _ in results if s == 200)


def test_overload_is_rejected_fast_and_every_request_is_answered():
    model = EchoModel(delay_s=0.05)
    with serve(model, max_batch_size=1, max_wait_ms=0, max_queue=4, timeout_ms=None) as server:
        users = list(range(60))
        results = asyncio.run(fetch_many(server.url, users))
        statuses = [s for _, s, _, _ in results]
        assert set(statuses) <= {200, 503} and statuses.count(503) > 0
        assert len(results) == len(users)  # none lost
        check_answers_and_rejections(results, model)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert f'workbench_requests_total{{outcome="rejected"}} {statuses.count(503)}.0' in metrics


def test_admission_limit_sheds_before_routing_and_health_still_answers():
    model = EchoModel(delay_s=0.2)
    with serve(model, max_batch_size=1, max_wait_ms=0, max_queue=1000, max_in_flight=5, timeout_ms=None) as server:

        async def main():
            load = asyncio.ensure_future(fetch_many(server.url, list(range(40))))
            await asyncio.sleep(0.1)  # the server is full now
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
                health = (await client.get("/health")).json()
            return await load, health

        results, health = asyncio.run(main())
        assert health["in_flight"] == 5 and health["max_in_flight"] == 5  # not counted, not refused
        statuses = [s for _, s, _, _ in results]
        assert statuses.count(200) >= 5 and statuses.count(503) >= 20 and set(statuses) == {200, 503}
        check_answers_and_rejections(results, model)  # a shed request never reached the model
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert f"workbench_shed_total {statuses.count(503)}.0" in metrics
        assert f'workbench_requests_total{{outcome="rejected"}} {statuses.count(503)}.0' in metrics


def test_serving_config_checks_the_admission_limit():
    assert ServingConfig(max_queue=10, max_batch_size=4).in_flight_limit == 14
    assert ServingConfig(max_in_flight=3).in_flight_limit == 3
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            ServingConfig(max_in_flight=bad)


def test_deadline_is_504():
    with serve(EchoModel(delay_s=0.5), timeout_ms=50) as server:
        assert httpx.get(f"{server.url}/recommend/1", timeout=10).status_code == 504


def test_shutdown_under_load_answers_everything_in_flight():
    model = EchoModel(delay_s=0.05)
    server = serve(model, max_batch_size=4, max_wait_ms=5, timeout_ms=None).start()
    try:

        async def main():
            load = asyncio.ensure_future(fetch_many(server.url, range(40)))
            deadline = time.monotonic() + 10
            while len(model.batches) < 2 and time.monotonic() < deadline:  # requests are in the model
                await asyncio.sleep(0.005)
            await asyncio.to_thread(server.stop)
            late = await fetch_many(server.url, [1], timeout=2)
            return await load, late

        results, late = asyncio.run(main())
    finally:
        server.stop()
    started = {u for batch in model.batches for u in batch}
    assert len(results) == 40 and len(started) >= 8
    for user, status, body, _ in results:
        # answered, or refused before it reached the server (status 0): never dropped once accepted
        assert (status == 200 and body["user_id"] == user) or (status == 0 and user not in started)
    assert late[0][1] == 0  # after shutdown: connection refused


def test_build_model_names():
    with pytest.raises(ValueError, match="unknown model"):
        models.build("nope")
    for name in ("popularity", "ease", "itemknn", "ials", "bpr", "sasrec", "bert4rec"):  # what serve always took
        assert type(models.build(name)).__name__.lower() == name


def test_cli_serve_binds_loopback_and_stops_on_sigint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "workbench.cli",
        "serve",
        "--model",
        "popularity",
        "--dataset",
        "synthetic",
        "--synthetic-size",
        "tiny",
        "--port",
        str(port),
        "--max-in-flight",
        "7",
        "--no-priority-lane",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()  # first: reading a live server's output would wait for ever
                    pytest.fail(f"serve did not answer /health: {proc.communicate()[0].decode()[-2000:]}")
                time.sleep(0.2)
        health = r.json()
        assert health["model_version"] == "popularity-1" and health["max_in_flight"] == 7
        assert health["priority_lane"] is False
        body = httpx.get(f"http://127.0.0.1:{port}/recommend/1", params={"k": 3}, timeout=5).json()
        assert len(body["items"]) == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        output = proc.stdout.read().decode()
        assert "GET /recommend/1" not in output and "GET /health" not in output  # no access log by default
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# -- exposure: the token on write endpoints -----------------------------------------------


def test_write_endpoints_require_the_token_when_one_is_set():
    model = EchoModel()
    with serve(model, token="s3cret-token") as server, httpx.Client(base_url=server.url, timeout=10) as client:
        body = {"user_id": 5, "item_id": 42}
        wrong = ("Bearer wrong", "s3cret-token", "Bearer", "Basic czNjcmV0LXRva2Vu", "Bearer s3cret-token2")
        for headers in ({}, *({"Authorization": value} for value in wrong)):
            r = client.post("/interactions", json=body, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (headers, r.text)
        assert model.updates == {}  # refused before anything changed
        r = client.post("/interactions", json=body, headers={"Authorization": "Bearer s3cret-token"})
        assert r.status_code == 200 and model.updates == {5: 1}
        assert client.get("/recommend/5").status_code == 200  # reads stay open
        assert client.get("/health").status_code == 200
    with serve(EchoModel()) as server:  # no token: writes are open (on loopback)
        assert httpx.post(f"{server.url}/interactions", json=body, timeout=10).status_code == 200


def test_binding_beyond_loopback_warns_what_becomes_reachable():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_warning(host, token=None) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "my-host.example"):
        warning = exposure_warning(host, token=None)
        assert host in warning and "POST /interactions" in warning and "/docs" in warning, warning
        assert "without a token" in warning and "WORKBENCH_TOKEN" in warning
    protected = exposure_warning("0.0.0.0", token="x")
    assert "POST /interactions" in protected and "requires the token" in protected


# -- the cache is capped by what it holds ----------------------------------------------------


def test_distinct_large_k_requests_never_grow_the_cache_past_its_cap():
    service = RecommendationService(EchoModel(), ServingConfig(max_wait_ms=0, cache_size=5_000))
    with ServerThread(create_app(service)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        for user in range(20):
            assert client.get(f"/recommend/{user}", params={"k": 1000}).status_code == 200
            stored = sum(len(answer.items) for _, answer, _ in service.cache._entries.values())
            assert stored <= 5_000
        metrics = client.get("/metrics").text
    assert "workbench_cache_items 5000.0" in metrics and "workbench_cache_max_items 5000.0" in metrics
    assert "workbench_cache_entries 5.0" in metrics


# -- shed early, not late ------------------------------------------------------------------


async def open_loop(url: str, *, rate: float, n: int, k: int = 3) -> list[tuple[int, float]]:
    """``n`` GETs for distinct users sent at ``rate`` per second whatever the answers do
    -> (status, seconds from send to answer) each; 0 for a transport error."""
    async with httpx.AsyncClient(base_url=url, timeout=20, limits=httpx.Limits(max_connections=500)) as client:

        async def one(user: int) -> tuple[int, float]:
            sent = time.perf_counter()
            try:
                status = (await client.get(f"/recommend/{user}", params={"k": k})).status_code
            except httpx.TransportError:
                status = 0
            return status, time.perf_counter() - sent

        start, tasks = time.perf_counter(), []
        for user in range(n):
            await asyncio.sleep(max(0.0, start + user / rate - time.perf_counter()))
            tasks.append(asyncio.ensure_future(one(user)))
        return await asyncio.gather(*tasks)


def test_open_loop_overload_is_shed_early_with_503_not_late_504():
    """50 ms batches of two: 40 requests/s. At 3x that for a second, with a 300 ms
    deadline, what cannot make it is refused at admission; no answer comes late."""
    model = EchoModel(delay_s=0.05)
    with serve(model, max_batch_size=2, max_wait_ms=0, timeout_ms=300) as server:
        results = asyncio.run(open_loop(server.url, rate=120, n=120))
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 503, 504}, statuses
    assert statuses.count(200) >= 20 and statuses.count(503) >= 40, statuses
    assert statuses.count(504) <= 12, statuses  # a misestimate now and then, not the rule
    shed = sorted(t for s, t in results if s == 503)
    assert shed[len(shed) // 2] < 0.1  # refused at once, not after waiting out the deadline
    assert max(t for s, t in results if s == 200) < 0.3 + 0.2  # the deadline plus a margin


class SlowLookup(EchoModel):
    """An :class:`EchoModel` whose first ``knows()`` blocks the event loop for 0.3 s: time
    a request spends inside the server before it reaches the batcher."""

    def knows(self, user):
        if not self.batches and not getattr(self, "stalled", False):
            self.stalled = True
            time.sleep(0.3)
        return super().knows(user)


def test_time_spent_before_the_batcher_counts_against_the_deadline():
    model = SlowLookup(delay_s=0.05)
    with serve(model, timeout_ms=200) as server:
        sent = time.perf_counter()
        r = httpx.get(f"{server.url}/recommend/1", timeout=10)
        took = time.perf_counter() - sent
        assert r.status_code == 504 and took < 0.3 + 0.15, (r.status_code, took)  # not a 200 at ~0.35 s
        assert model.batches == []  # it never reached the model
        assert httpx.get(f"{server.url}/recommend/1", timeout=10).status_code == 200


# -- what a 422 sends back, HEAD, per-endpoint counts ------------------------------------


def test_a_422_echoes_only_a_short_excerpt_of_the_offending_input(shared):
    server, model = shared
    long = "x" * 5_000
    bodies = [
        {"user_id": 1, "item_id": 2, long: 3},  # a long unknown field name
        {"user_id": long, "item_id": 2},  # a long wrong-typed value
        {"user_id": 1, "item_id": [long, long]},
        {"user_id": 1, "item_id": 2, **{f"{i}{long[:100]}": i for i in range(100)}},  # many unknown fields
    ]
    for body in bodies:
        r = httpx.post(f"{server.url}/interactions", json=body, timeout=30)
        assert r.status_code == 422, r.status_code
        problems = r.json()["detail"]
        assert all(len(json.dumps(problem)) < 300 for problem in problems), max(map(len, map(json.dumps, problems)))
        assert "xxxxxxxxxx" in r.text  # an excerpt, enough to recognise it
    r = httpx.post(f"{server.url}/interactions", json={"user_id": 1, "item_id": 2, "x" * 10_000_000: 3}, timeout=30)
    assert r.status_code == 413 and len(r.content) < 200  # a 10 MB body is not even read
    for path in (f"/recommend/{'9' * 5000}", f"/recommend/1?k={'7' * 5000}", f"/recommend/{'a' * 5000}"):
        r = httpx.get(server.url + path, timeout=10)
        assert r.status_code == 422 and len(r.content) < 2_000, (path[:30], len(r.content))
    assert model.updates == {}


def test_head_health_answers_200_for_load_balancers(shared):
    server, _ = shared
    r = httpx.head(f"{server.url}/health", timeout=10)
    assert r.status_code == 200 and r.content == b""


def test_invalid_requests_are_counted_per_endpoint():
    with serve() as server, httpx.Client(base_url=server.url, timeout=10) as client:
        for path in ("/recommend/-1", "/recommend/1?k=0"):
            assert client.get(path).status_code == 422
        for body in ({"user_id": 1}, {"user_id": "1", "item_id": 2}, {"user_id": 1, "item_id": 2, "x": 1}):
            assert client.post("/interactions", json=body).status_code == 422
        assert client.post("/interactions", json={"user_id": 1, "item_id": 5000}).status_code == 404
        metrics = client.get("/metrics").text
    assert 'workbench_invalid_requests_total{endpoint="recommend"} 2.0' in metrics
    assert 'workbench_invalid_requests_total{endpoint="interactions"} 4.0' in metrics  # 3 malformed + 1 unknown item
    assert 'workbench_requests_total{outcome="invalid"} 2.0' in metrics  # recommendation requests only


def test_an_unknown_item_is_404_and_changes_nothing(shared):
    server, model = shared
    r = httpx.post(f"{server.url}/interactions", json={"user_id": 1, "item_id": 5000}, timeout=10)
    assert r.status_code == 404 and "5000" in r.json()["detail"]
    assert model.updates == {}
