"""The inference benchmark: grid shape, agreement with fp32, bad input, model workloads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import models
from workbench.data import datasets
from workbench.models import EASE, IALS
from workbench.speed import benchmark as speed


@pytest.fixture(scope="module")
def ease():
    data = datasets.load("synthetic", size="tiny", seed=1)
    return EASE(reg=50.0, device="cpu").fit(data.interactions)


def test_ease_workload_scores_like_the_model(ease):
    w = speed.model_workload(ease)
    rows = np.arange(5)
    x = torch.as_tensor(ease.seen[rows].toarray())
    with torch.inference_mode():
        assert torch.allclose(w.score(w.module, {"x": x}), ease.score(rows), atol=1e-4)


def test_factor_workload_scores_like_the_model():
    data = datasets.load("synthetic", size="tiny", seed=1)
    model = IALS(factors=8, epochs=2, device="cpu").fit(data.interactions)
    w = speed.model_workload(model)
    with torch.inference_mode():
        got = w.score(w.module, {"x": model.user_factors_[:4].float()})
    assert torch.allclose(got, model.score(np.arange(4)).float(), atol=1e-4)


def test_benchmark_grid_rows_speedups_and_agreement(ease):
    df = speed.benchmark(
        speed.model_workload(ease),
        batch_sizes=[1, 32],
        precisions=["fp32", "bf16", "int8"],
        repeats=2,
        warmup=1,
        progress=False,
    )
    assert len(df) == 6
    fp32 = df[df["precision"] == "fp32"]
    assert (fp32["users_changed_pct"] == 0).all() and (fp32["max_abs_diff"] == 0).all()
    assert fp32.loc[fp32["batch_size"] == 1, "speedup_vs_batch1_fp32"].item() == pytest.approx(1.0)
    low = df[df["precision"] != "fp32"]
    assert (low["max_abs_diff"] > 0).all()  # reduced precision changes scores, and it is reported
    assert ((low["topk_overlap"] > 0.8) & (low["topk_overlap"] <= 1)).all()
    assert (df["threads"] == torch.get_num_threads()).all()
    assert set(speed.best_batch_sizes(df)["precision"]) == {"fp32", "bf16", "int8"}


def test_agreement_counts_changed_users():
    ref = torch.arange(20.0).repeat(4, 1)  # every row's top 2 is items 19, 18
    other = ref.clone()
    other[0, 0] = 100.0  # row 0's top 2 becomes 0, 19
    a = speed.agreement(ref, other, k=2)
    assert a["users_changed_pct"] == 25.0 and a["topk_overlap"] == pytest.approx(1 - 0.5 / 4)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5])
def test_bad_batch_sizes_are_rejected(ease, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        speed.measure(speed.model_workload(ease), batch_size=batch_size, repeats=1)


def test_plan_lists_what_cannot_run_here():
    runnable, skipped = speed.plan(["cpu"], ["fp32", "fp16", "int8"])
    assert runnable == [("cpu", "fp32"), ("cpu", "int8")]
    assert skipped[0]["precision"] == "fp16" and "CUDA" in skipped[0]["reason"]
    with pytest.raises(ValueError, match="unknown precision"):
        speed.plan(["cpu"], ["fp64"])


def test_best_batch_sizes_picks_the_fastest_batch_per_precision(ease):
    df = speed.benchmark(
        speed.model_workload(ease), batch_sizes=[1, 8], precisions=["fp32", "int8"], repeats=2, warmup=1, progress=False
    )
    best = speed.best_batch_sizes(df)
    assert len(best) == 2 and "best_batch_size" in best.columns
    for _, row in best.iterrows():
        rows = df[df["precision"] == row["precision"]]
        top = rows.loc[rows["throughput_per_s"].idxmax()]
        assert row["best_batch_size"] == top["batch_size"] and row["throughput_per_s"] == top["throughput_per_s"]


def test_user_histories_are_the_models_item_indices_oldest_first():
    df = pd.DataFrame(
        {"user_id": [1, 1, 1, 2, 2], "item_id": [30, 10, 20, 10, 30], "rating": 1.0, "timestamp": [3, 1, 2, 5, 4]}
    )
    model = models.build("EASE", device="cpu").fit(df)
    histories = speed.user_histories(model, df)
    assert [model.items.ids(h).tolist() for h in histories] == [[10, 20, 30], [30, 10]]


def test_sequential_workload_draws_batches_from_user_histories():
    data = datasets.load("synthetic", size="tiny", seed=1)
    model = models.build("SASRec", epochs=1, max_length=20, embedding_size=16, layers=1, heads=1, device="cpu")
    model.fit(data.interactions)
    with pytest.raises(ValueError, match="histories"):
        speed.model_workload(model)
    histories = speed.user_histories(model, data.interactions)
    assert len(histories) == data.interactions["user_id"].nunique()
    w = speed.model_workload(model, histories)
    inputs = w.make_inputs(4, np.random.default_rng(0))
    chosen = np.random.default_rng(0).integers(0, len(histories), 4)  # the users make_inputs drew
    with torch.inference_mode():
        got = w.score(w.module, inputs)
    assert got.shape == (4, w.n_items) == (4, len(model.items))
    torch.testing.assert_close(got.float(), model.score_sequences([histories[i] for i in chosen]), rtol=1e-4, atol=1e-4)
    row = speed.measure(w, batch_size=4, repeats=1, warmup=0)
    assert row["model"] == "SASRec" and row["batch_size"] == 4 and row["throughput_per_s"] > 0
