"""The HTTP service: FastAPI over a :class:`~workbench.serving.service.RecommendationService`.

    GET  /recommend/{user_id}?k=10   -> {"user_id", "items", "scores", "cold_start", ...}
    POST /interactions               <- {"user_id": 7, "item_id": 42}
    GET  /health                     -> {"status": "ok", ...}
    GET  /metrics                    -> Prometheus text (requests by outcome, batch-size
                                        histogram, queue depth, cache hit rate, latency)

Status codes: 422 for a malformed body, a bad ``k`` or id, or an unknown item; 503 with
``Retry-After`` when the server is full -- more than ``max_in_flight`` recommendation
requests inside it (:class:`AdmissionControl`, before any routing, so a rejection costs
little even when the event loop is the bottleneck) or a full batcher queue -- or when it
is stopping; 504 when a request misses its deadline; 500 when the model failed for the
request's batch (other batches are unaffected). Shutdown is graceful: uvicorn stops accepting connections, lets
in-flight requests finish, then the batcher drains its queue.

:class:`ServerThread` runs the app on a free loopback port in a background thread (tests,
notebooks, benchmarks); ``workbench serve`` runs it in the foreground (:func:`run`).
"""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from workbench.serving.batcher import Overloaded, RequestTimeout, ShuttingDown
from workbench.serving.service import MAX_ID, InvalidRequest, RecommendationService

#: seconds a rejected client is told to wait (``Retry-After``)
RETRY_AFTER_S = 1
#: how a recommendation request ended (one each), as counted by the service
OUTCOMES = ("ok", "rejected", "timeouts", "errors", "invalid", "shutting_down", "cancelled")


class Interaction(BaseModel):
    """Body of ``POST /interactions``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    user_id: int = Field(ge=0, le=MAX_ID)
    item_id: int = Field(ge=0, le=MAX_ID)


def _error(status: int, message: str, *, retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


@dataclass
class InFlight:
    """Recommendation requests inside the server (``count``) and the admission ``limit``."""

    limit: int
    count: int = 0


class AdmissionControl:
    """ASGI middleware: at most ``gate.limit`` requests under ``prefix`` in the app at
    once; the next one gets 503 with ``Retry-After`` straight away, without reaching the
    router, and ``on_reject()`` is called. Bounds the queue that forms in front of the
    batcher when the web stack, not the model, is the bottleneck."""

    def __init__(self, app, *, gate: InFlight, on_reject: Callable[[], None], prefix: str = "/recommend/") -> None:
        self.app, self.gate, self.on_reject, self.prefix = app, gate, on_reject, prefix
        self._body = json.dumps({"detail": f"server full ({gate.limit} requests in flight)"}).encode()
        self._headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(RETRY_AFTER_S).encode()),
            (b"content-length", str(len(self._body)).encode()),
        ]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self.gate.count >= self.gate.limit:
            self.on_reject()
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.gate.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.count -= 1


def create_app(service: RecommendationService) -> FastAPI:
    """The FastAPI app; its lifespan starts the service and drains it on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.close(drain=True)

    app = FastAPI(title="workbench recommender", lifespan=lifespan)

    def shed() -> None:
        service.counts["requests"] += 1
        service.counts["rejected"] += 1
        service.counts["shed"] += 1

    gate = InFlight(service.config.in_flight_limit)
    app.add_middleware(AdmissionControl, gate=gate, on_reject=shed)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(service, gate))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        service.counts["invalid"] += 1
        return JSONResponse({"detail": _plain(err.errors())}, status_code=422)

    @app.get("/recommend/{user_id}")
    async def recommend(user_id: int = Path(ge=0, le=MAX_ID), k: int = Query(10, ge=1, le=service.max_k)):
        try:
            answer = await service.recommend(user_id, k)
        except (Overloaded, ShuttingDown) as err:
            return _error(503, str(err), retry=True)
        except RequestTimeout as err:
            return _error(504, str(err))
        except InvalidRequest as err:
            return _error(422, str(err))
        except Exception as err:  # the model failed for this batch; the server stays up
            return _error(500, f"model error: {type(err).__name__}: {err}")
        return Response(answer.to_json(), media_type="application/json")

    @app.post("/interactions")
    async def interactions(body: Interaction):
        try:
            version = await service.add_interaction(body.user_id, body.item_id)
        except InvalidRequest as err:
            return _error(422, str(err))
        return {"user_id": body.user_id, "item_id": body.item_id, "user_version": version}

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model_version": service.model.version,
            "queue_depth": service.batcher.queue_depth,
            "in_flight": gate.count,
            "max_in_flight": gate.limit,
            "priority_lane": service.config.priority_lane,
        }

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _plain(errors: list[dict]) -> list[dict]:
    """Validation errors without the non-JSON parts pydantic may attach (``ctx``)."""
    return [{key: e[key] for key in ("type", "loc", "msg") if key in e} for e in errors]


class _Collector:
    """Reads :meth:`RecommendationService.snapshot` at every scrape."""

    def __init__(self, service: RecommendationService, gate: InFlight) -> None:
        self.service, self.gate = service, gate

    def collect(self):
        snap = self.service.snapshot()
        counts = snap["counts"]
        requests = CounterMetricFamily("workbench_requests", "Recommendation requests by outcome", labels=["outcome"])
        for outcome in OUTCOMES:
            requests.add_metric([outcome], counts.get(outcome, 0))
        yield requests
        answers = CounterMetricFamily(
            "workbench_answers", "Answered requests by where the answer came from", labels=["source"]
        )
        cached, cold = counts.get("cache_hits", 0), counts.get("cold_start", 0)
        for source, value in (("cache", cached), ("cold_start", cold), ("model", counts.get("ok", 0) - cached - cold)):
            answers.add_metric([source], value)
        yield answers
        yield CounterMetricFamily("workbench_updates", "Online interactions applied", value=counts.get("updates", 0))
        yield CounterMetricFamily("workbench_cache_hits", "Cache hits", value=snap["cache_hits"])
        yield CounterMetricFamily("workbench_cache_misses", "Cache misses", value=snap["cache_misses"])
        yield GaugeMetricFamily("workbench_cache_hit_rate", "Cache hits / lookups", value=snap["cache_hit_rate"])
        yield GaugeMetricFamily("workbench_queue_depth", "Requests waiting for a batch", value=snap["queue_depth"])
        yield GaugeMetricFamily(
            "workbench_in_flight", "Recommendation requests inside the server", value=self.gate.count
        )
        yield CounterMetricFamily(
            "workbench_shed", "Requests rejected (503) at admission, before routing", value=counts.get("shed", 0)
        )
        yield CounterMetricFamily(
            "workbench_priority_requests",
            "Requests sent to the priority lane (first read after an update)",
            value=counts.get("priority", 0),
        )
        yield CounterMetricFamily(
            "workbench_priority_batches", "Model calls made by the priority lane", value=snap["priority_batches"]
        )
        sizes = snap["batch_sizes"]
        bounds = [2**i for i in range(0, max(sizes, default=1).bit_length() + 1)]
        buckets = [(str(b), sum(n for s, n in sizes.items() if s <= b)) for b in bounds]
        yield HistogramMetricFamily(
            "workbench_batch_size",
            "Requests per model call",
            buckets=buckets + [("+Inf", sum(sizes.values()))],
            sum_value=sum(s * n for s, n in sizes.items()),
        )
        latency = Metric("workbench_request_latency_seconds", "Answered-request latency (recent window)", "summary")
        for q, value in snap["latency_quantiles"].items():
            latency.add_sample("workbench_request_latency_seconds", {"quantile": str(q)}, value)
        latency.add_sample("workbench_request_latency_seconds_count", {}, counts.get("ok", 0))
        latency.add_sample("workbench_request_latency_seconds_sum", {}, snap["latency_seconds"])
        yield latency


class ServerThread:
    """``with ServerThread(app) as server: httpx.get(server.url + "/health")``.

    Binds ``host`` (loopback by default) on ``port`` (0: a free one, bound before the
    thread starts, so there is no race), runs uvicorn in a daemon thread and always
    stops it on exit: graceful shutdown, at most ``grace_s`` seconds.
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, grace_s: float = 10.0) -> None:
        self.app, self.host, self.port, self.grace_s = app, host, port, grace_s
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, *, timeout_s: float = 30.0) -> ServerThread:
        # proto must say TCP: asyncio only turns Nagle off (TCP_NODELAY) on sockets that do,
        # and with Nagle on every response waits ~40 ms for the client's delayed ACK
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=self.grace_s
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start within {timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Graceful shutdown; returns once the server thread has finished."""
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.grace_s + 10)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(5)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run(service: RecommendationService, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``service`` over HTTP in the foreground until Ctrl+C (graceful: in-flight
    requests finish, then the batcher drains its queue)."""
    app = create_app(service)
    # Everything allocated so far (model, data, the imports: ~440k objects for SASRec on
    # ml-100k) lives as long as the server; left to the cyclic GC, every full collection
    # walks it and stalls all requests ~0.2 s (measured: the HTTP p99). Freeze it once.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
