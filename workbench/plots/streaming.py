"""Figures for notebook 08 (streaming evaluation). Functions return matplotlib Figures;
they never display anything themselves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def quality(table: pd.DataFrame, *, metric: str = "hr@10", title: str = "") -> Figure:
    """``metric`` per model (groups) and policy (bars) with its ``_lo``/``_hi`` interval,
    from :func:`workbench.serving.streaming.quality`."""
    modelnames, policies = list(dict.fromkeys(table["model"])), list(dict.fromkeys(table["policy"]))
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(modelnames) * max(len(policies), 1) / 2, 3.6))
    width = 0.8 / max(len(policies), 1)
    for j, name in enumerate(policies):
        rows = table[table["policy"] == name].set_index("model").reindex(modelnames)
        x = np.arange(len(modelnames)) + (j - (len(policies) - 1) / 2) * width
        err = np.vstack([rows[metric] - rows[f"{metric}_lo"], rows[f"{metric}_hi"] - rows[metric]])
        ax.bar(x, rows[metric], width=width, yerr=err, capsize=3, label=name)
    ax.set_xticks(np.arange(len(modelnames)), modelnames)
    ax.set(ylabel=f"{metric} (prequential)", title=title or f"{metric} per update policy (95% intervals over users)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rolling(table: pd.DataFrame, *, metric: str = "hr@10", title: str = "") -> Figure:
    """``metric`` over simulated time, one panel per model, one line per policy, from
    :func:`workbench.serving.streaming.rolling`."""
    modelnames = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(modelnames), figsize=(4.2 * len(modelnames), 3.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], modelnames):
        for policy, rows in table[table["model"] == name].groupby("policy", sort=False):
            ax.plot(rows["time"], rows[metric], marker=".", label=policy)
        ax.set(title=name, xlabel="simulated time (day)")
        ax.tick_params(axis="x", labelrotation=30)
    axes[0][0].set_ylabel(f"{metric} per day")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title or f"{metric} over the replay")
    fig.tight_layout()
    return fig


def staleness(table: pd.DataFrame, *, metric: str = "hr@10", title: str = "") -> Figure:
    """``metric`` against update delay (log scale; "never" = static at the right end),
    one line per model with its interval, from :func:`workbench.serving.streaming.staleness`."""
    finite = table["delay_s"][np.isfinite(table["delay_s"])]
    never = 10 * max(finite.max(), 3600.0) if len(finite) else 1.0
    zero = max(finite[finite > 0].min() / 10, 1.0) if (finite > 0).any() else 1.0
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, rows in table.groupby("model", sort=False):
        x = rows["delay_s"].replace({np.inf: never, 0.0: zero})
        ax.plot(x, rows[metric], marker="o", label=name)
        ax.fill_between(x, rows[f"{metric}_lo"], rows[f"{metric}_hi"], alpha=0.2)
    ticks = sorted(set(table["delay_s"].replace({np.inf: never, 0.0: zero})))
    labels = ["never" if t == never else "0" if t == zero else str(pd.Timedelta(seconds=t)) for t in ticks]
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels, rotation=30, fontsize=8)
    ax.minorticks_off()
    ax.set(xlabel="update delay (simulated time)", ylabel=metric, title=title or f"Staleness: {metric} against delay")
    ax.legend()
    fig.tight_layout()
    return fig
