"""The one schema: column names used by every module, and input validation.

Interactions are a DataFrame with ``user_id`` (int64), ``item_id`` (int64), ``rating``
(float64) and ``timestamp`` (int64, unix seconds). Recommendations add ``score``
(float64) and ``rank`` (int64, 1 = best).

Duplicate policy (documented here, applied by :func:`validate_interactions`): rows that
repeat a ``(user_id, item_id)`` pair keep the latest one by timestamp (the user's
current opinion); the number dropped is reported in a :class:`DuplicateWarning`.
"""

from __future__ import annotations

import warnings

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


def require_columns(df: pd.DataFrame, columns: tuple[str, ...] | list[str], *, source: str) -> None:
    """Raise :class:`SchemaError` naming ``source`` if any of ``columns`` is missing."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: missing column(s) {missing}; found {list(df.columns)}")


def validate_interactions(
    df: pd.DataFrame,
    *,
    source: str = "interactions",
    rating_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Check and normalise an interactions frame; return a clean copy.

    Raises :class:`SchemaError` for missing columns, NaN or non-numeric ids/ratings and
    ratings outside ``rating_range`` (inclusive). Duplicated (user, item) pairs keep the
    latest row and emit a :class:`DuplicateWarning`.
    """
    require_columns(df, [USER, ITEM, RATING], source=source)
    out = df.copy()
    if TIMESTAMP not in out.columns:
        out[TIMESTAMP] = 0
    for col in (USER, ITEM, RATING, TIMESTAMP):
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise SchemaError(
                f"{source}: {int(bad.sum())} NaN or non-numeric value(s) in column {col!r} "
                f"(first at row {first}: {df[col].iloc[first]!r})"
            )
        out[col] = values
    out = out.astype({USER: "int64", ITEM: "int64", RATING: "float64", TIMESTAMP: "int64"})
    if rating_range is not None:
        lo, hi = rating_range
        bad = (out[RATING] < lo) | (out[RATING] > hi)
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise SchemaError(
                f"{source}: {int(bad.sum())} rating(s) outside [{lo}, {hi}] "
                f"(first at row {first}: {out[RATING].iloc[first]})"
            )
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
