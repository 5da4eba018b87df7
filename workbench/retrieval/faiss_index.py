"""faiss backends: Flat (exact, faiss's kernels), HNSW, IVF-Flat and IVF-PQ (8-bit codes,
or 4-bit codes with faiss's SIMD fast-scan: ``pq_bits=4``).

Inner product throughout (cosine = inner product of unit vectors, normalised by
:class:`~workbench.retrieval.index.ItemIndex`). Seen items: HNSW excludes them inside
faiss, by an id selector per query (``IDSelectorNot(IDSelectorBatch(seen))``), so its
search budget (efSearch) stays what was asked, where over-fetching ``k + len(seen)``
would have raised it with the length of the history; Flat and IVF scan the same vectors
whatever k, so they over-fetch ``k + max(len(seen))`` in one call and filter (the same
answer, without a call per query).

HNSW runs on the inner product itself. Its graph is not fully navigable under a
non-metric similarity (on 300 iALS items a search reached 148 of them whatever
efSearch), so a search for nearly the whole catalogue returns fewer items (-1 slots;
:class:`~workbench.models.two_stage.TwoStage` ranks every item itself once N covers the
catalogue). The L2 reduction (Bachrach et al. 2014: one more coordinate
``sqrt(M^2 - |x|^2)``) reached every item but was far worse where it matters: on iALS
embeddings of 61,552 synthetic items recall@10 fell from 0.94-1.00 to 0.30-0.60 over
efSearch 16-512 (the extra coordinate dominates when item norms vary as iALS's do).
Search knobs go per call (``SearchParametersHNSW``/``IVF``): thread-safe, the index
unchanged; HNSW's efSearch is raised to k when smaller.

GPU: with ``device="cuda"`` (or ``"gpu"``/``"auto"``) and a faiss built with GPUs, Flat,
IVF-Flat and IVF-PQ move to GPU 0; otherwise the index runs on the CPU and
``index.fallback`` says why (``faiss-cpu`` has no GPU; HNSW has no GPU form in faiss).
"""

from __future__ import annotations

import math

import numpy as np

from workbench.data.matrix import row_pairs
from workbench.retrieval.index import IndexConfig, ItemIndex

try:
    import faiss
except ImportError:  # the exact backend works without it
    faiss = None


def require_faiss(backend: str):
    """The faiss module, or ``ImportError`` saying how to get it."""
    if faiss is None:
        raise ImportError(
            f"retrieval backend {backend!r} needs faiss, which is not installed: "
            "pip install faiss-cpu (or use backend='exact')"
        )
    return faiss


def default_nlist(n_items: int) -> int:
    """4 * sqrt(n) cells, with at least 39 training points per cell (faiss's floor)."""
    return max(1, min(int(4 * math.sqrt(max(n_items, 1))), n_items // 39))


class FaissIndex(ItemIndex):
    """One faiss index behind :class:`~workbench.retrieval.index.ItemIndex`."""

    def __init__(self, config: IndexConfig) -> None:
        super().__init__(config)
        require_faiss(config.backend)
        self._index = None
        self._memory: tuple[int, int] | None = None  # (n_items, bytes) of the last measurement

    def _make(self, n_train: int):
        cfg, ip = self.config, faiss.METRIC_INNER_PRODUCT
        if cfg.backend == "flat":
            return faiss.IndexFlatIP(self.dim)
        if cfg.backend == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, cfg.m, ip)
            index.hnsw.efConstruction = cfg.ef_construction
            return index
        nlist = cfg.nlist or default_nlist(n_train)
        if n_train < nlist:
            raise ValueError(
                f"backend {cfg.backend!r} with nlist={nlist} needs at least {nlist} items to train, got {n_train}"
            )
        quantizer = faiss.IndexFlatIP(self.dim)
        if cfg.backend == "ivf":
            return faiss.IndexIVFFlat(quantizer, self.dim, nlist, ip)
        if self.dim % cfg.code_size:
            raise ValueError(f"ivfpq: code_size={cfg.code_size} must divide the dimension {self.dim}")
        codes = 2**cfg.pq_bits  # centroids per sub-quantiser
        if n_train < codes:
            raise ValueError(
                f"ivfpq needs at least {codes} items to train its {cfg.pq_bits}-bit codebooks, got {n_train}"
            )
        if cfg.pq_bits == 4:  # codes of 4 bits scanned 32 at a time by SIMD table lookups
            index = faiss.IndexIVFPQFastScan(quantizer, self.dim, nlist, cfg.code_size, 4, ip)
        else:
            index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, cfg.code_size, 8, ip)
        index.pq.cp.min_points_per_centroid = 5  # codebooks on a few thousand items: fine, no warning
        return index

    def _build(self, vectors: np.ndarray) -> None:
        index = self._make(len(vectors))
        if not index.is_trained:
            index.train(vectors)
        self._index = self._to_device(index)
        self._index.add(vectors)
        self._memory = None

    def _to_device(self, index):
        wanted = self.config.device
        if wanted == "cpu":
            return index
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if gpus == 0:
            if wanted != "auto":
                self.fallback = f"device={wanted!r}: faiss {faiss.__version__} has no GPU here (faiss-cpu?); ran on CPU"
            return index
        if self.config.backend == "hnsw":
            self.fallback = f"device={wanted!r}: faiss has no GPU HNSW; ran on CPU"
            return index
        self._resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._resources, 0, index)

    def _add(self, vectors: np.ndarray) -> None:
        self._index.add(vectors)
        self._memory = None

    def _params(self, fetch: int, selector=None):
        if self.config.backend == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, fetch), sel=selector)
        if self.config.backend in ("ivf", "ivfpq"):
            return faiss.SearchParametersIVF(nprobe=self.config.nprobe, sel=selector)
        return None if selector is None else faiss.SearchParameters(sel=selector)

    def _raw_search(self, queries: np.ndarray, fetch: int, selector=None) -> tuple[np.ndarray, np.ndarray]:
        """faiss's ``(scores, labels)``, (Q, fetch) each, scores as inner products."""
        return self._index.search(queries, fetch, params=self._params(fetch, selector))

    def _search(self, queries, k, exclude) -> tuple[np.ndarray, np.ndarray]:
        if not any(len(e) for e in exclude):
            scores, labels = self._raw_search(queries, k)  # (Q, k) each
            return labels.astype(np.int64), np.where(labels >= 0, scores, -np.inf).astype(np.float32)
        if self.config.backend != "hnsw":  # the same lists are scanned whatever k: over-fetch, one call
            return self._over_fetch(queries, k, exclude)
        out_idx = np.full((len(queries), k), -1, dtype=np.int64)
        out_val = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for q, seen in enumerate(exclude):  # one call per query, its seen items filtered inside faiss
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.unique(seen)))
            scores, labels = self._raw_search(queries[q : q + 1], k, selector)  # (1, k) each
            out_idx[q], out_val[q] = labels[0], np.where(labels[0] >= 0, scores[0], -np.inf)
        return out_idx, out_val

    def _over_fetch(self, queries, k, exclude) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k + max(len(seen))`` in one call, seen items filtered out: for Flat and IVF
        the same answer as an id selector (they scan the same vectors whatever k)."""
        fetch = min(self.n_items, k + max(len(e) for e in exclude))
        scores, labels = self._raw_search(queries, fetch)  # (Q, fetch) each
        n = self.n_items
        row, col = row_pairs(exclude)
        codes = labels + n * np.arange(len(queries))[:, None]  # (query, item) pairs as one number
        keep = (labels >= 0) & ~sorted_member(codes, np.sort(row * n + col))  # (Q, fetch)
        rank = np.cumsum(keep, axis=1)  # 1-based position among the kept
        r, c = np.nonzero(keep & (rank <= k))
        out_idx = np.full((len(queries), k), -1, dtype=np.int64)
        out_val = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_idx[r, rank[r, c] - 1], out_val[r, rank[r, c] - 1] = labels[r, c], scores[r, c]
        return out_idx, out_val

    def memory_bytes(self) -> int:
        """The serialised size (``faiss.serialize_index``): vectors or codes, graph or
        inverted lists; measured once per catalogue size."""
        if self._memory is None or self._memory[0] != self.n_items:
            self._memory = (self.n_items, int(self._payload().nbytes))
        return self._memory[1]

    def _payload(self) -> np.ndarray:
        index = self._index
        if hasattr(faiss, "index_gpu_to_cpu") and type(index).__name__.startswith("Gpu"):
            index = faiss.index_gpu_to_cpu(index)
        return faiss.serialize_index(index)

    def _restore(self, payload: np.ndarray) -> None:
        self._index = self._to_device(faiss.deserialize_index(np.asarray(payload, dtype=np.uint8)))


def sorted_member(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_keys)`` for keys already sorted: one binary search per
    value, no sort of ``values`` (2.5x faster than ``np.isin`` on a serving batch)."""
    if not len(sorted_keys):
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values
