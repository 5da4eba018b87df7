"""Papermill runs: record/read round trip, failures reported, nothing overwritten, smoke switch."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from workbench import runs
from workbench.report import write_report


def _notebook(path, body: str, params: str = "x = 1  # a number\nname = 'a'  # a name"):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(body),
        ]
    )
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, path)
    return path


GOOD = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from workbench import runs
p = runs.start(x=x, name=name, dataset="synthetic", seed=3, smoke=dict(x=-1))
runs.record("x_squared", p.x ** 2)
runs.record("table", pd.DataFrame({"model": ["a", "b"], "ndcg": [0.1, 0.2]}))
runs.record("nested", {"a": {"b": 1.5}})
fig, ax = plt.subplots()
ax.plot([1, 2], [3, 4])
runs.record_figure("line", fig)
"""

BAD = """
from workbench import runs
runs.start(x=x)
runs.record("before_error", 1)
raise ValueError("boom in cell")
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """One run_all over a good and a failing notebook, with a parameter for both."""
    src = tmp_path_factory.mktemp("src")
    good = _notebook(src / "01_good.ipynb", GOOD)
    bad = _notebook(src / "02_bad.ipynb", BAD)
    run_dir, records = runs.run_all([good, bad], parameters={"x": 7, "undeclared": 1},
                                    runs_dir=tmp_path_factory.mktemp("runs"))
    return run_dir, {r.notebook: r for r in records}


def test_results_round_trip_through_notebook_and_sidecar(executed):
    run_dir, records = executed
    for source in (run_dir / "01_good.ipynb", run_dir / "01_good.json"):
        results = runs.read(source)
        assert results["x_squared"] == 49  # the injected parameter, not the default
        assert isinstance(results["table"], pd.DataFrame)
        assert results["table"]["ndcg"].tolist() == [0.1, 0.2]
        assert results["nested"] == {"a": {"b": 1.5}}


def test_context_records_reproducibility_fields(executed):
    run_dir, _ = executed
    ctx = runs.read_run(run_dir / "01_good.json").context
    assert ctx["parameters"] == {"x": 7, "name": "a", "dataset": "synthetic", "seed": 3}
    assert ctx["dataset"] == "synthetic" and ctx["seed"] == 3 and ctx["smoke"] is False
    assert ctx["device"] == "cpu" and ctx["torch_threads"] >= 1
    assert ctx["versions"]["torch"] and ctx["versions"]["python"]
    assert "git_commit" in ctx and ctx["started_at"]


def test_figure_saved_as_png_beside_the_notebook(executed):
    run_dir, records = executed
    assert records["01_good"].figures["line"].startswith(b"\x89PNG")
    side = json.loads((run_dir / "01_good.json").read_text())
    assert (run_dir / side["figures"]["line"]).read_bytes().startswith(b"\x89PNG")


def test_failing_notebook_is_reported_and_others_still_run(executed):
    run_dir, records = executed
    assert records["01_good"].status == "ok"
    bad = records["02_bad"]
    assert bad.status == "failed"
    assert bad.error["ename"] == "ValueError" and "boom in cell" in bad.error["evalue"]
    assert bad.error["cell_index"] is not None
    assert bad.results == {"before_error": 1}  # what it recorded before failing is kept
    assert runs.read_run(run_dir / "02_bad.json").status == "failed"


def test_report_gathers_results_figures_and_failures(executed):
    run_dir, _ = executed
    text = (run_dir / "report.md").read_text()
    assert "1 of 2 notebook(s) ran cleanly" in text
    assert "| `x_squared` | 49 |" in text
    assert "| `nested.a.b` | 1.5 |" in text
    assert "![line](figures/01_good__line.png)" in text
    assert "**FAILED**" in text and "boom in cell" in text


def test_runs_never_overwrite(executed, tmp_path):
    run_dir, _ = executed
    before = (run_dir / "01_good.json").read_bytes()
    with pytest.raises(FileExistsError):
        runs.execute(run_dir / "01_good.ipynb", run_dir)
    assert (run_dir / "01_good.json").read_bytes() == before
    a, b = runs.new_run_dir(tmp_path), runs.new_run_dir(tmp_path)
    assert a != b and a.is_dir() and b.is_dir()


def test_failed_report_write_keeps_the_old_report(executed, monkeypatch):
    run_dir, _ = executed
    good = (run_dir / "report.md").read_text()
    import workbench.report as report

    def explode(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_notebook_md", explode)
    with pytest.raises(RuntimeError):
        write_report(run_dir)
    assert (run_dir / "report.md").read_text() == good


def test_smoke_overrides_apply_only_when_switched_on(monkeypatch):
    monkeypatch.setattr(runs, "_display", lambda *a, **k: None)
    monkeypatch.delenv(runs.SMOKE_ENV, raising=False)
    assert runs.start(dataset="ml-100k", smoke=dict(dataset="synthetic")).dataset == "ml-100k"
    monkeypatch.setenv(runs.SMOKE_ENV, "1")
    assert runs.start(dataset="ml-100k", smoke=dict(dataset="synthetic")).dataset == "synthetic"
    with pytest.raises(ValueError, match="undeclared parameter"):
        runs.start(dataset="ml-100k", smoke=dict(datset="synthetic"))


def test_record_rejects_what_it_cannot_store():
    with pytest.raises(TypeError, match="cannot record"):
        runs.record("obj", object())
    with pytest.raises(ValueError):
        runs.record("", 1)


def test_numpy_and_non_finite_values_encode():
    import numpy as np

    enc = runs._jsonable({"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": float("inf")})
    assert enc == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": "inf"}


def test_report_puts_headline_tables_first(tmp_path):
    frame = {"__dataframe__": {"columns": ["model", "ndcg"], "data": [["EASE", 0.48]]}}
    (tmp_path / "02_sparse_cf.json").write_text(json.dumps({
        "notebook": "02_sparse_cf", "status": "ok", "error": None, "wall_time_s": 1.0,
        "context": {"dataset": "ml-100k"}, "results": {"quality_table": frame, "other": 1}, "figures": {},
    }))
    text = write_report(tmp_path).read_text()
    head = text.index("## Headlines")
    assert head < text.index("## 02_sparse_cf")
    assert "Sparse CF, Microsoft Recommenders protocol" in text[head:] and "| EASE    |   0.48 |" in text
