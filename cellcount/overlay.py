"""Marks burned into an image (a time stamp, a scale bar, text) counted as nuclei: a flag no calibrated limit gives.

A microscope's software draws its annotations in one flat value, in strokes a few pixels wide; a model made for
nuclei counts each character as one. Nuclei are never one value throughout (noise and texture), and clipped ones,
flat at the top value, are round, not strokes, and lie all over the image. :func:`stroke_objects` counts the objects
that are mostly one exact value in strokes (:data:`MIN_ELONGATION`) in one line of text; :data:`MIN_STROKES` of them flag the count.
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
than 1; a time stamp drawn on DSB's 53 validation images is flagged on 35 (the model merges some characters or
leaves them out); a scale bar alone is one stroke."""


def stroke_objects(labels: np.ndarray, image: np.ndarray) -> int:
    """How many objects of ``labels`` are flat strokes of ``image`` (2-D, the intensities counted)."""
    lab = np.asarray(labels)
    gray = np.asarray(image)
    if lab.ndim != 2 or gray.shape != lab.shape or not lab.any():
        return 0
    n = int(lab.max())
    ids = np.arange(1, n + 1)
    area = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    inside = lab > 0
    flat = np.zeros(n + 1, bool)
    extremes = []
    for extreme in (ndi.maximum, ndi.minimum):
        value = np.zeros(n + 1, gray.dtype if gray.dtype.kind != "b" else np.uint8)
        value[1:] = extreme(gray, lab, ids)
        at = inside & (gray == value[lab])
        share = np.bincount(lab[at], minlength=n + 1) / np.maximum(area, 1)
        flat |= (share >= FLAT_SHARE) & (area >= 4)
        extremes.append(at)
    flat[0] = False
    rows, heights = [], []
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None or not flat[i]:
            continue
        own = lab[sl] == i
        part = own & (extremes[0][sl] | extremes[1][sl])
        radius = float(ndi.distance_transform_edt(np.pad(part, 1)).max())
        if part.sum() >= MIN_ELONGATION * np.pi * radius**2:
            rows.append((sl[0].start + sl[0].stop) / 2)
            heights.append(sl[0].stop - sl[0].start)
    return _in_one_line(np.asarray(rows), np.asarray(heights))


def _in_one_line(rows: np.ndarray, heights: np.ndarray) -> int:
    """The most of these strokes (their centres' ``rows`` and their ``heights``) in one line of text: a band as high
    as the median stroke. Clipped nuclei, some of them long, lie all over the image; a time stamp's characters in a
    row."""
    if not rows.size:
        return 0
    band = max(float(np.median(heights)), 4.0)
    order = np.sort(rows)
    return int(max(np.searchsorted(order, r + band, side="right") - i for i, r in enumerate(order)))


def overlay_note(strokes: int) -> str | None:
    """The flag's reason where :data:`MIN_STROKES` or more objects are flat strokes, else None."""
    if strokes < MIN_STROKES:
        return None
    return (f"{strokes} of the objects counted are thin strokes of one flat value, as a microscope draws a time stamp, "
            "scale bar or text into the image: those are counted as nuclei. Save the image without its annotations, "
            "or crop them out, and count again")
