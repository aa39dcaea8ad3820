"""The new model's card: the base's renamed with the set's reading, then its training record and held-out figures."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import LabelledItems, _images, data_fingerprint
from .flag import MIN_NOVELTY_IMAGES, told_apart
from .stages import AnnotatedSet, Base, Reading, Run, Trained, Verdict
from .verdict import outline_note

if TYPE_CHECKING:
    from ..models import ModelCard


PEAK_GAP_SHARE = 0.25
"""A density fine-tune with one object size for its set keeps its approximate centres this share of that size apart."""


def new_card(b: Base, name: str, reading: Reading, *, reference_px: float | None) -> ModelCard:
    """The base's card renamed, with the set's reading fixed in it (settings re-tuned and figures added later)."""
    from ..pipeline import resolve_params

    card = dataclasses.replace(copy.deepcopy(b.model.card), name=name, sha256="")
    card.extra.pop("novelty", None)  # the base's training images' encoder features: the fine-tune moved the encoder
    card.postprocess = {**card.postprocess, **reading.fixed}
    if reference_px:
        card.extra = {**card.extra, "reference_diameter_px": float(reference_px)}
    diameter = reading.diameter
    if diameter:
        card.postprocess = {**card.postprocess, "nucleus_diameter_px": round(diameter, 2), "auto_nucleus_size": False}
        # the size signal measures from the size learnt: every image resized alike, no longer a doubt on each
        card.extra = {**card.extra, "trained_diameter_px": round(diameter, 2)}
        if b.kind == "density":
            # the centres (local maxima) at least a quarter of an object apart: the base's 3 px, on a map read at a
            # quarter of the image's size and enlarged back (100 px fat cells), found 1038 "centres" for 28 cells
            # (25 px: 28; 3-12 px on 13 px mbm cells: 119-124 for 107)
            base_gap = int(card.postprocess.get("peak_min_distance_px", resolve_params(None, None).peak_min_distance_px))
            from ..params import SCHEMA

            top = int(SCHEMA["peak_min_distance_px"].ui_range[1])  # the Count page's slider reaches no further
            card.postprocess["peak_min_distance_px"] = max(base_gap, min(round(PEAK_GAP_SHARE * diameter), top))
    return card


def fill_card(verdict: Verdict, s: AnnotatedSet, b: Base, data: str | Path | LabelledItems, reading: Reading,
              trained: Trained, *, settings_kept: bool, seconds: float, steps: int | None, seed: int,
              max_steps: int | None, batch_size: int, crop: int, lr: float, freeze_encoder: bool,
              intensity_jitter: float, reference_px: float | None, density_sigma: float, average_last: float,
              dot_disc: float, keep_worse: bool) -> None:
    """The saved card's description, training record, held-out figures and license."""
    from ..io import pixel_digest

    card, model, kind, kept_base = verdict.card, b.model, b.kind, verdict.kept_base
    before, after, paired = verdict.scores.before, verdict.scores.after, verdict.scores.paired
    settings_only = verdict.scores.settings_only
    labelled, source, names, images, train_idx, held_idx = s.labelled, s.source, s.names, s.images, s.train_idx, s.held_idx
    diameter, losses, used = reading.diameter, trained.losses, trained.used
    annotation = sorted({s.gts[i].kind for i in train_idx})
    # the base's own description, not the story of its fine-tune (a fine-tune of a fine-tune would tell its parent's)
    base_text = model.card.description.split(" Fine-tuned from ")[0]
    held = f" ({len(held_idx)} more held out to score it)" if held_idx else ""
    card.description = (f"{base_text} Fine-tuned from {model.name} on {_images(len(train_idx), 'user')}{held}"
                        + (f"; the fine-tuned weights counted the held-out images worse, so it keeps {model.name}'s."
                           if kept_base else "."))
    if not kept_base:
        card.extra.pop("guide_note", None)  # the base's caveats (its flag on unfamiliar images) are not the new model's
        notes = [outline_note(kind, before, after, model.name)]
        if verdict.kept_worse:  # kept over the verdict: the guide says which to count with
            notes.insert(0, f"it counted your held-out images worse than {model.name} (MAE "
                            f"{told_apart(after['mae'], before['mae'])}) and was kept at your request: keep "
                            f"{model.name} for counting")
        if any(notes):
            card.extra["guide_note"] = "; ".join(n for n in notes if n)
    else:  # the base's caveats hold for its weights, but not its advice to fine-tune: that was done, and did not help
        caveat = _without_finetune_advice(str(model.card.extra.get("guide_note") or ""))
        card.extra["guide_note"] = (f"it keeps {model.name}'s weights and settings, as the fine-tune counted your "
                                    f"held-out images worse (MAE {told_apart(verdict.rejected['mae'], before['mae'])}): count "
                                    f"with {model.name}, or fine-tune again with more annotated images"
                                    + (f"; {caveat}" if caveat else ""))
    card.training = {
        "finetuned_from": {"name": model.name, "sha256": model.card.sha256},
        "data": {"source": source, "fingerprint_sha256": data_fingerprint(labelled), "annotation": annotation,
                 "train_files": [names[i] for i in train_idx], "holdout_files": [names[i] for i in held_idx],
                 # annotated images that could not be used, with why; paths inside the data folder relative to it (a
                 # card is shared: no local folders in it)
                 "left_out": [t.replace(f"{Path(data)}{os.sep}", "") if isinstance(data, (str, Path)) else t
                              for t in s.skipped],
                 # by content too: a training image met again under another name (Evaluate, Compare) is recognised
                 # (none where the base's weights were kept: they learnt nothing from them, and Evaluate and Compare
                 # left the user's images out of its scores as seen in training)
                 "train_sha256": [] if kept_base else [hashlib.sha256(labelled[i][1]).hexdigest() for i in train_idx],
                 "train_pixel_sha256": [] if kept_base else [pixel_digest(images[i]) for i in train_idx]},
        "steps": trained.n_steps, "seed": seed, "max_steps": None if steps else max_steps, "batch_size": batch_size, "crop_px": crop, "lr": lr, "freeze_encoder": freeze_encoder, "size": reading.size, "background": reading.background,
        "object_diameter_px": round(diameter, 2) if diameter else None, "scale_range": list(trained.scale_range),
        "elastic_p": trained.elastic_p, "intensity_jitter": intensity_jitter, "reference_diameter_px": reference_px, "density_sigma": density_sigma,
        "density_loss": trained.loss_cfg["density"] if kind != "mask" else None, "average_last": average_last,
        "dot_disc": dot_disc if kind != "density" else None,
        "precision": used["precision"], "precision_why": used["why"],
        "train_seconds": round(trained.train_s, 1),
        "total_seconds": round(seconds, 1), "final_loss": float(np.mean(losses[-10:])) if losses else None,
        "command": "cellcount.finetune",
        "kept_base_weights": kept_base,
        "keep_worse": keep_worse,
        # what the base had learnt from (its own training images, and its base's): recognised by content too
        "train_sha256": sorted(model.card.training_digests()),
        "train_pixel_sha256": sorted(model.card.training_pixel_digests()),
    }
    if kept_base:  # how the discarded weights were trained and read images is theirs, not this model's (else the
        # card would say "size: set, 53.6 px" of a model that sizes each image as its base does)
        own = ("finetuned_from", "data", "command", "kept_base_weights", "keep_worse", "train_sha256",
               "train_pixel_sha256")
        card.training = {**{k: v for k, v in card.training.items() if k in own},
                         "discarded_finetune": {k: v for k, v in card.training.items() if k not in own}}
    card.metrics = {"holdout_before": before, "holdout_after": after, "holdout_paired_mae_difference": paired,
                    **({"holdout_base_weights_new_settings": settings_only} if settings_only else {}),
                    **({"holdout_backends": verdict.scores.backends} if verdict.scores.backends else {}),
                    # each held-out image's counts (file, true, before, after), as the command line prints the worst
                    **({"holdout_per_image": verdict.scores.counts} if verdict.scores.counts else {}),
                    "holdout_note": f"{len(held_idx)} held-out image(s) of {source}: before = {model.name} with its "
                                    "card's settings, after = this model with "
                                    + ("the base's settings (re-tuning did not help)" if settings_kept
                                       else "its re-tuned settings")}
    if kept_base:  # the base's own figures still hold for its weights; the paired difference is the discarded ones'
        card.metrics = {**{k: v for k, v in model.card.metrics.items() if not k.startswith("holdout")}, **card.metrics}
        card.metrics["holdout_paired_mae_difference_finetuned"] = card.metrics.pop("holdout_paired_mae_difference")
        card.metrics.update(holdout_finetuned_weights=verdict.rejected, holdout_note=(
            f"{_images(len(held_idx), 'held-out')} of {source}: the fine-tuned weights (holdout_finetuned_weights) counted "
            f"them worse than {model.name}, so this model keeps {model.name}'s weights and settings: after = before"))
    if ran := backends_note(verdict.scores.backends, base=model.name,
                            name="the fine-tuned weights" if kept_base else card.name):
        card.metrics["holdout_note"] += f"; {ran}"
    card.license = (model.card.license if model.card.license.endswith("; fine-tuned on user data")
                    else f"{model.card.license}; fine-tuned on user data")


def novelty_to_save(verdict: Verdict, own: tuple[Any, float] | None, s: AnnotatedSet, *, name: str,
                    run: Run) -> tuple[Any, dict[str, Any]] | None:
    """The novelty reference to save with the model and its card entry (the new one, or the base's where its weights
    were kept), or None with a note that the quality flag cannot tell an image unlike the user's."""
    novelty, kept_base, source = verdict.novelty, verdict.kept_base, s.source
    if own is None and not kept_base:
        from ..novelty import MIN_SMALL_WINDOW_PX

        n_images = len(s.train_idx) + len(s.held_idx)
        why = (f"{n_images} annotated image(s), {MIN_NOVELTY_IMAGES} needed" if n_images < MIN_NOVELTY_IMAGES else
               f"fewer than {MIN_NOVELTY_IMAGES} of the {n_images} images are at least {MIN_SMALL_WINDOW_PX} px "
               "across at the model's scale")
        run.note(f"too few images to learn what yours look like ({why}): {name}'s quality flag cannot tell an image "
                 "unlike yours, so check its counts by eye on images of another kind")
    if own is not None and not kept_base:
        from ..novelty import SETTINGS

        novelty = (own[0], {"images": len(own[0].features), **SETTINGS, "features": int(own[0].features.shape[1]),
                            "small_window_images": 0 if own[0].small is None else len(own[0].small.features),
                            "fitted_on": (f"the training and held-out images of the fine-tune ({source})" if s.held_idx
                                          else f"the training images of the fine-tune ({source})")})
    return novelty


def _without_finetune_advice(note: str) -> str:
    """A base model's guide note without its advice to fine-tune (done, and it did not help) nor its own verdict:
    its caveats (an H&E warning) stay."""
    kept = (re.split(r",? or fine-tune\b|: fine-tune\b", clause)[0].rstrip(" :,") for clause in note.split("; ")
            if not clause.startswith(("it keeps ", "it counted your held-out images worse")))  # a verdict of its own
    return "; ".join(clause for clause in kept if clause)


def backends_note(backends: dict[str, str], *, base: str, name: str) -> str:
    """How to recount the held-out images as the fine-tune did: the backend each model's figures ran in ("" when
    unknown). Near a tie the measured choice may differ at a later count, and counts with it by an object or more.
    ``name``: what the "after" figures are of (the new model, or its fine-tuned weights where those were not kept)."""
    from ..models.backends import BACKENDS

    before, after = backends.get("before"), backends.get("after")
    if not before or not after:
        return ""
    ran = (f"both networks ran in {before}" if before == after else f"{base} ran in {before}, {name} in {after}")
    # a CPU backend's name is the option's value; "torch (cuda)" and blocks' "bf16+torch" are not
    again = ("" if before not in BACKENDS or after not in BACKENDS else
             f" (count --backend {before}, or evaluate --backend {before}, gives them again)"
             if before == after else f" (counting {base} with --backend {before} and {name} with --backend {after} "
             "gives them again)")
    return f"{ran} for these figures; a recount with another backend may differ by an object or so per image{again}"
