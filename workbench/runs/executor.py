"""Executing notebooks: one run folder per invocation, never overwriting, and a report.

:func:`execute` runs one notebook with papermill into a folder and writes its JSON record
(a failing notebook is a record too, never an exception); :func:`run_all` runs every
numbered notebook into a new ``runs/<UTC time>/``, indexes each record in the results
store and writes ``report.md``. Parameters are checked before any kernel starts
(:mod:`.parameters`); kernels get ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it
(:func:`kernel_environment`) and an encrypted connection (:func:`kernel_config`); each
record carries the machine's load when the run started and ended, and the cores the
notebook itself kept busy on average (its kernel and the processes it waited for), so that
a notebook's own workers are not mistaken for another process competing with it.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import papermill as pm
import zmq
from jupyter_client import KernelManager
from papermill.exceptions import PapermillExecutionError
from traitlets.config import Config

try:
    import resource
except ImportError:  # Windows: no rusage, no own-cores figure
    resource = None

from workbench.runs import store
from workbench.runs.parameters import check_parameters, check_value, declared_parameters
from workbench.runs.records import REPO_ROOT, SMOKE_ENV, RunRecord, machine_load, read_notebook, write_sidecar
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


def kernel_environment(*, smoke: bool) -> dict[str, str | None]:
    """What a kernel started here finds in its environment (None: unset): the smoke
    switch, and ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy -- idle OpenMP
    threads then sleep instead of spinning, which on a busy machine made torch many times
    slower (17 instead of 459 users/s) and its timings worthless."""
    return {SMOKE_ENV: "1" if smoke else None, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY") or "PASSIVE"}


def kernel_config() -> Config:
    """Kernel-manager settings: CurveZMQ transport encryption where pyzmq and
    jupyter_client support it, so that the kernel has no "running over TCP without
    encryption" warning to print, once per notebook, into the job's output."""
    if zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names():
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    return Config()


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

    Parameters the notebook does not declare, or values it must not get, raise
    :class:`~workbench.runs.parameters.ParameterError` before anything is created. A
    failing notebook does not raise: its record has ``status="failed"`` and the failing
    cell's index, error name and message. Nothing in ``out_dir`` is overwritten.
    ``name`` sets the output's file stem (default: the notebook's own).
    """
    notebook, out_dir, parameters = Path(notebook), Path(out_dir), dict(parameters or {})
    check_parameters(notebook, parameters)
    output = out_dir / f"{name or notebook.stem}.ipynb"
    sidecar = output.with_suffix(".json")
    if output.exists() or sidecar.exists():
        raise FileExistsError(f"{output} already exists; runs never overwrite an earlier run")
    out_dir.mkdir(parents=True, exist_ok=True)
    load_at_start, t0, cpu_at_start = machine_load(), time.perf_counter(), _children_cpu_s()
    error = None
    with _env(**kernel_environment(smoke=smoke)):
        try:
            pm.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                cwd=str(notebook.parent),
                progress_bar=progress_bar,
                kernel_name="python3",
                config=kernel_config(),
            )
        except PapermillExecutionError as err:
            error = {"cell_index": err.cell_index, "ename": err.ename, "evalue": err.evalue, "notebook": str(notebook)}
        except Exception as err:  # kernel died, bad parameters...: still a record
            error = {"cell_index": None, "ename": type(err).__name__, "evalue": str(err), "notebook": str(notebook)}
    rec = read_notebook(output) if output.exists() else RunRecord(notebook=notebook.stem)
    rec.notebook = notebook.stem
    rec.wall_time_s = round(time.perf_counter() - t0, 3)
    rec.context.setdefault("load_at_start", load_at_start)  # the kernel's own, where it got to runs.start
    own = None if cpu_at_start is None else (_children_cpu_s() - cpu_at_start) / max(rec.wall_time_s, 1e-9)
    rec.context["load_at_end"] = {**machine_load(), "own_cores": None if own is None else round(own, 2)}
    if error is not None:
        rec.status, rec.error = "failed", error
    write_sidecar(rec, sidecar)
    return rec


def _children_cpu_s() -> float | None:
    """CPU seconds of this process's finished (waited-for) children and their own children:
    after papermill shuts a kernel down, the kernel and what it ran count here."""
    if resource is None:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    notebook); a value a notebook must not get raises
    :class:`~workbench.runs.parameters.ParameterError` before any notebook runs.
    Returns the run folder and one record per notebook, failures included.
    """
    paths = [Path(p) for p in selected] if selected else notebooks()
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"notebook(s) not found: {missing}")
    planned = []
    for path in paths:  # every value checked before the first kernel starts
        declared = declared_parameters(path)
        params = {k: v for k, v in (parameters or {}).items() if k in declared}
        for k, v in params.items():
            check_value(declared[k], v)
        planned.append((path, params))
    run_dir = new_run_dir(runs_dir)
    records = []
    for path, params in planned:
        if progress:
            progress(path)
        records.append(execute(path, run_dir, params, smoke=smoke))
        store.add(Path(runs_dir) / store.DB_NAME, run_dir / f"{path.stem}.json", root=runs_dir)
    write_report(run_dir)
    return run_dir, records
