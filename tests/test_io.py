"""Tests of cellcount.io: readers for every supported format, caps, normalisation, file listing."""

from __future__ import annotations

import csv
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
from PIL import Image

from cellcount.errors import ImageReadError, ImageReadWarning, ImageTooLargeError, ParameterError
from cellcount.io import (
    DEFAULT_MAX_PIXELS,
    NORMALIZED_RANGE,
    channels_differ,
    image_shape,
    image_to_display_rgb,
    input_note,
    is_bright_background,
    labels_to_tiff_bytes,
    list_image_files,
    normalize_image,
    read_image,
    read_image_and_note,
    split_ground_truth_files,
    to_gray,
)

DSB = Path(__file__).resolve().parents[1].parent / "shared/datasets/dsb2018"


def _png_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _tiff_bytes(arr: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue()


def _patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR of a PNG to claim another size (the pixel data stay tiny)."""
    assert data[12:16] == b"IHDR"
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + data[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# --------------------------------------------------------------------------------------------------
# PNG / JPEG / BMP via Pillow
# --------------------------------------------------------------------------------------------------
def test_png_8bit_gray_from_path(tmp_path: Path, rng: np.random.Generator) -> None:
    arr = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (20, 30)
    np.testing.assert_array_equal(out, arr)
    assert read_image(str(path)).shape == (20, 30)
    assert image_shape(path) == (20, 30)


def test_png_16bit_gray(rng: np.random.Generator) -> None:
    arr = rng.integers(0, 65536, (12, 7), dtype=np.uint16)
    out = read_image(_png_bytes(Image.fromarray(arr)))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, arr)


def test_png_16bit_rgb_keeps_16_bits(rng: np.random.Generator) -> None:
    import cv2

    arr = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", arr[:, :, ::-1])
    assert ok
    out = read_image(enc.tobytes())
    assert out.dtype == np.uint16 and out.shape == (9, 11, 3)
    np.testing.assert_array_equal(out, arr)


def test_rgba_drops_alpha(rng: np.random.Generator) -> None:
    arr = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    out = read_image(_png_bytes(Image.fromarray(arr, mode="RGBA")))
    assert out.shape == (8, 9, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr[:, :, :3])


def test_gray_alpha_becomes_gray() -> None:
    img = Image.new("LA", (5, 4), (77, 10))
    out = read_image(_png_bytes(img))
    assert out.shape == (4, 5) and out.dtype == np.uint8 and (out == 77).all()


def test_palette_becomes_rgb() -> None:
    img = Image.new("P", (4, 3))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2, 1] * 3)
    out = read_image(_png_bytes(img))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert tuple(out[0, 1]) == (255, 0, 0) and tuple(out[0, 2]) == (0, 0, 255)


def test_palette_with_transparency_reads_without_warning() -> None:
    img = Image.new("P", (4, 3))
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    img.putdata([0, 1] * 6)
    data = _png_bytes(img, transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_image(data)
    assert out.shape == (3, 4, 3)
    assert tuple(out[0, 1]) == (0, 255, 0)


def test_one_bit_png_is_uint8() -> None:
    img = Image.new("1", (6, 5), 0)
    img.putpixel((2, 3), 1)
    out = read_image(_png_bytes(img))
    assert out.dtype == np.uint8 and out[3, 2] == 255 and out.sum() == 255


def test_jpeg_and_bmp(tmp_path: Path) -> None:
    img = Image.new("RGB", (16, 8), (200, 100, 50))
    img.save(tmp_path / "a.jpg", quality=95)
    img.save(tmp_path / "a.bmp")
    jpg = read_image(tmp_path / "a.jpg")
    bmp = read_image(tmp_path / "a.bmp")
    assert jpg.shape == bmp.shape == (8, 16, 3)
    np.testing.assert_array_equal(bmp[0, 0], [200, 100, 50])
    assert np.abs(jpg.astype(int) - [200, 100, 50]).max() <= 3


def test_cmyk_jpeg_becomes_rgb() -> None:
    buf = io.BytesIO()
    Image.new("CMYK", (10, 6), (0, 255, 255, 0)).save(buf, format="JPEG", quality=95)
    out = read_image(buf.getvalue())
    assert out.shape == (6, 10, 3) and out.dtype == np.uint8
    r, g, b = out[3, 5].astype(int)
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta + yellow full -> red


def test_exif_orientation_applied() -> None:
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    img.paste((250, 250, 250), (0, 0, 5, 5))  # marker in the top-left corner
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = read_image(buf.getvalue())
    assert out.shape == (40, 20, 3)  # (H, W) swapped
    assert out[:5, -5:].mean() > 200  # the corner marker moved to the top-right


def test_grayscale_jpeg_exif_image_shape(tmp_path: Path) -> None:
    img = Image.new("L", (30, 10), 9)
    exif = img.getexif()
    exif[0x0112] = 8
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert image_shape(tmp_path / "r.jpg") == (30, 10)
    assert read_image(tmp_path / "r.jpg").shape == (30, 10)


def test_int32_and_float_modes() -> None:
    arr = np.array([[1, -5], [70000, 3]], dtype=np.int32)
    out = read_image(_tiff_bytes(arr))
    assert out.dtype == np.int32
    buf = io.BytesIO()
    Image.fromarray(np.array([[0.5, 2.5]], dtype=np.float32), mode="F").save(buf, format="TIFF")
    assert read_image(buf.getvalue()).dtype == np.float32


# --------------------------------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------------------------------
def test_tiff_16bit(tmp_path: Path, rng: np.random.Generator) -> None:
    arr = rng.integers(0, 65536, (15, 17), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", arr, compression="zlib")
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, arr)
    assert image_shape(tmp_path / "a.tif") == (15, 17)


def test_big_endian_tiff_comes_back_native() -> None:
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4)
    out = read_image(_tiff_bytes(arr, byteorder=">"))
    assert out.dtype == np.uint16 and out.dtype.byteorder in ("=", "|")
    np.testing.assert_array_equal(out, arr)


def test_float_tiff_with_nan_inf_gives_finite_gray() -> None:
    arr = np.array([[0.0, 1.0, np.nan], [np.inf, -np.inf, 2.0]], dtype=np.float32)
    out = read_image(_tiff_bytes(arr))
    assert out.dtype == np.float32 and np.isnan(out[0, 2])
    gray = to_gray(out)
    assert gray.dtype == np.float32 and np.isfinite(gray).all()
    np.testing.assert_array_equal(gray, [[0.0, 1.0, 0.0], [2.0, 0.0, 2.0]])
    assert np.isfinite(normalize_image(out)).all()
    np.testing.assert_array_equal(to_gray(np.full((2, 2), np.nan, np.float32)), np.zeros((2, 2)))


def test_stack_array_is_refused_not_read_as_channels() -> None:
    """tifffile.imread of a z-stack gives (Z, H, W); read as (H, W, C) it was counted as a Z x H image."""
    import cellcount as cc
    from cellcount.models import CLASSICAL_NAME, load_model

    stack = np.zeros((5, 64, 64), np.uint8)
    stack[:, 10:20, 10:20] = 200
    for arr in (stack, np.zeros((3, 40, 40), np.uint8)):  # a z-stack, channels-first RGB
        with pytest.raises(ImageReadError, match=r"looks like a stack or a channels-first"):
            to_gray(arr)
    with pytest.raises(ImageReadError, match=r"image\[0\]"):
        cc.count_image(stack, load_model(CLASSICAL_NAME))
    assert to_gray(np.zeros((8, 6, 16), np.uint8)).shape == (8, 6)  # 16 channels: still channels last
    assert to_gray(np.zeros((256, 256, 32), np.uint8)).shape == (256, 256)  # a spectral image of 32 channels
    # a 300-frame movie of 256 x 256 frames: more frames than columns, read as 256 channels of a 300 x 256 image
    with pytest.raises(ImageReadError, match=r"looks like a stack"):
        to_gray(np.zeros((300, 256, 256), np.uint8))


def test_multipage_tiff_page_choice() -> None:
    stack = np.stack([np.full((6, 8), k, np.uint16) for k in range(5)])
    data = _tiff_bytes(stack)
    with pytest.warns(ImageReadWarning):
        assert read_image(data).shape == (6, 8)
    assert (read_image(data, page=3) == 3).all()
    with pytest.raises(ParameterError, match="0..4"):
        read_image(data, page=5)
    ij = _tiff_bytes(stack, imagej=True, metadata={"axes": "ZYX"})
    assert (read_image(ij, page=4) == 4).all()


def test_stack_read_without_page_warns_that_one_plane_was_read() -> None:
    """A z-stack, a time series or a multi-frame GIF read without ``page`` is counted from its first plane:
    that is said (ImageReadWarning, and the note that batch CSVs and the app show), never left silent."""
    stack = np.stack([np.full((6, 8), k, np.uint8) for k in range(5)])
    gif = io.BytesIO()
    Image.fromarray(stack[0]).save(gif, "GIF", save_all=True, append_images=[Image.fromarray(stack[1])])
    cases = {"5 z-planes": _tiff_bytes(stack, imagej=True, metadata={"axes": "ZYX"}),
             "5 time points": _tiff_bytes(stack, imagej=True, metadata={"axes": "TYX"}),
             "5 planes": _tiff_bytes(stack), "2 frames": gif.getvalue()}
    for what, data in cases.items():
        with pytest.warns(ImageReadWarning, match=f"holds {what}.*only the first was read"):
            assert read_image(data).shape[:2] == (6, 8)
        image, note = read_image_and_note(data)
        assert what in note and image.shape[:2] == (6, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a chosen plane, one plane, or channels: no warning
        assert (read_image(cases["5 z-planes"], page=0) == 0).all()
        assert read_image_and_note(_tiff_bytes(stack[0]))[1] is None
        channels = _tiff_bytes(stack[:3], imagej=True, metadata={"axes": "CYX"})
        assert read_image_and_note(channels)[1] is None and read_image(channels).shape == (6, 8, 3)


def test_a_projection_of_pages_that_may_be_channels_is_cautioned(caplog) -> None:
    """page="max" over a file's unnamed pages may mix the nuclei's channel with other stains: the Count page
    said so, the API and the count command did not. Said, not flagged (a z-stack saved without axes is common);
    a named z-stack's projection gets no word, and a one-plane file none."""
    import logging

    from cellcount.batch import count_many, counts_frame
    from cellcount.models import CLASSICAL_NAME, load_model

    classical = load_model(CLASSICAL_NAME)
    stack = np.stack([np.full((6, 8), k, np.uint8) for k in range(3)])
    unnamed = _tiff_bytes(stack, photometric="minisblack")
    z = _tiff_bytes(stack, imagej=True, metadata={"axes": "ZYX"})
    with pytest.warns(ImageReadWarning, match="3 planes may be channels.*--plane N"):
        assert (read_image(unnamed, page="max") == 2).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (read_image(z, page="max") == 2).all() and read_image(_tiff_bytes(stack[0]), page="max").shape == (6, 8)
    with caplog.at_level(logging.WARNING, logger="cellcount"):
        df = counts_frame(count_many([("u.tif", unnamed), ("z.tif", z)], classical, page="max"))
    said = [r.getMessage() for r in caplog.records if "may be channels" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("u.tif:")
    assert "channels" not in " ".join(df["check_reasons"].astype(str)), "said, not flagged"


def test_maximum_projection_of_a_stack() -> None:
    """page="max": the brightest value of each pixel over all planes (nuclei in focus on different planes all
    appear), read plane by plane; a single-plane file comes back as it is; bad values are clear errors."""
    stack = np.zeros((4, 6, 8), np.uint16)
    for k in range(4):
        stack[k, k, :] = 100 * (k + 1)  # a bright row per plane
    expect = stack.max(axis=0)
    gif = io.BytesIO()
    frames = [Image.fromarray((stack[k] // 4).astype(np.uint8)) for k in range(4)]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    stacks = (_tiff_bytes(stack, photometric="minisblack"), _tiff_bytes(stack, imagej=True, metadata={"axes": "ZYX"}))
    zc = np.stack([stack, stack // 2], axis=1)  # (Z, C, Y, X): one channel, projected over Z
    one = _tiff_bytes(zc, imagej=True, metadata={"axes": "ZCYX"})
    for data, caution in zip(stacks, ("may be channels", None)):  # a named z-stack's projection: no word
        image, note = read_image_and_note(data, page="max")
        assert (note is None if caution is None else caution in note) and image.dtype == np.uint16
        np.testing.assert_array_equal(image, expect)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the projection is what was asked for: no warning
        np.testing.assert_array_equal(read_image(gif.getvalue(), page="MAX")[..., 0], (stack // 4).max(axis=0))  # GIF: RGB
        np.testing.assert_array_equal(read_image(_tiff_bytes(stack[1]), page="max"), stack[1])
        np.testing.assert_array_equal(read_image(one, page="max", channel=1), (stack // 2).max(axis=0))
    with pytest.raises(ParameterError, match="'max'"):
        read_image(stacks[0], page="mean")


def test_time_points_are_never_projected_and_unnamed_pages_are_not_taken_for_one_channel() -> None:
    """A maximum projection of a time series added up moving cells (158 counted for 36); a channel asked of a file
    whose unnamed pages hold one channel each counted page 0, another stain, as a one-channel image (0 for 36;
    a tester). Both are refused, saying what to choose instead."""
    stack = np.zeros((5, 6, 8), np.uint16)
    for k in range(5):
        stack[k, k, :] = 100 * (k + 1)
    series = _tiff_bytes(stack, imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(ParameterError, match="5 planes are time points.*count one time point"):
        read_image(series, page="max")
    np.testing.assert_array_equal(read_image(series, page=2), stack[2])
    assert "Choose a time point" in read_image_and_note(series)[1]
    unnamed = io.BytesIO()
    tifffile.imwrite(unnamed, stack[:3], photometric="minisblack", metadata=None)  # channels as pages, no axes
    with pytest.raises(ParameterError, match=r"channel 1 was asked, but the file's 3 pages are not named.*count page 1"):
        read_image(unnamed.getvalue(), channel=1)
    np.testing.assert_array_equal(read_image(unnamed.getvalue(), page=1), stack[1])
    thumb = io.BytesIO()  # an image and its thumbnail: pages of two sizes, never one image's channels
    with tifffile.TiffWriter(thumb) as tw:
        tw.write(np.zeros((32, 32), np.uint8))
        tw.write(np.zeros((8, 8), np.uint8))
    with pytest.raises(ParameterError, match="out of range"):  # the one-channel refusal the batch relaxes
        read_image(thumb.getvalue(), channel=1)
    z = _tiff_bytes(stack, imagej=True, metadata={"axes": "ZYX"})  # named z-planes of one channel: counted as it is
    with pytest.raises(ParameterError, match="out of range"):
        read_image(z, channel=1)


def _merge(rng: np.random.Generator) -> np.ndarray:
    """A dark-field RGB merge: cell bodies in green, nuclei in blue for 5 of the 9 cells."""
    yy, xx = np.mgrid[:96, :96]
    rgb = np.zeros((96, 96, 3), np.float32)
    for k in range(9):
        d2 = (yy - 16 - 32 * (k // 3)) ** 2 + (xx - 16 - 32 * (k % 3)) ** 2
        rgb[..., 1] += 120 * (d2 <= 12**2)
        rgb[..., 2] += 200 * (d2 <= 4**2) * (k < 5)
    return np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)


def test_channels_differ_only_for_a_merge_of_stains(rng) -> None:
    merge = _merge(rng)
    assert channels_differ(merge)
    assert not channels_differ(merge[..., 2]), "one channel"
    assert not channels_differ(np.repeat(merge[..., 2:], 3, axis=2)), "gray stored as RGB"
    blue_only = merge.copy()
    blue_only[..., :2] = rng.integers(0, 3, blue_only.shape[:2] + (2,))  # one stain, noise elsewhere
    assert not channels_differ(blue_only)
    he = 255 - merge  # bright-field colour: averaged (or deconvolved) on purpose
    assert not channels_differ(he)
    assert "show different stains" in input_note(merge)
    assert input_note(merge, channel=2) is None and input_note(merge[..., 2]) is None
    assert "channel 0 is blank (every pixel is 0)" in input_note(blue_only * 0, channel=0)
    assert "the image is blank (every pixel is 7)" in input_note(np.full((4, 4), 7, np.uint16))


def test_a_bright_field_channel_beside_a_fluorescence_one_is_a_merge_of_stains(rng) -> None:
    """Transmitted light (cells dark on a bright field) and a nuclear stain (bright on black) in one RGB file:
    their mean reads as bright-field, which once hid the merge (no note, a count of neither)."""
    merge = _merge(rng)
    bright_field = np.clip(230 - merge[..., 1].astype(np.int16) // 2 + rng.normal(0, 4, merge.shape[:2]), 0, 255)
    composite = np.stack([bright_field, merge[..., 2], bright_field], axis=2).astype(np.uint8)
    assert is_bright_background(composite)  # the mean the model would see
    assert channels_differ(composite)
    assert "show different stains" in input_note(composite)
    assert input_note(composite, channel=1) is None


def test_a_two_channel_file_averaged_says_so_even_when_its_channels_look_alike(rng) -> None:
    """A nuclear stain beside its own blurred bleed-through: too alike for channels_differ, but a file of 2 (or 5+)
    channels is a microscope's channels, not a colour picture, and their mean was counted (a tester)."""
    nuclei = _merge(rng)[..., 2].astype(np.uint16) * 200
    haze = ndi.gaussian_filter(nuclei, 3)
    two = np.stack([haze, nuclei], axis=2)
    assert not channels_differ(two)
    assert "its 2 channels were averaged" in input_note(two) and "numbered from 0" in input_note(two)
    assert input_note(two, channel=1) is None
    assert input_note(np.stack([nuclei, nuclei], axis=2)) is None, "gray stored twice"
    assert input_note(np.repeat(nuclei[..., None], 3, axis=2)) is None, "3 and 4 channels: colour pictures"
    assert "its 5 channels were averaged" in input_note(np.stack([nuclei, haze, nuclei, haze, haze], axis=2))


def test_an_rgb_merge_with_an_empty_channel_averaged_says_so(rng) -> None:
    """Nuclei in blue, their blurred surroundings in green, red empty: too alike for channels_differ, and counted
    from their mean (a tester: 17 for 27 where the blue channel alone gave 23) with no word of the channels."""
    nuclei = _merge(rng)[..., 2]
    haze = ndi.gaussian_filter(nuclei, 3)
    rgb = np.stack([np.zeros_like(nuclei), haze, nuclei], axis=2)
    assert not channels_differ(rgb)
    assert "one of them is empty: a merge of stains exported as RGB" in input_note(rgb)
    assert input_note(rgb, channel=2) is None
    assert input_note(np.stack([np.zeros_like(nuclei), nuclei, nuclei], axis=2)) is None, "one stain in two colours"
    assert input_note(np.stack([nuclei // 2, haze, nuclei], axis=2)) is None, "no empty colour: a picture"
    assert input_note(255 - rgb) is None, "bright-field colour"


@pytest.mark.parametrize("layout", ["CYX-shaped", "CYX-imagej", "SYX-planar", "YXC-contig", "YXC-rgb"])
def test_multichannel_tiff_channel_last(layout: str) -> None:
    n_ch = 3
    chw = np.stack([np.full((6, 8), 10 * (k + 1), np.uint16) for k in range(n_ch)])
    chw[:, 0, 0] = 0
    hwc = np.moveaxis(chw, 0, -1).copy()
    if layout == "CYX-shaped":
        data = _tiff_bytes(chw, photometric="minisblack", metadata={"axes": "CYX"})
    elif layout == "CYX-imagej":
        data = _tiff_bytes(chw, imagej=True, metadata={"axes": "CYX"})
    elif layout == "SYX-planar":
        data = _tiff_bytes(chw, photometric="minisblack", planarconfig="separate")
    elif layout == "YXC-contig":
        data = _tiff_bytes(hwc, photometric="minisblack", planarconfig="contig")
    else:
        data = _tiff_bytes(hwc.astype(np.uint8), photometric="rgb")
    out = read_image(data)
    assert out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, hwc.astype(out.dtype))
    one = read_image(data, channel=1)
    assert one.shape == (6, 8) and one[1, 1] == 20
    with pytest.raises(ParameterError, match="valid: 0, 1, 2"):
        read_image(data, channel=3)


def test_two_channel_hwc_written_without_hints() -> None:
    hwc = np.zeros((20, 30, 2), np.uint16)
    hwc[..., 1] = 7
    out = read_image(_tiff_bytes(hwc))  # tifffile stores this as 20 pages of (30, 2)
    assert out.shape == (20, 30, 2) and (out[..., 1] == 7).all()


def test_4d_tiff_squeezes_or_selects_or_raises() -> None:
    tc = np.arange(1 * 3 * 5 * 6, dtype=np.uint16).reshape(1, 3, 5, 6)
    out = read_image(_tiff_bytes(tc, photometric="minisblack", metadata={"axes": "TCYX"}))
    np.testing.assert_array_equal(out, np.moveaxis(tc[0], 0, -1))  # singleton T squeezed, C last
    generic = read_image(_tiff_bytes(tc, photometric="minisblack"), page=2)  # unnamed axes are pages
    np.testing.assert_array_equal(generic, tc[0, 2])
    zc = np.arange(2 * 3 * 5 * 6, dtype=np.uint16).reshape(2, 3, 5, 6)
    out = read_image(_tiff_bytes(zc, imagej=True, metadata={"axes": "ZCYX"}), page=1)
    np.testing.assert_array_equal(out, np.moveaxis(zc[1], 0, -1))
    tz = np.zeros((2, 3, 5, 6), np.uint16)
    with pytest.raises(ImageReadError, match="more than 3 non-singleton"):
        read_image(_tiff_bytes(tz, imagej=True, metadata={"axes": "TZYX"}))
    with pytest.raises(ImageReadError, match="more than 3 non-singleton"):
        read_image(_tiff_bytes(np.zeros((2, 2, 2, 5, 6), np.uint8), photometric="minisblack"))


# --------------------------------------------------------------------------------------------------
# sources and bad input
# --------------------------------------------------------------------------------------------------
def test_bytes_and_file_like_sources(tmp_path: Path) -> None:
    data = _png_bytes(Image.new("L", (3, 2), 5))
    assert read_image(data).shape == (2, 3)
    assert read_image(bytearray(data)).shape == (2, 3)
    assert read_image(io.BytesIO(data)).shape == (2, 3)
    (tmp_path / "f.png").write_bytes(data)
    with open(tmp_path / "f.png", "rb") as fh:
        assert read_image(fh).shape == (2, 3)


def test_zero_bytes(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png.*empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(b"")


def test_truncated_png(tmp_path: Path, rng: np.random.Generator) -> None:
    data = _png_bytes(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: cannot read image: the file is probably truncated"):
        read_image(tmp_path / "cut.png")


def test_truncated_tiff() -> None:
    data = _tiff_bytes(np.ones((64, 64), np.uint16), compression="zlib")
    with pytest.raises(ImageReadError):
        read_image(data[:60])
    data = _tiff_bytes(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), compression="zlib")
    # the likely cause before the decoder's words (a tester read "LIBDEFLATE_BAD_DATA (DeflateError)")
    with pytest.raises(ImageReadError, match="probably truncated or damaged.*the decoder said"):
        read_image(data[: len(data) - 40])


def test_html_renamed_png(tmp_path: Path) -> None:
    (tmp_path / "page.png").write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    with pytest.raises(ImageReadError, match=r"page\.png"):
        read_image(tmp_path / "page.png")


def test_missing_file_and_bad_type(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(TypeError):
        read_image(12345)  # type: ignore[arg-type]


def test_tiny_and_thin_images() -> None:
    assert read_image(_png_bytes(Image.new("L", (1, 1), 3))).shape == (1, 1)
    thin = read_image(_png_bytes(Image.new("L", (1, 100_000), 3)))
    assert thin.shape == (100_000, 1)


def test_zero_size_dimension() -> None:
    data = _patch_png_size(_png_bytes(Image.new("L", (1, 1))), 0, 5)
    with pytest.raises(ImageReadError):
        read_image(data)


def test_pixel_and_byte_caps() -> None:
    data = _png_bytes(Image.new("L", (100, 100)))
    with pytest.raises(ImageTooLargeError, match="10,000.*5,000"):
        read_image(data, max_pixels=5000)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        read_image(data, max_bytes=10)
    assert read_image(data, max_pixels=10_000).shape == (100, 100)


@pytest.mark.parametrize("side", [20_000, 10_000])
def test_decompression_bomb(side: int) -> None:
    # a valid header that claims side x side pixels with a few bytes of data
    bomb = _patch_png_size(_png_bytes(Image.new("L", (8, 8))), side, side)
    assert side * side > DEFAULT_MAX_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither a DecompressionBombWarning nor a crash
        with pytest.raises(ImageTooLargeError):
            read_image(bomb)
        with pytest.raises(ImageTooLargeError):
            read_image(bomb, max_pixels=10**6)
    with pytest.raises(ImageTooLargeError):  # a raised cap does not switch off the guard
        read_image(_patch_png_size(_png_bytes(Image.new("L", (8, 8))), 20_000, 20_000), max_pixels=10**9)


def test_parameters_validated() -> None:
    data = _png_bytes(Image.new("L", (3, 2)))
    with pytest.raises(ParameterError, match="valid: 0"):
        read_image(data, channel=1)
    assert read_image(data, channel=0).shape == (2, 3)
    with pytest.raises(ParameterError):
        read_image(data, page=-1)
    with pytest.raises(ParameterError, match="plane 1"):
        read_image(data, page=1)
    with pytest.raises(ParameterError):
        read_image(data, max_pixels=0)


# --------------------------------------------------------------------------------------------------
# gray, normalisation, display
# --------------------------------------------------------------------------------------------------
def test_to_gray_mean_of_channels() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 30
    rgb[..., 2] = 90
    np.testing.assert_allclose(to_gray(rgb), 40.0)
    np.testing.assert_allclose(to_gray(rgb, channel=2), 90.0)
    rgba = np.concatenate([rgb, np.full((2, 2, 1), 255, np.uint8)], axis=2)
    np.testing.assert_allclose(to_gray(rgba), 40.0)  # opaque alpha ignored
    with pytest.raises(ParameterError, match="valid: 0, 1, 2"):
        to_gray(rgb, channel=5)
    with pytest.raises(ImageReadError):
        to_gray(np.zeros((2, 2, 2, 2)))
    assert to_gray(np.ones((3, 3), bool)).dtype == np.float32


def _disc_image(bright_background: bool) -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 10**2
    img = np.where(disc, 200, 20).astype(np.uint8)
    return (255 - img) if bright_background else img


def test_is_bright_background() -> None:
    assert is_bright_background(_disc_image(True))
    assert not is_bright_background(_disc_image(False))
    assert not is_bright_background(np.full((4, 4), 7, np.uint8))
    assert is_bright_background(np.repeat(_disc_image(True)[..., None], 3, axis=2))


def _crowded(bright_background: bool, seed: int = 0) -> np.ndarray:
    """Blurred blobs of varied brightness covering most of the field: the median lies inside the objects."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((256, 256), np.float32)
    for _ in range(950):  # overlapping cells add up, with log-normal brightness, as stained cells do
        disc = np.zeros_like(img)
        cv2.circle(disc, tuple(int(v) for v in rng.integers(0, 256, 2)), int(rng.integers(6, 11)),
                   float(rng.lognormal(3.5, 0.5)), -1)
        img += disc
    img = cv2.GaussianBlur(img, (0, 0), 2.0) + rng.normal(12, 3, img.shape)
    img = np.clip(img, 0, 255)
    return (255 - img).astype(np.uint8) if bright_background else img.astype(np.uint8)


def test_crowded_fluorescence_is_not_read_as_brightfield() -> None:
    """Nuclei filling the field lift the median of a fluorescence image; its bright tail still says dark
    background (the median alone inverted dense fluorescence), and the same field in brightfield stays bright."""
    from cellcount.io.normalize import BRIGHT_BACKGROUND_POSITION

    for seed in range(3):
        fluo = _crowded(False, seed)
        lo, mid, hi = np.percentile(fluo, [0.1, 50, 99.9])
        assert (mid - lo) / (hi - lo) > BRIGHT_BACKGROUND_POSITION  # the fixture is the hard case
        assert not is_bright_background(fluo)
        assert is_bright_background(_crowded(True, seed))


def test_normalize_constant_image_gives_zeros() -> None:
    out = normalize_image(np.full((5, 6), 42, np.uint16))
    assert out.dtype == np.float32 and out.shape == (5, 6) and not out.any()


def test_normalize_inverts_bright_background() -> None:
    bright = _disc_image(True)
    auto = normalize_image(bright)
    assert auto[32, 32] > 0.9 and auto[0, 0] < 0.1  # the dark disc became bright
    plain = normalize_image(bright, invert=False)
    assert plain[32, 32] < 0.1
    np.testing.assert_allclose(normalize_image(_disc_image(False)), normalize_image(bright, invert=True))


def test_normalize_range_and_no_mutation(rng: np.random.Generator) -> None:
    img = rng.normal(1000, 100, (40, 40)).astype(np.float64)
    before = img.copy()
    out = normalize_image(img, invert=False)
    np.testing.assert_array_equal(img, before)
    assert out.dtype == np.float32
    assert NORMALIZED_RANGE[0] <= out.min() and out.max() <= NORMALIZED_RANGE[1]
    assert abs(np.percentile(out, 1.0)) < 1e-5 and abs(np.percentile(out, 99.8) - 1.0) < 1e-5
    with pytest.raises(ParameterError):
        normalize_image(img, low_pct=50, high_pct=10)


def test_image_to_display_rgb() -> None:
    gray16 = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600).astype(np.uint16)
    out = image_to_display_rgb(gray16)
    assert out.dtype == np.uint8 and out.shape == (10, 10, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 200
    colour[..., 1] = 100
    np.testing.assert_array_equal(image_to_display_rgb(colour), colour)
    dim = np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4)[..., None], 3, axis=2)
    assert image_to_display_rgb(dim).max() == 255  # grayscale stored as RGB is stretched
    two = np.zeros((4, 4, 2), np.float32)
    two[:2, :, 1] = 1.0
    shown = image_to_display_rgb(two)
    assert shown[0, 0, 1] == 255 and shown[..., 2].max() == 0
    assert not image_to_display_rgb(np.full((3, 3), 5.0)).any()


# --------------------------------------------------------------------------------------------------
# files and label export
# --------------------------------------------------------------------------------------------------
def test_list_image_files(tmp_path: Path, caplog) -> None:
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ["b.PNG", "a.tif", "notes.txt", "sub/c.jpeg", "sub/deep/d.Tiff", ".hidden/e.png", "sub/x.csv"]:
        (tmp_path / rel).write_bytes(b"x")
    found = list_image_files([tmp_path])
    assert [p.name for p in found] == ["a.tif", "b.PNG", "c.jpeg", "d.Tiff"]
    again = list_image_files([tmp_path / "a.tif", tmp_path, str(tmp_path / "*.tif")])
    assert [p.name for p in again] == ["a.tif", "b.PNG", "c.jpeg", "d.Tiff"]
    assert [p.name for p in list_image_files(str(tmp_path / "**" / "*.jpeg"))] == ["c.jpeg"]
    assert list_image_files(tmp_path / "notes.txt") == []
    with pytest.raises(FileNotFoundError, match="missing"):
        list_image_files([tmp_path / "missing"])
    with pytest.raises(FileNotFoundError):
        list_image_files([str(tmp_path / "*.gif")])
    # GIF and WebP, which read_image reads: counted where named on their own (a tester's `count real.gif` was
    # refused where count_file counted it), not picked from a folder or a pattern
    # a file given again (another spelling, its folder) is listed once, and said (a tester's 5 spellings: 1 row)
    with caplog.at_level("WARNING", logger="cellcount.io.files"):
        assert len(list_image_files([tmp_path / "a.tif", tmp_path / "sub" / ".." / "a.tif"])) == 1
    assert "1 input(s) given more than once" in caplog.text
    (tmp_path / "f.gif").write_bytes(b"x")
    assert [p.name for p in list_image_files(tmp_path / "f.gif")] == ["f.gif"]
    assert "f.gif" not in [p.name for p in list_image_files([tmp_path, str(tmp_path / "*.gif")])]


def test_list_image_files_reports_microscope_files(tmp_path: Path) -> None:
    """A folder of Zeiss / Nikon raw files next to exported TIFFs: the raw files are reported as skipped,
    so a counts table without them is not taken for the whole folder; notes and tables pass quietly."""
    for rel in ["a.tif", "plate1.CZI", "well.nd2", "notes.txt", "results.csv"]:
        (tmp_path / rel).write_bytes(b"x")
    skipped = []
    found = list_image_files(tmp_path, on_skip=lambda path, reason: skipped.append((path.name, reason)))
    assert [p.name for p in found] == ["a.tif"]
    assert [name for name, _ in skipped] == ["plate1.CZI", "well.nd2"]
    assert all("export it as TIFF" in reason for _, reason in skipped)


def test_split_ground_truth_files() -> None:
    paths = [
        Path("d/img1.png"),
        Path("d/img1_labels.tif"),
        Path("d/img2_MASK.png"),
        Path("d/img3_dots.png"),
        Path("d/img4_points.csv"),
        Path("labels/img5.png"),
        Path("d/_gt.png"),
    ]
    images, gt = split_ground_truth_files(paths)
    assert images == [Path("d/img1.png"), Path("d/_gt.png")]
    assert len(gt) == 5


def test_a_labels_tree_mirroring_the_images_is_ground_truth_below_the_searched_folder(tmp_path, monkeypatch) -> None:
    """A tester's `count tree` counted tree/labels/p1/A01.png and tree/labels/p2/A01.png as images (the total
    doubled): only the folder just above a file was looked at. Within the searched folders any labels/ folder
    counts, however they are typed; folders above them say nothing."""
    from cellcount.io.files import searched_folders

    monkeypatch.chdir(tmp_path)
    tree = [Path("tree/images/p1/A01.png"), Path("tree/labels/p1/A01.png"), Path("tree/Masks/p2/d/A01.png")]
    for p in tree:
        p.parent.mkdir(parents=True, exist_ok=True)
    assert split_ground_truth_files(tree)[0] == tree, "no searched folder given: the folder above only"
    for roots in (["tree"], ["./tree/"], [str(tmp_path / "tree")], ["tree/labels/p1", "tree"], ["tree/images/p1",
                                                                                                 "tree/labels/p1"]):
        assert split_ground_truth_files(tree, roots=roots) == (tree[:1], tree[1:]), roots
    assert split_ground_truth_files(tree[1:2], roots=["tree/labels"])[1] == tree[1:2], "the searched folder's name"
    monkeypatch.chdir(tmp_path / "tree" / "labels")
    inside = [Path("p1/A01.png")]
    assert split_ground_truth_files(inside, roots=["."])[1] == inside, "'.' inside labels/ as its full path"
    deep = [tmp_path / "gt" / "run1" / "images" / "a.png", tmp_path / "gt" / "run1" / "x" / "a.png"]
    assert split_ground_truth_files(deep, roots=[tmp_path / "gt" / "run1"]) == (deep, []), "above the searched folder"
    assert split_ground_truth_files([Path("set.zip/labels/p1/a.png")], uploaded=True)[1] == [
        Path("set.zip/labels/p1/a.png")], "upload names: every folder in them"
    monkeypatch.chdir(tmp_path)
    assert searched_folders(["tree", "tree/**/*.png", "tree/images/p1/A01.png", "*.png"]) == [
        Path("tree"), Path("tree"), Path(".")]


@pytest.mark.parametrize(("top", "dtype"), [(65535, np.uint16), (70000, np.uint32)])
def test_labels_to_tiff_roundtrip(top: int, dtype: type) -> None:
    labels = np.zeros((4, 5), np.int32)
    labels[1, 1] = 3
    labels[2, 3] = top
    data = labels_to_tiff_bytes(labels)
    back = tifffile.imread(io.BytesIO(data))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_array_equal(read_image(data), labels)
    with pytest.raises(ParameterError):
        labels_to_tiff_bytes(-labels)
    with pytest.raises(ParameterError):
        labels_to_tiff_bytes(labels.astype(np.float32))


# --------------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (DSB / "metadata.csv").is_file(), reason="DSB 2018 data not available")
def test_real_dsb_images() -> None:
    with open(DSB / "metadata.csv", newline="") as fh:
        rows = {r["filename"]: r for r in csv.DictReader(fh)}
    dark = next(n for n, r in rows.items() if r["bright_background"] == "0")
    colour = next(n for n, r in rows.items() if r["bright_background"] == "1" and r["grayscale"] == "0")
    gray_bright = next(n for n, r in rows.items() if r["bright_background"] == "1" and r["grayscale"] == "1")
    for name in (dark, colour, gray_bright):
        img = read_image(DSB / "images" / name)
        row = rows[name]
        assert img.shape == (int(row["height"]), int(row["width"]), 3) and img.dtype == np.uint8
        assert is_bright_background(to_gray(img)) == (row["bright_background"] == "1")
        labels = read_image(DSB / "labels" / name)
        assert labels.dtype == np.uint16 and labels.shape == img.shape[:2]
        assert len(np.unique(labels[labels > 0])) == int(row["count"])


def test_nan_images_are_named_in_the_input_note():
    """An all-NaN float image counted 0 without a flag (a constant one was flagged as blank); a NaN band
    silently lost its nuclei."""
    assert "every pixel is NaN" in input_note(np.full((16, 16), np.nan, np.float32))
    band = np.random.default_rng(0).random((100, 40)).astype(np.float32)
    band[:40] = np.nan
    assert "40% of the image's pixels are not numbers" in input_note(band)
    band[:40] = 0.5
    assert input_note(band) is None


def test_a_true_false_image_is_named_a_mask_in_the_input_note():
    """count_image(gray > 128) counted a mask's objects as nuclei with no flag (a notebook user's slip)."""
    mask = np.zeros((32, 32), bool)
    mask[4:10, 4:10] = True
    assert "only True and False (a mask?)" in input_note(mask)
    assert input_note(mask.astype(np.uint8) * 200) is None, "a 0/200 picture may be a real (binary) image"


def test_a_zip_named_on_the_command_line_says_how_to_count_it(tmp_path: Path) -> None:
    (tmp_path / "plate.zip").write_bytes(b"PK")
    skipped = []
    assert list_image_files([tmp_path / "plate.zip"], on_skip=lambda path, reason: skipped.append(reason)) == []
    assert len(skipped) == 1 and "unzip it and name the folder, or count the zip on the app's Batch page" in skipped[0]


def test_a_small_stack_written_as_one_page_of_samples_is_read_as_planes() -> None:
    """tifffile writes a stack of up to 4 planes as one page whose samples are the planes; its series still
    names them (TYX, ZYX). They were read as 3 channels and averaged: a drifting time series counted 92 nuclei
    against 37, flagged for "different stains". Now they are planes, as a longer stack's are."""
    stack = np.stack([np.full((6, 8), 10 * (k + 1), np.uint16) for k in range(3)])
    stack[2, 0, 0] = 999
    for axes, what in (("TYX", "3 time points"), ("ZYX", "3 z-planes")):
        data = _tiff_bytes(stack, metadata={"axes": axes})
        with pytest.warns(ImageReadWarning, match=f"holds {what}.*only the first was read"):
            assert (read_image(data) == 10).all()
        for k in range(3):
            np.testing.assert_array_equal(read_image(data, page=k), stack[k])
        if axes == "ZYX":  # time points are never projected (cells move)
            np.testing.assert_array_equal(read_image(data, page="max"), stack.max(axis=0))
        else:
            with pytest.raises(ParameterError, match="time points"):
                read_image(data, page="max")
        with pytest.raises(ParameterError, match="0..2"):
            read_image(data, page=3)
    assert read_image(_tiff_bytes(stack, metadata={"axes": "CYX"})).shape == (6, 8, 3), "channels stay channels"


def test_long_file_names_are_shortened_for_display_only():
    """A 64-digit DSB name broke mid-word across Count's narrow column (a tester)."""
    from cellcount.io import short_name

    long = "00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552.png"
    assert short_name(long) == "00071198d059….png"
    assert short_name("img01.tif") == "img01.tif" and short_name("a" * 30) == "a" * 12 + "…"


def test_a_files_channel_names_and_pixel_size_are_read_from_its_metadata() -> None:
    """OME-XML's channel names and PhysicalSizeX, ImageJ's slice labels and calibration; RGB pictures' channels
    are red, green, blue; an unnamed multichannel TIFF's are not guessed (its DAPI was called "green": a tester)."""
    from cellcount.io import read_metadata

    stack = np.zeros((3, 8, 8), np.uint16)
    ome = _tiff_bytes(stack, ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["Cy5", "DAPI", "GFP"]},
                                                  "PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm"})
    meta = read_metadata(ome, n_channels=3)
    assert meta.channel_names == ("Cy5", "DAPI", "GFP") and meta.pixel_size_um == pytest.approx(0.325)
    ij = _tiff_bytes(stack, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "CYX", "unit": "um", "Labels": ["a", "b", "c"]})
    meta = read_metadata(ij, n_channels=3)
    assert meta.channel_names == ("a", "b", "c") and meta.pixel_size_um == pytest.approx(0.5)
    escaped = io.BytesIO()  # ImageJ writes µ escaped in its description: unit=\u00B5m
    tifffile.imwrite(escaped, stack[0], resolution=(2, 2), description="ImageJ=1.54f\nunit=\\u00B5m\n")
    assert read_metadata(escaped.getvalue()).pixel_size_um == pytest.approx(0.5)
    plain = _tiff_bytes(stack, photometric="minisblack", metadata={"axes": "CYX"})
    assert read_metadata(plain, n_channels=3) == read_metadata(b"not an image")
    assert read_metadata(plain, n_channels=3).channel_names is None
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, "PNG")
    assert read_metadata(png.getvalue(), n_channels=3).channel_names == ("red", "green", "blue")
    assert read_metadata(ome, n_channels=2).channel_names is None, "names of another count are not the channels'"


def test_pixels_that_are_not_square_give_no_calibration_and_say_why() -> None:
    """A 0.4 x 0.8 µm pixel's width taken for both axes halved every area in µm² and every row in µm, without a
    word (an auditor); nearly square pixels (0.5%) are square."""
    from cellcount.io import read_metadata

    img = np.zeros((8, 8), np.uint16)
    ome = _tiff_bytes(img, ome=True, metadata={"PhysicalSizeX": 0.4, "PhysicalSizeXUnit": "µm",
                                                "PhysicalSizeY": 0.8, "PhysicalSizeYUnit": "µm"})
    ij = _tiff_bytes(img, imagej=True, resolution=(1 / 0.4, 1 / 0.8), metadata={"unit": "um"})
    for data in (ome, ij):
        meta = read_metadata(data)
        assert meta.pixel_size_um is None and "not square (0.4 µm wide, 0.8 µm high)" in meta.pixel_note
    near = _tiff_bytes(img, ome=True, metadata={"PhysicalSizeX": 0.4, "PhysicalSizeXUnit": "µm",
                                                 "PhysicalSizeY": 0.402, "PhysicalSizeYUnit": "µm"})
    assert read_metadata(near).pixel_size_um == pytest.approx(0.4) and read_metadata(near).pixel_note == ""


def test_zip_names_in_utf8_without_the_flag_are_read_as_written() -> None:
    """Linux's zip (Info-ZIP) writes UTF-8 names without the UTF-8 flag: read as code page 437 they showed as
    `A05_┬╡m.png` in a batch's table and CSVs (a tester)."""
    import zipfile

    from cellcount.io import iter_zip_images, open_zip, zip_image_names

    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, "PNG")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("sub dir/A05_XXm.png", png.getvalue())  # a placeholder as long as the UTF-8 name
        zf.writestr("plain.png", png.getvalue())
    data = buf.getvalue().replace(b"A05_XXm.png", "A05_µm.png".encode())  # as Info-ZIP writes it: no flag
    with zipfile.ZipFile(io.BytesIO(data)) as raw:
        assert raw.namelist()[0] == "sub dir/A05_┬╡m.png", "Python alone reads it as code page 437"
    assert zip_image_names(data) == ["plain.png", "sub dir/A05_µm.png"]  # in path order, as a folder is listed
    plates = io.BytesIO()  # written plate2/A02 before plate2/A01: the rows came in that order (a tester)
    with zipfile.ZipFile(plates, "w") as zf:
        for name in ("plate1/A01.png", "plate2/A02.png", "plate2/A01.png"):
            zf.writestr(name, png.getvalue())
    assert zip_image_names(plates.getvalue()) == ["plate1/A01.png", "plate2/A01.png", "plate2/A02.png"]
    assert [(n, b is not None) for n, b, _ in iter_zip_images(data)] == [("plain.png", True),
                                                                          ("sub dir/A05_µm.png", True)]
    with open_zip(data) as zf:
        assert zf.read("sub dir/A05_µm.png") == png.getvalue()
    cp437 = io.BytesIO()  # a name that is code page 437 indeed (not valid UTF-8 as bytes) stays as it is
    with zipfile.ZipFile(cp437, "w") as zf:
        zf.writestr("Xa.png", png.getvalue())
    data = cp437.getvalue().replace(b"Xa.png", b"\x81a.png")  # 0x81: 'ü' in code page 437, alone no UTF-8
    assert zip_image_names(data) == ["üa.png"]
    twice = io.BytesIO()  # one raw name twice, and a flagged name its decoding collides with: read, not a KeyError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        with zipfile.ZipFile(twice, "w") as zf:
            zf.writestr("B_XXm.png", png.getvalue())
            zf.writestr("B_XXm.png", png.getvalue())
            zf.writestr("B_µm.png", png.getvalue())
    data = twice.getvalue().replace(b"B_XXm.png", "B_µm.png".encode())
    assert [n for n, b, _ in iter_zip_images(data) if b is not None] == ["B_µm.png"] * 3


def test_a_tiff_whose_first_page_is_a_thumbnail_is_read_as_its_image(tmp_path):
    """A scanner's reduced-resolution page stored first was read (a 64 x 64 thumbnail counted, the image left out
    and "only the first of 2 images" said)."""
    import tifffile

    image = (np.arange(256 * 256).reshape(256, 256) % 251).astype(np.uint8)
    path = tmp_path / "thumb_first.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(image[::4, ::4].copy(), subfiletype=1, photometric="minisblack")
        tw.write(image, photometric="minisblack")
    from cellcount.io.read import image_shape, read_image_planes

    read, planes = read_image_planes(path)
    assert read.shape == (256, 256) and np.array_equal(read, image) and planes is None
    assert image_shape(path) == (256, 256)


def test_pages_of_other_sizes_suggest_a_page_not_a_projection(tmp_path):
    """A file of two images of different sizes suggested their maximum projection, which then failed ("the planes
    differ in size")."""
    import tifffile

    from cellcount.io.read import read_image_and_note

    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((64, 64), np.uint8), photometric="minisblack")
        tw.write(np.zeros((128, 96), np.uint8), photometric="minisblack")
    note = read_image_and_note(path)[1]
    assert "Choose an image (count command: --plane N;" in note and "maximum projection" not in note
    assert "the first may be a thumbnail" in note  # the second is larger


def test_images_of_an_ome_file_are_chosen_whole_with_their_channels_and_never_projected(tmp_path):
    """Three positions of two channels each (an OME-TIFF of three series): page N is position N with both its
    channels (raw pages mixed positions and channels: page 2 was position 1's first channel, page 1 failed with
    "'TiffFrame' object has no attribute 'imagelength'"); their maximum projection lays fields over each other."""
    import tifffile

    from cellcount.errors import ParameterError, PlaneError
    from cellcount.io.read import CHOSEN_IMAGES, read_image_planes

    rng = np.random.default_rng(0)
    fields = [rng.integers(0, 200, (32, 48), dtype=np.uint8) for _ in range(3)]
    path = tmp_path / "positions.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        for field in fields:
            tw.write(np.stack([field, 255 - field]), metadata={"axes": "CYX"})
    for k, field in enumerate(fields):
        image, planes = read_image_planes(path, page=k)
        assert image.shape == (32, 48, 2) and np.array_equal(image[..., 0], field)
        assert planes[0] == 3 and planes[1] in CHOSEN_IMAGES and "positions" in planes[1]
        assert np.array_equal(read_image_planes(path, page=k, channel=1)[0], 255 - field)
    with pytest.raises(PlaneError, match="holds 3 images"):
        read_image_planes(path, page=3)
    with pytest.raises(ParameterError, match="lays different images over each other"):
        read_image_planes(path, page="max")


def test_pages_of_other_sizes_smallest_first_say_the_first_may_be_a_thumbnail(tmp_path):
    """Levels of a pyramid stored as plain pages, the smallest first: its count was flagged only as "the file holds 3
    images (TIFF pages)", not that a larger one was left unread."""
    import tifffile

    from cellcount.io.read import read_image_and_note

    path = tmp_path / "levels.tif"
    big = np.zeros((128, 128), np.uint8)
    with tifffile.TiffWriter(path) as tw:
        for step in (4, 2, 1):
            tw.write(big[::step, ::step].copy(), photometric="minisblack")
    image, note = read_image_and_note(path)
    assert image.shape == (32, 32) and "a later one larger than the first" in note
    assert read_image_and_note(path, page=2)[0].shape == (128, 128)


def test_a_folder_listing_leaves_ground_truth_out_as_the_command_line_does(tmp_path):
    """A tester's Python batch over a folder of images with their labels counted ``a_labels.tif`` as an image,
    unflagged: the listing leaves such files out unless asked for them."""
    for name in ("a.png", "a_labels.tif", "masks/b.png", "b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    assert [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)] == ["a.png", "b.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_image_files(iter([tmp_path]), ground_truth=True)] == [
        "a.png", "a_labels.tif", "b.png", "masks/b.png"]
    assert list_image_files(tmp_path / "a_labels.tif") == [tmp_path / "a_labels.tif"], "named on its own: meant"


def test_a_projection_asked_of_planes_saved_as_channels_is_said_not_applied(tmp_path):
    """tifffile.imwrite of a (3, H, W) z-stack reads as 3 channels: page='max' did nothing, in silence (a tester)."""
    stack = np.zeros((3, 16, 16), np.uint8)
    stack[0, 2:6, 2:6] = 200
    tifffile.imwrite(tmp_path / "z.tif", stack)
    tifffile.imwrite(tmp_path / "rgb.tif", np.moveaxis(stack, 0, -1), photometric="rgb")
    with pytest.warns(ImageReadWarning, match="the maximum projection of the planes was asked for, but this file "
                                              "holds one plane with 3 channels"):
        assert read_image(tmp_path / "z.tif", page="max").shape == (16, 16, 3)
    assert read_image_and_note(tmp_path / "rgb.tif", page="max")[1] is None  # a camera's RGB picture: no stack


def test_an_image_too_small_to_judge_is_said_so():
    """A tester's 20 x 20 px image counted 0 with the density model, unflagged."""
    from cellcount.io import SMALL_IMAGE_PX

    note = input_note(np.random.default_rng(0).integers(0, 255, (20, 24), np.uint8))
    assert note.startswith("the image is only 24 x 20 px: too small")
    assert input_note(np.random.default_rng(0).integers(0, 255, (SMALL_IMAGE_PX, 40), np.uint8)) is None


def test_an_overexposed_image_is_said_so(rng):
    """A tester's H&E at 2x exposure counted 38 for 10 nuclei, at 3x 0 for 73, both unflagged."""
    from cellcount.io import CLIPPED_SHARE, exposure_note

    dark = rng.integers(5, 40, (64, 64, 3)).astype(np.uint8)
    dark[:20, :, 0] = 255  # fluorescence with its red channel clipped over its bright part
    assert exposure_note(dark).startswith("100% of the image's bright (nucleus) pixels are at the brightest value")
    # nuclei clipped at their centres, as bright nuclei in fluorescence often are: no note
    grey = rng.integers(20, 40, (128, 128)).astype(np.uint16)
    rr, cc = np.indices(grey.shape)
    for r, c in ((30, 30), (30, 90), (90, 30), (90, 90)):
        disk = (rr - r) ** 2 + (cc - c) ** 2
        grey[disk <= 144] = 3000
        grey[disk <= 16] = 65535  # a ninth of each nucleus
    from cellcount.io.normalize import clipped_share

    assert exposure_note(grey) is None and 0.05 < clipped_share(grey) < CLIPPED_SHARE
    # sparse nuclei clipped nearly whole, a few percent of the picture (a field of them counted 28% low, unflagged)
    grey[grey == 3000] = 4095  # a 12-bit camera's full scale, in a 16-bit file
    grey[grey == 65535] = 4095
    assert exposure_note(grey).startswith("100% of the image's bright (nucleus) pixels")
    # bright-field: white glass clipped at 255 says nothing of the nuclei; nuclei clipped too do
    he = np.full((64, 64, 3), 255, np.uint8)
    he[20:44, 20:44] = rng.integers(90, 160, (24, 24, 3))  # purple tissue, nothing clipped
    assert exposure_note(he) is None
    he[20:44, 20:44, 2] = 255  # its blue channel clipped: overexposed
    assert exposure_note(he).startswith("100% of the image's stained pixels are at the brightest value")


def test_camera_noise_is_no_merge_of_stains(rng) -> None:
    """Independent noise per channel on gray stored as RGB was read as "3 channels show different stains" (a tester:
    19 of 28 DSB images, median count error 2.4%): channels are compared by their structure, smoothed."""
    grey = np.full((256, 256), 15.0)
    rr, cc = np.indices(grey.shape)
    for r, c in rng.integers(20, 236, (40, 2)):
        grey[(rr - r) ** 2 + (cc - c) ** 2 <= 64] = 40  # faint nuclei, as many DSB images have
    noisy = np.clip(np.repeat(grey[..., None], 3, axis=2) + rng.normal(0, 10, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert not channels_differ(noisy)


def test_a_label_image_counted_as_an_image_is_flagged(draw_disks):
    """A label image uploaded under its image's name (labels/x.png as x.png) was counted as a picture with no
    word; a picture with clipped nuclei on a zeroed background is not taken for one."""
    labels = draw_disks((64, 64), [(12, 12), (30, 40), (50, 20), (50, 52)], 6).astype(np.uint16)
    assert "looks like a label image (4 regions" in input_note(labels)
    rng = np.random.default_rng(0)
    picture = np.where(labels > 0, 255, rng.integers(1, 40, labels.shape)).astype(np.uint8)
    picture[:16] = 0  # a zeroed band of background
    assert input_note(picture) is None
    assert input_note((labels > 0).astype(np.uint8) * 3 + (labels == 2)) is None, "0 and two values: may be a picture"


def test_vgg_dot_images_beside_their_cell_images_are_ground_truth():
    """The VGG cells layout, 001cell.png beside 001dots.png: the Batch page counted the dot image as an image (0
    objects, flagged) though Evaluate pairs the two; a lone 002dots.png is kept (nothing says what it annotates)."""
    from cellcount.io import split_ground_truth_files

    images, gt = split_ground_truth_files(["set.zip/001cell.png", "set.zip/001dots.png", "set.zip/002dots.png"],
                                          uploaded=True)
    assert [p.name for p in images] == ["001cell.png", "002dots.png"] and [p.name for p in gt] == ["001dots.png"]


def test_an_empty_upload_or_pair_is_said_to_be_empty() -> None:
    """Evaluate and compare called a 0-byte image "unknown signature ; accepted: PNG, ..." where count said it is
    empty (a tester)."""
    from cellcount.io.read import not_an_image

    assert not_an_image("im2.png", b"") == "im2.png: file is empty (0 bytes)"
    assert "plain text" in not_an_image("notes.png", b"hello, this is text")


def test_a_damaged_chunk_is_said_damaged_not_undecodable():
    """A Zarr chunk of random bytes read "uses a compression ... this program cannot decode (save it as LZW)" from
    the decoder's "Zstd decompression error" (a tester)."""
    from cellcount.io.read import decoder_error

    assert "truncated or damaged" in str(decoder_error("a.zarr", RuntimeError("Zstd decompression error: Unknown frame")))
    assert "cannot decode" in str(decoder_error("a.tif", ValueError("JPEGXL compression not available (imagecodecs)")))


def test_a_zip_inside_a_zip_says_how_to_have_its_images_counted() -> None:
    """A zip inside a zip read "not an image file (extension .zip): skipped", its images never counted unsaid."""
    import zipfile

    from cellcount.io import iter_zip_images

    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, "PNG")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("b.png", png.getvalue())
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("a.png", png.getvalue())
        zf.writestr("more.zip", inner.getvalue())
    reasons = {name: reason for name, _, reason in iter_zip_images(outer.getvalue())}
    assert reasons["a.png"] is None and "a zip inside a zip is not opened; upload it on its own" in reasons["more.zip"]


def test_an_alpha_of_transparent_and_opaque_parts_is_dropped_as_a_files_is() -> None:
    """An RGBA array whose left quarter is transparent (an ROI export) averaged its alpha in as a fourth channel:
    94 against the same file's 161 (read_image drops a file's alpha)."""
    from cellcount.io import to_gray
    from cellcount.io.normalize import input_note, without_alpha

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:20, 10:20, :3] = 200
    rgba[..., 3] = 255
    rgba[:, :10, 3] = 0
    np.testing.assert_array_equal(to_gray(rgba), to_gray(rgba[..., :3]))
    assert input_note(rgba) is None  # not "its 4 channels show different stains"
    stains = rgba.copy()
    stains[..., 3] = np.arange(40, dtype=np.uint8)[None, :] * 6  # a fourth stain varies in between: kept
    assert without_alpha(stains).shape[2] == 4
    floats = rgba.astype(np.float32) / 255
    assert without_alpha(floats).shape[2] == 3
    soft = rgba.copy()
    soft[:, 10:14, 3] = (np.arange(4) * 60)[None, :].astype(np.uint8)  # a cut-out's soft edge: still alpha
    assert without_alpha(soft).shape[2] == 3


def test_a_cmyk_tiff_is_read_as_rgb_as_pillow_converts_it(tmp_path) -> None:
    """A CMYK TIFF was read as four raw ink channels (K all 0 taken for an opaque alpha): a dark background."""
    from PIL import Image

    from cellcount.io import read_image

    ink = np.zeros((32, 32, 4), np.uint8)
    ink[8:24, 8:24] = (95, 130, 194, 62)  # black ink too: Pillow multiplies what each ink leaves (a reviewer)
    Image.fromarray(ink, "CMYK").save(tmp_path / "c.tif")
    got = read_image(tmp_path / "c.tif")
    assert got.shape == (32, 32, 3)
    np.testing.assert_array_equal(got, np.asarray(Image.open(tmp_path / "c.tif").convert("RGB")))
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif", channel=0), got[..., 0])


def test_salt_noise_is_no_overexposure_but_clipped_nuclei_are() -> None:
    """5% of the pixels set to 0 or 255 read "40% of the image's bright (nucleus) pixels are at the brightest value
    (overexposed)": lone pixels at the top are noise; clipped nuclei are areas."""
    from cellcount.io import exposure_note
    from cellcount.io.normalize import clipped_share

    rng = np.random.default_rng(0)
    image = rng.normal(20, 3, (128, 128)).clip(0, 255).astype(np.uint8)
    for r, c in ((20, 20), (20, 80), (80, 40), (90, 100)):
        image[r - 6:r + 6, c - 6:c + 6] = 120
    salted = image.copy()
    noise = rng.random(image.shape)
    salted[noise < 0.025], salted[noise > 0.975] = 0, 255
    assert exposure_note(salted) is None
    clipped = image.copy()
    clipped[image == 120] = 255
    assert clipped_share(clipped) > 0.9 and exposure_note(clipped) is not None


def test_hot_pixels_setting_the_top_of_the_range_are_said():
    """0.3% hot pixels at 65,535 over nuclei at 3,000 took a count of 43 to 0, said only as 'no objects were found'
    (a tester): the note names them and the High percentile that leaves them out; clustered bright nuclei, a
    sparse field's few, and hot pixels too few to set the top are not noted."""
    from cellcount.io import hot_pixel_note

    rng = np.random.default_rng(0)
    image = rng.normal(300, 20, (200, 200)).clip(0).astype(np.uint16)
    for r, c in [(40, 40), (60, 150), (150, 80), (160, 160)]:
        yy, xx = np.ogrid[:200, :200]
        image[(yy - r) ** 2 + (xx - c) ** 2 <= 64] = 3000
    assert hot_pixel_note(image) is None, "bright nuclei lie together: not lone pixels"
    for share, noted in ((0.001, False), (0.005, True), (0.02, True)):
        hot = image.copy().reshape(-1)
        hot[rng.choice(hot.size, int(share * hot.size), replace=False)] = 65535
        note = hot_pixel_note(hot.reshape(image.shape))
        assert bool(note) == noted, (share, note)
        if noted:  # left out of the top where few; where many, that counts them: removed first (a reviewer)
            assert "set by scattered single pixels" in note
            assert ("lower High percentile to" in note) == (share <= 0.005), note
            assert ("remove them first" in note) == (share > 0.005), note
    sparse = np.full((200, 200), 100, np.uint16)
    sparse[100:104, 100:104] = 4000  # one small nucleus: the top is its pixels, together
    assert hot_pixel_note(sparse) is None


def test_signed_images_below_zero_are_judged_for_clipping_without_a_warning():
    """A background-subtracted int16 image (values below 0) took the log of negative numbers: a RuntimeWarning on
    every count, and a failed file under `python -W error`."""
    from cellcount.io.normalize import clipped_and_bright

    image = np.full((64, 64), -300, np.int16)
    image[10:20, 10:20] = 32767  # a clipped nucleus
    image[40:50, 40:50] = 2000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        share, bright = clipped_and_bright(image)
    assert share == pytest.approx(0.5) and not bright


def test_a_microscope_file_that_is_a_tiff_inside_is_listed_as_the_app_reads_it(tmp_path):
    """An .svs or .lsm is a TIFF: the app counted one from its content while the command line refused it, named or
    in a folder ("not an image file this program reads"); a .czi that is none is still said, not counted."""
    import tifffile

    tifffile.imwrite(tmp_path / "slide.svs", np.zeros((16, 16), np.uint8))
    (tmp_path / "scan.czi").write_bytes(b"ZISRAWFILE" + bytes(40))
    skipped = []
    found = list_image_files([tmp_path], on_skip=lambda p, why: skipped.append((p.name, why)))
    assert [p.name for p in found] == ["slide.svs"]
    assert skipped and skipped[0][0] == "scan.czi" and "export it as TIFF" in skipped[0][1]
    assert [p.name for p in list_image_files([tmp_path / "slide.svs"])] == ["slide.svs"]


def test_a_z_stack_written_plane_by_plane_is_still_projected(tmp_path):
    """``imwrite(..., append=True)`` gives every plane a series of its own: read as an OME file's positions, its
    maximum projection was refused ("lays different images over each other"), where it had been counted."""
    import tifffile

    from cellcount.io.read import CHOSEN_IMAGES, read_image_planes

    planes = [np.full((16, 16), 10 * k, np.uint8) for k in range(5)]
    path = tmp_path / "appended.tif"
    for plane in planes:
        tifffile.imwrite(path, plane, append=True)
    image, found = read_image_planes(path, page="max")
    assert (image == 40).all() and found[0] == 5 and found[1] not in CHOSEN_IMAGES
    assert (read_image_planes(path, page=3)[0] == 30).all()


def test_positions_that_are_z_stacks_are_refused_not_counted_from_the_first(tmp_path):
    """An OME file of three positions, each a z-stack: position 0 was read (its planes, its projection) and the
    other two left out without a word."""
    import tifffile

    from cellcount.errors import ImageReadError
    from cellcount.io.read import read_image_planes

    path = tmp_path / "positions_z.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        for k in range(3):
            tw.write(np.full((2, 16, 16), k, np.uint8), metadata={"axes": "ZYX"})
    for page in (None, 1, "max"):
        with pytest.raises(ImageReadError, match="holds 3 images .* each is a stack of planes"):
            read_image_planes(path, page=page)


def test_a_microscope_file_that_is_a_tiff_inside_a_zip_is_read_as_elsewhere(tmp_path):
    """A zipped .svs (a TIFF) was refused as "a microscope file this program cannot read", where the same file in a
    folder or uploaded on its own is counted; a .czi that is none is still said."""
    import zipfile

    import tifffile

    from cellcount.io.archive import iter_zip_images, zip_image_names

    tif = io.BytesIO()
    tifffile.imwrite(tif, np.full((8, 8), 7, np.uint8))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("slide.svs", tif.getvalue())
        zf.writestr("scan.czi", b"ZISRAWFILE" + bytes(40))
    assert zip_image_names(buf.getvalue()) == ["slide.svs"]
    got = {name: (data is not None, why) for name, data, why in iter_zip_images(buf.getvalue())}
    assert got["slide.svs"][0] and not got["scan.czi"][0] and "export it as TIFF" in got["scan.czi"][1]
