"""Figures for notebook 09: sensitivity curves with error bars, quality/speed Pareto fronts,
and the best validation metric found by a grid and by an adaptive search as points are run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from workbench.evaluation.search import pareto_front


def sensitivity(table: pd.DataFrame, param: str, metric: str, *, log_x: bool = True, title: str = "") -> Figure:
    """``metric`` (mean ± std over runs) against one parameter."""
    t = table.sort_values(param)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.errorbar(t[param], t[metric], yerr=t[f"{metric} std"].fillna(0), marker="o", capsize=4)
    if log_x:
        ax.set_xscale("log")
    runs = int(t["runs"].min()) if len(t) else 0
    ax.set(
        xlabel=param,
        ylabel=f"{metric} (mean ± std, {runs} runs each)",
        title=title or f"Sensitivity of {metric} to {param}",
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def pareto(points: pd.DataFrame, *, quality: str = "nDCG@10", seconds: str = "fit time (s)", title: str = "") -> Figure:
    """Scatter of ``label`` points (``seconds``, ``quality``, optional std columns) with the front."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.errorbar(
        points["seconds"],
        points["quality"],
        xerr=points.get("seconds std"),
        yerr=points.get("quality std"),
        fmt="o",
        capsize=3,
    )
    for _, row in points.iterrows():
        ax.annotate(
            str(row["label"]), (row["seconds"], row["quality"]), textcoords="offset points", xytext=(5, 4), fontsize=8
        )
    front = points[pareto_front(points, cost="seconds", quality="quality")].sort_values("seconds")
    ax.step(front["seconds"], front["quality"], where="post", linestyle="--", color="tab:red", label="Pareto front")
    ax.set_xscale("log")
    ax.set(xlabel=f"{seconds}, log scale", ylabel=quality, title=title or f"{quality} vs {seconds}")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def search_vs_grid(curves: pd.DataFrame, metric: str, *, title: str = "") -> Figure:
    """Best ``metric`` found so far against the number of points run, one line per
    ``arm`` (columns ``arm``, ``points``, ``best``), e.g. a grid beside an Optuna search."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for arm, rows in curves.groupby("arm", sort=False):
        rows = rows.sort_values("points")
        ax.plot(rows["points"], rows["best"], marker="o", drawstyle="steps-post", label=str(arm))
    ax.set(
        xlabel="points run (notebook executions)",
        ylabel=f"best {metric} so far",
        title=title or f"Best {metric} vs points run",
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
