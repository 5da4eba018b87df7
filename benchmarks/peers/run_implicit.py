"""Peer runner: ``implicit``'s ALS (conjugate gradient) and BPR on our training matrix.

``python run_implicit.py SPEC.json`` (see ``exchange.py``); models ``als`` and ``bpr``.
ALS: ``implicit``'s confidence is ``alpha * r`` where ours is ``1 + alpha * r``, so it is
given ``alpha + 1``; its BLAS pool is held at one thread, as ``implicit`` asks.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from exchange import limit_threads, read_spec, write_result, write_topk


def build(name: str, params: dict, threads: int):
    if name == "als":
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=params["factors"],
            regularization=params["reg"],
            alpha=1.0 + params["alpha"],
            iterations=params["epochs"],
            use_cg=True,
            num_threads=threads,
            random_state=params["seed"],
        )
        model.cg_steps = params["cg_steps"]
        return model
    if name == "bpr":
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=params["factors"],
            learning_rate=params["learning_rate"],
            regularization=params["reg"],
            iterations=params["epochs"],
            num_threads=threads,
            random_state=params["seed"],
        )
    raise SystemExit(f"unknown implicit model {name!r}; choose als or bpr")


def main() -> None:
    spec = read_spec()
    limit_threads(1)  # BLAS: one thread; implicit's own pool gets spec["threads"]
    import implicit
    from threadpoolctl import threadpool_limits

    data = np.load(spec["input"] / "train.npz")
    matrix = sp.csr_matrix(
        (np.ones(len(data["users"]), np.float32), (data["users"], data["items"])),
        shape=(int(data["n_users"]), int(data["n_items"])),
    )
    with threadpool_limits(1, "blas"):
        model = build(spec["model"], spec["params"], spec["threads"])
        start = time.perf_counter()
        model.fit(matrix, show_progress=False)
        fit_s = time.perf_counter() - start
        query = data["query"]
        start = time.perf_counter()
        ids, _ = model.recommend(query, matrix[query], N=spec["k"], filter_already_liked_items=True)
        recommend_s = time.perf_counter() - start
    write_topk(spec["output"], "topk", query, ids)
    epochs = spec["params"]["epochs"]
    write_result(
        spec["output"],
        {
            "fit_seconds": fit_s,
            "epochs": epochs,
            "seconds_per_epoch": fit_s / epochs,
            "recommend_seconds": recommend_s,
            "versions": {"implicit": implicit.__version__, "numpy": np.__version__},
        },
    )


if __name__ == "__main__":
    main()
