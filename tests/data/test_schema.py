"""The one schema: ``validate_interactions`` and ``require_columns``."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.data.schema import (
    INTERACTION_COLUMNS,
    DuplicateWarning,
    SchemaError,
    excerpt,
    require_columns,
    validate_interactions,
)


def frame(**columns) -> pd.DataFrame:
    base = {"user_id": [1, 1, 2], "item_id": [10, 11, 10], "rating": [4, 5, 3], "timestamp": [100, 200, 300]}
    base.update(columns)
    return pd.DataFrame(base)


def test_columns_are_the_documented_names():
    assert INTERACTION_COLUMNS == ("user_id", "item_id", "rating", "timestamp")


def test_clean_input_is_normalised_to_canonical_dtypes():
    raw = frame(user_id=["1", "1", "2"], rating=[4, 5, 3])

    out = validate_interactions(raw)

    assert out.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]
    assert out.values.tolist() == [[1, 10, 4.0, 100], [1, 11, 5.0, 200], [2, 10, 3.0, 300]]
    assert raw["user_id"].tolist() == ["1", "1", "2"]  # the input is not modified


def test_missing_timestamp_becomes_zero_and_extra_columns_follow():
    raw = frame().drop(columns="timestamp").assign(source=["a", "b", "c"])

    out = validate_interactions(raw)

    assert out.columns.tolist() == ["user_id", "item_id", "rating", "timestamp", "source"]
    assert out["timestamp"].tolist() == [0, 0, 0]
    assert out["source"].tolist() == ["a", "b", "c"]


def test_missing_columns_are_listed_with_the_source():
    with pytest.raises(
        SchemaError, match=r"ratings\.csv: missing column\(s\) \['item_id', 'rating'\]; found \['user_id', 'x'\]"
    ):
        validate_interactions(pd.DataFrame({"user_id": [1], "x": [2]}), source="ratings.csv")


@pytest.mark.parametrize("bad", [np.nan, None, "five"])
def test_nan_or_text_rating_is_refused(bad):
    with pytest.raises(
        SchemaError, match=r"u\.data: 1 missing, infinite or non-numeric value\(s\) in column 'rating' \(first at row 1"
    ):
        validate_interactions(frame(rating=[4, bad, 3]), source="u.data")


def test_nan_id_is_refused():
    with pytest.raises(
        SchemaError,
        match=r"2 value\(s\) in column 'item_id' that are not non-negative integers .* \(first at row 0: nan\)",
    ):
        validate_interactions(frame(item_id=[np.nan, 11, np.nan]))


def test_out_of_range_ratings_are_counted_and_shown():
    with pytest.raises(SchemaError, match=r"x: 2 rating\(s\) outside \[1, 5\] \(first at row 1: 0\.0\)"):
        validate_interactions(frame(rating=[1, 0, 6]), source="x", rating_range=(1, 5))


def test_range_is_inclusive_and_optional():
    out = validate_interactions(frame(rating=[0.5, 5.0, 3.0]), rating_range=(0.5, 5))
    assert out["rating"].tolist() == [0.5, 5.0, 3.0]
    assert validate_interactions(frame(rating=[-3, 99, 3]))["rating"].tolist() == [-3.0, 99.0, 3.0]


def test_duplicates_keep_the_latest_whatever_the_row_order():
    raw = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 1, 2],
            "item_id": [10, 10, 20, 10, 30],
            "rating": [1, 5, 3, 2, 4],
            "timestamp": [100, 300, 50, 200, 60],  # the latest (1, 10) is in the middle
        }
    )

    with pytest.warns(
        DuplicateWarning, match=r"src: 2 duplicate \(user_id, item_id\) row\(s\) dropped, keeping the latest"
    ):
        out = validate_interactions(raw, source="src")

    assert out.values.tolist() == [[1, 10, 5.0, 300], [2, 20, 3.0, 50], [2, 30, 4.0, 60]]
    assert out.index.tolist() == [0, 1, 2]


def test_no_warning_without_duplicates():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateWarning)
        validate_interactions(frame())


def test_require_columns():
    require_columns(frame(), ["user_id"], source="s")
    with pytest.raises(SchemaError, match=r"^recs: missing column\(s\) \['rank'\]"):
        require_columns(frame(), ("user_id", "rank"), source="recs")
    assert issubclass(SchemaError, ValueError)


# --------------------------------------------------------------------------- ids: strict


@pytest.mark.parametrize(
    "bad",
    [1.5, -7, 2**70, 2**63, "1.5", "-7", "", "abc", str(2**70), True, None, np.nan, np.inf, "1.0", 2.0**53],
)
def test_ids_that_are_not_int64_integers_are_refused_not_coerced(bad):
    for column in ("user_id", "item_id"):
        values = {"user_id": [1, 1, 2], "item_id": [10, 11, 10]}[column]
        values[1] = bad
        with pytest.raises(SchemaError, match=rf"src: 1 value\(s\) in column '{column}' .* \(first at row 1: "):
            validate_interactions(frame(**{column: values}), source="src")


def test_whole_number_floats_and_integer_strings_are_ids():
    out = validate_interactions(frame(user_id=[1.0, 2.0, 3.0], item_id=["10", " +11 ", "0012"]))
    assert out["user_id"].tolist() == [1, 2, 3] and out["item_id"].tolist() == [10, 11, 12]
    big = validate_interactions(frame(user_id=np.array([2**63 - 1, 0, 5], dtype=np.uint64)))
    assert big["user_id"].tolist() == [2**63 - 1, 0, 5] and big["user_id"].dtype == "int64"


def test_timestamps_must_be_whole_but_may_precede_1970():
    assert validate_interactions(frame(timestamp=[-5, 0, 7]))["timestamp"].tolist() == [-5, 0, 7]
    with pytest.raises(SchemaError, match=r"1 value\(s\) in column 'timestamp' that are not integers"):
        validate_interactions(frame(timestamp=[1, 2.5, 3]))


def test_infinite_rating_is_refused():
    with pytest.raises(SchemaError, match=r"1 missing, infinite or non-numeric value\(s\) in column 'rating'"):
        validate_interactions(frame(rating=[1, np.inf, 3]))


def test_errors_quote_a_short_excerpt_of_huge_values_and_column_lists():
    with pytest.raises(SchemaError) as err:
        validate_interactions(frame(user_id=[1, "9" * 1_000_000, 2]), source="s")
    assert len(str(err.value)) < 300
    wide = pd.DataFrame({f"column_{i}": [1] for i in range(100_000)})
    with pytest.raises(SchemaError) as err:
        require_columns(wide, ["user_id"], source="s")
    assert len(str(err.value)) < 300
    assert len(excerpt("x" * 10**7)) <= 200 and excerpt("short") == "'short'"


# --------------------------------------------------------------------------- properties (hypothesis)

_ANY = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["1", " 2 ", "+3", "-4", "5.0", "1e3", "\u0663", str(2**63), str(2**63 - 1)]),
    st.none(),
    st.booleans(),
)


def _as_id(value) -> int | None:
    """The id a value stands for under the documented rule, or None where it must be refused."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if 0 <= value < 2**63 else None
    if isinstance(value, str):
        text = value.strip()
        return int(text) if re.fullmatch(r"\+?[0-9]+", text) and int(text) < 2**63 else None
    return None  # a float among other types


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_ANY, min_size=1, max_size=8))
def test_any_id_column_validates_exactly_or_raises_schema_error(values):
    raw = pd.DataFrame({"user_id": pd.Series(values, dtype=object), "item_id": range(len(values)), "rating": 3.0})
    expected = [_as_id(v) for v in values]
    try:
        out = validate_interactions(raw)
    except SchemaError as err:
        assert None in expected, f"refused valid ids {values}: {err}"
        return
    assert out["user_id"].tolist() == expected


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=8))
def test_float_id_columns_accept_only_exact_whole_numbers(values):
    raw = frame(user_id=values, item_id=list(range(len(values))), rating=[3] * len(values), timestamp=[0] * len(values))
    ok = all(np.isfinite(v) and v == int(v) and 0 <= v < 2**53 for v in values)
    try:
        out = validate_interactions(raw)
    except SchemaError:
        assert not ok
        return
    assert ok and out["user_id"].tolist() == [int(v) for v in values]


_INT64_IDS = st.integers(0, 2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(_INT64_IDS, _INT64_IDS, st.floats(0, 5), st.integers(-(2**63), 2**63 - 1)),
        min_size=1,
        max_size=20,
        unique_by=lambda r: (r[0], r[1]),
    )
)
def test_well_formed_interactions_round_trip(rows):
    raw = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
    out = validate_interactions(raw, rating_range=(0, 5))
    assert [list(r) for r in out.itertuples(index=False)] == [list(r) for r in rows]
