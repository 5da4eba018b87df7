"""Notebook 08's streaming study, built on :func:`~workbench.serving.prequential.replay`.

- :func:`fitter` -- ``interactions -> fitted model`` from a registry name (for retraining);
- :func:`study` -- every model under every policy on one replay window;
- :func:`quality` -- HR@k, nDCG@k and MRR@k per model and policy with bootstrap intervals;
- :func:`gains` -- paired differences between policies (same events), with intervals;
- :func:`segments` -- :func:`quality` for users known at ``T0``, users new after it (the
  cold-start path until the system learns them) and items new after it, counted apart;
- :func:`rolling` -- the metrics over simulated time (per day by default);
- :func:`staleness` -- quality against update delay (online = 0, delayed(d), static = never);
- :func:`costs` -- events/s, CPU seconds per 1,000 events, answer p99, retraining time;
- :func:`headline` -- one metric with its interval per model and policy (the report's line).

Intervals come from a bootstrap over *users* (a user's events are not independent):
resample the users with replacement, recompute the event-weighted mean, take the
percentiles. Differences are paired: both policies scored the same events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.data.schema import TIMESTAMP, USER
from workbench.models.base import Recommender
from workbench.models.registry import applicable, build
from workbench.serving.prequential import Policy, Replay, Window, event_metrics, replay

#: bootstrap resamples and the interval's coverage
N_BOOT = 1000
CONFIDENCE = 0.95


def fitter(name: str, /, **settings) -> Callable[[pd.DataFrame], Recommender]:
    """``interactions -> fitted model`` for registry model ``name``, with those of the
    shared ``settings`` (``seed``, ``device``, ``epochs``...) that it takes."""
    options = applicable(name, **settings)
    return lambda interactions: build(name, **options).fit(interactions)


def study(
    fits: dict[str, Callable[[pd.DataFrame], Recommender]],
    window: Window,
    policies: dict[str, Sequence[str | Policy]],
    *,
    k: int = 10,
    concurrency: int = 8,
    http: bool = False,
    progress: bool = True,
) -> list[Replay]:
    """Fit each model (``name -> fit(interactions)``) once on ``window.train`` and replay
    the window under each of its ``policies[name]``; retraining policies call the same fit."""
    runs = [(name, rule) for name in fits for rule in policies[name]]
    fitted: dict[str, Recommender] = {}
    out = []
    for name, rule in tqdm(runs, desc="replays", disable=not progress):
        if name not in fitted:
            fitted[name] = fits[name](window.train)
        out.append(
            replay(fitted[name], window, rule, fit=fits[name], k=k, concurrency=concurrency, http=http, name=name)
        )
    return out


def _by_user(replay_: Replay) -> tuple[np.ndarray, pd.DataFrame]:
    """(n_users,) event counts and (n_users, metrics) sums, users in sorted order."""
    values = event_metrics(replay_.events["rank"].to_numpy(), replay_.k)
    grouped = values.groupby(replay_.events[USER].to_numpy())
    return grouped.size().to_numpy(), grouped.sum()


def _interval(counts: np.ndarray, sums: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over users of sum(sums) / sum(counts): (lo, hi) per column."""
    rng = np.random.default_rng(seed)
    n = len(counts)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=N_BOOT).astype(np.float64)  # (N_BOOT, n_users)
    stats = (weights @ sums) / (weights @ counts)[:, None]  # (N_BOOT, n_metrics)
    tail = (1.0 - CONFIDENCE) / 2.0
    return np.quantile(stats, tail, axis=0), np.quantile(stats, 1.0 - tail, axis=0)


def quality(replays: Sequence[Replay], *, seed: int = 0) -> pd.DataFrame:
    """One row per replay: ``model``, ``policy``, ``events``, and each metric with its
    ``_lo``/``_hi`` bootstrap bounds."""
    rows = []
    for r in replays:
        counts, sums = _by_user(r)
        lo, hi = _interval(counts, sums.to_numpy(), seed=seed)
        row = {"model": r.model, "policy": r.policy, "events": int(counts.sum())}
        for j, metric in enumerate(sums.columns):
            row |= {metric: sums[metric].sum() / counts.sum(), f"{metric}_lo": lo[j], f"{metric}_hi": hi[j]}
        rows.append(row)
    return pd.DataFrame(rows)


#: the event segments :func:`segments` counts apart (``new_item`` first: such an event is
#: a miss whoever the user is, until a retrain brings the item in)
SEGMENTS = {
    "users known at T0": lambda e: ~e["new_user"] & ~e["new_item"],
    "users new after T0": lambda e: e["new_user"] & ~e["new_item"],
    "items new after T0": lambda e: e["new_item"],
}


def segments(replays: Sequence[Replay], *, seed: int = 0) -> pd.DataFrame:
    """:func:`quality` per segment of the events (:data:`SEGMENTS`), a ``segment`` column
    first; a segment with no events in a replay is left out."""
    parts = []
    for name, select in SEGMENTS.items():
        subset = [dataclasses.replace(r, events=r.events[select(r.events).to_numpy()]) for r in replays]
        subset = [r for r in subset if len(r.events)]
        if subset:
            table = quality(subset, seed=seed)
            parts.append(table.insert(0, "segment", name) or table)
    return pd.concat(parts, ignore_index=True)


def gains(replays: Sequence[Replay], policy_name: str, baseline: str, *, seed: int = 0) -> pd.DataFrame:
    """Per model: metric(``policy_name``) - metric(``baseline``) on the same events, with
    paired bootstrap bounds (``_lo``/``_hi``); models lacking either policy are skipped."""
    found = {(r.model, r.policy): r for r in replays}
    rows = []
    for model in dict.fromkeys(r.model for r in replays):
        if (model, policy_name) not in found or (model, baseline) not in found:
            continue
        counts, new = _by_user(found[model, policy_name])
        _, old = _by_user(found[model, baseline])
        diff = new - old
        lo, hi = _interval(counts, diff.to_numpy(), seed=seed)
        row = {"model": model, "policy": policy_name, "vs": baseline}
        for j, metric in enumerate(diff.columns):
            row |= {metric: diff[metric].sum() / counts.sum(), f"{metric}_lo": lo[j], f"{metric}_hi": hi[j]}
        rows.append(row)
    return pd.DataFrame(rows)


def rolling(replays: Sequence[Replay], *, every: str = "1D") -> pd.DataFrame:
    """The metrics per ``every`` of simulated time (pandas frequency): ``model``,
    ``policy``, ``time`` (period start), ``events`` and the metric columns."""
    frames = []
    for r in replays:
        values = event_metrics(r.events["rank"].to_numpy(), r.k)
        values["time"] = pd.to_datetime(r.events[TIMESTAMP].to_numpy(), unit="s").floor(every)
        table = values.groupby("time").agg(["mean", "size"])
        metrics = table.xs("mean", axis=1, level=1)
        metrics.insert(0, "events", table.iloc[:, 1].to_numpy())
        frames.append(metrics.reset_index().assign(model=r.model, policy=r.policy))
    columns = ["model", "policy", "time", "events"]
    out = pd.concat(frames, ignore_index=True)
    return out[columns + [c for c in out.columns if c not in columns]]


def staleness(replays: Sequence[Replay], *, seed: int = 0) -> pd.DataFrame:
    """Quality against update delay: the replays without retraining, ``delay_s`` 0
    (online), d (delayed) or inf (static: never), with the :func:`quality` columns."""
    chosen = [r for r in replays if r.rule.retrain_s is None]
    table = quality(chosen, seed=seed)
    table.insert(2, "delay_s", [np.inf if r.rule.delay_s is None else r.rule.delay_s for r in chosen])
    return table.sort_values(["model", "delay_s"], ignore_index=True)


def costs(replays: Sequence[Replay]) -> pd.DataFrame:
    """One row per replay: ``model``, ``policy``, ``events_per_s``, ``cpu_s_per_1000``,
    ``p50_ms``, ``p99_ms``, ``retrains``, ``retrain_s``, ``refused_updates``, ``note``."""
    keys = ["events_per_s", "cpu_s_per_1000", "p50_ms", "p99_ms", "retrains", "retrain_s", "refused_updates"]
    return pd.DataFrame(
        [
            {"model": r.model, "policy": r.policy} | {key: r.cost[key] for key in keys} | {"note": r.note}
            for r in replays
        ]
    )


def headline(table: pd.DataFrame, *, metric: str = "hr@10") -> dict:
    """From :func:`quality` (or :func:`gains`): ``{model: {policy: [value, lo, hi]}}`` for
    ``metric``, rounded to 4 places -- what the report quotes."""
    out: dict = {}
    for _, row in table.iterrows():
        out.setdefault(row["model"], {})[row["policy"]] = [round(float(row[metric + s]), 4) for s in ("", "_lo", "_hi")]
    return out
