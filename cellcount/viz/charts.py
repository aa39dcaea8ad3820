"""Plotly charts of counts and errors: histograms, predicted vs true, error bars, timings, training curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go


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


MAX_UNIT_BARS = 40
"""Whole numbers spanning at most this many values get one bar each."""


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
    whole = bool(np.all(v == np.round(v)))  # counts: bins of whole numbers, centred on them, whole-number ticks
    if whole:  # one bar per whole number over a short span (errors -7..+2 in bars of 2 merged 0 with -1)
        width = 1 if hi - lo + 1 <= MAX_UNIT_BARS else max(1, math.ceil((hi - lo + 1) / nbins))
        edges = np.arange(lo - 0.5, hi + 0.5 + width, width)
        edges = edges[: int(np.searchsorted(edges, hi + 0.5)) + 1]
        counts, edges = np.histogram(v, bins=edges)
    else:
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        counts, edges = np.histogram(v, bins=nbins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    if whole:  # the whole numbers each bar holds
        spans = [(math.ceil(a), math.floor(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        text = [f"{a:,}{unit}" if a == b else f"{a:,}–{b:,}{unit}" for a, b in spans]
    else:
        text = [f"{a:.4g}–{b:.4g}{unit}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure(
        go.Bar(
            x=centres,
            y=counts,
            width=np.diff(edges),
            marker_color=color,
            marker_line=dict(color="white", width=1),  # bars that touch still read as bars
            # "1 image", "3 images" (the hover said "1 images")
            customdata=[[t, what[:-1] if n == 1 and what.endswith("s") else what] for t, n in zip(text, counts, strict=True)],
            hovertemplate="%{customdata[0]}<br>%{y} %{customdata[1]}<extra></extra>",
        )
    )
    top = int(counts.max())
    fig.update_yaxes(rangemode="tozero", dtick=max(1, math.ceil(top / 6)) if top <= 60 else None)
    if whole and edges[-1] - edges[0] <= 24:  # plotly would tick a short range at halves (27, 27.5, 28)
        fig.update_xaxes(dtick=max(1, math.ceil((edges[-1] - edges[0]) / 8)))
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
    fig = _histogram_bars(e, nbins=nbins, color="#8c8c8c", what="images")  # grey: orange means over-counts beside it (error_bars)
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
    """Median time per image for each configuration (bars, ms), from a long table of timings: a mean lets the first
    compared model's warm-up on its first image (loading, first-run kernels) read as a model several times
    slower."""
    g = df.groupby(config_col, sort=False)[seconds_col].median() * 1000.0
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
    return _chart_layout(fig, title=None, xtitle="", ytitle="median time per image (ms)")


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
            # one decimal: ticks would otherwise read 5.425, 4.592, 3.76
            yaxis2=dict(title="validation MAE (cells)", overlaying="y", side="right", showgrid=False, tickformat=".1f")
        )
    fig = _chart_layout(fig, title=None, xtitle="step", ytitle="loss", height=300)
    # whole steps (plotly's own ticks of a short run fall on halves); one tick per step where there are few
    few = len(history) and float(history[step_col].max()) - float(history[step_col].min()) <= 10
    fig.update_xaxes(tickformat="d", **({"dtick": 1} if few else {}))
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
