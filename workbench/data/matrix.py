"""Contiguous id <-> row maps and sparse matrices of interactions.

- :class:`IndexMap` -- external ids <-> contiguous indices ``0..n-1``;
- :func:`interaction_matrix` -- the (n_users, n_items) CSR matrix of an interactions frame;
- :func:`row_pairs` / :func:`rows_matrix` -- ragged rows of column indices (histories,
  seen items) as (row, column) pairs or as a binary CSR matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from workbench.data.schema import ITEM, RATING, USER, require_columns


class UnknownIdError(KeyError):
    """Ids that the map (and so the trained model) has never seen."""

    def __init__(self, kind: str, unknown: np.ndarray):
        self.kind = kind
        self.unknown = np.asarray(unknown)
        shown = ", ".join(map(str, self.unknown[:10])) + (" ..." if len(self.unknown) > 10 else "")
        super().__init__(f"{len(self.unknown)} unknown {kind} id(s): {shown}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


@dataclass(frozen=True)
class IndexMap:
    """A bijection between external ids and contiguous indices ``0..n-1`` (sorted ids)."""

    ids_: np.ndarray  # (n,) sorted unique external ids
    kind: str = "id"

    @classmethod
    def from_ids(cls, ids, *, kind: str = "id") -> IndexMap:
        return cls(np.unique(np.asarray(ids, dtype=np.int64)), kind)

    def __len__(self) -> int:
        return len(self.ids_)

    def __contains__(self, value) -> bool:
        return bool(self.contains(np.asarray([value]))[0])

    def contains(self, ids) -> np.ndarray:
        """Boolean mask (same shape as ``ids``): which ids are in the map."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids_, ids)
        pos = np.minimum(pos, len(self.ids_) - 1) if len(self.ids_) else pos
        return (len(self.ids_) > 0) & (self.ids_[pos] == ids) if len(self.ids_) else np.zeros(ids.shape, bool)

    def index(self, ids) -> np.ndarray:
        """External ids -> indices; raises :class:`UnknownIdError` listing any unknown id."""
        ids = np.asarray(ids, dtype=np.int64)
        known = self.contains(ids)
        if not known.all():
            raise UnknownIdError(self.kind, np.unique(ids[~known]))
        return np.searchsorted(self.ids_, ids)

    def ids(self, indices) -> np.ndarray:
        """Indices -> external ids."""
        return self.ids_[np.asarray(indices, dtype=np.int64)]


def interaction_matrix(
    interactions: pd.DataFrame,
    users: IndexMap,
    items: IndexMap,
    *,
    values: str = "ones",
) -> sp.csr_matrix:
    """Build the (n_users, n_items) CSR matrix; ``values`` is ``"ones"`` or ``"rating"``.

    Duplicate (user, item) pairs are summed, as COO -> CSR conversion does. Ids missing
    from the maps raise :class:`UnknownIdError`.
    """
    require_columns(interactions, [USER, ITEM], source="interaction_matrix")
    if values not in ("ones", "rating"):
        raise ValueError(f"values must be 'ones' or 'rating', got {values!r}")
    rows = users.index(interactions[USER].to_numpy())
    cols = items.index(interactions[ITEM].to_numpy())
    if values == "ones":
        data = np.ones(len(rows), dtype=np.float32)
    else:
        data = interactions[RATING].to_numpy(dtype=np.float32)
    m = sp.coo_matrix((data, (rows, cols)), shape=(len(users), len(items)))
    return m.tocsr()


def row_pairs(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged rows of column indices -> ``(row, column)`` int64 arrays, one pair per entry:
    ``rows[i]`` holds the columns of row ``i``, in order."""
    row = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    col = np.concatenate(rows).astype(np.int64, copy=False) if len(rows) else np.empty(0, np.int64)
    return row, col


def rows_matrix(rows: Sequence[np.ndarray], n_columns: int) -> sp.csr_matrix:
    """Binary (len(rows), n_columns) CSR marking the columns of each row (repeats count once)."""
    row, col = row_pairs(rows)
    m = sp.csr_matrix((np.ones(len(col), np.float32), (row, col)), shape=(len(rows), n_columns))
    m.data[:] = 1.0
    return m
