"""The inference benchmark: grid shape, agreement with fp32, bad input, model workloads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import datasets, speed
from workbench.models import EASE, IALS


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
    df = speed.benchmark(speed.model_workload(ease), batch_sizes=[1, 32], precisions=["fp32", "bf16", "int8"],
                         repeats=2, warmup=1, progress=False)
    assert len(df) == 6
    fp32 = df[df["precision"] == "fp32"]
    assert (fp32["users_changed_pct"] == 0).all() and (fp32["max_abs_diff"] == 0).all()
    assert fp32.loc[fp32["batch_size"] == 1, "speedup_vs_batch1_fp32"].item() == pytest.approx(1.0)
    low = df[df["precision"] != "fp32"]
    assert (low["max_abs_diff"] > 0).all()  # reduced precision changes scores, and it is reported
    assert ((low["topk_overlap"] > 0.8) & (low["topk_overlap"] <= 1)).all()
    assert (df["threads"] == torch.get_num_threads()).all()
    assert set(speed.summarize(df)["precision"]) == {"fp32", "bf16", "int8"}


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


def test_auto_batch_search_on_a_model(ease):
    search = speed.search_batch_size(speed.model_workload(ease), memory_budget_mb=10_000, limit=64)
    assert search.batch_size == 64 and all(t["status"] == "ok" for t in search.tried)
