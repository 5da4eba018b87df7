"""The widget panels in a real browser: JupyterLab on 127.0.0.1, headless Chromium driven
by Playwright (the system browser, no download). Notebook 05 in smoke mode: move the
batch-size slider, click Run, check the output changed. Notebook 06's retrieval panel
(``RetrievalPanel``) on a small notebook that builds it as notebook 06 does from a smoke-
sized catalogue: change the backend, move the nprobe slider, click Run, check that the
measured recall and the plot changed.

Skips when Chromium or Playwright is missing (``apt-get install chromium``; ``.ci/run``
installs it). A screenshot is saved into the test's temporary folder on failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM:
    pytest.skip("no Chromium on this machine", allow_module_level=True)

CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a copy of notebook 05, token off, temporary settings/workspaces."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / "05_speedups.ipynb", root)
    with _jupyterlab(root, tmp_path) as url:
        yield url


#: the small notebook of the retrieval panel test: notebook 06's panel over its smoke
#: catalogue (iALS embeddings of a ~2,000-item synthetic log, 100 user queries)
RETRIEVAL_CELLS = [
    "import numpy as np\n"
    "from workbench.evaluation import retrieval as measure\n"
    "from workbench.models.two_stage import item_embeddings, user_embeddings\n"
    "from workbench.widgets import RetrievalPanel",
    "model, log, cost = measure.synthetic_embeddings(2_000, seed=0)\n"
    "catalogues = {f\"{cost['catalogue']:,} items\": (item_embeddings(model), user_embeddings(model, np.arange(100)))}",
    "panel = RetrievalPanel(catalogues, min_seconds=0.02)\npanel.widget",
]


@pytest.fixture
def retrieval_lab(tmp_path):
    """JupyterLab serving a small notebook that shows notebook 06's RetrievalPanel."""
    root = tmp_path / "root"
    root.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in RETRIEVAL_CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "retrieval_panel.ipynb")
    with _jupyterlab(root, tmp_path) as url:
        yield url


@contextmanager
def _jupyterlab(root: Path, tmp_path: Path) -> Iterator[str]:
    """JupyterLab on a free loopback port serving ``root``; yields its URL, stops it after."""
    port = _free_port()
    env = {
        **os.environ,
        "WORKBENCH_SMOKE": "1",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--allow-root",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
    ]
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "lab.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        raise RuntimeError(
                            f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _accept_dialog(page, timeout_ms: int = 5_000) -> None:
    """Press the default button of a JupyterLab dialog if one shows up."""
    button = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    try:
        button.wait_for(timeout=timeout_ms)
    except playwright.TimeoutError:
        return
    button.click()


def _run_all(page, url: str) -> None:
    """Open the notebook at ``url`` in JupyterLab and run all its cells."""
    page.goto(url, timeout=90_000)
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle'], .jp-Toolbar-kernelStatus", timeout=90_000
    )
    _accept_dialog(page)  # "Select Kernel" on first open
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    _accept_dialog(page)


@contextmanager
def browser_page(tmp_path: Path) -> Iterator:
    """A page in headless Chromium; a screenshot of it lands in ``tmp_path`` when the test fails."""
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def test_slider_and_run_button_remeasure_and_redraw(lab, tmp_path):
    with browser_page(tmp_path) as page:
        _run_all(page, f"{lab}/lab/tree/05_speedups.ipynb")
        panel = page.locator(".jupyter-widgets .widget-selection-slider, .jupyter-widgets .widget-hslider").first
        panel.wait_for(timeout=240_000)
        status = page.locator(".jupyter-widgets .widget-html-content").last
        assert "press Run" in status.inner_text()
        readout = page.locator(".jupyter-widgets .widget-readout").first
        before = readout.inner_text()
        handle = page.locator(".jupyter-widgets .noUi-handle").first
        handle.focus()
        handle.press("ArrowRight")
        handle.press("ArrowRight")
        page.wait_for_function(
            "(b) => document.querySelector('.jupyter-widgets .widget-readout').innerText != b",
            arg=before,
            timeout=10_000,
        )
        after = readout.inner_text()
        assert int(after) > int(before)
        page.locator(".jupyter-widgets button.jupyter-button", has_text="Run").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jupyter-widgets .widget-html-content')]"
            ".some(e => e.innerText.includes('users/s'))",
            timeout=120_000,
        )
        text = status.inner_text()
        assert f"batch {after} " in text and "users/s" in text
        img = page.locator(".jupyter-widgets .widget-output img, .widget-output img").last
        img.wait_for(timeout=30_000)
        assert img.get_attribute("src").startswith("data:image/png")


def test_retrieval_panel_backend_slider_and_run_remeasure_in_place(retrieval_lab, tmp_path):
    with browser_page(tmp_path) as page:
        _run_all(page, f"{retrieval_lab}/lab/tree/retrieval_panel.ipynb")
        page.locator(".jupyter-widgets .noUi-handle").first.wait_for(timeout=120_000)
        status = page.locator(".jupyter-widgets .widget-html-content").last
        assert "press Run" in status.inner_text()
        page.locator(".jupyter-widgets .widget-dropdown select").nth(1).select_option("ivf")
        first = _press_run(page, status, "ivf nprobe=64")  # nprobe 64: every cell, exact
        image = page.locator(".jupyter-widgets .widget-output img").last
        first_plot = image.get_attribute("src")
        handle = page.locator(".jupyter-widgets .noUi-handle").first
        handle.focus()
        for _ in range(6):  # 64 -> 1, one option per press
            handle.press("ArrowLeft")
        readout = page.locator(".jupyter-widgets .widget-readout").first
        page.wait_for_function(
            "() => document.querySelector('.jupyter-widgets .widget-readout').innerText.trim() == '1'",
            timeout=10_000,
        )
        assert readout.inner_text().strip() == "1"
        second = _press_run(page, status, "ivf nprobe=1")  # one cell of about 44
        assert first >= 0.99 and second < first - 0.05, (first, second)
        page.wait_for_function(
            "(old) => { const i = [...document.querySelectorAll('.jupyter-widgets .widget-output img')].pop();"
            " return i && i.src != old; }",
            arg=first_plot,
            timeout=30_000,
        )
        assert image.get_attribute("src").startswith("data:image/png")


def _press_run(page, status, setting: str) -> float:
    """Click the panel's Run button, wait for the status line of ``setting``; its recall@10."""
    page.locator(".jupyter-widgets button.jupyter-button", has_text="Run").click()
    page.wait_for_function(
        "(s) => [...document.querySelectorAll('.jupyter-widgets .widget-html-content')]"
        ".some(e => e.innerText.includes(s + ' on') && e.innerText.includes('recall@10'))",
        arg=setting,
        timeout=60_000,
    )
    text = status.inner_text()
    assert text.startswith(f"{setting} on ") and "queries/s" in text, text
    return float(text.split("recall@10 ")[1].split(",")[0])
