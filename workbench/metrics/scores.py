"""Metrics of predicted scores: rating errors (RMSE, MAE) and, for pointwise behaviour
prediction, ROC-AUC and log-loss -- each computed once over the whole evaluation set."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: {y_true.shape} vs {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("empty input")
    if np.isnan(y_true).any() or np.isnan(y_pred).any():
        raise ValueError("NaN in input")
    return y_true, y_pred


def rmse(y_true, y_pred) -> float:
    """Root mean squared error of rating predictions."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error of rating predictions."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def roc_auc(labels, scores) -> float:
    """ROC-AUC over the whole evaluation set (Mann-Whitney U with tied ranks averaged).

    Compute it once over all pairs, never as a mean of per-batch AUCs.
    """
    y, s = _pair(labels, scores)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC-AUC needs both positive and negative labels")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels, probabilities, *, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to ``[eps, 1 - eps]``."""
    y, p = _pair(labels, probabilities)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
