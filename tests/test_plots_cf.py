"""Notebook 02's figures and tables: Pareto front known answer, figures with titled axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workbench import plots_cf
from workbench.models import EASE, ItemKNN


def test_pareto_front_known_answer():
    fit_seconds = np.array([1.0, 2.0, 3.0, 0.5, 2.0])
    quality = np.array([0.30, 0.40, 0.35, 0.10, 0.40])
    # 3 is beaten by 2 (faster and better); ties (1 and 4) are both on the front
    assert plots_cf.pareto_front(fit_seconds, quality).tolist() == [True, True, False, True, True]


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


def test_similar_titles_table():
    df = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3], "item_id": [10, 11, 10, 11, 12, 13], "rating": 1.0})
    titles = pd.Series({10: "A", 11: "A2", 12: "B", 13: "B2"})
    models = {"ItemKNN": ItemKNN(k=2).fit(df), "EASE": EASE(reg=1.0, device="cpu").fit(df)}
    table = plots_cf.similar_titles(models, [10, 12, 99], titles, k=1)  # 99: never seen, left out
    assert list(table.columns) == ["ItemKNN", "EASE"]
    assert table.loc[("A", 1)].tolist() == ["A2", "A2"] and table.loc[("B", 1)].tolist() == ["B2", "B2"]
