"""Nearest items by title, one column per model (notebooks 02 and 03)."""

from __future__ import annotations

import pandas as pd

from workbench.models import EASE, ItemKNN
from workbench.plots.neighbours import similar_titles


def test_similar_titles_table():
    df = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3], "item_id": [10, 11, 10, 11, 12, 13], "rating": 1.0})
    titles = pd.Series({10: "A", 11: "A2", 12: "B", 13: "B2"})
    models = {"ItemKNN": ItemKNN(k=2).fit(df), "EASE": EASE(reg=1.0, device="cpu").fit(df)}
    table = similar_titles(models, [10, 12, 99], titles, k=1)  # 99: never seen, left out
    assert list(table.columns) == ["ItemKNN", "EASE"]
    assert table.loc[("A", 1)].tolist() == ["A2", "A2"] and table.loc[("B", 1)].tolist() == ["B2", "B2"]


def test_similar_titles_rows_are_query_and_rank():
    df = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3], "item_id": [10, 11, 12, 10, 11, 10], "rating": 1.0})
    titles = pd.Series({10: "A", 11: "B", 12: "C"})
    table = similar_titles({"ItemKNN": ItemKNN(k=3).fit(df)}, [10], titles, k=2)
    assert table.index.names == ["query", "rank"] and list(table.index) == [("A", 1), ("A", 2)]
    assert table["ItemKNN"].tolist() == ["B", "C"]  # 11 shares two users with 10, 12 one
