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
