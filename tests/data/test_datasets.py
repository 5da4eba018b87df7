"""``workbench.datasets``: names, local folders and zips, import_local, and bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from pathlib import Path

import pandas as pd
import pytest

from workbench import cli
from workbench.data import datasets, download, synthetic
from workbench.data.download import MANIFEST, DownloadError
from workbench.data.schema import DuplicateWarning, SchemaError


def pin(monkeypatch, name: str, md5: str | None) -> None:
    monkeypatch.setitem(datasets.SPECS, name, dataclasses.replace(datasets.SPECS[name], md5=md5))


def load_folder(fake, tmp_path):
    return datasets.load(fake.name, path=fake.write_folder(tmp_path / "src"), cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- names


def test_unknown_name_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set 'ml-10m'") as err:
        datasets.load("ml-10m", cache_dir=tmp_path)
    for choice in ("ml-100k", "ml-1m", "ml-latest-small", "synthetic"):
        assert repr(choice) in str(err.value)


def test_import_local_unknown_name_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set 'movielens'.*'ml-100k', 'ml-1m', 'ml-latest-small'"):
        datasets.import_local("movielens", tmp_path)


def test_pinned_checksums_are_md5_hex():
    for spec in datasets.SPECS.values():
        assert spec.md5 is None or (len(spec.md5) == 32 and int(spec.md5, 16) >= 0)
    assert datasets.SPECS["ml-latest-small"].md5 is None  # republished: trust the .md5 beside it


# --------------------------------------------------------------------------- local folder and zip


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-latest-small"])
def test_local_folder_its_parent_and_zip_give_the_same_data(fake_movielens, tmp_path, monkeypatch, name):
    fake = fake_movielens(name)
    root = fake.write_folder(tmp_path / "src")
    archive = fake.write_zip(tmp_path / "zips")
    if datasets.SPECS[name].md5:
        pin(monkeypatch, name, fake.md5)
    cache = tmp_path / "cache"

    from_root = datasets.load(name, path=root, cache_dir=cache)
    from_parent = datasets.load(name, path=root.parent, cache_dir=cache)  # the unzipped archive's folder
    from_zip = datasets.load(name, path=archive, cache_dir=cache)

    for other in (from_parent, from_zip):
        pd.testing.assert_frame_equal(other.interactions, from_root.interactions)
        pd.testing.assert_frame_equal(other.items, from_root.items)
    assert from_root.source == str(root) and from_zip.source == str(archive)
    assert download.verify_cache(cache / name) is None  # the zip was extracted with a manifest
    assert sorted(p.name for p in cache.iterdir()) == [name]


def test_local_zip_with_wrong_pinned_checksum(fake_movielens, tmp_path):
    archive = fake_movielens("ml-100k").write_zip(tmp_path / "zips")
    cache = tmp_path / "cache"
    pinned = datasets.SPECS["ml-100k"].md5

    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        datasets.load("ml-100k", path=archive, cache_dir=cache)

    assert str(archive) in str(err.value) and pinned in str(err.value)
    assert download.file_md5(archive) in str(err.value)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_local_zip_cut_in_half(fake_movielens, tmp_path):
    archive = fake_movielens("ml-latest-small").write_zip(tmp_path / "zips")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    cache = tmp_path / "cache"

    with pytest.raises(DownloadError, match=r"truncated or corrupt") as err:
        datasets.load("ml-latest-small", path=archive, cache_dir=cache)

    assert str(archive) in str(err.value)
    assert list(cache.iterdir()) == []


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such file or folder"):
        datasets.load("ml-1m", path=tmp_path / "nowhere", cache_dir=tmp_path)


def test_folder_without_the_files_lists_them(fake_movielens, tmp_path):
    root = fake_movielens("ml-1m").write_folder(tmp_path / "src")
    (root / "movies.dat").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"does not contain the ml-1m files \['ratings.dat', 'movies.dat', 'users.dat'\]"
    ):
        datasets.load("ml-1m", path=root, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- import_local


def test_import_local_then_load_offline(fake_movielens, tmp_path):
    fake = fake_movielens("ml-1m")
    cache = tmp_path / "cache"

    dest = datasets.import_local("ml-1m", fake.write_folder(tmp_path / "src").parent, cache_dir=cache)

    assert dest == cache / "ml-1m"
    assert sorted(json.loads((dest / MANIFEST).read_text())["files"]) == sorted(fake.files)
    data = datasets.load("ml-1m", cache_dir=cache, download_ok=False)
    assert data.source == str(dest)
    assert len(data.interactions) == 6
    assert sorted(p.name for p in cache.iterdir()) == ["ml-1m"]  # no temporaries left beside it


def test_import_local_replaces_a_stale_copy(fake_movielens, tmp_path):
    fake = fake_movielens("ml-1m")
    cache = tmp_path / "cache"
    datasets.import_local("ml-1m", fake.write_folder(tmp_path / "old"), cache_dir=cache)
    fake.files["ratings.dat"] += b"3::1::4::978199300\n"

    datasets.import_local("ml-1m", fake.write_folder(tmp_path / "new"), cache_dir=cache)

    assert len(datasets.load("ml-1m", cache_dir=cache, download_ok=False).interactions) == 7


def test_import_local_of_an_incomplete_folder(fake_movielens, tmp_path):
    root = fake_movielens("ml-100k").write_folder(tmp_path / "src")
    (root / "u.genre").unlink()
    with pytest.raises(FileNotFoundError, match=r"does not contain the ml-100k files"):
        datasets.import_local("ml-100k", root, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_import_real_ml_100k(shared_ml100k, tmp_path):
    datasets.import_local("ml-100k", shared_ml100k, cache_dir=tmp_path)
    data = datasets.load("ml-100k", cache_dir=tmp_path, download_ok=False)
    assert len(data.interactions) == 100_000


# --------------------------------------------------------------------------- bad input


def _edit(fake, fname: str, old: bytes, new: bytes) -> None:
    assert old in fake.files[fname], f"{old!r} not in {fname}"
    fake.files[fname] = fake.files[fname].replace(old, new, 1)


def test_missing_column_names_the_file(fake_movielens, tmp_path):
    fake = fake_movielens("ml-100k")
    fake.files["u.data"] = b"".join(line.rsplit(b"\t", 1)[0] + b"\n" for line in fake.files["u.data"].splitlines())
    with pytest.raises(SchemaError, match=r"u\.data: expected 4 columns, found 3"):
        load_folder(fake, tmp_path)


def test_missing_csv_column_names_the_file(fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    _edit(fake, "ratings.csv", b"userId,movieId,rating,timestamp", b"userId,movieId,score,timestamp")
    with pytest.raises(SchemaError, match=r"ratings\.csv: missing column\(s\) \['rating'\]"):
        load_folder(fake, tmp_path)


def test_nan_rating_names_the_file_and_row(fake_movielens, tmp_path):
    fake = fake_movielens("ml-100k")
    _edit(fake, "u.data", b"2\t3\t2\t888551150", b"2\t3\t\t888551150")  # 6th line
    with pytest.raises(
        SchemaError,
        match=r"u\.data: 1 missing, infinite or non-numeric value\(s\) in column 'rating' \(first at line 6",
    ):
        load_folder(fake, tmp_path)


def test_non_numeric_id_names_the_file(fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    _edit(fake, "ratings.csv", b"\n2,1,5.0", b"\nbob,1,5.0")
    with pytest.raises(
        SchemaError, match=r"ratings\.csv: 1 value\(s\) in column 'user_id' .* \(first at line 5: 'bob'\)"
    ):
        load_folder(fake, tmp_path)


@pytest.mark.parametrize(
    ("name", "fname", "old", "new", "shown"),
    [
        ("ml-100k", "u.data", b"1\t1\t5\t", b"1\t1\t6\t", r"outside \[1, 5\] \(first at line 1: 6.0\)"),
        ("ml-1m", "ratings.dat", b"2::3::1::", b"2::3::0::", r"outside \[1, 5\] \(first at line 4: 0.0\)"),
        (
            "ml-latest-small",
            "ratings.csv",
            b"1,4973,0.5",
            b"1,4973,0.0",
            r"outside \[0.5, 5\] \(first at line 4: 0.0\)",
        ),
        ("ml-latest-small", "ratings.csv", b"2,1,5.0", b"2,1,5.5", r"outside \[0.5, 5\] \(first at line 5: 5.5\)"),
    ],
)
def test_out_of_range_rating_names_the_file(fake_movielens, tmp_path, name, fname, old, new, shown):
    fake = fake_movielens(name)
    _edit(fake, fname, old, new)
    with pytest.raises(SchemaError, match=re.escape(fname) + r": 1 rating\(s\) " + shown):
        load_folder(fake, tmp_path)


def test_rating_range_bounds_are_inclusive(fake_movielens, tmp_path):
    data = load_folder(fake_movielens("ml-latest-small"), tmp_path)
    assert data.interactions["rating"].min() == 0.5 and data.interactions["rating"].max() == 5.0


def test_duplicate_rows_keep_the_latest_with_a_warning(fake_movielens, tmp_path):
    fake = fake_movielens("ml-100k")
    # user 1 re-rates item 1 later (5 -> 2), and an older copy of (2, 3) appears last in the file
    fake.files["u.data"] += b"1\t1\t2\t899999999\n2\t3\t5\t800000000\n"

    with pytest.warns(DuplicateWarning, match=r"u\.data: 2 duplicate \(user_id, item_id\) row\(s\) dropped"):
        data = load_folder(fake, tmp_path)

    inter = data.interactions.set_index(["user_id", "item_id"])
    assert len(inter) == 12 and inter.index.is_unique
    assert inter.loc[(1, 1)].tolist() == [2.0, 899999999]
    assert inter.loc[(2, 3)].tolist() == [2.0, 888551150]


def test_rated_item_missing_from_the_item_table(fake_movielens, tmp_path):
    fake = fake_movielens("ml-1m")
    fake.files["ratings.dat"] += b"1::99::4::978300999\n1::77::4::978300998\n"
    with pytest.raises(SchemaError, match=r"ml-1m: 2 rated item id\(s\) missing from the item table, e.g. \[77, 99\]"):
        load_folder(fake, tmp_path)


# --------------------------------------------------------------------------- Dataset and synthetic


def test_summary_of_a_known_data_set(fake_movielens, tmp_path):
    summary = load_folder(fake_movielens("ml-100k"), tmp_path).summary()

    assert summary["dataset"] == "ml-100k"
    assert (summary["n_users"], summary["n_items"], summary["n_interactions"]) == (4, 5, 12)
    assert summary["n_catalogue_items"] == 5
    assert summary["density"] == pytest.approx(12 / 20)
    assert summary["rating_mean"] == pytest.approx((5 + 3 + 4 + 1 + 4 + 2 + 3 + 5 + 4 + 2 + 3 + 5) / 12)
    assert summary["rating_values"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert summary["min_per_user"] == 2
    assert summary["first_interaction"] == "1997-09-22"  # 874965758
    assert summary["last_interaction"] == "1998-04-08"  # 892003052


def test_load_synthetic(tmp_path):
    data = datasets.load("synthetic", size="tiny", seed=3, cache_dir=tmp_path)
    n_users, n_items, _, _ = synthetic.SIZES["tiny"]

    assert data.name == "synthetic" and data.info == {"size": "tiny", "seed": 3}
    assert data.interactions["user_id"].nunique() == n_users and len(data.items) == n_items
    assert data.items["text"].str.endswith(".").all()
    assert data.items["text"].iloc[0].startswith(f"{data.items['title'].iloc[0]} ({data.items['year'].iloc[0]})")
    assert list(tmp_path.iterdir()) == []  # nothing cached for generated data


def test_load_synthetic_unknown_size_lists_sizes():
    with pytest.raises(ValueError, match=r"unknown synthetic size 'huge'; choose one of \[") as err:
        datasets.load("synthetic", size="huge")
    assert all(repr(size) in str(err.value) for size in ("tiny", "small", "ml-1m"))


def test_the_default_cache_is_the_checkouts_data_folder(monkeypatch):
    from workbench.data import datasets

    monkeypatch.delenv("WORKBENCH_DATA_DIR", raising=False)
    root = Path(__file__).resolve().parents[2]
    assert root / "data" == datasets.DEFAULT_DATA_DIR and datasets.data_dir() == root / "data"
    assert (root / "data" / "README.md").is_file()  # the folder the repository ships


# --------------------------------------------------------------------------- the download command


@pytest.mark.parametrize("form", ["zip", "folder", "parent folder"])
def test_download_command_imports_a_local_zip_or_folder(fake_movielens, tmp_path, monkeypatch, capsys, form):
    fake = fake_movielens("ml-1m")
    pin(monkeypatch, "ml-1m", fake.md5)
    source = {
        "zip": lambda: fake.write_zip(tmp_path / "zips"),
        "folder": lambda: fake.write_folder(tmp_path / "src"),
        "parent folder": lambda: fake.write_folder(tmp_path / "src").parent,
    }[form]()
    cache = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(cache))

    assert cli.main(["download", "ml-1m", "--from", str(source)]) == 0

    assert capsys.readouterr().out.strip() == f"ml-1m: {cache / 'ml-1m'}"
    assert download.verify_cache(cache / "ml-1m") is None
    assert len(datasets.load("ml-1m", cache_dir=cache, download_ok=False).interactions) == 6
    assert sorted(p.name for p in cache.iterdir()) == ["ml-1m"]


def test_download_command_refuses_a_bad_local_copy_with_a_message(fake_movielens, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "cache"))
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    monkeypatch.setitem(datasets.SPECS, "ml-1m", dataclasses.replace(datasets.SPECS["ml-1m"], md5=None))

    assert cli.main(["download", "ml-1m", "--from", str(junk)]) == 2
    assert cli.main(["download", "ml-1m", "--from", str(tmp_path / "nowhere")]) == 2

    err = capsys.readouterr().err
    assert f"error: {junk}: not a valid zip archive" in err and "nowhere: no such file or folder" in err
    assert not (tmp_path / "cache" / "ml-1m").exists()


def test_download_command_offline_says_how_to_import_a_local_copy(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBENCH_DATA_URL", f"http://127.0.0.1:{port}")

    assert cli.main(["download", "ml-100k"]) == 2

    err = capsys.readouterr().err
    assert "cannot connect" in err and "workbench download ml-100k --from" in err


def test_download_command_takes_a_deadline_and_a_size_cap(fake_movielens, tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(datasets, "load", lambda name, **kw: seen.update(kw, name=name))
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "cache"))

    assert cli.main(["download", "ml-1m", "--deadline", "30", "--max-mb", "12"]) == 0

    assert seen["name"] == "ml-1m"
    assert (seen["limits"].deadline_s, seen["limits"].max_archive_bytes) == (30, 12 << 20)
