"""The file protocol between ``benchmarks/bench_peers.py`` and the peer runners.

A runner is started as ``python run_<peer>.py SPEC.json`` with the interpreter of the
environment that holds the peer (``.venv-peers`` for LensKit and RecBole, whose pins
clash with ours). It imports nothing from ``workbench``: data comes in as files and
top-k lists go back as files, so the two environments never share an import.

SPEC.json: ``{"model", "params", "threads", "k", "input", "output"}``.
Collaborative filtering input (``input/train.npz``): ``users``, ``items`` (int64 row
and column indices of the training interactions), ``n_users``, ``n_items`` and
``query`` (the user indices to recommend for). Sequential input: ``train.csv``,
``valid.csv``, ``test.csv`` (``user_id,item_id,timestamp``).
Output: ``result.json`` (timings, settings, versions) and ``topk.npz`` (``users``,
``items`` of shape (n, k); -1 where fewer than k items were left).
This module is stdlib + NumPy only: both environments import it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def read_spec() -> dict:
    """The spec named on the command line, with ``input``/``output`` as Paths."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} SPEC.json")
    spec = json.loads(Path(sys.argv[1]).read_text())
    spec["input"], spec["output"] = Path(spec["input"]), Path(spec["output"])
    return spec


def limit_threads(threads: int) -> None:
    """Hold every pool this process may start (OpenMP, BLAS, LensKit, torch) to ``threads``."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LK_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["LK_NUM_BACKEND_THREADS"] = str(threads)
    os.environ["LK_NUM_PROCS"] = "1"


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_result(folder: Path, result: dict) -> None:
    """``result.json``, written atomically."""
    _atomic(folder / "result.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2, default=str)))


def write_topk(folder: Path, name: str, users: np.ndarray, items: np.ndarray) -> None:
    """``<name>.npz`` with ``users`` (n,) and ``items`` (n, k), written atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, users=np.asarray(users), items=np.asarray(items))

    _atomic(folder / f"{name}.npz", write)


def topk_excluding(scores: np.ndarray, seen_rows: list[np.ndarray], k: int) -> np.ndarray:
    """(B, n) scores -> (B, k) column indices of the best unseen columns, best first;
    ``seen_rows[b]`` are the columns to exclude for row ``b``."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    for b, seen in enumerate(seen_rows):
        scores[b, seen] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, 1)
    top[np.isneginf(np.take_along_axis(scores, top, 1))] = -1
    return top
