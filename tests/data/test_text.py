"""Item text built from the split: no tag derived from held-out interactions (issue 20)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from workbench.data import datasets, splits, synthetic, text
from workbench.data.schema import ITEM, TIMESTAMP, USER

NAMES_ITS_AUTHOR = "user"  # the synthetic generator's self-naming tag


def _frame(rows):
    return pd.DataFrame(rows, columns=[USER, ITEM, "tag", TIMESTAMP])


@pytest.fixture(scope="module")
def tagged():
    data = datasets.load("synthetic", size="tiny", seed=0)
    return data, splits.cold_split(data.interactions, 0.2, seed=0)


def _leaked(tags: pd.DataFrame, data, cold) -> pd.Series:
    """Tags written through a held-out interaction: on a cold item, or on a held-out pair."""
    out = text.held_out(data.interactions, cold.train)
    on_pair = pd.MultiIndex.from_frame(tags[[USER, ITEM]]).isin(pd.MultiIndex.from_frame(out[[USER, ITEM]]))
    return pd.Series(on_pair | tags[ITEM].isin(cold.cold_items).to_numpy(), index=tags.index)


def test_synthetic_tags_plant_content_and_self_naming_tags(tagged):
    data, _ = tagged
    tags = data.tags
    assert list(tags.columns) == [USER, ITEM, "tag", TIMESTAMP]
    naming = tags[tags["tag"].str.startswith(NAMES_ITS_AUTHOR)]
    assert naming[USER].nunique() >= 2 and len(naming) > 30
    assert (naming["tag"] == NAMES_ITS_AUTHOR + naming[USER].astype(str)).all()
    pairs = tags.merge(data.interactions, on=[USER, ITEM], suffixes=("", "_rated"))
    assert len(pairs) == len(tags)  # every tag is on an item its author interacted with
    assert (pairs[TIMESTAMP] > pairs[f"{TIMESTAMP}_rated"]).all()


def test_items_text_carries_no_tags_until_a_split_allows_them(tagged):
    data, _ = tagged
    assert not data.items["text"].str.contains("Tags:").any()


@pytest.mark.parametrize("policy", ["none", "before"])
def test_honest_policies_use_no_tag_written_through_a_held_out_interaction(tagged, policy):
    data, cold = tagged
    honest = text.with_tags(data.items, data.tags, interactions=data.interactions, train=cold.train, policy=policy)
    cold_text = honest[honest[ITEM].isin(cold.cold_items)]["text"]
    assert not cold_text.str.contains("Tags:").any()
    # the text is the same whether or not the held-out interactions' tags exist at all
    without = data.tags[~_leaked(data.tags, data, cold)]
    same = text.with_tags(data.items, without, interactions=data.interactions, train=cold.train, policy=policy)
    pd.testing.assert_series_equal(honest["text"], same["text"])
    assert honest.attrs["tag_policy"]["policy"] == policy


def test_the_all_policy_is_the_leaky_reference(tagged):
    data, cold = tagged
    leaky = text.with_tags(data.items, data.tags, interactions=data.interactions, train=cold.train, policy="all")
    cold_text = leaky[leaky[ITEM].isin(cold.cold_items)]["text"]
    assert cold_text.str.contains(NAMES_ITS_AUTHOR).any()


def _lexical_hit_rate(items: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, cold_items, k: int = 10) -> float:
    """A bag-of-words content recommender (idf-weighted overlap between a cold item's text
    and the texts of the user's training items): the share of test rows ranked in the top k
    among the cold items. It reads text only, as any text model could learn to."""
    words = {i: set(re.findall(r"[a-z0-9]+", t.lower())) for i, t in zip(items[ITEM], items["text"])}
    df = Counter(w for ws in words.values() for w in ws)
    idf = {w: np.log(len(words) / n) for w, n in df.items()}
    profile = {u: set().union(*(words[i] for i in g[ITEM])) for u, g in train.groupby(USER)}
    cold = np.asarray(cold_items)
    hits = 0
    for u, g in test.groupby(USER):
        scores = np.array([sum(idf[w] for w in words[i] & profile[u]) for i in cold])
        top = set(cold[np.argsort(-scores, kind="stable")[:k]])
        hits += int(g[ITEM].isin(top).sum())
    return hits / len(test)


def test_a_tag_naming_the_held_out_user_does_not_raise_the_cold_start_metric(tagged):
    """The planted leak is real (all tags: a text model finds each cold item's raters by
    the tag that names them), and the default policy removes it exactly."""
    data, cold = tagged
    # only self-naming tags, by 30% of users, so that their effect is measured alone
    planted = synthetic.tags(data.interactions, data.items, seed=0, content_rate=0.0, self_naming_users=0.3)
    unplanted = planted[~(planted["tag"].str.startswith(NAMES_ITS_AUTHOR) & _leaked(planted, data, cold))]

    def hit_rate(tags, policy):
        items = text.with_tags(data.items, tags, interactions=data.interactions, train=cold.train, policy=policy)
        return _lexical_hit_rate(items, cold.train, cold.test, cold.cold_items)

    assert hit_rate(planted, "all") > hit_rate(unplanted, "all") + 0.1  # the planted tag leaks
    assert hit_rate(planted, "none") == hit_rate(unplanted, "none")  # ...and not under the default
    assert hit_rate(planted, "before") == hit_rate(unplanted, "before")


def test_before_keeps_old_tags_by_outsiders_on_cold_items():
    items = pd.DataFrame({ITEM: [1, 2], "title": ["A", "B"], "year": pd.array([2000, None], dtype="Int64")})
    items["genres"] = [("Drama",), ()]
    interactions = pd.DataFrame({USER: [1, 2, 3], ITEM: [1, 2, 2], TIMESTAMP: [10, 50, 60]})
    train = interactions.iloc[:1]  # item 2 is cold; users 2 and 3 are held out
    tags = _frame(
        [
            (9, 2, "early outsider", 40),  # kept by "before"
            (9, 2, "late outsider", 55),  # after the first held-out interaction (50)
            (2, 2, "by a held-out user", 30),
            (1, 1, "warm", 5),
        ]
    )
    kw = {"interactions": interactions, "train": train}
    before = text.allowed_tags(tags, policy="before", **kw)
    assert sorted(before["tag"]) == ["early outsider", "warm"]
    assert sorted(text.allowed_tags(tags, policy="none", **kw)["tag"]) == ["warm"]
    assert len(text.allowed_tags(tags, policy="all", **kw)) == 4
    out = text.with_tags(items, tags, policy="before", **kw)
    assert out["text"].tolist() == ["A (2000). Genres: Drama. Tags: warm.", "B. Tags: early outsider."]


def test_a_held_out_pair_loses_its_tag_even_on_a_warm_item():
    interactions = pd.DataFrame({USER: [1, 2], ITEM: [1, 1], TIMESTAMP: [1, 2]})
    tags = _frame([(1, 1, "by trainer", 3), (2, 1, "by tested", 4)])
    kept = text.allowed_tags(tags, interactions=interactions, train=interactions.iloc[:1], policy="none")
    assert kept["tag"].tolist() == ["by trainer"]


def test_tag_policy_errors_are_clear():
    items = pd.DataFrame({ITEM: [1], "title": ["A"], "year": pd.array([None], dtype="Int64"), "genres": [()]})
    inter = pd.DataFrame({USER: [1], ITEM: [1], TIMESTAMP: [1]})
    with pytest.raises(ValueError, match="unknown tag policy 'some'"):
        text.with_tags(items, None, interactions=inter, train=inter, policy="some")
    with pytest.raises(Exception, match="tag"):
        text.with_tags(items, pd.DataFrame({USER: [1]}), interactions=inter, train=inter)
    assert text.with_tags(items, None, interactions=inter, train=inter)["text"].tolist() == ["A."]


def test_top_tags_are_the_most_frequent_ten_lower_cased():
    rows = [(u, 1, f"T{j}", 0) for j in range(12) for u in range(j + 1)] + [(1, 1, " t11 ", 0)]
    top = text.top_tags(_frame(rows))
    assert top[1][0] == "t11" and len(top[1]) == 10 and top[1][-1] == "t2"
    assert np.all([t == t.lower() for t in top[1]])


def test_loaded_data_sets_keep_tags_apart_from_item_text(fake_movielens, tmp_path):
    fake = fake_movielens("ml-latest-small")
    data = datasets.load(fake.name, path=fake.write_folder(tmp_path / "src"), cache_dir=tmp_path / "cache")
    assert len(data.tags) == 4 and not data.items["text"].str.contains("Tags:").any()
    assert datasets.load("synthetic", size="tiny").tags is not None
    no_tags = fake_movielens("ml-100k")
    assert datasets.load("ml-100k", path=no_tags.write_folder(tmp_path / "b"), cache_dir=tmp_path / "c").tags is None
