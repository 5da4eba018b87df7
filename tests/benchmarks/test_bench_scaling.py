"""bench_scaling's pieces: fitted slopes, the EASE refusal row, whole-user samples, figures."""

from __future__ import annotations

import bench_scaling as scaling
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp


def test_slope_of_a_power_law_is_its_exponent():
    n = np.array([1e5, 1e6, 5e6, 2e7])
    table = pd.DataFrame(
        {
            "model": ["a"] * 4 + ["b"] * 4 + ["c"],
            "interactions": [*n, *n, 1e5],
            "fit s": [*(n * 1e-6), *(n**2 * 1e-12), 1],
        }
    )
    got = scaling.slopes(table, "fit s")
    assert got["a"] == pytest.approx(1.0) and got["b"] == pytest.approx(2.0)
    assert "c" not in got  # one size: no slope


def test_ease_too_large_is_a_refusal_row_with_the_memory_it_needs(monkeypatch):
    monkeypatch.setattr(scaling.ease_module, "available_bytes", lambda device: 1000)
    matrix = sp.csr_matrix(np.ones((3, 20), np.float32))
    r = scaling.ease_row(matrix, "tiny")
    assert np.isnan(r["fit s"]) and r["peak MB"] == pytest.approx(3200 / 1e6)  # MB: two 20 x 20 float32 matrices
    assert r["note"].startswith("refused: EASE on 20 items needs about")


def test_user_sample_keeps_whole_users_and_reports_its_share():
    df = pd.DataFrame({"user_id": np.repeat(np.arange(100), 10), "item_id": np.arange(1000) % 37, "timestamp": 0})
    sample, share = scaling.user_sample(df, 205)
    counts = sample.groupby("user_id").size()
    assert (counts == 10).all() and 200 <= len(sample) <= 210 and share == pytest.approx(len(sample) / 1000)
    assert scaling.user_sample(df, 5000) == (df, 1.0)


def test_ials_target_verdicts():
    table = pd.DataFrame(
        [
            {"model": "iALS ours (1 thr)", "size": "20m", "s/epoch": 9.0},
            {"model": "iALS implicit (1 thr)", "size": "20m", "s/epoch": 10.0},
            {"model": "iALS ours (2 thr)", "size": "20m", "s/epoch": 6.0},
            {"model": "iALS implicit (2 thr)", "size": "20m", "s/epoch": 5.0},
        ]
    )
    lines = scaling.ials_target(table, "20m")
    assert lines[0].endswith("ours/implicit = 0.90 -> met") and lines[1].endswith("ours/implicit = 1.20 -> NOT met")


def test_figure_is_written_with_the_slope_in_the_legend(tmp_path):
    table = pd.DataFrame({"model": ["a", "a"], "interactions": [1e5, 1e6], "fit s": [1.0, 10.0]})
    path = scaling.plot(table, "fit s", "seconds", tmp_path / "scaling__fit_time.png", title="t")
    assert path.stat().st_size > 1000 and not list(tmp_path.glob("*.tmp.png"))
