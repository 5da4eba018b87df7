"""Streaming (prequential) replay through the serving path, printed side by side.

Replays ml-100k's last 20% of events (T0 at the 0.8 quantile, about 20,000 events)
through an in-process :class:`~workbench.serving.service.RecommendationService` for each
model, online policy (every event applied right after its own prediction) beside the
static baseline (no update: mostly cache hits). Prints events/s, answer p50/p99 (ms),
process CPU seconds per 1,000 events and HR@10 per model and policy, best wall time of
``--repeats`` replays (the machine is shared). Targets: online >= 1,000 events/s for
EASE and iALS with p99 under 10 ms.

Data: ml-100k from ``--data`` (default ``../shared/data/ml-100k``), else the synthetic
"small" preset. Run from the repository root:

    python benchmarks/bench_streaming.py [--models ease ials] [--concurrency 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from pathlib import Path

import pandas as pd
import torch

from workbench.data import datasets
from workbench.serving import prequential, streaming

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ml-100k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-100k folder (else synthetic small)")
    parser.add_argument("--models", nargs="+", default=["ease", "ials"], help="registry names")
    parser.add_argument("--t0", type=float, default=0.8, help="replay start, as a quantile of the timestamps")
    parser.add_argument("--concurrency", type=int, default=8, help="users' requests in flight")
    parser.add_argument("--repeats", type=int, default=2, help="replays per setting; the fastest is shown")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--http", action="store_true", help="also replay online over HTTP on loopback")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.data.is_dir():
        data = datasets.load("ml-100k", path=args.data)
    else:
        data = datasets.load("synthetic", size="small")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", prequential.ReplayOrderWarning)
        window = prequential.split_at(data.interactions, args.t0)
    when = pd.Timestamp(window.t0, unit="s")
    cpu = platform.processor() or platform.machine()
    print(f"{data.name}: {len(window.replay)} events replayed after {when}, concurrency {args.concurrency}, {cpu}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average {load} at start")
    setups = [("static", False), ("online", False)] + ([("online", True)] if args.http else [])
    rows = []
    for name in args.models:
        model = streaming.fitter(name, seed=0, device="cpu")(window.train)
        for rule, http in setups:
            runs = [
                prequential.replay(model, window, rule, k=10, concurrency=args.concurrency, http=http, name=name)
                for _ in range(args.repeats)
            ]
            best = min(runs, key=lambda r: r.cost["wall_s"])
            cost = {key: best.cost[key] for key in ("events_per_s", "p50_ms", "p99_ms", "cpu_s_per_1000")}
            rows.append({"model": name, "policy": rule + (" (http)" if http else ""), **cost, **best.metrics()})
    table = pd.DataFrame(rows)
    print(
        table.round({"events_per_s": 0, "p50_ms": 2, "p99_ms": 2, "cpu_s_per_1000": 3}).round(4).to_string(index=False)
    )
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at end")
    online = table[table.policy == "online"]
    met = (online.events_per_s >= 1000) & (online.p99_ms < 10)
    print(
        "target (online >= 1,000 events/s, p99 < 10 ms):",
        dict(zip(online.model, met.map({True: "met", False: "missed"}))),
    )


if __name__ == "__main__":
    main()
