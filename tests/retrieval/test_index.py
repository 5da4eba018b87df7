"""Retrieval indexes (workbench.retrieval): every backend against exact search on clustered
vectors, exclusion, online adds, save/load, memory, and the bad input of issue 14."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from workbench.retrieval import BACKENDS, IndexConfig, build_index, faiss_index, load_index, make_index

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# each backend (and IVF-PQ's 4-bit fast-scan codes), with knobs generous enough that the
# approximate ones are near-exact on 600 items
KNOBS = {
    "exact": {"backend": "exact"},
    "flat": {"backend": "flat"},
    "hnsw": {"backend": "hnsw", "m": 16, "ef_construction": 64, "ef_search": 64},
    "ivf": {"backend": "ivf", "nlist": 8, "nprobe": 8},
    "ivfpq": {"backend": "ivfpq", "nlist": 4, "nprobe": 4, "code_size": 8},
    "ivfpq4": {"backend": "ivfpq", "nlist": 4, "nprobe": 4, "code_size": 16, "pq_bits": 4},
}
VARIANTS = list(KNOBS)
#: least recall@10 against exact each must reach here (PQ codes are lossy)
FLOOR = {"exact": 1.0, "flat": 1.0, "hnsw": 0.95, "ivf": 1.0, "ivfpq": 0.6, "ivfpq4": 0.6}


@pytest.fixture(scope="module")
def vectors():
    """600 items in 12 clusters and 40 queries, 16 dims (a structure an ANN index can use)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    items = centres[rng.integers(0, 12, 600)] + 0.3 * rng.normal(size=(600, 16))
    queries = centres[rng.integers(0, 12, 40)] + 0.3 * rng.normal(size=(40, 16))
    return items.astype(np.float32), queries.astype(np.float32)


def brute_force(items, queries, k, exclude=None):
    scores = queries @ items.T
    if exclude is not None:
        for q, seen in enumerate(exclude):
            scores[q, seen] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


@pytest.fixture(scope="module")
def indexes(vectors):
    return {name: build_index(vectors[0], **KNOBS[name]) for name in VARIANTS}


@pytest.mark.parametrize("name", VARIANTS)
def test_recall_against_brute_force(name, indexes, vectors):
    items, queries = vectors
    idx, scores = indexes[name].search(queries, 10)
    assert idx.shape == scores.shape == (40, 10)
    assert recall(idx, brute_force(items, queries, 10)) >= FLOOR[name]
    assert (np.diff(scores, axis=1) <= 1e-5).all()  # best first


def test_exact_scores_are_the_inner_products(indexes, vectors):
    items, queries = vectors
    idx, scores = indexes["exact"].search(queries, 5)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ items.T, idx, axis=1), rtol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_excluded_items_never_come_back(name, indexes, vectors):
    items, queries = vectors
    truth = brute_force(items, queries, 30)
    exclude = [truth[q, : 5 + q % 20] for q in range(len(queries))]  # each query's own best items
    idx, _ = indexes[name].search(queries, 10, exclude=exclude)
    assert not any(set(found) & set(seen) for found, seen in zip(idx, exclude))
    if FLOOR[name] == 1.0:  # exact-search backends: the next ten, exactly
        np.testing.assert_array_equal(idx, brute_force(items, queries, 10, exclude))
    as_matrix = sp.csr_matrix((np.ones(5), ([0] * 5, truth[0, :5])), shape=(1, 600))
    assert not set(indexes[name].search(queries[:1], 10, exclude=as_matrix)[0][0]) & set(truth[0, :5])


def test_fewer_items_than_k_left_are_empty_slots():
    index = build_index(np.eye(4, dtype=np.float32), backend="flat")
    idx, scores = index.search(np.ones((1, 4), np.float32), 3, exclude=[np.array([0, 1])])
    assert sorted(idx[0, :2]) == [2, 3] and idx[0, 2] == -1 and np.isneginf(scores[0, 2])


@pytest.mark.parametrize("name", VARIANTS)
def test_an_added_item_is_found_at_once(name, vectors):
    items, queries = vectors
    index = build_index(items, **KNOBS[name])
    target = queries[0] * 10  # the best item for query 0 by far
    new = index.add(target[None, :])
    assert new.tolist() == [600] and len(index) == 601
    idx, _ = index.search(queries[:1], 5)
    assert idx[0, 0] == 600
    idx, _ = index.search(queries[:1], 5, exclude=[new])  # and excludable like any other
    assert 600 not in idx[0]


@pytest.mark.parametrize("name", VARIANTS)
def test_save_and_load_round_trip(name, indexes, vectors, tmp_path):
    path = indexes[name].save(tmp_path / "sub" / f"{name}.index")
    back = load_index(path)
    assert type(back) is type(indexes[name]) and back.config == indexes[name].config and len(back) == 600
    np.testing.assert_array_equal(back.search(vectors[1], 10)[0], indexes[name].search(vectors[1], 10)[0])
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_memory_is_measured_and_pq_is_smallest(indexes):
    sizes = {name: index.memory_bytes() for name, index in indexes.items()}
    assert sizes["exact"] == 600 * 16 * 4
    assert sizes["flat"] >= 600 * 16 * 4 and sizes["hnsw"] > sizes["flat"]  # HNSW adds its graph
    assert sizes["ivfpq"] < sizes["ivf"] and sizes["ivfpq4"] < sizes["ivf"]


def test_every_backend_is_tested():
    assert {knobs["backend"] for knobs in KNOBS.values()} == set(BACKENDS)


def test_cosine_ignores_vector_length():
    items = np.array([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0]], np.float32)
    query = np.array([[2.0, 0.0]], np.float32)
    assert build_index(items, metric="ip").search(query, 1)[0][0, 0] == 1
    for name in ("exact", "flat", "hnsw"):
        idx, scores = build_index(items, backend=name, metric="cosine").search(query, 1, metric="cosine")
        assert idx[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0, rel=1e-5)


# -- bad input ---------------------------------------------------------------------------


def test_bad_input_gives_clear_errors(indexes, vectors):
    items, queries = vectors
    index = indexes["hnsw"]
    with pytest.raises(ValueError, match=r"k=601 is larger than the catalogue \(600 items\)"):
        index.search(queries, 601)
    with pytest.raises(ValueError, match="positive integer, got 0"):
        index.search(queries, 0)
    with pytest.raises(ValueError, match="query vectors have dimension 8, the index holds 16-dimensional"):
        index.search(queries[:, :8], 5)
    with pytest.raises(ValueError, match="added item vectors have dimension 3"):
        index.add(np.ones((1, 3), np.float32))
    nan_items = items.copy()
    nan_items[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"item vectors hold 1 NaN or infinite values \(first in row 17\)"):
        build_index(nan_items, backend="flat")
    with pytest.raises(ValueError, match="built for metric='ip', asked for 'cosine'"):
        index.search(queries, 5, metric="cosine")
    with pytest.raises(ValueError, match="exclude has 2 rows for 40 queries"):
        index.search(queries, 5, exclude=[[1], [2]])


def test_empty_index_and_bad_options():
    for name in ("exact", "flat", "hnsw"):
        empty = build_index(np.empty((0, 4), np.float32), backend=name)
        with pytest.raises(ValueError, match=r"index is empty \(0 items\)"):
            empty.search(np.ones((1, 4), np.float32), 1)
        empty.add(np.eye(4, dtype=np.float32))  # an empty index fills online
        assert empty.search(np.array([[0, 0, 1, 0]], np.float32), 1)[0][0, 0] == 2
    with pytest.raises(ValueError, match="nlist=8 needs at least 8 items to train, got 4"):
        build_index(np.eye(4, dtype=np.float32), backend="ivf", nlist=8)
    with pytest.raises(ValueError, match="code_size=5 must divide the dimension 16"):
        build_index(np.ones((300, 16), np.float32), backend="ivfpq", code_size=5)
    with pytest.raises(ValueError, match="needs at least 16 items to train its 4-bit codebooks, got 8"):
        build_index(np.ones((8, 16), np.float32), backend="ivfpq", nlist=1, code_size=8, pq_bits=4)
    with pytest.raises(ValueError, match=r"pq_bits must be 8 .* or 4 .*, got 6"):
        IndexConfig(backend="ivfpq", pq_bits=6)
    with pytest.raises(ValueError, match="unknown retrieval backend 'annoy'"):
        IndexConfig(backend="annoy")
    with pytest.raises(ValueError, match="unknown metric 'l2'"):
        IndexConfig(metric="l2")
    with pytest.raises(ValueError, match="ef_search must be >= 1, got 0"):
        IndexConfig(ef_search=0)
    with pytest.raises(TypeError):
        make_index(efsearch=10)  # a typo is an error


def test_missing_faiss_is_a_clear_error_and_exact_still_works(monkeypatch):
    monkeypatch.setattr(faiss_index, "faiss", None)
    with pytest.raises(ImportError, match=r"backend 'hnsw' needs faiss.*pip install faiss-cpu"):
        make_index(backend="hnsw")
    assert len(build_index(np.eye(3, dtype=np.float32))) == 3


def test_gpu_without_gpu_faiss_falls_back_and_says_so(vectors):
    index = build_index(vectors[0], backend="flat", device="cuda")
    if faiss_index.faiss.get_num_gpus() == 0:
        assert "no GPU" in index.fallback
        assert index.search(vectors[1], 3)[0].shape == (40, 3)
    assert build_index(vectors[0], backend="hnsw", device="cpu").fallback is None


@pytest.mark.parametrize("name", ["exact", "hnsw", "ivfpq4"])
def test_a_copy_is_independent(name, indexes, vectors):
    copy = indexes[name].copy()
    copy.add(vectors[1][:2] * 10)  # the best matches of queries 0 and 1
    assert len(copy) == 602 and len(indexes[name]) == 600
    assert copy.search(vectors[1][:2], 1)[0].ravel().tolist() == [600, 601]
    assert indexes[name].search(vectors[1][:2], 1)[0].max() < 600


@given(
    values=hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=12), elements=st.integers(-3, 40)),
    keys=st.lists(st.integers(-3, 40), max_size=30),
)
def test_sorted_member_is_isin(values, keys):
    """The over-fetch filter's membership test gives ``np.isin``'s answer, empty keys included."""
    sorted_keys = np.sort(np.asarray(keys, dtype=np.int64))
    assert np.array_equal(faiss_index.sorted_member(values, sorted_keys), np.isin(values, sorted_keys))
