"""Block-wise counting of images too large for memory: lazy reading, seams, density integral, regions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tifffile

pytest.importorskip("zarr")  # the lazy reader of TIFF and OME-Zarr

import cellcount as cc  # noqa: E402
from cellcount import blocks  # noqa: E402
from cellcount.errors import ImageReadError, ParameterError  # noqa: E402
from cellcount.synthetic_large import write_large_tiff  # noqa: E402


@pytest.mark.parametrize("shape,block,overlap", [((1000, 777), 300, 40), ((64, 64), 2048, 128), ((513, 2049), 512, 0)])
def test_cores_partition_the_image_and_blocks_hold_their_core(shape, block, overlap):
    cores, boxes = blocks.grid(shape, block, overlap)
    cover = np.zeros(shape, np.int32)
    for (r0, c0, r1, c1), (b0, d0, b1, d1) in zip(cores, boxes):
        cover[r0:r1, c0:c1] += 1
        assert b0 <= r0 < r1 <= b1 and d0 <= c0 < c1 <= d1
        assert b0 % blocks.ALIGN_PX == 0 and d0 % blocks.ALIGN_PX == 0
        assert r1 - r0 <= block + blocks.ALIGN_PX and (r0 - b0 >= min(overlap, r0))
    assert (cover == 1).all()


def test_region_grid_and_boxes(tmp_path):
    cells = blocks.region_grid((100, 90), 2, 3)
    assert [c[0] for c in cells] == ["r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2"]
    area = np.zeros((100, 90), int)
    for _, r0, c0, r1, c1 in cells:
        area[r0:r1, c0:c1] += 1
    assert (area == 1).all()
    good = tmp_path / "boxes.csv"
    good.write_text("name,row0,col0,row1,col1\nwell A1,0,0,10,20\n")
    assert blocks.read_regions(good) == [("well A1", 0, 0, 10, 20)]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,row0,col0,row1,col1\nempty,5,5,5,9\n")
    with pytest.raises(ParameterError, match="empty"):
        blocks.read_regions(bad)
    with pytest.raises(ParameterError, match="columns"):
        blocks.read_regions(_write(tmp_path / "x.csv", "a,b\n1,2\n"))


def _write(path, text):
    path.write_text(text)
    return path


def test_lazy_tiff_and_ome_zarr_read_only_a_window(tmp_path, rng):
    image = rng.integers(0, 60000, (300, 400, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb.tif", image, tile=(128, 128), photometric="rgb")
    with blocks.open_lazy(tmp_path / "rgb.tif") as plane:
        assert plane.shape == (300, 400, 3)
        np.testing.assert_array_equal(plane[10:200, 250:390], image[10:200, 250:390])
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w")
    cyx = np.moveaxis(image, -1, 0)[None]  # (t, c, y, x)
    level = zarr.open_array(str(tmp_path / "img.ome.zarr" / "0"), mode="w", shape=cyx.shape, chunks=(1, 1, 128, 128),
                            dtype=cyx.dtype)
    level[:] = cyx
    root.attrs["multiscales"] = [{"axes": [{"name": "t"}, {"name": "c"}, {"name": "y"}, {"name": "x"}],
                                  "datasets": [{"path": "0"}]}]
    assert blocks.is_zarr(tmp_path / "img.ome.zarr")
    assert blocks.zarr_pixel_size(tmp_path / "img.ome.zarr") is None, "no unit, no pixel size"
    root.attrs["multiscales"] = [{"axes": [{"name": "t"}, {"name": "c"}, {"name": "y", "unit": "micrometer"},
                                           {"name": "x", "unit": "micrometer"}],
                                  "datasets": [{"path": "0", "coordinateTransformations": [
                                      {"type": "scale", "scale": [1.0, 1.0, 0.325, 0.325]}]}]}]
    assert blocks.zarr_pixel_size(tmp_path / "img.ome.zarr") == pytest.approx(0.325)  # µm columns from the file
    with blocks.open_lazy(tmp_path / "img.ome.zarr") as plane:
        assert plane.shape == (300, 400, 3)
        np.testing.assert_array_equal(plane[5:100, 7:300], image[5:100, 7:300])
    # OME-NGFF's own order, T C Z Y X: was refused ("channels must be next to Y, X"), as every scanner's export was
    ngff = zarr.open_group(str(tmp_path / "tczyx.ome.zarr"), mode="w")
    tczyx = np.moveaxis(image, -1, 0)[None, :, None]
    zarr.open_array(str(tmp_path / "tczyx.ome.zarr" / "0"), mode="w", shape=tczyx.shape,
                    chunks=(1, 1, 1, 128, 128), dtype=tczyx.dtype)[:] = tczyx
    ngff.attrs["multiscales"] = [{"axes": [{"name": a} for a in "tczyx"], "datasets": [{"path": "0"}]}]
    with blocks.open_lazy(tmp_path / "tczyx.ome.zarr") as plane:
        assert plane.shape == (300, 400, 3)
        np.testing.assert_array_equal(plane[5:100, 7:300], image[5:100, 7:300])
    plain = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(70, 90), chunks=(32, 32), dtype="u1")
    plain[:] = image[:70, :90, 0] // 256
    assert blocks.lazy_shape(tmp_path / "plain.zarr") == (70, 90)
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ImageReadError, match="TIFF files and OME-Zarr"):
        blocks.lazy_shape(tmp_path / "x.png")


def test_objects_on_block_seams_are_counted_once(tmp_path, draw_disks):
    """Disks astride the seams of 4 x 4 blocks (cores cut at 160, 288 and 448 px): each counted once."""
    shape = (600, 600)
    assert [c[1] for c in blocks.grid(shape, 150, 32)[0][:4]] == [0, 160, 288, 448]
    centres = [(r, c) for r in (40, 158, 290, 447, 560) for c in (40, 158, 290, 447, 560)]
    labels = draw_disks(shape, centres, 9)
    image = np.where(labels > 0, 200, 20).astype(np.uint8)
    tifffile.imwrite(tmp_path / "disks.tif", image, tile=(128, 128))
    model = cc.load_model("classical-otsu")
    result, regions = blocks.count_blocks(tmp_path / "disks.tif", model, {"min_area_px": 10}, block_px=150,
                                          overlap_px=32, regions=blocks.region_grid(shape, 2, 2))
    assert result.count == len(centres) == len(result.objects)
    assert sorted(result.objects["label"]) == list(range(1, len(centres) + 1))
    assert int(regions["count"].sum()) == len(centres)
    assert list(regions["count"]) == [9, 6, 6, 4]
    assert result.quality is not None and result.summary_row()["check"] is not None, "blocks carry the flag"
    assert result.seconds["plan"] > 0 and result.seconds["blocks"] > 0, "the planning is part of the image's time"
    # centroids in µm from the whole image's corner, as in pixels (they were each block's own: a reviewer)
    um, _ = blocks.count_blocks(tmp_path / "disks.tif", model, {"min_area_px": 10, "pixel_size_um": 0.5},
                                block_px=150, overlap_px=32)
    np.testing.assert_allclose(um.objects["centroid_row_um"], um.objects["centroid_row"] * 0.5)
    np.testing.assert_allclose(um.objects["centroid_col_um"], um.objects["centroid_col"] * 0.5)
    # the file's own calibration measures them as for an image counted whole (its µm columns were empty), and a
    # setting that replaces it is flagged, as there (an audit of the units)
    tifffile.imwrite(tmp_path / "cal.tif", image, tile=(128, 128), imagej=True, metadata={"unit": "um"},
                     resolution=(4.0, 4.0))  # 0.25 µm pixels
    own, _ = blocks.count_blocks(tmp_path / "cal.tif", model, {"min_area_px": 10}, block_px=150, overlap_px=32)
    np.testing.assert_allclose(own.objects["area_um2"], own.objects["area_px"] * 0.0625)
    assert own.params.pixel_size_um is None, "the file's calibration is no setting"
    assert not any("replaces this file's own" in r for r in own.quality.reasons)
    typed, _ = blocks.count_blocks(tmp_path / "cal.tif", model, {"min_area_px": 10, "pixel_size_um": 0.5},
                                   block_px=150, overlap_px=32)
    assert any("replaces this file's own 0.25 µm per pixel" in r for r in typed.quality.reasons)


def test_an_image_in_blocks_is_flagged_when_one_block_is():
    from cellcount.quality import Quality, combine

    calm = Quality(False, 0.4, (), {"contrast": 0.5})
    alarm = Quality(True, 1.7, ("low contrast between nuclei and background (0.05)",), {"contrast": 0.05})
    q = combine([calm, None, alarm])
    assert q.flag and q.score == 1.7 and q.reasons == ("block 3: low contrast between nuclei and background (0.05)",)
    assert q.signals == {"contrast": 0.05}
    assert not combine([calm, calm]).flag and combine([None]) is None
    # the model's own reason, given by every block (a fine-tune's held-out verdict), is said once, unnumbered
    own = "m counted its 2 held-out images 27% off on average when it was fine-tuned"
    q = combine([Quality(True, 1.0, (own,), {}), Quality(True, 1.7, (own, alarm.reasons[0]), {})])
    assert q.reasons == (own, "block 2: low contrast between nuclei and background (0.05)")
    # one block: no number; a reason several blocks give, once with their numbers; a slide's reasons bounded
    assert combine([alarm]).reasons == alarm.reasons
    q = combine([alarm, calm, alarm, alarm])
    assert q.reasons == ("blocks 1, 3, 4: low contrast between nuclei and background (0.05)",)
    many = [Quality(True, 1.0 + i / 100, (f"reason {i}",), {}) for i in range(40)]
    q = combine(many)
    assert len(q.reasons) == 9 and q.reasons[-1] == "and 32 more reasons in other blocks"
    assert q.reasons[0] == "block 40: reason 39", "the worst block's reasons (its signals are the ones shown) kept"


def test_a_stack_counted_by_blocks_is_flagged_for_its_unread_planes(tmp_path, draw_disks):
    """A z-stack or time series counted by blocks was counted from its first plane with no flag (0, unflagged),
    where a count in memory said it; and a region beyond the image counted 0 in silence."""
    labels = draw_disks((200, 200), [(50, 50), (150, 150)], 9)
    plane = np.where(labels > 0, 200, 20).astype(np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", np.stack([plane] * 4), imagej=True, metadata={"axes": "ZYX"})
    model = cc.load_model("classical-otsu")
    result, _ = blocks.count_blocks(tmp_path / "z.tif", model, {"min_area_px": 10}, block_px=128, overlap_px=16)
    assert result.count == 2 and result.quality.flag
    assert "the file holds 4 z-planes; only the first plane was read" in result.quality.reasons[0]
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, plane)
    assert not any("planes" in r for r in blocks.count_blocks(flat, model, {"min_area_px": 10}, block_px=128,
                                                              overlap_px=16)[0].quality.reasons)
    # one box across the edge, one beyond it: the image keeps its count, the first is clipped, the second has
    # no row, and the flag says both (a slide smaller than the boxes given lost its whole count to an error)
    result, regions = blocks.count_blocks(flat, model, {"min_area_px": 10}, block_px=128, overlap_px=16,
                                          regions=[("across", 100, 100, 260, 260), ("out", 300, 300, 400, 400)])
    assert result.count == 2 and list(regions["region"]) == ["across"]
    assert regions[["row0", "col0", "row1", "col1"]].values.tolist() == [[100, 100, 200, 200]]
    assert int(regions["count"].sum()) == 1 and result.quality.flag
    assert "region(s) 'across', 'out' lie outside or across the edge" in result.quality.reasons[0]


def test_channels_averaged_by_blocks_are_flagged_as_counted_whole(tmp_path, draw_disks):
    """A 2-channel file (cytoplasm, nuclei) counted whole was flagged for its averaged stains; by blocks the same
    count went unflagged (a tester's 5502 by blocks against 5505 flagged whole)."""
    labels = draw_disks((200, 200), [(50, 50), (150, 150), (60, 140)], 9)
    nuclei = np.where(labels > 0, 200, 20).astype(np.uint8)
    cytoplasm = ((np.sin(np.mgrid[:200, :200][1] / 15) + 1) * 100).astype(np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", np.stack([cytoplasm, nuclei]), metadata={"axes": "CYX"})
    model = cc.load_model("classical-otsu")
    whole = cc.count_file(tmp_path / "c.tif", model)
    result, _ = blocks.count_blocks(tmp_path / "c.tif", model, block_px=128, overlap_px=16)
    said = "its 2 channels show different stains and were averaged"
    assert any(said in r for r in whole.quality.reasons) and any(said in r for r in result.quality.reasons)
    one, _ = blocks.count_blocks(tmp_path / "c.tif", model, {"channel": 1}, block_px=128, overlap_px=16)
    assert not any(said in r for r in one.quality.reasons), "the nuclei's channel chosen: nothing to say"


def _damage_tile(path, index: int) -> None:
    """Overwrite one compressed tile's bytes of a tiled TIFF (an interrupted copy, a bad disk sector)."""
    with tifffile.TiffFile(path) as tif:
        offset, size = tif.pages[0].dataoffsets[index], tif.pages[0].databytecounts[index]
    data = bytearray(path.read_bytes())
    data[offset:offset + size] = b"\0" * size
    path.write_bytes(bytes(data))


def test_a_damaged_tile_is_said_as_a_damaged_file(tmp_path):
    """By blocks, a damaged TIFF tile gave 'DeflateError: libdeflate_zlib_decompress returned ...' in the row and a
    worker's traceback on the terminal, where the image counted whole says the file is probably damaged (a
    tester)."""
    from cellcount.distributed import block_task, combine_task

    path = tmp_path / "t.tif"
    image = (np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)
    tifffile.imwrite(path, image, tile=(64, 64), compression="zlib")
    model = cc.load_model("classical-otsu")
    plan = blocks.plan_blocks(path, model, model.card.postprocess, block_px=128, overlap_px=16)
    _damage_tile(path, 5)
    with pytest.raises(ImageReadError, match="the file is probably truncated or damaged .* the decoder said: "):
        blocks.count_blocks(path, model, block_px=128, overlap_px=16)
    params = cc.resolve_params(model)
    parts = [block_task(plan, i, "classical-otsu", model.card.sha256 or "", params) for i in range(len(plan.blocks))]
    failed = [p for p in parts if isinstance(p, str)]
    assert failed and all("probably truncated or damaged" in p for p in failed)
    row = combine_task("t.tif", plan, "classical-otsu", model.card.sha256 or "", params, 0.0, *parts)
    assert row.status == "error" and row.reason.startswith(f"{path}: cannot read image: the file is probably")


def test_blocks_split_at_the_auto_distance_of_the_estimated_size_even_when_nothing_was_resized():
    """An estimate close to the training size resizes nothing (no diameter for the blocks), but the auto split
    distance must still follow it, as it does for the whole image; a distance set by hand stays."""
    plan = blocks.BlockPlan(source="x.tif", shape=(800, 800), cores=(), blocks=(), limits=(0.0, 1.0), bright=False,
                            nucleus_diameter_px=None, block_px=400, overlap_px=32, estimated_diameter_px=26.9)
    params = cc.CountParams(split_mode="both", min_distance_px=0, auto_nucleus_size=True)
    got = blocks.block_params(plan, params)
    assert (got.min_distance_px, got.auto_nucleus_size, got.nucleus_diameter_px) == (11, False, None)
    assert blocks.block_params(plan, params.replace(min_distance_px=5)).min_distance_px == 5
    unknown = dataclasses.replace(plan, estimated_diameter_px=None)
    assert blocks.block_params(unknown, params).min_distance_px == 0, "no estimate: the blocks' own fallback"


def test_large_generated_tiff_has_its_count(tmp_path):
    n = write_large_tiff(tmp_path / "big.tif", (1024, 512), seed=3, cells_per_tile=30)
    meta = json.loads((tmp_path / "big.json").read_text())
    assert meta["count"] == n and 0 < n <= 60
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].shape == (1024, 512)
    with pytest.raises(ParameterError, match="multiples"):
        write_large_tiff(tmp_path / "odd.tif", (1000, 512))


def test_the_split_the_blocks_got_is_reported_as_a_whole_image_reports_it():
    from cellcount.blocks import BlockPart, _splits_used

    def part(i, used):
        return BlockPart(index=i, count=0, count_estimate=0.0, density_count=None, objects=None, regions={},
                         seconds=0.0, split_used=used)

    assert _splits_used([part(0, "both"), part(1, "both")]) == "both"
    assert _splits_used([part(0, "both"), part(1, "borders"), part(2, "both")]) == "mixed: borders 1, both 2"
    assert _splits_used([part(0, None)]) is None


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["unet-mask", "unet-density"])
def test_block_count_within_half_a_percent_of_the_in_memory_count(tmp_path, model_name):
    """A 1024 x 1024 generated image (about 480 nuclei) counted whole and in 9 blocks of about 340 px."""
    write_large_tiff(tmp_path / "big.tif", (1024, 1024), seed=0)
    image = tifffile.imread(tmp_path / "big.tif")
    model = cc.load_model(model_name)
    params = cc.resolve_params(model, {"auto_nucleus_size": False})
    whole = cc.count_image(image, model, params)
    by_blocks, _ = blocks.count_blocks(tmp_path / "big.tif", model, params, block_px=340, overlap_px=64)
    assert whole.count > 300
    assert abs(by_blocks.count_estimate - whole.count_estimate) <= 0.005 * whole.count_estimate


def _corner_nuclei(tmp_path, draw_disks, radius=6):
    """A 900 x 900 image whose nuclei all lie in its top-left 300 px: the centre block is empty."""
    shape = (900, 900)
    centres = [(r, c) for r in range(30, 280, 4 * radius) for c in range(30, 280, 4 * radius)]
    image = np.where(draw_disks(shape, centres, radius) > 0, 200, 20).astype(np.uint8)
    tifffile.imwrite(tmp_path / "corner.tif", image, tile=(128, 128))
    return tmp_path / "corner.tif", len(centres)


def test_the_size_is_estimated_on_the_block_with_the_most_foreground(tmp_path, draw_disks):
    """The centre block of a slide can be empty: the block whose core holds the most foreground is sized instead;
    in an even field the centre block, as before."""
    path, _ = _corner_nuclei(tmp_path, draw_disks)
    params = cc.CountParams()
    cores, boxes = blocks.grid((900, 900), 300, 32)
    with blocks.open_lazy(path) as plane:
        assert blocks._sizing_block(plane, cores, boxes, params, (20.0, 200.0), False, "mean") == 0
    even = np.where(draw_disks((900, 900), [(r, c) for r in range(30, 900, 60) for c in range(30, 900, 60)], 8) > 0,
                    200, 20).astype(np.uint8)
    tifffile.imwrite(tmp_path / "even.tif", even, tile=(128, 128))
    with blocks.open_lazy(tmp_path / "even.tif") as plane:
        assert blocks._sizing_block(plane, cores, boxes, params, (20.0, 200.0), False, "mean") == len(boxes) // 2


@pytest.mark.slow
def test_a_slide_with_an_empty_centre_still_has_its_nucleus_size(tmp_path, draw_disks):
    """Large nuclei (36 px) in one corner: sized on the centre block there was nothing to size, so they were counted
    at the training size's scale; sized on the corner's block, the estimate is theirs."""
    path, _ = _corner_nuclei(tmp_path, draw_disks, radius=18)
    plan = blocks.plan_blocks(path, cc.load_model("unet-mask"), None, block_px=300, overlap_px=64)
    assert plan.estimated_diameter_px is not None and 28 < plan.estimated_diameter_px < 46, plan.estimated_diameter_px


def test_blocks_that_split_differently_flag_the_image_saying_how_to_count_alike():
    """Split mode auto decides per block: a crowded sample's blocks split 3 one way, 1 the other, and counted 240
    where the whole image counted 252, with nothing but split_used to say so (a tester)."""
    from types import SimpleNamespace

    from cellcount.blocks import _mixed_split_note

    parts = [SimpleNamespace(split_used=s, count=40) for s in ("borders", "both", "borders", "borders")]
    note = _mixed_split_note(parts)
    assert "split mode auto: borders 3, both 1" in note and "borders or both" in note
    assert _mixed_split_note([SimpleNamespace(split_used="both", count=40)] * 3) is None
    assert _mixed_split_note([SimpleNamespace(split_used=None, count=40)] * 2) is None
    # an empty margin's block has nothing to decide on and reads "borders": not a disagreement (a reviewer)
    margin = [SimpleNamespace(split_used="borders", count=0), SimpleNamespace(split_used="both", count=60)]
    assert _mixed_split_note(margin) is None


def test_chunks_missing_beside_content_are_said_and_skipped_empty_ones_are_not(tmp_path, rng):
    """A Zarr folder with chunks deleted (an interrupted copy) counted 5% under, unflagged, as did a TIFF whose tile has
    no bytes; a writer's own skipped chunks (all fill value, in an empty margin) are no loss."""
    zarr = pytest.importorskip("zarr")
    image = rng.integers(20, 200, (256, 256), dtype=np.uint8)
    image[:, 160:] = 0  # an empty margin: the last column of chunks is all fill value
    array = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=image.shape, chunks=(64, 64), dtype="u1",
                            fill_value=0)
    array[:] = image
    chunks = tmp_path / "a.zarr" / "c"
    (chunks / "1" / "1").unlink()  # inside the content: lost
    for row in range(4):  # the margin's chunks, as a writer that skips empty chunks leaves them
        (chunks / str(row) / "3").unlink(missing_ok=True)
    with blocks.open_lazy(tmp_path / "a.zarr") as plane:
        missing, block, n = plane.find_missing()
        assert n == 16 and block == (64, 64) and len(missing) >= 5
        note = blocks.missing_chunks_note(plane)
    assert note.startswith("1 of the image's 16 tiles or chunks are missing from the file beside parts of the image "
                           "that are not empty (rows 64-128, columns 64-128)"), note
    tifffile.imwrite(tmp_path / "t.tif", image, tile=(64, 64))
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        offset = tif.pages[0].tags["TileByteCounts"].valueoffset
        n = len(tif.pages[0].databytecounts)
        tag = tif.pages[0].tags["TileByteCounts"]
        width = tag.valuebytecount // tag.count  # bytes per entry (SHORT, LONG or LONG8)
    raw = bytearray((tmp_path / "t.tif").read_bytes())
    raw[offset + 5 * width: offset + 6 * width] = bytes(width)  # tile 5 (row 1, column 1): no bytes
    (tmp_path / "t.tif").write_bytes(bytes(raw))
    read, note = cc.io.read_image_and_note(tmp_path / "t.tif")
    assert n == 16 and "1 of the image's 16 tiles or chunks are missing" in note, note
    assert not read[64:128, 64:128].any(), "read as empty"
    clean, none = cc.io.read_image_and_note(tifffile_bytes(image))
    assert none is None and clean.shape == image.shape


def tifffile_bytes(image: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, image, tile=(64, 64))
    return buf.getvalue()


def test_a_channel_chosen_for_composites_counts_a_one_channel_image_by_blocks_as_it_is(tmp_path, rng):
    """--channel 1 failed a one-channel slide counted by blocks, where the same file read whole was counted as it is
    and flagged (a tester)."""
    image = np.zeros((300, 300), np.uint8)
    for r, c in rng.integers(20, 280, (30, 2)):
        image[r - 5:r + 5, c - 5:c + 5] = 200
    tifffile.imwrite(tmp_path / "one.tif", image, tile=(128, 128))
    model = cc.load_model("classical-otsu")
    plan = blocks.plan_blocks(tmp_path / "one.tif", model, cc.resolve_params(model, {"channel": 1}), block_px=128,
                              overlap_px=32)
    assert plan.one_channel and "channel 1 was chosen, but this image has only one channel" in plan.note
    result, _ = blocks.count_blocks(tmp_path / "one.tif", model, {"channel": 1}, block_px=128, overlap_px=32)
    assert result.count > 0 and result.quality.flag


def test_missing_tiles_of_tiled_rgb_and_sharded_zarr_are_placed_right(tmp_path, rng):
    """An RGB TIFF's tile grid was read from (tilewidth, samples): "1 of 344 tiles ... columns 15-18"; an intact
    sharded Zarr was said to miss 60 of 64 chunks (its files are shards); a NaN background read as content (a
    reviewer)."""
    import io as _io

    zarr = pytest.importorskip("zarr")
    image = rng.integers(20, 200, (256, 256, 3), dtype=np.uint8)
    buf = _io.BytesIO()
    tifffile.imwrite(buf, image, tile=(64, 64), photometric="rgb")
    raw = bytearray(buf.getvalue())
    with tifffile.TiffFile(_io.BytesIO(bytes(raw))) as tif:
        tag = tif.pages[0].tags["TileByteCounts"]
        width = tag.valuebytecount // tag.count
        raw[tag.valueoffset + 5 * width: tag.valueoffset + 6 * width] = bytes(width)
    _, note = cc.io.read_image_and_note(bytes(raw))
    assert "1 of the image's 16 tiles or chunks are missing" in note and "rows 64-128, columns 64-128" in note
    sharded = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=(256, 256), chunks=(32, 32), shards=(128, 128),
                                dtype="u1")
    sharded[:] = image[..., 0]
    with blocks.open_lazy(tmp_path / "s.zarr") as plane:
        assert blocks.missing_chunks_note(plane) is None
    (tmp_path / "s.zarr" / "c" / "1" / "1").unlink()
    with blocks.open_lazy(tmp_path / "s.zarr") as plane:
        assert "1 of the image's 4 tiles or chunks are missing" in blocks.missing_chunks_note(plane)
    nan = zarr.create_array(store=str(tmp_path / "n.zarr"), shape=(128, 128), chunks=(64, 64), dtype="f4",
                            fill_value=np.nan)
    field = np.full((128, 128), np.nan, np.float32)
    field[:64, :64] = 1.0
    field[:64, 60:64] = field[60:64, :64] = np.nan  # the stored chunk's edges beside the skipped ones: background
    nan[:] = field
    with blocks.open_lazy(tmp_path / "n.zarr") as plane:
        assert blocks.missing_chunks_note(plane) is None, "skipped NaN chunks beside a NaN edge are no loss"


def test_the_normalisation_sample_keeps_clipped_nuclei_as_patches(tmp_path):
    """The sample of an image above the budget is spread windows, so a clipped nucleus centre stays a patch for the
    overexposure check (every n-th pixel made each a lone pixel, and a huge image's note went silent: a reviewer)."""
    from cellcount.io.normalize import clipped_and_bright

    image = np.full((2048, 2048), 20, np.uint8)
    for r in range(20, 2048, 40):
        for c in range(20, 2048, 40):
            image[r - 6:r + 7, c - 6:c + 7] = 180
            image[r - 4:r + 4, c - 4:c + 4] = 255  # its clipped centre
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image, tile=(256, 256))
    whole = clipped_and_bright(image)[0]
    with blocks.open_lazy(path) as plane:
        sample = blocks._sample(plane, 1024 * 1024)
    assert sample.size <= 1024 * 1024 and whole > 0.2
    assert abs(clipped_and_bright(sample)[0] - whole) < 0.05
