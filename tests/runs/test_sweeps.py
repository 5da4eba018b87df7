"""Sweeps: grid execution in parallel processes, resumability, failures kept, bad input refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workbench.cli import main
from workbench.runs import lock, store, sweeps
from workbench.runs.records import CorruptRecordWarning

BODY = """
from workbench import runs
p = runs.start(parameters=globals())
if p.x == 3:
    raise RuntimeError("x == 3 is not allowed")
runs.record("x_squared", p.x ** 2)
runs.record("label_len", len(p.label))
"""


@pytest.fixture
def notebook(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "x = 1  # an integer\nlabel = 'a'  # a string\nrate = 0.5  # a float", metadata={"tags": ["parameters"]}
            ),
            nbformat.v4.new_code_cell(BODY),
        ]
    )
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    path = tmp_path / "09_demo.ipynb"
    nbformat.write(nb, path)
    return path


def test_sweep_runs_grid_in_parallel_records_failures_and_resumes(notebook, tmp_path):
    runs_dir = tmp_path / "runs"
    grid = {"x": [1, 2, 3], "label": ["ab"]}
    frame = sweeps.sweep(notebook, grid, jobs=2, runs_dir=runs_dir, retries=0)  # retries: tested below
    assert len(frame) == 3
    by_x = frame.set_index("param.x")
    assert by_x.loc[1, "status"] == "ok" and by_x.loc[2, "x_squared"] == 4
    assert by_x.loc[3, "status"] == "failed"
    assert (by_x["label_len"].dropna() == 2).all()
    folder = runs_dir / sweeps.sweep_id(notebook, grid)
    ok_side = folder / f"{sweeps.point_name(notebook, {'x': 1, 'label': 'ab'})}.json"
    stamp = ok_side.stat().st_mtime_ns
    failed_name = sweeps.point_name(notebook, {"x": 3, "label": "ab"})
    error = json.loads((folder / f"{failed_name}.json").read_text())["error"]
    assert error["ename"] == "RuntimeError" and "not allowed" in error["evalue"]

    again = sweeps.sweep(notebook, grid, jobs=1, runs_dir=runs_dir, retries=0)  # resume
    assert ok_side.stat().st_mtime_ns == stamp  # finished points are not re-run
    assert len(again) == 3
    assert (folder / "attempts" / f"{failed_name}.1.json").exists()  # the earlier failure is kept


def test_interrupted_point_is_set_aside_and_rerun(notebook, tmp_path):
    runs_dir = tmp_path / "runs"
    grid = {"x": [2]}
    folder = runs_dir / sweeps.sweep_id(notebook, grid)
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(
        json.dumps({"format_version": sweeps.FORMAT_VERSION, "notebook": notebook.name, "grid": grid})
    )
    name = sweeps.point_name(notebook, {"x": 2})
    (folder / f"{name}.ipynb").write_text("{half a notebook")  # killed mid-run: no sidecar
    frame = sweeps.sweep(notebook, grid, runs_dir=runs_dir)
    assert frame["status"].tolist() == ["ok"]
    assert (folder / "attempts" / f"{name}.1.ipynb").read_text() == "{half a notebook"


def test_bad_grids_fail_before_running(notebook, tmp_path):
    runs_dir = tmp_path / "runs"
    with pytest.raises(sweeps.SweepError, match=r"declares no parameter\(s\) \['y'\].*\['label', 'rate', 'x'\]"):
        sweeps.sweep(notebook, {"y": [1]}, runs_dir=runs_dir)
    with pytest.raises(sweeps.SweepError, match="expects int"):
        sweeps.sweep(notebook, {"x": ["one"]}, runs_dir=runs_dir)
    with pytest.raises(sweeps.SweepError, match="expects str"):
        sweeps.sweep(notebook, {"label": [1]}, runs_dir=runs_dir)
    with pytest.raises(sweeps.SweepError, match="empty grid"):
        sweeps.sweep(notebook, {}, runs_dir=runs_dir)
    with pytest.raises(sweeps.SweepError, match="empty grid"):
        sweeps.sweep(notebook, {"x": []}, runs_dir=runs_dir)
    assert not runs_dir.exists()
    sweeps.check_grid(notebook, {"rate": [1, 0.25]})  # an int where a float is declared is fine


def test_folder_from_an_older_version_is_refused_untouched(notebook, tmp_path):
    runs_dir = tmp_path / "runs"
    grid = {"x": [1]}
    folder = runs_dir / sweeps.sweep_id(notebook, grid)
    folder.mkdir(parents=True)
    old = json.dumps({"format_version": 0, "notebook": notebook.name, "grid": grid})
    (folder / "sweep.json").write_text(old)
    with pytest.raises(sweeps.SweepError, match="format 0"):
        sweeps.sweep(notebook, grid, runs_dir=runs_dir)
    assert (folder / "sweep.json").read_text() == old and os.listdir(folder) == ["sweep.json"]


def test_store_rebuild_matches_incremental_store(notebook, tmp_path):
    runs_dir = tmp_path / "runs"
    sweeps.sweep(notebook, {"x": [1, 2]}, runs_dir=runs_dir)
    before = store.frame(runs_dir / store.DB_NAME).sort_values("path").reset_index(drop=True)
    (runs_dir / store.DB_NAME).unlink()
    store.rebuild(runs_dir)
    after = store.frame(runs_dir / store.DB_NAME).sort_values("path").reset_index(drop=True)
    assert before[["path", "status", "param.x", "x_squared"]].equals(after[["path", "status", "param.x", "x_squared"]])


def test_cli_sweep(notebook, tmp_path, capsys):
    code = main(["sweep", str(notebook), "-p", "x", "1", "2", "-p", "label", "zz", "--runs-dir", str(tmp_path / "r")])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 ok, 0 failed" in out
    assert main(["sweep", str(notebook), "-p", "x", "--runs-dir", str(tmp_path / "r")]) == 2
    assert "no values" in capsys.readouterr().err


def test_aggregate_and_pareto_points_from_a_store_frame():
    import pandas as pd

    from workbench.evaluation.search import pareto_front

    frame = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "failed"],
            "param.reg": [1.0, 1.0, 2.0, 2.0],
            "ndcg@10/EASE": [0.4, 0.5, 0.6, None],
            "fit_seconds/EASE": [1.0, 3.0, 2.0, None],
        }
    )
    agg = sweeps.aggregate(frame, "param.reg", "ndcg@10/EASE").set_index("param.reg")
    assert agg.loc[1.0, "ndcg@10/EASE"] == pytest.approx(0.45) and agg.loc[2.0, "runs"] == 1
    with pytest.raises(KeyError, match="no result named"):
        sweeps.aggregate(frame, "param.reg", "ndcg@10/Nope")
    pts = sweeps.pareto_points(frame, ["EASE", "Nope"])
    assert pts["label"].tolist() == ["EASE"] and pts["seconds"].item() == pytest.approx(2.0)
    points = pd.DataFrame({"label": list("abcd"), "seconds": [1, 2, 3, 4], "quality": [0.1, 0.3, 0.2, 0.5]})
    front = points[pareto_front(points, cost="seconds", quality="quality")]
    assert front["label"].tolist() == ["a", "b", "d"]  # c is slower and worse than b


# --------------------------------------------------------------------------- corrupt records on resume


def _prepared_folder(notebook, runs_dir, grid):
    folder = runs_dir / sweeps.sweep_id(notebook, grid)
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(
        json.dumps({"format_version": sweeps.FORMAT_VERSION, "notebook": notebook.name, "grid": grid})
    )
    return folder


def test_sweep_resume_reruns_a_point_whose_record_is_corrupt(notebook, tmp_path):
    runs_dir = tmp_path / "runs"
    grid = {"x": [2]}
    folder = _prepared_folder(notebook, runs_dir, grid)
    name = sweeps.point_name(notebook, {"x": 2})
    (folder / f"{name}.ipynb").write_text("{}")
    (folder / f"{name}.json").write_text('{"status": "o')  # cut short
    with pytest.raises(sweeps.SweepError, match=rf"{name}\.json"):
        sweeps.sweep(notebook, grid, runs_dir=runs_dir, strict=True)
    assert (folder / f"{name}.json").read_text() == '{"status": "o'  # refused untouched
    with pytest.warns(CorruptRecordWarning, match=rf"{name}\.json"):
        frame = sweeps.sweep(notebook, grid, runs_dir=runs_dir)
    assert frame["status"].tolist() == ["ok"]
    assert (folder / "attempts" / f"{name}.1.json").read_text() == '{"status": "o'  # kept, not lost


# --------------------------------------------------------------------------- one sweep per folder at a time


def test_a_sweep_folder_in_use_is_refused_naming_the_holder_pid(notebook, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    grid = {"x": [2]}
    folder = _prepared_folder(notebook, runs_dir, grid)
    name = sweeps.point_name(notebook, {"x": 2})
    (folder / f"{name}.ipynb").write_text("{in progress")  # the first run's point, still running
    with lock.hold(folder):
        with pytest.raises(lock.FolderBusy, match=rf"pid {os.getpid()}\b.*--wait"):
            sweeps.sweep(notebook, grid, runs_dir=runs_dir)
        cli = ["sweep", str(notebook), "-p", "x", "2", "--runs-dir", str(runs_dir)]
        assert main(cli) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and f"pid {os.getpid()}" in err
    assert (folder / f"{name}.ipynb").read_text() == "{in progress"  # not moved to attempts/
    assert not (folder / "attempts").exists()


HOLDER = """
import sys, time
from pathlib import Path
from workbench.runs import lock
with lock.hold(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_lock_left_by_a_killed_sweep_is_detected_as_stale(tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.FolderBusy, match=rf"pid {holder.pid}\b"), lock.hold(folder):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    stale = pytest.warns(lock.StaleLockWarning, match=rf"pid {holder.pid}\b.*no longer running")
    with stale, lock.hold(folder):
        assert json.loads((folder / lock.INFO).read_text())["pid"] == os.getpid()
    assert not (folder / lock.INFO).exists()  # released cleanly: the next run sees no stale lock
    with lock.hold(folder):
        pass


def test_a_second_sweep_can_wait_for_the_first(tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    script = HOLDER.replace("time.sleep(120)", "time.sleep(1); Path(sys.argv[1], 'done').touch()")
    holder = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with lock.hold(folder, wait=True):
        assert (folder / "done").exists()  # it got the folder only once the holder let go
    holder.wait()


TINY = Path(__file__).parent / "fixtures" / "99_tiny.ipynb"


def test_a_failed_point_is_retried_up_to_the_limit_and_each_attempt_kept(tmp_path):
    grid = {"fail": [True]}
    frame = sweeps.sweep(TINY, grid, runs_dir=tmp_path / "a", retries=2)
    assert frame["status"].tolist() == ["failed"]  # once in the store, with its last attempt
    folder = tmp_path / "a" / sweeps.sweep_id(TINY, grid)
    name = sweeps.point_name(TINY, {"fail": True})
    kept = sorted(p.name for p in (folder / "attempts").iterdir())
    assert kept == [f"{name}.1.ipynb", f"{name}.1.json", f"{name}.2.ipynb", f"{name}.2.json"]
    assert json.loads((folder / "attempts" / f"{name}.1.json").read_text())["error"]["evalue"] == "asked to fail"
    sweeps.sweep(TINY, grid, runs_dir=tmp_path / "b", retries=0)
    assert not (tmp_path / "b" / sweeps.sweep_id(TINY, grid) / "attempts").exists()
    with pytest.raises(sweeps.SweepError, match="retries must be >= 0"):
        sweeps.sweep(TINY, grid, runs_dir=tmp_path / "c", retries=-1)
    with pytest.raises(sweeps.SweepError, match="backend must be 'local' or 'ray'"):
        sweeps.sweep(TINY, grid, runs_dir=tmp_path / "c", backend=sweeps.Backend("dask"))
