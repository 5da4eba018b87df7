"""How a fitted model scores itself on held-out interactions (``topk_metrics``): known
answers on a stub model, among candidates or the whole catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.schema import ITEM, USER
from workbench.models.validation import topk_metrics


@pytest.fixture
def model(fixed_model):
    """The known-answer stub of tests/models/conftest.py."""
    return fixed_model


def test_metrics_among_candidates_known_answer(model):
    test = pd.DataFrame({USER: [1, 2, 2], ITEM: [14, 13, 10]})  # (2, 10) is not a candidate: ignored
    m = topk_metrics(model, test, k=2, candidates=[12, 13, 14])
    # user 1: hit at rank 2 -> ndcg 1/log2(3); user 2: hit at rank 2 of one relevant -> same
    assert m["users"] == 2 and m["ndcg"] == pytest.approx(1 / np.log2(3))
    assert m["recall"] == pytest.approx(1.0) and m["precision"] == pytest.approx(0.5)


def test_whole_catalogue_skips_unknown_users_and_excludes_seen_items(model):
    test = pd.DataFrame({USER: [1, 9], ITEM: [13, 13]})  # user 9 is unknown to the model: skipped
    m = topk_metrics(model, test, k=1)
    assert m["users"] == 1 and m["ndcg"] == pytest.approx(1.0)  # 10 (score 9) is seen, 13 comes first
    assert topk_metrics(model, test, k=50)["users"] == 1  # k is capped at the catalogue
    with pytest.raises(ValueError, match="no test user is known"):
        topk_metrics(model, pd.DataFrame({USER: [9], ITEM: [13]}))
