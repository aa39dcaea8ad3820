"""Interactive plotly figures of images: the image, its outlines, probability and density maps, points.

Figures put pixel centres at integer coordinates with x = column and y = row (row 0 at the top), so hover
coordinates match the object table.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from .arrays import GROUND_TRUTH_COLOR, RGB, to_rgb

_PLOT_MAX_SIDE = 400  # heat maps are block-averaged to at most this many cells per side


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
    # the title below the row the plot's toolbar takes on hover (it covered a side-by-side title's end), and a
    # 2-row legend below the title
    toolbar = 26 if title else 0
    lines = title.count("<br>") + 1 if title else 0  # a side-by-side panel's name on a line of its own
    top = (toolbar + 28 + 20 * (lines - 1) if title else 0) + (48 if has_legend else 10)
    fig.update_layout(
        height=height + top,
        margin=dict(l=0, r=0, t=top, b=0),
        title=dict(text=title, x=0, xanchor="left", y=1 - toolbar / (height + top), yref="container", yanchor="top")
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
                # a thin grey rim: a white chip (unmatched objects on dark images) vanishes on the white page
                marker=dict(symbol="square", size=12, color=_hex(color), line=dict(width=1, color="#888888")),
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
    title: str | None = None,
) -> go.Figure:
    """Density map as a translucent heat map over the image, with peak markers (approximate centres).

    The colour bar is in cells per pixel (the map integrates to the count); block-averaged for display
    when larger than 400 pixels a side. ``count_estimate`` goes in the title, unless ``title`` is given
    (laid out with room for it: a title set afterwards is cut off at the top).
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
    if title is None and count_estimate is not None:
        title = f"Integrated count: {count_estimate:.1f}"
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


def points_figure(
    image: np.ndarray, points: np.ndarray | None, *, name: str = "ground truth", height: int | None = None,
    missed: np.ndarray | None = None, missed_color: tuple[int, int, int] | None = None, title: str | None = None,
    legend: bool = True,
) -> go.Figure:
    """Image with point annotations (row, col) as markers; ``missed``: indices of the points no object matched,
    drawn again, filled, in ``missed_color`` with their own legend entry; ``legend=False``: none (a panel beside
    others without one, its picture at their height)."""
    fig = image_figure(image, height=height, title=title)
    if points is not None and len(points):
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        fig.add_trace(
            go.Scatter(
                x=pts[:, 1],
                y=pts[:, 0],
                mode="markers",
                name=f"{name} ({len(pts)})",
                marker=dict(symbol="circle-open", size=9, color=_hex(GROUND_TRUTH_COLOR)),
            )
        )
        if missed is not None and len(missed):
            lost = pts[np.asarray(missed, np.int64)]
            fig.add_trace(go.Scatter(x=lost[:, 1], y=lost[:, 0], mode="markers", name=f"missed ({len(lost)})",
                                     marker=dict(symbol="circle", size=9,
                                                 color=_hex(missed_color or GROUND_TRUTH_COLOR),
                                                 # outlined: a white dot vanishes in the legend's white
                                                 line=dict(color="#000000", width=1))))
    if not legend:  # the markers' entries only: the picture (a go.Image) has no legend property
        fig.update_traces(showlegend=False, selector=dict(type="scatter"))
    # laid out again with the markers' legend entries: room for them under a title
    return _image_layout(fig, *np.shape(image)[:2], height=height, title=title)
