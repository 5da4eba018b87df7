"""Notebook 04 on the real ml-100k: the issue's targets, read from the recorded results.

Slow (a few minutes on 2 CPU cores); skipped when ../shared/data/ml-100k is absent. The
smoke run of every notebook is tested in ``test_notebooks.py``.
"""

from __future__ import annotations

import pytest

from workbench.runs.executor import execute
from workbench.runs.records import REPO_ROOT

SHARED_ML100K = REPO_ROOT.parent / "shared" / "data" / "ml-100k"
NOTEBOOK = REPO_ROOT / "notebooks" / "04_sequential.ipynb"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ML100K.is_dir(), reason="../shared/data/ml-100k is absent")
def test_04_on_real_ml100k_meets_the_targets(tmp_path):
    rec = execute(NOTEBOOK, tmp_path, {"dataset": "ml-100k", "data_path": str(SHARED_ML100K)})
    assert rec.status == "ok", rec.error
    assert rec.context["smoke"] is False and rec.context["dataset"] == "ml-100k"
    table = rec.results["results"].set_index("model")
    assert {"SASRec", "BERT4Rec", "EASE", "ItemKNN", "last-item KNN", "Popularity"} <= set(table.index)
    ndcg = table["ndcg@10"]
    for name in ("SASRec", "BERT4Rec"):  # the targets, full ranking
        assert ndcg[name] > max(ndcg["Popularity"], ndcg["last-item KNN"]), ndcg
    assert max(ndcg["SASRec"], ndcg["BERT4Rec"]) > max(ndcg["EASE"], ndcg["ItemKNN"]), ndcg
    # sampling inflates every model's nDCG@10
    assert (table["sampled_ndcg@10"] > 2 * ndcg).all()
    assert set(rec.figures) >= {"training_curves", "full_vs_sampled", "ndcg_by_history_length", "attention_one_user"}
