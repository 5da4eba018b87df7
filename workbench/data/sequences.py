"""Each user's items as a sequence, for next-item (sequential) models.

- :func:`histories` -- each user's items in time order (ties keep input order, exactly as
  :func:`workbench.data.splits.leave_last_out` orders them);
- :func:`windows` -- one long sequence cut into training windows, newest first;
- :func:`pad` -- ragged sequences into one padded (B, T) array.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data.schema import ITEM, TIMESTAMP, USER, require_columns


def histories(interactions: pd.DataFrame) -> pd.Series:
    """``user_id`` -> (n_u,) int64 array of item ids, oldest first; ties keep input order."""
    require_columns(interactions, [USER, ITEM, TIMESTAMP], source="histories")
    tie = np.arange(len(interactions))
    order = np.lexsort((tie, interactions[TIMESTAMP].to_numpy(), interactions[USER].to_numpy()))
    users = interactions[USER].to_numpy()[order]
    items = interactions[ITEM].to_numpy(dtype=np.int64)[order]
    if not len(users):
        return pd.Series([], index=pd.Index([], dtype=np.int64, name=USER), name=ITEM, dtype=object)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])  # first row of each user
    return pd.Series(np.split(items, starts[1:]), index=pd.Index(users[starts], name=USER), name=ITEM, dtype=object)


def windows(sequence: np.ndarray, length: int, *, overlap: int = 0) -> list[np.ndarray]:
    """Cut one sequence into windows of at most ``length`` items, newest first.

    The first window is the last ``length`` items; each earlier one ends ``overlap``
    items after the previous one starts (``overlap=1`` makes every next-item
    transition appear exactly once for a model trained on (input, shifted) pairs).
    Windows shorter than two items are dropped.
    """
    if not 0 <= overlap < length:
        raise ValueError(f"overlap must be in [0, length), got {overlap} for length {length}")
    out, end = [], len(sequence)
    while end >= 2:
        out.append(sequence[max(0, end - length) : end])
        if end <= length:
            break
        end = end - length + overlap
    return out


def pad(sequences: list[np.ndarray], *, side: str = "right", value: int = 0) -> np.ndarray:
    """(B,) int arrays -> (B, T) int64 array padded with ``value`` to the longest, T >= 1."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    out = np.full((len(sequences), max([len(s) for s in sequences] + [1])), value, dtype=np.int64)
    for row, s in zip(out, sequences):
        if side == "left":
            row[len(row) - len(s) :] = s
        else:
            row[: len(s)] = s
    return out
