"""Rank metrics of one held-out item per user: full and sampled ranks (ties count half),
HR@k / nDCG@k / MRR and per-user nDCG gains, on answers known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import metrics
from workbench.metrics.ranks import full_ranks, ndcg_gains, rank_metrics, sampled_ranks


def test_full_ranks_exclude_seen_items_and_split_ties():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.2], [1.0, 2.0, 3.0, 4.0]])
    targets = torch.tensor([2, 1, -1])
    exclude = torch.tensor([[0, 0], [0, 2]])  # row 0: items 0 and 2 seen... but 2 is its target
    ranks = full_ranks(scores, targets, exclude)
    assert ranks[0] == 2.0  # item 0 excluded, item 1 above, the target itself never excluded
    assert ranks[1] == 2.0  # three-way tie: 1 + 2 ties / 2
    assert torch.isinf(ranks[2])  # unknown target
    assert torch.isinf(full_ranks(torch.tensor([[-np.inf, 1.0]]), torch.tensor([0])))[0]


def test_sampled_ranks_among_negatives_only():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.5]])
    assert sampled_ranks(scores, torch.tensor([2]), torch.tensor([[0, 3]])).item() == 1.0
    assert sampled_ranks(scores, torch.tensor([2]), torch.tensor([[1, 4]])).item() == 2.5
    assert torch.isinf(sampled_ranks(scores, torch.tensor([-1]), torch.tensor([[0, 3]])))[0]


def test_rank_metrics_known_answer():
    out = rank_metrics(np.array([1.0, 3.0, 11.0, np.inf]), k=10)
    assert out["hr@10"] == pytest.approx(0.5)
    assert out["ndcg@10"] == pytest.approx((1.0 + 1.0 / np.log2(4.0)) / 4)
    assert out["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11) / 4)


def test_ndcg_gains_per_user_known_answer():
    ranks = np.array([1.0, 3.0, 10.0, 11.0, np.inf, 2.5])
    gains = ndcg_gains(ranks, k=10)
    expected = [1.0, 1 / np.log2(4.0), 1 / np.log2(11.0), 0.0, 0.0, 1 / np.log2(3.5)]
    np.testing.assert_allclose(gains, expected)
    np.testing.assert_allclose(ndcg_gains(torch.as_tensor(ranks), k=10), expected)  # tensors too
    assert rank_metrics(ranks, k=10)["ndcg@10"] == pytest.approx(gains.mean())
    assert ndcg_gains(ranks, k=2).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_full_ranking_agrees_with_the_metrics_module():
    rng = np.random.default_rng(0)
    scores = torch.as_tensor(rng.normal(size=(50, 40)), dtype=torch.float32)
    targets = torch.as_tensor(rng.integers(0, 40, size=50))
    ranks = full_ranks(scores, targets)
    top = torch.topk(scores, 10, dim=1).indices.numpy()
    recs = pd.DataFrame(
        {"user_id": np.repeat(np.arange(50), 10), "item_id": top.ravel(), "rank": np.tile(np.arange(1, 11), 50)}
    )
    test = pd.DataFrame({"user_id": np.arange(50), "item_id": targets.numpy()})
    expected = metrics.ranking_metrics(recs, test, k=10)
    got = rank_metrics(ranks, 10)
    assert got["hr@10"] == pytest.approx(expected["hit_rate"]) and got["ndcg@10"] == pytest.approx(expected["ndcg"])


def test_re_exported_from_the_metrics_package():
    assert metrics.full_ranks is full_ranks and metrics.sampled_ranks is sampled_ranks
    assert metrics.rank_metrics is rank_metrics and metrics.ndcg_gains is ndcg_gains
