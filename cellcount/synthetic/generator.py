"""SIMCEP-style synthetic nuclei images with exact ground truth.

The generator draws irregular star-convex nuclei (radius modulated by a few random Fourier harmonics,
random elongation and orientation), places part of them in touching clusters, paints them in a random
order into an instance label map (a later nucleus occludes an earlier one), and renders a microscope
image from that label map: per-nucleus brightness, internal texture, uneven illumination, optical blur,
Poisson shot noise and Gaussian read noise, quantised to 8 or 16 bits. Fluorescence images show bright
nuclei on a dark background; ``bright_background=True`` renders a stained brightfield-like image with dark
(by default purple, haematoxylin-like) nuclei on a light field.

The count is exact by construction: every nucleus that stays in the label map is visible, and every
visible nucleus is in the label map (a nucleus that is mostly hidden by others or by the image border is
removed from the labels *and* from the image).

The samples shipped with the project are a catalogue of calls to it (:mod:`cellcount.synthetic.samples`).

References
----------
Lehmussola et al., "Computational framework for simulating fluorescence microscope images with cell
populations", IEEE Transactions on Medical Imaging 26(7), 1010-1016 (2007) (SIMCEP).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage as ndi

from cellcount.errors import ParameterError

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

__all__ = ["SyntheticSample", "make_synthetic"]

#: A nucleus whose visible area (after occlusion and border clipping) is below this fraction of its drawn
#: area, or below ``MIN_VISIBLE_AREA_PX`` pixels, is removed from the labels and from the image.
MIN_VISIBLE_FRACTION = 0.3
#: Smallest visible area (pixels) a counted nucleus may have; an object of exactly this area is kept.
MIN_VISIBLE_AREA_PX = 8
#: Fraction of nuclei drawn as small, bright, condensed nuclei (mitotic / apoptotic look).
CONDENSED_FRACTION = 0.04

# Output scaling: the mean nucleus signal (1.0) maps to GAIN counts over OFFSET; values are clipped to MAX.
_GAIN_8, _OFFSET_8, _MAX_8 = 100.0, 2.0, 255
_GAIN_16, _OFFSET_16, _MAX_16 = 1500.0, 100.0, 4095  # 12-bit camera stored in 16 bits
# Bright field: full transmission maps to these values.
_WHITE_8, _WHITE_16 = 255.0, 3900.0
# Bright field collects this many times more photons than a fluorescent nucleus emits.
_BRIGHTFIELD_PHOTON_FACTOR = 10.0
# Stain optical-density directions (Ruifrok & Johnston 2001): haematoxylin and eosin, RGB.
_OD_HEMATOXYLIN = np.array([0.650, 0.704, 0.286])
_OD_EOSIN = np.array([0.072, 0.990, 0.105])


@dataclass
class SyntheticSample:
    """A synthetic image with its exact ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        ``(H, W)`` uint8 or uint16 image; ``(H, W, 3)`` RGB (uint8 or uint16) when it was made with
        ``bright_background=True`` and ``color=True``.
    labels : numpy.ndarray
        ``(H, W)`` int32 instance labels, 0 = background, nuclei numbered ``1..count`` consecutively.
    centroids : numpy.ndarray
        ``(count, 2)`` float64 centroids ``(row, col)`` of the labels, row ``i`` for label ``i + 1``.
    count : int
        Number of nuclei: ``count == labels.max() == len(centroids)``.
    params : dict
        The generation parameters (JSON-serialisable) plus ``n_drawn`` and ``n_dropped``.
    """

    image: np.ndarray
    labels: np.ndarray
    centroids: np.ndarray
    count: int
    params: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# parameter checks
# --------------------------------------------------------------------------------------------------


def _as_rng(rng: np.random.Generator | int) -> tuple[np.random.Generator, int | None]:
    if isinstance(rng, np.random.Generator):
        return rng, None
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ParameterError(f"rng seed must be a non-negative integer, got {rng}")
        return np.random.default_rng(int(rng)), int(rng)
    raise ParameterError(f"rng must be a numpy.random.Generator or a non-negative int seed, got {type(rng)!r}")


def _check_range(name: str, value: float, low: float, high: float) -> float:
    value = float(value)
    if not (low <= value <= high) or math.isnan(value):
        raise ParameterError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"shape must be (height, width), got {shape!r}") from exc
    if h < 8 or w < 8 or h * w > 64_000_000:
        raise ParameterError(f"shape must be at least (8, 8) and at most 64 Mpx, got {(h, w)}")
    return h, w


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Nucleus:
    center: tuple[float, float]  # (row, col)
    radius: float  # equivalent radius (px)
    elongation: float  # axis ratio >= 1
    angle: float  # orientation (rad)
    harmonics: np.ndarray  # (K, 3): order, amplitude, phase
    brightness: float
    condensed: bool


def _place_centres(
    h: int,
    w: int,
    radii: np.ndarray,
    *,
    rng: np.random.Generator,
    cluster_fraction: float,
    overlap: float,
    n_candidates: int = 10,
) -> np.ndarray:
    """Place nuclei centres: touching clusters first, then well-spread singles (best-candidate sampling).

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float64 centres ``(row, col)``, in the order of ``radii``.
    """
    n = len(radii)
    centres = np.zeros((n, 2), dtype=np.float64)
    n_clustered = round(cluster_fraction * n)
    if n_clustered == 1:
        n_clustered = 0 if n == 1 else 2
    # split the clustered nuclei into clusters of 2..6 members
    sizes: list[int] = []
    left = n_clustered
    while left > 0:
        size = int(rng.integers(2, 7))
        size = min(size, left)
        if size == 1:
            sizes[-1] += 1
        else:
            sizes.append(size)
        left -= size
    span = np.array([h, w], dtype=np.float64)

    def clearance(points: np.ndarray, r_new: float, placed: int, shrink: float = 1.0) -> np.ndarray:
        # smallest gap (px) between candidate nuclei and those already placed (radii scaled by shrink)
        if placed == 0:
            return np.zeros(len(points))
        d = np.linalg.norm(points[:, None, :] - centres[None, :placed, :], axis=2)
        return (d - shrink * (radii[None, :placed] + r_new)).min(axis=1)

    placed = 0
    for size in sizes:
        # cluster seed: best candidate away from what is already placed
        cand = rng.random((n_candidates, 2)) * span
        centres[placed] = cand[int(np.argmax(clearance(cand, radii[placed], placed)))]
        first = placed
        placed += 1
        for _ in range(size - 1):
            # candidates touching random members of this cluster; prefer compact clusters that do not
            # overlap any nucleus more than `overlap` allows
            j = rng.integers(first, placed, size=n_candidates)
            theta = rng.random(n_candidates) * 2 * np.pi
            dist = (radii[j] + radii[placed]) * (1.0 - overlap)
            cand = centres[j] + dist[:, None] * np.stack([np.sin(theta), np.cos(theta)], axis=1)
            gap = clearance(cand, radii[placed], placed, shrink=(1.0 - overlap) * 0.98)
            spread = np.linalg.norm(cand - centres[first:placed].mean(axis=0), axis=1)
            centres[placed] = cand[int(np.argmax(4.0 * np.minimum(gap, 0.0) - spread))]
            placed += 1
    while placed < n:
        cand = rng.random((n_candidates, 2)) * span
        centres[placed] = cand[int(np.argmax(clearance(cand, radii[placed], placed)))]
        placed += 1
    return centres


def _nucleus_patch(nuc: _Nucleus) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Rasterise one nucleus in its own (unclipped) bounding box.

    Returns
    -------
    r0, c0 : int
        Top-left corner of the box in image coordinates (may be negative).
    inside : numpy.ndarray
        ``(h, w)`` bool mask of the nucleus.
    profile : numpy.ndarray
        ``(h, w)`` float64 relative intensity inside the nucleus (1 at the centre, ~0.55 at the edge).
    """
    cy, cx = nuc.center
    amp = np.abs(nuc.harmonics[:, 1]).sum()
    extent = nuc.radius * (1.0 + amp) * math.sqrt(nuc.elongation) + 2.0
    r0, r1 = math.floor(cy - extent), math.ceil(cy + extent) + 1
    c0, c1 = math.floor(cx - extent), math.ceil(cx + extent) + 1
    dy = (np.arange(r0, r1, dtype=np.float64) - cy)[:, None]
    dx = (np.arange(c0, c1, dtype=np.float64) - cx)[None, :]
    ca, sa = math.cos(nuc.angle), math.sin(nuc.angle)
    sq = math.sqrt(nuc.elongation)
    u = (dx * ca + dy * sa) / sq  # long axis
    v = (-dx * sa + dy * ca) * sq  # short axis
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    rel = np.ones_like(theta)
    for order, a, phase in nuc.harmonics:
        rel += a * np.cos(order * theta + phase)
    boundary = nuc.radius * np.maximum(rel, 0.5)
    d = rho / boundary
    inside = d <= 1.0
    profile = 0.55 + 0.45 * np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0))
    return r0, c0, inside, profile


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation, float32 ``shape``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if sigma > 0:
        noise = ndi.gaussian_filter(noise, sigma, mode="reflect", truncate=3.0)
    std = float(noise.std())
    return noise / std if std > 0 else noise


def _illumination_field(h: int, w: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field with mean 1: random low-frequency cosines plus a vignette."""
    if strength <= 0:
        return np.ones((h, w), dtype=np.float32)
    y = np.linspace(0.0, 1.0, h, dtype=np.float64)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float64)[None, :]
    g = np.zeros((h, w), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            if i == j == 0:
                continue
            a = rng.normal(0.0, 1.0 / (i + j))
            g += a * np.cos(np.pi * i * y + rng.uniform(0, 2 * np.pi)) * np.cos(
                np.pi * j * x + rng.uniform(0, 2 * np.pi)
            )
    g /= max(float(np.abs(g).max()), 1e-12)
    cy, cx = rng.uniform(0.3, 0.7, size=2)
    vignette = ((y - cy) ** 2 + (x - cx) ** 2) / 0.5
    f = np.exp(strength * (0.8 * g - 0.6 * vignette))
    return (f / f.mean()).astype(np.float32)


def _draw_nuclei(
    h: int,
    w: int,
    *,
    rng: np.random.Generator,
    n_cells: int,
    radius_px: tuple[float, float],
    shape_irregularity: float,
    cluster_fraction: float,
    overlap: float,
    intensity_spread: float,
) -> list[_Nucleus]:
    radii = rng.uniform(radius_px[0], radius_px[1], size=n_cells)
    condensed = rng.random(n_cells) < CONDENSED_FRACTION
    radii = np.where(condensed, np.maximum(radii * 0.6, 2.0), radii)
    centres = _place_centres(
        h, w, radii, rng=rng, cluster_fraction=cluster_fraction, overlap=overlap
    )
    elongation = 1.0 + 2.0 * shape_irregularity * rng.beta(1.5, 2.5, size=n_cells)
    angles = rng.uniform(0.0, np.pi, size=n_cells)
    orders = np.arange(2, 6, dtype=np.float64)
    amps = rng.normal(0.0, 1.0, size=(n_cells, len(orders))) * (0.7 * shape_irregularity / orders**1.5)
    phases = rng.uniform(0.0, 2 * np.pi, size=(n_cells, len(orders)))
    brightness = rng.lognormal(0.0, intensity_spread, size=n_cells) if intensity_spread > 0 else np.ones(n_cells)
    brightness = np.where(condensed, brightness * 2.0, brightness)
    order = rng.permutation(n_cells)  # draw order: later nuclei occlude earlier ones
    nuclei = []
    for i in order:
        harmonics = np.stack([orders, amps[i], phases[i]], axis=1)
        if condensed[i]:
            harmonics[:, 1] *= 0.5
        nuclei.append(
            _Nucleus(
                center=(float(centres[i, 0]), float(centres[i, 1])),
                radius=float(radii[i]),
                elongation=float(elongation[i]),
                angle=float(angles[i]),
                harmonics=harmonics,
                brightness=float(brightness[i]),
                condensed=bool(condensed[i]),
            )
        )
    return nuclei


def _paint(
    h: int, w: int, nuclei: Sequence[_Nucleus]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paint nuclei in order (later occludes earlier) and keep only sufficiently visible ones.

    Returns
    -------
    labels : numpy.ndarray
        ``(H, W)`` int32, consecutive ``1..N``.
    profile : numpy.ndarray
        ``(H, W)`` float32 relative intensity inside nuclei, 0 outside.
    kept : numpy.ndarray
        ``(N,)`` int indices into ``nuclei`` of the kept nuclei, in label order.
    drawn_area : numpy.ndarray
        ``(len(nuclei),)`` drawn (unclipped, unoccluded) areas in pixels.
    """
    n = len(nuclei)
    labels = np.zeros((h, w), dtype=np.int32)
    profile = np.zeros((h, w), dtype=np.float32)
    drawn_area = np.zeros(n + 1, dtype=np.int64)
    for k, nuc in enumerate(nuclei, start=1):
        r0, c0, inside, prof = _nucleus_patch(nuc)
        drawn_area[k] = int(inside.sum())
        rs, cs = max(r0, 0), max(c0, 0)
        re, ce = min(r0 + inside.shape[0], h), min(c0 + inside.shape[1], w)
        if re <= rs or ce <= cs:
            continue
        sub = inside[rs - r0 : re - r0, cs - c0 : ce - c0]
        labels[rs:re, cs:ce][sub] = k
        profile[rs:re, cs:ce][sub] = prof[rs - r0 : re - r0, cs - c0 : ce - c0][sub]

    visible = np.bincount(labels.ravel(), minlength=n + 1)
    # An occluded nucleus may be cut into pieces: keep its largest connected piece only.
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or visible[k] == drawn_area[k]:
            continue
        own = labels[sl] == k
        pieces, n_pieces = ndi.label(own)
        if n_pieces > 1:
            sizes = np.bincount(pieces.ravel())
            sizes[0] = 0
            drop = own & (pieces != int(np.argmax(sizes)))
            labels[sl][drop] = 0
            profile[sl][drop] = 0.0
            visible[k] = int(sizes.max())
    keep = (visible >= MIN_VISIBLE_AREA_PX) & (visible >= MIN_VISIBLE_FRACTION * drawn_area)
    keep[0] = False
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    labels = lut[labels]
    profile[labels == 0] = 0.0
    kept = np.flatnonzero(keep) - 1
    return labels, profile, kept, drawn_area[1:]


def _centroids(labels: np.ndarray, count: int) -> np.ndarray:
    """``(count, 2)`` float64 ``(row, col)`` centroids of labels ``1..count``."""
    if count == 0:
        return np.zeros((0, 2), dtype=np.float64)
    h, w = labels.shape
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1)[1:].astype(np.float64)
    rows = np.repeat(np.arange(h, dtype=np.float64), w)
    cols = np.tile(np.arange(w, dtype=np.float64), h)
    r = np.bincount(flat, weights=rows, minlength=count + 1)[1:] / area
    c = np.bincount(flat, weights=cols, minlength=count + 1)[1:] / area
    return np.stack([r, c], axis=1)


# --------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------


def _add_noise(
    signal: np.ndarray, *, photons: float | None, gaussian_sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson shot noise (``photons`` per unit signal) plus Gaussian read noise; float32 like ``signal``."""
    out = signal
    if photons is not None:
        lam = np.clip(signal, 0.0, None).astype(np.float64) * photons
        out = (rng.poisson(lam) / photons).astype(np.float32)
    if gaussian_sigma > 0:
        out = out + rng.normal(0.0, gaussian_sigma, size=out.shape).astype(np.float32)
    return out


def _render_fluorescence(
    labels: np.ndarray,
    profile: np.ndarray,
    brightness: np.ndarray,
    *,
    rng: np.random.Generator,
    texture: float,
    illumination: float,
    blur_sigma: float,
    poisson_photons: float | None,
    gaussian_sigma: float,
    background_level: float,
    mean_radius: float,
    bit_depth: int,
) -> np.ndarray:
    h, w = labels.shape
    tex = 0.65 * _smooth_noise((h, w), max(0.8, mean_radius / 8), rng) + 0.35 * _smooth_noise(
        (h, w), max(1.5, mean_radius / 3), rng
    )
    nuc = np.zeros((h, w), dtype=np.float32)
    inside = labels > 0
    lut = np.concatenate([[0.0], brightness]).astype(np.float32)
    nuc[inside] = lut[labels[inside]] * profile[inside] * np.exp(0.6 * texture * tex[inside])
    background = background_level * (1.0 + 0.1 * _smooth_noise((h, w), 16.0, rng))
    signal = (background + nuc) * _illumination_field(h, w, illumination, rng)
    if blur_sigma > 0:
        signal = ndi.gaussian_filter(signal, blur_sigma, mode="reflect")
    noisy = _add_noise(signal, photons=poisson_photons, gaussian_sigma=gaussian_sigma, rng=rng)
    # Exposure: the nominal gain, lowered when needed so that the brightest nuclei do not saturate.
    peak = max(float(signal.max()), 1e-6)
    offset, gain, top = (_OFFSET_8, _GAIN_8, _MAX_8) if bit_depth == 8 else (_OFFSET_16, _GAIN_16, _MAX_16)
    gain = min(gain, 0.9 * (top - offset) / peak)
    out = np.clip(np.rint(offset + gain * noisy), 0, top)
    return out.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _render_brightfield(
    labels: np.ndarray,
    profile: np.ndarray,
    brightness: np.ndarray,
    *,
    rng: np.random.Generator,
    texture: float,
    illumination: float,
    blur_sigma: float,
    poisson_photons: float | None,
    gaussian_sigma: float,
    mean_radius: float,
    bit_depth: int,
    color: bool,
) -> np.ndarray:
    h, w = labels.shape
    tex = 0.65 * _smooth_noise((h, w), max(0.8, mean_radius / 8), rng) + 0.35 * _smooth_noise(
        (h, w), max(1.5, mean_radius / 3), rng
    )
    # stain density: nuclei take up haematoxylin, the background a weaker mix of both stains
    density = np.zeros((h, w), dtype=np.float32)
    inside = labels > 0
    lut = np.concatenate([[0.0], brightness]).astype(np.float32)
    density[inside] = lut[labels[inside]] * profile[inside] * np.exp(0.6 * texture * tex[inside])
    mix = rng.uniform(0.2, 0.8)
    bg_dir = mix * _OD_EOSIN + (1 - mix) * _OD_HEMATOXYLIN
    bg_od = rng.uniform(0.35, 0.55) * bg_dir / np.linalg.norm(bg_dir)
    nuc_dir = _OD_HEMATOXYLIN + 0.2 * _OD_EOSIN
    nuc_od = 1.4 * nuc_dir / np.linalg.norm(nuc_dir)
    fibres = ndi.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), (1.5, 5.0))
    fibres = ndi.rotate(fibres, rng.uniform(0, 180), reshape=False, mode="reflect", order=1)
    fibres /= max(float(fibres.std()), 1e-12)
    bg_density = np.clip(1.0 + 0.12 * (0.5 + texture) * fibres, 0.2, None)
    bg_density = bg_density * (1.0 - 0.7 * np.clip(density, 0, 1))  # nuclei displace the background stain
    field_ = _illumination_field(h, w, illumination, rng) * 0.97
    channels = []
    for c in range(3):
        od = bg_od[c] * bg_density + nuc_od[c] * density
        channels.append(field_ * np.exp(-od))
    trans = np.stack(channels, axis=-1).astype(np.float32)
    if not color:
        trans = (trans @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    if blur_sigma > 0:
        sig = (blur_sigma, blur_sigma, 0.0)
        trans = ndi.gaussian_filter(trans, sig, mode="reflect")
    photons = None if poisson_photons is None else poisson_photons * _BRIGHTFIELD_PHOTON_FACTOR
    noisy = _add_noise(trans, photons=photons, gaussian_sigma=gaussian_sigma * 0.5, rng=rng)
    if not color:
        noisy = noisy[..., 0]
    if bit_depth == 8:
        return np.clip(np.rint(_WHITE_8 * noisy), 0, _MAX_8).astype(np.uint8)
    return np.clip(np.rint(_OFFSET_16 + _WHITE_16 * noisy), 0, _MAX_16).astype(np.uint16)


def make_synthetic(
    shape: Sequence[int] = (256, 256),
    *,
    rng: np.random.Generator | int,
    n_cells: int = 40,
    radius_px: tuple[float, float] = (5.0, 11.0),
    shape_irregularity: float = 0.25,
    cluster_fraction: float = 0.3,
    overlap: float = 0.15,
    texture: float = 0.3,
    illumination: float = 0.3,
    blur_sigma: float = 1.0,
    poisson_photons: float | None = 200.0,
    gaussian_sigma: float = 0.02,
    bit_depth: int = 8,
    bright_background: bool = False,
    background_level: float = 0.05,
    intensity_spread: float = 0.3,
    color: bool = True,
) -> SyntheticSample:
    """Generate a synthetic nuclei image with exact instance labels, centroids and count.

    Parameters
    ----------
    shape : (int, int)
        Image size ``(H, W)`` in pixels.
    rng : numpy.random.Generator or int
        Source of randomness; an int is used as a seed for ``numpy.random.default_rng``. The same seed
        and parameters give the same sample.
    n_cells : int
        Number of nuclei drawn. The returned ``count`` can be lower: a nucleus whose visible area is
        below ``MIN_VISIBLE_FRACTION`` (30 %) of its drawn area or below ``MIN_VISIBLE_AREA_PX`` (8 px;
        exactly 8 is kept), after occlusion by later nuclei and clipping at the image border, is removed
        from the labels and from the image.
    radius_px : (float, float)
        Range ``(min, max)`` of the equivalent nucleus radius in pixels (uniform). A few percent of the
        nuclei are drawn condensed (0.6 x radius, 2 x brightness).
    shape_irregularity : float
        In ``[0, 1]``; 0 gives discs, larger values give more elongated, irregular (star-convex) outlines.
    cluster_fraction : float
        In ``[0, 1]``; fraction of nuclei placed in clusters of 2-6 touching nuclei; the others are spread
        out (best-candidate sampling).
    overlap : float
        In ``[0, 0.9]``; how much clustered neighbours overlap, as a fraction of the sum of their radii
        (0 = just touching). Overlapping parts belong to the nucleus drawn later.
    texture : float
        In ``[0, 2]``; strength of the smoothed-noise chromatin texture inside nuclei.
    illumination : float
        In ``[0, 2]``; strength of the smooth uneven illumination field (0 = flat).
    blur_sigma : float
        Standard deviation (px) of the Gaussian optical blur, ``>= 0``.
    poisson_photons : float or None
        Expected photon count of the mean nucleus signal (fluorescence) for the Poisson shot noise; lower
        is noisier. Bright-field images collect 10 x as many photons at full transmission. ``None``
        disables shot noise.
    gaussian_sigma : float
        Standard deviation of the Gaussian read noise relative to the mean nucleus signal, ``>= 0``
        (halved for bright-field images, relative to full transmission).
    bit_depth : {8, 16}
        8: uint8, mean nucleus ~100 counts over an offset of 2. 16: uint16 as from a 12-bit camera,
        offset 100, mean nucleus ~1500 counts, at most 4095. For fluorescence the gain is lowered where
        needed so that the brightest pixel of the noise-free signal stays below 90 % of the range.
    bright_background : bool
        False: fluorescence, bright nuclei on a dark background. True: bright-field stained look, dark
        nuclei on a light background; with ``color=True`` the image is RGB ``(H, W, 3)``
        (haematoxylin-like purple nuclei on a pink-lavender field).
    background_level : float
        In ``[0, 5]``; fluorescence background (autofluorescence, haze) relative to the mean nucleus
        signal; raise it for low-contrast images. Ignored when ``bright_background``.
    intensity_spread : float
        In ``[0, 2]``; sigma of the log-normal per-nucleus brightness.
    color : bool
        Only with ``bright_background``: return RGB ``(H, W, 3)`` (True) or grayscale ``(H, W)``.

    Returns
    -------
    SyntheticSample
        ``image`` ``(H, W)`` (or ``(H, W, 3)``, see above) uint8/uint16; ``labels`` ``(H, W)`` int32 with
        nuclei ``1..count``; ``centroids`` ``(count, 2)`` float64 ``(row, col)`` of the labels; ``count``;
        ``params``.

    Raises
    ------
    ParameterError
        If a parameter is out of range; the message names the allowed values.

    Examples
    --------
    >>> s = make_synthetic((128, 128), rng=0, n_cells=10)
    >>> s.count == s.labels.max() == len(s.centroids)
    True
    """
    h, w = _check_shape(shape)
    gen, seed = _as_rng(rng)
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 0:
        raise ParameterError(f"n_cells must be an integer >= 0, got {n_cells!r}")
    n_cells = int(n_cells)
    try:
        r_lo, r_hi = (float(r) for r in radius_px)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"radius_px must be (min, max), got {radius_px!r}") from exc
    if not (1.5 <= r_lo <= r_hi <= min(h, w) / 2):
        raise ParameterError(f"radius_px must satisfy 1.5 <= min <= max <= {min(h, w) / 2}, got {radius_px!r}")
    shape_irregularity = _check_range("shape_irregularity", shape_irregularity, 0.0, 1.0)
    cluster_fraction = _check_range("cluster_fraction", cluster_fraction, 0.0, 1.0)
    overlap = _check_range("overlap", overlap, 0.0, 0.9)
    texture = _check_range("texture", texture, 0.0, 2.0)
    illumination = _check_range("illumination", illumination, 0.0, 2.0)
    blur_sigma = _check_range("blur_sigma", blur_sigma, 0.0, 50.0)
    if poisson_photons is not None:
        poisson_photons = _check_range("poisson_photons", poisson_photons, 1e-3, 1e9)
    gaussian_sigma = _check_range("gaussian_sigma", gaussian_sigma, 0.0, 10.0)
    background_level = _check_range("background_level", background_level, 0.0, 5.0)
    intensity_spread = _check_range("intensity_spread", intensity_spread, 0.0, 2.0)
    if bit_depth not in (8, 16):
        raise ParameterError(f"bit_depth must be 8 or 16, got {bit_depth!r}")

    nuclei = _draw_nuclei(
        h,
        w,
        rng=gen,
        n_cells=n_cells,
        radius_px=(r_lo, r_hi),
        shape_irregularity=shape_irregularity,
        cluster_fraction=cluster_fraction,
        overlap=overlap,
        intensity_spread=intensity_spread,
    )
    labels, profile, kept, _ = _paint(h, w, nuclei)
    count = len(kept)
    brightness = np.array([nuclei[i].brightness for i in kept], dtype=np.float64)
    common = {
        "rng": gen,
        "texture": texture,
        "illumination": illumination,
        "blur_sigma": blur_sigma,
        "poisson_photons": poisson_photons,
        "gaussian_sigma": gaussian_sigma,
        "mean_radius": (r_lo + r_hi) / 2,
        "bit_depth": bit_depth,
    }
    if bright_background:
        image = _render_brightfield(labels, profile, brightness, color=bool(color), **common)
    else:
        image = _render_fluorescence(labels, profile, brightness, background_level=background_level, **common)

    params: dict[str, Any] = {
        "shape": [h, w],
        "seed": seed,
        "n_cells": n_cells,
        "radius_px": [r_lo, r_hi],
        "shape_irregularity": shape_irregularity,
        "cluster_fraction": cluster_fraction,
        "overlap": overlap,
        "texture": texture,
        "illumination": illumination,
        "blur_sigma": blur_sigma,
        "poisson_photons": poisson_photons,
        "gaussian_sigma": gaussian_sigma,
        "bit_depth": bit_depth,
        "bright_background": bool(bright_background),
        "background_level": background_level,
        "intensity_spread": intensity_spread,
        "color": bool(color) and bool(bright_background),
        "n_drawn": n_cells,
        "n_dropped": n_cells - count,
    }
    logger.debug("synthetic image %dx%d: %d nuclei drawn, %d counted", h, w, n_cells, count)
    return SyntheticSample(
        image=image, labels=labels, centroids=_centroids(labels, count), count=count, params=params
    )
