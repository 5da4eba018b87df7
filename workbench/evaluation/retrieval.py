"""Measuring retrieval: recall against exact search, queries/s, build time and memory per
backend and knob setting (the ann-benchmarks picture); downstream nDCG@10 with exact vs
approximate retrieval; two-stage quality and latency against the number of candidates.

Every function returns a DataFrame (one row per measured point) and prints nothing; the
benchmark (``benchmarks/bench_retrieval.py``) and notebook 06 call them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.data.schema import USER
from workbench.data.synthetic import SyntheticConfig, generate
from workbench.metrics import ndcg_at_k
from workbench.models.base import Recommender, to_frame
from workbench.models.ials import IALS
from workbench.models.two_stage import TwoStage, item_embeddings, user_embeddings
from workbench.retrieval import IndexConfig, ItemIndex, build_index, set_threads
from workbench.retrieval.faiss_index import default_nlist

#: knobs that tell one setting of a backend from another, by backend
KNOBS = {
    "exact": (),
    "flat": (),
    "hnsw": ("m", "ef_construction", "ef_search"),
    "ivf": ("nlist", "nprobe"),
    "ivfpq": ("nlist", "nprobe", "code_size", "pq_bits"),
}


def label(config: IndexConfig) -> str:
    """``hnsw m=32 ef_search=64``: the backend and its knobs, for tables and legends."""
    knobs = " ".join(f"{name}={getattr(config, name)}" for name in KNOBS[config.backend])
    return f"{config.backend} {knobs}".strip()


def build_key(config: IndexConfig) -> IndexConfig:
    """``config`` with its search-time knobs reset: equal keys build equal indexes."""
    return dataclasses.replace(config, ef_search=1, nprobe=1)


def index_grid(
    backends: Sequence[str],
    *,
    n_items: int,
    m: int = 16,
    ef_construction: int = 48,
    ef_search: Sequence[int] = (16, 64, 256),
    nprobe: Sequence[int] = (1, 8, 32),
    code_size: int = 16,
) -> list[IndexConfig]:
    """The settings to sweep: exact and flat once, HNSW once per ``ef_search``, IVF-Flat
    and IVF-PQ once per ``nprobe`` (``nlist`` = :func:`default_nlist` of ``n_items``)."""
    configs = [IndexConfig(backend=b) for b in backends if b in ("exact", "flat")]
    if "hnsw" in backends:
        configs += [IndexConfig(backend="hnsw", m=m, ef_construction=ef_construction, ef_search=e) for e in ef_search]
    nlist = default_nlist(n_items)
    for backend in [b for b in backends if b in ("ivf", "ivfpq")]:
        configs += [IndexConfig(backend=backend, nlist=nlist, nprobe=n, code_size=code_size) for n in nprobe]
    return configs


def best_at_recall(table: pd.DataFrame, column: str = "qps_b1_t1", *, recall: float = 0.95) -> pd.DataFrame:
    """Per catalogue size: exact search's ``column`` (queries/s) and the fastest other
    setting with recall >= ``recall``, with its speed-up over exact (None: no setting
    reaches that recall)."""
    rows = []
    for n, part in table.groupby("n_items"):
        exact = float(part.loc[part.backend == "exact", column].iloc[0])
        good = part[(part.backend != "exact") & (part.recall >= recall)]
        best = good.loc[good[column].idxmax()] if len(good) else None
        rows.append(
            {
                "n_items": int(n),
                "exact_qps": round(exact, 1),
                "best_setting": None if best is None else best.setting,
                "best_recall": None if best is None else round(float(best.recall), 3),
                "best_qps": None if best is None else round(float(best[column]), 1),
                "speedup": None if best is None else round(float(best[column]) / exact, 1),
            }
        )
    return pd.DataFrame(rows)


def recall_against(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` (Q, k) that ``found`` (Q, k) holds (-1 = none)."""
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]
    return float(np.mean(hits))


def queries_per_second(index: ItemIndex, queries: np.ndarray, *, k: int, batch: int, min_seconds: float) -> float:
    """Queries answered per second, ``batch`` queries per call, cycling through
    ``queries`` (Q, d) for at least ``min_seconds`` after one warm-up call."""
    index.search(queries[:batch], k)
    done, start, position = 0, time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < min_seconds or done == 0:
        chunk = queries[position : position + batch]
        if len(chunk) < batch:
            position, chunk = 0, queries[:batch]
        index.search(chunk, k)
        done, position = done + len(chunk), position + batch
    return done / elapsed


def timed_build(vectors: np.ndarray, config: IndexConfig, *, threads: int) -> tuple[ItemIndex, float]:
    """``(index, build seconds)`` on ``threads`` threads."""
    set_threads(threads)
    start = time.perf_counter()
    index = build_index(vectors, config)
    return index, time.perf_counter() - start


def measure_index(
    index: ItemIndex,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    k: int = 10,
    batches: Sequence[int] = (1, 256),
    threads: Sequence[int] = (1, 2),
    min_seconds: float = 0.5,
) -> dict:
    """One row: recall@k against ``truth`` (Q, k), memory, and queries/s per batch size
    and thread count (``qps_b1_t1``...)."""
    found, _ = index.search(queries, k)
    row = {"recall": recall_against(found, truth), "memory_mb": index.memory_bytes() / 2**20}
    before = torch.get_num_threads()
    for n in threads:
        set_threads(n)
        for batch in batches:
            row[f"qps_b{batch}_t{n}"] = queries_per_second(index, queries, k=k, batch=batch, min_seconds=min_seconds)
    set_threads(before)
    return row


def sweep_indexes(
    vectors: np.ndarray,
    queries: np.ndarray,
    configs: Sequence[IndexConfig],
    *,
    k: int = 10,
    batches: Sequence[int] = (1, 256),
    threads: Sequence[int] = (1, 2),
    min_seconds: float = 0.5,
    build_threads: int | None = None,
    built: dict | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per config: backend, setting, build seconds, recall@k against exact
    search, memory (MB) and queries/s (see :func:`measure_index`); the exact top-k is
    computed once. Configs that differ only in search knobs (``ef_search``, ``nprobe``)
    share one built index, kept in ``built`` (by :func:`build_key`; pass a dict to reuse
    the indexes afterwards). ``build_threads`` defaults to the most of ``threads``."""
    set_threads(max(threads))
    truth, _ = build_index(vectors).search(queries, k)
    built = {} if built is None else built
    rows = []
    for config in tqdm(configs, desc="indexes", disable=not progress, leave=False):
        if build_key(config) not in built:
            built[build_key(config)] = timed_build(vectors, config, threads=build_threads or max(threads))
        index, seconds = built[build_key(config)]
        index.set_search(ef_search=config.ef_search, nprobe=config.nprobe)
        row = {"n_items": len(vectors), "dim": vectors.shape[1], "backend": config.backend, "setting": label(config)}
        row |= {name: getattr(config, name) for name in KNOBS[config.backend]}
        row["build_s"] = seconds
        row |= measure_index(index, queries, truth, k=k, batches=batches, threads=threads, min_seconds=min_seconds)
        row["fallback"] = index.fallback
        rows.append(row)
    set_threads(max(threads))
    return pd.DataFrame(rows)


def synthetic_embeddings(
    n_items: int, *, factors: int = 64, epochs: int = 8, mean_per_user: int = 30, seed: int = 0
) -> tuple[IALS, pd.DataFrame, dict]:
    """iALS fitted on a synthetic log of about ``n_items`` items (n_items // 4 users,
    ``mean_per_user`` interactions each, no popularity skew so the log reaches as much of
    the catalogue as it can) -> ``(model, interactions, cost)``; ``cost`` holds the
    catalogue actually reached and the seconds generating and fitting took."""
    cfg = SyntheticConfig(
        n_users=max(500, n_items // 4),
        n_items=n_items,
        mean_per_user=mean_per_user,
        min_per_user=5,
        popularity=0.0,
        seed=seed,
    )
    start = time.perf_counter()
    interactions, _, _ = generate(cfg)
    generated = time.perf_counter() - start
    start = time.perf_counter()
    model = IALS(factors=factors, epochs=epochs, device="cpu", seed=seed).fit(interactions)
    cost = {
        "requested_items": n_items,
        "catalogue": len(model.items),
        "users": len(model.users),
        "interactions": len(interactions),
        "generate_s": round(generated, 1),
        "ials_fit_s": round(time.perf_counter() - start, 1),
    }
    return model, interactions, cost


def machine() -> dict:
    """Cores and the 1-minute load average (timings taken with load > 2 are "busy")."""
    load = os.getloadavg()[0]
    return {"cpus": os.cpu_count(), "load_1min": round(load, 2), "busy": load > 2}


# -- downstream quality ------------------------------------------------------------------


def retrieved_ndcg(
    model: Recommender, test: pd.DataFrame, configs: Sequence[IndexConfig], *, k: int = 10, name: str | None = None
) -> pd.DataFrame:
    """nDCG@k on ``test`` when a fitted embedding model (iALS, BPR, two-tower)
    recommends through each index, seen items excluded; with recall@k of its lists
    against exact search and ``ndcg_vs_exact``, its nDCG@k over exact search's.
    ``name``: the ``model`` column (default: the class name)."""
    users = np.unique(test[USER].to_numpy())
    users = users[model.users.contains(users)]
    rows_ = model.users.index(users)
    queries, exclude = user_embeddings(model, rows_), model.seen[rows_]
    vectors = item_embeddings(model)

    def ndcg(idx: np.ndarray, val: np.ndarray) -> float:
        return ndcg_at_k(to_frame(users, idx, val, model.items), test, k=k)

    truth, truth_scores = build_index(vectors).search(queries, k, exclude=exclude)
    exact = ndcg(truth, truth_scores)
    out = []
    for config in configs:
        idx, val = build_index(vectors, config).search(queries, k, exclude=exclude)
        value = ndcg(idx, val)
        out.append(
            {
                "model": name or type(model).__name__,
                "setting": label(_resolved(config, len(vectors))),
                "recall_vs_exact": recall_against(idx, truth),
                f"ndcg@{k}": value,
                "ndcg_vs_exact": value / exact if exact > 0 else float("nan"),
            }
        )
    return pd.DataFrame(out)


def _resolved(config: IndexConfig, n_items: int) -> IndexConfig:
    """``config`` with the nlist an IVF index picks by default for ``n_items`` filled in."""
    if config.backend in ("ivf", "ivfpq") and config.nlist is None:
        return dataclasses.replace(config, nlist=default_nlist(n_items))
    return config


def ndcg_vs_candidates(
    make: Callable[[int], TwoStage], train: pd.DataFrame, test: pd.DataFrame, ns: Sequence[int], *, k: int = 10
) -> pd.DataFrame:
    """Two-stage nDCG@k for each number of candidates N in ``ns`` (``make(N)`` -> an
    unfitted TwoStage; fitted once, N changed in place), and the ranker alone; the
    ``share_of_ranker`` column is nDCG@k relative to the ranker alone."""
    model = make(max(ns)).fit(train)
    users = np.unique(test[USER].to_numpy())
    users = users[model.users.contains(users)]
    alone = ndcg_at_k(model.ranker.recommend(users, k=k), test, k=k)
    rows = []
    for n in ns:
        model.config = dataclasses.replace(model.config, candidates=min(int(n), len(model.items)))
        rows.append({"candidates": int(n), f"ndcg@{k}": ndcg_at_k(model.recommend(users, k=k), test, k=k)})
    table = pd.DataFrame(rows)
    table["ranker_alone"] = alone
    table["share_of_ranker"] = table[f"ndcg@{k}"] / alone
    return table


def latency_vs_candidates(
    model: TwoStage, ns: Sequence[int], *, users: int = 200, k: int = 10, min_seconds: float = 0.5, seed: int = 0
) -> pd.DataFrame:
    """Per-request milliseconds (one user per call, median over calls) of the fitted
    two-stage ``model`` for each N in ``ns``, and of its ranker scoring every item."""
    rng = np.random.default_rng(seed)
    ids = model.users.ids(rng.choice(len(model.users), size=min(users, len(model.users)), replace=False))
    rows = [
        {
            "candidates": "all (ranker alone)",
            "ms": _median_ms(lambda u: model.ranker.recommend([u], k=k), ids, min_seconds),
        }
    ]
    config = model.config
    for n in ns:
        model.config = dataclasses.replace(config, candidates=int(n))
        rows.append({"candidates": int(n), "ms": _median_ms(lambda u: model.recommend([u], k=k), ids, min_seconds)})
    model.config = config
    return pd.DataFrame(rows).assign(n_items=len(model.items))


def _median_ms(call: Callable[[int], object], ids: np.ndarray, min_seconds: float) -> float:
    call(int(ids[0]))  # warm-up
    times, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < min_seconds or not times:
        t = time.perf_counter()
        call(int(ids[i % len(ids)]))
        times.append(time.perf_counter() - t)
        i += 1
    return 1000 * float(np.median(times))
