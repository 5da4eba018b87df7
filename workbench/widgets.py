"""Interactive panels for the notebooks: :class:`SpeedPanel` (notebook 05) and
:func:`batching_panel` (notebook 07). The measuring is plain functions; a panel only calls
them and redraws, so notebooks run the same under papermill (nobody clicks, nothing
waits). Widgets sit above plots, speed and serving, and beside the run machinery."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from workbench.devices import available_devices
from workbench.plots.speed import versus_batch_size
from workbench.speed.benchmark import Workload, measure
from workbench.speed.precision import PRECISIONS, PrecisionError


class SpeedPanel:
    """Batch-size slider, device and precision dropdowns and a Run button; each run
    measures one point with :func:`workbench.speed.benchmark.measure` and redraws throughput vs
    batch size for every point measured so far. ``panel.widget`` is what to display."""

    def __init__(
        self,
        workload: Workload,
        *,
        batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        repeats: int = 10,
        batch_size: int = 8,
    ):
        self.workload = workload
        self.repeats = repeats
        self.results = pd.DataFrame()
        self.batch = widgets.SelectionSlider(options=list(batch_sizes), value=batch_size, description="batch size")
        self.device = widgets.Dropdown(options=available_devices(), description="device")
        self.precision = widgets.Dropdown(options=list(PRECISIONS), value="fp32", description="precision")
        self.button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.status = widgets.HTML(value="<i>choose settings and press Run</i>")
        self.output = widgets.Output()
        self.button.on_click(lambda _: self.run())
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.batch, self.device, self.precision, self.button]),
                self.status,
                self.output,
            ]
        )

    def run(self) -> dict | None:
        """Measure the selected point, update the status line and the plot."""
        self.button.disabled = True
        try:
            row = measure(
                self.workload,
                batch_size=self.batch.value,
                device=self.device.value,
                precision=self.precision.value,
                repeats=self.repeats,
            )
        except PrecisionError as err:
            self.status.value = f"<b>not run:</b> {err}"
            return None
        finally:
            self.button.disabled = False
        self.results = pd.concat([self.results, pd.DataFrame([row])], ignore_index=True)
        self.status.value = (
            f"batch {row['batch_size']} {row['precision']} on {row['device']}: "
            f"<b>{row['throughput_per_s']:,.0f} users/s</b>, median {row['latency_ms_median']:.2f} ms, "
            f"p95 {row['latency_ms_p95']:.2f} ms, peak {row['peak_mb']} MB"
        )
        self.output.outputs = (_png_output(versus_batch_size(self.results)),)
        return row


def _png_output(fig) -> dict:
    """A Figure as an Output-widget display item (set directly: works with or without a kernel)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": "<throughput plot>"}
    return {"output_type": "display_data", "data": data, "metadata": {}}


def batching_panel(run: Callable[[int, float], object], *, max_batch_size: int = 32, max_wait_ms: float = 2.0):
    """Sliders for max batch size and max wait plus a button that calls
    ``run(max_batch_size, max_wait_ms)`` and shows what it returns. Nothing runs until
    the button is clicked, so an unattended run (papermill) never waits on it."""
    size = widgets.IntSlider(value=max_batch_size, min=1, max=128, description="max batch")
    wait = widgets.FloatSlider(value=max_wait_ms, min=0.0, max=20.0, step=0.5, description="max wait ms")
    button = widgets.Button(description="run load test", button_style="primary")
    out = widgets.Output()

    def on_click(_):
        with out:
            out.clear_output()
            display(run(size.value, wait.value))

    button.on_click(on_click)
    return widgets.VBox([widgets.HBox([size, wait, button]), out])
