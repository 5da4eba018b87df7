"""``POST /items``: an item added online over HTTP on a real server (127.0.0.1) enters the
two-stage index and the very next recommendation can return it; duplicates, a wrong
dimension, NaN or non-numeric vectors, a server without an index and a server whose
state is shared with replicas are refused with a clear problem; /metrics counts the
items; schemathesis fuzzes the route on a two-stage server."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from workbench.serving.adapters import servable
from workbench.serving.app import ServerThread, create_app
from workbench.serving.load import served_process
from workbench.serving.replicas import RedisServer, free_port
from workbench.serving.service import RecommendationService, ServingConfig
from workbench.serving.two_stage import TwoStageServable

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "items-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
NEW_ID = 990_001
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def serve(model, **state) -> ServerThread:
    """A real server for a fresh TwoStageServable (fresh index copy and state), with the cache on."""
    service = RecommendationService(TwoStageServable(model, **state), ServingConfig(max_wait_ms=0.5))
    return ServerThread(create_app(service, token=TOKEN), grace_s=5)


def user_and_query(fitted) -> tuple[int, list[float]]:
    """A trained user and a vector that is far its best match (100x its query vector)."""
    user = int(fitted.users.ids_[3])
    row = int(fitted.users.index(np.asarray([user]))[0])
    return user, (100 * fitted.retriever.user_factors_[row].numpy()).tolist()


def metric(text: str, name: str) -> float:
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))


def test_an_item_added_over_http_is_recommended_by_the_next_request(fitted):
    user, vector = user_and_query(fitted)
    with serve(fitted) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        before = http.get(f"/recommend/{user}", params={"k": 10}).json()  # cached from here on
        assert NEW_ID not in before["items"]
        assert http.get(f"/recommend/{user}", params={"k": 10}).json() == before  # a cache hit
        added = http.post("/items", json={"item_id": NEW_ID, "vector": vector}, headers=AUTH)
        assert added.status_code == 201, added.text
        n = len(fitted.items)
        assert added.json() == {"item_id": NEW_ID, "index": n, "catalogue_size": n + 1}
        after = http.get(f"/recommend/{user}", params={"k": 10}).json()
        assert after["items"][0] == NEW_ID and not after["cold_start"]
        text = http.get("/metrics").text
        assert metric(text, "workbench_items_added_total") == 1
        assert metric(text, "workbench_catalogue_items") == n + 1


def test_bad_items_are_refused_with_a_problem_naming_the_value(fitted):
    _, vector = user_and_query(fitted)
    known = int(fitted.items.ids_[0])
    with serve(fitted) as server, httpx.Client(base_url=server.url, timeout=10) as http:

        def post(body, **kw):
            return http.post("/items", headers={**AUTH, **kw.pop("headers", {})}, **({"json": body} | kw))

        assert post({"item_id": NEW_ID, "vector": vector}, headers={"Authorization": "Bearer nope"}).status_code == 401
        duplicate = post({"item_id": known, "vector": vector})
        assert (
            duplicate.status_code == 409 and f"item {known} is already in the catalogue" in duplicate.json()["detail"]
        )
        short = post({"item_id": NEW_ID, "vector": vector[:-1]})
        assert short.status_code == 422 and "at least 16 items after validation, not 15" in short.text, short.text
        assert short.json()["detail"][0]["loc"] == ["body", "vector"]
        assert post({"item_id": NEW_ID, "vector": vector + [1.0]}).status_code == 422
        nan = http.post("/items", content=f'{{"item_id": {NEW_ID}, "vector": [NaN{", 1.0" * 15}]}}', headers=JSON)
        assert nan.status_code == 422 and nan.json()["detail"][0]["type"] == "finite_number", nan.text
        huge = post({"item_id": NEW_ID, "vector": [1e39] + vector[1:]})  # finite as a double, inf as float32
        assert huge.status_code == 422 and huge.json()["detail"][0]["loc"] == ["body", "vector", 0], huge.text
        for bad in (["0.5"] + vector[1:], [True] + vector[1:], [], None):
            assert post({"item_id": NEW_ID, "vector": bad}).status_code == 422, bad
        assert post({"item_id": -1, "vector": vector}).status_code == 422
        assert post({"item_id": NEW_ID, "vector": vector * 2000}).status_code == 413  # past the route's body limit
        schema = http.get("/openapi.json").json()["components"]["schemas"]["NewItem"]["properties"]["vector"]
        assert schema["minItems"] == schema["maxItems"] == 16  # the schema states the dimension
        assert post({"item_id": NEW_ID, "vector": vector, "extra": 1}).status_code == 422
        # nothing above was applied: the id is still free, then taken
        assert post({"item_id": NEW_ID, "vector": vector}).status_code == 201
        again = post({"item_id": NEW_ID, "vector": vector})
        assert again.status_code == 409 and "already in the catalogue" in again.text
        text = http.get("/metrics").text
    assert metric(text, "workbench_items_added_total") == 1
    assert metric(text, 'workbench_items_refused_total{reason="conflict"}') == 2
    assert metric(text, 'workbench_items_refused_total{reason="invalid"}') == 10
    assert metric(text, "workbench_catalogue_items") == len(fitted.items) + 1


def test_a_server_without_an_index_refuses_items_naming_serve_retrieval(ease):
    service = RecommendationService(servable(ease), ServingConfig(max_wait_ms=0.5))
    with ServerThread(create_app(service), grace_s=5) as server:
        answer = httpx.post(f"{server.url}/items", json={"item_id": NEW_ID, "vector": [0.1] * 8}, timeout=10)
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert answer.status_code == 409
    assert "no retrieval index" in answer.json()["detail"] and "serve --retrieval" in answer.json()["detail"]
    assert metric(text, 'workbench_items_refused_total{reason="conflict"}') == 1
    assert "workbench_catalogue_items" not in text


@needs_redis
def test_a_server_sharing_state_with_replicas_refuses_items(fitted, tmp_path):
    user, vector = user_and_query(fitted)
    with RedisServer(tmp_path / "redis") as redis_server, serve(fitted, state=redis_server.url) as server:
        answer = httpx.post(f"{server.url}/items", json={"item_id": NEW_ID, "vector": vector}, headers=AUTH)
        after = httpx.get(f"{server.url}/recommend/{user}", timeout=10).json()
    assert answer.status_code == 409 and "this replica's index only" in answer.json()["detail"]
    assert NEW_ID not in after["items"]  # not applied


@pytest.mark.slow
@needs_redis
def test_serve_workers_two_refuses_items_on_every_replica(tmp_path):
    """The real thing: ``workbench serve --workers 2 --retrieval hnsw --state redis://``."""
    cmd = [sys.executable, "-m", "workbench.cli", "serve", "--dataset", "synthetic", "--synthetic-size", "tiny"]
    cmd += ["--model", "ease", "--retrieval", "hnsw", "--candidates", "30", "--workers", "2"]
    with RedisServer(tmp_path / "redis") as redis_server:
        port = free_port()
        cmd += ["--port", str(port), "--state", redis_server.url]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with served_process(cmd, port, replicas=2, timeout_s=120, cwd=ROOT, env=env) as (url, _):
            answers = [httpx.post(f"{url}/items", json={"item_id": NEW_ID, "vector": [0.1] * 64}) for _ in range(6)]
    assert {a.status_code for a in answers} == {409}
    assert all("this replica's index only" in a.json()["detail"] for a in answers)


def test_the_items_route_survives_fuzzing_on_a_two_stage_server(fitted):
    with serve(fitted) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=10)
        operation = schema["/items"]["POST"]
        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @given(case=cases)
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(headers=AUTH, timeout=10)

        fuzz()
        text = httpx.get(f"{server.url}/metrics").text
        answers = [httpx.get(f"{server.url}/recommend/{int(u)}", timeout=10) for u in fitted.users.ids_[:5]]
    added = metric(text, "workbench_items_added_total")
    assert added >= 1  # schema-conforming items were accepted, not only refused
    assert metric(text, "workbench_catalogue_items") == len(fitted.items) + added
    assert all(a.status_code == 200 and len(a.json()["items"]) == 10 for a in answers)  # whatever was added
