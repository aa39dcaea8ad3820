"""Real-browser tests of ground truth on Evaluate and Compare (Chromium against ``streamlit run``).

Label images share their images' names: they come through the second uploader, or in a zip with
``images/`` and ``labels/`` folders. The images are made by :mod:`cellcount.synthetic`, so the true counts
are exact. Server, browser and helpers are those of ``test_browser.py`` (only the classical baseline).
"""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pandas as pd
import pytest
import test_browser as tb
from PIL import Image

from cellcount.synthetic import make_synthetic

# the fixtures of test_browser.py, shared (a module-scoped server of this module's own)
server, browser, page = tb.server, tb.browser, tb.page
_choose_baseline, _open, _uploader, sync_api = tb._choose_baseline, tb._open, tb._uploader, tb.sync_api

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Three 192 x 192 fields with same-name 16-bit label PNGs, loose and zipped; returns (folder, counts)."""
    root = tmp_path_factory.mktemp("labelled")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    counts = {}
    for k in range(3):
        s = make_synthetic((192, 192), rng=40 + k, n_cells=10 + 8 * k, radius_px=(6.0, 9.0))
        name = f"well_{k}.png"
        Image.fromarray(s.image).save(root / "images" / name)
        Image.fromarray(s.labels.astype(np.uint16)).save(root / "labels" / name)
        counts[name] = s.count
    for zip_name, folders in (("both.zip", ("images", "labels")), ("images.zip", ("images",)),
                              ("labels.zip", ("labels",))):
        with zipfile.ZipFile(root / zip_name, "w") as zf:
            for folder in folders:
                for name in counts:
                    zf.write(root / folder / name, f"plate/{folder}/{name}")
    return root, counts


def test_fresh_server_never_shows_the_pages_folder_menu(page, server):
    """First in this module, so its server is fresh: Streamlit runs that first request in its legacy pages/
    mode, whose menu listed the helper modules (_shared, _groundtruth)."""
    import time

    page.goto(f"{server}/evaluate")
    nav = page.get_by_test_id("stSidebarNav")
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        seen += nav.all_inner_texts()
        if any("Home" in t for t in seen):
            break
        time.sleep(0.1)
    assert any("Home" in t for t in seen), seen
    assert not any(word in t.lower() for t in seen for word in ("shared", "groundtruth", "streamlit app")), seen
    sync_api.expect(page.get_by_role("heading", name="Evaluate", exact=True)).to_be_visible()


def _metric(page, label: str):
    return (
        page.locator('[data-testid="stMetric"]')
        .filter(has_text=re.compile(f"^{label}"))
        .locator('[data-testid="stMetricValue"]')
        .first
    )


def _evaluate_upload(page, server) -> None:
    _open(page, f"{server}/evaluate", "Evaluate")
    _choose_baseline(page)
    page.locator('[data-testid="stRadio"]').filter(has_text="Data").get_by_text("Upload", exact=True).click()


def _run_evaluate_and_check(page, counts: dict[str, int], kind: str = "label images") -> None:
    n = len(counts)
    sync_api.expect(page.get_by_text(f"{n} image(s) with ground truth ({n} with {kind})")).to_be_visible()
    page.get_by_role("button", name="Evaluate", exact=True).click()
    sync_api.expect(_metric(page, "Images")).to_have_text(str(len(counts)), timeout=120_000)
    assert float(_metric(page, "F1").inner_text()) > 0.5  # labels read as the instances of these very images
    with page.expect_download() as info:
        page.get_by_role("button", name="Per-image CSV").click()
    table = pd.read_csv(info.value.path())
    assert _by_file_name(table) == counts


def _by_file_name(table: pd.DataFrame) -> dict[str, int]:
    """file name (a zip member's folders dropped) -> true count, from a downloaded table."""
    return {f.rsplit("/", 1)[-1]: t for f, t in zip(table["file"], table["true"], strict=True)}


def test_evaluate_same_name_labels_in_two_uploaders(page, server, labelled):
    root, counts = labelled
    _evaluate_upload(page, server)
    _uploader(page, "Images (or a zip)").set_input_files([str(root / "images" / n) for n in counts])
    # the page's answer to the images first: a second upload during that rerun was lost once (a loaded CI run)
    sync_api.expect(page.get_by_text(f"{len(counts)} image(s) uploaded", exact=False)).to_be_visible(timeout=60_000)
    _uploader(page, "Ground truth (or a zip)").set_input_files([str(root / "labels" / n) for n in counts])
    _run_evaluate_and_check(page, counts)
    sync_api.expect(page.get_by_text("/tmp")).to_have_count(0)
    # a laptop's 1024 x 768: the twelve tiles cut their figures to "0.…" six to a row; now they wrap
    size = page.viewport_size
    try:
        page.set_viewport_size({"width": 1024, "height": 768})
        page.wait_for_timeout(500)
        assert _cut_metric_text(page) == []
    finally:
        page.set_viewport_size(size)


def _cut_metric_text(page) -> list[str]:
    """The texts of metric tiles (label or value) cut short with an ellipsis."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMetric"] *')]
        .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflow !== 'visible')
        .map(e => e.textContent)""")


def test_evaluate_with_imagej_roi_sets(page, server, labelled, tmp_path):
    """Outlines drawn or found in Fiji, saved from the ROI Manager as ``<image>_RoiSet.zip``."""
    import cv2
    from test_groundtruth import _imagej_roi

    root, counts = labelled
    sets = []
    for name in counts:
        labels = np.asarray(Image.open(root / "labels" / name))
        rois = {}
        for k in range(1, int(labels.max()) + 1):
            contours, _ = cv2.findContours((labels == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            xy = max(contours, key=len)[:, 0, :] if contours else None
            if xy is not None:  # the outline through the edge pixels' corners, as ImageJ's traced ROIs run
                xs, ys = xy[:, 0].tolist(), xy[:, 1].tolist()
                rois[f"{k:04d}.roi"] = _imagej_roi(0, min(ys), min(xs), max(ys) + 1, max(xs) + 1, xs, ys)
        path = tmp_path / f"{name.removesuffix('.png')}_RoiSet.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in rois.items():
                zf.writestr(member, data)
        sets.append(str(path))
    _evaluate_upload(page, server)
    _uploader(page, "Images (or a zip)").set_input_files([str(root / "images" / n) for n in counts])
    sync_api.expect(page.get_by_text(f"{len(counts)} image(s) uploaded", exact=False)).to_be_visible(timeout=60_000)
    _uploader(page, "Ground truth (or a zip)").set_input_files(sets)
    _run_evaluate_and_check(page, counts, "ImageJ ROIs")


def test_evaluate_same_name_labels_in_a_zip(page, server, labelled):
    root, counts = labelled
    _evaluate_upload(page, server)
    _uploader(page, "Images (or a zip)").set_input_files(str(root / "both.zip"))
    _run_evaluate_and_check(page, counts)


def test_compare_on_uploaded_labelled_images(page, server, labelled):
    root, counts = labelled
    _open(page, f"{server}/compare", "Compare")
    page.locator('[data-testid="stRadio"]').filter(has_text="Images").get_by_text("Upload", exact=True).click()
    _uploader(page, "Images (or a zip)").set_input_files(str(root / "images.zip"))
    sync_api.expect(page.get_by_text("images.zip", exact=True).first).to_be_visible()  # taken, and its rerun over, before
    tb._idle(page)  # the next upload (one during that rerun was lost once, on a loaded CI run)
    _uploader(page, "Ground truth (optional; or a zip)").set_input_files(str(root / "labels.zip"))
    sync_api.expect(page.get_by_text("3 image(s) with ground truth (3 with label images)")).to_be_visible()
    run = page.get_by_role("button", name="Compare on 3 image(s)")
    sync_api.expect(run).to_be_enabled()
    run.click()
    download = page.get_by_role("button", name="Comparison CSV")
    sync_api.expect(download).to_be_visible(timeout=120_000)
    with page.expect_download() as info:
        download.click()
    table = pd.read_csv(info.value.path())
    assert _by_file_name(table) == counts
    assert table["true"].dtype.kind == "i", "whole counts written as 17, not 17.0"
    errors = [c for c in table.columns if c.startswith("error: ")]
    assert errors and all(table[c].notna().all() for c in errors)  # each configuration's error per image
