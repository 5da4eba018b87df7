"""Serving benchmark (issue 7): per-request vs dynamic batching vs batching + cache.

    .venv/bin/python benchmarks/bench_serving.py                       # SASRec on ml-100k
    .venv/bin/python benchmarks/bench_serving.py --model ease --duration 2
    .venv/bin/python benchmarks/bench_serving.py --checkpoint runs/sasrec-ckpt   # skip training

Prints, in one run: the per-request concurrency sweep (to find its saturation point),
all three setups at the same concurrency with ratios to per-request, per-request's p99
when saturated (open loop at 80-100% of its capacity), freshness of online updates with
and without the priority lane, idle and under background load, the HTTP path (aiohttp
and httpx load generators, with the CPU each side used) and the overload accounting
(open loop at three times each path's throughput). Targets: batching >= 5x per-request
throughput at the same concurrency with p99 no worse than per-request's at its
saturation point; update reflected within 10 ms (p99); nothing lost or duplicated.
Every run is bounded by ``--requests`` and ``--duration``.

``--two-stage`` (issue 14) instead compares, at ``--catalogue`` items (default 10^5, a
synthetic log), an iALS-128 scoring every item with two stages (iALS-64 + each index of
``--retrieval`` at each ``--nprobe`` retrieve ``--candidates`` items: IVF-Flat, and IVF-PQ
with 4-bit codes scanned by faiss's SIMD fast-scan; the same iALS-128 re-ranks them), both
behind the same batcher, and a servable answering from a constant list (the serving path's
own floor): requests/s, p99 and the share of full scoring's top 10 each keeps, side by side
(target: >= 5x requests/s at equal or lower p99). Torch and faiss get the same threads.

    .venv/bin/python benchmarks/bench_serving.py --two-stage --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import torch

from workbench import models
from workbench.data import datasets
from workbench.evaluation.retrieval import synthetic_embeddings
from workbench.models import IALS, TwoStage
from workbench.retrieval import IndexConfig, set_threads
from workbench.serving.adapters import Recommendation, servable
from workbench.serving.load import LoadResult, LoadSpec, http_load, run_sync, served_process, update_pairs
from workbench.serving.scenarios import freshness_under_load, inprocess, latency_curves
from workbench.serving.service import ServingConfig
from workbench.serving.two_stage import TwoStageServable

ROOT = Path(__file__).resolve().parent.parent

NUMBERS = [
    "sent",
    "throughput_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_batch",
    "cache_hit_rate",
    "rejected",
    "timeout",
    "error",
    "lost",
]


def accounting(result: LoadResult, computed: int, label: str) -> dict:
    """Outcome counts of one overload run: every request must have exactly one outcome
    (``duplicated`` counts extra ones) and the model computed no request twice
    (``computed`` <= answered + timed out)."""
    o = result.outcomes
    return {
        "run": label,
        "rate_rps": round(result.level),
        "sent": result.sent,
        "ok": o.get("ok", 0),
        "rejected_503": o.get("rejected", 0),
        "timeout": o.get("timeout", 0),
        "error": o.get("error", 0),
        "refused": o.get("refused", 0),
        "disconnected": o.get("disconnected", 0),
        "misrouted": o.get("misrouted", 0),
        "lost": o.get("lost", 0),
        "duplicated": sum(o.values()) - result.sent,
        "computed": computed,
        "p50_ok_ms": result.summary()["p50_ms"],
        "p99_ok_ms": result.summary()["p99_ms"],
        "p99_503_ms": result.summary()["p99_rejected_ms"],
    }


@contextlib.contextmanager
def server_process(args, checkpoint: str | None, serving: ServingConfig):
    """``workbench serve`` in its own process on a free loopback port; yields its URL
    and its ``psutil.Process``, and always stops it (SIGINT: graceful shutdown)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "workbench.cli",
        "serve",
        "--model",
        args.model,
        "--dataset",
        args.dataset,
        "--synthetic-size",
        "small",
        "--port",
        str(port),
        "--epochs",
        str(args.epochs),
        "--max-length",
        str(args.max_length),
        "--max-batch-size",
        str(serving.max_batch_size),
        "--max-wait-ms",
        str(serving.max_wait_ms),
        "--max-queue",
        str(serving.max_queue),
        "--timeout-ms",
        str(serving.timeout_ms),
        "--cache-size",
        "0",
    ]
    if args.dataset != "synthetic":
        cmd += ["--data-path", args.data_path]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.torch_threads)}  # torch's intra-op threads there
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with served_process(cmd, port, cwd=ROOT, env=env, **quiet) as (url, proc):
        yield url, psutil.Process(proc.pid)


def metric(url: str, name: str) -> float:
    """The value of one sample of the server's ``/metrics``."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[-1])


def computed(url: str) -> int:
    """Requests the server's model has computed so far (the batch-size histogram's sum)."""
    return int(metric(url, "workbench_batch_size_sum"))


def closed_loop_curves(served, users, args) -> pd.DataFrame:
    """All three setups at every concurrency level (medians over rounds), the ratios and
    the throughput and p99 targets; returns the median curves."""
    batching = ServingConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, cache_size=0)
    setups = {
        "per-request": ServingConfig(max_batch_size=1, cache_size=0),
        "dynamic batching": batching,
        "batching + cache": ServingConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms),
    }
    latency_curves(served, {"warm-up": batching}, users, [args.concurrency], LoadSpec(requests=200, duration_s=1))
    levels = sorted({1, 2, 4, 8, 16, args.concurrency, 2 * args.concurrency})  # 2x: batches overlap the loop's work
    run = dict(requests=args.requests, duration_s=args.duration)
    runs = pd.concat(
        [latency_curves(served, setups, users, levels, LoadSpec(seed=r, **run)) for r in range(args.rounds)]
    )
    curves = runs.groupby(["setup", "level"], sort=False)[NUMBERS].median().reset_index()
    base = curves[curves["setup"] == "per-request"].set_index("level")
    curves["x_throughput"] = curves["throughput_rps"] / curves["level"].map(base["throughput_rps"])
    per_request = curves[curves["setup"] == "per-request"]
    saturation = per_request.loc[per_request["throughput_rps"] >= 0.95 * per_request["throughput_rps"].max()].iloc[0]
    print(
        f"\n## closed loop, in-process: median of {args.rounds} rounds of {args.duration:g} s "
        f"(setups take turns at each level); x_throughput = ours / per-request at the same concurrency"
    )
    print(curves.round(2).to_string(index=False))
    print(
        f"per-request saturation point (first level within 5% of its best throughput): concurrency "
        f"{saturation['level']:g}, {saturation['throughput_rps']:.0f} req/s, p99 {saturation['p99_ms']:.1f} ms"
    )

    at = curves[curves["level"] == args.concurrency].set_index("setup")
    ratio, p99 = at.loc["dynamic batching", "x_throughput"], at.loc["dynamic batching", "p99_ms"]
    print(f"\n## targets at {args.concurrency} concurrent clients")
    print(
        f"dynamic batching {at.loc['dynamic batching', 'throughput_rps']:.0f} req/s vs per-request "
        f"{at.loc['per-request', 'throughput_rps']:.0f} req/s: {ratio:.3f}x (target >= 5x) -> {verdict(ratio >= 5)}"
    )
    print(
        f"(a) dynamic batching p99 {p99:.1f} ms vs per-request p99 at its closed-loop saturation point "
        f"{saturation['p99_ms']:.1f} ms -> {verdict(p99 <= saturation['p99_ms'])}"
    )
    print(
        f"(b) dynamic batching p99 {p99:.1f} ms vs per-request p99 at the same {args.concurrency} clients "
        f"{at.loc['per-request', 'p99_ms']:.1f} ms -> {verdict(p99 <= at.loc['per-request', 'p99_ms'])}"
    )
    both = curves[
        (curves["setup"] == "dynamic batching")
        & (curves["x_throughput"] >= 5)
        & (curves["p99_ms"] <= saturation["p99_ms"])
    ]
    print(f"levels where batching meets both (reading a): {both['level'].tolist() or 'none'}")
    print(
        f"(reading a: past {saturation['level']:g} client(s) per-request only queues; its p99 there is a few bare "
        f"single-user model calls, which no batch of {args.max_batch_size} can match on one model thread)"
    )
    open_loop_saturation(served, users, args, per_request["throughput_rps"].max(), p99)
    return curves


def open_loop_saturation(served, users, args, capacity: float, batching_p99: float) -> None:
    """Per-request p99 when it is offered 80%, 90% and 100% of its capacity (Poisson
    arrivals): its latency at saturation, where the queue, not the model, sets it."""
    config = ServingConfig(max_batch_size=1, cache_size=0)
    rows = []
    for share in (0.8, 0.9, 1.0):
        spec = LoadSpec(mode="open", level=share * capacity, requests=args.requests, duration_s=args.duration)
        result, _ = run_sync(lambda spec=spec: inprocess(served, config, users, spec))
        rows.append(
            {
                "offered": f"{share:.0%}",
                **{k: result.summary()[k] for k in ("level", "throughput_rps", "p50_ms", "p99_ms", "rejected")},
            }
        )
    table = pd.DataFrame(rows).rename(columns={"level": "rate_rps"})
    print(f"\n## per-request at saturation: open loop at a share of its capacity ({capacity:.0f} req/s)")
    print(table.round(1).to_string(index=False))
    worst = table.loc[table["offered"] == "90%", "p99_ms"].iloc[0]
    print(
        f"(c) dynamic batching p99 at {args.concurrency} clients {batching_p99:.1f} ms vs per-request p99 offered "
        f"90% of its capacity {worst:.1f} ms -> {verdict(batching_p99 <= worst)}"
    )


def freshness(served, users, args) -> None:
    """Update call -> first answer reflecting it, idle and under load, with the priority
    lane (the service's default) and without it."""
    print(f"\n## freshness: update call -> first answer that reflects it ({args.updates} updates each)")
    rows = []
    for lane in (False, True):
        config = ServingConfig(
            max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, cache_size=0, priority_lane=lane
        )
        for seed, background in enumerate((0, max(1, args.concurrency // 4), args.concurrency)):
            pairs = update_pairs(served, users, args.updates, seed=seed)
            fresh = freshness_under_load(served, config, users, pairs, background=background)
            rows.append(
                {
                    "priority lane": "on" if lane else "off",
                    "background clients": background,
                    "update p99 ms": fresh["update_ms"].quantile(0.99),
                    "fresh p50 ms": fresh["fresh_ms"].median(),
                    "fresh p99 ms": fresh["fresh_ms"].quantile(0.99),
                    "fresh max ms": fresh["fresh_ms"].max(),
                    "reflected": fresh["reflected"].mean(),
                }
            )
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    on = table[table["priority lane"] == "on"]
    ok = (on["fresh p99 ms"] <= 10).all() and (on["reflected"] == 1).all()
    print(f"target: p99 <= 10 ms with every update reflected, idle and under load (priority lane on) -> {verdict(ok)}")


def http_and_overload(served, model, users, args, batching_rps: float) -> None:
    """Closed loop over HTTP against a server process (both load generators, with the
    CPU each side used), then the overload accounting: open loop at 3x each path's
    measured throughput, in-process and over HTTP."""
    run = dict(requests=args.requests, duration_s=args.duration)
    overload = ServingConfig(
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=2 * args.max_batch_size,
        timeout_ms=1000,
        cache_size=0,
    )
    checkpoint = args.checkpoint
    if checkpoint is None and hasattr(model, "save"):  # the server process loads what was measured here
        checkpoint = str(model.save(Path(tempfile.mkdtemp(prefix="bench-serving-")) / "model"))
    with server_process(args, checkpoint, overload) as (url, server):
        print(
            f"\n## over HTTP: `workbench serve` in its own process (max in flight {overload.in_flight_limit}), "
            f"{args.concurrency} closed-loop clients here; CPU: 100% = one core"
        )
        rows = []
        for client in ("httpx", "aiohttp"):
            warm_up = LoadSpec(level=args.concurrency, requests=200, duration_s=1)
            run_sync(lambda client=client, spec=warm_up: http_load(url, users, spec, client=client))
            with cpu_meter(server) as cpu:
                spec = LoadSpec(level=args.concurrency, **run)
                h = run_sync(lambda client=client, spec=spec: http_load(url, users, spec, client=client))
            rows.append(
                {
                    "client": client,
                    **{k: h.summary()[k] for k in ("throughput_rps", "p50_ms", "p99_ms", "ok", "lost")},
                    **cpu,
                }
            )
        table = pd.DataFrame(rows)
        print(table.round(1).to_string(index=False))
        http_rps = table.set_index("client").loc["aiohttp", "throughput_rps"]
        print(
            f"in-process batching {batching_rps:.0f} req/s; over HTTP {http_rps:.0f} req/s "
            f"({http_rps / batching_rps:.2f}x): the server's event loop (HTTP parsing, routing, validation) "
            "shares one GIL with the model's Python"
        )
        before = computed(url)
        with cpu_meter(server) as cpu:
            spec = LoadSpec(mode="open", level=3 * http_rps, **run)
            over_http = run_sync(lambda: http_load(url, users, spec))
        http_computed, shed = computed(url) - before, metric(url, "workbench_shed_total")
    spec = LoadSpec(mode="open", level=3 * batching_rps, **run)
    in_process, snap = run_sync(lambda: inprocess(served, overload, users, spec))
    in_computed = sum(size * n for size, n in snap["batch_sizes"].items())
    table = pd.DataFrame(
        [
            accounting(in_process, in_computed, "in-process"),
            {**accounting(over_http, http_computed, "http"), "shed_at_admission": shed},
        ]
    )
    print(
        f"\n## overload: open loop (Poisson) at 3x the measured throughput of each path, queue {overload.max_queue}, "
        f"max in flight {overload.in_flight_limit}, deadline {overload.timeout_ms:g} ms; during the HTTP run the "
        f"server used {cpu['server_cpu_%']:.0f}% and the load generator {cpu['client_cpu_%']:.0f}% of a core"
    )
    print(table.round(1).to_string(index=False))
    clean = (table[["lost", "duplicated", "misrouted"]] == 0).all().all()
    print(f"target: zero lost or duplicated responses -> {verdict(clean)}")


@contextlib.contextmanager
def cpu_meter(server: psutil.Process):
    """CPU used by the server process and by this one (the load generator) while the
    block runs, in % of one core; filled in on exit."""
    me = psutil.Process()
    server.cpu_percent(), me.cpu_percent()
    out: dict = {}
    yield out
    out.update({"server_cpu_%": server.cpu_percent(), "client_cpu_%": me.cpu_percent()})


def build_model(
    name: str,
    interactions: pd.DataFrame,
    *,
    epochs: int,
    max_length: int,
    checkpoint: str | None = None,
    seed: int = 0,
    device: str = "cpu",
):
    """The model to serve: the ``checkpoint``'s (a sequential model, onto ``device``), else
    model ``name`` from the registry with whichever of ``epochs``, ``max_length``, ``seed``
    and ``device`` it takes (as notebook 07 builds it; serving speed does not depend on
    how long it trained), fitted on ``interactions``."""
    if checkpoint is not None:
        return models.load(checkpoint, device=device)
    options = models.applicable(name, epochs=epochs, max_length=max_length, seed=seed, device=device)
    return models.build(name, **options).fit(interactions)


def full_vs_two_stage(args) -> None:
    """``--two-stage``: at ``--catalogue`` items (synthetic log), the ranker (iALS-128)
    scoring every item against two stages (iALS-64 + an index retrieve ``--candidates``,
    the same ranker re-ranks them), both behind the same micro-batcher (cache off: the
    model is what is measured), closed loop at ``--concurrency`` clients; throughput and
    p99 side by side, the ratio, issue 14's target (>= 5x requests/s at equal or lower
    p99), how many of full scoring's top 10 the two stages keep, and the serving path's
    own floor (a servable that answers from a constant list)."""
    started = time.perf_counter()
    retriever, log, cost = catalogue_of(args.catalogue)
    ranker = IALS(factors=128, epochs=8, device="cpu", seed=1).fit(log)  # trained as the retriever is
    staged = {
        f"two-stage ({index_name(backend, args)}{'' if p is None else f' nprobe {p}'}, N={args.candidates})": two_stage(
            retriever, ranker, log, retrieval_index(backend, p, args), args
        )
        for backend in args.retrieval
        for p in (args.nprobe if backend in ("ivf", "ivfpq") else [None])
    }
    full = servable(ranker)
    users = ranker.users.ids_
    load = os.getloadavg()[0]
    print(
        f"# full scoring vs two-stage: {cost['catalogue']:,} items ({cost['requested_items']:,} asked of the "
        f"generator), {len(users):,} users; building the models and the index took "
        f"{time.perf_counter() - started:.0f} s; {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}, "
        f"load average {load:.1f}{' (busy)' if load > 2 else ''}"
    )
    setups = {
        "serving floor (constant answers)": ConstantServable(full),
        "full scoring (iALS-128, every item)": full,
        **staged,
    }
    config = ServingConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, cache_size=0)
    rows = []
    for name, served in setups.items():
        spec = LoadSpec(requests=args.requests, duration_s=args.duration)
        latency_curves(served, {"warm-up": config}, users, [args.concurrency], LoadSpec(requests=100, duration_s=1))
        curve = latency_curves(served, {name: config}, users, [args.concurrency], spec)
        rows.append(curve.iloc[0][["setup", "throughput_rps", "p50_ms", "p99_ms", "mean_batch"]])
    table = pd.DataFrame(rows).reset_index(drop=True)
    sample = users[:: max(1, len(users) // 1000)]
    exact = two_stage(retriever, ranker, log, IndexConfig(backend="flat"), args)
    table["top10_kept"] = [np.nan, 1.0, *(top_k_overlap(full, s, sample, k=10) for s in staged.values())]
    table["speed_vs_full"] = table["throughput_rps"] / table.loc[1, "throughput_rps"]
    print(table.round(3).to_string(index=False))
    print(
        f"top10_kept: share of full scoring's top 10 in the answer ({len(sample):,} users); with exact retrieval "
        f"of the same N the two stages keep {top_k_overlap(full, exact, sample, k=10):.3f} (what the cheaper "
        "retriever costs, before any index approximation)"
    )
    full_row = table.iloc[1]
    for _, staged_row in table.iloc[2:].iterrows():
        ratio = staged_row["speed_vs_full"]
        met = ratio >= 5 and staged_row["p99_ms"] <= full_row["p99_ms"]
        print(
            f"{staged_row['setup']}: {staged_row['throughput_rps']:.0f} req/s vs full "
            f"{full_row['throughput_rps']:.0f} req/s = {ratio:.2f}x, p99 {staged_row['p99_ms']:.1f} ms vs "
            f"{full_row['p99_ms']:.1f} ms (target >= 5x at equal or lower p99) -> {verdict(met)}"
        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def two_stage(retriever, ranker, log, index: IndexConfig, args) -> TwoStageServable:
    """The two-stage servable: ``retriever`` + ``index`` for ``args.candidates`` items, ``ranker`` re-ranks."""
    two = TwoStage(retriever=retriever, ranker=ranker, candidates=args.candidates, index=index)
    return TwoStageServable(two.fit(log, parts_fitted=True))


def retrieval_index(backend: str, nprobe: int | None, args) -> IndexConfig:
    """The index of one two-stage setup: HNSW m 16 (efSearch raised to N), IVF-Flat, or
    IVF-PQ with ``--code-size`` sub-quantisers of ``--pq-bits``, at ``nprobe``."""
    return IndexConfig(
        backend=backend, m=16, ef_construction=48, nprobe=nprobe or 1, code_size=args.code_size, pq_bits=args.pq_bits
    )


def index_name(backend: str, args) -> str:
    return f"ivfpq {args.code_size}x{args.pq_bits}-bit" if backend == "ivfpq" else backend


def catalogue_of(n_items: int) -> tuple:
    """iALS-64 on a synthetic log that reaches at least ``n_items`` items: the generator
    leaves items nobody drew without an embedding, so a short first draw is asked again,
    scaled up by the share it missed."""
    retriever, log, cost = synthetic_embeddings(n_items, seed=0)
    if cost["catalogue"] < n_items:
        asked = int(n_items * n_items / cost["catalogue"] * 1.02)
        retriever, log, cost = synthetic_embeddings(asked, seed=0)
    return retriever, log, cost


class ConstantServable:
    """Answers every request with the same items: what the batcher, the futures and
    the load generator cost per request, with no model behind them."""

    def __init__(self, inner) -> None:
        self.inner, self.version = inner, inner.version

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def recommend_batch(self, requests):
        return [Recommendation(int(u), tuple(range(k)), (0.0,) * k, False, self.version, 0) for u, k in requests]


def top_k_overlap(full, staged, users, *, k: int) -> float:
    """Mean share of full scoring's top ``k`` that the two-stage answer also holds."""
    requests = [(int(u), k) for u in users]
    shared = [
        len(set(a.items) & set(b.items)) / k
        for a, b in zip(full.recommend_batch(requests), staged.recommend_batch(requests))
    ]
    return float(sum(shared) / len(shared))


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    parser.add_argument("--checkpoint", help="saved sequential model to serve instead of training one")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (serving speed does not depend on them)")
    parser.add_argument(
        "--max-length",
        type=int,
        default=25,
        help="items a sequential model reads (25: notebook 04's validated default)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="clients for the side-by-side comparison")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per run, at most")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of the closed-loop curves (medians)")
    parser.add_argument("--requests", type=int, default=4000, help="requests per run, at most")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads for every setup (1: no spinning OpenMP threads on a shared machine)",
    )
    parser.add_argument("--two-stage", action="store_true", help="only full scoring vs two-stage (issue 14)")
    parser.add_argument("--catalogue", type=int, default=100_000, help="--two-stage: synthetic catalogue size")
    parser.add_argument("--candidates", type=int, default=200, help="--two-stage: N")
    parser.add_argument(
        "--retrieval",
        nargs="+",
        choices=["flat", "hnsw", "ivf", "ivfpq"],
        default=["ivf", "ivfpq"],
        help="--two-stage: the indexes, one setup each (ivf, ivfpq at each --nprobe; hnsw m 16, efSearch raised to N)",
    )
    parser.add_argument(
        "--nprobe", type=int, nargs="+", default=[16, 64], help="--two-stage with ivf, ivfpq: cells visited"
    )
    parser.add_argument("--code-size", type=int, default=64, help="--two-stage with ivfpq: sub-quantisers per item")
    parser.add_argument(
        "--pq-bits", type=int, choices=(4, 8), default=4, help="--two-stage with ivfpq: 4 = faiss's SIMD fast-scan"
    )
    args = parser.parse_args(argv)
    set_threads(args.torch_threads)  # torch's and faiss's threads alike
    if args.two_stage:
        full_vs_two_stage(args)
        return 0

    path = args.data_path if args.dataset != "synthetic" and Path(args.data_path).exists() else None
    data = datasets.load(args.dataset, path=path, size="small")
    started = time.perf_counter()
    model = build_model(
        args.model, data.interactions, epochs=args.epochs, max_length=args.max_length, checkpoint=args.checkpoint
    )
    fit_s = time.perf_counter() - started
    served = servable(model)
    users = model.users.ids_
    gc.collect()
    gc.freeze()  # as `workbench serve` does: no full-collection stalls over the long-lived objects
    print(
        f"# serving benchmark: {args.model} ({type(served).__name__}) on {args.dataset}: {len(users)} users, "
        f"{served.n_items} items; fit/load {fit_s:.1f} s; max_length {args.max_length}; "
        f"max batch {args.max_batch_size}, max wait {args.max_wait_ms:g} ms"
    )
    print(
        f"# {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.1f} (machine shared)"
    )
    curves = closed_loop_curves(served, users, args)
    freshness(served, users, args)
    batching_rps = curves.set_index(["setup", "level"]).loc[("dynamic batching", args.concurrency), "throughput_rps"]
    http_and_overload(served, model, users, args, batching_rps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
