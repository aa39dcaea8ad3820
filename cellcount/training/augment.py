"""Augmentation applied consistently to an image and its targets.

A sample is ``(image, targets)`` with image (H, W) float32 and targets a dict of (H, W) arrays whose
kind is given by name: ``density`` (mass preserved under every transform), ``mask``/``border`` (nearest).
"""

from __future__ import annotations

import cv2
import numpy as np


def _warp(arr: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, *, nearest: bool) -> np.ndarray:
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(arr, map_x, map_y, interp, borderMode=cv2.BORDER_REFLECT_101)


def random_crop_scaled(
    image: np.ndarray,
    targets: dict[str, np.ndarray],
    *,
    size: int,
    scale: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Crop a ``size / scale`` window and resize it to ``size`` (scale jitter), preserving density mass."""
    h, w = image.shape
    src = max(int(round(size / scale)), 8)
    pad_h, pad_w = max(src - h, 0), max(src - w, 0)
    if pad_h or pad_w:  # small images: pad with background (zeros) rather than reflect nuclei
        image = np.pad(image, ((0, pad_h), (0, pad_w)))
        targets = {k: np.pad(v, ((0, pad_h), (0, pad_w))) for k, v in targets.items()}
        h, w = image.shape
    r0 = int(rng.integers(0, h - src + 1))
    c0 = int(rng.integers(0, w - src + 1))
    sl = (slice(r0, r0 + src), slice(c0, c0 + src))
    img = cv2.resize(np.ascontiguousarray(image[sl]), (size, size), interpolation=cv2.INTER_LINEAR)
    out = {}
    for k, v in targets.items():
        crop = np.ascontiguousarray(v[sl])
        if k == "density":
            mass = float(crop.sum())
            res = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if src > size else cv2.INTER_LINEAR)
            tot = float(res.sum())
            out[k] = (res * (mass / tot) if tot > 0 else res).astype(np.float32)
        else:
            out[k] = cv2.resize(crop.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    return img.astype(np.float32), out


def flip_rotate(
    image: np.ndarray, targets: dict[str, np.ndarray], *, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Random horizontal/vertical flips and 90-degree rotations (exact for every target kind)."""
    k = int(rng.integers(0, 4))
    fh, fv = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))

    def t(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k)
        if fh:
            a = a[:, ::-1]
        if fv:
            a = a[::-1]
        return np.ascontiguousarray(a)

    return t(image), {name: t(v) for name, v in targets.items()}


def elastic(
    image: np.ndarray,
    targets: dict[str, np.ndarray],
    *,
    rng: np.random.Generator,
    alpha: float = 6.0,
    sigma: float = 10.0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Smooth random displacement field (max ~alpha px); image bilinear, masks nearest, density mass kept."""
    h, w = image.shape
    grid = max(h // int(sigma), 2), max(w // int(sigma), 2)
    dx = cv2.resize(rng.uniform(-1, 1, grid).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC) * alpha
    dy = cv2.resize(rng.uniform(-1, 1, grid).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC) * alpha
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = xx + dx, yy + dy
    img = _warp(image, mx, my, nearest=False)
    out = {}
    for k, v in targets.items():
        if k == "density":
            mass = float(v.sum())
            res = _warp(v, mx, my, nearest=False)
            tot = float(res.sum())
            out[k] = (res * (mass / tot) if tot > 0 else res).astype(np.float32)
        else:
            out[k] = _warp(v, mx, my, nearest=True)
    return img, out


def intensity(image: np.ndarray, *, rng: np.random.Generator, invert_p: float = 0.05,
              strength: float = 1.0) -> np.ndarray:
    """Brightness/contrast/gamma jitter, occasional blur, Gaussian noise and contrast inversion.

    ``strength`` scales the gamma, contrast and brightness ranges (1: gamma exp(+-0.4), contrast x0.7-1.3,
    offset +-0.1; 0: none), so that a fine-tune on one set, imaged one way, can keep what brightness says
    (overlapping fluorescent cells add up)."""
    img = image.astype(np.float32)
    if rng.random() < invert_p:
        img = 1.0 - img
    g, c, b = 0.4 * strength, 0.3 * strength, 0.1 * strength
    img = np.clip(img, 0, None) ** float(np.exp(rng.uniform(-g, g)))
    img = img * rng.uniform(1 - c, 1 + c) + rng.uniform(-b, b)
    if rng.random() < 0.2:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(0.0, 0.06), img.shape).astype(np.float32)
    return img.astype(np.float32)


def hed_jitter(rgb: np.ndarray, *, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.05) -> np.ndarray:
    """Stain-space colour augmentation of an RGB brightfield image (Tellez et al. 2018).

    Each haematoxylin / eosin / DAB optical-density channel is scaled by ``1 + N(0, sigma)`` and shifted
    by ``U(-bias, bias)`` times its mean, so stain strength and hue vary as between labs and scanners.
    Returns the same dtype as ``rgb``.
    """
    from skimage.color import hed2rgb, rgb2hed

    dtype = rgb.dtype
    top = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0
    hed = rgb2hed(np.clip(rgb.astype(np.float32) / top, 0, 1))
    alpha = 1.0 + rng.normal(0, sigma, 3)
    beta = rng.uniform(-bias, bias, 3) * np.abs(hed.reshape(-1, 3).mean(0))
    out = np.clip(hed2rgb(hed * alpha + beta), 0, 1) * top
    return (np.rint(out) if np.issubdtype(dtype, np.integer) else out).astype(dtype)


def augment(
    image: np.ndarray,
    targets: dict[str, np.ndarray],
    *,
    size: int,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.6, 1.6),
    elastic_p: float = 0.3,
    invert_p: float = 0.05,
    wide_scale_p: float = 0.0,
    wide_scale_range: tuple[float, float] = (0.25, 4.0),
    intensity_strength: float = 1.0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The full training augmentation: scaled crop, flips/rotations, elastic, intensity (its ranges scaled by
    ``intensity_strength``, see :func:`intensity`).

    With probability ``wide_scale_p`` the scale is drawn from ``wide_scale_range`` instead: nuclei of
    every size a user may bring, so a density head still reads their size off its map, while most crops
    stay near the training size that inference resizes images to.
    """
    if rng.random() < wide_scale_p:
        scale_range = wide_scale_range
    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    scale = float(np.exp(rng.uniform(lo, hi)))
    img, tg = random_crop_scaled(image, targets, size=size, scale=scale, rng=rng)
    img, tg = flip_rotate(img, tg, rng=rng)
    if rng.random() < elastic_p:
        img, tg = elastic(img, tg, rng=rng)
    return intensity(img, rng=rng, invert_p=invert_p, strength=intensity_strength), tg
