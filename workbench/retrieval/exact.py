"""Exact search: blocked torch matmul + top-k over every item (the reference for recall).

Scores for one block of queries are at most ``BLOCK_BYTES``; excluded items are set to
-inf before the top-k, so exclusion is exact with no over-fetching. Items live in one
tensor with spare capacity, so :meth:`ItemIndex.add` is amortised O(added).
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.data.matrix import row_pairs
from workbench.devices import resolve_device
from workbench.retrieval.index import IndexConfig, ItemIndex

#: scores for one block of queries are at most this many bytes (float32)
BLOCK_BYTES = 64 * 2**20


class ExactIndex(ItemIndex):
    """Every item scored for every query, on ``config.device`` (a torch device)."""

    def __init__(self, config: IndexConfig) -> None:
        super().__init__(config)
        self.device = resolve_device("cuda" if config.device == "gpu" else config.device)
        self._items = torch.empty(0, 0)  # (capacity, d); rows past n_items unused

    def _build(self, vectors: np.ndarray) -> None:
        self._items = torch.from_numpy(vectors.copy()).to(self.device)

    def _add(self, vectors: np.ndarray) -> None:
        n, needed = self.n_items, self.n_items + len(vectors)
        if needed > len(self._items):  # grow by doubling
            grown = torch.empty(max(needed, 2 * len(self._items)), self.dim, device=self.device)
            grown[:n] = self._items[:n]
            self._items = grown
        self._items[n:needed] = torch.from_numpy(vectors).to(self.device)

    def _search(self, queries, k, exclude) -> tuple[np.ndarray, np.ndarray]:
        items = self._items[: self.n_items]  # (n, d)
        q = torch.from_numpy(queries).to(self.device)  # (Q, d)
        block = max(1, BLOCK_BYTES // (4 * self.n_items))
        out_idx = np.empty((len(q), k), dtype=np.int64)
        out_val = np.empty((len(q), k), dtype=np.float32)
        for start in range(0, len(q), block):
            scores = q[start : start + block] @ items.T  # (B, n)
            rows, cols = row_pairs(exclude[start : start + block])
            inside = (cols >= 0) & (cols < self.n_items)
            scores[torch.as_tensor(rows[inside]), torch.as_tensor(cols[inside], device=self.device)] = float("-inf")
            val, idx = torch.topk(scores, k, dim=1)  # (B, k)
            idx[torch.isneginf(val)] = -1
            out_idx[start : start + len(scores)] = idx.cpu().numpy()
            out_val[start : start + len(scores)] = val.cpu().numpy()
        return out_idx, out_val

    def memory_bytes(self) -> int:
        return int(self._items.element_size() * self._items.numel())

    def _payload(self) -> np.ndarray:
        return self._items[: self.n_items].cpu().numpy()

    def _restore(self, payload: np.ndarray) -> None:
        self._items = torch.from_numpy(np.asarray(payload, dtype=np.float32).reshape(self.n_items, self.dim).copy())
        self._items = self._items.to(self.device)
