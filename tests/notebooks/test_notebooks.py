"""Every numbered notebook (found by glob) runs under papermill in smoke mode and records results.

Also checks how notebooks are committed: no outputs or widget state, exactly one
``parameters`` cell of literal assignments that papermill can read.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from workbench import runs
from workbench.runs.executor import execute, notebooks
from workbench.runs.records import REPO_ROOT

NOTEBOOKS = notebooks()
IDS = [p.stem for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("01_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_clean_with_one_literal_parameters_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, "widget state is committed"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: committed outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
    names = []
    for stmt in ast.parse(tagged[0].source).body:
        # an annotation declares the type where the default cannot (``devices: list = None``)
        assert isinstance(stmt, (ast.Assign, ast.AnnAssign)), (
            f"{path.name}: parameters cell holds more than assignments"
        )
        ast.literal_eval(stmt.value)  # literals only
        names += [t.id for t in stmt.targets] if isinstance(stmt, ast.Assign) else [stmt.target.id]
    # papermill must read every line (a comment it cannot parse hides the parameter from sweeps)
    assert list(pm.inspect_notebook(str(path))) == names
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    # each parameter is written once: the run reads them from the parameters cell
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert code.count("runs.start(") == 1 and re.search(r"runs\.start\(\s*parameters=globals\(\)", code), path.name


_EXECUTED: dict[Path, runs.RunRecord] = {}


@pytest.fixture(scope="session")
def run_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("notebook-runs")

    def run(path: Path) -> runs.RunRecord:
        if path not in _EXECUTED:
            _EXECUTED[path] = execute(path, out, smoke=True)
        return _EXECUTED[path]

    return run


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_runs_in_smoke_mode_and_records_results(path: Path, run_smoke):
    rec = run_smoke(path)
    assert rec.status == "ok", f"{path.name} failed: {rec.error}"
    assert rec.context["smoke"] is True and rec.context["dataset"] == "synthetic"
    assert rec.results, f"{path.name} recorded nothing"
    # the record holds exactly the declared parameters, smoke overrides applied
    assert set(rec.context["parameters"]) == set(pm.inspect_notebook(str(path)))


def test_01_records_statistics_and_splits(run_smoke):
    rec = run_smoke(Path(REPO_ROOT / "notebooks/01_data_preparation.ipynb"))
    stats = rec.results["stats"]
    assert stats["n_users"] == 150 and stats["n_items"] == 300  # the tiny synthetic preset
    assert 0 < stats["density"] < 1
    table = rec.results["splits"].set_index("split")
    assert table.loc["leave_last_out", "test rows"] == stats["n_users"]
    assert abs(table.loc["stratified", "test share"] - 0.25) < 0.02
    assert {"rating_histogram", "item_popularity", "user_activity", "interactions_over_time"} <= set(rec.figures)


def test_07_records_freshness_per_lane_and_overload_accounting(run_smoke):
    rec = run_smoke(Path(REPO_ROOT / "notebooks/07_serving.ipynb"))
    fresh = rec.results["freshness"]
    assert set(fresh) == {"priority lane off", "priority lane on"}
    assert all(row["reflected_share"] == 1.0 for row in fresh.values())
    overload = rec.results["overload"].set_index("index")
    for run in ("in-process", "http"):
        row = overload.loc[run]
        assert row["lost"] == 0 and row["misrouted"] == 0
        assert row["ok"] + row["rejected"] + row["timeout"] + row["error"] == row["sent"]
    assert {"latency_throughput", "batch_sizes", "freshness"} <= set(rec.figures)


SHARED_ML100K = REPO_ROOT.parent / "shared" / "data" / "ml-100k"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ML100K.is_dir(), reason="../shared/data/ml-100k is absent")
def test_01_on_real_ml100k(tmp_path):
    rec = execute(
        REPO_ROOT / "notebooks/01_data_preparation.ipynb",
        tmp_path,
        {"dataset": "ml-100k", "data_path": str(SHARED_ML100K)},
    )
    assert rec.status == "ok", rec.error
    stats = rec.results["stats"]
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (943, 1682, 100000)
    assert rec.context["dataset"] == "ml-100k" and rec.context["smoke"] is False
