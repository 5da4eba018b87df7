"""Parameter sweeps: a cartesian grid of papermill runs, parallel, resumable, never overwriting.

>>> sweep("notebooks/02_sparse_cf.ipynb", {"ease_reg": [100, 300], "seed": [1, 2]}, jobs=2)

Points go to ``runs/<sweep-id>/<notebook>__<name>-<value>....ipynb`` with their JSON
sidecars, and into the results store ``runs/results.sqlite``. Running the same sweep
again skips points that finished; a failed, interrupted or corrupt point is moved into
``attempts/`` (kept, not overwritten) and run again. One sweep at a time holds a
folder (:mod:`.lock`); a second one started there is refused, naming the first's pid.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from workbench.evaluation.grid import parameter_grid
from workbench.runs import lock, store
from workbench.runs.executor import execute
from workbench.runs.parameters import ParameterError, check_value, declared_parameters
from workbench.runs.records import CorruptRecord, CorruptRecordWarning, atomic_write, read_run, slug

FORMAT_VERSION = 1
MANIFEST = "sweep.json"


class SweepError(ValueError):
    """The sweep cannot run as asked (bad grid, undeclared parameter, foreign folder)."""


def check_grid(notebook: str | Path, grid: dict[str, list]) -> None:
    """Fail before running anything: empty grid, undeclared names, values that are not
    JSON-like or not of the declared type (see :mod:`workbench.runs.parameters`)."""
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise SweepError(f"empty grid {grid!r}: give at least one value for each parameter")
    declared = declared_parameters(notebook)
    unknown = sorted(set(grid) - set(declared))
    if unknown:
        raise SweepError(f"{notebook} declares no parameter(s) {unknown}; it declares {sorted(declared)}")
    try:
        for name, values in grid.items():
            for value in values:
                check_value(declared[name], value)
    except ParameterError as err:
        raise SweepError(str(err)) from None


def point_name(notebook: Path, params: dict[str, Any]) -> str:
    """A readable, file-safe, unique name for one grid point."""
    body = "__".join(f"{k}-{v}" for k, v in params.items())
    safe = slug(body)
    if len(safe) > 120 or safe != body:
        safe = safe[:100] + "_" + hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return f"{notebook.stem}__{safe}"


def sweep_id(notebook: Path, grid: dict[str, list]) -> str:
    digest = hashlib.sha1(json.dumps([notebook.name, grid], sort_keys=True, default=str).encode()).hexdigest()
    return f"sweep-{notebook.stem}-{digest[:8]}"


def _open_folder(folder: Path, notebook: Path, grid: dict[str, list]) -> None:
    manifest = folder / MANIFEST
    want = {"format_version": FORMAT_VERSION, "notebook": notebook.name, "grid": grid}
    if manifest.exists():
        try:
            have = json.loads(manifest.read_bytes())
        except (ValueError, UnicodeDecodeError) as err:
            raise SweepError(f"{manifest}: not valid JSON ({err}); nothing there was changed") from None
        if not isinstance(have, dict):
            raise SweepError(f"{manifest}: not a sweep manifest (a JSON object); nothing there was changed")
        if have.get("format_version") != FORMAT_VERSION:
            raise SweepError(
                f"{folder} was written by sweep format {have.get('format_version')!r}, this is "
                f"{FORMAT_VERSION}; start a new sweep id (nothing there was changed)"
            )
        if have.get("notebook") != notebook.name or have.get("grid") != json.loads(json.dumps(grid)):
            raise SweepError(f"{folder} holds a different sweep ({have.get('notebook')}, {have.get('grid')})")
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(manifest, json.dumps({**want, "created": datetime.now(timezone.utc).isoformat()}, indent=1))


def _status(folder: Path, name: str, *, strict: bool) -> str | None:
    """``ok`` or ``failed`` from the point's record; ``corrupt`` (warned) where the record
    is no run record; ``partial`` where only the notebook exists; None if never started."""
    side = folder / f"{name}.json"
    if side.exists():
        try:
            return read_run(side).status
        except CorruptRecord as err:
            if strict:
                raise SweepError(f"{err} (without --strict it is set aside and the point runs again)") from None
            warnings.warn(f"{err}; set aside into attempts/, the point runs again", CorruptRecordWarning, stacklevel=4)
            return "corrupt"
    return "partial" if (folder / f"{name}.ipynb").exists() else None


def _set_aside(folder: Path, name: str) -> None:
    """Move a failed, interrupted or corrupt point's files into attempts/ under a fresh number."""
    attempts = folder / "attempts"
    attempts.mkdir(exist_ok=True)
    n = 1
    while any((attempts / f"{name}.{n}{suffix}").exists() for suffix in (".ipynb", ".json")):
        n += 1
    for suffix in (".ipynb", ".json"):
        src = folder / f"{name}{suffix}"
        if src.exists():
            src.rename(attempts / f"{name}.{n}{suffix}")


def _todo(folder: Path, notebook: Path, grid: dict[str, list], *, strict: bool) -> list[tuple[dict, str]]:
    """The points still to run (every status read before anything is moved); earlier
    attempts of those points are set aside."""
    points = [(params, point_name(notebook, params)) for params in parameter_grid(grid)]
    statuses = [_status(folder, name, strict=strict) for _, name in points]
    todo = []
    for (params, name), status in zip(points, statuses):
        if status == "ok":
            continue
        if status is not None:
            _set_aside(folder, name)
        todo.append((params, name))
    return todo


def _run_point(notebook: str, folder: str, params: dict, name: str, smoke: bool) -> tuple[str, str]:
    rec = execute(notebook, folder, params, smoke=smoke, name=name)
    return name, rec.status


def _run_points(todo: list[tuple[dict, str]], notebook: Path, folder: Path, runs_dir: Path, *, jobs: int, smoke: bool):
    """Run the points (``jobs`` at a time) and index each record as it is written."""
    db = runs_dir / store.DB_NAME
    with tqdm(total=len(todo), desc=f"sweep {folder.name}", unit="point") as bar:
        if jobs == 1:
            for params, name in todo:
                _run_point(str(notebook), str(folder), params, name, smoke)
                store.add(db, folder / f"{name}.json", root=runs_dir)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_run_point, str(notebook), str(folder), p, n, smoke) for p, n in todo]
            for fut in as_completed(futures):
                name, _ = fut.result()
                store.add(db, folder / f"{name}.json", root=runs_dir)
                bar.update()


def sweep(
    notebook: str | Path,
    grid: dict[str, list],
    *,
    jobs: int = 1,
    runs_dir: str | Path = "runs",
    sweep_name: str | None = None,
    smoke: bool = False,
    strict: bool = False,
    wait: bool = False,
) -> pd.DataFrame:
    """Run every grid point (``jobs`` at a time, each in its own process); return the
    sweep's rows from the results store (one per point, parameters as ``param.*``).

    One sweep at a time per folder: another one running there is refused
    (:class:`~workbench.runs.lock.FolderBusy`, naming its pid), or waited for with
    ``wait``. A point whose record is corrupt is set aside and run again with a warning
    naming the file, or, with ``strict``, refused before anything is changed."""
    notebook = Path(notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"{notebook}: no such notebook")
    if jobs < 1:
        raise SweepError(f"jobs must be >= 1, got {jobs}")
    check_grid(notebook, grid)
    runs_dir = Path(runs_dir)
    folder = runs_dir / (sweep_name or sweep_id(notebook, grid))
    _open_folder(folder, notebook, grid)
    db = runs_dir / store.DB_NAME
    with lock.hold(folder, wait=wait):
        todo = _todo(folder, notebook, grid, strict=strict)
        _run_points(todo, notebook, folder, runs_dir, jobs=jobs, smoke=smoke)
        for params in parameter_grid(grid):  # points finished by an earlier invocation are indexed too
            side = folder / f"{point_name(notebook, params)}.json"
            if side.exists():
                store.add(db, side, root=runs_dir)
    frame = store.frame(db)
    return frame[frame["path"].str.startswith(folder.name + "/")].reset_index(drop=True)


def aggregate(frame: pd.DataFrame, by: str | list[str], metric: str) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` over the runs in each ``by`` group
    (typically over seeds), successful runs only."""
    ok = frame[frame["status"] == "ok"]
    if metric not in ok.columns:
        raise KeyError(
            f"no result named {metric!r} in the store; have {sorted(c for c in frame.columns if '/' in c)[:20]}"
        )
    keys = [by] if isinstance(by, str) else list(by)
    grouped = ok.assign(**{k: ok[k].astype(str) if ok[k].map(type).eq(list).any() else ok[k] for k in keys})
    out = grouped.groupby(keys)[metric].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": metric, "std": f"{metric} std", "count": "runs"})


def pareto_points(frame: pd.DataFrame, models: list[str], *, k: int = 10) -> pd.DataFrame:
    """One row per model from a one-model-per-run sweep of notebook 02: mean/std of
    nDCG@k (``quality``) and of fit time (``seconds``) over its runs."""
    rows = []
    for model in models:
        q, s = f"ndcg@{k}/{model}", f"fit_seconds/{model}"
        if q not in frame.columns:
            continue
        sub = frame[(frame["status"] == "ok") & frame[q].notna()]
        rows.append(
            {
                "label": model,
                "quality": sub[q].mean(),
                "quality std": sub[q].std(),
                "seconds": sub[s].mean(),
                "seconds std": sub[s].std(),
                "runs": len(sub),
            }
        )
    return pd.DataFrame(rows)
