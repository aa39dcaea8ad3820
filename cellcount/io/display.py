"""Display: any image -> a uint8 RGB picture for overlays and the app (never a model input)."""

from __future__ import annotations

import numpy as np

from cellcount.errors import ImageReadError

from .normalize import _finite_float32, _usable_range, without_alpha
from .percentile import percentiles


def image_to_display_rgb(image: np.ndarray, *, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Make a uint8 (H, W, 3) picture of any image, for overlays and the app.

    A colour uint8 RGB image (channels not all equal) is returned unchanged (a copy), so stains keep
    their colours. Everything else is percentile-stretched: grayscale (also grayscale stored as RGB) is
    repeated into three channels; 2 channels map to red and green; 3 or more channels use the first three
    as RGB, each channel stretched on its own (like a composite in Fiji).

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C), any real dtype.
    low_pct, high_pct : float
        Percentiles mapped to 0 and 255.

    Returns
    -------
    numpy.ndarray
        uint8 (H, W, 3), a new array.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ImageReadError(f"expected an image of shape (H, W) or (H, W, C), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        arr = without_alpha(arr)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        if not (np.array_equal(arr[:, :, 0], arr[:, :, 1]) and np.array_equal(arr[:, :, 0], arr[:, :, 2])):
            return arr.copy()
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        channels = [arr, arr, arr]
    else:
        channels = [arr[:, :, c] for c in range(min(arr.shape[2], 3))]
    out = np.zeros(arr.shape[:2] + (3,), dtype=np.uint8)
    stretched: dict[int, np.ndarray] = {}
    for c, ch in enumerate(channels):
        key = id(ch) if arr.ndim == 2 else c
        if key not in stretched:
            g = _finite_float32(ch)
            lo, hi = (float(v) for v in percentiles(g, [low_pct, high_pct]))
            if not _usable_range(lo, hi):
                lo, hi = float(g.min()), float(g.max())
            if _usable_range(lo, hi):
                with np.errstate(over="ignore"):
                    stretched[key] = np.clip((g - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)
            else:
                stretched[key] = np.zeros(g.shape, dtype=np.uint8)
        out[:, :, c] = stretched[key]
    return out
