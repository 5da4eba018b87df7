"""Data-set figures for notebook 01. Each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.data.schema import ITEM, RATING, TIMESTAMP


def rating_histogram(interactions: pd.DataFrame, *, title: str = "") -> Figure:
    """Bar chart of how often each rating value occurs."""
    counts = interactions[RATING].value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(counts.index.astype(str), counts.to_numpy(), color="tab:blue")
    ax.set(xlabel="rating", ylabel="number of ratings", title=title or "Rating distribution")
    fig.tight_layout()
    return fig


def long_tail(interactions: pd.DataFrame, column: str = ITEM, *, title: str = "") -> Figure:
    """Log-log rank/frequency plot of items (popularity) or users (activity)."""
    counts = np.sort(interactions.groupby(column).size().to_numpy())[::-1]
    ranks = np.arange(1, len(counts) + 1)
    top = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    what = "item" if column == ITEM else "user"
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.loglog(ranks, counts, marker=".", linestyle="none", markersize=3)
    ax.set(
        xlabel=f"{what} rank (most {'popular' if what == 'item' else 'active'} first)",
        ylabel="interactions",
        title=title or f"{what.title()} {'popularity' if what == 'item' else 'activity'}: top 10% hold {top:.0%}",
    )
    fig.tight_layout()
    return fig


def over_time(interactions: pd.DataFrame, *, freq: str = "W", title: str = "") -> Figure:
    """Interactions per period (weekly by default) over the data set's time span."""
    ts = pd.to_datetime(interactions[TIMESTAMP], unit="s")
    per = ts.dt.to_period(freq).value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(per.index.to_timestamp(), per.to_numpy())
    ax.set(
        xlabel="date",
        ylabel=f"interactions per {'week' if freq == 'W' else freq}",
        title=title or "Interactions over time",
    )
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
