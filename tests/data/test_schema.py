"""The one schema: ``validate_interactions`` and ``require_columns``."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from workbench.data.schema import (
    INTERACTION_COLUMNS,
    DuplicateWarning,
    SchemaError,
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
        SchemaError, match=r"u\.data: 1 NaN or non-numeric value\(s\) in column 'rating' \(first at row 1"
    ):
        validate_interactions(frame(rating=[4, bad, 3]), source="u.data")


def test_nan_id_is_refused():
    with pytest.raises(SchemaError, match=r"2 NaN or non-numeric value\(s\) in column 'item_id' \(first at row 0"):
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
