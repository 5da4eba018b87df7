"""Quality floors of the default (tuned) models.

Fast: on the tiny synthetic data set every model beats popularity. Slow: on the real
ml-100k under the Microsoft Recommenders protocol (per-user stratified 75/25 split with
seed 42, all ratings positive, top 10 with training items excluded) the defaults reach
the issue's targets. The floors sit a little under the measured values
(EASE 0.486, IALS 0.486, Blend 0.492, ItemKNN 0.445, BPR 0.434 nDCG@10 on CPU), so a
change that loses quality fails while run-to-run noise does not.
"""

from __future__ import annotations

import pytest

from workbench.data import datasets, splits
from workbench.evaluation.topk import fit_and_score
from workbench.models import BPR, EASE, IALS, Blend, ItemKNN, Popularity

SAR_NDCG = 0.382  # Microsoft Recommenders' published SAR on this protocol
FLOORS = {"EASE": 0.47, "IALS": 0.47, "Blend": 0.48, "ItemKNN": 0.43, "BPR": 0.42}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def defaults(device: str) -> dict:
    return {
        "ItemKNN": ItemKNN(),
        "EASE": EASE(device=device),
        "IALS": IALS(device=device),
        "BPR": BPR(device=device),
        "Blend": Blend(models=(EASE(device=device), IALS(device=device))),
    }


@pytest.fixture(scope="module")
def tiny_split():
    data = datasets.load("synthetic", size="tiny", seed=0)
    return splits.stratified(data.interactions, 0.75, seed=42)


@pytest.fixture(scope="module")
def popularity_ndcg(tiny_split):
    return fit_and_score(Popularity(), *tiny_split)["ndcg"]


@pytest.mark.parametrize("name", list(defaults("cpu")))
def test_every_default_beats_popularity_on_synthetic(name, tiny_split, popularity_ndcg):
    ndcg = fit_and_score(defaults("cpu")[name], *tiny_split)["ndcg"]
    assert ndcg > popularity_ndcg + 0.05, f"{name}: {ndcg:.3f} vs popularity {popularity_ndcg:.3f}"


@pytest.mark.slow
def test_ml100k_floors(shared_ml100k):
    data = datasets.load("ml-100k", path=shared_ml100k)
    train, test = splits.stratified(data.interactions, 0.75, seed=42)
    ndcg = {name: fit_and_score(model, train, test)["ndcg"] for name, model in defaults("cpu").items()}
    for name, floor in FLOORS.items():
        assert ndcg[name] >= floor, f"{name}: nDCG@10 {ndcg[name]:.4f} < {floor}"
    assert max(ndcg.values()) >= 0.48
    assert ndcg["ItemKNN"] > SAR_NDCG
