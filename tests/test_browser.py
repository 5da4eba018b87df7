"""The widget panel of notebook 05 in a real browser: JupyterLab on 127.0.0.1, headless
Chromium driven by Playwright (the system browser, no download). Runs the notebook in
smoke mode, moves the batch-size slider, clicks Run and checks the output changed.

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
from pathlib import Path

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


def test_slider_and_run_button_remeasure_and_redraw(lab, tmp_path):
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{lab}/lab/tree/05_speedups.ipynb", timeout=90_000)
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle'], .jp-Toolbar-kernelStatus", timeout=90_000
            )
            _accept_dialog(page)  # "Select Kernel" on first open
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            _accept_dialog(page)
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
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
