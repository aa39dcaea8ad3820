"""Which annotated images train and which are held out, and what the user should know about either part."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import GroundTruthError, ParameterError
from ..groundtruth import listed
from .data import MIN_TRAIN_IMAGES, _hold_out_unseen, _name_fields, group_levels, holdout_asked, split_holdout
from .reading import SIZE_SPREAD, few_dots_note, measure_annotated
from .stages import AnnotatedSet, Base, Run

if TYPE_CHECKING:
    from ..groundtruth import GroundTruth
    from ..models.base import NetModel


FEW_TRAIN_IMAGES = 3
"""Fewer training images than this get a note: a fine-tune learns little from one or two."""


def split_off_holdout(labelled: list[tuple[str, bytes, GroundTruth]], holdout: float | int, *, seed: int,
                      model: NetModel, run: Run) -> tuple[list[int], list[int]]:
    """(train, held out) indices: ``holdout`` checked against the images there are, and held-out images the base
    learnt from swapped for unseen training images where it can be (:func:`_hold_out_unseen`)."""
    names = [n for n, _, _ in labelled]
    asked = holdout_asked(holdout, len(names))
    if asked > len(names) - MIN_TRAIN_IMAGES:  # nothing trained yet: say so rather than train on what is left
        raise ParameterError(
            f"holdout {holdout:g} asks to hold out {asked} of the {len(names)} annotated image(s); at most "
            f"{max(len(names) - MIN_TRAIN_IMAGES, 0)} can be (at least {MIN_TRAIN_IMAGES} must train): hold out "
            "fewer, or annotate more images")
    train_idx, held_idx = split_holdout(names, holdout, seed=seed)
    train_idx, held_idx, seen_held, moved = _hold_out_unseen(labelled, train_idx, held_idx,
                                                             model.card.training_digests(),
                                                             model.card.training_pixel_digests(), seed=seed)
    if moved:  # scored on them, the base looks better than it is, and that decides whose weights are kept
        run.note(f"{len(moved)} image(s) drawn for holding out are among {model.card.name}'s own training images "
                 f"({listed(moved, 3)}): they train instead, and {len(held_idx)} image(s) it never saw are held out")
    if seen_held:  # the base's "before" there flatters it, and so the choice between its weights and the new ones
        run.note(f"{len(seen_held)} held-out image(s) are among {model.card.name}'s own training images "
                 f"({', '.join(seen_held[:3])}{', ...' if len(seen_held) > 3 else ''}): its error there is likely "
                 "lower than on new images, so the before / after comparison favours it")
    if note := holdout_groups_note(names, train_idx, held_idx, asked):
        run.note(note)
    return train_idx, held_idx


def holdout_groups_note(names: list[str], train_idx: list[int], held_idx: list[int], asked: int) -> str | None:
    """How the held-out images' names relate to the training images' (:func:`group_levels`): tiles of a training
    slide held out, or whole groups held out (and at which level); None where the names make no groups (names that
    share nothing, or one prefix: img01 ... img19)."""
    levels = group_levels(names)
    if not levels or not held_idx:
        return None
    finest = levels[-1]
    trained = {finest[i] for i in train_idx}
    alike = [names[i] for i in held_idx if finest[i] in trained]
    if alike:  # neighbouring tiles of the training images: the held-out score is on their own slide
        return (f"{len(alike)} held-out image(s) are named like training images but for their last number "
                f"({listed(alike, 3)}; tiles or fields of one slide?): the held-out score may flatter the fine-tune; "
                "judge it on images of another slide or sample")
    if not any(finest.count(finest[i]) > 1 for i in held_idx):
        return None
    more = (f" ({len(held_idx)} held out where {asked} were asked, to keep them together)"
            if len(held_idx) != asked else "")
    shown = listed([names[i] for i in held_idx], 3)
    if not {levels[0][i] for i in held_idx} & {levels[0][i] for i in train_idx}:
        pattern = {i: _name_fields(names[i])[0] for i in (*held_idx, *train_idx)}
        if not {pattern[i] for i in held_idx} & {pattern[i] for i in train_idx}:  # slideA_* held, slideB_* trained
            return (f"held out whole groups of images named alike ({shown}){more}: no held-out image is named like a "
                    "training image but for its numbers, so the score is not on the training images' own slides")
        return (f"held out whole groups of images named alike ({shown}){more}: no held-out image shares the first "
                "number that varies in the names (a patient, plate, well or slide?) with a training image, so the "
                "score is not on the training images' own samples")
    return (f"held out whole groups of images named alike ({shown}){more}: no held-out image shares its name, less "
            "its last number, with a training image (tiles of one slide stay on one side), but some share an earlier "
            "number with training images (a patient, plate or slide above the tiles?): the score may flatter the "
            "fine-tune there")


def check_training_set(names: list[str], gts: list[GroundTruth], train_idx: list[int], held_idx: list[int], *,
                       run: Run) -> None:
    """A :class:`GroundTruthError` when the training images hold nothing to learn; notes on few or empty ones."""
    if len(train_idx) < FEW_TRAIN_IMAGES:
        run.note(f"only {len(train_idx)} image(s) to train on: the new model may learn little from so few (hold out "
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
            run.note(f"{names[i]}'s annotation ({gts[i].source or 'points'}) holds no dots: it trains as an image with "
                     "no cells; if it has cells, its export failed")
    for i in held_idx:  # said before training: its error, the whole count, would make the held-out figures
        if gts[i].kind == "points" and gts[i].count == 0:
            run.note(f"{names[i]}'s annotation ({gts[i].source or 'points'}) holds no dots, and it is held out: both "
                     "models are scored on it as an image with no cells, which can make the held-out error alone; if it "
                     "has cells, its export failed: export it again, or leave it out")


def check_held_out(s: AnnotatedSet, b: Base, fixed: dict[str, Any], *, run: Run, like_px: float | None) -> None:
    """Notes on the held-out images, from one base pass each (:func:`measure_annotated`): those whose objects measure
    more than :data:`SIZE_SPREAD` times from ``like_px`` (the training images' median, as the base measured them; None:
    each image is sized on its own, or the base measures something other than the dotted objects, nothing to
    check), and those partly dotted.
    Either makes the held-out figures, which decide whose weights are kept, say little of the fine-tune."""
    if not s.held_idx:
        return
    measured = [measure_annotated(s.images[i], s.gts[i], b.model, size_model=b.size_model, overrides=fixed)
                for i in s.held_idx]
    odd = [f"{s.names[i]} ({m[0]:.0f} px)" for i, m in zip(s.held_idx, measured, strict=True)
           if like_px and m[0] and max(m[0] / like_px, like_px / m[0]) > SIZE_SPREAD]
    if odd:  # an image at another scale is miscounted, and the fine-tune would be blamed for the held-out MAE
        one = len(odd) == 1
        run.note(f"{listed(odd, 3)} (held out) measure{'s' if one else ''} more than {SIZE_SPREAD:g}x from the "
                 f"training images' {like_px:.1f} px objects, both as {b.model.name} measures them (another "
                 f"magnification?): every image is counted at one size, so {'its' if one else 'their'} count may be "
                 "far off and sway the held-out figures; count such images with their own nucleus diameter")
    dotted = [(i, m) for i, m in zip(s.held_idx, measured, strict=True)
              if s.gts[i].kind == "points" and s.gts[i].count]
    if note := few_dots_note([s.names[i] for i, _ in dotted], [s.gts[i].count for i, _ in dotted],
                             [m[2] for _, m in dotted], b.model.name, undotted=[m[3] for _, m in dotted],
                             held_out=True):
        run.note(note)
