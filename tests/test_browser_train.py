"""Real-browser test of the Train page (Chromium against ``streamlit run``): dots by clicking, a fine-tune of
two steps, its result, and the new model on the Models page.

The server's weights folder holds one tiny untrained network, and its user models folder is a temporary one,
so the run takes seconds and writes nothing outside the test. Three 64 x 64 synthetic images: two come with
point CSVs, the third is dotted by clicking.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
import test_browser as tb
from PIL import Image

from cellcount.synthetic import make_synthetic

browser, page = tb.browser, tb.page
_open, _uploader, _number, _set_number, sync_api = tb._open, tb._uploader, tb._number, tb._set_number, tb.sync_api

pytestmark = pytest.mark.browser
SIDE = 64  # the images' size; the page shows them as wide as its column


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from cellcount.models import ModelCard, create_model, save_model

    weights = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    kwargs = {"base_width": 4, "depth": 2, "out_channels": 2, "head": "mask"}
    card = ModelCard(name="tiny-mask", architecture="unet", output_kind="mask", kwargs=kwargs, tile_size=128)
    save_model(create_model("unet", **kwargs), card, weights / "tiny-mask")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CELLCOUNT_MODELS_DIR", str(tmp_path_factory.mktemp("user-models")))
        with tb._streamlit(weights, tmp_path_factory.mktemp("streamlit") / "server.log") as url:
            yield url


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """(paths of three images, paths of the point CSVs of the first two)."""
    root = tmp_path_factory.mktemp("train-images")
    pictures, csvs = [], []
    for k in range(3):
        s = make_synthetic((64, 64), rng=70 + k, n_cells=4 + k, radius_px=(4.0, 6.0))
        path = root / f"field_{k}.png"
        Image.fromarray(s.image).save(path)
        pictures.append(str(path))
        if k < 2:
            rows = "".join(f"{c:.1f},{r:.1f}\n" for r, c in s.centroids)
            (root / f"field_{k}_points.csv").write_text("x,y\n" + rows)
            csvs.append(str(root / f"field_{k}_points.csv"))
    return pictures, csvs


def _ready(picture) -> None:
    """Wait until the component has drawn its image and listens for clicks (a click before that is lost)."""
    import time

    deadline = time.monotonic() + 60
    while not picture.evaluate("e => e.onclick !== null && e.complete && e.naturalWidth > 0"):
        assert time.monotonic() < deadline, "the click component never became ready"
        time.sleep(0.2)


def _dotted(page):
    return page.locator('[data-testid="stMetric"]').filter(has_text="Cells dotted").locator(
        '[data-testid="stMetricValue"]')


def test_dot_by_clicking_train_and_find_the_model(page, server, images, tmp_path):
    pictures, csvs = images
    _open(page, f"{server}/train", "Train")
    _uploader(page, "Images (or a zip)").set_input_files(pictures)
    # taken, and its rerun over, before the next upload (one during that rerun was lost once, on a loaded CI run)
    sync_api.expect(page.get_by_text(pictures[0].rsplit("/", 1)[-1], exact=True).first).to_be_visible()
    tb._idle(page)
    _uploader(page, "Annotations").set_input_files(csvs)
    # read and matched in a rerun that took over the default 5 s once, on a CI run sharing its 2 cores
    sync_api.expect(page.get_by_text(
        "2 image(s) with ground truth (2 with dots); 1 uploaded without annotations (dot them below to use them).")).to_be_visible(
        timeout=60_000)

    # the third image, which has no annotation file, gets three dots by clicking; clicking one removes it
    combo = page.get_by_role("combobox", name="Image to annotate")
    frames = page.locator('iframe[title*="streamlit_image_coordinates"]')
    picture = frames.content_frame.locator("#image")
    for attempt in range(3):  # a component iframe that never loads (seen ~1 in 10 runs on a loaded machine)
        combo.click()      # is replaced by choosing another image and this one again
        page.get_by_role("option", name="field_1.png" if attempt else "field_2.png").click()
        if attempt:
            combo.click()
            page.get_by_role("option", name="field_2.png").click()
        sync_api.expect(_dotted(page)).to_have_text("0")
        sync_api.expect(frames).to_have_count(1)  # the first image's component leaves when field_2's arrives
        try:
            sync_api.expect(picture).to_be_visible(timeout=40_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    for n, (row, col) in enumerate([(10, 12), (40, 30), (52, 50)], start=1):
        _ready(picture)
        zoom = picture.bounding_box()["width"] / SIDE  # screen pixels per image pixel
        picture.click(position={"x": (col + 0.5) * zoom, "y": (row + 0.5) * zoom})
        sync_api.expect(_dotted(page)).to_have_text(str(n))
    _ready(picture)
    picture.click(position={"x": (30 + 0.8) * zoom, "y": (40 + 0.2) * zoom})  # on the second dot
    sync_api.expect(_dotted(page)).to_have_text("2")
    with page.expect_download() as info:
        page.get_by_role("button", name="Points CSV").click()
    path = tmp_path / "points.csv"
    info.value.save_as(path)
    assert info.value.suggested_filename == "field_2_points.csv"
    assert pd.read_csv(path)[["x", "y"]].values.tolist() == [[12, 10], [50, 52]]
    sync_api.expect(page.get_by_text("3 annotated image(s).")).to_be_visible()

    # a two-step fine-tune
    name = page.get_by_role("textbox", name="Name of the new model")
    name.fill("browser-cells")
    name.press("Enter")
    page.get_by_text("Advanced", exact=True).click()
    _set_number(page, "Fixed number of training steps", 2)
    start = page.get_by_role("button", name="Start fine-tuning")
    sync_api.expect(start).to_be_enabled()
    tb._idle(page)  # a click while the steps' rerun still runs can be lost (seen once in CI on a slow host)
    start.click()
    outcome = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile("is saved in|failed|cancelled"))
    sync_api.expect(outcome).to_be_visible(timeout=120_000)
    assert "browser-cells is saved in" in outcome.inner_text(), outcome.inner_text()
    table = page.locator('[data-testid="stDataFrame"]').last
    sync_api.expect(table).to_be_visible()
    # one held-out image: no interval, said in words (not "nan")
    sync_api.expect(page.get_by_text(re.compile("Only 1 held-out image\\(s\\): too few for an interval"))).to_be_visible()

    # it is on the Models page, with its card
    page.get_by_test_id("stSidebarNav").get_by_text("Models", exact=True).click()
    sync_api.expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible()
    sync_api.expect(page.get_by_role("table").filter(has_text="browser-cells").first).to_be_visible()


def test_a_large_image_fits_its_column_and_every_part_can_be_dotted(page, server, tmp_path):
    """A 1600 px wide image was drawn 900 px wide in a column of about 700: its right part could be neither seen
    nor clicked, so its cells were taught as background."""
    import numpy as np

    path = tmp_path / "wide_field.png"
    Image.fromarray(np.full((1200, 1600), 40, np.uint8)).save(path)
    page.set_viewport_size({"width": 1024, "height": 768})
    _open(page, f"{server}/train", "Train")
    _uploader(page, "Images (or a zip)").set_input_files([str(path)])
    frame = page.locator('iframe[title*="streamlit_image_coordinates"]')
    picture = frame.content_frame.locator("#image")
    sync_api.expect(picture).to_be_visible(timeout=60_000)
    _ready(picture)
    shown, box = picture.bounding_box(), frame.bounding_box()
    assert shown["width"] <= box["width"] + 1 and shown["x"] + shown["width"] <= box["x"] + box["width"] + 1
    picture.click(position={"x": shown["width"] - 2, "y": shown["height"] / 2})  # the right edge
    sync_api.expect(_dotted(page)).to_have_text("1")
    with page.expect_download() as info:
        page.get_by_role("button", name="Points CSV").click()
    info.value.save_as(tmp_path / "p.csv")
    x, y = pd.read_csv(tmp_path / "p.csv")[["x", "y"]].values[0]
    assert x >= 1600 - 2 * 1600 / shown["width"] - 1 and abs(y - 600) <= 1600 / shown["width"] + 1
