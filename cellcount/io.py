"""Image input/output: bytes, paths or file-likes -> numpy arrays, and a few array helpers.

Arrays are (row, col) = (H, W) or (H, W, C) with the channel last. Readers keep the native dtype
(uint8, uint16, int32, float32 ...); :func:`to_gray` and :func:`normalize_image` turn any of them into
float32 (H, W) for the models. Every error a user can trigger is one of :mod:`cellcount.errors`.

Pixel caps are checked from the file header *before* any pixel is decoded, so a small file that claims a
huge size (a decompression bomb) is refused cheaply with :class:`~cellcount.errors.ImageTooLargeError`.
"""

from __future__ import annotations

import errno
import glob
import io
import logging
import os
import struct
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from cellcount.errors import CellcountError, ImageReadError, ImageTooLargeError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "BRIGHT_BACKGROUND_POSITION",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "GROUND_TRUTH_DIRS",
    "GROUND_TRUTH_SUFFIXES",
    "IMAGE_EXTENSIONS",
    "NORMALIZED_RANGE",
    "ImageSource",
    "ground_truth_suffix",
    "image_shape",
    "image_to_display_rgb",
    "is_bright_background",
    "labels_to_tiff_bytes",
    "list_image_files",
    "normalize_image",
    "read_image",
    "split_ground_truth_files",
    "to_gray",
]

DEFAULT_MAX_PIXELS = 8192 * 8192
"""Default cap on H * W of one image plane (about 67 megapixels)."""

MAX_SAMPLES_PER_PIXEL = 4
"""Values decoded per pixel at most (RGBA) when all channels are read: a file with more channels than this
whose full decode would pass ``MAX_SAMPLES_PER_PIXEL * max_pixels`` values must name one ``channel``,
and then only that channel is decoded."""

DEFAULT_MAX_BYTES = 1 << 30
"""Default cap on the size of an encoded file or upload, in bytes (1 GiB)."""

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
"""File extensions (lower case) that :func:`list_image_files` keeps."""

GROUND_TRUTH_SUFFIXES = ("_labels", "_label", "_masks", "_mask", "_gt", "_dots", "_points")
"""Stem suffixes that mark a ground-truth file (``img01_labels.tif``), in order of preference."""

GROUND_TRUTH_DIRS = frozenset({"labels", "label", "masks", "mask", "gt", "ground_truth", "groundtruth"})
"""Folder names whose files :func:`split_ground_truth_files` treats as ground truth."""

BRIGHT_BACKGROUND_POSITION = 1.0 / 3.0
"""Median position in the 0.1-99.9 percentile range above which :func:`is_bright_background` says True."""

NORMALIZED_RANGE = (-0.5, 1.5)
""":func:`normalize_image` clips its output to this range (percentiles map to 0 and 1)."""

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = ((_PNG_MAGIC, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"),
               *((m, "TIFF") for m in _TIFF_MAGICS))
_PILLOW_WARNINGS_LOCK = threading.Lock()  # see _read_pillow
_CHANNEL_AXES = "CS"  # tifffile axis letters that hold channels / samples
# Errors that decoders raise on corrupt, truncated or unsupported input.
_DECODE_ERRORS = (
    UnidentifiedImageError,
    tifffile.TiffFileError,
    OSError,
    ValueError,
    SyntaxError,
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    RuntimeError,  # imagecodecs errors (DeflateError, LzwError ...) derive from RuntimeError
    TypeError,
    ZeroDivisionError,
)


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def _source_name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else "<stream>"


def _open_source(source: ImageSource, max_bytes: int) -> tuple[str, str | io.BytesIO, bytes]:
    """Return (name for messages, path or in-memory buffer, first 32 bytes), checking the byte size."""
    name = _source_name(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"image file not found: {path}")
        if os.path.isdir(path):
            raise ImageReadError(f"{path}: is a folder, not an image file")
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ImageTooLargeError(
                f"{path}: file is {size:,} bytes, above the cap of {max_bytes:,} bytes (max_bytes)"
            )
        if size == 0:
            raise ImageReadError(f"{path}: file is empty (0 bytes)")
        with open(path, "rb") as fh:
            head = fh.read(32)
        return name, path, head
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        if hasattr(source, "seek"):
            try:
                source.seek(0)
            except (OSError, ValueError):
                pass  # not seekable: read from where it is
        data = source.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageReadError(f"{name}: the file-like object must be opened in binary mode")
        data = bytes(data)
    else:
        raise TypeError(
            f"source must be a path, bytes or a binary file-like object, not {type(source).__name__}"
        )
    if len(data) > max_bytes:
        size = f"{len(data):,}" if isinstance(source, (bytes, bytearray, memoryview)) else f"more than {max_bytes:,}"
        raise ImageTooLargeError(f"{name}: data is {size} bytes, above the cap of {max_bytes:,} bytes (max_bytes)")
    if not data:
        raise ImageReadError(f"{name}: image data is empty (0 bytes)")
    return name, io.BytesIO(data), data[:32]


def _check_pixels(name: str, height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageReadError(f"{name}: image has a zero-size dimension ({height} x {width} pixels, H x W)")
    if height * width > max_pixels:
        raise ImageTooLargeError(
            f"{name}: image is {height:,} x {width:,} = {height * width:,} pixels (H x W), "
            f"above the cap of {max_pixels:,} pixels (max_pixels)"
        )


def read_image(
    source: ImageSource,
    *,
    channel: int | None = None,
    page: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Read an image file, bytes or binary file-like into an array of its native dtype.

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file-like
        The image. The format is detected from the content, not the file name: TIFF is read with
        tifffile, 16-bit colour PNG with OpenCV, everything else with Pillow. A seekable file-like is
        read from its start (an upload that was read before still works).
    channel : int, optional
        If given and the image has channels, return only that channel as (H, W).
    page : int
        TIFF: index along the page-like axis (Z, T, generic pages) of the first series; other formats:
        the frame of a multi-frame file.
    max_pixels : int
        Cap on H * W, checked from the header before decoding.
    max_bytes : int
        Cap on the size of the encoded data in bytes.

    Returns
    -------
    numpy.ndarray
        (H, W) or (H, W, C) with the channel last, in the file's dtype (uint8, uint16, int32, float32 ...).
        RGBA drops alpha, LA -> L, palette / CMYK / YCbCr -> RGB, 1-bit -> uint8 0/255, Pillow 'I;16' ->
        uint16, 'I' -> int32, 'F' -> float32. The EXIF orientation is applied (Pillow formats). TIFF
        channels stored CYX (planar) or YXC (contiguous) both come back (H, W, C).

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    ImageReadError
        Empty, truncated or non-image data, a zero-size dimension, or more than 3 non-singleton dims.
    ImageTooLargeError
        More than ``max_pixels`` pixels or ``max_bytes`` bytes (also Pillow's decompression-bomb guard).
    ParameterError
        ``channel`` or ``page`` out of range.
    """
    _check_int("max_pixels", max_pixels, minimum=1)
    _check_int("max_bytes", max_bytes, minimum=1)
    _check_int("page", page, minimum=0)
    name, src, head = _open_source(source, max_bytes)
    try:
        if head[:4] in _TIFF_MAGICS:
            image = _read_tiff(src, name=name, page=page, channel=channel, max_pixels=max_pixels)
            channel = None  # selected while decoding: only that channel's data were read
        elif head[:8] == _PNG_MAGIC and len(head) >= 26 and head[24] == 16 and head[25] in (2, 4, 6):
            image = _read_png16_colour(src, head, name=name, page=page, max_pixels=max_pixels)
        else:
            image = _read_pillow(src, name=name, page=page, max_pixels=max_pixels)
    except CellcountError:
        raise
    except MemoryError as err:
        raise ImageTooLargeError(f"{name}: not enough memory to decode the image") from err
    except UnidentifiedImageError as err:
        raise ImageReadError(f"{name}: not an image in a format we can read ({_describe_head(head)})") from err
    except _DECODE_ERRORS as err:
        raise ImageReadError(f"{name}: cannot read image: {err} ({type(err).__name__})") from err
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ImageReadError(f"{name}: decoded image has an unusable shape {image.shape}")
    if image.dtype.byteorder not in ("=", "|"):
        image = image.astype(image.dtype.newbyteorder("="))
    if channel is not None:
        image = _select_channel(image, channel)
    return image


def _check_decoded(name: str, height: int, width: int, n_channels: int, max_pixels: int) -> None:
    """Refuse to decode more than :data:`MAX_SAMPLES_PER_PIXEL` values per pixel of a full plane."""
    values = height * width * n_channels
    cap = max_pixels * MAX_SAMPLES_PER_PIXEL
    if n_channels > 1 and values > cap:
        raise ImageTooLargeError(
            f"{name}: image has {n_channels} channels of {height:,} x {width:,} pixels = {values:,} values to "
            f"decode, above the cap of {cap:,} ({MAX_SAMPLES_PER_PIXEL} x max_pixels); choose one channel "
            "(channel=N; CLI --channel N): only that channel is then decoded"
        )


def _channel_index(name: str, channel: int, n_channels: int) -> int:
    """``channel`` checked against ``n_channels`` (the same messages as :func:`_select_channel`)."""
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise ParameterError(f"channel must be an integer in 0..{n_channels - 1}, got {channel!r}")
    if not 0 <= channel < n_channels:
        valid = ", ".join(str(i) for i in range(min(n_channels, 16))) + (" ..." if n_channels > 16 else "")
        raise ParameterError(
            f"channel {channel} is out of range: {name} has {n_channels} channel(s), valid: {valid}"
        )
    return int(channel)


def _describe_head(head: bytes) -> str:
    """Say what unreadable data look like, for messages (Pillow's own message names a memory address)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "the data are an HTML page, e.g. a web error page saved under an image name"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "the data are XML/SVG text; export a raster image (PNG or TIFF)"
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic):
            return f"it starts like a {fmt} file but is corrupt or truncated"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "the data are plain text, not an image"
    return f"unknown signature {head[:8].hex(' ')}; accepted: PNG, JPEG, BMP, TIFF"


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _select_channel(image: np.ndarray, channel: int) -> np.ndarray:
    n = 1 if image.ndim == 2 else image.shape[2]
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise ParameterError(f"channel must be an integer in 0..{n - 1}, got {channel!r}")
    if not 0 <= channel < n:
        valid = ", ".join(str(i) for i in range(n))
        raise ParameterError(
            f"channel {channel} is out of range: the image has {n} channel(s), valid: {valid}"
        )
    if image.ndim == 2:
        return image
    return np.ascontiguousarray(image[:, :, channel])


def _read_pillow(src: str | io.BytesIO, *, name: str, page: int, max_pixels: int) -> np.ndarray:
    # Our cap is checked from the header right after open. Pillow's own decompression-bomb guard runs
    # inside Image.open (and in some plugins' seek): when our cap is at most Pillow's, anything it warns
    # about is above our cap too, so the warning is turned into an error; when the caller raised our cap
    # above Pillow's, the warning is silenced and our check applies. Pillow's hard error (> 2x its limit)
    # always stands. warnings.catch_warnings() swaps process-global state, so concurrent reads (several
    # app sessions) would restore each other's filters and leave one behind: a lock serialises the
    # header parsing and seeking; decoding the pixels (img.load) runs outside it.
    pil_cap = Image.MAX_IMAGE_PIXELS
    action = "error" if pil_cap is None or max_pixels <= pil_cap else "ignore"
    try:
        with _PILLOW_WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            img = Image.open(src)
            try:
                width, height = img.size
                _check_pixels(name, height, width, max_pixels)
                if page:
                    n_frames = getattr(img, "n_frames", 1)
                    if page >= n_frames:
                        raise ParameterError(
                            f"page {page} is out of range: {name} has {n_frames} frame(s), valid: 0..{n_frames - 1}"
                        )
                    img.seek(page)
            except BaseException:
                img.close()
                raise
        with img:
            img.load()
            if img.getexif().get(0x0112, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return _pillow_to_array(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if pil_cap is not None and max_pixels > 2 * pil_cap:
            cap = f"Pillow's hard limit of {2 * pil_cap:,} pixels (2 x PIL.Image.MAX_IMAGE_PIXELS)"
        else:
            cap = f"the cap of {max_pixels:,} pixels (max_pixels)"
        raise ImageTooLargeError(f"{name}: refused as a possible decompression bomb, above {cap}: {err}") from err


def _pillow_to_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode in ("L", "RGB"):
        return np.asarray(img)
    if mode in ("LA", "La"):
        return np.asarray(img.convert("L"))
    if mode.startswith("I;16"):
        arr = np.asarray(img)
        return arr.astype(arr.dtype.newbyteorder("="))
    if mode == "I":
        return np.asarray(img).astype(np.int32, copy=False)
    if mode == "F":
        return np.asarray(img).astype(np.float32, copy=False)
    if mode in ("P", "PA") and ("transparency" in img.info or mode == "PA"):
        img = img.convert("RGBA")  # Pillow wants palette transparency resolved through RGBA
    return np.asarray(img.convert("RGB"))  # P, RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV ...


def _read_png16_colour(
    src: str | io.BytesIO, head: bytes, *, name: str, page: int, max_pixels: int
) -> np.ndarray:
    """16-bit RGB / RGBA / gray+alpha PNG: Pillow would truncate these to 8 bits, OpenCV keeps 16."""
    import cv2  # heavy import, only needed here

    width, height = struct.unpack(">II", head[16:24])
    _check_pixels(name, height, width, max_pixels)
    if page:
        raise ParameterError(f"page {page} is out of range: {name} has 1 page, valid: 0")
    if isinstance(src, io.BytesIO):
        buf = np.frombuffer(src.getbuffer(), dtype=np.uint8)
    else:
        buf = np.fromfile(src, dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{name}: cannot decode 16-bit PNG (corrupt or truncated)")
    if arr.ndim == 3:
        if arr.shape[2] == 2:  # gray + alpha
            return np.ascontiguousarray(arr[:, :, 0])
        return np.ascontiguousarray(arr[:, :, 2::-1])  # BGR(A) -> RGB
    return arr


def _read_tiff(
    src: str | io.BytesIO, *, name: str, page: int, channel: int | None, max_pixels: int
) -> np.ndarray:
    """One 2-D TIFF plane (page ``page``), all channels as (H, W, C) or only ``channel`` as (H, W).

    Only the data of what is returned are decoded: one page of a stack, one channel page of a planar
    file, one sample's strips / tiles of a page with many samples (decoded segment by segment).
    """
    with tifffile.TiffFile(src) as tif:
        if not tif.series or not tif.pages:
            raise ImageReadError(f"{name}: TIFF file holds no image")
        series = tif.series[0]
        key = series.keyframe
        height, width = int(key.imagelength), int(key.imagewidth)
        _check_pixels(name, height, width, max_pixels)
        axes, shape = series.axes, tuple(series.shape)
        page_axes = key.axes
        n_outer = len(axes) - len(page_axes)
        outer_axes, outer_shape = axes[:n_outer], shape[:n_outer]
        n_pages = len(series.pages)
        if page_axes == "YX" and len(axes) >= 3 and axes[-3:-1] == "YX" and axes[-1] in _CHANNEL_AXES:
            return _read_tiff_yxc(tif, axes, shape, tuple(key.shape), name=name, page=page, channel=channel,
                                  max_pixels=max_pixels)
        if n_outer < 0 or int(np.prod(outer_shape, dtype=np.int64)) != n_pages:
            raise ImageReadError(
                f"{name}: unsupported TIFF layout (axes {axes}, shape {shape}); save one 2-D image, "
                "optionally with channels"
            )
        if page_axes not in ("YX", "YXS", "SYX"):
            raise ImageReadError(
                f"{name}: unsupported TIFF page layout (axes {page_axes}, shape {key.shape}); "
                "expected 2-D pages, optionally with samples"
            )
        # tifffile writes an (H, W, C) array without photometric hints as H pages of (W, C)
        if (
            set(outer_axes) <= set("QI")
            and len([n for n in outer_shape if n > 1]) == 1
            and page_axes == "YX"
            and width <= 4 < min(height, n_pages)
        ):
            _check_pixels(name, n_pages, height, max_pixels)
            data = series.asarray()
            logger.debug("%s: reading TIFF of shape %s as (H, W, C)", name, shape)
            data = data.reshape(n_pages, height, width)
            if page:
                raise ParameterError(f"page {page} is out of range: {name} has 1 page, valid: 0")
            return data if channel is None else np.ascontiguousarray(data[:, :, _channel_index(name, channel, width)])

        live = [(i, a, n) for i, (a, n) in enumerate(zip(outer_axes, outer_shape)) if n > 1]
        channel_dims = [d for d in live if d[1] in _CHANNEL_AXES]
        page_dims = [d for d in live if d[1] not in _CHANNEL_AXES]
        if len(page_dims) > 1 or len(channel_dims) > 1:
            raise ImageReadError(
                f"{name}: TIFF has more than 3 non-singleton dimensions (axes {axes}, shape {shape}); "
                "this reader takes one 2-D image, optionally with channels, and one page axis "
                "(page=...). Export a single plane or a maximum projection first."
            )
        n_select = page_dims[0][2] if page_dims else 1
        if page >= n_select:
            if not page_dims and len(tif.pages) > page and len(tif.series) > 1:
                # pages of different shapes land in separate series: index the raw pages
                single = tif.pages[page]
                _check_pixels(name, int(single.imagelength), int(single.imagewidth), max_pixels)
                return _page_plane(tif, single, name, channel, max_pixels)
            raise ParameterError(
                f"page {page} is out of range: {name} has {n_select} page(s), valid: 0..{n_select - 1}"
            )
        index = [0] * n_outer
        if page_dims:
            index[page_dims[0][0]] = page
        if channel_dims:
            c_dim, _, n_channels = channel_dims[0]
            if page_axes != "YX":
                raise ImageReadError(
                    f"{name}: TIFF has both channels and samples per pixel (axes {axes}, shape {shape})"
                )
            if channel is not None:  # one channel page
                index[c_dim] = _channel_index(name, channel, n_channels)
                k = int(np.ravel_multi_index(index, outer_shape))
                return _page_to_hwc(tif.asarray(key=k, series=0).reshape(key.shape), page_axes, name)
            _check_decoded(name, height, width, n_channels, max_pixels)
            keys = []
            for c in range(n_channels):
                index[c_dim] = c
                keys.append(int(np.ravel_multi_index(index, outer_shape)) if n_outer else 0)
            out = np.empty((height, width, n_channels), dtype=key.dtype)
            for c, k in enumerate(keys):  # page by page into the output: no stacked copy
                out[:, :, c] = tif.asarray(key=k, series=0).reshape(height, width)
            return out
        k = int(np.ravel_multi_index(index, outer_shape)) if n_outer else 0
        return _page_plane(tif, series.pages[k], name, channel, max_pixels)


def _page_plane(
    tif: tifffile.TiffFile, page: tifffile.TiffPage | tifffile.TiffFrame, name: str, channel: int | None,
    max_pixels: int,
) -> np.ndarray:
    """One page as (H, W) or (H, W, S); with ``channel``, only that sample is decoded."""
    if isinstance(page, tifffile.TiffFrame):
        page = page.aspage()
    n_samples = int(page.samplesperpixel)
    height, width = int(page.imagelength), int(page.imagewidth)
    if n_samples == 1 or page.axes not in ("YXS", "SYX"):
        data = _page_to_hwc(page.asarray(), page.axes, name)
        return data if channel is None else _select_channel(data, channel)
    if channel is None:
        _check_decoded(name, height, width, n_samples, max_pixels)
        return _page_to_hwc(page.asarray(), page.axes, name)
    return _decode_sample(tif, page, _channel_index(name, channel, n_samples), n_samples)


def _decode_sample(tif: tifffile.TiffFile, page: tifffile.TiffPage, sample: int, n_samples: int) -> np.ndarray:
    """Sample ``sample`` of a page as (H, W), decoding one strip or tile at a time.

    Planar (separate) pages store each sample's segments apart, so only those are read; contiguous pages
    interleave the samples, so every segment is decoded but only one at a time is held.
    """
    height, width = int(page.imagelength), int(page.imagewidth)
    out = np.zeros((height, width), dtype=page.dtype)
    n = len(page.dataoffsets)
    if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
        per = n // n_samples
        indices, pick = range(sample * per, (sample + 1) * per), 0
    else:
        indices, pick = range(n), sample
    decode = page.decode  # built once, before reading: building it may move the file position
    fh = tif.filehandle
    for i in indices:
        if not page.databytecounts[i]:
            continue  # an empty segment reads as zeros
        fh.seek(page.dataoffsets[i])
        data = fh.read(page.databytecounts[i])
        seg, (_, _, y, x, _), _ = decode(data, i, jpegtables=page.jpegtables)
        if seg is None:
            continue
        piece = seg[0, :, :, pick] if seg.ndim == 4 else seg.reshape(seg.shape[-3:])[..., pick]
        h, w = min(piece.shape[0], height - y), min(piece.shape[1], width - x)
        out[y:y + h, x:x + w] = piece[:h, :w]
    return out


def _read_tiff_yxc(
    tif: tifffile.TiffFile, axes: str, shape: tuple[int, ...], page_shape: tuple[int, ...], *, name: str,
    page: int, channel: int | None, max_pixels: int,
) -> np.ndarray:
    """A series (..., Y, X, C) saved with axes metadata (``tifffile.imwrite(f, a, metadata={'axes': 'YXC'})``):
    tifffile stores it as pages of (X, C) rows, or of (Y, X) planes when C == 1. With ``channel``, the rows
    are read one page at a time and only that channel kept."""
    rows, cols, n_channels = shape[-3:]
    _check_pixels(name, rows, cols, max_pixels)
    stack = [n for n in shape[:-3] if n > 1]
    if len(stack) > 1:
        raise ImageReadError(
            f"{name}: TIFF has more than 3 non-singleton dimensions (axes {axes}, shape {shape}); "
            "export a single plane or a maximum projection first."
        )
    n_select = stack[0] if stack else 1
    if page >= n_select:
        raise ParameterError(f"page {page} is out of range: {name} has {n_select} page(s), valid: 0..{n_select - 1}")
    if page_shape == (cols, n_channels):
        per_image = rows
    elif page_shape == (rows, cols) and n_channels == 1:
        per_image = 1
    else:
        raise ImageReadError(f"{name}: unsupported TIFF layout (axes {axes}, shape {shape}, pages {page_shape})")
    if channel is not None:
        c = _channel_index(name, channel, n_channels)
        if per_image == 1:
            return np.ascontiguousarray(tif.asarray(key=page, series=0).reshape(rows, cols))
        out = np.empty((rows, cols), dtype=tif.series[0].dtype)
        pages = tif.series[0].pages
        for r in range(rows):
            out[r] = pages[page * per_image + r].asarray().reshape(cols, n_channels)[:, c]
        return out
    _check_decoded(name, rows, cols, n_channels, max_pixels)
    data = tif.asarray(key=slice(page * per_image, (page + 1) * per_image), series=0)
    data = np.ascontiguousarray(data.reshape(rows, cols, n_channels))
    return data[:, :, 0] if n_channels == 1 else data


def _page_to_hwc(data: np.ndarray, page_axes: str, name: str) -> np.ndarray:
    if page_axes == "SYX" or (data.ndim == 3 and page_axes.startswith("S")):
        data = np.moveaxis(data, 0, -1)
    elif data.ndim != len(page_axes) or data.ndim not in (2, 3):
        raise ImageReadError(f"{name}: unsupported TIFF page (axes {page_axes}, shape {data.shape})")
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    return np.ascontiguousarray(data)


def image_shape(source: str | os.PathLike) -> tuple[int, int]:
    """Return (H, W) of an image file from its header, without decoding the pixels.

    The EXIF orientation is taken into account (a rotated JPEG reports its displayed shape).

    Raises
    ------
    ImageReadError
        The file is not a readable image.
    """
    path = os.fspath(source)
    name = path
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head[:4] in _TIFF_MAGICS:
            with tifffile.TiffFile(path) as tif:
                key = tif.series[0].keyframe
                return int(key.imagelength), int(key.imagewidth)
        with _PILLOW_WARNINGS_LOCK, warnings.catch_warnings():  # header only; see _read_pillow
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    width, height = height, width
                return height, width
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"{name}: refused as a possible decompression bomb: {err}") from err
    except _DECODE_ERRORS as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ImageReadError(f"{name}: cannot read image header: {err}") from err


# --------------------------------------------------------------------------------------------------
# conversion and normalisation
# --------------------------------------------------------------------------------------------------
def _finite_float32(image: np.ndarray) -> np.ndarray:
    """float32 copy with NaN -> 0, +Inf -> finite max, -Inf -> finite min (0 when nothing is finite)."""
    out = np.array(image, dtype=np.float32, copy=True)
    finite = np.isfinite(out)
    if finite.all():
        return out
    if finite.any():
        hi, lo = float(out[finite].max()), float(out[finite].min())
    else:
        hi = lo = 0.0
    out[np.isnan(out)] = 0.0
    out[np.isposinf(out)] = hi
    out[np.isneginf(out)] = lo
    return out


def to_gray(image: np.ndarray, *, channel: int | None = None) -> np.ndarray:
    """Convert an image of any dtype to a finite float32 (H, W) array, in the input's intensity units.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C), any real dtype (bool -> 0/1).
    channel : int, optional
        Use only this channel of an (H, W, C) image.

    Returns
    -------
    numpy.ndarray
        float32 (H, W), a new array. Channels are averaged with equal weights (stains vary, so
        luminance weights would be arbitrary); a 4-channel image whose last channel is constant
        (an opaque alpha) averages the first three only. NaN -> 0, +Inf / -Inf -> the largest /
        smallest finite value of the image (0 when none is finite).

    Raises
    ------
    ImageReadError
        The array is not (H, W) or (H, W, C), or is complex / non-numeric.
    ParameterError
        ``channel`` out of range.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ImageReadError(f"expected an image of shape (H, W) or (H, W, C), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise ImageReadError(f"expected a real-valued image, got dtype {arr.dtype}")
    if channel is not None:
        arr = _select_channel(arr, channel)
    if arr.ndim == 2:
        return _finite_float32(arr)
    if arr.shape[2] == 1:
        return _finite_float32(arr[:, :, 0])
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3]
        if alpha.min() == alpha.max():
            arr = arr[:, :, :3]
    return _finite_float32(arr).mean(axis=2, dtype=np.float32)


def is_bright_background(gray: np.ndarray) -> bool:
    """Tell whether an image shows dark objects on a bright field (brightfield, H&E).

    The background is taken as the median pixel. Its position ``t`` in the robust intensity range is
    ``t = (p50 - p0.1) / (p99.9 - p0.1)``; the image has a bright background when
    ``t > BRIGHT_BACKGROUND_POSITION`` (1/3). Fluorescence objects form a long bright tail, so the median
    of a dark-field image sits low in the range even when nuclei are crowded; brightfield absorption
    compresses the dark objects, so the median of a bright-field image sits higher. On the 522 DSB 2018
    training images, dark-background images have ``t <= 0.19`` and bright-background ones ``t >= 0.49``
    (all correct, the threshold lies mid-gap).

    Parameters
    ----------
    gray : numpy.ndarray
        (H, W) image of any dtype; an (H, W, C) image is first converted with :func:`to_gray`.

    Returns
    -------
    bool
        True for a bright background; False for a dark one (fluorescence) or a constant image.
    """
    g = to_gray(gray)
    p_lo, p50, p_hi = np.percentile(g, [0.1, 50.0, 99.9])
    if not p_hi > p_lo:
        return False
    return bool((p50 - p_lo) / (p_hi - p_lo) > BRIGHT_BACKGROUND_POSITION)


def _usable_range(lo: float, hi: float) -> bool:
    """hi > lo by enough that 255 / (hi - lo) is a finite float32 (not a range of denormals only)."""
    return hi > lo and (hi - lo) * float(np.finfo(np.float32).max) >= 255.0


def _percentile_limits(g: np.ndarray, low_pct: float, high_pct: float) -> tuple[float, float]:
    """The values :func:`normalize_image` maps to 0 and 1: the percentiles, or the full range of a nearly
    flat image (a constant image gives an unusable range, normalised to zeros)."""
    lo, hi = (float(v) for v in np.percentile(g, [low_pct, high_pct]))
    if not _usable_range(lo, hi):
        lo, hi = float(g.min()), float(g.max())
    return lo, hi


def normalize_image(
    image: np.ndarray,
    *,
    low_pct: float = 1.0,
    high_pct: float = 99.8,
    invert: bool | None = None,
    channel: int | None = None,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Percentile-normalise an image to float32 (H, W) with objects bright on a dark background.

    The ``low_pct`` and ``high_pct`` percentiles map to 0 and 1; values beyond them are kept up to the
    clip range :data:`NORMALIZED_RANGE` = (-0.5, 1.5), so bright objects are not flattened.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C), any real dtype; converted with :func:`to_gray`.
    low_pct, high_pct : float
        Percentiles in [0, 100] with ``low_pct < high_pct``.
    invert : bool, optional
        True: return ``1 - x`` (dark objects become bright); False: never; None: invert when
        :func:`is_bright_background` says the image has a bright background.
    channel : int, optional
        Use only this channel.
    limits : (float, float), optional
        The values mapped to 0 and 1 instead of this image's percentiles: one block of a huge image is
        normalised like the whole (see :func:`normalization_limits`).

    Returns
    -------
    numpy.ndarray
        float32 (H, W), a new array. A constant image gives all zeros.

    Raises
    ------
    ParameterError
        Percentiles out of range or not increasing.
    """
    if not (0.0 <= float(low_pct) < float(high_pct) <= 100.0):
        raise ParameterError(
            f"need 0 <= low_pct < high_pct <= 100, got low_pct={low_pct}, high_pct={high_pct}"
        )
    if invert not in (None, True, False):
        raise ParameterError(f"invert must be True, False or None (auto), got {invert!r}")
    g = to_gray(image, channel=channel)
    lo, hi = _percentile_limits(g, low_pct, high_pct) if limits is None else (float(limits[0]), float(limits[1]))
    if not _usable_range(lo, hi):
        return np.zeros(g.shape, dtype=np.float32)
    if invert is None:
        invert = is_bright_background(g)
    scale = np.float32(1.0 / (hi - lo))
    with np.errstate(over="ignore"):  # differences beyond float32 (|values| ~ 1e38) become inf, then clipped
        if invert:
            out = (np.float32(hi) - g) * scale
        else:
            out = (g - np.float32(lo)) * scale
    np.clip(out, NORMALIZED_RANGE[0], NORMALIZED_RANGE[1], out=out)
    return out


def image_to_display_rgb(image: np.ndarray, *, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Make a uint8 (H, W, 3) picture of any image, for overlays and the app.

    A colour uint8 RGB image (channels not all equal) is returned unchanged (a copy), so stains keep
    their colours. Everything else is percentile-stretched: grayscale (also grayscale stored as RGB) is
    repeated into three channels; 2 channels map to red and green; 3 or more channels use the first three
    as RGB, each channel stretched on its own (like a composite in Fiji).

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C), any real dtype.
    low_pct, high_pct : float
        Percentiles mapped to 0 and 255.

    Returns
    -------
    numpy.ndarray
        uint8 (H, W, 3), a new array.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ImageReadError(f"expected an image of shape (H, W) or (H, W, C), got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 4 and arr.dtype == np.uint8:
        alpha = arr[:, :, 3]
        if alpha.min() == alpha.max():
            arr = arr[:, :, :3]
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        if not (np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 0], arr[:, :, 2])):
            return arr.copy()
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        channels = [arr, arr, arr]
    else:
        channels = [arr[:, :, c] for c in range(min(arr.shape[2], 3))]
    out = np.zeros(arr.shape[:2] + (3,), dtype=np.uint8)
    stretched: dict[int, np.ndarray] = {}
    for c, ch in enumerate(channels):
        key = id(ch) if arr.ndim == 2 else c
        if key not in stretched:
            g = _finite_float32(ch)
            lo, hi = (float(v) for v in np.percentile(g, [low_pct, high_pct]))
            if not _usable_range(lo, hi):
                lo, hi = float(g.min()), float(g.max())
            if _usable_range(lo, hi):
                with np.errstate(over="ignore"):
                    stretched[key] = np.clip((g - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)
            else:
                stretched[key] = np.zeros(g.shape, dtype=np.uint8)
        out[:, :, c] = stretched[key]
    return out


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------
def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _is_zarr_dir(path: Path) -> bool:
    """An OME-Zarr folder (``*.zarr``): one image, counted by blocks (:mod:`cellcount.blocks`)."""
    return path.suffix.lower() == ".zarr" and path.is_dir()


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


SkipFn = Callable[[Path, str], None]
"""Called as ``on_skip(path, reason)`` for each entry :func:`list_image_files` cannot list."""


def _log_skip(path: Path, reason: str) -> None:
    logger.warning("skipped %s: %s", path, reason)


def _broken_link_reason(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (dangling or a loop), or None when it can (or is no link)."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"dangling symbolic link (target {os.readlink(path)} does not exist)"
    return None


def _walk_folder(root: Path, on_skip: SkipFn) -> Iterator[Path]:
    """Image-named files under ``root`` (symbolic links followed, hidden entries skipped); every folder
    that cannot be read, link loop and dangling link is reported through ``on_skip``."""
    seen: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        on_skip(Path(err.filename or root), f"cannot read folder: {err.strerror or err}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError as err:
            on_skip(Path(dirpath), f"cannot read folder: {err.strerror or err}")
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            on_skip(Path(dirpath), "folder already listed through another path (symbolic link loop?)")
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        zarrs = [d for d in dirnames if _is_zarr_dir(Path(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in zarrs]  # an OME-Zarr is one image, not a folder
        yield from (Path(dirpath, d) for d in zarrs)
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            path = Path(dirpath, fname)
            broken = _broken_link_reason(path)
            if broken:
                on_skip(path, broken)
            elif _is_image_file(path) and path.is_file():
                yield path


def list_image_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike], *, on_skip: SkipFn | None = None
) -> list[Path]:
    """List the image files named by files, folders and glob patterns.

    Parameters
    ----------
    paths : path or iterable of paths
        Each item is a file (kept when its extension is in :data:`IMAGE_EXTENSIONS`), a folder
        (searched recursively, following symbolic links; hidden files and folders are skipped) or a glob
        pattern (``**`` allowed).
    on_skip : callable, optional
        Called as ``on_skip(path, reason)`` for every folder that cannot be read, symbolic-link loop and
        dangling link met on the way, so nothing is skipped in silence. Default: a logged warning.

    Returns
    -------
    list of pathlib.Path
        Image files with a case-insensitive extension in :data:`IMAGE_EXTENSIONS`, sorted and
        de-duplicated (by resolved path). Ground-truth files are included; see
        :func:`split_ground_truth_files`.

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or a glob pattern that matches nothing.
    """
    skip = on_skip or _log_skip
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[Path, Path] = {}
    for item in paths:
        text = os.fspath(item)
        path = Path(text)
        if path.is_file() or _is_zarr_dir(path):
            candidates: Iterable[Path] = [path]
        elif path.is_dir():
            candidates = _walk_folder(path, skip)
        elif _has_glob(text):
            matches = [Path(m) for m in glob.glob(text, recursive=True)]
            if not matches:
                raise FileNotFoundError(f"no file matches the pattern: {text}")
            for m in matches:
                broken = _broken_link_reason(m)
                if broken:
                    skip(m, broken)
            candidates = [m for m in matches if m.is_file()]
        else:
            broken = _broken_link_reason(path)
            raise FileNotFoundError(f"path does not exist: {text}" + (f" ({broken})" if broken else ""))
        for cand in candidates:
            if _is_image_file(cand) or _is_zarr_dir(cand):
                found.setdefault(cand.resolve(), cand)
            elif path.is_file():
                logger.info("skipping %s: extension not one of %s", cand, sorted(IMAGE_EXTENSIONS))
    return sorted(found.values(), key=lambda p: (str(p.parent), p.name))


def ground_truth_suffix(path: str | os.PathLike) -> str | None:
    """Return the ground-truth suffix (one of :data:`GROUND_TRUTH_SUFFIXES`) that ends the stem, or None."""
    stem = Path(path).stem.lower()
    for suffix in GROUND_TRUTH_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return suffix
    return None


def split_ground_truth_files(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Split file paths into (images, ground truth) by name convention.

    A file is ground truth when its stem ends with one of :data:`GROUND_TRUTH_SUFFIXES`
    (case-insensitive: ``a_labels.tif``, ``a_mask.png``, ``a_dots.png``, ``a_points.csv`` ...) or when it
    lies in a folder named like :data:`GROUND_TRUTH_DIRS` (``labels/``, ``masks/`` ...).

    Returns
    -------
    images, ground_truth : list of pathlib.Path
        Both in input order.
    """
    images: list[Path] = []
    gt: list[Path] = []
    for item in paths:
        path = Path(item)
        if ground_truth_suffix(path) or path.parent.name.lower() in GROUND_TRUTH_DIRS:
            gt.append(path)
        else:
            images.append(path)
    return images, gt


def labels_to_tiff_bytes(labels: np.ndarray) -> bytes:
    """Encode a label image as a zlib-compressed TIFF.

    Parameters
    ----------
    labels : numpy.ndarray
        (H, W) non-negative integers (or bool).

    Returns
    -------
    bytes
        A uint16 TIFF when the largest label is <= 65535, else uint32.

    Raises
    ------
    ParameterError
        Not a 2-D array of non-negative integers, or labels above 2**32 - 1.
    """
    arr = np.asarray(labels)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ParameterError(f"labels must be a 2-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    if arr.size and int(arr.min()) < 0:
        raise ParameterError("labels must be non-negative")
    top = int(arr.max()) if arr.size else 0
    if top > np.iinfo(np.uint32).max:
        raise ParameterError(f"label {top} does not fit in uint32")
    out_dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr.astype(out_dtype), compression="zlib", photometric="minisblack")
    return buf.getvalue()


GRAYSCALE_MODES = ("mean", "stain")


def is_colour(image: np.ndarray) -> bool:
    """True for (H, W, >=3) images whose first three channels differ (not grayscale stored as RGB)."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return False
    sub = arr[:: max(arr.shape[0] // 256, 1), :: max(arr.shape[1] // 256, 1), :3]
    return bool(np.any(sub[..., 0] != sub[..., 1]) or np.any(sub[..., 1] != sub[..., 2]))


def hematoxylin(image: np.ndarray) -> np.ndarray:
    """Hematoxylin optical density of an RGB brightfield image (colour deconvolution), float32 (H, W).

    Nuclei (hematoxylin-stained) come out bright on a dark background, like fluorescence; eosin-stained
    cytoplasm and red blood cells are suppressed, which a plain channel mean cannot do.
    """
    from skimage.color import rgb2hed

    rgb = _finite_float32(np.asarray(image)[..., :3])
    top = float(rgb.max()) if rgb.size else 1.0
    rgb = np.clip(rgb / (top if top > 0 else 1.0), 0.0, 1.0)
    return rgb2hed(rgb)[..., 0].astype(np.float32)


def model_input(
    image: np.ndarray,
    *,
    channel: int | None = None,
    invert: bool | None = None,
    low_pct: float = 1.0,
    high_pct: float = 99.8,
    grayscale: str = "mean",
    limits: tuple[float, float] | None = None,
) -> tuple[np.ndarray, bool]:
    """The one conversion from any image to a model's input: float32 (H, W), objects bright.

    Parameters
    ----------
    grayscale : {"mean", "stain"}
        How colour becomes one channel. ``mean`` averages channels (then bright backgrounds are
        inverted); ``stain`` uses the hematoxylin optical density for colour bright-background images
        (H&E and similar) and behaves like ``mean`` otherwise. Set by each model's card.
    limits : (float, float), optional
        Normalisation values from :func:`normalization_limits` of the whole image (for one block of it).

    Returns
    -------
    (normalised image, treated_as_bright_background)
    """
    gray, bright, stain = _model_gray(image, channel=channel, invert=invert, grayscale=grayscale)
    return normalize_image(gray, low_pct=low_pct, high_pct=high_pct, invert=bright and not stain, limits=limits), bright


def _model_gray(image: np.ndarray, *, channel: int | None, invert: bool | None, grayscale: str
                ) -> tuple[np.ndarray, bool, bool]:
    """(the gray image :func:`model_input` normalises, bright background, hematoxylin used)."""
    if grayscale not in GRAYSCALE_MODES:
        raise ParameterError(f"grayscale must be one of {GRAYSCALE_MODES}, got {grayscale!r}")
    gray = to_gray(image, channel=channel)
    bright = is_bright_background(gray) if invert is None else bool(invert)
    if grayscale == "stain" and channel is None and bright and is_colour(image):
        return to_gray(hematoxylin(image)), True, True
    return gray, bright, False


def normalization_limits(
    sample: np.ndarray,
    *,
    channel: int | None = None,
    invert: bool | None = None,
    low_pct: float = 1.0,
    high_pct: float = 99.8,
    grayscale: str = "mean",
) -> tuple[tuple[float, float], bool]:
    """((lo, hi), bright background) that :func:`model_input` uses for ``sample``.

    Computed once on the whole of a huge image (or a spread sample of it) and passed to every block as
    ``limits`` and ``invert``, so that all blocks are normalised alike.
    """
    gray, bright, _ = _model_gray(sample, channel=channel, invert=invert, grayscale=grayscale)
    return _percentile_limits(gray, low_pct, high_pct), bright
