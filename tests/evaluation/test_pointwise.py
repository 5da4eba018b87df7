"""Pointwise behaviour prediction: negative sampling, pair scores, Platt calibration, and
AUC/log-loss computed once over the whole set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data import datasets, splits
from workbench.data.schema import ITEM, USER
from workbench.evaluation import pointwise
from workbench.metrics import log_loss
from workbench.models import EASE, Popularity


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", size="tiny", seed=0)


def test_negatives_are_items_the_user_never_touched(data):
    train, test = splits.stratified(data.interactions, 0.75, seed=42)
    pairs = pointwise.sample_pairs(test, train, data.items[ITEM], negatives=2, seed=1)
    pos, neg = pairs[pairs["label"] == 1], pairs[pairs["label"] == 0]
    assert len(pos) == len(test) and len(neg) == 2 * len(test)
    touched = set(zip(data.interactions[USER], data.interactions[ITEM]))
    assert not any((u, i) in touched for u, i in zip(neg[USER], neg[ITEM]))
    again = pointwise.sample_pairs(test, train, data.items[ITEM], negatives=2, seed=1)
    pd.testing.assert_frame_equal(pairs, again)


def test_pair_scores_match_the_score_matrix(data):
    train, test = splits.stratified(data.interactions, 0.75, seed=42)
    model = EASE(device="cpu").fit(train)
    pairs = pointwise.sample_pairs(test, train, model.items.ids_, seed=0)
    pairs = pairs[pairs[ITEM].isin(model.items.ids_)]
    got = pointwise.pair_scores(model, pairs, block=7)
    full = model.score(np.arange(len(model.users))).numpy()
    want = full[model.users.index(pairs[USER]), model.items.index(pairs[ITEM])]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_platt_scaling_recovers_a_known_logistic():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20_000) * 3 + 1
    labels = (rng.random(scores.size) < 1 / (1 + np.exp(-(0.8 * scores - 0.5)))).astype(float)
    cal = pointwise.Platt.fit(scores, labels)
    assert cal.a == pytest.approx(0.8, abs=0.05) and cal.b == pytest.approx(-0.5, abs=0.05)
    assert log_loss(labels, cal(scores)) < log_loss(labels, np.full(scores.size, labels.mean()))


def test_pair_metrics_reports_auc_and_log_loss_over_all_pairs(data):
    train, test = splits.stratified(data.interactions, 0.75, seed=42)
    fit, valid = splits.validation(train)
    items = data.items[ITEM]
    model = EASE(device="cpu").fit(fit)
    cal_pairs = pointwise.sample_pairs(valid, fit, items, seed=0)
    cal_pairs = cal_pairs[cal_pairs[ITEM].isin(model.items.ids_)]
    cal = pointwise.Platt.fit(pointwise.pair_scores(model, cal_pairs), cal_pairs["label"])
    model.fit(train)
    pairs = pointwise.sample_pairs(test, train, items, seed=1)
    ease = pointwise.pair_metrics(model, pairs, cal)
    pop = Popularity().fit(train)
    pop_pairs = pointwise.sample_pairs(valid, fit, items, seed=0)
    pop_cal = pointwise.Platt.fit(
        pointwise.pair_scores(pop.fit(fit), pop_pairs[pop_pairs[ITEM].isin(pop.items.ids_)]),
        pop_pairs[pop_pairs[ITEM].isin(pop.items.ids_)]["label"],
    )
    popular = pointwise.pair_metrics(pop.fit(train), pairs, pop_cal)
    assert 0.5 < popular["roc_auc"] < ease["roc_auc"] <= 1.0
    assert ease["log_loss"] < np.log(2) and ease["pairs"] <= len(pairs)


def test_compare_calibrates_on_validation_and_scores_the_same_test_pairs(data):
    train, test = splits.stratified(data.interactions, 0.75, seed=42)
    fit, valid = splits.validation(train)
    fitters = {"EASE": lambda df: EASE(device="cpu").fit(df), "Popularity": lambda df: Popularity().fit(df)}
    table = pointwise.compare(fitters, fit=fit, valid=valid, train=train, test=test, items=data.items[ITEM])
    assert table.index.tolist() == ["EASE", "Popularity"] and table.index.name == "model"
    assert list(table.columns) == ["roc_auc", "log_loss", "pairs"]
    assert 0.5 < table.loc["Popularity", "roc_auc"] < table.loc["EASE", "roc_auc"] <= 1.0
    assert (table["log_loss"] < np.log(2)).all()
