"""Figures for notebook 05: throughput, latency and memory against batch size."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

_LABELS = {
    "throughput_per_s": "throughput (users/s)",
    "latency_ms_median": "latency per batch, median (ms)",
    "latency_ms_p95": "latency per batch, p95 (ms)",
    "peak_mb": "peak memory above start (MB)",
}


def versus_batch_size(results: pd.DataFrame, metric: str = "throughput_per_s", *, title: str = "") -> Figure:
    """One line per device/precision/compile combination, log-log against batch size."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (device, precision, comp), grp in results.groupby(["device", "precision", "compile"]):
        g = grp.sort_values("batch_size")
        label = f"{device} {precision}" + (" compiled" if comp else "")
        ax.plot(g["batch_size"], g[metric], marker="o", label=label)
    ax.set_xscale("log", base=2)
    if metric != "peak_mb":
        ax.set_yscale("log")
    model = results["model"].iloc[0] if len(results) else ""
    ax.set(
        xlabel="batch size (users)",
        ylabel=_LABELS.get(metric, metric),
        title=title or f"{model}: {_LABELS.get(metric, metric).split(' (')[0]} vs batch size",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
