"""Parameter sweeps: a cartesian grid of papermill runs, parallel, resumable, never overwriting.

>>> sweep("notebooks/02_sparse_cf.ipynb", {"ease_reg": [100, 300], "seed": [1, 2]}, jobs=2)
>>> sweep(..., backend=Backend("ray", address="10.0.0.1:6379", gpus_per_point=1))   # on a Ray cluster

Points go to ``runs/<sweep-id>/<notebook>__<name>-<value>....ipynb`` with their JSON
sidecars, and into the results store ``runs/results.sqlite``. Running the same sweep
again skips points that finished; a failed, interrupted or corrupt point is moved into
``attempts/`` (kept, not overwritten) and run again, and a point that fails during the sweep
is retried (``retries``) the same way. Points run on a :class:`Backend`: local processes
(:class:`LocalRunner`) or Ray tasks (:class:`~workbench.runs.cluster.RayRunner`), behind
the one interface that :class:`Points` drives. One sweep at a time holds a
folder (:mod:`.lock`); a second one started there is refused, naming the first's pid.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from workbench.evaluation.grid import parameter_grid
from workbench.runs import cluster, lock, store
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


def open_folder(folder: Path, what: dict[str, Any]) -> None:
    """Create ``folder`` with a manifest of ``what`` runs there (notebook, grid...), or
    check that the manifest it has says the same; refuse a folder of another sweep or
    sweep format untouched."""
    manifest = folder / MANIFEST
    want = {"format_version": FORMAT_VERSION, **what}
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
        mine = json.loads(json.dumps(what))
        if any(have.get(key) != value for key, value in mine.items()):
            theirs = {key: have.get(key) for key in mine}
            raise SweepError(f"{folder} holds a different sweep ({theirs}); this one is {mine}")
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(manifest, json.dumps({**want, "created": datetime.now(timezone.utc).isoformat()}, indent=1))


def status(folder: Path, name: str, *, strict: bool) -> str | None:
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


def set_aside(folder: Path, name: str) -> None:
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
    statuses = [status(folder, name, strict=strict) for _, name in points]
    todo = []
    for (params, name), state in zip(points, statuses):
        if state == "ok":
            continue
        if state is not None:
            set_aside(folder, name)
        todo.append((params, name))
    return todo


@dataclass(frozen=True)
class Backend:
    """Where points run: ``local`` processes (``jobs`` at a time) or ``ray`` tasks on the
    cluster at ``address`` (None: the one ``ray.init`` finds, else a new local one), each
    asking for ``cpus_per_point`` and ``gpus_per_point``."""

    name: str = "local"
    jobs: int = 1
    address: str | None = None
    cpus_per_point: float = 1
    gpus_per_point: float = 0

    def check(self) -> None:
        """Raise :class:`SweepError` for an unknown backend or bad counts, and
        :class:`~workbench.runs.cluster.RayMissing` for Ray without Ray installed."""
        if self.name not in ("local", "ray"):
            raise SweepError(f"backend must be 'local' or 'ray', got {self.name!r}")
        if self.jobs < 1:
            raise SweepError(f"jobs must be >= 1, got {self.jobs}")
        if self.cpus_per_point < 0 or self.gpus_per_point < 0 or self.cpus_per_point + self.gpus_per_point == 0:
            raise SweepError(
                f"a point needs some CPU or GPU: got cpus_per_point={self.cpus_per_point}, "
                f"gpus_per_point={self.gpus_per_point}"
            )
        if self.name == "ray":
            cluster.import_ray()  # RayMissing, saying how to install it, before any folder is made

    def runner(self, notebook: Path, folder: Path, *, smoke: bool, progress: cluster.Progress):
        """A context manager that runs points of ``notebook`` into ``folder``."""
        if self.name == "ray":
            return cluster.RayRunner(
                notebook,
                folder,
                smoke=smoke,
                address=self.address,
                cpus_per_point=self.cpus_per_point,
                gpus_per_point=self.gpus_per_point,
                progress=progress,
            )
        return LocalRunner(notebook, folder, jobs=self.jobs, smoke=smoke, progress=progress)


def _run_point(notebook: str, folder: str, params: dict, name: str, smoke: bool) -> tuple[str, str]:
    rec = execute(notebook, folder, params, smoke=smoke, name=name)
    return name, rec.status


class LocalRunner:
    """Points run in local processes, ``jobs`` at a time (one: in this process, in turn);
    each writes its files into ``folder`` itself. The same interface as
    :class:`~workbench.runs.cluster.RayRunner`."""

    def __init__(self, notebook: Path, folder: Path, *, jobs: int, smoke: bool, progress: cluster.Progress):
        self.notebook, self.folder, self.jobs, self.smoke, self.progress = notebook, folder, jobs, smoke, progress
        self._queued: list[tuple[dict, str]] = []
        self._futures: dict[Future, str] = {}

    def __enter__(self) -> LocalRunner:
        self._pool = ProcessPoolExecutor(max_workers=self.jobs) if self.jobs > 1 else None
        return self

    def __exit__(self, kind, err, tb) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def pending(self) -> int:
        return len(self._queued) + len(self._futures)

    def submit(self, params: dict, name: str) -> None:
        self.progress(name, "queued", "")
        if self._pool is None:
            self._queued.append((params, name))
            return
        args = (str(self.notebook), str(self.folder), params, name, self.smoke)
        self._futures[self._pool.submit(_run_point, *args)] = name

    def next_done(self) -> tuple[str, str]:
        if self._pool is None:
            params, name = self._queued.pop(0)
            self.progress(name, "running", "in this process")
            _, status = _run_point(str(self.notebook), str(self.folder), params, name, self.smoke)
        else:
            done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
            future = next(iter(done))
            del self._futures[future]
            name, status = future.result()
        self.progress(name, status, "")
        return name, status


class PointProgress:
    """A line per point as its state changes (queued, running on a node, ok, failed) above
    an overall bar of finished points; call it as ``progress(name, state, detail)``."""

    def __init__(self, total: int, desc: str, *, lines: bool = True):
        self.bar = tqdm(total=total, desc=desc, unit="point")
        self.lines, self.counts = lines, Counter()

    def __call__(self, name: str, state: str, detail: str) -> None:
        if self.lines:
            self.bar.write(f"{state:9s} {name} {detail}".rstrip(), file=sys.stderr)
        self.counts[state] += 1
        self.bar.set_postfix({k: v for k, v in self.counts.items() if k in ("ok", "failed", "retried")}, refresh=False)

    def finished(self) -> None:
        """One more point has its final record."""
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


class Points:
    """Points in flight on a runner: each failed attempt is set aside into ``attempts/``
    and run again, up to ``retries`` times; each final record is indexed in the store."""

    def __init__(self, runner, folder: Path, runs_dir: Path, *, retries: int, progress: PointProgress):
        self.runner, self.folder, self.runs_dir = runner, folder, runs_dir
        self.retries, self.progress = retries, progress
        self._params: dict[str, dict] = {}
        self._left: dict[str, int] = {}

    def submit(self, params: dict, name: str) -> None:
        self._params[name], self._left[name] = params, self.retries
        self.runner.submit(params, name)

    def pending(self) -> int:
        return self.runner.pending()

    def next_done(self) -> tuple[str, str]:
        """The next point with a final record (ok, or failed ``retries + 1`` times)."""
        while True:
            name, status = self.runner.next_done()
            if status != "ok" and self._left[name] > 0:
                self._left[name] -= 1
                set_aside(self.folder, name)
                self.progress(name, "retried", f"(kept in attempts/; {self._left[name]} retries left)")
                self.runner.submit(self._params[name], name)
                continue
            store.add(self.runs_dir / store.DB_NAME, self.folder / f"{name}.json", root=self.runs_dir)
            self.progress.finished()
            return name, status


def _run_points(todo, notebook: Path, folder: Path, runs_dir: Path, *, backend: Backend, smoke: bool, retries: int):
    """Run the points on the backend, retrying failures, indexing each final record."""
    progress = PointProgress(len(todo), f"sweep {folder.name}", lines=backend.name == "ray")
    try:
        with backend.runner(notebook, folder, smoke=smoke, progress=progress) as runner:
            points = Points(runner, folder, runs_dir, retries=retries, progress=progress)
            for params, name in todo:
                points.submit(params, name)
            while points.pending():
                points.next_done()
    finally:
        progress.close()


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
    backend: Backend | None = None,
    retries: int = 1,
) -> pd.DataFrame:
    """Run every grid point (``jobs`` at a time, each in its own process, or as Ray tasks
    with ``backend=Backend("ray", ...)``); return the sweep's rows from the results store
    (one per point, parameters as ``param.*``).

    A point whose attempt fails (the notebook raised; its kernel, worker or node died) is
    set aside into ``attempts/`` and run again, up to ``retries`` times. One sweep at a
    time per folder: another one running there is refused
    (:class:`~workbench.runs.lock.FolderBusy`, naming its pid), or waited for with
    ``wait``. A point whose record is corrupt is set aside and run again with a warning
    naming the file, or, with ``strict``, refused before anything is changed. Ctrl+C
    cancels what is still running; the points already finished stay, and the same call
    resumes from them."""
    notebook = Path(notebook)
    backend = backend or Backend(jobs=jobs)
    if not notebook.exists():
        raise FileNotFoundError(f"{notebook}: no such notebook")
    backend.check()
    if retries < 0:
        raise SweepError(f"retries must be >= 0, got {retries}")
    check_grid(notebook, grid)
    runs_dir = Path(runs_dir)
    folder = runs_dir / (sweep_name or sweep_id(notebook, grid))
    open_folder(folder, {"notebook": notebook.name, "grid": grid})
    db = runs_dir / store.DB_NAME
    with lock.hold(folder, wait=wait):
        todo = _todo(folder, notebook, grid, strict=strict)
        _run_points(todo, notebook, folder, runs_dir, backend=backend, smoke=smoke, retries=retries)
        for params in parameter_grid(grid):  # points finished by an earlier invocation are indexed too
            side = folder / f"{point_name(notebook, params)}.json"
            if side.exists():
                store.add(db, side, root=runs_dir)
    return folder_rows(db, folder)


def folder_rows(db: Path, folder: Path) -> pd.DataFrame:
    """The store's rows of the runs in ``folder`` (one per point)."""
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
