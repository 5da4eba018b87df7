"""Popularity baselines: the popularity-of-genre baseline scores cold items (known answer).

The cold-item split is tested in tests/data/test_splits.py, ranking among candidates in
tests/models/test_base.py, and the comparison table in tests/evaluation/test_topk.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.schema import ITEM, USER, SchemaError
from workbench.models import GenrePopularity
from workbench.models.popularity import GenrePopularityConfig


def test_genre_popularity_known_answer():
    items = pd.DataFrame({ITEM: [1, 2, 3, 4, 5], "genres": [("A",), ("A",), ("B",), ("A", "B"), ()]})
    train = pd.DataFrame({USER: [1, 2, 3, 1], ITEM: [1, 1, 2, 3]})  # A items: 2 and 1 -> 1.5; B: 1
    model = GenrePopularity(items).fit(train)
    s = model.score(np.array([0]))[0].tolist()
    # item 4 (cold, A and B) = mean(1.5, 1.0); item 5 (no genre) = mean count of warm items
    assert s == pytest.approx([1.5, 1.5, 1.0, 1.25, 4 / 3])
    recs = model.recommend([2], k=2, candidates=[4, 5])
    assert recs[ITEM].tolist() == [5, 4]


def test_genre_popularity_has_an_empty_config_and_needs_genres():
    items = pd.DataFrame({ITEM: [1, 2], "genres": [("A",), ("B",)]})
    assert GenrePopularity(items).config == GenrePopularityConfig()
    with pytest.raises(SchemaError, match="genres"):
        GenrePopularity(items.drop(columns="genres"))
