"""Bad and odd inputs through the library, the CLI and the app (issue #6).

The cases live in ``tests/bad_inputs.py``. Every bad input must give a typed error from
:mod:`cellcount.errors` with a useful message (library), an ``error`` row with a reason and exit code 1
(CLI), or a message on the page (app); odd-but-valid inputs must be counted. Nothing else in a batch
may be lost.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bad_inputs import (
    BLOB_SHAPE,
    GT_IMAGE_SHAPE,
    N_BLOBS,
    PICKLE_ENV_FLAG,
    TINY_NET_KWARGS,
    BadInput,
    blobs,
    blobs_rgb,
    cases,
    jpeg_bomb,
    png16_rgb_bomb,
    png_bomb,
    png_bytes,
    tiff_bomb,
    write_model_folder,
)

import cellcount as cc
from cellcount.batch import count_many, counts_frame
from cellcount.errors import CellcountError, GroundTruthError, ImageTooLargeError
from cellcount.groundtruth import load_labelled_folder, read_ground_truth
from cellcount.io import DEFAULT_MAX_BYTES, iter_zip_images, read_image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
GOOD_SAMPLES = ("s01_sparse_small.png", "s05_16bit.tif")

IMAGE_CASES = cases("image")
GT_CASES = cases("ground_truth")
ZIP_CASES = cases("zip")
WEIGHTS_CASES = cases("weights")


def _ids(table: list[BadInput]) -> list[str]:
    return [c.id for c in table]


@pytest.fixture(scope="module")
def otsu() -> cc.models.CountModel:
    return cc.load_model("classical-otsu")


@pytest.fixture(scope="module")
def tiny_net() -> cc.models.NetModel:
    import torch

    from cellcount.models import ModelCard, NetModel, create_model

    torch.manual_seed(0)
    net = create_model("unet", **TINY_NET_KWARGS)
    card = ModelCard(name="tiny-test-unet", architecture="unet", output_kind="mask", kwargs=dict(TINY_NET_KWARGS),
                     tile_size=256, tile_overlap=16, extra={"fast_tile_size": 256})
    return NetModel(net, card)


def _check_error(err: BaseException, case: BadInput) -> None:
    assert isinstance(err, case.error), f"{case.id}: expected {case.error.__name__}, got {type(err).__name__}: {err}"
    assert isinstance(err, CellcountError)
    message = str(err)
    assert message.strip(), f"{case.id}: empty error message"
    assert case.match.lower() in message.lower(), f"{case.id}: {case.match!r} not in message {message!r}"
    assert "object at 0x" not in message, f"{case.id}: message shows a memory address: {message!r}"


# --------------------------------------------------------------------------------------------------
# library: images
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source_kind", ["bytes", "path", "filelike"])
@pytest.mark.parametrize("case", IMAGE_CASES, ids=_ids(IMAGE_CASES))
def test_library_read_image(case: BadInput, source_kind: str, tmp_path: Path) -> None:
    data = case.make()
    if source_kind == "bytes":
        source = data
    elif source_kind == "path":
        source = tmp_path / case.filename
        source.write_bytes(data)
    else:
        source = io.BytesIO(data)
        source.read()  # an upload that was read before must still work from the start
    if case.error is not None:
        with pytest.raises(CellcountError) as info:
            read_image(source, **case.read_kwargs)
        _check_error(info.value, case)
        return
    image = read_image(source, **case.read_kwargs)
    assert image.ndim in (2, 3)
    if case.expected_shape is not None:
        assert image.shape == case.expected_shape


@pytest.mark.parametrize("case", [c for c in IMAGE_CASES if c.valid], ids=_ids([c for c in IMAGE_CASES if c.valid]))
def test_library_odd_images_are_counted(case: BadInput, otsu) -> None:
    image = read_image(case.make(), **case.read_kwargs)
    before = image.copy()
    result = cc.count_image(image, otsu, case.count_params)
    assert isinstance(result.count, int) and result.count >= 0
    if case.expected_count is not None:
        assert result.count == case.expected_count
    assert result.labels is not None and result.labels.dtype == np.int32
    assert result.labels.shape == image.shape[:2]
    assert result.labels.max() == result.count
    assert len(result.objects) == result.count
    np.testing.assert_array_equal(image, before)  # input not mutated


@pytest.mark.parametrize(
    "case",
    [c for c in IMAGE_CASES if c.valid and c.count_params is None],
    ids=_ids([c for c in IMAGE_CASES if c.valid and c.count_params is None]),
)
def test_library_odd_images_through_a_network(case: BadInput, tiny_net) -> None:
    """The tiled forward pass copes with 1 x 1, 100000 x 1, NaN and constant images too."""
    image = read_image(case.make(), **case.read_kwargs)
    result = cc.count_image(image, tiny_net, measure=False)
    assert result.count >= 0
    assert result.probability.shape == image.shape[:2]
    assert np.isfinite(result.probability).all()


def test_exif_rotation_is_applied() -> None:
    (case,) = [c for c in IMAGE_CASES if c.id == "exif-rotated-jpeg"]
    image = read_image(case.make())
    expected = np.rot90(blobs_rgb(), k=-1)
    assert np.abs(image.astype(int) - expected.astype(int)).mean() < 4  # JPEG noise only


def test_library_batch_keeps_going(otsu) -> None:
    """count_many over every image case plus two good samples: bad ones become rows, the rest count."""
    items = [(c.filename, c.make()) for c in IMAGE_CASES if c.cli and c.id != "more-than-65535-objects"]
    items += [(name, (SAMPLES / name).read_bytes()) for name in GOOD_SAMPLES]
    seen: list[str] = []
    results = list(count_many(items, otsu, progress=lambda done, total: seen.append(f"{done}/{total}")))
    assert [r.name for r in results] == [name for name, _ in items]
    assert seen[-1] == f"{len(items)}/{len(items)}"
    by_name = {r.name: r for r in results}
    for case in IMAGE_CASES:
        if case.filename not in by_name:
            continue
        item = by_name[case.filename]
        if case.valid:
            assert item.status == "ok", item.reason
            if case.expected_count is not None:
                assert item.result.count == case.expected_count
        else:
            assert item.status == "error" and item.result is None
            # the message alone (its type is checked where the library raises it): a class name means nothing to a user
            assert item.reason.startswith(f"{case.filename}: ") and case.error.__name__ not in item.reason, item.reason
            assert case.match.lower() in item.reason.lower()
    for name in GOOD_SAMPLES:
        direct = cc.count_image(read_image(SAMPLES / name), otsu)
        assert by_name[name].status == "ok" and by_name[name].result.count == direct.count
    df = counts_frame(results)
    assert len(df) == len(items) and set(df["status"]) == {"ok", "error"}


def test_pixel_cap_is_exact_and_configurable() -> None:
    data = png_bytes(np.zeros((100, 100), np.uint8))
    assert read_image(data, max_pixels=100 * 100).shape == (100, 100)
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        read_image(data, max_pixels=100 * 100 - 1)
    assert read_image(data, max_bytes=len(data)).shape == (100, 100)
    with pytest.raises(ImageTooLargeError, match="above the cap"):
        read_image(data, max_bytes=len(data) - 1)


@pytest.mark.parametrize("make", [png_bomb, png16_rgb_bomb, tiff_bomb, jpeg_bomb], ids=["png", "png16-rgb", "tiff", "jpeg"])
def test_bombs_are_refused_from_the_header_cheaply(make) -> None:
    """A 30000 x 30000 bomb is a tiny file refused before decoding: fast and without a big allocation.

    tracemalloc sees numpy's allocations, so decoding even one plane (900 MB) would show up.
    """
    data = make()
    assert len(data) < 2000
    read_image(png_bytes(blobs()))  # warm up the decoders
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ImageTooLargeError, match="30,000|900,000,000"):
            read_image(data)
        _, peak = tracemalloc.get_traced_memory()
        with pytest.raises(ImageTooLargeError) as refused:
            read_image(data)
        # the size the file declares and the one limit that refuses it, not Pillow's own message beside ours
        assert "exceeds limit" not in str(refused.value) and str(refused.value).count(" pixels") <= 2
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0
    assert peak < 20 * 2**20, f"refusing the bomb allocated {peak / 2**20:.0f} MB"


# --------------------------------------------------------------------------------------------------
# library: ground truth
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", GT_CASES, ids=_ids(GT_CASES))
def test_library_ground_truth(case: BadInput, tmp_path: Path) -> None:
    path = tmp_path / case.filename
    path.write_bytes(case.make())
    expected_shape = case.read_kwargs.get("expected_shape", GT_IMAGE_SHAPE)
    if case.error is not None:
        with pytest.raises(CellcountError) as info:
            read_ground_truth(path, expected_shape=expected_shape)
        _check_error(info.value, case)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gt = read_ground_truth(path, expected_shape=expected_shape)
    assert gt.count == case.expected_count
    if case.warning is not None:
        assert gt.kind == "mask"
        msgs = [str(w.message) for w in caught if issubclass(w.category, case.warning)]
        assert msgs and "binary mask" in msgs[0] and "touching cells are merged" in msgs[0]
    else:
        assert gt.kind == "labels" and gt.labels.dtype == np.int32


def test_labelled_folder_names_the_bad_ground_truth(tmp_path: Path) -> None:
    """A wrong-shape label image in an evaluation folder: the error names that file."""
    (tmp_path / "a.png").write_bytes(png_bytes(blobs()))
    (tmp_path / "b.png").write_bytes(png_bytes(blobs()))
    good = np.zeros(BLOB_SHAPE, np.uint16)
    good[5:10, 5:10] = 1
    from bad_inputs import tiff_bytes

    (tmp_path / "a_labels.tif").write_bytes(tiff_bytes(good))
    (tmp_path / "b_labels.tif").write_bytes(tiff_bytes(good[:32, :32]))
    with pytest.raises(GroundTruthError, match="b_labels.tif.*does not match"):
        load_labelled_folder(tmp_path)


# --------------------------------------------------------------------------------------------------
# library: zip uploads
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ZIP_CASES, ids=_ids(ZIP_CASES))
def test_library_zip(case: BadInput, otsu) -> None:
    data = case.make()
    if case.error is not None:
        with pytest.raises(CellcountError) as info:
            list(iter_zip_images(data))
        _check_error(info.value, case)
        return
    members = list(iter_zip_images(data))
    images = [(name, blob) for name, blob, reason in members if reason is None]
    skipped = {name: reason for name, blob, reason in members if reason is not None}
    assert sorted(name for name, _ in images) == sorted(case.zip_ok)
    assert set(case.zip_skipped) <= set(skipped)
    for reason in skipped.values():
        assert ("unsafe" in reason) or ("not an image" in reason), reason
    for name in ("../escape.png", "/etc/absolute.png", "C:/windows/drive.png", "plate1/../../up_two.png"):
        assert "unsafe path" in skipped[name]
    assert not any("MACOSX" in n for n, _, _ in members)
    # the images of the zip go through a batch: the bad one is an error row, the others are counted
    rows = {it.name: it for it in count_many(images, otsu)}
    assert rows["top.png"].status == "ok" and rows["top.png"].result.count == N_BLOBS
    assert rows["plate1/well_a/deep/nested.png"].result.count == N_BLOBS
    assert rows["plate1/html_renamed.png"].status == "error"
    assert "not an image" in rows["plate1/html_renamed.png"].reason


def test_zip_file_and_byte_budgets() -> None:
    good = png_bytes(blobs())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k in range(4):
            zf.writestr(f"img{k}.png", good)
    data = buf.getvalue()
    out = list(iter_zip_images(data, max_files=2))
    assert [r is None for _, _, r in out] == [True, True, False, False]
    assert "more than 2 images" in out[2][2]
    out = list(iter_zip_images(data, max_bytes=len(good) + 1))
    assert [r is None for _, _, r in out] == [True, False, False, False]
    assert "expands beyond the cap" in out[1][2] and "max_bytes" in out[1][2]


def test_zip_member_that_lies_about_its_size_is_bounded() -> None:
    """A member whose central directory claims 100 bytes but inflates to 8 MB: read stops at the claim."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.png", b"\x00" * (8 << 20))
        zf.writestr("good.png", png_bytes(blobs()))
    data = bytearray(buf.getvalue())
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x01\x02"))  # the first central record
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")  # uncompressed size
    tracemalloc.start()
    try:
        out = {name: (blob, reason) for name, blob, reason in iter_zip_images(bytes(data))}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out["bomb.png"][0] is None and "cannot extract" in out["bomb.png"][1]
    assert out["good.png"][1] is None
    assert peak < 4 << 20


# --------------------------------------------------------------------------------------------------
# library: weights
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", WEIGHTS_CASES, ids=_ids(WEIGHTS_CASES))
def test_library_weights(case: BadInput, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(PICKLE_ENV_FLAG, raising=False)
    folder = tmp_path / "bad-model"
    write_model_folder(case, folder)
    with pytest.raises(CellcountError) as info:
        cc.load_model(folder)
    _check_error(info.value, case)
    assert PICKLE_ENV_FLAG not in os.environ, "a pickle payload was executed while loading weights"


def test_good_weights_folder_loads(tmp_path: Path) -> None:
    """Control for the weights cases: the same folder with the untouched weights loads."""
    from bad_inputs import tiny_net_weights

    case = BadInput("good", "weights.safetensors", tiny_net_weights, None, target="weights")
    write_model_folder(case, tmp_path / "good-model")
    model = cc.load_model(tmp_path / "good-model")
    assert model.name == "good-model"


@pytest.mark.parametrize("card_text", ["{not json", '{"name": "x"}'], ids=["invalid-json", "missing-keys"])
def test_broken_card_is_a_typed_error(card_text: str, tmp_path: Path) -> None:
    (tmp_path / "card.json").write_text(card_text)
    with pytest.raises(CellcountError):
        cc.load_model(tmp_path)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cellcount", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_cli_bad_files_in_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    expected: dict[str, BadInput | None] = {}
    for case in IMAGE_CASES:
        if case.cli:
            (folder / case.filename).write_bytes(case.make())
            expected[case.filename] = case
    # a file above the 1 GiB byte cap, as a sparse file (no disk space used)
    with open(folder / "huge_upload.tif", "wb") as fh:
        fh.truncate(DEFAULT_MAX_BYTES + 1)
    expected["huge_upload.tif"] = BadInput("huge", "huge_upload.tif", bytes, ImageTooLargeError, "above the cap")
    for name in GOOD_SAMPLES:
        (folder / name).write_bytes((SAMPLES / name).read_bytes())
        expected[name] = None
    (folder / "README.txt").write_text("not an image: ignored by the folder walk")
    out_csv = tmp_path / "out" / "counts.csv"
    proc = _cli("count", str(folder), "--model", "classical-otsu", "--out", str(out_csv), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # some files failed
    assert "Traceback" not in proc.stderr
    df = pd.read_csv(out_csv)
    assert len(df) == len(expected)
    df["name"] = [Path(f).name for f in df["file"]]
    assert sorted(df["name"]) == sorted(expected)
    for _, row in df.iterrows():
        case = expected[row["name"]]
        if case is None or case.valid:
            assert row["status"] == "ok", (row["name"], row["reason"])
            assert row["count"] >= 0
            if case is not None and case.expected_count is not None and case.count_params is None:
                assert row["count"] == case.expected_count, row["name"]
        else:
            assert row["status"] == "error", row["name"]
            # the message alone (its type is checked where the library raises it)
            assert case.error.__name__ not in row["reason"], row["reason"]
            assert case.match.lower() in row["reason"].lower(), row["reason"]
            assert row["name"] in proc.stderr  # listed as failed
    otsu = cc.load_model("classical-otsu")
    for name in GOOD_SAMPLES:
        row = df[df["name"] == name].iloc[0]
        assert row["count"] == cc.count_image(read_image(SAMPLES / name), otsu).count
    n_err = sum(1 for c in expected.values() if c is not None and not c.valid)
    assert f"{n_err} failed" in proc.stdout
    settings = json.loads(out_csv.with_suffix(".settings.json").read_text())
    assert settings["model"] == "classical-otsu"


def _main(args: list[str], capsys) -> tuple[int, str]:
    from cellcount.cli import main

    try:
        code = main(args)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(blobs()))
    return folder


def test_cli_all_good_exits_0(good_folder: Path, tmp_path: Path, capsys) -> None:
    code, err = _main(["count", str(good_folder), "--model", "classical-otsu", "--out", str(tmp_path / "c.csv"),
                       "--no-progress", "-q"], capsys)
    assert code == 0, err
    assert pd.read_csv(tmp_path / "c.csv")["count"].tolist() == [N_BLOBS]


def _usage_fixtures(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "unknown.json").write_text('{"params": {"thresold": 0.4}}')
    (tmp_path / "empty").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "a_labels.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "card.json").write_text("{not json")
    return {"bad_json": str(tmp_path / "bad.json"), "unknown_key": str(tmp_path / "unknown.json"),
            "missing_json": str(tmp_path / "missing.json"), "missing_path": str(tmp_path / "nowhere"),
            "empty_dir": str(tmp_path / "empty"), "only_gt": str(tmp_path / "gt"),
            "broken_card": str(tmp_path / "broken-model")}


# (paths or None for the good folder, options, substring of the message on stderr)
USAGE_ERRORS = {
    "unknown-model": (None, ["--model", "no-such-model"], "valid models"),
    "threshold-range": (None, ["--model", "classical-otsu", "--threshold", "7"], "threshold"),
    "negative-area": (None, ["--model", "classical-otsu", "--min-area-px", "-3"], "min_area_px"),
    "settings-bad-json": (None, ["--model", "classical-otsu", "--settings", "{bad_json}"], "not valid json"),
    "settings-unknown-key": (None, ["--model", "classical-otsu", "--settings", "{unknown_key}"], "unknown parameters"),
    "settings-missing": (None, ["--model", "classical-otsu", "--settings", "{missing_json}"], "no such file"),
    "path-missing": (["{missing_path}"], ["--model", "classical-otsu"], "does not exist"),
    "empty-folder": (["{empty_dir}"], ["--model", "classical-otsu"], "no image files"),
    "only-ground-truth": (["{only_gt}"], ["--model", "classical-otsu"], "every file given is ground truth"),
    "out-is-a-folder": (None, ["--model", "classical-otsu", "--out", "{empty_dir}"], "is a folder"),
    "objects-is-a-folder": (None, ["--model", "classical-otsu", "--objects", "{empty_dir}"], "is a folder"),
    "labels-dir-is-a-file": (None, ["--model", "classical-otsu", "--labels-dir", "{bad_json}"], "not a folder"),
    "out-under-a-file": (None, ["--model", "classical-otsu", "--out", "{bad_json}/c.csv"], "output folder"),
    "card-not-json": (None, ["--model", "{broken_card}"], "expecting"),
    "threshold-not-a-number": (None, ["--model", "classical-otsu", "--threshold", "high"], "invalid float"),
}


@pytest.mark.parametrize("key", list(USAGE_ERRORS))
def test_cli_usage_errors_exit_2(key: str, good_folder: Path, tmp_path: Path, capsys) -> None:
    paths, options, expected = USAGE_ERRORS[key]
    fx = _usage_fixtures(tmp_path)
    paths = [p.format(**fx) for p in paths] if paths else [str(good_folder)]
    options = [o.format(**fx) for o in options]
    out = [] if "--out" in options else ["--out", str(tmp_path / "c.csv")]
    code, err = _main(["count", *paths, *options, *out, "--no-progress"], capsys)
    assert code == 2, err
    assert expected.lower() in err.lower(), err
    assert "Traceback" not in err
    assert not (tmp_path / "c.csv").exists()


def test_cli_labels_of_same_named_images_are_all_kept(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    for sub in ("plate1", "plate2"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "a.png").write_bytes(png_bytes(blobs()))
    (folder / "a.tif").write_bytes(png_bytes(blobs()))  # PNG bytes under a .tif name: content decides
    code, err = _main(["count", str(folder), "--model", "classical-otsu", "--out", str(tmp_path / "c.csv"),
                       "--labels-dir", str(tmp_path / "labels"), "--no-progress", "-q"], capsys)
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "labels").glob("*.tif"))
    assert written == ["a_2_labels.tif", "a_3_labels.tif", "a_labels.tif"]
    assert sorted((tmp_path / "labels").glob("*.csv")) == [tmp_path / "labels" / "labels_index.csv"]
    for path in (tmp_path / "labels").glob("*.tif"):
        assert read_image(path).max() == N_BLOBS


@pytest.mark.parametrize("case", WEIGHTS_CASES, ids=_ids(WEIGHTS_CASES))
def test_cli_bad_weights_exit_2(case: BadInput, good_folder: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(PICKLE_ENV_FLAG, raising=False)
    write_model_folder(case, tmp_path / "model")
    code, err = _main(["count", str(good_folder), "--model", str(tmp_path / "model"), "--out",
                       str(tmp_path / "c.csv"), "--no-progress"], capsys)
    assert code == 2
    assert case.match.lower() in err.lower()
    assert PICKLE_ENV_FLAG not in os.environ


# --------------------------------------------------------------------------------------------------
# app (streamlit.testing.v1.AppTest, uploads injected with file_uploader.set_value)
# --------------------------------------------------------------------------------------------------
APP_ENTRY = ROOT / "streamlit_app.py"
BATCH_PAGE = ROOT / "pages" / "batch.py"
COUNT_PAGE = ROOT / "pages" / "count.py"


def _app(page: Path, monkeypatch, **state):
    """The app opened on ``page`` through streamlit_app.py (as the app tests do), baseline model selected."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(ROOT))  # the pages import `pages._shared`
    at = AppTest.from_file(str(APP_ENTRY), default_timeout=180)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(str(page.relative_to(ROOT)))  # before the first run: skips rendering the home page
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _widget(elements, key: str):
    return elements(key=key)  # a KeyError here: the page lost the widget this test drives


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _upload(case: BadInput) -> tuple[str, bytes, str]:
    return case.filename, case.make(), "application/octet-stream"


@pytest.mark.slow
def test_app_batch_page_lists_bad_uploads_and_counts_the_rest(monkeypatch, count_batch) -> None:
    at = _app(BATCH_PAGE, monkeypatch, batch_model=cc.models.CLASSICAL_NAME)
    files = [_upload(c) for c in IMAGE_CASES if c.cli and c.id != "more-than-65535-objects"]
    files += [(name, (SAMPLES / name).read_bytes(), "image/png") for name in GOOD_SAMPLES]
    (zip_case,) = [c for c in ZIP_CASES if c.id == "zip-nested-nonimages-traversal"]
    files.append(("plates.zip", zip_case.make(), "application/zip"))
    files.append(("broken.zip", b"PK\x03\x04 not really a zip", "application/zip"))
    _widget(at.file_uploader, "batch_files").set_value(files).run()
    count_batch(at)
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    shown = " ".join(m.value for m in at.markdown)
    rows = {str(f): row for f, row in zip(table["file"], table.to_dict("records"))}
    for case in IMAGE_CASES:
        if case.filename not in rows:
            continue
        row = rows[case.filename]
        if case.valid:
            assert row["status"] == "ok", row
        else:
            assert row["status"] == "error" and case.match.lower() in row["reason"].lower(), row
            assert case.error.__name__ not in row["reason"], row
            assert f"`{case.filename}`" in shown  # listed on the page with its reason
    for name in GOOD_SAMPLES:
        assert rows[name]["status"] == "ok"
    assert rows["plates.zip/plate1/well_a/deep/nested.png"]["count"] == N_BLOBS
    assert rows["plates.zip/../escape.png"]["status"] == "error"
    assert "not a readable zip" in rows["broken.zip"]["reason"]
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Images counted"]) == sum(r["status"] == "ok" for r in rows.values())
    # the page keeps working: a second batch with one good image
    _widget(at.file_uploader, "batch_files").set_value([files[-3]]).run()
    count_batch(at)
    assert not at.exception
    assert at.dataframe[0].value["status"].tolist() == ["ok"]


@pytest.mark.slow
def test_app_count_page_shows_errors_and_keeps_working(monkeypatch, otsu) -> None:
    at = _app(COUNT_PAGE, monkeypatch, count_model=cc.models.CLASSICAL_NAME)
    _widget(at.radio, "count_source").set_value("Upload").run()
    for case in [c for c in IMAGE_CASES if not c.valid and c.cli]:
        _widget(at.file_uploader, "count_upload").set_value(_upload(case)).run()
        assert not at.exception, (case.id, [e.value for e in at.exception])
        errors = " ".join(e.value for e in at.error)
        assert case.match.lower() in errors.lower(), (case.id, errors)
    name = GOOD_SAMPLES[0]
    _widget(at.file_uploader, "count_upload").set_value((name, (SAMPLES / name).read_bytes(), "image/png")).run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    expected = cc.count_image(read_image(SAMPLES / name), otsu)
    assert at.selectbox(key="count_model").value == cc.models.CLASSICAL_NAME
    assert int(metrics["Count"]) == expected.count


@pytest.mark.slow
def test_app_count_page_says_a_stack_is_counted_from_one_plane(monkeypatch) -> None:
    """A z-stack uploaded to the Count page: a warning says only its first plane is counted."""
    import tifffile

    stack = np.zeros((3, 32, 32), np.uint8)
    stack[:, 8:14, 8:14] = 200
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, imagej=True, metadata={"axes": "ZYX"})
    at = _app(COUNT_PAGE, monkeypatch, count_model=cc.models.CLASSICAL_NAME)
    _widget(at.radio, "count_source").set_value("Upload").run()
    _widget(at.file_uploader, "count_upload").set_value(("stack.tif", buf.getvalue(), "image/tiff")).run()
    assert not at.exception and not at.error
    assert any("3 z-planes; only the first was read" in w.value for w in at.warning), [w.value for w in at.warning]
    # the badge beside the count agrees with the warning (never "No warning sign" next to it)
    badges = [m.value for m in at.markdown if "badge[" in m.value]
    assert len(badges) == 1 and "Check this image" in badges[0], badges
    assert any("3 z-planes" in c.value for c in at.caption if "This count may be wrong" in c.value)


@pytest.mark.slow
def test_app_count_page_counts_the_plane_or_projection_chosen(monkeypatch) -> None:
    """A z-stack whose nuclei are in focus on different planes: the 'Plane' choice counts one plane or the
    maximum projection (all of them), without the one-plane flag; a file with one plane offers no choice."""
    import tifffile

    stack = np.zeros((3, 48, 48), np.uint8)
    for z, (y, x) in enumerate([(6, 6), (6, 30), (30, 6)]):
        stack[z, y:y + 10, x:x + 10] = 200  # one nucleus per plane
    stack[2, 30:40, 30:40] = 200  # and a second on the last
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, imagej=True, metadata={"axes": "ZYX"})
    at = _app(COUNT_PAGE, monkeypatch, count_model=cc.models.CLASSICAL_NAME)
    _widget(at.radio, "count_source").set_value("Upload").run()
    _widget(at.file_uploader, "count_upload").set_value(("stack.tif", buf.getvalue(), "image/tiff")).run()
    plane = _widget(at.selectbox, "count_plane")
    assert plane.value == "first" and int(_metric(at, "Count")) == 1  # the first plane, flagged
    assert any("z-plane" in c.value for c in at.caption)
    plane.set_value("max").run()
    assert not at.exception and not at.error
    assert int(_metric(at, "Count")) == 4 and not at.warning
    assert any("stack.tif" in m.value and "maximum projection" in m.value for m in at.markdown)
    badges = [m.value for m in at.markdown if "badge[" in m.value]
    # flagged only as the baseline flags every count (no calibrated rule), no longer for the plane
    assert len(badges) == 1 and not any("z-plane" in c.value for c in at.caption), [c.value for c in at.caption]
    assert any("no calibrated quality flag" in c.value for c in at.caption)
    _widget(at.selectbox, "count_plane").set_value(2).run()
    assert int(_metric(at, "Count")) == 2 and not at.warning
    # a settings file saved with the projection (the Settings JSON download, the CLI's) chooses it again
    from pages._widgets import settings_json

    saved = settings_json(cc.models.CLASSICAL_NAME, {}, "max").encode()
    assert json.loads(saved)["plane"] == "max" and "plane" not in json.loads(settings_json("m", {}))
    _widget(at.file_uploader, "count_settings_file").set_value(("s.json", saved, "application/json")).run()
    assert _widget(at.selectbox, "count_plane").value == "max" and int(_metric(at, "Count")) == 4
    assert any("maximum projection" in m.value for m in at.success), [m.value for m in at.success]
    # the choice is the session's: Batch starts from it, and Count has it again after a visit to Batch
    at.switch_page("pages/batch.py").run()
    assert _widget(at.selectbox, "batch_plane").value == "max"
    _widget(at.selectbox, "batch_plane").set_value("first").run()
    at.switch_page("pages/count.py").run()
    _widget(at.radio, "count_source").set_value("Upload").run()
    _widget(at.file_uploader, "count_upload").set_value(("stack.tif", buf.getvalue(), "image/tiff")).run()
    assert _widget(at.selectbox, "count_plane").value == "first" and int(_metric(at, "Count")) == 1
    _widget(at.selectbox, "count_plane").set_value("max").run()
    at.switch_page("pages/batch.py").run()
    at.switch_page("pages/count.py").run()
    _widget(at.radio, "count_source").set_value("Upload").run()
    _widget(at.file_uploader, "count_upload").set_value(("stack.tif", buf.getvalue(), "image/tiff")).run()
    assert _widget(at.selectbox, "count_plane").value == "max" and int(_metric(at, "Count")) == 4
    # another stack with more planes: the projection chosen for the last one stays chosen
    _widget(at.selectbox, "count_plane").set_value("max").run()
    deeper = io.BytesIO()
    tifffile.imwrite(deeper, np.concatenate([stack, stack[:2]]), imagej=True, metadata={"axes": "ZYX"})
    _widget(at.file_uploader, "count_upload").set_value(("deeper.tif", deeper.getvalue(), "image/tiff")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _widget(at.selectbox, "count_plane").value == "max" and int(_metric(at, "Count")) == 4
    _widget(at.selectbox, "count_plane").set_value(4).run()  # a plane the next file does not have
    _widget(at.file_uploader, "count_upload").set_value(("stack.tif", buf.getvalue(), "image/tiff")).run()
    assert not at.exception and not at.error and _widget(at.selectbox, "count_plane").value == "first"
    one = io.BytesIO()
    tifffile.imwrite(one, stack[0])
    _widget(at.file_uploader, "count_upload").set_value(("one.tif", one.getvalue(), "image/tiff")).run()
    assert not any(s.key == "count_plane" for s in at.selectbox) and int(_metric(at, "Count")) == 1


@pytest.mark.slow
def test_app_count_page_says_a_merge_of_stains_was_averaged(monkeypatch) -> None:
    """An RGB merge (nuclei in blue, cell bodies in green) counted with the default "all channels": the
    quality caption says the stains were mixed and to choose the nuclei's channel."""
    import tifffile

    yy, xx = np.mgrid[:64, :64]
    rgb = np.zeros((64, 64, 3), np.uint8)
    for cy, cx in ((16, 16), (16, 48), (48, 16), (48, 48)):
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        rgb[..., 1] += np.uint8(120) * (d2 <= 10**2)
        rgb[..., 2] += np.uint8(200) * (d2 <= 3**2)
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb, photometric="rgb")
    at = _app(COUNT_PAGE, monkeypatch, count_model=cc.models.CLASSICAL_NAME)
    _widget(at.radio, "count_source").set_value("Upload").run()
    _widget(at.file_uploader, "count_upload").set_value(("merge.tif", buf.getvalue(), "image/tiff")).run()
    assert not at.exception and not at.error
    assert any("channels show different stains" in c.value for c in at.caption), [c.value for c in at.caption]


EVALUATE_PAGE = ROOT / "pages" / "evaluate.py"


@pytest.mark.slow
def test_app_evaluate_page_reports_bad_ground_truth(monkeypatch) -> None:
    """Ground truth of the wrong shape or a broken label file: a message, and the page still works."""
    from bad_inputs import tiff_bytes

    at = _app(EVALUATE_PAGE, monkeypatch, eval_model=cc.models.CLASSICAL_NAME)
    _widget(at.radio, "eval_source").set_value("Upload").run()
    image = png_bytes(blobs())
    good = np.zeros(BLOB_SHAPE, np.uint16)
    for k, (r, c) in enumerate(((16, 18), (20, 70), (46, 30), (48, 76)), start=1):
        good[r - 3 : r + 4, c - 3 : c + 4] = k
    uploads = {
        "wrong-shape": [("a.png", image, "image/png"), ("a_labels.tif", tiff_bytes(good[:32, :32]), "image/tiff")],
        "broken-labels": [("a.png", image, "image/png"), ("a_labels.png", b"<html>no</html>", "image/png")],
    }
    for what, files in uploads.items():
        _widget(at.file_uploader, "eval_files").set_value(files).run()
        assert not at.exception, (what, [e.value for e in at.exception])
        errors = " ".join(e.value for e in at.error)
        assert "a_labels" in errors, (what, errors)
    files = [("a.png", image, "image/png"), ("a_labels.tif", tiff_bytes(good), "image/tiff")]
    _widget(at.file_uploader, "eval_files").set_value(files).run()
    _widget(at.button, "eval_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["Images"] == "1"


@pytest.mark.parametrize("case", [c for c in WEIGHTS_CASES if c.id in ("weights-sha256-mismatch",
                                                                      "weights-pickle-payload")],
                         ids=["sha256-mismatch", "pickle-payload"])
@pytest.mark.slow
def test_app_count_page_with_bad_weights_shows_an_error(case: BadInput, tmp_path: Path, monkeypatch) -> None:
    """A tampered model in weights/: the Count page says why it cannot load it and other models still work."""
    from cellcount.models import loading

    monkeypatch.delenv(PICKLE_ENV_FLAG, raising=False)
    write_model_folder(case, tmp_path / "bad-model")
    monkeypatch.setattr(loading, "DEFAULT_WEIGHTS_DIR", tmp_path)
    at = _app(COUNT_PAGE, monkeypatch, count_model="bad-model")
    errors = " ".join(e.value for e in at.error)
    assert case.match.lower() in errors.lower(), errors
    assert PICKLE_ENV_FLAG not in os.environ
    _widget(at.selectbox, "count_model").set_value(cc.models.CLASSICAL_NAME).run()
    assert not at.exception and not at.error
    assert int({m.label: m.value for m in at.metric}["Count"]) >= 0


def test_an_unreadable_file_says_what_to_do():
    """chmod 000: the row read "[Errno 13] Permission denied: '...'" and no more (a tester)."""
    from cellcount.errors import error_text

    text = error_text(PermissionError(13, "Permission denied", "/data/nop.png"), "nop.png")
    assert text.startswith("[Errno 13] Permission denied") and "check its permissions" in text
