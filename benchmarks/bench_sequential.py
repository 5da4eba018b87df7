"""Training and inference throughput of BERT4Rec and SASRec, side by side, on this machine.

Training: sequences (training windows of ``max_length`` items) per second over whole
epochs, including the optimiser step. Inference, per batch size (1, 8, 64, 256):
histories per second for the forward pass alone (``score_tokens`` on a ready padded
batch) and end to end (``recommend_histories``: encoding, padding, scoring, masking the
history, top-10). Histories are real ml-100k users' last items when ../shared/data holds
ml-100k, else the synthetic "small" set; each timing is the best of ``--repeats``.

``--compare``: notebook 04's training settings before issue 17 (fp32, the plain AdamW loop,
1 thread) against now (``--precision``, fused AdamW, ``--threads``), one epoch of each in
turn for ``--rounds`` rounds on the leave-one-out training part, so that a busy machine
slows both alike; prints the median seconds per epoch (wall, and CPU for 1-thread runs)
and the ratio before/now, with the load average.

    .venv/bin/python benchmarks/bench_sequential.py [--device cpu] [--threads N] [--json out.json]
    .venv/bin/python benchmarks/bench_sequential.py --compare [--threads 2] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.data import datasets, splits
from workbench.data.sequences import histories
from workbench.models import BERT4Rec, BERT4RecConfig, SASRec, SASRecConfig
from workbench.speed.timing import best_seconds

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
BATCH_SIZES = (1, 8, 64, 256)
#: notebook 04's model settings (notebooks/04_sequential.ipynb)
NOTEBOOK = dict(embedding_size=64, layers=2, heads=2, max_length=25, dropout=0.2, batch_size=64, learning_rate=3e-3)
MODELS = {"SASRec": (SASRec, SASRecConfig, {}), "BERT4Rec": (BERT4Rec, BERT4RecConfig, {"mask_probability": 0.4})}


def bench(model, data: pd.DataFrame, *, epochs: int, repeats: int) -> dict:
    started = time.perf_counter()
    model.fit(data)  # no validation: exactly `epochs` epochs
    seconds = time.perf_counter() - started
    row = {"train sequences/s": len(model.training_windows()) * epochs / seconds, "train s/epoch": seconds / epochs}
    users = histories(data)
    pool = [h for h in users if len(h) >= model.context_length] or list(users)
    for size in BATCH_SIZES:
        batch = [pool[i % len(pool)] for i in range(size)]
        tokens = model.tokens(model.encode(batch))
        with torch.inference_mode():
            forward = best_seconds(lambda tokens=tokens: model.score_tokens(**tokens), repeats=repeats)
        end_to_end = best_seconds(lambda batch=batch: model.recommend_histories(batch, k=10), repeats=repeats)
        row[f"forward/s @{size}"] = size / forward
        row[f"recommend/s @{size}"] = size / end_to_end
    return row


def one_epoch(name: str, train: pd.DataFrame, *, threads: int, **settings) -> tuple[float, float]:
    """Fit ``name`` for one epoch at notebook 04's settings plus ``settings`` -> (wall, CPU)
    seconds of the epoch's optimisation (CPU: the whole fit, setup included)."""
    cls, config, extra = MODELS[name]
    torch.set_num_threads(threads)
    cpu = time.process_time()
    model = cls(config=config(**NOTEBOOK, **extra, **settings, epochs=1, seed=0)).fit(train)
    return float(model.result_.curves.train_seconds.iloc[0]), time.process_time() - cpu


def compare(data, args) -> pd.DataFrame:
    """Seconds per epoch before issue 17 and now, one epoch of each in turn."""
    train = splits.leave_one_out(data.interactions).train
    setups = {
        "before": dict(threads=1, precision="fp32", fused_optimizer=False),
        "now": dict(threads=args.threads, precision=args.precision, fused_optimizer=True),
    }
    rows = []
    for name in MODELS:
        times = {key: [] for key in setups}
        for _ in range(args.rounds):
            for key, setup in setups.items():
                times[key].append(one_epoch(name, train, device=args.device, **setup))
        wall = {key: float(np.median([t[0] for t in v])) for key, v in times.items()}
        cpu = {key: float(np.median([t[1] for t in v])) for key, v in times.items()}
        rows.append(
            {
                "model": name,
                "before s/epoch": wall["before"],
                "now s/epoch": wall["now"],
                "before/now (wall)": wall["before"] / wall["now"],
                "before/now (CPU, fit)": cpu["before"] / cpu["now"] if args.threads == 1 else float("nan"),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="training settings before issue 17 vs now")
    parser.add_argument("--precision", default="bf16", help="--compare: the autocast precision now")
    parser.add_argument("--rounds", type=int, default=4, help="--compare: epochs of each setting")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if ML100K.is_dir():
        data = datasets.load("ml-100k", path=ML100K)
    else:
        data = datasets.load("synthetic", size="small")
    load = os.getloadavg()
    if args.compare:
        table = compare(data, args)
        print(
            f"# bench_sequential --compare: {data.name} leave-one-out training part, {args.device}, "
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
            f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end"
            + (" (busy)" if max(load[0], os.getloadavg()[0]) > 2 else "")
        )
        print(
            f"# before: fp32, plain AdamW, 1 thread; now: {args.precision}, fused AdamW, {args.threads} thread(s); "
            f"median of {args.rounds} alternating epochs; notebook 04's models, batch 64"
        )
        print(table.round(2).to_string())
        if args.json:
            args.json.write_text(json.dumps({"compare": table.reset_index().to_dict("records"), "load": load}))
        return
    rows = {}
    for name, (cls, config, extra) in MODELS.items():
        model = cls(config=config(**NOTEBOOK, **extra, epochs=args.epochs, device=args.device, seed=0))
        rows[name] = bench(model, data.interactions, epochs=args.epochs, repeats=args.repeats)
    table = pd.DataFrame(rows).round(1)
    print(
        f"# bench_sequential: {data.name}, {args.device}, {args.threads} torch threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, load average {load[0]:.1f}"
    )
    print(
        "# models: embedding 64, 2 layers, 2 heads, max_length 25 (BERT4Rec mask 0.4); "
        f"training batch 64, {args.epochs} epochs"
    )
    print(table.to_string())
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "threads": args.threads, "table": rows}, indent=2))


if __name__ == "__main__":
    main()
