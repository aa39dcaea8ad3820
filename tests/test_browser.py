"""Real-browser test: Debian's Chromium (Playwright) against ``streamlit run streamlit_app.py``.

The server runs in a subprocess with an empty weights folder, so only the classical baseline is offered:
the flows do not depend on trained weights or on torch start-up time.

Flows: upload an image on Count and see a count; move the threshold slider with the keyboard and see the
count change; count a batch of three files (one broken) and check the downloaded CSV.
Skipped, with the reason, only when Chromium or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import json
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

import cv2
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
CHROMIUM = "/usr/bin/chromium"
BASELINE = "classical-otsu"
SHIPPED = "unet-mask"

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


@contextlib.contextmanager
def _streamlit(weights: Path | None, log_path: Path):
    """``streamlit run streamlit_app.py`` on a free port (weights: that folder instead of weights/); yields the URL."""
    port = _free_port()
    launcher = (
        "import sys, pathlib; import cellcount.models.loading as loading; "
        "w = sys.argv.pop(1); loading.DEFAULT_WEIGHTS_DIR = pathlib.Path(w) if w else loading.DEFAULT_WEIGHTS_DIR; "
        "from streamlit.web import cli; sys.argv[0] = 'streamlit'; cli.main()"
    )
    cmd = [
        sys.executable,
        "-c",
        launcher,
        str(weights) if weights is not None else "",
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
def server(tmp_path_factory):
    weights = tmp_path_factory.mktemp("weights")  # empty: only the classical baseline, no torch in the server
    with _streamlit(weights, tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def server_shipped(tmp_path_factory):
    """A server with the shipped weights: model runs take seconds, as for a user (the reset race needs them)."""
    if not (ROOT / "weights" / SHIPPED / "card.json").is_file():
        pytest.skip(f"weights/{SHIPPED} is not there")
    with _streamlit(None, tmp_path_factory.mktemp("streamlit") / "server.log") as url:
        yield url


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


def _idle(page) -> None:
    """Wait for the script run to finish: a dropdown opened during a rerun is closed by the redraw."""
    sync_api.expect(page.locator('[data-testid="stStatusWidget"]').filter(has_text="Running")).to_have_count(0)


def _pick(page, combo, option, value, fill: str | None = None) -> None:
    """Open ``combo`` and click ``option``; a rerun that redraws the page closes an open list, so retry."""
    for attempt in range(5):
        _idle(page)
        combo.click()
        if fill is not None:
            combo.fill(fill)  # type to filter the options
        try:
            option.click(timeout=10_000)
            break
        except sync_api.TimeoutError:
            if attempt == 4:
                raise
            page.keyboard.press("Escape")
    sync_api.expect(combo).to_have_value(value)


def _choose_model(page, name: str = BASELINE) -> None:
    combo = page.get_by_role("combobox", name="Model")
    sync_api.expect(combo).to_be_visible()
    if combo.input_value().startswith(f"{name} "):
        return
    starts = re.compile(rf"^{re.escape(name)}\s")
    _pick(page, combo, page.get_by_role("option", name=starts), starts, fill=name)


def _choose_baseline(page) -> None:
    _choose_model(page, BASELINE)


def _settled(page, locator, quiet_ms: int = 1500, timeout_s: float = 60) -> str:
    """The locator's text once it has stopped changing for ``quiet_ms`` (reruns may still be arriving)."""
    deadline = time.monotonic() + timeout_s
    text = locator.inner_text()
    while time.monotonic() < deadline:
        _idle(page)
        page.wait_for_timeout(quiet_ms)
        now = locator.inner_text()
        if now == text:
            return now
        text = now
    raise AssertionError(f"{locator} kept changing: last {text!r}")


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
    if not slider.is_visible():  # a nearly binary map puts the threshold under Advanced
        page.get_by_text("Advanced", exact=True).click()
    slider.focus()
    for _ in range(20):  # 0.50 -> 0.70 in steps of 0.01
        slider.press("ArrowRight")
    sync_api.expect(slider).to_have_value("0.7")
    sync_api.expect(count).not_to_have_text(before, timeout=60_000)
    assert int(count.inner_text()) != int(before)
    after = _settled(page, count)  # the key presses' reruns end with the last value's count

    # the Display panel draws its controls only while open; what was chosen there stays when it is closed
    display = page.get_by_text("Display", exact=True)
    display.click()
    thickness = page.locator('[data-testid="stSlider"]').filter(has_text="Outline thickness").get_by_role("slider")
    thickness.focus()
    thickness.press("ArrowRight")
    thickness.press("ArrowRight")
    sync_api.expect(thickness).to_have_value("3")
    display.click()
    sync_api.expect(thickness).to_have_count(0)
    display.click()
    sync_api.expect(thickness).to_have_value("3")
    sync_api.expect(count).to_have_text(after)
    # 400% is four screen pixels per image pixel (shrunk to the panel, an 800 px window showed 345%); the 640 px
    # window fits the panel (689 px here), which an 800 px one overflowed, its right edge out of sight
    zoom = page.get_by_role("combobox", name="Zoom")
    _pick(page, zoom, page.get_by_role("option", name="400%"), "400%")  # retried: a rerun closes an open list
    zoomed = page.locator('.st-key-count_overlay_zoomed [data-testid="stImage"] img')
    sync_api.expect(zoomed).to_be_visible(timeout=60_000)
    natural, shown, panel = zoomed.evaluate(
        "i => [i.naturalWidth, i.getBoundingClientRect().width, i.closest('.st-key-count_overlay_zoomed').clientWidth]")
    assert natural == shown == 640 and panel >= 640
    _pick(page, zoom, page.get_by_role("option", name="Fit"), "Fit")
    sync_api.expect(zoomed).to_have_count(0, timeout=60_000)

    # the outlined picture for a figure: the whole image at full resolution, as a PNG
    with page.expect_download() as info:
        page.get_by_role("button", name="Outlines (PNG)").click()
    picture = cv2.imread(str(info.value.path()), cv2.IMREAD_UNCHANGED)
    assert picture is not None and picture.shape[:2] == cv2.imread(str(SAMPLES / "s02_dense_clusters.png")).shape[:2]
    assert picture.ndim == 3 and info.value.suggested_filename == "s02_dense_clusters_outlines.png"

    # another page and back: the uploaded image is still counted, with the same settings
    nav.get_by_text("Models", exact=True).click()
    sync_api.expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible(timeout=60_000)
    nav.get_by_text("Count", exact=True).click()
    sync_api.expect(page.get_by_text("which you uploaded earlier")).to_be_visible(timeout=60_000)
    sync_api.expect(count).to_have_text(after, timeout=90_000)


def test_batch_with_a_broken_file_and_csv_download(page, server, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    _open(page, f"{server}/batch", "Batch")
    _choose_baseline(page)
    _uploader(page, "Images or zip files").set_input_files(
        [str(SAMPLES / "s01_sparse_small.png"), str(broken), str(SAMPLES / "s05_16bit.tif")]
    )
    run = page.get_by_role("button", name="Count 3 image(s)")
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
    assert bad["file"] == "broken.png" and "not an image" in bad["reason"]
    assert (df.loc[df["status"] == "ok", "count"] > 0).all()
    assert set(df["model"].dropna()) == {BASELINE}


def _status(page, text: str):
    """The "Settings of <model>: <origin>" line (its model name is bold: text across elements)."""
    return page.locator('[data-testid="stCaptionContainer"]').filter(has_text=text).first


def _number(page, label: str):
    return page.locator('[data-testid="stNumberInput"]').filter(has_text=label).locator("input")


def _set_number(page, label: str, value: int) -> None:
    box = _number(page, label)
    box.fill(str(value))
    box.press("Enter")
    sync_api.expect(box).to_have_value(str(value))


def _choose_split(page, mode: str) -> None:
    _pick(page, page.get_by_role("combobox", name="Split touching nuclei"),
          page.get_by_role("option", name=mode, exact=True), re.compile(re.escape(mode)))


def _count_value(page) -> int:
    value = page.locator('[data-testid="stMetric"]').filter(has_text="Count").locator('[data-testid="stMetricValue"]')
    return int(value.first.inner_text())


def _disks(path: Path, seed: int) -> np.ndarray:
    """A never-seen image: 8-30 disks (some touching) of varying brightness on a noisy background."""
    rng = np.random.default_rng(seed)
    size = int(rng.integers(180, 280))
    img = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(8, 31))):
        cv2.circle(img, (int(rng.integers(10, size - 10)), int(rng.integers(10, size - 10))), int(rng.integers(6, 11)),
                   float(rng.uniform(120, 240)), -1)
    img = np.clip(cv2.GaussianBlur(img, (0, 0), 1.2) + rng.normal(12, 4, img.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return img


def test_replacing_the_upload_ten_times_keeps_settings_and_counts(page, server_shipped, tmp_path):
    """Issue #15: replacing the upload reset every control to 0 / off in about half of the tries (with real
    model runs). Settings edited once must stay, and each count must be the library's count with them."""
    import cellcount as cc

    _open(page, f"{server_shipped}/count", "Count")
    # the first run (a sample) must finish: a choice made while a deep link is redirected is lost
    sync_api.expect(page.get_by_text("kept objects are outlined", exact=False)).to_be_visible()
    _choose_model(page, SHIPPED)
    sync_api.expect(_status(page, f"Settings of {SHIPPED}:")).to_be_visible()
    page.locator('[data-testid="stRadio"]').filter(has_text="Image").get_by_text("Upload", exact=True).click()
    uploader = _uploader(page, "Upload an image")
    first = tmp_path / "first.png"
    _disks(first, 1000)
    uploader.set_input_files(str(first))
    sync_api.expect(page.get_by_text("first.png: kept objects are outlined", exact=False)).to_be_visible()
    _set_number(page, "Min. area (px)", 30)
    _choose_split(page, "Distance transform")
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Min. distance between centres").get_by_role(
        "slider")
    slider.focus()
    for _ in range(7):  # 0 (the card's: auto) -> 7
        slider.press("ArrowRight")
    sync_api.expect(slider).to_have_value("7")
    sync_api.expect(_status(page, f"Settings of {SHIPPED}: edited")).to_be_visible()
    # display options too: a tester's panel showed its defaults after a replace, and the next touch applied them
    colour = page.get_by_role("combobox", name="Outline colour")
    for shown in (True, False, True):  # each click opens or closes the panel (none is lost)
        page.get_by_text("Display", exact=True).click()
        _idle(page)
        sync_api.expect(colour).to_have_count(1 if shown else 0)
    _pick(page, colour, page.get_by_role("option", name="Yellow", exact=True), "Yellow")
    thickness = page.locator('[data-testid="stSlider"]').filter(has_text="Outline thickness").get_by_role("slider")
    thickness.focus()
    for _ in range(2):
        thickness.press("ArrowRight")
    sync_api.expect(thickness).to_have_value("3")

    model = cc.load_model(SHIPPED)
    params = cc.resolve_params(model, {"min_area_px": 30, "split_mode": "distance", "min_distance_px": 7})
    from cellcount.models.backends import available_backends

    def library_counts(img) -> set[int]:
        # with each backend: the server may have timed its choice again on a loaded machine and picked another
        # near-tie one, which can count an object apart; a reset setting counts far off all of them
        return {cc.count_image(img, model, params, backend=b).count for b in available_backends()}

    for i in range(10):
        path = tmp_path / f"never_seen_{i}.png"
        img = _disks(path, 2000 + i)
        uploader.set_input_files(str(path))
        sync_api.expect(page.get_by_text(f"{path.name}: kept objects are outlined", exact=False)).to_be_visible()
        assert _number(page, "Min. area (px)").input_value() == "30", f"upload {i}"
        sync_api.expect(page.get_by_role("combobox", name="Split touching nuclei")).to_have_value(
            re.compile("Distance transform"))
        sync_api.expect(slider).to_have_value("7")
        assert _count_value(page) in library_counts(img), f"upload {i}"
        sync_api.expect(colour).to_have_value("Yellow")  # the panel stays open, with the options chosen
        sync_api.expect(thickness).to_have_value("3")


def test_batch_uses_the_settings_tuned_on_count(page, server, tmp_path):
    import cellcount as cc

    _open(page, f"{server}/count", "Count")
    _choose_baseline(page)
    sync_api.expect(page.get_by_text("kept objects are outlined", exact=False)).to_be_visible()
    _set_number(page, "Min. area (px)", 150)
    _choose_split(page, "Off")
    sync_api.expect(_status(page, f"Settings of {BASELINE}: edited")).to_be_visible()
    # the Count page's counts CSV has the Batch page's and the CLI's columns, and this image's count
    from cellcount.batch import COUNT_COLUMNS

    with page.expect_download() as info:
        page.get_by_role("button", name="Counts CSV").click()
    one = pd.read_csv(info.value.path())
    assert list(one.columns) == list(COUNT_COLUMNS) and len(one) == 1
    shown = cc.count_image(cc.read_image(SAMPLES / one["file"][0]), cc.load_model(BASELINE),
                           cc.resolve_params(cc.load_model(BASELINE), {"min_area_px": 150, "split_mode": "off"}))
    assert one["count"][0] == shown.count and one["status"][0] == "ok"
    page.get_by_test_id("stSidebarNav").get_by_text("Batch", exact=True).click()
    sync_api.expect(page.get_by_role("heading", name="Batch", exact=True)).to_be_visible()
    sync_api.expect(_number(page, "Min. area (px)")).to_have_value("150")
    sync_api.expect(_status(page, f"Settings of {BASELINE}: edited")).to_be_visible()
    names = ["s02_dense_clusters.png", "s04_uneven_illumination.png"]
    _uploader(page, "Images or zip files").set_input_files([str(SAMPLES / n) for n in names])
    run = page.get_by_role("button", name="Count 2 image(s)")
    sync_api.expect(run).to_be_enabled()
    run.click()
    download_button = page.get_by_role("button", name="Per-image CSV")
    sync_api.expect(download_button).to_be_visible(timeout=120_000)
    with page.expect_download() as info:
        download_button.click()
    path = tmp_path / "counts.csv"
    info.value.save_as(path)
    df = pd.read_csv(path).set_index("file")
    model = cc.load_model(BASELINE)
    params = cc.resolve_params(model, {"min_area_px": 150, "split_mode": "off"})
    for name in names:
        assert df.loc[name, "count"] == cc.count_image(cc.read_image(SAMPLES / name), model, params).count
        settings = json.loads(df.loc[name, "settings"])
        assert (settings["min_area_px"], settings["split_mode"]) == (150, "off")


def test_sessions_at_once_each_get_their_own_count(browser, server_shipped):
    """Several users count different images on one server at the same time: they share the cached model
    (st.cache_resource), and each must see the library's count of their own image, not a neighbour's."""
    import cellcount as cc

    names = ["s01_sparse_small.png", "s02_dense_clusters.png", "s04_uneven_illumination.png"]
    contexts, pages = [], []
    sync_api.expect.set_options(timeout=120_000)  # three model runs at once on a loaded CI machine
    try:
        for _ in names:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            pg = ctx.new_page()
            pg.set_default_timeout(120_000)
            contexts.append(ctx)
            pages.append(pg)
            _open(pg, f"{server_shipped}/count", "Count")
            sync_api.expect(pg.get_by_text("kept objects are outlined", exact=False)).to_be_visible()
            _choose_model(pg, SHIPPED)
            pg.locator('[data-testid="stRadio"]').filter(has_text="Image").get_by_text("Upload", exact=True).click()
        for pg, name in zip(pages, names):  # all uploads first: the model runs overlap on the server
            _uploader(pg, "Upload an image").set_input_files(str(SAMPLES / name))
        from cellcount.models.backends import available_backends

        model = cc.load_model(SHIPPED)
        counts = []
        for pg, name in zip(pages, names):
            sync_api.expect(pg.get_by_text(f"{name}: kept objects are outlined", exact=False)).to_be_visible()
            counts.append(_count_value(pg))
            # within one object of a backend's count: a fresh CI clone's server, its backends timed while three
            # sessions ran, showed 76 where this process counted 77 (not reproduced on the same machine since);
            # a neighbour's image would be far off (these three count about 27, 143 and 77)
            image = cc.read_image(SAMPLES / name)
            ours = {cc.count_image(image, model, backend=b).count for b in available_backends()}
            assert min(abs(counts[-1] - c) for c in ours) <= 1, (name, counts[-1], ours)
        assert len(set(counts)) > 1  # different images, different counts: no cross-talk
    finally:
        for ctx in contexts:
            ctx.close()
