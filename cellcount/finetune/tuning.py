"""After training: the new model's postprocessing re-tuned on its training images, its quality flag and novelty reference."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .data import _images
from .fit import FinetuneProgress
from .flag import calibrate_flag, own_novelty, told_apart
from .stages import AnnotatedSet, Base, Run, Tuned
from .verdict import GAIN_NOTE

if TYPE_CHECKING:
    from ..models import ModelCard
    from ..models.base import NetModel


TUNE_PASSES, CROSS_CHECK_PASSES = 100, 300
"""Postprocessing passes per training image of the settings search and of its 4-fold check (each image is in
three folds' tunings). Measured on 2026-12-04 (Intel Xeon) with unet-mask: 35-37 and 111 on 8 DSB images with
label images, 91-98 and 291 on 8 mbm images from dots (the search walks past its grid's top there); with the
earlier 50 and 155, a 1-minute fine-tune on those mbm images took 88 s, its settings search 43 s of it."""


MIN_CROSS_CHECK = 4
"""With at least this many training images the re-tuned postprocessing is checked on the ones each tuning did
not see (:func:`cellcount.evaluate.cross_check`), and the base's settings are kept when it does not help."""


def retune(s: AnnotatedSet, b: Base, net: Any, card: ModelCard, *, name: str, n_steps: int,
           run: Run) -> Tuned:
    """The new model's postprocessing re-tuned on the training images (a density model's count gain), written in
    ``card``."""
    from ..evaluate import DEFAULT_GRID, evaluate_predictions
    from ..models.base import NetModel
    from ..pipeline import predict, resolve_params

    model, kind, train_idx = b.model, b.kind, s.train_idx
    new = NetModel(net, card)
    run.report(FinetuneProgress("tune", n_steps, n_steps, message="re-tuning postprocessing on the training images"))
    settings_kept = False  # re-tuned settings that counted unseen training images no better: the base's stay
    gain_text = None  # a density fine-tune's large count gain, said once the saved weights are known
    new_params = resolve_params(new, None)
    train_pairs = [(s.names[i], predict(s.images[i], new, new_params, size_model=b.size_model), s.gts[i])
                   for i in train_idx]
    if kind == "density":
        new, train_pairs, tuned_note, gain_text = _count_gain(s, b, net, card, train_pairs, new_params, name=name,
                                                              n_steps=n_steps, run=run)
        params = new_params
    else:
        params, tuned_note, settings_kept = _tune_settings(s, b, train_pairs, new_params, name=name, run=run)
    train_rep = evaluate_predictions(train_pairs, params, keep_results=False)  # for the quality flag, and this check
    if kind == "mask" and all(gt.kind == "points" for gt in s.train_gts):
        # measured, not guessed: on vgg_cells (crowded cells) a unet-mask fine-tune from dots still counted its own
        # training images ~20% off after 5 minutes (validation MAE 46-49 at N = 16; unet-density's 2.5-3.0 at N = 32)
        from ..quality import LARGE_ERROR

        own_mape = train_rep.summary.get("mape", math.nan)
        if math.isfinite(own_mape) and own_mape >= 100 * LARGE_ERROR:
            run.note(f"{name} counts even the images it learnt {own_mape:.0f}% off on average: outlines learnt from "
                     "dots do not separate these objects (crowded, touching or overlapping). A density model learns "
                     "from dots directly: fine-tune unet-density instead (command line: --from unet-density; Train "
                     "page: Start from unet-density)")
    # every setting the tuner searched, also where the base card left it to the defaults
    tuned_keys = (set(model.card.postprocess) | ({"count_source"} if kind == "multihead" else set())
                  | (set(DEFAULT_GRID) if kind != "density" else set()))
    card.postprocess = {**card.postprocess, **{k: params.to_dict()[k] for k in tuned_keys if k in params.to_dict()}}
    card.postprocess_tuned_on = tuned_note
    return Tuned(new, params, train_pairs, train_rep, settings_kept, gain_text)


def _count_gain(s: AnnotatedSet, b: Base, net: Any, card: ModelCard, train_pairs: list, new_params: Any, *,
                name: str, n_steps: int, run: Run) -> tuple[NetModel, list, str, str | None]:
    """A density model's count gain fitted on its training images and set in ``card``: (the new model with it, its
    training predictions read again, the card's tuning note, a note on a large gain or None)."""
    from ..evaluate import calibrate_density
    from ..models.base import NetModel
    from ..pipeline import predict

    train_idx = s.train_idx
    gain_text = None
    k_gain, _, _ = calibrate_density(train_pairs)
    if not k_gain > 0:  # most of the map's mass on images annotated as empty: no gain to fit
        run.note("the count gain could not be fitted (most of what the new model reads is on training images "
                 "annotated as empty): its counts are not rescaled")
        k_gain = None
    card.density_scale = card.density_scale / (k_gain or 1.0)
    new = NetModel(net, card)
    # read again with the gain: the quality flag is fitted on what the saved model counts (the gain moves the
    # counts, and with them the signals and errors; a size estimate from the map moves too)
    train_pairs = [(s.names[i], predict(s.images[i], new, new_params, size_model=b.size_model), s.gts[i])
                   for i in train_idx]
    tuned_note = (f"counts scaled by {k_gain:.2f} (the count gain fitted on the "
                  f"{_images(len(train_idx), 'training')})" if k_gain else
                  "counts not rescaled (no count gain could be fitted on the training images)")
    if k_gain and abs(math.log(k_gain)) > math.log(GAIN_NOTE):  # the trained weights alone count that far off their dots
        gain_text = (f"{name}'s counts are scaled by {k_gain:.2f}, fitted on its training images: after {n_steps} "
                     "training steps its map alone counted them that far off, so much of the change may be this "
                     "one factor. " + ("The held-out figures show whether it holds on images it did not see." if
                                       s.held_idx else "Hold out a few images to see whether it holds on others."))
    return new, train_pairs, tuned_note, gain_text


def _tune_settings(s: AnnotatedSet, b: Base, train_pairs: list, new_params: Any, *, name: str,
                   run: Run) -> tuple[Any, str, bool]:
    """(settings, the card's tuning note, whether the base's were kept): a segmentation model's postprocessing
    searched on its training images, checked on the ones each tuning did not see (:data:`MIN_CROSS_CHECK`), and a
    multihead model's count source chosen."""
    from ..evaluate import cross_check, evaluate_predictions, tune_params

    model, train_idx = b.model, s.train_idx
    settings_kept = False
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
            run.note(f"{name} keeps {model.name}'s postprocessing settings: settings re-tuned on parts of the "
                     f"{len(train_idx)} training images counted the other parts {verdict} (4-fold check on the "
                     f"training images, not the held-out ones: MAE {told_apart(tuned_cv, kept)} with "
                     f"{model.name}'s settings)")
        else:
            tuned_note += f"; checked on training images each tuning did not see (4-fold MAE {kept:.3f} -> {tuned_cv:.3f})"
    if params == tr.best_params and (edge := tr.edge_note()):
        run.note(f"{name}'s postprocessing, re-tuned on its training images, is {edge}")
    if b.kind == "multihead":  # objects that overlap too much to outline are counted better by the density
        dens = dataclasses.replace(params, count_source="density")
        mae_seg = evaluate_predictions(train_pairs, params, keep_results=False).summary["mae"]
        mae_dens = evaluate_predictions(train_pairs, dens, keep_results=False).summary["mae"]
        if mae_dens < 0.9 * mae_seg:
            params = dens
        tuned_note += (f"; count source {params.count_source} (training-image MAE: segmentation {mae_seg:.3f}, "
                       f"density {mae_dens:.3f})")
    return params, tuned_note, settings_kept


def calibrate_training_flag(b: Base, tuned: Tuned, card: ModelCard, *, name: str, n_steps: int,
                            run: Run) -> None:
    """The new quality flag calibrated on what the new model counts on its training images, set in ``card``."""
    run.report(FinetuneProgress("tune", n_steps, n_steps, message="calibrating the quality flag on the training images"))
    card.extra = {**card.extra, "quality": calibrate_flag(tuned.train_pairs, tuned.params, b.model.card,
                                                          rep=tuned.train_rep)}
    flagged = card.extra["quality"].get("calibration", {}).get("flagged_share", 0.0)
    if flagged >= 0.5:  # said, not left for the user to find in every count
        run.note(f"{name}'s quality flag marks {flagged:.0%} of the images it learnt ('check this image'): expect it "
                 "on most images like them, and read its reasons before trusting or dismissing it")


def fit_novelty(s: AnnotatedSet, b: Base, tuned: Tuned, card: ModelCard, *,
                report: Callable[[FinetuneProgress], None]) -> tuple[list, list, tuple[Any, float] | None]:
    """(held-out items, the new model's predictions of them, its own novelty reference and limit or None): the
    reference of what the new model may count, fitted on the training and held-out images and set in ``card``."""
    from ..evaluate import predict_pairs

    # the held-out images are the user's images too: they widen the reference of what the model may count
    # (they choose nothing about the counts; the same predictions are scored below)
    report(FinetuneProgress("evaluate", message="reading the held-out images with the new model" if s.held_idx else
                            "fitting the new model's reference of the images it may count"))  # none held out
    held_items = [(s.names[i], s.images[i], s.gts[i]) for i in s.held_idx]
    held_pairs = (predict_pairs(held_items, tuned.new, tuned.params, size_model=b.size_model, warn_trained=False)
                  if s.held_idx else [])
    own = own_novelty(tuned.new, list(tuned.train_pairs) + held_pairs, density=b.kind == "density")
    if own is not None:  # "unlike the images it learnt", in the new encoder's own terms
        tuned.new.novelty = own[0]
        card.extra["quality"]["rule"]["max_novelty"] = own[1]
    return held_items, held_pairs, own
