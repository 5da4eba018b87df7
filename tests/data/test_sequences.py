"""Per-user item sequences: time-ordered histories, training windows and padding, on
answers known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.sequences import histories, pad, windows


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture
def log(sequence_log) -> pd.DataFrame:
    """Three users' time-ordered items (tests/conftest.py)."""
    return sequence_log


def test_histories_are_time_ordered_with_ties_in_input_order(log):
    h = histories(log)
    assert list(h.index) == [1, 2, 3]
    assert h[1].tolist() == [10, 11, 12, 13] and h[2].tolist() == [20, 21, 22]
    assert h[1].dtype == np.int64
    assert histories(log.iloc[:0]).empty


def test_windows_cover_long_sequences_newest_first():
    seq = np.arange(10)
    assert [w.tolist() for w in windows(seq, 4)] == [[6, 7, 8, 9], [2, 3, 4, 5], [0, 1]]
    # overlap=1: every transition (a -> a+1) appears once as (input, shifted label)
    assert [w.tolist() for w in windows(seq, 4, overlap=1)] == [[6, 7, 8, 9], [3, 4, 5, 6], [0, 1, 2, 3]]
    assert windows(np.arange(1), 4) == [] and [w.tolist() for w in windows(np.arange(3), 4)] == [[0, 1, 2]]
    with pytest.raises(ValueError):
        windows(seq, 4, overlap=4)


def test_pad_left_and_right_to_the_longest():
    rows = [np.array([1, 2, 3]), np.array([4]), np.array([], dtype=np.int64)]
    assert pad(rows, side="left").tolist() == [[1, 2, 3], [0, 0, 4], [0, 0, 0]]
    assert pad(rows, side="right", value=-1).tolist() == [[1, 2, 3], [4, -1, -1], [-1, -1, -1]]
    assert pad([], side="left").shape == (0, 1)
