"""Streaming (prequential) evaluation through the serving path (Vinagre, Jorge & Gama, 2014).

Train on every event before ``T0``; replay the later events in time order against a live
:class:`~workbench.serving.service.RecommendationService`: for each event ``(user, item,
time)`` ask for the user's top-k (seen items excluded, through the real batcher and
cache), score the event's item, and only then let the system learn from it under a
:class:`Policy`.

- :func:`split_at` -- the training log and the replay window (:class:`Window`);
- :class:`Policy`, :func:`policy` -- static, online, delayed(d), periodic(P) retrain,
  online + periodic(P), parsed from strings such as ``"delayed:1h"``;
- :func:`replay` -- one model under one policy -> :class:`Replay` (one row per event and
  the cost of the run).

Replay order: by timestamp, ties by ``user_id`` then ``item_id`` (whatever the input's
row order). Many users' events are in flight at once (``concurrency``), each user's own
events strictly one after the other. Every adapter's online update changes only its own
user's answers (history, folded-in vector or row), so this is the answer each event would
get at its own time, with every earlier event of the user applied -- under ``delayed(d)``,
those whose time plus ``d`` has passed. Retraining (every ``P`` of simulated time, on the
training log plus every replayed event before the boundary) waits for all earlier
events, then serves a new model version from a new service.

Each event is scored once, before its own update: ``rank`` 1..k if the item is in the
answer, else ``inf``; HR@k, nDCG@k and MRR@k (reciprocal rank, 0 beyond k: the service
answers only the top k) follow. ``cold`` marks a popularity answer (a user the serving
model does not know), ``new_item`` an item it does not know (always a miss; its update is
refused until a retrain brings the item in), ``new_user`` a user absent before ``T0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import pandas as pd

from workbench.data.schema import ITEM, TIMESTAMP, USER, require_columns
from workbench.models.base import Recommender
from workbench.serving.adapters import ServableModel, servable
from workbench.serving.app import ServerThread, create_app
from workbench.serving.load import frozen_gc, run_sync
from workbench.serving.service import RecommendationService, ServingConfig, UnknownItem

#: a model factory for retraining: interactions -> fitted model
Fit = Callable[[pd.DataFrame], Recommender]
#: the retrain period a policy falls back to when the model has no online update path
FALLBACK_RETRAIN_S = 86_400.0


class ReplayOrderWarning(UserWarning):
    """The input's events were not in timestamp order; the replay sorts them."""


class NoOnlineUpdates(UserWarning):
    """The model cannot learn from single events; the policy fell back to periodic retraining."""


# -- the window ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """``train``: events before ``t0`` (unix seconds); ``replay``: the events from ``t0``
    on, in replay order (index 0..n-1); ``reordered``: input rows that came after a later
    timestamp."""

    train: pd.DataFrame
    replay: pd.DataFrame
    t0: int
    reordered: int


def _seconds(when, timestamps: np.ndarray, name: str) -> int:
    """A quantile in (0, 1), unix seconds or a date string -> unix seconds."""
    if isinstance(when, bool):
        raise ValueError(f"{name} must be a quantile in (0, 1), unix seconds or a date, got {when!r}")
    if isinstance(when, float) and 0.0 < when < 1.0:
        return int(np.sort(timestamps)[int(when * len(timestamps))])
    if isinstance(when, (int, np.integer, float)):
        return int(when)
    try:
        return int(pd.Timestamp(when, tz="UTC").timestamp()) if isinstance(when, str) else int(when.timestamp())
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"{name} must be a quantile in (0, 1), unix seconds or a date, got {when!r:.40}") from None


def split_at(interactions: pd.DataFrame, t0, *, end=None) -> Window:
    """Training log (``timestamp < t0``) and replay window (``t0 <= timestamp < end``).

    ``t0``/``end``: a quantile of the timestamps in (0, 1) (0.8: replay about the last
    20%), unix seconds, or a date (``"1998-03-01"``, UTC). Raises ``ValueError`` when
    ``t0`` is at or before the first event (nothing to train on), after the last one, or
    the window holds no event; warns (:class:`ReplayOrderWarning`) when the input is not
    in timestamp order."""
    require_columns(interactions, [USER, ITEM, TIMESTAMP], source="split_at")
    ts = interactions[TIMESTAMP].to_numpy()
    if len(ts) == 0:
        raise ValueError("split_at: no interactions")
    start, stop = _seconds(t0, ts, "t0"), (None if end is None else _seconds(end, ts, "end"))
    first, last = _date(ts.min()), _date(ts.max())
    if start <= ts.min():
        raise ValueError(f"T0 {_date(start)} is at or before the first event ({first}): nothing to train on")
    if start > ts.max():
        raise ValueError(f"T0 {_date(start)} is after the last event ({last}): nothing to replay")
    reordered = int((ts[1:] < np.maximum.accumulate(ts)[:-1]).sum())
    if reordered:
        message = f"{reordered} of {len(ts)} events come after a later timestamp; replaying them sorted"
        warnings.warn(message, ReplayOrderWarning, stacklevel=2)
    ordered = interactions.sort_values([TIMESTAMP, USER, ITEM], kind="stable", ignore_index=True)
    inside = (ordered[TIMESTAMP] >= start) & (True if stop is None else ordered[TIMESTAMP] < stop)
    if not inside.any():
        raise ValueError(f"the replay window [{_date(start)}, {_date(stop) if stop else 'end'}) holds no event")
    replay = ordered[inside].reset_index(drop=True)
    return Window(ordered[ordered[TIMESTAMP] < start].reset_index(drop=True), replay, start, reordered)


def _date(seconds) -> str:
    return str(pd.Timestamp(int(seconds), unit="s"))


# -- policies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """When events reach the model: ``delay_s`` after their own time (0: at once; None:
    never, between retrains) and a full retrain every ``retrain_s`` of simulated time
    (None: never)."""

    name: str
    delay_s: float | None = None
    retrain_s: float | None = None

    def __post_init__(self) -> None:
        if self.delay_s is not None and self.delay_s < 0:
            raise ValueError(f"policy {self.name!r}: delay must be >= 0, got {self.delay_s}")
        if self.retrain_s is not None and not self.retrain_s > 0:
            raise ValueError(f"policy {self.name!r}: retrain period must be > 0, got {self.retrain_s}")


def _duration(text: str, spec: str) -> float:
    """Seconds from ``"90"``, ``"1min"``, ``"1h"``, ``"1d"``, ``"1w"`` (pandas' Timedelta strings)."""
    try:
        return float(text)
    except ValueError:
        pass
    if text[-1:] in ("d", "w"):  # pandas wants "1D", "1W"; "1d" is what people write
        text = text[:-1] + text[-1].upper()
    try:
        return pd.Timedelta(text).total_seconds()
    except ValueError:
        raise ValueError(f"policy {spec!r}: {text!r} is not a duration (e.g. 90, 1min, 1h, 1d, 1w)") from None


def policy(spec: str | Policy) -> Policy:
    """``"static"``, ``"online"``, ``"delayed:<d>"``, ``"periodic:<P>"`` or
    ``"online+periodic:<P>"``; durations in seconds or as ``1min``, ``1h``, ``1d``, ``1w``."""
    if isinstance(spec, Policy):
        return spec
    kind, _, arg = str(spec).partition(":")
    if kind == "static" and not arg:
        return Policy("static")
    if kind == "online" and not arg:
        return Policy("online", delay_s=0.0)
    if kind == "delayed" and arg:
        return Policy(spec, delay_s=_duration(arg, spec))
    if kind == "periodic" and arg:
        return Policy(spec, retrain_s=_duration(arg, spec))
    if kind == "online+periodic" and arg:
        return Policy(spec, delay_s=0.0, retrain_s=_duration(arg, spec))
    raise ValueError(f"unknown policy {spec!r}; use static, online, delayed:<d>, periodic:<P> or online+periodic:<P>")


def updates_scores(model: ServableModel) -> bool:
    """True when the adapter's online update changes the scores (not only hides the item)."""
    cls = type(model)
    return cls._update is not ServableModel._update or cls._scores is not ServableModel._scores


def effective(rule: Policy, model: ServableModel) -> tuple[Policy, str]:
    """``rule`` as it can run on ``model``, and a note: a policy with online updates on a
    model without an online update path falls back to periodic retraining (its own
    period, else :data:`FALLBACK_RETRAIN_S`), with a :class:`NoOnlineUpdates` warning."""
    if rule.delay_s is None or updates_scores(model):
        return rule, ""
    period = rule.retrain_s or FALLBACK_RETRAIN_S
    note = (
        f"{type(model.model).__name__} has no online update path: "
        f"{rule.name!r} falls back to periodic retraining every {pd.Timedelta(seconds=period)}"
    )
    warnings.warn(note, NoOnlineUpdates, stacklevel=3)
    return Policy(f"{rule.name} (periodic fallback)", delay_s=None, retrain_s=period), note


# -- the replay ---------------------------------------------------------------------------

#: the service the replay drives: the default batcher and cache, no deadline (an event
#: is never lost to a timeout; the latencies are measured all the same)
REPLAY_SERVING = ServingConfig(timeout_ms=None)


@dataclass(frozen=True)
class Replay:
    """One model under one policy: ``events`` (one row per replayed event, in replay
    order: ``user_id``, ``item_id``, ``timestamp``, ``rank`` (1..k or inf), ``cold``,
    ``new_item``, ``new_user``, ``user_version`` (the user's online updates the answer
    reflected), ``latency_ms``), ``cost`` (see :func:`replay`), the policy that ran
    (``rule``) and a ``note`` on a policy fallback ("" if none)."""

    model: str
    rule: Policy
    k: int
    events: pd.DataFrame
    cost: dict
    note: str = ""

    @property
    def policy(self) -> str:
        """The policy's name."""
        return self.rule.name

    def metrics(self) -> dict[str, float]:
        """HR@k, nDCG@k and MRR@k over every replayed event."""
        return event_metrics(self.events["rank"].to_numpy(), self.k).mean().to_dict()


def event_metrics(ranks: np.ndarray, k: int) -> pd.DataFrame:
    """(n,) ranks (1-based, inf = not in the top k) -> per-event ``hr@k``, ``ndcg@k``, ``mrr@k``."""
    r = np.asarray(ranks, dtype=np.float64)
    hit = r <= k
    return pd.DataFrame(
        {
            f"hr@{k}": hit.astype(np.float64),
            f"ndcg@{k}": np.where(hit, 1.0 / np.log2(np.minimum(r, k) + 1.0), 0.0),
            f"mrr@{k}": np.where(hit, 1.0 / np.where(hit, r, 1.0), 0.0),
        }
    )


class _InProcess:
    """The service's own coroutines: (items, cold, user_version) and applied-or-refused."""

    def __init__(self, service: RecommendationService) -> None:
        self.service = service

    async def recommend(self, user: int, k: int) -> tuple[tuple[int, ...], bool, int]:
        answer = await self.service.recommend(user, k)
        return answer.items, answer.cold_start, answer.user_version

    async def apply(self, user: int, item: int) -> bool:
        try:
            await self.service.add_interaction(user, item)
        except UnknownItem:
            return False
        return True


class _OverHttp:
    """The same two calls through ``GET /recommend`` and ``POST /interactions``."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def recommend(self, user: int, k: int) -> tuple[tuple[int, ...], bool, int]:
        async with self.session.get(f"/recommend/{user}", params={"k": k}) as response:
            response.raise_for_status()
            body = await response.json()
        return tuple(body["items"]), body["cold_start"], body["user_version"]

    async def apply(self, user: int, item: int) -> bool:
        async with self.session.post("/interactions", json={"user_id": user, "item_id": item}) as response:
            if response.status == 404:  # an item the serving model does not know
                return False
            response.raise_for_status()
        return True


@contextlib.asynccontextmanager
async def _serve(model: ServableModel, config: ServingConfig, *, http: bool, concurrency: int):
    """A started service for ``model`` and a client for it (in-process or over HTTP)."""
    service = RecommendationService(model, config)
    if not http:
        async with service:
            yield _InProcess(service)
        return
    with ServerThread(create_app(service)) as server:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(server.url, connector=connector) as session:
            yield _OverHttp(session)


@dataclass
class _Log:
    """The replay's arrays, filled event by event (index = position in the replay)."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    k: int
    rank: np.ndarray = field(init=False)
    cold: np.ndarray = field(init=False)
    new_item: np.ndarray = field(init=False)
    version: np.ndarray = field(init=False)
    latency: np.ndarray = field(init=False)
    pending: dict[int, deque] = field(default_factory=lambda: defaultdict(deque))
    refused: int = 0

    def __post_init__(self) -> None:
        n = len(self.users)
        self.rank = np.full(n, np.inf)
        self.cold, self.new_item = np.zeros(n, bool), np.zeros(n, bool)
        self.version, self.latency = np.zeros(n, np.int64), np.zeros(n)


async def _flush(client, log: _Log, user: int, until: float) -> None:
    """Apply the user's pending events that are due (event time + delay) by ``until``."""
    queue = log.pending.get(user)
    while queue and queue[0][1] <= until:
        item, _ = queue.popleft()
        log.refused += not await client.apply(user, item)


async def _event(client, log: _Log, i: int, delay: float | None, known, prev, slots) -> None:
    """Score event ``i`` against the live answer, then hand it to the policy."""
    if prev is not None:
        await prev  # the user's earlier event: predicted (and applied, if due) first
    user, item, t = int(log.users[i]), int(log.items[i]), float(log.times[i])
    async with slots:
        if delay is not None:
            await _flush(client, log, user, t)
        started = time.perf_counter()
        items, cold, version = await client.recommend(user, log.k)
        log.latency[i] = time.perf_counter() - started
        log.cold[i], log.version[i], log.new_item[i] = cold, version, not known.contains(np.asarray([item]))[0]
        if item in items:
            log.rank[i] = items.index(item) + 1
        if delay is not None:
            log.pending[user].append((item, t + delay))
            if delay == 0:
                await _flush(client, log, user, t)


async def _segment(client, log: _Log, positions: np.ndarray, delay, known, concurrency: int) -> None:
    """Replay ``positions``: each user's events one after the other, at most
    ``concurrency`` users' requests in flight (the earliest waiting events first)."""
    slots = asyncio.Semaphore(concurrency)
    last: dict[int, asyncio.Future] = {}
    tasks = []
    for i in positions:
        user = int(log.users[i])
        last[user] = asyncio.ensure_future(_event(client, log, int(i), delay, known, last.get(user), slots))
        tasks.append(last[user])
    await asyncio.gather(*tasks)


def replay(
    model: Recommender,
    window: Window,
    rule: Policy | str = "online",
    *,
    fit: Fit | None = None,
    k: int = 10,
    concurrency: int = 8,
    serving: ServingConfig = REPLAY_SERVING,
    http: bool = False,
    name: str | None = None,
) -> Replay:
    """Replay ``window`` against a service for ``model`` (fitted on ``window.train``)
    under ``rule``; ``fit(interactions) -> fitted model`` retrains (required by a policy
    with a retrain period, or by its fallback). ``http``: through the FastAPI app on a
    loopback port instead of in-process. ``cost``: ``events``, ``wall_s``,
    ``events_per_s``, ``cpu_s_per_1000`` (process CPU seconds per 1,000 events, retraining
    excluded), ``p50_ms``/``p99_ms`` (answer latency), ``retrains``, ``retrain_s`` (wall
    seconds fitting), ``refused_updates`` (events about items the serving model did not
    know)."""
    name = name or type(model).__name__
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(model.items):
        raise ValueError(f"k must be an integer in [1, {len(model.items)}] (the catalogue of {name}), got {k!r:.40}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r:.40}")
    rule, note = effective(policy(rule), servable(model))
    if rule.retrain_s is not None and fit is None:
        raise ValueError(f"policy {rule.name!r} retrains {name}: pass fit=")
    ev = window.replay
    log = _Log(ev[USER].to_numpy(), ev[ITEM].to_numpy(), ev[TIMESTAMP].to_numpy(), int(k))
    run = dict(fit=fit, concurrency=concurrency, serving=serving, http=http, name=name)
    with frozen_gc():
        cost = run_sync(lambda: _replay(model, window, rule, log, **run))
    events = ev[[USER, ITEM, TIMESTAMP]].assign(
        rank=log.rank,
        cold=log.cold,
        new_item=log.new_item,
        new_user=~ev[USER].isin(window.train[USER]).to_numpy(),
        user_version=log.version,
        latency_ms=log.latency * 1000,
    )
    return Replay(name, rule, int(k), events, cost | {"refused_updates": log.refused}, note)


def _boundaries(window: Window, rule: Policy) -> np.ndarray:
    """Retrain times (unix seconds) inside the replay window."""
    if rule.retrain_s is None:
        return np.empty(0)
    return np.arange(window.t0 + rule.retrain_s, window.replay[TIMESTAMP].max() + 1, rule.retrain_s)


async def _replay(model, window: Window, rule: Policy, log: _Log, *, fit, concurrency, serving, http, name) -> dict:
    """The segments between retrains, one service (model version) each; returns the cost."""
    bounds = _boundaries(window, rule)
    segment = np.searchsorted(bounds, log.times, side="right")  # (n,) 0 = before the first retrain
    retrains, retrain_s, wall, cpu = 0, 0.0, time.perf_counter(), time.process_time()
    for j in np.unique(segment):
        if j > 0:  # everything before this segment's start, whatever the delay
            started, cpu_started = time.perf_counter(), time.process_time()
            model = fit(pd.concat([window.train, window.replay[log.times < bounds[j - 1]]], ignore_index=True))
            retrains, retrain_s = retrains + 1, retrain_s + time.perf_counter() - started
            cpu += time.process_time() - cpu_started  # retraining is not the replay's CPU
            log.pending.clear()
        served = servable(model, version=f"{name.lower()}-{j}")
        async with _serve(served, serving, http=http, concurrency=concurrency) as client:
            await _segment(client, log, np.flatnonzero(segment == j), rule.delay_s, served.items, concurrency)
    wall_s = time.perf_counter() - wall - retrain_s
    n = len(log.users)
    return {
        "events": n,
        "wall_s": wall_s,
        "events_per_s": n / wall_s,
        "cpu_s_per_1000": (time.process_time() - cpu) / n * 1000,
        "p50_ms": float(np.quantile(log.latency, 0.5) * 1000),
        "p99_ms": float(np.quantile(log.latency, 0.99) * 1000),
        "retrains": retrains,
        "retrain_s": retrain_s,
    }
