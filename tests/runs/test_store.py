"""Results store: sidecars in, one DataFrame out; safe with parallel writers."""

from __future__ import annotations

import json
from multiprocessing import get_context

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.cli import main
from workbench.runs import store
from workbench.runs.records import CorruptRecord, CorruptRecordWarning


def _sidecar(folder, i: int, status: str = "ok"):
    path = folder / f"01_demo__{i}.json"
    path.write_text(
        json.dumps(
            {
                "notebook": "01_demo",
                "status": status,
                "error": None if status == "ok" else {"ename": "E"},
                "wall_time_s": 1.5,
                "context": {
                    "parameters": {"i": i, "name": f"n{i}"},
                    "dataset": "synthetic",
                    "seed": 3,
                    "device": "cpu",
                    "torch_threads": 2,
                    "smoke": True,
                    "git_commit": "abc",
                    "started_at": f"2026-01-01T00:00:{i:02d}",
                },
                "results": {"score": i / 10, "label": "x", "nested": {"a": i}},
                "figures": {},
            }
        )
    )
    return path


def _writer(args):
    db, paths = args
    for p in paths:
        store.add(db, p)
    return len(paths)


def test_frame_has_parameters_context_and_numeric_results(tmp_path):
    db = tmp_path / "s.sqlite"
    for i in range(3):
        store.add(db, _sidecar(tmp_path, i, "ok" if i else "failed"))
    df = store.frame(db)
    assert len(df) == 3
    assert df["param.i"].tolist() == [0, 1, 2]
    assert df["score"].tolist() == [0.0, 0.1, 0.2]
    assert df["nested.a"].tolist() == [0, 1, 2]
    assert df["status"].tolist() == ["failed", "ok", "ok"]
    assert set(df["dataset"]) == {"synthetic"}
    store.add(db, _sidecar(tmp_path, 1))  # re-adding replaces, never duplicates
    assert len(store.frame(db)) == 3
    assert len(store.frame(db, notebook="01_demo")) == 3 and store.frame(db, notebook="02_x").empty


def test_parallel_writers_lose_nothing(tmp_path):
    db = tmp_path / "s.sqlite"
    paths = [_sidecar(tmp_path, i) for i in range(40)]
    chunks = [(db, paths[k::4]) for k in range(4)]
    with get_context("spawn").Pool(4) as pool:
        assert sum(pool.map(_writer, chunks)) == 40
    df = store.frame(db)
    assert sorted(df["param.i"]) == list(range(40))


# --------------------------------------------------------------------------- corrupt records

#: sidecars that are no run record: truncated, empty object, a list, lists where scalars belong, a bad table
CORRUPT = {
    "01_demo__truncated.json": '{"notebook": "01_demo", "status": "o',
    "01_demo__empty.json": "{}",
    "01_demo__list.json": "[]",
    "01_demo__status_list.json": None,  # filled in below from a good record
    "01_demo__seed_list.json": None,
    "01_demo__bad_table.json": None,
    "01_demo__not_utf8.json": b"\xff\xfe{",
}


def _corrupt_sidecars(folder):
    good = json.loads(_sidecar(folder, 99).read_text())
    (folder / "01_demo__99.json").unlink()
    variants = {
        "01_demo__status_list.json": {**good, "status": ["ok"]},
        "01_demo__seed_list.json": {**good, "context": {**good["context"], "seed": [1, 2]}},
        "01_demo__bad_table.json": {**good, "results": {"t": {"__dataframe__": 1}}},
    }
    paths = []
    for name, text in CORRUPT.items():
        text = json.dumps(variants[name]) if text is None else text
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        paths.append(path)
    return paths


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if "rebuild" in p.name or p.name.startswith(f".{store.DB_NAME}"))


def test_corrupt_sidecars_are_skipped_with_a_warning_naming_the_file(tmp_path):
    runs_dir = tmp_path / "runs"
    run = runs_dir / "20260101-000000"
    run.mkdir(parents=True)
    for i in range(2):
        _sidecar(run, i)
    bad = _corrupt_sidecars(run)
    with pytest.warns(CorruptRecordWarning) as caught:
        db = store.rebuild(runs_dir)
    messages = " ".join(str(w.message) for w in caught)
    for path in bad:
        assert str(path.relative_to(runs_dir)) in messages or str(path) in messages, path.name
    assert sorted(store.frame(db)["param.i"]) == [0, 1]  # the good records are all there
    assert _leftovers(runs_dir) == []


def test_a_strict_rebuild_refuses_a_corrupt_sidecar_by_name_and_keeps_the_old_store(tmp_path):
    runs_dir = tmp_path / "runs"
    run = runs_dir / "20260101-000000"
    run.mkdir(parents=True)
    store.add(runs_dir / store.DB_NAME, _sidecar(run, 0), root=runs_dir)
    before = (runs_dir / store.DB_NAME).read_bytes()
    (run / "01_demo__1.json").write_text("[]")
    with pytest.raises(CorruptRecord, match=r"01_demo__1\.json"):
        store.rebuild(runs_dir, strict=True)
    assert (runs_dir / store.DB_NAME).read_bytes() == before
    assert _leftovers(runs_dir) == []


def test_an_interrupted_rebuild_leaves_no_temporary_file(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    _sidecar(runs_dir, 0)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_insert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.rebuild(runs_dir)
    assert _leftovers(runs_dir) == [] and not (runs_dir / store.DB_NAME).exists()


def test_cli_store_rebuild_warns_by_file_or_refuses_with_strict(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    _sidecar(runs_dir, 0)
    (runs_dir / "01_demo__1.json").write_text('{"notebook": ')
    assert main(["store", "rebuild", str(runs_dir)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "01_demo__1.json" in err and "Traceback" not in err
    assert main(["store", "rebuild", str(runs_dir), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "01_demo__1.json" in err
    assert _leftovers(runs_dir) == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_FIELDS = ["notebook", "status", "error", "wall_time_s", "context", "results", "figures"]
_CONTEXT = ["parameters", "dataset", "seed", "device", "torch_threads", "smoke", "git_commit", "started_at"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_sidecar_is_indexed_or_refused_by_name(tmp_path_factory, data):
    """A good record with one field (or one context field) replaced by any JSON value, or
    cut short anywhere: the store indexes it or refuses it with an error naming the file."""
    folder = tmp_path_factory.mktemp("fuzz")
    path = _sidecar(folder, 1)
    raw = json.loads(path.read_text())
    how = data.draw(st.sampled_from(["field", "context", "truncate"]))
    if how == "field":
        raw[data.draw(st.sampled_from(_FIELDS))] = data.draw(_JSON)
    elif how == "context":
        raw["context"][data.draw(st.sampled_from(_CONTEXT))] = data.draw(_JSON)
    text = json.dumps(raw)
    if how == "truncate":
        text = text[: data.draw(st.integers(0, len(text) - 1))]
    path.write_text(text)
    try:
        store.add(folder / "s.sqlite", path)
    except CorruptRecord as err:
        assert str(path) in str(err)
    else:
        assert len(store.frame(folder / "s.sqlite")) == 1
