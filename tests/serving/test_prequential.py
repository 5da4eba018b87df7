"""The streaming (prequential) replay: the protocol's promises and its bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import models
from workbench.data import datasets
from workbench.serving import prequential as pq
from workbench.serving import streaming


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return datasets.load("synthetic", size="tiny", seed=0).interactions


@pytest.fixture(scope="module")
def window(log) -> pq.Window:
    with pytest.warns(pq.ReplayOrderWarning):  # the generator writes users one after the other
        return pq.split_at(log, 0.8)


@pytest.fixture(scope="module")
def ease(window):
    return models.build("ease", reg=50.0, device="cpu").fit(window.train)


def _offline_ranks(model, window: pq.Window, k: int) -> np.ndarray:
    """Rank of each replayed item in the top-k a frozen model gives (Recommender.recommend
    for known users, training popularity for the others), computed without the service."""
    known = window.replay.user_id[window.replay.user_id.isin(model.users.ids_)].unique()
    lists = model.recommend(known, k).groupby("user_id")["item_id"].apply(list).to_dict()
    counts = window.train.item_id.value_counts().reindex(model.items.ids_).to_numpy()
    popular = list(model.items.ids_[np.argsort(-counts, kind="stable")[:k]])
    ranks = []
    for user, item in zip(window.replay.user_id, window.replay.item_id):
        top = lists.get(user, popular)
        ranks.append(top.index(item) + 1 if item in top else np.inf)
    return np.asarray(ranks)


def test_static_policy_equals_an_independent_offline_computation(ease, window):
    result = pq.replay(ease, window, "static", k=10)
    expected = _offline_ranks(ease, window, 10)
    np.testing.assert_array_equal(result.events["rank"].to_numpy(), expected)
    hits = expected <= 10
    assert result.metrics()["hr@10"] == pytest.approx(hits.mean())
    assert result.metrics()["mrr@10"] == pytest.approx(np.where(hits, 1 / np.where(hits, expected, 1), 0).mean())
    assert (result.events["user_version"] == 0).all() and result.cost["retrains"] == 0


@pytest.mark.parametrize("rule", ["online", "delayed:1d"])
def test_no_event_is_visible_to_the_model_before_its_own_prediction(ease, window, rule):
    """The answer to each event reflects exactly the user's earlier events that are due
    (event time + delay <= this event's time): one more would be the event itself."""
    result = pq.replay(ease, window, rule, k=10, concurrency=16)
    delay = pq.policy(rule).delay_s
    events = result.events
    for _, own in events.groupby("user_id"):
        times = own["timestamp"].to_numpy()
        known = ~own["new_item"].to_numpy()  # a new item's update is refused
        expected = [int((known[:j] & (times[:j] + delay <= times[j])).sum()) for j in range(len(own))]
        np.testing.assert_array_equal(own["user_version"].to_numpy(), expected)
    assert result.metrics()["hr@10"] > 0  # an event applied before its prediction would be masked: never a hit


def test_events_of_one_user_are_replayed_in_time_order_whatever_the_concurrency(ease, window):
    one = pq.replay(ease, window, "online", k=10, concurrency=1).events
    many = pq.replay(ease, window, "online", k=10, concurrency=64).events
    pd.testing.assert_frame_equal(one.drop(columns="latency_ms"), many.drop(columns="latency_ms"))


def _chains(n_users: int = 60, n_items: int = 40, length: int = 12) -> pd.DataFrame:
    """Planted order: every user walks the item cycle i, i+1, ... one step an hour."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, n_users + 1):
        start, t = rng.integers(n_items), 1_000_000 + 60 * rng.integers(0, 1000)
        rows += [(user, (start + j) % n_items + 1, 1.0, t + 3600 * j) for j in range(length)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_online_updates_carry_the_planted_sequential_signal_for_a_sequential_model():
    torch.manual_seed(0)
    window = pq.split_at(_chains().sort_values("timestamp"), 0.6)
    options = dict(epochs=6, max_length=10, layers=1, heads=1, embedding_size=16, learning_rate=0.01, seed=0)
    sasrec = models.build("sasrec", batch_size=32, device="cpu", **options).fit(window.train)
    static = pq.replay(sasrec, window, "static", k=5).metrics()["hr@5"]
    online = pq.replay(sasrec, window, "online", k=5).metrics()["hr@5"]
    assert online > static + 0.3, (static, online)


def test_periodic_retraining_serves_a_new_model_version_per_period(window):
    fits = []

    def fit(frame: pd.DataFrame):
        fits.append(frame.timestamp.max())
        return models.build("popularity").fit(frame)

    first = fit(window.train)
    result = pq.replay(first, window, "periodic:7d", fit=fit, k=10)
    bounds = window.t0 + 7 * 86400 * np.arange(1, result.cost["retrains"] + 1)
    assert result.cost["retrains"] >= 2 and len(fits) == 1 + result.cost["retrains"]
    assert all(seen < bound for seen, bound in zip(fits[1:], bounds))  # trained on the past only
    assert max(fits[1:]) >= bounds[-2]  # ... and on all of it


def test_a_model_without_an_online_update_path_falls_back_to_periodic_retraining(window):
    popularity = models.build("popularity").fit(window.train)
    with pytest.warns(pq.NoOnlineUpdates, match="no online update path"):
        result = pq.replay(popularity, window, "online", fit=lambda f: models.build("popularity").fit(f), k=10)
    assert "periodic fallback" in result.policy and "no online update path" in result.note
    assert result.rule.delay_s is None and result.cost["retrains"] >= 1


def test_bad_windows_are_refused_with_the_dates(log):
    first, last = log.timestamp.min(), log.timestamp.max()
    with pytest.raises(ValueError, match="before the first event"):
        pq.split_at(log, int(first))
    with pytest.raises(ValueError, match="after the last event"):
        pq.split_at(log, int(last) + 1)
    with pytest.raises(ValueError, match="holds no event"):
        pq.split_at(log.sort_values("timestamp"), int(first) + 1, end=int(first) + 1)
    with pytest.raises(ValueError, match="quantile in"):
        pq.split_at(log, "not a date")


def test_out_of_order_input_is_replayed_sorted_with_a_warning(log):
    shuffled = log.sample(frac=1.0, random_state=0)
    with pytest.warns(pq.ReplayOrderWarning, match="later timestamp"):
        window = pq.split_at(shuffled, 0.8)
    key = window.replay[["timestamp", "user_id", "item_id"]]
    assert key.equals(key.sort_values(["timestamp", "user_id", "item_id"], ignore_index=True))
    assert window.reordered > 0 and len(window.train) + len(window.replay) == len(log)


def test_k_beyond_the_catalogue_and_unknown_policies_are_refused(ease, window):
    with pytest.raises(ValueError, match="catalogue"):
        pq.replay(ease, window, "online", k=len(ease.items) + 1)
    with pytest.raises(ValueError, match="unknown policy"):
        pq.policy("weekly")
    with pytest.raises(ValueError, match="not a duration"):
        pq.policy("delayed:soon")
    with pytest.raises(ValueError, match="pass fit="):
        pq.replay(ease, window, "periodic:1d", k=10)
    assert pq.policy("online+periodic:1d") == pq.Policy("online+periodic:1d", delay_s=0.0, retrain_s=86400.0)


def test_the_replay_over_http_scores_the_same_as_in_process(ease, log):
    window = pq.split_at(log.sort_values("timestamp"), 0.95)
    local = pq.replay(ease, window, "online", k=10).events
    remote = pq.replay(ease, window, "online", k=10, http=True).events
    pd.testing.assert_frame_equal(local.drop(columns="latency_ms"), remote.drop(columns="latency_ms"))


def test_study_tables_carry_intervals_and_paired_gains(window):
    fits = {"ease": lambda f: models.build("ease", reg=50.0, device="cpu").fit(f)}
    replays = streaming.study(fits, window, {"ease": ["static", "online", "delayed:1h"]}, progress=False)
    table = streaming.quality(replays)
    assert ((table["hr@10_lo"] <= table["hr@10"]) & (table["hr@10"] <= table["hr@10_hi"])).all()
    gain = streaming.gains(replays, "online", "static").iloc[0]
    by_policy = table.set_index("policy")["hr@10"]
    assert gain["hr@10"] == pytest.approx(by_policy["online"] - by_policy["static"])
    assert gain["hr@10_lo"] <= gain["hr@10"] <= gain["hr@10_hi"]
    assert list(streaming.staleness(replays)["delay_s"]) == [0.0, 3600.0, np.inf]
    assert set(streaming.rolling(replays)["policy"]) == {"static", "online", "delayed:1h"}
    assert streaming.headline(table)["ease"]["online"][0] == round(by_policy["online"], 4)
    assert (streaming.costs(replays)["events_per_s"] > 0).all()
    parts = streaming.segments(replays)
    assert set(parts["segment"]) <= set(streaming.SEGMENTS)
    events = table.set_index("policy")["events"]
    assert parts.groupby("policy")["events"].sum().to_dict() == events.to_dict()  # a partition
    # each segment's events weigh into the policy's overall metric
    weighted = parts.assign(hits=parts["hr@10"] * parts["events"]).groupby("policy")["hits"].sum()
    assert (weighted / events).to_dict() == pytest.approx(by_policy.to_dict())
    assert (parts.loc[parts["segment"] == "items new after T0", "hr@10"] == 0).all()  # no model knows them
