"""Blend: one-hot weights reproduce a component, weights chosen on validation, too little data.
(Standardised scores and the weight simplex are tested in tests/models/test_fusion.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.synthetic import config_for, generate
from workbench.models import EASE, Blend, ItemKNN, Popularity


@pytest.fixture(scope="module")
def tiny():
    return generate(config_for("tiny", seed=0))[0]


def test_one_hot_weights_reproduce_the_component_ranking(tiny):
    users = tiny["user_id"].unique()[:30]
    alone = EASE(reg=50.0, device="cpu").fit(tiny).recommend(users, k=10)
    blend = Blend(models=(EASE(reg=50.0, device="cpu"), Popularity()), weights=(1.0, 0.0)).fit(tiny)
    pd.testing.assert_frame_equal(
        blend.recommend(users, k=10)[["user_id", "item_id", "rank"]], alone[["user_id", "item_id", "rank"]]
    )


def test_weights_are_chosen_on_validation_and_prefer_the_better_model(tiny):
    blend = Blend(models=(Popularity(), EASE(reg=50.0, device="cpu")), step=0.25).fit(tiny)
    table = blend.validation_
    assert list(table.columns) == ["Popularity", "EASE", "ndcg"] and len(table) == 5
    assert np.isclose(blend.weights_.sum(), 1.0)
    assert blend.weights_[1] >= 0.5  # EASE beats popularity on the planted structure
    assert table["ndcg"].max() == pytest.approx(table.loc[table["EASE"] == blend.weights_[1], "ndcg"].item())


def test_too_little_data_for_a_validation_split_is_a_clear_error():
    df = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 3], "rating": 1.0})
    with pytest.raises(ValueError, match="validation split"):
        Blend(models=(ItemKNN(k=2), Popularity())).fit(df)
    Blend(models=(ItemKNN(k=2), Popularity()), weights=(0.5, 0.5)).fit(df)  # fixed weights need none
