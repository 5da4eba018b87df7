"""Sparse format timings: every operation timed in every format, relative to the fastest."""

from __future__ import annotations

import scipy.sparse as sp

from workbench.speed.sparse_formats import best_seconds, compare_formats


def test_compare_formats_table():
    matrix = sp.random(200, 120, density=0.05, format="coo", random_state=0)
    table = compare_formats(matrix, n_slice=32, factors=8, repeats=2)
    assert list(table.columns) == ["operation", "implementation", "seconds", "relative"]
    assert table.groupby("operation").size().to_dict() == {
        "row slice (32 users)": 2,
        "column slice (32 items)": 2,
        "X @ dense (items x 8)": 4,
        "build from COO triples": 2,
    }
    assert (table["seconds"] > 0).all() and (table.groupby("operation")["relative"].min() == 1.0).all()


def test_best_seconds_runs_warmup_plus_repeats():
    calls = []
    assert best_seconds(lambda: calls.append(1), repeats=3) >= 0 and len(calls) == 4
