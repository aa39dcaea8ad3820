"""How the new model will read the user's set: one background and one object size for the whole set, decided from the annotations and the base model's view of the images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..groundtruth import GroundTruth

# a set-wide decision (background, object size) needs this share of the training images to agree
SET_AGREEMENT = 0.8


SPACING_WARN = 3.0
"""Dots lying more than this many measured diameters apart (median nearest-neighbour gap) make the measured size
suspect: touching objects sit one diameter apart, and a base model that reads the user's objects as something
smaller (fat cells as the nuclei on their membranes) measures a fraction of their size."""


SPACING_NOTE = 2.0
"""Dots this many measured sizes apart, over objects the base does not see: a note asks for the size."""


# label images whose median object diameters spread wider than this (90th / 10th percentile over the
# images) come from several magnifications: each image is then sized on its own
SIZE_SPREAD = 1.5


def reading_note(*, background: str, invert: bool | None, size: str, diameter_px: float | None,
                 spread: tuple[float, float] | None = None) -> str:
    """The set decisions of a fine-tune in plain words (CLI and Train page)."""
    if background == "set":
        bg = f"{'bright (brightfield, stained)' if invert else 'dark (fluorescence)'} background, decided once for the set"
    elif background == "card":
        bg = "background as the base model's card fixes it"
    else:
        bg = "background (bright or dark) read per image, as the base model does"
    if size == "given" and diameter_px:
        sz = f"objects {diameter_px:.1f} px across in every image (the size you gave, kept in the card)"
    elif size == "set" and diameter_px:
        sz = f"objects {diameter_px:.1f} px across in every image (one size for the set, kept in the card)"
    else:
        sz = "each image's object size estimated on its own, as the base model does"
        if spread is not None and spread[1] > SIZE_SPREAD * spread[0]:
            sz += (f" (the images' objects measure {spread[0]:.0f} to {spread[1]:.0f} px across, more than "
                   f"{SIZE_SPREAD:g}x apart: several magnifications, not one size)")
    return f"{bg[0].upper()}{bg[1:]}; {sz}."


def _median_diameter(labels: np.ndarray) -> float | None:
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    return float(np.sqrt(4 * np.median(areas) / np.pi)) if len(ids) else None


def background_votes(images: Sequence[np.ndarray], *, channel: int | None = None) -> list[bool]:
    """Each image's own reading: True for a bright background (:func:`cellcount.io.normalize.is_bright_background`)."""
    from ..io.normalize import is_bright_background, to_gray

    return [is_bright_background(to_gray(np.asarray(im), channel=channel)) for im in images]


def set_background(images: Sequence[np.ndarray] = (), *, channel: int | None = None,
                   agreement: float = SET_AGREEMENT, votes: Sequence[bool] | None = None) -> bool | None:
    """Whether a set of images has a bright background (brightfield, H&E: invert), decided once for the set
    by majority when at least ``agreement`` of its images agree; None (each image decides for itself)
    when the set is mixed, as fluorescence and brightfield images gathered together are. One decision
    guards the set against an image the per-image test misreads (a dense fluorescence image whose objects
    cover most of it); a mixed set read as one kind would invert every image of the other. ``votes``: the images'
    :func:`background_votes`, where the caller has them."""
    votes = background_votes(images, channel=channel) if votes is None else list(votes)
    if not votes:
        return None
    share = sum(votes) / len(votes)
    if max(share, 1 - share) < agreement or share == 0.5:
        return None
    return share > 0.5


def annotated_diameter(image: np.ndarray, gt: GroundTruth, base, *, size_model=None,
                       overrides: dict[str, Any] | None = None) -> float | None:
    """Typical nucleus diameter (px) in one annotated image: from its label image when it has one, else
    the base model's size estimate (or the median of its objects) on the image. ``size_model``: see
    :func:`cellcount.pipeline.predict`; ``overrides``: settings over the base card's (e.g. ``invert``)."""
    return measure_annotated(image, gt, base, size_model=size_model, overrides=overrides)[0]


def measure_annotated(image: np.ndarray, gt: GroundTruth, base, *, size_model=None,
                      overrides: dict[str, Any] | None = None
                      ) -> tuple[float | None, float | None, float | None, float | None]:
    """(:func:`annotated_diameter`; the share of the image's dots that lie on what the base model calls foreground,
    None without dots; the base's count of an image annotated with dots, else None; the part of that count far from
    every dot (:func:`undotted_share`), else None). A base that sees no object under most of the user's dots is not
    measuring the user's objects (fat cells: it sizes the nuclei on their membranes); one that counts far more
    objects than the dots, many of them far from any dot, may see a partly dotted image."""
    from .. import pipeline
    from ..quality import density_foreground
    from ..sizing import density_nucleus_diameter

    if gt.labels is not None:
        return _median_diameter(np.asarray(gt.labels, np.int32)), None, None, None
    params = pipeline.resolve_params(base, overrides)
    pred = pipeline.predict(image, base, params, size_model=size_model)
    # the base's estimate; else the size its card fixes (a model fine-tuned before), else what its map shows
    diameter = pred.estimated_diameter_px or params.nucleus_diameter_px
    res = None
    if not diameter and base.output_kind == "density":
        diameter = density_nucleus_diameter(pred.maps[0])
    elif not diameter:
        res = pipeline.postprocess(pred, params, measure=False)
        diameter = _median_diameter(res.labels) if res.labels is not None else None
    diameter = float(diameter) if diameter else None
    hits = found = undotted = None
    if gt.points is not None:  # its count, beside the dots (a density model's integral)
        res = res or pipeline.postprocess(pred, params, measure=False)
        found = float(res.count_estimate)
        undotted = undotted_count(pred, found, gt.points)
    if gt.points is not None and len(gt.points):
        rc = np.rint(np.asarray(gt.points, np.float64).reshape(-1, 2)).astype(np.int64)
        h, w = pred.maps.shape[-2:]
        rc = rc[(rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)]
        if len(rc):
            if base.output_kind == "density":  # a map with no nucleus-like mass sees none of the dots
                fg = density_foreground(pred.maps[0], diameter) if diameter else None
            else:
                fg = pred.maps[0]
            hits = float(np.mean(fg[rc[:, 0], rc[:, 1]] > 0.5)) if fg is not None else 0.0
    return diameter, hits, found, undotted


FAR_SPACINGS = 3.0
"""Far from every dot: over this many times the dots' own spacing (:func:`dot_spacing`) from the nearest one."""


def undotted_count(pred, found: float | None, points: np.ndarray | None) -> float | None:
    """The part of a model's count ``found`` on an image (its :class:`~cellcount.pipeline.Prediction` ``pred``) that
    lies far from every one of the user's dots (:func:`undotted_share` of its density mass, or of a mask model's
    foreground); None without a count or two dots."""
    if not found or points is None or len(points) < 2:
        return None
    mass = pred.maps[0] if pred.output_kind == "density" else (pred.maps[0] > 0.5).astype(np.float32)
    share = undotted_share(mass, np.asarray(points, np.float64).reshape(-1, 2))
    return None if share is None else found * share


def undotted_share(mass: np.ndarray, points: np.ndarray) -> float | None:
    """The share of ``mass`` (a map in the image's pixels) farther than :data:`FAR_SPACINGS` dot spacings from every
    dot: a part of the image left undotted holds much of it, a fully dotted image that the base over-counts little
    (mbm's H&E dots, complete, are 2.5x fewer than unet-density's count: "dot every cell" would be said of them)."""
    from scipy import ndimage as ndi

    spacing = dot_spacing([points])
    total = float(np.sum(mass))
    if not spacing or not math.isfinite(total) or total <= 0:  # dots on one spot, or a map of NaN: unknown
        return None
    far = np.ones(mass.shape[:2], bool)
    rc = np.rint(points).astype(np.int64)
    rc = rc[(rc[:, 0] >= 0) & (rc[:, 0] < far.shape[0]) & (rc[:, 1] >= 0) & (rc[:, 1] < far.shape[1])]
    far[rc[:, 0], rc[:, 1]] = False
    distance = ndi.distance_transform_edt(far)
    return float(np.sum(mass[distance > FAR_SPACINGS * spacing])) / total


def dot_spacing(points: Sequence[np.ndarray]) -> float | None:
    """Median distance (px) from each dot to its nearest neighbour over a set of images' dots ``points``
    (each (N, 2)). Touching objects sit one diameter apart, so it bounds the object diameter from above:
    the user's own annotation says how large the objects can be. None with fewer than two dots anywhere."""
    from scipy.spatial import cKDTree

    gaps = [cKDTree(p).query(p, k=2)[0][:, 1] for p in (np.asarray(q, np.float64).reshape(-1, 2) for q in points)
            if len(p) >= 2]
    return float(np.median(np.concatenate(gaps))) if gaps else None


def set_diameter(images: Sequence[np.ndarray], gts: Sequence[GroundTruth], base, *, size_model=None,
                 overrides: dict[str, Any] | None = None, sizes: Sequence[float | None] | None = None,
                 hits: Sequence[float | None] | None = None) -> float | None:
    """One object diameter (px) for a whole annotated set: the median of :func:`annotated_diameter` over its
    images (label areas, or the base model's estimate; ``sizes``: those already measured), at most the dots'
    :func:`dot_spacing`. When the base sees no object under most dots (``hits``, from
    :func:`measure_annotated`, below :data:`DOT_HIT_MIN`) and the dots lie over :data:`SPACING_WARN` of its
    estimates apart, its estimate is of something else: the dots' spacing is the size (objects that touch).

    A fine-tune learns the user's objects at one magnification; training and counting every image at this
    one size keeps a per-image estimate that wanders (dense, overlapping objects) from resizing each image
    differently, which moves its count."""
    if sizes is None:
        measured = [measure_annotated(im, gt, base, size_model=size_model, overrides=overrides)
                    for im, gt in zip(images, gts)]
        sizes, hits = [m[0] for m in measured], [m[1] for m in measured]
    known = [d for d in sizes if d]
    diameter = float(np.median(known)) if known else None
    spacing = dot_spacing([gt.points for gt in gts if gt.points is not None and gt.labels is None])
    if spacing and (diameter is None or spacing < diameter or set_misses_dots(gts, sizes, hits)):
        diameter = spacing
    return diameter


FEW_DOTS = 0.5
"""Fewer dots than this share of the base model's count on an image (of at least :data:`MIN_GUESS` cells): a partly
dotted image, whose cells without a dot are taught as background, is said before training."""
MIN_GUESS = 10


def few_dots(dots: int, found: float | None) -> bool:
    """Whether ``dots`` fall below :data:`FEW_DOTS` of the cells a model ``found`` (of at least :data:`MIN_GUESS`)."""
    return found is not None and found >= MIN_GUESS and dots < FEW_DOTS * found


def partly_dotted(dots: int, found: float | None, undotted: float | None = None) -> bool:
    """:func:`few_dots`, and, where ``undotted`` (:func:`undotted_count`) is known, at least :data:`UNDOTTED_SHARE` of
    the count ``found`` lies far from every dot or the dots are under :data:`SCATTERED_DOTS` of it (a few example
    cells dotted across the image): a complete annotation that the model over-counts is not one."""
    return few_dots(dots, found) and (undotted is None or undotted >= UNDOTTED_SHARE * found
                                      or dots < SCATTERED_DOTS * found)


def few_dots_line(name: str, dots: int, model: str, found: float, far: float | None = None) -> str:
    """One image of :func:`few_dots_note`: the cells far from every dot where that is what it found, else that the
    few dots lie scattered (a few dots spread over the image leave no cell "far": "0 of them far from every dot"
    read as though the dots covered the cells)."""
    if far is None:
        far_text = ""
    elif far >= UNDOTTED_SHARE * found:
        far_text = f", {far:.0f} of them far from every dot"
    else:
        far_text = ", the dots scattered among them"
    return f"{name} ({dots} dots; {model} finds about {found:.0f}{far_text})"


def few_dots_note(names: Sequence[str], dots: Sequence[int], found: Sequence[float | None], base: str, *,
                  undotted: Sequence[float | None] | None = None, held_out: bool = False) -> str | None:
    """"Fewer dots than cells? ..." for the images whose ``dots`` are :func:`few_dots` of what the ``base`` model
    ``found`` on them (None where it was not counted) and, where ``undotted`` (:func:`measure_annotated`) is known,
    at least :data:`UNDOTTED_SHARE` of that count lies far from every dot, or the dots are under
    :data:`SCATTERED_DOTS` of it (a few example cells dotted across the image); None when none does. ``held_out``:
    said of held-out images."""
    far = list(undotted) if undotted is not None else [None] * len(names)
    sparse = [few_dots_line(n, d, base, f, u) for n, d, f, u in zip(names, dots, found, far, strict=True)
              if partly_dotted(d, f, u)]
    if not sparse:
        return None
    what = ("every cell without a dot counts as an error of both models there: dot every cell of those images, or "
            "leave them out" if held_out else
            "every cell without a dot is taught as background: dot every cell of those images, or leave them out")
    return (f"fewer dots than cells? {len(sparse)} {'held-out ' if held_out else ''}image(s) have under half the "
            f"cells {base} finds on them: {'; '.join(sparse[:5])}{' ...' if len(sparse) > 5 else ''}. {what[0].upper()}"
            f"{what[1:]}")


UNDOTTED_SHARE = 0.1
"""A partly dotted image: this share of the base's count or more lies far from every dot (:func:`undotted_share`)."""
SCATTERED_DOTS = 0.25
"""Or dots under this share of the base's count, wherever they lie: a few example cells dotted across the image.
`python scripts/undotted_probe.py` (AMD EPYC Zen 5, 2026-12-07, `results/probes/amd-zen5-2026-12-07-undotted-mbm.md`):
on the 44 mbm H&E images, dotted completely and over-counted 1.4-3x by unet-density (dots 0.33-0.71 of its count),
0-8.1% of its count lies far from every dot and none is said; with the dots of their left halves only, 14.5-59.4%
(every one said); with every third dot kept, 0-8% far but dots 0.11-0.24 of the count (every one said)."""


DOT_HIT_MIN = 0.5
"""A base model that calls less than this share of the user's dots foreground does not see their objects."""


def base_misses_dots(diameter: float | None, spacing: float | None, hits: Sequence[float | None] | None) -> bool:
    """Whether the base's size estimate ``diameter`` is of something other than the dotted objects: it sees
    no object under most dots (median of ``hits`` below :data:`DOT_HIT_MIN`) and the dots lie over
    :data:`SPACING_WARN` estimates apart."""
    known = [h for h in (hits or []) if h is not None]
    return bool(diameter and spacing and known and spacing > SPACING_WARN * diameter
                and float(np.median(known)) < DOT_HIT_MIN)


def set_misses_dots(gts: Sequence[GroundTruth], sizes: Sequence[float | None],
                    hits: Sequence[float | None] | None) -> bool:
    """:func:`base_misses_dots` for a set: its median size estimate and its dots' spacing. Never for a set with
    label images, which measure the objects themselves."""
    if any(gt.labels is not None for gt in gts):
        return False
    known = [d for d in sizes if d]
    spacing = dot_spacing([gt.points for gt in gts if gt.points is not None])
    return base_misses_dots(float(np.median(known)) if known else None, spacing, hits)


def spacing_note(diameter: float | None, gts: Sequence[GroundTruth], *, measured: float | None = None,
                 hits: Sequence[float | None] | None = None) -> str:
    """What the user should know about a dots-only set's size: the size taken from the dots' spacing because
    the base's estimate (``measured``) was of something else; or, when it is not known whether the base sees
    the dots (``hits``, :func:`measure_annotated`), a ``diameter`` far below the dots' spacing (see
    :data:`SPACING_WARN`: only the user knows whether the objects are sparse or larger than measured)."""
    dots = [gt.points for gt in gts if gt.points is not None and gt.labels is None]
    spacing = dot_spacing(dots) if len(dots) == len(gts) else None  # label images measure the size themselves
    if measured and diameter and spacing and diameter == spacing and measured < diameter / SPACING_WARN:
        return (f"The base model sees no object under most of your dots and measured {measured:.1f} px, "
                f"something other than your objects; they were sized from your dots' spacing instead "
                f"({spacing:.0f} px, as objects that touch each other are). If your objects do not touch, give "
                "their diameter (--diameter, or 'Object diameter' on the Train page) and fine-tune again.")
    seen = [h for h in (hits or []) if h is not None]
    if (seen and float(np.median(seen)) < DOT_HIT_MIN and diameter and spacing
            and spacing > SPACING_NOTE * diameter):
        # not enough to take the spacing as the size (sparse objects the base cannot see would come out too
        # large), but said: touching objects the base measures too small (large fat cells) are counted better by
        # a fine-tune given their size
        return (f"The base model sees an object under only {float(np.median(seen)):.0%} of your dots (median over images) "
                f"and measured {diameter:.1f} px, but your dots lie a median {spacing:.0f} px apart. If your objects "
                f"touch each other, they are about {spacing:.0f} px across: give their diameter (--diameter, or "
                "'Object diameter' on the Train page) and fine-tune again.")
    if seen or not (diameter and spacing and spacing > SPACING_WARN * diameter):
        return ""  # the base sees the dotted objects: its size is theirs, sparse as they are
    return (f"Objects were measured {diameter:.1f} px across, but your dots lie a median {spacing:.0f} px apart. "
            "If your objects touch each other, they are larger than measured (the base model may read them as "
            "something smaller): give their diameter (--diameter, or 'Object diameter' on the Train page) and "
            "fine-tune again.")


def several_sizes_note(diameter: float, gts: Sequence[GroundTruth], sizes: Sequence[float | None]) -> str:
    """A warning when a stated ``diameter`` is one size for images whose objects come in several
    (:func:`one_magnification` false on their label images or the base's estimates ``sizes``)."""
    if one_magnification(gts, sizes):
        return ""
    labelled = [d for d in (_median_diameter(np.asarray(gt.labels, np.int32)) for gt in gts
                            if gt.labels is not None) if d]
    found, source = (labelled, "your label images") if len(labelled) >= 2 else ([d for d in sizes if d],
                                                                                  "the base model's estimates")
    low, high = np.percentile(found, [10, 90])
    return (f"You gave one object diameter ({diameter:g} px), but your training images show objects of about "
            f"{low:.0f} to {high:.0f} px across ({source}): every image is resized alike, so some are learnt and "
            "counted at the wrong size. Set the "
            "diameter to 0 (leave out --diameter) to size each image on its own, or fine-tune one model per "
            "magnification.")


def one_magnification(gts: Sequence[GroundTruth], sizes: Sequence[float | None] | None = None) -> bool:
    """Whether a set shows its objects at one size (one magnification): the 90th / 10th percentile of the
    images' median object diameters within :data:`SIZE_SPREAD`. Read from the label images when there are
    two or more; otherwise from ``sizes``, the base model's per-image estimates (:func:`annotated_diameter`),
    since dots cannot tell (their spacing follows the density as much as the size). Fewer than two sizes
    count as one magnification."""
    spread = size_spread(gts, sizes)
    return spread is None or bool(spread[1] <= SIZE_SPREAD * spread[0])


def size_spread(gts: Sequence[GroundTruth], sizes: Sequence[float | None] | None = None) -> tuple[float, float] | None:
    """(10th, 90th percentile) of the images' median object diameters, px, as :func:`one_magnification` reads
    them (label images, else ``sizes``); None with fewer than two."""
    found = [d for d in (_median_diameter(np.asarray(gt.labels, np.int32)) for gt in gts if gt.labels is not None)
             if d]
    if len(found) < 2:
        found = [d for d in (sizes or []) if d]
    if len(found) < 2:
        return None
    low, high = np.percentile(found, [10, 90])
    return float(low), float(high)
