"""Parameter sweeps: a cartesian grid of papermill runs, parallel, resumable, never overwriting.

>>> sweep("notebooks/02_sparse_cf.ipynb", {"ease_reg": [100, 300], "seed": [1, 2]}, jobs=2)

Points go to ``runs/<sweep-id>/<notebook>__<name>-<value>....ipynb`` with their JSON
sidecars, and into the results store ``runs/results.sqlite``. Running the same sweep
again skips points that finished; a failed or interrupted point is moved into
``attempts/`` (kept, not overwritten) and run again.
"""

from __future__ import annotations

import ast
import hashlib
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import papermill as pm
from tqdm.auto import tqdm

from workbench.evaluation.grid import parameter_grid
from workbench.runs import store
from workbench.runs.executor import execute
from workbench.runs.records import atomic_write, slug

FORMAT_VERSION = 1
MANIFEST = "sweep.json"


class SweepError(ValueError):
    """The sweep cannot run as asked (bad grid, undeclared parameter, foreign folder)."""


def declared_parameters(notebook: str | Path) -> dict[str, Any]:
    """The notebook's parameters and their default values (literals of its parameters cell)."""
    out = {}
    for name, info in pm.inspect_notebook(str(notebook)).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = None  # not a literal: accept any value
    return out


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


def check_grid(notebook: str | Path, grid: dict[str, list]) -> None:
    """Fail before running anything: empty grid, undeclared names, values of the wrong type."""
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise SweepError(f"empty grid {grid!r}: give at least one value for each parameter")
    declared = declared_parameters(notebook)
    unknown = sorted(set(grid) - set(declared))
    if unknown:
        raise SweepError(f"{notebook} declares no parameter(s) {unknown}; it declares {sorted(declared)}")
    for name, values in grid.items():
        for v in values:
            if not _type_ok(declared[name], v):
                raise SweepError(
                    f"parameter {name!r} expects {type(declared[name]).__name__} "
                    f"(default {declared[name]!r}), got {v!r} ({type(v).__name__})"
                )


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
        have = json.loads(manifest.read_text(encoding="utf-8"))
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


def _status(folder: Path, name: str) -> str | None:
    side = folder / f"{name}.json"
    if side.exists():
        return json.loads(side.read_text(encoding="utf-8")).get("status")
    return "partial" if (folder / f"{name}.ipynb").exists() else None


def _set_aside(folder: Path, name: str) -> None:
    """Move a failed or interrupted point's files into attempts/ under a fresh number."""
    attempts = folder / "attempts"
    attempts.mkdir(exist_ok=True)
    n = 1 + sum(1 for _ in attempts.glob(f"{name}.*.ipynb"))
    for suffix in (".ipynb", ".json"):
        src = folder / f"{name}{suffix}"
        if src.exists():
            src.rename(attempts / f"{name}.{n}{suffix}")


def _run_point(notebook: str, folder: str, params: dict, name: str, smoke: bool) -> tuple[str, str]:
    rec = execute(notebook, folder, params, smoke=smoke, name=name)
    return name, rec.status


def sweep(
    notebook: str | Path,
    grid: dict[str, list],
    *,
    jobs: int = 1,
    runs_dir: str | Path = "runs",
    sweep_name: str | None = None,
    smoke: bool = False,
) -> pd.DataFrame:
    """Run every grid point (``jobs`` at a time, each in its own process); return the
    sweep's rows from the results store (one per point, parameters as ``param.*``)."""
    notebook = Path(notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"{notebook}: no such notebook")
    if jobs < 1:
        raise SweepError(f"jobs must be >= 1, got {jobs}")
    check_grid(notebook, grid)
    runs_dir = Path(runs_dir)
    folder = runs_dir / (sweep_name or sweep_id(notebook, grid))
    _open_folder(folder, notebook, grid)
    todo = []
    for params in parameter_grid(grid):
        name = point_name(notebook, params)
        status = _status(folder, name)
        if status == "ok":
            continue
        if status is not None:
            _set_aside(folder, name)
        todo.append((params, name))
    db = runs_dir / store.DB_NAME
    with tqdm(total=len(todo), desc=f"sweep {folder.name}", unit="point") as bar:
        if jobs == 1:
            for params, name in todo:
                _run_point(str(notebook), str(folder), params, name, smoke)
                store.add(db, folder / f"{name}.json", root=runs_dir)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_run_point, str(notebook), str(folder), p, n, smoke) for p, n in todo]
                for fut in as_completed(futures):
                    name, _ = fut.result()
                    store.add(db, folder / f"{name}.json", root=runs_dir)
                    bar.update()
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
