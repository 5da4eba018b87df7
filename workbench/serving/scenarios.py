"""Notebook 07's experiments, built from the load generators of :mod:`.load`.

- :func:`inprocess` -- one run of a :class:`~workbench.serving.load.LoadSpec` against a
  fresh in-process service;
- :func:`latency_curves` -- closed-loop latency-throughput curves of several serving
  setups at several concurrencies;
- :func:`freshness_under_load` -- update-to-fresh-answer times while background clients
  keep the service busy;
- :func:`over_http` -- like :func:`inprocess`, through the HTTP app on a loopback port.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.serving.app import ServerThread, create_app
from workbench.serving.load import LoadResult, LoadSpec, freshness, http_load, run_load, run_sync, service_caller
from workbench.serving.service import RecommendationService


async def inprocess(model, config, users: Sequence[int], spec: LoadSpec) -> tuple[LoadResult, dict]:
    """Start a :class:`RecommendationService` for ``model`` (a ServableModel) with
    ``config``, run ``spec`` against it without HTTP, stop it; returns the load result
    and the service's final snapshot."""
    async with RecommendationService(model, config) as service:
        result = await run_load(service_caller(service), users, spec)
        snapshot = service.snapshot()
    return result, snapshot


def latency_curves(model, setups: dict, users: Sequence[int], levels: Sequence[int], spec: LoadSpec) -> pd.DataFrame:
    """Closed-loop latency-throughput curves: every ServingConfig in ``setups`` (name ->
    config) at every concurrency in ``levels`` (``spec`` gives the rest of each run),
    in-process. The setups take turns at each level, so a change in machine load hits
    all of them alike. One row per run, grouped by setup: ``setup``, the
    :meth:`LoadResult.summary` columns, ``cache_hit_rate``, ``mean_batch`` and
    ``batch_sizes`` (size -> model calls). One untimed call per batch size first, so no
    run pays for the model's lazy set-up."""
    largest = max(config.max_batch_size for config in setups.values())
    for size in sorted({1, min(largest, max(levels), len(users))}):
        model.recommend_batch([(int(user), spec.k) for user in np.asarray(users)[:size]])
    rows = []
    for level in levels:
        run = dataclasses.replace(spec, mode="closed", level=level)
        for name, config in setups.items():
            result, snap = run_sync(lambda config=config, run=run: inprocess(model, config, users, run))
            sizes = snap["batch_sizes"]
            calls = sum(sizes.values())
            rows.append(
                {
                    "setup": name,
                    **result.summary(),
                    "cache_hit_rate": snap["cache_hit_rate"],
                    "mean_batch": sum(s * n for s, n in sizes.items()) / calls if calls else np.nan,
                    "batch_sizes": sizes,
                }
            )
    order = {name: i for i, name in enumerate(setups)}
    return pd.DataFrame(rows).sort_values("setup", key=lambda c: c.map(order), kind="stable", ignore_index=True)


async def _freshness_under_load(model, config, users, updates, *, background: int, k: int, seed: int):
    async with RecommendationService(model, config) as service:
        load = None
        if background > 0:
            busy = LoadSpec(mode="closed", level=background, requests=10**9, duration_s=3600, k=k, seed=seed)
            load = asyncio.ensure_future(run_load(service_caller(service), users, busy))
            await asyncio.sleep(0.05)  # the background clients are busy
        try:
            table = await freshness(service, updates, k=k)
        finally:
            if load is not None:
                load.cancel()
                await asyncio.gather(load, return_exceptions=True)
    return table


def freshness_under_load(
    model,
    config,
    users: Sequence[int],
    updates: Sequence[tuple[int, int]],
    *,
    background: int = 8,
    k: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`~workbench.serving.load.freshness` of ``updates`` while ``background``
    closed-loop clients keep the service busy (in-process; 0: an idle service); the load
    stops with the updates."""
    return run_sync(lambda: _freshness_under_load(model, config, users, updates, background=background, k=k, seed=seed))


def over_http(
    model, config, users: Sequence[int], spec: LoadSpec, *, client: str = "aiohttp"
) -> tuple[LoadResult, dict]:
    """Like :func:`inprocess`, through the HTTP app on a free loopback port. The server
    runs in a thread of this process, so it shares the GIL with the clients: a lower
    bound on what a separate server process does (see benchmarks/)."""
    service = RecommendationService(model, config)
    with ServerThread(create_app(service)) as server:
        result = run_sync(lambda: http_load(server.url, users, spec, client=client))
    return result, service.snapshot()
