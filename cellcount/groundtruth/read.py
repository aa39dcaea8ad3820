"""One ground-truth file of any kind, read by what it holds (:func:`read_ground_truth`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from cellcount.errors import CellcountError, GroundTruthError
from cellcount.io import (
    DOT_DIRS,
    GROUND_TRUTH_DIRS,
    IMAGEJ_ROI_EXTENSIONS,
    ground_truth_suffix,
    word_base,
)

from .exported import GEOJSON_EXTENSIONS, read_cellcounter_xml, read_geojson, read_imagej_rois
from .images import read_dot_image, read_label_image
from .names import listed
from .tables import TABLE_EXTENSIONS, _count_columns, _csv_rows, _point_columns, _read_csv_text, read_points_csv
from .truth import BinaryMaskWarning, GroundTruth, _expected_hw, holds_only_specks


class CalibratedPointsWarning(UserWarning):
    """Every point of an image's ground truth lies in a small top-left part of it, as points in µm do on an image
    whose pixels are smaller than a µm (Fiji's Measure writes X,Y in the image's calibrated units)."""


CALIBRATED_SHARE = 0.5
"""Points whose rows and columns all lie below this share of the image's height and width are warned about
(:class:`CalibratedPointsWarning`), from :data:`CALIBRATED_MIN_POINTS` points on: the top-left quarter."""
CALIBRATED_MIN_POINTS = 10


def check_points_fit(gt: GroundTruth, expected_shape: Sequence[int] | None) -> None:
    """Refuse points outside an image of ``expected_shape`` (H, W, ...), and warn where they all crowd its top-left
    quarter (:class:`CalibratedPointsWarning`): both what coordinates in µm instead of pixels look like."""
    expected = _expected_hw(expected_shape)
    if expected is None or gt.points is None or not len(gt.points):
        return
    outside = (gt.points[:, 0] > expected[0]) | (gt.points[:, 1] > expected[1])
    if outside.any():
        k = int(np.argmax(outside))
        swapped = gt.points[:, ::-1]  # every point inside once x and y trade places: the columns swapped
        fits = not ((swapped[:, 0] > expected[0]) | (swapped[:, 1] > expected[1])).any()
        raise GroundTruthError(
            f"{gt.source}: {int(outside.sum())} point(s) lie outside the image ({expected[1]} x {expected[0]} px, "
            f"W x H), first at x = {gt.points[k][1]:g}, y = {gt.points[k][0]:g}; "
            + ("with x and y swapped every point would lie inside: are the columns the wrong way round (x is the "
               "column, y the row)?" if fits else "are the coordinates in µm instead of pixels?")
        )
    if note := calibrated_note(gt, expected_shape):
        warnings.warn(note, CalibratedPointsWarning, stacklevel=2)


def file_dots_note(name: str, gt: GroundTruth, expected_shape: Sequence[int] | None) -> str | None:
    """:func:`calibrated_note` of an image ``name``'s annotation where it is a file's dots (dots clicked on the
    image itself, whose source is its name, are the user's own and not in µm)."""
    return calibrated_note(gt, expected_shape) if gt.kind == "points" and gt.source != name else None


def calibrated_note(gt: GroundTruth, expected_shape: Sequence[int] | None) -> str | None:
    """What :class:`CalibratedPointsWarning` says of ``gt``'s points on an image of ``expected_shape``, or None
    where they do not crowd its top-left corner so (or are too few to tell)."""
    expected = _expected_hw(expected_shape)
    if expected is None or gt.points is None or len(gt.points) < CALIBRATED_MIN_POINTS:
        return None
    reach = gt.points.max(axis=0) / np.asarray(expected, float)
    if not (reach < CALIBRATED_SHARE).all():
        return None
    return (f"{gt.source}: all {len(gt.points)} points lie within the top-left {100 * reach[1]:.0f}% x "
            f"{100 * reach[0]:.0f}% of the {expected[1]} x {expected[0]} px image, as points in µm would on an image "
            "of pixels smaller than a µm (Fiji's Measure writes X,Y in the image's calibrated units): if so, give "
            "them in pixels (Fiji: Analyze > Set Scale > Click to Remove Scale, then measure again)")


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
        check_points_fit(gt, expected_shape)
        return gt
    if p.suffix.lower() in IMAGEJ_ROI_EXTENSIONS:
        gt = read_imagej_rois(p, expected_shape=expected_shape)
        check_points_fit(gt, expected_shape)
        return gt
    if p.suffix.lower() == ".xml":
        gt = read_cellcounter_xml(p)
        check_points_fit(gt, expected_shape)
        return gt
    if p.suffix.lower() in TABLE_EXTENSIONS:
        name, text = _read_csv_text(p)
        header, _ = _csv_rows(name, text)
        if _point_columns(header) is not None:
            gt = read_points_csv(p)
            check_points_fit(gt, expected_shape)
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


def disagreeing_annotations(used: GroundTruth, seconds: Iterable[tuple[str, Callable[[], GroundTruth]]],
                            ) -> list[tuple[str, int]]:
    """(name, count) of each second annotation of an image (its name, and how to read it) that counts otherwise
    than the one ``used``: which one is right is the user's to say, not the suffix order's (a stale
    ``_points.csv`` would be used over the image's ``.csv`` unsaid). A binary mask is not compared
    (touching nuclei in it are one object), nor a file that cannot be read (said as unused where it is listed)."""
    if used.kind == "mask":
        return []
    clash = []
    for name, read in seconds:
        try:
            with warnings.catch_warnings():  # read to compare only: its own warnings are not the used file's
                warnings.simplefilter("ignore")
                second = read()
        except CellcountError:
            continue
        if second.kind != "mask" and second.count != used.count:
            clash.append((name, second.count))
    return clash


def not_used_beside_broken(names: Sequence[str]) -> str:
    """What an image's reason adds where its annotation cannot be read and others of it (``names``) can: they are
    not used in its place, as which one is right is the user's to say ('' when none)."""
    if not names:
        return ""
    one = len(names) == 1
    return (f"; {listed(list(names))} beside it, {'another annotation' if one else 'other annotations'} of this "
            f"image, {'is' if one else 'are'} not used in its place (which one is right is yours to say): fix or "
            "remove the broken file")


def annotations_disagree(used: str, count: int, clash: Sequence[tuple[str, int]], fix: str) -> str:
    """The reason an image with annotations that disagree (:func:`disagreeing_annotations`) is left out."""
    others = ", ".join(f"{name} ({n})" for name, n in clash)
    return f"two annotations that disagree: {used} ({count} objects) and {others}: {fix}"

