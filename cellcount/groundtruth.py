"""Ground truth: instance labels, binary masks, dot annotations, point tables and per-image counts.

Every reader returns a :class:`GroundTruth`. Folder loaders pair images with their ground truth by the
name conventions of :mod:`cellcount.io` (``img_labels.tif``, ``img_mask.png``, ``img_dots.png``,
``img_points.csv``, a ``labels/`` folder next to ``images/``, a ``filename,count`` CSV) and by the two
DSB 2018 layouts (``<id>/images/<id>.png`` + ``<id>/masks/*.png``, or flat ``images/`` + ``labels/``).
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
import struct
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
from scipy import ndimage as ndi

from cellcount.errors import CellcountError, GroundTruthError, ImageReadError
from cellcount.io import (
    DEFAULT_MAX_PIXELS,
    DOT_DIRS,
    GROUND_TRUTH_DIRS,
    GROUND_TRUTH_SUFFIXES,
    GROUND_TRUTH_WORDS,
    IMAGE_EXTENSIONS,
    IMAGE_WORDS,
    IMAGEJ_ROI_EXTENSIONS,
    cell_counter_stem,
    ground_truth_suffix,
    image_shape,
    imagej_roi_stem,
    list_image_files,
    read_image,
    role_word_ground_truth,
    split_ground_truth_files,
    word_base,
    zip_files,
)
from cellcount.io.files import MICROSCOPE_EXTENSIONS

logger = logging.getLogger(__name__)

MAX_DOT_AREA_PX = 9
"""A binary ground-truth image whose every blob is at most this many pixels (3 x 3) holds dots, not nuclei."""


def holds_only_specks(gt: GroundTruth) -> bool:
    """Whether ground truth read as a binary mask is a dot image: every blob at most :data:`MAX_DOT_AREA_PX`."""
    return (gt.kind == "mask" and bool(gt.count) and gt.labels is not None
            and int(np.bincount(gt.labels.ravel())[1:].max()) <= MAX_DOT_AREA_PX)

__all__ = [
    "GROUND_TRUTH_KINDS",
    "BinaryMaskWarning",
    "PredictedLabelsWarning",
    "DuplicatePointsWarning",
    "GroundTruth",
    "labels_from_array",
    "load_dsb_folder",
    "load_labelled_folder",
    "match_ground_truth",
    "read_counts_csv",
    "read_dot_image",
    "read_ground_truth",
    "read_label_image",
    "read_points_csv",
]

GROUND_TRUTH_KINDS = ("labels", "mask", "points", "count")
"""Values of :attr:`GroundTruth.kind`."""

CsvSource = str | os.PathLike | bytes | IO[bytes] | IO[str]

# 8-connectivity: a hand-drawn or thresholded mask of one cell often touches itself only diagonally
_STRUCTURE_8 = np.ones((3, 3), dtype=bool)
_FILENAME_COLUMNS = ("filename", "file_name", "file", "image", "image_name", "image_id", "name")
_COUNT_COLUMNS = ("count", "cell_count", "n_cells", "cells")
_POINT_COLUMN_PAIRS = (  # (row column, col column), lower-case
    ("row", "col"),
    ("row", "column"),
    ("y", "x"),
    ("centroid-0", "centroid-1"),
    ("centroid_row", "centroid_col"),
    ("ym", "xm"),
    ("location_center_y", "location_center_x"),  # CellProfiler's objects table
    ("centroid y px", "centroid x px"),  # QuPath's detections in pixels
    ("centroid_y", "centroid_x"),
)
_IMAGE_COLUMNS = ("imagenumber", "image", "image_name", "filename", "file")
"""Columns that name the image of each point in a table of many images' points."""
_MICRON_MARKS = ("µm", "μm", "um", "micron")
"""Header words of coordinates in calibrated units (QuPath's "Centroid X µm", a calibrated Fiji table)."""
_DSB_GT_DIRS = ("labels", "masks", "label", "mask", "gt", "ground_truth")


MAX_COORDINATE_PX = 1 << 20
"""Largest point coordinate accepted (pixels): far beyond any image within the pixel cap."""
MAX_GROUND_TRUTH_COUNT = DEFAULT_MAX_PIXELS
"""Largest count accepted as ground truth: one cell per pixel of the largest image read. A larger number
(``1e300`` in a spreadsheet) is a typo, and would make every error metric infinite."""


def _check_count(count: object, where: str) -> None:
    """Raise GroundTruthError unless ``count`` is a whole number in [0, MAX_GROUND_TRUTH_COUNT]."""
    ok = isinstance(count, (int, np.integer)) and not isinstance(count, (bool, np.bool_))
    if not ok or not 0 <= int(count) <= MAX_GROUND_TRUTH_COUNT:
        raise GroundTruthError(
            f"{where}: count must be a whole number within [0, {MAX_GROUND_TRUTH_COUNT:,}], got {count!r}"
        )


class BinaryMaskWarning(UserWarning):
    """A binary mask was split into objects by connectivity: touching cells are merged into one."""


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Ground truth of one image.

    Attributes
    ----------
    kind : str
        ``'labels'`` (instance labels), ``'mask'`` (a binary mask split by 8-connectivity, so touching
        cells are merged), ``'points'`` (one point per cell) or ``'count'`` (only the number).
    count : int
        Number of cells: distinct non-zero labels, or number of points.
    labels : numpy.ndarray or None
        int32 (H, W), 0 = background, for ``'labels'`` and ``'mask'``; ids need not be consecutive.
    points : numpy.ndarray or None
        float64 (N, 2) of (row, col) pixel coordinates, for ``'points'``.
    source : str
        Where it was read from (file name), for messages and reports.
    """

    kind: str
    count: int
    labels: np.ndarray | None = field(default=None, repr=False)
    points: np.ndarray | None = field(default=None, repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in GROUND_TRUTH_KINDS:
            raise GroundTruthError(f"kind must be one of {GROUND_TRUTH_KINDS}, got {self.kind!r}")
        _check_count(self.count, self.source or "ground truth")

    def content_bytes(self) -> bytes:
        """What the annotation says (labels, points, count) as bytes, for fingerprints: two annotations
        that score a count alike give the same bytes, wherever they were read from."""
        parts = []
        if self.labels is not None:
            parts.append(np.ascontiguousarray(self.labels, np.int32).tobytes())
        if self.points is not None:
            parts.append(np.ascontiguousarray(self.points, np.float64).tobytes())
        parts.append(str(self.count).encode())
        return b"".join(parts)


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------
def _count_labels(labels: np.ndarray) -> int:
    """Number of distinct non-zero values of a non-negative integer array."""
    if labels.size == 0:
        return 0
    top = int(labels.max())
    if top == 0:
        return 0
    if top <= 4 * labels.size + 1024:
        return int(np.count_nonzero(np.bincount(labels.ravel())[1:]))
    return int(np.count_nonzero(np.unique(labels)))


def _colours_to_ids(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """Map each colour of an (H, W, 3) image to an id (black -> 0), then split each colour into its
    8-connected regions, because colour maps reuse colours for objects that do not touch.

    Returns (int64 (H, W) labels, number of distinct object colours)."""
    from skimage.measure import label as cc_label  # heavy import, only needed here

    flat = rgb.reshape(-1, 3)
    if np.issubdtype(rgb.dtype, np.integer) and rgb.min() >= 0 and rgb.max() <= 0xFFFF:
        v = flat.astype(np.int64)
        keys = (v[:, 0] << 32) | (v[:, 1] << 16) | v[:, 2]
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        has_black = bool(uniq[0] == 0)
    else:
        uniq, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
        has_black = bool(np.all(uniq[0] == 0))
    ids = inverse.reshape(rgb.shape[:2]).astype(np.int64)
    if not has_black:  # e.g. a white canvas: taken as an object, it added one to the count
        background = int(np.argmax(counts))
        logger.warning("colour label image has no black background; its commonest colour %s is taken as "
                       "the background", tuple(int(c) for c in flat[np.argmax(inverse.ravel() == background)]))
        ids = np.where(ids == background, 0, ids + 1)
    n_colours = len(uniq) - 1
    return cc_label(ids, background=0, connectivity=2).astype(np.int64), n_colours


class DuplicatePointsWarning(UserWarning):
    """A point table listed the same point more than once (a double export); each was counted once."""


def _points_truth(points: np.ndarray, name: str) -> GroundTruth:
    """Point ground truth, each point once: two cells never share a position to a hundredth of a pixel, so
    repeats are a double export (every row twice doubled the true counts, and a model fine-tuned on them
    counted about twice the cells), and are dropped with a :class:`DuplicatePointsWarning`."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) > 1:
        _, first = np.unique(np.round(pts, 2), axis=0, return_index=True)
        if len(first) < len(pts):
            warnings.warn(f"{name}: {len(pts) - len(first)} of its {len(pts)} points repeat another point exactly "
                          "(exported twice, or one cell marked twice?); each position is counted once",
                          DuplicatePointsWarning, stacklevel=3)
            pts = pts[np.sort(first)]
    return GroundTruth(kind="points", count=len(pts), points=pts, source=name)


def _warn_binary(name: str, what: str, n_objects: int) -> None:
    warnings.warn(
        f"{name}: binary mask ({what}) split into {n_objects} objects by 8-connected components; "
        "touching cells are merged into one object",
        BinaryMaskWarning,
        stacklevel=3,
    )


def labels_from_array(arr: np.ndarray, *, source: str = "") -> GroundTruth:
    """Build ground truth from a label image, a binary mask or a colour-coded instance image.

    Parameters
    ----------
    arr : numpy.ndarray
        (H, W) integer, bool or integral-valued float labels (0 = background), or (H, W, 3|4) colour-coded
        instances (black = background, or the commonest colour when no pixel is black; alpha ignored;
        each colour's 8-connected regions become one id each). An (H, W, C) image whose channels are equal is taken as (H, W).
    source : str
        Recorded in the result, used in messages.

    Returns
    -------
    GroundTruth
        ``kind='labels'`` with int32 labels (more than 65,535 labels are kept; ids above the int32 range
        are renumbered 1..N). An array with a single non-zero value that forms several 8-connected
        regions (or a bool / 0-255 / 0-65535 array) is a binary mask: it is labelled by 8-connected
        components, returned as ``kind='mask'`` and a :class:`BinaryMaskWarning` is issued, because
        touching cells merge into one object.

    Raises
    ------
    GroundTruthError
        Wrong shape, negative values, non-integral or non-finite floats, non-numeric dtype.
    """
    name = source or "label image"
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    is_colour = False
    if a.ndim == 3:
        if a.shape[2] not in (3, 4):
            raise GroundTruthError(
                f"{name}: a label image must be (H, W) or colour (H, W, 3|4), got shape {a.shape}"
            )
        a = a[:, :, :3]
        if np.array_equal(a[:, :, 0], a[:, :, 1]) and np.array_equal(a[:, :, 0], a[:, :, 2]):
            a = a[:, :, 0]
        else:
            is_colour = True
    if a.ndim != (3 if is_colour else 2) or 0 in a.shape:
        raise GroundTruthError(f"{name}: a label image must be a non-empty (H, W) array, got shape {a.shape}")
    was_bool = a.dtype == bool
    if was_bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise GroundTruthError(f"{name}: labels must be integers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise GroundTruthError(f"{name}: labels contain NaN or infinite values")
        if not np.array_equal(a, np.round(a)):
            raise GroundTruthError(f"{name}: labels must be whole numbers, found non-integral float values")
        if a.size and float(a.max()) >= 2.0**53:
            raise GroundTruthError(f"{name}: float labels above 2**53 cannot be represented exactly")
        a = a.astype(np.int64)
    if a.size and int(a.min()) < 0:
        raise GroundTruthError(f"{name}: labels must be >= 0, found {int(a.min())}")
    n_colours = 0
    if is_colour:
        a, n_colours = _colours_to_ids(a)

    if is_colour and n_colours == 1 and int(a.max()) > 1:
        _warn_binary(name, "one colour", int(a.max()))
        return GroundTruth(kind="mask", count=int(a.max()), labels=a.astype(np.int32), source=source)
    values = np.unique(a[a != 0]) if a.any() else np.zeros(0, dtype=a.dtype)
    if len(values) == 1 and not is_colour:
        comps, n_comp = ndi.label(a != 0, structure=_STRUCTURE_8)
        value = int(values[0])
        if was_bool or n_comp > 1 or value in (255, 65535):
            _warn_binary(name, f"single value {value}", n_comp)
            return GroundTruth(kind="mask", count=n_comp, labels=comps.astype(np.int32), source=source)
    if a.dtype == np.uint8 and not is_colour and len(values) >= 200 and int(a.max()) == 255:
        a = _unwrapped_8bit(a, len(values), name)
    if a.size and int(a.max()) > np.iinfo(np.int32).max:
        from skimage.segmentation import relabel_sequential

        logger.info("%s: label ids above the int32 range renumbered 1..N", name)
        a = relabel_sequential(a.astype(np.int64))[0]
    labels = a.astype(np.int32)
    return GroundTruth(kind="labels", count=_count_labels(labels), labels=labels, source=source)


class WrappedLabelsWarning(UserWarning):
    """An 8-bit label image whose ids repeat in places apart: more than 255 objects saved as 8-bit (ids wrap)."""


def _unwrapped_8bit(a: np.ndarray, n_ids: int, name: str) -> np.ndarray:
    """An 8-bit label image using id 255 with ids that each mark several regions apart: more objects than 8 bits
    hold, their ids wrapped (313 nuclei read as 255 objects, silently). Each region of one id becomes an object,
    with a warning; labels whose ids each mark one region are returned as they are."""
    from skimage.measure import label as regions

    split = regions(a, background=0, connectivity=2)
    n = int(split.max())
    if n <= n_ids:
        return a
    # wrapped ids repeat for many ids; a stray pixel of one object, or one id used for boundaries, is not that
    id_of_region = ndi.maximum(a, split, index=np.arange(1, n + 1)).astype(np.int64)
    if int((np.bincount(id_of_region) > 1).sum()) < 5:
        return a
    warnings.warn(f"{name}: an 8-bit label image whose ids repeat in {n - n_ids} place(s) apart: likely more than "
                  f"255 objects saved in 8 bits, their ids wrapped; read as {n} objects, one per region of one id "
                  "(save label images as 16-bit)", WrappedLabelsWarning, stacklevel=3)
    return split.astype(np.int64)


def _name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else ""


def _expected_hw(expected_shape: Sequence[int] | None) -> tuple[int, int] | None:
    if expected_shape is None:
        return None
    shape = tuple(int(n) for n in expected_shape)
    if len(shape) < 2:
        raise GroundTruthError(f"expected_shape must be (H, W) or (H, W, C), got {expected_shape}")
    return shape[0], shape[1]


def _check_shape(name: str, shape: tuple[int, ...], expected_shape: Sequence[int] | None) -> None:
    expected = _expected_hw(expected_shape)
    if expected is not None and tuple(shape[:2]) != expected:
        raise GroundTruthError(
            f"{name}: ground truth shape {tuple(shape[:2])} (H, W) does not match the image shape "
            f"{expected} (H, W)"
        )


class PredictedLabelsWarning(UserWarning):
    """A label image cellcount wrote (its TIFF description says so): a model's count, which scores any model that
    counts alike as perfect, unless someone corrected it by hand."""


def _prediction_note(source: object) -> str | None:
    """The description of a TIFF cellcount wrote as a prediction (:data:`cellcount.io.export.PREDICTION_TAG`), else
    None (another format, another writer, unreadable)."""
    import tifffile

    from .io.export import PREDICTION_TAG

    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            data = Path(source)
        else:
            at = source.tell()  # type: ignore[attr-defined]
            data = io.BytesIO(source.read())  # type: ignore[attr-defined]
            source.seek(at)  # type: ignore[attr-defined]
        if isinstance(data, io.BytesIO):
            head = data.read(4)
            data.seek(0)
        else:
            with data.open("rb") as fh:
                head = fh.read(4)
        if head[:2] not in (b"II", b"MM"):
            return None
        with tifffile.TiffFile(data) as tif:
            text = tif.pages[0].description or ""
    except Exception:  # noqa: BLE001 - a file this cannot read is read (or refused) by the image reader
        return None
    return text if text.startswith(PREDICTION_TAG) else None


def _read_gt_image(source: object) -> np.ndarray:
    name = _name(source) or "<ground truth>"
    try:
        return read_image(source)  # type: ignore[arg-type]
    except ImageReadError as err:
        raise GroundTruthError(f"{name}: cannot read ground-truth image: {err}") from err


def read_label_image(source: object, *, expected_shape: Sequence[int] | None = None) -> GroundTruth:
    """Read a label image (or binary mask, or colour-coded instances) from a path, bytes or file-like.

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file-like
        Any format :func:`cellcount.io.read_image` reads (PNG 8/16-bit, TIFF up to 32-bit ...). Lossy
        formats (JPEG) corrupt labels and are refused.
    expected_shape : tuple of int, optional
        (H, W) or (H, W, C) of the image the labels belong to.

    Returns
    -------
    GroundTruth
        See :func:`labels_from_array`.

    Raises
    ------
    GroundTruthError
        Unreadable file, bad values, or a shape that differs from ``expected_shape``.
    ImageTooLargeError
        More pixels than :data:`cellcount.io.DEFAULT_MAX_PIXELS`.
    """
    name = _name(source)
    if Path(name).suffix.lower() in (".jpg", ".jpeg"):
        raise GroundTruthError(f"{name}: JPEG is lossy and cannot hold labels; save labels as PNG or TIFF")
    note = _prediction_note(source)  # before the image is read: a stream is left where it was
    image = _read_gt_image(source)
    _check_shape(name or "label image", image.shape, expected_shape)
    if note:
        warnings.warn(f"{name + ': a' if name else 'A'} label image cellcount wrote ({note.split(': ', 1)[-1]}): scoring "
                      "against it measures agreement with that count, not accuracy; use it as ground truth only once "
                      "corrected by hand", PredictedLabelsWarning, stacklevel=2)
    return labels_from_array(image, source=name)


def read_dot_image(source: object, *, expected_shape: Sequence[int] | None = None) -> GroundTruth:
    """Read a dot-annotation image: one point per cell.

    Every 8-connected blob of pixels that differ from the background (any channel) is one point at the
    blob's centroid, so a single-pixel dot and a small painted disc both count once; a blob several times
    the median blob's size is that many dots that touch (single-pixel dots: every pixel; see
    :func:`_dots_from_mask`). The
    background is the most common value (per channel), so dots may be bright on black, dark on white or
    coloured on any canvas. For JPEG, only pixels more than half the largest difference away from the
    background count, to ignore compression noise.

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file-like
        The dot image.
    expected_shape : tuple of int, optional
        (H, W) or (H, W, C) of the image the dots belong to.

    Returns
    -------
    GroundTruth
        ``kind='points'``, ``points`` float64 (N, 2) (row, col).

    Raises
    ------
    GroundTruthError
        Unreadable file, shape mismatch, or no plain canvas (more than half the pixels differ from the
        commonest value: dots drawn over the picture).
    """
    name = _name(source)
    image = _read_gt_image(source)
    _check_shape(name or "dot image", image.shape, expected_shape)
    values = np.nan_to_num(image.astype(np.float64)).reshape(image.shape[0], image.shape[1], -1)
    # the background is the most common value of each channel, not 0: dots on a near-black (1, 10) or a
    # white canvas, or red dots on white, are then found where a 'non-zero' test saw dots everywhere
    background = [np.unique(values[..., c], return_counts=True) for c in range(values.shape[2])]
    away = np.abs(values - np.array([v[np.argmax(n)] for v, n in background])).max(axis=2)
    if Path(name).suffix.lower() in (".jpg", ".jpeg"):
        on = away > 0.5 * float(away.max())  # ignore compression noise
    else:
        on = away != 0
    if on.mean() > 0.5:  # no plain canvas: dots drawn over the picture itself cannot be told from it
        raise GroundTruthError(
            f"{name or 'dot image'}: {on.mean():.0%} of the pixels differ from the commonest value, so this is "
            "not dots on a plain canvas; save the dots alone (on black or white) or as a points CSV"
        )
    points = _dots_from_mask(on)
    return GroundTruth(kind="points", count=len(points), points=points, source=name)


def _dots_from_mask(on: np.ndarray) -> np.ndarray:
    """(N, 2) row/col points of a dot mask: one per dot, where dots that touch stay apart.

    A dot's size is the median blob area. A blob about k times that size is k dots that touch: with
    single-pixel dots (the commonest export; dense annotations touch often) every marked pixel is a dot,
    and a blob of k painted discs is split into k points by k-means on its pixels, if its shape says so
    (elongated or not convex: a round blob is one dot painted with a larger brush). Reading each blob as one
    dot lost 2.3 of 176 cells per image on VGG cells (up to 8) and taught fine-tunes to undercount."""
    blobs, n = ndi.label(on, structure=_STRUCTURE_8)
    if not n:
        return np.zeros((0, 2), dtype=np.float64)
    areas = np.bincount(blobs.ravel(), minlength=n + 1)[1:]
    unit = float(np.median(areas))
    dots = np.maximum(1, np.floor(areas / unit + 0.5)).astype(int)
    points = np.asarray(ndi.center_of_mass(on, blobs, np.arange(1, n + 1)), dtype=np.float64).reshape(-1, 2)
    if (dots == 1).all():
        return points
    from scipy.cluster.vq import kmeans2

    out = [points[dots == 1]]
    objects = ndi.find_objects(blobs)
    for i in np.flatnonzero(dots > 1):
        sl = objects[i]
        pix = np.argwhere(blobs[sl] == i + 1).astype(np.float64) + [sl[0].start, sl[1].start]
        if dots[i] >= len(pix):  # single-pixel dots: each pixel is one
            out.append(pix)
        elif _one_round_blob(blobs[sl] == i + 1):
            out.append(points[i:i + 1])
        else:
            centres, _ = kmeans2(pix, int(dots[i]), minit="++", seed=0)
            out.append(centres)
    return np.concatenate(out).reshape(-1, 2)


def _one_round_blob(blob: np.ndarray) -> bool:
    """Whether a painted blob is one round dot: about as wide as long and convex (dots that touch make a
    peanut or a chain)."""
    from skimage.measure import regionprops

    props = regionprops(blob.astype(np.uint8))[0]
    return props.axis_minor_length >= props.axis_major_length / 1.5 and props.solidity >= 0.9


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------
def _decode_csv(raw: bytes) -> str:
    """CSV bytes -> text: UTF-16 (Excel's "Unicode text", with a BOM or plainly interleaved with NULs),
    UTF-8 with or without a BOM, else Windows-1252 (Excel's "CSV" on Windows)."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    if len(raw) >= 4 and raw[1:4:2] == b"\x00\x00" and raw[0:4:2] != b"\x00\x00":
        return raw.decode("utf-16-le")
    if len(raw) >= 4 and raw[0:4:2] == b"\x00\x00" and raw[1:4:2] != b"\x00\x00":
        return raw.decode("utf-16-be")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def _read_csv_text(source: CsvSource) -> tuple[str, str]:
    """Return (name, text) of a CSV given as path, bytes or file-like (see :func:`_decode_csv`)."""
    name = _name(source) or "<csv>"
    try:
        if isinstance(source, (str, os.PathLike)):
            raw: bytes | str = Path(source).read_bytes()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            raw = bytes(source)
        elif hasattr(source, "read"):
            raw = source.read()
        else:
            raise TypeError(f"CSV source must be a path, bytes or file-like, not {type(source).__name__}")
        text = _decode_csv(bytes(raw)) if isinstance(raw, (bytes, bytearray)) else str(raw).lstrip("\ufeff")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as err:
        raise GroundTruthError(f"{name}: cannot read CSV: {err}") from err
    if "\x00" in text:
        raise GroundTruthError(f"{name}: not a text CSV (it holds NUL bytes)")
    if not text.strip():
        raise GroundTruthError(f"{name}: CSV file is empty")
    return name, text


CSV_DELIMITERS = (",", ";", "\t")
"""Field separators recognised from a CSV's header line: comma, semicolon (Excel in locales whose decimal
mark is a comma, where numbers are then read with a decimal comma too) and tab."""


def _delimiter(text: str) -> str:
    """The separator of the first non-empty line: the one of :data:`CSV_DELIMITERS` it holds most often
    outside quotes (comma on a tie or when none appears)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    unquoted = "".join(part for i, part in enumerate(first.split('"')) if i % 2 == 0)
    counts = {d: unquoted.count(d) for d in CSV_DELIMITERS}
    best = max(CSV_DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _csv_rows(name: str, text: str, *, raw: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, lowercased and stripped, data rows); ``raw``: (the first row as written, data rows)."""
    delimiter = _delimiter(text)
    try:
        rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise GroundTruthError(f"{name}: malformed CSV: {err}") from err
    if not rows:
        raise GroundTruthError(f"{name}: CSV file is empty")
    header = [h.strip().strip("\ufeff") if raw else h.strip().strip("\ufeff").lower() for h in rows[0]]
    return header, rows[1:]


def _number(cell: str, *, decimal_comma: bool = False) -> float:
    """A CSV cell as a float (NaN when it is not a number); ``decimal_comma``: "12,5" is 12.5."""
    try:
        return float(cell.replace(",", ".") if decimal_comma and cell.count(",") == 1 else cell)
    except ValueError:
        return float("nan")


def _point_columns(header: list[str]) -> tuple[int, int] | None:
    """(row index, col index) into the header, or None when no known coordinate columns exist."""
    for row_name, col_name in _POINT_COLUMN_PAIRS:
        if row_name in header and col_name in header:
            return header.index(row_name), header.index(col_name)
    axes = sorted((int(h[5:]), i) for i, h in enumerate(header) if h.startswith("axis-") and h[5:].isdigit())
    if len(axes) >= 2:  # napari: axis-0 = row, axis-1 = col; 3-D points: the last two axes
        return axes[-2][1], axes[-1][1]
    return None


def _count_columns(header: list[str]) -> tuple[int, int] | None:
    file_col = next((header.index(c) for c in _FILENAME_COLUMNS if c in header), None)
    count_col = next((header.index(c) for c in _COUNT_COLUMNS if c in header), None)
    if file_col is None or count_col is None:
        return (0, 1) if _headerless_counts(header) else None
    return file_col, count_col


def _headerless_counts(first_row: list[str]) -> bool:
    """Whether a table's first row is an image's name and its count (``A01.tif,34``, as Excel saves two columns
    typed without titles): the table is then read from that row on, name first."""
    cells = [c.strip() for c in first_row]
    if len(cells) != 2 or not cells[0]:
        return False
    named_image = PurePosixPath(cells[0].replace("\\", "/")).suffix.lower() in (*IMAGE_EXTENSIONS, *MICROSCOPE_EXTENSIONS)
    value = _number(cells[1])
    return named_image and bool(np.isfinite(value)) and value >= 0 and value == int(value)


_PREDICTION_COLUMNS = ("count_estimate", "check_score")
"""Columns of the counts tables cellcount writes (:data:`cellcount.batch.COUNT_COLUMNS`), which no ground truth has."""


def is_cellcount_counts(header: list[str]) -> bool:
    """A table header (lower-case) of cellcount's own counts (``cellcount count``, the Batch page): the model's
    predictions, which read as ground truth would score the model against itself."""
    return "model" in header and any(c in header for c in _PREDICTION_COLUMNS)


def is_cellcount_objects(header: list[str]) -> bool:
    """A table header (lower-case) of cellcount's own object table (``count --objects``, the pages' objects
    download): the model's objects, never the ground truth of its images."""
    return "area_px" in header and "equivalent_diameter_px" in header and "label" in header


def predicted_counts_message(name: str) -> str:
    return (f"{name} holds cellcount's own counts (its columns model, count_estimate, check_score), not ground truth: "
            "not used. If you corrected its counts by hand, keep only its file and count columns")


TABLE_EXTENSIONS = (".csv", ".tsv")
"""Tables of points or counts: comma, semicolon or tab separated (QuPath saves its measurements as .tsv)."""
MAX_XML_BYTES = 64 * 1024 * 1024


def _read_bounded(source: CsvSource, limit: int, unnamed: str, why: str) -> tuple[str, bytes]:
    """(name, bytes) of a path, bytes or file-like, refused beyond ``limit`` bytes (``why`` says what that means)."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(source, "rb") as fh:
            data = fh.read(limit + 1)
    elif isinstance(source, (bytes, bytearray)):
        name, data = unnamed, bytes(source)
    else:
        name = getattr(source, "name", unnamed)
        data = source.read(limit + 1)
        data = data.encode("utf-8") if isinstance(data, str) else data
    if len(data) > limit:
        raise GroundTruthError(f"{name}: over {limit >> 20} MB: {why}")
    return name, data


def read_cellcounter_xml(source: CsvSource) -> GroundTruth:
    """Markers saved by Fiji's Cell Counter plugin (``CellCounter_<image>.xml``) as points.

    Every marker type counts (a type is usually a class of cell: positive, negative); ``MarkerX``/``MarkerY`` are
    pixels of the image (x the column).

    Raises
    ------
    GroundTruthError
        Not a Cell Counter file, not XML, a marker without numeric coordinates, or too large.
    """
    import xml.etree.ElementTree as ET

    name, data = _read_bounded(source, MAX_XML_BYTES, "<xml>", "not a Cell Counter file")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise GroundTruthError(f"{name}: not readable XML ({err})") from err
    if root.tag != "CellCounter_Marker_File":
        raise GroundTruthError(f"{name}: XML, but not markers saved by Fiji's Cell Counter (root <{root.tag}>); "
                               "export the points as a CSV with x,y columns instead")
    points = []
    for k, marker in enumerate(root.iter("Marker")):
        try:
            x, y = float(marker.findtext("MarkerX", "")), float(marker.findtext("MarkerY", ""))
        except ValueError:
            raise GroundTruthError(f"{name}: marker {k + 1} has no numeric MarkerX/MarkerY") from None
        if not (0 <= x <= MAX_COORDINATE_PX and 0 <= y <= MAX_COORDINATE_PX):
            raise GroundTruthError(f"{name}: marker {k + 1} at ({x:g}, {y:g}) is not inside an image")
        points.append((y, x))
    return _points_truth(np.asarray(points, np.float64).reshape(-1, 2), name)


GEOJSON_EXTENSIONS = (".geojson",)
QUPATH_OBJECTS = frozenset({"detection", "cell"})
"""QuPath's object types that are the counted objects: where a GeoJSON file has any, its annotations (the region
the detection ran in), tiles and TMA cores are left out."""
MAX_GEOJSON_BYTES = 256 * 1024 * 1024


def read_geojson(source: CsvSource, *, expected_shape: Sequence[int] | None = None) -> GroundTruth:
    """Objects exported as GeoJSON (QuPath's "Export objects as GeoJSON", napari, others), in image pixels.

    QuPath's exports: where there are detections or cells (``objectType``), they alone are the objects (the
    annotation the detection ran in is the region, not an object), and a cell is its nucleus (``nucleusGeometry``)
    when it has one. Polygons and multipolygons (one object each; holes kept out) become an instance label image of
    ``expected_shape`` (H, W), drawn in file order, a later object over an earlier one; without a shape, the
    extent of the outlines. Points and multipoints become points. A file with both is refused: outlines and dots
    are two annotations.
    """
    import json

    name, data = _read_bounded(source, MAX_GEOJSON_BYTES, "<geojson>", "too large for ground truth")
    try:
        obj = json.loads(data.decode("utf-8-sig"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as err:  # ValueError: JSON's NaN / Infinity too
        raise GroundTruthError(f"{name}: not readable GeoJSON ({err})") from err
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features") or []
    elif isinstance(obj, list):  # QuPath's older exports: a list of features
        features = obj
    elif isinstance(obj, dict) and obj.get("type") == "Feature":
        features = [obj]
    elif isinstance(obj, dict) and "coordinates" in obj:
        features = [{"geometry": obj}]
    else:
        raise GroundTruthError(f"{name}: JSON, but not GeoJSON objects (a FeatureCollection or a list of features)")
    features = [f for f in features if isinstance(f, dict)]
    types = {_qupath_type(f) for f in features}
    if types & QUPATH_OBJECTS:  # QuPath's export holds its regions too (an annotation around the detected cells)
        features = [f for f in features if _qupath_type(f) in (*QUPATH_OBJECTS, "")]
    polygons: list[list[list[np.ndarray]]] = []  # objects -> parts -> rings (x, y)
    points: list[tuple[float, float]] = []
    try:
        for feature in features:
            # a QuPath cell: its nucleus when it has one, the counted object here
            geometry = feature.get("nucleusGeometry") or feature.get("geometry") or {}
            if not isinstance(geometry, dict):
                continue
            kind, coords = geometry.get("type"), geometry.get("coordinates")
            if kind in ("Polygon", "MultiPolygon"):
                parts = [coords] if kind == "Polygon" else list(coords or [])
                rings = [[np.asarray(ring, np.float64).reshape(-1, np.shape(ring)[-1] if np.ndim(ring) == 2 else 2)[:, :2]
                          for ring in part] for part in parts if part]
                rings = [[r for r in part if len(r)] for part in rings]
                rings = [part for part in rings if part]
                if rings:  # an empty polygon is no object
                    polygons.append(rings)
            elif kind == "Point":
                points.append((float(coords[1]), float(coords[0])))
            elif kind == "MultiPoint":
                points.extend((float(c[1]), float(c[0])) for c in coords)
            # lines (a measurement), collections: not objects, passed over
    except (TypeError, ValueError, IndexError, AttributeError, OverflowError) as err:
        raise GroundTruthError(f"{name}: a feature without usable coordinates ({err})") from err
    every_ring = [r for obj in polygons for part in obj for r in part]
    if not all(np.isfinite(r).all() for r in every_ring) or not np.isfinite(np.asarray(points, np.float64)).all():
        raise GroundTruthError(f"{name}: coordinates that are not numbers (NaN or infinite)")
    polygons = _objects_not_regions(polygons, points)
    if polygons and points:
        raise GroundTruthError(f"{name}: holds both outlines ({len(polygons)}) and points ({len(points)}): export "
                               "one kind of annotation per image")
    if not polygons:
        arr = np.asarray(points, np.float64).reshape(-1, 2)
        if len(arr) and (arr.min() < 0 or arr.max() > MAX_COORDINATE_PX):
            raise GroundTruthError(f"{name}: a point lies at negative or huge coordinates: not image pixels")
        return _points_truth(arr, name)
    labels = _outlines_to_labels(polygons, expected_shape, name)
    return GroundTruth(kind="labels", count=_count_labels(labels), labels=labels, source=name)


def _outlines_to_labels(polygons: list[list[list[np.ndarray]]], expected_shape: Sequence[int] | None,
                        name: str) -> np.ndarray:
    """Objects -> parts -> rings of (x, y) vertices at pixel corners (QuPath's and ImageJ's convention: a pixel's
    centre is at +0.5) -> an int32 instance label image of ``expected_shape`` (H, W), drawn in order, a later object
    over an earlier one; without a shape, the outlines' extent. A part's first ring outlines, the others are holes;
    an object smaller than a pixel keeps its centre pixel."""
    from skimage.draw import polygon as fill_polygon

    rings = [r for obj in polygons for part in obj for r in part]
    shape = _expected_hw(expected_shape)
    if shape is None:
        top = max(float(r[:, 1].max()) for r in rings), max(float(r[:, 0].max()) for r in rings)
        shape = (int(np.ceil(top[0])) + 1, int(np.ceil(top[1])) + 1)
    if shape[0] * shape[1] > DEFAULT_MAX_PIXELS:
        raise GroundTruthError(f"{name}: outlines over {shape[1]} x {shape[0]} px (W x H): above the pixel cap")
    labels = np.zeros(shape, np.int32)
    for i, parts in enumerate(polygons, 1):
        # pixel centres at integer coordinates: QuPath's and ImageJ's outlines have them at +0.5
        object_rings = [[r - 0.5 for r in part] for part in parts]
        every = np.concatenate([r for part in object_rings for r in part])
        r0, c0 = max(0, int(np.floor(every[:, 1].min()))), max(0, int(np.floor(every[:, 0].min())))
        r1, c1 = min(shape[0], int(np.ceil(every[:, 1].max())) + 1), min(shape[1], int(np.ceil(every[:, 0].max())) + 1)
        if r1 <= r0 or c1 <= c0:
            continue  # wholly outside the image
        mask = np.zeros((r1 - r0, c1 - c0), bool)  # the object's box only: thousands of objects stay cheap
        for part in object_rings:
            for k, ring in enumerate(part):
                rr, cc = fill_polygon(ring[:, 1] - r0, ring[:, 0] - c0, mask.shape)
                mask[rr, cc] = k == 0  # the first ring outlines; the others are holes
        if not mask.any():  # smaller than a pixel: its centre pixel
            y, x = every[:, 1].mean() + 0.5, every[:, 0].mean() + 0.5
            if r0 <= y < r1 and c0 <= x < c1:
                mask[int(y) - r0, int(x) - c0] = True
        labels[r0:r1, c0:c1][mask] = i
    return labels


MAX_ROI_BYTES = 256 * 1024 * 1024
MAX_ROIS = 1_000_000


def is_roi_set(source: str | os.PathLike | bytes) -> bool:
    """Whether a zip (a path or its bytes) is an ImageJ ROI set: every file in it a ``.roi`` (the ROI Manager's
    ``RoiSet.zip``), not a zip of images or tables."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            names = [i.filename for i in zip_files(zf)]
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return bool(names) and all(n.lower().endswith(".roi") for n in names)


def read_imagej_rois(source: CsvSource, *, expected_shape: Sequence[int] | None = None) -> GroundTruth:
    """ImageJ / Fiji ROIs as ground truth: a ``.roi`` file or the ROI Manager's set (``RoiSet.zip``, a zip of them).

    Outlines (polygon, freehand, traced, rectangle, oval, ellipse; a composite ROI is one object, its inner rings
    holes) become an instance label image of ``expected_shape`` (H, W), one object per ROI, drawn in the set's
    order; points (the multi-point tool, with or without counters: every point counts) become points. Lines,
    angles and text are not objects and are passed over; a set with both outlines and points is refused, as one
    with neither. ROIs of every plane of a stack count: annotate the plane you count. Read with ``roifile``.

    Raises
    ------
    GroundTruthError
        Not an ROI file or set, no objects in it, outlines and points together, or too large.
    """
    import zipfile

    from roifile import ROI_SUBTYPE, ROI_TYPE, ImagejRoi

    name, data = _read_bounded(source, MAX_ROI_BYTES, "<roi>", "too large for ground truth")
    blobs: list[tuple[str, bytes]] = []
    if data[:2] == b"PK":  # a zip: the ROI Manager's set
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = zip_files(zf)
                if not members or not all(i.filename.lower().endswith(".roi") for i in members):
                    raise GroundTruthError(f"{name}: a zip, but not an ImageJ ROI set (the ROI Manager's RoiSet.zip "
                                           "holds only .roi files)")
                if len(members) > MAX_ROIS or sum(i.file_size for i in members) > MAX_ROI_BYTES:
                    raise GroundTruthError(f"{name}: more ROIs than ground truth may hold")
                blobs = [(i.filename, zf.read(i)) for i in members]
        except GroundTruthError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, RuntimeError) as err:  # RuntimeError: encrypted
            raise GroundTruthError(f"{name}: not a readable zip of ImageJ ROIs ({err})") from err
    else:
        blobs = [(name, data)]
    polygons: list[list[list[np.ndarray]]] = []
    points: list[np.ndarray] = []
    passed_over: set[str] = set()
    for member, blob in blobs:
        if blob[:4] != b"Iout":
            raise GroundTruthError(f"{name}: {member if member != name else 'it'} is not an ImageJ ROI (.roi) file")
        try:
            roi = ImagejRoi.frombytes(blob)
            kind, subtype = roi.roitype, roi.subtype
            if kind == ROI_TYPE.POINT:
                pts = np.asarray(roi.coordinates(), np.float64).reshape(-1, 2)
                points.append(pts[:, ::-1])  # (x, y) -> (row, col)
                continue
            is_outline = kind in (ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED, ROI_TYPE.OVAL) or (
                kind == ROI_TYPE.RECT and subtype not in (ROI_SUBTYPE.TEXT, ROI_SUBTYPE.IMAGE))
            if not is_outline:
                passed_over.add(getattr(kind, "name", str(kind)).lower())
                continue
            rings = [np.asarray(r, np.float64).reshape(-1, 2) for r in roi.coordinates(multi=True)]
        except (ValueError, TypeError, IndexError, KeyError, struct.error) as err:
            raise GroundTruthError(f"{name}: {member} is a damaged ImageJ ROI ({err})") from err
        rings = [r for r in rings if len(r) >= 3 and np.isfinite(r).all()]
        if rings:
            polygons.append(_roi_parts(rings))
    every = np.concatenate(points) if points else np.zeros((0, 2))
    # a rectangle or outline drawn around the nuclei or the clicks (the field counted) is a region, not an object
    polygons = _objects_not_regions(polygons, [tuple(p) for p in every])
    if polygons and len(every):
        raise GroundTruthError(f"{name}: holds both outlines ({len(polygons)}) and points ({len(every)}): save one "
                               "kind of annotation per image")
    if not polygons and not len(every):
        what = f" only {', '.join(sorted(passed_over))} selections," if passed_over else ""
        raise GroundTruthError(f"{name}: no outlines or points to count:{what} not objects")
    if not polygons:
        if not np.isfinite(every).all() or every.min() < 0 or every.max() > MAX_COORDINATE_PX:
            raise GroundTruthError(f"{name}: a point lies at negative or huge coordinates: not image pixels")
        return _points_truth(every, name)
    labels = _outlines_to_labels(polygons, expected_shape, name)
    return GroundTruth(kind="labels", count=_count_labels(labels), labels=labels, source=name)


def _roi_parts(rings: list[np.ndarray]) -> list[list[np.ndarray]]:
    """A composite ROI's rings as the parts of one object: the largest ring outlines, a ring inside it is a
    hole, a ring outside it another part."""
    from skimage.measure import points_in_poly

    def area(r: np.ndarray) -> float:
        return 0.5 * abs(float(np.dot(r[:, 0], np.roll(r[:, 1], 1)) - np.dot(r[:, 1], np.roll(r[:, 0], 1))))

    outer, *rest = sorted(rings, key=area, reverse=True)
    inside = [bool(points_in_poly(r[:1], outer)[0]) for r in rest]
    return [[outer, *(r for r, hole in zip(rest, inside) if hole)], *([r] for r, hole in zip(rest, inside) if not hole)]


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a coordinate")


def _qupath_type(feature: dict) -> str:
    """A QuPath object's type, lower-case ("annotation", "detection", "cell", "tile"; "" when not said): from
    ``properties.objectType`` (QuPath 0.3+), ``properties.object_type`` or the legacy ``id`` (``PathCellObject``)."""
    props = feature.get("properties")
    props = props if isinstance(props, dict) else {}
    kind = props.get("objectType") or props.get("object_type")
    if not kind and isinstance(feature.get("id"), str) and feature["id"].startswith("Path"):
        kind = feature["id"][4:].removesuffix("Object")  # PathDetectionObject -> Detection
    return str(kind or "").lower()


def _objects_not_regions(polygons: list, points: list) -> list:
    """The outlines without those drawn around others (a region annotation around hand-drawn nuclei or counting
    points, which a GeoJSON export of all objects holds too): an outline far larger than the typical one that holds
    another object's centre or a point. Checked only for outlines over 4x the median box area, so thousands of
    nuclei stay cheap."""
    if not polygons or len(polygons) + len(points) < 2:
        return polygons
    from skimage.measure import points_in_poly

    boxes = [np.concatenate([r for part in obj for r in part]) for obj in polygons]
    areas = np.array([np.ptp(b[:, 0]) * np.ptp(b[:, 1]) for b in boxes])
    centres = np.array([b.mean(axis=0) for b in boxes])  # (x, y)
    others = np.concatenate([centres, np.asarray([(x, y) for y, x in points], np.float64).reshape(-1, 2)])
    median = float(np.median(areas)) if len(polygons) > 1 else 0.0
    keep = []
    for i, obj in enumerate(polygons):
        region = False
        if areas[i] > 4 * median:
            inside = np.zeros(len(others), bool)
            for part in obj:
                inside |= points_in_poly(others, part[0])
            inside[i] = False
            region = bool(inside.any())
        keep.append(not region)
    return [obj for obj, k in zip(polygons, keep, strict=True) if k]


class NoCoordinateColumns(GroundTruthError):
    """A CSV read as points has no coordinate columns (nor coordinates in microns): not a table of points at all,
    unlike one whose points cannot be used (in microns, of several images, a bad value)."""


def read_points_csv(source: CsvSource) -> GroundTruth:
    """Read point annotations (one row per cell) from a CSV.

    Recognised columns (case-insensitive): ``row, col`` / ``y, x`` (Fiji) / ``YM, XM`` (Fiji's centre of mass) /
    ``axis-0, axis-1`` (napari; for 3-D points the last two axis columns) / ``centroid-0, centroid-1``
    (scikit-image) / ``Location_Center_Y, Location_Center_X`` (CellProfiler) / ``Centroid Y px, Centroid X px``
    (QuPath). Coordinates are pixels; ``x`` is the column and ``y`` the row. Columns in microns (QuPath's
    ``Centroid X µm``) are refused, saying how to export pixels; Fiji writes calibrated units without saying so
    unless the image is uncalibrated: convert those to pixels first. A table of several images' objects (an
    ``ImageNumber`` or ``Image`` column with more than one value: CellProfiler's, QuPath's project exports) is
    refused: one table per image.

    Parameters
    ----------
    source : str, os.PathLike, bytes or file-like
        The CSV.

    Returns
    -------
    GroundTruth
        ``kind='points'``, ``points`` float64 (N, 2) of (row, col).

    Raises
    ------
    GroundTruthError
        No coordinate columns, a non-numeric or negative coordinate (the message names the line),
        unreadable or empty file.
    """
    name, text = _read_csv_text(source)
    header, rows = _csv_rows(name, text)
    decimal_comma = _delimiter(text) == ";"
    cols = _point_columns(header)
    if cols is None and header and all(np.isfinite(_number(c.strip(), decimal_comma=decimal_comma)) for c in header):
        raise NoCoordinateColumns(f"{name}: no header line (the first row is numbers, {header}); add one naming the "
                               "columns, e.g. x,y (x is the column, y the row)")
    if cols is None:
        if problem := _microns_problem(name, header, text):
            raise GroundTruthError(problem)
        raise NoCoordinateColumns(
            f"{name}: no coordinate columns found in header {header}; expected x,y or row,col or "
            "axis-0,axis-1 (also Location_Center_X,Location_Center_Y from CellProfiler, Centroid X px,Centroid Y px "
            "from QuPath)"
        )
    for column in _IMAGE_COLUMNS:  # one table for many images: every image would get all their objects
        if column in header:
            i = header.index(column)
            values = sorted({row[i].strip() for row in rows if i < len(row)})
            if len(values) > 1:
                where = ("" if column == "imagenumber" else
                         "; or put it beside the images (a folder, or with them in an upload), where it is split by "
                         "that column")
                raise GroundTruthError(
                    f"{name}: the points of {len(values)} images ({column!r} column: {', '.join(values[:3])}"
                    f"{', ...' if len(values) > 3 else ''}): ground truth needs one table per image, named like it "
                    f"(img01_points.csv){where}")
    return _points_truth(_coordinates(name, header, rows, cols, decimal_comma), name)


def _coordinates(name: str, header: list[str], rows: list[list[str]], cols: tuple[int, int],
                 decimal_comma: bool, row_numbers: Sequence[int] | None = None) -> np.ndarray:
    """float64 (N, 2) of the ``cols`` (row, col) of ``rows``; a bad value names its data row (``row_numbers``:
    each row's number in the file, default 1, 2, ...)."""
    points = np.zeros((len(rows), 2), dtype=np.float64)
    for k, row in enumerate(rows):
        for j, col in enumerate(cols):
            cell = row[col].strip() if col < len(row) else ""
            value = _number(cell, decimal_comma=decimal_comma)
            if not np.isfinite(value) or value < 0 or value > MAX_COORDINATE_PX:
                raise GroundTruthError(
                    f"{name}: data row {row_numbers[k] if row_numbers else k + 1}: coordinate {header[col]!r} = "
                    f"{cell!r} is not a non-negative number"
                )
            points[k, j] = value
    return points


_POINT_IMAGE_COLUMNS = ("image", "image_name", "filename", "file", "file_name")
"""Columns naming each point's image in a table of several images' points (QuPath's measurement export: Image)."""


def _microns_problem(name: str, header: list[str], text: str) -> str | None:
    """What to do about coordinate columns in microns (QuPath's ``Centroid X µm``), or None where there are none."""
    raw = next(csv.reader(io.StringIO(text), delimiter=_delimiter(text)))  # the user's own spelling
    microns = [r.strip().strip("\ufeff") for h, r in zip(header, raw, strict=False)
               if ("x" in h or "y" in h) and set(re.split(r"[^a-z0-9µμ]+", h)) & set(_MICRON_MARKS)]
    if not microns:
        return None
    return (f"{name}: the coordinates are in microns ({', '.join(repr(h) for h in microns[:2])}), and ground truth "
            "needs pixels: export them in pixels (QuPath: 'Centroid X px'; Fiji: Analyze > Set Scale > Click to "
            "Remove Scale, then measure again), or divide by the pixel size into columns named x,y")


def read_points_by_image(source: CsvSource) -> dict[str, GroundTruth] | None:
    """Split a table of several images' points by the column that names each point's image (``Image``,
    ``image_name``, ``filename``, ``file``: QuPath's export of a project's detections, one table from Fiji or a
    script): {:func:`name_key` of the image named, folders kept -> its points} (:func:`match_names` says which image
    each names); None when the table has no such column or no
    coordinate columns (another kind of table). Coordinates as :func:`read_points_csv` reads them; an image
    with a row but no point (a blank coordinate) is not made up: such rows are refused like any bad value.

    Raises
    ------
    GroundTruthError
        A bad coordinate (the message names the line), unreadable file.
    """
    name, text = _read_csv_text(source)
    header, rows = _csv_rows(name, text)
    cols = _point_columns(header)
    column = next((c for c in _POINT_IMAGE_COLUMNS if c in header), None)
    if column is not None and cols is None and _count_columns(header) is None and not is_cellcount_objects(header):
        if problem := _microns_problem(name, header, text):  # QuPath's project export, calibrated
            raise GroundTruthError(problem)
    if cols is None or column is None or is_cellcount_objects(header):
        return None
    i = header.index(column)
    decimal_comma = _delimiter(text) == ";"
    groups: dict[str, tuple[str, list[list[str]], list[int]]] = {}
    for k, row in enumerate(rows, start=1):
        value = row[i].strip() if i < len(row) else ""
        if not value:
            raise GroundTruthError(f"{name}: data row {k}: no image named in column {column!r}")
        stem = name_key(value)
        spelled, members, numbers = groups.setdefault(stem, (value, [], []))
        members.append(row)
        numbers.append(k)
    return {stem: _points_truth(_coordinates(name, header, members, cols, decimal_comma, numbers),
                                f"{name} ({column} {spelled})")
            for stem, (spelled, members, numbers) in groups.items()}


def name_key(name: str) -> str:
    """A file name as a table (or an upload, or a path under a folder) writes it -> the key images are matched by:
    forward slashes, no leading ``./``, no image extension (``2023.05.12_s1`` keeps its dots), not casefolded
    (:func:`match_names` compares casefolded)."""
    n = name.strip().replace("\\", "/")
    while n.startswith("./"):
        n = n[2:]
    p = PurePosixPath(n)  # a table may name the acquisition (A01.czi) of the TIFF exported from it
    return str(p.with_suffix("")) if p.suffix.lower() in (*IMAGE_EXTENSIONS, *MICROSCOPE_EXTENSIONS) else n


def match_names(keys: Iterable[str], images: Mapping[Any, str], anchored: Mapping[Any, str] | None = None
                ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Which image each of ``keys`` (:func:`name_key`) names, ``images`` mapping an image to its path (relative to
    its folder, or its name in an upload): the one whose path without extension is the key, or ends with
    ``/`` + the key, or is how the key ends (a table of full paths, as ``cellcount count`` writes them),
    casefolded (``A01.png`` names ``plate1/A01.png``; ``plate2/A01.png`` and ``/data/plate2/A01.png`` only that one).
    Returns (key -> image, key -> the images it could name when more than one: two plates' ``A01.png`` named
    without their folder, which no count or point may be given to silently). ``anchored``: each image's path with
    its folder's own name above it (:func:`_anchored`): a full path (``/data/plate2/A01.tif``) must run through it,
    so that it never names ``A01.tif`` of the folder ``plate1``."""
    paths = {img: name_key(path).casefold() for img, path in images.items()}
    full = {img: name_key(path).casefold() for img, path in (anchored or images).items()}
    by_last: dict[str, list[Any]] = {}
    for img, path in paths.items():
        by_last.setdefault(path.rsplit("/", 1)[-1], []).append(img)
    found: dict[str, Any] = {}
    ambiguous: dict[str, list[Any]] = {}
    for key in keys:
        k = key.casefold()
        tail = full if k.startswith("/") or re.match(r"[a-z]:/", k) else paths
        hits = [img for img in by_last.get(k.rsplit("/", 1)[-1], [])
                if paths[img] == k or paths[img].endswith("/" + k) or k.endswith("/" + tail[img])]
        if len(hits) == 1:
            found[key] = hits[0]
        elif hits:
            ambiguous[key] = hits
    return found, ambiguous


def read_counts_csv(source: CsvSource) -> dict[str, int]:
    """Read a table of per-image counts.

    Parameters
    ----------
    source : str, os.PathLike, bytes or file-like
        CSV with a file-name column (``filename``, ``file``, ``image``, ``file_name``, ``image_name``,
        ``image_id`` or ``name``) and a ``count`` column (also ``cell_count``, ``n_cells``, ``cells``);
        header names are case-insensitive.

    Returns
    -------
    dict of str to int
        Count per file stem (``'img01.png'`` and ``'sub/img01.tif'`` are both keyed ``'img01'``; a name without
        an image extension keeps its dots). :func:`read_counts_by_name` keeps the folders.

    Raises
    ------
    GroundTruthError
        Missing columns, a count that is not a non-negative whole number (the message names the row),
        or the same stem listed twice with different counts.
    """
    name, text = _read_csv_text(source)
    counts: dict[str, int] = {}
    for key, n in _counts_by_name(name, text).items():
        stem = key.rsplit("/", 1)[-1]
        if stem in counts and counts[stem] != n:
            raise GroundTruthError(f"{name}: {stem!r} is listed twice with counts {counts[stem]} and {n}")
        counts[stem] = n
    return counts


def read_counts_by_name(source: CsvSource) -> dict[str, int]:
    """:func:`read_counts_csv`'s table keyed by each row's :func:`name_key` (folders kept: two plates' ``A01.png``
    are two rows), for :func:`match_names`. Raises as it does, for one name listed twice with two counts."""
    return _counts_by_name(*_read_csv_text(source))


def _counts_by_name(name: str, text: str) -> dict[str, int]:
    header, rows = _csv_rows(name, text)
    decimal_comma = _delimiter(text) == ";"
    cols = _count_columns(header)
    if _headerless_counts(header):  # no titles: the first row is data, its name as written
        rows = [_csv_rows(name, text, raw=True)[0], *rows]
    if cols is None:
        raise GroundTruthError(
            f"{name}: expected columns 'filename' (or 'image' / 'file') and 'count', found {header}"
        )
    if is_cellcount_counts(header):
        raise GroundTruthError(predicted_counts_message(name))
    file_col, count_col = cols
    counts: dict[str, int] = {}
    for k, row in enumerate(rows):
        filename = row[file_col].strip() if file_col < len(row) else ""
        cell = row[count_col].strip() if count_col < len(row) else ""
        where = f"{name}: data row {k + 1} ({filename or 'no file name'})"
        if not filename:
            raise GroundTruthError(f"{where}: the file name is empty")
        value = _number(cell, decimal_comma=decimal_comma)
        if not np.isfinite(value) or not 0 <= value <= MAX_GROUND_TRUTH_COUNT or value != int(value):
            raise GroundTruthError(
                f"{where}: count {cell!r} is not a whole number within [0, {MAX_GROUND_TRUTH_COUNT:,}]"
            )
        key = name_key(filename)
        if key in counts and counts[key] != int(value):
            raise GroundTruthError(f"{where}: {key!r} is listed twice with counts {counts[key]} and {cell}")
        counts[key] = int(value)
    return counts


# --------------------------------------------------------------------------------------------------
# pairing files
# --------------------------------------------------------------------------------------------------
def _is_counts_table(path: Path, image_stems: set[str]) -> bool:
    """Whether a CSV named as an image's ground truth is a table of counts instead: counts columns, no coordinate
    columns, and no image of the name it gives (``counts_gt.csv`` beside no ``counts.png``)."""
    base = path.stem[: -len(ground_truth_suffix(path) or "")] if ground_truth_suffix(path) else path.stem
    if base in image_stems:
        return False
    try:
        header = _csv_rows(*_read_csv_text(path))[0]
    except (GroundTruthError, OSError, UnicodeError):
        return False
    return _count_columns(header) is not None and _point_columns(header) is None


def _is_point_table(path: Path) -> bool:
    """Whether a CSV has coordinate columns (x,y / X,Y / row,col ...); False when unreadable."""
    try:
        name, text = _read_csv_text(path)
        return _point_columns(_csv_rows(name, text)[0]) is not None
    except (GroundTruthError, OSError, UnicodeError):
        return False


def _gt_base(path: Path) -> tuple[str, int]:
    """(image stem this ground truth belongs to, preference rank of its suffix)."""
    if (stem := cell_counter_stem(path)) is not None:
        return stem, GROUND_TRUTH_SUFFIXES.index("_points")
    if path.suffix.lower() in GEOJSON_EXTENSIONS and Path(path.stem).suffix.lower() in IMAGE_EXTENSIONS:
        return Path(path.stem).stem, len(GROUND_TRUTH_SUFFIXES)  # img01.tif.geojson: a QuPath script's name
    if (stem := imagej_roi_stem(path)) is not None:  # img01.roi, img01_RoiSet.zip, RoiSet_img01.zip
        return stem, len(GROUND_TRUTH_SUFFIXES)
    suffix = ground_truth_suffix(path)
    if suffix:
        return path.stem[: -len(suffix)], GROUND_TRUTH_SUFFIXES.index(suffix)
    return path.stem, len(GROUND_TRUTH_SUFFIXES)


def _shared_folders_inward(image: Path, gt: Path) -> int:
    """How many folders just above two files have the same names, from the innermost out
    (``images/plate1/a.png`` and ``labels/plate1/a.tif``: 1)."""
    n = 0
    for a, b in zip(reversed(image.parent.parts), reversed(gt.parent.parts), strict=False):
        if a.casefold() != b.casefold():
            break
        n += 1
    return n


def match_ground_truth(
    image_paths: Iterable[str | os.PathLike], gt_paths: Iterable[str | os.PathLike]
) -> dict[Path, Path]:
    """Pair images with ground-truth files by file stem.

    A ground-truth file matches an image when its stem is the image stem plus one of
    :data:`cellcount.io.GROUND_TRUTH_SUFFIXES` (``img01_labels.tif``, ``img01_mask.png``,
    ``img01_dots.png``, ``img01_points.csv`` ...), or is the same stem in another folder
    (``labels/img01.png`` for ``images/img01.png``). Stems are compared exactly first, then
    case-insensitively; last, an image and a ground-truth file whose stems differ only in a trailing role word
    (``001cell.png`` and ``dots/001dots.png``, the VGG cells layout: :func:`cellcount.io.word_base`). Among several candidates the one in the image's folder wins, then one in a
    sibling folder, then the suffix order of ``GROUND_TRUTH_SUFFIXES`` (labels before masks before dots).

    Returns
    -------
    dict of pathlib.Path to pathlib.Path
        image path -> ground-truth path, for the images that have one (as given, not resolved).
    """
    exact: dict[str, list[tuple[int, Path]]] = {}
    folded: dict[str, list[tuple[int, Path]]] = {}
    gt_paths = list(gt_paths)
    for item in gt_paths:
        gt = Path(item)
        base, rank = _gt_base(gt)
        exact.setdefault(base, []).append((rank, gt))
        folded.setdefault(base.lower(), []).append((rank, gt))

    def usable(image: Path, cands: list[tuple[int, Path]]) -> list[tuple[int, int, str, Path]]:
        out = []
        for rank, gt in cands:
            if gt == image or gt.resolve() == image.resolve():
                continue
            same_dir = gt.parent.resolve() == image.parent.resolve()
            if (rank == len(GROUND_TRUTH_SUFFIXES) and same_dir
                    and gt.suffix.lower() not in (*TABLE_EXTENSIONS, *GEOJSON_EXTENSIONS, *IMAGEJ_ROI_EXTENSIONS)):
                continue  # identical stem must live in another folder (a CSV is never the image itself)
            if same_dir:
                proximity = 0
            elif gt.parent.parent.resolve() == image.parent.parent.resolve():
                proximity = 1
            else:
                proximity = 2
            # further off, the folders the two share from the innermost out decide: labels/plate2/A01.tif for
            # images/plate2/A01.png (a mirrored tree), not labels/plate1/A01.tif, which sorts first
            out.append((proximity, -_shared_folders_inward(image, gt) if proximity == 2 else 0, rank, str(gt), gt))
        return sorted(out, key=lambda t: t[:4])

    # the VGG cells layout: 001cell.png and dots/001dots.png share "001" (after every other pairing)
    worded: dict[str, list[tuple[int, Path]]] = {}
    for item in gt_paths:
        base = word_base(Path(item).stem, GROUND_TRUTH_WORDS)
        if base:
            worded.setdefault(base.lower(), []).append((len(GROUND_TRUTH_SUFFIXES) + 1, Path(item)))

    result: dict[Path, Path] = {}
    images = [Path(item) for item in image_paths]
    for image in images:
        cands = usable(image, exact.get(image.stem, []))
        if not cands:
            cands = usable(image, folded.get(image.stem.lower(), []))
        if cands:
            result[image] = cands[0][4]
    # after every other pairing, and only files no image took: the closest folder first, across all images
    used = set(result.values())
    offers = sorted(
        (c[:4], image, c[4])
        for image in images if image not in result and (base := word_base(image.stem, IMAGE_WORDS))
        for c in usable(image, worded.get(base.lower(), []))
    )
    for _, image, gt in offers:
        if image not in result and gt not in used:
            result[image] = gt
            used.add(gt)
    return result


def _check_points_inside(gt: GroundTruth, expected_shape: Sequence[int] | None) -> None:
    expected = _expected_hw(expected_shape)
    if expected is None or gt.points is None or not len(gt.points):
        return
    outside = (gt.points[:, 0] > expected[0]) | (gt.points[:, 1] > expected[1])
    if outside.any():
        k = int(np.argmax(outside))
        raise GroundTruthError(
            f"{gt.source}: {int(outside.sum())} point(s) lie outside the image of shape {expected} (H, W), "
            f"first at (row, col) = ({gt.points[k][0]:g}, {gt.points[k][1]:g}); are the coordinates calibrated (um) instead of pixels?"
        )


def read_ground_truth(path: str | os.PathLike, *, expected_shape: Sequence[int] | None = None) -> GroundTruth:
    """Read one ground-truth file, choosing the reader from its name and contents.

    ``.csv`` with coordinate columns -> :func:`read_points_csv`; ``.geojson`` -> :func:`read_geojson`; Cell
    Counter's ``.xml`` -> :func:`read_cellcounter_xml`; ImageJ's ``.roi`` or ROI set ``.zip`` ->
    :func:`read_imagej_rois`; a stem ending in ``_dots`` or
    ``_points`` -> :func:`read_dot_image`; anything else -> :func:`read_label_image` (a binary mask gives
    ``kind='mask'``).

    Parameters
    ----------
    path : str or os.PathLike
        The ground-truth file.
    expected_shape : tuple of int, optional
        (H, W) or (H, W, C) of the image; label and dot images must match it, points must lie inside.

    Raises
    ------
    GroundTruthError
        Unreadable or unrecognised file, or a mismatch with ``expected_shape``.
    FileNotFoundError
        The file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {p}")
    if p.suffix.lower() in GEOJSON_EXTENSIONS:
        gt = read_geojson(p, expected_shape=expected_shape)
        _check_points_inside(gt, expected_shape)
        return gt
    if p.suffix.lower() in IMAGEJ_ROI_EXTENSIONS:
        gt = read_imagej_rois(p, expected_shape=expected_shape)
        _check_points_inside(gt, expected_shape)
        return gt
    if p.suffix.lower() == ".xml":
        gt = read_cellcounter_xml(p)
        _check_points_inside(gt, expected_shape)
        return gt
    if p.suffix.lower() in TABLE_EXTENSIONS:
        name, text = _read_csv_text(p)
        header, _ = _csv_rows(name, text)
        if _point_columns(header) is not None:
            gt = read_points_csv(p)
            _check_points_inside(gt, expected_shape)
            return gt
        if _count_columns(header) is not None:
            raise GroundTruthError(f"{p}: is a table of counts per image; read it with read_counts_csv")
        read_points_csv(p)  # raises why: no coordinate columns, or coordinates in microns
        raise GroundTruthError(f"{p}: CSV has no coordinate columns (x,y / row,col / axis-0,axis-1): {header}")
    # 001dots.png (the VGG cells naming); never in a labels/ or masks/ folder, whose files are label images
    dotted = word_base(p.stem, ("dots", "dot", "points")) is not None and p.parent.name.lower() not in GROUND_TRUTH_DIRS
    if ground_truth_suffix(p) in ("_dots", "_points") or p.parent.name.lower() in DOT_DIRS or dotted:
        return read_dot_image(p, expected_shape=expected_shape)
    if ground_truth_suffix(p) is not None:  # "_mask" / "_labels" say what the file is
        return read_label_image(p, expected_shape=expected_shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BinaryMaskWarning)
        gt = read_label_image(p, expected_shape=expected_shape)
    if holds_only_specks(gt):
        return read_dot_image(p, expected_shape=expected_shape)  # a dot image by another name (labels/a.png, 001gt.png)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return gt


# --------------------------------------------------------------------------------------------------
# folders
# --------------------------------------------------------------------------------------------------
def _dsb_nested_ids(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "images").is_dir())


def _is_dsb_nested(root: Path) -> bool:
    return any((d / "masks").is_dir() for d in _dsb_nested_ids(root))


def _labels_from_mask_files(image: Path, mask_files: list[Path]) -> np.ndarray:
    """Merge one-object-per-file masks into int32 labels; earlier masks keep contested pixels."""
    labels: np.ndarray | None = None
    shape = image_shape(image)
    for k, mask_path in enumerate(mask_files, start=1):
        mask = _read_gt_image(mask_path)
        _check_shape(str(mask_path), mask.shape, shape)
        on = mask.any(axis=2) if mask.ndim == 3 else mask != 0
        if labels is None:
            labels = np.zeros(shape, dtype=np.int32)
        labels[on & (labels == 0)] = k
    return labels if labels is not None else np.zeros(shape, dtype=np.int32)


def listed(names: Sequence[str], most: int = 8) -> str:
    """Names for a message: all of them up to ``most``, else the first ones and how many more."""
    names = list(names)
    return ", ".join(names) if len(names) <= most else ", ".join(names[:most]) + f" and {len(names) - most} more"


def _names(paths: list[Path], most: int = 8) -> str:
    return listed([p.name for p in paths], most)


def _skip_warning(root: Path, missing: list[Path], unused: list[Path] | None = None,
                  paired: Iterable[Path] = ()) -> None:
    """Log the images left without ground truth and the ground truth left unused; an unused file named like an
    image of ``paired`` (``a_points.csv`` beside the ``a_labels.tif`` used for ``a.png``) is a second
    annotation, not one that "matches no image" (which would send the user renaming files named right)."""
    if missing:  # by their paths in the folder: two plates' A01.png are two images
        shown = listed([p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name for p in missing])
        logger.warning("%s: %d image(s) without ground truth skipped: %s", root, len(missing), shown)
    stems = {p.stem.casefold() for p in paired}
    second = [gt for gt in unused or [] if _gt_base(gt)[0].casefold() in stems]
    unused = [gt for gt in unused or [] if gt not in second]
    if second:
        logger.warning("%s: %d ground-truth file(s) are second annotations of images that have one already, and "
                       "are not used: %s", root, len(second), _names(second))
    if unused:
        logger.warning("%s: %d ground-truth file(s) match no image: %s (name each like its image)", root,
                       len(unused), _names(unused))


def _check_against_counts(gt: GroundTruth, listed: tuple[int, str] | int | None) -> None:
    """Warn when a counts table (``listed``: its count, or (count, table)) says otherwise than ``gt``."""
    n = listed[0] if isinstance(listed, tuple) else listed
    if n is not None and n != gt.count:
        logger.warning("%s: %d objects in the ground truth but %d in the counts table", gt.source, gt.count, n)


def _folded_counts(path: Path) -> dict[str, int]:
    """A counts table keyed by casefolded stem (IMG4 in the table names img4.png, as on Windows and macOS);
    two rows naming one image with different counts are left out, with a warning."""
    counts: dict[str, int] = {}
    clash: set[str] = set()
    for spelled, n in read_counts_csv(path).items():
        stem = spelled.casefold()
        if stem in counts and counts[stem] != n:
            clash.add(stem)
        counts.setdefault(stem, n)
    for stem in clash:
        logger.warning("%s: rows naming %s (in any case) give different counts; left out", path, stem)
        del counts[stem]
    return counts


def load_dsb_folder(root: str | os.PathLike, *, counts_only: bool = False) -> list[tuple[Path, GroundTruth]]:
    """Load a Data Science Bowl 2018 style folder.

    Two layouts are read:

    * nested (the Kaggle download): ``<root>/<id>/images/<id>.png`` and ``<root>/<id>/masks/*.png``, one
      nucleus per mask file, merged into instance labels in sorted file order (a pixel claimed by two
      masks keeps the earlier one); ids without a ``masks`` folder are skipped with a warning.
    * flat: ``<root>/images/*.png`` with ``<root>/labels/*.png`` (same stem; ``masks/`` also accepted)
      and / or ``<root>/counts.csv`` (``filename,count``).

    Parameters
    ----------
    root : str or os.PathLike
        The folder.
    counts_only : bool
        Do not build label arrays: return ``kind='count'`` ground truth (from ``counts.csv`` when present,
        else from the number of non-empty mask files / distinct labels). Much less memory on big sets.

    Returns
    -------
    list of (pathlib.Path, GroundTruth)
        Sorted by image path. Label images hold int32 labels, so the full 522-image DSB training set
        takes about 300 MB unless ``counts_only``.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    GroundTruthError
        Not a DSB layout, or unreadable / mismatched ground truth.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder not found: {root}")
    out: list[tuple[Path, GroundTruth]] = []
    missing: list[Path] = []
    if _is_dsb_nested(root):
        for id_dir in _dsb_nested_ids(root):
            images = list_image_files([id_dir / "images"])
            if not images:
                logger.warning("%s: no image in %s, skipped", root, id_dir / "images")
                continue
            preferred = [p for p in images if p.stem == id_dir.name]
            image = (preferred or images)[0]
            mask_dir = id_dir / "masks"
            masks = list_image_files([mask_dir]) if mask_dir.is_dir() else []
            if not masks:
                missing.append(image)
                continue
            labels = _labels_from_mask_files(image, masks)
            count = _count_labels(labels)
            if counts_only:
                out.append((image, GroundTruth(kind="count", count=count, source=str(mask_dir))))
            else:
                out.append(
                    (image, GroundTruth(kind="labels", count=count, labels=labels, source=str(mask_dir)))
                )
        _skip_warning(root, missing)
        return out

    image_dir = root / "images"
    if not image_dir.is_dir():
        raise GroundTruthError(
            f"{root}: not a DSB 2018 folder: expected <id>/images + <id>/masks, or images/ + labels/ "
            "(and/or counts.csv)"
        )
    gt_dir = next((root / d for d in _DSB_GT_DIRS if (root / d).is_dir()), None)
    counts = _folded_counts(root / "counts.csv") if (root / "counts.csv").is_file() else {}
    if gt_dir is None and not counts:
        raise GroundTruthError(f"{root}: found images/ but no labels/ folder and no counts.csv")
    images = list_image_files([image_dir])
    matches = match_ground_truth(images, list_image_files([gt_dir])) if gt_dir is not None else {}
    for image in images:
        stem = image.stem.casefold()
        if counts_only and stem in counts:
            out.append(
                (image, GroundTruth(kind="count", count=counts[stem], source=str(root / "counts.csv")))
            )
        elif image in matches:
            gt = read_label_image(matches[image], expected_shape=image_shape(image))
            _check_against_counts(gt, counts.get(stem))
            if counts_only:
                gt = GroundTruth(kind="count", count=gt.count, source=gt.source)
            out.append((image, gt))
        elif stem in counts:
            out.append(
                (image, GroundTruth(kind="count", count=counts[stem], source=str(root / "counts.csv")))
            )
        else:
            missing.append(image)
    _skip_warning(root, missing)
    return out


def one_per_image(entries: Sequence, digests: Sequence[str], truths: Sequence[GroundTruth | None]) -> tuple[list, list]:
    """Entries whose images have the same content (``digests``) are one image: one of them is kept, the one
    with the richest ground truth (label images, then masks, then dots, then a count; none last), else the
    first. Returns (kept entries in their order, (dropped entry, the kept entry it repeats) pairs).

    An image uploaded or stored twice under two names would otherwise be counted twice by an evaluation,
    and a fine-tune could train on one copy and hold out the other."""
    def rank(i: int) -> tuple[int, int]:
        gt = truths[i]
        return (GROUND_TRUTH_KINDS.index(gt.kind) if gt is not None else len(GROUND_TRUTH_KINDS), i)

    best: dict[str, int] = {}
    for i, digest in enumerate(digests):
        if digest not in best or rank(i) < rank(best[digest]):
            best[digest] = i
    kept = [e for i, e in enumerate(entries) if best[digests[i]] == i]
    dropped = [(e, entries[best[digests[i]]]) for i, e in enumerate(entries) if best[digests[i]] != i]
    return kept, dropped


def counts_disagree(values: list[str]) -> str:
    """Why an image two counts tables give different counts is left out: ``values`` like "10 (a.csv)". Which
    one is right is the user's to say, not the file order's."""
    return f"the counts tables disagree: {' and '.join(values)}; remove the wrong row or table"


def _count_tables(
    csv_files: list[Path], placed: Callable[[Path, str], str] = lambda table, key: key,
) -> tuple[dict[str, int], dict[str, str], dict[Path, list[str]], dict[str, list[str]], dict[str, str]]:
    """Merge every CSV with file-name and count columns; returns (counts, name -> csv path, the header of
    each CSV that has no such columns: named when nothing else gives ground truth, the names two tables
    count differently, with each value: left out of the counts, and each name as a table spells it). Names are
    casefolded :func:`name_key`s (folders kept), each as ``placed(table, name)`` says (:func:`_in_its_folder`)."""
    counts: dict[str, int] = {}
    where: dict[str, str] = {}
    other: dict[Path, list[str]] = {}
    disagree: dict[str, list[str]] = {}
    as_written: dict[str, str] = {}
    for path in csv_files:
        name, text = _read_csv_text(path)
        header, _ = _csv_rows(name, text)
        if _count_columns(header) is None:
            other[path] = list(header)
            continue
        if is_cellcount_counts(header):  # a count written into the data folder: never its own ground truth
            logger.warning("%s", predicted_counts_message(str(path)))
            continue
        for spelled, n in read_counts_by_name(path).items():
            spelled = placed(path, spelled)
            stem = spelled.casefold()  # IMG4.PNG in a table names img4.png, as on Windows and macOS (and uploads)
            as_written.setdefault(stem, spelled)
            if stem in counts and counts[stem] != n:
                disagree.setdefault(stem, [f"{counts[stem]} ({where[stem]})"]).append(f"{n} ({path})")
            counts.setdefault(stem, n)
            where.setdefault(stem, str(path))
    for stem in disagree:
        del counts[stem], where[stem]
    return counts, where, other, disagree, as_written


def load_labelled_folder(
    root: str | os.PathLike, *, counts_only: bool = False,
    on_error: Callable[[Path, str], None] | None = None,
) -> list[tuple[Path, GroundTruth]]:
    """Load every image of a folder that has ground truth.

    Layouts, detected in this order:

    1. DSB 2018 nested (``<id>/images`` + ``<id>/masks``): :func:`load_dsb_folder`.
    2. Anything else, searched recursively: images paired by :func:`match_ground_truth` with
       ``<stem>_labels.*``, ``_label``, ``_mask(s)``, ``_gt`` (label images or binary masks),
       ``<stem>_dots.*`` (dot images), ``<stem>_points.csv`` or ``<stem>.csv`` (point tables), same-stem
       files in a ``labels/`` or ``masks/`` folder (so the flat DSB layout ``images/`` + ``labels/`` works)
       or a ``dots/`` / ``points/`` folder (dot images or point tables: the ``images/`` + ``dots/`` layout
       of the counting benchmarks), and
       any CSV with ``filename,count`` columns (e.g. ``counts.csv``) for images without other ground
       truth. Also Fiji's Cell Counter markers (``CellCounter_<stem>.xml``), QuPath's GeoJSON (``<stem>.geojson``)
       and ImageJ's ROIs (``<stem>.roi``, ``<stem>_RoiSet.zip``, ``RoiSet_<stem>.zip``, ``<stem>.zip``).

    Images without ground truth are skipped with a logged warning.

    Parameters
    ----------
    root : str or os.PathLike
        The folder.
    counts_only : bool
        Prefer counts tables and return ``kind='count'`` ground truth without label arrays.
    on_error : callable, optional
        ``on_error(image, reason)`` for an image whose ground truth cannot be used (unreadable, another
        shape than the image, at odds with a counts table) or whose file cannot be read: it is reported and
        left out, and the others are loaded. Without it the first such image raises.

    Returns
    -------
    list of (pathlib.Path, GroundTruth)
        Sorted by image path.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    GroundTruthError
        No image or no ground truth found, unreadable ground truth, or ground truth whose shape differs
        from its image.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder not found: {root}")
    if _is_dsb_nested(root):
        return load_dsb_folder(root, counts_only=counts_only)
    reported: list[str] = []  # said again when nothing is left: a caller may report them only at its end
    if on_error is not None:
        tell = on_error

        def on_error(image: Path, why: str) -> None:
            reported.append(why if why.startswith(f"{image}") else f"{image.name}: {why}")
            tell(image, why)
    files = list_image_files([root])
    tables = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in (*TABLE_EXTENSIONS, ".xml", *GEOJSON_EXTENSIONS, *IMAGEJ_ROI_EXTENSIONS)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    csv_files = [p for p in tables if p.suffix.lower() in TABLE_EXTENSIONS]
    cell_counter = [p for p in tables if cell_counter_stem(p)]  # not a microscope's MetaData/<image>.xml
    outlines = [p for p in tables if p.suffix.lower() in GEOJSON_EXTENSIONS]  # QuPath's objects as GeoJSON
    # ImageJ's ROIs: a .roi, or a zip holding only .roi files (a zip of images is not ground truth)
    outlines += [p for p in tables if p.suffix.lower() == ".roi" or (p.suffix.lower() == ".zip" and is_roi_set(p))]
    image_stems = {(p.parent, p.stem) for p in files}
    # point tables: named as ground truth (a_points.csv, dots/a.csv, labels/a.csv with coordinate columns), or
    # named like an image beside it (a.csv)
    stems = {p.stem for p in files}
    # a table named as ground truth is an image's points, unless it is a counts table of its own (counts_gt.csv
    # beside no image "counts": its name read as that image's, and every count it held was unused)
    point_tables = [p for p in csv_files if (ground_truth_suffix(p) is not None and not _is_counts_table(p, stems))
                    or ((p.parent.name.lower() in DOT_DIRS or (p.parent, p.stem) in image_stems
                         or (p.parent.name.lower() in GROUND_TRUTH_DIRS and p.stem in stems)) and _is_point_table(p))]
    placed = _in_its_folder(root, files)
    shared, shared_tables = _shared_point_tables(csv_files, files, root, on_error, placed)
    point_tables = [p for p in point_tables if p not in shared_tables]
    not_counts = set(point_tables) | shared_tables
    counts, counts_where, other_tables, disagree, as_written = _count_tables(
        [p for p in csv_files if p not in not_counts], placed)
    in_dot_dirs = [p for p in files if p.parent.name.lower() in DOT_DIRS]  # dots/a.png: a dot image of images/a.png
    dot_files = set(in_dot_dirs)  # sets: folders of 10,000 images
    images, gt_files = split_ground_truth_files([p for p in files if p not in dot_files])
    # a tree of labels mirroring the images' (labels/plate1/A01.tif for images/plate1/A01.png): ground truth by
    # the folder it lies under in the data folder, not only the one just above it
    mirrored = _mirrored_ground_truth(images, root)
    set_aside = set(mirrored.values())
    images = [p for p in images if p not in set_aside]
    # the VGG cells naming in one folder: 001dots.png beside 001cell.png is the image's ground truth
    flat = [p for p, gt in zip(images, role_word_ground_truth([(p.parent, p.stem) for p in images])) if gt]
    flat_set = set(flat)
    images = [p for p in images if p not in flat_set]
    gt_files += in_dot_dirs + point_tables + flat + cell_counter + outlines
    if not images:
        raise GroundTruthError(f"{root}: no images found (extensions {sorted(IMAGE_EXTENSIONS)})")
    matches = match_ground_truth(images, gt_files)
    out: list[tuple[Path, GroundTruth]] = []
    missing: list[Path] = []
    relative = {p: p.relative_to(root).as_posix() for p in images}
    anchored = _anchored(root, images)
    # by the whole path below the labels folder (plate3/A01 for images/plate3/A01.png): a plate without labels
    # gets none, never another plate's
    found, _ = match_names(mirrored, {p: r for p, r in relative.items() if p not in matches})
    matches.update({img: mirrored[key] for key, img in found.items()})
    gt_files += list(mirrored.values())
    shared_of, unsure = values_by_image(shared, relative, what="points", anchored=anchored)
    count_of, unsure_counts = values_by_image({k: (n, counts_where[k]) for k, n in counts.items()}, relative,
                                               what="a count", anchored=anchored)
    disagree_of, unsure_disagree = values_by_image(disagree, relative, what="a count", anchored=anchored)
    unsure = {**unsure_disagree, **unsure_counts, **unsure}

    def annotation(image: Path) -> GroundTruth:
        """The image's own file, else its rows of a table of several images' points."""
        if image in matches:
            return read_ground_truth(matches[image], expected_shape=image_shape(image))
        _check_points_inside(shared_of[image], image_shape(image))
        return shared_of[image]

    for image in sorted(images):
        annotated = image in matches or image in shared_of  # richer than a count: used before the counts tables
        if image in unsure and not annotated:
            if on_error is None:
                raise GroundTruthError(f"{image}: {unsure[image]}")
            on_error(image, unsure[image])
        elif image in disagree_of and (counts_only or not annotated):
            if on_error is None:
                raise GroundTruthError(f"{image}: {counts_disagree(disagree_of[image])}")
            on_error(image, counts_disagree(disagree_of[image]))
        elif image in count_of and (counts_only or not annotated):
            out.append((image, GroundTruth(kind="count", count=count_of[image][0], source=count_of[image][1])))
        elif annotated:
            try:
                gt = annotation(image)
                _check_against_counts(gt, count_of.get(image))
            except CellcountError as err:
                if on_error is None:
                    raise
                on_error(image, str(err))
                continue
            if counts_only:
                gt = GroundTruth(kind="count", count=gt.count, source=gt.source)
            out.append((image, gt))
        else:
            table = _own_unreadable_table(image, other_tables)
            if table is None:
                missing.append(image)
                continue
            # a CSV named as this image's, neither points nor counts: its own reason, not "no ground truth"
            try:
                read_points_csv(table)
            except GroundTruthError as err:
                if on_error is None:
                    raise
                on_error(image, str(err))
    if not out and on_error is not None and len(missing) < len(images):  # every pair was reported bad
        shown = "; ".join(reported[:3]) + (f"; and {len(reported) - 3} more" if len(reported) > 3 else "")
        raise GroundTruthError(f"{root}: no image with usable ground truth: {shown}")
    if not out:
        unmatched = sorted({p.name for p in gt_files} - {p.name for p in matches.values()})
        hint = (f"; ground truth that matches no image: {', '.join(unmatched[:3])}{' ...' if len(unmatched) > 3 else ''}"
                if unmatched else "")
        words = tuple(x.strip("_") for x in GROUND_TRUTH_SUFFIXES)
        lookalikes = [p.name for p in images if p.stem.lower().endswith(words)]  # 001dots.png beside 001cell.png
        if lookalikes:
            hint += (f"; read as images but named like ground truth: {', '.join(lookalikes[:3])}"
                     f"{' ...' if len(lookalikes) > 3 else ''} (name each like its image with a suffix, "
                     "001cell_dots.png for 001cell.png, or put them in a dots/ or labels/ folder under their images' "
                     "names)")
        for table, header in list(other_tables.items())[:3]:
            shown = ", ".join(map(repr, header[:8])) + (" ..." if len(header) > 8 else "")
            hint += f"; {table.name} has columns {shown or 'none'}"
        if other_tables:
            hint += (f": a counts table needs a file-name column ({', '.join(_FILENAME_COLUMNS)}) and a count "
                     f"column ({', '.join(_COUNT_COLUMNS)})")
        raise GroundTruthError(
            f"{root}: none of the {len(images)} image(s) has ground truth; expected files named "
            f"<image>{{{','.join(GROUND_TRUTH_SUFFIXES)}}}.*, point tables <image>.csv, files named like the "
            f"images in a labels/, masks/, gt/, annotations/ or dots/ folder, or a filename,count CSV{hint}"
        )
    _skip_warning(root, missing, sorted(set(gt_files) - set(matches.values())), paired=matches)
    found, ambiguous = match_names(counts_where, relative, anchored)
    _stray_rows_warning({k: v for k, v in counts_where.items() if k not in found and k not in ambiguous}, as_written)
    return _one_per_image_file(out, on_error)


def values_by_image(values: Mapping[str, Any], relative: Mapping[Path, str], what: str = "",
                    anchored: Mapping[Path, str] | None = None) -> tuple[dict[Path, Any], dict[Path, str]]:
    """``values`` keyed by the names tables give (:func:`name_key`) -> (image -> value, image -> why none is given
    to it: a name that could be several images', two plates' ``A01.png`` named without their folder)."""
    found, ambiguous = match_names(values, relative, anchored)
    out: dict[Path, Any] = {}
    unsure: dict[Path, str] = {}
    def same(a: Any, b: Any) -> bool:  # the count of (count, table), the points of a GroundTruth
        if isinstance(a, GroundTruth) and isinstance(b, GroundTruth):
            return a.points is not None and b.points is not None and np.array_equal(a.points, b.points)
        return (a[0] == b[0]) if isinstance(a, tuple) and isinstance(b, tuple) else a == b

    for key, img in found.items():
        if img in out and not same(out[img], values[key]):  # "A01.png" and "plate1/A01.png", two counts for one image
            unsure[img] = f"the tables give {what} for it twice, differently ({key!r} among them): not used"
        out.setdefault(img, values[key])
    for img in unsure:
        out.pop(img, None)
    for key, imgs in ambiguous.items():
        names = ", ".join(relative[i] for i in imgs[:4]) + (" ..." if len(imgs) > 4 else "")
        for img in imgs:
            unsure.setdefault(img, f"a table gives {what} for {key!r}, which names {len(imgs)} images ({names}): "
                                   "not used; name each row's image with its folder (plate1/A01.png)")
    return out, unsure


def item_names(root: str | os.PathLike, paths: Sequence[Path]) -> list[str]:
    """The name each image of a labelled folder goes by in scores, tables and cards: its file name, or its path
    below ``root`` where another image of the set has the same file name (two plates' ``A01.png`` are
    ``plate1/A01.png`` and ``plate2/A01.png``, not two rows called ``A01.png``)."""
    root = Path(root)
    shared = {n for n, k in Counter(p.name for p in paths).items() if k > 1}
    out = []
    for p in paths:
        if p.name not in shared:
            out.append(p.name)
            continue
        try:
            out.append(p.relative_to(root).as_posix())
        except ValueError:
            out.append(str(p))
    return out


def _anchored(root: Path, files: Iterable[Path]) -> dict[Path, str]:
    """Each file's path for :func:`match_names`: relative to ``root``, under ``root``'s own name, so that a table of
    full paths names a file of this folder only where the path runs through it (/data/plate2/A01.tif is not
    plate1/A01.tif when plate1 is the folder given)."""
    anchor = root.resolve().name
    return {p: f"{anchor}/{p.relative_to(root).as_posix()}" if anchor else p.relative_to(root).as_posix()
            for p in files}


def _in_its_folder(root: Path, files: list[Path]) -> Callable[[Path, str], str]:
    """``placed(table, name)``: a name in a table inside a subfolder, read first as that folder's
    (plate1/counts.csv's A01.png is plate1/A01.png, whatever plate2/counts.csv says of plate2's), else as written."""
    paths = set(_anchored(root, files).values())
    anchor = root.resolve().name
    known = {name_key(p).casefold() for p in paths}

    def placed(table: Path, name: str) -> str:
        folder = table.parent.relative_to(root).as_posix()
        if folder in ("", ".") or "/" in name.strip("/") or PurePosixPath(name).is_absolute():
            return name
        inside = f"{folder}/{name_key(name)}"
        return inside if f"{anchor}/{inside}".casefold() in known or inside.casefold() in known else name

    return placed


def _mirrored_ground_truth(files: list[Path], root: Path) -> dict[str, Path]:
    """Files under a labels/ (masks/, gt/ ...) folder of ``root`` deeper than its own children (``labels/plate1/A01.tif``):
    {their path below that folder, without extension -> file}. A tree of labels mirroring the images' tree; the
    folder just above them (plate1) does not say they are ground truth."""
    out: dict[str, Path] = {}
    for p in files:
        parts = p.relative_to(root).parts
        at = next((i for i, part in enumerate(parts[:-2]) if part.lower() in GROUND_TRUTH_DIRS), None)
        if at is not None:
            out[name_key("/".join(parts[at + 1:]))] = p
    return out


def _shared_point_tables(csv_files: list[Path], files: list[Path], root: Path, on_error,
                         placed: Callable[[Path, str], str] = lambda table, key: key,
                         ) -> tuple[dict[str, GroundTruth], set[Path]]:
    """The tables of several images' points in a folder (:func:`read_points_by_image`) that are no one image's
    table by their own name: (casefolded name of the image in the table -> points, the tables). A name in two
    tables is left to neither (which is right is the user's to say), with a warning."""
    own = {p.stem.casefold() for p in files}
    relative = {p: p.relative_to(root).as_posix() for p in files}
    anchored = _anchored(root, files)
    shared: dict[str, GroundTruth] = {}
    tables: set[Path] = set()
    clash: set[str] = set()
    for path in csv_files:
        if _gt_base(path)[0].casefold() in own:  # a_points.csv: image a's own table
            continue
        try:
            split = read_points_by_image(path)
        except GroundTruthError as err:
            if on_error is None:
                raise
            logger.warning("%s", err)
            tables.add(path)
            continue
        if not split:
            continue
        split = {placed(path, key): gt for key, gt in split.items()}
        found, ambiguous = match_names(split, relative, anchored)
        if not found and not ambiguous:
            continue
        tables.add(path)
        for key, gt in split.items():
            if key.casefold() in shared:
                clash.add(key.casefold())
            shared.setdefault(key.casefold(), gt)
        others = sorted(k for k in split if k not in found and k not in ambiguous)
        if others:
            logger.warning("%s: the points of %d image(s) not in the folder (%s) are not used", path, len(others),
                           listed(others, 5))
    for stem in clash:
        logger.warning("%s: points in two tables (%s and another); neither is used for it", stem, shared[stem].source)
        del shared[stem]
    return shared, tables


def _stray_rows_warning(stray: dict[str, str], as_written: dict[str, str]) -> None:
    """Log the rows of counts tables that name no image of the folder (``stray``: name -> table; as the app's
    notes say them, spelled as the table spells them), so a typo in a name does not pass unseen."""
    by_table: dict[str, list[str]] = {}
    for stem, table in stray.items():
        by_table.setdefault(table, []).append(as_written.get(stem, stem))
    for table, stems in by_table.items():
        shown = ", ".join(stems[:5]) + (f" and {len(stems) - 5} more" if len(stems) > 5 else "")
        logger.warning("%d row%s of %s match%s no image in the folder (%s): %s not used", len(stems),
                       "s" if len(stems) != 1 else "", table, "" if len(stems) != 1 else "es", shown,
                       "their counts are" if len(stems) != 1 else "its count is")


def _own_unreadable_table(image: Path, tables: dict[Path, list[str]]) -> Path | None:
    """The table among ``tables`` (neither points nor counts) named as ``image``'s: ``a.csv`` / ``a.tsv`` beside ``a.png``,
    or in a ``dots/`` / ``points/`` folder beside the image's folder."""
    places = [place for ext in TABLE_EXTENSIONS for place in
              (image.with_suffix(ext), *(image.parent.parent / d / f"{image.stem}{ext}" for d in DOT_DIRS))]
    return next((p for p in places if p in tables), None)


def _one_per_image_file(pairs: list[tuple[Path, GroundTruth]],
                        on_error: Callable[[Path, str], None] | None) -> list[tuple[Path, GroundTruth]]:
    """:func:`one_per_image` over image files (by their bytes); the copies left out are reported. Only files of
    one size are read and hashed: a folder of distinct images costs a stat per file."""
    import hashlib
    from collections import Counter

    def size(path: Path) -> int | None:
        try:
            return path.stat().st_size
        except OSError:
            return None  # unreadable here: reported when it is read for counting

    sizes = [size(path) for path, _ in pairs]
    shared = {n for n, k in Counter(sizes).items() if k > 1 and n is not None}
    digests = []
    for (path, _), n in zip(pairs, sizes, strict=True):
        try:
            digests.append(hashlib.sha256(path.read_bytes()).hexdigest() if n in shared else str(path))
        except OSError:
            digests.append(str(path))
    kept, dropped = one_per_image(pairs, digests, [gt for _, gt in pairs])
    for (path, _), (other, _) in dropped:
        reason = f"the same image as {other}: used once"
        if on_error is None:
            logger.warning("%s: %s", path, reason)
        else:
            on_error(path, reason)
    return kept
