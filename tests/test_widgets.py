"""The speed panel and the batching panel, driven the way a click drives them (the
real-browser check is in test_browser)."""

from __future__ import annotations

import pytest

from workbench.data import datasets
from workbench.models import EASE
from workbench.speed import benchmark as speed
from workbench.widgets import SpeedPanel, batching_panel


@pytest.fixture(scope="module")
def panel():
    data = datasets.load("synthetic", size="tiny", seed=2)
    return SpeedPanel(speed.model_workload(EASE(reg=50.0, device="cpu").fit(data.interactions)), repeats=2)


def test_click_measures_and_redraws(panel):
    panel.batch.value = 16
    panel.button.click()
    assert len(panel.results) == 1 and panel.results["batch_size"].item() == 16
    assert "users/s" in panel.status.value
    assert panel.output.outputs and "image/png" in panel.output.outputs[-1]["data"]
    panel.batch.value = 64
    panel.precision.value = "int8"
    panel.button.click()
    assert panel.results["batch_size"].tolist() == [16, 64] and not panel.button.disabled


def test_unsupported_choice_is_shown_not_raised(panel):
    before = len(panel.results)
    panel.precision.value = "fp16"
    panel.button.click()
    assert "not run" in panel.status.value and len(panel.results) == before


def test_only_present_devices_are_offered(panel):
    from workbench.devices import available_devices

    assert list(panel.device.options) == available_devices()


def test_batching_panel_runs_only_when_clicked():
    calls = []
    panel = batching_panel(lambda b, w: calls.append((b, w)) or f"{b}/{w}", max_batch_size=8, max_wait_ms=1.5)
    assert calls == []  # building it runs nothing: an unattended notebook never waits on it
    sliders_and_button = panel.children[0].children
    sliders_and_button[0].value = 16
    sliders_and_button[2].click()
    assert calls == [(16, 1.5)]
