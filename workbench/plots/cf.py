"""Figures for notebook 02 (sparse collaborative filtering). Each function returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure

from workbench.evaluation.search import pareto_front


def sparsity_pattern(matrix: sp.spmatrix, *, title: str = "") -> Figure:
    """Every interaction as a dot; users sorted by activity, items by popularity."""
    m = sp.csr_matrix(matrix)
    user_order = np.argsort(-np.diff(m.indptr), kind="stable")
    item_order = np.argsort(-np.asarray((m != 0).sum(axis=0)).ravel(), kind="stable")
    coo = m[user_order][:, item_order].tocoo()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(coo.col, coo.row, s=0.05, marker=".", color="black", linewidths=0, rasterized=True)
    ax.set_xlim(0, m.shape[1])
    ax.set_ylim(m.shape[0], 0)
    density = m.nnz / (m.shape[0] * m.shape[1])
    ax.set_title(title or f"Interactions: {m.shape[0]} users x {m.shape[1]} items, density {density:.2%}")
    ax.set_xlabel("item (most popular first)")
    ax.set_ylabel("user (most active first)")
    fig.tight_layout()
    return fig


def quality_vs_fit_time(results: pd.DataFrame, *, metric: str = "ndcg", k: int = 10) -> Figure:
    """Scatter of ``metric`` against fit seconds (log axis), Pareto front joined.

    ``results``: one row per model, index = model name, columns ``fit_seconds`` and ``metric``.
    """
    x, y = results["fit_seconds"].to_numpy(), results[metric].to_numpy()
    front = pareto_front(results, cost="fit_seconds", quality=metric)
    order = np.argsort(x[front])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(x, y, color=np.where(front, "tab:blue", "tab:gray"))
    ax.step(x[front][order], y[front][order], where="post", color="tab:blue", alpha=0.5, label="Pareto front")
    for name, xi, yi in zip(results.index, x, y):
        ax.annotate(str(name), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("fit time (s, log scale)")
    ax.set_ylabel(f"{metric}@{k}")
    ax.set_title(f"Quality vs fit time: {metric}@{k} on the test split")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def timings(results: pd.DataFrame) -> Figure:
    """Horizontal bars of fit and recommend seconds per model (log axis)."""
    names = list(results.index)
    pos = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5))
    ax.barh(pos - 0.2, results["fit_seconds"], height=0.4, label="fit")
    ax.barh(pos + 0.2, results["recommend_seconds"], height=0.4, label="recommend top-k, all test users")
    ax.set_yticks(pos, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    ax.set_title("Where the time goes, per model")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
