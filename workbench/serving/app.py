"""The HTTP service: FastAPI over a :class:`~workbench.serving.service.RecommendationService`.

    GET  /recommend/{user_id}?k=10   -> {"user_id", "items", "scores", "cold_start", ...}
    POST /interactions               <- {"user_id": 7, "item_id": 42}   (token, when set)
    POST /items                      <- {"item_id": 9001, "vector": [0.1, ...]}  (token, when set)
                                     -> 201 {"item_id", "index", "catalogue_size"}
    GET  /health  (and HEAD)         -> {"status": "ok", ..., "state": {"backend": ...}}
    GET  /metrics                    -> Prometheus text (requests by outcome, invalid
                                        requests per endpoint, batch-size histogram,
                                        queue depth, cache size and hit rate, latency)

Status codes: 422 for a malformed body, a bad ``k`` or id (the body quotes at most a
short excerpt of the offending input); 404 for an interaction with an unknown item; 401
for a write without the token the app was created with (``Authorization: Bearer``);
409 for ``POST /items`` with an id already in the catalogue, on a server that is not
two-stage (no index to add to: start ``workbench serve --retrieval ...``) or whose users'
state is shared (``--state redis://``, ``--workers N``: the item would enter this
replica's index only, so it is refused, not applied); 422 for its vector of the wrong
dimension, with a NaN, or a value float32 cannot hold;
503 with ``Retry-After`` when the server is full -- more than ``max_in_flight``
recommendation requests inside it (:class:`AdmissionControl`, before any routing, so a
rejection costs little even when the event loop is the bottleneck), a full batcher
queue, or an expected wait longer than what is left of the request's deadline -- or
when it is stopping; 504 when a request misses its deadline, counted from its arrival
(stamped by :class:`AdmissionControl`); 500 when the model failed for the request's
batch (other batches are unaffected); 503 for an update the shared state backend
(Redis) could not take -- it was not applied, retry -- while reads go on from the last
known state (``/health`` then says ``"degraded"``). Shutdown is graceful: uvicorn stops accepting
connections, lets in-flight requests finish, then the batcher drains its queue.

:class:`ServerThread` runs the app on a free loopback port in a background thread (tests,
notebooks, benchmarks); ``workbench serve`` runs it in the foreground (:func:`run`), and
warns (:func:`exposure_warning`) when it binds more than the loopback interface.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import ipaddress
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from workbench.serving.batcher import Overloaded, RequestTimeout, ShuttingDown
from workbench.serving.cache import TopKCache
from workbench.serving.exporter import Collector, InFlight
from workbench.serving.problems import EXCERPT_CHARS, excerpt, excerpted
from workbench.serving.service import InvalidRequest, RecommendationService, UnknownItem
from workbench.serving.state import StateError, StateUnavailable
from workbench.serving.two_stage import DuplicateItem, TwoStageServable

#: seconds a rejected client is told to wait (``Retry-After``)
RETRY_AFTER_S = 1
#: the environment variable ``workbench serve`` reads the write token from
TOKEN_ENV = "WORKBENCH_TOKEN"
#: route -> the service counter of its requests refused for their input
INVALID_COUNTER = {"/recommend/{user_id}": "invalid", "/interactions": "invalid_updates", "/items": "invalid_items"}
#: the largest id accepted over HTTP: the largest integer a double holds exactly, so that
#: every JSON client and schema validator reads the bound alike (2**63 - 1 does not
#: survive a double: validators then admit ids just above it)
JSON_MAX_ID = 2**53 - 1
#: the largest request body read (an interaction takes under 100 bytes); larger: 413
#: (``POST /items`` reads up to :func:`item_body_bytes` of its vector's length)
MAX_BODY_BYTES = 16_384
#: the most components a new item's vector may have
MAX_VECTOR_DIM = 2048
#: the largest magnitude of a new item's vector component: inner products with it stay
#: finite in float32 (|v|^2 <= 2048 * 1e30), whatever the query
MAX_COMPONENT = 1e15


def _integral(value):
    """A float with no fractional part as the integer it is (JSON Schema's ``integer``
    admits ``42.0``); anything else as it came, for the strict check to judge."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: an id in a JSON body: an integer (``42`` or ``42.0``), not a string, a bool or ``2.5``
BodyId = Annotated[int, Field(ge=0, le=JSON_MAX_ID), BeforeValidator(_integral)]


class Interaction(BaseModel):
    """Body of ``POST /interactions``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    user_id: BodyId
    item_id: BodyId


#: a component of a new item's vector: a JSON number (an integer is read as a float), finite
Component = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COMPONENT, le=MAX_COMPONENT)]


class NewItem(BaseModel):
    """Body of ``POST /items``: the new item's id and its ``vector`` in the retriever's
    embedding space (as many components as the index's dimension; with a BPR retriever
    the last one is the item's bias). A ranker trained before the item existed scores it
    by its retrieval score (see :mod:`.two_stage`), so no ranker vector is needed. On a
    two-stage server the schema states the exact length (:func:`_new_item_body`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    item_id: BodyId
    vector: Annotated[list[Component], Field(min_length=1, max_length=MAX_VECTOR_DIM)]


class AddedItem(BaseModel):
    """Body of an added item: its ``index`` in the retrieval index and the catalogue's
    size now (trained items plus those added online)."""

    item_id: int
    index: int
    catalogue_size: int


class Answer(BaseModel):
    """Body of a ``GET /recommend`` answer: ``items`` best first, with their ``scores``."""

    user_id: int
    items: list[int]
    scores: list[float]
    cold_start: bool
    model_version: str
    user_version: int


class Applied(BaseModel):
    """Body of an applied interaction: the user's update count."""

    user_id: int
    item_id: int
    user_version: int


class StateHealth(BaseModel):
    """Where users' online state lives (``backend``: "in-process" or "redis") and whether
    it answers; for Redis its URL (password hidden) and key namespace."""

    backend: str
    ok: bool
    url: str | None = None
    namespace: str | None = None


class Health(BaseModel):
    """Body of ``GET /health`` (``status``: "ok", or "degraded" while the state backend
    does not answer; ``pid``: which replica answered)."""

    status: str
    model_version: str
    queue_depth: int
    in_flight: int
    max_in_flight: int
    priority_lane: bool
    state: StateHealth
    pid: int


class Problem(BaseModel):
    """Body of every error but 422: what went wrong."""

    detail: str


_RETRY = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
RECOMMEND_RESPONSES = {
    200: {"model": Answer, "description": "the user's top-k"},
    500: {"model": Problem, "description": "the model failed for this request's batch"},
    503: {"model": Problem, "description": "full, expected wait past the deadline, or stopping", "headers": _RETRY},
    504: {"model": Problem, "description": "no answer within the deadline, counted from arrival"},
}


def _error(status: int, message: str, *, retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _invalid(where: str, err: InvalidRequest) -> JSONResponse:
    """A 422 in the shape of a validation error, for a value the service refused."""
    problem = {"type": "value_error", "loc": [where, err.field], "msg": excerpt(str(err), 4 * EXCERPT_CHARS)}
    return JSONResponse({"detail": [problem]}, status_code=422)


class AdmissionControl:
    """ASGI middleware: stamps every request's arrival (``request.state.arrived``, a
    ``time.perf_counter()`` reading: deadlines count from it); lets at most
    ``gate.limit`` requests under ``prefix`` into the app at once; the next one gets 503
    with ``Retry-After`` straight away, without reaching the router, and ``on_reject()``
    is called. Bounds the queue that forms in front of the batcher when the web stack,
    not the model, is the bottleneck."""

    def __init__(self, app, *, gate: InFlight, on_reject: Callable[[], None], prefix: str = "/recommend/") -> None:
        self.app, self.gate, self.on_reject, self.prefix = app, gate, on_reject, prefix
        self._body = json.dumps({"detail": f"server full ({gate.limit} requests in flight)"}).encode()
        self._headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(RETRY_AFTER_S).encode()),
            (b"content-length", str(len(self._body)).encode()),
        ]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["arrived"] = time.perf_counter()
        if not scope["path"].startswith(self.prefix):
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


def create_app(service: RecommendationService, *, token: str | None = None) -> FastAPI:
    """The FastAPI app; its lifespan starts the service and drains it on shutdown. With
    a ``token``, write endpoints require ``Authorization: Bearer <token>`` (401 without)."""
    if token is not None and not token:
        raise ValueError("token must not be empty (None: writes need no token)")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.close(drain=True)

    app = FastAPI(title="workbench recommender", lifespan=lifespan, max_body_size=MAX_BODY_BYTES)

    def shed() -> None:
        service.counts["requests"] += 1
        service.counts["rejected"] += 1
        service.counts["shed"] += 1

    gate = InFlight(service.config.in_flight_limit)
    app.add_middleware(AdmissionControl, gate=gate, on_reject=shed)
    _add_error_handlers(app, service)
    _add_recommend(app, service)
    _add_interactions(app, service, token)
    _add_items(app, service, token)
    _add_health_and_metrics(app, service, gate)
    return app


def _add_error_handlers(app: FastAPI, service: RecommendationService) -> None:
    """422 bodies that quote short excerpts of the input; every request refused for its
    input (422, an undecodable or oversized body) counted for its endpoint."""

    def count_invalid(request: Request) -> None:
        route = getattr(request.scope.get("route"), "path", "")
        service.counts[INVALID_COUNTER.get(route, "invalid_other")] += 1

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        count_invalid(request)
        return JSONResponse({"detail": [excerpted(e) for e in err.errors()]}, status_code=422)

    @app.exception_handler(HTTPException)
    async def unreadable(request: Request, err: HTTPException) -> Response:
        if err.status_code in (400, 413):  # a body that is not UTF-8, or too large to read
            count_invalid(request)
        return await http_exception_handler(request, err)


def _add_recommend(app: FastAPI, service: RecommendationService) -> None:
    @app.get("/recommend/{user_id}", response_class=Response, responses=RECOMMEND_RESPONSES)
    async def recommend(
        request: Request, user_id: int = Path(ge=0, le=JSON_MAX_ID), k: int = Query(10, ge=1, le=service.max_k)
    ):
        try:
            answer = await service.recommend(user_id, k, arrived=request.state.arrived)
        except (Overloaded, ShuttingDown) as err:
            return _error(503, str(err), retry=True)
        except RequestTimeout as err:
            return _error(504, str(err))
        except InvalidRequest as err:
            return _invalid("path" if err.field == "user_id" else "query", err)
        except StateError as err:  # a user record this build cannot read
            return _error(500, f"state error: {err}")
        except Exception as err:  # the model failed for this batch; the server stays up
            return _error(500, f"model error: {type(err).__name__}: {err}")
        return Response(answer.to_json(), media_type="application/json")


def _add_interactions(app: FastAPI, service: RecommendationService, token: str | None) -> None:
    responses: dict = {
        400: {"model": Problem, "description": "a body that cannot be decoded"},
        404: {"model": Problem, "description": "an item the model does not know"},
        503: {"model": Problem, "description": "the shared state is unavailable: not applied", "headers": _RETRY},
        413: {"model": Problem, "description": f"a body over {MAX_BODY_BYTES} bytes"},
    }
    if token is not None:
        responses[401] = {"model": Problem, "description": "missing or wrong token"}

    @app.post(
        "/interactions",
        response_model=Applied,
        responses=responses,
        dependencies=[] if token is None else [Depends(TokenCheck(token))],
    )
    async def interactions(body: Interaction):
        try:
            version = await service.add_interaction(body.user_id, body.item_id)
        except UnknownItem as err:
            return _error(404, str(err))
        except StateUnavailable as err:
            return _error(503, str(err), retry=True)
        except InvalidRequest as err:
            return _invalid("body", err)
        return {"user_id": body.user_id, "item_id": body.item_id, "user_version": version}


def _new_item_body(dim: int | None) -> type[NewItem]:
    """:class:`NewItem` with ``vector`` exactly ``dim`` long (the served index's
    dimension), so the OpenAPI schema says what vector an item needs; None: any length."""
    if dim is None:
        return NewItem
    what = f"the item's vector in the retriever's space: {dim} numbers"
    vector = Annotated[list[Component], Field(min_length=dim, max_length=dim, description=what)]
    return create_model("NewItem", __base__=NewItem, vector=(vector, ...))


def item_body_bytes(dim: int) -> int:
    """The largest ``POST /items`` body read for a ``dim``-long vector: any vector the
    schema admits fits (a JSON number of a float takes at most 24 characters, plus ", "),
    and never less than :data:`MAX_BODY_BYTES`."""
    return max(MAX_BODY_BYTES, 1024 + 32 * dim)


def _add_items(app: FastAPI, service: RecommendationService, token: str | None) -> None:
    responses: dict = {
        400: {"model": Problem, "description": "a body that cannot be decoded"},
        409: {"model": Problem, "description": "an id already in the catalogue, no index, or shared state"},
    }
    if token is not None:
        responses[401] = {"model": Problem, "description": "missing or wrong token"}

    async def items(body: NewItem):
        refused = _items_refused(service)
        if refused:
            service.counts["items_refused"] += 1
            return _error(409, refused)
        adapter: TwoStageServable = service.model
        try:  # in a thread: the index lock waits for a search in progress
            index = await asyncio.to_thread(adapter.add_item, body.item_id, body.vector)
        except DuplicateItem as err:
            service.counts["items_refused"] += 1
            return _error(409, str(err))
        except ValueError as err:  # wrong dimension, or not finite once float32
            service.counts["invalid_items"] += 1
            return _invalid("body", InvalidRequest(str(err), field="vector"))
        _catalogue_changed(service)
        service.counts["items_added"] += 1
        return {"item_id": body.item_id, "index": index, "catalogue_size": adapter.catalogue_size}

    dim = service.model.index.dim if isinstance(service.model, TwoStageServable) else None
    items.__annotations__["body"] = _new_item_body(dim)  # the annotation FastAPI reads
    limit = item_body_bytes(dim or MAX_VECTOR_DIM)
    responses[413] = {"model": Problem, "description": f"a body over {limit} bytes"}
    app.post(
        "/items",
        status_code=201,
        max_body_size=limit,
        response_model=AddedItem,
        responses=responses,
        dependencies=[] if token is None else [Depends(TokenCheck(token))],
    )(items)


def _items_refused(service: RecommendationService) -> str | None:
    """Why this server cannot add items online (None: it can)."""
    if not isinstance(service.model, TwoStageServable):
        return (
            f"this server scores every item with {type(service.model.model).__name__}: there is no retrieval "
            f"index to add an item to; start `workbench serve --retrieval hnsw ...` (two stages) to add items online"
        )
    if service.shared is not None:
        return (
            "users' state is shared with other replicas (--state redis://, --workers N): an item added here "
            "would enter this replica's index only, so it is not applied; serve one process with in-process "
            "state to add items online, or retrain with the item"
        )
    return None


def _catalogue_changed(service: RecommendationService) -> None:
    """Every cached answer may now miss the new item: start an empty cache (same counters).
    An answer computed before the add and stored after it can still be cached once (a
    narrow window: the batch that was running during the add)."""
    fresh = TopKCache(service.config.cache_size, ttl_s=service.config.cache_ttl_s)
    fresh.hits, fresh.misses = service.cache.hits, service.cache.misses
    service.cache = fresh


class ItemsCollector:
    """``/metrics``' items added online: added, refused (409), invalid (422), and the
    catalogue's size (a two-stage server only)."""

    def __init__(self, service: RecommendationService) -> None:
        self.service = service

    def collect(self):
        counts = self.service.counts
        yield CounterMetricFamily(
            "workbench_items_added", "Items added online (POST /items)", value=counts["items_added"]
        )
        refused = CounterMetricFamily("workbench_items_refused", "POST /items not applied", labels=["reason"])
        refused.add_metric(["conflict"], counts["items_refused"])
        refused.add_metric(["invalid"], counts["invalid_items"])
        yield refused
        if isinstance(self.service.model, TwoStageServable):
            size = self.service.model.catalogue_size
            yield GaugeMetricFamily("workbench_catalogue_items", "Items the retrieval index holds", value=size)


#: reads ``Authorization: Bearer <token>`` (and documents it in the OpenAPI schema)
BEARER = HTTPBearer(auto_error=False, description=f"the token of `workbench serve --token` (or ${TOKEN_ENV})")


class TokenCheck:
    """A dependency that refuses (401) a request without ``Authorization: Bearer <token>``;
    the comparison takes the same time wherever the given token differs."""

    def __init__(self, token: str) -> None:
        self.expected = token.encode()

    def __call__(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        given = b"" if credentials is None else credentials.credentials.encode()
        if not hmac.compare_digest(given, self.expected):
            message = "missing or wrong token (send Authorization: Bearer <token>)"
            raise HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def _add_health_and_metrics(app: FastAPI, service: RecommendationService, gate: InFlight) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(service, gate))
    registry.register(ItemsCollector(service))

    @app.head("/health", response_model=Health, operation_id="health_head")  # what load balancers probe with
    @app.get("/health", response_model=Health)
    async def health():
        if service.shared is not None:
            await service.shared.ping()
        state = service.state_snapshot()
        return {
            "status": "ok" if state["ok"] else "degraded",
            "model_version": service.model.version,
            "queue_depth": service.batcher.queue_depth,
            "in_flight": gate.count,
            "max_in_flight": gate.limit,
            "priority_lane": service.config.priority_lane,
            "state": {k: state.get(k) for k in ("backend", "ok", "url", "namespace")},
            "pid": os.getpid(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def exposure_warning(host: str, *, token: str | None) -> str | None:
    """What binding ``host`` exposes beyond this machine, as a warning to print; None for a
    loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost" or _is_loopback(host):
        return None
    writes = (
        "POST /interactions, which requires the token (Authorization: Bearer), as POST /items does"
        if token is not None
        else f"POST /interactions without a token (and POST /items on a two-stage server): anyone can change "
        f"what users are recommended (pass --token or set {TOKEN_ENV})"
    )
    return (
        f"warning: binding {host} makes the service reachable from other machines: "
        f"GET /recommend/{{user_id}}, /health, /metrics and the API docs (/docs, /redoc, /openapi.json) "
        f"to anyone, and {writes}."
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


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


def run(
    service: RecommendationService,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    access_log: bool = False,
    fd: int | None = None,
) -> None:
    """Serve ``service`` over HTTP in the foreground until Ctrl+C (graceful: in-flight
    requests finish, then the batcher drains its queue). ``token``: what write endpoints
    require; ``access_log``: a log line per request (off: it costs a load test dearly);
    ``fd``: a listening socket inherited from a supervisor (replicas share its port;
    ``host`` and ``port`` are then ignored)."""
    app = create_app(service, token=token)
    # Everything allocated so far (model, data, the imports: ~440k objects for SASRec on
    # ml-100k) lives as long as the server; left to the cyclic GC, every full collection
    # walks it and stalls all requests ~0.2 s (measured: the HTTP p99). Freeze it once.
    gc.collect()
    gc.freeze()
    if fd is None:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log, timeout_graceful_shutdown=10)
        return
    # not socket.fromfd, which sets proto 0: asyncio turns Nagle off only on proto TCP (see ServerThread.start)
    sock = socket.socket(fileno=fd)  # family, type and proto read from the descriptor
    config = uvicorn.Config(
        app, log_level="warning", access_log=access_log, lifespan="on", timeout_graceful_shutdown=10
    )
    uvicorn.Server(config).run(sockets=[sock])
