"""Ground truth drawn as images: instance label images, binary masks and dot images."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from cellcount.errors import GroundTruthError, ImageReadError
from cellcount.io import (
    read_image,
)

from .truth import _STRUCTURE_8, GroundTruth, PredictedLabelsWarning, _check_shape, _name, labels_from_array


def _opened(source: object) -> Path | io.BytesIO | None:
    """``source`` as something to read from the start without moving a caller's stream, or None."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    try:  # from the start, as the image reader reads it (cellcount.io.read seeks to 0 first)
        at = source.tell()  # type: ignore[attr-defined]
        source.seek(0)  # type: ignore[attr-defined]
        data = io.BytesIO(source.read())  # type: ignore[attr-defined]
        source.seek(at)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # not seekable: read once, by the image reader
        return None
    return data


def _head(data: Path | io.BytesIO, n: int = 16) -> bytes:
    if isinstance(data, io.BytesIO):
        head = data.read(n)
        data.seek(0)
        return head
    with data.open("rb") as fh:
        return fh.read(n)


def _tiff_page(data: Path | io.BytesIO, what: str) -> object:
    """The first page's ``what`` (``description``, ``compression``) of a TIFF, else None."""
    import tifffile

    try:
        if _head(data, 4)[:2] not in (b"II", b"MM"):
            return None
        with tifffile.TiffFile(data) as tif:
            return getattr(tif.pages[0], what)
    except Exception:  # noqa: BLE001 - a file this cannot read is read (or refused) by the image reader
        return None
    finally:
        if isinstance(data, io.BytesIO):
            data.seek(0)


def _prediction_note(source: object) -> str | None:
    """The description of a TIFF cellcount wrote as a prediction (:data:`cellcount.io.export.PREDICTION_TAG`), else
    None (another format, another writer, unreadable)."""
    from cellcount.io.export import PREDICTION_TAG

    data = _opened(source)
    try:
        text = (_tiff_page(data, "description") or "") if data is not None else ""
    except OSError:
        return None
    return text if text.startswith(PREDICTION_TAG) else None


_LOSSY_TIFF = {6: "a TIFF with old-style JPEG compression", 7: "a JPEG-compressed TIFF", 99: "a JPEG-compressed TIFF",
               33007: "a JPEG-compressed TIFF", 34892: "a JPEG-compressed TIFF",
               22610: "a JPEG XR-compressed TIFF", 34934: "a JPEG XR-compressed TIFF",
               33003: "a JPEG 2000-compressed TIFF (Aperio)", 33004: "a lossy JPEG 2000-compressed TIFF",
               33005: "a JPEG 2000-compressed TIFF (Aperio)", 34712: "a JPEG 2000-compressed TIFF",
               50001: "a WebP-compressed TIFF"}
"""Compressions that may lose label values (JPEG 2000 and WebP can be lossless, but are seldom saved so)."""


def lossy_format(source: object) -> str | None:
    """What lossy format the file holds, read from its content whatever its name (JPEG, a JPEG-compressed TIFF, lossy
    WebP), else None: compression moves label values and dots (a 0/255 mask saved as JPEG and named .png read 59
    objects for 16)."""
    data = _opened(source)
    if data is None:
        return None
    try:
        head = _head(data)
    except OSError:
        return None
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8 ":
        return "lossy WebP"
    compression = _tiff_page(data, "compression")
    return _LOSSY_TIFF.get(int(compression)) if compression is not None else None


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
    lossy = "JPEG" if Path(name).suffix.lower() in (".jpg", ".jpeg") else lossy_format(source)
    if lossy:
        named = "" if lossy == "JPEG" and Path(name).suffix.lower() in (".jpg", ".jpeg") else " (read from its content)"
        raise GroundTruthError(f"{name}: the file is {lossy}{named}, which is lossy and cannot hold labels: compression "
                               "changes the labels' values; save labels as PNG or TIFF without JPEG compression")
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
    # before the image is read: a stream is left where it was
    lossy = Path(name).suffix.lower() in (".jpg", ".jpeg") or lossy_format(source) is not None
    image = _read_gt_image(source)
    _check_shape(name or "dot image", image.shape, expected_shape)
    values = np.nan_to_num(image.astype(np.float64)).reshape(image.shape[0], image.shape[1], -1)
    # the background is the most common value of each channel, not 0: dots on a near-black (1, 10) or a
    # white canvas, or red dots on white, are then found where a 'non-zero' test sees dots everywhere
    background = [np.unique(values[..., c], return_counts=True) for c in range(values.shape[2])]
    away = np.abs(values - np.array([v[np.argmax(n)] for v, n in background])).max(axis=2)
    if lossy:
        on = away > 0.5 * float(away.max())  # ignore compression noise
    else:
        on = away != 0
    if on.mean() > 0.5:  # no plain canvas: dots drawn over the picture itself cannot be told from it
        raise GroundTruthError(
            f"{name or 'dot image'}: {on.mean():.0%} of the pixels differ from the commonest value, so this is "
            "not dots on a plain canvas; save the dots alone (on black or white) or as a points CSV"
        )
    points, large = _dots_from_mask(on)
    if large:
        warnings.warn(f"{name or 'dot image'}: {large} of its dots are at least {LARGE_DOT:g}x the typical dot's size "
                      "and were each read as one: painted dots that overlap cannot be told apart, so these may hide "
                      "cells. Single-pixel dots or a points "
                      "CSV (Fiji: Multi-point, then Measure) count every one", MergedDotsWarning, stacklevel=2)
    return GroundTruth(kind="points", count=len(points), points=points, source=name)


LARGE_DOT = 1.5
"""A blob read as one dot at this many times the typical (median) dot's area or more may be overlapping dots."""


class MergedDotsWarning(UserWarning):
    """Some painted dots were larger than the others and read as one each: they may be overlapping dots."""


def _dots_from_mask(on: np.ndarray) -> tuple[np.ndarray, int]:
    """((N, 2) row/col points of a dot mask: one per dot, where dots that touch stay apart; the number of blobs
    read as one dot at :data:`LARGE_DOT` x the typical dot or more, which may hide overlapping dots).

    A dot's size is the median blob area. A blob about k times that size is k dots that touch: with
    single-pixel dots (the commonest export; dense annotations touch often) every marked pixel is a dot,
    and a blob of k painted discs is split into k points by k-means on its pixels, if its shape says so
    (elongated or not convex: a round blob is one dot painted with a larger brush). Reading each blob as one
    dot lost 2.3 of 176 cells per image on VGG cells (up to 8) and taught fine-tunes to undercount."""
    blobs, n = ndi.label(on, structure=_STRUCTURE_8)
    if not n:
        return np.zeros((0, 2), dtype=np.float64), 0
    areas = np.bincount(blobs.ravel(), minlength=n + 1)[1:]
    unit = float(np.median(areas))
    dots = np.maximum(1, np.floor(areas / unit + 0.5)).astype(int)
    points = np.asarray(ndi.center_of_mass(on, blobs, np.arange(1, n + 1)), dtype=np.float64).reshape(-1, 2)
    large = 0  # (a blob at LARGE_DOT x the unit or more rounds to two dots or more: the round ones are counted below)
    if (dots == 1).all():
        return points, large
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
            large += 1
        else:
            centres, _ = kmeans2(pix, int(dots[i]), minit="++", seed=0)
            out.append(centres)
    return np.concatenate(out).reshape(-1, 2), large


def _one_round_blob(blob: np.ndarray) -> bool:
    """Whether a painted blob is one round dot: about as wide as long and convex (dots that touch make a
    peanut or a chain)."""
    from skimage.measure import regionprops

    props = regionprops(blob.astype(np.uint8))[0]
    return props.axis_minor_length >= props.axis_major_length / 1.5 and props.solidity >= 0.9
