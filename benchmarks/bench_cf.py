"""Speed of the sparse CF models, printed side by side in one run.

1. Our IALS (conjugate gradient; its default CPU kernel, numba's fused per-row solver,
   and its torch path) against the ``implicit`` library's ALS with the
   same factors, regularisation, confidence, iterations, CG steps and threads: seconds
   per iteration (best of ``--repeats`` fits, interleaved) and test nDCG@10 of each.
   ``implicit``'s confidence is ``alpha * r`` where ours is ``1 + alpha * r``, so it
   gets ``alpha + 1``; its BLAS pool is held at one thread, as it asks.
2. EASE fit and score time on synthetic catalogues of growing size (cubic fit,
   quadratic memory).
3. Top-k for all users in memory-bounded blocks against a naive per-user loop.

Data: ml-100k from ``--data`` (default ``../shared/data/ml-100k``) under the notebook 02
protocol, else the synthetic "small" preset. ``implicit`` is a dev dependency
(``pip install -e .[dev]``). Run from the repository root:

    python benchmarks/bench_cf.py [--threads 1 2] [--ease-items 1000 5000 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from workbench.data import datasets, splits
from workbench.data.synthetic import SyntheticConfig, generate
from workbench.evaluation.topk import fit_and_score
from workbench.models import EASE, IALS, Recommender
from workbench.models.base import topk_blocked

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ml-100k"


class ImplicitALS(Recommender):
    """``implicit.cpu.als.AlternatingLeastSquares`` behind our interface, for equal evaluation."""

    def __init__(self, *, factors: int, reg: float, alpha: float, epochs: int, cg_steps: int, threads: int, seed: int):
        self.options = dict(
            factors=factors, reg=reg, alpha=alpha, epochs=epochs, cg_steps=cg_steps, threads=threads, seed=seed
        )

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        o = self.options
        with threadpool_limits(1, "blas"):
            self.model = AlternatingLeastSquares(
                factors=o["factors"],
                regularization=o["reg"],
                alpha=1.0 + o["alpha"],
                iterations=o["epochs"],
                use_cg=True,
                num_threads=o["threads"],
                random_state=o["seed"],
            )
            self.model.cg_steps = o["cg_steps"]
            self.model.fit(matrix, show_progress=False)

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.model.user_factors[user_index] @ self.model.item_factors.T)


def best_fit_seconds(model: Recommender, matrix: sp.csr_matrix) -> float:
    """Wall-clock seconds of one ``_fit`` on a prebuilt matrix."""
    start = time.perf_counter()
    model._fit(matrix)
    return time.perf_counter() - start


def ials_vs_implicit(train, test, *, threads: list[int], epochs: int, repeats: int) -> pd.DataFrame:
    """One row per thread count: seconds/iteration and nDCG@10 of each, and the ratio."""
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        opts = dict(factors=64, reg=50.0, alpha=5.0, epochs=epochs, cg_steps=3, seed=0)
        models = {"ours": IALS(device="cpu", **opts), "torch": IALS(device="cpu", kernel="torch", **opts)}
        models["implicit"] = ImplicitALS(threads=t, **opts)
        quality = {name: fit_and_score(m, train, test)["ndcg"] for name, m in models.items()}  # ours: compiles
        matrix = models["ours"].seen
        times = {name: [] for name in models}
        for _ in range(repeats):  # interleaved, so background load hits all alike
            for name, m in models.items():
                times[name].append(best_fit_seconds(m, matrix) / epochs)
        best = {name: min(s) for name, s in times.items()}
        rows.append(
            {
                "threads": t,
                "ours kernel": models["ours"].kernel_,
                "ours s/iter": best["ours"],
                "torch path s/iter": best["torch"],
                "implicit s/iter": best["implicit"],
                "ratio ours/implicit": best["ours"] / best["implicit"],
                "ours ndcg@10": quality["ours"],
                "torch path ndcg@10": quality["torch"],
                "implicit ndcg@10": quality["implicit"],
            }
        )
    return pd.DataFrame(rows)


def ease_scaling(sizes: list[int], *, n_users: int) -> pd.DataFrame:
    """EASE fit and all-user top-10 seconds on synthetic catalogues of ``sizes`` items.

    200 interactions per user on average, so that most of a long-tailed catalogue is
    touched; EASE only sees items with an interaction, so ``items`` is reported as fitted.
    """
    rows = []
    for n_items in sizes:
        cfg = SyntheticConfig(n_users=n_users, n_items=n_items, mean_per_user=200, min_per_user=20, seed=0)
        df = generate(cfg)[0]
        model = EASE(device="cpu")
        start = time.perf_counter()
        model.fit(df)
        fitted = time.perf_counter()
        model.recommend(model.users.ids_, k=10)
        done = time.perf_counter()
        rows.append(
            {
                "catalogue": n_items,
                "items": len(model.items),
                "users": len(model.users),
                "interactions": len(df),
                "fit s": fitted - start,
                "score+top10 all users s": done - fitted,
                "weights MiB": len(model.items) ** 2 * 4 / 2**20,
                "peak fit MiB (2 n^2 float32)": 2 * len(model.items) ** 2 * 4 / 2**20,
            }
        )
        del model
    return pd.DataFrame(rows)


def naive_topk(model: Recommender, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One user at a time: score, mask seen items, torch.topk."""
    out_idx, out_val = np.empty((len(rows), k), np.int64), np.empty((len(rows), k), np.float32)
    for n, row in enumerate(rows):
        scores = model.score(np.array([row]))[0].clone()  # (n_items,)
        scores[torch.as_tensor(model.seen[row].indices, dtype=torch.long)] = float("-inf")
        val, idx = torch.topk(scores, k)
        out_idx[n], out_val[n] = idx.numpy(), val.numpy()
    return out_idx, out_val


def blocked_vs_loop(models: dict[str, Recommender], *, k: int = 10) -> pd.DataFrame:
    """All-user top-k: blocked (the base class) against a per-user loop, same answers."""
    rows = []
    for name, model in models.items():
        users = np.arange(len(model.users))
        start = time.perf_counter()
        blocked = topk_blocked(model.score, users, k, n_items=len(model.items), exclude=model.seen)
        mid = time.perf_counter()
        loop = naive_topk(model, users, k)
        end = time.perf_counter()
        same = np.mean(blocked[0] == loop[0])
        rows.append(
            {
                "model": name,
                "users": len(users),
                "blocked s": mid - start,
                "per-user loop s": end - mid,
                "speed-up": (end - mid) / (mid - start),
                "same items": f"{same:.1%}",
            }
        )
    return pd.DataFrame(rows)


def load(data: Path) -> tuple[str, pd.DataFrame]:
    if (data / "u.data").is_file():
        return "ml-100k", datasets.load("ml-100k", path=data).interactions
    return "synthetic small", datasets.load("synthetic", size="small", seed=0).interactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ease-items", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--ease-users", type=int, default=2000)
    args = parser.parse_args()

    name, interactions = load(args.data)
    train, test = splits.stratified(interactions, 0.75, seed=42)
    print(
        f"# bench_cf  {platform.processor() or platform.machine()}  {os.cpu_count()} CPUs  torch {torch.__version__}"
        f"  load average {os.getloadavg()[0]:.1f}  OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    print(
        f"\n## IALS vs implicit ALS on {name} (factors 64, reg 50, alpha 5 (implicit: 6), {args.epochs} iterations, "
        f"3 CG steps; best of {args.repeats})"
    )
    print(
        ials_vs_implicit(
            train, test, threads=sorted(set(args.threads)), epochs=args.epochs, repeats=args.repeats
        ).to_string(index=False, float_format=lambda v: f"{v:.4f}")
    )

    torch.set_num_threads(max(args.threads))
    print(f"\n## Blocked all-user top-10 vs a per-user loop on {name} ({torch.get_num_threads()} threads)")
    fitted = {"EASE": EASE(device="cpu").fit(train), "IALS": IALS(device="cpu").fit(train)}
    print(blocked_vs_loop(fitted).to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    print(
        f"\n## EASE fit and score time vs catalogue size (synthetic, {args.ease_users} users, "
        f"{torch.get_num_threads()} threads)"
    )
    print(
        ease_scaling(args.ease_items, n_users=args.ease_users).to_string(index=False, float_format=lambda v: f"{v:.2f}")
    )


if __name__ == "__main__":
    main()
