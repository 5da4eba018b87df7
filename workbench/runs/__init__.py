"""Runs: recording a notebook's results, executing notebooks, the report, the results
store and parameter sweeps.

- :mod:`.recording` -- inside a notebook: ``start``, ``record``, ``record_figure``;
- :mod:`.records` -- what a run recorded (:class:`RunRecord`), encoded, written, read back;
- :mod:`.parameters` -- what a notebook declares, and the values that may reach its kernel;
- :mod:`.executor` -- papermill execution into ``runs/<time>/``, never overwriting;
- :mod:`.report` -- ``report.md`` for a run folder;
- :mod:`.store` -- every run in one SQLite file, rebuilt from the JSON records at will;
- :mod:`.sweeps` -- a grid of runs, parallel and resumable, failed points retried;
- :mod:`.cluster` -- the same points as Ray tasks on a cluster (the one module that imports Ray);
- :mod:`.search` -- an adaptive search (Optuna TPE) run by either backend, its study resumable;
- :mod:`.lock` -- one sweep at a time per folder, naming the holder to a second one.

The top of the library below the CLI: runs may import every layer under it, and nothing
but the CLI imports runs. What a notebook needs is available here: ``runs.start``,
``runs.record``, ``runs.record_figure``, ``runs.read``. The recording functions (which
load torch, for the device and threads they record) are imported on first use, so that
the executor, the store and a sweep's worker processes do not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.runs.records import RunRecord, read, read_run

_RECORDING = ("record", "record_figure", "smoke_enabled", "start")
__all__ = ["RunRecord", "read", "read_run", *_RECORDING]


def __getattr__(name: str) -> Any:
    if name not in _RECORDING:
        raise AttributeError(f"module 'workbench.runs' has no attribute {name!r}")
    return getattr(importlib.import_module("workbench.runs.recording"), name)
