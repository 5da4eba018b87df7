"""Interactive panels. The measuring is plain functions; a panel only calls them and
redraws, so notebooks run the same under papermill (nobody clicks, nothing waits)."""

from __future__ import annotations

import base64
import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd

from workbench.acceleration import PRECISIONS, PrecisionError
from workbench.devices import available_devices
from workbench.plots_speed import versus_batch_size
from workbench.speed import Workload, measure


class SpeedPanel:
    """Batch-size slider, device and precision dropdowns and a Run button; each run
    measures one point with :func:`workbench.speed.measure` and redraws throughput vs
    batch size for every point measured so far. ``panel.widget`` is what to display."""

    def __init__(self, workload: Workload, *, batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                 repeats: int = 10, batch_size: int = 8):
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
        self.widget = widgets.VBox([
            widgets.HBox([self.batch, self.device, self.precision, self.button]), self.status, self.output,
        ])

    def run(self) -> dict | None:
        """Measure the selected point, update the status line and the plot."""
        self.button.disabled = True
        try:
            row = measure(self.workload, batch_size=self.batch.value, device=self.device.value,
                          precision=self.precision.value, repeats=self.repeats)
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
