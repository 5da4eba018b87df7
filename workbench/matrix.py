"""Contiguous id <-> row maps and the sparse user x item interaction matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from workbench.schema import ITEM, RATING, USER, require_columns


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
    def from_ids(cls, ids, *, kind: str = "id") -> "IndexMap":
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
