"""The item text an evaluation may use: title, year, genres, and only the tags its split allows.

User tags (``tags.csv`` in ml-latest-small, ml-20m, ml-25m) are written by users about items
they interacted with. In a held-out evaluation, a tag on a held-out item was written by the
very users whose interactions are being predicted, and some tags name their author ("in
netflix queue", 131 times in ml-latest-small, is one user's). So the text is built from the
split, never once for the whole data set:

>>> items = with_tags(data.items, data.tags, interactions=data.interactions, train=cold.train)

Policies (``policy=``):

- ``"none"`` (the default): items with no training interaction (cold items) carry no tags at
  all; other items keep their tags except those on a held-out (user, item) pair.
- ``"before"``: cold items keep only tags dated before the item's first held-out interaction
  and written by users with no held-out interaction; the rest as ``"none"``.
- ``"all"``: every tag, the leaky reference (what the text was before this rule existed).

Held out means: in ``interactions`` but not in ``train`` (matched on user and item), so a
carve of a carve (pseudo-cold validation items) is held out by passing the inner ``train``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data.movielens import item_text
from workbench.data.schema import ITEM, TIMESTAMP, USER, require_columns

TAG_POLICIES = ("none", "before", "all")
TAG_COLUMNS = (USER, ITEM, "tag", TIMESTAMP)


def _pairs(df: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([df[USER].to_numpy(), df[ITEM].to_numpy()])


def held_out(interactions: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``interactions`` whose (user, item) pair is not in ``train``."""
    require_columns(interactions, [USER, ITEM, TIMESTAMP], source="held_out interactions")
    require_columns(train, [USER, ITEM], source="held_out train")
    return interactions[~_pairs(interactions).isin(_pairs(train))]


def allowed_tags(
    tags: pd.DataFrame, *, interactions: pd.DataFrame, train: pd.DataFrame, policy: str = "none"
) -> pd.DataFrame:
    """The tag rows (``user_id, item_id, tag, timestamp``) that ``policy`` lets the text use."""
    if policy not in TAG_POLICIES:
        raise ValueError(f"unknown tag policy {policy!r}; choose one of {list(TAG_POLICIES)}")
    require_columns(tags, list(TAG_COLUMNS), source="tags")
    if policy == "all":
        return tags
    out = held_out(interactions, train)
    keep = ~_pairs(tags).isin(_pairs(out))  # no tag on a held-out (user, item) pair
    cold = ~tags[ITEM].isin(train[ITEM].unique()).to_numpy()
    if policy == "none":
        keep &= ~cold
    else:  # "before": cold items keep tags older than their first held-out row, by outside users
        first = out.groupby(ITEM)[TIMESTAMP].min()
        cutoff = tags[ITEM].map(first).fillna(np.inf).to_numpy()
        outsider = ~tags[USER].isin(out[USER].unique()).to_numpy()
        keep &= ~cold | ((tags[TIMESTAMP].to_numpy() < cutoff) & outsider)
    return tags[keep]


def top_tags(tags: pd.DataFrame, *, max_tags: int = 10) -> dict[int, list[str]]:
    """Per item, its ``max_tags`` most frequent tags (ties by name), lower-cased."""
    if tags.empty:
        return {}
    t = tags.assign(tag=tags["tag"].astype(str).str.strip().str.lower())
    counts = t.groupby([ITEM, "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values([ITEM, "n", "tag"], ascending=[True, False, True])
    return {int(i): list(g["tag"][:max_tags]) for i, g in counts.groupby(ITEM)}


def with_tags(
    items: pd.DataFrame,
    tags: pd.DataFrame | None,
    *,
    interactions: pd.DataFrame,
    train: pd.DataFrame,
    policy: str = "none",
    max_tags: int = 10,
) -> pd.DataFrame:
    """A copy of ``items`` whose ``text`` is title, year, genres and the allowed tags.

    ``tags`` None (a data set without tags) leaves the text as title, year and genres.
    The policy is kept in ``result.attrs["tag_policy"]``, with the count of tags used.
    """
    if policy not in TAG_POLICIES:
        raise ValueError(f"unknown tag policy {policy!r}; choose one of {list(TAG_POLICIES)}")
    require_columns(items, [ITEM, "title", "year", "genres"], source="items")
    used = (
        allowed_tags(tags, interactions=interactions, train=train, policy=policy)
        if tags is not None
        else pd.DataFrame(columns=list(TAG_COLUMNS))
    )
    per_item = top_tags(used, max_tags=max_tags)
    out = items.copy()
    out["text"] = [
        item_text(t, y, g, per_item.get(int(i)))
        for i, t, y, g in zip(out[ITEM], out["title"], out["year"], out["genres"])
    ]
    out.attrs["tag_policy"] = {
        "policy": policy,
        "tags_available": 0 if tags is None else len(tags),
        "tags_used": len(used),
        "items_with_tags": len(per_item),
    }
    return out
