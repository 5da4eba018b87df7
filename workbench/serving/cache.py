"""The top-k answer cache of the service: LRU with an optional time-to-live, keyed by
``(user_id, k, model_version)``, and dropped per user when that user's state changes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class TopKCache:
    """LRU cache of answers keyed by ``(user_id, k, model_version)``, with an optional
    time-to-live; counts hits and misses. Not thread-safe: use it from the event loop."""

    def __init__(
        self, max_entries: int = 10_000, *, ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries!r}")
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0 or None, got {ttl_s!r}")
        self.max_entries, self.ttl_s, self.clock = max_entries, ttl_s, clock
        self.hits = self.misses = 0
        self._entries: OrderedDict[tuple, tuple[float, object]] = OrderedDict()  # key -> (stored at, value)
        self._by_user: dict[Hashable, set[tuple]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hit_rate(self) -> float:
        """hits / lookups (0 before the first lookup)."""
        return self.hits / max(self.hits + self.misses, 1)

    def get(self, key: tuple):
        """The value stored under ``key`` (and mark it recently used), or None."""
        entry = self._entries.get(key)
        if entry is not None and self.ttl_s is not None and self.clock() - entry[0] > self.ttl_s:
            self._drop(key)
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: tuple, value) -> None:
        """Store ``value``; evicts the least recently used entry beyond ``max_entries``."""
        if self.max_entries == 0:
            return
        self._entries[key] = (self.clock(), value)
        self._entries.move_to_end(key)
        self._by_user.setdefault(key[0], set()).add(key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def invalidate_user(self, user_id: Hashable) -> int:
        """Drop every entry of ``user_id`` (any k, any version); returns how many."""
        keys = self._by_user.pop(user_id, set())
        for key in keys:
            self._entries.pop(key, None)
        return len(keys)

    def _drop(self, key: tuple) -> None:
        self._entries.pop(key, None)
        keys = self._by_user.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[key[0]]
