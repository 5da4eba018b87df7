"""Notebook 02's figures: Pareto front known answer, figures with titled axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workbench.evaluation.search import pareto_front
from workbench.plots import cf as plots_cf


def test_pareto_front_known_answer():
    fit_seconds = np.array([1.0, 2.0, 3.0, 0.5, 2.0])
    quality = np.array([0.30, 0.40, 0.35, 0.10, 0.40])
    # 3 is beaten by 2 (faster and better); ties (1 and 4) are both on the front
    frame = pd.DataFrame({"fit_seconds": fit_seconds, "quality": quality})
    mask = pareto_front(frame, cost="fit_seconds", quality="quality")
    assert mask.tolist() == [True, True, False, True, True]
    assert list(frame[mask].index) == [0, 1, 3, 4]  # the front's rows


@pytest.fixture
def results():
    return pd.DataFrame(
        {"ndcg": [0.24, 0.48, 0.44], "fit_seconds": [0.01, 0.5, 2.0], "recommend_seconds": [0.01, 0.1, 0.05]},
        index=pd.Index(["Popularity", "EASE", "BPR"], name="model"),
    )


def test_figures_have_titles_and_labelled_axes(results):
    matrix = sp.random(30, 20, density=0.2, format="csr", random_state=0)
    for fig in (plots_cf.sparsity_pattern(matrix), plots_cf.quality_vs_fit_time(results), plots_cf.timings(results)):
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and (ax.get_ylabel() or ax.get_yticklabels())
        plt.close(fig)


def test_quality_vs_fit_time_marks_the_pareto_front(results):
    fig = plots_cf.quality_vs_fit_time(results)
    ax = fig.axes[0]
    # BPR is beaten by EASE (faster and better): the front joins Popularity and EASE only
    assert list(ax.lines[0].get_xdata()) == [0.01, 0.5] and list(ax.lines[0].get_ydata()) == [0.24, 0.48]
    colours = ax.collections[0].get_facecolors()
    assert (colours[0] == colours[1]).all() and not (colours[1] == colours[2]).all()
    plt.close(fig)
