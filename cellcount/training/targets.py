"""Training targets: density maps that sum exactly to the count, foreground and touching-border masks."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..sizing import DENSITY_SIGMA_SCALE  # the inference side reads nucleus sizes back with the same value


def density_from_labels(
    labels: np.ndarray, *, sigma_scale: float = DENSITY_SIGMA_SCALE, min_sigma: float = 1.0
) -> np.ndarray:
    """Gaussian density map with unit mass per labelled object.

    Parameters
    ----------
    labels : (H, W) integer array
        Instance labels, 0 = background.
    sigma_scale : float
        Gaussian sigma as a fraction of the object's equivalent diameter (wider nuclei, wider kernels).
    min_sigma : float
        Lower bound on sigma in pixels.

    Returns
    -------
    (H, W) float32 array whose sum equals the number of objects (each kernel is truncated at the image
    border and renormalised, so mass is exact).
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.float64)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return out.astype(np.float32)
    areas = ndi.sum_labels(np.ones_like(labels, np.float64), labels, ids)
    cents = np.array(ndi.center_of_mass(np.ones_like(labels, np.float64), labels, ids)).reshape(-1, 2)
    return density_from_points(cents, labels.shape, sigmas=np.maximum(
        min_sigma, sigma_scale * np.sqrt(4 * areas / np.pi)))


def density_from_points(
    points: np.ndarray, shape: tuple[int, int], *, sigmas: np.ndarray | float = 2.0
) -> np.ndarray:
    """Unit-mass Gaussians at ``points`` ((N, 2) row/col). Returns (H, W) float32 summing to N."""
    h, w = shape
    out = np.zeros((h, w), np.float64)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    sig = np.broadcast_to(np.asarray(sigmas, np.float64), (len(pts),))
    for (r, c), s in zip(pts, sig):
        rad = int(np.ceil(3 * s))
        r0, r1 = max(int(r) - rad, 0), min(int(r) + rad + 1, h)
        c0, c1 = max(int(c) - rad, 0), min(int(c) + rad + 1, w)
        if r0 >= r1 or c0 >= c1:
            continue
        yy = np.arange(r0, r1)[:, None] - r
        xx = np.arange(c0, c1)[None, :] - c
        k = np.exp(-(yy**2 + xx**2) / (2 * s * s))
        out[r0:r1, c0:c1] += k / k.sum()
    return out.astype(np.float32)


def touching_border(labels: np.ndarray, *, width: int = 1) -> np.ndarray:
    """Boolean map of pixels where two different objects meet (dilated by ``width``).

    These pixels separate touching nuclei; a mask model that predicts them lets watershed split clumps.
    """
    labels = np.asarray(labels)
    lab = labels.astype(np.int64)
    # sentinel for background just above every label (scipy's minimum_filter wraps int64 max to int64 min)
    big = int(lab.max(initial=0)) + 1
    mx = ndi.maximum_filter(lab, size=3)
    mn = ndi.minimum_filter(np.where(lab == 0, big, lab), size=3)
    border = (mx > 0) & (mn != big) & (mx != mn)
    if width > 0:
        border = ndi.binary_dilation(border, iterations=width)
    return border


def boundary_band(labels: np.ndarray, *, width: int = 1) -> np.ndarray:
    """Boolean band along every object's outline (background edges and contacts), dilated by ``width``.

    The mask models' second channel: removing this band from the foreground leaves one separated core
    per nucleus, which seeds the watershed (the contour approach of the DSB 2018 winners). The band
    is about ``2 * width + 2`` px wide.
    """
    lab = np.asarray(labels).astype(np.int64)
    edge = ndi.maximum_filter(lab, size=3) != ndi.minimum_filter(lab, size=3)
    if width > 0:
        edge = ndi.binary_dilation(edge, iterations=width)
    return edge


CONTACT = 2
"""Value of a band pixel that lies where two nuclei touch, in :func:`border_target`."""


def border_target(labels: np.ndarray, *, width: int = 1) -> np.ndarray:
    """uint8 target of the mask models' second channel: 1 on :func:`boundary_band`, ``CONTACT`` (2) on
    its pixels within :func:`touching_border` (the thin lines between touching nuclei).

    The contact pixels are a few percent of the band but decide whether a clump splits; keeping them
    distinguishable lets the loss weight them (``loss.contact_weight``). ``target > 0`` is the band.
    """
    band = boundary_band(labels, width=width)
    out = band.astype(np.uint8)
    out[band & touching_border(labels, width=width)] = CONTACT
    return out
