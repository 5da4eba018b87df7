"""One contract for both sequential transformers (BERT4Rec, SASRec): they learn planted
sequential structure, round-trip through checkpoints, and handle bad input as documented."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data.matrix import IndexMap, UnknownIdError
from workbench.data.sequences import histories
from workbench.data.splits import leave_one_out
from workbench.evaluation.next_item import history_scorer, metrics_from_ranks, rank_held_out, user_scorer
from workbench.models import BERT4Rec, BERT4RecConfig, Popularity, SASRec, SASRecConfig
from workbench.models.sequential.base import SequentialConfig
from workbench.models.training import learning_rate_factor

TINY = dict(
    embedding_size=32,
    layers=1,
    heads=2,
    max_length=12,
    dropout=0.1,
    batch_size=32,
    learning_rate=5e-3,
    warmup_steps=10,
    patience=100,
    device="cpu",
    seed=0,
)
MODELS = {
    "sasrec": lambda: SASRec(config=SASRecConfig(epochs=8, **TINY)),
    "bert4rec": lambda: BERT4Rec(config=BERT4RecConfig(epochs=25, mask_probability=0.3, **TINY)),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def chains(n_users: int = 200, n_items: int = 60, n_chains: int = 3, seed: int = 0) -> pd.DataFrame:
    """Items 1..n_items in ``n_chains`` cycles; each user walks one cycle from a random
    start, so the next item is fully determined by the last one and popularity is flat."""
    rng = np.random.default_rng(seed)
    size = n_items // n_chains
    rows = []
    for user in range(1, n_users + 1):
        chain, start, length = rng.integers(n_chains), rng.integers(size), rng.integers(8, 20)
        for t in range(length):
            rows.append((user, chain * size + (start + t) % size + 1, 4.0, 1000 + t))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture(scope="module")
def data():
    inter = chains()
    return inter, leave_one_out(inter)


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, data):
    _, split = data
    return MODELS[request.param]().fit(split.train, validation=split.valid)


def test_learns_the_planted_order_far_better_than_popularity(fitted, data):
    _, split = data
    h, catalogue = histories(split.history), IndexMap.from_ids(split.history.item_id)
    model = metrics_from_ranks(rank_held_out(history_scorer(fitted, h, catalogue), split.test, h, catalogue))
    pop = metrics_from_ranks(
        rank_held_out(user_scorer(Popularity().fit(split.history), catalogue), split.test, h, catalogue)
    )
    assert pop["ndcg@10"] < 0.3
    assert model["ndcg@10"] > pop["ndcg@10"] + 0.3, (model, pop)
    curves = fitted.result_.curves
    assert curves["train_loss"].iloc[-1] < curves["train_loss"].iloc[0]
    assert fitted.result_.best_score == curves["valid_score"].max()


def test_bf16_training_learns_the_planted_order_as_well_as_fp32(fitted, data, tmp_path):
    _, split = data
    config = type(fitted.config)(**{**vars(fitted.config), "precision": "bf16"})
    half = type(fitted)(config=config).fit(split.train, validation=split.valid)
    h, catalogue = histories(split.history), IndexMap.from_ids(split.history.item_id)
    ndcg = {
        name: metrics_from_ranks(rank_held_out(history_scorer(m, h, catalogue), split.test, h, catalogue))["ndcg@10"]
        for name, m in (("fp32", fitted), ("bf16", half))
    }
    assert ndcg["bf16"] > ndcg["fp32"] - 0.05, ndcg
    assert not torch.equal(half.score([0]), fitted.score([0]))  # it did train at another precision
    back = type(half).load(half.save(tmp_path / "bf16"))
    assert back.config.precision == "bf16" and torch.equal(back.score([0, 1]), half.score([0, 1]))


def test_checkpoint_roundtrip_gives_identical_scores(fitted, tmp_path):
    path = fitted.save(tmp_path / "ckpt")
    back = type(fitted).load(path)
    assert back.config == fitted.config and back.result_.best_epoch == fitted.result_.best_epoch
    pd.testing.assert_frame_equal(back.result_.curves, fitted.result_.curves, check_dtype=False)
    histories_ = [[1, 2, 3], [40, 41], []]
    assert torch.equal(back.score_histories(histories_), fitted.score_histories(histories_))
    users = np.arange(len(fitted.users))
    assert torch.equal(back.score(users), fitted.score(users))
    pd.testing.assert_frame_equal(back.recommend([1, 2], k=5), fitted.recommend([1, 2], k=5))
    other = SASRec if isinstance(fitted, BERT4Rec) else BERT4Rec
    with pytest.raises(ValueError, match="checkpoint"):
        other.load(path)


def test_score_shapes_and_history_equals_user_scores(fitted, data):
    _, split = data
    rows = np.array([0, 5])
    scores = fitted.score(rows)
    assert scores.shape == (2, len(fitted.items)) and scores.dtype == torch.float32
    ordered = split.train.sort_values("timestamp")
    own = [ordered.loc[ordered.user_id == u, "item_id"].tolist() for u in fitted.users.ids(rows)]
    torch.testing.assert_close(fitted.score_histories(own), scores)


def test_batch_padding_does_not_change_scores(fitted):
    alone = fitted.score_histories([[1, 2]])
    batched = fitted.score_histories([[1, 2], list(range(21, 41))])  # padded to the longer one
    torch.testing.assert_close(batched[:1], alone, rtol=1e-4, atol=1e-5)


def test_recommend_histories_excludes_the_history_and_ranks_from_one(fitted):
    recs = fitted.recommend_histories([list(range(5, 12)), [41, 42]], k=5, ids=[7, 8])
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    assert recs.groupby("user_id")["rank"].apply(list).to_dict() == {7: [1, 2, 3, 4, 5], 8: [1, 2, 3, 4, 5]}
    assert not set(recs.loc[recs.user_id == 7, "item_id"]) & set(range(5, 12))
    assert 12 in recs.loc[recs.user_id == 7, "item_id"].iloc[:3].tolist()  # the chain continues
    kept = fitted.recommend_histories([[1, 2, 3]], k=5, exclude_seen=False)
    assert len(kept) == 5


def test_long_histories_keep_the_most_recent_items(fitted):
    recent = list(range(21, 21 + fitted.context_length))
    older = list(range(1, 20))
    torch.testing.assert_close(
        fitted.score_histories([older + recent]), fitted.score_histories([recent]), rtol=1e-4, atol=1e-5
    )
    assert not torch.allclose(fitted.score_histories([older[-5:]]), fitted.score_histories([recent]))
    recs = fitted.recommend_histories([older + recent], k=10)
    assert not set(recs.item_id) & set(older + recent)  # the whole history is excluded


def test_empty_history_gets_training_popularity(fitted):
    scores = fitted.score_histories([[]])
    torch.testing.assert_close(scores[0].cpu(), fitted.popularity_)
    assert len(fitted.recommend_histories([[]], k=3)) == 3


def test_unknown_ids_raise_or_are_skipped(fitted):
    with pytest.raises(UnknownIdError, match="999"):
        fitted.score_histories([[1, 999]])
    torch.testing.assert_close(fitted.score_histories([[1, 999, 2]], unknown="skip"), fitted.score_histories([[1, 2]]))
    with pytest.raises(ValueError, match="unknown must be"):
        fitted.score_histories([[1]], unknown="ignore")
    with pytest.raises(UnknownIdError):
        fitted.recommend([123456])


def test_k_larger_than_the_catalogue_is_an_error(fitted):
    with pytest.raises(ValueError, match="larger than the catalogue"):
        fitted.recommend_histories([[1]], k=len(fitted.items) + 1)
    with pytest.raises(ValueError, match="positive"):
        fitted.recommend_histories([[1]], k=0)


def test_config_type_is_checked_and_unfitted_use_fails():
    with pytest.raises(TypeError, match="SASRecConfig"):
        SASRec(config=BERT4RecConfig())
    with pytest.raises(RuntimeError, match="not fitted"):
        BERT4Rec().score_histories([[1]])


def test_attention_covers_the_items_read_in_every_layer(fitted):
    history = list(range(1, 30))
    frame = fitted.attention(history)
    n = fitted.context_length
    assert len(frame) == fitted.config.layers * n
    assert frame.loc[frame.steps_back == 0, "item_id"].unique().tolist() == [29]
    assert frame.groupby("layer")["weight"].sum().between(0.0, 1.0 + 1e-5).all()
    assert fitted.network.bert.config._attn_implementation == "sdpa"  # switched back
    with pytest.raises(ValueError, match="no item"):
        fitted.attention([])


def test_similar_items_come_from_the_item_embeddings(fitted):
    sims = fitted.similar_items([1, 2], k=3)
    assert sims.groupby("item_id").size().to_dict() == {1: 3, 2: 3}
    assert not (sims["item_id"] == sims["similar_item_id"]).any()
    assert sims["score"].between(-1.0 - 1e-5, 1.0 + 1e-5).all()


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(embedding_size=30, heads=4), "divisible"),
        (dict(max_length=0), "max_length"),
        (dict(dropout=1.0), "dropout"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(epochs=2.5), "epochs"),
        (dict(schedule="cosine"), "schedule"),
        (dict(schedule="linear", decay_steps=10), "decay_steps"),
    ],
)
def test_sequential_config_rejects_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        SequentialConfig(**options)
    with pytest.raises(TypeError):
        SequentialConfig(64)  # keyword-only


def test_linear_schedule_decays_to_zero_at_the_end_of_the_last_epoch(data, tmp_path):
    _, split = data
    config = SASRecConfig(**{**TINY, "warmup_steps": 2}, epochs=2, schedule="linear")
    model = SASRec(config=config).fit(split.train)
    steps = 2 * math.ceil(len(model.training_windows()) / TINY["batch_size"])
    options = model._loop_options()
    assert options.decay_steps == steps and SASRecConfig(**TINY).decay_steps is None
    factor = learning_rate_factor(options)
    assert factor(1) == 1.0 and 0 < factor(steps - 1) < factor(steps // 2) < 1.0 and factor(steps) == 0.0
    back = SASRec.load(model.save(tmp_path / "linear"))
    assert back.config.schedule == "linear"
