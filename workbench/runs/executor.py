"""Executing notebooks: one run folder per invocation, never overwriting, and a report.

:func:`execute` runs one notebook with papermill into a folder and writes its JSON record
(a failing notebook is a record too, never an exception); :func:`run_all` runs every
numbered notebook into a new ``runs/<UTC time>/``, indexes each record in the results
store and writes ``report.md``.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import papermill as pm
from papermill.exceptions import PapermillExecutionError

from workbench.runs import store
from workbench.runs.records import REPO_ROOT, SMOKE_ENV, RunRecord, read_notebook, write_sidecar
from workbench.runs.report import write_report


@contextmanager
def _env(**values: str | None):
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(
    notebook: str | Path,
    out_dir: str | Path,
    parameters: dict[str, Any] | None = None,
    *,
    smoke: bool = False,
    progress_bar: bool = False,
    name: str | None = None,
) -> RunRecord:
    """Execute one notebook with papermill into ``out_dir`` and write its sidecar.

    A failing notebook does not raise: its record has ``status="failed"`` and the
    failing cell's index, error name and message. Nothing in ``out_dir`` is overwritten.
    ``name`` sets the output's file stem (default: the notebook's own).
    """
    notebook, out_dir = Path(notebook), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name or notebook.stem}.ipynb"
    sidecar = output.with_suffix(".json")
    if output.exists() or sidecar.exists():
        raise FileExistsError(f"{output} already exists; runs never overwrite an earlier run")
    t0 = time.perf_counter()
    error = None
    with _env(**{SMOKE_ENV: "1" if smoke else None}):
        try:
            pm.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters or {},
                cwd=str(notebook.parent),
                progress_bar=progress_bar,
                kernel_name="python3",
            )
        except PapermillExecutionError as err:
            error = {"cell_index": err.cell_index, "ename": err.ename, "evalue": err.evalue, "notebook": str(notebook)}
        except Exception as err:  # kernel died, bad parameters...: still a record
            error = {"cell_index": None, "ename": type(err).__name__, "evalue": str(err), "notebook": str(notebook)}
    rec = read_notebook(output) if output.exists() else RunRecord(notebook=notebook.stem)
    rec.notebook = notebook.stem
    rec.wall_time_s = round(time.perf_counter() - t0, 3)
    if error is not None:
        rec.status, rec.error = "failed", error
    write_sidecar(rec, sidecar)
    return rec


def notebooks(folder: str | Path = REPO_ROOT / "notebooks") -> list[Path]:
    """The numbered notebooks ``NN_name.ipynb`` in order (found by glob, no registry)."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def new_run_dir(runs_dir: str | Path = "runs", *, prefix: str = "") -> Path:
    """Create ``runs/<prefix><UTC timestamp>`` (``-2``, ``-3``... if taken) and return it."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = prefix + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = runs_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder for {stamp} in {runs_dir}")


def run_all(
    selected: list[str | Path] | None = None,
    *,
    parameters: dict[str, Any] | None = None,
    runs_dir: str | Path = "runs",
    smoke: bool = False,
    progress=None,
) -> tuple[Path, list[RunRecord]]:
    """Execute notebooks (default: every numbered one) into a new run folder, then report.

    ``parameters`` go to every notebook that declares them (others are skipped for that
    notebook). Returns the run folder and one record per notebook, failures included.
    """
    paths = [Path(p) for p in selected] if selected else notebooks()
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found: {missing}")
    run_dir = new_run_dir(runs_dir)
    records = []
    for path in paths:
        declared = pm.inspect_notebook(str(path))
        params = {k: v for k, v in (parameters or {}).items() if k in declared}
        if progress:
            progress(path)
        records.append(execute(path, run_dir, params, smoke=smoke))
        store.add(Path(runs_dir) / store.DB_NAME, run_dir / f"{path.stem}.json", root=runs_dir)
    write_report(run_dir)
    return run_dir, records
