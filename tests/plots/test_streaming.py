"""Notebook 08's streaming figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from workbench.plots import streaming as plots_streaming


def _quality(models, policies, delays=None) -> pd.DataFrame:
    rows = []
    for m in models:
        for j, p in enumerate(policies):
            value = 0.05 + 0.02 * j
            rows.append({"model": m, "policy": p, "hr@10": value, "hr@10_lo": value - 0.01, "hr@10_hi": value + 0.01})
    table = pd.DataFrame(rows)
    if delays is not None:
        table["delay_s"] = np.tile(delays, len(models))
    return table


def test_quality_draws_one_bar_group_per_model_with_intervals():
    fig = plots_streaming.quality(_quality(["ease", "ials"], ["static", "online", "periodic:1d"]))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ease", "ials"]
    assert len(ax.patches) == 6 and len(ax.get_legend().get_texts()) == 3


def test_staleness_puts_online_first_and_never_last():
    table = _quality(["ials"], ["online", "delayed:1h", "static"], delays=[0.0, 3600.0, np.inf])
    ax = plots_streaming.staleness(table).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "0" and labels[-1] == "never" and len(labels) == 3
    assert list(ax.lines[0].get_ydata()) == pytest.approx(list(table["hr@10"]))


def test_rolling_draws_one_panel_per_model_and_one_line_per_policy():
    days = pd.date_range("1998-03-01", periods=3, freq="D")
    table = pd.DataFrame(
        [
            {"model": m, "policy": p, "time": d, "events": 5, "hr@10": 0.1}
            for m in ("ease", "ials")
            for p in ("static", "online")
            for d in days
        ]
    )
    fig = plots_streaming.rolling(table)
    assert [ax.get_title() for ax in fig.axes] == ["ease", "ials"]
    assert all(len(ax.lines) == 2 for ax in fig.axes)
