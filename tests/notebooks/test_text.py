"""Notebook 03 (BERT fine-tuning): its parameters, and -- marked slow -- the default
configuration on the real ml-100k, whose recorded results must exist and beat popularity.

The smoke run of every notebook is tests/test_notebooks.py's job; it is not repeated here.
"""

from __future__ import annotations

from pathlib import Path

import papermill as pm
import pytest

from workbench.runs.executor import execute
from workbench.runs.records import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "03_bert_finetuning.ipynb"
SHARED_ML100K = REPO_ROOT.parent / "shared" / "data" / "ml-100k"


def test_parameters_cover_the_encoder_and_fine_tuning():
    declared = pm.inspect_notebook(str(NOTEBOOK))
    for name in (
        "encoder",
        "max_length",
        "freeze",
        "epochs",
        "batch_size",
        "learning_rate",
        "device",
        "dataset",
        "data_path",
        "seed",
    ):
        assert name in declared, name
    assert declared["encoder"]["default"] == "None"  # the offline all-MiniLM-L6-v2
    assert declared["dataset"]["default"] == '"ml-100k"'


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_ML100K / "u.data").is_file(), reason="../shared/data/ml-100k is absent")
def test_default_configuration_on_ml100k(tmp_path: Path):
    rec = execute(NOTEBOOK, tmp_path, {"dataset": "ml-100k", "data_path": str(SHARED_ML100K)})
    assert rec.status == "ok", rec.error
    assert rec.context["smoke"] is False and rec.context["dataset"] == "ml-100k"
    r = rec.results
    for name in (
        "encoder",
        "training_history",
        "fine_tuning_cost",
        "warm",
        "pointwise",
        "cold",
        "neighbours",
        "summary",
    ):
        assert name in r, name
    assert {"loss_curves", "embedding_map_fine_tuned", "loss_curves_cold"} <= set(rec.figures)
    warm = r["warm"].set_index("model")["ndcg@10"]
    cold = r["cold"].set_index("model")["ndcg@10"]
    auc = r["pointwise"].set_index("model")["roc_auc"]
    assert warm["Two-tower (fine-tuned)"] > warm["Popularity"] and warm["EASE"] > warm["Popularity"]
    assert warm["Two-tower (fine-tuned)"] > warm["Frozen text"]
    assert warm["Hybrid (EASE + two-tower)"] >= 0.98 * warm["EASE"]
    assert cold["Two-tower (fine-tuned)"] > cold["Genre popularity"]
    assert cold["Hybrid (EASE via text + two-tower)"] > cold["Genre popularity"]
    assert auc["Two-tower (fine-tuned)"] > auc["Frozen text"] and auc["EASE"] > auc["Popularity"]
    cost = r["fine_tuning_cost"]
    assert cost["seconds_per_epoch"] > 0 and cost["tokens_per_s"] > 0 and cost["peak_memory_mb"] > 0
    assert rec.wall_time_s < 15 * 60
