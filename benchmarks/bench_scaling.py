"""How cost grows with the data: 100k, 1M, 5M and 20M interactions, fitted slopes on log-log axes.

For each size -- real ml-100k, then the synthetic presets ``ml-1m``, ``ml-5m`` and
``ml-20m`` (ML-20M's 138k users and 27k items at a quarter and at full size) -- this
measures fit seconds, seconds per iteration/epoch and peak memory (resident memory above
the start, sampled every millisecond) of:

- iALS: ours, ``implicit``'s (same factors, reg, confidence, CG steps, threads; BLAS at
  one thread) and LensKit's implicit MF (exact Cholesky solves, in ``.venv-peers``);
  ``--iterations`` sweeps each, at every ``--threads`` count;
- EASE (ours): refused before allocating where two (n_items, n_items) float32 matrices
  do not fit in the available memory -- the table then shows the memory it would need;
- item-KNN (ours);
- SASRec, ours and RecBole's, seconds per epoch. An epoch at millions of interactions
  takes long, so both are timed on the sequences of a random sample of users for
  ``--sequential-seconds`` (whole epochs for ours, a budget for RecBole) and the
  per-sequence cost is extrapolated to all users' sequences: the table says
  "extrapolated". RecBole's epoch is every prefix of every sequence, ours one window of
  ``max_length`` items per ``max_length`` interactions.

Figures: ``docs/figures/scaling__<metric>.png`` with the slope of log(cost) over
log(interactions) in the legend: slope 1 means twice the data costs twice as much.
The targets of issue 17 are printed met / not met with their numbers.

    .venv/bin/python benchmarks/bench_scaling.py [--sizes 100k 1m 5m 20m] [--threads 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from workbench.data import datasets, synthetic
from workbench.data.matrix import IndexMap, interaction_matrix
from workbench.data.schema import ITEM, USER
from workbench.devices import PeakMemory
from workbench.models import EASE, IALS, ItemKNN, SASRec
from workbench.models import ease as ease_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peers

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SIZES = {"100k": None, "1m": "ml-1m", "5m": "ml-5m", "20m": "ml-20m"}  # None: real ml-100k
IALS_OPTIONS = dict(factors=64, reg=50.0, alpha=5.0, cg_steps=3, seed=0)
SEQUENTIAL = dict(embedding_size=64, layers=2, heads=2, max_length=25, dropout=0.2, seed=0)


def load(size: str, generator: str = "preset") -> pd.DataFrame:
    """The interactions of ``size``: real ml-100k, or a synthetic preset. ``generator="fast"``
    draws the preset's shape (users, items, mean and minimum history) directly -- history
    lengths log-normal, items Zipf-like by popularity, timestamps increasing per user --
    in seconds rather than the full generator's minutes, for timing runs only."""
    if SIZES[size] is None:
        return datasets.load("ml-100k", path=bench_peers.ML100K).interactions
    if generator == "preset":
        return synthetic.generate(synthetic.config_for(SIZES[size], seed=0))[0]
    n_users, n_items, mean, floor = synthetic.SIZES[SIZES[size]]
    rng = np.random.default_rng(0)
    lengths = np.maximum(floor, rng.lognormal(np.log(mean - floor), 1.0, n_users) * 0.8 + floor).astype(np.int64)
    lengths = np.minimum(lengths, n_items // 2)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    users = np.repeat(np.arange(n_users), lengths)
    items = rng.choice(n_items, size=len(users), p=popularity / popularity.sum())
    keys = np.unique(users * n_items + items)  # one row per (user, item)
    df = pd.DataFrame({USER: keys // n_items, ITEM: keys % n_items})
    df["rating"] = 4.0
    df["timestamp"] = rng.permutation(len(df)).astype(np.int64)
    return df


def measured(fn: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak MB above the start) of ``fn()``."""
    with PeakMemory("cpu") as peak:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return seconds, peak.peak_mb


def row(model: str, size: str, n: int, seconds: float, peak_mb: float | None, per: float, note: str = "") -> dict:
    return {
        "model": model,
        "size": size,
        "interactions": n,
        "fit s": seconds,
        "s/epoch": per,
        "peak MB": peak_mb,
        "note": note,
    }


# --------------------------------------------------------------------------- iALS, EASE, item-KNN


def ials_rows(matrix: sp.csr_matrix, size: str, *, threads: list[int], iterations: int, lenskit) -> list[dict]:
    """Ours, implicit's and LensKit's ALS on the same matrix, at each thread count."""
    n, rows = matrix.nnz, []
    start = time.perf_counter()  # the first fit compiles numba's kernel (or loads it from the cache): not timed
    warm = IALS(device="cpu", epochs=1, **IALS_OPTIONS)
    warm._fit(matrix[:50])
    first_call = f"kernel {warm.kernel_}, first call {time.perf_counter() - start:.1f} s untimed"
    for t in threads:
        torch.set_num_threads(t)
        ours = IALS(device="cpu", epochs=iterations, **IALS_OPTIONS)
        s, mb = measured(lambda m=ours: m._fit(matrix))
        rows.append(row(f"iALS ours ({t} thr)", size, n, s, mb, s / iterations, first_call))
        rows.append(implicit_ials(matrix, size, threads=t, iterations=iterations))
        if lenskit is not None:
            rows.append(lenskit_ials(lenskit, matrix, size, threads=t, iterations=iterations))
    return rows


def implicit_ials(matrix: sp.csr_matrix, size: str, *, threads: int, iterations: int) -> dict:
    """``implicit``'s CG ALS with our settings (alpha + 1: its confidence is alpha * r)."""
    name = f"iALS implicit ({threads} thr)"
    try:
        from implicit.cpu.als import AlternatingLeastSquares  # a dev dependency: skipped when absent
    except ImportError as err:
        return row(name, size, matrix.nnz, np.nan, None, np.nan, f"skipped: {err}")
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=64, regularization=50.0, alpha=6.0, iterations=iterations, use_cg=True, num_threads=threads
        )
        model.cg_steps = 3
        s, mb = measured(lambda: model.fit(matrix, show_progress=False))
    return row(name, size, matrix.nnz, s, mb, s / iterations)


def lenskit_ials(python, matrix: sp.csr_matrix, size: str, *, threads: int, iterations: int) -> dict:
    """LensKit's implicit MF in its own environment (fit only; its peak is the whole process's)."""
    with tempfile.TemporaryDirectory() as tmp:
        coo = matrix.tocoo()
        arrays = dict(users=coo.row.astype(np.int64), items=coo.col.astype(np.int64), query=np.zeros(0, np.int64))
        np.savez(Path(tmp) / "train.npz", n_users=matrix.shape[0], n_items=matrix.shape[1], **arrays)
        params = {**IALS_OPTIONS, "epochs": iterations}
        spec = {
            "model": "implicit_mf",
            "params": params,
            "threads": threads,
            "k": 10,
            "input": tmp,
            "output": Path(tmp) / "o",
        }
        run = bench_peers.run_peer(python, bench_peers.RUNNERS / "run_lenskit.py", spec, timeout=3600)
    name = f"iALS LensKit ({threads} thr)"
    if run["status"] != "ok":
        return row(name, size, matrix.nnz, np.nan, None, np.nan, f"{run['status']}: {run['reason']}")
    res = run["result"]
    return row(name, size, matrix.nnz, res["fit_seconds"], res.get("peak_mb"), res["seconds_per_epoch"])


def ease_row(matrix: sp.csr_matrix, size: str) -> dict:
    n_items = matrix.shape[1]
    need_gb = ease_module.fit_memory_bytes(n_items) / 1e9
    try:
        ease_module.check_fits(n_items, torch.device("cpu"))
    except ease_module.EASEMemoryError as err:
        return row("EASE ours", size, matrix.nnz, np.nan, need_gb * 1e3, np.nan, f"refused: {err}")
    s, mb = measured(lambda: EASE(device="cpu")._fit(matrix))
    return row("EASE ours", size, matrix.nnz, s, mb, s, f"{n_items:,} items, needs {need_gb:.2f} GB")


def knn_row(matrix: sp.csr_matrix, size: str) -> dict:
    s, mb = measured(lambda: ItemKNN(k=200)._fit(matrix))
    return row("item-KNN ours", size, matrix.nnz, s, mb, s)


def ease_at(n_items: int, *, threads: int) -> dict:
    """The issue's EASE target: fit seconds at ``n_items`` items in fp32 (synthetic users;
    the generator leaves items nobody drew out, so a short draw is asked again, scaled up)."""
    torch.set_num_threads(threads)
    model, asked = EASE(device="cpu"), n_items
    for _ in range(3):
        cfg = synthetic.SyntheticConfig(n_users=4000, n_items=asked, mean_per_user=200, min_per_user=20, seed=0)
        model._index(synthetic.generate(cfg)[0])
        if len(model.items) >= n_items:
            break
        asked = int(asked * n_items / len(model.items) * 1.02)
    s, mb = measured(lambda: model._fit(model.seen))
    return {"items": len(model.items), "threads": threads, "fit s": s, "peak MB": mb}


# --------------------------------------------------------------------------- SASRec per epoch


def user_sample(df: pd.DataFrame, max_interactions: int, seed: int = 0) -> tuple[pd.DataFrame, float]:
    """Whole users drawn at random until about ``max_interactions`` rows; returns the
    sample and the share of all rows it holds (1.0: everything)."""
    if len(df) <= max_interactions:
        return df, 1.0
    counts = df.groupby(USER).size()
    order = np.random.default_rng(seed).permutation(counts.index.to_numpy())
    keep = order[: int(np.searchsorted(np.cumsum(counts.loc[order].to_numpy()), max_interactions)) + 1]
    sample = df[df[USER].isin(keep)]
    return sample, len(sample) / len(df)


def sasrec_ours(df: pd.DataFrame, size: str, *, sample_rows: int) -> dict:
    """Ours, one epoch on a user sample; seconds per epoch scaled to all rows."""
    sample, share = user_sample(df, sample_rows)
    model = SASRec(device="cpu", epochs=1, batch_size=64, learning_rate=3e-3, **SEQUENTIAL)
    s, mb = measured(lambda: model.fit(sample))
    per_epoch = float(model.result_.curves["train_seconds"].sum()) / share
    note = "" if share == 1 else f"extrapolated from {share:.1%} of users ({len(model.items):,} items)"
    return row("SASRec ours", size, len(df), s, mb, per_epoch, note)


def sasrec_recbole(python, df: pd.DataFrame, size: str, *, sample_rows: int, budget_s: float) -> dict:
    """RecBole's SASRec for ``budget_s`` seconds of training on a user sample; its
    prefix rows per second scaled to every prefix of every user."""
    sample, _ = user_sample(df, sample_rows)
    prefixes = len(df) - df[USER].nunique()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        users = sample[USER].unique()
        last = sample.sort_values("timestamp", kind="stable").groupby(USER).tail(2)
        valid = last.groupby(USER).head(1)
        for name, part in (("train", sample), ("valid", valid), ("test", valid)):
            part[[USER, ITEM, "timestamp"]].to_csv(folder / f"{name}.csv", index=False)
        params = {**SEQUENTIAL, "batch_size": 2048, "learning_rate": 1e-3, "budget_s": budget_s}
        spec = {"model": "SASRec", "params": params, "threads": 1, "k": 10, "input": folder, "output": folder / "o"}
        run = bench_peers.run_peer(python, bench_peers.RUNNERS / "run_recbole.py", spec, timeout=budget_s + 1800)
    if run["status"] != "ok":
        return row("SASRec RecBole", size, len(df), np.nan, None, np.nan, f"{run['status']}: {run['reason']}")
    rate = run["result"]["sequences_per_second"]
    note = f"{rate:.0f} prefixes/s over {run['result']['train_seconds']:.0f} s on {len(users):,} users, extrapolated"
    return row("SASRec RecBole", size, len(df), run["result"]["fit_seconds"], None, prefixes / rate, note)


# --------------------------------------------------------------------------- slopes, figures, targets


def slopes(table: pd.DataFrame, column: str) -> dict[str, float]:
    """Per model: the least-squares slope of log(column) over log(interactions)."""
    out = {}
    for model, part in table.dropna(subset=[column]).groupby("model"):
        part = part[part[column] > 0]
        if part["interactions"].nunique() >= 2:
            out[model] = float(np.polyfit(np.log(part["interactions"]), np.log(part[column]), 1)[0])
    return out


def plot(table: pd.DataFrame, column: str, label: str, path: Path, *, title: str) -> Path:
    """Log-log lines of ``column`` against interactions, one per model, slope in the legend."""
    fitted = slopes(table, column)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for model, part in table.dropna(subset=[column]).groupby("model"):
        if model in fitted:
            part = part.sort_values("interactions")
            ax.plot(part["interactions"], part[column], marker="o", label=f"{model}: slope {fitted[model]:.2f}")
    ax.set(xscale="log", yscale="log", xlabel="training interactions", ylabel=label, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)
    return path


def ials_target(table: pd.DataFrame, size: str = "20m") -> list[str]:
    """Issue 17: our iALS seconds per iteration <= 1.0x implicit's, per thread count, at ML-20M size."""
    lines = []
    at = table[table["size"] == size].set_index("model")
    for model in at.index:
        if model.startswith("iALS ours"):
            threads = model.split("(")[1]
            theirs = at["s/epoch"].get(f"iALS implicit ({threads}")
            if theirs is not None and np.isfinite(theirs):
                ratio = at.loc[model, "s/epoch"] / theirs
                verdict = "met" if ratio <= 1.0 else "NOT met"
                lines.append(f"iALS s/iteration at {size}, {threads[:-1]}: ours/implicit = {ratio:.2f} -> {verdict}")
    return lines


def ease_target(result: dict, limit_s: float = 120.0) -> str:
    verdict = "met" if result["fit s"] <= limit_s else "NOT met"
    where = f"{result['items']:,} items, fp32, {result['threads']} thread(s)"
    return f"EASE fit at {where}: {result['fit s']:.1f} s (target <= {limit_s:.0f} s) -> {verdict}"


# --------------------------------------------------------------------------- main


def measure_size(size: str, args, lenskit, recbole, save: Callable[[dict], None]) -> None:
    """Every model at one size; ``save`` gets each row (with the load average when it was taken)."""
    df = load(size, args.generator)
    users, items = IndexMap.from_ids(df[USER], kind="user"), IndexMap.from_ids(df[ITEM], kind="item")
    matrix = interaction_matrix(df, users, items)
    matrix.data[:] = 1.0
    steps = [
        lambda: ials_rows(matrix, size, threads=args.threads, iterations=args.iterations, lenskit=None),
        lambda: [lenskit_ials(lenskit, matrix, size, threads=1, iterations=args.peer_iterations)] if lenskit else [],
        lambda: [ease_row(matrix, size)],
        lambda: [knn_row(matrix, size)],
        lambda: [sasrec_ours(df, size, sample_rows=args.sample_rows)] if "sasrec" in args.sequential else [],
    ]
    if args.only_ials:  # the iALS target alone: ours and implicit
        steps = steps[:1]
    elif "recbole" in args.sequential and recbole is not None:
        rows = args.recbole_rows
        steps.append(lambda: [sasrec_recbole(recbole, df, size, sample_rows=rows, budget_s=args.recbole_seconds)])
    for step in steps:
        torch.set_num_threads(max(args.threads))
        for r in step():
            save({**r, "load": round(os.getloadavg()[0], 1)})


def figures(table: pd.DataFrame, folder: Path) -> list[Path]:
    specs = [
        ("fit s", "fit seconds", "fit_time", "Fit time vs data size"),
        ("s/epoch", "seconds per iteration / epoch", "time_per_epoch", "Time per iteration or epoch vs data size"),
        ("peak MB", "peak memory above start (MB)", "peak_memory", "Peak memory vs data size"),
    ]
    measured_fit = table[~table["note"].str.contains("extrapolated", na=False)]  # a sample's fit is no fit time
    tables = {"fit s": measured_fit, "s/epoch": table, "peak MB": measured_fit}
    return [
        plot(tables[col], col, label, folder / f"scaling__{name}.png", title=title) for col, label, name, title in specs
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iterations", type=int, default=3, help="ALS sweeps timed per fit")
    parser.add_argument("--generator", choices=["preset", "fast"], default="preset", help="synthetic data: see load()")
    parser.add_argument("--peer-iterations", type=int, default=1, help="LensKit's ALS sweeps (slow at 20M)")
    parser.add_argument("--sequential", nargs="*", default=["sasrec", "recbole"], choices=["sasrec", "recbole"])
    parser.add_argument("--sample-rows", type=int, default=1_000_000, help="our SASRec's user sample (rows)")
    parser.add_argument("--recbole-rows", type=int, default=200_000, help="RecBole's user sample (rows)")
    parser.add_argument("--recbole-seconds", type=float, default=120.0, help="RecBole's timed training per size")
    parser.add_argument("--ease-items", type=int, default=20_000, help="the EASE target's catalogue (0: skip)")
    parser.add_argument("--no-peers", action="store_true", help="skip LensKit and RecBole")
    parser.add_argument("--only-ials", action="store_true", help="only iALS, ours and implicit's (the iALS target)")
    parser.add_argument("--figures", type=Path, default=FIGURES)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--replot", type=Path, nargs="+", help="figures and targets from saved --json files")
    args = parser.parse_args()
    peers, why = (None, "--no-peers") if args.no_peers else bench_peers.peers_python()
    problems = {m: bench_peers.import_problem(peers, m) if peers else why for m in ("lenskit", "recbole")}
    lenskit, recbole = (peers if problems[m] is None else None for m in ("lenskit", "recbole"))
    load0 = os.getloadavg()[0]
    print(
        f"# bench_scaling  {platform.processor() or platform.machine()}  {os.cpu_count()} CPUs  threads {args.threads}"
        f"  torch {torch.__version__}  load average {load0:.1f}{'  (busy)' if load0 > 2 else ''}"
    )
    for m, problem in problems.items():
        if problem:
            print(f"# {m} skipped: {problem}")
    rows = [r for path in args.replot or [] for r in json.loads(path.read_text())["rows"]]

    def save(r: dict) -> None:
        rows.append(r)
        print(pd.DataFrame([r]).to_string(index=False, header=len(rows) == 1, float_format=lambda v: f"{v:.3g}"))
        if args.json:
            args.json.write_text(json.dumps({"rows": rows}, indent=2, default=str))

    for size in [] if args.replot else args.sizes:
        measure_size(size, args, lenskit, recbole, save)
    table = pd.DataFrame(rows)
    print("\n## slopes of log(cost) over log(interactions)")
    for col in ("fit s", "s/epoch", "peak MB"):
        print(f"{col}: " + ", ".join(f"{m} {v:.2f}" for m, v in slopes(table, col).items()))
    print("\n" + "\n".join(str(p) for p in figures(table, args.figures)))
    print("\n## targets")
    print("\n".join(ials_target(table, args.sizes[-1])) or f"iALS target: no ours/implicit pair at {args.sizes[-1]}")
    report = {"rows": rows, "load_average_end": os.getloadavg()}
    if args.ease_items:
        report["ease_target"] = ease_at(args.ease_items, threads=max(args.threads))
        print(ease_target(report["ease_target"]))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
