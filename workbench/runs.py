"""Parameterised notebook runs and their recorded results.

Inside a notebook::

    p = runs.start(dataset=dataset, seed=seed, smoke=dict(dataset="synthetic"))
    runs.record("ndcg@10", 0.41)
    runs.record_figure("popularity_long_tail", fig)

``start`` displays the run's context (parameters, versions, git commit, device, host)
and ``record`` displays each result, both under the MIME type :data:`MIME`, so the
executed notebook itself is the machine-readable record; :func:`read` reads it back.
:func:`execute` runs a notebook with papermill into a runs folder and writes a JSON
sidecar (``<name>.json``) plus PNG files of the recorded figures beside it.

Offline switch: with ``WORKBENCH_SMOKE=1`` in the environment, ``start`` applies each
notebook's ``smoke`` overrides (synthetic data, tiny sizes) and records ``smoke: true``.
Without it nothing is overridden: there is no silent fallback from real data.
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MIME = "application/vnd.workbench.record+json"
SMOKE_ENV = "WORKBENCH_SMOKE"
PACKAGES = ("workbench", "torch", "transformers", "numpy", "scipy", "pandas", "papermill")
REPO_ROOT = Path(__file__).resolve().parent.parent


class Params(types.SimpleNamespace):
    """A run's parameters with attribute access; ``as_dict()`` for recording."""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def smoke_enabled() -> bool:
    """True when ``WORKBENCH_SMOKE`` is set to 1/true/yes."""
    return os.environ.get(SMOKE_ENV, "").strip().lower() in ("1", "true", "yes")


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """``HEAD`` of the checkout the package runs from, ``+dirty`` if changed; None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on, plus Python."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _device_info(requested: Any) -> dict[str, Any]:
    import torch

    from workbench.devices import resolve_device

    info: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    if requested is not None:
        try:
            info["device"] = str(resolve_device(requested))
        except (ValueError, RuntimeError) as err:  # recorded, raised again where it is used
            info["device"] = f"unavailable: {err}"
    else:
        info["device"] = "cpu"
    if info["device"].startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def context(params: dict[str, Any], *, smoke: bool) -> dict[str, Any]:
    """Everything that makes a result reproducible, besides the code at ``git_commit``."""
    return {
        "parameters": params,
        "smoke": smoke,
        "dataset": params.get("dataset"),
        "seed": params.get("seed"),
        **_device_info(params.get("device")),
        "versions": versions(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _display(data: dict[str, Any], metadata_: dict | None = None) -> None:
    from IPython.display import display

    display(data, raw=True, metadata=metadata_ or {})


def start(*, smoke: dict[str, Any] | None = None, **params: Any) -> Params:
    """Declare the run's parameters (all of them, by name) and record its context.

    ``smoke`` holds the overrides used when ``WORKBENCH_SMOKE=1``; its keys must be
    parameters. Returns the effective parameters as attributes.
    """
    smoke = smoke or {}
    unknown = sorted(set(smoke) - set(params))
    if unknown:
        raise ValueError(f"smoke overrides name undeclared parameter(s) {unknown}; declared: {sorted(params)}")
    on = smoke_enabled()
    if on:
        params = {**params, **smoke}
    ctx = context(_jsonable(params), smoke=on)
    _display({MIME: {"kind": "context", "value": ctx}, "text/plain": _context_line(ctx)})
    return Params(**params)


def _context_line(ctx: dict[str, Any]) -> str:
    return (
        f"workbench run: dataset={ctx['dataset']} seed={ctx['seed']} device={ctx['device']} "
        f"smoke={ctx['smoke']} commit={(ctx['git_commit'] or 'unknown')[:12]}"
    )


def _jsonable(value: Any) -> Any:
    """Encode a value for JSON; DataFrames become a tagged 'split' dict."""
    if isinstance(value, pd.DataFrame):
        frame = value.reset_index() if not isinstance(value.index, pd.RangeIndex) else value
        return {"__dataframe__": json.loads(frame.to_json(orient="split", index=False))}
    if isinstance(value, pd.Series):
        return _jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot record a value of type {type(value).__name__}; use numbers, strings, lists, dicts or DataFrames")


def decode(value: Any) -> Any:
    """Inverse of the encoding used by :func:`record` (DataFrames come back as DataFrames)."""
    if isinstance(value, dict):
        if set(value) == {"__dataframe__"}:
            d = value["__dataframe__"]
            return pd.DataFrame(d["data"], columns=d["columns"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def record(name: str, value: Any) -> None:
    """Record one named result (number, string, list, dict or DataFrame) in the notebook."""
    if not isinstance(name, str) or not name:
        raise ValueError("record name must be a non-empty string")
    encoded = _jsonable(value)
    text = repr(value) if not isinstance(value, pd.DataFrame) else f"<DataFrame {value.shape}>"
    _display({MIME: {"kind": "result", "name": name, "value": encoded}, "text/plain": f"{name} = {text[:200]}"})


def record_figure(name: str, fig) -> None:
    """Show a matplotlib Figure as PNG and mark it as the named figure of this run."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    _display({"image/png": png, "text/plain": f"<figure {name}>"}, {"workbench": {"figure": name}})


@dataclass
class RunRecord:
    """What one executed notebook recorded."""

    notebook: str
    status: str = "ok"  # ok | failed
    context: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict, repr=False)
    error: dict[str, Any] | None = None
    wall_time_s: float | None = None


def read_notebook(path: str | Path) -> RunRecord:
    """Parse an executed notebook's outputs into a :class:`RunRecord`."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    rec = RunRecord(notebook=path.stem)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if MIME in data:
                payload = data[MIME]
                if payload["kind"] == "context":
                    rec.context = payload["value"]
                elif payload["kind"] == "result":
                    rec.results[payload["name"]] = decode(payload["value"])
            name = out.get("metadata", {}).get("workbench", {}).get("figure")
            if name and "image/png" in data:
                rec.figures[name] = base64.b64decode(data["image/png"])
            if out.get("output_type") == "error" and rec.error is None:
                rec.status = "failed"
                rec.error = {"ename": out.get("ename"), "evalue": out.get("evalue")}
    meta = nb.metadata.get("papermill", {})
    if meta.get("duration") is not None:
        rec.wall_time_s = float(meta["duration"])
    if meta.get("exception"):
        rec.status = "failed"
    return rec


def read(path: str | Path) -> dict[str, Any]:
    """Recorded results of an executed notebook (``.ipynb``) or its sidecar (``.json``)."""
    return read_run(path).results


def read_run(path: str | Path) -> RunRecord:
    """The full :class:`RunRecord` from an executed notebook or its JSON sidecar."""
    path = Path(path)
    if path.suffix == ".json":
        raw = json.loads(path.read_text(encoding="utf-8"))
        figures = {n: (path.parent / f).read_bytes() for n, f in raw.get("figures", {}).items() if (path.parent / f).exists()}
        return RunRecord(
            notebook=raw["notebook"], status=raw["status"], context=raw["context"],
            results=decode(raw["results"]), figures=figures, error=raw.get("error"),
            wall_time_s=raw.get("wall_time_s"),
        )
    return read_notebook(path)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside ``path`` and rename it over: all or nothing."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

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
                str(notebook), str(output), parameters=parameters or {},
                cwd=str(notebook.parent), progress_bar=progress_bar, kernel_name="python3",
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
    _write_sidecar(rec, sidecar)
    return rec


def _write_sidecar(rec: RunRecord, sidecar: Path) -> None:
    fig_dir = sidecar.parent / "figures"
    files = {}
    for name, png in rec.figures.items():
        fig_dir.mkdir(exist_ok=True)
        rel = f"figures/{sidecar.stem}__{_slug(name)}.png"
        atomic_write(sidecar.parent / rel, png)
        files[name] = rel
    payload = {
        "notebook": rec.notebook, "status": rec.status, "error": rec.error,
        "wall_time_s": rec.wall_time_s, "context": rec.context,
        "results": _jsonable(rec.results), "figures": files,
    }
    atomic_write(sidecar, json.dumps(payload, indent=1, default=str))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


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
    import papermill as pm

    from workbench import store
    from workbench.report import write_report

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
