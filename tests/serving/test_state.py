"""Users' online state in a real Redis (``redis-server`` on 127.0.0.1, a free port, a temp
folder; stopped after each test): atomic updates from two replicas, namespaces, schema,
bad URLs, read-your-writes across replicas, and Redis restarted under a running service."""

from __future__ import annotations

import asyncio
import random
import shutil
import struct
import time
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import redis
import torch

from workbench.models.base import Recommender
from workbench.serving.adapters import servable
from workbench.serving.app import ServerThread, create_app
from workbench.serving.replicas import RedisServer, free_port
from workbench.serving.service import RecommendationService, ServingConfig
from workbench.serving.state import SCHEMA, RedisState, StateError, StateUnavailable, check_reachable

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (Debian: apt-get install redis-server): these tests need a real one",
)


@pytest.fixture
def server(tmp_path):
    with RedisServer(tmp_path / "redis") as redis_server:
        yield redis_server


@dataclass(frozen=True)
class _FactorOptions:
    reg: float = 0.5
    alpha: float = 2.0


class ToyFactors(Recommender):
    """Random user and item factors with iALS's option names (served by FactorServable)."""

    config_class = _FactorOptions

    def _fit(self, matrix, progress=False):
        gen = torch.Generator().manual_seed(0)
        self.user_factors_ = torch.randn(matrix.shape[0], 4, generator=gen)
        self.item_factors_ = torch.randn(matrix.shape[1], 4, generator=gen)

    def score(self, user_index):
        return self.user_factors_[torch.as_tensor(user_index)] @ self.item_factors_.T


def test_concurrent_updates_from_two_replicas_lose_nothing(server, interactions):
    toy = ToyFactors().fit(interactions)
    replicas = [servable(toy, state=server.url) for _ in range(2)]  # two connections, one Redis
    users = [int(u) for u in toy.users.ids_[:2]]
    items = [int(i) for i in toy.items.ids_[:48]]
    chunks = [items[i::4] for i in range(4)]  # 4 writers, 12 distinct items each, to the same users

    def write(replica, chunk):
        for item in chunk:
            for user in users:
                replica.add_interaction(user, item)

    async def main():
        await asyncio.gather(*[asyncio.to_thread(write, replicas[i % 2], c) for i, c in enumerate(chunks)])

    asyncio.run(asyncio.wait_for(main(), 30))
    for user in users:
        state = replicas[0].state.read([user])[0]
        assert state.updates == len(items)  # no update lost
        assert sorted(state.added) == sorted(toy.items.index(np.asarray(items)).tolist())  # none lost or doubled
        history = np.unique(replicas[1].history(user))  # the vector was solved from the whole history
        y, x = toy.item_factors_.double(), torch.as_tensor(state.vector).double()
        lhs = y.T @ y + 0.5 * torch.eye(4) + 2.0 * (y[history].T @ y[history])
        torch.testing.assert_close(lhs @ x, 3.0 * y[history].sum(0), rtol=1e-4, atol=1e-4)
    assert replicas[0].state.conflicts + replicas[1].state.conflicts > 0  # the writers did collide
    assert replicas[0].state.stats.snapshot()["errors"].get("update", 0) == 0


def test_state_is_kept_apart_by_model_version_and_data_set(server, ease, interactions):
    user, item = int(ease.users.ids_[0]), int(ease.items.ids_[0])
    servable(ease, version="ease-1", state=server.url).add_interaction(user, item)
    assert servable(ease, version="ease-1", state=server.url).history(user)[-1] == 0
    assert servable(ease, version="ease-2", state=server.url).state.read([user]) == [None]
    other_data = type(ease)().fit(interactions.iloc[: len(interactions) // 2])
    assert servable(other_data, version="ease-1", state=server.url).state.read([user]) == [None]


def test_another_model_under_the_same_version_or_a_newer_schema_is_refused(server, ease):
    first = servable(ease, version="ease-1", state=server.url)
    client = redis.Redis.from_url(server.url)
    meta = f"{first.state.namespace}:meta"
    client.hset(meta, "model_fingerprint", "f" * 64)  # as if another model had claimed the namespace
    with pytest.raises(StateError, match=r"another model or data set \(model_fingerprint"):
        servable(ease, version="ease-1", state=server.url)
    client.hset(meta, mapping={"model_fingerprint": first.identity().model_fingerprint, "data_fingerprint": "0" * 64})
    with pytest.raises(StateError, match=r"another model or data set \(data_fingerprint"):
        servable(ease, version="ease-1", state=server.url)
    client.hset(meta, mapping={"data_fingerprint": first.identity().data_fingerprint, "schema": SCHEMA + 1})
    with pytest.raises(StateError, match=f"schema {SCHEMA + 1}"):
        servable(ease, version="ease-1", state=server.url)
    client.hset(meta, "schema", SCHEMA)
    user = int(ease.users.ids_[1])
    client.set(first.state.key(user), struct.pack("<HQI", SCHEMA + 1, 1, 0))
    with pytest.raises(StateError, match=f"user {user}'s state .* schema {SCHEMA + 1}"):
        first.recommend_batch([(user, 5)])


@pytest.mark.parametrize(
    "url", ["redis//127.0.0.1:6379", "http://127.0.0.1:6379/0", "redis://127.0.0.1:port/0", "redis://127.0.0.1:6379/x"]
)
def test_a_malformed_url_is_a_clear_error(url, ease):
    with pytest.raises(StateError, match="URL") as err:
        servable(ease, state=url)
    assert url[:30] in str(err.value)


def test_unreachable_redis_at_start_names_the_url(ease):
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.perf_counter()
    with pytest.raises(StateUnavailable, match=f"{url} unreachable"):
        servable(ease, state=url)
    with pytest.raises(StateUnavailable, match=f"{url} unreachable"):
        check_reachable(url)
    assert time.perf_counter() - started < 5


def test_read_your_writes_across_two_replicas_under_concurrent_updates_and_reads(server, ease):
    users = [int(u) for u in ease.users.ids_[:6]]
    items = [int(i) for i in ease.items.ids_]
    replica_a, replica_b = (servable(ease, state=server.url) for _ in range(2))
    stale, checked = [], 0

    async def writer(seed, write, read):
        nonlocal checked
        rng = random.Random(seed)
        for _ in range(40):
            user = rng.choice(users)
            acked = await write.add_interaction(user, rng.choice(items))
            answer = await read.recommend(user, 5)  # on the other replica, right after the acknowledgement
            checked += 1
            if answer.user_version < acked:
                stale.append((user, acked, answer.user_version))

    async def reader(service, stop):
        while not stop.is_set():  # keeps every user's answers cached on both replicas
            await asyncio.gather(*[service.recommend(u, 5) for u in users])

    async def main():
        config = ServingConfig(max_wait_ms=0.5)
        async with RecommendationService(replica_a, config) as a, RecommendationService(replica_b, config) as b:
            stop = asyncio.Event()
            readers = [asyncio.ensure_future(reader(s, stop)) for s in (a, b)]
            await asyncio.gather(writer(0, a, b), writer(1, b, a), writer(2, a, b))
            stop.set()
            await asyncio.gather(*readers)
            return a.snapshot(), b.snapshot()

    snap_a, snap_b = asyncio.run(asyncio.wait_for(main(), 40))
    assert checked == 120 and stale == []  # 0 stale reads
    for snap in (snap_a, snap_b):
        assert snap["counts"]["invalidations"] > 0 and snap["counts"]["priority"] > 0
        assert snap["cache_hits"] > 0 and snap["state"]["backend"] == "redis"


def test_redis_restarted_mid_run(server, ease):
    """Updates fail fast (503) while Redis is down, reads go on from the last known
    state, the service recovers by itself, and no acknowledged update is lost."""
    users = [int(u) for u in ease.users.ids_[:4]]
    items = [int(i) for i in ease.items.ids_[:30]]
    acked = dict.fromkeys(users, 0)
    service = RecommendationService(servable(ease, state=server.url), ServingConfig(max_wait_ms=0.5))
    with ServerThread(create_app(service), grace_s=5) as http, httpx.Client(base_url=http.url, timeout=10) as client:

        def update(user, item) -> httpx.Response:
            r = client.post("/interactions", json={"user_id": user, "item_id": item})
            if r.status_code == 200:
                acked[user] = r.json()["user_version"]
            return r

        for i, item in enumerate(items[:20]):
            assert update(users[i % 4], item).status_code == 200
        before = client.get(f"/recommend/{users[0]}").json()
        server.kill()  # a crash: no final save
        started = time.perf_counter()
        r = update(users[0], items[20])
        assert r.status_code == 503 and r.headers["Retry-After"] and server.url in r.json()["detail"]
        assert time.perf_counter() - started < 3  # fails fast, no hang
        assert client.get(f"/recommend/{users[0]}").json()["items"] == before["items"]  # last known state
        degraded = client.get(f"/recommend/{users[1]}")  # never read here: from the last state written here
        assert degraded.status_code == 200 and degraded.json()["user_version"] == acked[users[1]]
        assert client.get("/health").json()["status"] == "degraded"
        metrics = client.get("/metrics").text
        assert "workbench_state_updates_unavailable_total 1.0" in metrics
        assert 'workbench_state_up{backend="redis"} 0.0' in metrics
        assert _metric(metrics, "workbench_state_degraded_reads_total") >= 1
        server.start()  # same port, same folder: the append-only file is replayed
        for i, item in enumerate(items[20:]):
            assert update(users[i % 4], item).status_code == 200  # recovered without a restart
        assert client.get("/health").json()["status"] == "ok"
        for user in users:  # every acknowledged update, none lost
            assert client.get(f"/recommend/{user}").json()["user_version"] == acked[user]
    assert sum(acked.values()) == 30
    check = RedisState(server.url, service.model.identity())
    assert [s.updates for s in check.read(users)] == [acked[u] for u in users]


def _metric(text: str, name: str) -> float:
    """The value of the sample ``name`` in Prometheus text."""
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[-1])
