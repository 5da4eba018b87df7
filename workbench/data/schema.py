"""The one schema: column names used by every module, and input validation.

Interactions are a DataFrame with ``user_id`` (int64), ``item_id`` (int64), ``rating``
(float64) and ``timestamp`` (int64, unix seconds). Recommendations add ``score``
(float64) and ``rank`` (int64, 1 = best).

Ids are non-negative integers that fit int64, timestamps integers that fit int64: a
value that is anything else (``1.5``, ``-7``, ``2**70``, ``"abc"``, ``True``, empty) is a
:class:`SchemaError` naming the source and the row (or, from a file, the line), never
coerced. Integer dtypes, integer strings (``" 12"``, ``"+3"``) and, in float columns, whole
numbers below 2**53 (exact in float64) are accepted.

Duplicate policy (documented here, applied by :func:`validate_interactions`): rows that
repeat a ``(user_id, item_id)`` pair keep the latest one by timestamp (the user's
current opinion); the number dropped is reported in a :class:`DuplicateWarning`.

Error messages quote values through :func:`excerpt`: at most a short excerpt, whatever
the size of the malformed input.
"""

from __future__ import annotations

import reprlib
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

USER = "user_id"
ITEM = "item_id"
RATING = "rating"
TIMESTAMP = "timestamp"
SCORE = "score"
RANK = "rank"

INTERACTION_COLUMNS = (USER, ITEM, RATING, TIMESTAMP)


class SchemaError(ValueError):
    """Input data does not follow the workbench schema; the message names the source."""


class DuplicateWarning(UserWarning):
    """Duplicate (user, item) rows were found and resolved by the documented policy."""


INT64_MAX = int(np.iinfo(np.int64).max)
_EXACT_FLOAT = 2.0**53  # float64 holds every whole number below this exactly
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlist = _SHORT.maxtuple = 8


def excerpt(value, limit: int = 200) -> str:
    """``repr(value)`` cut to at most ``limit`` characters: what an error message may quote."""
    text = _SHORT.repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _row(position: int) -> str:
    return f"row {position}"


def require_columns(df: pd.DataFrame, columns: tuple[str, ...] | list[str], *, source: str) -> None:
    """Raise :class:`SchemaError` naming ``source`` if any of ``columns`` is missing."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: missing column(s) {missing}; found {excerpt(list(df.columns))}")


def _not_int64(values: pd.Series, *, signed: bool) -> np.ndarray:
    """A boolean mask of the values that are not integers fitting int64 (or are negative
    where ``signed`` is False). Vectorised for every dtype."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return np.ones(len(values), dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        na = values.isna().to_numpy()
        whole = values.to_numpy(dtype=np.uint64 if dtype.kind == "u" else np.int64, na_value=0)
        bad = na | (whole > INT64_MAX) if dtype.kind == "u" else na | ((whole < 0) & (not signed))
        return np.asarray(bad, dtype=bool)
    if pd.api.types.is_float_dtype(dtype):
        x = values.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            return ~np.isfinite(x) | (x != np.floor(x)) | (np.abs(x) >= _EXACT_FLOAT) | ((x < 0) & (not signed))
    text = values.astype("string").str.strip()
    ok = text.str.fullmatch(r"[+-]?[0-9]+" if signed else r"\+?[0-9]+").fillna(False).to_numpy(dtype=bool)
    digits = text.str.lstrip("+-").str.lstrip("0").fillna("")
    n = digits.str.len().to_numpy()
    fits = (n < 19) | ((n == 19) & (digits <= str(INT64_MAX)).to_numpy(dtype=bool))
    return ~(ok & fits)


def as_int64(
    values: pd.Series,
    *,
    source: str,
    column: str,
    signed: bool = False,
    locate: Callable[[int], str] = _row,
) -> pd.Series:
    """``values`` as int64, or :class:`SchemaError` naming ``source``, ``column`` and where
    the first bad value is (``locate(position)``: "row 3" by default, "line 5" from a file).

    Accepts integers (non-negative unless ``signed``) that fit int64: integer dtypes,
    integer strings, whole floats below 2**53. Refuses the rest instead of coercing it."""
    bad = _not_int64(values, signed=signed)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        what = "integers" if signed else "non-negative integers"
        raise SchemaError(
            f"{source}: {int(bad.sum())} value(s) in column {column!r} that are not {what} fitting int64 "
            f"(first at {locate(first)}: {excerpt(values.iloc[first])})"
        )
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("int64")
    return pd.to_numeric(values.astype("string").str.strip()).astype("int64")


def _ratings(values: pd.Series, *, source: str, rating_range, locate: Callable[[int], str]) -> pd.Series:
    """Finite float ratings, inside ``rating_range`` (inclusive) when one is given."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = ~np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise SchemaError(
            f"{source}: {int(bad.sum())} missing, infinite or non-numeric value(s) in column {RATING!r} "
            f"(first at {locate(first)}: {excerpt(values.iloc[first])})"
        )
    if rating_range is not None:
        lo, hi = rating_range
        bad = ((numbers < lo) | (numbers > hi)).to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise SchemaError(
                f"{source}: {int(bad.sum())} rating(s) outside [{lo}, {hi}] "
                f"(first at {locate(first)}: {numbers.iloc[first]})"
            )
    return numbers


def validate_interactions(
    df: pd.DataFrame,
    *,
    source: str = "interactions",
    rating_range: tuple[float, float] | None = None,
    locate: Callable[[int], str] = _row,
) -> pd.DataFrame:
    """Check and normalise an interactions frame; return a clean copy.

    Raises :class:`SchemaError` for missing columns, ids that are not non-negative
    integers fitting int64, timestamps that are not integers, missing, infinite or
    non-numeric ratings and ratings outside ``rating_range`` (inclusive); the message
    places the first bad value with ``locate(row)`` (a file's parser gives "line N").
    Duplicated (user, item) pairs keep the latest row and emit a :class:`DuplicateWarning`.
    """
    require_columns(df, [USER, ITEM, RATING], source=source)
    out = df.copy()
    if TIMESTAMP not in out.columns:
        out[TIMESTAMP] = 0
    for col in (USER, ITEM, TIMESTAMP):
        out[col] = as_int64(out[col], source=source, column=col, signed=col == TIMESTAMP, locate=locate)
    out[RATING] = _ratings(out[RATING], source=source, rating_range=rating_range, locate=locate)
    dup = out.duplicated([USER, ITEM], keep=False)
    if dup.any():
        before = len(out)
        out = out.sort_values(TIMESTAMP, kind="stable").drop_duplicates([USER, ITEM], keep="last")
        out = out.sort_index()
        warnings.warn(
            f"{source}: {before - len(out)} duplicate (user_id, item_id) row(s) dropped, "
            "keeping the latest by timestamp",
            DuplicateWarning,
            stacklevel=2,
        )
    return out.reset_index(drop=True)[
        list(INTERACTION_COLUMNS) + [c for c in out.columns if c not in INTERACTION_COLUMNS]
    ]
