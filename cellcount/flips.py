"""Test-time flips: a model's maps averaged over the image and its mirror images."""

from __future__ import annotations

import numpy as np

from .protocols import ModelLike, backend_kw

FLIPS: tuple[tuple[int, ...], ...] = ((), (1,), (0,), (0, 1))
"""Test-time flips: identity, left-right, up-down, both (axes of the (H, W) image)."""


def flip_averaged_maps(
    model: ModelLike, image_norm: np.ndarray, *, progress=None, fast: bool = True, backend: str | None = None
) -> np.ndarray:
    """Mean of ``model.predict_maps`` over the image and its three flips, each flipped back.

    A fully convolutional network is not exactly flip-equivariant, so the four views disagree a little
    near the decision boundary; their mean is steadier (docs/RESULTS.md: ``scripts/quality_probes.py`` measures
    it on the DSB validation split). A density map stays a density map: the mean of four count maps.
    """
    return flip_maps(model, image_norm, progress=progress, fast=fast, backend=backend)[0]


def flip_maps(
    model: ModelLike, image_norm: np.ndarray, *, progress=None, fast: bool = True, backend: str | None = None
) -> tuple[np.ndarray, float]:
    """(the mean maps of :func:`flip_averaged_maps`, how much the four views disagree).

    The disagreement feeds the quality flag: for a density map, the spread of the four views' counts
    relative to their mean (plus 2 nuclei of slack); otherwise the share of the pixels some view calls
    foreground (channel 0 > 0.5) that another view does not.
    """
    acc: np.ndarray | None = None
    fg_any = fg_all = None
    totals = []
    for k, axes in enumerate(FLIPS):
        view = np.ascontiguousarray(np.flip(image_norm, axes)) if axes else image_norm
        step = None if progress is None else (lambda d, t, k=k: progress(k * t + d, len(FLIPS) * t))
        maps = model.predict_maps(view, progress=step, fast=fast, **backend_kw(backend))
        maps = np.flip(maps, tuple(a + 1 for a in axes)) if axes else maps
        fg = maps[0] > 0.5
        fg_any = fg if fg_any is None else fg_any | fg
        fg_all = fg if fg_all is None else fg_all & fg
        totals.append(float(maps[0].sum(dtype=np.float64)))
        if acc is None:
            acc = np.array(maps, dtype=np.float32, copy=True)
        else:
            acc += maps
    assert acc is not None and fg_any is not None and fg_all is not None
    acc /= np.float32(len(FLIPS))
    if getattr(model, "output_kind", "mask") == "density":
        disagreement = (max(totals) - min(totals)) / (float(np.mean(totals)) + 2.0)
    else:
        n = int(np.count_nonzero(fg_any))
        disagreement = float(np.count_nonzero(fg_any & ~fg_all)) / n if n else 0.0
    return acc, disagreement
