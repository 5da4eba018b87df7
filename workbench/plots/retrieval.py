"""Figures for notebook 06: recall against throughput (one curve per backend, the
ann-benchmarks picture), index memory against catalogue size, two-stage quality and
latency against the number of candidates N."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


def recall_vs_throughput(table: pd.DataFrame, qps: str = "qps_b1_t1", *, title: str = "") -> Figure:
    """One curve per backend (and catalogue size): recall@10 against exact search on x,
    queries/s (column ``qps``, log scale) on y; exact and flat are single points."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    sizes = sorted(table["n_items"].unique())
    for (n, backend), part in table.groupby(["n_items", "backend"]):
        part = part.sort_values("recall")
        label = backend if len(sizes) == 1 else f"{backend}, {n:,} items"
        ax.plot(part["recall"], part[qps], marker="o", label=label)
    batch, threads = qps.removeprefix("qps_b").split("_t")
    ax.set_yscale("log")
    ax.set(
        xlabel="recall@10 against exact search",
        ylabel=f"queries/s (batch {batch}, {threads} thread{'s' if threads != '1' else ''})",
        title=title or "Recall against throughput",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def memory_vs_size(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Index memory (MB, log) against catalogue size (items, log), one line per backend."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    per_build = table.groupby(["backend", "n_items"], as_index=False)["memory_mb"].first()
    for backend, part in per_build.groupby("backend"):
        ax.plot(part["n_items"], part["memory_mb"], marker="o", label=backend)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="catalogue size (items)", ylabel="index memory (MB)", title=title or "Memory against catalogue size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def quality_vs_candidates(table: pd.DataFrame, metric: str = "ndcg@10", *, title: str = "") -> Figure:
    """Two-stage ``metric`` against N (log), with the ranker alone as a dashed line and
    99% of it dotted."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(table["candidates"], table[metric], marker="o", label="two-stage")
    alone = float(table["ranker_alone"].iloc[0])
    ax.axhline(alone, linestyle="--", color="gray", label="ranker alone")
    ax.axhline(0.99 * alone, linestyle=":", color="gray", label="99% of the ranker")
    ax.set_xscale("log")
    ax.set(xlabel="candidates N (log)", ylabel=metric, title=title or f"{metric} against the number of candidates")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def latency_vs_candidates(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Milliseconds per request against N, one line per catalogue size, with the ranker
    scoring every item as a dashed line of the same colour."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for n, part in table.groupby("n_items"):
        staged = part[part["candidates"].map(lambda c: isinstance(c, int))]
        (line,) = ax.plot(staged["candidates"].astype(int), staged["ms"], marker="o", label=f"two-stage, {n:,} items")
        alone = part.loc[~part.index.isin(staged.index), "ms"]
        if len(alone):
            ax.axhline(float(alone.iloc[0]), linestyle="--", color=line.get_color(), label=f"ranker alone, {n:,} items")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="candidates N (log)", ylabel="ms per request (1 user)", title=title or "Latency against N")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
