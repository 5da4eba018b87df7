"""Adaptive search with Optuna: ranges from the command line, the objective refused when it
is not a validation metric, results in the store, and an interrupted search resumed into
the same study."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from workbench.cli import main
from workbench.runs import search, store
from workbench.runs.search import Range, SearchError

TINY = Path(__file__).parent / "fixtures" / "99_tiny.ipynb"


def test_ranges_and_choices_are_parsed_as_the_notebook_declares_them():
    space = search.parse_space(TINY, {"x": ["log:1..10000"], "seed": ["1..5"], "sleep": ["0.0"], "fail": ["False"]})
    assert space["x"] == Range(1.0, 10000.0, log=True, integer=False)  # x is a float: a float range
    assert space["seed"] == Range(1, 5, log=False, integer=True)  # seed is an int: an int range
    assert space["sleep"] == [0.0] and space["fail"] == [False]
    assert search.parse_space(TINY, {"x": ["0.5..2.5"]})["x"] == Range(0.5, 2.5)
    assert search.parse_space(TINY, {"seed": ["1", "2", "3"]})["seed"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"y": ["1..2"]}, r"declares no parameter\(s\) \['y'\]"),
        ({"x": ["log:0..10"]}, "log range must start above 0"),
        ({"x": ["5..1"]}, "low end must be below the high end"),
        ({"seed": ["1.5..3"]}, "expects int"),
        ({"sleep": ["0.0"]}, "nothing to search"),
        ({"fail": ["yes", "no"]}, "expects bool"),
    ],
)
def test_a_bad_space_is_refused_naming_the_value(spec, message):
    with pytest.raises(SearchError, match=message):
        search.parse_space(TINY, spec)


def test_a_test_split_objective_is_refused_before_anything_runs(tmp_path, capsys):
    space = {"x": Range(1.0, 100.0, log=True)}
    with pytest.raises(SearchError, match=r"'test/score' is not a validation metric.*--allow-test-objective"):
        search.search(TINY, space, objective="test/score", trials=2, runs_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no folder, no study
    cli = ["sweep", str(TINY), "-p", "x", "log:1..100", "--search", "optuna", "--trials", "2"]
    assert main([*cli, "--objective", "ndcg@10/EASE", "--runs-dir", str(tmp_path)]) == 2
    assert "not a validation metric" in capsys.readouterr().err
    with pytest.raises(SearchError, match="direction must be"):
        search.search(TINY, space, objective="valid/score", trials=2, direction="up", runs_dir=tmp_path)


def test_an_objective_the_notebook_does_not_record_stops_the_search_naming_what_it_has(tmp_path):
    space = {"x": Range(1.0, 100.0, log=True)}
    with pytest.raises(SearchError, match=r"no number named 'valid/nope'.*\['valid/score'\]"):
        search.search(TINY, space, objective="valid/nope", trials=3, runs_dir=tmp_path)


def _study(runs_dir: Path) -> optuna.Study:
    (name,) = optuna.get_all_study_names(f"sqlite:///{runs_dir / search.STUDY_DB}")
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs_dir / search.STUDY_DB}")


def test_an_interrupted_search_resumes_the_same_study(tmp_path):
    """Ctrl+C (SIGINT to the driver) during the third trial; the same command again
    finishes the study: the first trials keep their numbers and values, the count reaches
    the budget, the best value is the best of the store's rows."""
    runs_dir = tmp_path / "runs"
    cmd = [sys.executable, "-m", "workbench.cli", "sweep", str(TINY), "-p", "x", "log:1..10000", "-p", "sleep", "0.3"]
    cmd += ["--search", "optuna", "--trials", "5", "--objective", "valid/score", "--runs-dir", str(runs_dir)]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        folder = None
        while folder is None or len(list(folder.glob("*__trial-*.json"))) < 2:  # two trials finished
            assert driver.poll() is None, driver.stderr.read()
            folder = next(runs_dir.glob("search-*"), None)
            subprocess.run(["sleep", "0.2"])
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130, err
    before = _study(runs_dir)
    done = {t.number: t.value for t in before.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert 1 <= len(done) < 5 and len(before.trials) >= len(done)

    frame = search.search(
        TINY,
        {"x": Range(1.0, 10000.0, log=True), "sleep": [0.3]},
        objective="valid/score",
        trials=5,
        runs_dir=runs_dir,
    )
    after = _study(runs_dir)
    assert after.study_name == before.study_name
    complete = [t.number for t in after.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t.number for t in after.trials if t.state == optuna.trial.TrialState.PRUNED]  # Ctrl+C mid-sampling
    assert len(complete) == 5 and sorted(complete + pruned) == list(range(len(after.trials)))  # none lost or doubled
    assert all(after.trials[n].value == v for n, v in done.items())  # earlier trials kept as they were
    assert frame["trial"].tolist() == sorted(complete) and (frame["status"] == "ok").all()
    assert after.best_value == pytest.approx(frame["valid/score"].max())
    for _, row in frame.iterrows():  # each trial's value is what its point recorded
        assert after.trials[row["trial"]].value == pytest.approx(row["valid/score"])
        assert row["valid/score"] == pytest.approx(1 - (math.log10(row["param.x"]) - 2) ** 2 / 4)
    assert len(store.frame(runs_dir / store.DB_NAME)) == 5  # each trial once in the store


def test_a_trial_interrupted_before_its_parameters_were_sampled_is_pruned_not_run(tmp_path):
    """Ctrl+C can land between Optuna creating a trial and storing its sampled values: on
    resume that trial is marked pruned (it never ran) and the budget is met by new ones."""
    space = {"x": Range(1.0, 10000.0, log=True), "sleep": [0.0]}
    runs_dir = tmp_path / "runs"
    study = search.open_study(runs_dir, "s", "maximize", seed=0, trials=2)
    bare = study.ask()  # RUNNING, no parameters: what an interrupted ask leaves
    frame = search.search(TINY, space, objective="valid/score", trials=2, runs_dir=runs_dir, name="s")
    after = _study(runs_dir)
    assert after.trials[bare.number].state == optuna.trial.TrialState.PRUNED
    complete = [t.number for t in after.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and bare.number not in complete
    assert frame["trial"].tolist() == sorted(complete) and (frame["status"] == "ok").all()


def test_choices_that_are_lists_travel_as_lists(tmp_path):
    space = {"x": [[1.0], [2.0]]}
    assert search._distributions(space)["x"].choices == (json.dumps([1.0]), json.dumps([2.0]))
    assert search._point(space, {"x": "[2.0]"}) == {"x": [2.0]}
    assert search._point({"x": Range(1, 2), "sleep": [0.5]}, {"x": 1.5}) == {"x": 1.5, "sleep": 0.5}


def test_best_so_far_and_the_chosen_point_follow_the_order_and_skip_failures():
    import pandas as pd

    frame = pd.DataFrame(
        {
            "trial": [2, 0, 1, 3],
            "status": ["ok", "ok", "failed", "ok"],
            "valid/score": [0.5, 0.2, 0.9, 0.4],
            "test/score": [0.45, 0.1, None, 0.3],
        }
    )
    curve = search.best_so_far(frame, "valid/score", order="trial")
    assert curve["points"].tolist() == [1, 2, 3, 4]
    assert curve["best"].tolist() == [0.2, 0.2, 0.5, 0.5]  # the failed 0.9 counts as a point, not a value
    assert search.best_so_far(frame, "valid/score", order="trial", direction="minimize")["best"].iloc[-1] == 0.2
    chosen = search.chosen_point(frame, "valid/score")
    assert chosen["trial"] == 2 and chosen["test/score"] == 0.45
    with pytest.raises(SearchError, match="no successful point"):
        search.chosen_point(frame[frame["status"] == "failed"], "valid/score")
