"""Runs: recording a notebook's results, executing notebooks, the report, the results
store and parameter sweeps.

- :mod:`.recording` -- inside a notebook: ``start``, ``record``, ``record_figure``;
- :mod:`.records` -- what a run recorded (:class:`RunRecord`), encoded, written, read back;
- :mod:`.executor` -- papermill execution into ``runs/<time>/``, never overwriting;
- :mod:`.report` -- ``report.md`` for a run folder;
- :mod:`.store` -- every run in one SQLite file, rebuilt from the JSON records at will;
- :mod:`.sweeps` -- a grid of runs, parallel and resumable.

The top of the library below the CLI: runs may import every layer under it (sweeps use
the evaluation grid), and nothing but the CLI imports runs. What a notebook needs is
re-exported here: ``runs.start``, ``runs.record``, ``runs.record_figure``, ``runs.read``.
"""

from workbench.runs.recording import record, record_figure, smoke_enabled, start
from workbench.runs.records import RunRecord, read, read_run

__all__ = ["RunRecord", "read", "read_run", "record", "record_figure", "smoke_enabled", "start"]
