"""SASRec specifics: causal attention, tied output layer, and learning the synthetic data set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.data import synthetic
from workbench.data.matrix import IndexMap
from workbench.data.sequences import histories
from workbench.data.splits import leave_one_out
from workbench.evaluation.next_item import history_scorer, metrics_from_ranks, rank_held_out, user_scorer
from workbench.models import Popularity, SASRec, SASRecConfig
from workbench.models.sequential.sasrec import SASRecNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def network(n_items: int = 20, **options) -> SASRecNetwork:
    torch.manual_seed(0)
    net = SASRecNetwork(n_items, SASRecConfig(embedding_size=16, heads=2, layers=2, max_length=8, **options))
    return net.eval()


def test_a_position_never_sees_later_items():
    net = network()
    tokens = torch.tensor([[3, 5, 7, 9, 11]])
    changed = tokens.clone()
    changed[0, 3:] = torch.tensor([2, 4])
    with torch.inference_mode():
        a, b = net.hidden(tokens), net.hidden(changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_output_layer_is_the_item_embedding_matrix():
    net = network()
    names = {name for name, _ in net.named_parameters()}
    assert not any("decoder" in n or "head" in n for n in names)
    hidden = torch.randn(4, 16)
    expected = hidden @ net.bert.embeddings.word_embeddings.weight[1:].T
    torch.testing.assert_close(net.logits(hidden), expected)
    assert net.logits(hidden).shape == (4, 20)


def test_training_batches_shift_labels_by_one():
    model = SASRec(config=SASRecConfig(max_length=4, batch_size=8, device="cpu"))
    model.sequences_ = [np.array([0, 1, 2, 3, 4, 5]), np.array([7, 8])]
    model.device_ = torch.device("cpu")
    (batch,) = list(model._batches(np.random.default_rng(0)))
    pairs = {tuple(t.tolist()): tuple(label.tolist()) for t, label in zip(batch["tokens"], batch["labels"])}
    # windows of 5 items, overlap 1: [1..5] and [0, 1], and [7, 8]; a token is index + 1, its
    # label the next item's index (so equal numbers), -1 on padding
    assert pairs == {(2, 3, 4, 5): (2, 3, 4, 5), (1, 0, 0, 0): (1, -1, -1, -1), (8, 0, 0, 0): (8, -1, -1, -1)}


def test_learns_the_synthetic_generators_order_better_than_popularity():
    inter, _, _ = synthetic.generate(synthetic.config_for("tiny", seed=0))
    split = leave_one_out(inter)
    model = SASRec(
        config=SASRecConfig(
            embedding_size=32,
            layers=1,
            max_length=32,
            epochs=10,
            batch_size=32,
            learning_rate=3e-3,
            warmup_steps=10,
            device="cpu",
        )
    ).fit(split.train, validation=split.valid)
    h, catalogue = histories(split.history), IndexMap.from_ids(split.history.item_id)
    ours = metrics_from_ranks(rank_held_out(history_scorer(model, h, catalogue), split.test, h, catalogue))["ndcg@10"]
    pop = metrics_from_ranks(
        rank_held_out(user_scorer(Popularity().fit(split.history), catalogue), split.test, h, catalogue)
    )["ndcg@10"]
    assert ours > 1.2 * pop, (ours, pop)
