"""Where a servable keeps each user's online state: in this process (the default) or in
Redis, shared by every replica.

A user's online state is one :class:`UserState`: the items added online (indices, oldest
first; with the training history they are the user's seen items and, for sequential
models, the sequence read), the update count, and for iALS the folded-in vector.

- :class:`InProcessState` -- a dict under a lock; nothing to install; one process only.
- :class:`RedisState` -- one Redis string per user, ``{namespace}:u:{user_id}``: a header
  (schema uint16, updates uint64, number of added items uint32; little-endian), the added
  items (int32) and the vector (float32), so a batch reads all its users with one
  ``MGET`` (a pipeline of one hash read per user costs 7x more client time, measured)
  and a cache-hit check reads 10 bytes (``GETRANGE``). An update is a read-modify-write under ``WATCH`` / ``MULTI`` /
  ``EXEC`` (optimistic: a conflicting write in between makes EXEC fail and the update
  is recomputed from the new state), because the new state is computed in Python from
  the old one (iALS's fold-in solves an (f, f) system over the whole history), which a
  Lua script cannot do; the same transaction ``PUBLISH``es ``user_id:n`` on
  ``{namespace}:updates`` so every replica drops that user's cached answers.

Keys are namespaced by model version and data set fingerprint
(``wb:{model_version}:{data_fingerprint[:16]}``): state of another model version or data
set is never read. ``{namespace}:meta`` records the schema and the full identity; a
replica refuses (:class:`StateError`) a namespace holding another model under the same
version label, another data set, or a newer schema, and a user record of a newer schema.

Failures: a Redis that cannot be reached raises :class:`StateUnavailable` (HTTP 503) on
update, at once (no retry loop: one reconnect attempt, 1 s socket timeouts); reads fall
back to the last state this replica read or wrote for the user, or to none (training
history only; cold start for a user without one), and are counted (``degraded_reads``).
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

#: the layout of the records this build writes (and the newest it reads)
SCHEMA = 1
#: recomputations of one update after conflicting writes before giving up
MAX_ATTEMPTS = 100
#: users whose last read or written state a Redis replica keeps for degraded reads
LAST_KNOWN = 100_000
#: latencies kept per operation for the quantiles in :meth:`StateStats.snapshot`
LATENCY_WINDOW = 10_000
#: a user record's header: schema, updates, items added (then int32 items, float32 vector)
_HEADER = struct.Struct("<HQI")
_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)


class StateError(RuntimeError):
    """State the service must not use: a malformed URL, another model's or data set's
    state, a newer schema."""


class StateUnavailable(StateError):
    """The state backend cannot be reached (an update is refused: HTTP 503)."""


@dataclass(frozen=True)
class UserState:
    """One user's online state: ``added`` item indices (oldest first), ``updates``
    applied, and the folded-in ``vector`` ((f,) float32) of factor models."""

    added: tuple[int, ...] = ()
    updates: int = 0
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class Identity:
    """What the state belongs to: the served model's version label, a fingerprint of the
    data it was trained on and one of its options (see ``adapters.identity``)."""

    model_version: str
    data_fingerprint: str
    model_fingerprint: str

    @property
    def namespace(self) -> str:
        return f"wb:{self.model_version}:{self.data_fingerprint[:16]}"

    def as_meta(self) -> dict[str, str]:
        return {"schema": str(SCHEMA), **{k: getattr(self, k) for k in self.__dataclass_fields__}}


class StateStats:
    """Operations, errors and latencies (seconds) per operation of a state backend."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: dict[str, deque[float]] = {}

    def record(self, op: str, started: float, *, error: bool = False) -> None:
        self.counts[op] += 1
        self.errors[op] += error
        self.latencies.setdefault(op, deque(maxlen=LATENCY_WINDOW)).append(time.perf_counter() - started)

    def snapshot(self) -> dict:
        quantiles = {
            op: {q: float(np.quantile(np.asarray(lat), q)) for q in (0.5, 0.99)}
            for op, lat in self.latencies.items()
            if lat
        }
        return {"operations": dict(self.counts), "errors": dict(self.errors), "latency_quantiles": quantiles}


class InProcessState:
    """Users' online state in a dict of this process (the default backend)."""

    shared = False
    backend = "in-process"

    def __init__(self) -> None:
        self._users: dict[int, UserState] = {}
        self._lock = threading.Lock()
        self.stats = StateStats()
        self.degraded_reads = 0
        self.conflicts = 0

    def read(self, users: Sequence[int]) -> list[UserState | None]:
        """Each user's state (None: no online state), as of one instant."""
        with self._lock:
            return [self._users.get(u) for u in users]

    def update(self, user_id: int, change: Callable[[UserState], UserState]) -> UserState:
        """Replace the user's state by ``change(old)`` atomically; ``change`` may raise
        (nothing changes)."""
        with self._lock:
            new = change(self._users.get(user_id, UserState()))
            self._users[user_id] = new
        return new

    def describe(self) -> dict:
        return {"backend": self.backend, "ok": True}

    def close(self) -> None:
        """Nothing to release."""


def display_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (what errors and /health show)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _options(timeout_s: float) -> dict:
    """Fail fast: one immediate reconnect attempt (a connection broken by a Redis
    restart), then the error; ``timeout_s`` bounds connecting and every reply."""
    return dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1))


def _check_url(url: str) -> None:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise StateError(f"state URL must look like redis://HOST:PORT/DB, got {url!r:.80}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
        redis.connection.parse_url(url)
    except ValueError as err:
        raise StateError(f"malformed Redis URL {url!r:.80}: {err}") from None
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise StateError(f"malformed Redis URL {url!r:.80}: the database must be a number, got {db!r:.20}")


def _header(user_id: int, raw: bytes, url: str) -> tuple[int, int]:
    """(updates, items added) of a user record; refuses a newer schema."""
    (schema,) = struct.unpack_from("<H", raw)
    if schema > SCHEMA:
        raise StateError(
            f"user {user_id}'s state in {url} was written by schema {schema}; this build reads "
            f"schema <= {SCHEMA} (upgrade the service, or delete the key)"
        )
    return _HEADER.unpack_from(raw)[1:]


def _decode(user_id: int, raw: bytes | None, url: str) -> UserState | None:
    if raw is None:
        return None
    updates, n_added = _header(user_id, raw, url)
    added = np.frombuffer(raw, dtype="<i4", count=n_added, offset=_HEADER.size)
    vector = raw[_HEADER.size + 4 * n_added :]
    return UserState(tuple(added.tolist()), updates, np.frombuffer(vector, dtype="<f4").copy() if vector else None)


def _encode(state: UserState) -> bytes:
    added = np.asarray(state.added, dtype="<i4").tobytes()
    vector = b"" if state.vector is None else np.asarray(state.vector, dtype="<f4").tobytes()
    return _HEADER.pack(SCHEMA, state.updates, len(state.added)) + added + vector


class RedisState:
    """Users' online state in Redis at ``url``, shared by every replica that serves the
    same :class:`Identity` (see the module docstring). Reads and updates are synchronous
    (the batcher's worker thread, or a thread of the service's); :meth:`current`,
    :meth:`exists`, :meth:`ping` and :meth:`listen` are the service's asyncio side.

    Raises :class:`StateError` for a malformed URL or state that is not this model's, and
    :class:`StateUnavailable` naming the URL when Redis cannot be reached at start."""

    shared = True
    backend = "redis"

    def __init__(self, url: str, identity: Identity, *, timeout_s: float = 1.0) -> None:
        _check_url(url)
        self.url, self.identity, self.timeout_s = display_url(url), identity, timeout_s
        self._url = url
        self.namespace = identity.namespace
        self.channel = f"{self.namespace}:updates"
        self.stats = StateStats()
        self.degraded_reads = 0
        self.conflicts = 0
        self.ok = True
        self._last: OrderedDict[int, UserState] = OrderedDict()
        self._last_lock = threading.Lock()
        self._aio: redis.asyncio.Redis | None = None
        self._client = redis.Redis.from_url(url, **_options(timeout_s))
        try:
            self._claim()
        except _DOWN as err:
            self._client.close()
            raise StateUnavailable(f"state backend {self.url} unreachable: {type(err).__name__}: {err}") from None

    def key(self, user_id: int) -> str:
        return f"{self.namespace}:u:{int(user_id)}"

    def _claim(self) -> None:
        """Write this identity into ``{namespace}:meta``, or check the one already there."""
        meta_key = f"{self.namespace}:meta"
        mine = self.identity.as_meta()
        for field, value in mine.items():
            self._client.hsetnx(meta_key, field, value)  # a replica starting at the same time writes the same
        meta = {k.decode(): v.decode() for k, v in self._client.hgetall(meta_key).items()}
        if int(meta.get("schema", 0)) > SCHEMA:
            raise StateError(
                f"{self.url} holds state of schema {meta['schema']} under {self.namespace}; this build reads "
                f"schema <= {SCHEMA} (upgrade the service, or delete the keys {self.namespace}:*)"
            )
        for field in ("model_version", "data_fingerprint", "model_fingerprint"):
            if meta.get(field) != mine[field]:
                raise StateError(
                    f"{self.url} holds state under {self.namespace} for another model or data set "
                    f"({field} {meta.get(field)!r:.40}, this replica's {mine[field]!r:.40}): serve it under another "
                    f"model version, or delete the keys {self.namespace}:*"
                )

    # -- synchronous: the model's reads and updates --------------------------------------

    def read(self, users: Sequence[int]) -> list[UserState | None]:
        """Each user's state (None: no online state), one round trip for all; when Redis
        is down, the last state this replica saw (counted in ``degraded_reads``)."""
        started = time.perf_counter()
        try:
            replies = self._client.mget([self.key(u) for u in users]) if len(users) else []
        except _DOWN:
            self.stats.record("read", started, error=True)
            self.ok = False
            self.degraded_reads += len(users)
            with self._last_lock:
                return [self._last.get(u) for u in users]
        self.stats.record("read", started)
        self.ok = True
        states = [_decode(u, raw, self.url) for u, raw in zip(users, replies)]
        self._remember(users, states)
        return states

    def update(self, user_id: int, change: Callable[[UserState], UserState]) -> UserState:
        """Replace the user's state by ``change(old)`` in one transaction (WATCH, read,
        MULTI, write, PUBLISH, EXEC; recomputed when another writer got in between);
        ``change`` may raise (nothing changes). Raises :class:`StateUnavailable` when
        Redis cannot be reached."""
        started, key = time.perf_counter(), self.key(user_id)
        try:
            for _ in range(MAX_ATTEMPTS):
                with self._client.pipeline() as pipe:
                    try:
                        pipe.watch(key)
                        old = _decode(user_id, pipe.get(key), self.url) or UserState()
                        new = change(old)
                        pipe.multi()
                        pipe.set(key, _encode(new))
                        pipe.publish(self.channel, f"{int(user_id)}:{new.updates}")
                        pipe.execute()
                    except redis.WatchError:
                        self.conflicts += 1
                        continue
                self.stats.record("update", started)
                self.ok = True
                self._remember([user_id], [new])
                return new
        except _DOWN as err:
            self.stats.record("update", started, error=True)
            self.ok = False
            raise StateUnavailable(
                f"state backend {self.url} unavailable, update not applied: {type(err).__name__}: {err}"
            ) from None
        self.stats.record("update", started, error=True)
        raise StateUnavailable(f"update of user {user_id} kept conflicting with other writers ({MAX_ATTEMPTS} tries)")

    def _remember(self, users: Sequence[int], states: Sequence[UserState | None]) -> None:
        with self._last_lock:
            for u, state in zip(users, states):
                if state is not None:
                    self._last[u] = state
                    self._last.move_to_end(u)
            while len(self._last) > LAST_KNOWN:
                self._last.popitem(last=False)

    # -- asyncio: the service's checks and the invalidation messages ---------------------

    def _async(self) -> redis.asyncio.Redis:
        """The asyncio client, bound to the running loop (made on first use)."""
        if self._aio is None:
            self._aio = redis.asyncio.Redis.from_url(self._url, **_options(self.timeout_s))
        return self._aio

    async def current(self, user_id: int) -> int | None:
        """The user's update count in Redis (0: none); None when Redis is down."""
        started = time.perf_counter()
        try:
            raw = await self._async().getrange(self.key(user_id), 0, _HEADER.size - 1)
        except _DOWN:
            self.stats.record("check", started, error=True)
            self.ok = False
            self.degraded_reads += 1
            return None
        self.stats.record("check", started)
        return _header(user_id, raw, self.url)[0] if raw else 0

    async def exists(self, user_id: int) -> bool:
        """True when the user has online state (when Redis is down: state last seen here)."""
        started = time.perf_counter()
        try:
            found = bool(await self._async().exists(self.key(user_id)))
        except _DOWN:
            self.stats.record("check", started, error=True)
            self.ok = False
            self.degraded_reads += 1
            with self._last_lock:
                return user_id in self._last
        self.stats.record("check", started)
        return found

    async def ping(self) -> bool:
        try:
            self.ok = bool(await asyncio.wait_for(self._async().ping(), self.timeout_s))
        except (*_DOWN, asyncio.TimeoutError):
            self.ok = False
        return self.ok

    async def listen(self, on_update: Callable[[int, int], None], on_subscribed: Callable[[], None]) -> None:
        """Call ``on_update(user_id, updates)`` for every update any replica publishes, until
        cancelled; resubscribes after a lost connection and then calls ``on_subscribed()``
        (messages published meanwhile are lost: the caller drops what they might have
        invalidated)."""
        while True:
            pubsub = self._async().pubsub()
            started = time.perf_counter()
            try:
                await pubsub.subscribe(self.channel)
                on_subscribed()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        user, _, n = message["data"].partition(b":")
                        on_update(int(user), int(n))
            except Exception:  # Redis down, or a message this build cannot read: counted, then resubscribe
                self.stats.record("listen", started, error=True)
                self.ok = False
                await asyncio.sleep(0.1)
            finally:
                await pubsub.aclose()

    def describe(self) -> dict:
        return {"backend": self.backend, "ok": self.ok, "url": self.url, "namespace": self.namespace}

    async def aclose(self) -> None:
        """Close the asyncio client (the next use on another loop makes a new one)."""
        if self._aio is not None:
            aio, self._aio = self._aio, None
            await aio.aclose()

    def close(self) -> None:
        self._client.close()


def open_state(spec: str | None, identity: Callable[[], Identity]) -> InProcessState | RedisState:
    """The backend ``spec`` names: None or ``"memory"`` -> :class:`InProcessState`; a
    ``redis://`` URL -> :class:`RedisState` for ``identity()`` (only computed then)."""
    if spec is None or spec == "memory":
        return InProcessState()
    return RedisState(spec, identity())


def check_reachable(url: str) -> None:
    """Raise :class:`StateError` for a malformed ``url``, :class:`StateUnavailable`
    (naming it) when no Redis answers there."""
    _check_url(url)
    client = redis.Redis.from_url(url, **_options(1.0))
    try:
        client.ping()
    except _DOWN as err:
        raise StateUnavailable(f"state backend {display_url(url)} unreachable: {type(err).__name__}: {err}") from None
    finally:
        client.close()
