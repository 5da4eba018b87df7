"""Results store: sidecars in, one DataFrame out; safe with parallel writers."""

from __future__ import annotations

import json
from multiprocessing import get_context

from workbench.runs import store


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
