"""Marks burned into an image (a time stamp, a scale bar, text) counted as nuclei: a flag no calibrated limit gives.

A microscope's software draws its annotations in one flat value, in connected strokes a few pixels wide; a model made
for nuclei counts each character as one. Nuclei are never one value throughout (noise and texture); dim, quantised
ones touch their extreme values in scattered pixels, not one stroke; clipped ones, flat at the top value, are round,
make up most of an overexposed image's objects and lie all over it. :func:`stroke_objects` counts the objects that are
mostly one exact value in one connected stroke (:data:`MIN_ELONGATION`), along one line of text; :data:`MIN_STROKES` of
them flag the count.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

FLAT_SHARE = 0.5
"""An object with at least this share of its pixels at its own top or bottom value is flat."""
MIN_ELONGATION = 2.5
"""... and a stroke where that flat part covers this many times the disc of its widest point (its largest distance
to its edge): a disc 1, a stroke of length L and width w about 4 L / (pi w), a character's a few."""
MIN_STROKES = 5
"""A count with this many flat strokes in one line among its objects is flagged. ``python scripts/overlay_probe.py``
(results/probes/amd-zen5-2026-12-07-overlay.txt): none of DSB's 522 images, the samples, vgg_cells or mbm holds more
than 1; a time stamp drawn on DSB's 53 validation images is flagged on 28 (the model merges some characters or
leaves them out); a scale bar alone is one stroke. Small anti-aliased text (under ~30 px) is seldom flat enough."""


def stroke_objects(labels: np.ndarray, image: np.ndarray, *, bright_background: bool = False) -> int:
    """How many objects of ``labels`` are flat strokes of ``image`` (2-D, the intensities counted) side by side in one
    line, as a time stamp's characters are: strokes at each object's top value (light marks on a dark image), or at its
    bottom value on a ``bright_background`` (dark marks), one reduction on the slider's path instead of two."""
    lab = np.asarray(labels)
    gray = np.asarray(image)
    if lab.ndim != 2 or gray.shape != lab.shape or not lab.any():
        return 0
    n = int(lab.max())
    where = np.flatnonzero(lab)  # the objects' pixels alone: every pass below runs over them, not the image
    ids = lab.ravel()[where]
    values = gray.ravel()[where]
    if len(np.unique(values[:: max(1, values.size // 100_000)])) < MIN_LEVELS:
        return 0  # a dim, quantised image: every nucleus is a few values, flat at one of them without any text
    area = np.bincount(ids, minlength=n + 1).astype(np.float64)
    # each object's own extreme value: np.maximum.at is ~13x faster than ndi.maximum with an index, and faster again
    # with the accumulator in the values' own dtype, where numpy needs no cast per pixel (a 1 Mpx uint8 image's whole
    # check: 21.0 ms with a float64 accumulator, 5.9 ms: scripts/slider_parts.py)
    if values.dtype.kind not in "uif":
        values = values.astype(np.float64)
    info = np.iinfo(values.dtype) if values.dtype.kind in "ui" else None
    lowest, highest = (info.min, info.max) if info is not None else (-np.inf, np.inf)
    reduce, start = (np.minimum, highest) if bright_background else (np.maximum, lowest)
    value = np.full(n + 1, start, dtype=values.dtype)
    reduce.at(value, ids, values)
    extreme = values == value[ids]
    share = np.bincount(ids[extreme], minlength=n + 1) / np.maximum(area, 1)
    flat = (share >= FLAT_SHARE) & (area >= 4)
    flat[0] = False
    if not flat.any() or flat.sum() > max(MAX_FLAT_SHARE * n, 50):  # most objects flat: clipped nuclei, no text
        return 0
    at = np.zeros(lab.size, bool)
    at[where[extreme]] = True
    at = at.reshape(lab.shape)
    boxes = []
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None or not flat[i]:
            continue
        part = (lab[sl] == i) & at[sl]
        pieces, n_pieces = ndi.label(part, structure=np.ones((3, 3), bool))  # diagonal strokes connect
        if n_pieces > 1:  # one stroke is one piece: scattered pixels at an extreme (a dim, quantised nucleus) are none
            sizes = np.bincount(pieces.ravel())[1:]
            if sizes.max() < STROKE_PIECE_SHARE * sizes.sum():
                continue
            part = pieces == (int(np.argmax(sizes)) + 1)
        radius = float(ndi.distance_transform_edt(np.pad(part, 1)).max())
        if part.sum() >= MIN_ELONGATION * np.pi * radius**2:
            boxes.append((sl[0].start, sl[0].stop, sl[1].start, sl[1].stop))
    return _in_one_line(np.asarray(boxes, np.float64).reshape(-1, 4))


MIN_LEVELS = 24
"""Objects holding fewer grey levels than this (a dim 8-bit image's nuclei at 2-5) are not judged: flatness needs
levels to be flat among."""
MAX_FLAT_SHARE = 0.5
"""Past this share of the objects flat, the image is clipped (or no microscope's picture): no count of strokes."""
GAP_OF_HEIGHT = 3.0
"""Characters of one line stand closer than this share of their height to the one before (a font's letter spacing);
nuclei laid out in rows stand farther apart."""
STROKE_PIECE_SHARE = 0.8
"""A stroke's flat pixels are one piece, at least this share of them: a character is drawn connected."""


def _in_one_line(boxes: np.ndarray) -> int:
    """The most strokes (bounding boxes: row0, row1, col0, col1) in one line of text: centres within a band as high as
    the median stroke, each next to the one before it (:data:`GAP_OF_HEIGHT`). Clipped nuclei, some
    of them long, lie all over the image, far apart; a time stamp's characters in a row, side by side."""
    if not len(boxes):
        return 0
    heights = boxes[:, 1] - boxes[:, 0]
    band = max(float(np.median(heights)), 4.0)
    gap = max(GAP_OF_HEIGHT * band, 2.0)
    rows = (boxes[:, 0] + boxes[:, 1]) / 2
    best = 0
    for r in rows:
        line = boxes[(rows >= r) & (rows <= r + band)]
        line = line[np.argsort(line[:, 2])]
        run = reach = 0
        for c0, c1 in line[:, 2:]:
            run = run + 1 if run and c0 - reach <= gap else 1
            reach = max(reach, c1) if run > 1 else c1
            best = max(best, run)
    return int(best)


def overlay_note(strokes: int) -> str | None:
    """The flag's reason where :data:`MIN_STROKES` or more objects are flat strokes, else None."""
    if strokes < MIN_STROKES:
        return None
    return (f"{strokes} of the objects counted are thin strokes of one flat value, as a microscope draws a time stamp, "
            "scale bar or text into the image: those are counted as nuclei. Save the image without its annotations, "
            "or crop them out, and count again")
