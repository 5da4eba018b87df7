"""Papermill runs: record/read round trip, failures reported, nothing overwritten, smoke switch."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from workbench import runs
from workbench.runs import executor, recording
from workbench.runs.records import MIME, encode
from workbench.runs.report import write_report


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
p = runs.start(parameters=globals(), smoke=dict(x=-1))
runs.record("x_squared", p.x ** 2)
runs.record("table", pd.DataFrame({"model": ["a", "b"], "ndcg": [0.1, 0.2]}))
runs.record("nested", {"a": {"b": 1.5}})
fig, ax = plt.subplots()
ax.plot([1, 2], [3, 4])
runs.record_figure("line", fig)
"""

#: the parameters cell of the good notebook: what its run records as ``parameters``
GOOD_PARAMETERS = "x = 1  # a number\nname = 'a'  # a name\ndataset = 'synthetic'\nseed = 3"

BAD = """
from workbench import runs
runs.start(parameters=globals())
runs.record("before_error", 1)
raise ValueError("boom in cell")
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """One run_all over a good and a failing notebook, with a parameter for both."""
    src = tmp_path_factory.mktemp("src")
    good = _notebook(src / "01_good.ipynb", GOOD, GOOD_PARAMETERS)
    bad = _notebook(src / "02_bad.ipynb", BAD)
    run_dir, records = executor.run_all(
        [good, bad], parameters={"x": 7, "undeclared": 1}, runs_dir=tmp_path_factory.mktemp("runs")
    )
    return run_dir, {r.notebook: r for r in records}


def test_results_round_trip_through_notebook_and_sidecar(executed):
    run_dir, _ = executed
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
        executor.execute(run_dir / "01_good.ipynb", run_dir)
    assert (run_dir / "01_good.json").read_bytes() == before
    a, b = executor.new_run_dir(tmp_path), executor.new_run_dir(tmp_path)
    assert a != b and a.is_dir() and b.is_dir()


def test_failed_report_write_keeps_the_old_report(executed, monkeypatch):
    run_dir, _ = executed
    good = (run_dir / "report.md").read_text()
    import workbench.runs.report as report

    def explode(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_notebook_md", explode)
    with pytest.raises(RuntimeError):
        write_report(run_dir)
    assert (run_dir / "report.md").read_text() == good


def test_smoke_overrides_apply_only_when_switched_on(monkeypatch):
    monkeypatch.setattr(recording, "_display", lambda *a, **k: None)
    monkeypatch.delenv(recording.SMOKE_ENV, raising=False)
    params = {"dataset": "ml-100k"}
    assert runs.start(parameters=params, smoke=dict(dataset="synthetic")).dataset == "ml-100k"
    monkeypatch.setenv(recording.SMOKE_ENV, "1")
    assert runs.start(parameters=params, smoke=dict(dataset="synthetic")).dataset == "synthetic"
    with pytest.raises(ValueError, match="undeclared parameter"):
        runs.start(parameters=params, smoke=dict(datset="synthetic"))


def test_record_rejects_what_it_cannot_store():
    with pytest.raises(TypeError, match="cannot record"):
        runs.record("obj", object())
    with pytest.raises(ValueError):
        runs.record("", 1)


def test_numpy_and_non_finite_values_encode():
    import numpy as np

    enc = encode({"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": float("inf")})
    assert enc == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": "inf"}


def test_report_puts_headline_tables_first(tmp_path):
    frame = {"__dataframe__": {"columns": ["model", "ndcg"], "data": [["EASE", 0.48]]}}
    (tmp_path / "02_sparse_cf.json").write_text(
        json.dumps(
            {
                "notebook": "02_sparse_cf",
                "status": "ok",
                "error": None,
                "wall_time_s": 1.0,
                "context": {"dataset": "ml-100k"},
                "results": {"quality_table": frame, "other": 1},
                "figures": {},
            }
        )
    )
    text = write_report(tmp_path).read_text()
    head = text.index("## Headlines")
    assert head < text.index("## 02_sparse_cf")
    assert "Sparse CF, Microsoft Recommenders protocol" in text[head:] and "| EASE    |   0.48 |" in text


# --------------------------------------------------------------------------- declared parameters

#: a kernel's history: the ``parameters`` cell, papermill's injected cell, then code
PARAMETERS_CELL = "dataset = 'ml-100k'  # data set\nseed = 0  # seed\nk = 10\nrates = [0.1, 0.2]"
INJECTED_CELL = "# Parameters\nseed = 7\n"
CODE_CELL = "import math\nhelper = 5\nscale = math.pi"
DECLARED = {"dataset": "ml-100k", "seed": 7, "k": 10, "rates": [0.1, 0.2]}


def _kernel_globals() -> dict:
    """``globals()`` of a kernel that ran the three cells above: IPython's input history
    ``In`` and its other names, the parameters (``seed`` as injected), the code cell's names."""
    import math

    return {
        "__name__": "__main__",
        "__builtins__": __builtins__,
        "In": ["", PARAMETERS_CELL, INJECTED_CELL, CODE_CELL],
        "Out": {},
        "get_ipython": lambda: None,
        "exit": None,
        "quit": None,
        "_": "",
        "_i3": CODE_CELL,
        "dataset": "ml-100k",
        "seed": 7,
        "k": 10,
        "rates": [0.1, 0.2],
        "math": math,
        "helper": 5,
        "scale": math.pi,
    }


@pytest.fixture
def shown(monkeypatch):
    """What ``runs.start`` displays (the context output), smoke switched off."""
    out = []
    monkeypatch.setattr(recording, "_display", lambda data, metadata_=None: out.append(data))
    monkeypatch.delenv(recording.SMOKE_ENV, raising=False)
    return out


def test_literal_assignments_only_from_cells_of_nothing_but_literal_assignments():
    assert recording.literal_assignments(PARAMETERS_CELL) == ["dataset", "seed", "k", "rates"]
    assert recording.literal_assignments(INJECTED_CELL) == ["seed"]
    assert recording.literal_assignments(CODE_CELL) is None
    assert recording.literal_assignments("") is None
    assert recording.literal_assignments("x = 1\ny = x") is None  # one non-literal line spoils the cell
    assert recording.literal_assignments("x = (") is None  # a cell that did not even parse
    assert recording.literal_assignments("d = {[1]: 2}") is None  # parses, but is no literal (unhashable key)
    assert recording.literal_assignments("x: int = 3\ny = [1.5, None]") == ["x", "y"]  # annotated, as papermill reads


def test_in_a_kernel_the_parameters_are_the_literal_cells_names_with_current_values(shown):
    namespace = _kernel_globals()
    assert recording.declared_parameters(namespace) == ["dataset", "seed", "k", "rates"]  # once each, in order
    p = runs.start(parameters=namespace)
    assert p.as_dict() == DECLARED  # seed as injected; helper, scale, math and IPython's names are not parameters
    ctx = shown[-1][MIME]["value"]
    assert ctx["parameters"] == DECLARED
    assert ctx["dataset"] == "ml-100k" and ctx["seed"] == 7 and ctx["smoke"] is False


def test_smoke_keys_must_be_declared_parameters(shown, monkeypatch):
    namespace = _kernel_globals()
    with pytest.raises(ValueError, match=r"undeclared parameter\(s\) \['helper'\]"):
        runs.start(parameters=namespace, smoke=dict(helper=1))  # assigned, but in a code cell
    monkeypatch.setenv(recording.SMOKE_ENV, "1")
    p = runs.start(parameters=namespace, smoke=dict(dataset="synthetic", k=3))
    assert p.as_dict() == {**DECLARED, "dataset": "synthetic", "k": 3}
    assert shown[-1][MIME]["value"]["parameters"] == p.as_dict() and shown[-1][MIME]["value"]["smoke"] is True


def test_a_plain_dict_is_the_parameters(shown):
    params = {"dataset": "ml-1m", "seed": 1, "k": 20}
    p = runs.start(parameters=params, smoke=dict(k=5))
    assert p.as_dict() == params and p.k == 20
    assert shown[-1][MIME]["value"]["parameters"] == params
    with pytest.raises(ValueError, match="undeclared parameter"):
        runs.start(parameters=params, smoke=dict(kk=5))


def test_outside_ipython_public_literal_globals_are_the_parameters(shown):
    import math

    namespace = {
        "__name__": "__main__",
        "__builtins__": __builtins__,
        "__doc__": "a script",
        "math": math,  # a module
        "helper": len,  # a function
        "square": lambda v: v * v,
        "Frame": pd.DataFrame,  # a class
        "frame": pd.DataFrame({"a": [1]}),
        "mixed": [1, object()],
        "_private": 1,
        "open": None,  # IPython's names are never parameters
        "dataset": "synthetic",
        "seed": 3,
        "rates": [0.1, 0.2],
        "options": {"a": None, "b": (True, 2.5)},
    }
    assert recording.declared_parameters(namespace) == ["dataset", "seed", "rates", "options"]
    p = runs.start(parameters=namespace)
    assert p.as_dict() == {
        "dataset": "synthetic",
        "seed": 3,
        "rates": [0.1, 0.2],
        "options": {"a": None, "b": (True, 2.5)},
    }
    assert shown[-1][MIME]["value"]["parameters"]["options"] == {"a": None, "b": [True, 2.5]}


DECLARES = """
from workbench import runs
helper = 5  # assigned in a code cell: not a parameter
p = runs.start(parameters=globals(), smoke=dict(dataset="synthetic"))
runs.record("parameters", p.as_dict())
"""


def test_papermill_run_records_exactly_the_declared_parameters_with_injected_values(tmp_path):
    nb = _notebook(tmp_path / "03_declares.ipynb", DECLARES, "dataset = 'ml-100k'  # data set\nseed = 0\nk = 10")
    rec = executor.execute(nb, tmp_path / "out", {"seed": 7, "k": 20})
    assert rec.status == "ok", rec.error
    expected = {"dataset": "ml-100k", "seed": 7, "k": 20}
    assert rec.results["parameters"] == expected
    assert rec.context["parameters"] == expected and rec.context["seed"] == 7
    assert runs.read_run(tmp_path / "out" / "03_declares.json").context["parameters"] == expected


def test_a_kernel_without_input_history_falls_back_to_the_literal_globals(shown):
    """nbval executes cells without storing history (``In`` stays empty): the parameters
    are then the public literal globals, as they stand when ``start`` runs right after
    the parameters cell."""
    import math

    namespace = {**_kernel_globals(), "In": [""], "helper": math.sqrt, "scale": math}
    assert recording.declared_parameters(namespace) == ["dataset", "seed", "k", "rates"]
    assert runs.start(parameters=namespace).as_dict() == DECLARED


# --------------------------------------------------------------------------- trustworthy timings

MACHINE = """
import os
from workbench import runs
runs.start(parameters=globals())
runs.record("omp_wait_policy", os.environ.get("OMP_WAIT_POLICY"))
"""


def test_kernels_wait_passively_and_records_carry_the_machine_load(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    nb = _notebook(tmp_path / "04_machine.ipynb", MACHINE)
    rec = executor.execute(nb, tmp_path / "out")
    assert rec.status == "ok", rec.error
    assert rec.results["omp_wait_policy"] == "PASSIVE"  # idle OpenMP threads sleep instead of spinning
    ctx = runs.read_run(tmp_path / "out" / "04_machine.json").context
    for when in ("load_at_start", "load_at_end"):
        load = ctx[when]
        assert len(load["load_avg"]) == 3 and all(v >= 0 for v in load["load_avg"]), when
        assert load["cpu_count"] >= 1 and 1 <= load["cores"] <= load["cpu_count"]
    assert ctx["omp_wait_policy"] == "PASSIVE" and ctx["torch_threads"] >= 1


def test_a_users_own_openmp_wait_policy_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert executor.kernel_environment(smoke=False)["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    env = executor.kernel_environment(smoke=True)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env[recording.SMOKE_ENV] == "1"


def test_the_kernels_unencrypted_tcp_warning_does_not_reach_the_jobs_output(tmp_path, capfd):
    nb = _notebook(tmp_path / "04_quiet.ipynb", "print('from the notebook')")
    rec = executor.execute(nb, tmp_path / "out")
    assert rec.status == "ok", rec.error
    out, err = capfd.readouterr()
    assert "without encryption" not in out + err


def _timing_sidecar(folder, notebook: str, load: float, cores: int = 2):
    machine = {"load_avg": [load, load, load], "cpu_count": cores, "cores": cores}
    (folder / f"{notebook}.json").write_text(
        json.dumps(
            {
                "notebook": notebook,
                "status": "ok",
                "error": None,
                "wall_time_s": 1.0,
                "context": {"torch_threads": 2, "load_at_start": machine, "load_at_end": machine},
                "results": {"summary": {"__dataframe__": {"columns": ["batch", "per_s"], "data": [[1, 17.0]]}}},
                "figures": {},
            }
        )
    )


def test_timings_from_a_busy_machine_are_marked_not_headlined(tmp_path):
    busy, quiet = tmp_path / "busy", tmp_path / "quiet"
    for folder, load in ((busy, 3.4), (quiet, 1.2)):
        folder.mkdir()
        _timing_sidecar(folder, "05_speedups", load)
    text = write_report(busy).read_text()
    headlines = text[text.index("## Headlines") : text.index("## 05_speedups")] if "## Headlines" in text else ""
    assert "|       1 |      17 |" not in headlines  # the busy timing is no headline
    assert "busy machine" in text and "3.4" in text
    section = text[text.index("## 05_speedups") :]
    assert "busy machine" in section and "|       1 |      17 |" in section  # still shown, marked
    calm = write_report(quiet).read_text()
    assert "busy machine" not in calm
    assert "|       1 |      17 |" in calm[calm.index("## Headlines") : calm.index("## 05_speedups")]


def test_a_notebooks_own_workers_do_not_make_the_machine_busy(tmp_path):
    """Two sweep workers on two cores load the machine to 2.2 by themselves: not busy.
    The same load with one core of its own is another process competing: busy."""
    own, other = tmp_path / "own", tmp_path / "other"
    for folder, own_cores in ((own, 1.9), (other, 1.0)):
        folder.mkdir()
        _timing_sidecar(folder, "05_speedups", 1.0)
        path = folder / "05_speedups.json"
        record = json.loads(path.read_text())
        record["context"]["load_at_end"] = {"load_avg": [2.2, 2, 2], "cpu_count": 2, "cores": 2, "own_cores": own_cores}
        path.write_text(json.dumps(record))
    assert "busy machine" not in write_report(own).read_text()
    assert "load 2.2 on 2 cores at its end, 1.0 of it its own" in write_report(other).read_text()


def test_records_carry_the_cores_the_notebook_kept_busy(tmp_path):
    notebook = tmp_path / "nb.ipynb"
    cell = nbformat.v4.new_code_cell("x = sum(i * i for i in range(3_000_000))")
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), notebook)
    rec = executor.execute(notebook, tmp_path / "out")
    assert rec.status == "ok"
    own = rec.context["load_at_end"]["own_cores"]
    assert 0.05 < own <= 2.5  # the kernel's start-up and its loop, over the run's wall time
