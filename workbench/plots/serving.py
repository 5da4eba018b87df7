"""Figures for notebook 07 (serving). Functions return matplotlib Figures; they never
display anything themselves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter


def latency_throughput(table: pd.DataFrame, *, quantile: str = "p99_ms", title: str = "") -> Figure:
    """Latency (``quantile`` column, ms) against throughput (answered requests/s), one
    line per ``setup``, each point labelled with its concurrency (``level``)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for setup, rows in table.groupby("setup", sort=False):
        rows = rows.sort_values("level")
        ax.plot(rows["throughput_rps"], rows[quantile], marker="o", label=setup)
        for _, row in rows.iterrows():
            ax.annotate(
                f"{row['level']:g}",
                (row["throughput_rps"], row[quantile]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    ax.set(
        xlabel="throughput (answered requests / s)",
        ylabel=f"{quantile.removesuffix('_ms')} latency (ms)",
        yscale="log",
        title=title or "Latency vs throughput (labels: concurrent clients)",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def batch_sizes(counts: dict[int, int], *, max_batch_size: int | None = None, title: str = "") -> Figure:
    """Share of requests served in batches of each size (from ``{size: model calls}``)."""
    sizes = np.asarray(sorted(counts), dtype=int)
    requests = np.asarray([s * counts[s] for s in sizes], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(sizes, requests / max(requests.sum(), 1.0), width=0.8, color="tab:blue")
    if max_batch_size is not None:
        ax.axvline(max_batch_size, color="grey", linestyle="--", label=f"max batch size {max_batch_size}")
        ax.legend()
    mean = requests.sum() / max(sum(counts.values()), 1)
    ax.set(
        xlabel="batch size (requests per model call)",
        ylabel="share of requests",
        title=title or f"Batch sizes under load (mean {mean:.1f} requests per call)",
    )
    fig.tight_layout()
    return fig


def freshness(tables: pd.DataFrame | dict[str, pd.DataFrame], *, target_ms: float = 10.0, title: str = "") -> Figure:
    """Empirical CDF of ``fresh_ms`` (update call -> answer reflecting it), with the
    target; ``tables`` is one measurement or several by label (one curve each, p99 in
    the legend)."""
    if isinstance(tables, pd.DataFrame):
        tables = {"update -> fresh answer": tables}
    fig, ax = plt.subplots(figsize=(8, 3.2))
    p99s = []
    for label, table in tables.items():
        values = np.sort(table["fresh_ms"].to_numpy())
        p99 = float(np.quantile(values, 0.99)) if len(values) else float("nan")
        p99s.append(p99)
        ax.step(
            values,
            np.arange(1, len(values) + 1) / max(len(values), 1),
            where="post",
            label=f"{label} (p99 {p99:.2f} ms)",
        )
    ax.axvline(target_ms, color="grey", linestyle="--", label=f"target {target_ms:g} ms")
    default = f"Freshness of online updates (p99 {p99s[0]:.2f} ms)" if len(p99s) == 1 else "Freshness of online updates"
    ax.set(xlabel="freshness (ms)", ylabel="share of updates", xscale="log", title=title or default)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
