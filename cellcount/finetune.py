"""Teach a model the user's cells: fine-tune a shipped (or user) model on a few annotated images.

``python -m cellcount.finetune --from MODEL --data DIR --name NEW [--minutes 5 | --steps N] [--holdout 0.25]``

The data folder is anything :func:`cellcount.groundtruth.load_labelled_folder` reads: instance label
images, binary masks, dot images or point CSVs. Dots alone are enough for every model kind: a density
target comes straight from the dots, and segmentation targets are the base model's own segmentation
corrected by the dots (:func:`labels_from_dots`). The input is decided once for the set and kept in
the new card: its background (:func:`set_background`) and one object size (:func:`set_diameter`). Part of
the images is held out; the new model's card records the base model, a fingerprint of the data, the images
used, steps and time, the postprocessing re-tuned on the training images, and count metrics on the held-out
images before (base model) and after. The model is written to the user models folder (:func:`cellcount.models.user_models_dir`) and is usable
by name everywhere.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CellcountError, GroundTruthError, ParameterError
from .groundtruth import GroundTruth, listed

logger = logging.getLogger(__name__)

DEFAULT_MINUTES = 5.0
# the most steps a time budget buys, so that a fast CPU finishes early instead of spending the whole budget:
# without the crops' jitter, vgg_cells' two validation draws counted 2.96 / 3.38 at 300 steps, 2.98 / 2.53 at
# 1500 and 2.78 / 2.33 at 3000 (docs/finetuning.md, "Augmentation"); more were not tried
DEFAULT_MAX_STEPS = 3000
DOTS_ON_MASK_NOTE = (
    "your annotations are dots: a segmentation model such as {base} learns its own outlines corrected by them, "
    "which works where cells are separate; where they touch or overlap, a density model (unet-density) learns "
    "from dots directly and usually counts better")
# the training precision: "auto" times both on CPUs with native bf16 and keeps the faster
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_HOLDOUT = 0.25
MIN_TRAIN_IMAGES = 1
FEW_STEPS = 100
"""A time budget that buys fewer steps gets a note (vgg_cells' fine-tunes gained most within the first 300)."""
FEW_TRAIN_IMAGES = 3
"""Fewer training images than this get a note: a fine-tune learns little from one or two."""
# The training crops are flipped and rotated (and sometimes blurred or noised), but not rescaled, warped or
# re-lit: the user's set is imaged one way and counted at its own object size (fixed in the new card), and each
# of those jitters cost count accuracy on every validation check (docs/finetuning.md, "Augmentation"):
# validation count MAE 2.76 without them against 3.71 with the earlier jitter (scale 0.9-1.11, a third of the
# crops warped, a base model's lighting jitter) on vgg_cells (1500 steps, two draws), mbm 5.41 against 5.90
# (three draws), DSB's mixed validation split on unet-mask from label images 3.46 against 3.84.
SCALE_RANGE = (1.0, 1.0)
"""Scale jitter of the training crops (none: resampling blurs the crops as the counted images are not)."""
ELASTIC_P = 0.0
"""Share of the training crops elastically warped."""
DOTS_SCALE_RANGE, DOTS_ELASTIC_P = (0.9, 1.11), 0.3
"""The same for segmentation heads taught by dots: their targets are the base's own outlines corrected by the
dots, errors included, and the geometric jitter keeps the new model from learning those exactly (DSB's mixed
validation split, dots on unet-mask: MAE 4.57 with it, 6.46 without; docs/finetuning.md)."""
INTENSITY_JITTER = 0.0
"""Strength of the training crops' brightness / contrast / gamma jitter (see
:func:`cellcount.training.augment.intensity`; 1 as for a base model)."""
# a set-wide decision (background, object size) needs this share of the training images to agree
SET_AGREEMENT = 0.8
DOT_DISC = 1.0
"""Segmentation targets from dots: a dot the base model segmented nothing under becomes a disc this fraction
of the object diameter across."""

SPACING_WARN = 3.0
"""Dots lying more than this many measured diameters apart (median nearest-neighbour gap) make the measured size
suspect: touching objects sit one diameter apart, and a base model that reads the user's objects as something
smaller (fat cells as the nuclei on their membranes) measures a fraction of their size."""
SPACING_NOTE = 2.0
"""Dots this many measured sizes apart, over objects the base does not see: a note asks for the size."""

# label images whose median object diameters spread wider than this (90th / 10th percentile over the
# images) come from several magnifications: each image is then sized on its own
SIZE_SPREAD = 1.5
MIN_FLAG_IMAGES = 8
"""Training images needed to fit a fine-tuned model's own quality rule (fewer: the base's rule, widened)."""
MIN_NOVELTY_LIMIT = 2.0
"""The fine-tuned model's novelty limit is at least this (twice as far from the user's images as they lie from
each other): a few images' leave-one-out distances understate how far the next image of the same kind may lie.
On the validation splits (`scripts/finetune_flag_probe.py`, docs/finetuning.md) unseen images of the same kind
read 0.65-2.49 against 2.26-8.26 for the other set's, and the range limit alone (1.47-1.75) flagged 14-25% of
the same kind."""
MIN_NOVELTY_IMAGES = 4
"""Images (training and held-out) needed for the fine-tuned model's own novelty reference: more than its
``k`` nearest neighbours. A small set's reference is rough, but without one a model taught on a few images
never flags an image unlike them (a tester's fine-tune on 6 fluorescence images counted an H&E image 1275
against 167, unflagged)."""


@dataclass(frozen=True)
class FinetuneProgress:
    """One report of a running fine-tune: ``stage`` is 'prepare', 'train', 'tune', 'evaluate' or 'done'."""

    stage: str
    step: int = 0
    steps: int = 0
    loss: float = math.nan
    elapsed_s: float = 0.0
    remaining_s: float = math.nan
    message: str = ""
    estimated: bool = False
    """``steps`` is what the time budget is expected to buy (re-estimated as the run goes), not a fixed number."""


@dataclass
class FinetuneResult:
    """Where the new model went and what it did on the held-out images."""

    folder: Path
    name: str
    steps: int
    seconds: float
    before: dict[str, float]
    after: dict[str, float]
    paired: dict[str, float]
    holdout_files: list[str] = field(default_factory=list)
    train_files: list[str] = field(default_factory=list)
    cancelled: bool = False
    holdout_counts: list[dict[str, Any]] = field(default_factory=list)
    """Per held-out image: ``file``, ``true``, ``before`` (base model's count), ``after`` (the new model's)."""
    reading: str = ""
    """How the new model reads images, in words: the background and object size, fixed for the set or per image."""
    size_note: str = ""
    """Why the measured object size may be wrong and what to do (empty when nothing suggests it)."""
    notes: list[str] = field(default_factory=list)
    """What else the user should know about the run: held-out images capped, few training images, empty dots."""
    precision: str = "fp32"
    precision_why: str = ""
    """The training precision used and why (timed on this CPU, or as asked)."""
    settings_only: dict[str, float] = field(default_factory=dict)
    """The held-out figures of the base's weights with the new model's settings (empty where they are the base's
    own, or for a density model): how much of the change the settings alone make."""
    kept_base: bool = False
    """The fine-tuned weights counted the held-out images clearly worse (``after``: always the fine-tuned
    weights' figures), so the saved model keeps the base's weights and settings (it counts them as ``before``)."""


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


class Cancelled(CellcountError):
    """The fine-tune was cancelled before it finished."""


# --------------------------------------------------------------------------------------------------
# targets from dots
# --------------------------------------------------------------------------------------------------
def labels_from_dots(base_labels: np.ndarray, points: np.ndarray, *, diameter_px: float) -> np.ndarray:
    """Instance labels for training a segmentation head from dot annotations alone.

    The base model's segmentation ``base_labels`` (H, W) is corrected by the user's dots ``points``
    (N, 2) (row, col): an object hit by one dot is kept; an object hit by several is split between them
    (a watershed of its distance transform seeded at the dots); an object hit by none is dropped (the
    user did not count it); a dot on background gets a disc of ``diameter_px`` (only on background
    pixels). Returns int32 labels numbered 1..N (N = the number of dots inside the image).
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    base = np.asarray(base_labels)
    h, w = base.shape
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    rc = np.rint(pts).astype(np.int64)
    inside = (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)
    rc = rc[inside]
    out = np.zeros((h, w), np.int32)
    hit = base[rc[:, 0], rc[:, 1]] if len(rc) else np.zeros(0, base.dtype)
    next_id = 1
    objects = ndi.find_objects(base.astype(np.int64)) if base.max(initial=0) > 0 else []
    for obj in np.unique(hit[hit > 0]):
        dots = rc[hit == obj]
        sl = objects[int(obj) - 1]
        region = base[sl] == obj
        if len(dots) == 1:
            out[sl][region] = next_id
            next_id += 1
            continue
        markers = np.zeros(region.shape, np.int32)
        for k, (r, c) in enumerate(dots):
            markers[r - sl[0].start, c - sl[1].start] = k + 1
        split = watershed(-ndi.distance_transform_edt(region), markers, mask=region)
        view = out[sl]
        view[region] = split[region] + next_id - 1
        next_id += len(dots)
    radius = max(1.0, diameter_px / 2.0)
    yy, xx = np.ogrid[:h, :w]
    for r, c in rc[hit == 0]:
        r0, r1 = max(0, int(r - radius - 1)), min(h, int(r + radius + 2))
        c0, c1 = max(0, int(c - radius - 1)), min(w, int(c + radius + 2))
        disc = (yy[r0:r1] - r) ** 2 + (xx[:, c0:c1] - c) ** 2 <= radius * radius
        view = out[r0:r1, c0:c1]
        view[disc & (view == 0)] = next_id
        view[r - r0, c - c0] = next_id  # the dot itself, even where a neighbour's disc got there first
        next_id += 1
    return out


def _median_diameter(labels: np.ndarray) -> float | None:
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    return float(np.sqrt(4 * np.median(areas) / np.pi)) if len(ids) else None


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def _images(n: int, kind: str = "") -> str:
    """'1 training image', '3 training images'."""
    return f"{n} {kind + ' ' if kind else ''}image{'' if n == 1 else 's'}"


def holdout_asked(holdout: float | int, n: int) -> int:
    """How many of ``n`` images ``holdout`` (a fraction below 1, or a number) asks to hold out."""
    return int(round(holdout * n)) if isinstance(holdout, float) and holdout < 1 else int(holdout)


def split_holdout(names: Sequence[str], holdout: float | int, *, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (train, held out). ``holdout`` is a fraction (0-1) or a number of images; at least one image
    trains, and at least one is held out when there are two or more (none otherwise)."""
    n = len(names)
    if n == 0:
        raise GroundTruthError("no annotated images to fine-tune on")
    k = holdout_asked(holdout, n)
    if k < 0:
        raise ParameterError(f"holdout must be >= 0, got {holdout}")
    k = min(k, n - MIN_TRAIN_IMAGES)
    if n >= 2 and holdout:
        k = max(k, 1)
    order = np.random.default_rng(seed).permutation(n)
    held = sorted(int(i) for i in order[:k])
    return [i for i in range(n) if i not in set(held)], held


def _hold_out_unseen(items, train_idx: list[int], held_idx: list[int], seen: set[str],
                     seen_pixels: set[str] = frozenset()):
    """(train, held out, names held out that the base learnt from): held-out images the base model was trained on
    are swapped for training images it never saw (scored on its own training images, the base looked better than
    it is, which decides whether its weights are kept), but at most half of those unseen images go: they are often
    the few new ones a user annotated to fine-tune again, and the new model must learn from them too. ``seen``: the
    base's training images' file sha256; ``seen_pixels``: their :func:`cellcount.io.pixel_digest` (saved again)."""
    if not seen or not held_idx:
        return train_idx, held_idx, []
    from .io import pixel_digest

    learnt = {i for i, (_, raw, _) in enumerate(items)
              if hashlib.sha256(raw).hexdigest() in seen or (seen_pixels and pixel_digest(raw) in seen_pixels)}
    fresh = [i for i in train_idx if i not in learnt]
    unseen = len([i for i in range(len(items)) if i not in learnt])
    swaps = max(0, len(fresh) - math.ceil(unseen / 2))  # at least half of the unseen images keep training
    held, train = list(held_idx), list(train_idx)
    for k, i in enumerate(held):
        if i in learnt and swaps > 0:
            j = fresh.pop(0)
            swaps -= 1
            held[k] = j
            train[train.index(j)] = i
    return sorted(train), sorted(held), [items[i][0] for i in sorted(held) if i in learnt]


def data_fingerprint(items: Sequence[tuple[str, bytes, GroundTruth]]) -> str:
    """sha256 over each image's name, bytes and annotation (so the card says exactly what it learnt from)."""
    h = hashlib.sha256()
    for name, data, gt in sorted(items, key=lambda item: item[0]):
        h.update(name.encode())
        h.update(hashlib.sha256(data).digest())
        h.update(gt.content_bytes())
    return h.hexdigest()


LabelledItems = Sequence[tuple[str, bytes, GroundTruth]]
"""(image name, encoded image bytes, annotation) per image, as :func:`cellcount.labelled.labelled_set` pairs
uploads in memory."""


def _labelled_items(
    data: str | Path | LabelledItems, skipped: list[str] | None = None,
) -> tuple[list[tuple[str, bytes, GroundTruth]], str]:
    """The annotated images of a folder (read from disk) or of in-memory items, and a description of where
    they came from for the card. A folder's image whose file or annotation cannot be used is left out and
    named in ``skipped`` (as ``count`` and ``evaluate`` do) when a list is given."""
    from .groundtruth import item_names, load_labelled_folder

    if isinstance(data, (str, Path)):
        on_error = None if skipped is None else (lambda path, why: skipped.append(f"{path.name}: {why}"))
        pairs = load_labelled_folder(data, on_error=on_error)
        if not pairs:
            raise GroundTruthError(f"no images with annotations found in {data}")
        names = item_names(data, [p for p, _ in pairs])
        return [(n, Path(p).read_bytes(), gt) for n, (p, gt) in zip(names, pairs, strict=True)], str(data)
    items = [(str(n), bytes(b), gt) for n, b, gt in data]
    if not items:
        raise GroundTruthError("no annotated images to fine-tune on")
    names = [n for n, _, _ in items]
    if len(set(names)) != len(names):
        raise GroundTruthError("two annotated images have the same name; rename one")
    return items, f"{len(items)} uploaded images"


def set_background(images: Sequence[np.ndarray], *, channel: int | None = None,
                   agreement: float = SET_AGREEMENT) -> bool | None:
    """Whether a set of images has a bright background (brightfield, H&E: invert), decided once for the set
    by majority when at least ``agreement`` of its images agree; None (each image decides for itself)
    when the set is mixed, as fluorescence and brightfield images gathered together are. One decision
    guards the set against an image the per-image test misreads (a dense fluorescence image whose objects
    cover most of it); a mixed set read as one kind would invert every image of the other."""
    from .io.normalize import is_bright_background, to_gray

    votes = [is_bright_background(to_gray(np.asarray(im), channel=channel)) for im in images]
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
                      overrides: dict[str, Any] | None = None) -> tuple[float | None, float | None]:
    """(:func:`annotated_diameter`, the share of the image's dots that lie on what the base model calls
    foreground, or None without dots). A base that sees no object under most of the user's dots is not
    measuring the user's objects (fat cells: it sizes the nuclei on their membranes)."""
    from . import pipeline
    from .quality import density_foreground
    from .sizing import density_nucleus_diameter

    if gt.labels is not None:
        return _median_diameter(np.asarray(gt.labels, np.int32)), None
    params = pipeline.resolve_params(base, overrides)
    pred = pipeline.predict(image, base, params, size_model=size_model)
    # the base's estimate; else the size its card fixes (a model fine-tuned before), else what its map shows
    diameter = pred.estimated_diameter_px or params.nucleus_diameter_px
    if not diameter and base.output_kind == "density":
        diameter = density_nucleus_diameter(pred.maps[0])
    elif not diameter:
        res = pipeline.postprocess(pred, params, measure=False)
        diameter = _median_diameter(res.labels) if res.labels is not None else None
    diameter = float(diameter) if diameter else None
    hits = None
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
    return diameter, hits


def free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3`` ...: the first not in ``taken``, whatever the case (one folder on macOS
    and Windows; a default name for a new model)."""
    taken = {t.casefold() for t in taken}
    k, out = 2, name
    while out.casefold() in taken:
        out, k = f"{name}-{k}", k + 1
    return out


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
        # large), but said: 100 px fat cells were measured 32 px and dotted 76 px apart, and given their size
        # a fine-tune counted its held-out images 0.96 off instead of 2.46 (a tester)
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


def training_item(name: str, image: np.ndarray, gt: GroundTruth, base, *, density_scale: float,
                  diameter_px: float | None = None, size_model=None, overrides: dict[str, Any] | None = None,
                  reference_px: float | None = None, density_sigma: float = 0.25, dot_disc: float = DOT_DISC,
                  measured_px: float | None = None):
    """One image + annotation -> a training :class:`~cellcount.training.data.Item` for ``base``'s kind,
    resized so that nuclei of ``diameter_px`` (default: this image's own, :func:`annotated_diameter`)
    reach the model's training size (``reference_px``, default the base card's). ``size_model``: see
    :func:`cellcount.pipeline.predict`; ``overrides``: settings over the base card's (e.g. the set's
    ``invert``). Dots become Gaussians of sigma ``density_sigma`` x the diameter; for a segmentation head, a dot
    the base segmented nothing under becomes a disc ``dot_disc`` x the diameter across. ``measured_px``: this
    image's :func:`annotated_diameter`, when the caller measured it already (one base pass less)."""
    from . import pipeline, sizing
    from .training.data import Item
    from .training.targets import border_target, density_from_labels, density_from_points

    kind = base.output_kind
    # the base run at the scale the fine-tune trains at: its segmentation is what the dots correct
    params = pipeline.resolve_params(base, overrides)
    if diameter_px:
        params = dataclasses.replace(params, auto_nucleus_size=False, nucleus_diameter_px=float(diameter_px))
    # the base's maps correct dots for a segmentation head; otherwise only its input is needed (no network pass)
    pred = (pipeline.predict(image, base, params, size_model=size_model)
            if gt.labels is None and gt.points is not None and kind != "density" else None)
    norm, inverted = (pred.image_norm, pred.inverted) if pred is not None else pipeline.normalize(image, base, params)
    reference_diameter = sizing.reference_diameter(base.card)
    own = None
    if gt.labels is not None:
        labels = np.asarray(gt.labels, np.int32)
        own = _median_diameter(labels)
    elif gt.points is not None:
        labels = None
        if kind != "density":
            base_res = pipeline.postprocess(pred, params, measure=False)
            seg = base_res.labels if base_res.labels is not None else np.zeros(norm.shape, np.int32)
            own = diameter_px or pred.estimated_diameter_px or _median_diameter(seg)
            labels = labels_from_dots(seg, gt.points, diameter_px=dot_disc * (own or reference_diameter))
    else:
        raise GroundTruthError(f"{name}: a count alone cannot teach a model where the cells are; "
                               "give label images, masks, dot images or point CSVs")
    diameter = (diameter_px or own or measured_px
                or annotated_diameter(image, gt, base, size_model=size_model, overrides=overrides) or reference_diameter)
    scale = pipeline.model_scale(base, diameter, norm.shape, reference_px=reference_px)
    if scale != 1.0:
        norm = pipeline.resize_image(norm, scale)
    shape = norm.shape

    def resized_labels(lab: np.ndarray) -> np.ndarray:
        if scale == 1.0:
            return lab
        import cv2

        return cv2.resize(lab.astype(np.int32).astype(np.float32), shape[::-1],
                          interpolation=cv2.INTER_NEAREST).astype(np.int32)

    targets: dict[str, np.ndarray] = {}
    lab = resized_labels(labels) if labels is not None else None
    if kind in ("mask", "multihead"):
        assert lab is not None
        targets["mask"] = (lab > 0).astype(np.uint8)
        targets["border"] = border_target(lab)
    if kind in ("density", "multihead"):
        if gt.points is not None:
            pts = np.asarray(gt.points, np.float64) * scale
            sigma = max(1.0, density_sigma * diameter * scale)
            targets["density"] = density_from_points(pts, shape, sigmas=sigma) * np.float32(density_scale)
        else:
            targets["density"] = density_from_labels(lab) * np.float32(density_scale)
    count = gt.count
    return Item(name=name, image=norm.astype(np.float32), labels=lab if lab is not None else np.zeros(shape, np.int32),
                count=int(count), targets=targets, inverted=inverted)


# --------------------------------------------------------------------------------------------------
# the fine-tune
# --------------------------------------------------------------------------------------------------
def _fit(net, items, *, kind: str, steps: int | None, seconds: float | None, batch_size: int, crop: int, lr: float,
         rng: np.random.Generator, report: Callable[[FinetuneProgress], None], cancel: threading.Event | None,
         loss_cfg: dict[str, Any], scale_range: tuple[float, float],
         elastic_p: float = ELASTIC_P, intensity_jitter: float = INTENSITY_JITTER,
         average_last: float = 0.0, precision: str = "fp32",
         max_steps: int | None = None, grad_under_blobs: bool = False,
         freeze_encoder: bool = False) -> tuple[int, float, list[float], dict[str, Any]]:
    """The training loop: cosine schedule over ``steps``, or over the steps that fit in ``seconds``
    (estimated from the recent steps' pace, every 10 steps; it stops when ``seconds`` are spent), at most
    ``max_steps`` of them.
    ``average_last`` > 0: the net ends with the mean of its weights after each of the last ``average_last``
    share of the steps (BatchNorm statistics included), not the last step's alone.
    ``precision``: "fp32", "bf16" (the forward pass autocast to bfloat16) or "auto": the first steps are
    timed in both on a CPU with native bf16 and the rest run in the faster (see :func:`_precision_plan`).
    ``freeze_encoder``: the contracting path keeps the base's weights and BatchNorm statistics; a step then
    back-propagates through the decoder only: more steps in a time budget, but it counted worse on vgg_cells
    (docs/finetuning.md).
    Returns (steps run, seconds, losses, the precision used: ``{"precision", "why", "s_per_step"}``)."""
    import torch

    from .train import DEFAULTS, _batch
    from .training.losses import density_loss, mask_loss, multihead_loss, relu_under_blobs

    # a ReLU density head passes no gradient where the base draws nothing, so cells it misses stay missed
    raw = grad_under_blobs and kind == "density" and getattr(net, "density_act", None) == "relu"
    if raw:
        net.raw_head = True
    cfg = {"train": {"batch_size": batch_size, "crop": crop},
           "augment": {**DEFAULTS["augment"], "elastic_p": elastic_p, "invert_p": 0.0,
                       "scale_range": list(scale_range), "intensity_strength": intensity_jitter}}
    frozen = net.encoder() if freeze_encoder else []
    for m in frozen:
        m.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    cap = int(max_steps) if max_steps else 1_000_000
    total = steps or min(cap, 10_000)
    warm = 10
    t0 = time.perf_counter()
    losses: list[float] = []
    net.train()
    for m in frozen:
        m.eval()  # the base's BatchNorm statistics, not the few crops'
    step = 0
    step_times = [0.0]  # elapsed seconds after each step
    avg: dict[str, torch.Tensor] | None = None
    n_avg = 0
    plan = _precision_plan(precision)
    timed: dict[str, list[float]] = {"fp32": [], "bf16": []}
    chosen = {"precision": precision, "why": f"{precision}, as asked", "s_per_step": {}}
    if precision == "auto" and not plan:
        chosen = {"precision": "fp32", "why": "fp32: this CPU has no native bf16", "s_per_step": {}}
    elif plan and (steps or max_steps) and (steps or max_steps) < 4 * len(plan):  # timing: most of the run
        chosen = {"precision": "fp32", "why": f"fp32: {steps or max_steps} steps are too few to time bf16", "s_per_step": {}}
        plan = ()
    while step < total:
        if cancel is not None and cancel.is_set():
            raise Cancelled("fine-tuning was cancelled")
        frac = min(step / max(total, 1), 1.0)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * frac))
        x, t = _batch(items, rng, cfg)
        xb = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        now = plan[step] if step < len(plan) else chosen["precision"]
        t_step = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=now == "bf16"):
            out = net(xb)
        out = out.float()
        tt = {k: torch.from_numpy(v) for k, v in t.items()}
        if kind == "multihead":
            loss = multihead_loss(out, tt, mask_kind=loss_cfg["mask"], border_weight=loss_cfg["border_weight"],
                                  density_weight=loss_cfg.get("density_weight", 0.3),
                                  density_terms=loss_cfg["density"])
        elif kind == "mask":
            loss = mask_loss(out, tt["mask"], tt["border"], kind=loss_cfg["mask"],
                             border_weight=loss_cfg["border_weight"])
        else:
            if raw:
                out = relu_under_blobs(out, tt["density"] > 0)
            loss = density_loss(out, tt["density"], weights=loss_cfg["density"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if step < len(plan) and step not in _WARMUP_STEPS:
            timed[now].append(time.perf_counter() - t_step)
        step += 1
        if step == len(plan) and plan:
            chosen = _choose_precision(timed)
        elapsed = time.perf_counter() - t0
        if steps is None and seconds and step >= 3 and (step == 3 or step % 10 == 0 or elapsed >= seconds):
            # the steps that fit in what is left of the budget, re-planned as the run goes: a shared
            # machine's speed changes within minutes, and the budget is a limit, not a target
            # over the last 50 steps: 10 swung the plan (and the steps shown) by 2x on a shared machine
            recent = (elapsed - step_times[-min(50, step)]) / min(50, step)
            total = step if elapsed >= seconds else min(cap, max(step + 1, step + int((seconds - elapsed) / recent)))
        step_times.append(elapsed)
        if average_last > 0 and step >= (1.0 - average_last) * total:
            state = {k: v.detach().float() for k, v in net.state_dict().items() if v.is_floating_point()}
            if avg is None:
                avg, n_avg = {k: v.clone() for k, v in state.items()}, 1
            else:
                n_avg += 1
                for k, v in state.items():
                    avg[k] += (v - avg[k]) / n_avg
        per_step = elapsed / step
        shown, remaining = total, (total - step) * per_step
        if steps is None and seconds:  # a time budget: the time left is the budget's, whatever the speed
            left = max(seconds - elapsed, 0.0)
            # (unless the step cap ends the run first)
            shown, remaining = min(total, step + int(left / per_step)), left if total < cap else min(remaining, left)
        report(FinetuneProgress("train", step, shown, float(np.mean(losses[-10:])), elapsed, remaining,
                                message=chosen["why"] if step == len(plan) else "", estimated=not steps))
    if avg is not None and n_avg > 1:
        net.load_state_dict({**net.state_dict(), **avg})
    if raw:
        net.raw_head = False
    net.eval()
    if step < len(plan):  # a time budget too short to time both
        mixed = sum(p == "bf16" for p in plan[:step])
        chosen = {"precision": "fp32" if not mixed else "fp32/bf16",
                  "why": (f"fp32 and bf16 in turn: the time budget ended after {step} steps ({mixed} in bf16), while "
                          "the two were still being timed" if mixed else
                          f"fp32: the time budget ended after {step} step(s), before bf16 could be timed"),
                  "s_per_step": {}}
    return step, time.perf_counter() - t0, losses, chosen


# "auto" precision: a warm-up step of each (memory, kernels), then two timed steps of each, alternating so
# that a change in the machine's load weighs on both alike
_AUTO_PLAN = ("fp32", "bf16", "fp32", "bf16", "fp32", "bf16")
_WARMUP_STEPS = (0, 1)
# bf16 is kept only when clearly faster: its rounding costs a little accuracy for nothing otherwise
BF16_MIN_GAIN = 1.15


def _precision_plan(precision: str) -> tuple[str, ...]:
    """The precision of each of the first steps: both timed for "auto" on a CPU with native bf16 (AVX512-BF16
    or AMX: a fine-tune step ran 2x faster in bf16 on an AMX Xeon, and bf16 inference was slower than fp32 on
    a Xeon with AVX512-BF16 alone, so it is measured, not assumed), none otherwise (the whole run in
    ``precision``; fp32 for "auto" without native bf16, where it is emulated many times slower)."""
    from .models.backends import cpu_has_bf16

    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return _AUTO_PLAN if precision == "auto" and cpu_has_bf16() else ()


def _choose_precision(timed: dict[str, list[float]]) -> dict[str, Any]:
    """bf16 when its timed steps ran at least :data:`BF16_MIN_GAIN` x faster than fp32's (medians)."""
    per = {k: float(np.median(v)) for k, v in timed.items() if v}
    fp32, bf16 = per.get("fp32", math.inf), per.get("bf16", math.inf)
    use = "bf16" if bf16 * BF16_MIN_GAIN <= fp32 else "fp32"
    why = f"{use}: a training step took {bf16:.2f} s in bf16 and {fp32:.2f} s in fp32 on this CPU"
    return {"precision": use, "why": why, "s_per_step": {k: round(v, 4) for k, v in per.items()}}


def calibrate_flag(pairs: Sequence, params, base_card, rep=None) -> dict[str, Any]:
    """The new card's quality rule (``extra["quality"]``), from the new model's signals on its training images.

    The base's rule was fitted on the base's validation images: after a fine-tune it would flag whatever
    makes the user's images unlike those (a vgg_cells fine-tune, counting at 3-4 cells off, had every image
    flagged for a nucleus size 2.2x off the base's, the size the fine-tune trained at). Fitted on the
    training images (range limits only: its errors there say nothing), the flag marks images unlike the
    ones the model learnt. With fewer than
    :data:`MIN_FLAG_IMAGES` images the base's rule stays, each limit widened to take in the training images
    (:func:`_widened_to`)."""
    from .evaluate import evaluate_predictions
    from .quality import QualityRule, calibrate_rule, card_entry, flag_report, judge, range_limit, signals_from_table

    rep = evaluate_predictions(pairs, params, keep_results=False) if rep is None else rep  # (the caller's, when made)
    signals = signals_from_table(rep.per_image) if len(rep.per_image) else []
    rel = rep.per_image["rel_error"].to_numpy() if len(rep.per_image) else np.zeros(0)
    if len(signals) >= MIN_FLAG_IMAGES:
        # its errors on the images it learnt say nothing about its errors elsewhere: no limit is fitted to
        # them; the range limits flag an image beyond every training image
        rule, fit = calibrate_rule(signals, rel, max_limits=0, joint_limit=False)
        rule = _no_tighter_than(rule, QualityRule.from_card(base_card))
        qrep = {**flag_report([judge(x, rule).flag for x in signals], rel), "fitted_limits": fit["fitted_limits"]}
        note = (f"the {len(signals)} training images of the fine-tune (range limits on the new model's signals on "
                "the images it learnt, object shares no tighter than the base's limits: the flag marks images unlike them)")
    else:
        rule = _widened_to(QualityRule.from_card(base_card), signals)
        ratio = range_limit([x.get("size_ratio", math.nan) for x in signals], below=False)
        rule = dataclasses.replace(
            rule, max_size_ratio=max(v for v in (rule.max_size_ratio, ratio, 1.0) if v is not None),
            max_novelty=None,  # the new model has no novelty reference (its encoder moved)
            flag_size_at_limit=rule.flag_size_at_limit and not any(x.get("size_at_limit", 0) >= 1 for x in signals))
        qrep = flag_report([judge(x, rule).flag for x in signals], rel)
        note = (f"the base model's rule, each limit widened to take in the {len(signals)} training images of the "
                f"fine-tune (fewer than {MIN_FLAG_IMAGES} images to fit one)")
    return card_entry(rule, qrep, calibrated_on=note)


def apart_digits(a: float, b: float) -> int:
    """The decimals (2 to 4) that show two different figures as different."""
    return next((d for d in (2, 3, 4) if f"{a:.{d}f}" != f"{b:.{d}f}"), 2)


def told_apart(a: float, b: float) -> str:
    """"A against B" with :func:`apart_digits` decimals: a verdict of "worse" beside "3.00 against 3.00" reads as a
    mistake."""
    digits = apart_digits(a, b)
    return f"{a:.{digits}f} against {b:.{digits}f}"


PEAK_GAP_SHARE = 0.25
"""A density fine-tune with one object size for its set keeps its approximate centres this share of that size apart."""

MIN_HELDOUT_FOR_FLAG = 4
"""Held-out images with objects needed before their mean error flags every count of the new model: a fine-tune 16.9%
off on its 2 held-out H&E images counted 10 new ones 3.8% off (a tester), and flagged all of them."""


def heldout_flag_reason(after: dict[str, float], name: str, scored: int | None = None) -> str | None:
    """A reason given with every count of ``name`` when it counted its held-out images (``after``: their summary)
    off by :data:`cellcount.quality.LARGE_ERROR` or more on average: its own flag is fitted on the images it
    learnt, so it stays quiet on images like them, where a short or unlucky fine-tune is still far off (a 20-step
    fine-tune flagged none of its 27% undercounts). None when the held-out images were counted well, or too few
    (``scored``: those with objects, which the percentage averages over; default ``after["n"]``)."""
    from .quality import LARGE_ERROR

    mape, n = after.get("mape", math.nan), after.get("n", 0) if scored is None else scored
    if not (n >= MIN_HELDOUT_FOR_FLAG and math.isfinite(mape) and mape >= 100 * LARGE_ERROR):
        return None
    # no "; " inside: tables join the reasons with it
    return (f"{name} counted its {int(n)} held-out images {mape:.0f}% off on average when it was fine-tuned, so "
            "every count of it is flagged: check its counts by eye, or fine-tune again with more annotated images "
            "or more steps")


def _widened_to(rule, signals: Sequence[dict[str, float]]):
    """``rule`` with each limit (joint ones too) moved, where needed, just past what the fine-tune's own training
    images show (:func:`cellcount.quality.range_limit`): the base's limits were fitted on the base's images, and
    a fine-tune on H&E flagged 5 of its 6 training images and most unseen ones of their kind, counted right, as
    "unsure" by the base's fluorescence limit. Never tighter than the base's."""
    from .quality import BELOW, LIMITS, range_limit

    def widen(limit: float | None, key: str, below: bool) -> float | None:
        values = [v for x in signals if math.isfinite(v := x.get(key, math.nan))]
        edge = range_limit(values, below=below)
        if limit is not None and edge is None and below and values and min(values) <= 0:
            # a lower limit that its own training images reach 0 or fall under (a fine-tune on fat cells, darker
            # than their surroundings: contrast -0.01) has no place left: kept, it flagged every count
            return None
        if limit is None or edge is None:
            return limit
        return min(limit, edge) if below else max(limit, edge)

    changes = {field: widen(getattr(rule, field), key, below) for field, key, below in LIMITS if field != "max_novelty"}
    joint = tuple((key, widen(limit, key, BELOW[key])) for key, limit in rule.joint_limits)
    if any(limit is None for _, limit in joint):  # a joint limit needs all its parts
        joint = ()
    return dataclasses.replace(rule, **changes, joint_limits=joint)


def own_novelty(model, pairs: Sequence, *, density: bool):
    """(reference, limit): the fine-tuned network's encoder features of the user's images (``pairs``: the
    training and held-out ones) and a limit just past what they read against each other (leave one out, :func:`cellcount.quality.range_limit`, over both
    windows' references), so the new model's flag marks images unlike the ones it learnt in its own encoder's
    terms; None with fewer than :data:`MIN_NOVELTY_IMAGES` images to judge (each at least
    :data:`cellcount.novelty.MIN_WINDOW_PX` at the model's scale; :func:`cellcount.novelty.fit_reference`)."""
    from .novelty import fit_reference, has_encoder
    from .quality import range_limit

    net = getattr(model, "net", None)
    if net is None or not has_encoder(net) or len(pairs) < MIN_NOVELTY_IMAGES:
        return None
    fitted = fit_reference(net, ((p.image_norm, p.maps[0], p.model_scale) for _, p, _ in pairs), density=density)
    if fitted is None or max(fitted[1], fitted[2]) < MIN_NOVELTY_IMAGES:
        return None
    ref = fitted[0]
    limit = range_limit(np.concatenate([r.self_scores() for r in (ref, ref.small) if r is not None]), below=False)
    return (ref, max(limit, MIN_NOVELTY_LIMIT)) if limit else None


TUNE_PASSES, CROSS_CHECK_PASSES = 100, 300
"""Postprocessing passes per training image of the settings search and of its 4-fold check (each image is in
three folds' tunings). Measured on 2026-12-04 (Intel Xeon) with unet-mask: 35-37 and 111 on 8 DSB images with
label images, 91-98 and 291 on 8 mbm images from dots (the search walks past its grid's top there); with the
earlier 50 and 155, a 1-minute fine-tune on those mbm images took 88 s, its settings search 43 s of it."""
MIN_CROSS_CHECK = 4
"""With at least this many training images the re-tuned postprocessing is checked on the ones each tuning did
not see (:func:`cellcount.evaluate.cross_check`), and the base's settings are kept when it does not help."""


OBJECT_SHARE_LIMITS = ("max_large_object_share", "max_touching_share", "max_merge_share")
"""Limits on shares of objects, which a few training images put far too tight."""


def _no_tighter_than(rule, base_rule):
    """``rule`` with its object-share limits (:data:`OBJECT_SHARE_LIMITS`) at least as loose as ``base_rule``'s (one
    the training images left unset takes the base's). A few training images put such range limits just past
    themselves: a fine-tune on 8 DSB images flagged many unseen DSB images its base did not, mostly for merged
    or touching objects (a user pass, by hand). The size limit too: trained at one size for the set, every
    training image has the same size signal, and a limit just past it flagged a size setting moved by a tenth
    (a trained size is as sure as the base's). The other limits stay the fine-tune's own: with the base's
    looser ones a vgg_cells fine-tune flagged far fewer of mbm's images (tried by hand)."""
    looser = {}
    for limit in (*OBJECT_SHARE_LIMITS, "max_size_ratio"):
        mine, theirs = getattr(rule, limit), getattr(base_rule, limit)
        if theirs is not None:
            looser[limit] = theirs if mine is None else max(mine, theirs)
    return dataclasses.replace(rule, **looser)


GAIN_NOTE = 1.2
"""A density fine-tune whose fitted count gain is further from 1 than this (either way) says so: the network's own
change may then be small next to the scale."""

WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))})
"""Folder names Windows refuses whatever follows the dot."""


MIN_TRAIN_S = 10.0
"""The least training time a budget must leave (else the run is refused before training)."""


def _check_budget(minutes: float, spent_s: float, rest_s: float, n_images: int, *, partial: bool = False) -> float:
    """The seconds ``minutes`` leave for training after ``spent_s`` so far and ``rest_s`` still to come (reading,
    scoring); a :class:`ParameterError` that says the budget needed when they are under :data:`MIN_TRAIN_S`.
    ``partial``: ``rest_s`` does not hold every cost yet (the settings search is timed later), so the budget it
    names is a least one (a tester given "about 1.5 min" was then told "about 3")."""
    left = 60.0 * float(minutes) - spent_s - rest_s
    if left < MIN_TRAIN_S:
        need = math.ceil(2 * (spent_s + rest_s + 60.0) / 60.0) / 2  # a minute of training, in half minutes
        what = (f"more than {need:g} min (a minute of training, and the search for its settings after it)" if partial
                else f"about {need:g} min or more (a minute of training)")
        raise ParameterError(
            f"a budget of {minutes:g} min leaves {max(left, 0):.0f} s of training after reading and scoring "
            f"{n_images} images on this computer; give {what}, fewer images, or a number of steps")
    return left


def check_new_name(name: str, *, out_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """The folder a new model ``name`` goes to; ParameterError when the name is not a plain folder name, is a
    shipped model's (or the baseline's), or is taken in ``out_dir`` (default: the user models folder) and
    ``overwrite`` is off."""
    from .models import list_models, user_models_dir

    # the characters no folder may hold on Windows either: a model is a folder a user may copy to another computer
    reserved = name.split(".")[0].strip().upper() in WINDOWS_RESERVED
    if (not name or not name.strip() or any(c in name for c in '/\\:<>"|?*') or name.startswith(".")
            or name.endswith(".") or name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name)
            or reserved):
        raise ParameterError(f"model name {name!r} must be a plain folder name (none of / \\ : < > \" | ? *, no "
                             "dot at either end, no spaces at either end, not a name Windows reserves such as CON "
                             "or COM1)")
    from .models.loading import DEFAULT_WEIGHTS_DIR

    folder = Path(out_dir) if out_dir is not None else user_models_dir()
    target = folder / name
    try:
        shipped = folder.resolve() == Path(DEFAULT_WEIGHTS_DIR).resolve()
    except (OSError, RuntimeError):
        shipped = False
    if shipped:  # --overwrite there would replace (delete) a shipped model's weights
        raise ParameterError(f"{folder} holds the shipped models; a fine-tuned model goes to the user models folder "
                             "(the default) or another folder of your own")
    if target.exists() and not overwrite:
        raise ParameterError(f"a model named {name!r} already exists in {folder}; choose another name (command line: "
                             "--overwrite replaces it)")
    if name in list_models() and not target.exists():
        raise ParameterError(f"{name!r} is the name of an existing model; choose another name")
    # UNET-MASK beside unet-mask: one folder on macOS and Windows, and two models a reader cannot tell apart
    alike = [m for m in list_models() if m.casefold() == name.casefold() and m != name]
    if alike:
        raise ParameterError(f"{name!r} differs from the existing model {alike[0]!r} only in upper / lower case; "
                             "choose another name")
    _check_model_folder(folder)
    return target


def _publish(stage: Path, target: Path, card, *, overwrite: bool) -> Path:
    """Move the finished model folder ``stage`` to ``target``, or, when a model took that name while this one
    trained and ``overwrite`` is off, to the first free ``name-2``, ``name-3`` ... (its card renamed too)."""
    import shutil

    from .models import write_card

    old = None
    if target.exists():
        if overwrite:  # moved aside until the new one is in place: a failed rename loses neither
            old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
            target.rename(old)
        else:
            target = target.with_name(free_name(target.name, {p.name for p in target.parent.iterdir()}))
            card.name = target.name
            write_card(card, stage)
    try:
        stage.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _check_model_folder(folder: Path) -> None:
    """ParameterError unless a model folder can be written in ``folder`` (created when missing): checked
    before training, so that minutes of training are not lost to a folder that cannot take the result."""
    from .csvout import check_writable

    if folder.exists() and not folder.is_dir():
        raise ParameterError(f"the models folder {folder} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        check_writable(folder / "model")
    except OSError as err:
        raise ParameterError(f"cannot write a model in {folder}: {err.strerror or err}") from None


def finetune(
    base: str | Path,
    data: str | Path | LabelledItems,
    *,
    name: str,
    minutes: float | None = DEFAULT_MINUTES,
    steps: int | None = None,
    holdout: float | int = DEFAULT_HOLDOUT,
    out_dir: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 8,
    crop: int = 128,
    lr: float = 5e-4,
    size: str = "auto",
    background: str = "auto",
    diameter_px: float | None = None,
    scale_range: tuple[float, float] | None = None,
    elastic_p: float | None = None,
    intensity_jitter: float = INTENSITY_JITTER,
    reference_px: float | None = None,
    density_sigma: float = 0.25,
    count_weight: float | None = None,
    average_last: float = 0.0,
    grad_under_blobs: bool = False,
    freeze_encoder: bool = False,
    dot_disc: float = DOT_DISC,
    precision: str = "auto",
    max_steps: int | None = DEFAULT_MAX_STEPS,
    threads: int | None = None,
    progress: Callable[[FinetuneProgress], None] | None = None,
    cancel: threading.Event | None = None,
    overwrite: bool = False,
    keep_worse: bool = False,
) -> FinetuneResult:
    """Fine-tune ``base`` on the annotated images in ``data`` (a folder, or in-memory
    :data:`LabelledItems`) and save it as ``name``.

    ``steps`` fixes the number of training steps; otherwise the whole run (reading, training, tuning,
    scoring) fits in ``minutes``: training gets what reading leaves, less an estimate of the rest, and its
    schedule is set after timing the first steps. ``holdout`` (a fraction or a number of images) is kept
    out of training and tuning and scores the base and the new model. ``cancel`` (a threading.Event)
    stops the run between steps with :class:`Cancelled`; nothing is written then. ``size``: "set" trains
    and counts every image at one object size for the whole set (:func:`set_diameter`, fixed in the new
    card); "image" at each image's own estimate, as the base card's ``auto_nucleus_size`` sees it; "auto":
    "set" unless the images show several magnifications (:func:`one_magnification`). Whether the
    images have a bright background is decided once for the set when the set agrees
    (:func:`set_background`), else per image as the base does (``background``: "auto"; "set": by
    majority whatever the share; "image": always per image).
    ``scale_range``, ``elastic_p``: the scale jitter of the training crops and how often they are warped
    (None: none, or :data:`DOTS_SCALE_RANGE` and :data:`DOTS_ELASTIC_P` for segmentation heads taught by dots);
    ``diameter_px``: the objects' diameter in pixels when the user knows it (as Cellpose asks for it): one size
    for the whole set, used instead of measuring it. Objects far from the nuclei a base model knows (fat cells,
    large cells seen at high magnification) mislead the measurement; dots alone say little about size.
    ``intensity_jitter``: the strength of their brightness / contrast / gamma jitter (1 as for a base model).
    ``reference_px``: the object diameter the new model trains and counts at (default: the base's); a
    density target's Gaussians have sigma ``density_sigma`` x the object diameter. ``count_weight``: the
    weight of the density loss's per-crop count term (default: a base model's); ``average_last``: see
    :func:`_fit`. ``precision``: "auto" (bf16 where timed faster on this CPU), "fp32" or "bf16".
    ``max_steps``: the most training steps ``minutes`` may buy (None: no limit); ignored with ``steps``.
    ``freeze_encoder``: train the decoder only (more steps per minute; counted worse on vgg_cells:
    docs/finetuning.md).
    When the fine-tuned weights count the held-out images clearly worse than the base (:func:`worse_than_base`),
    the new model keeps the base's weights and settings (it counts as the base does; the card and the result say so and
    keep both figures) unless ``keep_worse``: a fine-tune should do no harm on the user's own images.
    """
    import torch

    from .evaluate import (
        DEFAULT_GRID,
        calibrate_density,
        cross_check,
        evaluate_predictions,
        predict_pairs,
        tune_params,
    )
    from .io import pixel_digest, read_image_planes
    from .metrics import paired_mae_difference
    from .models import load_model, save_model, size_model_for
    from .models.base import NetModel
    from .pipeline import postprocess, predict, resolve_params
    from .train import DEFAULTS

    report = progress or (lambda p: None)
    t_start = time.perf_counter()  # the budget includes loading the base model
    if minutes is None and steps is None:
        raise ParameterError("give a time budget (minutes) or a number of steps")
    if steps is not None and steps < 1:
        raise ParameterError(f"steps must be >= 1, got {steps}")
    if minutes is not None and not 0 < minutes <= 24 * 60:
        raise ParameterError(f"minutes must be within (0, 1440], got {minutes}")
    _precision_plan(precision)  # a bad value fails before any work
    if steps is None and max_steps is not None and (
            isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ParameterError(f"max_steps must be a whole number of steps >= 1 (or none: no limit), got {max_steps!r}")
    target = check_new_name(name, out_dir=out_dir, overwrite=overwrite)
    model = load_model(base)
    if not isinstance(model, NetModel):
        raise ParameterError(f"{model.name} is not a trained network and cannot be fine-tuned")
    for what, value in (("size", size), ("background", background)):
        if value not in ("auto", "set", "image"):
            raise ParameterError(f"{what} must be 'auto', 'set' or 'image', got {value!r}")
    if diameter_px is not None:
        if not (isinstance(diameter_px, (int, float)) and math.isfinite(diameter_px) and 2 <= diameter_px <= 1000):
            raise ParameterError(f"diameter_px must be a number of pixels within [2, 1000], got {diameter_px!r}")
        if size == "image":
            raise ParameterError("a stated diameter_px is one size for the whole set: it needs size 'auto' or 'set'")
    if threads:
        torch.set_num_threads(int(threads))
    report(FinetuneProgress("prepare", message="reading the images and annotations"))
    skipped: list[str] = []  # images left out: named in the notes
    labelled, source = _labelled_items(data, skipped)
    read: list[tuple[np.ndarray, tuple[int, str] | None]] = []
    for n, raw, _ in list(labelled):
        try:
            read.append(read_image_planes(raw))
        except (CellcountError, OSError) as err:  # a broken file is left out and named, the others train
            skipped.append(f"{n}: {str(err).replace('<bytes>: ', '').replace('<bytes>', n)}")
            labelled = [item for item in labelled if item[0] != n]
    if not labelled:
        raise GroundTruthError("none of the annotated images could be read: " + "; ".join(skipped))
    names = [n for n, _, _ in labelled]
    gts = [gt for _, _, gt in labelled]
    asked = holdout_asked(holdout, len(names))
    if asked > len(names) - MIN_TRAIN_IMAGES:  # nothing trained yet: say so rather than train on what is left
        raise ParameterError(
            f"holdout {holdout:g} asks to hold out {asked} of the {len(names)} annotated image(s); at most "
            f"{max(len(names) - MIN_TRAIN_IMAGES, 0)} can be (at least {MIN_TRAIN_IMAGES} must train): hold out "
            "fewer, or annotate more images")
    train_idx, held_idx = split_holdout(names, holdout, seed=seed)
    notes: list[str] = []  # for the user at the end (CLI, Train page), not only in passing

    def note(text: str) -> None:
        notes.append(text)
        report(FinetuneProgress("prepare", message=f"note: {text}"))

    train_idx, held_idx, seen_held = _hold_out_unseen(labelled, train_idx, held_idx, model.card.training_digests(),
                                                      model.card.training_pixel_digests())
    if seen_held:  # the base's "before" there flatters it, and so the choice between its weights and the new ones
        note(f"{len(seen_held)} held-out image(s) are among {model.card.name}'s own training images "
             f"({', '.join(seen_held[:3])}{', ...' if len(seen_held) > 3 else ''}): its error there is likely lower "
             "than on new images, so the before / after comparison favours it")

    if len(train_idx) < FEW_TRAIN_IMAGES:
        note(f"only {len(train_idx)} image(s) to train on: the new model may learn little from so few (hold out "
             "fewer, or annotate more)")
    if all(gts[i].count == 0 for i in train_idx):  # nothing to learn but "no cells": an export gone wrong, mostly
        which = "annotation" if len(train_idx) == len(names) else "training image's annotation"
        raise GroundTruthError(
            f"every {which} holds no objects (those of {', '.join(names[i] for i in train_idx[:3])}"
            f"{', ...' if len(train_idx) > 3 else ''}): there is nothing to learn. "
            + (f"The images with objects ({listed([names[i] for i in held_idx if gts[i].count], 3)}) are all held out: "
               "hold out fewer, or others" if any(gts[i].count for i in held_idx) else
               "Check that the dots or labels were exported (a points CSV with only its header line, an all-black "
               "label image)"))
    for i in train_idx:
        if gts[i].kind == "points" and gts[i].count == 0:
            note(f"{names[i]}'s annotation ({gts[i].source or 'points'}) holds no dots: it trains as an image with "
                 "no cells; if it has cells, its export failed")
    for text in skipped:
        note(f"left out: {text}")
    images = {}
    for i, (image, planes) in enumerate(read):
        images[i] = image
        if planes is not None:
            note(f"{names[i]}: the file holds {planes[0]} {planes[1]}; only the first was used (save the plane you "
                 "annotated as a file of its own to train on another)")
    kind = model.output_kind
    density_scale = float(model.card.density_scale) if kind != "mask" else 1.0
    base_params = resolve_params(model, None)
    size_model = size_model_for(model, base_params)  # the fine-tuned model keeps the base's card settings
    items = []
    diameter = None
    fixed: dict[str, Any] = {}  # settings decided once for the user's set, kept in the new card
    if base_params.invert is not None:  # the base's card fixes it; the fine-tune keeps that
        background = "card"
    elif background != "image":
        bright = set_background([images[i] for i in train_idx], channel=base_params.channel,
                                agreement=SET_AGREEMENT if background == "auto" else 0.0)
        background = "image" if bright is None else "set"
        if bright is not None:
            fixed["invert"] = bright
    size_note, spread, sizes = "", None, None
    train_gts = [gts[i] for i in train_idx]
    if kind == "mask" and train_gts and all(gt.kind == "points" for gt in train_gts):
        report(FinetuneProgress("prepare", message=DOTS_ON_MASK_NOTE.format(base=model.name)))
    per_train = 2.0 if kind == "density" else 1.5  # base passes per training image after training (below)

    def measure_all() -> list:
        """:func:`measure_annotated` of every training image (a base pass each, for dots); a time budget too short
        for the whole run is refused after the second, not after all of them (the first pass may time the backends
        or build the fast network: the second is the one timed, per pixel of the set's mean image)."""
        out = []
        mean_px = float(np.mean([images[i].shape[0] * images[i].shape[1] for i in (*train_idx, *held_idx)]))
        for k, i in enumerate(train_idx):
            t_one = time.perf_counter()
            out.append(measure_annotated(images[i], gts[i], model, size_model=size_model, overrides=fixed))
            if k == 1 and steps is None:
                one = (time.perf_counter() - t_one) * mean_px / (images[i].shape[0] * images[i].shape[1])
                rest = one * (len(train_idx) - 2 + per_train * len(train_idx) + 2 * len(held_idx)) + 5.0
                _check_budget(minutes, time.perf_counter() - t_start, rest, len(names), partial=kind != "density")
        return out

    if diameter_px is not None:
        size, diameter = "given", float(diameter_px)
        report(FinetuneProgress("prepare", message="checking the objects' sizes against the one you gave"))
        sizes = [m[0] for m in measure_all()]
        size_note = several_sizes_note(diameter, train_gts, sizes)
    elif size in ("auto", "set"):
        report(FinetuneProgress("prepare", message="measuring the objects' size"))
        measured = measure_all()
        sizes, hits = [m[0] for m in measured], [m[1] for m in measured]
        known = [d for d in sizes if d]
        estimate = float(np.median(known)) if known else None
        if size == "auto":  # a base that misses the dots sizes something else: its spread says nothing
            misses = set_misses_dots(train_gts, sizes, hits)
            size = "set" if misses or one_magnification(train_gts, sizes) else "image"
            spread = size_spread(train_gts, sizes)
        if size == "set":
            diameter = set_diameter([], train_gts, model, sizes=sizes, hits=hits)
            # to a tenth of a pixel, as every page shows it: trained, scored, stored and shown alike
            diameter = round(diameter, 1) if diameter else diameter
            size_note = spacing_note(diameter, train_gts, measured=estimate, hits=hits)
    # each image's own size, when measured above (size "image"): its targets need not measure it again
    own_sizes = dict(zip(train_idx, sizes, strict=True)) if diameter is None and sizes is not None else {}
    t_prep = time.perf_counter()
    for k, i in enumerate(train_idx):
        if cancel is not None and cancel.is_set():
            raise Cancelled("fine-tuning was cancelled")
        report(FinetuneProgress("prepare", k, len(train_idx), message=f"targets for {names[i]}"))
        items.append(training_item(names[i], images[i], gts[i], model, density_scale=density_scale,
                                   diameter_px=diameter, size_model=size_model, overrides=fixed,
                                   reference_px=reference_px, density_sigma=density_sigma, dot_disc=dot_disc,
                                   measured_px=own_sizes.get(i)))
    per_image_s = (time.perf_counter() - t_prep) / max(len(train_idx), 1)  # targets (and a base pass for dots)
    train_budget_s = None
    if steps is None:
        # ``minutes`` bounds the whole run: what is left after preparing, less what tuning (one pass per
        # training image, then postprocessing only) and the held-out scoring (two passes per image) will
        # take, from a timed pass of the base (the targets need none unless dots correct its segmentation)
        pass_params = resolve_params(model, fixed)
        if diameter:
            pass_params = dataclasses.replace(pass_params, auto_nucleus_size=False, nucleus_diameter_px=float(diameter))
        first = images[train_idx[0]]
        for _ in range(2):  # the second timed: the first may build the fast network or time the backends
            t_pass = time.perf_counter()
            first_pred = predict(first, model, pass_params, size_model=size_model)
        # per image of the set's mean size, not the first image's
        scored = [images[i] for i in (*train_idx, *held_idx)]
        size_ratio = float(np.mean([im.shape[0] * im.shape[1] for im in scored])) / (first.shape[0] * first.shape[1])
        pass_s = (time.perf_counter() - t_pass) * size_ratio
        # a density model reads its training images twice (before and after its count gain), others once
        # the held-out images: the new model, the base, and (not density) the base with the new settings
        held_passes = 2 if kind == "density" else 3
        reserve = max(pass_s, per_image_s) * (per_train * len(train_idx) + held_passes * len(held_idx)) + 5.0
        if kind != "density":  # then the settings search: postprocessing only, but many settings on each image
            for _ in range(2):  # the second timed: the first imports and warms up
                first_pred.memo.clear()  # else the second call reuses the first's mask and split (~0 s: 43 s unplanned)
                t_pp = time.perf_counter()
                postprocess(first_pred, pass_params, measure=False)
            passes = TUNE_PASSES + (CROSS_CHECK_PASSES if len(train_idx) >= MIN_CROSS_CHECK else 0)
            reserve += (time.perf_counter() - t_pp) * size_ratio * passes * len(train_idx)
        train_budget_s = _check_budget(minutes, time.perf_counter() - t_start, reserve, len(names))

    net = copy.deepcopy(model.net).float().to(memory_format=torch.channels_last)
    for p in net.parameters():
        p.requires_grad_(True)
    loss_cfg = copy.deepcopy(DEFAULTS["loss"])
    if count_weight is not None:
        loss_cfg["density"]["count"] = float(count_weight)
    from_dots = kind != "density" and any(gt.kind == "points" for gt in train_gts)
    if scale_range is None:
        scale_range = DOTS_SCALE_RANGE if from_dots else SCALE_RANGE
    if elastic_p is None:
        elastic_p = DOTS_ELASTIC_P if from_dots else ELASTIC_P
    n_steps, train_s, losses, used = _fit(
        net, items, kind=kind, steps=steps, seconds=train_budget_s, batch_size=batch_size,
        crop=crop, lr=lr, rng=np.random.default_rng(seed), report=report, cancel=cancel, loss_cfg=loss_cfg,
        scale_range=scale_range, elastic_p=elastic_p, intensity_jitter=intensity_jitter,
        average_last=average_last, precision=precision, max_steps=max_steps, grad_under_blobs=grad_under_blobs,
        freeze_encoder=freeze_encoder,
    )
    if steps is None and n_steps < min(FEW_STEPS, max_steps or FEW_STEPS):  # the budget, not a cap, stopped it
        note(f"the time budget bought only {n_steps} training step(s): the new model may have learnt little "
             f"(the benchmarks' fine-tunes ran 1500-3000); give it more time")
    card = dataclasses.replace(copy.deepcopy(model.card), name=name, sha256="")
    card.extra.pop("novelty", None)  # the base's training images' encoder features: the fine-tune moved the encoder
    card.postprocess = {**card.postprocess, **fixed}
    if reference_px:
        card.extra = {**card.extra, "reference_diameter_px": float(reference_px)}
    if diameter:
        card.postprocess = {**card.postprocess, "nucleus_diameter_px": round(diameter, 2), "auto_nucleus_size": False}
        # the size signal measures from the size learnt: every image resized alike, no longer a doubt on each
        card.extra = {**card.extra, "trained_diameter_px": round(diameter, 2)}
        if kind == "density":
            # the centres (local maxima) at least a quarter of an object apart: the base's 3 px, on a map read at a
            # quarter of the image's size and enlarged back (100 px fat cells), found 1038 "centres" for 28 cells
            # (25 px: 28; 3-12 px on 13 px mbm cells: 119-124 for 107)
            base_gap = int(card.postprocess.get("peak_min_distance_px", resolve_params(None, None).peak_min_distance_px))
            from .params import SCHEMA

            top = int(SCHEMA["peak_min_distance_px"].ui_range[1])  # the Count page's slider reaches no further
            card.postprocess["peak_min_distance_px"] = max(base_gap, min(round(PEAK_GAP_SHARE * diameter), top))
    new = NetModel(net, card)

    report(FinetuneProgress("tune", n_steps, n_steps, message="re-tuning postprocessing on the training images"))
    settings_kept = False  # re-tuned settings that counted unseen training images no better: the base's stay
    new_params = resolve_params(new, None)
    train_pairs = [(names[i], predict(images[i], new, new_params, size_model=size_model), gts[i])
                   for i in train_idx]
    if kind == "density":
        k_gain, _, _ = calibrate_density(train_pairs)
        if not k_gain > 0:  # most of the map's mass on images annotated as empty: no gain to fit
            note("the count gain could not be fitted (most of what the new model reads is on training images "
                 "annotated as empty): its counts are not rescaled")
            k_gain = None
        card.density_scale = card.density_scale / (k_gain or 1.0)
        new = NetModel(net, card)
        params = new_params
        # read again with the gain: the flag below is fitted on what the saved model counts (the gain moves the
        # counts, and with them the signals and errors; a size estimate from the map moves too)
        train_pairs = [(names[i], predict(images[i], new, new_params, size_model=size_model), gts[i])
                       for i in train_idx]
        tuned_note = (f"counts scaled by {k_gain:.2f} (the count gain fitted on the "
                      f"{_images(len(train_idx), 'training')})" if k_gain else
                      "counts not rescaled (no count gain could be fitted on the training images)")
        if k_gain and abs(math.log(k_gain)) > math.log(GAIN_NOTE):  # the trained weights alone count that far off their dots
            note(f"{name}'s counts are scaled by {k_gain:.2f}, fitted on its training images: after {n_steps} "
                 "training steps its map alone counted them that far off, so much of the change may be this one "
                 "factor. The held-out figures show whether it holds on images it did not see.")
    else:
        tr = tune_params(train_pairs, new_params)
        params = tr.best_params
        tuned_note = (f"tuned on the {len(train_idx)} training images of the fine-tune: count MAE "
                      f"{tr.before:.3f} -> {tr.after:.3f}")
        if params != new_params and len(train_pairs) >= MIN_CROSS_CHECK:
            # settings tuned on a few images can fit those images only (docs/RESULTS.md, "Tuning on a few images")
            kept, tuned_cv = cross_check(train_pairs, new_params)
            if tuned_cv >= kept:
                params = new_params
                settings_kept = True
                verdict = "worse" if tuned_cv > kept else "no better"
                tuned_note = (f"the base's settings kept: tuned on {len(train_idx)} training images, settings counted "
                              f"the ones each tuning did not see {verdict} (4-fold: MAE {tuned_cv:.3f} against "
                              f"{kept:.3f})")
                note(f"{name} keeps {model.name}'s postprocessing settings: settings re-tuned on parts of the "
                     f"{len(train_idx)} training images counted the other parts {verdict} (4-fold check on the training "
                     f"images, not the held-out ones: MAE {told_apart(tuned_cv, kept)} with {model.name}'s "
                     "settings)")
            else:
                tuned_note += f"; checked on training images each tuning did not see (4-fold MAE {kept:.3f} -> {tuned_cv:.3f})"
        if params == tr.best_params and (edge := tr.edge_note()):
            note(f"{name}'s postprocessing, re-tuned on its training images, is {edge}")
        if kind == "multihead":  # objects that overlap too much to outline are counted better by the density
            dens = dataclasses.replace(params, count_source="density")
            mae_seg = evaluate_predictions(train_pairs, params, keep_results=False).summary["mae"]
            mae_dens = evaluate_predictions(train_pairs, dens, keep_results=False).summary["mae"]
            if mae_dens < 0.9 * mae_seg:
                params = dens
            tuned_note += (f"; count source {params.count_source} (training-image MAE: segmentation {mae_seg:.3f}, "
                           f"density {mae_dens:.3f})")
    train_rep = evaluate_predictions(train_pairs, params, keep_results=False)  # for the flag below, and this check
    if kind == "mask" and all(gt.kind == "points" for gt in train_gts):
        # measured, not guessed: on vgg_cells (crowded cells) a unet-mask fine-tune from dots still counted its own
        # training images ~20% off after 5 minutes (validation MAE 46-49 at N = 16; unet-density's 2.5-3.0 at N = 32)
        from .quality import LARGE_ERROR

        own_mape = train_rep.summary.get("mape", math.nan)
        if math.isfinite(own_mape) and own_mape >= 100 * LARGE_ERROR:
            note(f"{name} counts even the images it learnt {own_mape:.0f}% off on average: outlines learnt from "
                 "dots do not separate these objects (crowded, touching or overlapping). A density model learns from "
                 "dots directly: fine-tune unet-density instead (command line: --from unet-density; Train page: "
                 "Start from unet-density)")
    # every setting the tuner searched, also where the base card left it to the defaults
    tuned_keys = (set(model.card.postprocess) | ({"count_source"} if kind == "multihead" else set())
                  | (set(DEFAULT_GRID) if kind != "density" else set()))
    card.postprocess = {**card.postprocess, **{k: params.to_dict()[k] for k in tuned_keys if k in params.to_dict()}}
    card.postprocess_tuned_on = tuned_note
    report(FinetuneProgress("tune", n_steps, n_steps, message="calibrating the quality flag on the training images"))
    card.extra = {**card.extra, "quality": calibrate_flag(train_pairs, params, model.card, rep=train_rep)}
    flagged = card.extra["quality"].get("calibration", {}).get("flagged_share", 0.0)
    if flagged >= 0.5:  # said, not left for the user to find in every count
        note(f"{name}'s quality flag marks {flagged:.0%} of the images it learnt ('check this image'): expect it on "
             "most images like them, and read its reasons before trusting or dismissing it")
    # the held-out images are the user's images too: they widen the reference of what the model may count
    # (they choose nothing about the counts; the same predictions are scored below)
    report(FinetuneProgress("evaluate", message="reading the held-out images with the new model"))
    held_items = [(names[i], images[i], gts[i]) for i in held_idx]
    held_pairs = predict_pairs(held_items, new, params, size_model=size_model, warn_trained=False) if held_idx else []
    own = own_novelty(new, list(train_pairs) + held_pairs, density=kind == "density")
    if own is not None:  # "unlike the images it learnt", in the new encoder's own terms
        new.novelty = own[0]
        card.extra["quality"]["rule"]["max_novelty"] = own[1]

    report(FinetuneProgress("evaluate", message="scoring the base and the new model on the held-out images"))
    before, after, paired, settings_only = {}, {}, {}, {}
    counts: list[dict[str, Any]] = []
    if held_idx:
        rb = evaluate_predictions(predict_pairs(held_items, model, base_params, size_model=size_model, warn_trained=False),
                                  base_params, keep_results=False)
        ra = evaluate_predictions(held_pairs, params, keep_results=False)  # made above (novelty touches no count)
        # F1 & co.: outlines matched by IoU, dots by the objects holding them (or a density model's peaks)
        keep = ("n", "mae", "mae_ci_low", "mae_ci_high", "rmse", "bias", "mape", "f1", "precision", "recall")
        # counts of images as whole numbers (the card read "n": 2.0)
        before = {k: int(v) if k == "n" else float(v) for k, v in rb.summary.items() if k in keep}
        after = {k: int(v) if k == "n" else float(v) for k, v in ra.summary.items() if k in keep}
        paired = paired_mae_difference(rb.per_image["true"].to_numpy(), rb.per_image["pred"].to_numpy(),
                                       ra.per_image["pred"].to_numpy())
        counts = [{"file": str(f), "true": float(t), "before": float(b), "after": float(a)}
                  for f, t, b, a in zip(rb.per_image["file"], rb.per_image["true"], rb.per_image["pred"],
                                        ra.per_image["pred"])]
        if kind != "density" and params != base_params:
            # the base's weights with the new settings (input and postprocessing): how much of the change the
            # settings alone make (a tester's 11-step fine-tune went 129 -> 5, mostly its re-tuned min. area); a
            # density fine-tune's one setting, its count gain, belongs to its new weights
            report(FinetuneProgress("evaluate", message="scoring the base's weights with the new settings"))
            rs = evaluate_predictions(predict_pairs(held_items, model, params, size_model=size_model, warn_trained=False), params,
                                      keep_results=False)
            settings_only = {k: int(v) if k == "n" else float(v) for k, v in rs.summary.items() if k in keep}
    kept_base = not keep_worse and worse_than_base(before, after)
    if kept_base:  # the new settings are not kept either: their figure would be labelled as this model's
        settings_only = {}
    if not kept_base and (text := settings_gain_note(model.name, name, after, settings_only)):
        note(text)
    precision_hint = f" --precision {used['precision']}" if used["precision"] in PRECISIONS else ""
    if not kept_base and not keep_worse and after.get("mae", 0) > before.get("mae", math.inf):
        note(f"the fine-tuned weights counted the held-out images a little worse than {model.name} (MAE "
             f"{told_apart(after['mae'], before['mae'])}: "
             f"{after['mae'] - before['mae']:.{apart_digits(after['mae'], before['mae'])}f} objects per image more). "
             f"They are saved all the same: {model.name}'s weights are kept instead only when the fine-tuned ones "
             f"count over {WORSE_SHARE:.0%} worse and at least {WORSE_OBJECTS:g} objects more error over the held-out "
             f"images together. Count a few of your "
             f"images with both before relying on it")
    rejected: dict[str, float] = {}
    novelty: tuple[Any, dict[str, Any]] | None = None  # the novelty reference to save with the model, its card entry
    # written whole into a hidden folder beside the target, then moved into place: nothing loads a half-written
    # model, and a model saved under this name meanwhile (another fine-tune, another app) is not overwritten
    stage = target.parent / f".{name}.saving-{os.getpid()}-{threading.get_ident()}"
    if kept_base:  # no harm: the new model counts as the base does; both figures stay on record
        note(f"the fine-tuned weights counted the {len(held_idx)} held-out image(s) worse than {model.name} (MAE "
             f"{after['mae']:.2f} against {before['mae']:.2f}), so {name} keeps {model.name}'s weights and settings "
             f"and counts as it does. To save fine-tuned weights anyway, run again keeping them (command line: "
             f"--keep-worse --steps {n_steps}{precision_hint}, about the same training as this run; Train page: "
             "'Keep the fine-tuned weights even if worse' and a fixed number of steps under Advanced), or bring "
             "more annotated images")
        rejected, net = after, copy.deepcopy(model.net).float()
        card = dataclasses.replace(copy.deepcopy(model.card), name=name, sha256="")
        card.extra.pop("novelty", None)
        if getattr(model, "novelty", None) is not None:  # the base's encoder, so the base's reference holds
            novelty = (model.novelty, dict(model.card.extra.get("novelty") or {}))
        after = before
    # a base fine-tuned before may carry its own held-out verdict: this model gets its own (or none)
    quality = copy.deepcopy(card.extra.get("quality") or {})
    if isinstance(quality.get("rule"), dict):
        quality["rule"].pop("always", None)
    # the base's weights kept: it counts as the base does, and the note above says the fine-tune counted worse
    scored = sum(1 for c in counts if c["true"] > 0)
    reason = None if kept_base else heldout_flag_reason(after, name, scored)
    if reason is not None:
        quality.setdefault("rule", {})["always"] = reason
    if quality:
        card.extra = {**card.extra, "quality": quality}
    if reason is not None:
        note(f"{name} counted the held-out images {after['mape']:.0f}% off on average: every count of it is flagged "
             "'check this image' with that reason")
    seconds = time.perf_counter() - t_start
    annotation = sorted({gts[i].kind for i in train_idx})
    card.description = (f"{model.card.description} Fine-tuned from {model.name} on {_images(len(train_idx), 'user')}"
                        + (f"; the fine-tuned weights counted the held-out images worse, so it keeps {model.name}'s."
                           if kept_base else "."))
    if not kept_base:
        card.extra.pop("guide_note", None)  # the base's caveats (its flag on unfamiliar images) are not the new model's
        worse_outlines = outline_note(kind, before, after, model.name)
        if worse_outlines:
            card.extra["guide_note"] = worse_outlines
    card.training = {
        "finetuned_from": {"name": model.name, "sha256": model.card.sha256},
        "data": {"source": source, "fingerprint_sha256": data_fingerprint(labelled), "annotation": annotation,
                 "train_files": [names[i] for i in train_idx], "holdout_files": [names[i] for i in held_idx],
                 # annotated images that could not be used, with why; paths inside the data folder relative to it (a
                 # card is shared: no local folders in it)
                 "left_out": [t.replace(f"{Path(data)}{os.sep}", "") if isinstance(data, (str, Path)) else t
                              for t in skipped],
                 # by content too: a training image met again under another name (Evaluate, Compare) is recognised
                 "train_sha256": [hashlib.sha256(labelled[i][1]).hexdigest() for i in train_idx],
                 "train_pixel_sha256": [pixel_digest(images[i]) for i in train_idx]},
        "steps": n_steps, "seed": seed, "max_steps": None if steps else max_steps, "batch_size": batch_size, "crop_px": crop, "lr": lr, "freeze_encoder": freeze_encoder, "size": size, "background": background,
        "object_diameter_px": round(diameter, 2) if diameter else None, "scale_range": list(scale_range),
        "elastic_p": elastic_p, "intensity_jitter": intensity_jitter, "reference_diameter_px": reference_px, "density_sigma": density_sigma,
        "density_loss": loss_cfg["density"] if kind != "mask" else None, "average_last": average_last,
        "dot_disc": dot_disc if kind != "density" else None,
        "precision": used["precision"], "precision_why": used["why"],
        "train_seconds": round(train_s, 1),
        "total_seconds": round(seconds, 1), "final_loss": float(np.mean(losses[-10:])) if losses else None,
        "command": "cellcount.finetune",
        "kept_base_weights": kept_base,
        "keep_worse": keep_worse,
        # what the base had learnt from (its own training images, and its base's): recognised by content too
        "train_sha256": sorted(model.card.training_digests()),
        "train_pixel_sha256": sorted(model.card.training_pixel_digests()),
    }
    card.metrics = {"holdout_before": before, "holdout_after": after, "holdout_paired_mae_difference": paired,
                    **({"holdout_base_weights_new_settings": settings_only} if settings_only else {}),
                    "holdout_note": f"{len(held_idx)} held-out image(s) of {source}: before = {model.name} with its "
                                    "card's settings, after = this model with "
                                    + ("the base's settings (re-tuning did not help)" if settings_kept
                                       else "its re-tuned settings")}
    if kept_base:  # the base's own figures still hold for its weights; the paired difference is the discarded ones'
        card.metrics = {**{k: v for k, v in model.card.metrics.items() if not k.startswith("holdout")}, **card.metrics}
        card.metrics["holdout_paired_mae_difference_finetuned"] = card.metrics.pop("holdout_paired_mae_difference")
        card.metrics.update(holdout_finetuned_weights=rejected, holdout_note=(
            f"{_images(len(held_idx), 'held-out')} of {source}: the fine-tuned weights (holdout_finetuned_weights) counted "
            f"them worse than {model.name}, so this model keeps {model.name}'s weights and settings: after = before"))
    card.license = f"{model.card.license}; fine-tuned on user data"
    if own is None and not kept_base:
        from .novelty import MIN_SMALL_WINDOW_PX

        n_images = len(train_idx) + len(held_idx)
        why = (f"{n_images} annotated image(s), {MIN_NOVELTY_IMAGES} needed" if n_images < MIN_NOVELTY_IMAGES else
               f"fewer than {MIN_NOVELTY_IMAGES} of the {n_images} images are at least {MIN_SMALL_WINDOW_PX} px "
               "across at the model's scale")
        note(f"too few images to learn what yours look like ({why}): {name}'s quality flag cannot tell an image "
             "unlike yours, so check its counts by eye on images of another kind")
    if own is not None and not kept_base:
        from .novelty import SETTINGS

        novelty = (own[0], {"images": len(own[0].features), **SETTINGS, "features": int(own[0].features.shape[1]),
                            "small_window_images": 0 if own[0].small is None else len(own[0].small.features),
                            "fitted_on": (f"the training and held-out images of the fine-tune ({source})" if held_idx
                                          else f"the training images of the fine-tune ({source})")})
    try:  # every file of the stage is written in here, so a failure leaves no hidden folder behind
        if cancel is not None and cancel.is_set():  # cancelled while scoring: nothing is saved, as promised
            raise Cancelled("fine-tuning was cancelled")
        if novelty is not None:
            from .novelty import NOVELTY_FILE

            stage.mkdir(parents=True, exist_ok=True)
            card.extra["novelty"] = {**novelty[1], "file": NOVELTY_FILE, "sha256": novelty[0].save(stage / NOVELTY_FILE)}
        save_model(net, card, stage)
        target = _publish(stage, target, card, overwrite=overwrite)
    except BaseException:
        import shutil

        shutil.rmtree(stage, ignore_errors=True)  # a half-written model is not left behind
        raise
    if target.name != name:
        # the notes so far name the model as asked: they are about this one, now saved under another name
        own = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])")
        notes[:] = [own.sub(target.name, n) for n in notes]
        note(f"a model named {name} was saved by another run while this one trained: this one is saved as {target.name}")
        name = target.name
    report(FinetuneProgress("done", n_steps, n_steps, elapsed_s=seconds, remaining_s=0.0,
                            message=f"saved {name} to {target}"))
    return FinetuneResult(folder=target, name=name, steps=n_steps, seconds=seconds, before=before,
                          after=rejected or after, paired=paired, kept_base=kept_base, settings_only=settings_only, holdout_files=[names[i] for i in held_idx],
                          train_files=[names[i] for i in train_idx], holdout_counts=counts,
                          reading=(f"as {model.name} reads them (its weights and settings were kept)" if kept_base
                                   else reading_note(background=background, invert=fixed.get("invert"), size=size,
                                                     diameter_px=diameter, spread=spread)),
                          size_note="" if kept_base else size_note, notes=notes,
                          precision=used["precision"], precision_why=used["why"])


def settings_gain_note(base: str, name: str, after: dict[str, float], settings_only: dict[str, float]) -> str:
    """A note when the base's own weights with the new settings counted the held-out images at least as well as
    the fine-tuned weights (``after``, ``settings_only``: held-out summaries), else "": the change is then the
    settings' (a tester's 20-step fine-tune read MAE 129 -> 4.00 and the base's weights with its settings 3.00,
    under a verdict crediting the fine-tune)."""
    if "mae" not in settings_only or "mae" not in after or not settings_only["mae"] <= after["mae"]:
        return ""
    how = "as well as" if settings_only["mae"] == after["mae"] else "better than"
    return (f"{base}'s own weights with {name}'s settings counted the held-out images {how} the fine-tuned weights "
            f"(MAE {settings_only['mae']:.2f} against {after['mae']:.2f}): the change is the settings' (input and "
            f"postprocessing), not the training: {base} with settings tuned on your images (Evaluate page: "
            "Optimise; command line: cellcount evaluate --tune) may count them as well. More annotated images or "
            "training steps may make the fine-tuned weights worth it")


WORSE_SHARE = 0.05
"""The fine-tuned weights must count the held-out images worse by more than this share of the base's MAE..."""
WORSE_OBJECTS = 2.0
"""... and by at least this many objects over all of them, before the base's weights are kept: one nucleus
on one of two images is no evidence (a fine-tune whose F1 rose was discarded for it in a user pass)."""


def worse_than_base(before: dict[str, float], after: dict[str, float]) -> bool:
    """Whether the fine-tuned weights counted the held-out images clearly worse than the base: a count MAE
    more than :data:`WORSE_SHARE` higher and at least :data:`WORSE_OBJECTS` objects more error in all; False
    without held-out figures."""
    a, b, n = after.get("mae", math.nan), before.get("mae", math.nan), before.get("n", math.nan)
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    extra = (a - b) * (n if math.isfinite(n) and n > 0 else 1.0)
    return a > b * (1 + WORSE_SHARE) and extra >= WORSE_OBJECTS


OUTLINE_DROP = 0.05
"""A fall in held-out F1 (outlines matched to label images or dots) that the verdict names beside the count error:
a tester's fine-tune counted 2 held-out images better while its F1 fell from 0.816 to 0.688, unmentioned."""


def _f1_fell(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[float, float] | None:
    """(before, after) held-out F1 when it fell by :data:`OUTLINE_DROP` or more, else None."""
    b, a = (before or {}).get("f1"), (after or {}).get("f1")
    return (b, a) if b is not None and a is not None and a <= b - OUTLINE_DROP else None


def outline_note(kind: str, before: dict[str, Any], after: dict[str, Any], base: str) -> str | None:
    """The new model's guide note (Models page) when its held-out F1 fell by :data:`OUTLINE_DROP` or more from
    the base's, for a model that outlines objects; None otherwise. A tester's guide still offered such a model
    for "outlines, areas and counts" after its verdict had said to keep the base for them."""
    fell = _f1_fell(before, after) if kind != "density" else None
    if fell is None:
        return None
    return (f"its objects matched your held-out annotations less well than {base}'s (F1 {fell[0]:.3f} -> "
            f"{fell[1]:.3f}): keep {base} for areas and shapes")


def holdout_verdict(paired: dict[str, float], n_held: int, *, name: str, base: str,
                    before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                    segmentation: bool = False) -> tuple[bool, str]:
    """(warn, text): what the paired before/after comparison on ``n_held`` held-out images says, in words
    (the CLI and the Train page). A new model that counted them worse on average is never passed as an
    improvement, whether or not the interval excludes 0; for a ``segmentation`` (a base that outlines objects),
    an F1 in the held-out summaries ``before`` and ``after`` that fell by :data:`OUTLINE_DROP` or more is said
    (and warned of) too."""
    warn, text = _count_verdict(paired, n_held, name=name, base=base, before_mae=(before or {}).get("mae"))
    fell = _f1_fell(before, after) if segmentation else None
    if fell is not None:
        text += (f" But its objects match the held-out annotations less well (F1 {fell[0]:.3f} -> {fell[1]:.3f}): if "
                 f"you measure areas or shapes, check its outlines, or keep {base} for them.")
        warn = True
    return warn, text


def _count_verdict(paired: dict[str, float], n_held: int, *, name: str, base: str,
                   before_mae: float | None = None) -> tuple[bool, str]:
    d, low, high = paired["difference"], paired["low"], paired["high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        # too few images for an interval; a difference of half the base's error or more is still worth its name
        large = isinstance(before_mae, float) and abs(d) >= max(0.5 * before_mae, 5.0)
        how = (f"but a difference this large (MAE {before_mae:.2f} -> {before_mae + d:.2f}) is unlikely to be chance "
               "alone" if large else "so this says little either way")
        text = (f"Only {n_held} held-out image(s): too few for an interval, {how}. "
                f"MAE difference (after - before): {d:+.2f}")
        it = "it" if n_held == 1 else "them"
        more = "Hold out more images to know by how much." if large else "Hold out more images to know."
        if d > 0:
            return True, (text + f": {name} counted {it} worse than {base}. {more}")
        if d < 0:
            return False, text + f": {name} counted {it} better than {base}. {more}"
        return False, text + f". {more}"
    text = (f"Paired over the same {_images(n_held)}: MAE difference (after - before) {d:+.2f}, 95% bootstrap "
            f"interval {low:+.2f} to {high:+.2f}")
    if low > 0:
        return True, (text + f": {name} counts these images worse than {base}. Keep counting with {base}, or try "
                      "again: more annotated images, a density model as the base when your annotations are dots, "
                      "or the objects' diameter stated.")
    if d > 0:
        return True, (text + f": {name} counted these images worse than {base} on average. The interval includes "
                      f"0, so it may be chance, but it is no improvement: keep {base} unless more held-out images "
                      "say otherwise.")
    if high < 0:
        return False, text + ": the new model counts these images better."
    return False, text + ": it includes 0, so no clear difference on these images (more held-out images narrow it)."


def model_kind(name: str) -> str | None:
    """A model's output kind (``name``: a name or folder) from its card, no weights loaded; None when the card
    cannot be read."""
    from .models import model_card

    try:
        return model_card(name).output_kind
    except (CellcountError, OSError, ValueError):
        return None


def build_parser() -> argparse.ArgumentParser:
    from .cliparams import prog_name

    p = argparse.ArgumentParser(prog=prog_name("cellcount.finetune"), description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="base", required=True, help="the model to start from (name or folder)")
    p.add_argument("--data", required=True, help="folder of images with label images, masks, dot images or point CSVs")
    p.add_argument("--name", required=True, help="name of the new model")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None,
                        help=f"time budget of the whole run in minutes: reading, training and scoring (default "
                        f"{DEFAULT_MINUTES:g}); training gets what reading and scoring leave")
    budget.add_argument("--steps", type=int, default=None, help="a fixed number of training steps instead")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, metavar="N",
                   help=f"the most steps the time budget may buy (default {DEFAULT_MAX_STEPS}; 0: no limit), so that "
                   "a fast CPU ends the run early")
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                   help="images held out for the before/after score: a fraction below 1 (default 0.25) or a "
                   "whole number of images (1 means one image)")
    p.add_argument("--out-dir", help="where the model folder goes (default: the user models folder)")
    p.add_argument("--size", choices=["auto", "set", "image"], default="auto",
                   help="object size: one for the whole set, each image's own, or auto (one unless the label "
                   "images show several magnifications)")
    p.add_argument("--diameter", type=float, default=None, metavar="PX",
                   help="the objects' diameter in pixels, if you know it: one size for the whole set instead of "
                   "measuring it (helps with objects unlike nuclei, e.g. fat cells, annotated with dots)")
    p.add_argument("--background", choices=["auto", "set", "image"], default="auto",
                   help="bright or dark background: decided once for the set, per image, or auto (once when at "
                   f"least {100 * SET_AGREEMENT:.0f}%% of the training images agree)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="training precision: auto (bf16 where timed faster on this CPU), fp32 or bf16")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the held-out choice and of the training crops (default 0): the same seed and data "
                   "repeat a run's choices")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace a user model of the same name")
    p.add_argument("--keep-worse", action="store_true",
                   help="save the fine-tuned weights even when they count the held-out images clearly worse than the "
                   f"base (MAE over {100 * WORSE_SHARE:.0f}%% higher and at least {WORSE_OBJECTS:g} objects more error over "
                   "the held-out images together; by default the "
                   "new model then keeps the base's weights and settings)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .cliparams import plain_warnings

    with plain_warnings():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (0 <= args.holdout < 1 or (args.holdout >= 1 and float(args.holdout).is_integer())):
        print(f"error: --holdout {args.holdout:g}: give a fraction from 0 to below 1 (0.25; 0: none) or a whole "
              "number of images (8)", file=sys.stderr)
        return 2
    holdout: float | int = args.holdout if args.holdout < 1 else int(args.holdout)
    last = [0.0]

    def show(p: FinetuneProgress) -> None:
        now = time.perf_counter()
        if p.message.startswith("note: left out: "):  # now too: a user may stop the run and fix the file
            print(f"[{p.stage}] {p.message}", flush=True)
        if p.message.startswith("note: "):
            return  # printed (again) at the end, with the result
        if p.stage != "train" or now - last[0] > 5 or p.step == p.steps or p.message:
            last[0] = now
            extra = (f" step {p.step}/{'~' if p.estimated else ''}{p.steps} loss {p.loss:.4f}, ~{p.remaining_s:.0f} s left"
                     if p.stage == "train" else "")
            # a message during training (the precision chosen) gets its own line, not the step's tail
            sep = "\n[train] " if extra and p.message else " "
            print(f"[{p.stage}]{extra}{sep}{p.message}".rstrip(), flush=True)

    minutes = args.minutes if args.minutes is not None or args.steps is not None else DEFAULT_MINUTES
    try:
        res = finetune(args.base, args.data, name=args.name, minutes=minutes, steps=args.steps, holdout=holdout,
                       out_dir=args.out_dir, seed=args.seed, threads=args.threads, progress=show,
                       size=args.size, background=args.background, diameter_px=args.diameter,
                       precision=args.precision, max_steps=args.max_steps if args.max_steps > 0 else None,
                       overwrite=args.overwrite, keep_worse=args.keep_worse)
    except CellcountError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:  # --data or --from that does not exist
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the fine-tune stopped and nothing was saved", file=sys.stderr)
        return 130
    print(f"saved {res.name} to {res.folder} ({res.steps} steps in {res.precision}, {res.seconds:.0f} s)")
    from .models.loading import user_models_dir

    if args.out_dir and Path(args.out_dir).resolve() != user_models_dir().resolve():
        # a tester's `count --model NAME` then failed with "unknown model"
        print(f"note: {res.folder} is outside your models folder ({user_models_dir()}): use it by its folder "
              f"(--model {res.folder}), or move it there to use it by name")
    print(f"trained in {res.precision_why}")
    print(f"how {res.name} reads images: {res.reading}")  # the Train page's words
    for text in [*res.notes, *([res.size_note] if res.size_note else [])]:
        print(f"note: {text}")
    if res.before:
        which = " (the fine-tuned weights, not saved: see the note above)" if res.kept_base else ""
        print(f"held-out images ({len(res.holdout_files)}): count MAE {res.before['mae']:.2f} -> "
              f"{res.after['mae']:.2f}{which}")
        if "mae" in res.settings_only:
            print(f"  {args.base}'s weights with {res.name}'s settings (input and postprocessing): MAE "
                  f"{res.settings_only['mae']:.2f}, what the settings alone do")
        who = "the fine-tuned model (not kept)" if res.kept_base else res.name
        warn, text = holdout_verdict(res.paired, len(res.holdout_files), name=who, base=args.base,
                                     before=res.before, after=res.after,
                                     segmentation=model_kind(args.base) != "density")
        if res.kept_base:
            text += f" So {res.name} keeps {args.base}'s weights: it counts these images as {args.base} does."
        print(("warning: " if warn else "") + text)
    # saved, but not from every image given: exit 1, as `count` and `evaluate` do when they left a file out
    return 1 if any(text.startswith("left out: ") for text in res.notes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
