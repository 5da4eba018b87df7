"""Fine-tuning cost of the text two-tower, side by side, and the validation sweep behind
its defaults.

Cost (default): one configuration per fresh subprocess (so peak memory is its own):
head only (all 6 MiniLM layers frozen), the top layer fine-tuned with the frozen
layers' outputs cached, the same without the cache (frozen layers recomputed every
step), the same under bf16 autocast, the top two layers, and full fine-tuning
(embeddings and all layers). Reported:
seconds to build the cache, wall seconds per epoch (training steps only), real tokens
per second through the trainable layers, and the process's peak resident memory.

Sweep (``--sweep``): fine-tunes a small grid on the ml-100k *training* part of the
stratified 75/25 split, validating per epoch on a split carved from it
(``workbench.data.splits.validation``) -- the test part is never read. The best validation
nDCG@10 and the epoch it came at are printed per configuration.

    .venv/bin/python benchmarks/bench_text.py [--threads 2] [--epochs 1] [--json out.json]
    .venv/bin/python benchmarks/bench_text.py --sweep [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from workbench.data import datasets, splits
from workbench.models.text.encoder import load_encoder
from workbench.models.text.two_tower import TwoTower, TwoTowerConfig

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ml-100k"

COST = {
    "head only (freeze 6)": dict(freeze=6),
    "top 1 layer, cached (freeze 5)": dict(freeze=5),
    "top 1 layer, not cached": dict(freeze=5, cache_frozen=False),
    "top 1 layer, cached, bf16 autocast": dict(freeze=5, precision="bf16"),
    "top 2 layers, cached (freeze 4)": dict(freeze=4),
    "full fine-tune (freeze 0)": dict(freeze=0),
}
SWEEP = {
    "freeze 6, 20 epochs": dict(freeze=6, epochs=20),
    "freeze 6, 20 epochs, bce": dict(freeze=6, epochs=20, loss="bce"),
    "freeze 5, 6 epochs, lr 1e-4": dict(freeze=5, epochs=6),
    "freeze 5, 6 epochs, lr 3e-4": dict(freeze=5, epochs=6, learning_rate=3e-4),
    "freeze 5, 6 epochs, batch 128": dict(freeze=5, epochs=6, batch_size=128),
    "freeze 4, 4 epochs, lr 1e-4": dict(freeze=4, epochs=4),
}


def _data(path: Path):
    if (path / "u.data").is_file():
        return datasets.load("ml-100k", path=path)
    return datasets.load("synthetic", size="small")


def _parts(data):
    train, _test = splits.stratified(data.interactions, 0.75, seed=42)
    fit, valid = splits.validation(train)
    return train, fit, valid, data.items[data.items["item_id"].isin(train["item_id"])]


def run_one(options: dict, args) -> dict:
    """Fine-tune one configuration in this process -> its measurements."""
    torch.set_num_threads(args.threads)
    data = _data(Path(args.data))
    _train, fit, valid, warm = _parts(data)
    enc = load_encoder(args.encoder, device=args.device)
    config = TwoTowerConfig(**{"epochs": args.epochs, "device": args.device, **options})
    model = TwoTower(warm, encoder=enc, config=config)
    t0 = time.perf_counter()
    model.fit(fit, validation=valid if args.sweep else None, progress=False)
    curves = model.result_.curves  # valid_score: validation nDCG@k (NaN without validation)
    h = curves[curves["epoch"] > 0]
    return {
        "dataset": data.name,
        "options": options,
        "fit_seconds": time.perf_counter() - t0,
        "cache_seconds": model.cache_seconds_,
        "epoch_seconds": float(h["train_seconds"].mean()),
        "tokens_per_epoch": int(h["tokens"].mean()),
        "tokens_per_s": float(h["tokens_per_s"].mean()),
        "peak_memory_mb": float(h["peak_memory_mb"].max()),
        "best_epoch": model.result_.best_epoch,
        "best_valid_ndcg": float(curves["valid_score"].max()),
        "valid_ndcg": [round(float(v), 4) for v in curves["valid_score"]],
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--encoder", default=None, help="hub name or local folder (default: offline all-MiniLM-L6-v2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1, help="epochs per cost measurement")
    ap.add_argument("--sweep", action="store_true", help="run the validation sweep instead of the cost table")
    ap.add_argument("--only", nargs="*", help="names of configurations to run (default: all)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one JSON configuration, print JSON
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one), args)))
        return
    grid = SWEEP if args.sweep else COST
    names = args.only or list(grid)
    rows = []
    for name in names:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            json.dumps(grid[name]),
            "--data",
            args.data,
            "--device",
            args.device,
            "--threads",
            str(args.threads),
            "--epochs",
            str(args.epochs),
        ] + (["--sweep"] if args.sweep else [])
        if args.encoder:
            cmd += ["--encoder", args.encoder]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            rows.append({"configuration": name, "error": out.stderr.strip().splitlines()[-1]})
        else:
            rows.append({"configuration": name, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    table = pd.DataFrame(rows).set_index("configuration")
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads={args.threads}, "
        f"device={args.device}"
    )
    columns = (
        ["best_valid_ndcg", "best_epoch", "epoch_seconds", "fit_seconds"]
        if args.sweep
        else ["cache_seconds", "epoch_seconds", "tokens_per_s", "peak_memory_mb"]
    )
    print(table[[c for c in columns if c in table]].round(3).to_markdown())
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
