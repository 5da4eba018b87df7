"""Results store: every recorded run in one SQLite file under ``runs/``.

The JSON records that :func:`workbench.runs.executor.execute` writes stay the source of truth;
the store is an index over them that :func:`rebuild` can recreate at any time (skipping,
with a warning naming it, a sidecar that is no run record). It is safe with parallel
writers (WAL journal, one transaction per run, busy timeout).

>>> store.frame("runs/results.sqlite")    # one row per run: parameters, context, scalar results
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.runs.records import CorruptRecord, CorruptRecordWarning, RunRecord, encode, flatten, read_run

DB_NAME = "results.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    path TEXT PRIMARY KEY,       -- the sidecar JSON, relative to the runs folder
    notebook TEXT NOT NULL,
    status TEXT NOT NULL,
    dataset TEXT, seed INTEGER, device TEXT, torch_threads INTEGER, smoke INTEGER,
    git_commit TEXT, started_at TEXT, wall_time_s REAL,
    parameters TEXT NOT NULL,    -- JSON
    context TEXT NOT NULL,       -- JSON
    error TEXT                   -- JSON or NULL
);
CREATE TABLE IF NOT EXISTS results (
    path TEXT NOT NULL REFERENCES runs(path) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,         -- JSON
    number REAL,                 -- the value when it is a single number
    PRIMARY KEY (path, name)
);
"""


def connect(db: str | Path) -> sqlite3.Connection:
    """Open (and create) the store with WAL journaling and a generous busy timeout."""
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db, timeout=60)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA foreign_keys=ON")
    con.executescript(SCHEMA)
    return con


def add(db: str | Path, sidecar: str | Path, *, root: str | Path | None = None) -> None:
    """Insert (or replace) one run from its sidecar, in a single transaction.

    A sidecar that is no run record raises :class:`CorruptRecord` naming it; the store is
    then unchanged."""
    sidecar = Path(sidecar)
    rec = read_run(sidecar)
    con = connect(db)
    try:
        _insert(con, str(sidecar.relative_to(root)) if root else str(sidecar), rec)
    finally:
        con.close()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer past what a float holds
        return None


def _insert(con: sqlite3.Connection, key: str, rec: RunRecord) -> None:
    ctx = rec.context or {}
    rows = [
        (key, n, json.dumps(encode(v)), _number(v))
        for name, value in rec.results.items()
        for n, v in flatten(value, name).items()
    ]
    with con:  # one transaction: a run is in the store whole or not at all
        con.execute("DELETE FROM runs WHERE path = ?", (key,))
        con.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                rec.notebook,
                rec.status,
                *(ctx.get(name) for name in ("dataset", "seed", "device", "torch_threads")),
                int(bool(ctx.get("smoke"))),
                ctx.get("git_commit"),
                ctx.get("started_at"),
                rec.wall_time_s,
                json.dumps(ctx.get("parameters", {})),
                json.dumps(ctx),
                json.dumps(rec.error) if rec.error else None,
            ),
        )
        con.executemany("INSERT INTO results VALUES (?,?,?,?)", rows)


def sidecars(runs_dir: str | Path) -> list[Path]:
    """Every run record below ``runs_dir`` (``NN_*.json``), set-aside attempts excluded."""
    return [p for p in sorted(Path(runs_dir).rglob("[0-9][0-9]_*.json")) if "attempts" not in p.parts]


def rebuild(runs_dir: str | Path = "runs", *, strict: bool = False) -> Path:
    """Recreate ``runs_dir/results.sqlite`` from every sidecar below ``runs_dir``.

    A corrupt sidecar is skipped with a :class:`CorruptRecordWarning` naming it, or, with
    ``strict``, refused (:class:`CorruptRecord`) leaving the old store as it was. The new
    store is built in a temporary file beside the old one, which is never left behind."""
    runs_dir = Path(runs_dir)
    db = runs_dir / DB_NAME
    runs_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=runs_dir, prefix=f".{DB_NAME}.", suffix=".rebuild")
    os.close(fd)
    tmp = Path(name)
    try:
        con = connect(tmp)
        try:
            for sidecar in sidecars(runs_dir):
                try:
                    rec = read_run(sidecar)
                except CorruptRecord as err:
                    if strict:
                        raise
                    warnings.warn(f"skipped {err}", CorruptRecordWarning, stacklevel=2)
                    continue
                _insert(con, str(sidecar.relative_to(runs_dir)), rec)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
        tmp.replace(db)
    finally:
        for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            p.unlink(missing_ok=True)
    for p in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    return db


def frame(db: str | Path, *, notebook: str | None = None) -> pd.DataFrame:
    """One row per run: ``path``, ``notebook``, ``status``, context columns,
    ``param.<name>`` for each parameter, and one column per numeric result."""
    con = connect(db)
    try:
        where, args = ("WHERE notebook = ?", (notebook,)) if notebook else ("", ())
        runs = pd.read_sql_query(f"SELECT * FROM runs {where} ORDER BY started_at, path", con, params=args)
        res = pd.read_sql_query("SELECT path, name, number FROM results WHERE number IS NOT NULL", con)
    finally:
        con.close()
    if runs.empty:
        return runs.drop(columns=["parameters", "context", "error"])
    params = pd.DataFrame([json.loads(p) for p in runs["parameters"]]).add_prefix("param.")
    out = pd.concat([runs.drop(columns=["parameters", "context"]), params], axis=1)
    if not res.empty:
        wide = res.pivot(index="path", columns="name", values="number")
        out = out.merge(wide, left_on="path", right_index=True, how="left")
    return out
