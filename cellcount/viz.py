"""Pictures of results: outline overlays as RGB arrays, and interactive plotly figures.

Arrays only and plotly figures only: this module never imports streamlit, so notebooks, scripts and the
app share it. Images are (row, col) = (H, W[, C]); figures put pixel centres at integer coordinates with
x = column and y = row (row 0 at the top), so hover coordinates match the object table.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from .io import image_to_display_rgb
from .postprocess import ON_BORDER, REJECT_REASONS, TOO_LARGE, TOO_SMALL

__all__ = [
    "OUTLINE_COLORS",
    "OUTLINE_COLORS_BRIGHT",
    "agreement_scatter",
    "area_histogram",
    "boundaries",
    "count_histogram",
    "contrast_color",
    "display_image",
    "encode_jpeg",
    "encode_png",
    "object_colors",
    "histogram_strip",
    "probability_histogram_figure",
    "render_outlines",
    "zoom_view",
    "density_figure",
    "error_bars",
    "error_histogram",
    "ground_truth_overlay",
    "image_figure",
    "model_times_figure",
    "outline_legend",
    "outline_overlay",
    "overlay_figure",
    "points_figure",
    "pred_vs_true_scatter",
    "probability_figure",
    "stage_times_figure",
    "thumbnail",
    "to_rgb",
    "training_curve",
]

RGB = tuple[int, int, int]

OUTLINE_COLORS: dict[str, RGB] = {
    "kept": (255, 221, 0),  # yellow
    REJECT_REASONS[TOO_SMALL]: (0, 200, 255),  # cyan
    REJECT_REASONS[TOO_LARGE]: (255, 60, 255),  # magenta
    REJECT_REASONS[ON_BORDER]: (255, 140, 0),  # orange
}
"""Outline colours on dark (fluorescence) backgrounds, keyed by 'kept' and the reject reasons."""

OUTLINE_COLORS_BRIGHT: dict[str, RGB] = {
    "kept": (0, 170, 0),  # green
    REJECT_REASONS[TOO_SMALL]: (0, 90, 255),  # blue
    REJECT_REASONS[TOO_LARGE]: (200, 0, 200),  # purple
    REJECT_REASONS[ON_BORDER]: (255, 120, 0),  # orange
}
"""Outline colours on bright (brightfield, H&E) backgrounds."""

_REASON_CODES = {REJECT_REASONS[code]: code for code in REJECT_REASONS}
_GT_COLOR: RGB = (0, 200, 255)
_PLOT_MAX_SIDE = 400  # heat maps are block-averaged to at most this many cells per side


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------
def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) picture of any image; uint8 RGB input is returned as is (not copied)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return arr
    return image_to_display_rgb(arr)


def boundaries(labels: np.ndarray, *, mode: str = "outer", thickness: int = 1) -> np.ndarray:
    """Outline pixels of labelled regions as bool (H, W).

    ``mode='outer'`` (default): background pixels next to an object, plus object pixels next to a
    different object (touching cells stay separated) and object pixels on the image edge. Lines sit
    beside the objects, so they stay visible on saturated nuclei. ``'inner'``: object pixels next to
    any other value. ``'thick'``: both sides. ``thickness`` > 1 grows the lines by whole pixels.
    """
    if mode not in ("outer", "inner", "thick"):
        raise ValueError(f"mode must be 'outer', 'inner' or 'thick', got {mode!r}")
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {lab.shape}")
    b = np.zeros(lab.shape, dtype=bool)
    if lab.size == 0:
        return b
    fg = lab != 0
    dv = lab[:-1] != lab[1:]
    dh = lab[:, :-1] != lab[:, 1:]
    if mode == "outer":
        # object-object contacts drawn inside both objects; object-background drawn on the background
        cv = dv & fg[:-1] & fg[1:]
        ch = dh & fg[:, :-1] & fg[:, 1:]
        b[:-1] |= cv | (dv & ~fg[:-1])
        b[1:] |= cv | (dv & ~fg[1:])
        b[:, :-1] |= ch | (dh & ~fg[:, :-1])
        b[:, 1:] |= ch | (dh & ~fg[:, 1:])
    else:
        b[:-1] |= dv
        b[1:] |= dv
        b[:, :-1] |= dh
        b[:, 1:] |= dh
        if mode == "inner":
            b &= fg
    edge = np.zeros_like(b)
    edge[0] = edge[-1] = True
    edge[:, 0] = edge[:, -1] = True
    b |= edge & fg
    for _ in range(max(int(thickness), 1) - 1):
        g = b.copy()
        g[:-1] |= b[1:]
        g[1:] |= b[:-1]
        g[:, :-1] |= b[:, 1:]
        g[:, 1:] |= b[:, :-1]
        b = g
    return b


def outline_overlay(
    image: np.ndarray,
    labels: np.ndarray | None,
    rejected: np.ndarray | None = None,
    *,
    colors: Mapping[str, RGB] | None = None,
    mode: str = "outer",
    thickness: int = 1,
    fill_alpha: float = 0.0,
    rejected_fill_alpha: float = 0.3,
) -> np.ndarray:
    """Draw object outlines on an image.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C), any dtype; shown through :func:`cellcount.io.image_to_display_rgb`.
    labels : numpy.ndarray or None
        (H, W) int labels of kept objects (0 = background).
    rejected : numpy.ndarray, optional
        (H, W) uint8 reject reason per pixel (``cellcount.postprocess.REJECT_REASONS``: 1 too small,
        2 too large, 3 touches border). Drawn below the kept outlines, tinted with ``rejected_fill_alpha``.
    colors : mapping, optional
        RGB per ``'kept'`` and reason name; defaults to :data:`OUTLINE_COLORS`.
    mode : str
        Where lines are drawn, see :func:`boundaries` (default 'outer': beside the objects).
    thickness : int
        Line width in pixels (use 2 for images much larger than the screen).
    fill_alpha : float
        Tint of the kept objects' interior (0 = outlines only).

    Returns
    -------
    numpy.ndarray
        uint8 (H, W, 3), a new array.
    """
    palette = dict(OUTLINE_COLORS)
    if colors:
        palette.update(colors)
    out = to_rgb(image).copy()
    h, w = out.shape[:2]
    if rejected is not None:
        rej = np.asarray(rejected)
        if rej.shape != (h, w):
            raise ValueError(f"rejected map shape {rej.shape} differs from the image's {(h, w)}")
        if rej.any():
            for name, code in _REASON_CODES.items():
                region = rej == code
                if not region.any():
                    continue
                color = np.array(palette[name], np.float32)
                if rejected_fill_alpha > 0:
                    out[region] = (
                        out[region] * (1 - rejected_fill_alpha) + color * rejected_fill_alpha
                    ).astype(np.uint8)
                out[boundaries(region, mode=mode, thickness=thickness)] = palette[name]
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (h, w):
            raise ValueError(f"labels shape {lab.shape} differs from the image's {(h, w)}")
        if fill_alpha > 0:
            inner = lab != 0
            color = np.array(palette["kept"], np.float32)
            out[inner] = (out[inner] * (1 - fill_alpha) + color * fill_alpha).astype(np.uint8)
        out[boundaries(lab, mode=mode, thickness=thickness)] = palette["kept"]
    return out


def outline_legend(
    n_kept: int | None = None,
    *,
    colors: Mapping[str, RGB] | None = None,
    reasons: Sequence[str] | None = None,
    n_rejected: Mapping[str, int] | None = None,
) -> dict[str, RGB]:
    """Legend entries (label -> RGB) for :func:`overlay_figure`: kept objects and the reject reasons,
    with their numbers of objects when ``n_kept`` / ``n_rejected`` (reason -> count) are given."""
    palette = dict(OUTLINE_COLORS)
    if colors:
        palette.update(colors)
    kept = "kept" if n_kept is None else f"kept ({n_kept})"
    names = list(REJECT_REASONS.values()) if reasons is None else list(reasons)
    n_rejected = n_rejected or {}

    def label(r: str) -> str:
        return f"rejected: {r}" + (f" ({n_rejected[r]})" if r in n_rejected else "")

    return {kept: palette["kept"], **{label(r): palette[r] for r in names}}


def thumbnail(image: np.ndarray, *, max_side: int = 192) -> np.ndarray:
    """uint8 (h, w, 3) picture of ``image`` with its longer side at most ``max_side`` pixels."""
    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb.copy()
    size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


# --------------------------------------------------------------------------------------------------
# the Count page's viewer: one pre-rendered picture (fast to send, readable on any background)
# --------------------------------------------------------------------------------------------------
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
AUTO_CANDIDATES = ("yellow", "green", "blue", "white", "black")
"""Colours :func:`contrast_color` chooses from: not those of rejected objects (cyan, magenta, orange) or of
likely merges (red), so the kinds stay apart."""
MERGE_COLOR: RGB = (255, 0, 0)


def display_image(image: np.ndarray, *, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """uint8 (H, W, 3) picture with the display contrast stretched between two percentiles (the data are not
    changed; only what is shown). Colour uint8 RGB (stains) is stretched too, with one range for all channels
    so hues are kept."""
    if not 0 <= low_pct < high_pct <= 100:
        raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        lo, hi = np.percentile(arr, [low_pct, high_pct])
        if hi <= lo:
            return arr.copy()
        lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        return lut[arr]
    return image_to_display_rgb(arr, low_pct=low_pct, high_pct=high_pct)


def contrast_color(rgb: np.ndarray, where: np.ndarray | None = None) -> RGB:
    """The :data:`AUTO_CANDIDATES` colour farthest (RGB distance, 10th percentile over pixels) from the
    image under ``where`` (bool (H, W); the whole image when None or empty): outlines stay visible on dark
    fluorescence, bright nuclei and purple H&E alike."""
    flat = np.asarray(rgb).reshape(-1, 3)
    idx = np.flatnonzero(where) if where is not None else np.arange(len(flat))
    if idx.size == 0:
        idx = np.arange(len(flat))
    pix = flat[idx[:: max(idx.size // 4000, 1)]].astype(np.float32)  # a regular subsample is enough
    best, best_d = (255, 221, 0), -1.0
    for color in (OUTLINE_CANDIDATES[name] for name in AUTO_CANDIDATES):
        d = float(np.percentile(np.linalg.norm(pix - np.array(color, np.float32), axis=1), 10))
        if d > best_d:
            best, best_d = color, d
    return best


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
    rejected_colors: Mapping[str, RGB] | None = None,
) -> tuple[np.ndarray, dict[str, RGB]]:
    """Outlines of kept objects (and rejected ones, tinted) blended onto a display picture.

    Parameters
    ----------
    base : uint8 (H, W, 3) picture (:func:`display_image`).
    labels, rejected : (H, W) kept labels and reject reasons, as in :func:`outline_overlay`.
    color : an RGB triple, ``"auto"`` (:func:`contrast_color` against the pixels under the outlines) or
        ``"per object"`` (one colour per object, :func:`object_colors`).
    thickness : line width, px. opacity : 0-1, how much the lines cover the image.
    merges : labels of likely merged objects (``cellcount.measure.likely_merges``), drawn thicker in red.

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
    if rejected is not None and np.any(rejected):
        rej = np.asarray(rejected)
        lut = np.zeros((256, 3), np.uint8)
        for name, code in _REASON_CODES.items():
            lut[code] = palette[name]
            if np.any(rej == code):
                legend[f"rejected: {name}"] = palette[name]
        line = boundaries(rej, mode="inner", thickness=thickness)  # inside the region: its code gives the colour
        layer = np.zeros_like(out)
        layer[line] = lut[rej[line]]
        _paint(out, line, layer, opacity)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (h, w):
            raise ValueError(f"labels shape {lab.shape} differs from the picture's {(h, w)}")
        line = boundaries(lab, thickness=thickness)
        if isinstance(color, str) and color == "per object":
            import cv2

            n = int(lab.max()) if lab.size else 0
            # outer lines lie on background pixels: colour them by the neighbouring object
            owner = cv2.dilate(lab.astype(np.float32), np.ones((2 * thickness + 1,) * 2, np.uint8)).astype(np.int64)
            owner = np.where(lab > 0, lab, owner)
            layer = np.zeros_like(out)
            layer[line] = object_colors(n)[np.clip(owner[line], 0, n)]
            _paint(out, line, layer, opacity)
            legend["kept (one colour each)"] = (200, 200, 200)
        else:
            rgb = contrast_color(out, line) if isinstance(color, str) else tuple(int(c) for c in color)
            _paint(out, line, rgb, opacity)
            legend["kept"] = rgb
        if len(merges):
            flag = np.zeros(int(lab.max()) + 1, bool)
            flag[np.asarray(merges, np.int64)] = True
            merged = np.take(flag, lab)
            _paint(out, boundaries(merged.astype(np.int32), thickness=thickness + 1), MERGE_COLOR, 1.0)
            legend["likely merge (far larger than its neighbours)"] = MERGE_COLOR
    return out, legend


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
    """A small uint8 (height, width, 3) bar picture of pixel shares per probability bin (over 0-1, log
    scale from 0.001% to 100% so a few uncertain pixels stay visible beside the peaks at 0 and 1), with the
    threshold as a red line. A picture, not a chart: cheap to redraw on every slider move."""
    out = np.full((height, width, 3), 255, np.uint8)
    shares = np.asarray(shares, np.float64)
    n = len(shares)
    level = np.clip((np.log10(np.maximum(shares * 100, 1e-3)) + 3) / 5, 0, 1)  # 1e-3 % .. 100 %
    for i, v in enumerate(level):
        x0, x1 = int(i * width / n) + 1, max(int((i + 1) * width / n) - 1, int(i * width / n) + 2)
        top = height - 1 - int(round(v * (height - 2)))
        if shares[i] > 0:
            out[top:height - 1, x0:x1] = (31, 111, 120)
    out[height - 1] = (150, 150, 150)
    if threshold is not None:
        x = int(np.clip(round(float(threshold) * (width - 1)), 0, width - 1))
        out[:, max(x - 1, 0) : x + 1] = (214, 39, 40)
    return out


def zoom_view(rgb: np.ndarray, *, zoom: int, center: tuple[float, float], max_side: int = 800) -> np.ndarray:
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
    """PNG bytes of a small uint8 (H, W, 3) picture (fast compression)."""
    import cv2

    bgr = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("could not encode the picture as PNG")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, *, quality: int = 92) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) picture: about 10x faster to encode and smaller to send than PNG."""
    import cv2

    bgr = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2BGR)  # 10x faster than [..., ::-1]
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the picture as JPEG")
    return buf.tobytes()


# --------------------------------------------------------------------------------------------------
# figure helpers
# --------------------------------------------------------------------------------------------------
def _png_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _image_layout(fig: go.Figure, h: int, w: int, *, height: int | None, title: str | None) -> go.Figure:
    if height is None:
        height = int(min(720, max(320, 640 * h / max(w, 1))))
    has_legend = any(t.type == "scatter" and t.showlegend is not False for t in fig.data)
    top = (28 if title else 0) + (48 if has_legend else 10)  # room for the title and a 2-row legend
    fig.update_layout(
        height=height + top,
        margin=dict(l=0, r=0, t=top, b=0),
        title=dict(text=title, x=0, xanchor="left", y=0.995, yref="container", yanchor="top")
        if title
        else None,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        hovermode="closest",
        plot_bgcolor="rgba(0,0,0,0)",
    )
    fig.update_xaxes(range=[-0.5, w - 0.5], showgrid=False, zeroline=False, constrain="domain", title=None)
    fig.update_yaxes(
        range=[h - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x", constrain="domain", title=None
    )
    return fig


def _block_mean(arr: np.ndarray, max_side: int = _PLOT_MAX_SIDE) -> tuple[np.ndarray, int]:
    """Mean over f x f blocks so that no side exceeds ``max_side``; returns (array, f)."""
    a = np.nan_to_num(np.asarray(arr, np.float32))
    h, w = a.shape
    f = max(1, math.ceil(max(h, w) / max_side))
    if f == 1:
        return a, 1
    hp, wp = math.ceil(h / f) * f, math.ceil(w / f) * f
    pad = np.zeros((hp, wp), np.float32)
    pad[:h, :w] = a
    cnt = np.zeros((hp, wp), np.float32)
    cnt[:h, :w] = 1
    s = pad.reshape(hp // f, f, wp // f, f).sum(axis=(1, 3))
    n = cnt.reshape(hp // f, f, wp // f, f).sum(axis=(1, 3))
    return s / np.maximum(n, 1), f


def image_figure(
    rgb: np.ndarray,
    *,
    legend: Mapping[str, RGB] | None = None,
    height: int | None = None,
    title: str | None = None,
) -> go.Figure:
    """Zoomable plotly figure of an image (any dtype is turned into RGB), with optional colour legend."""
    pic = to_rgb(rgb)
    h, w = pic.shape[:2]
    fig = go.Figure(go.Image(source=_png_data_uri(pic), hoverinfo="x+y", name="image"))
    for name, color in (legend or {}).items():
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=name,
                showlegend=True,
                marker=dict(symbol="square", size=12, color=_hex(color)),
            )
        )
    return _image_layout(fig, h, w, height=height, title=title)


def overlay_figure(
    rgb: np.ndarray,
    *,
    legend: Mapping[str, RGB] | None = None,
    objects: pd.DataFrame | None = None,
    pixel_size_um: float | None = None,
    height: int | None = None,
    title: str | None = None,
) -> go.Figure:
    """Image with outlines (from :func:`outline_overlay`) as a zoomable figure.

    ``objects`` (the object table) adds invisible hover targets at the centroids showing label and area.
    """
    fig = image_figure(rgb, legend=legend, height=height, title=title)
    if objects is not None and len(objects) and {"centroid_row", "centroid_col"} <= set(objects.columns):
        text = [f"object {int(lab)}" for lab in objects["label"]] if "label" in objects else None
        if text is not None and "area_px" in objects:
            if pixel_size_um:
                areas = objects["area_px"].to_numpy() * pixel_size_um**2
                text = [f"{t}<br>area {a:.1f} µm²" for t, a in zip(text, areas, strict=True)]
            else:
                text = [f"{t}<br>area {int(a)} px" for t, a in zip(text, objects["area_px"], strict=True)]
        fig.add_trace(
            go.Scatter(
                x=objects["centroid_col"],
                y=objects["centroid_row"],
                mode="markers",
                name="objects",
                showlegend=False,
                marker=dict(size=10, color="rgba(0,0,0,0)"),
                hovertext=text,
                hovertemplate="%{hovertext}<br>row %{y:.0f}, col %{x:.0f}<extra></extra>",
            )
        )
    return fig


def _heatmap_trace(
    arr: np.ndarray,
    *,
    colorscale,
    zmin: float,
    zmax: float,
    colorbar_title: str,
    hover: str,
    opacity: float = 1.0,
) -> go.Heatmap:
    small, f = _block_mean(arr)
    return go.Heatmap(
        z=small,
        x0=(f - 1) / 2,
        dx=f,
        y0=(f - 1) / 2,
        dy=f,
        zmin=zmin,
        zmax=zmax,
        colorscale=colorscale,
        opacity=opacity,
        colorbar=dict(title=dict(text=colorbar_title, side="right"), thickness=14),
        hovertemplate=f"row %{{y:.0f}}, col %{{x:.0f}}<br>{hover} %{{z:.3g}}<extra></extra>",
        name=hover,
    )


def density_figure(
    image: np.ndarray,
    density: np.ndarray,
    peaks: np.ndarray | None = None,
    *,
    count_estimate: float | None = None,
    height: int | None = None,
) -> go.Figure:
    """Density map as a translucent heat map over the image, with peak markers (approximate centres).

    The colour bar is in cells per pixel (the map integrates to the count); block-averaged for display
    when larger than 400 pixels a side. ``count_estimate`` goes in the title.
    """
    d = np.asarray(density, np.float32)
    h, w = d.shape
    base = to_rgb(image)
    if base.shape[:2] != (h, w):
        raise ValueError(f"density shape {(h, w)} differs from the image's {base.shape[:2]}")
    gray = base.mean(axis=2).astype(np.uint8)
    fig = go.Figure(go.Image(source=_png_data_uri(np.repeat(gray[..., None], 3, axis=2)), hoverinfo="skip"))
    small, _ = _block_mean(d)
    positive = small[small > 0]
    # saturate at the 99th percentile of the non-zero density so typical nuclei are clearly coloured
    zmax = float(np.percentile(positive, 99)) if positive.size else 1.0
    scale = [
        [0.0, "rgba(0,0,0,0)"],
        [0.06, "rgba(120,0,160,0)"],  # faint background density stays transparent
        [0.12, "rgba(120,0,160,0.3)"],
        [0.25, "rgba(220,20,120,0.6)"],
        [0.6, "rgba(255,120,0,0.8)"],
        [1.0, "rgba(255,255,80,0.95)"],
    ]
    fig.add_trace(
        _heatmap_trace(d, colorscale=scale, zmin=0.0, zmax=zmax, colorbar_title="cells / px", hover="density")
    )
    if peaks is not None and len(peaks):
        pk = np.asarray(peaks, np.float64).reshape(-1, 2)
        fig.add_trace(
            go.Scatter(
                x=pk[:, 1],
                y=pk[:, 0],
                mode="markers",
                name=f"peaks ({len(pk)})",
                marker=dict(symbol="x-thin", size=8, line=dict(width=2, color="#00e5ff")),
                hovertemplate="peak at row %{y:.0f}, col %{x:.0f}<extra></extra>",
            )
        )
    title = None if count_estimate is None else f"Integrated count: {count_estimate:.1f}"
    return _image_layout(fig, h, w, height=height, title=title)


def probability_figure(
    prob: np.ndarray, *, threshold: float | None = None, height: int | None = None
) -> go.Figure:
    """Foreground probability (0-1) as a heat map; ``threshold`` is marked on the colour bar."""
    p = np.asarray(prob, np.float32)
    h, w = p.shape
    fig = go.Figure(
        _heatmap_trace(
            p, colorscale="Viridis", zmin=0.0, zmax=1.0, colorbar_title="P(foreground)", hover="probability"
        )
    )
    if threshold is not None:
        fig.data[0].colorbar.tickvals = sorted({0.0, 0.5, 1.0, round(float(threshold), 3)})
    title = None if threshold is None else f"Foreground probability (threshold {threshold:.2f})"
    return _image_layout(fig, h, w, height=height, title=title)


# --------------------------------------------------------------------------------------------------
# charts
# --------------------------------------------------------------------------------------------------
def probability_histogram_figure(
    shares: np.ndarray, edges: np.ndarray, *, threshold: float | None = None, height: int = 130
) -> go.Figure:
    """Small bar chart of pixel shares per probability bin (log scale: a few uncertain pixels stay
    visible next to the 0 and 1 peaks), with the threshold as a vertical line."""
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=np.maximum(shares, 1e-6) * 100, width=np.diff(edges) * 0.9,
                           marker_color="#1f6f78",
                           hovertemplate="P %{x:.2f}: %{y:.2g}% of pixels<extra></extra>"))
    if threshold is not None:
        fig.add_vline(x=float(threshold), line_color="#d62728", line_width=2)
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=0, b=0), showlegend=False,
                      xaxis=dict(range=[0, 1], title=None, tickvals=[0, 0.1, 0.5, 0.9, 1]),
                      yaxis=dict(type="log", title="% px", range=[-4, 2], tickvals=[0.001, 0.1, 10],
                                 ticktext=["0.001", "0.1", "10"]))
    return fig

def _chart_layout(
    fig: go.Figure, *, title: str | None, xtitle: str, ytitle: str, height: int = 340
) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40 if title or fig.layout.annotations else 10, b=10),
        xaxis_title=xtitle,
        yaxis_title=ytitle,
        bargap=0.05,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
    )
    return fig


def _histogram_bars(
    values: np.ndarray, *, nbins: int | None, color: str, what: str, unit: str = ""
) -> go.Figure:
    """Bars of a histogram computed here (exact integer counts, bin ranges in the hover)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return go.Figure(go.Bar(x=[], y=[], marker_color=color))
    if nbins is None:
        nbins = int(min(40, max(5, round(2 * math.sqrt(v.size)))))
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=nbins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    text = [f"{a:.4g}–{b:.4g}{unit}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure(
        go.Bar(
            x=centres,
            y=counts,
            width=np.diff(edges),
            marker_color=color,
            customdata=text,
            hovertemplate=f"%{{customdata}}<br>%{{y}} {what}<extra></extra>",
        )
    )
    top = int(counts.max())
    fig.update_yaxes(rangemode="tozero", dtick=max(1, math.ceil(top / 6)) if top <= 60 else None)
    return fig


def area_histogram(
    objects: pd.DataFrame,
    *,
    pixel_size_um: float | None = None,
    min_area_px: float | None = None,
    max_area_px: float | None = None,
    nbins: int | None = None,
) -> go.Figure:
    """Histogram of object areas (px, or µm² when ``pixel_size_um``), with the area bounds as lines."""
    areas = objects["area_px"].to_numpy(np.float64) if "area_px" in objects else np.zeros(0)
    factor, unit = (pixel_size_um**2, "µm²") if pixel_size_um else (1.0, "px")
    fig = _histogram_bars(areas * factor, nbins=nbins, color="#4c78a8", what="objects", unit=f" {unit}")
    for value, name, dash in ((min_area_px, "min area", "dash"), (max_area_px, "max area", "dot")):
        if value:
            fig.add_vline(
                x=value * factor,
                line=dict(color="#e45756", dash=dash),
                annotation_text=f"{name} {value * factor:g}",
                annotation_position="top",
            )
    return _chart_layout(fig, title=None, xtitle=f"area ({unit})", ytitle="objects")


def count_histogram(counts: Sequence[float] | pd.Series, *, nbins: int | None = None) -> go.Figure:
    """Histogram of counts per image (about 2 sqrt(n) bins, 5-40, unless ``nbins``)."""
    c = pd.to_numeric(pd.Series(counts), errors="coerce").dropna().to_numpy(np.float64)
    fig = _histogram_bars(c, nbins=nbins, color="#4c78a8", what="images")
    return _chart_layout(fig, title=None, xtitle="count per image", ytitle="images")


def _identity_scatter(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str] | None,
    *,
    xtitle: str,
    ytitle: str,
    title: str | None,
    line_name: str,
) -> go.Figure:
    hi = float(np.nanmax(np.concatenate([x, y, [1.0]]))) * 1.08 if len(x) else 1.0
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, hi],
            y=[0, hi],
            mode="lines",
            name=line_name,
            line=dict(color="#888", dash="dash"),
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            name="images",
            text=list(names) if names is not None else None,
            marker=dict(size=9, color="#4c78a8", line=dict(width=1, color="white")),
            hovertemplate=f"%{{text}}<br>{xtitle}: %{{x:.4g}}<br>{ytitle}: %{{y:.4g}}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[0, hi])
    fig.update_yaxes(range=[0, hi], scaleanchor="x", scaleratio=1)
    return _chart_layout(fig, title=title, xtitle=xtitle, ytitle=ytitle, height=420)


def pred_vs_true_scatter(
    df: pd.DataFrame,
    *,
    true_col: str = "true",
    pred_col: str = "pred",
    name_col: str = "file",
    title: str | None = None,
) -> go.Figure:
    """Predicted vs true count per image, with the y = x line (points above it are over-counts)."""
    names = df[name_col].astype(str).tolist() if name_col in df else None
    return _identity_scatter(
        df[true_col].to_numpy(np.float64),
        df[pred_col].to_numpy(np.float64),
        names,
        xtitle="true count",
        ytitle="predicted count",
        title=title,
        line_name="y = x (perfect)",
    )


def error_histogram(df: pd.DataFrame, *, col: str = "error", nbins: int | None = None) -> go.Figure:
    """Histogram of signed count errors (predicted - true), with zero marked."""
    e = pd.to_numeric(df[col], errors="coerce").dropna().to_numpy(np.float64) if col in df else np.zeros(0)
    fig = _histogram_bars(e, nbins=nbins, color="#f58518", what="images")
    fig.add_vline(x=0, line=dict(color="#444", dash="dash"))
    return _chart_layout(fig, title=None, xtitle="count error (predicted - true)", ytitle="images")


def agreement_scatter(
    df: pd.DataFrame, a: str, b: str, *, name_col: str = "file", title: str | None = None
) -> go.Figure:
    """Counts of configuration ``a`` (x) vs ``b`` (y), one point per image, with y = x (agreement)."""
    names = df[name_col].astype(str).tolist() if name_col in df else None
    return _identity_scatter(
        pd.to_numeric(df[a], errors="coerce").to_numpy(np.float64),
        pd.to_numeric(df[b], errors="coerce").to_numpy(np.float64),
        names,
        xtitle=f"count: {a}",
        ytitle=f"count: {b}",
        title=title,
        line_name="y = x (agreement)",
    )


def stage_times_figure(seconds: Mapping[str, float]) -> go.Figure:
    """Horizontal bars of time per pipeline stage, in milliseconds."""
    names = list(seconds)
    ms = [1000.0 * float(seconds[k]) for k in names]
    fig = go.Figure(
        go.Bar(
            x=ms,
            y=names,
            orientation="h",
            marker_color="#54a24b",
            text=[f"{v:.0f} ms" for v in ms],
            textposition="auto",
            hovertemplate="%{y}: %{x:.1f} ms<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _chart_layout(fig, title=None, xtitle="time (ms)", ytitle="", height=60 + 36 * max(len(names), 1))


def model_times_figure(
    df: pd.DataFrame, *, config_col: str = "config", seconds_col: str = "seconds"
) -> go.Figure:
    """Mean time per image for each configuration (bars, ms), from a long table of timings."""
    g = df.groupby(config_col, sort=False)[seconds_col].mean() * 1000.0
    fig = go.Figure(
        go.Bar(
            x=g.index.astype(str),
            y=g.to_numpy(),
            marker_color="#54a24b",
            text=[f"{v:.0f} ms" for v in g.to_numpy()],
            textposition="auto",
            hovertemplate="%{x}: %{y:.1f} ms per image<extra></extra>",
        )
    )
    return _chart_layout(fig, title=None, xtitle="", ytitle="mean time per image (ms)")


def training_curve(history: pd.DataFrame, *, step_col: str = "step") -> go.Figure:
    """Training loss and validation count MAE against the step (two y axes)."""
    fig = go.Figure()
    if "loss" in history:
        fig.add_trace(
            go.Scatter(
                x=history[step_col],
                y=history["loss"],
                name="training loss",
                mode="lines+markers",
                line=dict(color="#4c78a8"),
            )
        )
    if "mae" in history:
        fig.add_trace(
            go.Scatter(
                x=history[step_col],
                y=history["mae"],
                name="validation MAE",
                mode="lines+markers",
                line=dict(color="#f58518"),
                yaxis="y2",
            )
        )
        fig.update_layout(
            yaxis2=dict(title="validation MAE (cells)", overlaying="y", side="right", showgrid=False)
        )
    return _chart_layout(fig, title=None, xtitle="step", ytitle="loss", height=300)


def ground_truth_overlay(image: np.ndarray, labels: np.ndarray | None, *, thickness: int = 1) -> np.ndarray:
    """Ground-truth outlines (cyan) on the image, for side-by-side comparison with a prediction."""
    if labels is None:
        return to_rgb(image).copy()
    return outline_overlay(image, labels, colors={"kept": _GT_COLOR}, thickness=thickness)


def points_overlay(image: np.ndarray, points: np.ndarray | None, *, zoom: int = 1, radius_px: float = 4.0,
                   color: RGB = _GT_COLOR) -> np.ndarray:
    """uint8 (H * zoom, W * zoom, 3) picture of ``image`` (contrast-stretched, enlarged ``zoom`` times without
    smoothing) with each point (row, col) drawn as an open circle of ``radius_px`` image pixels and a centre
    dot, for annotating by clicking."""
    import cv2

    if zoom < 1:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    rgb = display_image(image)
    if zoom > 1:
        rgb = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
    out = np.ascontiguousarray(rgb, np.uint8).copy()
    if points is None:
        return out
    r = max(int(round(radius_px * zoom)), 3)
    for row, col in np.asarray(points, np.float64).reshape(-1, 2):
        centre = (int((col + 0.5) * zoom), int((row + 0.5) * zoom))
        cv2.circle(out, centre, r, color, thickness=max(1, zoom // 2), lineType=cv2.LINE_AA)
        cv2.circle(out, centre, max(1, zoom // 2), color, thickness=-1)
    return out


def points_figure(
    image: np.ndarray, points: np.ndarray | None, *, name: str = "ground truth", height: int | None = None
) -> go.Figure:
    """Image with point annotations (row, col) as markers."""
    fig = image_figure(image, height=height)
    if points is not None and len(points):
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        fig.add_trace(
            go.Scatter(
                x=pts[:, 1],
                y=pts[:, 0],
                mode="markers",
                name=f"{name} ({len(pts)})",
                marker=dict(symbol="circle-open", size=9, color=_hex(_GT_COLOR)),
            )
        )
    return fig


ERROR_SORTS = ("error", "abs_error", "file", "true")
"""Orders of :func:`error_bars`: signed error (most under-counted first), absolute error (largest first),
file name, true count."""


def error_bars(
    df: pd.DataFrame,
    *,
    sort_by: str = "error",
    col: str = "error",
    name_col: str = "file",
    true_col: str = "true",
    pred_col: str = "pred",
) -> go.Figure:
    """Signed count error (predicted - true) per image as horizontal bars, one row per image.

    Over-counts point right in orange, under-counts left in blue; rows are ordered by ``sort_by`` (one of
    :data:`ERROR_SORTS`), the first at the top. Hover shows the file, true and predicted counts.
    """
    if sort_by not in ERROR_SORTS:
        raise ValueError(f"sort_by must be one of {ERROR_SORTS}, got {sort_by!r}")
    d = df[[c for c in (name_col, true_col, pred_col, col) if c in df]].copy()
    d[col] = pd.to_numeric(d[col], errors="coerce")
    d = d.dropna(subset=[col])
    if sort_by == "abs_error":
        d = d.assign(_key=d[col].abs()).sort_values("_key", ascending=False, kind="stable")
    else:
        key = {"error": col, "file": name_col, "true": true_col}[sort_by]
        d = d.sort_values(key, kind="stable") if key in d else d
    names = d[name_col].astype(str).tolist() if name_col in d else [str(i) for i in range(len(d))]
    err = d[col].to_numpy(np.float64)
    colors = np.where(err > 0, "#f58518", np.where(err < 0, "#4c78a8", "#999999"))
    custom = np.stack([d[true_col] if true_col in d else np.full(len(d), np.nan),
                       d[pred_col] if pred_col in d else np.full(len(d), np.nan)], axis=-1)
    fig = go.Figure(
        go.Bar(
            x=err,
            y=names,
            orientation="h",
            marker_color=colors.tolist(),
            customdata=custom,
            hovertemplate="%{y}<br>true %{customdata[0]:.0f}, predicted %{customdata[1]:.1f}"
            "<br>error %{x:+.1f}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line=dict(color="#444", width=1))
    height = int(min(900, max(260, 22 * len(d) + 90)))
    _chart_layout(fig, title=None, xtitle="count error (predicted - true): left under-counts, right over-counts",
                  ytitle="", height=height)
    fig.update_yaxes(autorange="reversed", type="category", automargin=True)
    fig.update_layout(bargap=0.25)
    return fig
