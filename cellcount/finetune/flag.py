"""The new model's quality flag: its limits refitted on the user's images where there are enough, never tighter than the base's."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

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
never flags an image unlike them, however far off its count (an H&E image counted by a fine-tune on
fluorescence images)."""


def calibrate_flag(pairs: Sequence, params, base_card, rep=None) -> dict[str, Any]:
    """The new card's quality rule (``extra["quality"]``), from the new model's signals on its training images.

    The base's rule was fitted on the base's validation images: after a fine-tune it would flag whatever
    makes the user's images unlike those (a vgg_cells fine-tune, counting 3-4 cells off, would have every image
    flagged for a nucleus size 2.2x off the base's, the size the fine-tune trained at). Fitted on the
    training images (range limits only: its errors there say nothing), the flag marks images unlike the
    ones the model learnt. With fewer than
    :data:`MIN_FLAG_IMAGES` images the base's rule stays, each limit widened to take in the training images
    (:func:`_widened_to`)."""
    from ..evaluate import evaluate_predictions
    from ..quality import (
        QualityRule,
        calibrate_rule,
        card_entry,
        flag_report,
        judge,
        range_limit,
        relative_errors,
        signals_from_table,
    )

    rep = evaluate_predictions(pairs, params, keep_results=False) if rep is None else rep  # (the caller's, when made)
    signals = signals_from_table(rep.per_image) if len(rep.per_image) else []
    rel = relative_errors(rep.per_image["true"], rep.per_image["pred"]) if len(rep.per_image) else np.zeros(0)
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


MIN_HELDOUT_FOR_FLAG = 4
"""Held-out images with objects needed before their error flags every count of the new model: the error on one
or two held-out images says little of new ones', and would flag every count of a fine-tune that counts them well."""


HELDOUT_BOUND_LEVEL = 0.8
"""One-sided confidence of the bound on the held-out images' mean error that flags every count: a few held-out
images can show a fine-tune better than it is (``scripts/finetune_heldout_probe.py`` shows the bound on fine-tunes
that work and that do not: docs/finetuning.md), so the bound, not the mean, must clear the large error."""


def heldout_error_bound(rel_errors: Sequence[float], level: float = HELDOUT_BOUND_LEVEL) -> float:
    """Upper ``level`` confidence bound (Student's t) on the mean relative error of the images ``rel_errors`` are
    a sample of: NaN with fewer than two finite errors."""
    from scipy import stats

    e = np.asarray([v for v in rel_errors if math.isfinite(v)], np.float64)
    if len(e) < 2:
        return math.nan
    return float(e.mean() + stats.t.ppf(level, len(e) - 1) * e.std(ddof=1) / math.sqrt(len(e)))


def heldout_flag_reason(after: dict[str, float], name: str, scored: int | None = None,
                        rel_errors: Sequence[float] | None = None) -> str | None:
    """A reason given with every count of ``name`` when its held-out images (``after``: their summary) do not show
    it within :data:`cellcount.quality.LARGE_ERROR` of the true counts: their mean error, or with
    ``rel_errors`` (theirs, :func:`cellcount.quality.relative_errors` of the images with objects) the bound
    :func:`heldout_error_bound` on it, at that error or more. Its own flag is fitted on the images it learnt, so it
    stays quiet on images like them, where a short or unlucky fine-tune is still far off (a 20-step fine-tune
    flagged none of its 27% undercounts). None when the held-out images were counted well, or too few
    (``scored``: those with objects, which the percentage averages over; default ``after["n"]``)."""
    from ..quality import LARGE_ERROR

    mape, n = after.get("mape", math.nan), after.get("n", 0) if scored is None else scored
    bound = heldout_error_bound(rel_errors) if rel_errors is not None else math.nan
    high = max([v for v in (mape / 100, bound) if math.isfinite(v)], default=math.nan)
    if not (n >= MIN_HELDOUT_FOR_FLAG and math.isfinite(mape) and high >= LARGE_ERROR):
        return None
    few = (f", and {int(n)} images cannot show it within {LARGE_ERROR:.0%} (it may be {100 * bound:.0f}% off on "
           "others)" if mape < 100 * LARGE_ERROR else "")
    # no "; " inside: tables join the reasons with it; a decimal where a whole percent reads as the limit itself
    shown = f"{mape:.1f}" if f"{mape:.0f}" == f"{100 * LARGE_ERROR:.0f}" else f"{mape:.0f}"
    return (f"{name} counted its {int(n)} held-out images {shown}% off on average when it was fine-tuned{few}, so "
            "every count of it is flagged: check its counts by eye, or fine-tune again with more annotated images "
            "or more steps")


def _widened_to(rule, signals: Sequence[dict[str, float]]):
    """``rule`` with each limit (joint ones too) moved, where needed, just past what the fine-tune's own training
    images show (:func:`cellcount.quality.range_limit`): the base's limits were fitted on the base's images, and
    a fine-tune on H&E flagged 5 of its 6 training images and most unseen ones of their kind, counted right, as
    "unsure" by the base's fluorescence limit. Never tighter than the base's."""
    from ..quality import BELOW, LIMITS, range_limit

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
    from ..novelty import fit_reference, has_encoder
    from ..quality import range_limit

    net = getattr(model, "net", None)
    if net is None or not has_encoder(net) or len(pairs) < MIN_NOVELTY_IMAGES:
        return None
    fitted = fit_reference(net, ((p.image_norm, p.maps[0], p.model_scale) for _, p, _ in pairs), density=density)
    if fitted is None or max(fitted[1], fitted[2]) < MIN_NOVELTY_IMAGES:
        return None
    ref = fitted[0]
    limit = range_limit(np.concatenate([r.self_scores() for r in (ref, ref.small) if r is not None]), below=False)
    return (ref, max(limit, MIN_NOVELTY_LIMIT)) if limit else None


OBJECT_SHARE_LIMITS = ("max_large_object_share", "max_touching_share", "max_merge_share")
"""Limits on shares of objects, which a few training images put far too tight."""


def _no_tighter_than(rule, base_rule):
    """``rule`` with its object-share limits (:data:`OBJECT_SHARE_LIMITS`) at least as loose as ``base_rule``'s (one
    the training images left unset takes the base's). A few training images put such range limits just past
    themselves: a fine-tune on 8 DSB images flags many unseen DSB images its base does not, mostly for merged
    or touching objects (checked by hand). The size limit too: trained at one size for the set, every
    training image has the same size signal, and a limit just past it flags a size setting moved by a tenth
    (a trained size is as sure as the base's). The other limits stay the fine-tune's own: with the base's
    looser ones a vgg_cells fine-tune flags far fewer of mbm's images (tried by hand)."""
    looser = {}
    for limit in (*OBJECT_SHARE_LIMITS, "max_size_ratio"):
        mine, theirs = getattr(rule, limit), getattr(base_rule, limit)
        if theirs is not None:
            looser[limit] = theirs if mine is None else max(mine, theirs)
    return dataclasses.replace(rule, **looser)
