"""What a run records, and reading it back.

A run's results live in the executed notebook itself, as outputs under the MIME type
:data:`MIME` (written by :mod:`.recording`); :func:`read_notebook` parses them into a
:class:`RunRecord`, and :func:`write_sidecar` writes the ``<name>.json`` record plus PNG
files of the figures beside it, which :func:`read_run` reads back. Values are encoded for
JSON by :func:`encode` (DataFrames as a tagged "split" dict) and decoded by :func:`decode`.
Files are written atomically (:func:`atomic_write`). A sidecar that is no run record
(cut short, not an object, a list where one value belongs) raises :class:`CorruptRecord`
naming the file; :func:`machine_load` is how busy the machine was, recorded with each run.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MIME = "application/vnd.workbench.record+json"
#: the offline switch: with it set, notebooks apply their smoke overrides
SMOKE_ENV = "WORKBENCH_SMOKE"
#: the checkout the package runs from (its notebooks; its git commit is recorded)
REPO_ROOT = Path(__file__).resolve().parents[2]


def encode(value: Any) -> Any:
    """Encode a value for JSON; DataFrames become a tagged 'split' dict."""
    if isinstance(value, pd.DataFrame):
        frame = value.reset_index() if not isinstance(value.index, pd.RangeIndex) else value
        return {"__dataframe__": json.loads(frame.to_json(orient="split", index=False))}
    if isinstance(value, pd.Series):
        return encode(value.to_dict())
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return encode(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(
        f"cannot record a value of type {type(value).__name__}; use numbers, strings, lists, dicts or DataFrames"
    )


def decode(value: Any) -> Any:
    """Inverse of :func:`encode` (DataFrames come back as DataFrames)."""
    if isinstance(value, dict):
        if set(value) == {"__dataframe__"}:
            d = value["__dataframe__"]
            return pd.DataFrame(d["data"], columns=d["columns"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


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


class CorruptRecord(ValueError):
    """A JSON sidecar that is no run record; the message starts with its path."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path


class CorruptRecordWarning(UserWarning):
    """A corrupt sidecar was skipped (the message names it)."""


def read_notebook(path: str | Path) -> RunRecord:
    """Parse an executed notebook's outputs into a :class:`RunRecord`."""
    import nbformat  # deferred: 1.4 s of jsonschema set-up that a notebook kernel never needs

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
    """The full :class:`RunRecord` from an executed notebook or its JSON sidecar.

    A sidecar that is no run record (cut short, not an object, a field of the wrong type)
    raises :class:`CorruptRecord` naming the file."""
    path = Path(path)
    if path.suffix != ".json":
        return read_notebook(path)
    raw = _sidecar_fields(path)
    try:
        results = decode(raw["results"])
    except (KeyError, TypeError, ValueError) as err:  # a tagged table that is no table
        raise CorruptRecord(path, f"a result is not a valid table ({err!r:.80})") from None
    figures = {n: (path.parent / f).read_bytes() for n, f in raw["figures"].items() if (path.parent / f).is_file()}
    return RunRecord(
        notebook=raw["notebook"],
        status=raw["status"],
        context=raw["context"],
        results=results,
        figures=figures,
        error=raw["error"],
        wall_time_s=raw["wall_time_s"],
    )


#: a sidecar's fields: required or not, and the JSON types each may hold
_FIELDS: dict[str, tuple[bool, tuple[type, ...]]] = {
    "notebook": (True, (str,)),
    "status": (True, (str,)),
    "context": (True, (dict,)),
    "results": (True, (dict,)),
    "error": (False, (dict, type(None))),
    "wall_time_s": (False, (int, float, type(None))),
    "figures": (False, (dict,)),
}
#: context fields the results store keeps in columns: each a single value
CONTEXT_SCALARS = ("dataset", "seed", "device", "torch_threads", "smoke", "git_commit", "started_at")


_KINDS = {dict: "an object", list: "a list", str: "a string", type(None): "null"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _sidecar_fields(path: Path) -> dict[str, Any]:
    """The sidecar's JSON object with every field checked (absent optional ones filled in)."""
    try:
        raw = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptRecord(path, f"not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise CorruptRecord(path, f"holds {_kind(raw)} where a run record (a JSON object) belongs")
    for name, (required, types) in _FIELDS.items():
        if name not in raw and required:
            raise CorruptRecord(path, f"has no {name!r}")
        raw.setdefault(name, {} if name == "figures" else None)
        if not isinstance(raw[name], types) or isinstance(raw[name], bool) or _past_64_bits(raw[name]):
            raise CorruptRecord(path, f"{name!r} holds {_kind(raw[name])} ({_excerpt(raw[name])})")
    if raw["status"] not in ("ok", "failed"):
        raise CorruptRecord(path, f"'status' is {_excerpt(raw['status'])}, not 'ok' or 'failed'")
    _check_context(path, raw["context"])
    for name, rel in raw["figures"].items():
        if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise CorruptRecord(path, f"figure {name!r} is {_excerpt(rel)}, not a file beside the record")
    return raw


def _check_context(path: Path, context: dict[str, Any]) -> None:
    for name in CONTEXT_SCALARS:
        value = context.get(name)
        if isinstance(value, (list, dict)) or _past_64_bits(value):
            raise CorruptRecord(path, f"context {name!r} holds {_kind(value)} ({_excerpt(value)}), not one value")
    if not isinstance(context.get("parameters", {}), dict):
        raise CorruptRecord(path, f"context 'parameters' holds {_kind(context['parameters'])}, not an object")


def _past_64_bits(value: Any) -> bool:
    return isinstance(value, int) and not -(2**63) <= value < 2**63


def _excerpt(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def machine_load() -> dict[str, Any]:
    """How busy the machine is now: the load average over 1, 5 and 15 minutes (None where
    the OS has none), its CPU count and the cores this process may run on."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # Windows
        load = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"load_avg": load, "cpu_count": os.cpu_count(), "cores": cores}


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside ``path`` and rename it over: all or nothing."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_sidecar(rec: RunRecord, sidecar: Path) -> None:
    """Write ``rec`` as the JSON record ``sidecar`` and its figures as PNG files in
    ``figures/`` beside it (each file atomically)."""
    fig_dir = sidecar.parent / "figures"
    files = {}
    for name, png in rec.figures.items():
        fig_dir.mkdir(exist_ok=True)
        rel = f"figures/{sidecar.stem}__{slug(name)}.png"
        atomic_write(sidecar.parent / rel, png)
        files[name] = rel
    payload = {
        "notebook": rec.notebook,
        "status": rec.status,
        "error": rec.error,
        "wall_time_s": rec.wall_time_s,
        "context": rec.context,
        "results": encode(rec.results),
        "figures": files,
    }
    atomic_write(sidecar, json.dumps(payload, indent=1, default=str))


def slug(name: str) -> str:
    """``name`` with every character but letters, digits, ``-`` and ``_`` replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one level, keys joined with dots (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
