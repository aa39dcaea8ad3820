"""Tests of cellcount.batch: one bad file does not stop a batch; safe zip reading; export tables."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellcount.batch import (
    count_many,
    counts_frame,
    distinct_names,
    labelled_uploads,
    labels_zip,
    objects_frame,
)
from cellcount.errors import ImageReadError
from cellcount.io import iter_zip_images, iter_zip_members, left_out
from cellcount.models import CLASSICAL_NAME, load_model

HTML = b"<!DOCTYPE html><html><head><title>Not an image</title></head><body>404</body></html>"
COUNTS_COLUMNS = ["file", "model", "backend", "count", "count_estimate", "status", "reason", "check", "check_score",
                  "check_reasons", "model_scale", "estimated_diameter_px", "split_used", "inverted", "seconds",
                  "settings"]


@pytest.fixture(scope="module")
def png_bytes(samples_dir) -> bytes:
    return (samples_dir / "s01_sparse_small.png").read_bytes()


@pytest.fixture(scope="module")
def classical():
    return load_model(CLASSICAL_NAME)


@pytest.fixture(scope="module")
def mixed_items(png_bytes, classical):
    items = [("good.png", png_bytes), ("truncated.png", png_bytes[: len(png_bytes) // 2]), ("page.png", HTML)]
    return list(count_many(items, classical))


def test_an_error_without_words_is_still_a_failed_row(monkeypatch, png_bytes, classical):
    """OSError() has no message: the row read 'ok' with the previous image's count (the branch followed the
    reason's text); it is an error row, saying what kind of error, and the next image counts."""
    import cellcount.batch as batch

    real = batch._read_for_count

    def read(src, name, *args, **kw):
        if name == "bad.png":
            raise OSError()
        return real(src, name, *args, **kw)

    monkeypatch.setattr(batch, "_read_for_count", read)
    items = [(name, png_bytes) for name in ("good.png", "bad.png", "next.png")]
    out = list(count_many(items, classical, {}))
    assert [it.status for it in out] == ["ok", "error", "ok"]
    assert out[1].result is None and out[1].reason == "bad.png: could not be read (OSError, no reason given)"
    assert out[2].result.count == out[0].result.count


def test_count_many_reports_bad_files_and_carries_on(mixed_items):
    assert [it.name for it in mixed_items] == ["good.png", "truncated.png", "page.png"]
    assert [it.status for it in mixed_items] == ["ok", "error", "error"]
    good, truncated, page = mixed_items
    assert good.result is not None and good.result.count > 0 and good.reason == ""
    assert good.result.probability is None, "maps are dropped unless keep_maps=True"
    for bad in (truncated, page):
        assert bad.result is None
        assert bad.reason.startswith(f"{bad.name}: ") and "ImageReadError" not in bad.reason, "the message, no class"
    assert "truncated" in truncated.reason
    assert "<bytes>" not in page.reason and "page.png" in page.reason, "the reason names the uploaded file"


def test_the_failure_warning_names_the_file_once(png_bytes, classical, caplog):
    """'failed in/empty.png: in/empty.png: file is empty': the reader's message names the file already."""
    import logging

    with caplog.at_level(logging.WARNING, logger="cellcount.batch"):
        out = list(count_many([("page.png", HTML), ("good.png", png_bytes)], classical))
    assert [it.status for it in out] == ["error", "ok"]
    assert "failed page.png: not an image" in caplog.text and caplog.text.count("page.png") == 1


def test_two_items_of_one_name_are_said(png_bytes, classical, caplog):
    """A01.png of plate1/ and of plate2/ named by p.name gave two rows of one name, in silence (a tester)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="cellcount.batch"):
        out = list(count_many([("A01.png", png_bytes), ("A02.png", png_bytes), ("A01.png", png_bytes),
                               ("A01.png", png_bytes)], classical))
    assert [it.status for it in out] == ["ok"] * 4  # counted all the same, and said once
    said = [r.getMessage() for r in caplog.records if "cannot be told apart" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("A01.png is the name of two or more items")


def test_a_cell_read_back_loses_its_escape():
    from cellcount.csvout import escape_cell, unescape_cell

    for text in ("=HYPERLINK(1)_labels.tif", "-2+3_labels.tif", "a.tif", "'quoted", ""):
        assert unescape_cell(escape_cell(text)) == text
    assert unescape_cell(3) == 3


def test_count_many_progress_and_missing_path(png_bytes, classical, tmp_path):
    calls = []
    items = list(count_many([("a.png", png_bytes), ("missing.png", tmp_path / "missing.png")], classical,
                            {"min_area_px": 0}, progress=lambda d, t: calls.append((d, t)), keep_maps=True))
    assert calls == [(1, 2), (2, 2)]
    assert items[0].result.probability is not None and items[0].result.params.min_area_px == 0
    assert items[1].status == "error" and items[1].reason.startswith("image file not found: ") and items[1].reason.endswith("missing.png")



def test_count_many_without_the_object_table_counts_and_flags_alike(samples_dir, classical):
    """The CLI skips the object table when it writes no objects CSV: the counts rows are the same."""
    items = [(n, (samples_dir / n).read_bytes()) for n in ("s01_sparse_small.png", "s02_dense_clusters.png")]
    full, bare = list(count_many(items, classical)), list(count_many(items, classical, measure=False))
    assert all(len(it.result.objects) for it in full) and not any(len(it.result.objects) for it in bare)
    drop = ["seconds"]
    assert counts_frame(bare).drop(columns=drop).equals(counts_frame(full).drop(columns=drop))

def test_counts_frame_columns(mixed_items):
    df = counts_frame(mixed_items)
    assert list(df.columns) == COUNTS_COLUMNS
    assert str(df["count"].dtype) == "Int64"
    assert df["count"].isna().tolist() == [False, True, True]
    assert df.loc[0, "count"] == mixed_items[0].result.count
    assert df["status"].tolist() == ["ok", "error", "error"]
    assert (df.loc[1:, "reason"].str.len() > 0).all()
    assert df.loc[0, "check"] == mixed_items[0].result.quality.flag, "the quality flag is in every counts CSV"


def test_count_many_flags_a_stack_counted_from_one_plane(classical):
    """A z-stack in a batch: its count is of the first plane only, so the row says so (check, reason)."""
    stack = np.zeros((3, 32, 32), np.uint8)
    stack[:, 8:14, 8:14] = 200
    data = io.BytesIO()
    tifffile.imwrite(data, stack, imagej=True, metadata={"axes": "ZYX"})
    plane = io.BytesIO()
    tifffile.imwrite(plane, stack[0])
    items = list(count_many([("stack.tif", data.getvalue()), ("plane.tif", plane.getvalue())], classical))
    df = counts_frame(items)
    assert df["status"].tolist() == ["ok", "ok"] and df["count"].tolist() == [1, 1]
    assert bool(df.loc[0, "check"]) and "stack.tif: the file holds 3 z-planes" in df.loc[0, "check_reasons"]
    assert "z-planes" not in str(df.loc[1, "check_reasons"])


def test_a_plane_asked_of_a_stack_saved_without_its_axes_is_said_not_applied(classical):
    """tifffile.imwrite of a (3, H, W) stack reads as 3 channels: --plane 1 was dropped in silence and the planes'
    mean counted (a tester). A camera's RGB TIFF in the same folder is no such stack: nothing said of it."""
    stack = np.zeros((3, 32, 32), np.uint8)
    stack[1, 8:14, 8:14] = 200
    bare, rgb = io.BytesIO(), io.BytesIO()
    tifffile.imwrite(bare, stack)
    tifffile.imwrite(rgb, np.moveaxis(stack, 0, -1), photometric="rgb")
    df = counts_frame(list(count_many([("bare.tif", bare.getvalue()), ("rgb.tif", rgb.getvalue())], classical,
                                      page=1)))
    assert df["status"].tolist() == ["ok", "ok"]
    assert bool(df.loc[0, "check"]) and "plane 1 was asked for, but this file holds one plane with 3 channels" in \
        df.loc[0, "check_reasons"]
    assert "plane 1 was asked" not in str(df.loc[1, "check_reasons"])
    # a channel chosen too (README's --channel 1 --plane max): that one image counted, said (a tester's 29 for 81)
    for page in (1, "max"):
        chosen = counts_frame(list(count_many([("bare.tif", bare.getvalue()), ("rgb.tif", rgb.getvalue())], classical,
                                               {"channel": 0}, page=page)))
        assert "this file holds one plane with several channels" in chosen.loc[0, "check_reasons"], page
        assert "so channel 0 alone was counted; if they are z planes, that is plane 0" in chosen.loc[0, "check_reasons"]
        assert "was asked for" not in str(chosen.loc[1, "check_reasons"]), "an RGB picture: nothing said"
    # files that record their axes (ImageJ, OME): channels they name so are channels, a plane asked of them no flag
    named = []
    for kind in ("imagej", "ome"):
        buf = io.BytesIO()
        tifffile.imwrite(buf, stack[:2], **({"imagej": True} if kind == "imagej" else {"ome": True}),
                         metadata={"axes": "CYX"})
        named.append((f"{kind}.tif", buf.getvalue()))
    rows = counts_frame(list(count_many(named, classical, {"channel": 0}, page="max")))
    assert not rows["check_reasons"].fillna("").str.contains("no Z axis is recorded").any(), rows["check_reasons"]


def test_count_file_counts_one_file_as_the_command_line_does(classical, tmp_path):
    """A tester's z-stack counted through the Python API (read_image, then count_image) was not flagged, where the
    command line flagged it: count_file reads the file as a batch does (its plane, its pixel size, its note)."""
    from cellcount import count_file

    stack = np.zeros((3, 32, 32), np.uint8)
    stack[:, 8:14, 8:14] = 200
    stack[2, 20:26, 20:26] = 200
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX", "unit": "um"},
                     resolution=(2.0, 2.0))  # 0.5 µm pixels
    first = count_file(tmp_path / "stack.tif", classical)
    assert first.count == 1 and first.quality.flag
    assert any("stack.tif: the file holds 3 z-planes; only the first was read" in r for r in first.quality.reasons)
    projected = count_file(str(tmp_path / "stack.tif"), classical, page="max")
    assert projected.count == 2 and not any("z-planes" in r for r in projected.quality.reasons)
    assert projected.objects["area_um2"].tolist() == [8.0, 8.0] and projected.params.pixel_size_um is None, (
        "the file's pixel size measures the objects, and is no setting to carry to other files")
    assert count_file((tmp_path / "stack.tif").read_bytes(), classical, {"min_area_px": 1}, page=2).count == 2
    with pytest.raises(ImageReadError):
        count_file(b"not an image", classical)


def test_a_pixel_size_setting_that_replaces_a_files_own_calibration_is_flagged(classical, tmp_path):
    """A pixel size typed for one uncalibrated image measured a calibrated file's areas 6.25x too small on Batch and
    in the CLI, under no flag (an audit of the units)."""
    from cellcount import count_file

    image = np.zeros((32, 32), np.uint8)
    image[8:14, 8:14] = 200
    tifffile.imwrite(tmp_path / "cal.tif", image, imagej=True, metadata={"unit": "um"}, resolution=(2.0, 2.0))
    own = count_file(tmp_path / "cal.tif", classical)
    said = "replaces this file's own"
    assert own.objects["area_um2"].tolist() == [8.0]  # 32 px of 0.25 µm²
    assert not any(said in r for r in own.quality.reasons)
    typed = count_file(tmp_path / "cal.tif", classical, {"pixel_size_um": 0.2})
    assert typed.objects["area_um2"].tolist() == pytest.approx([1.28])  # the setting measures, as documented
    assert typed.quality.flag and any(f"{said} 0.5 µm per pixel" in r for r in typed.quality.reasons)
    same = count_file(tmp_path / "cal.tif", classical, {"pixel_size_um": 0.5})
    assert not any(said in r for r in same.quality.reasons)
    # the label image carries the calibration its objects were measured with, so Fiji opens it measured alike
    from cellcount.io import labels_to_tiff_bytes

    assert (own.pixel_size_um, typed.pixel_size_um, own.params.pixel_size_um) == (0.5, 0.2, None)
    page = tifffile.TiffFile(io.BytesIO(labels_to_tiff_bytes(own.labels, model=classical.name,
                                                              pixel_size_um=own.pixel_size_um))).pages[0]
    assert page.tags["XResolution"].value == (20000, 1) and page.tags["ResolutionUnit"].value == 3  # px per cm
    rows = counts_frame(count_many([("cal.tif", (tmp_path / "cal.tif").read_bytes())], classical, {"pixel_size_um": 0.2}))
    assert bool(rows.iloc[0]["check"]) and "replaces this file's own" in rows.iloc[0]["check_reasons"]


def test_each_row_says_whether_its_image_was_read_as_a_bright_background(classical, samples_dir):
    """Invert on auto decided per image and the Count page said "Image inverted: yes", but no download or record
    did (a reproducibility audit)."""
    items = [(n, (samples_dir / n).read_bytes()) for n in ("s01_sparse_small.png", "s08_brightfield_rgb.png")]
    rows = counts_frame(count_many(items, classical))
    assert rows["inverted"].tolist() == [False, True]


def test_count_many_flags_a_blank_channel(classical):
    """Nuclei in the blue channel of an RGB export, counted with channel=0 (red, empty): 0 cells, and the row
    says the channel is blank instead of passing the 0 off as a count."""
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:14, 8:14, 2] = 200
    data = io.BytesIO()
    tifffile.imwrite(data, rgb, photometric="rgb")
    items = [("rgb.tif", data.getvalue())]
    red, blue = (counts_frame(count_many(items, classical, {"channel": c})).iloc[0] for c in (0, 2))
    assert red["count"] == 0 and bool(red["check"]) and "blank (every pixel is 0)" in red["check_reasons"]
    assert blue["count"] == 1 and "blank" not in str(blue["check_reasons"])


def test_a_channel_for_composites_counts_a_one_channel_file_as_it_is(classical):
    """A folder of composites with a DAPI-only file among them, counted with channel 2: the one-channel file
    is counted as it is and its row says why; a composite lacking the channel still fails, naming it."""
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:14, 8:14, 2] = 200
    gray = rgb[..., 2].copy()
    two = np.zeros((32, 32, 2), np.uint8)
    files = []
    for name, arr, kw in (("rgb.tif", rgb, {"photometric": "rgb"}), ("dapi.tif", gray, {}),
                          ("two.tif", two, {"photometric": "minisblack", "planarconfig": "contig"})):
        data = io.BytesIO()
        tifffile.imwrite(data, arr, **kw)
        files.append((name, data.getvalue()))
    df = counts_frame(count_many(files, classical, {"channel": 2}))
    assert df["status"].tolist() == ["ok", "ok", "error"] and df["count"].tolist()[:2] == [1, 1]
    assert "only one channel: it was counted as it is" in df.loc[1, "check_reasons"] and bool(df.loc[1, "check"])
    assert "only one channel" not in str(df.loc[0, "check_reasons"])
    assert "channel 2 is out of range: two.tif has 2 channel(s)" in df.loc[2, "reason"]


def test_count_many_flags_a_merge_of_stains_averaged(classical, rng):
    """An RGB merge (nuclei in blue, cell bodies in green) counted from the mean of its channels: the row
    says the stains were mixed; the nuclei's channel is counted without that note."""
    yy, xx = np.mgrid[:64, :64]
    rgb = np.zeros((64, 64, 3), np.float32)
    for cy, cx in ((16, 16), (16, 48), (48, 16), (48, 48)):
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        rgb[..., 1] += 120 * (d2 <= 10**2)
        rgb[..., 2] += 200 * (d2 <= 3**2) * (cy == 16)
    rgb = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)
    data = io.BytesIO()
    tifffile.imwrite(data, rgb, photometric="rgb")
    items = [("merge.tif", data.getvalue())]
    mean, blue = (counts_frame(count_many(items, classical, params)).iloc[0] for params in (None, {"channel": 2}))
    assert bool(mean["check"]) and "channels show different stains" in mean["check_reasons"]
    assert blue["count"] == 2 and "stains" not in str(blue["check_reasons"])


def test_objects_frame(mixed_items):
    df = objects_frame(mixed_items)
    assert df.columns[0] == "file"
    assert len(df) == mixed_items[0].result.count
    assert set(df["file"]) == {"good.png"}
    assert len(objects_frame(mixed_items[1:])) == 0


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def test_iter_zip_images(png_bytes):
    data = _zip({
        "top.png": png_bytes,
        "plate1/": b"",
        "plate1/well_a/cells.PNG": png_bytes,
        "../evil.png": png_bytes,
        "/abs/evil.png": png_bytes,
        "notes.txt": b"hello",
        "raw/scan.czi": b"vendor format",
        "__MACOSX/plate1/._cells.png": b"junk",
    })
    out = {name: (blob, reason) for name, blob, reason in iter_zip_images(data)}
    assert set(out) == {"top.png", "plate1/well_a/cells.PNG", "../evil.png", "/abs/evil.png", "notes.txt",
                        "raw/scan.czi"}
    assert out["top.png"] == (png_bytes, None)
    assert out["plate1/well_a/cells.PNG"] == (png_bytes, None)
    for evil in ("../evil.png", "/abs/evil.png"):
        assert out[evil][0] is None and "unsafe" in out[evil][1]
    assert out["notes.txt"][0] is None and "not an image" in out["notes.txt"][1]
    assert left_out(out["notes.txt"][1]), "a readme is left out for its kind"
    assert not any(left_out(out[evil][1]) for evil in ("../evil.png", "/abs/evil.png")), "a refused path is a problem"
    assert not left_out(None)
    assert "export it as TIFF" in out["raw/scan.czi"][1] and not left_out(out["raw/scan.czi"][1]), \
        "the images the user meant, in a vendor's format: a failure to act on, as on the command line"


def test_distinct_names_one_row_per_image():
    items = [("A01.tif", b"a"), ("A01.tif", b"b"), ("A01.tif", b"a"), ("A01 (2).tif", b"c"), ("A01.tif", b"d"),
             ("z.zip/p/A01.tif", b"e"), ("A01.tif", b"b"), ("z.zip/q/A01.tif", b"f")]
    kept, copies, renamed = distinct_names(items)
    assert kept == [("A01.tif", b"a"), ("A01 (3).tif", b"b"), ("A01 (2).tif", b"c"), ("A01 (4).tif", b"d"),
                    ("z.zip/p/A01.tif", b"e"), ("z.zip/q/A01.tif", b"f")], "never a name uploaded, folders kept"
    assert copies == ["A01.tif", "A01.tif"], "the same bytes again, under a name already counted"
    assert renamed == {"A01 (3).tif": "A01.tif", "A01 (4).tif": "A01.tif"}
    assert distinct_names([("z.zip/p/x.png", b"1"), ("z.zip/p/x.png", b"2")])[0][1][0] == "z.zip/p/x (2).png"


def test_iter_zip_limits_and_corrupt_zip(png_bytes):
    data = _zip({"a.png": png_bytes, "b.png": png_bytes, "c.png": png_bytes})
    out = list(iter_zip_images(data, max_files=2))
    assert [reason is None for _, _, reason in out] == [True, True, False]
    assert "more than 2" in out[2][2]
    out = list(iter_zip_images(data, max_bytes=len(png_bytes) + 1))
    assert [reason is None for _, _, reason in out] == [True, False, False]
    with pytest.raises(ImageReadError, match="zip"):
        list(iter_zip_images(b"PK\x03\x04 definitely not a zip"))


def test_iter_zip_members_accepts_the_given_extensions(png_bytes):
    data = _zip({"a.png": png_bytes, "counts.CSV": b"filename,count\na.png,3\n", "notes.txt": b"x"})
    out = {name: reason for name, _, reason in iter_zip_members(data, extensions={".png", ".csv"})}
    assert out["a.png"] is None and out["counts.CSV"] is None
    assert "not a supported file" in out["notes.txt"]


def test_labelled_uploads_reads_counts_tables_inside_zips(png_bytes, samples_dir):
    """A zipped folder of images + counts.csv (the request from the app), loose files, and a broken zip."""
    zipped = _zip({
        "plate/a.png": png_bytes,
        "plate/b.png": (samples_dir / "s02_dense_clusters.png").read_bytes(),
        "plate/counts.csv": b"filename,count\na.png,7\nb.png,9\n",
        "plate/readme.txt": b"hello",
    })
    items, skipped = labelled_uploads([("plate.zip", zipped)])
    assert [(name, gt.count) for name, _, gt in items] == [("a.png", 7), ("b.png", 9)]
    assert items[0][1] == png_bytes
    assert [name for name, _ in skipped] == ["plate.zip/plate/readme.txt"]

    loose = [("c.png", png_bytes), ("counts.csv", b"filename,count\nc.png,4\n"), ("bad.zip", b"PK not a zip")]
    items, skipped = labelled_uploads(loose)
    assert [(name, gt.count) for name, _, gt in items] == [("c.png", 4)]
    assert skipped[0][0] == "bad.zip" and "zip" in skipped[0][1]


def test_labels_zip_content(png_bytes, classical):
    """Same stems kept apart: in their folders (a zip's plates, the zip's name without .zip), or numbered (two
    loose uploads of one name, which the page names apart before)."""
    items = list(count_many([("plates.zip/plate1/cells.png", png_bytes), ("plates.zip/plate2/cells.png", png_bytes),
                             ("bad.png", HTML), ("a.png", png_bytes), ("a.png", png_bytes)], classical))
    with zipfile.ZipFile(io.BytesIO(labels_zip(items))) as zf:
        names = zf.namelist()
        assert names == ["plates/plate1/cells_labels.tif", "plates/plate2/cells_labels.tif", "a_labels.tif",
                         "a_2_labels.tif", "labels_index.csv"]
        index = pd.read_csv(io.BytesIO(zf.read("labels_index.csv")))
        assert index.to_dict("list") == {"file": ["plates.zip/plate1/cells.png", "plates.zip/plate2/cells.png",
                                                  "a.png", "a.png"], "labels_file": names[:4]}
        names = names[:2]
        for name, item in zip(names, items):
            arr = tifffile.imread(io.BytesIO(zf.read(name)))
            assert arr.dtype == np.uint16
            np.testing.assert_array_equal(arr, item.result.labels)
            assert int(arr.max()) == item.result.count


def test_labels_zip_never_takes_the_name_of_an_upload_left_out(png_bytes, classical):
    """s01_labels.tif uploaded beside s01.png (left out as ground truth) and the zip's prediction for s01.png named
    s01_labels.tif too: unpacked beside the uploads it replaced the user's own annotation."""
    items = list(count_many([("s01.png", png_bytes), ("plates.zip/p1/a.png", png_bytes)], classical))
    taken = ["S01_labels.TIF", "plates.zip/p1/a_labels.tif", "other.txt"]  # in any case: macOS and Windows ignore it
    with zipfile.ZipFile(io.BytesIO(labels_zip(items, taken=taken))) as zf:
        assert zf.namelist() == ["s01_2_labels.tif", "plates/p1/a_2_labels.tif", "labels_index.csv"]


def test_a_plane_for_stacks_counts_a_one_plane_file_as_it_is(classical):
    """--plane 2 on a folder of z-stacks and 2-D images: the 2-D image is counted as it is, unflagged (every one
    failed "page 2 is out of range", then each was flagged, burying the real flags); a stack with 2 planes still
    fails, naming it."""
    plane = np.zeros((32, 32), np.uint8)
    plane[8:14, 8:14] = 200
    files = []
    for name, arr, kw in (("stack.tif", np.stack([plane] * 3), {"metadata": {"axes": "ZYX"}}), ("flat.tif", plane, {}),
                          ("two.tif", np.stack([plane] * 2), {"metadata": {"axes": "ZYX"}})):
        data = io.BytesIO()
        tifffile.imwrite(data, arr, photometric="minisblack", **kw)
        files.append((name, data.getvalue()))
    df = counts_frame(count_many(files, classical, page=2))
    assert df["status"].tolist() == ["ok", "ok", "error"] and df["count"].tolist()[:2] == [1, 1]
    assert "plane" not in str(df.loc[1, "check_reasons"]) and "plane" not in str(df.loc[0, "check_reasons"])
    assert "out of range" in df.loc[2, "reason"]
    planes = counts_frame(count_many(files, classical, page=2), 2)["plane"].tolist()
    assert planes[0] == 2 and planes[2] == 2 and pd.isna(planes[1]), "the 2-D image's row names no plane"
    alone = counts_frame(count_many(files[1:2], classical)).iloc[0]
    assert df.loc[1, "check"] == alone["check"], "flagged as the same file counted without a plane"
    both = counts_frame(count_many(files[1:2], classical, {"channel": 1}, page=2)).iloc[0]
    assert both["count"] == 1 and "only one channel" in both["check_reasons"]


def test_a_microscope_file_uploaded_is_a_row_that_says_export_it(png_bytes, classical, tmp_path):
    """A .czi dropped on Batch was turned away by the browser and never listed (a tester); accepted now, it is an
    error row saying what to do, as a folder walk and a zip say it, and read_image names it too."""
    import cellcount as cc

    rows = list(count_many([("scan.czi", b"ZISRAWFILE\x00" + bytes(40)), ("good.png", png_bytes)], classical))
    assert [r.status for r in rows] == ["error", "ok"]
    assert rows[0].reason.startswith("scan.czi: a microscope file (extension .czi)") and "export it as TIFF" in rows[0].reason
    (tmp_path / "scan.nd2").write_bytes(bytes(64))
    with pytest.raises(cc.ImageReadError, match=r"scan.nd2: a microscope file \(extension .nd2\).*export it as TIFF"):
        cc.read_image(tmp_path / "scan.nd2")


def test_the_files_pixel_size_fills_in_the_micron_columns_and_every_table_has_them(tmp_path, caplog):
    """A calibrated OME-TIFF's objects got no µm columns unless --pixel-size-um was given (a tester); now its own
    pixel size is used where none is given, recorded beside the µm columns (not in the settings: it is no setting),
    and every object table of a batch has the same columns (a CSV stream's header is its first image's)."""
    import json

    import tifffile

    from cellcount.batch import item_objects

    img = np.zeros((64, 64), np.uint8)
    for r, c in ((16, 16), (16, 48), (48, 32)):
        img[r - 5:r + 5, c - 5:c + 5] = 200
    tifffile.imwrite(tmp_path / "cal.ome.tif", img, ome=True, metadata={"PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm"})
    tifffile.imwrite(tmp_path / "plain.tif", img)
    model = load_model(CLASSICAL_NAME)
    items = {it.name: it for it in count_many([(p.name, p) for p in sorted(tmp_path.glob("*.tif"))], model)}
    cal, plain = item_objects(items["cal.ome.tif"]), item_objects(items["plain.tif"])
    assert list(cal.columns) == list(plain.columns) and "area_um2" in cal.columns
    assert (cal["area_um2"] == cal["area_px"] * 0.25).all() and plain["area_um2"].isna().all()
    # the scale of the µm columns, beside them: the settings column says none, as none was given (a tester)
    assert (cal["pixel_size_um"] == 0.5).all() and plain["pixel_size_um"].isna().all()
    # the file's size measured; it is no setting: --resume and settings files compare and carry the user's
    assert items["cal.ome.tif"].result.params.pixel_size_um is None
    assert json.loads(counts_frame([items["cal.ome.tif"]])["settings"][0])["pixel_size_um"] is None
    given = list(count_many([("cal.ome.tif", tmp_path / "cal.ome.tif")], model, {"pixel_size_um": 2.0}))[0]
    assert given.result.params.pixel_size_um == 2.0, "a pixel size the user gives wins"
    assert (item_objects(given)["area_um2"] == item_objects(given)["area_px"] * 4).all()
    assert (item_objects(given)["pixel_size_um"] == 2.0).all()
    # pixels that are not square: no µm, and the row says why
    tifffile.imwrite(tmp_path / "tall.ome.tif", img, ome=True, metadata={
        "PhysicalSizeX": 0.4, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.8, "PhysicalSizeYUnit": "µm"})
    with caplog.at_level("WARNING", logger="cellcount"):
        tall = list(count_many([("tall.ome.tif", tmp_path / "tall.ome.tif")], model))[0]
    assert item_objects(tall)["area_um2"].isna().all() and "tall.ome.tif: the file's pixels are not square" in caplog.text
    assert not any("square" in r for r in tall.result.quality.reasons), "the count is sound: only its µm are left out"
    # a TIFF with a microscope vendor's extension (.lsm, .svs ...) is read like any TIFF, from bytes too
    lsm = list(count_many([("cal.lsm", (tmp_path / "plain.tif").read_bytes())], model))[0]
    assert lsm.status == "ok", lsm.reason


def test_one_image_objects_table_has_the_columns_every_objects_csv_has(samples_dir):
    """Count's Objects CSV put ``file`` last and had no µm columns without a pixel size; Batch and the CLI put it
    first and always have them (empty when unknown): one table for all."""
    import cellcount as cc
    from cellcount.batch import objects_table
    from cellcount.measure import MICRON_COLUMNS

    model = cc.load_model("classical-otsu")
    result = cc.count_image(cc.read_image(samples_dir / "s01_sparse_small.png"), model)
    table = objects_table(result, "a.png")
    assert table.columns[0] == "file" and set(table["file"]) == {"a.png"}
    assert set(MICRON_COLUMNS) <= set(table.columns) and table["area_um2"].isna().all()
    assert len(table) == result.count


def test_count_file_refuses_a_plane_a_one_plane_file_lacks(tmp_path, samples_dir, classical):
    """count_file(path, page=1) of a 2-D image counted plane 0 unsaid; its docstring promises read_image's errors
    (a folder's batch still counts such a file as it is: a plane chosen for the stacks among them)."""
    from cellcount.batch import count_file
    from cellcount.errors import PlaneError

    with pytest.raises(PlaneError, match="plane 1 is out of range"):
        count_file(samples_dir / "s01_sparse_small.png", classical, page=1)
    (item,) = count_many([("a.png", samples_dir / "s01_sparse_small.png")], classical, page=1)
    assert item.status == "ok"


def test_count_paths_gives_a_dangling_link_its_error_row_as_the_command_line_does(png_bytes, classical, tmp_path):
    """The README's folder recipe (count_many over list_image_files) left a dangling link out of the table, said
    only in a log line, where ``cellcount count`` writes its error row."""
    from cellcount.batch import count_paths, counts_frame

    (tmp_path / "good.png").write_bytes(png_bytes)
    (tmp_path / "a_labels.png").write_bytes(png_bytes)  # ground truth: left out, as the command line leaves it
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    table = counts_frame(list(count_paths(tmp_path, classical))).set_index("file")
    assert sorted(table.index) == [str(tmp_path / "dangling.png"), str(tmp_path / "good.png")]
    assert table.loc[str(tmp_path / "dangling.png"), "status"] == "error"
    assert "dangling symbolic link" in table.loc[str(tmp_path / "dangling.png"), "reason"]
    assert table.loc[str(tmp_path / "good.png"), "status"] == "ok"


def test_a_jpeg_saved_at_a_low_quality_is_flagged_with_why(classical):
    """A JPEG of quality 10 counted 473 for 150, its reasons naming merged nuclei; compression said nothing."""
    from PIL import Image

    from cellcount.batch import count_file
    from cellcount.io.read import file_note, jpeg_quality

    image = np.zeros((64, 64), np.uint8)
    image[10:30, 10:30] = 200
    for quality in (10, 90):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=quality)
        assert jpeg_quality(buf.getvalue()) == quality
        reasons = "; ".join(count_file(buf.getvalue(), classical).quality.reasons)
        assert ("a JPEG saved at a low quality (about 10 of 100)" in reasons) is (quality == 10)
        assert (file_note(buf.getvalue(), image, None) is None) is (quality == 90)  # the app's badge reads it too
    assert jpeg_quality(b"\x89PNG\r\n\x1a\n") is None
    tiff = io.BytesIO()  # a TIFF compressed as JPEG (a tester's quality-10 one said nothing of it)
    Image.fromarray(image).save(tiff, "TIFF", compression="jpeg", quality=10)
    assert jpeg_quality(tiff.getvalue()) == 10
    assert "a JPEG saved at a low quality" in "; ".join(count_file(tiff.getvalue(), classical).quality.reasons)
