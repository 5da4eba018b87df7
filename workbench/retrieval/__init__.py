"""Retrieval indexes over item embeddings: the first stage of a two-stage recommender.

One small interface (build, search a batch of query vectors for the top k while excluding
each user's seen items, add items online, memory size, save/load), inner product or cosine,
with an exact backend (blocked torch matmul + top-k) and approximate faiss backends.
"""

from workbench.retrieval.backends import build_index, load_index, make_index, set_threads
from workbench.retrieval.exact import ExactIndex
from workbench.retrieval.faiss_index import FaissIndex
from workbench.retrieval.index import BACKENDS, METRICS, IndexConfig, ItemIndex

__all__ = [
    "BACKENDS",
    "METRICS",
    "ExactIndex",
    "FaissIndex",
    "IndexConfig",
    "ItemIndex",
    "build_index",
    "load_index",
    "make_index",
    "set_threads",
]
