"""Real-browser test: Debian's Chromium (Playwright) against ``streamlit run streamlit_app.py``.

The server runs in a subprocess with an empty weights folder, so only the classical baseline is offered:
the flows do not depend on trained weights or on torch start-up time.

Flows: upload an image on Count and see a count; move the threshold slider with the keyboard and see the
count change; count a batch of three files (one broken) and check the downloaded CSV.
Skipped, with the reason, only when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
CHROMIUM = "/usr/bin/chromium"
BASELINE = "classical-otsu"

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)
if shutil.which("streamlit") is None and not (Path(sys.executable).parent / "streamlit").exists():
    pytest.skip("streamlit command not found", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    weights = tmp_path_factory.mktemp("weights")  # empty: only the classical baseline, no torch in the server
    launcher = (
        "import sys, pathlib; import cellcount.models.loading as loading; "
        "loading.DEFAULT_WEIGHTS_DIR = pathlib.Path(sys.argv.pop(1)); "
        "from streamlit.web import cli; sys.argv[0] = 'streamlit'; cli.main()"
    )
    cmd = [
        sys.executable,
        "-c",
        launcher,
        str(weights),
        "run",
        "streamlit_app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    sync_api.expect.set_options(timeout=60_000)  # a loaded CI machine renders slowly
    yield pg
    ctx.close()


def _open(page, url: str, title: str) -> None:
    page.goto(url)
    sync_api.expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=90_000)


def _choose_baseline(page) -> None:
    combo = page.get_by_role("combobox", name="Model")
    sync_api.expect(combo).to_be_visible()
    if BASELINE in combo.input_value():
        return
    combo.click()
    combo.fill(BASELINE)  # type to filter the options, then take the match
    page.keyboard.press("Enter")
    sync_api.expect(combo).to_have_value(re.compile(BASELINE))


def _uploader(page, label: str):
    return page.locator('[data-testid="stFileUploader"]').filter(has_text=label).locator("input[type=file]")


def test_count_upload_and_slider(page, server):
    # the first request to a fresh server is a deep link: it must still get the app's navigation
    _open(page, f"{server}/count", "Count")
    nav = page.get_by_test_id("stSidebarNav")
    sync_api.expect(nav).to_contain_text("Home")
    sync_api.expect(nav).not_to_contain_text("shared")
    _choose_baseline(page)
    page.locator('[data-testid="stRadio"]').filter(has_text="Image").get_by_text("Upload", exact=True).click()
    _uploader(page, "Upload an image").set_input_files(str(SAMPLES / "s02_dense_clusters.png"))
    count = (
        page.locator('[data-testid="stMetric"]')
        .filter(has_text="Count")
        .locator('[data-testid="stMetricValue"]')
        .first
    )
    sync_api.expect(count).to_have_text(re.compile(r"^\d+$"), timeout=90_000)
    sync_api.expect(page.get_by_text("s02_dense_clusters.png", exact=True)).to_be_visible()
    before = count.inner_text()
    assert int(before) > 0

    slider = (
        page.locator('[data-testid="stSlider"]')
        .filter(has_text="Probability threshold")
        .get_by_role("slider")
    )
    slider.focus()
    for _ in range(20):  # 0.50 -> 0.70 in steps of 0.01
        slider.press("ArrowRight")
    sync_api.expect(slider).to_have_value("0.7")
    sync_api.expect(count).not_to_have_text(before, timeout=60_000)
    assert int(count.inner_text()) != int(before)


def test_batch_with_a_broken_file_and_csv_download(page, server, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    _open(page, f"{server}/batch", "Batch")
    _choose_baseline(page)
    _uploader(page, "Images or zip files").set_input_files(
        [str(SAMPLES / "s01_sparse_small.png"), str(broken), str(SAMPLES / "s05_16bit.tif")]
    )
    run = page.get_by_role("button", name="Count 3 file(s)")
    sync_api.expect(run).to_be_enabled(timeout=60_000)
    run.click()
    download_button = page.get_by_role("button", name="Per-image CSV")
    sync_api.expect(download_button).to_be_visible(timeout=120_000)
    sync_api.expect(page.get_by_text("1 file(s) could not be counted")).to_be_visible()
    with page.expect_download() as info:
        download_button.click()
    path = tmp_path / "counts.csv"
    info.value.save_as(path)
    df = pd.read_csv(path)
    assert len(df) == 3
    assert sorted(df["status"]) == ["error", "ok", "ok"]
    bad = df[df["status"] == "error"].iloc[0]
    assert bad["file"] == "broken.png" and "ImageReadError" in bad["reason"]
    assert (df.loc[df["status"] == "ok", "count"] > 0).all()
    assert set(df["model"].dropna()) == {BASELINE}
