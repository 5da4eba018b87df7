"""The top-k answer cache: LRU order, hit and miss counts, time-to-live, per-user invalidation."""

from __future__ import annotations

import pytest

from workbench.serving.cache import TopKCache


def test_cache_is_lru_and_counts_hits_and_misses():
    cache = TopKCache(2)
    cache.put((1, 10, "v"), "a")
    cache.put((2, 10, "v"), "b")
    assert cache.get((1, 10, "v")) == "a"  # 1 is now the most recent
    cache.put((3, 10, "v"), "c")  # evicts 2
    assert cache.get((2, 10, "v")) is None and cache.get((3, 10, "v")) == "c"
    assert (cache.hits, cache.misses, len(cache)) == (2, 1, 2)
    assert cache.hit_rate == pytest.approx(2 / 3)


def test_cache_ttl_and_user_invalidation():
    now = [0.0]
    cache = TopKCache(10, ttl_s=5.0, clock=lambda: now[0])
    cache.put((1, 10, "v"), "a")
    cache.put((1, 5, "v"), "b")
    cache.put((2, 10, "v"), "c")
    now[0] = 4.0
    assert cache.get((1, 10, "v")) == "a"
    assert cache.invalidate_user(1) == 2 and cache.get((1, 5, "v")) is None
    now[0] = 6.0
    assert cache.get((2, 10, "v")) is None and len(cache) == 0  # expired
    with pytest.raises(ValueError):
        TopKCache(10, ttl_s=0)


def test_cache_key_includes_the_model_version():
    cache = TopKCache(10)
    cache.put((1, 10, "v1"), "old")
    assert cache.get((1, 10, "v2")) is None


def test_cache_is_capped_by_items_stored_not_by_entries():
    """Distinct large-k answers fill the cache by what they hold: the items stored never
    pass ``max_items``, whatever the entry count, and the least recently used go first."""
    cache = TopKCache(max_items=2_500)
    for user in range(40):
        cache.put((user, 1000, "v"), f"answer {user}", items=1000)
        stored = sum(cache._entries[key][2] for key in cache._entries)  # recounted, not the cache's own sum
        assert stored == cache.items <= 2_500
    assert len(cache) == 2 and cache.get((39, 1000, "v")) == "answer 39" and cache.get((37, 1000, "v")) is None
    cache.put((99, 5000, "v"), "too big for the whole cache", items=5000)
    assert cache.get((99, 5000, "v")) is None and cache.items == 2_000  # not stored, nothing evicted for it
    for user in range(100):  # small answers: many entries, still within the cap
        cache.put((user, 10, "v"), "small", items=10)
    assert cache.items == 2_000 and len(cache) == 101  # the least recently used large answer made room
    assert cache.get((39, 1000, "v")) == "answer 39"
    assert cache.invalidate_user(99) == 1 and cache.items == 1_990
    with pytest.raises(ValueError):
        TopKCache(max_items=-1)
