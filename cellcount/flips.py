"""Test-time flips: a model's maps averaged over the image and its mirror images."""

from __future__ import annotations

import numpy as np

from .protocols import ModelLike as CountModel
from .protocols import backend_kw

FLIPS: tuple[tuple[int, ...], ...] = ((), (1,), (0,), (0, 1))
"""Test-time flips: identity, left-right, up-down, both (axes of the (H, W) image)."""


def flip_averaged_maps(
    model: CountModel, image_norm: np.ndarray, *, progress=None, fast: bool = True, backend: str | None = None
) -> np.ndarray:
    """Mean of ``model.predict_maps`` over the image and its three flips, each flipped back.

    A fully convolutional network is not exactly flip-equivariant, so the four views disagree a little
    near the decision boundary; their mean is steadier (docs/RESULTS.md: ``scripts/quality_probes.py`` measures
    it on the DSB validation split). A density map stays a density map: the mean of four count maps.
    """
    acc: np.ndarray | None = None
    for k, axes in enumerate(FLIPS):
        view = np.ascontiguousarray(np.flip(image_norm, axes)) if axes else image_norm
        step = None if progress is None else (lambda d, t, k=k: progress(k * t + d, len(FLIPS) * t))
        maps = model.predict_maps(view, progress=step, fast=fast, **backend_kw(backend))
        maps = np.flip(maps, tuple(a + 1 for a in axes)) if axes else maps
        if acc is None:
            acc = np.array(maps, dtype=np.float32, copy=True)
        else:
            acc += maps
    assert acc is not None
    acc /= np.float32(len(FLIPS))
    return acc
