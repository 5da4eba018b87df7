"""Training and inference throughput of BERT4Rec and SASRec, side by side, on this machine.

Training: sequences (training windows of ``max_length`` items) per second over whole
epochs, including the optimiser step. Inference, per batch size (1, 8, 64, 256):
histories per second for the forward pass alone (``score_tokens`` on a ready padded
batch) and end to end (``recommend_histories``: encoding, padding, scoring, masking the
history, top-10). Histories are real ml-100k users' last items when ../shared/data holds
ml-100k, else the synthetic "small" set; each timing is the best of ``--repeats``.

    .venv/bin/python benchmarks/bench_sequential.py [--device cpu] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from workbench.data import datasets
from workbench.data.sequences import histories
from workbench.models import BERT4Rec, BERT4RecConfig, SASRec, SASRecConfig
from workbench.speed.timing import best_seconds

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
BATCH_SIZES = (1, 8, 64, 256)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if ML100K.is_dir():
        data = datasets.load("ml-100k", path=ML100K)
    else:
        data = datasets.load("synthetic", size="small")
    # the notebook's defaults (notebooks/04_sequential.ipynb)
    common = dict(
        embedding_size=64,
        layers=2,
        heads=2,
        max_length=25,
        dropout=0.2,
        batch_size=64,
        learning_rate=3e-3,
        epochs=args.epochs,
        device=args.device,
        seed=0,
    )
    rows = {}
    for model in (
        SASRec(config=SASRecConfig(**common)),
        BERT4Rec(config=BERT4RecConfig(mask_probability=0.4, **common)),
    ):
        rows[type(model).__name__] = bench(model, data.interactions, epochs=args.epochs, repeats=args.repeats)
    table = pd.DataFrame(rows).round(1)
    print(
        f"# bench_sequential: {data.name}, {args.device}, {args.threads} torch threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
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
