"""The Count page's viewer: one pre-rendered picture, fast to send and readable on any background."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..io import image_to_display_rgb
from ..io.percentile import percentiles
from .arrays import _REASON_CODES, GROUND_TRUTH_COLOR, OUTLINE_COLORS, RGB, boundaries

OUTLINE_CANDIDATES: dict[str, RGB] = {
    "yellow": (255, 221, 0),
    "cyan": (0, 230, 255),
    "magenta": (255, 40, 255),
    "green": (0, 200, 0),
    "blue": (30, 80, 255),
    "red": (230, 0, 0),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
"""Outline colours a user can pick."""
AUTO_CANDIDATES = ("green", "yellow", "blue")
"""Colours :func:`contrast_color` chooses from, in order of preference: saturated ones only (white or black
lie on the grey axis of a fluorescence image, so they vanish into the bright nuclei or the dark background on
one side of every outline), and not those of rejected objects (cyan, magenta, pink) or of likely merges
(red), so the kinds stay apart."""
GOOD_CONTRAST = 80.0
"""CIELAB distance (10th percentile over the pixels around the outlines) at which a colour counts as clearly
visible: the first of :data:`AUTO_CANDIDATES` that reaches it is taken, else the farthest."""
MERGE_COLOR: RGB = (255, 0, 0)
MERGE_COLOR_ON_RED: RGB = (255, 255, 0)
"""The likely-merge colour when the user's outline colour is red itself (so the two kinds stay apart)."""


SPARE_COLORS: tuple[RGB, ...] = ((255, 255, 255), (150, 90, 255), (255, 140, 0), (0, 0, 0))
"""Colours a rejected kind takes instead of its own when the kept outlines' colour is like it."""
ALIKE = 40.0
"""CIELAB distance under which two outline colours read as the same (cyan 0,230,255 against 0,200,255: about 12).
Orange 255,140,0 against yellow 255,221,0 (48) read alike at half opacity on bright nuclei: "touches border" is
pink, not orange."""


def _alike(a: RGB, b: RGB) -> bool:
    return float(np.linalg.norm(_lab(np.array([a])) - _lab(np.array([b])))) < ALIKE


MERGE_CANDIDATES: tuple[RGB, ...] = (MERGE_COLOR, MERGE_COLOR_ON_RED, (255, 255, 255), (0, 0, 0))
"""The likely merges' colours in order of preference: red, yellow, white, black."""


def _merge_color(kept: RGB | None, picture: np.ndarray | None = None, where: np.ndarray | None = None) -> RGB:
    """The likely merges' colour beside kept outlines of colour ``kept``: red, or yellow beside red ones; with the
    ``picture`` (and the pixels ``where`` the outlines lie), the first of :data:`MERGE_CANDIDATES` unlike ``kept``
    that stands out from it (red marks vanish on a composite whose first channel is shown red)."""
    options = [c for c in MERGE_CANDIDATES if kept is None or not _alike(kept, c)]
    return options[0] if picture is None else _standing_out(options, picture, where)


def _apart(palette: dict[str, RGB], kept: RGB, merge: RGB = MERGE_COLOR) -> dict[str, RGB]:
    """``palette`` with every rejected kind whose colour is like ``kept`` given a spare colour unlike the others
    and unlike the likely merges' ``merge`` (cyan outlines chosen by the user would match the "too small" ones)."""
    out = dict(palette)
    for name, rgb in palette.items():
        if name == "kept" or not _alike(rgb, kept):
            continue
        taken = [kept, merge, *(c for n, c in out.items() if n not in ("kept", name))]
        out[name] = next((c for c in SPARE_COLORS if not any(_alike(c, t) for t in taken)), rgb)
    return out


def display_image(image: np.ndarray, *, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """uint8 (H, W, 3) picture with the display contrast stretched between two percentiles (the data are not
    changed; only what is shown). Colour uint8 RGB (stains) is stretched too, with one range for all channels
    so hues are kept."""
    if not 0 <= low_pct < high_pct <= 100:
        raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        lo, hi = percentiles(arr, [low_pct, high_pct])
        if hi <= lo:
            return arr.copy()
        lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        return lut[arr]
    return image_to_display_rgb(arr, low_pct=low_pct, high_pct=high_pct)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N, 3) CIELAB (L 0-100, a and b centred on 0)."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    return lab.astype(np.float32) * np.float32([100 / 255, 1, 1]) - np.float32([0, 128, 128])


def thickness_for(shape: tuple[int, ...], shown_px: int, object_px: float | None = None) -> int:
    """Outline width, px of the image, that stays about a screen pixel wide when an image of ``shape`` is shown
    ``shown_px`` wide (1-px outlines of a large image thin to nothing there), but at most a sixth of the objects'
    diameter ``object_px`` where given: wider ones fill small nuclei, which then cannot be told apart when zoomed."""
    width = max(1, round(max(shape[:2]) / max(int(shown_px), 1)))
    return min(width, max(1, int(object_px // 6))) if object_px and object_px > 0 else width


def contrast_color(rgb: np.ndarray, where: np.ndarray | None = None) -> RGB:
    """An :data:`AUTO_CANDIDATES` colour that stands out (CIELAB distance, 10th percentile over pixels) from the
    image under ``where`` (bool (H, W), e.g. a band on both sides of the outlines; the whole image when None or
    empty): the first that reaches :data:`GOOD_CONTRAST`, else the farthest. Outlines stay visible on dark
    fluorescence, bright nuclei and purple H&E alike."""
    return _standing_out([OUTLINE_CANDIDATES[name] for name in AUTO_CANDIDATES], rgb, where)


def _standing_out(candidates: Sequence[RGB], rgb: np.ndarray, where: np.ndarray | None) -> RGB:
    """The first of ``candidates`` whose CIELAB distance from the picture ``rgb`` under ``where`` (10th percentile
    over pixels) reaches :data:`GOOD_CONTRAST`, else the farthest."""
    flat = np.asarray(rgb).reshape(-1, 3)
    idx = np.flatnonzero(where) if where is not None else np.arange(len(flat))
    if idx.size == 0:
        idx = np.arange(len(flat))
    pix = _lab(flat[idx[:: max(idx.size // 4000, 1)]])  # a regular subsample is enough
    best, best_d = candidates[0], -1.0
    for color in candidates:
        d = float(np.percentile(np.linalg.norm(pix - _lab(np.array([color])), axis=1), 10))
        if d >= GOOD_CONTRAST:
            return color
        if d > best_d:
            best, best_d = color, d
    return best


REJECTED_GREY: RGB = (150, 150, 150)
"""Rejected objects' outlines beside one colour per object (:func:`object_colors` are all saturated)."""


def object_colors(n: int) -> np.ndarray:
    """(n + 1, 3) uint8 lookup table of well separated saturated colours, row 0 unused (background)."""
    hues = (np.arange(n + 1) * 0.618033988749895) % 1.0
    h6 = hues * 6
    i = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    v, s = 1.0, 0.85
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.select(
        [i[:, None] == k for k in range(6)],
        [np.stack(c, axis=1) for c in (
            (np.full_like(f, v), t, np.full_like(f, p)), (q, np.full_like(f, v), np.full_like(f, p)),
            (np.full_like(f, p), np.full_like(f, v), t), (np.full_like(f, p), q, np.full_like(f, v)),
            (t, np.full_like(f, p), np.full_like(f, v)), (np.full_like(f, v), np.full_like(f, p), q))],
    )
    return (table * 255).astype(np.uint8)


def render_outlines(
    base: np.ndarray,
    labels: np.ndarray | None,
    rejected: np.ndarray | None = None,
    *,
    color: RGB | str = "auto",
    thickness: int = 1,
    opacity: float = 1.0,
    merges: Sequence[int] = (),
    merge_boxes: np.ndarray | None = None,
    rejected_colors: Mapping[str, RGB] | None = None,
    rejected_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, RGB]]:
    """Outlines of kept objects (and rejected ones, tinted) blended onto a display picture.

    Parameters
    ----------
    base : uint8 (H, W, 3) picture (:func:`display_image`).
    labels, rejected : (H, W) kept labels and reject reasons, as in :func:`outline_overlay`.
    color : an RGB triple, ``"auto"`` (:func:`contrast_color` against the pixels under the outlines) or
        ``"per object"`` (one colour per object, :func:`object_colors`).
    thickness : line width, px. opacity : 0-1, how much the lines cover the image.
    merges : labels of likely merged objects (``cellcount.measure.likely_merges``), drawn thicker and dashed, in red
        (beside white or black) unless the picture or the kept outlines are red (:func:`_merge_color`).
    rejected_ids : optional (H, W) ids of the rejected objects (``CountResult.rejected_ids``): touching rejected
        objects are then outlined apart, not as one region.
    merge_boxes : optional (len(merges), 4) bounding boxes of those objects (row0, col0, row1, col1,
        end-exclusive, as in the object table): each is then drawn within its box (10x faster than over the
        whole picture, on the path of every slider move).

    Returns
    -------
    (uint8 (H, W, 3) new picture, legend {label: RGB} for the colours used).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within [0, 1], got {opacity}")
    out = np.asarray(base, np.uint8).copy()
    h, w = out.shape[:2]
    legend: dict[str, RGB] = {}
    palette = dict(OUTLINE_COLORS)
    palette.update(rejected_colors or {})
    per_object = isinstance(color, str) and color == "per object"
    if per_object:
        # one colour per object takes every saturated hue, so no rejected kind or merge mark may have one: rejected
        # objects are grey and merges black or white (by the picture's brightness), colours no object gets
        palette.update({name: REJECTED_GREY for name in _REASON_CODES})
    if labels is not None and not isinstance(color, str):  # a colour the user chose: no kind may share it
        palette = _apart(palette, tuple(int(c) for c in color), _merge_color(tuple(int(c) for c in color)))
    if rejected is not None and np.any(rejected):
        rej = np.asarray(rejected)
        lut = np.zeros((256, 3), np.uint8)
        for name, code in _REASON_CODES.items():
            lut[code] = palette[name]
            if np.any(rej == code):
                legend["rejected (not counted)" if per_object else f"rejected: {name}"] = palette[name]
        # inside the region: its code gives the colour
        line = boundaries(rej if rejected_ids is None else rejected_ids, mode="inner", thickness=thickness)
        layer = np.zeros_like(out)
        layer[line] = lut[rej[line]]
        _paint(out, line, layer, opacity)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (h, w):
            raise ValueError(f"labels shape {lab.shape} differs from the picture's {(h, w)}")
        line = boundaries(lab, thickness=thickness)
        import cv2

        if per_object:
            n = int(lab.max()) if lab.size else 0
            # outer lines lie on background pixels: colour them by the neighbouring object
            owner = cv2.dilate(lab.astype(np.float32), np.ones((2 * thickness + 1,) * 2, np.uint8)).astype(np.int64)
            owner = np.where(lab > 0, lab, owner)
            layer = np.zeros_like(out)
            layer[line] = object_colors(n)[np.clip(owner[line], 0, n)]
            _paint(out, line, layer, opacity)
            legend["kept (one colour each)"] = tuple(int(c) for c in object_colors(1)[1])  # not the rejected grey
        else:
            auto = isinstance(color, str)
            # judged against both sides: the background under them, the objects inside
            band = cv2.dilate(line.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 if auto or len(merges) else None
            rgb = contrast_color(out, band) if auto else tuple(int(c) for c in color)
            merge_rgb = _merge_color(rgb, out, band) if len(merges) else _merge_color(rgb)
            _paint(out, line, rgb, opacity)
            legend["kept"] = rgb
        if per_object:
            merge_rgb = (0, 0, 0) if float(np.mean(base)) > 127 else (255, 255, 255)
        if len(merges):
            # dashed in two tones, unlike every solid outline: a merge stays apart from a kept object where their
            # colours read alike (red and green to the red-green colour blind, one man in twelve)
            other = (0, 0, 0) if float(np.mean(base)) > 127 else (255, 255, 255)
            other = (255, 255, 255) if other == merge_rgb == (0, 0, 0) else (0, 0, 0) if other == merge_rgb else other
            if merge_boxes is None:
                from scipy import ndimage

                found = ndimage.find_objects(lab)
                merge_boxes = np.array([(sl[0].start, sl[1].start, sl[0].stop, sl[1].stop) if (
                    0 < m <= len(found) and (sl := found[m - 1]) is not None) else (0, 0, 0, 0)
                    for m in np.asarray(merges, np.int64)], np.int64).reshape(-1, 4)
            pad = thickness + 2  # room for the outer line, grown by thickness + 1
            for label, (r0, c0, r1, c1) in zip(merges, np.asarray(merge_boxes, np.int64), strict=True):
                r0, c0, r1, c1 = max(r0 - pad, 0), max(c0 - pad, 0), min(r1 + pad, h), min(c1 + pad, w)
                crop = (lab[r0:r1, c0:c1] == label).astype(np.uint8)
                if crop.any():
                    _paint_dashed(out[r0:r1, c0:c1], boundaries(crop, thickness=thickness + 1), crop, merge_rgb,
                                  other)
            legend["likely merge (far larger than its neighbours, with a waist; dashed)"] = merge_rgb
    return out, legend


DASH_PX = 4
"""The length of each tone of a likely merge's dashed outline, px of the image."""


def _paint_dashed(out: np.ndarray, mask: np.ndarray, obj: np.ndarray, color: RGB, other: RGB) -> None:
    """Paint the outline ``mask`` of the object ``obj`` (bool, the same crop) in dashes of ``color`` and ``other``
    about :data:`DASH_PX` long, in place: by the angle around the object's centre, so the tones alternate along the
    outline whichever way it runs (dashes by rows and columns left a 45-degree stretch one solid colour)."""
    rows, cols = np.nonzero(mask)
    if not rows.size:
        return
    cy, cx = (float(np.mean(a)) for a in np.nonzero(obj))
    radius = max(float(np.sqrt(np.count_nonzero(obj) / np.pi)), 1.0)
    first = np.round(np.arctan2(rows - cy, cols - cx) * radius / DASH_PX).astype(np.int64) % 2 == 0
    out[rows[first], cols[first]] = color
    out[rows[~first], cols[~first]] = other


def _paint(out: np.ndarray, mask: np.ndarray, color: RGB | np.ndarray, opacity: float) -> None:
    """Blend ``color`` (an RGB triple or an (H, W, 3) layer) into ``out`` where ``mask``, in place."""
    if not mask.any():
        return
    if opacity >= 1:
        out[mask] = color if isinstance(color, tuple) else color[mask]
        return
    import cv2

    layer = np.empty_like(out)
    layer[:] = color
    # whole-image blend + masked copy: 10x faster than blending the fancy-indexed line pixels
    np.copyto(out, cv2.addWeighted(out, 1 - opacity, layer, opacity, 0), where=mask[:, :, None])


def histogram_strip(
    shares: np.ndarray, *, threshold: float | None = None, width: int = 240, height: int = 56
) -> np.ndarray:
    """A small uint8 (height, width, 4) bar picture of pixel shares per probability bin (over 0-1, log
    scale from 0.001% to 100% so a few uncertain pixels stay visible beside the peaks at 0 and 1), with the
    threshold as a red line and ticks at 0, 0.25, 0.5, 0.75 and 1 under the bars. A picture, not a chart: cheap to
    redraw on every slider move. Its background is transparent and its colours mid-tones, so it reads on the
    light theme's page and the dark one's alike (white, it was a bright box on a dark page)."""
    out = np.zeros((height, width, 4), np.uint8)
    shares = np.asarray(shares, np.float64)
    n = len(shares)
    level = np.clip((np.log10(np.maximum(shares * 100, 1e-3)) + 3) / 5, 0, 1)  # 1e-3 % .. 100 %
    for i, v in enumerate(level):
        x0, x1 = int(i * width / n) + 1, max(int((i + 1) * width / n) - 1, int(i * width / n) + 2)
        top = height - 1 - int(round(v * (height - 2)))
        if shares[i] > 0:
            out[top:height - 4, x0:x1] = HISTOGRAM_BAR
    out[height - 4] = (150, 150, 150, 255)
    for tick in np.linspace(0, 1, 5):
        x = int(round(tick * (width - 1)))
        out[height - 4:, max(x - 1, 0):x + 1] = (150, 150, 150, 255)
    if threshold is not None:
        x = int(np.clip(round(float(threshold) * (width - 1)), 0, width - 1))
        out[:, max(x - 1, 0) : x + 1] = (214, 39, 40, 255)
    return out


HISTOGRAM_BAR = (45, 140, 152, 255)
"""The probability strip's bars: a teal between the two themes' accents, readable on white and on a dark page."""


def window_step(size_px: int, zoom: int) -> float:
    """The step of a slider that places a :data:`ZOOM_VIEW_PX` window (0-1 across ``size_px`` at ``zoom``): at most
    0.05, and at most half the window's share of the image, so every part can be shown (0.05 of 4000 px at 400%
    skipped 40-px strips between the 160-px windows)."""
    share = ZOOM_VIEW_PX / max(size_px * zoom, 1)
    return max(0.001, min(0.05, math.floor(500 * share) / 1000))


ZOOM_VIEW_PX = 640
"""The zoomed picture's longest side on screen: a window of this many screen pixels moves over a larger image. It
fits the Count page's picture column at 1400 px (689 px there): an 800 px window scrolls sideways in it, with no
scroll bar in sight, so its right edge looks out of reach."""


def enlarge_small(rgb: np.ndarray, *, side: int = ZOOM_VIEW_PX) -> np.ndarray:
    """A picture of at most half of ``side`` px on its longer side enlarged by the whole factor that brings it
    nearest ``side`` without passing it, with nearest-neighbour pixels; others as they are. The browser stretches a
    small picture smoothly over the panel, blurring its pixels and its outlines' colours into each other."""
    factor = side // max(rgb.shape[:2])
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor >= 2 else rgb


def zoom_view(rgb: np.ndarray, *, zoom: int, center: tuple[float, float], max_side: int = ZOOM_VIEW_PX) -> np.ndarray:
    """A window of ``rgb`` magnified ``zoom`` x with nearest-neighbour pixels (1 = full resolution: one image
    pixel per screen pixel), at most ``max_side`` screen pixels a side, centred at ``center`` = (row, col)
    fractions of the image (0-1)."""
    if zoom < 1:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    h, w = rgb.shape[:2]
    win_h, win_w = min(h, max_side // zoom), min(w, max_side // zoom)
    r0 = int(np.clip(round(center[0] * h - win_h / 2), 0, h - win_h))
    c0 = int(np.clip(round(center[1] * w - win_w / 2), 0, w - win_w))
    crop = rgb[r0 : r0 + win_h, c0 : c0 + win_w]
    return np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1) if zoom > 1 else crop.copy()


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of a small uint8 (H, W, 3) picture, or (H, W, 4) with transparency (fast compression)."""
    import cv2

    rgb = np.ascontiguousarray(rgb, np.uint8)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA if rgb.ndim == 3 and rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("could not encode the picture as PNG")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, *, quality: int = 92) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) picture: about 10x faster to encode and smaller to send than PNG."""
    import cv2

    bgr = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2BGR)  # 10x faster than [..., ::-1]
    # full colour resolution (4:4:4): halved colour (4:2:0) smears a 1 px green outline into a bright nucleus until
    # it looks uncounted (sample s02); it costs about 55% more bytes and 3 + 3 ms to encode and decode 1 Mpx
    options = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", bgr, options)
    if not ok:
        raise ValueError("could not encode the picture as JPEG")
    return buf.tobytes()


def points_overlay(image: np.ndarray, points: np.ndarray | None, *, zoom: float = 1, radius_px: float = 4.0,
                   color: RGB = GROUND_TRUTH_COLOR) -> np.ndarray:
    """uint8 (H * zoom, W * zoom, 3) picture of ``image`` (contrast-stretched; enlarged ``zoom`` times without
    smoothing, a whole number, or shrunk by area for a zoom below 1) with each point (row, col) drawn as an open
    circle of ``radius_px`` image pixels and a centre dot, for annotating by clicking. The circles are at least
    1/60 of the picture's long side across, so that a shrunk picture's dots stay visible."""
    import cv2

    if not 0 < zoom <= 64 or (zoom > 1 and zoom != int(zoom)):
        raise ValueError(f"zoom must be a whole number >= 1 or within (0, 1), got {zoom}")
    rgb = display_image(image)
    if zoom > 1:
        rgb = np.repeat(np.repeat(rgb, int(zoom), axis=0), int(zoom), axis=1)
    elif zoom < 1:
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (max(1, round(w * zoom)), max(1, round(h * zoom))), interpolation=cv2.INTER_AREA)
    out = np.ascontiguousarray(rgb, np.uint8).copy()
    if points is None:
        return out
    r = max(int(round(radius_px * zoom)), 3, max(out.shape[:2]) // 120)
    width = max(1, int(zoom) // 2)
    for row, col in np.asarray(points, np.float64).reshape(-1, 2):
        centre = (int((col + 0.5) * zoom), int((row + 0.5) * zoom))
        # a dark rim under the colour: the light dots alone are hard to see on pink H&E
        cv2.circle(out, centre, r, (0, 0, 0), thickness=width + 2, lineType=cv2.LINE_AA)
        cv2.circle(out, centre, r, color, thickness=width, lineType=cv2.LINE_AA)
        cv2.circle(out, centre, width + 1, (0, 0, 0), thickness=-1)
        cv2.circle(out, centre, width, color, thickness=-1)
    return out
