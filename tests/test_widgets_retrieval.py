"""RetrievalPanel (workbench.widgets): a click measures the chosen setting and redraws."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.widgets import RetrievalPanel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def panel():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(400, 8)).astype(np.float32)
    queries = rng.normal(size=(30, 8)).astype(np.float32)
    return RetrievalPanel({"400 items": (items, queries)}, min_seconds=0.01)


def test_click_measures_and_redraws(panel):
    panel.backend.value, panel.knob.value = "hnsw", 2
    panel.button.click()
    low = panel.results.iloc[-1]
    panel.knob.value = 256  # only the search knob moves: the built index is reused
    panel.button.click()
    high = panel.results.iloc[-1]
    assert len(panel.results) == 2 and len(panel._indexes) == 1
    assert high.recall >= low.recall and high.recall > 0.9
    assert "ef_search=256" in panel.status.value and "recall@10" in panel.status.value
    assert panel.output.outputs[0]["data"]["image/png"]


def test_exact_is_recall_one(panel):
    panel.backend.value = "exact"
    row = panel.run()
    assert row["recall"] == 1.0 and row["setting"] == "exact"
