"""Adaptive search: Optuna's TPE sampler proposes the points, a sweep backend runs them.

>>> space = parse_space("notebooks/02_sparse_cf.ipynb",
...                     {"ease_reg": ["log:10..3000"], "models": ['["EASE"]']})
>>> search("notebooks/02_sparse_cf.ipynb", space, objective="valid/ndcg@10/EASE", trials=12, jobs=2)

Each trial is a point of ``runs/<search-id>/`` (``<notebook>__trial-0007``) run like a
sweep's, by the local pool or on Ray (:class:`~workbench.runs.sweeps.Backend`): retried,
kept under ``attempts/`` when it fails, indexed in the results store. The Optuna study
lives in its own SQLite file beside the store (``runs/optuna.sqlite``, study name = the
search folder), so an interrupted search resumes: the trials it had asked for and not
finished run again under their own numbers, and ``trials`` counts the study's finished
trials. The objective must be a metric the notebook records on its validation split
(named ``valid/...``); choosing on a test metric is refused unless asked for.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from workbench.runs import lock, store
from workbench.runs.parameters import Declared, ParameterError, check_value, declared_parameters, parse_value
from workbench.runs.records import flatten, read_run
from workbench.runs.sweeps import (
    Backend,
    PointProgress,
    Points,
    SweepError,
    check_grid,
    folder_rows,
    open_folder,
    set_aside,
    status,
)

#: validation metrics are recorded under names starting with this
VALIDATION_PREFIX = "valid/"
STUDY_DB = "optuna.sqlite"
_RANGE = re.compile(r"^(?P<log>log:)?(?P<low>[^.]+|-?\d*\.\d+)\.\.(?P<high>.+)$")


class SearchError(SweepError):
    """The search cannot run as asked (bad space, objective, trial count)."""


@dataclass(frozen=True)
class Range:
    """A numeric range ``low..high`` (both included) of an int or float parameter, sampled
    on a log scale with ``log``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def distribution(self) -> BaseDistribution:
        kind = IntDistribution if self.integer else FloatDistribution
        return kind(self.low, self.high, log=self.log)


def _range(declared: Declared, text: str) -> Range | None:
    """``[log:]LOW..HIGH`` as a :class:`Range` of the declared type, None for other text."""
    match = _RANGE.match(text.strip())
    if not match:
        return None
    types = declared.types or (int, float)
    if float not in types and int not in types:
        return None  # text that happens to hold "..", for a parameter that takes text
    low, high = parse_value(match["low"]), parse_value(match["high"])
    integer = float not in types
    try:
        for end in (low, high):
            check_value(declared, end)
    except ParameterError as err:
        raise SearchError(f"range {text!r}: {err}") from None
    if not low < high:
        raise SearchError(f"range {text!r} of {declared.name!r}: the low end must be below the high end")
    if match["log"] and low <= 0:
        raise SearchError(f"range {text!r} of {declared.name!r}: a log range must start above 0")
    kind = int if integer else float  # 1..20 of a float parameter is 1.0..20.0, in the search id too
    return Range(kind(low), kind(high), log=bool(match["log"]), integer=integer)


def parse_space(notebook: str | Path, spec: dict[str, list[str]]) -> dict[str, Range | list]:
    """Command-line values into a search space: ``["log:10..3000"]`` or ``["1..20"]`` is a
    :class:`Range` (int or float as the notebook declares the parameter), anything else a
    list of choices (one choice: a fixed value). Every value is checked against the
    notebook's declaration (:mod:`workbench.runs.parameters`)."""
    declared = declared_parameters(notebook)
    unknown = sorted(set(spec) - set(declared))
    if unknown:
        raise SearchError(f"{Path(notebook).name} declares no parameter(s) {unknown}; it declares {sorted(declared)}")
    space: dict[str, Range | list] = {}
    for name, texts in spec.items():
        if not texts:
            raise SearchError(f"no values given for parameter {name!r}")
        found = _range(declared[name], texts[0]) if len(texts) == 1 else None
        space[name] = found if found is not None else [parse_value(t) for t in texts]
    check_space(notebook, space)
    return space


def check_space(notebook: str | Path, space: dict[str, Range | list]) -> None:
    """Raise :class:`SearchError` unless every choice is a value the notebook accepts and
    at least one parameter varies."""
    values = {name: [v.low, v.high] if isinstance(v, Range) else v for name, v in space.items()}
    try:
        check_grid(notebook, values)  # the same checks as a grid: declared names, declared types
    except SweepError as err:
        raise SearchError(str(err)) from None
    if not any(isinstance(v, Range) or len(v) > 1 for v in space.values()):
        raise SearchError("nothing to search: give a range (-p NAME LOW..HIGH) or several values for a parameter")


def check_objective(objective: str, direction: str, *, allow_test_objective: bool = False) -> None:
    """Refuse a direction other than maximize/minimize, and an objective that is not a
    validation metric (``valid/...``) unless ``allow_test_objective``."""
    if direction not in ("maximize", "minimize"):
        raise SearchError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    if not objective.startswith(VALIDATION_PREFIX) and not allow_test_objective:
        raise SearchError(
            f"objective {objective!r} is not a validation metric (those are recorded as "
            f"'{VALIDATION_PREFIX}...', e.g. 'valid/ndcg@10/EASE'): choosing points on the test split "
            "overfits it; pass --allow-test-objective (allow_test_objective=True) to do it anyway"
        )


def search_id(notebook: Path, space: dict, objective: str, direction: str) -> str:
    text = json.dumps([notebook.name, _encode_space(space), objective, direction], sort_keys=True, default=str)
    return f"search-{notebook.stem}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _encode_space(space: dict[str, Range | list]) -> dict[str, Any]:
    return {k: vars(v) if isinstance(v, Range) else v for k, v in space.items()}


def trial_name(notebook: Path, number: int) -> str:
    return f"{notebook.stem}__trial-{number:04d}"


def _distributions(space: dict[str, Range | list]) -> dict[str, BaseDistribution]:
    """Optuna distributions of the varying parameters; choices that are no plain scalars
    (lists, dicts) are offered as their JSON text."""
    out = {}
    for name, values in space.items():
        if isinstance(values, Range):
            out[name] = values.distribution()
        elif len(values) > 1:
            out[name] = CategoricalDistribution([_choice(v) for v in values])
    return out


def _choice(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _point(space: dict[str, Range | list], trial_params: dict[str, Any]) -> dict[str, Any]:
    """The notebook parameters of a trial: its sampled values plus the fixed ones."""
    out = {}
    for name, values in space.items():
        if name not in trial_params:
            out[name] = values[0]
        elif isinstance(values, list) and any(isinstance(v, (list, dict)) for v in values):
            out[name] = json.loads(trial_params[name])
        else:
            out[name] = trial_params[name]
    return out


def objective_value(sidecar: Path, objective: str) -> float:
    """The objective from a point's record; :class:`SearchError` naming what the record
    has when it lacks it or it is no finite number."""
    results = flatten(read_run(sidecar).results)
    value = results.get(objective)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        have = sorted(n for n, v in results.items() if isinstance(v, (int, float)) and n.startswith(VALIDATION_PREFIX))
        raise SearchError(
            f"{sidecar.name} records no number named {objective!r} (got {value!r}); "
            f"its validation metrics are {have[:30] or 'none'}"
        )
    return float(value)


def open_study(runs_dir: Path, name: str, direction: str, *, seed: int, trials: int) -> optuna.Study:
    """The search's study in ``runs_dir/optuna.sqlite``: created, or loaded to resume.
    TPE starts from ``min(5, trials // 2)`` random trials (at least one), so a small
    budget still gets model-guided ones; ``constant_liar`` keeps the trials in flight at
    once apart. (Optuna's per-trial log lines are off: the sweep's progress says the same.)"""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs_dir.mkdir(parents=True, exist_ok=True)
    startup = max(1, min(5, trials // 2))
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=startup)
    storage = f"sqlite:///{(runs_dir / STUDY_DB).resolve()}"
    study = optuna.create_study(
        storage=storage, study_name=name, direction=direction, sampler=sampler, load_if_exists=True
    )
    if study.direction.name.lower() != direction:
        raise SearchError(f"study {name!r} in {runs_dir / STUDY_DB} is a {study.direction.name.lower()} study")
    return study


def search(
    notebook: str | Path,
    space: dict[str, Range | list],
    *,
    objective: str,
    trials: int,
    direction: str = "maximize",
    backend: Backend | None = None,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    smoke: bool = False,
    seed: int = 0,
    retries: int = 1,
    allow_test_objective: bool = False,
    wait: bool = False,
) -> pd.DataFrame:
    """Run an Optuna TPE search until its study has ``trials`` finished trials,
    ``backend.jobs`` in flight at a time; return one row per trial from the results
    store (``trial``, ``param.*``, the objective and every other recorded number).

    Everything is checked before any point runs: the space against the notebook's
    declared parameters, the objective (a ``valid/`` metric unless
    ``allow_test_objective``), the direction. A point that fails after its retries is a
    failed trial; a point whose record lacks the objective stops the search
    (:class:`SearchError` naming what it records). Ctrl+C cancels the running points;
    the same call resumes the same study."""
    notebook, runs_dir = Path(notebook), Path(runs_dir)
    backend = backend or Backend()
    if not notebook.exists():
        raise FileNotFoundError(f"{notebook}: no such notebook")
    check_objective(objective, direction, allow_test_objective=allow_test_objective)
    if trials < 1 or retries < 0:
        raise SearchError(f"trials must be >= 1 and retries >= 0, got trials={trials}, retries={retries}")
    backend.check()
    check_space(notebook, space)
    folder = runs_dir / (name or search_id(notebook, space, objective, direction))
    what = {"notebook": notebook.name, "space": _encode_space(space), "objective": objective, "direction": direction}
    open_folder(folder, what)
    with lock.hold(folder, wait=wait):
        study = open_study(runs_dir, folder.name, direction, seed=seed, trials=trials)
        _drive(study, notebook, folder, runs_dir, space, objective, trials, backend, smoke=smoke, retries=retries)
    frame = folder_rows(runs_dir / store.DB_NAME, folder)
    frame.insert(0, "trial", frame["path"].str.extract(r"__trial-(\d+)\.json$")[0].astype(int))
    return frame.sort_values("trial").reset_index(drop=True)


def _drive(study, notebook, folder, runs_dir, space, objective, trials, backend, *, smoke, retries) -> None:
    """Ask, run and tell until the study holds ``trials`` finished trials."""
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in study.trials)
    left = [t for t in study.trials if t.state == TrialState.RUNNING]  # asked by an interrupted run
    progress = PointProgress(max(trials - finished, 0), f"search {folder.name}", lines=backend.name == "ray")
    distributions = _distributions(space)
    try:
        with backend.runner(notebook, folder, smoke=smoke, progress=progress) as runner:
            points = Points(runner, folder, runs_dir, retries=retries, progress=progress)
            numbers: dict[str, int] = {}

            def submit(number: int, params: dict) -> None:
                name = trial_name(notebook, number)
                if (folder / f"{name}.json").exists() or (folder / f"{name}.ipynb").exists():
                    set_aside(folder, name)  # the interrupted run's attempt of this trial
                numbers[name] = number
                points.submit(_point(space, params), name)

            for trial in left:
                if set(distributions) - set(trial.params):  # interrupted while Optuna was still sampling it
                    study.tell(trial.number, state=TrialState.PRUNED)  # never ran: not counted, not rerun
            left = [t for t in left if not set(distributions) - set(t.params)]
            for trial in left[: max(trials - finished, 0)]:
                name = trial_name(notebook, trial.number)
                if status(folder, name, strict=False) == "ok":  # ran, then the run stopped before telling
                    store.add(runs_dir / store.DB_NAME, folder / f"{name}.json", root=runs_dir)
                    _tell(study, trial.number, folder / f"{name}.json", objective, ok=True)
                    finished += 1
                else:
                    submit(trial.number, trial.params)
            while finished < trials:
                while points.pending() < backend.jobs and finished + points.pending() < trials:
                    trial = study.ask(distributions)
                    submit(trial.number, trial.params)
                name, state = points.next_done()
                _tell(study, numbers.pop(name), folder / f"{name}.json", objective, ok=state == "ok")
                finished += 1
    finally:
        progress.close()


def _tell(study, number: int, sidecar: Path, objective: str, *, ok: bool) -> None:
    if not ok:
        study.tell(number, state=TrialState.FAIL)
        return
    try:
        value = objective_value(sidecar, objective)
    except SearchError:
        study.tell(number, state=TrialState.FAIL)
        raise
    study.tell(number, value)


def best_so_far(frame: pd.DataFrame, metric: str, *, order: str, direction: str = "maximize") -> pd.DataFrame:
    """The best ``metric`` among the first n points (``points`` = n, ``best``), the rows
    taken in ``order`` (the trial number, or the grid's own order); a failed point counts
    as run but adds no value."""
    rows = frame.sort_values(order, kind="stable")
    values = rows[metric].where(rows["status"] == "ok")
    best = (values.cummax() if direction == "maximize" else values.cummin()).ffill()
    return pd.DataFrame({"points": range(1, len(rows) + 1), "best": best.to_numpy()})


def chosen_point(frame: pd.DataFrame, objective: str, *, direction: str = "maximize") -> pd.Series:
    """The successful row with the best ``objective``: the point a search or grid picks."""
    ok = frame[(frame["status"] == "ok") & frame[objective].notna()]
    if ok.empty:
        raise SearchError(f"no successful point records {objective!r}")
    return ok.loc[ok[objective].idxmax() if direction == "maximize" else ok[objective].idxmin()]
