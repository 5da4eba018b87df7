"""Peer runner: LensKit's implicit-feedback MF (ALS, exact Cholesky solves) and item-KNN.

``python run_lenskit.py SPEC.json`` (see ``exchange.py``) with the ``.venv-peers``
interpreter (LensKit pins pandas < 3); models ``implicit_mf`` and ``item_knn``.
Recommendations come from LensKit's own top-N pipeline, which excludes the user's
training items as ours does.
"""

from __future__ import annotations

import time

import numpy as np
from exchange import limit_threads, read_spec, write_result, write_topk


def build(name: str, params: dict):
    if name == "implicit_mf":
        from lenskit.als import ImplicitMFConfig, ImplicitMFScorer

        # confidence 1 + weight * r, as ours is 1 + alpha * r; L2 ``reg`` on the same normal equations
        config = ImplicitMFConfig(
            embedding_size=params["factors"],
            epochs=params["epochs"],
            regularization=params["reg"],
            weight=params["alpha"],
            user_embeddings="prefer",
        )
        return ImplicitMFScorer(config)
    if name == "item_knn":
        from lenskit.knn import ItemKNNConfig, ItemKNNScorer

        return ItemKNNScorer(ItemKNNConfig(max_nbrs=params["k"], save_nbrs=params["k"], feedback="implicit"))
    raise SystemExit(f"unknown LensKit model {name!r}; choose implicit_mf or item_knn")


def main() -> None:
    spec = read_spec()
    limit_threads(spec["threads"])
    import lenskit
    import pandas as pd
    import torch
    from lenskit.batch import recommend
    from lenskit.data import from_interactions_df
    from lenskit.pipeline import topn_pipeline

    torch.set_num_threads(spec["threads"])
    data = np.load(spec["input"] / "train.npz")
    frame = pd.DataFrame({"user_id": data["users"], "item_id": data["items"]})
    dataset = from_interactions_df(frame, user_col="user_id", item_col="item_id")
    pipeline = topn_pipeline(build(spec["model"], spec["params"]), n=spec["k"])
    start = time.perf_counter()
    pipeline.train(dataset)
    fit_s = time.perf_counter() - start
    query = data["query"]
    start = time.perf_counter()
    top = np.full((len(query), spec["k"]), -1, dtype=np.int64)
    if len(query):  # none: a fit-only run (bench_scaling)
        recs = recommend(pipeline, query.tolist(), n=spec["k"], n_jobs=1).to_df()
        row = pd.Series(np.arange(len(query)), index=query)
        recs = recs.sort_values(["user_id", "rank"])
        top[row[recs["user_id"]].to_numpy(), recs["rank"].to_numpy() - 1] = recs["item_id"].to_numpy()
    recommend_s = time.perf_counter() - start
    write_topk(spec["output"], "topk", query, top)
    epochs = spec["params"].get("epochs")
    write_result(
        spec["output"],
        {
            "fit_seconds": fit_s,
            "epochs": epochs,
            "seconds_per_epoch": fit_s / epochs if epochs else None,
            "recommend_seconds": recommend_s,
            "versions": {"lenskit": lenskit.__version__, "torch": torch.__version__, "numpy": np.__version__},
        },
    )


if __name__ == "__main__":
    main()
