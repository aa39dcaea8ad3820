"""Ground truth that covers only part of its image: the objects counted where the annotation has none.

An annotation of the left half, or of one region, makes every count look too high, and tuning on it fits settings
that miss real cells (left-half labels of 8 DSB images: Optimise "helped" from MAE 23 to 9 with settings that took
the fully labelled images from MAE 2.4 to 17; docs/RESULTS.md). The image is cut into a grid; the share of the objects counted in
squares that hold no annotated object at all says how much of the count lies outside what was annotated. A model
finding objects in truly empty background reads alike: the note says both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

GRID = 4
"""Squares per side of the grid: a quarter of the image unannotated is four whole squares."""

MIN_SHARE = 0.25
"""An image is said to be partly annotated from this share of its counted objects in squares without annotation."""

MIN_OUTSIDE = 5
"""... and at least this many of them (a few objects near a square's border read as outside)."""


def centres_of(labels: np.ndarray | None, points: np.ndarray | None) -> np.ndarray:
    """(row, col) of each object of ``labels`` (its centroid), else ``points``; (0, 2) without either."""
    if labels is not None:
        lab = np.asarray(labels)
        ids = np.unique(lab[lab > 0])
        if not len(ids):
            return np.zeros((0, 2))
        from scipy import ndimage as ndi

        return np.asarray(ndi.center_of_mass(np.ones(lab.shape), lab, ids), np.float64).reshape(-1, 2)
    return np.zeros((0, 2)) if points is None else np.asarray(points, np.float64).reshape(-1, 2)


def unannotated_share(counted: np.ndarray, truth: np.ndarray, shape: Sequence[int]) -> tuple[float, int]:
    """(share, number) of the ``counted`` object centres that lie in grid squares holding no ``truth`` centre; NaN
    share where the truth holds no object (an empty field is another matter) or nothing was counted."""
    counted, truth = np.asarray(counted, np.float64).reshape(-1, 2), np.asarray(truth, np.float64).reshape(-1, 2)
    if not len(truth) or not len(counted):
        return math.nan, 0
    h, w = shape[:2]

    def square(pts: np.ndarray) -> np.ndarray:
        r = np.clip((pts[:, 0] * GRID // max(h, 1)).astype(int), 0, GRID - 1)
        c = np.clip((pts[:, 1] * GRID // max(w, 1)).astype(int), 0, GRID - 1)
        return r * GRID + c

    annotated = np.bincount(square(truth), minlength=GRID * GRID) > 0
    outside = int((~annotated[square(counted)]).sum())
    return outside / len(counted), outside


def _first_few(rows, text, most: int = 4) -> str:
    """``text(row)`` of the first ``most`` rows, joined, and how many more."""
    shown = ", ".join(text(r) for _, r in rows.head(most).iterrows())
    return shown + (f" and {len(rows) - most} more" if len(rows) > most else "")


def partial_annotation_note(per_image) -> str | None:
    """What to say of images whose counted objects lie largely where their annotation has none (the per-image
    table's ``unannotated_share`` and ``unannotated``), or None."""
    if "unannotated_share" not in per_image:
        return None
    hit = per_image[(per_image["unannotated_share"] >= MIN_SHARE) & (per_image["unannotated"] >= MIN_OUTSIDE)]
    if not len(hit):
        return None
    shown = _first_few(hit, lambda r: f"{r['file']} {r['unannotated_share']:.0%}")
    return (f"{len(hit)} of the {len(per_image)} image(s) have a quarter or more of their counted objects in parts of "
            f"the image where the annotation has none at all ({shown}): either the annotation covers only part "
            "of each image, which makes the counts look too high and would tune the settings to miss cells, or the "
            "model counts things in empty background. Look at those images (the extra objects are marked) before "
            "trusting the error or tuning on it; score images annotated throughout, or crop them to the annotated part.")


def swapped_f1(result, truth, radius_px: float) -> float:
    """The F1 of ``result``'s objects against ``truth``'s dots read with x and y swapped (NaN where a swapped dot
    would leave the image): a table's x and y the wrong way round read as dots in all the wrong places on a square
    image, every count right and F1 0.15, unsaid."""
    from ..metrics import match_points, match_points_in_objects

    pts = np.asarray(truth.points, np.float64).reshape(-1, 2)[:, ::-1]
    h, w = (result.labels if result.labels is not None else result.density).shape[:2]
    if not len(pts) or pts[:, 0].max() > h or pts[:, 1].max() > w:  # outside as check_points_fit judges it
        return math.nan
    m = (match_points_in_objects(pts, result.labels) if result.labels is not None
         else match_points(pts, result.peaks, radius_px=radius_px))
    return float(m.f1)


SWAPPED_GAIN = 2.0
"""Dots that match this many times better with x and y swapped (and at F1 0.5 or more) are said to be swapped."""


def swapped_axes_note(per_image) -> str | None:
    """What to say of the images whose dots match far better with x and y swapped (each judged alone: three of six
    tables swapped pulled the pooled F1 to 0.50 unsaid), or None."""
    if "f1_xy_swapped" not in per_image or "f1" not in per_image:
        return None
    rows = per_image[per_image["f1_xy_swapped"].notna() & per_image["f1"].notna()]
    better = rows[(rows["f1_xy_swapped"] >= 0.5) & (rows["f1_xy_swapped"] >= SWAPPED_GAIN * rows["f1"])]
    if not len(better):
        return None
    shown = _first_few(better, lambda r: f"{r['file']} {r['f1']:.2f} -> {r['f1_xy_swapped']:.2f}")
    # the others' swapped dots would leave the image: not judged, and not in the count either (11 said 9)
    judged = "image(s) with dots" if len(rows) == len(per_image[per_image["f1"].notna()]) else (
        "image(s) with dots that fit the image either way")
    return (f"{len(better)} of the {len(rows)} {judged} match the objects far better with x and y swapped "
            f"(F1 as read -> swapped: {shown}): their dot tables' x and y columns may be the wrong way round (x "
            "is the column, y the row). The counts are not affected; F1 and the marked misses are.")
