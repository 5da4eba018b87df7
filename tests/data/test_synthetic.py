"""The synthetic generator: deterministic, MovieLens-shaped, with the structure it documents."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from workbench import metrics
from workbench.data import splits, synthetic
from workbench.data.matrix import IndexMap, interaction_matrix
from workbench.data.schema import validate_interactions

SEQUEL = re.compile(r" (II|III|IV)$")


@pytest.fixture(scope="module")
def tiny():
    return synthetic.generate(synthetic.config_for("tiny", seed=0))


def test_same_seed_same_data(tiny):
    again = synthetic.generate(synthetic.config_for("tiny", seed=0))
    for a, b in zip(tiny, again):
        pd.testing.assert_frame_equal(a, b)


def test_other_seed_other_data(tiny):
    inter, items, _ = tiny
    other_inter, other_items, _ = synthetic.generate(synthetic.config_for("tiny", seed=1))
    assert not inter.equals(other_inter)
    assert (items["title"] != other_items["title"]).mean() > 0.5


def test_canonical_schema_and_sizes(tiny):
    inter, items, users = tiny
    n_users, n_items, mean_per_user, _ = synthetic.SIZES["tiny"]

    assert inter.dtypes.astype(str).to_dict() == {
        "user_id": "int64",
        "item_id": "int64",
        "rating": "float64",
        "timestamp": "int64",
    }
    pd.testing.assert_frame_equal(validate_interactions(inter, rating_range=(1, 5)), inter)  # no duplicates
    assert set(inter["rating"]) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert users["user_id"].tolist() == list(range(1, n_users + 1))
    assert items["item_id"].tolist() == list(range(1, n_items + 1))
    assert set(inter["item_id"]) <= set(items["item_id"])
    assert inter["user_id"].nunique() == n_users
    assert 0.7 * mean_per_user < len(inter) / n_users < 1.3 * mean_per_user
    assert all(isinstance(g, tuple) and 1 <= len(g) <= 2 and set(g) <= set(synthetic.GENRES) for g in items["genres"])
    assert items["year"].between(1930, 1998).all()


def test_every_user_has_the_minimum(tiny):
    inter, _, _ = tiny
    assert inter.groupby("user_id").size().min() >= synthetic.SIZES["tiny"][3]


def test_small_size_is_shaped_like_ml_100k():
    inter, items, users = synthetic.generate(synthetic.config_for("small", seed=0))
    assert (inter["user_id"].nunique(), len(items), len(users)) == (943, 1682, 943)
    assert inter.groupby("user_id").size().min() >= 20
    assert 80_000 < len(inter) < 130_000


def test_config_for():
    cfg = synthetic.config_for("ml-1m", seed=7)
    assert (cfg.n_users, cfg.n_items, cfg.mean_per_user, cfg.min_per_user, cfg.seed) == (6040, 3706, 165, 20, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown synthetic size 'big'"):
        synthetic.config_for("big")


# --------------------------------------------------------------------------- planted structure


def test_item_popularity_and_user_activity_are_long_tailed(tiny):
    inter, items, _ = tiny
    counts = inter["item_id"].value_counts()  # sorted, most popular first
    assert counts.iloc[: len(items) // 10].sum() / len(inter) > 0.30  # uniform would be 0.10
    per_user = inter.groupby("user_id").size()
    assert per_user.max() > 3 * per_user.median()


def test_timestamps_form_histories_in_the_ml_100k_window(tiny):
    inter, _, _ = tiny
    start = inter.groupby("user_id")["timestamp"].min()
    assert start.min() >= 874_724_710 and start.max() <= 874_724_710 + 210 * 86400
    assert not inter.duplicated(["user_id", "timestamp"]).any()  # a strict order per user


def _is_sequel(items: pd.DataFrame) -> pd.Series:
    return items["title"].map(lambda t: SEQUEL.search(t) is not None)


def _title_words(title: str) -> set[str]:
    return set(title.split()) - {"The", "II", "III", "IV"}


def test_titles_share_words_within_genres(tiny):
    _, items, _ = tiny
    firsts = items[~_is_sequel(items)]  # sequels repeat their first part's title
    words = [_title_words(t) for t in firsts["title"]]
    genre = [g[0] for g in firsts["genres"]]
    same, across = [], []
    for a in range(len(words)):
        for b in range(a + 1, len(words)):
            (same if genre[a] == genre[b] else across).append(bool(words[a] & words[b]))
    assert np.mean(same) > 1.5 * np.mean(across)


def test_titles_sharing_a_word_are_rated_by_the_same_users(tiny):
    """The text signal points at CF neighbours: title overlap means more co-rating."""
    inter, items, _ = tiny
    x = interaction_matrix(inter, IndexMap.from_ids(inter["user_id"]), IndexMap.from_ids(items["item_id"])).toarray()
    x = x / np.maximum(np.linalg.norm(x, axis=0), 1e-12)
    cosine = x.T @ x  # (n_items, n_items)
    keep = np.flatnonzero(~_is_sequel(items).to_numpy())
    words = [_title_words(t) for t in items["title"]]
    shared = np.array([[bool(words[a] & words[b]) for b in keep] for a in keep])
    upper = np.triu(np.ones_like(shared), k=1).astype(bool)
    sub = cosine[np.ix_(keep, keep)]
    assert sub[upper & shared].mean() > 1.1 * sub[upper & ~shared].mean()


def _series_steps(items: pd.DataFrame) -> list[tuple[int, int]]:
    """(part n, part n+1) item ids: a sequel directly follows its previous part in id order."""
    title = dict(zip(items["item_id"], items["title"]))
    steps = []
    for item_id, t in title.items():
        m = SEQUEL.search(t)
        if m and item_id - 1 in title:
            stem = t[: m.start()]
            previous = {"II": stem, "III": stem + " II", "IV": stem + " III"}[m.group(1)]
            if title[item_id - 1] == previous:
                steps.append((item_id - 1, item_id))
    return steps


def test_series_parts_follow_each_other_in_time(tiny):
    inter, items, _ = tiny
    steps = _series_steps(items)
    assert len(steps) >= 20
    observed = both = 0
    chance = 0.0
    for _, history in inter.sort_values(["user_id", "timestamp"]).groupby("user_id"):
        position = {item: k for k, item in enumerate(history["item_id"])}
        for first, second in steps:
            if first in position and second in position:
                both += 1
                observed += position[second] == position[first] + 1
                chance += 1 / (len(position) - 1)  # random order: P(right after) = 1/(n-1)
    assert both >= 100
    assert observed / both > 0.5
    assert observed / both > 10 * chance / both


def _top10(scores: np.ndarray, seen: np.ndarray, users: IndexMap, items: IndexMap) -> pd.DataFrame:
    scores = np.where(seen, -np.inf, scores)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :10]  # (n_users, 10)
    return pd.DataFrame(
        {
            "user_id": np.repeat(users.ids_, 10),
            "item_id": items.ids(best.ravel()),
            "rank": np.tile(np.arange(1, 11), len(users)),
        }
    )


def test_collaborative_filtering_beats_popularity(tiny):
    """EASE (closed form, Steck 2019) on the planted factors vs most-popular, nDCG@10."""
    inter, _, _ = tiny
    train, test = splits.stratified(inter, ratio=0.75, seed=42)
    users, items = IndexMap.from_ids(inter["user_id"]), IndexMap.from_ids(inter["item_id"])
    x = interaction_matrix(train, users, items).toarray().astype(np.float64)  # (n_users, n_items)
    seen = x > 0

    gram = x.T @ x + 50.0 * np.eye(x.shape[1])
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    ease = metrics.ranking_metrics(_top10(x @ b, seen, users, items), test, k=10)["ndcg"]
    popular = np.broadcast_to(x.sum(axis=0), x.shape)
    pop = metrics.ranking_metrics(_top10(popular, seen, users, items), test, k=10)["ndcg"]

    assert pop > 0.1  # popularity is a real baseline here, not a strawman
    assert ease > 1.5 * pop


@pytest.fixture(scope="module")
def pooled():
    cfg = synthetic.SyntheticConfig(**{**synthetic.config_for("tiny").__dict__, "sampler": "pooled"})
    return cfg, synthetic.generate(cfg)


def test_large_presets_switch_to_the_pooled_sampler_and_small_ones_stay_exact():
    assert synthetic.config_for("ml-20m").pooled and synthetic.config_for("ml-5m").pooled
    assert not synthetic.config_for("ml-1m").pooled and not synthetic.config_for("small").pooled
    n_users, n_items, mean, _ = synthetic.SIZES["ml-20m"]
    assert 19e6 < n_users * mean < 21e6 and n_items > 25_000  # ML-20M's shape
    with pytest.raises(ValueError, match="sampler must be"):
        synthetic.SyntheticConfig(sampler="fast")
    with pytest.raises(ValueError, match="n_items >= 2"):
        synthetic.SyntheticConfig(n_items=1)


def test_pooled_sampler_is_deterministic_and_keeps_the_schema(pooled):
    cfg, (inter, _, _) = pooled
    again = synthetic.generate(cfg)[0]
    pd.testing.assert_frame_equal(inter, again)
    assert not inter.duplicated(["user_id", "item_id"]).any()
    assert inter["user_id"].nunique() == cfg.n_users and inter["item_id"].between(1, cfg.n_items).all()
    assert inter.groupby("user_id").size().min() >= cfg.min_per_user
    assert (inter.groupby("user_id")["timestamp"].diff().dropna() > 0).all()  # each history in time order


def test_pooled_sampler_keeps_the_planted_series_order(pooled):
    """A followed series is watched part after part, as the exact sampler plants it."""
    _, (inter, items, _) = pooled
    test_series_parts_follow_each_other_in_time((inter, items, None))


def test_pooled_sampler_plants_collaborative_signal(pooled):
    """EASE beats most-popular on the pooled sample too (the factors still drive choices)."""
    _, (inter, _, _) = pooled
    test_collaborative_filtering_beats_popularity((inter, None, None))
