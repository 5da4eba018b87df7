"""``retrieved_ndcg``: nDCG@k when an embedding model (iALS, the two-tower) recommends
through an index. Known answer: through exact search it is the model's own nDCG@k
(its ``recommend``, which scores every item); a coarse approximate index loses recall
against exact and its ``ndcg_vs_exact`` is its nDCG over exact's."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data import datasets, splits
from workbench.data.schema import USER
from workbench.evaluation.retrieval import retrieved_ndcg
from workbench.metrics import ndcg_at_k
from workbench.models import IALS, TwoTower, TwoTowerConfig
from workbench.models.text.encoder import load_encoder
from workbench.retrieval import IndexConfig
from workbench.retrieval.faiss_index import default_nlist

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SETTINGS = [IndexConfig(backend="exact"), IndexConfig(backend="ivf", nlist=32, nprobe=1)]


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", size="tiny", seed=0)


@pytest.fixture(scope="module")
def split(data):
    return splits.stratified(data.interactions, ratio=0.75, seed=42)


def own_ndcg(model, test, k: int = 10) -> float:
    users = np.unique(test[USER].to_numpy())
    users = users[model.users.contains(users)]
    return ndcg_at_k(model.recommend(users, k=k), test, k=k)


def check(table, model, test, name: str) -> None:
    exact, coarse = table.iloc[0], table.iloc[1]
    assert list(table.model) == [name, name]
    assert exact.setting == "exact" and exact.recall_vs_exact == 1.0 and exact.ndcg_vs_exact == 1.0
    assert exact["ndcg@10"] == pytest.approx(own_ndcg(model, test), abs=1e-6)  # exact search = the model's ranking
    assert coarse.setting == "ivf nlist=32 nprobe=1" and coarse.recall_vs_exact < 0.9
    assert coarse.ndcg_vs_exact == pytest.approx(coarse["ndcg@10"] / exact["ndcg@10"])


def test_ials_through_exact_search_scores_its_own_ndcg(split):
    train, test = split
    model = IALS(factors=16, epochs=5, device="cpu", seed=0).fit(train)
    check(retrieved_ndcg(model, test, SETTINGS), model, test, "IALS")
    default = retrieved_ndcg(model, test, [IndexConfig(backend="ivf", nprobe=2)])  # the label names the nlist used
    assert default.setting[0] == f"ivf nlist={default_nlist(len(model.items))} nprobe=2"


def test_the_two_tower_through_an_index(data, split, tiny_encoder_path):
    train, test = split
    config = TwoTowerConfig(freeze=1, epochs=1, batch_size=32, device="cpu", learning_rate=1e-3)
    model = TwoTower(data.items, encoder=load_encoder(tiny_encoder_path, device="cpu"), config=config).fit(train)
    check(retrieved_ndcg(model, test, SETTINGS, name="two-tower"), model, test, "two-tower")
