"""bench_peers' bad-input paths: a missing peer is skipped with the reason, a crashing or
hanging peer run is recorded as such and the rest go on; the exchange files round-trip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bench_peers as bench
import exchange
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


GOOD = """
import sys, json
from pathlib import Path
sys.path.insert(0, {peers!r})
from exchange import read_spec, write_result, write_topk
spec = read_spec()
write_topk(spec["output"], "topk", [1, 2], [[10, 11], [12, -1]])
write_result(spec["output"], {{"fit_seconds": 0.5, "recommend_seconds": 0.1, "model": spec["model"]}})
"""


def runner(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return path


def spec(tmp_path: Path, name: str) -> dict:
    return {"model": "m", "params": {}, "threads": 1, "k": 2, "input": tmp_path, "output": tmp_path / name}


def test_a_peer_that_does_not_import_is_skipped_with_the_reason():
    assert bench.import_problem(sys.executable, "json") is None
    reason = bench.import_problem(sys.executable, "no_such_peer_library_xyz")
    assert "no_such_peer_library_xyz does not import" in reason and "ModuleNotFoundError" in reason


def test_a_missing_peers_environment_is_not_built_when_told_so(tmp_path):
    python, why = bench.peers_python(tmp_path / "absent-venv", build=False)
    assert python is None and "absent-venv not found" in why and "make peers" in why


def test_skipped_peer_row_keeps_our_side(monkeypatch, tmp_path):
    """compare_cf with no environment for any peer: every row says skipped, with why,
    and our own model was still measured."""
    monkeypatch.setattr(bench, "CF_PAIRS", bench.CF_PAIRS[:1] + bench.CF_PAIRS[2:3])
    monkeypatch.setattr(bench, "IALS_OPTIONS", {**bench.IALS_OPTIONS, "epochs": 1})
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user_id": rng.integers(0, 30, 400), "item_id": rng.integers(0, 40, 400), "timestamp": 0})
    df = df.drop_duplicates(["user_id", "item_id"])
    train, test = df.iloc[:300], df.iloc[300:]
    pythons = {"implicit": (None, "implicit: not installed here"), "lenskit": (None, "no .venv-peers")}

    rows = bench.compare_cf(train, test, pythons=pythons, threads=1, work=tmp_path, timeout=5)

    assert list(rows["status"]) == ["skipped", "skipped"]
    assert list(rows["reason"]) == ["implicit: not installed here", "no .venv-peers"]
    assert rows["ours ndcg@10"].between(0, 1).all() and (rows["ours fit s"] > 0).all()


def test_a_crashing_peer_is_recorded_and_the_next_one_still_runs(tmp_path):
    crash = runner(tmp_path, "crash", "raise RuntimeError('peer exploded: bad matrix')\n")
    good = runner(tmp_path, "good", GOOD.format(peers=str(ROOT / "benchmarks" / "peers")))

    crashed = bench.run_peer(sys.executable, crash, spec(tmp_path, "a"), timeout=60)
    ok = bench.run_peer(sys.executable, good, spec(tmp_path, "b"), timeout=60)

    assert crashed["status"] == "crashed" and "exit status 1" in crashed["reason"]
    assert "peer exploded: bad matrix" in crashed["reason"] and crashed["topk"] is None
    assert ok["status"] == "ok" and ok["result"]["model"] == "m"
    assert ok["topk"]["items"].tolist() == [[10, 11], [12, -1]]


def test_a_peer_past_its_timeout_is_recorded_as_timed_out(tmp_path):
    slow = runner(tmp_path, "slow", "import time\ntime.sleep(30)\n")

    run = bench.run_peer(sys.executable, slow, spec(tmp_path, "c"), timeout=1)

    assert run["status"] == "timed out" and "1 s" in run["reason"]


def test_a_peer_that_exits_cleanly_without_a_result_is_a_crash(tmp_path):
    silent = runner(tmp_path, "silent", "print('did nothing')\n")
    run = bench.run_peer(sys.executable, silent, spec(tmp_path, "d"), timeout=60)
    assert run["status"] == "crashed" and "exit status 0" in run["reason"]


def test_peer_top_k_is_scored_by_our_metrics():
    test = pd.DataFrame({"user_id": [1, 2], "item_id": [11, 99]})
    got = bench.quality(bench.recs_frame(np.array([1, 2]), np.array([[10, 11], [12, -1]])), test)
    assert got["hr@10"] == pytest.approx(0.5)
    assert got["ndcg@10"] == pytest.approx(0.5 / np.log2(3))


def test_topk_excluding_masks_seen_columns_and_marks_exhausted_rows():
    scores = np.array([[0.9, 0.8, 0.1], [0.5, 0.4, 0.3]])
    top = exchange.topk_excluding(scores, [np.array([0]), np.array([0, 1, 2])], 2)
    assert top.tolist() == [[1, 2], [-1, -1]]


def test_spec_round_trips_through_the_runner_protocol(tmp_path, monkeypatch):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"model": "x", "input": str(tmp_path), "output": str(tmp_path)}))
    monkeypatch.setattr(sys, "argv", ["run_x.py", str(path)])
    got = exchange.read_spec()
    assert got["model"] == "x" and got["input"] == tmp_path
    monkeypatch.setattr(sys, "argv", ["run_x.py"])
    with pytest.raises(SystemExit, match="usage"):
        exchange.read_spec()
