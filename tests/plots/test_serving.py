"""Notebook 07's serving figures (its tuning panel is a widget: tests/test_widgets.py)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
from matplotlib.figure import Figure

from workbench.plots import serving as plots_serving


@pytest.fixture
def curves():
    return pd.DataFrame(
        {
            "setup": ["per-request"] * 2 + ["dynamic batching"] * 2,
            "level": [1, 8, 1, 8],
            "throughput_rps": [100.0, 110.0, 90.0, 600.0],
            "p50_ms": [8.0, 70.0, 10.0, 12.0],
            "p99_ms": [10.0, 90.0, 12.0, 20.0],
        }
    )


def test_latency_throughput_draws_one_line_per_setup(curves):
    fig = plots_serving.latency_throughput(curves)
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(ax.lines) == 2
    assert "throughput" in ax.get_xlabel() and "(ms)" in ax.get_ylabel() and ax.get_title()
    assert list(ax.lines[1].get_xdata()) == [90.0, 600.0]


def test_batch_size_histogram_shows_request_shares():
    fig = plots_serving.batch_sizes({1: 2, 4: 2}, max_batch_size=4)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    assert heights == pytest.approx([0.2, 0.8]) and "mean 2.5" in fig.axes[0].get_title()


def test_freshness_cdf_reaches_one():
    fig = plots_serving.freshness(pd.DataFrame({"fresh_ms": [1.0, 2.0, 3.0]}), target_ms=10)
    line = fig.axes[0].lines[0]
    assert line.get_ydata()[-1] == 1.0 and "p99" in fig.axes[0].get_title()


def test_freshness_overlays_one_curve_per_label():
    tables = {
        "lane off": pd.DataFrame({"fresh_ms": [5.0, 9.0, 20.0]}),
        "lane on": pd.DataFrame({"fresh_ms": [1.0, 2.0]}),
    }
    fig = plots_serving.freshness(tables)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(fig.axes[0].lines) == 3  # two CDFs and the target line
    assert labels[0].startswith("lane off (p99 19.") and labels[1].startswith("lane on (p99 1.9")
