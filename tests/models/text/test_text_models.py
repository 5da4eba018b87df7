"""Text recommenders: FrozenText and the fine-tuned TwoTower.

Behaviour runs on a tiny random BERT (fast); the quality floors run the real
all-MiniLM-L6-v2 on the tiny synthetic data set, whose titles carry signal by
construction: fine-tuned beats frozen, and text beats genre popularity on cold items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data import datasets, splits
from workbench.data.schema import ITEM, RANK, USER
from workbench.devices import BatchTooLargeError
from workbench.evaluation.topk import compare
from workbench.models import GenrePopularity
from workbench.models.text import encoder as text
from workbench.models.text import two_tower
from workbench.models.text.frozen import FrozenText
from workbench.models.text.two_tower import TwoTower, TwoTowerConfig
from workbench.models.training import CURVE_COLUMNS
from workbench.models.validation import topk_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return datasets.load("synthetic", size="tiny", seed=0)


@pytest.fixture(scope="module")
def split(data):
    train, test = splits.stratified(data.interactions, 0.75, seed=42)
    fit, valid = splits.validation(train)
    return train, test, fit, valid


@pytest.fixture(scope="module")
def tiny(tiny_encoder_path):
    return text.load_encoder(tiny_encoder_path, device="cpu")


@pytest.fixture(scope="module")
def minilm():
    return text.load_encoder(device="cpu")


def tiny_config(**overrides) -> TwoTowerConfig:
    options = dict(freeze=1, epochs=2, batch_size=32, device="cpu", learning_rate=1e-3)
    return TwoTowerConfig(**{**options, **overrides})


# -- FrozenText ---------------------------------------------------------------------------


def test_frozen_text_scores_the_whole_catalogue_including_unseen_items(data, split, tiny):
    _, _, fit, _ = split
    some = fit[fit[ITEM] <= 200]  # items 201..300 have no interactions at all
    model = FrozenText(data.items, encoder=tiny).fit(some, progress=False)
    assert len(model.items) == len(data.items) and model.score(np.arange(3)).shape == (3, len(data.items))
    recs = model.recommend(model.users.ids_[:5], k=10)
    assert recs.groupby(USER)[RANK].max().eq(10).all()
    assert (recs[ITEM] > 200).any()  # cold items are candidates
    seen = set(zip(some[USER], some[ITEM]))
    assert not any((u, i) in seen for u, i in zip(recs[USER], recs[ITEM]))


def test_frozen_profile_is_the_mean_of_history_embeddings(data, split, tiny):
    _, _, fit, _ = split
    model = FrozenText(data.items, encoder=tiny).fit(fit, progress=False)
    user = 0
    history = model.seen[user].indices
    expected = torch.nn.functional.normalize(model.item_vectors_[history].mean(0), dim=0)
    torch.testing.assert_close(model.user_vectors(np.array([user]))[0], expected, atol=1e-5, rtol=1e-4)
    sims = model.similar_items([1], k=3)
    assert 1 not in sims["similar_item_id"].tolist()


def test_fold_in_replaces_histories_without_touching_item_vectors(data, split, tiny):
    train, _, fit, _ = split
    model = FrozenText(data.items, encoder=tiny).fit(fit, progress=False)
    vectors = model.item_vectors_
    model.fold_in(train)
    assert model.item_vectors_ is vectors and model.seen.nnz == len(train)


def test_unknown_items_in_interactions_are_an_error(data, tiny):
    bad = pd.DataFrame({USER: [1], ITEM: [99_999]})
    with pytest.raises(KeyError, match="unknown item"):
        FrozenText(data.items, encoder=tiny).fit(bad, progress=False)


def test_neighbour_titles_read_like_a_table():
    """Was ``workbench.text.neighbour_titles``; the notebooks now use
    ``workbench.plots.neighbours.similar_titles`` (rows (query, rank), a column per model)."""
    from workbench.data.matrix import IndexMap
    from workbench.plots.neighbours import similar_titles

    class Similar:  # a fitted model's similar_items, given up front
        items = IndexMap.from_ids([1, 2, 3])

        def similar_items(self, item_ids, k):
            assert list(item_ids) == [1] and k == 2
            return pd.DataFrame({"item_id": [1, 1], "similar_item_id": [3, 2], "score": [0.9, 0.5], "rank": [1, 2]})

    titles = pd.Series({1: "A", 2: "B", 3: "C"})
    out = similar_titles({"nearest by text": Similar()}, [1], titles, k=2)
    assert out.to_dict() == {"nearest by text": {("A", 1): "C", ("A", 2): "B"}}


# -- TwoTower behaviour (tiny random encoder) ----------------------------------------------


@pytest.fixture(scope="module")
def trained(data, split, tiny):
    _, _, fit, valid = split
    torch.manual_seed(0)
    return TwoTower(data.items, encoder=tiny, config=tiny_config(epochs=3)).fit(fit, validation=valid, progress=False)


def test_history_records_loss_validation_and_cost_per_epoch(trained):
    h = trained.result_.curves
    assert h["epoch"].tolist() == [0, 1, 2, 3]
    assert list(h.columns) == [*CURVE_COLUMNS, "tokens", "tokens_per_s"]
    assert {"train_loss", "valid_score", "seconds", "train_seconds", "tokens", "tokens_per_s", "peak_memory_mb"} <= set(
        h
    )
    assert (h["tokens"][1:] > 0).all() and (h["tokens_per_s"][1:] > 0).all() and (h["peak_memory_mb"] > 0).all()
    assert h["seconds"].is_monotonic_increasing and (h["seconds"][1:] >= h["train_seconds"][1:].cumsum()).all()
    assert trained.result_.best_epoch == int(h["valid_score"].idxmax())
    assert not hasattr(trained, "history_") and not hasattr(trained, "best_epoch_")


def test_epoch_zero_is_the_frozen_baseline(data, split, tiny, trained):
    _, _, fit, valid = split
    frozen = FrozenText(data.items, encoder=tiny).fit(fit, progress=False)
    expected = topk_metrics(frozen, valid)["ndcg"]
    assert trained.result_.curves.loc[0, "valid_score"] == pytest.approx(expected, abs=1e-6)


def test_best_epoch_weights_are_kept(data, split, trained):
    _, _, _, valid = split
    best = trained.result_.curves["valid_score"].max()
    assert topk_metrics(trained, valid)["ndcg"] == pytest.approx(best, abs=1e-6)


def test_patience_stops_after_epochs_without_improvement(data, split, tiny, monkeypatch):
    _, _, fit, valid = split
    scores = iter([0.5, 0.4, 0.3, 0.6, 0.7])
    monkeypatch.setattr(two_tower, "topk_metrics", lambda *args, **kwargs: {"ndcg": next(scores)})
    m = TwoTower(data.items, encoder=tiny, config=tiny_config(epochs=4, patience=2))
    m.fit(fit, validation=valid, progress=False)
    assert m.result_.curves["epoch"].tolist() == [0, 1, 2] and m.result_.best_epoch == 0


def test_save_and_load_round_trip_with_safetensors(trained, tiny, tmp_path):
    folder = trained.save(tmp_path / "tt")
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    loaded = TwoTower.load(folder, encoder=tiny)
    rows = np.arange(5)
    torch.testing.assert_close(loaded.score(rows), trained.score(rows))
    pd.testing.assert_frame_equal(loaded.recommend([1, 2], k=5), trained.recommend([1, 2], k=5))
    for name, value in trained.network_.state_dict().items():
        torch.testing.assert_close(loaded.network_.state_dict()[name], value)
    scoring_only = TwoTower.load(folder)
    torch.testing.assert_close(scoring_only.score(rows), trained.score(rows))
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        TwoTower.load(tmp_path)


def test_caching_frozen_layers_changes_cost_not_results(data, split, tiny):
    _, _, fit, _ = split
    runs = {}
    for cached in (True, False):
        torch.manual_seed(0)
        m = TwoTower(data.items, encoder=tiny, config=tiny_config(epochs=1, cache_frozen=cached))
        runs[cached] = m.fit(fit, progress=False)
    np.testing.assert_allclose(
        runs[True].result_.curves["train_loss"], runs[False].result_.curves["train_loss"], rtol=1e-4
    )
    torch.testing.assert_close(runs[True].item_vectors_, runs[False].item_vectors_, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(
    "options", [dict(loss="bce", negatives=4), dict(freeze=0), dict(embedding_size=16), dict(precision="bf16")]
)
def test_variants_train(data, split, tiny, options):
    _, _, fit, _ = split
    m = TwoTower(data.items, encoder=tiny, config=tiny_config(epochs=1, **options)).fit(fit, progress=False)
    assert m.result_.curves["epoch"].tolist() == [1]  # no validation set: no epoch-0 row
    assert np.isfinite(m.result_.curves["train_loss"][0]) and m.item_vectors_.shape[0] == len(data.items)


def test_out_of_memory_while_training_names_a_smaller_batch(data, split, tiny, monkeypatch):
    real = two_tower._Network.items

    def boom_when(training: bool):
        def items(self, *args):
            if self.training == training:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB")
            return real(self, *args)

        return items

    for training, what in ((True, "training TwoTower"), (False, "embedding the catalogue")):
        monkeypatch.setattr(two_tower._Network, "items", boom_when(training))
        with pytest.raises(BatchTooLargeError, match=f"{what} with batch_size=32.*try batch_size=16"):
            TwoTower(data.items, encoder=tiny, config=tiny_config()).fit(split[2], progress=False)


def test_bad_options_are_rejected(data, tiny):
    with pytest.raises(ValueError, match="loss"):
        TwoTowerConfig(loss="hinge")
    with pytest.raises(ValueError, match="freeze=3"):
        TwoTower(data.items, encoder=tiny, config=tiny_config(freeze=3)).fit(data.interactions, progress=False)


# -- quality floors (real all-MiniLM-L6-v2, tiny synthetic data) -----------------------------


def test_pretrained_text_knows_related_titles(minilm):
    v = torch.nn.functional.normalize(
        text.embed_texts(
            minilm,
            [
                "Star Wars (1977). Genres: Action, Adventure, Sci-Fi.",
                "Star Trek: First Contact (1996). Genres: Action, Adventure, Sci-Fi.",
                "Sense and Sensibility (1995). Genres: Drama, Romance.",
            ],
            progress=False,
        ),
        dim=1,
    )
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1


def test_floor_fine_tuned_beats_frozen(data, split, minilm):
    train, test, fit, valid = split
    frozen = FrozenText(data.items, encoder=minilm).fit(train, progress=False)
    config = TwoTowerConfig(freeze=5, epochs=4, batch_size=32, device="cpu")
    tuned = (
        TwoTower(data.items, encoder=minilm, config=config).fit(fit, validation=valid, progress=False).fold_in(train)
    )
    before, after = topk_metrics(frozen, test)["ndcg"], topk_metrics(tuned, test)["ndcg"]
    assert after > 1.3 * before, (before, after)


def test_floor_text_beats_genre_popularity_on_cold_items(data, minilm):
    cold = splits.cold_split(data.interactions, 0.1, seed=0)
    text_model = FrozenText(data.items, encoder=minilm).fit(cold.train, progress=False)
    genre = GenrePopularity(data.items).fit(cold.train)
    table = compare({"text": text_model, "genre": genre}, cold.test, candidates=cold.cold_items)
    assert table.loc["text", "ndcg@10"] > 1.2 * table.loc["genre", "ndcg@10"], table
