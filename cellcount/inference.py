"""Tiled, batched forward pass with blended overlaps.

Tiles overlap by ``overlap`` pixels and are blended with a tapered weight; the accumulated output is
divided by the accumulated weight, so the effective weights at every pixel sum to one. A density map's
integral therefore does not depend on the tiling, and an object on a seam is not counted twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from .errors import ParameterError

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each batch of tiles."""


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with windows of ``tile`` (last one flush with the end)."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    return sorted(set(starts))


def balanced_tile(length: int, tile: int, overlap: int, divisor: int = 1) -> int:
    """Smallest tile size (a multiple of ``divisor``, at most ``tile`` rounded up) that covers ``length``
    with as few tiles as ``tile`` needs.

    With the last tile flush with the end, ``tile_starts`` can make the last tile overlap its neighbour by
    almost a whole tile (1024 px with 512 px tiles and 32 px overlap: three tiles, 2.25x the pixels).
    Shrinking the tiles to share the length evenly keeps the overlap near ``overlap`` and the wasted
    work small, without changing the number of forward passes.
    """
    tile = _round_up(tile, divisor)
    if length <= tile:
        return _round_up(length, divisor)
    stride = max(tile - overlap, 1)
    n = math.ceil((length - tile) / stride) + 1
    return min(tile, _round_up(math.ceil((length + (n - 1) * overlap) / n), divisor))


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) float32 weights: 1 in the middle, linear ramps over ``overlap`` px at the edges."""
    return np.outer(_ramp(tile, overlap), _ramp(tile, overlap))


def _round_up(x: int, m: int) -> int:
    return ((x + m - 1) // m) * m


@torch.inference_mode()
def predict_tiled(
    net: torch.nn.Module,
    image: np.ndarray,
    *,
    out_channels: int,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 4,
    divisor: int = 16,
    device: torch.device | str | None = None,
    channels_last: bool = True,
    progress: ProgressFn | None = None,
    balanced: bool = False,
) -> np.ndarray:
    """Run ``net`` over ``image`` in overlapping tiles and blend the outputs.

    Parameters
    ----------
    net : torch.nn.Module
        Fully convolutional network mapping (B, 1, h, w) to (B, out_channels, h, w); in eval mode.
    image : (H, W) float32
        Normalised image.
    tile, overlap : int
        Tile size (rounded up to a multiple of ``divisor``) and overlap between neighbours, px.
    batch_size : int
        Tiles per forward pass.
    device : torch.device or str, optional
        Defaults to CUDA when present, else CPU.
    channels_last : bool
        Use the NHWC memory format (faster convolutions on CPU).
    progress : callable, optional
        ``progress(done_tiles, total_tiles)`` after each batch.
    balanced : bool
        Shrink the tiles (see :func:`balanced_tile`) so that they share each axis evenly: same number
        of tiles, less overlap work. Off by default so that the plain path keeps its tiling.

    Returns
    -------
    (out_channels, H, W) float32 raw network output (logits or density), blended.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ParameterError(f"predict_tiled expects a (H, W) image, got shape {image.shape}")
    if tile < divisor or overlap < 0 or batch_size < 1:
        raise ParameterError(f"need tile >= {divisor}, overlap >= 0, batch_size >= 1")
    device = torch.device(device) if device is not None else default_device()
    h, w = image.shape
    tile = _round_up(tile, divisor)
    # Small images: one tile of the padded image size (no wasted work on a full 256 tile).
    if balanced:
        th, tw = balanced_tile(h, tile, overlap, divisor), balanced_tile(w, tile, overlap, divisor)
    else:
        th, tw = min(tile, _round_up(h, divisor)), min(tile, _round_up(w, divisor))
    overlap = min(overlap, th // 2, tw // 2)
    ph, pw = max(h, th), max(w, tw)
    # reflect-pad to the tile grid; symmetric handles 1-pixel images too
    padded = np.pad(image, ((0, ph - h), (0, pw - w)), mode="symmetric") if (ph, pw) != (h, w) else image
    rows = tile_starts(ph, th, th - overlap)
    cols = tile_starts(pw, tw, tw - overlap)
    coords = [(r, c) for r in rows for c in cols]
    window = np.outer(_ramp(th, overlap), _ramp(tw, overlap))
    acc = np.zeros((out_channels, ph, pw), np.float32)
    wsum = np.zeros((ph, pw), np.float32)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    total = len(coords)
    for start in range(0, total, batch_size):
        chunk = coords[start:start + batch_size]
        batch = np.stack([padded[r:r + th, c:c + tw] for r, c in chunk])[:, None]
        x = torch.from_numpy(batch).to(device).contiguous(memory_format=fmt)
        with torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext():
            y = net(x)
        y = y.float().cpu().numpy()
        for (r, c), out in zip(chunk, y):
            acc[:, r:r + th, c:c + tw] += out * window
            wsum[r:r + th, c:c + tw] += window
        if progress is not None:
            progress(min(start + batch_size, total), total)
    acc /= wsum  # in place: no second full-size map (matters for 4096 x 4096 images)
    if (ph, pw) == (h, w):
        return acc
    return np.ascontiguousarray(acc[:, :h, :w])


def _ramp(n: int, overlap: int) -> np.ndarray:
    w = np.ones(n, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
        w[:overlap] = ramp
        w[n - overlap:] = ramp[::-1]
    return w
