"""Exact parsing of the three GroupLens layouts (fake files built in conftest) and the real ml-100k."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.data import datasets, movielens, text
from workbench.data.schema import SchemaError


def _item(items: pd.DataFrame, item_id: int) -> dict:
    rows = items[items["item_id"] == item_id]
    assert len(rows) == 1, f"item {item_id} appears {len(rows)} times"
    return rows.iloc[0].to_dict()


# --------------------------------------------------------------------------- titles and text


@pytest.mark.parametrize(
    ("raw", "title", "year"),
    [
        ("Toy Story (1995)", "Toy Story", 1995),
        ("Toy Story (1995) ", "Toy Story", 1995),
        ("(500) Days of Summer (2009)", "(500) Days of Summer", 2009),
        (
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            "City of Lost Children, The (Cité des enfants perdus, La)",
            1995,
        ),
        ("1984 (1984)", "1984", 1984),
        ("Fawlty Towers (1975-1979)", "Fawlty Towers", 1975),
        (
            "Land Before Time III: The Time of the Great Giving (1995) (V)",
            "Land Before Time III: The Time of the Great Giving",
            1995,
        ),  # ml-100k item 1412
        ("Death Note: Desu nôto (2006–2007)", "Death Note: Desu nôto", 2006),
        ("Black Mirror", "Black Mirror", None),
        ("Babylon 5", "Babylon 5", None),
        ("unknown", "unknown", None),
    ],
)
def test_split_title(raw, title, year):
    assert movielens.split_title(raw) == (title, year)


def test_item_text_reads_as_a_sentence():
    assert movielens.item_text("Heat", 1995, ("Action", "Crime")) == "Heat (1995). Genres: Action, Crime."
    assert movielens.item_text("Black Mirror", pd.NA, ("(no genres listed)",)) == "Black Mirror."
    assert movielens.item_text("unknown", None, ("unknown",)) == "unknown."
    assert (
        movielens.item_text("Toy Story", 1995, ("Comedy",), ["pixar", "funny"])
        == "Toy Story (1995). Genres: Comedy. Tags: pixar, funny."
    )


# --------------------------------------------------------------------------- ml-100k


def test_ml_100k_exact_values(fake_movielens, tmp_path):
    root = fake_movielens("ml-100k").write_folder(tmp_path)

    ratings, items, users = movielens.parse_ml_100k(root)

    assert len(ratings) == 12
    assert ratings.iloc[0].tolist() == [1, 1, 5, 874965758]
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert items["item_id"].tolist() == [1, 2, 3, 4, 5]
    toy = _item(items, 1)
    assert (toy["title"], toy["year"], toy["genres"]) == ("Toy Story", 1995, ("Animation", "Children's", "Comedy"))
    assert toy["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert toy["release_date"] == "01-Jan-1995"
    cafe = _item(items, 2)
    assert (cafe["title"], cafe["year"], cafe["genres"]) == ("Café", 1995, ("Comedy", "Romance"))
    assert _item(items, 3)["genres"] == ("Action", "Adventure", "Romance", "Sci-Fi", "War")
    assert _item(items, 5)["title"] == "Misérables, Les"
    unknown = _item(items, 4)  # like the real item 267: no title year, no dates
    assert unknown["title"] == "unknown" and pd.isna(unknown["year"]) and pd.isna(unknown["release_date"])
    assert unknown["genres"] == ("unknown",) and unknown["text"] == "unknown."
    assert users.columns.tolist() == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert users["zip_code"].tolist() == ["85711", "94043", "01002", "T8H1N"]  # leading zero kept
    assert users.iloc[1][["user_id", "age", "gender", "occupation"]].tolist() == [2, 53, "F", "other"]


def test_ml_100k_genre_names_follow_the_ids_in_u_genre(fake_movielens, tmp_path):
    fake = fake_movielens("ml-100k")
    lines = fake.files["u.genre"].decode("latin-1").split()
    fake.files["u.genre"] = ("\n".join(reversed(lines)) + "\n").encode("latin-1")  # same ids, other line order

    _, items, _ = movielens.parse_ml_100k(fake.write_folder(tmp_path))

    assert _item(items, 1)["genres"] == ("Animation", "Children's", "Comedy")


def test_ml_100k_utf8_would_be_mojibake(fake_movielens, tmp_path):
    """u.item really is latin-1: the same title stored as UTF-8 must not read back as 'Café'."""
    fake = fake_movielens("ml-100k")
    fake.files["u.item"] = fake.files["u.item"].decode("latin-1").encode("utf-8")

    _, items, _ = movielens.parse_ml_100k(fake.write_folder(tmp_path))

    assert _item(items, 2)["title"] == "CafÃ©"


def test_ml_100k_wrong_genre_count_names_the_file(fake_movielens, tmp_path):
    fake = fake_movielens("ml-100k")
    fake.files["u.item"] = b"\n".join(line.rsplit(b"|", 1)[0] for line in fake.files["u.item"].splitlines()) + b"\n"
    root = fake.write_folder(tmp_path)

    with pytest.raises(SchemaError, match=r"u\.item: expected 24 columns, found 23"):
        movielens.parse_ml_100k(root)


def test_missing_file_is_named(fake_movielens, tmp_path):
    root = fake_movielens("ml-100k").write_folder(tmp_path)
    (root / "u.user").unlink()
    with pytest.raises(FileNotFoundError, match=r"u\.user: file not found"):
        movielens.parse_ml_100k(root)


# --------------------------------------------------------------------------- ml-1m


def test_ml_1m_exact_values(fake_movielens, tmp_path):
    root = fake_movielens("ml-1m").write_folder(tmp_path)

    ratings, items, users = movielens.parse_ml_1m(root)

    assert ratings.values.tolist() == [
        [1, 1, 5, 978300760],
        [1, 2, 3, 978302109],
        [2, 1, 4, 978298413],
        [2, 3, 1, 978299000],
        [3, 2, 2, 978220179],
        [3, 3, 5, 978199279],
    ]
    city = _item(items, 2)
    assert city["title"] == "Cité des enfants perdus, La (City of Lost Children, The)"
    assert (city["year"], city["genres"]) == (1995, ("Adventure", "Sci-Fi"))
    trek = _item(items, 3)  # a single colon is not the '::' separator
    assert (trek["title"], trek["year"]) == ("Star Trek: Generations", 1994)
    assert trek["text"] == "Star Trek: Generations (1994). Genres: Action, Adventure, Sci-Fi."
    assert users.columns.tolist() == ["user_id", "gender", "age", "occupation", "zip_code"]
    assert users.iloc[0].tolist() == [1, "F", 1, 10, "48067"]
    assert users["zip_code"].iloc[2] == "02460"


def test_ml_1m_bad_separator_names_the_file(fake_movielens, tmp_path):
    fake = fake_movielens("ml-1m")
    fake.files["ratings.dat"] = fake.files["ratings.dat"].replace(b"::", b",")
    with pytest.raises(SchemaError, match=r"ratings\.dat: expected 4 columns, found 1"):
        movielens.parse_ml_1m(fake.write_folder(tmp_path))


# --------------------------------------------------------------------------- ml-latest-small


def test_ml_latest_small_exact_values(fake_movielens, tmp_path):
    root = fake_movielens("ml-latest-small").write_folder(tmp_path)

    ratings, items, users = movielens.parse_movielens_csv(root)

    assert users is None
    assert ratings["rating"].tolist() == [4.0, 3.5, 0.5, 5.0, 4.5, 2.5, 1.0, 4.5]
    assert ratings[["user_id", "item_id"]].iloc[-1].tolist() == [3, 4973]
    president = _item(items, 11)  # quoted title with a comma
    assert (president["title"], president["year"]) == ("American President, The", 1995)
    assert president["genres"] == ("Comedy", "Drama", "Romance")
    assert president["text"] == "American President, The (1995). Genres: Comedy, Drama, Romance."  # tags: by split
    amelie = _item(items, 4973)
    assert (amelie["title"], amelie["year"]) == ("Amélie (Fabuleux destin d'Amélie Poulain, Le)", 2001)
    death_note = _item(items, 171749)
    assert (death_note["title"], death_note["year"]) == ("Death Note: Desu nôto", 2006)
    assert death_note["genres"] == ("(no genres listed)",)
    assert death_note["text"] == "Death Note: Desu nôto (2006)."
    mirror = _item(items, 176601)
    assert mirror["title"] == "Black Mirror" and pd.isna(mirror["year"]) and mirror["text"] == "Black Mirror."
    assert "Tags:" not in " ".join(items["text"])  # the split decides (workbench.data.text)


def test_ml_latest_small_tags_are_read_apart_and_join_the_text_through_the_split(fake_movielens, tmp_path):
    root = fake_movielens("ml-latest-small").write_folder(tmp_path)
    ratings, items, _ = movielens.parse_movielens_csv(root)

    tags = movielens.read_tags(root)

    assert tags.columns.tolist() == ["user_id", "item_id", "tag", "timestamp"]
    assert tags["tag"].tolist() == ["pixar", "funny", "Funny", "politics, romance"]  # trimmed
    every = text.with_tags(items, tags, interactions=ratings, train=ratings, policy="all")
    # lower-cased, most frequent first ("funny" twice, "pixar" once)
    assert _item(every, 1)["text"] == (
        "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy. Tags: funny, pixar."
    )
    assert _item(every, 11)["text"].endswith("Tags: politics, romance.")


def test_ml_latest_small_without_tags_file(fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    del fake.files["tags.csv"]

    assert movielens.read_tags(fake.write_folder(tmp_path)) is None


def test_ml_latest_small_bad_tags_file_names_it(fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    fake.files["tags.csv"] = b"userId,movieId,tag\n1,1,x\n"
    with pytest.raises(SchemaError, match=r"tags\.csv: missing column\(s\) \['timestamp'\]"):
        movielens.read_tags(fake.write_folder(tmp_path))
    fake.files["tags.csv"] = b"userId,movieId,tag,timestamp\n1,x1,a,5\n"
    with pytest.raises(SchemaError, match=r"tags\.csv: column 'item_id' must hold integers"):
        movielens.read_tags(fake.write_folder(tmp_path))


def test_ml_latest_small_missing_column_names_the_file(fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    fake.files["movies.csv"] = fake.files["movies.csv"].replace(b"movieId,title,genres", b"movieId,name,genres", 1)
    with pytest.raises(SchemaError, match=r"movies\.csv: missing column\(s\) \['title'\]"):
        movielens.parse_movielens_csv(fake.write_folder(tmp_path))


# --------------------------------------------------------------------------- canonical schema via load


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-latest-small"])
def test_load_returns_the_canonical_schema(fake_movielens, tmp_path, name):
    data = datasets.load(name, path=fake_movielens(name).write_folder(tmp_path), cache_dir=tmp_path / "cache")

    assert data.interactions.dtypes.astype(str).to_dict() == {
        "user_id": "int64",
        "item_id": "int64",
        "rating": "float64",
        "timestamp": "int64",
    }
    items = data.items
    assert items.columns[:5].tolist() == ["item_id", "title", "year", "genres", "text"]
    assert items["item_id"].dtype == "int64" and str(items["year"].dtype) == "Int64"
    assert pd.api.types.is_string_dtype(items["title"]) and pd.api.types.is_string_dtype(items["text"])
    assert all(isinstance(g, tuple) and all(isinstance(x, str) for x in g) for g in items["genres"])
    assert items["item_id"].is_unique
    assert (data.users is None) == (name == "ml-latest-small")
    if data.users is not None:
        assert data.users["user_id"].dtype == "int64"
        assert set(data.interactions["user_id"]) <= set(data.users["user_id"])
    assert not (tmp_path / "cache").exists()  # a local folder is read in place


# --------------------------------------------------------------------------- the real ml-100k


@pytest.mark.slow
def test_real_ml_100k(shared_ml100k, tmp_path):
    data = datasets.load("ml-100k", path=shared_ml100k, cache_dir=tmp_path / "cache")

    inter, items = data.interactions, data.items
    assert (inter["user_id"].nunique(), inter["item_id"].nunique(), len(inter)) == (943, 1682, 100000)
    assert len(items) == 1682 and len(data.users) == 943
    assert sorted(inter["rating"].unique()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert not inter.duplicated(["user_id", "item_id"]).any()
    assert inter.groupby("user_id").size().min() == 20  # GroupLens kept users with >= 20 ratings
    toy, star_wars = _item(items, 1), _item(items, 50)
    assert (toy["title"], toy["year"]) == ("Toy Story", 1995)
    assert toy["genres"] == ("Animation", "Children's", "Comedy")
    assert (star_wars["title"], star_wars["year"]) == ("Star Wars", 1977)
    assert star_wars["genres"] == ("Action", "Adventure", "Romance", "Sci-Fi", "War")
    assert (_item(items, 543)["title"], _item(items, 543)["year"]) == ("Misérables, Les", 1995)  # latin-1
    assert _item(items, 1412)["year"] == 1995  # "... (1995) (V)": a direct-to-video release
    assert items.loc[items["year"].isna(), "item_id"].tolist() == [267]  # the one "unknown" entry
    summary = data.summary()
    assert (summary["first_interaction"], summary["last_interaction"]) == ("1997-09-20", "1998-04-22")
    assert summary["density"] == pytest.approx(100000 / (943 * 1682))


# --------------------------------------------------------------------------- ids: strict, with file and line

# Text that is not a non-negative integer fitting int64; each must be refused, never coerced.
BAD_IDS = ["1.5", "-7", str(2**70), str(2**63), "", "abc", "1.0", "1e3", "0x10", "\u0663", "True"]
LAYOUTS = {  # file -> (parser, separator, header lines, line to spoil, field holding an id)
    "u.data": (movielens.parse_ml_100k, "\t", 0, 3, 0),
    "u.item": (movielens.parse_ml_100k, "|", 0, 2, 0),
    "u.user": (movielens.parse_ml_100k, "|", 0, 4, 0),
    "ratings.dat": (movielens.parse_ml_1m, "::", 0, 5, 1),
    "movies.dat": (movielens.parse_ml_1m, "::", 0, 2, 0),
    "ratings.csv": (movielens.parse_movielens_csv, ",", 1, 4, 0),
    "movies.csv": (movielens.parse_movielens_csv, ",", 1, 3, 0),
}


def _dataset_of(fname: str) -> str:
    return {"dat": "ml-1m", "csv": "ml-latest-small"}.get(fname.rsplit(".", 1)[-1], "ml-100k")


def _spoil(content: bytes, sep: str, line: int, field: int, value: str, encoding: str = "latin-1") -> bytes:
    lines = content.decode(encoding).split("\n")
    fields = lines[line - 1].split(sep)
    fields[field] = value
    lines[line - 1] = sep.join(fields)
    return "\n".join(lines).encode("utf-8" if encoding == "utf-8" else encoding, errors="strict")


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("fname", list(LAYOUTS))
def test_ids_that_are_not_int64_integers_are_refused_with_file_and_line(fake_movielens, tmp_path, fname, bad):
    parse, sep, _, line, field = LAYOUTS[fname]
    fake = fake_movielens(_dataset_of(fname))
    encoding = "utf-8" if fname.endswith(".csv") else "latin-1"
    if bad == "\u0663" and encoding == "latin-1":
        bad = "\xb3"  # latin-1 has no Arabic-Indic digit; superscript three is its nearest trap
    fake.files[fname] = _spoil(fake.files[fname], sep, line, field, bad, encoding)

    with pytest.raises(SchemaError) as err:
        parse(fake.write_folder(tmp_path))

    message = str(err.value)
    assert f"{fname}: " in message and re.search(rf"\bline {line}\b", message), message
    assert f": {bad!r})" in message or f": {bad})" in message, message  # the value, quoted or as a number


def test_fractional_timestamp_is_refused_with_file_and_line(fake_movielens, tmp_path):
    fake = fake_movielens("ml-100k")
    fake.files["u.data"] = _spoil(fake.files["u.data"], "\t", 6, 3, "888551150.5")
    with pytest.raises(SchemaError, match=r"u\.data: .*'timestamp'.* line 6: '888551150\.5'"):
        movielens.parse_ml_100k(fake.write_folder(tmp_path))


def test_line_numbers_count_blank_lines_and_the_header(fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    lines = fake.files["ratings.csv"].split(b"\n")
    lines[5] = lines[5].replace(b"2,", b"-2,", 1)  # line 6
    lines.insert(2, b"")  # a blank line 3: the bad row is now on line 7
    fake.files["ratings.csv"] = b"\n".join(lines)
    with pytest.raises(SchemaError, match=r"ratings\.csv: .*'user_id'.* line 7: -2\)"):
        movielens.parse_movielens_csv(fake.write_folder(tmp_path))


@pytest.mark.parametrize(
    ("fname", "content"),
    [
        ("u.data", b""),
        ("u.data", b"\n\n"),
        ("u.item", b""),
        ("u.user", b""),
        ("ratings.dat", b""),
        ("movies.dat", b""),
        ("ratings.csv", b""),
        ("ratings.csv", b"userId,movieId,rating,timestamp\n"),
        ("movies.csv", b"movieId,title,genres\n"),
    ],
)
def test_empty_files_are_a_schema_error_naming_the_file(fake_movielens, tmp_path, fname, content):
    fake = fake_movielens(_dataset_of(fname))
    fake.files[fname] = content
    parse = LAYOUTS[fname][0]
    with pytest.raises(SchemaError, match=rf"{re.escape(fname)}: (empty file|no data rows)"):
        parse(fake.write_folder(tmp_path))


def test_genre_flags_other_than_0_or_1_are_refused(fake_movielens, tmp_path):
    fake = fake_movielens("ml-100k")
    fake.files["u.item"] = _spoil(fake.files["u.item"], "|", 3, 7, "yes")
    with pytest.raises(SchemaError, match=r"u\.item: .*genre flag.* line 3: 'yes'"):
        movielens.parse_ml_100k(fake.write_folder(tmp_path))


def test_numeric_titles_and_genres_parse_as_text(fake_movielens, tmp_path):
    fake = fake_movielens("ml-1m")
    fake.files["movies.dat"] = b"1::1984::1\n2::2001::2\n3::42::3\n"
    _, items, _ = movielens.parse_ml_1m(fake.write_folder(tmp_path))
    assert items["title"].tolist() == ["1984", "2001", "42"] and items["genres"].tolist() == [("1",), ("2",), ("3",)]


# --------------------------------------------------------------------------- properties (hypothesis)

_FIELD = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    st.sampled_from(["", " ", "1.5", "-7", "0", "+3", " 4 ", "nan", "inf", "1e3", "\u0663", "\x00", '"', "::"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=6),
)


def _lines(sep: str):
    return st.lists(st.lists(_FIELD, max_size=6).map(sep.join), max_size=8)


def _write(root: Path, fname: str, content: bytes) -> None:
    (root / fname).write_bytes(content)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fname=st.sampled_from(["u.data", "u.item", "u.user"]),
    lines=_lines("\t") | _lines("|"),
    junk=st.none() | st.binary(max_size=64),
)
def test_random_ml_100k_lines_raise_nothing_but_schema_error(fake_movielens, fname, lines, junk):
    with tempfile.TemporaryDirectory() as tmp:
        root = fake_movielens("ml-100k").write_folder(Path(tmp))
        _write(root, fname, junk if junk is not None else "\n".join(lines).encode("utf-8"))
        try:
            inter, items, _ = movielens.parse_ml_100k(root, rating_range=(1, 5))
        except SchemaError as err:
            assert len(str(err)) < 400 + len(tmp)
            return
    assert inter.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]
    assert (inter[["user_id", "item_id"]] >= 0).all().all() and inter["rating"].between(1, 5).all()
    assert items["item_id"].dtype == "int64" and (items["item_id"] >= 0).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["ml-1m", "ml-latest-small"]), data=st.data())
def test_random_ratings_lines_of_other_layouts_raise_nothing_but_schema_error(fake_movielens, name, data):
    fname, sep = {"ml-1m": ("ratings.dat", "::"), "ml-latest-small": ("ratings.csv", ",")}[name]
    lines = data.draw(_lines(sep))
    header = "userId,movieId,rating,timestamp\n" if name == "ml-latest-small" else ""
    with tempfile.TemporaryDirectory() as tmp:
        root = fake_movielens(name).write_folder(Path(tmp))
        _write(root, fname, (header + "\n".join(lines)).encode("utf-8"))
        parse = movielens.parse_ml_1m if name == "ml-1m" else movielens.parse_movielens_csv
        try:
            inter, _, _ = parse(root)
        except SchemaError:
            return
    assert inter.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]
    assert (inter[["user_id", "item_id"]] >= 0).all().all()


_ID = st.integers(0, 2**63 - 1)
_ROWS = st.lists(
    st.tuples(_ID, _ID, st.integers(1, 10).map(lambda r: r / 2), st.integers(-(2**62), 2**63 - 1)),
    min_size=1,
    max_size=25,
    unique_by=lambda r: (r[0], r[1]),
)


RATINGS_FILES = {  # layout -> (file, separator, header)
    "ml-100k": ("u.data", "\t", ""),
    "ml-1m": ("ratings.dat", "::", ""),
    "ml-latest-small": ("ratings.csv", ",", "userId,movieId,rating,timestamp\n"),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_ROWS, blank_every=st.integers(0, 4), name=st.sampled_from(list(RATINGS_FILES)))
def test_well_formed_ratings_round_trip_exactly(fake_movielens, rows, blank_every, name):
    fname, sep, header = RATINGS_FILES[name]
    text = []
    for n, (u, i, r, t) in enumerate(rows):
        text.append(sep.join([str(u), str(i), f"{r:g}", str(t)]))
        if blank_every and n % blank_every == 0:
            text.append("")
    with tempfile.TemporaryDirectory() as tmp:
        root = fake_movielens(name).write_folder(Path(tmp))
        _write(root, fname, (header + "\n".join(text) + "\n").encode("utf-8"))
        parse = {"ml-100k": movielens.parse_ml_100k, "ml-1m": movielens.parse_ml_1m}.get(
            name, movielens.parse_movielens_csv
        )
        inter, _, _ = parse(root)
    assert [list(r) for r in inter.itertuples(index=False)] == [list(r) for r in rows]
    assert inter.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.tuples(_ID, _ID), min_size=1, max_size=15, unique_by=lambda r: r),
    bad=st.sampled_from([b for b in BAD_IDS if b != "\u0663"]),
    where=st.integers(0, 15),
    column=st.sampled_from([0, 1]),
)
def test_a_bad_id_anywhere_is_reported_at_its_line(fake_movielens, rows, bad, where, column):
    lines = [f"{u}\t{i}\t3\t1" for u, i in rows]
    where = min(where, len(lines))
    fields = ["5", "5", "3", "1"]
    fields[column] = bad
    lines.insert(where, "\t".join(fields))
    with tempfile.TemporaryDirectory() as tmp:
        root = fake_movielens("ml-100k").write_folder(Path(tmp))
        _write(root, "u.data", ("\n".join(lines) + "\n").encode())
        with pytest.raises(SchemaError) as err:
            movielens.parse_ml_100k(root)
    assert "u.data: " in str(err.value)
    assert re.search(rf"line {where + 1}\b", str(err.value)), str(err.value)
