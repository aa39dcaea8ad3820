"""`finetune`: one fine-tune from the annotated images to a new model folder with its card."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CellcountError, GroundTruthError, ParameterError
from ..groundtruth import listed
from ..models.guide import FEW_STEPS
from .data import (
    DEFAULT_HOLDOUT,
    LabelledItems,
    _labelled_items,
)
from .fit import (
    DOTS_ELASTIC_P,
    DOTS_SCALE_RANGE,
    ELASTIC_P,
    INTENSITY_JITTER,
    PRECISIONS,
    SCALE_RANGE,
    Cancelled,
    FinetuneProgress,
    _fit,
    _precision_plan,
)
from .flag import (
    MIN_FLAG_IMAGES,
    apart_digits,
    heldout_flag_reason,
    told_apart,
)
from .holdout import check_held_out, check_training_set, split_off_holdout
from .publish import _write_model, check_new_name
from .reading import (
    SET_AGREEMENT,
    background_votes,
    few_dots_note,
    measure_annotated,
    one_magnification,
    reading_note,
    set_background,
    set_diameter,
    set_misses_dots,
    several_sizes_note,
    size_spread,
    spacing_note,
)
from .record import fill_card, new_card, novelty_to_save
from .stages import AnnotatedSet, Base, Reading, Run, Scores, Trained, Tuned, Verdict
from .targets import COUNT_ONLY, DOT_DISC, training_item
from .tuning import CROSS_CHECK_PASSES, MIN_CROSS_CHECK, TUNE_PASSES, calibrate_training_flag, fit_novelty, retune
from .verdict import WORSE_OBJECTS, WORSE_SHARE, settings_gain_note, worse_than_base

if TYPE_CHECKING:
    from ..groundtruth import GroundTruth
    from ..models import ModelCard
    from ..models.base import NetModel


DEFAULT_MINUTES = 5.0


# the most steps a time budget buys, so that a fast CPU finishes early instead of spending the whole budget:
# without the crops' jitter, vgg_cells' two validation draws counted 2.96 / 3.38 at 300 steps, 2.98 / 2.53 at
# 1500 and 2.78 / 2.33 at 3000 (docs/finetuning.md, "Augmentation"); more were not tried
DEFAULT_MAX_STEPS = 3000


DOTS_ON_MASK_NOTE = (
    "your annotations are dots: a segmentation model such as {base} learns its own outlines corrected by them, "
    "which works where cells are separate; where they touch or overlap, a density model (unet-density) learns "
    "from dots directly and usually counts better")


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
    holdout_backends: dict[str, str] = field(default_factory=dict)
    """What the base's and the new model's networks ran in for ``before`` and ``after`` (:class:`Scores`)."""
    settings_only: dict[str, float] = field(default_factory=dict)
    """The held-out figures of the base's weights with the new model's settings (empty where they are the base's
    own, or for a density model): how much of the change the settings alone make."""
    kept_base: bool = False
    """The fine-tuned weights counted the held-out images clearly worse (``after``: always the fine-tuned
    weights' figures), so the saved model keeps the base's weights and settings (it counts them as ``before``)."""
    settings_kept: bool = False
    """The base's postprocessing is kept: settings re-tuned on parts of the training images counted the other parts
    no better (the input settings, such as the object size, may still be the set's own)."""


MIN_IMAGE_PX = 32
"""Annotated images smaller than this on a side are left out of a fine-tune, named: a few pixels of one or two
cells teach nothing and score nothing."""


SHORT_TRAINING_SHARE = 0.5
"""A time budget that leaves training less than this share of it is said (the rest is reading and scoring)."""
MIN_TRAIN_S = 10.0
"""The least training time a budget must leave (else the run is refused before training)."""


def _check_budget(minutes: float, spent_s: float, rest_s: float, n_images: int, *, partial: bool = False) -> float:
    """The seconds ``minutes`` leave for training after ``spent_s`` so far and ``rest_s`` still to come (reading,
    scoring); a :class:`ParameterError` that says the budget needed when they are under :data:`MIN_TRAIN_S`.
    ``partial``: ``rest_s`` does not hold every cost yet (the settings search is timed later), so the budget it
    names is a lower bound, which a later count of every cost may raise."""
    left = 60.0 * float(minutes) - spent_s - rest_s
    if left < MIN_TRAIN_S:
        need = math.ceil(2 * (spent_s + rest_s + 60.0) / 60.0) / 2  # a minute of training, in half minutes
        what = (f"more than {need:g} min (a minute of training, and the search for its settings after it)" if partial
                else f"about {need:g} min or more (a minute of training)")
        raise ParameterError(
            f"a budget of {minutes:g} min leaves {max(left, 0):.0f} s of training after reading and scoring "
            f"{n_images} images on this computer; give {what}, fewer images, or a number of steps")
    return left


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

    from ..models import size_model_for
    from ..pipeline import resolve_params

    run = Run(progress or (lambda p: None))
    t_start = time.perf_counter()  # the budget includes loading the base model
    target, model = _check_args(base, name, minutes=minutes, steps=steps, precision=precision, max_steps=max_steps,
                                size=size, background=background, diameter_px=diameter_px, out_dir=out_dir,
                                overwrite=overwrite)
    if threads:
        torch.set_num_threads(int(threads))
    s = _read_annotated(data, holdout, seed=seed, model=model, run=run)
    base_params = resolve_params(model, None)
    # the fine-tuned model keeps the base's card settings
    b = Base(model, model.output_kind, base_params, size_model_for(model, base_params))
    reading = _decide_reading(s, b, background=background, size=size, diameter_px=diameter_px, minutes=minutes,
                              steps=steps, t_start=t_start, run=run)
    items, per_image_s = _build_targets(s, b, reading, reference_px=reference_px, density_sigma=density_sigma,
                                        dot_disc=dot_disc, cancel=cancel, report=run.report)
    train_budget_s = None if steps is not None else _train_budget(s, b, reading, minutes=minutes, t_start=t_start,
                                                                  per_image_s=per_image_s)
    if train_budget_s is not None and train_budget_s < SHORT_TRAINING_SHARE * 60.0 * float(minutes):
        # the run may end well before its budget: said, with why (the time kept for reading and scoring)
        run.note(f"the {minutes:g}-min budget leaves {train_budget_s:.0f} s of training: the rest is for reading, "
                 f"scoring and re-tuning these {len(s.names)} images as timed on this computer (slower while it is "
                 "busy); give more minutes, or a number of steps, to train longer")
    trained = _train(b, items, s.train_gts, steps=steps, seconds=train_budget_s, batch_size=batch_size, crop=crop,
                     lr=lr, seed=seed, cancel=cancel, count_weight=count_weight, scale_range=scale_range,
                     elastic_p=elastic_p, intensity_jitter=intensity_jitter, average_last=average_last,
                     precision=precision, max_steps=max_steps, grad_under_blobs=grad_under_blobs,
                     freeze_encoder=freeze_encoder, run=run)
    card = new_card(b, name, reading, reference_px=reference_px)
    tuned = retune(s, b, trained.net, card, name=name, n_steps=trained.n_steps, run=run)
    calibrate_training_flag(b, tuned, card, name=name, n_steps=trained.n_steps, run=run)
    held_items, held_pairs, own = fit_novelty(s, b, tuned, card, report=run.report)
    scores = _score_heldout(b, held_items, held_pairs, tuned.params, report=run.report)
    verdict = _verdict(s, b, trained, tuned, scores, card, name=name, keep_worse=keep_worse, run=run)
    _heldout_flag(verdict, name=name, run=run, base=b.model.name)
    if len(tuned.train_pairs) < MIN_FLAG_IMAGES and not verdict.kept_base:
        # the card's "flagged 0% of 4 images, holding 0% of the 1 counts off by more than 15%" does not say that
        # this flag cannot catch counts that are off on images like the training images
        run.note(f"with {len(tuned.train_pairs)} training image(s) (fewer than {MIN_FLAG_IMAGES}) {name}'s quality flag "
                 "could not be fitted to your images: it may not flag counts that are off on images like them. The "
                 "held-out figures are the better guide: check a few counts by eye")
    seconds = time.perf_counter() - t_start
    fill_card(verdict, s, b, data, reading, trained, settings_kept=tuned.settings_kept, seconds=seconds, steps=steps,
              seed=seed, max_steps=max_steps, batch_size=batch_size, crop=crop, lr=lr, freeze_encoder=freeze_encoder,
              intensity_jitter=intensity_jitter, reference_px=reference_px, density_sigma=density_sigma,
              average_last=average_last, dot_disc=dot_disc, keep_worse=keep_worse)
    novelty = novelty_to_save(verdict, own, s, name=name, run=run)
    target = _write_model(verdict.net, verdict.card, novelty, target, name=name, overwrite=overwrite, cancel=cancel)
    if target.name != name:
        name = _renamed(run, name, target.name)
    n_steps, kept_base, scores = trained.n_steps, verdict.kept_base, verdict.scores
    run.report(FinetuneProgress("done", n_steps, n_steps, elapsed_s=seconds, remaining_s=0.0,
                                message=f"saved {name} to {target}"))
    return FinetuneResult(folder=target, name=name, steps=n_steps, seconds=seconds, before=scores.before,
                          after=verdict.rejected or scores.after, paired=scores.paired, kept_base=kept_base,
                          settings_only=scores.settings_only, holdout_backends=scores.backends,
                          holdout_files=[s.names[i] for i in s.held_idx],
                          train_files=[s.names[i] for i in s.train_idx], holdout_counts=scores.counts,
                          reading=(f"as {model.name} reads them (its weights and settings were kept)" if kept_base
                                   else reading_note(background=reading.background, invert=reading.fixed.get("invert"),
                                                     size=reading.size, diameter_px=reading.diameter,
                                                     spread=reading.spread)),
                          size_note="" if kept_base else reading.size_note, notes=run.notes,
                          precision=trained.used["precision"], precision_why=trained.used["why"],
                          settings_kept=tuned.settings_kept)


def _check_args(base: str | Path, name: str, *, minutes: float | None, steps: int | None, precision: str,
                max_steps: int | None, size: str, background: str, diameter_px: float | None,
                out_dir: str | Path | None, overwrite: bool) -> tuple[Path, NetModel]:
    """The new model's folder and the base model, once the arguments are checked (a :class:`ParameterError` before
    any work otherwise)."""
    from ..models import load_model
    from ..models.base import NetModel

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
    return target, model


def _read_annotated(data: str | Path | LabelledItems, holdout: float | int, *, seed: int, model: NetModel,
                    run: Run) -> AnnotatedSet:
    """The annotated images read, their held-out part split off, and notes on what was left out or is thin."""
    from ..io import read_image_planes

    run.report(FinetuneProgress("prepare", message="reading the images and annotations"))
    skipped: list[str] = []  # images left out: named in the notes
    from ..groundtruth.read import CalibratedPointsWarning, file_dots_note

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibratedPointsWarning)
        labelled, source = _labelled_items(data, skipped)
    for w in caught:  # said as read, and again among the run's notes: one line among the reading lines is easily missed
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if issubclass(w.category, CalibratedPointsWarning):
            run.note(f"{w.message} (read as it is)")
    # an image with a count only is left out and named, the others train (one counts-table row must not end the run)
    counted = [n for n, _, gt in labelled if gt.labels is None and gt.points is None]
    if counted and len(counted) < len(labelled):
        rest = [item for item in labelled if item[0] not in set(counted)]
        if not any(gt.count for _, _, gt in rest):  # the counted images held every cell there is to learn
            raise GroundTruthError(f"{listed(counted, 3)}: {COUNT_ONLY}; the other images' annotations hold no objects")
        skipped += [f"{n}: {COUNT_ONLY}" for n in counted]
        labelled = rest
    read: list[tuple[np.ndarray, tuple[int, str] | None]] = []
    for n, raw, gt in list(labelled):
        try:
            image, planes = read_image_planes(raw)
        except (CellcountError, OSError) as err:  # a broken file is left out and named, the others train
            skipped.append(f"{n}: {str(err).replace('<bytes>: ', '').replace('<bytes>', n)}")
            labelled = [item for item in labelled if item[0] != n]
            continue
        if min(np.shape(image)[:2]) < MIN_IMAGE_PX:  # a crop of a cell or two: nothing to learn or score
            skipped.append(f"{n}: {np.shape(image)[1]} x {np.shape(image)[0]} px, too small to learn from or to "
                           f"score (at least {MIN_IMAGE_PX} px on each side)")
            labelled = [item for item in labelled if item[0] != n]
            continue
        # uploaded items were read before this run (their reading said it once): among the run's notes too
        if not isinstance(data, (str, Path)) and (note := file_dots_note(n, gt, np.shape(image))):
            run.note(f"{note} (read as it is)")
        read.append((image, planes))
    if not labelled:
        raise GroundTruthError("none of the annotated images can be used: " + "; ".join(skipped))
    names = [n for n, _, _ in labelled]
    gts = [gt for _, _, gt in labelled]
    train_idx, held_idx = split_off_holdout(labelled, holdout, seed=seed, model=model, run=run)
    check_training_set(names, gts, train_idx, held_idx, run=run)
    for text in skipped:
        run.note(f"left out: {text}")
    images = {}
    for i, (image, planes) in enumerate(read):
        images[i] = image
        if planes is not None:
            run.note(f"{names[i]}: the file holds {planes[0]} {planes[1]}; only the first was used (save the plane "
                     "you annotated as a file of its own to train on another)")
    return AnnotatedSet(labelled, source, skipped, names, gts, images, train_idx, held_idx)


def _passes_per_train_image(kind: str) -> float:
    """Base passes per training image after training (:func:`retune`)."""
    return 2.0 if kind == "density" else 1.5


def _decide_reading(s: AnnotatedSet, b: Base, *, background: str, size: str, diameter_px: float | None,
                    minutes: float | None, steps: int | None, t_start: float, run: Run) -> Reading:
    """The set's background and object size (one for the set, or each image's own), measured on the training images;
    a time budget too short for the whole run is refused while measuring."""
    fixed: dict[str, Any] = {}  # settings decided once for the user's set, kept in the new card
    if b.params.invert is not None:  # the base's card fixes it; the fine-tune keeps that
        background = "card"
    elif background != "image":
        order = [*s.train_idx, *s.held_idx]  # the training images decide; the held-out ones are read alike
        votes = dict(zip(order, background_votes([s.images[i] for i in order], channel=b.params.channel), strict=True))
        bright = set_background(votes=[votes[i] for i in s.train_idx],
                                agreement=SET_AGREEMENT if background == "auto" else 0.0)
        background = "image" if bright is None else "set"
        if bright is not None:
            fixed["invert"] = bright
            # those the set outvotes: a fluorescence image among H&E ones is read as H&E, which may be right (a dense
            # field the per-image test misreads) or an image that does not belong
            if odd := [s.names[i] for i in sorted(order) if votes[i] != bright]:
                one = len(odd) == 1
                own = "a dark background (as fluorescence)" if bright else "a bright background (as brightfield or H&E)"
                run.note(f"{listed(odd, 3)} {'has' if one else 'have'} {own} on {'its' if one else 'their'} own, but "
                         f"{'is' if one else 'are'} read as {'bright' if bright else 'dark'}-background with the rest "
                         f"of the set: leave {'it' if one else 'them'} out if not like the others")
    diameter = None
    size_note, spread, sizes = "", None, None
    train_gts = s.train_gts
    if b.kind == "mask" and train_gts and all(gt.kind == "points" for gt in train_gts):
        run.report(FinetuneProgress("prepare", message=DOTS_ON_MASK_NOTE.format(base=b.model.name)))
    per_train = _passes_per_train_image(b.kind)
    images, train_idx, held_idx = s.images, s.train_idx, s.held_idx

    def measure_all() -> list:
        """:func:`measure_annotated` of every training image (a base pass each, for dots); a time budget too short
        for the whole run is refused after the second, not after all of them (the first pass may time the backends
        or build the fast network: the second is the one timed, per pixel of the set's mean image)."""
        out = []
        mean_px = float(np.mean([images[i].shape[0] * images[i].shape[1] for i in (*train_idx, *held_idx)]))
        for k, i in enumerate(train_idx):
            t_one = time.perf_counter()
            out.append(measure_annotated(images[i], s.gts[i], b.model, size_model=b.size_model, overrides=fixed))
            if k == 1 and steps is None:
                one = (time.perf_counter() - t_one) * mean_px / (images[i].shape[0] * images[i].shape[1])
                rest = one * (len(train_idx) - 2 + per_train * len(train_idx) + 2 * len(held_idx)) + 5.0
                _check_budget(minutes, time.perf_counter() - t_start, rest, len(s.names), partial=b.kind != "density")
        # partly dotted images (an empty one has its own note; the Train page's hint while dotting judges the count alone)
        dotted = [k for k, i in enumerate(train_idx) if s.gts[i].kind == "points" and s.gts[i].count]
        if note := few_dots_note([s.names[train_idx[k]] for k in dotted], [s.gts[train_idx[k]].count for k in dotted],
                                 [out[k][2] for k in dotted], b.model.name, undotted=[out[k][3] for k in dotted]):
            run.note(note)
        return out

    if diameter_px is not None:
        size, diameter = "given", float(diameter_px)
        run.report(FinetuneProgress("prepare", message="checking the objects' sizes against the one you gave"))
        measured = measure_all()
        sizes, hits = [m[0] for m in measured], [m[1] for m in measured]
        size_note = several_sizes_note(diameter, train_gts, sizes)
    elif size in ("auto", "set"):
        run.report(FinetuneProgress("prepare", message="measuring the objects' size"))
        measured = measure_all()
        sizes, hits = [m[0] for m in measured], [m[1] for m in measured]
        known = [d for d in sizes if d]
        estimate = float(np.median(known)) if known else None
        if size == "auto":  # a base that misses the dots sizes something else: its spread says nothing
            misses = set_misses_dots(train_gts, sizes, hits)
            size = "set" if misses or one_magnification(train_gts, sizes) else "image"
            spread = size_spread(train_gts, sizes)
        if size == "set":
            diameter = set_diameter([], train_gts, b.model, sizes=sizes, hits=hits)
            # to a tenth of a pixel, as every page shows it: trained, scored, stored and shown alike
            diameter = round(diameter, 1) if diameter else diameter
            size_note = spacing_note(diameter, train_gts, measured=estimate, hits=hits)
    if sizes is not None:  # measured as the training images were: the held-out ones too, before training
        # against the training images' objects as the base measured them (not the size counted at, which may come
        # from the dots' spacing and be far from what the base measured), unless the base
        # sees no object under the dots, and so measures something else on every image
        known = [d for d in sizes if d]
        same_size = size in ("given", "set") and known and not set_misses_dots(train_gts, sizes, hits)
        check_held_out(s, b, fixed, run=run, like_px=float(np.median(known)) if same_size else None)
    # each image's own size, when measured above (size "image"): its targets need not measure it again
    own_sizes = dict(zip(train_idx, sizes, strict=True)) if diameter is None and sizes is not None else {}
    return Reading(background, size, diameter, fixed, size_note, spread, own_sizes)


def _build_targets(s: AnnotatedSet, b: Base, reading: Reading, *, reference_px: float | None,
                   density_sigma: float, dot_disc: float, cancel: threading.Event | None,
                   report: Callable[[FinetuneProgress], None]) -> tuple[list, float]:
    """The training items (image and target) of the training images, and the seconds each took."""
    density_scale = float(b.model.card.density_scale) if b.kind != "mask" else 1.0
    items = []
    t_prep = time.perf_counter()
    for k, i in enumerate(s.train_idx):
        if cancel is not None and cancel.is_set():
            raise Cancelled("fine-tuning was cancelled")
        report(FinetuneProgress("prepare", k, len(s.train_idx), message=f"targets for {s.names[i]}"))
        items.append(training_item(s.names[i], s.images[i], s.gts[i], b.model, density_scale=density_scale,
                                   diameter_px=reading.diameter, size_model=b.size_model, overrides=reading.fixed,
                                   reference_px=reference_px, density_sigma=density_sigma, dot_disc=dot_disc,
                                   measured_px=reading.own_sizes.get(i)))
    per_image_s = (time.perf_counter() - t_prep) / max(len(s.train_idx), 1)  # targets (and a base pass for dots)
    return items, per_image_s


def _train_budget(s: AnnotatedSet, b: Base, reading: Reading, *, minutes: float, t_start: float,
                  per_image_s: float) -> float:
    """The seconds of training ``minutes`` leave (:func:`_check_budget`)."""
    from ..pipeline import postprocess, predict, resolve_params

    images, train_idx, held_idx, kind = s.images, s.train_idx, s.held_idx, b.kind
    # ``minutes`` bounds the whole run: what is left after preparing, less what tuning (one pass per
    # training image, then postprocessing only) and the held-out scoring (two passes per image) will
    # take, from a timed pass of the base (the targets need none unless dots correct its segmentation)
    pass_params = resolve_params(b.model, reading.fixed)
    if reading.diameter:
        pass_params = dataclasses.replace(pass_params, auto_nucleus_size=False,
                                          nucleus_diameter_px=float(reading.diameter))
    first = images[train_idx[0]]
    for _ in range(2):  # the second timed: the first may build the fast network or time the backends
        t_pass = time.perf_counter()
        first_pred = predict(first, b.model, pass_params, size_model=b.size_model)
    # per image of the set's mean size, not the first image's
    scored = [images[i] for i in (*train_idx, *held_idx)]
    size_ratio = float(np.mean([im.shape[0] * im.shape[1] for im in scored])) / (first.shape[0] * first.shape[1])
    pass_s = (time.perf_counter() - t_pass) * size_ratio
    # a density model reads its training images twice (before and after its count gain), others once
    # the held-out images: the new model, the base, and (not density) the base with the new settings
    held_passes = 2 if kind == "density" else 3
    reserve = max(pass_s, per_image_s) * (_passes_per_train_image(kind) * len(train_idx)
                                          + held_passes * len(held_idx)) + 5.0
    if kind != "density":  # then the settings search: postprocessing only, but many settings on each image
        for _ in range(2):  # the second timed: the first imports and warms up
            first_pred.memo.clear()  # else the second call reuses the first's mask and split (~0 s: 43 s unplanned)
            t_pp = time.perf_counter()
            postprocess(first_pred, pass_params, measure=False)
        passes = TUNE_PASSES + (CROSS_CHECK_PASSES if len(train_idx) >= MIN_CROSS_CHECK else 0)
        reserve += (time.perf_counter() - t_pp) * size_ratio * passes * len(train_idx)
    return _check_budget(minutes, time.perf_counter() - t_start, reserve, len(s.names))


def _train(b: Base, items: list, train_gts: list[GroundTruth], *, steps: int | None, seconds: float | None,
           batch_size: int, crop: int, lr: float, seed: int, cancel: threading.Event | None,
           count_weight: float | None, scale_range: tuple[float, float] | None, elastic_p: float | None,
           intensity_jitter: float, average_last: float, precision: str, max_steps: int | None,
           grad_under_blobs: bool, freeze_encoder: bool, run: Run) -> Trained:
    """A copy of the base's network trained on ``items`` (:func:`_fit`), for ``steps`` or ``seconds``."""
    import torch

    from ..train import DEFAULTS

    kind = b.kind
    net = copy.deepcopy(b.model.net).float().to(memory_format=torch.channels_last)
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
        net, items, kind=kind, steps=steps, seconds=seconds, batch_size=batch_size,
        crop=crop, lr=lr, rng=np.random.default_rng(seed), report=run.report, cancel=cancel, loss_cfg=loss_cfg,
        scale_range=scale_range, elastic_p=elastic_p, intensity_jitter=intensity_jitter,
        average_last=average_last, precision=precision, max_steps=max_steps, grad_under_blobs=grad_under_blobs,
        freeze_encoder=freeze_encoder,
    )
    if steps is None and n_steps < min(FEW_STEPS, max_steps or FEW_STEPS):  # the budget, not a cap, stopped it
        run.note(f"the time budget bought only {n_steps} training step(s): the new model may have learnt little "
                 f"(the benchmarks' fine-tunes ran 1500-3000); give it more time")
    return Trained(net, n_steps, train_s, losses, used, loss_cfg, scale_range, elastic_p)


def _score_heldout(b: Base, held_items: list, held_pairs: list, params: Any, *,
                   report: Callable[[FinetuneProgress], None]) -> Scores:
    """The base (its card's settings) and the new model scored on the held-out images."""
    from ..evaluate import evaluate_predictions, predict_pairs
    from ..metrics import paired_mae_difference

    model, kind, base_params, size_model = b.model, b.kind, b.params, b.size_model
    before, after, paired, settings_only = {}, {}, {}, {}
    counts: list[dict[str, Any]] = []
    backends: dict[str, str] = {}
    if held_items:  # (none held out: nothing said to be scored)
        report(FinetuneProgress("evaluate", message="scoring the base and the new model on the held-out images"))
        base_pairs = predict_pairs(held_items, model, base_params, size_model=size_model, warn_trained=False)
        from ..evaluate import ran_in

        backends = {"before": ran_in(base_pairs), "after": ran_in(held_pairs)}
        rb = evaluate_predictions(base_pairs, base_params, keep_results=False)
        ra = evaluate_predictions(held_pairs, params, keep_results=False)  # made above (novelty touches no count)
        # F1 & co.: outlines matched by IoU, dots by the objects holding them (or a density model's peaks)
        keep = ("n", "mae", "mae_ci_low", "mae_ci_high", "rmse", "bias", "mape", "f1", "precision", "recall")
        # counts of images as whole numbers (not "n": 2.0 on the card)
        before = {k: int(v) if k == "n" else float(v) for k, v in rb.summary.items() if k in keep}
        after = {k: int(v) if k == "n" else float(v) for k, v in ra.summary.items() if k in keep}
        paired = paired_mae_difference(rb.per_image["true"].to_numpy(), rb.per_image["pred"].to_numpy(),
                                       ra.per_image["pred"].to_numpy())
        counts = [{"file": str(f), "true": float(t), "before": float(b), "after": float(a)}
                  for f, t, b, a in zip(rb.per_image["file"], rb.per_image["true"], rb.per_image["pred"],
                                        ra.per_image["pred"])]
        from ..params import INPUT_FIELDS

        # the base's weights with the new settings (input and postprocessing): how much of the change the settings
        # alone make (a few steps' gain can be mostly a re-tuned min. area or a new nucleus size). A density
        # fine-tune's postprocessing, its count gain, belongs to its new weights; its input settings (the image
        # inverted, the nucleus size read) do not
        alone = params if kind != "density" else base_params.replace(
            **{f: getattr(params, f) for f in INPUT_FIELDS})
        if alone != base_params:
            report(FinetuneProgress("evaluate", message="scoring the base's weights with the new settings"))
            rs = evaluate_predictions(predict_pairs(held_items, model, alone, size_model=size_model, warn_trained=False),
                                      alone, keep_results=False)
            settings_only = {k: int(v) if k == "n" else float(v) for k, v in rs.summary.items() if k in keep}
    return Scores(before, after, paired, settings_only, counts, {k: v for k, v in backends.items() if v})


def _verdict(s: AnnotatedSet, b: Base, trained: Trained, tuned: Tuned, scores: Scores, card: ModelCard, *,
             name: str, keep_worse: bool, run: Run) -> Verdict:
    """Whether the fine-tuned weights are saved or, counting the held-out images clearly worse
    (:func:`worse_than_base`), the base's weights and settings under the new name; notes on the comparison."""
    model, n_steps, used = b.model, trained.n_steps, trained.used
    before, after, settings_only = scores.before, scores.after, scores.settings_only
    net = trained.net
    kept_base = not keep_worse and worse_than_base(before, after)
    if kept_base:  # the new settings are not kept either: their figure would be labelled as this model's
        settings_only = {}
    elif tuned.gain_text:  # said of the weights that are saved only (the base's kept: no gain, as the base counts)
        run.note(tuned.gain_text)
    if not kept_base and (text := settings_gain_note(model.name, name, after, settings_only,
                                                     postprocessing_kept=tuned.settings_kept or b.kind == "density")):
        run.note(text)
    precision_hint = f" --precision {used['precision']}" if used["precision"] in PRECISIONS else ""
    if not kept_base and not keep_worse and after.get("mae", 0) > before.get("mae", math.inf):
        run.note(f"the fine-tuned weights counted the held-out images a little worse than {model.name} (MAE "
                 f"{told_apart(after['mae'], before['mae'])}: "
                 f"{after['mae'] - before['mae']:.{apart_digits(after['mae'], before['mae'])}f} objects per image more). "
                 f"They are saved all the same: {model.name}'s weights are kept instead only when the fine-tuned ones "
                 f"count over {WORSE_SHARE:.0%} worse and at least {WORSE_OBJECTS:g} objects more error over the held-out "
                 f"images together. Count a few of your "
                 f"images with both before relying on it")
    rejected: dict[str, float] = {}
    novelty: tuple[Any, dict[str, Any]] | None = None  # the novelty reference to save with the model, its card entry
    if kept_base:  # no harm: the new model counts as the base does; both figures stay on record
        run.note(f"the fine-tuned weights counted the {len(s.held_idx)} held-out image(s) worse than {model.name} (MAE "
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
    scores = dataclasses.replace(scores, after=after, settings_only=settings_only)
    kept_worse = keep_worse and worse_than_base(scores.before, after)
    return Verdict(kept_base, scores, rejected, net, card, novelty, kept_worse)


def _heldout_flag(verdict: Verdict, *, name: str, run: Run, base: str = "the base") -> None:
    """The saved card's quality rule: the base's held-out verdict dropped, this model's own set where its held-out
    counts were far off, or clearly worse than the base's and kept all the same (every count flagged then)."""
    card, after, kept_base = verdict.card, verdict.scores.after, verdict.kept_base
    # a base fine-tuned before may carry its own held-out verdict: this model gets its own (or none)
    quality = copy.deepcopy(card.extra.get("quality") or {})
    if isinstance(quality.get("rule"), dict) and not kept_base:  # the base's weights kept: its verdict holds for them
        quality["rule"].pop("always", None)
    from ..quality import LARGE_ERROR, relative_errors

    # the base's weights kept: it counts as the base does, and the note above says the fine-tune counted worse
    scored = [c for c in verdict.scores.counts if c["true"] > 0]
    rel = relative_errors([c["true"] for c in scored], [c["after"] for c in scored])
    reason = None if kept_base else heldout_flag_reason(after, name, len(scored), rel_errors=rel)
    kept_worse = reason is None and verdict.kept_worse
    if kept_worse:
        before = verdict.scores.before
        # kept over the verdict: with a few images its own flag (fitted on them) says nothing of this, and
        # undercounts as large as its held-out error would go unflagged
        reason = (f"{name} counted its held-out images worse than {base} when it was fine-tuned (MAE "
                  f"{told_apart(after['mae'], before['mae'])}) and was kept all the same, so every count of it is "
                  f"flagged: count a few images with both, or fine-tune again with more annotated images")
    if reason is not None:
        quality.setdefault("rule", {})["always"] = reason
    if quality:
        card.extra = {**card.extra, "quality": quality}
    if kept_worse:
        run.note(f"{name} is kept although it counted the held-out images worse than {base}: every count of it is "
                 "flagged 'check this image' with that reason")
    elif reason is not None:
        run.note(f"{name} counted the held-out images {after['mape']:.0f}% off on average"
                 + ("" if after["mape"] >= 100 * LARGE_ERROR else ", and so few images may show it better than it is")
                 + ": every count of it is flagged 'check this image' with that reason")


def _renamed(run: Run, name: str, saved_as: str) -> str:
    """``saved_as``, with the notes so far and a new one saying why the model is not saved as ``name``."""
    # the notes so far name the model as asked: they are about this one, now saved under another name
    own = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])")
    run.notes[:] = [own.sub(saved_as, n) for n in run.notes]
    run.note(f"a model named {name} was saved by another run while this one trained: this one is saved as {saved_as}")
    return saved_as


