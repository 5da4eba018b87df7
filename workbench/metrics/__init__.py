"""Metric definitions: pure functions of recommendations, ranks or scores and the truth.

- :mod:`.topk` -- top-k lists against held-out interactions (precision, recall, nDCG,
  MAP, hit rate, MRR, coverage), as Microsoft Recommenders defines them;
- :mod:`.ranks` -- the rank of one held-out item per user (full or sampled ranking);
- :mod:`.scores` -- rating errors, ROC-AUC and log-loss.

Metrics know nothing of models: they sit just above :mod:`workbench.data`, so models can
validate themselves with them (early stopping, fusion weights) and the evaluation
protocols can report them. Everything is re-exported here: ``metrics.ndcg_at_k``.
"""

from workbench.metrics.ranks import full_ranks, ndcg_gains, rank_metrics, sampled_ranks
from workbench.metrics.scores import log_loss, mae, rmse, roc_auc
from workbench.metrics.topk import (
    RANKING_METRICS,
    coverage,
    discount,
    hit_rate_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_user,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

__all__ = [
    "RANKING_METRICS",
    "coverage",
    "discount",
    "full_ranks",
    "hit_rate_at_k",
    "log_loss",
    "mae",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "ndcg_gains",
    "per_user",
    "precision_at_k",
    "rank_metrics",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
    "roc_auc",
    "sampled_ranks",
]
