"""The index interface every retrieval backend shares, its options, and the input checks.

    index = build_index(item_vectors, backend="hnsw", metric="ip", ef_search=128)
    idx, scores = index.search(queries, k=10, exclude=seen_rows)   # (Q, k) each
    new = index.add(more_vectors)                                   # their item indices
    index.memory_bytes(); index.save("items.index"); load_index("items.index")

Items are addressed by their row in the vectors given to :func:`build_index` (then
:meth:`ItemIndex.add` appends rows). A slot with no item left to return -- fewer than
``k`` items once the excluded ones are gone, or an approximate backend that found
fewer -- holds index -1 and score -inf, as in :func:`workbench.models.base.topk_blocked`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

#: the backends, by name: exact (blocked torch matmul + top-k) and four faiss indexes
BACKENDS = ("exact", "flat", "hnsw", "ivf", "ivfpq")
#: similarity: inner product, or cosine (vectors normalised to unit length on the way in)
METRICS = ("ip", "cosine")
#: what ``exclude`` may be: one array of item indices per query, or a (Q, n_items) CSR matrix
Exclude = Sequence[np.ndarray] | sp.csr_matrix | None


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    """Options of an index; each backend reads only its own knobs."""

    backend: str = "exact"  # one of BACKENDS
    metric: str = "ip"  # "ip" or "cosine"
    device: str = "cpu"  # "cpu", "cuda" or "auto": exact on that torch device; faiss on GPU (else fallback noted)
    m: int = 32  # hnsw: graph neighbours per node
    ef_construction: int = 200  # hnsw: candidate list while building
    ef_search: int = 64  # hnsw: candidate list while searching (raised to the fetch size when smaller)
    nlist: int | None = None  # ivf, ivfpq: coarse cells; None = 4 * sqrt(n_items), at most n_items / 39
    nprobe: int = 16  # ivf, ivfpq: cells visited per query
    code_size: int = 16  # ivfpq: sub-quantisers per item (must divide the dimension): bytes at 8 bits, half at 4
    pq_bits: int = 8  # ivfpq: bits per sub-quantiser: 8 (IndexIVFPQ) or 4 (faiss's SIMD fast-scan, IVFPQFastScan)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown retrieval backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose 'ip' (inner product) or 'cosine'")
        for name in ("m", "ef_construction", "ef_search", "nprobe", "code_size"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"IndexConfig: {name} must be >= 1, got {getattr(self, name)!r}")
        if self.pq_bits not in (4, 8):
            raise ValueError(f"IndexConfig: pq_bits must be 8 (IVF-PQ) or 4 (IVF-PQ fast-scan), got {self.pq_bits!r}")
        if self.nlist is not None and not self.nlist >= 1:
            raise ValueError(f"IndexConfig: nlist must be >= 1 or None, got {self.nlist!r}")


def check_vectors(vectors, *, what: str, dim: int | None = None) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 (n, d) array; ``ValueError`` naming the
    problem for a wrong shape, a wrong dimension or a non-finite entry."""
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-d (n, d) array, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{what} have dimension {array.shape[1]}, the index holds {dim}-dimensional items")
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"{what} hold {int(bad.sum())} NaN or infinite values (first in row {row})")
    return array


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): (n, d) -> (n, d)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def exclusion_lists(exclude: Exclude, n_queries: int) -> list[np.ndarray]:
    """``exclude`` as one int64 array of item indices per query (empty when None)."""
    if exclude is None:
        return [np.empty(0, np.int64)] * n_queries
    if sp.issparse(exclude):
        exclude = sp.csr_matrix(exclude)
        lists = [exclude.indices[exclude.indptr[i] : exclude.indptr[i + 1]] for i in range(exclude.shape[0])]
    else:
        lists = list(exclude)
    if len(lists) != n_queries:
        raise ValueError(f"exclude has {len(lists)} rows for {n_queries} queries")
    return [np.asarray(row, dtype=np.int64).ravel() for row in lists]


class ItemIndex(ABC):
    """Top-k search over item vectors; see the module docstring. Subclasses implement
    :meth:`_build`, :meth:`_search`, :meth:`_add`, :meth:`memory_bytes`, :meth:`_payload`
    and :meth:`_restore`."""

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        self.dim = 0
        self.n_items = 0
        #: why the index runs other than asked (e.g. GPU faiss missing), or None
        self.fallback: str | None = None

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.backend}, {self.config.metric}, {self.n_items} x {self.dim})"

    # -- the interface -------------------------------------------------------------------

    def build(self, vectors) -> ItemIndex:
        """Index ``vectors`` (n_items, d) from scratch; returns ``self``."""
        array = check_vectors(vectors, what="item vectors")
        self.dim = array.shape[1]
        self.n_items = 0
        self._build(self._prepare(array))
        self.n_items = len(array)
        return self

    def add(self, vectors) -> np.ndarray:
        """Append items (n, d), searchable at once; returns their item indices (n,)."""
        array = check_vectors(vectors, what="added item vectors", dim=self.dim)
        self._add(self._prepare(array))
        new = np.arange(self.n_items, self.n_items + len(array))
        self.n_items += len(array)
        return new

    def search(
        self, queries, k: int, *, exclude: Exclude = None, metric: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each query vector (Q, d) -> ``(indices, scores)``, each
        (Q, k), best first; ``exclude[q]`` holds item indices query q must not return.
        ``metric`` (optional) states what the caller expects; an index built for the
        other one is a ``ValueError``, never a silent mismatch."""
        if metric is not None and metric != self.config.metric:
            raise ValueError(
                f"the index was built for metric={self.config.metric!r}, asked for {metric!r}; "
                f"build one with metric={metric!r}"
            )
        if self.n_items == 0:
            raise ValueError("the index is empty (0 items): build it from item vectors or add() some first")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > self.n_items:
            raise ValueError(f"k={k} is larger than the catalogue ({self.n_items} items)")
        array = check_vectors(queries, what="query vectors", dim=self.dim)
        return self._search(self._prepare(array), int(k), exclusion_lists(exclude, len(array)))

    def set_search(self, *, ef_search: int | None = None, nprobe: int | None = None) -> ItemIndex:
        """Change the search-time knobs (HNSW's ``ef_search``, IVF's ``nprobe``) of the
        built index, no rebuild; returns ``self``."""
        changes = {name: value for name, value in (("ef_search", ef_search), ("nprobe", nprobe)) if value is not None}
        self.config = replace(self.config, **changes)  # validated by IndexConfig
        return self

    def copy(self) -> ItemIndex:
        """An independent copy (adding to one leaves the other as it was)."""
        other = type(self)(self.config)
        other.dim, other.n_items, other.fallback = self.dim, self.n_items, self.fallback
        other._restore(self._payload())
        return other

    def save(self, path: str | Path) -> Path:
        """Write the index to one file, atomically; returns its path."""
        path = Path(path)
        meta = {"config": asdict(self.config), "dim": self.dim, "n_items": self.n_items, "format": 1}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), payload=self._payload())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(buffer.getvalue())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes the index holds (vectors, codes, graph or lists)."""

    # -- what backends implement ---------------------------------------------------------

    def _prepare(self, array: np.ndarray) -> np.ndarray:
        return normalise(array) if self.config.metric == "cosine" else array

    @abstractmethod
    def _build(self, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _add(self, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, exclude: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def _payload(self) -> np.ndarray:
        """The index's state as a uint8 or float32 array (what :meth:`save` stores)."""

    @abstractmethod
    def _restore(self, payload: np.ndarray) -> None:
        """Inverse of :meth:`_payload` (``dim`` and ``n_items`` are already set)."""


def read_index_file(path: str | Path) -> tuple[dict, np.ndarray]:
    """``(meta, payload)`` of a file written by :meth:`ItemIndex.save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no index file there")
    with np.load(path) as data:
        if "meta" not in data or "payload" not in data:
            raise ValueError(f"{path}: not an index file written by ItemIndex.save")
        return json.loads(data["meta"].tobytes().decode()), data["payload"]
