"""Contiguous id maps and the CSR interaction matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workbench.data.matrix import IndexMap, UnknownIdError, interaction_matrix
from workbench.data.schema import SchemaError


def test_index_map_is_a_sorted_bijection():
    ids = np.array([42, 7, 42, 1000, 7, 13])
    m = IndexMap.from_ids(ids, kind="item")

    assert len(m) == 4
    assert m.ids_.tolist() == [7, 13, 42, 1000]
    assert m.index([1000, 7, 42]).tolist() == [3, 0, 2]
    np.testing.assert_array_equal(m.ids(m.index(ids)), ids)  # id -> index -> id
    np.testing.assert_array_equal(m.index(m.ids(np.arange(4))), np.arange(4))  # index -> id -> index


def test_contains():
    m = IndexMap.from_ids([5, 10, 15])
    assert m.contains([0, 5, 7, 15, 16]).tolist() == [False, True, False, True, False]
    assert 10 in m and 11 not in m and 99 not in m


def test_empty_map():
    m = IndexMap.from_ids([])
    assert len(m) == 0 and 3 not in m
    assert m.contains([1, 2]).tolist() == [False, False]
    with pytest.raises(UnknownIdError):
        m.index([1])


def test_unknown_ids_are_listed():
    m = IndexMap.from_ids([1, 2, 3], kind="user")

    with pytest.raises(UnknownIdError) as err:
        m.index([3, 9, 4, 9])

    assert str(err.value) == "2 unknown user id(s): 4, 9"
    assert err.value.unknown.tolist() == [4, 9]
    assert isinstance(err.value, KeyError)


def test_unknown_id_message_is_capped():
    with pytest.raises(UnknownIdError, match=r"^12 unknown item id\(s\): 100, 101, .*, 109 \.\.\.$"):
        IndexMap.from_ids([1], kind="item").index(np.arange(100, 112))


def interactions() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [10, 10, 30, 20], "item_id": [7, 9, 7, 8], "rating": [4.0, 2.5, 5.0, 1.0]})


def test_interaction_matrix_ones_and_ratings():
    df = interactions()
    users, items = IndexMap.from_ids(df["user_id"]), IndexMap.from_ids([7, 8, 9, 11])  # item 11 never rated

    ones = interaction_matrix(df, users, items)
    ratings = interaction_matrix(df, users, items, values="rating")

    assert isinstance(ones, sp.csr_matrix) and ones.shape == (3, 4)
    assert ones.toarray().tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
    assert ratings.toarray().tolist() == [[4.0, 0, 2.5, 0], [0, 1.0, 0, 0], [5.0, 0, 0, 0]]


def test_interaction_matrix_sums_duplicates():
    df = pd.concat([interactions(), interactions().iloc[[0]]])
    users, items = IndexMap.from_ids(df["user_id"]), IndexMap.from_ids(df["item_id"])

    m = interaction_matrix(df, users, items, values="rating")

    assert m[0, 0] == 8.0 and m.nnz == 4


def test_interaction_matrix_refuses_unknown_ids_and_bad_options():
    df = interactions()
    users, items = IndexMap.from_ids([10, 20], kind="user"), IndexMap.from_ids(df["item_id"], kind="item")
    with pytest.raises(UnknownIdError, match=r"1 unknown user id\(s\): 30"):
        interaction_matrix(df, users, items)
    with pytest.raises(ValueError, match="values must be 'ones' or 'rating'"):
        interaction_matrix(df, IndexMap.from_ids(df["user_id"]), items, values="count")
    with pytest.raises(SchemaError, match=r"interaction_matrix: missing column\(s\) \['item_id'\]"):
        interaction_matrix(df.drop(columns="item_id"), users, items)
