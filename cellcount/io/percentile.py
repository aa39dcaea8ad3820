"""``np.percentile`` of image intensities, from a histogram where the pixels are integers.

Normalising an image takes two percentile calls (the background test and the limits); on a 512 x 512
image each sorts a quarter of a million floats, more than everything else the normalisation does. Pixels read from 8- and 16-bit files are integers, whose order statistics a histogram
gives in a fraction of that. The values returned are ``np.percentile``'s (its default ``linear`` method,
the same float operations), so nothing downstream changes; other images go to ``np.percentile`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HISTOGRAM_SPAN = 1 << 16
"""Integer images whose values span at most this many levels (any 8- or 16-bit image) use a histogram."""
_EXACT_FLOAT32 = float(1 << 24)
"""Integers up to this magnitude are exact in float32 (and their differences too)."""


def percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, q)`` over all of ``values`` (float64, one per ``q``), the same numbers.

    Integer-valued pixels (an integer array of up to 32 bits, or float32 holding integers) spanning at most
    :data:`HISTOGRAM_SPAN` levels are counted in a histogram; anything else is passed to ``np.percentile``.
    """
    arr = np.asarray(values)
    hist = _histogram(arr)
    if hist is None:
        return np.percentile(arr, q)
    low, cumulative = hist
    n = arr.size
    quantiles = np.true_divide(np.asarray(q, np.float64), 100)
    if quantiles.ndim != 1 or not np.all((quantiles >= 0) & (quantiles <= 1)):
        return np.percentile(arr, q)  # np.percentile's own error for a bad q
    # np.percentile's "linear" method: the order statistics either side of (n - 1) * q, then its _lerp
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual)
    nxt = previous + 1
    top = virtual >= n - 1
    previous[top] = nxt[top] = n - 1
    a = _order_statistics(previous.astype(np.intp), low, cumulative).astype(arr.dtype)
    b = _order_statistics(nxt.astype(np.intp), low, cumulative).astype(arr.dtype)
    gamma = virtual - previous
    gamma[top] = 0.0
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe", dtype=type(out.dtype))
    return out.astype(np.float64, copy=False)


def _histogram(arr: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(lowest value, cumulative counts per level from it) for integer pixels within the span, else None."""
    # 64-bit integers go to numpy: their extremes do not fit the int64 offsets below
    if arr.size == 0 or not ((arr.dtype.kind in "iu" and arr.dtype.itemsize <= 4) or arr.dtype == np.float32):
        return None
    flat = arr.reshape(-1)
    lo, hi = flat.min(), flat.max()
    if arr.dtype.kind == "f":
        if not (np.isfinite(lo) and np.isfinite(hi) and -_EXACT_FLOAT32 <= lo and hi <= _EXACT_FLOAT32):
            return None
        if not np.array_equal(flat, np.floor(flat)):
            return None
    lo, hi = int(lo), int(hi)
    if hi - lo >= HISTOGRAM_SPAN:
        return None
    offsets = flat.astype(np.int64) - lo
    return lo, np.cumsum(np.bincount(offsets, minlength=hi - lo + 1))


def _order_statistics(ranks: np.ndarray, low: int, cumulative: np.ndarray) -> np.ndarray:
    """The values of the given 0-based ranks in the sorted pixels (int64)."""
    return low + np.searchsorted(cumulative, ranks, side="right").astype(np.int64)
