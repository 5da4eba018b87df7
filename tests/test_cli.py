"""The ``workbench`` command line, called the way a user types it."""

from __future__ import annotations

import nbformat

from workbench.cli import main


def _nb(path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("k = 10  # list length", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from workbench import runs\np = runs.start(k=k)\nruns.record('k', p.k)"),
    ])
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, path)
    return path


def test_run_one_notebook_with_a_parameter(tmp_path, capsys):
    nb = _nb(tmp_path / "05_demo.ipynb")
    assert main(["run", str(nb), "-p", "k", "20", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "ok     05_demo" in out and "report.md" in out
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert (tmp_path / "runs" / "results.sqlite").exists()  # the run is in the results store
    from workbench import runs

    assert runs.read(run_dir / "05_demo.json") == {"k": 20}


def test_unknown_parameter_fails_before_running_and_lists_declared(tmp_path, capsys):
    nb = _nb(tmp_path / "05_demo.ipynb")
    assert main(["run", str(nb), "-p", "kk", "20", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "['kk']" in err and "['k']" in err
    assert not (tmp_path / "runs").exists()


def test_missing_notebook_and_unknown_dataset_are_clear_errors(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    assert main(["download", "ml-42"]) == 2
    assert "choose one of" in capsys.readouterr().err
