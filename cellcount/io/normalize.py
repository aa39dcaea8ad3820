"""Conversion to the models' input: any image -> float32 (H, W), objects bright.

:func:`model_input` is the one conversion every model uses; its card chooses how colour becomes gray.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

from cellcount.errors import ImageReadError, ParameterError

from .percentile import percentiles
from .read import _select_channel

BRIGHT_BACKGROUND_POSITION = 1.0 / 3.0
"""Median position in the 0.1-99.9 percentile range above which :func:`is_bright_background` may say True."""
FLUORESCENCE_SKEW = 0.3
"""Skewness of the intensities above which an image is read as fluorescence (a long bright tail) whatever its
median: nuclei filling most of the field lift the median of a fluorescence image into the upper range."""

MAX_CHANNELS_LAST = 16
"""An (A, B, C) array with C above this and above a quarter of A or B is refused by :func:`to_gray` as a stack /
channels-first array: a 300-frame movie of 256 x 256 read by tifffile is (300, 256, 256). A spectral image of 32
channels passes from 128 x 128 px up; a smaller crop of more than 16 channels is refused with it."""

NORMALIZED_RANGE = (-0.5, 1.5)
""":func:`normalize_image` clips its output to this range (percentiles map to 0 and 1)."""


def _finite_float32(image: np.ndarray) -> np.ndarray:
    """float32 copy with NaN -> 0, +Inf -> finite max, -Inf -> finite min (0 when nothing is finite)."""
    return finite_copy(image, np.float32)


def finite_copy(image: np.ndarray, dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """A ``dtype`` copy of ``image`` with NaN -> 0, +Inf -> its finite max, -Inf -> its finite min (0 when nothing
    is finite): the values the model reads, which the object table measures too."""
    out = np.array(image, dtype=dtype, copy=True)
    finite = np.isfinite(out)
    if finite.all():
        return out
    if finite.any():
        hi, lo = float(out[finite].max()), float(out[finite].min())
    else:
        hi = lo = 0.0
    out[np.isnan(out)] = 0.0
    out[np.isposinf(out)] = hi
    out[np.isneginf(out)] = lo
    return out


ALPHA_OPAQUE_SHARE = 0.5
"""A fourth channel with at least this share of its pixels at the type's maximum (fully opaque) is an alpha channel."""


def without_alpha(arr: np.ndarray) -> np.ndarray:
    """``arr`` without its last channel where that is an alpha channel, as :func:`read_image` drops a file's alpha:
    four channels, the last constant, or only fully transparent and fully opaque (an ROI export, a cut-out), or mostly
    fully opaque (:data:`ALPHA_OPAQUE_SHARE`: soft edges around a cut-out). A fourth stain is seldom at its type's
    maximum over half the image, and is kept."""
    if arr.ndim != 3 or arr.shape[2] != 4:
        return arr
    alpha = arr[:, :, 3]
    lo, hi = alpha.min(), alpha.max()
    opaque = np.iinfo(arr.dtype).max if arr.dtype.kind in "ui" else 1.0
    at_top = np.count_nonzero(alpha == opaque)
    if lo == hi or at_top >= ALPHA_OPAQUE_SHARE * alpha.size or (
            lo == 0 and hi == opaque and at_top + np.count_nonzero(alpha == 0) == alpha.size):
        return arr[:, :, :3]
    return arr


def to_gray(image: np.ndarray, *, channel: int | None = None) -> np.ndarray:
    """Convert an image of any dtype to a finite float32 (H, W) array, in the input's intensity units.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C), any real dtype (bool -> 0/1).
    channel : int, optional
        Use only this channel of an (H, W, C) image.

    Returns
    -------
    numpy.ndarray
        float32 (H, W), a new array. Channels are averaged with equal weights (stains vary, so
        luminance weights would be arbitrary); a 4-channel image whose last channel is constant
        (an opaque alpha) averages the first three only. NaN -> 0, +Inf / -Inf -> the largest /
        smallest finite value of the image (0 when none is finite).

    Raises
    ------
    ImageReadError
        The array is not (H, W) or (H, W, C), looks like (Z, H, W) or (C, H, W) (more than
        :data:`MAX_CHANNELS_LAST` channels and more than a quarter of its shorter side), or is complex /
        non-numeric.
    ParameterError
        ``channel`` out of range.
    """
    check_pixels(image)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ImageReadError(f"expected an image of shape (H, W) or (H, W, C), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise ImageReadError(f"expected a real-valued image, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] > max(MAX_CHANNELS_LAST, min(arr.shape[:2]) // 4):
        # tifffile.imread of a z-stack gives (Z, H, W): read as (H, W, C) it would be counted as a Z x H image
        raise ImageReadError(
            f"an image of shape {arr.shape} looks like a stack or a channels-first (C, H, W) array: pass one "
            "plane (H, W), e.g. image[0] or image.max(axis=0), or channels last, np.moveaxis(image, 0, -1)"
        )
    if channel is not None:
        arr = _select_channel(arr, channel)
    if arr.ndim == 2:
        return _finite_float32(arr)
    if arr.shape[2] == 1:
        return _finite_float32(arr[:, :, 0])
    arr = without_alpha(arr)
    # summed in float64: three float32 values near the type's maximum overflow a float32 sum to inf
    return _finite_float32(arr).mean(axis=2, dtype=np.float64).astype(np.float32)


def is_bright_background(gray: np.ndarray) -> bool:
    """Tell whether an image shows dark objects on a bright field (brightfield, H&E).

    The background is taken as the median pixel. Its position ``t`` in the robust intensity range is
    ``t = (p50 - p0.1) / (p99.9 - p0.1)``; the image has a bright background when
    ``t > BRIGHT_BACKGROUND_POSITION`` (1/3) and its intensities are not skewed towards bright values
    (skewness below :data:`FLUORESCENCE_SKEW`). Fluorescence objects form a long bright tail, so the median
    of a dark-field image usually sits low in the range; brightfield absorption compresses the dark objects,
    so the median of a bright-field image sits higher. On the 522 DSB 2018 training images, dark-background
    images have ``t <= 0.19`` and bright-background ones ``t >= 0.49``. The skewness test is for dense
    fluorescence, where the nuclei cover more than half the field and carry the median up: 33 of the 200
    vgg_cells images have ``t`` of 0.34-0.42 (skewness 0.45-1.33), while bright-field images with ``t``
    below 0.65 have skewness at most 0.20 (DSB) and -0.34 (mbm, H&E); with both tests all 766 images of
    the three sets are read right (the median alone inverted those 33).

    Parameters
    ----------
    gray : numpy.ndarray
        (H, W) image of any dtype; an (H, W, C) image is first converted with :func:`to_gray`.

    Returns
    -------
    bool
        True for a bright background; False for a dark one (fluorescence) or a constant image.
    """
    g = to_gray(gray)
    p_lo, p50, p_hi = percentiles(g, [0.1, 50.0, 99.9])
    if not p_hi > p_lo or (p50 - p_lo) / (p_hi - p_lo) <= BRIGHT_BACKGROUND_POSITION:
        return False
    return _skewness(np.clip(g, p_lo, p_hi)) < FLUORESCENCE_SKEW


def _skewness(values: np.ndarray) -> float:
    """Sample skewness of the values (every 4th pixel is plenty for a whole image)."""
    v = np.asarray(values, np.float64).ravel()[:: 4 if np.size(values) > 40_000 else 1]
    d = v - v.mean()
    var = float(np.mean(d * d))
    return float(np.mean(d * d * d) / var**1.5) if var > 0 else 0.0


def _usable_range(lo: float, hi: float) -> bool:
    """hi > lo by enough that 255 / (hi - lo) is a finite float32 (not a range of denormals only)."""
    return hi > lo and (hi - lo) * float(np.finfo(np.float32).max) >= 255.0


def _percentile_limits(g: np.ndarray, low_pct: float, high_pct: float) -> tuple[float, float]:
    """The values :func:`normalize_image` maps to 0 and 1: the percentiles, or the full range of a nearly
    flat image (a constant image gives an unusable range, normalised to zeros)."""
    lo, hi = (float(v) for v in percentiles(g, [low_pct, high_pct]))
    if not _usable_range(lo, hi):
        lo, hi = float(g.min()), float(g.max())
    return lo, hi


def normalize_image(
    image: np.ndarray,
    *,
    low_pct: float = 1.0,
    high_pct: float = 99.8,
    invert: bool | None = None,
    channel: int | None = None,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Percentile-normalise an image to float32 (H, W) with objects bright on a dark background.

    The ``low_pct`` and ``high_pct`` percentiles map to 0 and 1; values beyond them are kept up to the
    clip range :data:`NORMALIZED_RANGE` = (-0.5, 1.5), so bright objects are not flattened.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C), any real dtype; converted with :func:`to_gray`.
    low_pct, high_pct : float
        Percentiles in [0, 100] with ``low_pct < high_pct``.
    invert : bool, optional
        True: return ``1 - x`` (dark objects become bright); False: never; None: invert when
        :func:`is_bright_background` says the image has a bright background.
    channel : int, optional
        Use only this channel.
    limits : (float, float), optional
        The values mapped to 0 and 1 instead of this image's percentiles: one block of a huge image is
        normalised like the whole (see :func:`normalization_limits`).

    Returns
    -------
    numpy.ndarray
        float32 (H, W), a new array. A constant image gives all zeros.

    Raises
    ------
    ParameterError
        Percentiles out of range or not increasing.
    """
    if not (0.0 <= float(low_pct) < float(high_pct) <= 100.0):
        raise ParameterError(
            f"need 0 <= low_pct < high_pct <= 100, got low_pct={low_pct}, high_pct={high_pct}"
        )
    if invert not in (None, True, False):
        raise ParameterError(f"invert must be True, False or None (auto), got {invert!r}")
    g = to_gray(image, channel=channel)
    lo, hi = _percentile_limits(g, low_pct, high_pct) if limits is None else (float(limits[0]), float(limits[1]))
    if not _usable_range(lo, hi):
        return np.zeros(g.shape, dtype=np.float32)
    if invert is None:
        invert = is_bright_background(g)
    scale = np.float32(1.0 / (hi - lo))
    with np.errstate(over="ignore"):  # differences beyond float32 (|values| ~ 1e38) become inf, then clipped
        if invert:
            out = (np.float32(hi) - g) * scale
        else:
            out = (g - np.float32(lo)) * scale
    np.clip(out, NORMALIZED_RANGE[0], NORMALIZED_RANGE[1], out=out)
    return out


GRAYSCALE_MODES = ("mean", "stain")


def is_colour(image: np.ndarray) -> bool:
    """True for (H, W, >=3) images whose first three channels differ (not grayscale stored as RGB)."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return False
    sub = arr[:: max(arr.shape[0] // 256, 1), :: max(arr.shape[1] // 256, 1), :3]
    return bool(np.any(sub[..., 0] != sub[..., 1]) or np.any(sub[..., 1] != sub[..., 2]))


MIXED_CHANNEL_CORRELATION = 0.8
"""Channels whose pixel correlation is below this show different structures (:func:`channels_differ`)."""


DARK_FIELD_POSITION = 0.2
"""Median position (as in :func:`is_bright_background`) at or below which a channel is surely dark-field: DSB's
fluorescence images reach 0.19, while an H&E image's darkest channel (green, where eosin absorbs) sits at
0.33-0.43."""


def _median_position(channel: np.ndarray) -> float:
    p_lo, p50, p_hi = percentiles(channel, [0.1, 50.0, 99.9])
    return float((p50 - p_lo) / (p_hi - p_lo)) if p_hi > p_lo else 0.0


def channels_differ(image: np.ndarray) -> bool:
    """True for a dark-background (H, W, C) image in which two or more channels hold signal and show
    different structures (nuclei in blue, cytoplasm in green): their mean, the default model input, mixes
    stains, so the count is of whatever any stain shows.

    A channel holds signal when its 0.1-99.9 percentile range is over a tenth of the widest channel's;
    two such channels differ when their pixel correlation is below :data:`MIXED_CHANNEL_CORRELATION`.
    Gray stored as RGB (channels equal), one stain in one channel, and bright-field colour (H&E) say False:
    none of the 766 images of DSB 2018, vgg_cells and mbm says True (``scripts/check_channels.py``). A
    composite of a bright-field channel (transmitted light, DIC) and a fluorescence one says True: their
    mean shows neither.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] < 2:
        return False
    sub = _finite_float32(arr[:: max(arr.shape[0] // 256, 1), :: max(arr.shape[1] // 256, 1)])
    lo, hi = np.percentile(sub.reshape(-1, sub.shape[2]), [0.1, 99.9], axis=0)
    spans = hi - lo
    live = [k for k in range(sub.shape[2]) if spans[k] > 0.1 * spans.max() > 0]
    if len(live) < 2:
        return False
    bright = [is_bright_background(sub[:, :, k]) for k in live]
    if any(bright) and any(_median_position(sub[:, :, k]) <= DARK_FIELD_POSITION for k in live):
        return True  # a bright-field channel beside a fluorescence one
    # bright-field colour (H&E): its channels are one picture's absorption (the mean of the channels holding signal,
    # as to_gray takes it without an opaque alpha; to_gray itself would judge the subsample's shape as a stack's)
    if is_bright_background(sub[:, :, live].mean(axis=2)):
        return False
    # structure, not pixel noise: camera noise, independent per channel, makes gray stored as RGB look like a merge
    # of stains pixel by pixel; smoothed, it averages out (scripts/exposure_probe.py)
    smooth = np.stack([cv2.GaussianBlur(np.ascontiguousarray(sub[:, :, k]), (0, 0), NOISE_SMOOTH_PX) for k in live],
                      axis=-1)
    corr = np.corrcoef(smooth.reshape(-1, len(live)), rowvar=False)
    return bool(corr.min() < MIXED_CHANNEL_CORRELATION)


NOISE_SMOOTH_PX = 2.5
"""The Gaussian (in pixels of :func:`channels_differ`'s subsampled image, at most about 512 px across) the channels
are smoothed with before they are compared."""


def check_pixels(image) -> None:
    """Refuse a file name or file bytes where pixels are expected, saying what to do."""
    if isinstance(image, (str, bytes, bytearray, os.PathLike)):
        raise ImageReadError(f"expected the image's pixels, got a {type(image).__name__}: read the file first "
                             "with cellcount.read_image(...)")


def background_note(image: np.ndarray, *, channel: int | None = None, invert: bool | None = None) -> str | None:
    """Why a count may be wrong when the background is fixed (``invert`` True or False: a fine-tuned model's
    card, or the user) and ``image`` reads as the other kind (:func:`is_bright_background`); None otherwise.
    A model fine-tuned on fluorescence counted an H&E image about 10x over, read the wrong way round."""
    if invert is None:
        return None
    arr = np.asarray(image)
    if arr.size == 0 or (arr.dtype.kind == "f" and not np.isfinite(arr).any()):
        return None
    bright = is_bright_background(to_gray(arr, channel=channel))
    if bright == bool(invert):
        return None
    looks, read = ("bright", "dark") if bright else ("dark", "bright")
    return (f"the image looks like a {looks}-background image, but the settings read every image as {read}-background "
            f"(Invert {'on' if invert else 'off'}: a model fine-tuned on {read}-background images fixes it in its card), "
            "so it was read the wrong way round: count it with a model for images like it, or set Invert to auto (--invert auto)")


CLIPPED_SHARE = 0.25
"""An image with more of its nucleus pixels clipped (:func:`clipped_share`: the stained ones on a bright background,
the bright ones on a dark one) is flagged as overexposed: nuclei there have lost the contrast the model reads (within
them and between touching ones), and no calibrated limit sees it (overexposed H&E can count several times its nuclei,
or none). The limit is far outside what DSB, the samples, vgg_cells and mbm reach, not fitted to any error
(``scripts/exposure_probe.py``)."""
SMALL_IMAGE_PX = 32
"""An image narrower than this (a nucleus or two of the training size) is flagged: too little context for the
model, and for the quality signals to judge."""


def clipped_share(image: np.ndarray) -> float:
    """:func:`clipped_and_bright`'s share."""
    return clipped_and_bright(image)[0]


MIN_SIGNAL_SHARE = 0.002
"""A dark-background image whose bright pixels are fewer than this share of it is judged by all its pixels."""


def clipped_and_bright(image: np.ndarray) -> tuple[float, bool]:
    """The share of an integer image's nucleus pixels at the brightest value it can hold, in any channel (a colour
    picture's alpha left out): its type's largest (255, 65535), or a 10-, 12- or 14-bit camera's full scale (1023,
    4095, 16383) where the image reaches it. On a dark background (fluorescence) the share is of the bright pixels
    (Otsu's split of the log intensities); on a bright one (bright-field, H&E), where glass clipped
    white, or tinted and clipped in two channels, says nothing of the nuclei, of the stained pixels (darker than the
    background), unless nearly all the picture is white. 0 for float images. With whether the background is bright."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "ui" or arr.dtype == bool or not arr.size:
        return 0.0, False
    top = int(np.iinfo(arr.dtype).max)
    if arr.dtype.itemsize > 1:
        reached = int(arr.max())
        top = next((full for full in (1023, 4095, 16383) if reached == full), top)
    at = arr == top
    if arr.ndim == 3:
        at = at[..., :3] if arr.shape[2] in (3, 4) else at
        some, every = at.any(axis=2), at.all(axis=2)
    else:
        some = every = at
    gray = _plain_gray(arr).astype(np.float32)
    some = some & _beside_another(some)  # clipped areas: a lone pixel at the top is noise (salt, a hot pixel)
    if not is_bright_background(gray):
        # of the bright pixels, where nuclei are: sparse nuclei clipped whole are a few percent of the picture. Split
        # from the background on a log scale, where clipped centres do not pull the split above the nuclei' bodies
        from skimage.filters import threshold_otsu

        step = max(1, int(np.sqrt(gray.size / 65536)))  # the split from about 64k pixels: a histogram needs no more
        base = min(0.0, float(gray.min()))  # signed data below 0 (background subtracted) on the log scale too
        sample = np.log1p(gray[::step, ::step] - base)
        split = threshold_otsu(sample) if float(sample.min()) < float(sample.max()) else float(sample.max())
        signal = gray - base > np.expm1(split)
        return (float(some[signal].mean()) if signal.mean() >= MIN_SIGNAL_SHARE else float(some.mean())), False
    low, mid = np.percentile(gray, [1, 50])
    tissue = gray < mid - 0.1 * (mid - low)  # darker than the background: the stain, where nuclei are
    if tissue.mean() < 0.01:  # a white picture: overexposed, or no tissue at all
        return float(every.mean()), True
    return float(some[tissue].mean()), True


def _plain_gray(arr: np.ndarray) -> np.ndarray:
    """A plane as it is, or the mean of a picture's colours (an alpha left out) or of a stack's channels."""
    if arr.ndim != 3:
        return arr
    return arr[..., :3].mean(axis=2) if arr.shape[2] in (3, 4) else arr.mean(axis=2)


def _beside_another(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour in it too: salt noise of 5% of the pixels would read "40% of the bright
    (nucleus) pixels overexposed", its lone pixels at the top value being most of the bright ones."""
    out = np.zeros_like(mask)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def exposure_note(image: np.ndarray, *, channel: int | None = None) -> str | None:
    """Why a count of an overexposed ``image`` (its ``channel``) may be far off (:data:`CLIPPED_SHARE`), or None."""
    arr = np.asarray(image)
    plane = _select_channel(arr, channel) if channel is not None else arr
    clipped, bright = clipped_and_bright(plane)
    if clipped <= CLIPPED_SHARE:
        return None
    return (f"{clipped:.0%} of the image's {'stained' if bright else 'bright (nucleus)'} pixels are at the brightest value the camera "
            "or file holds (overexposed): nuclei there have lost their contrast, so the count may be far off: check "
            "it by eye (a shorter exposure or a lower gain keeps them; or, on a sparse field, it is text or a scale "
            "bar drawn into the image at that value)")


LONE_TOP_SHARE = 0.5
"""The range's top is said to be set by lone pixels when at least this share of the pixels at or above it have no
4-neighbour there too (hot pixels, salt noise; a nucleus's brightest pixels lie together) ..."""
TOP_GAP = 4.0
"""... and, above the 1st percentile, it lies at least this many times as high as the top without them."""


HOT_PIXELS_LEFT_OUT_PCT = 0.5
"""Up to this percentage of the image, lone hot pixels are best left out of the top of the range (High percentile):
DSB images with 0.3-0.5% count as clean that way; with 2% the pixels themselves are counted as nuclei."""


def hot_pixel_note(image: np.ndarray, *, channel: int | None = None, high_pct: float = 99.8) -> str | None:
    """Why a count may be far too low when the top of the intensity range (``high_pct``) is set by scattered single
    pixels far brighter than everything else, or None: 0.3% hot pixels at 65,535 over nuclei at 3,000 take a count of
    43 to 0, which no other reason explains."""
    arr = np.asarray(image)
    plane = _select_channel(arr, channel) if channel is not None else arr
    gray = _plain_gray(plane)
    if gray.size < 1024 or gray.dtype == bool:
        return None
    with np.errstate(invalid="ignore"):  # NaN or Inf pixels: no finite range to judge (other notes say them)
        low, top = (float(v) for v in percentiles(gray, [1.0, high_pct]))
    if not np.isfinite([low, top]).all() or top <= low:
        return None
    at = np.asarray(gray >= top)
    lone = at & ~_beside_another(at)
    n_lone = int(np.count_nonzero(lone))
    if n_lone < LONE_TOP_SHARE * max(np.count_nonzero(at), 1):
        return None
    without = float(percentiles(gray[~lone], [high_pct])[0])  # the top the rest of the image would set
    if top - low < TOP_GAP * max(without - low, 1e-12):
        return None
    share = 100 * n_lone / gray.size
    said = (f"the top of the intensity range (High percentile {high_pct:g}) is set by scattered single pixels far "
            f"brighter than the rest ({share:.2f}% of the image: hot pixels or salt noise), which leaves the nuclei "
            "dim, so the count may be far too low: ")
    if share > HOT_PIXELS_LEFT_OUT_PCT:  # left out of the top, so many are counted as objects
        return said + "remove them first (a median filter of 3 px; Fiji: Process > Noise > Remove Outliers)"
    below = max(50.0, math.floor((100 - 2 * share) * 10) / 10)  # their share twice over left out of the top
    return said + (f"lower High percentile to {below:g} (Input > Intensity normalisation, or --high-pct), or remove "
                   "them (a median filter of 3 px)")


LABEL_BACKGROUND_SHARE = 0.1
"""A plane of whole numbers with at least this share of pixels exactly 0 is checked for being a label image."""
FLAT_SHARE_LIMIT = 0.2
"""... unless more than this share of its horizontally adjacent non-zero pixel pairs differ (a label image's differ
only where two objects touch)."""


def label_image_note(plane: np.ndarray) -> str | None:
    """Why a 2-D integer plane looks like a label image rather than a microscope's picture, or None.

    A label image holds flat regions of one value each on 0 (three values at least), each value about one region
    (measured: connected regions of equal value at most twice the values, plus 5). A camera's noise gives every
    intensity thousands of scattered regions, so a picture never passes, even one with clipped nuclei or a zeroed
    background; most pictures are let go at once, their non-zero neighbours mostly differing, before the costlier
    labelling of regions."""
    if plane.ndim != 2 or plane.dtype.kind not in "ui" or plane.size < 1024:
        return None
    zero = plane == 0
    if float(zero.mean()) < LABEL_BACKGROUND_SHARE or zero.all():
        return None
    rows = plane[:: 4 if plane.shape[0] >= 256 else 1]  # every 4th row says it as well
    left, right = rows[:, :-1], rows[:, 1:]
    inside = (left != 0) & (right != 0)
    if np.count_nonzero(inside & (left != right)) > FLAT_SHARE_LIMIT * max(np.count_nonzero(inside), 1):
        return None  # neighbours inside the objects differ: texture and noise, a picture
    values = np.unique(plane[~zero])
    if len(values) < 3:  # 0 and one or two values: a binary picture may be meant to be counted (a thresholded one)
        return None
    from skimage.measure import label

    regions = int(label(plane, background=0, connectivity=1).max())
    if regions > 2 * len(values) + 5:
        return None
    return (f"the image looks like a label image ({len(values)} regions of one whole number each on a background of "
            "0), not a microscope's picture: a segmentation or ground truth? A model counts microscopy images; "
            "bring label images as ground truth to evaluate a model")


def input_note(image: np.ndarray, *, channel: int | None = None) -> str | None:
    """Why a count of ``image`` (its ``channel``) may not be what the user meant, or None.

    A blank image (every pixel alike) counts 0, but a camera never gives one: it is a wrong channel (an
    empty channel of an RGB export) or a failed export, not an empty field. A merge of stains
    (:func:`channels_differ`) counted from the mean of its channels counts whatever any stain shows.
    """
    arr = np.asarray(image)
    plane = _select_channel(arr, channel) if channel is not None else without_alpha(arr)
    arr = plane if channel is None else arr
    if plane.size and plane.dtype.kind == "f" and np.isnan(plane).all():
        what = "the image is" if channel is None else f"channel {channel} is"
        return (f"{what} blank (every pixel is NaN, not a number), so nothing in it can be counted: a failed "
                "export or computation?")
    if plane.size and plane.min() == plane.max():  # NaN compares unequal: a partly NaN image is not blank
        what = "the image is" if channel is None else f"channel {channel} is"
        return (f"{what} blank (every pixel is {plane.flat[0]}), so nothing in it can be counted: a wrong "
                "channel (they are numbered from 0) or a failed export?")
    if plane.dtype == bool:  # True / False: a mask (a thresholded or segmented image), not a microscope's picture
        return ("the image holds only True and False (a mask?): a model counts microscopy images, and a mask's "
                "objects are counted as they are (scipy.ndimage.label), or brought as ground truth to evaluate a model")
    if (labelled := label_image_note(plane)) is not None:
        return labelled
    if plane.dtype.kind == "f" and plane.size:
        share = float(np.mean(~np.isfinite(plane)))
        if share > 0.01:  # read as 0 (NaN) or the extremes (Inf): that part of the image shows nothing real
            return (f"{share:.0%} of the image's pixels are not numbers (NaN or infinite): NaN was read as 0 "
                    "and infinity as the brightest or darkest value, so counts in that part are wrong or missing")
    if arr.ndim >= 2 and min(arr.shape[:2]) < SMALL_IMAGE_PX:
        return (f"the image is only {arr.shape[1]} x {arr.shape[0]} px: too small for the model to see nuclei in "
                "their surroundings, and for this check to judge the count; check it by eye")
    if channel is None and channels_differ(arr):
        return (f"its {arr.shape[2]} channels show different stains and were averaged, so the count mixes "
                "them; if the nuclei are in one channel, choose it as the channel to count (numbered from 0: the app's "
                "Channel, --channel N)")
    if channel is None and _merge_with_an_empty_channel(arr):  # a merge whose stains are alike in shape
        return ("its colour channels were averaged, and one of them is empty: a merge of stains exported as RGB "
                "(nuclei in one colour)? If the nuclei are in one channel, choose it as the channel to count "
                "(numbered from 0, red 0, green 1, blue 2: the app's Channel, --channel N)")
    if channel is None and arr.ndim == 3 and arr.shape[2] not in (3, 4) and not _channels_equal(arr):
        # not a colour picture: a microscope's channels, one stain each, even where they look alike (a nuclear
        # stain beside its own bleed-through read as one stain, and the count moved with the other channel)
        return (f"its {arr.shape[2]} channels were averaged (a file of {arr.shape[2]} channels usually holds one "
                "stain in each); if the nuclei are in one channel, choose it as the channel to count (numbered from 0: the app's "
                "Channel, --channel N)")
    return None


def _merge_with_an_empty_channel(arr: np.ndarray) -> bool:
    """An RGB(A) picture on a dark background with one colour empty and the other two holding signals that are not
    the same: a fluorescence merge (nuclei blue, cytoplasm green, red empty) whose stains :func:`channels_differ`
    finds too alike in shape to call different, while their mean still counts both. None of
    the 766 images of DSB 2018, vgg_cells and mbm is one."""
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return False
    sub = _finite_float32(arr[:: max(arr.shape[0] // 256, 1), :: max(arr.shape[1] // 256, 1), :3])
    lo, hi = np.percentile(sub.reshape(-1, 3), [0.1, 99.9], axis=0)
    spans = hi - lo
    live = [k for k in range(3) if spans[k] > 0.1 * spans.max() > 0]
    if len(live) != 2 or _channels_equal(sub[..., live]):
        return False
    return not is_bright_background(sub[..., live].mean(axis=2))


def _channels_equal(arr: np.ndarray) -> bool:
    """Every channel of an (H, W, C) image the same (gray stored as several channels)."""
    return bool(all(np.array_equal(arr[..., 0], arr[..., k]) for k in range(1, arr.shape[2])))


def hematoxylin(image: np.ndarray) -> np.ndarray:
    """Hematoxylin optical density of an RGB brightfield image (colour deconvolution), float32 (H, W).

    Nuclei (hematoxylin-stained) come out bright on a dark background, like fluorescence; eosin-stained
    cytoplasm and red blood cells are suppressed, which a plain channel mean cannot do.
    """
    from skimage.color import rgb2hed

    rgb = _finite_float32(np.asarray(image)[..., :3])
    top = float(rgb.max()) if rgb.size else 1.0
    rgb = np.clip(rgb / (top if top > 0 else 1.0), 0.0, 1.0)
    return rgb2hed(rgb)[..., 0].astype(np.float32)


def model_input(
    image: np.ndarray,
    *,
    channel: int | None = None,
    invert: bool | None = None,
    low_pct: float = 1.0,
    high_pct: float = 99.8,
    grayscale: str = "mean",
    limits: tuple[float, float] | None = None,
) -> tuple[np.ndarray, bool]:
    """The one conversion from any image to a model's input: float32 (H, W), objects bright.

    Parameters
    ----------
    grayscale : {"mean", "stain"}
        How colour becomes one channel. ``mean`` averages channels (then bright backgrounds are
        inverted); ``stain`` uses the hematoxylin optical density for colour bright-background images
        (H&E and similar) and behaves like ``mean`` otherwise. Set by each model's card.
    limits : (float, float), optional
        Normalisation values from :func:`normalization_limits` of the whole image (for one block of it).

    Returns
    -------
    (normalised image, treated_as_bright_background)
    """
    gray, bright, stain = _model_gray(image, channel=channel, invert=invert, grayscale=grayscale)
    return normalize_image(gray, low_pct=low_pct, high_pct=high_pct, invert=bright and not stain, limits=limits), bright


def _model_gray(image: np.ndarray, *, channel: int | None, invert: bool | None, grayscale: str
                ) -> tuple[np.ndarray, bool, bool]:
    """(the gray image :func:`model_input` normalises, bright background, hematoxylin used)."""
    if grayscale not in GRAYSCALE_MODES:
        raise ParameterError(f"grayscale must be one of {GRAYSCALE_MODES}, got {grayscale!r}")
    gray = to_gray(image, channel=channel)
    bright = is_bright_background(gray) if invert is None else bool(invert)
    if grayscale == "stain" and channel is None and bright and is_colour(image):
        return to_gray(hematoxylin(image)), True, True
    return gray, bright, False


def normalization_limits(
    sample: np.ndarray,
    *,
    channel: int | None = None,
    invert: bool | None = None,
    low_pct: float = 1.0,
    high_pct: float = 99.8,
    grayscale: str = "mean",
) -> tuple[tuple[float, float], bool]:
    """((lo, hi), bright background) that :func:`model_input` uses for ``sample``.

    Computed once on the whole of a huge image (or a spread sample of it) and passed to every block as
    ``limits`` and ``invert``, so that all blocks are normalised alike.
    """
    gray, bright, _ = _model_gray(sample, channel=channel, invert=invert, grayscale=grayscale)
    return _percentile_limits(gray, low_pct, high_pct), bright
