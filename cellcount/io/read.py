"""Reading images: bytes, paths or file-likes -> numpy arrays in their native dtype.

Pixel caps are checked from the file header *before* any pixel is decoded, so a small file that claims a
huge size (a decompression bomb) is refused cheaply with :class:`~cellcount.errors.ImageTooLargeError`.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import warnings
from typing import IO, Any

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from cellcount.errors import (
    CellcountError,
    ChannelError,
    ImageReadError,
    ImageReadWarning,
    ImageTooLargeError,
    ParameterError,
    PlaneError,
)
from cellcount.io.files import TIFF_MAGICS, microscope_file_problem

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 8192 * 8192
"""Default cap on H * W of one image plane (about 67 megapixels)."""

MAX_SAMPLES_PER_PIXEL = 4
"""Values decoded per pixel at most (RGBA) when all channels are read: a file with more channels than this
whose full decode would pass ``MAX_SAMPLES_PER_PIXEL * max_pixels`` values must name one ``channel``,
and then only that channel is decoded."""

DEFAULT_MAX_BYTES = 1 << 30
"""Default cap on the size of an encoded file or upload, in bytes (1 GiB)."""

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = ((_PNG_MAGIC, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"),
               *((m, "TIFF") for m in TIFF_MAGICS))
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
            if path.rstrip("/\\").lower().endswith(".zarr"):  # an OME-Zarr is read by blocks only
                raise ImageReadError(f"{path}: an OME-Zarr folder, which is counted by blocks: count it with --workers N "
                                     "(or --scheduler ADDRESS; docs/SCALING.md), or in Python with "
                                     "cellcount.blocks.count_blocks")
            raise ImageReadError(f"{path}: is a folder, not an image file")
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ImageTooLargeError(
                f"{path}: file is {size:,} bytes, above the cap of {max_bytes:,} {BYTES_CAP_TEXT}"
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
        raise ImageReadError(f"{name}: file is empty (0 bytes)")
    return name, io.BytesIO(data), data[:32]


PIXEL_CAP_TEXT = "pixels (max_pixels)"
"""How the refusal of an image above the pixel cap ends (:func:`_check_pixels`), for callers that add what to do."""
OVER_CAP_HINT = ("images above the pixel cap: TIFF and OME-Zarr ones are counted by blocks with --workers N (pip "
                 "install 'cellcount[cluster]'; docs/SCALING.md); other formats: export them as TIFF, or raise "
                 "--max-pixels where memory allows (a few tens of bytes per pixel: docs/LIMITS.md)")
"""What the command line can do with images above the pixel cap."""
OVER_CAP_WORKERS_HINT = ("images above the pixel cap are counted by blocks only where they are TIFF or OME-Zarr; other "
                         "formats (PNG, JPEG, BMP): export them as TIFF, or raise --max-pixels where memory allows (a "
                         "few tens of bytes per pixel: docs/LIMITS.md)")
"""The same, said to a run on workers, which already counts TIFF and OME-Zarr by blocks."""
BYTES_CAP_TEXT = "bytes (max_bytes)"
"""How the refusal of a file above the byte cap ends."""
OVER_BYTES_HINT = ("files above the byte cap: a whole slide (a TIFF above the pixel cap too) is counted by blocks with "
                   "--workers N (pip install 'cellcount[cluster]'; docs/SCALING.md), which never reads the file whole; "
                   "a stack or many channels: save the plane or channel to count as a file of its own")


def _check_pixels(name: str, height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageReadError(f"{name}: image has a zero-size dimension ({height} x {width} pixels, H x W)")
    if height * width > max_pixels:
        raise ImageTooLargeError(
            f"{name}: image is {height:,} x {width:,} = {height * width:,} pixels (H x W), "
            f"above the cap of {max_pixels:,} {PIXEL_CAP_TEXT}"
        )


def read_image(
    source: ImageSource,
    *,
    channel: int | None = None,
    page: int | str | None = None,
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
    page : int or "max", optional
        TIFF: index along the page-like axis (Z, T, generic pages) of the first series; other formats:
        the frame of a multi-frame file. ``"max"``: the maximum-intensity projection of all of them (the
        usual way to count the nuclei of a z-stack; a single-plane file is returned as it is). None: the
        first, with a :class:`~cellcount.errors.ImageReadWarning` when the file holds more than one (a
        z-stack counted from its first plane is silently wrong).
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

    Warns
    -----
    ImageReadWarning
        The file holds several planes and only the first was read (``page`` not given); ``page="max"`` of a TIFF
        whose images are read as channels (planes saved without their axes) projected nothing; a maximum
        projection of what may be channels.
    """
    image, note = read_image_and_note(source, channel=channel, page=page, max_pixels=max_pixels,
                                      max_bytes=max_bytes)
    if note:
        warnings.warn(note, ImageReadWarning, stacklevel=2)
    return image


_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)
"""The JPEG standard's luminance quantization table, which quality 50 of the IJG's scale (libjpeg, Pillow, ImageJ,
most microscope software) writes as it is."""

JPEG_MIN_QUALITY = 20
"""A JPEG saved below this quality (of the IJG's 1-100) is flagged: its 8 x 8 blocks cut nuclei into fragments. On
DSB's 53 validation images the default model's share of large errors (> 15%) is 13% as PNG, 13-17% as JPEG of
quality 20-95, 19% at 15, 32% at 10 and 60% at 5 (``python scripts/jpeg_quality_probe.py``,
results/probes/amd-zen5-2026-12-07-jpeg-quality.txt)."""


def _tiff_jpeg(data: io.BytesIO | str | os.PathLike) -> bytes | None:
    """A JPEG-compressed TIFF's first segment as a whole JPEG stream (its tables spliced in), or None."""
    try:
        with tifffile.TiffFile(data) as tif:
            page = tif.pages[0]
            if int(page.compression) not in (6, 7) or not page.dataoffsets:  # JPEG, old or new style
                return None
            tif.filehandle.seek(page.dataoffsets[0])
            segment = tif.filehandle.read(min(page.databytecounts[0], 1 << 24))
            tables = page.jpegtables or b""
            return tables[:-2] + segment[2:] if tables.endswith(b"\xff\xd9") and segment[:2] == b"\xff\xd8" \
                else segment
    except Exception:  # noqa: BLE001 - no TIFF, or none tifffile reads: no JPEG inside to tell
        return None


def jpeg_quality(source: Any) -> int | None:
    """The IJG quality (1-100) a JPEG was saved with (or a JPEG-compressed TIFF's), estimated from its luminance
    quantization table as libjpeg scales it; None for other files, tables of another kind, and an open file (read from
    where it stands, by the caller: no position of it is moved here)."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview, io.BytesIO)):
            raw = source.getvalue() if isinstance(source, io.BytesIO) else bytes(source)
            head, data = raw[:4], io.BytesIO(raw)
        elif isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                head = fh.read(4)
            data = source
        else:
            return None
        if head in TIFF_MAGICS:
            inner = _tiff_jpeg(data)
            if inner is None:
                return None
            data = io.BytesIO(inner)
        elif head[:3] != b"\xff\xd8\xff":
            return None
        with Image.open(data) as img:
            if img.format != "JPEG" or not getattr(img, "quantization", None):
                return None
            table = np.asarray(img.quantization[0], np.float64)
    except Exception:  # noqa: BLE001 - not a JPEG, or none Pillow reads: no quality to tell
        return None
    if table.size != 64:
        return None
    # libjpeg's scale factor, in percent, from the entries it did not clip to 1-255 (at quality 10 most are 255)
    kept = (table > 1) & (table < 255)
    ratios = table[kept] / _IJG_LUMINANCE[kept] if kept.any() else np.array([np.mean(table) / np.mean(_IJG_LUMINANCE)])
    scale = 100.0 * float(np.median(ratios))
    quality = 5000.0 / scale if scale > 100 else (200.0 - scale) / 2.0
    return int(round(min(max(quality, 1.0), 100.0)))


def jpeg_note(source: Any) -> str | None:
    """Why a count of a JPEG saved at a low quality (:data:`JPEG_MIN_QUALITY`) may be far off, or None."""
    quality = jpeg_quality(source)
    if quality is None or quality >= JPEG_MIN_QUALITY:
        return None
    return (f"the file is (or holds) a JPEG saved at a low quality (about {quality} of 100): its compression blocks and "
            "ringing cut nuclei into pieces or merge them, so the count may be far off: save the images as TIFF or "
            "PNG (or JPEG at quality 90 or more)")


def file_note(source: Any, image: np.ndarray, page: int | str | None) -> str | None:
    """What the file itself says against its count (:func:`tiff_missing_note`, :func:`jpeg_note`), or None."""
    return tiff_missing_note(source, image, page) or jpeg_note(source)


def read_image_and_note(
    source: ImageSource,
    *,
    channel: int | None = None,
    page: int | str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[np.ndarray, str | None]:
    """:func:`read_image`, returning its :class:`~cellcount.errors.ImageReadWarning` message (or None) instead
    of issuing it: batch and app code puts it beside the count without swapping the process-wide warning
    filters, which concurrent sessions would race on."""
    image, planes = read_image_planes(source, channel=channel, page=page, max_pixels=max_pixels, max_bytes=max_bytes)
    name = _source_name(source)
    said = _planes_note(name, source, image, planes, page, channel)
    if lost := file_note(source, image, page):  # tiles not stored beside content, a poor JPEG: flagged with the rest
        return image, f"{name}: {lost}" + (f"; {said}" if said else "")
    return image, said


def _planes_note(name: str, source: Any, image: np.ndarray, planes: Any, page: int | str | None,
                 channel: int | None) -> str | None:
    """The note of :func:`read_image_and_note` on the planes read (the first of several, a projection)."""
    if page is None:
        return planes_note(name, planes) if planes is not None else None
    if (page == "max" and planes is None and (channel is not None or (image.ndim == 3 and image.shape[2] > 1))
            and isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)) and planes_as_channels(source)):
        return f"{name}: {unapplied_plane_note(page, image.shape[2] if channel is None else None, channel)}"
    return projection_note(name, planes) if isinstance(page, str) else None


def tiff_missing_tiles(page: Any, height: int, width: int
                       ) -> tuple[list[tuple[int, int, int, int]], tuple[int, int], int]:
    """(boxes (row0, col0, row1, col1) of the tiles or strips of TIFF ``page`` that the file does not store (byte
    count 0: a sparse file, or a damaged one; read as 0), the tile size (H, W), how many tiles the page has)."""
    try:
        counts = list(page.databytecounts)
        ch, cw = (int(page.tilelength), int(page.tilewidth)) if page.is_tiled else (int(page.rowsperstrip), width)
    except (AttributeError, IndexError, TypeError, ValueError):
        return [], (1, 1), 0
    ch, cw = min(max(ch, 1), height), max(cw, 1)  # rowsperstrip may exceed the image (one strip)
    rows, cols = -(-height // ch), -(-width // cw)
    boxes = []
    for k, count in enumerate(counts[: rows * cols]):  # the first sample's (planar files repeat the grid per sample)
        if count == 0:
            r, c = divmod(k, cols)
            boxes.append((r * ch, c * cw, min((r + 1) * ch, height), min((c + 1) * cw, width)))
    return boxes, (ch, cw), rows * cols


def missing_beside_content(boxes: list[tuple[int, int, int, int]], block: tuple[int, int], shape: tuple[int, ...],
                           read: Any, fill: float, most: int = 200) -> list[tuple[int, int, int, int]]:
    """The ``boxes`` (tiles or chunks of size ``block`` not stored, read as ``fill``) with a line of pixels beside
    them, read by ``read((rows, cols))``, mostly finite and not ``fill``: a writer leaves out chunks that are all
    background, but one beside content held more (an interrupted copy of a Zarr folder, a damaged TIFF). Only boxes
    beside a stored chunk are looked at (up to ``most`` of them, spread over the image): a sparse slide's empty
    margins would otherwise fill the sample."""
    height, width = shape[0], shape[1]
    bh, bw = block
    gone = {(r0 // bh, c0 // bw) for r0, c0, _, _ in boxes}
    ny, nx = -(-height // bh), -(-width // bw)
    edge = [b for b in boxes if any(0 <= r < ny and 0 <= c < nx and (r, c) not in gone
                                    for r, c in ((b[0] // bh - 1, b[1] // bw), (b[0] // bh + 1, b[1] // bw),
                                                 (b[0] // bh, b[1] // bw - 1), (b[0] // bh, b[1] // bw + 1)))]
    if len(edge) > most:
        edge = [edge[i] for i in np.linspace(0, len(edge) - 1, most).astype(int)]
    beside = []
    for r0, c0, r1, c1 in edge:
        lines = [(slice(r0 - 1, r0), slice(c0, c1)) if r0 > 0 else None,
                 (slice(r1, r1 + 1), slice(c0, c1)) if r1 < height else None,
                 (slice(r0, r1), slice(c0 - 1, c0)) if c0 > 0 else None,
                 (slice(r0, r1), slice(c1, c1 + 1)) if c1 < width else None]
        for window in filter(None, lines):
            try:
                line = np.asarray(read(window), np.float64)
            except CellcountError:
                continue
            line = line.reshape(line.shape[0], line.shape[1], -1)
            content = np.isfinite(line) & (line != fill)  # a NaN fill or background is empty too
            if line.size and np.mean(np.any(content, axis=2)) > 0.5:
                beside.append((r0, c0, r1, c1))
                break
    return beside


def missing_note(beside: list[tuple[int, int, int, int]], n_chunks: int) -> str | None:
    """What :func:`missing_beside_content` found, in words, for the count's flag (what was not read is not counted);
    None for none."""
    if not beside:
        return None
    where = "; ".join(f"rows {r0}-{r1}, columns {c0}-{c1}" for r0, c0, r1, c1 in beside[:3])
    return (f"{len(beside)} of the image's {n_chunks} tiles or chunks are missing from the file beside parts of the "
            f"image that are not empty ({where}{' ...' if len(beside) > 3 else ''}): they were read as empty, so what "
            "they held is not counted; copy or export the image again (an interrupted copy or a damaged file?)")


def tiff_missing_note(source: Any, image: np.ndarray, page: int | str | None) -> str | None:
    """:func:`missing_note` of the TIFF's first page of its main series, read whole into ``image``."""
    if page not in (None, 0) or not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return None  # a plane chosen of a stack: its page is not simply the n-th (planes of channels interleave)
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            head = bytes(source[:4])
        else:
            with open(source, "rb") as fh:
                head = fh.read(4)
        if head not in TIFF_MAGICS:  # the other formats cost these 4 bytes
            return None
        data = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        with tifffile.TiffFile(data) as tif:  # the header and the first page's tag tables only
            first = tif.series[main_series(tif)].pages[0]  # the page read (not a thumbnail before it)
            if (first.imagelength, first.imagewidth) != tuple(image.shape[:2]):
                return None
            boxes, block, n = tiff_missing_tiles(first, image.shape[0], image.shape[1])
    except Exception:  # noqa: BLE001 - not a TIFF, or one tifffile reads only in part: read as it was
        return None
    if not boxes:
        return None
    return missing_note(missing_beside_content(boxes, block, image.shape, lambda w: image[w], 0.0), n)


def planes_as_channels(src: Any) -> bool:
    """Whether ``src`` (a path or bytes) is a TIFF whose several images per pixel may be planes saved without their
    axes, which the reader takes as channels: not a colour picture's, or stored one image after another
    (``tifffile.imwrite`` of a (3, H, W) stack writes an RGB TIFF so, planar). A camera's RGB picture
    (pixel-interleaved) in a folder of stacks is no stack whose plane went unread."""
    try:
        with tifffile.TiffFile(io.BytesIO(bytes(src)) if isinstance(src, (bytes, bytearray, memoryview)) else src) as tif:
            if tif.is_imagej or tif.is_ome:  # their axes are recorded: channels they call so are channels
                return False
            page = tif.pages[0]
            return (page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
                    or page.photometric not in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.PALETTE,
                                                tifffile.PHOTOMETRIC.YCBCR))
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, TypeError):
        return False


def unapplied_plane_note(page: int | str, n_channels: int | None, channel: int | None = None) -> str:
    """Why a plane (or the maximum projection) asked of a :func:`planes_as_channels` file was not applied: the
    count is of its images' mean, or of the one ``channel`` chosen (then one z plane, if they are planes)."""
    asked = "the maximum projection of the planes was asked for" if page == "max" else f"plane {page} was asked for"
    held = f"one plane with {n_channels} channels" if n_channels else "one plane with several channels"
    if channel is not None:
        return (f"{asked}, but this file holds {held} (its images are read as channels: no Z axis is recorded), so "
                f"channel {channel} alone was counted; if they are z planes, that is plane {channel}")
    return (f"{asked}, but this file holds {held} (its images are read as channels: no "
            "Z axis is recorded); if they are z planes, count one with the channel option (count --channel N; "
            "Python: channel=N)")


def projection_note(name: str, planes: tuple[int, str] | None) -> str | None:
    """What to tell the user whose maximum projection may be of channels (None where it is not)."""
    if planes is None or "channels" not in planes[1]:
        return None
    named = planes[1] == _PLANE_KINDS["C"]
    are = "are channels" if named else "may be channels or time points (the file does not name them)"
    return (f"{name}: its {planes[0]} planes {are}; a maximum projection of channels mixes the nuclei with the "
            f"other stains{'' if named else ', and one of time points adds up cells that move'}: count one plane "
            "instead (count command: --plane N; Python: page=N in count_file or read_image; "
            "Count page: 'Plane')")


def planes_note(name: str, planes: tuple[int, str]) -> str:
    """What to tell the user when only the first of ``planes`` (:func:`read_image_planes`) was read."""
    if planes[1] in (_PLANE_KINDS["T"], *CHOSEN_IMAGES):  # never projected: cells move; images of their own
        what = "a time point" if planes[1] == _PLANE_KINDS["T"] else "an image"
        return (f"{name}: the file holds {planes[0]} {planes[1]}; only the first was read. Choose "
                f"{what} (count command: --plane N; Python: page=N in count_file or read_image; Count page: 'Plane'; Batch "
                "page: 'Z-stacks')")
    return (f"{name}: the file holds {planes[0]} {planes[1]}; only the first was read. Choose a "
            "plane or their maximum projection (count command: --plane N or --plane max; Python: "
            "page=N or page='max' in count_file or read_image; Count page: 'Plane'; Batch page: 'Z-stacks')")


def read_image_planes(
    source: ImageSource,
    *,
    channel: int | None = None,
    page: int | str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[np.ndarray, tuple[int, str] | None]:
    """:func:`read_image` (without its warning), and what the file holds besides: (number of planes, what
    they are, e.g. (5, "z-planes")) for a z-stack, time series or multi-frame file, else None."""
    _check_int("max_pixels", max_pixels, minimum=1)
    _check_int("max_bytes", max_bytes, minimum=1)
    project = isinstance(page, str) and page.strip().lower() == "max"
    page = 0 if page is None or project else page
    _check_page(page)
    name, src, head = _open_source(source, max_bytes)

    def read_plane(index: int) -> tuple[np.ndarray, tuple[int, str] | None]:
        if isinstance(src, io.BytesIO):
            src.seek(0)
        if head[:4] in TIFF_MAGICS:
            return _read_tiff(src, name=name, page=index, channel=channel, max_pixels=max_pixels)
        if head[:8] == _PNG_MAGIC and len(head) >= 26 and head[24] == 16 and head[25] in (2, 4, 6):
            return _read_png16_colour(src, head, name=name, page=index, max_pixels=max_pixels), None
        return _read_pillow(src, name=name, page=index, max_pixels=max_pixels)

    try:
        try:
            image, planes = read_plane(page)
        except ChannelError as err:
            if err.n_channels != 1 or head[:4] not in TIFF_MAGICS or _n_pages(src) < 2:
                raise
            _pages_not_channels(name, channel, _tiff_planes(src, name, page, max_pixels))
            raise
        if project and planes is not None and planes[1] == _PLANE_KINDS["T"]:
            raise ParameterError(
                f"{name}: its {planes[0]} planes are time points, and a maximum projection over time adds up cells "
                "that move: count one time point (count command: --plane N; Python: page=N in count_file or read_image; Count page: "
                "'Plane'; Batch page: a plane number under 'Z-stacks')")
        if project and planes is not None and planes[1] in CHOSEN_IMAGES:
            raise ParameterError(
                f"{name}: it holds {planes[0]} {planes[1]}, and a maximum projection of them lays different images "
                "over each other: count one of them (count command: --plane N; Python: page=N in count_file or "
                "read_image; Count page: 'Plane'; Batch page: a plane number under 'Z-stacks')")
        if project and planes is not None:  # one plane at a time: a few planes in memory, never the stack
            for index in range(1, planes[0]):
                plane = read_plane(index)[0]
                if plane.shape != image.shape:
                    raise ImageReadError(f"{name}: plane {index} is {plane.shape}, plane 0 {image.shape}: "
                                         "the planes differ in size, so there is no projection of them")
                image = np.fmax(image, plane)  # a NaN (float stacks) in one plane does not win
        if head[:4] in TIFF_MAGICS:
            channel = None  # selected while decoding: only that channel's data were read
    except CellcountError:
        raise
    except MemoryError as err:
        raise ImageTooLargeError(f"{name}: not enough memory to decode the image") from err
    except UnidentifiedImageError as err:
        raise ImageReadError(_unreadable(name, head)) from err
    except _DECODE_ERRORS as err:
        raise decoder_error(name, err) from err
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ImageReadError(f"{name}: decoded image has an unusable shape {image.shape}")
    if image.dtype.byteorder not in ("=", "|"):
        image = image.astype(image.dtype.newbyteorder("="))
    if channel is not None:
        try:
            image = _select_channel(image, channel)
        except ChannelError as err:  # said of the file: which, and how its colours were read
            rgb = (" (a colour file is read as red, green and blue: alpha left out, CMYK converted)"
                   if image.ndim == 3 and image.shape[2] == 3 else "")  # TIFF channels are chosen while decoding
            raise ChannelError(f"{name}: {str(err).replace(', valid', rgb + ', valid', 1)}", err.n_channels) from None
    return image, planes


def _check_page(page: object) -> None:
    """``page``: an index >= 0 (or "max", handled before): a clear error for anything else."""
    if isinstance(page, str):
        raise ParameterError(f"page must be a plane index >= 0 or 'max' (the maximum projection), got {page!r}")
    _check_int("page", page, minimum=0)


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
        raise ChannelError(f"channel {channel} is out of range: {name} has {n_channels} channel(s), valid: {valid}",
                           n_channels)
    return int(channel)


def not_an_image(name: str, data: bytes) -> str | None:
    """Why ``data`` is no image this program reads, from its header alone (nothing decoded), else None: an upload
    that is text or junk is said as such where it is listed, not only once it is opened."""
    head = bytes(data[:64])
    if head[:4] in TIFF_MAGICS:
        return None  # BigTIFF and others Pillow does not open: read by tifffile
    try:
        with Image.open(io.BytesIO(data)):
            return None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return _unreadable(name, head)
    except Image.DecompressionBombError:
        return None  # an image: its size is refused where it is read, with the limit


def decoder_error(name: str, err: BaseException) -> ImageReadError:
    """An error a decoder raised on ``name``'s pixels, said with its likely cause first: the decoder's own words
    (kept: they help a bug report) say little to a user."""
    said = str(err)
    low = said.lower()
    # "Zstd decompression error" is a damaged chunk, not a codec this program lacks: another codec would not help
    lacking = any(w in low for w in ("imagecodecs", "not available", "unsupported", "no module", "not installed"))
    damaged = any(w in low for w in ("decompression error", "decompress error", "corrupt", "truncated",
                                     "incorrect header", "error -3", "unexpected end"))
    why = ("it uses a compression or feature this program cannot decode (save it as an uncompressed or LZW TIFF)"
           if lacking or (not damaged and "compression" in low)
           else "the file is probably truncated or damaged (an interrupted copy or download)")
    # its class too where it is not an OSError: KeyError('273') or an LZW error says little without it
    said = (said.strip() or "nothing") + ("" if isinstance(err, OSError) else f" ({type(err).__name__})")
    return ImageReadError(f"{name}: cannot read image: {why}; the decoder said: {said}")


def _unreadable(name: str, head: bytes) -> str:
    """Why ``name`` is no image this program reads: a microscope vendor's format said as such (as a folder walk
    and a zip say it), anything else by its first bytes."""
    if why := microscope_file_problem(name):
        return f"{name}: {why}"
    if not head:  # read elsewhere before it came here (evaluate's pairs): what count says of it
        return f"{name}: file is empty (0 bytes)"
    return f"{name}: not an image in a format we can read ({_describe_head(head)})"


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
        raise ChannelError(f"channel {channel} is out of range: the image has {n} channel(s), valid: {valid}", n)
    if image.ndim == 2:
        return image
    return np.ascontiguousarray(image[:, :, channel])


def _read_pillow(
    src: str | io.BytesIO, *, name: str, page: int, max_pixels: int
) -> tuple[np.ndarray, tuple[int, str] | None]:
    """The frame ``page`` as an array, and (number of frames, "frames") for a multi-frame file."""
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
                n_frames = getattr(img, "n_frames", 1)
                if page:
                    if page >= n_frames:
                        raise PlaneError(
                            f"plane {page} is out of range: {name} has {n_frames} frame(s), valid: 0..{n_frames - 1}",
                            n_frames)
                    img.seek(page)
            except BaseException:
                img.close()
                raise
        with img:
            img.load()
            if img.getexif().get(0x0112, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return _pillow_to_array(img), ((n_frames, "frames") if n_frames > 1 else None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        import re

        # Pillow's message names its own limit beside ours; only the size the file declares is kept from it
        found = re.search(r"\((\d+) pixels\)", str(err))
        declared = int(found.group(1)) if found else None
        if pil_cap is not None and (max_pixels > 2 * pil_cap or (declared or 0) > 2 * pil_cap):
            cap = (f"Pillow's hard limit of {2 * pil_cap:,} pixels (2 x PIL.Image.MAX_IMAGE_PIXELS), which "
                   "max_pixels does not lift: save it as TIFF")
        else:
            cap = f"the cap of {max_pixels:,} pixels (max_pixels)"
        size = f"it declares {declared:,} pixels, " if declared else ""
        raise ImageTooLargeError(f"{name}: refused as a possible decompression bomb: {size}above {cap}") from err


def as_pixels(image: Any) -> Any:
    """A Pillow image as the array :func:`read_image` gives for its file (a palette image's colours, not its
    indices; gray + alpha as gray); anything else as it is."""
    return _pillow_to_array(image) if isinstance(image, Image.Image) else image


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
        raise PlaneError(f"plane {page} is out of range: {name} has 1 plane, valid: 0", 1)
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


def main_series(tif: tifffile.TiffFile) -> int:
    """Index of the TIFF's image series: the first that is not a reduced-resolution copy (some scanners store a
    thumbnail first, which is not the image to count)."""
    for i, series in enumerate(tif.series):
        key = series.keyframe
        if key is not None and not key.is_reduced:
            return i
    return 0


def _read_tiff(
    src: str | io.BytesIO, *, name: str, page: int, channel: int | None, max_pixels: int
) -> tuple[np.ndarray, tuple[int, str] | None]:
    """One 2-D TIFF plane (page ``page``), all channels as (H, W, C) or only ``channel`` as (H, W), and
    (number of planes, what they are) when the file holds more than one plane to choose from: the planes of the
    first full-size series' z, time or unnamed page axis, else its images (series: an OME file's positions, pages
    of other sizes; a reduced-resolution copy is none).

    Only the data of what is returned are decoded: one page of a stack, one channel page of a planar
    file, one sample's strips / tiles of a page with many samples (decoded segment by segment).
    """
    with tifffile.TiffFile(src) as tif:
        if not tif.series or not tif.pages:
            raise ImageReadError(f"{name}: TIFF file holds no image")
        images = [i for i, s in enumerate(tif.series) if s.keyframe is not None and not s.keyframe.is_reduced]
        main = images[0] if images else 0
        if len(images) < 2:
            return _read_series(tif, main, name=name, page=page, channel=channel, max_pixels=max_pixels)
        if stacks := [i for i in images if _has_plane_axis(tif.series[i])]:
            # an OME file's positions that are z-stacks: one of them read would leave the others out unsaid
            raise ImageReadError(
                f"{name}: the file holds {len(images)} images (series: positions, or pages of other sizes), and "
                f"{'each is' if len(stacks) == len(images) else 'some are'} a stack of planes; this reader takes one "
                "image with one axis of planes: export the one to count as a file of its own (Fiji: File > Import > "
                "Bio-Formats, one series; then File > Save As > Tiff)")
        # several images (an OME file's positions, pages of other sizes, planes saved one by one): page N is the N-th,
        # whole, with its channels
        if page >= len(images):
            raise PlaneError(f"plane {page} is out of range: {name} holds {len(images)} images, valid: "
                             f"0..{len(images) - 1}", len(images))
        image, _ = _read_series(tif, images[page], name=name, page=0, channel=channel, max_pixels=max_pixels)
        return image, (len(images), _images_kind([tif.series[i] for i in images], ome=tif.is_ome))


def _has_plane_axis(series: Any) -> bool:
    """Whether a TIFF series has an axis of planes to choose by page (z, time, unnamed pages), not only channels."""
    axes, shape, page_axes = series.axes, tuple(series.shape), series.keyframe.axes
    n_outer = len(axes) - len(page_axes)
    if n_outer == 0 and page_axes == "SYX" and axes[0] in "ZT":
        return shape[0] > 1
    if page_axes == "YX" and len(axes) >= 3 and axes[-3:-1] == "YX" and axes[-1] in _CHANNEL_AXES:
        return any(n > 1 for n in shape[:-3])
    return any(n > 1 and a not in _CHANNEL_AXES for a, n in zip(axes[:max(n_outer, 0)], shape[:max(n_outer, 0)]))


def _images_kind(series: list[Any], *, ome: bool) -> str:
    """What several images of a TIFF are (:data:`_OTHER_IMAGES` and its kin), by their sizes: of one size, an OME
    file's positions; of one size in a plain TIFF, planes written one by one (``imwrite(..., append=True)`` of a
    z-stack gives each page a series of its own), as projectable as unnamed pages."""
    sizes = [(int(s.keyframe.imagelength), int(s.keyframe.imagewidth)) for s in series]
    if len(set(sizes)) == 1:
        return _SAME_SIZE_IMAGES if ome else _UNNAMED_PLANES
    areas = [h * w for h, w in sizes]
    return _LARGER_IMAGES if max(areas) > areas[0] else _OTHER_IMAGES


def _read_series(
    tif: tifffile.TiffFile, main: int, *, name: str, page: int, channel: int | None, max_pixels: int
) -> tuple[np.ndarray, tuple[int, str] | None]:
    """:func:`_read_tiff` of one series (``main``): plane ``page`` of its plane axis, if it has one."""
    series = tif.series[main]
    key = series.keyframe
    height, width = int(key.imagelength), int(key.imagewidth)
    _check_pixels(name, height, width, max_pixels)
    axes, shape = series.axes, tuple(series.shape)
    page_axes = key.axes
    n_outer = len(axes) - len(page_axes)
    outer_axes, outer_shape = axes[:n_outer], shape[:n_outer]
    n_pages = len(series.pages)
    if n_outer == 0 and page_axes == "SYX" and axes[0] in "ZT":
        # tifffile writes a stack of up to 4 planes (imwrite(f, stack, metadata={'axes': 'TYX'})) as one page
        # whose samples are the planes: the series' axes say time points or z-planes, not channels to average
        n_planes = shape[0]
        if page >= n_planes:
            raise PlaneError(f"plane {page} is out of range: {name} has {n_planes} plane(s), "
                             f"valid: 0..{n_planes - 1}", n_planes)
        one = series.pages[0]
        one = one.aspage() if isinstance(one, tifffile.TiffFrame) else one
        plane = _decode_sample(tif, one, page, n_planes)
        return (plane if channel is None else _select_channel(plane, channel)), _planes(axes[0], n_planes)
    if page_axes == "YX" and len(axes) >= 3 and axes[-3:-1] == "YX" and axes[-1] in _CHANNEL_AXES:
        stack = [(a, n) for a, n in zip(axes[:-3], shape[:-3]) if n > 1]
        planes = _planes(*stack[0]) if len(stack) == 1 else None
        return _read_tiff_yxc(tif, axes, shape, tuple(key.shape), name=name, page=page, channel=channel,
                              max_pixels=max_pixels, series=main), planes
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
            raise PlaneError(f"plane {page} is out of range: {name} has 1 plane, valid: 0", 1)
        if channel is not None:
            data = np.ascontiguousarray(data[:, :, _channel_index(name, channel, width)])
        return data, None

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
    planes = _planes(page_dims[0][1], n_select) if page_dims else None
    if page >= n_select:
        raise PlaneError(
            f"plane {page} is out of range: {name} has {n_select} plane(s), valid: 0..{n_select - 1}", n_select)
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
            return _page_to_hwc(tif.asarray(key=k, series=main).reshape(key.shape), page_axes, name), planes
        _check_decoded(name, height, width, n_channels, max_pixels)
        keys = []
        for c in range(n_channels):
            index[c_dim] = c
            keys.append(int(np.ravel_multi_index(index, outer_shape)) if n_outer else 0)
        out = np.empty((height, width, n_channels), dtype=key.dtype)
        for c, k in enumerate(keys):  # page by page into the output: no stacked copy
            out[:, :, c] = tif.asarray(key=k, series=main).reshape(height, width)
        return out, planes
    k = int(np.ravel_multi_index(index, outer_shape)) if n_outer else 0
    return _page_plane(tif, series.pages[k], name, channel, max_pixels), planes


_PLANE_KINDS = {"Z": "z-planes", "T": "time points", "C": "channels"}
_OTHER_IMAGES = "images (TIFF pages of other sizes)"
"""Images of a TIFF to choose from, with no projection of them: of other sizes than the first, none larger."""
_LARGER_IMAGES = ("images (TIFF pages of other sizes, a later one larger than the first: the first may be a "
                  "thumbnail or a reduced copy)")
_SAME_SIZE_IMAGES = "images (positions or fields of view, as the file stores them apart)"
CHOSEN_IMAGES = (_OTHER_IMAGES, _LARGER_IMAGES, _SAME_SIZE_IMAGES)
"""What :func:`read_image_planes` calls planes that are images of their own: one is chosen, never projected."""
_UNNAMED_PLANES = "planes (TIFF pages that the file does not name: z-planes, time points or channels)"


def _planes(axis: str, n: int) -> tuple[int, str]:
    """(n, what the planes of a tifffile axis letter are), for the :class:`ImageReadWarning` message."""
    return n, _PLANE_KINDS.get(axis, _UNNAMED_PLANES)


def _n_pages(src: Any) -> int:
    """A TIFF's number of pages, from its directories only (nothing decoded)."""
    if isinstance(src, io.BytesIO):
        src.seek(0)
    with tifffile.TiffFile(src) as tif:
        return len(tif.pages)


def _tiff_planes(src: Any, name: str, page: int, max_pixels: int) -> tuple[int, str] | None:
    """The planes of a TIFF (:func:`read_image_planes`), read again without a channel."""
    if isinstance(src, io.BytesIO):
        src.seek(0)
    return _read_tiff(src, name=name, page=page, channel=None, max_pixels=max_pixels)[1]


def _pages_not_channels(name: str, channel: int | None, planes: tuple[int, str] | None) -> None:
    """A channel asked of a file whose unnamed pages hold one channel each: its pages may be the channels, so
    counting page 0 as it is (what a one-channel image gets) would count another stain without a word."""
    if planes is not None and planes[0] > 1 and planes[1] == _UNNAMED_PLANES:  # not a thumbnail beside the image
        raise ParameterError(
            f"{name}: channel {channel} was asked, but the file's {planes[0]} pages are not named (z-planes, time "
            f"points or channels) and each holds one channel: if its pages are the channels, count page {channel} "
            f"(count command: --plane {channel}, without --channel; Python: read_image(page={channel}); Count page: "
            "'Plane')")


def _page_plane(
    tif: tifffile.TiffFile, page: tifffile.TiffPage | tifffile.TiffFrame, name: str, channel: int | None,
    max_pixels: int,
) -> np.ndarray:
    """One page as (H, W) or (H, W, S); with ``channel``, only that sample is decoded."""
    if isinstance(page, tifffile.TiffFrame):
        page = page.aspage()
    n_samples = int(page.samplesperpixel)
    height, width = int(page.imagelength), int(page.imagewidth)
    if n_samples == 1 or page.axes not in ("YXS", "SYX") or _is_cmyk(page):
        data = _page_to_hwc(page.asarray(), page.axes, name)
        data = _cmyk_to_rgb(data) if _is_cmyk(page) else data
        return data if channel is None else _select_channel(data, channel)
    if channel is None:
        _check_decoded(name, height, width, n_samples, max_pixels)
        return _page_to_hwc(page.asarray(), page.axes, name)
    return _decode_sample(tif, page, _channel_index(name, channel, n_samples), n_samples)


def _is_cmyk(page: tifffile.TiffPage) -> bool:
    """A page of cyan, magenta, yellow and black inks (a print-ready export), not four channels of a microscope."""
    return (page.photometric == tifffile.PHOTOMETRIC.SEPARATED and int(page.samplesperpixel) == 4
            and int(getattr(page, "inkset", 1) or 1) == 1 and page.dtype.kind == "u")


def _cmyk_to_rgb(data: np.ndarray) -> np.ndarray:
    """Ink values (H, W, 4) as RGB, as Pillow converts a CMYK picture (each colour: what its ink leaves, times what
    the black leaves), so a CMYK TIFF counts as the same picture saved as PNG does."""
    full = float(np.iinfo(data.dtype).max)
    left = full - data.astype(np.float64)
    return np.rint(left[..., :3] * left[..., 3:4] / full).astype(data.dtype)


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
    page: int, channel: int | None, max_pixels: int, series: int = 0,
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
        raise PlaneError(f"plane {page} is out of range: {name} has {n_select} plane(s), valid: 0..{n_select - 1}",
                         n_select)
    if page_shape == (cols, n_channels):
        per_image = rows
    elif page_shape == (rows, cols) and n_channels == 1:
        per_image = 1
    else:
        raise ImageReadError(f"{name}: unsupported TIFF layout (axes {axes}, shape {shape}, pages {page_shape})")
    if channel is not None:
        c = _channel_index(name, channel, n_channels)
        if per_image == 1:
            return np.ascontiguousarray(tif.asarray(key=page, series=series).reshape(rows, cols))
        out = np.empty((rows, cols), dtype=tif.series[series].dtype)
        pages = tif.series[series].pages
        for r in range(rows):
            out[r] = pages[page * per_image + r].asarray().reshape(cols, n_channels)[:, c]
        return out
    _check_decoded(name, rows, cols, n_channels, max_pixels)
    data = tif.asarray(key=slice(page * per_image, (page + 1) * per_image), series=series)
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
        if head[:4] in TIFF_MAGICS:
            with tifffile.TiffFile(path) as tif:
                key = tif.series[main_series(tif)].keyframe
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
    except UnidentifiedImageError as err:  # as read_image says it: Pillow's own words name a memory address or path
        raise ImageReadError(_unreadable(name, head)) from err
    except _DECODE_ERRORS as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ImageReadError(f"{name}: cannot read image header: {err}") from err


def pixel_digest(source: Any) -> str | None:
    """sha256 of an image's pixels in one form (its one channel, or the mean of its colour channels where they
    differ; alpha left out; whole values), or None when it cannot be read. A file's own sha256 changes with any
    save: the same image saved again as grayscale, as RGB without alpha or as TIFF keeps this digest, so a model's
    training image is recognised in the user's folder once re-saved, not scored as unseen."""
    import hashlib
    import warnings

    try:
        with warnings.catch_warnings():  # the digest of a stack's first plane: whoever reads it to count says so
            warnings.simplefilter("ignore", ImageReadWarning)
            arr = np.asarray(source) if isinstance(source, np.ndarray) else read_image(source)
    except Exception:  # noqa: BLE001 - anything unreadable simply has no digest
        return None
    if arr.ndim == 3:
        colour = arr[..., : min(3, arr.shape[2])]
        same = all(np.array_equal(colour[..., 0], colour[..., k]) for k in range(1, colour.shape[2]))
        arr = colour[..., 0] if same else colour.astype(np.float64).mean(axis=2)
    whole = np.rint(np.nan_to_num(arr.astype(np.float64))).astype(np.int64)
    return hashlib.sha256(np.asarray(whole.shape, np.int64).tobytes() + whole.tobytes()).hexdigest()
