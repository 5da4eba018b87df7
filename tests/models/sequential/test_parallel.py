"""Fitting sequential models side by side, one process each: the same models as fitting
them here, and a failure in a process is an error naming the model."""

from __future__ import annotations

import multiprocessing

import pytest
import torch

from workbench.data.splits import leave_one_out
from workbench.data.synthetic import SyntheticConfig, generate
from workbench.models import EASE, BERT4Rec, SASRec
from workbench.models.sequential.parallel import FitFailed, fit_side_by_side

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(embedding_size=16, layers=1, heads=1, max_length=12, epochs=2, batch_size=32, seed=0, device="cpu")


@pytest.fixture(scope="module")
def split():
    return leave_one_out(generate(SyntheticConfig(n_users=120, n_items=80, mean_per_user=30.0, seed=3))[0])


def unfitted() -> dict:
    return {"SASRec": SASRec(**TINY), "BERT4Rec": BERT4Rec(mask_probability=0.3, **TINY)}


def test_side_by_side_fits_the_same_models_as_fitting_here(split):
    both = fit_side_by_side(unfitted(), split.train, validation=split.valid, processes=2, progress=False)
    here = {name: m.fit(split.train, validation=split.valid) for name, m in unfitted().items()}
    assert list(both) == ["SASRec", "BERT4Rec"]
    users = [0, 1, 2, 3]
    for name, model in both.items():
        assert type(model) is type(here[name])
        assert model.result_.curves.valid_score.tolist() == here[name].result_.curves.valid_score.tolist()
        assert model.result_.best_epoch == here[name].result_.best_epoch
        assert torch.equal(model.score(users), here[name].score(users))  # the same weights, bit for bit
        assert len(model.recommend_histories([[int(model.items.ids_[0])]], k=5)) == 5


def test_a_failing_fit_names_its_model_and_stops_the_others(split):
    no_time = split.train.drop(columns="timestamp")
    with pytest.raises(FitFailed, match=r"(?s)fitting (SASRec|BERT4Rec) failed in its process.*timestamp"):
        fit_side_by_side(unfitted(), no_time, validation=split.valid, processes=2, progress=False)
    assert multiprocessing.active_children() == []  # the other model's process is stopped, not left running


def test_one_process_fits_here_and_bad_arguments_are_errors(split):
    fitted = fit_side_by_side({"SASRec": SASRec(**TINY)}, split.train, processes=1, progress=False)
    assert fitted["SASRec"].result_.best_epoch == 2  # no validation: the last epoch is kept
    assert fit_side_by_side({}, split.train) == {}
    with pytest.raises(ValueError, match="processes must be >= 1, got 0"):
        fit_side_by_side(unfitted(), split.train, processes=0)
    with pytest.raises(TypeError, match=r"fits sequential models .* got \['EASE'\]"):
        fit_side_by_side({"EASE": EASE()}, split.train)


def test_on_epoch_sees_each_epoch_as_it_ends(split):
    rows = []
    model = SASRec(**TINY).fit(split.train, validation=split.valid, on_epoch=rows.append)
    assert [row["epoch"] for row in rows] == [1, 2] and all(row["epochs"] == 2 for row in rows)
    assert rows[-1]["best_score"] == model.result_.best_score
    assert [row["valid_score"] for row in rows] == model.result_.curves.valid_score.tolist()
