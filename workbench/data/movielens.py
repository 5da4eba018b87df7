"""Exact parsers for the three GroupLens MovieLens layouts, into the canonical schema:
ml-100k's tab and pipe files, ml-1m's ``::`` files, and the CSV layout shared by
ml-latest-small, ml-20m and ml-25m (``ratings.csv``, ``movies.csv``, ``tags.csv``).

Each parser takes the folder that holds the data set's files and returns
``(interactions, items, users)``; ``users`` is None where the data set has none.
Interactions come validated (:func:`workbench.data.schema.validate_interactions`). Ids
must be written as non-negative integers that fit int64; anything else, an empty file or
an unparsable one is a :class:`SchemaError` naming the file and, for a bad value, its
1-based line. Parsing stays vectorised: the file is re-read (as text, to find the line)
only when a column fails.
Items always carry ``item_id``, ``title`` (year removed), ``year`` (nullable Int64),
``genres`` (tuple of names) and ``text`` (what the text encoders read).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.data.schema import (
    INTERACTION_COLUMNS,
    ITEM,
    RATING,
    TIMESTAMP,
    USER,
    SchemaError,
    as_int64,
    excerpt,
    require_columns,
    validate_interactions,
)

# "Title (1995)", "Series (1975-1979)", and ml-100k's direct-to-video "Title (1995) (V)"
_YEAR = re.compile(r"^(.*?)\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)(?:\s*\(V\))?\s*$")


def split_title(raw: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; no year -> ``(title, None)``."""
    raw = str(raw).strip()
    m = _YEAR.match(raw)
    return (m.group(1), int(m.group(2))) if m else (raw, None)


def item_text(title: str, year, genres: tuple[str, ...], tags: list[str] | None = None) -> str:
    """The sentence a text encoder reads for one item."""
    text = title if pd.isna(year) else f"{title} ({int(year)})"
    shown = [g for g in genres if g not in ("unknown", "(no genres listed)")]
    if shown:
        text += ". Genres: " + ", ".join(shown)
    if tags:
        text += ". Tags: " + ", ".join(tags)
    return text + "."


def _items_frame(ids, raw_titles, genres) -> pd.DataFrame:
    pairs = [split_title(t) for t in raw_titles]
    df = pd.DataFrame(
        {
            ITEM: pd.array(ids, dtype="int64"),
            "title": [p[0] for p in pairs],
            "year": pd.array([p[1] for p in pairs], dtype="Int64"),
            "genres": list(genres),
        }
    )
    df["text"] = [item_text(t, y, g) for t, y, g in zip(df["title"], df["year"], df["genres"])]
    return df


def _read(path: Path, expected_cols: int | None = None, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` (no header unless ``header`` is given) whose every failure -- an
    empty or unparsable file, a wrong column count -- is a SchemaError naming ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, **{"header": None, **kwargs})
    except pd.errors.EmptyDataError as err:
        raise SchemaError(f"{path}: empty file") from err
    except (ValueError, csv.Error) as err:  # ParserError, UnicodeDecodeError, the python engine's csv errors
        raise SchemaError(f"{path}: cannot parse ({excerpt(str(err))})") from err
    if df.empty:
        raise SchemaError(f"{path}: no data rows")
    if expected_cols is not None and df.shape[1] != expected_cols:
        raise SchemaError(f"{path}: expected {expected_cols} columns, found {df.shape[1]}")
    return df


def _line_locator(path: Path, read: dict) -> Callable[[int], str]:
    """Maps a data row (0-based, counted as pandas does: blank lines skipped, after the
    header) to ``"line N"`` (1-based) of ``path``. Reads the file only when called, that
    is on an error path."""
    sep = read.get("sep", ",")
    blank = " \t\r\n".replace(sep, "") if len(sep) == 1 else " \t\r\n"
    header_lines = 0 if read.get("header", "infer") is None else 1

    def locate(row: int) -> str:
        wanted = row + header_lines
        with open(path, encoding=read.get("encoding", "utf-8"), errors="replace") as f:
            for number, line in enumerate(f, 1):
                if line.strip(blank):
                    if wanted == 0:
                        return f"line {number}"
                    wanted -= 1
        return f"row {row}"

    return locate


def _integers(df: pd.DataFrame, path: Path, columns: dict, *, read: dict, signed=()) -> pd.DataFrame:
    """Convert ``columns`` of ``df`` (label -> schema name) to int64, refusing anything but
    integers that fit int64 (non-negative unless the name is in ``signed``). Fast path:
    pandas' own integer parse; a column it could not read as integers ("1.5", "", 2**70)
    is re-read as text so that the error quotes the value and names its line."""
    locate = _line_locator(path, read)
    for key, name in columns.items():
        values = df[key]
        if not pd.api.types.is_integer_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
            values = pd.read_csv(path, **{**read, "usecols": [key], "dtype": str, "keep_default_na": False})[key]
        df[key] = as_int64(values, source=str(path), column=name, signed=name in signed, locate=locate)
    return df


def _ratings(path: Path, columns: dict, rating_range, **read) -> pd.DataFrame:
    """A ratings file as validated interactions; ``columns`` maps its columns (positions,
    or a CSV's header names) to the schema's, in schema order."""
    read = {"header": None, **read}
    raw = _read(path, 4 if read["header"] is None else None, **read)
    require_columns(raw, list(columns), source=str(path))
    ids = {key: name for key, name in columns.items() if name != RATING}
    raw = _integers(raw, path, ids, read=read, signed=(TIMESTAMP,))
    frame = raw[list(columns)].rename(columns=columns)
    return validate_interactions(frame, source=str(path), rating_range=rating_range, locate=_line_locator(path, read))


def _genre_flags(raw: pd.DataFrame, path: Path, read: dict) -> np.ndarray:
    """u.item's genre columns (5 on) as a bool matrix; each flag must be 0 or 1."""
    flags = raw.iloc[:, 5:].apply(pd.to_numeric, errors="coerce")
    ok = flags.isin([0, 1]).to_numpy()
    if not ok.all():
        row, col = (int(i) for i in np.argwhere(~ok)[0])
        raise SchemaError(
            f"{path}: genre flag {col + 1} must be 0 or 1 "
            f"(first at {_line_locator(path, read)(row)}: {excerpt(raw.iat[row, 5 + col])})"
        )
    return flags.to_numpy(dtype=bool)


def parse_ml_100k(root: Path, *, rating_range: tuple[float, float] | None = None):
    ratings = _ratings(
        root / "u.data", dict(zip(range(4), INTERACTION_COLUMNS)), rating_range, sep="\t", encoding="latin-1"
    )
    genre_names = _read(root / "u.genre", 2, sep="|", encoding="latin-1").sort_values(1)[0].tolist()
    read = {"header": None, "sep": "|", "encoding": "latin-1", "keep_default_na": False}
    raw = _integers(_read(root / "u.item", 5 + len(genre_names), **read), root / "u.item", {0: ITEM}, read=read)
    flags = _genre_flags(raw, root / "u.item", read)
    genres = [tuple(g for g, f in zip(genre_names, row) if f) for row in flags]
    items = _items_frame(raw[0], raw[1].astype(str), genres)
    items["release_date"] = raw[2].replace("", None)
    read = {"header": None, "sep": "|", "encoding": "latin-1", "dtype": {4: str}}
    users = _integers(_read(root / "u.user", 5, **read), root / "u.user", {0: USER}, read=read)
    users.columns = [USER, "age", "gender", "occupation", "zip_code"]
    return ratings, items, users


def parse_ml_1m(root: Path, *, rating_range: tuple[float, float] | None = None):
    opts = {"header": None, "sep": "::", "engine": "python", "encoding": "latin-1"}
    ratings = _ratings(root / "ratings.dat", dict(zip(range(4), INTERACTION_COLUMNS)), rating_range, **opts)
    read = {**opts, "dtype": {1: str, 2: str}, "keep_default_na": False}
    raw = _integers(_read(root / "movies.dat", 3, **read), root / "movies.dat", {0: ITEM}, read=read)
    items = _items_frame(raw[0], raw[1], [tuple(g.split("|")) for g in raw[2]])
    read = {**opts, "dtype": {4: str}}
    users = _integers(_read(root / "users.dat", 5, **read), root / "users.dat", {0: USER}, read=read)
    users.columns = [USER, "gender", "age", "occupation", "zip_code"]
    return ratings, items, users


def parse_movielens_csv(root: Path, *, rating_range: tuple[float, float] | None = None):
    """The CSV layout of ml-latest-small, ml-20m and ml-25m (half-star ratings, no users)."""
    names = {"userId": USER, "movieId": ITEM, "rating": RATING, "timestamp": TIMESTAMP}
    ratings = _ratings(root / "ratings.csv", names, rating_range, header=0, encoding="utf-8")
    path = root / "movies.csv"
    read = {"header": 0, "encoding": "utf-8", "dtype": {"title": str, "genres": str}, "keep_default_na": False}
    movies = _read(path, **read)
    require_columns(movies, ["movieId", "title", "genres"], source=str(path))
    movies = _integers(movies, path, {"movieId": ITEM}, read=read)
    # tags.csv is read by read_tags: which tags an evaluation may use depends on its split
    items = _items_frame(movies["movieId"], movies["title"], [tuple(g.split("|")) for g in movies["genres"]])
    return ratings, items, None


def read_tags(root: Path) -> pd.DataFrame | None:
    """``tags.csv`` (ml-latest-small, ml-20m, ml-25m) as ``user_id, item_id, tag, timestamp``;
    None where the data set has no tags. Item text never includes them by itself: see
    :func:`workbench.data.text.with_tags`, which takes the split."""
    path = root / "tags.csv"
    if not path.is_file():
        return None
    t = pd.read_csv(path, encoding="utf-8", keep_default_na=False, dtype={"tag": str})
    missing = [c for c in ("userId", "movieId", "tag", "timestamp") if c not in t.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}; found {list(t.columns)[:10]}")
    t = t.rename(columns={"userId": USER, "movieId": ITEM})[[USER, ITEM, "tag", TIMESTAMP]]
    for col in (USER, ITEM, TIMESTAMP):
        if not pd.api.types.is_integer_dtype(t[col]):
            raise SchemaError(f"{path}: column {col!r} must hold integers, found {t[col].dtype}")
    return t.assign(tag=t["tag"].str.strip()).query("tag != ''").reset_index(drop=True)
