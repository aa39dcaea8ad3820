"""Point annotations made by clicking: add or remove a dot, write them as a points CSV.

Points are (row, col) pixel coordinates, float64 (N, 2), as in :class:`cellcount.groundtruth.GroundTruth`;
the CSV has ``x,y`` columns (x = column), which :func:`cellcount.groundtruth.read_points_csv` reads back.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np

from .errors import ParameterError
from .groundtruth import GroundTruth

DEFAULT_REMOVE_RADIUS_PX = 5.0

DISPLAY_SIDE_PX = 640
"""Small images are enlarged (without smoothing) to about this size for clicking."""
MAX_DISPLAY_SIDE_PX = 1400
"""Larger images are sent shrunk to this long side: about twice what a page's column shows (a high-density
screen), without sending megabytes of pixels on every click."""
REMOVE_SCREEN_PX = 6.0
"""A click this many screen pixels from a dot removes it, whatever the dot size in image pixels: on a large
image shown shrunk, a few image pixels are one screen pixel, and a click that misses would add a second dot."""


def display_zoom(shape: tuple[int, int]) -> float:
    """The zoom an image of ``shape`` is drawn at for clicking: a whole enlargement of small images (at most 8),
    1, or a shrink below 1 for images larger than :data:`MAX_DISPLAY_SIDE_PX`. The page shows the picture no
    wider than its column; clicks are mapped back through the size shown (:func:`display_to_image`)."""
    side = max(shape[:2])
    if side > MAX_DISPLAY_SIDE_PX:
        return MAX_DISPLAY_SIDE_PX / side
    return float(max(1, min(8, DISPLAY_SIDE_PX // max(side, 1))))


def remove_radius(radius_px: float, *, display_width: float, image_width: int) -> float:
    """The removal radius in image pixels of a click on an image ``image_width`` px wide shown ``display_width``
    screen pixels wide: the dot size, or :data:`REMOVE_SCREEN_PX` screen pixels where that is more."""
    if display_width <= 0:
        return float(radius_px)
    return max(float(radius_px), REMOVE_SCREEN_PX * image_width / display_width)


def toggle_point(points: np.ndarray, row: float, col: float, *, shape: tuple[int, int],
                 remove_radius_px: float = DEFAULT_REMOVE_RADIUS_PX) -> np.ndarray:
    """``points`` with the dot nearest to (row, col) removed when it lies within ``remove_radius_px``, else
    with (row, col) added. A click outside the image (``shape`` = (H, W)) changes nothing. Returns a new
    float64 (N ± 1, 2) array; ``points`` is not modified."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    h, w = shape
    if not (0 <= row < h and 0 <= col < w):
        return pts.copy()
    if len(pts):
        d2 = (pts[:, 0] - row) ** 2 + (pts[:, 1] - col) ** 2
        nearest = int(np.argmin(d2))
        if d2[nearest] <= remove_radius_px**2:
            return np.delete(pts, nearest, axis=0)
    return np.vstack([pts, [[float(row), float(col)]]])


def display_to_image(x: float, y: float, *, display_size: tuple[float, float], shape: tuple[int, int]
                     ) -> tuple[float, float]:
    """A click at (x, y) on the image shown at ``display_size`` = (width, height) -> (row, col) in the image
    of ``shape`` = (H, W), at the centre of the pixel clicked."""
    dw, dh = display_size
    if dw <= 0 or dh <= 0:
        raise ParameterError(f"display size must be positive, got {display_size}")
    h, w = shape
    col = min(int(x * w / dw), w - 1)
    row = min(int(y * h / dh), h - 1)
    return float(max(row, 0)), float(max(col, 0))


def dots_id(points: np.ndarray | None) -> str:
    """Which set of dots ``points`` is (none, or a digest of their positions to 0.01 px)."""
    if points is None or not len(points):
        return "none"
    return hashlib.sha256(np.round(np.asarray(points, np.float64), 2).tobytes()).hexdigest()[:16]


def points_csv(points: np.ndarray) -> str:
    """The points as CSV text with an ``x,y`` header (x = column, y = row), one row per cell."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    out = io.StringIO()
    out.write("x,y\n")
    for r, c in pts:
        out.write(f"{c:g},{r:g}\n")
    return out.getvalue()


def points_ground_truth(points: np.ndarray, *, source: str = "") -> GroundTruth:
    """Clicked points as ground truth of kind 'points' (count = number of points)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2).copy()
    return GroundTruth(kind="points", count=len(pts), points=pts, source=source)
