"""Splits and filters: per-user proportions, disjoint and complete parts, time order, seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data import splits
from workbench.data.schema import SchemaError


@pytest.fixture
def interactions() -> pd.DataFrame:
    """60 users with 1..30 distinct items each, random times, rows shuffled; a non-default index."""
    rng = np.random.default_rng(5)
    rows = []
    for u in range(1, 61):
        n = 1 if u <= 3 else int(rng.integers(2, 31))
        for i in rng.choice(200, size=n, replace=False):
            rows.append((u, int(i) + 1, float(rng.integers(1, 6)), int(rng.integers(0, 10**6))))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    df = df.sample(frac=1.0, random_state=1)
    df.index = df.index * 3 + 1000
    return df


def assert_partition(parts: tuple[pd.DataFrame, ...], whole: pd.DataFrame) -> None:
    """The parts are disjoint and together give back exactly ``whole`` (rows and index)."""
    index = np.concatenate([p.index.to_numpy() for p in parts])
    assert len(index) == len(np.unique(index)) == len(whole)
    pd.testing.assert_frame_equal(pd.concat(parts).loc[whole.index], whole)


def sizes(df: pd.DataFrame) -> pd.Series:
    return df.groupby("user_id").size()


# --------------------------------------------------------------------------- stratified


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.9])
def test_stratified_keeps_each_users_share(interactions, ratio):
    train, test = splits.stratified(interactions, ratio=ratio, seed=42)

    assert_partition((train, test), interactions)
    n = sizes(interactions)
    # Python's round, as Microsoft Recommenders; every user keeps at least one train row
    expected = n.map(lambda k: max(round(ratio * k), 1))
    pd.testing.assert_series_equal(sizes(train).reindex(n.index, fill_value=0), expected, check_names=False)
    assert set(train["user_id"]) == set(interactions["user_id"])  # nobody lost from train
    assert (train.index.to_series().diff().dropna() > 0).all()  # input order kept


def test_stratified_is_deterministic_by_seed(interactions):
    a_train, a_test = splits.stratified(interactions, seed=1)
    b_train, b_test = splits.stratified(interactions, seed=1)
    c_train, _ = splits.stratified(interactions, seed=2)

    pd.testing.assert_frame_equal(a_train, b_train)
    pd.testing.assert_frame_equal(a_test, b_test)
    assert not a_train.index.equals(c_train.index)
    assert len(a_train) == len(c_train)  # same proportions, other rows


def test_stratified_picks_at_random_within_a_user(interactions):
    """Not the first rows in input order, nor the earliest in time: over seeds, each row of
    a busy user lands in test sometimes."""
    busy = sizes(interactions).idxmax()
    rows = interactions[interactions["user_id"] == busy]
    in_test = pd.Series(0, index=rows.index)
    for seed in range(40):
        _, test = splits.stratified(rows, seed=seed)
        in_test[test.index] += 1
    assert (in_test > 0).all()
    assert in_test.mean() == pytest.approx(40 * (1 - round(0.75 * len(rows)) / len(rows)))


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.2])
def test_single_row_users_stay_in_train(interactions, ratio):
    train, test = splits.stratified(interactions, ratio=ratio)
    singles = sizes(interactions)[lambda s: s == 1].index
    assert len(singles) == 3
    assert set(singles) <= set(train["user_id"]) and not set(singles) & set(test["user_id"])


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.5])
def test_ratio_must_be_inside_0_1(interactions, ratio):
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\)"):
        splits.stratified(interactions, ratio=ratio)
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\)"):
        splits.temporal(interactions, ratio=ratio)


def test_missing_columns_are_named(interactions):
    with pytest.raises(SchemaError, match=r"stratified split: missing column\(s\) \['item_id'\]"):
        splits.stratified(interactions.drop(columns="item_id"))
    with pytest.raises(SchemaError, match=r"temporal split: missing column\(s\) \['timestamp'\]"):
        splits.temporal(interactions.drop(columns="timestamp"))
    with pytest.raises(SchemaError, match=r"leave-last-out split: missing column\(s\) \['timestamp'\]"):
        splits.leave_last_out(interactions.drop(columns="timestamp"))


# --------------------------------------------------------------------------- temporal


def test_temporal_puts_each_users_earliest_in_train(interactions):
    train, test = splits.temporal(interactions, ratio=0.75)

    assert_partition((train, test), interactions)
    n = sizes(interactions)
    assert sizes(train).reindex(n.index, fill_value=0).tolist() == [round(0.75 * k) for k in n]
    last_train = train.groupby("user_id")["timestamp"].max()
    first_test = test.groupby("user_id")["timestamp"].min()
    assert (last_train.loc[first_test.index] <= first_test).all()


def test_temporal_ties_keep_input_order():
    df = pd.DataFrame({"user_id": [1] * 4, "item_id": [4, 3, 2, 1], "rating": 1.0, "timestamp": [5, 5, 5, 1]})
    train, test = splits.temporal(df, ratio=0.5)
    assert train["item_id"].tolist() == [4, 1] and test["item_id"].tolist() == [3, 2]


# --------------------------------------------------------------------------- leave-last-out


def test_leave_last_out_tests_each_users_latest(interactions):
    train, test = splits.leave_last_out(interactions)

    assert_partition((train, test), interactions)
    latest = interactions.loc[interactions.groupby("user_id")["timestamp"].idxmax()]
    eligible = latest[latest["user_id"].map(sizes(interactions)) >= 2]
    assert test.sort_values("user_id")[["user_id", "item_id"]].values.tolist() == (
        eligible.sort_values("user_id")[["user_id", "item_id"]].values.tolist()
    )
    assert test["user_id"].is_unique
    short = sizes(interactions)[lambda s: s == 1].index
    assert set(short) <= set(train["user_id"])  # short histories stay in train


def test_leave_last_n_and_min_history():
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 3, 3, 3],
            "item_id": [1, 2, 3, 4, 1, 2, 1, 2, 3],
            "rating": 1.0,
            "timestamp": [40, 10, 30, 20, 5, 6, 7, 7, 1],  # user 3: a tie at the end
        }
    )

    _, test2 = splits.leave_last_out(df, n=2)
    _, test_min = splits.leave_last_out(df, n=1, min_history=3)
    _, test_tie = splits.leave_last_out(df[df["user_id"] == 3])

    assert test2[["user_id", "item_id"]].values.tolist() == [[1, 1], [1, 3], [3, 1], [3, 2]]  # user 2 too short
    assert test_min[["user_id", "item_id"]].values.tolist() == [[1, 1], [3, 2]]
    assert test_tie["item_id"].tolist() == [2]  # equal times: the later row counts as last
    with pytest.raises(ValueError, match="n must be >= 1"):
        splits.leave_last_out(df, n=0)


def test_leave_last_out_twice_gives_train_valid_test(interactions):
    rest, test = splits.leave_last_out(interactions)
    train, valid = splits.leave_last_out(rest)

    assert_partition((train, valid, test), interactions)
    both = valid.merge(test, on="user_id", suffixes=("_valid", "_test"))
    assert (both["timestamp_valid"] <= both["timestamp_test"]).all()


# --------------------------------------------------------------------------- validation


def test_validation_is_carved_from_train_only(interactions):
    train, test = splits.stratified(interactions, seed=42)

    fit, valid = splits.validation(train, ratio=0.8, seed=7)

    assert_partition((fit, valid), train)
    assert not set(valid.index) & set(test.index)
    assert sizes(fit).tolist() == [round(0.8 * k) for k in sizes(train)]
    again, _ = splits.validation(train, ratio=0.8, seed=7)
    pd.testing.assert_frame_equal(fit, again)


# --------------------------------------------------------------------------- filters


def brute_force_core(df: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Remove one offending user or item at a time until none is left (slow, obviously right)."""
    while True:
        users, items = sizes(df), df.groupby("item_id").size()
        if (users < min_user).any():
            df = df[df["user_id"] != users[users < min_user].index[0]]
        elif (items < min_item).any():
            df = df[df["item_id"] != items[items < min_item].index[0]]
        else:
            return df


def test_min_interactions_core_reaches_a_fixpoint():
    # item 3 has 1 rating; dropping it leaves user 2 with 1 rating; dropping user 2
    # leaves item 2 with 1 rating; and so on: one pass is not enough
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3, 3, 4, 4, 5],
            "item_id": [1, 2, 4, 2, 3, 1, 4, 1, 4, 4],
            "rating": 1.0,
        }
    )

    once = splits.min_interactions(df, min_user=2, min_item=2)
    core = splits.min_interactions(df, min_user=2, min_item=2, core=True)

    assert (sizes(core) >= 2).all() and (core.groupby("item_id").size() >= 2).all()
    pd.testing.assert_frame_equal(core, brute_force_core(df, 2, 2))
    assert core[["user_id", "item_id"]].values.tolist() == [[1, 1], [1, 4], [3, 1], [3, 4], [4, 1], [4, 4]]
    assert (once.groupby("item_id").size() < 2).any() or (sizes(once) < 2).any()  # one pass fell short
    assert len(once) > len(core)


def test_min_interactions_on_random_data_matches_brute_force(interactions):
    core = splits.min_interactions(interactions, min_user=5, min_item=3, core=True)
    pd.testing.assert_frame_equal(core, brute_force_core(interactions, 5, 3))
    assert 0 < len(core) < len(interactions)


def test_min_interactions_keeps_everything_when_satisfied(interactions):
    assert splits.min_interactions(interactions, core=True) is interactions


def test_binarize_keeps_ratings_at_or_above_the_threshold():
    df = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 3], "rating": [3.5, 4.0, 5.0, 1.0]})
    assert splits.binarize(df, 4.0)["rating"].tolist() == [4.0, 5.0]
    assert splits.binarize(df, 3.5).index.tolist() == [0, 1, 2]
    with pytest.raises(SchemaError, match=r"binarize: missing column\(s\) \['rating'\]"):
        splits.binarize(df.drop(columns="rating"), 4.0)


# --------------------------------------------------------------------------- leave one out


@pytest.fixture
def log(sequence_log) -> pd.DataFrame:
    """Three users' time-ordered items (tests/conftest.py)."""
    return sequence_log


def test_leave_one_out_holds_out_the_last_two_like_leave_last_out(log):
    s = splits.leave_one_out(log)
    assert dict(zip(s.test.user_id, s.test.item_id)) == {1: 13, 2: 22}
    assert dict(zip(s.valid.user_id, s.valid.item_id)) == {1: 12, 2: 21, 3: 31}  # user 3: no test
    assert sorted(s.train.item_id) == [10, 11, 20, 30]
    _, last = splits.leave_last_out(log, 1, min_history=3)
    assert dict(zip(last.user_id, last.item_id)) == {1: 13, 2: 22}
    assert len(s.history) == len(s.train) + len(s.valid)


# --------------------------------------------------------------------------- cold items


@pytest.fixture(scope="module")
def synthetic_tiny():
    from workbench.data import datasets

    return datasets.load("synthetic", size="tiny", seed=0)


def test_cold_split_holds_items_out_with_all_their_interactions(synthetic_tiny):
    inter = synthetic_tiny.interactions
    split = splits.cold_split(inter, 0.1, seed=3)
    n_items = inter["item_id"].nunique()
    assert len(split.cold_items) == round(0.1 * n_items)
    assert not split.train["item_id"].isin(split.cold_items).any()
    assert split.test["item_id"].isin(split.cold_items).all()
    assert len(split.train) + len(split.test) + split.dropped_test_rows == len(inter)
    assert split.test["user_id"].isin(split.train["user_id"]).all()
    again = splits.cold_split(inter, 0.1, seed=3)
    np.testing.assert_array_equal(again.cold_items, split.cold_items)
    assert not np.array_equal(splits.cold_split(inter, 0.1, seed=4).cold_items, split.cold_items)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_cold_split_rejects_bad_fractions(synthetic_tiny, fraction):
    with pytest.raises(ValueError, match="fraction"):
        splits.cold_split(synthetic_tiny.interactions, fraction)
