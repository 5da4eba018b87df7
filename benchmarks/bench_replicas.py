"""Replicas sharing online state through Redis (issue 19): what Redis costs per request,
what a second replica buys, and how fresh an update is on the other replica.

    .venv/bin/python benchmarks/bench_replicas.py                      # EASE on ml-100k
    .venv/bin/python benchmarks/bench_replicas.py --model ials --duration 3

Prints, in one run, over HTTP against ``workbench serve`` processes and a real
``redis-server`` (127.0.0.1, ``appendonly yes``, ``appendfsync always``):

- closed-loop throughput and p50/p99 for 1 replica with in-process state, 1 replica with
  Redis state and 2 replicas (``--workers 2``) with Redis state, cache off (every request
  reaches the model: one Redis read per batch) and cache on and warm (every request a
  hit: one Redis check per request), with the CPU the servers and this load generator
  used (100% = one core) and the ratio to the in-process figure;
- cross-replica freshness: an update acknowledged by replica A, then reads through
  replica B until an answer reflects it; p99 from the acknowledgement to B's first
  reflecting answer, idle and under background load (target <= 20 ms), beside the same
  measurement on one replica with in-process state.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import redis

from workbench.data import datasets
from workbench.serving.load import LoadSpec, http_load, run_sync, served_process
from workbench.serving.replicas import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def served(args, *extra: str):
    """``workbench serve ARGS EXTRA`` on a free loopback port until it answers; yields
    (url, process); always stops it (SIGINT: graceful)."""
    port = free_port()
    cmd = [sys.executable, "-m", "workbench.cli", "serve", "--model", args.model, "--dataset", args.dataset]
    cmd += ["--port", str(port), "--max-wait-ms", str(args.max_wait_ms), "--max-batch-size", str(args.max_batch_size)]
    if args.dataset != "synthetic":
        cmd += ["--data-path", args.data_path]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.torch_threads)}
    replicas = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1
    with served_process(
        [*cmd, *extra], port, replicas=replicas, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as (url, proc):
        yield url, proc


@contextlib.contextmanager
def cpu_meter(server: subprocess.Popen):
    """CPU used by the server process and its children (replicas) and by this process
    while the block runs, in % of one core; filled in on exit."""
    procs = [psutil.Process(server.pid), *psutil.Process(server.pid).children()]
    me = psutil.Process()
    before = [p.cpu_times() for p in procs], me.cpu_times()
    started = time.perf_counter()
    out: dict = {}
    yield out
    wall = time.perf_counter() - started
    used = sum(a.user + a.system for a in (p.cpu_times() for p in procs)) - sum(b.user + b.system for b in before[0])
    mine = me.cpu_times().user + me.cpu_times().system - before[1].user - before[1].system
    out.update({"server_cpu_%": 100 * used / wall, "client_cpu_%": 100 * mine / wall})


def throughput(args, users, redis_url: str) -> pd.DataFrame:
    """Closed loop over HTTP for each setup, cache off and cache on (warm): the setups'
    servers run side by side and take turns, ``--rounds`` times (medians)."""
    setups = {
        "1 replica, in-process state": (),
        "1 replica, Redis state": ("--state", redis_url),
        "2 replicas, Redis state": ("--state", redis_url, "--workers", "2"),
    }
    rows = []
    for cache in ("off", "on (warm)"):
        cache_args = ("--cache-size", "0") if cache == "off" else ()
        with contextlib.ExitStack() as stack:
            servers = {name: stack.enter_context(served(args, *extra, *cache_args)) for name, extra in setups.items()}
            for url, _ in servers.values():  # cache on: (nearly) every user answered once
                warm = LoadSpec(level=args.concurrency, requests=3 * len(users) if cache != "off" else 200)
                run_sync(lambda url=url, warm=warm: http_load(url, users, warm))
            for r in range(args.rounds):
                for name, (url, proc) in servers.items():
                    spec = LoadSpec(level=args.concurrency, requests=args.requests, duration_s=args.duration, seed=r)
                    with cpu_meter(proc) as cpu:
                        result = run_sync(lambda url=url, spec=spec: http_load(url, users, spec))
                    rows.append({"cache": cache, "setup": name, **_numbers(result.summary()), **cpu})
    table = pd.DataFrame(rows).groupby(["cache", "setup"], sort=False).median().reset_index()
    base = table[table["setup"] == "1 replica, in-process state"].set_index("cache")["throughput_rps"]
    table["x_in_process"] = table["throughput_rps"] / table["cache"].map(base)
    return table


def _numbers(summary: dict) -> dict:
    errors = sum(summary[k] for k in ("rejected", "timeout", "error", "refused", "lost"))
    return {**{k: summary[k] for k in ("throughput_rps", "p50_ms", "p99_ms")}, "errors": errors}


def _background(url: str, users: list[int], seconds: float, level: int) -> None:
    """Closed-loop read load on ``url`` for ``seconds`` (a process of its own)."""
    run_sync(lambda: http_load(url, users, LoadSpec(level=level, requests=10**7, duration_s=seconds)))


def probe(update_url: str, read_url: str, pairs, *, k: int = 10) -> pd.DataFrame:
    """For each (user, item): POST it to ``update_url``, then read ``read_url`` until an
    answer reflects it (its update count and the item gone). Rows: update_ms, fresh_ms
    (acknowledgement -> first reflecting answer), reads (1: the first read reflected it)."""
    rows = []
    with httpx.Client(base_url=update_url, timeout=10) as a, httpx.Client(base_url=read_url, timeout=10) as b:
        for user, item in pairs:
            b.get(f"/recommend/{user}", params={"k": k})  # the old answer is now cached on B
            started = time.perf_counter()
            acked = a.post("/interactions", json={"user_id": user, "item_id": item}).json()["user_version"]
            ack = time.perf_counter()
            for reads in range(1, 1000):  # noqa: B007 - how many reads it took is the result
                answer = b.get(f"/recommend/{user}", params={"k": k}).json()
                if answer["user_version"] >= acked and item not in answer["items"]:
                    break
            done = time.perf_counter()
            rows.append({"update_ms": (ack - started) * 1e3, "fresh_ms": (done - ack) * 1e3, "reads": reads})
    return pd.DataFrame(rows)


def freshness(args, users, pairs, redis_url: str) -> pd.DataFrame:
    """Cross-replica freshness (two Redis replicas on their own ports), beside one
    replica with in-process state (update and read on the same one), idle and under a
    background closed-loop read load on the reading replica."""
    rows = []
    with served(args, "--state", redis_url) as (a, _), served(args, "--state", redis_url) as (b, _):
        rows += _probe_rows("A -> B, Redis state", a, b, users, pairs, args)
        print("\n## Redis operations as the replicas timed them (ms; /metrics workbench_state_latency_seconds)")
        print(pd.DataFrame([state_latency(a, "A"), state_latency(b, "B")]).round(3).to_string(index=False))
    with served(args) as (one, _):
        rows += _probe_rows("one replica, in-process state", one, one, users, pairs, args)
    return pd.DataFrame(rows)


def state_latency(url: str, name: str) -> dict:
    """p50 and p99 (ms) of each state operation a replica timed, from its /metrics."""
    row = {"replica": name}
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("workbench_state_latency_seconds{"):
            labels, value = line.rsplit(" ", 1)
            op, q = labels.split('op="')[1].split('"')[0], labels.split('quantile="')[1].split('"')[0]
            row[f"{op} p{round(float(q) * 100)}"] = float(value) * 1e3
    return row


def _probe_rows(name, update_url, read_url, users, pairs, args) -> list[dict]:
    rows = []
    half = len(pairs) // 2
    for load, chunk in (("idle", pairs[:half]), (f"{args.background} clients", pairs[half:])):
        background = None
        if load != "idle":
            ctx = multiprocessing.get_context("spawn")
            background = ctx.Process(target=_background, args=(read_url, list(users), 120.0, args.background))
            background.start()
            time.sleep(3)  # its connections are open and the load is on
        try:
            fresh = probe(update_url, read_url, chunk)
        finally:
            if background is not None:
                background.terminate()
                background.join(10)
        rows.append(
            {
                "path": name,
                "load": load,
                "updates": len(fresh),
                "update p99 ms": fresh["update_ms"].quantile(0.99),
                "fresh p50 ms": fresh["fresh_ms"].median(),
                "fresh p99 ms": fresh["fresh_ms"].quantile(0.99),
                "first read reflected": (fresh["reads"] == 1).mean(),
            }
        )
    return rows


def update_pairs(interactions: pd.DataFrame, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` (user, item) pairs, each item new to its user, no pair twice."""
    rng = np.random.default_rng(seed)
    seen = interactions.groupby("user_id")["item_id"].agg(set)
    items = interactions["item_id"].unique()
    pairs: list[tuple[int, int]] = []
    for user in rng.choice(seen.index.to_numpy(), size=n):
        taken = seen[user] | {i for u, i in pairs if u == user}
        pairs.append((int(user), int(next(i for i in rng.permutation(items) if i not in taken))))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ease")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--background", type=int, default=16, help="clients of the background load (freshness)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per throughput run, at most")
    parser.add_argument("--requests", type=int, default=6000, help="requests per throughput run, at most")
    parser.add_argument("--rounds", type=int, default=3, help="turns each setup takes (medians)")
    parser.add_argument("--updates", type=int, default=200, help="updates per freshness path (half idle, half loaded)")
    parser.add_argument("--torch-threads", type=int, default=1, help="intra-op threads of each server process")
    parser.add_argument("--appendfsync", default="always", choices=["always", "everysec"])
    args = parser.parse_args(argv)
    if not Path(args.data_path).exists():
        args.data_path = str(datasets.data_dir() / args.dataset)
    data = datasets.load(args.dataset, path=args.data_path if args.dataset != "synthetic" else None, size="small")
    users = data.interactions["user_id"].unique()
    pairs = update_pairs(data.interactions, args.updates)
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as folder:  # noqa: SIM117 - the server lives in it
        with RedisServer(Path(folder) / "redis", appendfsync=args.appendfsync) as server:
            version = redis.Redis.from_url(server.url).info("server")["redis_version"]
            print(
                f"# replicas benchmark: {args.model} on {args.dataset} ({len(users)} users); redis-server {version} "
                f"(appendonly yes, appendfsync {args.appendfsync}); {args.concurrency} closed-loop aiohttp clients; "
                f"max batch {args.max_batch_size}, max wait {args.max_wait_ms:g} ms; {args.torch_threads} torch "
                f"thread(s) per server"
            )
            print(f"# {platform.machine()}, {os.cpu_count()} cpus, {_load()}")
            table = throughput(args, users, server.url)
            print(
                f"\n## throughput over HTTP, closed loop: median of {args.rounds} runs of {args.duration:g} s "
                "(setups take turns); errors: 503/504/5xx/refused/lost; CPU: 100% = one core"
            )
            print(table.round(2).to_string(index=False))
            print(f"# {_load()}")
            fresh = freshness(args, users, pairs, server.url)
            print(
                "\n## cross-replica freshness: acknowledgement of POST /interactions on one replica -> the first "
                "answer reflecting it on the other (cached answer of the old state present there first)"
            )
            print(fresh.round(3).to_string(index=False))
            cross = fresh[fresh["path"].str.startswith("A -> B")]
            ok = (cross["fresh p99 ms"] <= 20).all()
            print(f"target: cross-replica p99 <= 20 ms, idle and under load -> {'MET' if ok else 'NOT MET'}")
            print(f"# {_load()}")
    return 0


def _load() -> str:
    load = os.getloadavg()[0]
    return f"load average {load:.1f}" + (" (busy: machine shared with other workers)" if load > 2 else "")


if __name__ == "__main__":
    sys.exit(main())
