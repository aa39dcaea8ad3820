"""`finetune`: one fine-tune from the annotated images to a new model folder with its card."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CellcountError, GroundTruthError, ParameterError
from ..groundtruth import listed
from .data import (
    DEFAULT_HOLDOUT,
    MIN_TRAIN_IMAGES,
    LabelledItems,
    _hold_out_unseen,
    _images,
    _labelled_items,
    data_fingerprint,
    holdout_asked,
    split_holdout,
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
from .flag import MIN_NOVELTY_IMAGES, apart_digits, calibrate_flag, heldout_flag_reason, own_novelty, told_apart
from .publish import _publish, check_new_name
from .reading import (
    SET_AGREEMENT,
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
from .targets import DOT_DISC, training_item
from .verdict import GAIN_NOTE, WORSE_OBJECTS, WORSE_SHARE, outline_note, settings_gain_note, worse_than_base

DEFAULT_MINUTES = 5.0


# the most steps a time budget buys, so that a fast CPU finishes early instead of spending the whole budget:
# without the crops' jitter, vgg_cells' two validation draws counted 2.96 / 3.38 at 300 steps, 2.98 / 2.53 at
# 1500 and 2.78 / 2.33 at 3000 (docs/finetuning.md, "Augmentation"); more were not tried
DEFAULT_MAX_STEPS = 3000


DOTS_ON_MASK_NOTE = (
    "your annotations are dots: a segmentation model such as {base} learns its own outlines corrected by them, "
    "which works where cells are separate; where they touch or overlap, a density model (unet-density) learns "
    "from dots directly and usually counts better")


FEW_STEPS = 100
"""A time budget that buys fewer steps gets a note (vgg_cells' fine-tunes gained most within the first 300)."""


FEW_TRAIN_IMAGES = 3
"""Fewer training images than this get a note: a fine-tune learns little from one or two."""


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


PEAK_GAP_SHARE = 0.25
"""A density fine-tune with one object size for its set keeps its approximate centres this share of that size apart."""


TUNE_PASSES, CROSS_CHECK_PASSES = 100, 300
"""Postprocessing passes per training image of the settings search and of its 4-fold check (each image is in
three folds' tunings). Measured on 2026-12-04 (Intel Xeon) with unet-mask: 35-37 and 111 on 8 DSB images with
label images, 91-98 and 291 on 8 mbm images from dots (the search walks past its grid's top there); with the
earlier 50 and 155, a 1-minute fine-tune on those mbm images took 88 s, its settings search 43 s of it."""


MIN_CROSS_CHECK = 4
"""With at least this many training images the re-tuned postprocessing is checked on the ones each tuning did
not see (:func:`cellcount.evaluate.cross_check`), and the base's settings are kept when it does not help."""


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

    from ..evaluate import (
        DEFAULT_GRID,
        calibrate_density,
        cross_check,
        evaluate_predictions,
        predict_pairs,
        tune_params,
    )
    from ..io import pixel_digest, read_image_planes
    from ..metrics import paired_mae_difference
    from ..models import load_model, save_model, size_model_for
    from ..models.base import NetModel
    from ..pipeline import postprocess, predict, resolve_params
    from ..train import DEFAULTS

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
            from ..params import SCHEMA

            top = int(SCHEMA["peak_min_distance_px"].ui_range[1])  # the Count page's slider reaches no further
            card.postprocess["peak_min_distance_px"] = max(base_gap, min(round(PEAK_GAP_SHARE * diameter), top))
    new = NetModel(net, card)

    report(FinetuneProgress("tune", n_steps, n_steps, message="re-tuning postprocessing on the training images"))
    settings_kept = False  # re-tuned settings that counted unseen training images no better: the base's stay
    gain_text = None  # a density fine-tune's large count gain, said once the saved weights are known
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
            gain_text = (f"{name}'s counts are scaled by {k_gain:.2f}, fitted on its training images: after {n_steps} "
                         "training steps its map alone counted them that far off, so much of the change may be this "
                         "one factor. The held-out figures show whether it holds on images it did not see.")
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
        from ..quality import LARGE_ERROR

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
    elif gain_text:  # said of the weights that are saved only (the base's kept: no gain, as the base counts)
        note(gain_text)
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
    # the base's own description, not the story of its fine-tune (a fine-tune of a fine-tune told its parent's)
    base_text = model.card.description.split(" Fine-tuned from ")[0]
    card.description = (f"{base_text} Fine-tuned from {model.name} on {_images(len(train_idx), 'user')}"
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
                 # (none where the base's weights were kept: they learnt nothing from them, and Evaluate and Compare
                 # left the user's images out of its scores as seen in training)
                 "train_sha256": [] if kept_base else [hashlib.sha256(labelled[i][1]).hexdigest() for i in train_idx],
                 "train_pixel_sha256": [] if kept_base else [pixel_digest(images[i]) for i in train_idx]},
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
    card.license = (model.card.license if model.card.license.endswith("; fine-tuned on user data")
                    else f"{model.card.license}; fine-tuned on user data")
    if own is None and not kept_base:
        from ..novelty import MIN_SMALL_WINDOW_PX

        n_images = len(train_idx) + len(held_idx)
        why = (f"{n_images} annotated image(s), {MIN_NOVELTY_IMAGES} needed" if n_images < MIN_NOVELTY_IMAGES else
               f"fewer than {MIN_NOVELTY_IMAGES} of the {n_images} images are at least {MIN_SMALL_WINDOW_PX} px "
               "across at the model's scale")
        note(f"too few images to learn what yours look like ({why}): {name}'s quality flag cannot tell an image "
             "unlike yours, so check its counts by eye on images of another kind")
    if own is not None and not kept_base:
        from ..novelty import SETTINGS

        novelty = (own[0], {"images": len(own[0].features), **SETTINGS, "features": int(own[0].features.shape[1]),
                            "small_window_images": 0 if own[0].small is None else len(own[0].small.features),
                            "fitted_on": (f"the training and held-out images of the fine-tune ({source})" if held_idx
                                          else f"the training images of the fine-tune ({source})")})
    try:  # every file of the stage is written in here, so a failure leaves no hidden folder behind
        if cancel is not None and cancel.is_set():  # cancelled while scoring: nothing is saved, as promised
            raise Cancelled("fine-tuning was cancelled")
        if novelty is not None:
            from ..novelty import NOVELTY_FILE

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
