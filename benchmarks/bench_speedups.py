"""Where inference throughput comes from: batch size x precision for the sequential
transformer (SASRec by default), printed side by side with ratios to batch-1 fp32.

    .venv/bin/python benchmarks/bench_speedups.py [--model sasrec] [--data ../shared/data/ml-100k]

Targets (issue 6, 2-core CPU): best batched throughput >= 5x batch-1; bf16 or int8 change
the top-10 of < 1% of users. Uses ml-100k when the folder exists, else synthetic "small".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from workbench import models
from workbench.data import datasets
from workbench.speed.benchmark import best_batch_sizes, model_workload, plan, run_plan, user_histories
from workbench.speed.precision import cpu_has_native_bf16


def fit_for_benchmark(
    name: str, interactions: pd.DataFrame, *, epochs: int, max_length: int, seed: int = 0, device: str = "cpu"
):
    """Model ``name`` from the registry, fitted for the speed study with whichever of
    ``epochs``, ``max_length``, ``seed`` and ``device`` it takes (as notebook 05 builds
    it), and the users' item-index histories its batches are drawn from."""
    options = models.applicable(name, epochs=epochs, max_length=max_length, seed=seed, device=device)
    model = models.build(name, **options).fit(interactions)
    return model, user_histories(model, interactions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8", "fp16"])
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    args = parser.parse_args()

    data = (
        datasets.load("ml-100k", path=args.data)
        if Path(args.data).is_dir()
        else datasets.load("synthetic", size="small")
    )
    t0 = time.perf_counter()
    model, histories = fit_for_benchmark(args.model, data.interactions, epochs=args.epochs, max_length=args.max_length)
    print(
        f"{args.model} on {data.name}: fitted in {time.perf_counter() - t0:.0f} s; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}"
    )
    runnable, skipped = plan(None, args.precisions)
    for s in skipped:
        print(f"skipped {s['device']} {s['precision']}: {s['reason']}")
    df = run_plan(
        model_workload(model, histories),
        runnable,
        batch_sizes=args.batch_sizes,
        compile=[False, True] if args.compile else [False],
        repeats=args.repeats,
        progress=False,
    )
    cols = [
        "device",
        "precision",
        "compile",
        "batch_size",
        "latency_ms_median",
        "latency_ms_p95",
        "throughput_per_s",
        "speedup_vs_batch1_fp32",
        "peak_mb",
        "users_changed_pct",
        "max_abs_diff",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df[cols].round(3).to_string(index=False))
        print()
        print(best_batch_sizes(df).round(3).to_string(index=False))
    fp32 = df[(df["precision"] == "fp32") & (df["device"] == "cpu")]
    best = fp32["throughput_per_s"].max() / fp32.loc[fp32["batch_size"] == 1, "throughput_per_s"].item()
    print(f"\nbest batched / batch-1 throughput (cpu fp32): {best:.2f}x  (target >= 5x)")
    for prec in ("bf16", "int8"):
        sub = df[df["precision"] == prec]
        if len(sub):
            print(f"{prec}: top-10 changed for {sub['users_changed_pct'].iloc[0]:.2f}% of users (target < 1%)")


if __name__ == "__main__":
    main()
