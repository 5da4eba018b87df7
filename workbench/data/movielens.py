"""Exact parsers for the three GroupLens MovieLens layouts, into the canonical schema.

Each parser takes the folder that holds the data set's files and returns
``(interactions, items, users)``; ``users`` is None where the data set has none.
Items always carry ``item_id``, ``title`` (year removed), ``year`` (nullable Int64),
``genres`` (tuple of names) and ``text`` (what the text encoders read).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from workbench.data.schema import INTERACTION_COLUMNS, ITEM, TIMESTAMP, USER, SchemaError

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


def _read(path: Path, expected_cols: int, **kwargs) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, header=None, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SchemaError(f"{path}: cannot parse ({err})") from err
    if df.shape[1] != expected_cols:
        raise SchemaError(f"{path}: expected {expected_cols} columns, found {df.shape[1]}")
    return df


def parse_ml_100k(root: Path):
    ratings = _read(root / "u.data", 4, sep="\t")
    ratings.columns = list(INTERACTION_COLUMNS)
    genre_names = _read(root / "u.genre", 2, sep="|", encoding="latin-1").sort_values(1)[0].tolist()
    raw = _read(root / "u.item", 5 + len(genre_names), sep="|", encoding="latin-1", keep_default_na=False)
    flags = raw.iloc[:, 5:].to_numpy(dtype=bool)
    genres = [tuple(g for g, f in zip(genre_names, row) if f) for row in flags]
    items = _items_frame(raw[0], raw[1], genres)
    items["release_date"] = raw[2].replace("", None)
    users = _read(root / "u.user", 5, sep="|", encoding="latin-1", dtype={4: str})
    users.columns = [USER, "age", "gender", "occupation", "zip_code"]
    return ratings, items, users


def parse_ml_1m(root: Path):
    opts = {"sep": "::", "engine": "python", "encoding": "latin-1"}
    ratings = _read(root / "ratings.dat", 4, **opts)
    ratings.columns = list(INTERACTION_COLUMNS)
    raw = _read(root / "movies.dat", 3, **opts)
    items = _items_frame(raw[0], raw[1], [tuple(g.split("|")) for g in raw[2]])
    users = _read(root / "users.dat", 5, dtype={4: str}, **opts)
    users.columns = [USER, "gender", "age", "occupation", "zip_code"]
    return ratings, items, users


def parse_ml_latest_small(root: Path):
    def csv(name: str, cols: list[str]) -> pd.DataFrame:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found")
        df = pd.read_csv(path, encoding="utf-8")
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise SchemaError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
        return df

    r = csv("ratings.csv", ["userId", "movieId", "rating", "timestamp"])
    ratings = r.rename(columns={"userId": USER, "movieId": ITEM})[list(INTERACTION_COLUMNS)]
    movies = csv("movies.csv", ["movieId", "title", "genres"])
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
