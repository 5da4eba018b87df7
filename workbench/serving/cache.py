"""The top-k answer cache of the service: LRU with an optional time-to-live, keyed by
``(user_id, k, model_version)``, capped by the items its answers hold (not by their
count: one answer of k=1000 weighs as much as a hundred of k=10), and dropped per user
when that user's state changes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class TopKCache:
    """LRU cache of answers keyed by ``(user_id, k, model_version)``, holding at most
    ``max_items`` items over all its answers (0: off), with an optional time-to-live;
    counts hits and misses. Not thread-safe: use it from the event loop."""

    def __init__(
        self, max_items: int = 100_000, *, ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (isinstance(max_items, int) and max_items >= 0):
            raise ValueError(f"max_items must be an integer >= 0, got {max_items!r}")
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0 or None, got {ttl_s!r}")
        self.max_items, self.ttl_s, self.clock = max_items, ttl_s, clock
        self.hits = self.misses = 0
        self.items = 0  # items held by all entries together
        self._entries: OrderedDict[tuple, tuple[float, object, int]] = OrderedDict()  # key -> (stored at, value, items)
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

    def put(self, key: tuple, value, *, items: int = 1) -> None:
        """Store ``value``, which holds ``items`` items; evicts the least recently used
        entries until all fit in ``max_items``. A value larger than the whole cache is
        not stored."""
        if items > self.max_items:
            return
        self._drop(key)
        self._entries[key] = (self.clock(), value, items)
        self.items += items
        self._by_user.setdefault(key[0], set()).add(key)
        while self.items > self.max_items:
            self._drop(next(iter(self._entries)))

    def invalidate_user(self, user_id: Hashable) -> int:
        """Drop every entry of ``user_id`` (any k, any version); returns how many."""
        keys = list(self._by_user.get(user_id, ()))
        for key in keys:
            self._drop(key)
        return len(keys)

    def _drop(self, key: tuple) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.items -= entry[2]
        keys = self._by_user.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[key[0]]
