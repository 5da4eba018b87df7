"""Metrics from the rank of one held-out item per user (next-item, leave-one-out).

- :func:`full_ranks` / :func:`sampled_ranks` -- the 1-based rank of each held-out item
  among **all** items the user has not seen, or among ``n`` sampled negatives;
- :func:`rank_metrics` -- HR@k, nDCG@k and MRR from those ranks;
- :func:`ndcg_gains` -- nDCG@k of each user (for breakdowns by group).

Conventions. A tie in score counts half a place (the expected rank under a random
tie-break), so a constant scorer ranks the held-out item mid-way, and sparse scorers
(item-KNN) are not punished for their zeros. A held-out item unknown to a model counts
as a miss (rank ``inf``). MRR is the mean of ``1 / rank`` over the whole ranking (no
cut-off), unlike :func:`workbench.metrics.mrr_at_k`. Without ties, HR@k and nDCG@k with
one held-out item per user equal :func:`workbench.metrics.ranking_metrics`' ``hit_rate``
and ``ndcg`` on the top-k lists.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.metrics.topk import discount


def full_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Rank (1 = best) of ``targets`` among all non-excluded items.

    ``scores`` (B, N); ``targets`` (B,) column indices, -1 for an unknown item (rank
    inf); ``exclude`` (2, E) (row, column) pairs of seen items, never the target itself.
    Returns (B,) float ranks; each tie counts half (the expected rank under a random
    tie-break).
    """
    known = targets >= 0
    t = targets.clamp(min=0)
    own = scores.gather(1, t[:, None])  # (B, 1)
    above, tied = scores > own, scores == own  # (B, N); ``tied`` includes the target
    if exclude is not None and exclude.numel():
        rows, cols = exclude[0], exclude[1]
        keep = cols != t[rows]
        above[rows[keep], cols[keep]] = False
        tied[rows[keep], cols[keep]] = False
    ranks = 1.0 + above.sum(1).float() + (tied.sum(1).float() - 1.0) / 2.0  # (B,)
    ranks[~known | torch.isinf(own[:, 0]) & (own[:, 0] < 0)] = float("inf")
    return ranks


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Rank of ``targets`` among ``negatives`` (B, n) sampled columns: 1..n+1, inf if unknown;
    ties count half (the expected rank under a random tie-break)."""
    known = targets >= 0
    own = scores.gather(1, targets.clamp(min=0)[:, None])  # (B, 1)
    negative = scores.gather(1, negatives)  # (B, n)
    ranks = 1.0 + (negative > own).sum(1).float() + (negative == own).sum(1).float() / 2.0  # (B,)
    ranks[~known | torch.isinf(own[:, 0]) & (own[:, 0] < 0)] = float("inf")
    return ranks


def ndcg_gains(ranks: np.ndarray | torch.Tensor, k: int = 10) -> np.ndarray:
    """(n,) ranks of one held-out item each -> (n,) nDCG@k per user (the ideal DCG is 1)."""
    r = ranks.cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)
    r = r.astype(np.float64)
    return np.where(r <= k, discount(np.minimum(r, k)), 0.0)


def rank_metrics(ranks: np.ndarray | torch.Tensor, k: int = 10) -> dict[str, float]:
    """HR@k, nDCG@k and MRR from (n,) ranks of one held-out item per user."""
    r = ranks.cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)
    r = r.astype(np.float64)
    return {
        f"hr@{k}": float((r <= k).mean()),
        f"ndcg@{k}": float(ndcg_gains(r, k).mean()),
        "mrr": float((1.0 / r).mean()),
    }
