"""Sweep points as Ray tasks: the notebook and its parameters travel with each task, the
executed notebook and its record come back, and the driver writes them.

>>> with RayRunner(notebook, folder, address="10.0.0.1:6379", cpus_per_point=2) as runner:
...     runner.submit({"ease_reg": 300.0}, "02_sparse_cf__ease_reg-300_0")
...     name, status = runner.next_done()   # the point's .ipynb and .json are in folder now

Each point is one Ray task (:func:`run_on_node`, a generator: it first yields where it
runs, then what it recorded) with the resources asked per point, so Ray places it on any
node that has them; workers need the workbench installed, no shared filesystem. Ray's own
retries are off (``max_retries=0``): a task whose worker or node died comes back as a
failed record naming the error and the node, which the sweep keeps under ``attempts/``
and retries itself. This is the only module that imports Ray, and only when a runner
starts (:func:`import_ray`), so the workbench needs no Ray unless asked for it.
"""

from __future__ import annotations

import importlib
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from workbench.runs.executor import execute
from workbench.runs.records import RunRecord, atomic_write, write_sidecar

INSTALL_HINT = "pip install -e .[ray]  (or: pip install 'ray>=2.9')"
#: how long the driver waits for a task event before it looks at Ctrl+C again
POLL_S = 0.5

Progress = Callable[[str, str, str], None]


class RayMissing(RuntimeError):
    """``--backend ray`` without Ray installed; the message says how to install it."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`RayMissing` saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise RayMissing(
            f"the Ray backend needs Ray, which is not installed ({err}); install it with: {INSTALL_HINT}"
        ) from None


@dataclass
class Finished:
    """What a point's task sends back: its record (figures inside) and the executed notebook."""

    record: RunRecord
    notebook: bytes | None


def this_node() -> dict[str, Any]:
    """Where the calling Ray task runs: host name, node IP, Ray node id and worker pid."""
    ray = import_ray()
    return {
        "host": socket.gethostname(),
        "ip": ray.util.get_node_ip_address(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }


def run_on_node(notebook: bytes, notebook_name: str, params: dict, name: str, smoke: bool) -> Iterator[Any]:
    """The Ray task of one point: yield :func:`this_node`, then execute the notebook (sent
    as bytes) in a private temporary folder and yield :class:`Finished`."""
    yield this_node()
    with tempfile.TemporaryDirectory(prefix="workbench-point-") as tmp:
        source = Path(tmp) / notebook_name
        source.write_bytes(notebook)
        rec = execute(source, Path(tmp) / "out", params, smoke=smoke, name=name)
        output = Path(tmp) / "out" / f"{name}.ipynb"
        yield Finished(rec, output.read_bytes() if output.exists() else None)


def describe(node: dict[str, Any] | None) -> str:
    """``host (ip, node 1a2b3c4d)`` for a progress line."""
    if not node:
        return "an unknown node"
    return f"{node['host']} ({node['ip']}, node {str(node['node_id'])[:8]})"


class RayRunner:
    """Points run as Ray tasks on the cluster at ``address`` (None: the one ``ray.init``
    finds, or a new local one); their files land in ``folder`` when each finishes.

    Leaving the block by an exception (Ctrl+C included) cancels every task still queued
    or running; points already written stay, so the sweep resumes from them."""

    def __init__(
        self,
        notebook: Path,
        folder: Path,
        *,
        smoke: bool = False,
        address: str | None = None,
        cpus_per_point: float = 1,
        gpus_per_point: float = 0,
        progress: Progress | None = None,
    ):
        self.ray = import_ray()
        self.notebook, self.folder, self.smoke, self.address = Path(notebook), Path(folder), smoke, address
        self.resources = {"CPU": float(cpus_per_point), "GPU": float(gpus_per_point)}
        self.progress = progress or (lambda name, state, detail: None)
        self._tasks: dict[Any, tuple[str, dict, dict | None]] = {}  # generator -> (name, params, node)
        self._connected_here = False

    def __enter__(self) -> RayRunner:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False if not self.address else None)
            self._connected_here = True
        self._check_resources()
        self._task = ray.remote(run_on_node).options(
            num_cpus=self.resources["CPU"], num_gpus=self.resources["GPU"], max_retries=0
        )
        self._source = ray.put(self.notebook.read_bytes())
        return self

    def __exit__(self, kind, err, tb) -> None:
        try:
            if kind is not None:
                for gen, (name, _, _) in list(self._tasks.items()):
                    self.ray.cancel(gen, force=True)
                    self.progress(name, "cancelled", "")
                self._tasks.clear()
        finally:
            if self._connected_here:
                self.ray.shutdown()

    def _check_resources(self) -> None:
        """Refuse, before anything is submitted, a request no live node can hold (Ray would
        queue it for ever)."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        fits = [n for n in nodes if all(n["Resources"].get(k, 0.0) >= v for k, v in self.resources.items() if v > 0)]
        if not fits:
            have = [{k: n["Resources"].get(k, 0.0) for k in ("CPU", "GPU")} for n in nodes]
            raise ValueError(
                f"no node of the Ray cluster offers {self.resources['CPU']:g} CPU and {self.resources['GPU']:g} GPU "
                f"per point (its live nodes have {have}); lower --cpus-per-point / --gpus-per-point or add a node"
            )

    def pending(self) -> int:
        """Points submitted and not yet returned by :meth:`next_done`."""
        return len(self._tasks)

    def submit(self, params: dict, name: str) -> None:
        """Queue one point as a Ray task."""
        gen = self._task.remote(self._source, self.notebook.name, params, name, self.smoke)
        self._tasks[gen] = (name, params, None)
        self.progress(name, "queued", "")

    def next_done(self) -> tuple[str, str]:
        """Wait for the next point to finish; write its files into the folder and return
        its name and status (``ok`` or ``failed``)."""
        while True:
            ready, _ = self.ray.wait(list(self._tasks), num_returns=1, timeout=POLL_S)
            for gen in ready:
                done = self._step(gen)
                if done is not None:
                    return done

    def _step(self, gen) -> tuple[str, str] | None:
        name, params, node = self._tasks[gen]
        try:
            value = self.ray.get(next(gen))
        except StopIteration:  # cannot happen before Finished; treated as a lost task
            value = RuntimeError("the task ended without sending its record")
        except self.ray.exceptions.RayError as err:
            value = err
        if isinstance(value, dict):
            self._tasks[gen] = (name, params, value)
            self.progress(name, "running", f"on {describe(value)}")
            return None
        del self._tasks[gen]
        rec = value.record if isinstance(value, Finished) else self._lost(params, value)
        rec.context.update(node=node, backend="ray")
        if isinstance(value, Finished) and value.notebook is not None:
            atomic_write(self.folder / f"{name}.ipynb", value.notebook)
        write_sidecar(rec, self.folder / f"{name}.json")
        self.progress(name, rec.status, f"on {describe(node)}" + _why(rec))
        return name, rec.status

    def _lost(self, params: dict, err: BaseException) -> RunRecord:
        """The record of a point whose task died (worker or node lost, task error)."""
        cause = getattr(err, "cause", None) or err
        error = {"cell_index": None, "ename": type(cause).__name__, "evalue": str(err)[:1000]}
        error["notebook"] = self.notebook.name
        return RunRecord(notebook=self.notebook.stem, status="failed", context={"parameters": params}, error=error)


def _why(rec: RunRecord) -> str:
    if rec.status == "ok" or not rec.error:
        return ""
    return f": {rec.error.get('ename')}: {str(rec.error.get('evalue'))[:120]}"
