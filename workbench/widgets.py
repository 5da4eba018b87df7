"""Interactive panels for the notebooks: :class:`SpeedPanel` (notebook 05),
:class:`RetrievalPanel` (notebook 06) and :func:`batching_panel` (notebook 07). The
measuring is plain functions; a panel only calls them and redraws, so notebooks run the
same under papermill (nobody clicks, nothing waits). Widgets sit above plots, speed and
serving, and beside the run machinery."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from workbench.devices import available_devices
from workbench.evaluation.retrieval import measure_index
from workbench.plots.retrieval import recall_vs_throughput
from workbench.plots.speed import versus_batch_size
from workbench.retrieval import BACKENDS, build_index
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


class RetrievalPanel:
    """Catalogue size and backend dropdowns, an efSearch / nprobe slider and a Run button;
    each run searches the chosen catalogue's queries with that setting (the index is built
    once per size and backend, the knob changes at search time), measures recall@10
    against exact search and single-query throughput on one thread, and redraws
    recall against throughput for every point so far. ``panel.widget`` is what to display.

    ``catalogues`` maps a size label to ``(item vectors (n, d), query vectors (Q, d))``.
    """

    def __init__(
        self,
        catalogues: dict[str, tuple],
        *,
        knobs=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        min_seconds: float = 0.2,
    ):
        self.catalogues = catalogues
        self.min_seconds = min_seconds
        self.results = pd.DataFrame()
        self._indexes: dict[tuple[str, str], object] = {}
        self._truth: dict[str, object] = {}
        self.size = widgets.Dropdown(options=list(catalogues), description="catalogue")
        self.backend = widgets.Dropdown(options=list(BACKENDS), value="hnsw", description="backend")
        self.knob = widgets.SelectionSlider(options=list(knobs), value=64, description="efSearch/nprobe")
        self.button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.status = widgets.HTML(value="<i>choose settings and press Run</i>")
        self.output = widgets.Output()
        self.button.on_click(lambda _: self.run())
        self.widget = widgets.VBox(
            [widgets.HBox([self.size, self.backend, self.knob, self.button]), self.status, self.output]
        )

    def run(self) -> dict:
        """Measure the selected point, update the status line and the plot."""
        self.button.disabled = True
        try:
            row = self._measure(self.size.value, self.backend.value, self.knob.value)
        finally:
            self.button.disabled = False
        self.results = pd.concat([self.results, pd.DataFrame([row])], ignore_index=True)
        self.status.value = (
            f"{row['setting']} on {row['n_items']:,} items: <b>recall@10 {row['recall']:.3f}</b>, "
            f"{row['qps_b1_t1']:,.0f} queries/s (1 per call), {row['memory_mb']:.1f} MB"
        )
        self.output.outputs = (_png_output(recall_vs_throughput(self.results)),)
        return row

    def _measure(self, size: str, backend: str, knob: int) -> dict:
        items, queries = self.catalogues[size]
        if size not in self._truth:
            self._truth[size] = build_index(items).search(queries, 10)[0]
        if (size, backend) not in self._indexes:
            self._indexes[size, backend] = build_index(items, backend=backend)
        index = self._indexes[size, backend].set_search(ef_search=knob, nprobe=knob)
        row = measure_index(index, queries, self._truth[size], batches=(1,), threads=(1,), min_seconds=self.min_seconds)
        knob_name = {"hnsw": "ef_search", "ivf": "nprobe", "ivfpq": "nprobe"}.get(backend)
        setting = backend + (f" {knob_name}={knob}" if knob_name else "")
        return {"n_items": len(items), "backend": backend, "setting": setting, **row}


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
