"""Recording a run from inside its notebook: its parameters and context, its results and
figures.

Inside a notebook, after the cell tagged ``parameters``::

    p = runs.start(parameters=globals(), smoke=dict(dataset="synthetic"))
    runs.record("ndcg@10", 0.41)
    runs.record_figure("popularity_long_tail", fig)

``start`` finds the names the parameters cell declares (and that papermill's injected
cell overrides), so each parameter is written once. It displays the run's context
(parameters, versions, git commit, device, host) and ``record`` displays each result,
both under the MIME type :data:`~workbench.runs.records.MIME`, so the executed notebook
itself is the machine-readable record (:func:`workbench.runs.read` reads it back).

Offline switch: with ``WORKBENCH_SMOKE=1`` in the environment, ``start`` applies each
notebook's ``smoke`` overrides (synthetic data, tiny sizes) and records ``smoke: true``.
Without it nothing is overridden: there is no silent fallback from real data.
"""

from __future__ import annotations

import ast
import base64
import io
import os
import platform
import socket
import subprocess
import types
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from workbench.devices import resolve_device
from workbench.runs.records import MIME, REPO_ROOT, SMOKE_ENV, encode, machine_load

PACKAGES = ("workbench", "torch", "transformers", "numpy", "scipy", "pandas", "papermill")
#: IPython's own names in a kernel's globals, never parameters
_KERNEL_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


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
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
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
    """Everything that makes a result reproducible, besides the code at ``git_commit``;
    and how busy the machine was (``load_at_start``), which timings depend on."""
    return {
        "parameters": params,
        "smoke": smoke,
        "dataset": params.get("dataset"),
        "seed": params.get("seed"),
        **_device_info(params.get("device")),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_at_start": machine_load(),
        "versions": versions(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _display(data: dict[str, Any], metadata_: dict | None = None) -> None:
    display(data, raw=True, metadata=metadata_ or {})


def literal_assignments(source: str) -> list[str] | None:
    """The names a cell assigns, if the cell is nothing but ``name = <literal>`` lines (as
    a parameters cell and papermill's injected one are); None for any other cell."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None
    names = []
    for statement in body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:  # x: int = 3
            target, value = statement.target, statement.value
        else:
            return None
        if not isinstance(target, ast.Name):
            return None
        try:
            ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # not a literal, or {[1]: 2}
            return None
        names.append(target.id)
    return names or None


def declared_parameters(namespace: Mapping[str, Any]) -> list[str]:
    """The parameter names of the notebook whose globals are ``namespace``, in order.

    Where the kernel keeps its input history (``In``: JupyterLab, papermill), every name
    assigned by an executed cell made only of literal assignments -- the ``parameters``
    cell and papermill's injected one -- so a literal computed in some other cell never
    counts. Where it keeps none (nbval executes without history, plain Python has no
    ``In``): every public global whose value is a plain literal (None, bool, number, str,
    or lists/dicts of those), which before the first cell after the parameters are the
    parameters."""
    history = namespace.get("In")
    if isinstance(history, list):
        names = [n for cell in history for n in (literal_assignments(cell) or []) if n in namespace]
        if names:
            return list(dict.fromkeys(names))
    return [n for n, v in namespace.items() if not n.startswith("_") and n not in _KERNEL_NAMES and _is_literal(v)]


def _is_literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_literal(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_literal(v) for k, v in value.items())
    return False


def start(parameters: Mapping[str, Any], *, smoke: Mapping[str, Any] | None = None) -> Params:
    """Declare the run's parameters and record its context; returns the effective
    parameters as attributes (``p.dataset``).

    ``parameters``: the notebook's ``globals()`` -- the names its parameters cell declares
    are taken from it (see :func:`declared_parameters`) -- or a plain dict of them.
    ``smoke`` holds the overrides used when ``WORKBENCH_SMOKE=1``; its keys must be
    parameters.
    """
    if "__name__" in parameters and "__builtins__" in parameters:  # globals(), not a dict of parameters
        params = {name: parameters[name] for name in declared_parameters(parameters)}
    else:
        params = dict(parameters)
    smoke = dict(smoke or {})
    unknown = sorted(set(smoke) - set(params))
    if unknown:
        raise ValueError(f"smoke overrides name undeclared parameter(s) {unknown}; declared: {sorted(params)}")
    on = smoke_enabled()
    if on:
        params = {**params, **smoke}
    ctx = context(encode(params), smoke=on)
    _display({MIME: {"kind": "context", "value": ctx}, "text/plain": _context_line(ctx)})
    return Params(**params)


def _context_line(ctx: dict[str, Any]) -> str:
    return (
        f"workbench run: dataset={ctx['dataset']} seed={ctx['seed']} device={ctx['device']} "
        f"smoke={ctx['smoke']} commit={(ctx['git_commit'] or 'unknown')[:12]}"
    )


def record(name: str, value: Any) -> None:
    """Record one named result (number, string, list, dict or DataFrame) in the notebook."""
    if not isinstance(name, str) or not name:
        raise ValueError("record name must be a non-empty string")
    encoded = encode(value)
    text = repr(value) if not isinstance(value, pd.DataFrame) else f"<DataFrame {value.shape}>"
    _display({MIME: {"kind": "result", "name": name, "value": encoded}, "text/plain": f"{name} = {text[:200]}"})


def record_figure(name: str, fig) -> None:
    """Show a matplotlib Figure as PNG and mark it as the named figure of this run."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    _display({"image/png": png, "text/plain": f"<figure {name}>"}, {"workbench": {"figure": name}})
