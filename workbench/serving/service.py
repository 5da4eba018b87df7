"""The serving core: a servable model behind the micro-batcher, with a top-k cache.

>>> service = RecommendationService(servable(model), ServingConfig(max_batch_size=32))
>>> async with service:
...     answer = await service.recommend(user_id=7, k=10)      # a Recommendation
...     await service.add_interaction(user_id=7, item_id=42)   # the next answer reflects it

Request path: validate -> cache (key ``(user, k, model version)``, capped by the items
its answers hold) -> cold start for a user without history (popularity, flagged) ->
micro-batcher (deadline counted from the request's arrival; refused at once when the
expected wait already exceeds it) -> model. An update changes
the user's state at once and drops the user's cache entries; an answer computed from
the state *before* an update is returned to its caller but never cached, so the cache
cannot bring back a stale list. Until a user has been answered from their updated state,
their requests take the batcher's priority lane: the answer that shows a new
interaction waits neither for a batch to fill nor behind the batch being computed.
:meth:`RecommendationService.snapshot` returns the counters the HTTP ``/metrics``
endpoint exports.

``ServingConfig(max_batch_size=1, cache_size=0)`` is per-request serving, the baseline.

Replicas sharing state (a model whose ``state`` is a shared backend, Redis: see
:mod:`.state`): every update is published; each replica's listener drops that user's
cached answers and puts their next read in the priority lane. The message can arrive
after the client that made the update reads from another replica, so a cache hit is
served only when its ``user_version`` still equals the user's update count in Redis (one
round trip, cheaper than a model call); otherwise it is dropped and recomputed with
priority (``cache_stale``). So once ``POST /interactions`` has answered, no replica
answers that user from the state before it. Updates run in a worker thread (a Redis
transaction must not hold up the event loop); when Redis is down they fail at once
(:class:`~workbench.serving.state.StateUnavailable`, HTTP 503) and reads fall back to the
last state this replica saw, a cached answer included (``degraded_reads``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from workbench.serving.adapters import Recommendation, ServableModel
from workbench.serving.batcher import BatcherConfig, MicroBatcher, Overloaded, RequestTimeout, ShuttingDown
from workbench.serving.cache import TopKCache
from workbench.serving.state import StateUnavailable

#: the largest user or item id accepted (ids are int64)
MAX_ID = 2**63 - 1
#: latencies kept for the quantiles in :meth:`RecommendationService.snapshot`
LATENCY_WINDOW = 10_000


class InvalidRequest(ValueError):
    """A bad ``k``, user id or item id (HTTP 422); ``field`` names the offending one."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownItem(InvalidRequest):
    """An interaction with an item the model does not know (HTTP 404)."""


@dataclass(frozen=True, kw_only=True)
class ServingConfig:
    """Batcher options (see :class:`~workbench.serving.batcher.BatcherConfig`; ``priority_lane``:
    the first read after an update jumps the queue), the HTTP admission limit
    (``max_in_flight`` recommendation requests inside the server, beyond which it answers
    503 at once; None: ``max_queue + max_batch_size``), the cache (``cache_size``: top-k
    items held over all cached answers, so 10,000 answers of k=10 or 100 of k=1000
    (7-14 MB measured); 0 = off; ``cache_ttl_s`` seconds, None = no expiry) and the largest
    ``k`` served (``max_k``, also capped by the catalogue size)."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    timeout_ms: float | None = 1000.0
    priority_lane: bool = True
    max_in_flight: int | None = None
    cache_size: int = 100_000
    cache_ttl_s: float | None = None
    max_k: int = 1000

    def __post_init__(self) -> None:
        self.batcher()  # the batcher's own checks
        if self.max_in_flight is not None and not (isinstance(self.max_in_flight, int) and self.max_in_flight >= 1):
            raise ValueError(f"max_in_flight must be a positive integer or None, got {self.max_in_flight!r}")

    @property
    def in_flight_limit(self) -> int:
        """``max_in_flight``, or by default room for a full queue plus the batch being computed."""
        return self.max_in_flight if self.max_in_flight is not None else self.max_queue + self.max_batch_size

    def batcher(self) -> BatcherConfig:
        return BatcherConfig(
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            max_queue=self.max_queue,
            timeout_ms=self.timeout_ms,
            priority_lane=self.priority_lane,
        )


class RecommendationService:
    """Model + micro-batcher + cache + counters; see the module docstring."""

    def __init__(self, model: ServableModel, config: ServingConfig = ServingConfig()) -> None:
        self.model = model
        self.config = config
        self.max_k = min(config.max_k, model.n_items)
        self.cache = TopKCache(config.cache_size, ttl_s=config.cache_ttl_s)
        self.batcher: MicroBatcher = MicroBatcher(model.recommend_batch, config.batcher(), on_batch=self._on_batch)
        self.counts: Counter[str] = Counter()  # requests by outcome, updates, batches
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)  # seconds, answered requests
        self.latency_seconds = 0.0  # sum over all answered requests
        self.model_seconds = 0.0
        self._epochs: dict[int, int] = {}  # user id -> updates seen by the service
        self._unseen: set[int] = set()  # users updated since their last answer from the model
        state = getattr(model, "state", None)
        self.shared = state if getattr(state, "shared", False) else None  # a state backend shared by replicas
        self._latest: dict[int, int] = {}  # user id -> newest update count heard of (shared state)
        self._listener: asyncio.Task | None = None

    async def start(self) -> RecommendationService:
        await self.batcher.start()
        if self.shared is not None:
            self._listener = asyncio.ensure_future(self.shared.listen(self._heard, self._resubscribed))
        return self

    async def close(self, *, drain: bool = True) -> None:
        """Stop intake; answer queued requests first when ``drain``."""
        await self.batcher.close(drain=drain)
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
            await self.shared.aclose()

    async def __aenter__(self) -> RecommendationService:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- requests -----------------------------------------------------------------------

    def check(self, user_id, k=10) -> tuple[int, int]:
        """Validated ``(user_id, k)``; raises :class:`InvalidRequest`."""
        _check_id(user_id, "user_id")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.max_k:
            raise InvalidRequest(f"k must be an integer in [1, {self.max_k}], got {k!r:.40}", field="k")
        return int(user_id), int(k)

    async def recommend(self, user_id: int, k: int = 10, *, arrived: float | None = None) -> Recommendation:
        """Top-``k`` for one user; the deadline and the latency count from ``arrived`` (a
        ``time.perf_counter()`` reading taken when the request reached the server; None:
        now). Raises :class:`InvalidRequest`, :class:`Overloaded`,
        :class:`RequestTimeout`, :class:`ShuttingDown`, or the model's own error."""
        started = time.perf_counter() if arrived is None else arrived
        try:
            user_id, k = self.check(user_id, k)
        except InvalidRequest:
            self.counts["invalid"] += 1
            raise
        self.counts["requests"] += 1
        key = (user_id, k, self.model.version)
        use_cache = self.config.cache_size > 0
        answer = self.cache.get(key) if use_cache else None
        if answer is not None and self.shared is not None and not await self._current(answer):
            answer = None
        if answer is not None:
            self.counts["cache_hits"] += 1
        elif not await self._knows(user_id):
            answer = self.model.cold_start(user_id, k)
            self.counts["cold_start"] += 1
        else:
            epoch = self._epochs.get(user_id, 0)
            priority = user_id in self._unseen
            answer = await self._submit((user_id, k), priority=priority, arrived=started)
            if self._epochs.get(user_id, 0) == epoch:  # no update while it computed
                self._unseen.discard(user_id)
                if use_cache:
                    self.cache.put(key, answer, items=len(answer.items))
        elapsed = time.perf_counter() - started
        self.counts["ok"] += 1
        self.latencies.append(elapsed)
        self.latency_seconds += elapsed
        return answer

    async def _current(self, answer: Recommendation) -> bool:
        """Whether a cached ``answer`` still reflects every update of its user in the shared
        state (Redis down: yes, the last known state). A stale one is dropped, its user's
        next read takes the priority lane."""
        updates = await self.shared.current(answer.user_id)
        if updates is None or updates == answer.user_version:
            return True
        self.cache.invalidate_user(answer.user_id)
        self.cache.hits, self.cache.misses = self.cache.hits - 1, self.cache.misses + 1
        self._unseen.add(answer.user_id)
        self.counts["cache_stale"] += 1
        return False

    async def _knows(self, user_id: int) -> bool:
        if self.shared is None:
            return self.model.knows(user_id)
        return self.model.trained(user_id) or await self.shared.exists(user_id)

    def _heard(self, user_id: int, updates: int) -> None:
        """A replica (this one included) applied an update: drop the user's cached answers
        and give their next read priority, unless this one is already known."""
        if updates <= self._latest.get(user_id, 0):
            return
        self._latest[user_id] = updates
        self._changed(user_id)
        self.counts["invalidations"] += 1

    def _resubscribed(self) -> None:
        """(Re)subscribed to the update messages: any published while not subscribed are
        lost, so every cached answer may be stale: start an empty cache (same counters)."""
        if len(self.cache):
            fresh = TopKCache(self.config.cache_size, ttl_s=self.config.cache_ttl_s)
            fresh.hits, fresh.misses = self.cache.hits, self.cache.misses
            self.cache = fresh

    def _changed(self, user_id: int) -> None:
        self._epochs[user_id] = self._epochs.get(user_id, 0) + 1
        self._unseen.add(user_id)
        self.cache.invalidate_user(user_id)

    async def _submit(self, request: tuple[int, int], *, priority: bool, arrived: float) -> Recommendation:
        """The batcher's answer, counting every way it can fail."""
        self.counts["priority"] += priority
        try:
            return await self.batcher.submit(request, priority=priority, arrived=arrived)
        except Overloaded:
            self.counts["rejected"] += 1
            raise
        except RequestTimeout:
            self.counts["timeouts"] += 1
            raise
        except ShuttingDown:
            self.counts["shutting_down"] += 1
            raise
        except asyncio.CancelledError:  # the caller went away
            self.counts["cancelled"] += 1
            raise
        except Exception:
            self.counts["errors"] += 1
            raise

    async def add_interaction(self, user_id: int, item_id: int) -> int:
        """Apply one interaction now and drop the user's cached answers; returns the
        user's update count. Bad ids raise :class:`InvalidRequest`, unknown items
        :class:`UnknownItem` (both counted as ``invalid_updates``)."""
        try:
            _check_id(user_id, "user_id")
            _check_id(item_id, "item_id")
            if self.shared is None:
                version = self.model.add_interaction(int(user_id), int(item_id))
            else:  # a Redis transaction: not on the event loop
                version = await asyncio.to_thread(self.model.add_interaction, int(user_id), int(item_id))
        except StateUnavailable:
            self.counts["updates_unavailable"] += 1
            raise
        except InvalidRequest:
            self.counts["invalid_updates"] += 1
            raise
        except KeyError as err:  # UnknownIdError
            self.counts["invalid_updates"] += 1
            raise UnknownItem(str(err), field="item_id") from None
        if self.shared is not None:
            self._latest[int(user_id)] = max(version, self._latest.get(int(user_id), 0))
        self._changed(int(user_id))
        self.counts["updates"] += 1
        return version

    # -- what /metrics shows --------------------------------------------------------------

    def _on_batch(self, size: int, seconds: float) -> None:
        self.counts["batches"] += 1
        self.model_seconds += seconds

    def snapshot(self) -> dict:
        """Counters, queue depth, cache size and hit rate, batch-size counts and latency
        quantiles (seconds, over the last :data:`LATENCY_WINDOW` answers)."""
        lat = np.asarray(self.latencies, dtype=np.float64)
        quantiles = {q: float(np.quantile(lat, q)) if len(lat) else float("nan") for q in (0.5, 0.95, 0.99)}
        return {
            "counts": dict(self.counts),
            "queue_depth": self.batcher.queue_depth,
            "expected_wait_s": self.batcher.expected_wait_s(),
            "cache_entries": len(self.cache),
            "cache_items": self.cache.items,
            "cache_max_items": self.cache.max_items,
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
            "cache_hit_rate": self.cache.hit_rate,
            "batch_sizes": dict(sorted(self.batcher.batch_sizes.items())),
            "priority_batches": self.batcher.priority_batches,
            "model_seconds": self.model_seconds,
            "latency_quantiles": quantiles,
            "latency_seconds": self.latency_seconds,
            "model_version": self.model.version,
            "state": self.state_snapshot(),
        }

    def state_snapshot(self) -> dict:
        """The state backend: what it is and whether it answers (``describe()``), its
        operations, errors and latencies, degraded reads and write conflicts."""
        state = getattr(self.model, "state", None)
        if state is None:  # a servable without a state backend (a test double)
            return {"backend": "in-process", "ok": True, "operations": {}, "errors": {}, "latency_quantiles": {}}
        return {
            **state.describe(),
            **state.stats.snapshot(),
            "degraded_reads": state.degraded_reads,
            "conflicts": state.conflicts,
        }


def _check_id(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_ID:
        raise InvalidRequest(f"{name} must be an integer in [0, 2**63 - 1], got {value!r:.40}", field=name)
