"""Timers for benchmarks: on a shared, noisy machine the fastest of a few runs is the
most repeatable reading of what the code costs."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(fn: Callable[[], object], *, repeats: int = 5) -> float:
    """Fastest of ``repeats`` wall-clock runs of ``fn()``, in seconds (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
