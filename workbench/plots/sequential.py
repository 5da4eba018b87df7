"""Figures for notebook 04 (sequential transformers). Each function returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def full_vs_sampled(table: pd.DataFrame, *, k: int = 10) -> Figure:
    """nDCG@k and HR@k per model under full ranking beside 100-negative sampled ranking."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(table))
    for ax, metric, label in zip(axes, (f"ndcg@{k}", f"hr@{k}"), (f"nDCG@{k}", f"HR@{k}")):
        ax.bar(x - 0.2, table[metric], width=0.4, label="full ranking (all unseen items)")
        ax.bar(x + 0.2, table[f"sampled_{metric}"], width=0.4, label="sampled (held-out item + 100 negatives)")
        ax.set_xticks(x, table.index, rotation=30, ha="right")
        ax.set(ylabel=label, title=f"{label}: full vs sampled ranking")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncols=2)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def by_history_length(table: pd.DataFrame, *, k: int = 10) -> Figure:
    """nDCG@k per model by user history length (``table`` from
    :func:`workbench.evaluation.next_item.by_history_length`)."""
    models = [c for c in table.columns if c != "users"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(table))
    width = 0.8 / max(len(models), 1)
    for i, name in enumerate(models):
        ax.bar(x + (i - (len(models) - 1) / 2) * width, table[name], width=width, label=name)
    ax.set_xticks(x, [f"{label}\n({n} users)" for label, n in zip(table.index, table["users"])])
    ax.set(xlabel="items in the user's history", ylabel=f"nDCG@{k} (full ranking)", title="Quality by history length")
    ax.legend(fontsize="small", ncols=2)
    fig.tight_layout()
    return fig


def attention(frame: pd.DataFrame, titles: pd.Series | None = None, *, title: str = "") -> Figure:
    """Heat map of how much the prediction attends to each history item, per layer.

    ``frame`` from ``model.attention(history)`` (``item_id``, ``steps_back``, ``layer``,
    ``weight``); ``titles`` maps item ids to names for the axis.
    """
    grid = frame.pivot(index="layer", columns="steps_back", values="weight").sort_index(axis=1, ascending=False)
    items = frame.drop_duplicates("steps_back").set_index("steps_back")["item_id"].reindex(grid.columns)
    labels = [str(titles.get(i, i)) if titles is not None else str(i) for i in items]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(labels)), 1.2 + 0.5 * len(grid)))
    image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="viridis")
    ax.set_xticks(np.arange(len(labels)), [label[:28] for label in labels], rotation=60, ha="right", fontsize="small")
    ax.set_yticks(np.arange(len(grid)), [f"layer {layer}" for layer in grid.index])
    ax.set(xlabel="history item (oldest left, newest right)", title=title or "Attention of the next-item prediction")
    fig.colorbar(image, ax=ax, label="attention weight (mean over heads)")
    fig.tight_layout()
    return fig
