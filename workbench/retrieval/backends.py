"""Pick a backend by name: build an index, load a saved one, set the search threads."""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.retrieval import faiss_index
from workbench.retrieval.exact import ExactIndex
from workbench.retrieval.faiss_index import FaissIndex
from workbench.retrieval.index import IndexConfig, ItemIndex, read_index_file


def make_index(config: IndexConfig | None = None, **options) -> ItemIndex:
    """An empty index for ``config`` (or ``IndexConfig(**options)``; an unknown option
    is a ``TypeError``, a bad value a ``ValueError``)."""
    if config is not None and options:
        raise TypeError(f"pass index options as keywords or as config=, not both (got {sorted(options)})")
    config = config or IndexConfig(**options)
    return ExactIndex(config) if config.backend == "exact" else FaissIndex(config)


def build_index(vectors, config: IndexConfig | None = None, **options) -> ItemIndex:
    """An index over item ``vectors`` (n_items, d); options as in :class:`IndexConfig`,
    e.g. ``build_index(y, backend="hnsw", m=32, ef_search=128)``."""
    return make_index(config, **options).build(vectors)


def load_index(path: str | Path) -> ItemIndex:
    """The index saved at ``path`` by :meth:`ItemIndex.save`, whichever backend."""
    meta, payload = read_index_file(path)
    index = make_index(IndexConfig(**meta["config"]))
    index.dim, index.n_items = int(meta["dim"]), int(meta["n_items"])
    index._restore(payload)
    return index


def set_threads(n: int) -> None:
    """Search and build on ``n`` threads: torch's intra-op pool and faiss's OpenMP."""
    torch.set_num_threads(n)
    if faiss_index.faiss is not None:
        faiss_index.faiss.omp_set_num_threads(n)
