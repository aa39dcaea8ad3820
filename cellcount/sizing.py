"""Nucleus size: estimating it, and resizing images and maps so nuclei reach the size a model learnt.

A model that learnt nuclei of about 18 px cuts 40-50 px nuclei into pieces and merges very small ones; the
pipeline resizes its input by :func:`model_scale` and the maps back by :func:`resize_maps`. The size comes
from the user (``nucleus_diameter_px``) or, with ``auto_nucleus_size``, from a first pass:
:func:`density_nucleus_diameter` reads it off a density map, :func:`estimate_nucleus_diameter` needs a
second (density) model for mask models, which the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .io import DEFAULT_MAX_PIXELS
from .protocols import ModelLike, backend_kw

if TYPE_CHECKING:
    from .params import CountParams

DENSITY_SIGMA_SCALE = 0.25
"""Density targets are one unit-mass Gaussian per nucleus with sigma = this x the nucleus's equivalent
diameter (:mod:`cellcount.training.targets` draws them); :func:`density_nucleus_diameter` inverts it, so
both read this one value."""

REFERENCE_DIAMETER_PX = 18.4
"""Median nucleus diameter of the DSB 2018 training images (median over the 424 training images of each
image's median equivalent diameter; ``scripts/reference_diameter.py``): the size every shipped model was
trained at. A card may state its own as ``extra["reference_diameter_px"]``."""


def reference_diameter(card) -> float:
    """The nucleus diameter (px) a model card says its model was trained at (:data:`REFERENCE_DIAMETER_PX`
    unless it states its own)."""
    return float(card.extra.get("reference_diameter_px", REFERENCE_DIAMETER_PX))


def trained_diameter(card) -> float | None:
    """The object diameter (px, in the images' own pixels) a model fine-tuned at one size for its whole set
    learnt from (its card's ``extra["trained_diameter_px"]``), or None. The quality flag's size signal is
    measured from it: resized to the network's size by the same factor on every image, such a model sees that
    resize as its normal, not as a reason to doubt a count."""
    value = card.extra.get("trained_diameter_px")
    return float(value) if value else None


RESCALE_TOLERANCE = 1.25
"""Nuclei within this factor of the reference size are used as they are: training already showed every
image at 0.6-1.6x its size (scale augmentation), and resampling blurs a little. This value and the
[MIN_SCALE, MAX_SCALE] clamp had the lowest count MAE on 120 DSB training-split images (docs/RESULTS.md)."""

SCALE_STEPS_PER_OCTAVE = 8
"""Resize factors are rounded to this many steps per doubling (2^(1/8): about 9% apart, at most 4.5% off the
exact factor, well inside the 0.6-1.6x scale jitter the models trained with). A size estimate moves by a
percent or so with the backend and the tiling (bf16 or fp32, one tile or two), and a resize that moves with
it changed the count of a quarter to two fifths of the rescaled DSB training images between backends; on the
grid, a tenth to a quarter, at the same count MAE (docs/RESULTS.md#resize-factors-on-a-grid)."""

MIN_SCALE, MAX_SCALE = 0.25, 4.0
MAX_SCALED_PIXELS = DEFAULT_MAX_PIXELS
"""An upscaled model input never exceeds the pixel cap of an image read (the scale is capped instead)."""


AUTO_RESCALE_TOLERANCE = 1.5
"""Estimated sizes (``auto_nucleus_size``, mask models) act only beyond this factor: an estimate is less
certain than a size the user states, so its band is wider (the choice is in docs/RESULTS.md)."""

SIZE_WINDOW_PX = 1024
"""The size model reads at most this square of an image (the one with the most foreground) plus a
:data:`SIZE_WINDOW_MARGIN_PX` margin of context, so its cost stops growing with the image: a 1024 px
square holds hundreds of nuclei even at 40-50 px, and nearly every DSB image fits in it whole; a much
smaller window sees too few nuclei to size them reliably."""
SIZE_WINDOW_MARGIN_PX = 32


def size_window(foreground: np.ndarray, window: int | None = None, *,
                margin: int = SIZE_WINDOW_MARGIN_PX) -> tuple[slice, slice]:
    """Rows and columns of the ``window`` x ``window`` region (default :data:`SIZE_WINDOW_PX`, clipped
    to the image) holding the most ``foreground`` pixels; the whole image when it fits in the window
    plus its ``margin`` on each side (0: a window of exactly that size wherever the image is larger)."""
    window = SIZE_WINDOW_PX if window is None else window
    h, w = foreground.shape
    if max(h, w) <= window + 2 * margin:
        return slice(0, h), slice(0, w)
    import cv2

    wh, ww = min(window, h), min(window, w)
    # box sums anchored at the top-left corner: sums[y, x] = foreground pixels of the window at (y, x)
    sums = cv2.boxFilter(foreground.astype(np.float32), -1, (ww, wh), normalize=False, anchor=(0, 0),
                         borderType=cv2.BORDER_CONSTANT)[: h - wh + 1, : w - ww + 1]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return slice(int(y), int(y) + wh), slice(int(x), int(x) + ww)


def estimate_nucleus_diameter(
    image_norm: np.ndarray, foreground_prob: np.ndarray, size_model: ModelLike, *, fast: bool = True,
    backend: str | None = None,
) -> float | None:
    """Typical nucleus diameter (px): :func:`estimate_nucleus_size`'s ``diameter``."""
    return estimate_nucleus_size(image_norm, foreground_prob, size_model, fast=fast, backend=backend).diameter


@dataclass(frozen=True)
class SizeEstimate:
    """What the size model saw: the ``diameter`` (px, None when too little foreground or count), its
    ``count`` (the density integral, an independent second count) over the ``window`` it read."""

    diameter: float | None
    count: float
    window: tuple[slice, slice]


def estimate_nucleus_size(
    image_norm: np.ndarray, foreground_prob: np.ndarray, size_model: ModelLike, *, fast: bool = True,
    backend: str | None = None,
) -> SizeEstimate:
    """Typical nucleus diameter (px) of a normalised image: :func:`area_count_size` of the mask model's
    first-pass foreground and ``size_model``'s density (a density model: the caller passes the one the mask
    model's card names, :func:`cellcount.models.size_model_for`), which reads only the :func:`size_window`
    and its margin of context.

    A mask model that learnt 18 px nuclei cuts 40-50 px textured nuclei into pieces, so its own
    objects understate their size; the foreground still covers them, and the density model still
    counts them about once. On 218 DSB images the whole-image estimate's log-correlation with the
    true median nucleus area was 0.97 (docs/RESULTS.md). The size model reads the mask model's normalised
    image: every shipped card normalises alike.
    """
    fg = foreground_prob > 0.5
    rows, cols = size_window(fg)
    m = SIZE_WINDOW_MARGIN_PX
    ctx_rows = slice(max(0, rows.start - m), min(fg.shape[0], rows.stop + m))
    ctx_cols = slice(max(0, cols.start - m), min(fg.shape[1], cols.stop + m))
    density = size_model.predict_maps(np.ascontiguousarray(image_norm[ctx_rows, ctx_cols]), fast=fast,
                                      **backend_kw(backend))[0]
    inner = density[rows.start - ctx_rows.start: rows.stop - ctx_rows.start,
                    cols.start - ctx_cols.start: cols.stop - ctx_cols.start]
    return _disc_size(fg[rows, cols], inner, (rows, cols))


def area_count_size(
    foreground_prob: np.ndarray, density: np.ndarray, *, window: tuple[slice, slice] | None = None,
) -> SizeEstimate:
    """Typical nucleus diameter (px): the foreground area (probability > 0.5) divided by the density's count,
    as the diameter of a disc of that area, both taken in the :func:`size_window` (the density mass of nuclei
    cut by its edge is cut like their area). A multihead network has both maps from one pass; a mask model
    borrows the density from a second model (:func:`estimate_nucleus_size`). The diameter is None when there
    is too little foreground or count."""
    fg = foreground_prob > 0.5
    rows, cols = window if window is not None else size_window(fg)
    return _disc_size(fg[rows, cols], density[rows, cols], (rows, cols))


NEAR_FOREGROUND_PX = 3
"""Density mass within this many pixels of the foreground is mass on the nuclei the area measures."""
MIN_NEAR_SHARE = 0.25
"""Below this share of the density's mass near the foreground, the count that sizes the nuclei is the mass near
it only. A field of a few nuclei in a wide background spreads a little density over every background pixel,
hundreds of "nuclei" in all: their area over that count reads as 1-3 px nuclei, and an image enlarged 4x for them
has its noise counted. The share is below this on the nearly empty fields ``scripts/sparse_field_probe.py`` builds, at least
0.53 on every DSB validation image (``docs/RESULTS.md``, "Sizing a nearly empty field")."""


def _disc_size(fg: np.ndarray, density: np.ndarray, window: tuple[slice, slice]) -> SizeEstimate:
    count = float(density.sum(dtype=np.float64))
    area = float(np.count_nonzero(fg))
    sizing_count = count
    if count >= 0.5 and area >= 4:
        import cv2

        width = 2 * NEAR_FOREGROUND_PX + 1
        near = cv2.dilate(fg.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))) > 0
        near_count = float(density[near].sum(dtype=np.float64))
        if near_count < MIN_NEAR_SHARE * count:
            sizing_count = near_count
    diameter = (None if sizing_count < 0.5 or area < 4
                else float(np.sqrt(4 * area / (np.pi * max(sizing_count, 1.0)))))
    return SizeEstimate(diameter, count, window)


def density_nucleus_diameter(density: np.ndarray) -> float | None:
    """Typical nucleus diameter (px) from a density model's own map, for ``auto_nucleus_size``.

    The model learnt a unit-mass Gaussian per nucleus whose sigma is :data:`DENSITY_SIGMA_SCALE` times
    the nucleus diameter. For N such Gaussians that do not overlap, sum(D) = N and sum(D^2) = N / (4 pi
    sigma^2), so sigma^2 = sum(D) / (4 pi sum(D^2)); overlap makes it an underestimate. It needs no second
    model. None when the map holds less than half a nucleus.
    """
    d = np.asarray(density, np.float64)
    total, energy = float(d.sum()), float(np.square(d).sum())
    if total < 0.5 or energy <= 0:
        return None
    return float(np.sqrt(total / (4 * np.pi * energy)) / DENSITY_SIGMA_SCALE)


def model_scale(
    model: ModelLike, nucleus_diameter_px: float | None, shape: tuple[int, int], *,
    tolerance: float = RESCALE_TOLERANCE, reference_px: float | None = None,
) -> float:
    """Factor to resize an image by so that nuclei of ``nucleus_diameter_px`` reach the model's
    reference diameter (1.0 = leave it: unknown size, or within :data:`RESCALE_TOLERANCE`).

    Large nuclei (high magnification, H&E at 40x) are otherwise cut into pieces by a model that learnt
    nuclei of about 18 px, and very small ones merge. On the grid of :data:`SCALE_STEPS_PER_OCTAVE`, then
    clamped to [0.25, 4] and to :data:`MAX_SCALED_PIXELS`. ``reference_px``: a reference diameter other than the model card's.
    """
    if not nucleus_diameter_px:
        return 1.0
    ref = float(reference_px or reference_diameter(model.card))
    scale = ref / float(nucleus_diameter_px)
    if 1 / tolerance <= scale <= tolerance:
        return 1.0
    if SCALE_STEPS_PER_OCTAVE:  # 0: exact factors (scripts/resize_counts.py compares both)
        scale = float(2.0 ** (np.round(np.log2(scale) * SCALE_STEPS_PER_OCTAVE) / SCALE_STEPS_PER_OCTAVE))
    cap = float(np.sqrt(MAX_SCALED_PIXELS / max(1, shape[0] * shape[1])))
    return float(np.clip(scale, MIN_SCALE, max(1.0, min(MAX_SCALE, cap))))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) float32 image resized by ``scale`` (area averaging down, bilinear up), at least 1 px."""
    import cv2

    h, w = image.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def density_channels(output_kind: str) -> tuple[int, ...]:
    """Channels of a model's maps that are densities (count units): the rest are probabilities."""
    return {"density": (0,), "multihead": (2,)}.get(output_kind, ())


def resize_maps(maps: np.ndarray, shape: tuple[int, int], *, density: bool | tuple[int, ...]) -> np.ndarray:
    """(C, h, w) maps back to (C, H, W) = ``shape``, bilinear. A density map keeps its total (the count):
    each density channel (``density``: True for all, or their indices) is rescaled to the sum it had
    before resizing."""
    import cv2

    h, w = shape
    dens = set(range(maps.shape[0])) if density is True else set(density or ())
    out = np.empty((maps.shape[0], h, w), np.float32)
    for c, m in enumerate(maps):
        out[c] = cv2.resize(np.ascontiguousarray(m, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        if c in dens:
            before, after = float(m.sum(dtype=np.float64)), float(out[c].sum(dtype=np.float64))
            if after > 0:
                out[c] *= np.float32(before / after)
    return out


def needs_size_model(model: ModelLike, params: CountParams) -> bool:
    """Whether :func:`cellcount.pipeline.predict` needs a ``size_model``: a mask model estimating nucleus sizes (density and
    multihead models read the size off their own density map)."""
    return model.output_kind == "mask" and params.auto_nucleus_size and not params.nucleus_diameter_px
