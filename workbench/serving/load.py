"""Load generation for the recommendation service, over HTTP or in-process.

- :func:`run_load` -- one run of a :class:`LoadSpec`: closed loop (``level`` clients,
  each sending its next request when the last one is answered: throughput at a fixed
  number of outstanding requests) or open loop (Poisson arrivals at ``level``
  requests/s whatever the answers do: what overload looks like);
- a *caller* sends one request and names its outcome: :func:`aiohttp_caller` or
  :func:`http_caller` (httpx) go through the whole web stack, :func:`service_caller`
  calls the service itself (no HTTP), which separates model and batching time from web
  overhead;
- :func:`freshness` -- time from ``add_interaction`` to the first answer that reflects it;
- :func:`http_load` -- one closed- or open-loop run against a service URL.

Every run is bounded by a request count *and* a duration; requests still unanswered
``drain_s`` after the end are cancelled and counted ``lost``. Outcomes: ``ok``,
``rejected`` (503), ``timeout`` (504 or client timeout), ``invalid`` (422), ``error``
(other), ``refused`` (no connection), ``disconnected`` (connection closed before an
answer), ``misrouted`` (an answer for another user).
:func:`run_sync` runs any of these from plain code, a notebook or a widget callback.
Notebook 07's experiments built from these live in :mod:`workbench.serving.scenarios`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp
import httpx
import numpy as np
import pandas as pd

from workbench.serving.batcher import Overloaded, RequestTimeout, ShuttingDown
from workbench.serving.service import InvalidRequest, RecommendationService

#: (user_id, k) -> outcome name
Caller = Callable[[int, int], Awaitable[str]]
OUTCOMES = ("ok", "rejected", "timeout", "invalid", "error", "refused", "disconnected", "misrouted")
_STATUS = {503: "rejected", 504: "timeout", 422: "invalid"}
#: seconds a run waits for its last answers before counting them lost
DRAIN_S = 10.0


def http_caller(client) -> Caller:
    """A caller for ``GET /recommend/{user_id}`` through an ``httpx.AsyncClient``
    whose ``base_url`` is the service."""

    async def call(user_id: int, k: int) -> str:
        try:
            response = await client.get(f"/recommend/{user_id}", params={"k": k})
        except httpx.TimeoutException:
            return "timeout"
        except httpx.ConnectError:
            return "refused"
        except httpx.TransportError:  # the connection closed before an answer came
            return "disconnected"
        if response.status_code == 200:
            return "ok" if response.json()["user_id"] == user_id else "misrouted"
        return _STATUS.get(response.status_code, "error")

    return call


def aiohttp_caller(session) -> Caller:
    """A caller for ``GET /recommend/{user_id}`` through an ``aiohttp.ClientSession``
    whose base URL is the service. aiohttp parses HTTP in C: on two cores it costs the
    load generator about a fifth of the CPU httpx does per request, so the server, not
    the client, is what saturates (see :func:`http_load`)."""

    async def call(user_id: int, k: int) -> str:
        try:
            async with session.get(f"/recommend/{user_id}", params={"k": k}) as response:
                if response.status == 200:
                    return "ok" if (await response.json())["user_id"] == user_id else "misrouted"
                await response.read()
                return _STATUS.get(response.status, "error")
        except asyncio.TimeoutError:
            return "timeout"
        except aiohttp.ClientConnectorError:
            return "refused"
        except aiohttp.ClientError:  # the connection closed before an answer came
            return "disconnected"

    return call


def service_caller(service: RecommendationService) -> Caller:
    """A caller that awaits ``service.recommend`` directly (no HTTP)."""

    async def call(user_id: int, k: int) -> str:
        try:
            answer = await service.recommend(user_id, k)
        except (Overloaded, ShuttingDown):
            return "rejected"
        except RequestTimeout:
            return "timeout"
        except InvalidRequest:
            return "invalid"
        except Exception:
            return "error"
        return "ok" if answer.user_id == user_id else "misrouted"

    return call


@dataclass(frozen=True)
class LoadResult:
    """One run: ``sent`` requests, their ``outcomes`` (counts, ``lost`` included), the
    latencies of the answered ones and of the rejected ones (ms), over ``duration_s``
    seconds."""

    mode: str  # "closed" or "open"
    level: float  # concurrency (closed) or target rate in requests/s (open)
    duration_s: float
    sent: int
    outcomes: dict[str, int]
    latencies_ms: np.ndarray = field(repr=False)
    rejected_ms: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def throughput(self) -> float:
        """Answered (``ok``) requests per second."""
        return self.outcomes.get("ok", 0) / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> dict:
        """One flat row: mode, level, throughput, p50/p95/p99 of answered requests (ms),
        outcome counts, and p99 of rejected ones (how fast a 503 comes back)."""
        lat = self.latencies_ms
        q = np.quantile(lat, [0.5, 0.95, 0.99]) if len(lat) else [np.nan] * 3
        return {
            "mode": self.mode,
            "level": self.level,
            "sent": self.sent,
            "duration_s": round(self.duration_s, 3),
            "throughput_rps": self.throughput,
            "p50_ms": q[0],
            "p95_ms": q[1],
            "p99_ms": q[2],
            **{name: self.outcomes.get(name, 0) for name in (*OUTCOMES, "lost")},
            "p99_rejected_ms": float(np.quantile(self.rejected_ms, 0.99)) if len(self.rejected_ms) else np.nan,
        }


class _Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.outcomes: dict[str, int] = {}
        self.latencies: list[float] = []
        self.rejected: list[float] = []

    async def one(self, call: Caller, user_id: int, k: int) -> None:
        started = time.perf_counter()
        outcome = await call(user_id, k)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome == "ok":
            self.latencies.append((time.perf_counter() - started) * 1000)
        elif outcome == "rejected":
            self.rejected.append((time.perf_counter() - started) * 1000)

    def result(self, mode: str, level: float, duration_s: float, lost: int) -> LoadResult:
        return LoadResult(
            mode,
            level,
            duration_s,
            self.sent,
            {**self.outcomes, "lost": lost},
            np.asarray(self.latencies, dtype=np.float64),
            np.asarray(self.rejected, dtype=np.float64),
        )


async def _finish(tasks: list[asyncio.Task], drain_s: float) -> int:
    """Wait up to ``drain_s`` for ``tasks``; cancel the rest and return how many."""
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return len(pending)


def _picks(users: Sequence[int], requests: int, seed: int) -> np.ndarray:
    """Uniformly drawn users for the first requests; longer runs cycle through them."""
    return np.random.default_rng(seed).choice(np.asarray(users), size=max(1, min(requests, 2**16)))


@dataclass(frozen=True, kw_only=True)
class LoadSpec:
    """One load run: ``mode`` "closed" (``level`` clients, each sending its next request
    when the last is answered: throughput at a fixed number of outstanding requests) or
    "open" (Poisson arrivals at ``level`` requests/s whatever the answers do: what
    overload looks like); at most ``requests`` requests and ``duration_s`` seconds; each
    asks for the top ``k``; ``seed`` draws the users (and the arrivals)."""

    mode: str = "closed"
    level: float = 16
    requests: int = 2000
    duration_s: float = 5.0
    k: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', got {self.mode!r}")
        if not self.level > 0 or (self.mode == "closed" and int(self.level) < 1):
            raise ValueError(f"level must be > 0 (closed loop: at least 1 client), got {self.level!r}")
        if not (self.requests >= 1 and self.duration_s > 0):
            raise ValueError(f"need requests >= 1 and duration_s > 0, got {self.requests!r}, {self.duration_s!r}")


async def run_load(call: Caller, users: Sequence[int], spec: LoadSpec, *, drain_s: float = DRAIN_S) -> LoadResult:
    """One run of ``spec`` through ``call``, for random ``users``; requests still
    unanswered ``drain_s`` after the end are cancelled and counted ``lost``."""
    loop = _closed_loop if spec.mode == "closed" else _open_loop
    return await loop(call, users, spec, drain_s)


async def _closed_loop(call: Caller, users: Sequence[int], spec: LoadSpec, drain_s: float) -> LoadResult:
    concurrency, requests, k = int(spec.level), spec.requests, spec.k
    picks = _picks(users, requests, spec.seed)
    tally, started = _Tally(), time.perf_counter()
    deadline = started + spec.duration_s
    in_flight = 0  # counted by the clients, so lost requests are known exactly
    stopped = False

    async def client() -> None:
        nonlocal in_flight
        while not stopped and tally.sent < requests and time.perf_counter() < deadline:
            user = int(picks[tally.sent % len(picks)])
            tally.sent += 1
            in_flight += 1
            await tally.one(call, user, k)
            in_flight -= 1
            await asyncio.sleep(0)  # a cache hit or a rejection never suspends: let others run

    tasks = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    try:
        await asyncio.wait(tasks, timeout=spec.duration_s + drain_s)
    finally:  # also when this coroutine is cancelled: no client outlives it
        # The flag, not only the cancellation, ends the clients: on Python < 3.12 a
        # cancellation that meets a request finishing inside asyncio.wait_for (the
        # batcher's deadline) is swallowed, and that client would go on sending.
        stopped = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return tally.result("closed", concurrency, time.perf_counter() - started, lost=in_flight)


async def _open_loop(call: Caller, users: Sequence[int], spec: LoadSpec, drain_s: float) -> LoadResult:
    rate, duration_s = spec.level, spec.duration_s
    requests = min(spec.requests, int(rate * duration_s * 1.5) + 100)  # arrivals after duration_s are never sent
    arrivals = np.cumsum(np.random.default_rng(spec.seed + 1).exponential(1.0 / rate, size=requests))  # s from start
    picks = _picks(users, requests, spec.seed)
    tally, started = _Tally(), time.perf_counter()
    tasks = []
    try:
        for i, at in enumerate(arrivals):
            if at > duration_s:
                break
            delay = started + at - time.perf_counter()
            await asyncio.sleep(max(delay, 0))  # always yields, so arrivals never starve the answers
            tally.sent += 1
            tasks.append(asyncio.ensure_future(tally.one(call, int(picks[i % len(picks)]), spec.k)))
        lost = await _finish(tasks, drain_s)
    finally:  # also when this coroutine is cancelled
        for task in tasks:
            task.cancel()
    return tally.result("open", rate, time.perf_counter() - started, lost=lost)


async def freshness(service: RecommendationService, updates: Sequence[tuple[int, int]], *, k: int = 10) -> pd.DataFrame:
    """For each ``(user_id, item_id)``: apply it, then ask for the user's top-``k``.

    Returns one row per update: ``update_ms`` (applying it), ``fresh_ms`` (from the
    update call to the answer), ``reflected`` (the answer counts the update and no
    longer recommends the item).
    """
    rows = []
    for user, item in updates:
        started = time.perf_counter()
        version = await service.add_interaction(user, item)
        applied = time.perf_counter()
        answer = await service.recommend(user, k)
        done = time.perf_counter()
        rows.append(
            {
                "user_id": user,
                "item_id": item,
                "update_ms": (applied - started) * 1000,
                "fresh_ms": (done - started) * 1000,
                "reflected": answer.user_version >= version and item not in answer.items,
            }
        )
    return pd.DataFrame(rows)


def update_pairs(model, users: Sequence[int], n: int, *, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` (user_id, item_id) pairs: random ``users``, each with an item not yet in
    their history (for :func:`freshness`); ``model`` is a ServableModel."""
    rng = np.random.default_rng(seed)
    pairs = []
    for user in rng.choice(np.asarray(users), size=n):
        seen = set(model.history(int(user)).tolist())
        free = [i for i in rng.permutation(model.n_items)[: len(seen) + 10] if i not in seen]
        pairs.append((int(user), int(model.items.ids([free[0]])[0])))
    return pairs


def run_sync(make: Callable[[], Awaitable]):
    """Run the coroutine ``make()`` on a fresh event loop in a worker thread and return
    its result; works where a loop is already running (Jupyter, widget callbacks).
    Runs under :func:`frozen_gc`."""
    with frozen_gc(), concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


_frozen = 0
_frozen_lock = threading.Lock()


@contextlib.contextmanager
def frozen_gc():
    """Treat every object alive on entry as permanent until exit (``gc.freeze``), as
    ``workbench serve`` does after loading: a full collection then skips the model, the
    data and the imports (~440k objects for SASRec on ml-100k, 0.2 s a collection)
    instead of stalling every request in flight. Nested uses freeze once."""
    global _frozen
    with _frozen_lock:
        if _frozen == 0:
            gc.freeze()
        _frozen += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen -= 1
            if _frozen == 0:
                gc.unfreeze()


async def http_load(url: str, users: Sequence[int], spec: LoadSpec, *, client: str = "aiohttp") -> LoadResult:
    """One run of ``spec`` against the service at ``url``. ``client``: "aiohttp" (default)
    or "httpx". Measured on two cores against ``workbench serve``, an httpx generator uses
    a whole core at ~1,000 requests/s and becomes the bottleneck it is meant to measure;
    aiohttp uses a quarter to a third of a core at ~2,000. Closed loop: the connections
    are opened before the clock starts. Clients give up on a request before the drain
    ends, so every request has an outcome."""
    if client not in ("aiohttp", "httpx"):
        raise ValueError(f"client must be 'aiohttp' or 'httpx', got {client!r}")
    opener = _aiohttp_callers if client == "aiohttp" else _httpx_callers
    n_clients = int(spec.level) if spec.mode == "closed" else 1
    async with opener(url, n_clients, open_loop=spec.mode == "open") as callers:
        if spec.mode == "open":
            return await run_load(callers[0], users, spec)
        free: asyncio.Queue = asyncio.Queue()
        for caller in callers:
            free.put_nowait(caller)

        async def call(user_id: int, k: int) -> str:
            caller = await free.get()
            try:
                return await caller(user_id, k)
            finally:
                free.put_nowait(caller)

        return await run_load(call, users, spec)


@contextlib.asynccontextmanager
async def _aiohttp_callers(url: str, n: int, *, open_loop: bool):
    """``n`` callers sharing one session (closed loop: ``n`` connections, opened now)."""
    connector = aiohttp.TCPConnector(limit=1000 if open_loop else n)
    timeout = aiohttp.ClientTimeout(total=DRAIN_S - 2)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        if not open_loop:
            await asyncio.gather(*[_warm(session.get("/health")) for _ in range(n)])
        yield [aiohttp_caller(session)] * n


async def _warm(request) -> None:
    async with request as response:
        await response.read()


@contextlib.asynccontextmanager
async def _httpx_callers(url: str, n: int, *, open_loop: bool):
    """Closed loop: one single-connection client per caller (httpx's shared pool costs
    more per request as connections grow); open loop: one client, many connections."""
    limits = httpx.Limits(max_connections=1000 if open_loop else 1)
    clients = [httpx.AsyncClient(base_url=url, timeout=DRAIN_S - 2, limits=limits) for _ in range(n)]
    try:
        if not open_loop:
            await asyncio.gather(*[c.get("/health") for c in clients])
        yield [http_caller(c) for c in clients]
    finally:
        for c in clients:
            await c.aclose()


@contextlib.contextmanager
def served_process(
    cmd: Sequence[str], port: int, *, replicas: int = 1, timeout_s: float = 300.0, **popen
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``cmd`` (a ``workbench serve ... --port PORT`` command line), wait until
    ``/health`` answers -- from ``replicas`` distinct pids when it starts replicas -- and
    yield ``(url, process)``; always stop it with SIGINT (a graceful drain), then kill.
    Raises RuntimeError if it exits or stays silent for ``timeout_s``."""
    proc = subprocess.Popen(list(cmd), **popen)
    url = f"http://127.0.0.1:{port}"
    try:
        pids, deadline = set(), time.monotonic() + timeout_s
        while len(pids) < replicas:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start ({len(pids)} of {replicas} answered): {' '.join(cmd)}")
            try:
                pids.add(httpx.get(f"{url}/health", timeout=2).json().get("pid", 0))
            except httpx.TransportError:
                time.sleep(0.2)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
