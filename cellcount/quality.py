"""A quality flag on every count: signals that a count may be wrong, and when to tell the user to check.

Each signal is measured on what the pipeline already has (maps, labels, the size estimate), so it costs
no extra model pass:

* ``count_disagreement``: two independent counts of the same image that disagree mean at least one is
  wrong (merges, fragments, unseen objects). Mask models: the segmentation against the size model's
  density integral (the density network that sizes nuclei runs on every image anyway); multihead models:
  against their density head; density models: the integral against the number of peaks.
* ``size_ratio``: how far the nucleus size (estimated or stated) is from the model's training size, and
  ``size_at_limit``: the resize factor hit its clamp, so nuclei stay off-size for the model.
* ``uncertain_fraction``: share of the possibly-foreground pixels the model is unsure about
  (probability between 0.2 and 0.8): blur, low contrast and unfamiliar image types all raise it.
* ``contrast``: median normalised intensity of the foreground minus that of the background.
* ``large_object_share``: share of the segmented area in objects over :data:`LARGE_OBJECT_FACTOR` times
  the median object area (merged clumps hide nuclei), and ``touching_share``: share of objects that touch
  another (crowding, where splits go wrong), and ``merge_share``: share of objects far larger than their
  nearest neighbours (likely merges, as the viewer marks them). Mask models only.
* ``focus``: the median intensity gradient across the foreground's outline per unit of contrast (about
  1 / (2.5 x the blur's sigma in px)); blur lowers it, contrast and the number of nuclei do not.
* ``flip_disagreement`` (with test-time flips on): how much the model's four flipped views disagree.
* ``foreground_share``: share of the image the model calls foreground; a model that sees nuclei everywhere
  is crowded beyond its training or reading an unfamiliar image (a saturated density map reads alike).
* ``novelty``: how unlike the model's training images the image looks to the network's own encoder
  (:mod:`cellcount.novelty`; models whose folder has a novelty reference). Its limit is not fitted to the
  errors: it is a fixed quantile of the validation images (:data:`NOVELTY_QUANTILE`), set before the others.

Density models have no probability map: :func:`density_foreground` reads one off the density map.

:class:`QualityRule` turns signals into a flag with plain reasons. Its limits are calibrated on
validation images by :func:`calibrate_rule` (stored in the model card under ``quality``); the defaults
are used otherwise. docs/quality.md has the rules of the shipped models and what they catch.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

from .postprocess import touching_share

UNCERTAIN_LOW, UNCERTAIN_HIGH = 0.2, 0.8
STRIDE = 2
LARGE_ERROR = 0.15
"""A count off by more than this fraction of the true count is a large error (the flag's target)."""
LARGE_OBJECT_FACTOR = 4.0
"""An object over this many times the median object area is likely several nuclei merged."""
MIN_OBJECTS = 5
"""Object-shape signals need at least this many objects (a median of fewer says little)."""
SIGNALS = ("count_disagreement", "size_ratio", "uncertain_fraction", "contrast", "large_object_share",
           "touching_share", "merge_share", "focus", "flip_disagreement", "foreground_share", "novelty")
NOVELTY_QUANTILE = 0.95
"""The novelty limit flags this share of the calibration images' tail: images unlike the training images as
the least familiar twentieth of the validation images are. Chosen knowing the images of other sets it
catches (docs/quality.md), so those figures are not blind."""


@dataclass(frozen=True)
class QualityRule:
    """Limits beyond which a count is flagged "check this image". ``None`` turns a signal off."""

    max_count_disagreement: float | None = 0.15
    max_size_ratio: float | None = 2.5
    max_uncertain_fraction: float | None = 0.35
    min_contrast: float | None = 0.15
    flag_size_at_limit: bool = True
    max_large_object_share: float | None = None
    max_touching_share: float | None = None
    max_merge_share: float | None = None
    min_focus: float | None = None
    max_flip_disagreement: float | None = None
    max_foreground_share: float | None = None
    max_novelty: float | None = None
    always: str | None = None
    """A reason given with every count (a model without a calibrated rule, such as the classical baseline)."""
    joint_limits: tuple[tuple[str, float], ...] = ()
    """(signal, limit) pairs that flag only together: every signal named (a :data:`SIGNALS` name) past its
    limit, in the direction of its single limit (a dict in the card). Several moderately unusual signals at
    once mark an image unlike the validation images, where no one of them is unusual enough alone."""

    @classmethod
    def from_card(cls, card: Any) -> QualityRule:
        """The rule stored in a model card's ``extra["quality"]["rule"]``, else the defaults."""
        stored = ((getattr(card, "extra", None) or {}).get("quality") or {}).get("rule") or {}
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in stored.items() if k in known}
        kw["joint_limits"] = tuple((str(k), float(v)) for k, v in (kw.get("joint_limits") or {}).items())
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "joint_limits": dict(self.joint_limits)}


@dataclass(frozen=True)
class Quality:
    """The verdict on one count: ``flag`` (check this image), a score (>= 1 when flagged: the largest
    signal relative to its limit), plain-language ``reasons`` and the raw ``signals``."""

    flag: bool
    score: float
    reasons: tuple[str, ...]
    signals: dict[str, float]
    nearest: str = ""
    """For an unflagged count whose score is at least :data:`NEAR_LIMIT`: the signal closest to its limit."""

    def row(self) -> dict[str, Any]:
        """Columns for a counts table."""
        return {"check": self.flag, "check_score": round(self.score, 3), "check_reasons": "; ".join(self.reasons)}


SETTINGS_REASON_STARTS = ("settings other than the model card's", "the settings' filters dropped")
"""How the reasons start that come from the user's settings, not from the image (:func:`cellcount.pipeline.card_shift_note`,
the filters' share)."""


def names_settings(reasons: str) -> bool:
    """Whether a counts row's ``check_reasons`` name the user's settings among them (they move the count far from
    the card's, or drop many objects), so that a batch can say how many of its flags its settings explain. Such
    settings set off other reasons too (the count against the density estimate), so the row is not judged by
    those."""
    import re

    parts = [re.sub(r"^blocks? [\d, ]+: ", "", r.strip()) for r in str(reasons or "").split("; ") if r.strip()]
    return any(r.startswith(SETTINGS_REASON_STARTS) for r in parts)


def quality_signals(
    *,
    count: float,
    second_count: float | None,
    probability: np.ndarray | None,
    image_norm: np.ndarray | None,
    diameter_px: float | None,
    reference_diameter_px: float,
    size_at_limit: bool,
    labels: np.ndarray | None = None,
    flip_disagreement: float | None = None,
    image_sig: dict[str, float] | None = None,
    novelty: float | None = None,
) -> dict[str, float]:
    """Raw signals for one image (NaN where one does not apply). ``second_count`` is an independent
    count of the same image (see the module docstring), ``probability`` the (H, W) foreground
    probability, ``image_norm`` the model's normalised input, ``diameter_px`` the nucleus size used
    (estimated or stated), ``labels`` the (H, W) integer objects of a mask model, ``flip_disagreement``
    how much test-time flips disagree (when on), ``image_sig`` :func:`image_signals` of ``probability``
    when the caller kept them."""
    sig = {k: math.nan for k in SIGNALS}
    sig["size_at_limit"] = float(bool(size_at_limit))
    if second_count is not None:
        # relative to the larger count, with 2 nuclei of slack so 1 vs 2 on a near-empty field is no alarm
        sig["count_disagreement"] = abs(count - second_count) / (max(count, second_count) + 2.0)
    if diameter_px:
        r = float(diameter_px) / reference_diameter_px
        sig["size_ratio"] = max(r, 1.0 / r)
        sig["nucleus_scale"] = r  # which way: "4.3x larger or smaller" left the user to guess
    if image_sig is not None:
        sig.update(image_sig)
    elif probability is not None:
        sig.update(image_signals(probability, image_norm))
    if labels is not None:
        sig.update(_object_signals(np.asarray(labels)))
    if flip_disagreement is not None:
        sig["flip_disagreement"] = float(flip_disagreement)
    if novelty is not None:
        sig["novelty"] = float(novelty)
    return sig


def density_foreground(density: np.ndarray, diameter_px: float) -> np.ndarray:
    """(H, W) float32 in [0, 1] from a density map: 0.5 on the outline of a lone nucleus of ``diameter_px``,
    so that density models get the image signals (contrast, focus, uncertainty) of mask models.

    A density model learnt one unit-mass Gaussian per nucleus with sigma = :data:`DENSITY_SIGMA_SCALE` x
    its diameter; at the outline (radius = diameter / 2 = 2 sigma) that is exp(-2) / (2 pi sigma^2).
    """
    from .sizing import DENSITY_SIGMA_SCALE

    sigma = DENSITY_SIGMA_SCALE * float(diameter_px)
    edge = math.exp(-2.0) / (2 * math.pi * sigma * sigma)
    return np.clip(np.asarray(density, np.float32) / np.float32(2 * edge), 0.0, 1.0)


def image_signals(probability: np.ndarray, image_norm: np.ndarray | None) -> dict[str, float]:
    """``uncertain_fraction``, ``contrast`` and ``focus``: they depend on the maps and the image only, not on
    the postprocessing settings, so a caller may keep them per prediction."""
    p = np.asarray(probability)
    out: dict[str, float] = {}
    maybe = p > UNCERTAIN_LOW
    n = int(np.count_nonzero(maybe))
    if n:
        out["uncertain_fraction"] = float(np.count_nonzero(maybe & (p < UNCERTAIN_HIGH))) / n
    if p.size:
        out["foreground_share"] = float(np.count_nonzero(p > 0.5)) / p.size
    if image_norm is not None and np.shape(image_norm) == p.shape:
        out.update(_intensity_signals(np.asarray(image_norm, np.float32), p))
    return out


def _intensity_signals(image: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """``contrast`` and ``focus`` of a normalised image given its foreground probability."""
    out: dict[str, float] = {}
    # medians over every STRIDE-th pixel each way: the same to 4 decimals on the samples, without ~20 ms
    # per slider move on a 1-megapixel image (the thin uncertain band needs every pixel; it is cheap)
    fg = p[::STRIDE, ::STRIDE] > 0.5
    if not (fg.any() and (~fg).any()):
        return out
    img = image[::STRIDE, ::STRIDE]
    contrast = float(np.median(img[fg]) - np.median(img[~fg]))
    out["contrast"] = contrast
    # the steepest intensity change across a nucleus's outline, per unit of contrast: about 1 / (2.5 x the
    # blur's sigma in px) whatever the contrast or the number of nuclei (a Laplacian's variance depends on both)
    import cv2

    full = p > 0.5
    edge = full & ~cv2.erode(full.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if edge.any() and abs(contrast) > 1e-3:
        gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3) / 8.0
        gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3) / 8.0
        out["focus"] = float(np.median(np.hypot(gx[edge], gy[edge])) / abs(contrast))
    return out


def _object_signals(labels: np.ndarray) -> dict[str, float]:
    """``large_object_share`` and ``touching_share`` of a label image (NaN under :data:`MIN_OBJECTS`)."""
    flat = np.ascontiguousarray(labels).ravel()
    areas = np.bincount(flat)[1:]
    areas = areas[areas > 0]
    if len(areas) < MIN_OBJECTS:
        return {}
    big = areas > LARGE_OBJECT_FACTOR * np.median(areas)
    return {"large_object_share": float(areas[big].sum() / areas.sum()),
            "touching_share": touching_share(labels),
            "merge_share": _merge_share(labels)}


def _merge_share(labels: np.ndarray) -> float:
    """Share of the objects far larger than their neighbours (likely merges), read on every other pixel of
    every other row (areas and centroids need no more); NaN under :data:`MIN_OBJECTS`. Unlike
    ``large_object_share`` it compares each object with those around it, so two nuclei merged among single
    ones count wherever the image's sizes vary, and it does not depend on the split mode's crowding."""
    from .measure import larger_than_neighbours  # the viewer's likely-merge rule

    sub = np.ascontiguousarray(labels[::STRIDE, ::STRIDE])
    flat = sub.ravel()
    areas = np.bincount(flat)
    ids = np.flatnonzero(areas[1:]) + 1
    if len(ids) < MIN_OBJECTS:
        return math.nan
    idx = np.arange(flat.size, dtype=np.float64)
    rows = np.bincount(flat, weights=np.floor(idx / sub.shape[1]))[ids] / areas[ids]
    cols = np.bincount(flat, weights=idx % sub.shape[1])[ids] / areas[ids]
    return float(np.mean(larger_than_neighbours(areas[ids].astype(np.float64), np.column_stack([rows, cols]))))


LIMITS: tuple[tuple[str, str, bool], ...] = (
    ("max_count_disagreement", "count_disagreement", False),
    ("max_size_ratio", "size_ratio", False),
    ("max_uncertain_fraction", "uncertain_fraction", False),
    ("min_contrast", "contrast", True),
    ("max_large_object_share", "large_object_share", False),
    ("max_touching_share", "touching_share", False),
    ("max_merge_share", "merge_share", False),
    ("min_focus", "focus", True),
    ("max_flip_disagreement", "flip_disagreement", False),
    ("max_foreground_share", "foreground_share", False),
    ("max_novelty", "novelty", False),
)
"""(rule field, signal, whether the limit is a minimum) for every limit of :class:`QualityRule`."""


BELOW = {key: below for _, key, below in LIMITS}
JOINT_SIGNALS = ("count_disagreement", "uncertain_fraction")
"""The signals of the calibrated joint limit: the two that measure the model's own trouble (two counts
that disagree, a foreground it is unsure about) rather than a property of the image."""


MAX_RATIO = 100.0
"""A score caps here: a contrast of 0 or below is past its minimum, not 400,000 times past it."""


def _ratio(value: float, limit: float, below: bool) -> float:
    """How far ``value`` is towards ``limit`` (>= 1: past it), at most :data:`MAX_RATIO`."""
    return min((limit / max(value, 1e-6)) if below else value / max(limit, 1e-9), MAX_RATIO)


COMPARISONS = {
    "density_head": "the {a:.0f} objects found against the density head's estimate of {b:.0f}",
    "size_model": "the {a:.0f} objects found against the size model's density estimate of {b:.0f}",
    "size_window": "the {a:.0f} objects found in the part of the image the size model read against its density "
                   "estimate of {b:.0f} there",
    "peaks": "the density map's integral ({a:.1f}) against its {b:.0f} peaks",
}
"""What the two counts of ``count_disagreement`` are, by the ``comparison`` given to :func:`judge`."""


def _below(name: str, v: float, limit: float | None) -> str:
    """"focus 0.19, flagged below 0.20": the value and its lower limit in as many decimals (2-4) as tell them apart
    (0.199 would read "focus 0.20, flagged below 0.20"); "focus 0.19" without a limit."""
    name = f"{name} " if name else ""
    if limit is None:
        return f"{name}{v:.2f}"
    d = next((d for d in (2, 3, 4) if f"{v:.{d}f}" != f"{limit:.{d}f}"), 2)
    return f"{name}{v:.{d}f}, flagged below {limit:.{d}f}"


def _size_reason(v: float, scale: float | None) -> str:
    """The size signal's reason, saying which way the nuclei differ where ``scale`` (their size over the training
    nuclei's) is known."""
    way = "larger or smaller" if scale is None or not np.isfinite(scale) else "larger" if scale > 1 else "smaller"
    resized = {"larger": "shrunk", "smaller": "enlarged"}.get(way, "resized")
    return (f"the nuclei are {v:.1f}x {way} than those the model was trained on (as the size estimate or the nucleus "
            f"diameter setting gives them), and the image is {resized} that far to match: so large a resize makes the "
            "count less certain; if the nuclei look another size, give their diameter")


def _reason(signal: str, v: float, limit: float | None = None, *, near: bool = False,
            counts: tuple[str, float, float] | None = None, scale: float | None = None) -> str:
    if signal == "novelty" and near:
        return (f"the image looks less like the images this model was trained on than most (novelty score {v:.2f}, "
                f"flagged from {limit:.2f})")
    if signal == "novelty":  # no "; " inside: tables join the reasons with it
        return ("the image looks unlike the images this model was trained on, so its count is less certain: "
                "check a few objects by eye, check the nucleus size setting, or fine-tune a model on images like "
                f"this one (novelty score {v:.2f}, flagged from {limit:.2f})" if limit is not None else
                f"the image looks unlike the images this model was trained on (novelty {v:.2f})")
    if signal == "count_disagreement" and counts is not None:
        which, a, b = counts
        if a < 0.5 and which != "peaks":  # an empty field's background makes a little density too
            return (f"no objects were found, but the density map adds up to {b:.0f}: an empty field (a little density "
                    "over a wide background), or nuclei too faint or unlike the training images to be segmented")
        return f"two independent counts of this image differ by {v:.0%}: " + COMPARISONS[which].format(a=a, b=b)
    return {
        "count_disagreement": f"two independent counts of this image differ by {v:.0%} (the objects found against a "
                              "density map's estimate of the same area, or a density model's integral against its "
                              "peaks)",
        "size_ratio": _size_reason(v, scale),
        "uncertain_fraction": f"the model is unsure about {v:.0%} of the pixels it may call foreground, giving them "
                              f"a probability between {UNCERTAIN_LOW:g} and {UNCERTAIN_HIGH:g} (blur, low contrast "
                              "or an unfamiliar image type)",
        # a bright artefact sets the top of the range as well as faint nuclei do (a scale bar, say)
        "contrast": (f"low contrast between nuclei and background ({_below('', v, limit)}: faint nuclei, or something far brighter "
                     "than them, such as dust, a scale bar or text, setting the top of the intensity range)" if v >= 0 else
                     # below 0 a bare "-0.14" reads as a misprint: what was found is darker than what was not
                     f"what was counted is darker than the background around it (contrast {v:.2f}): the image may be "
                     "read the wrong way round (check Invert) or the gaps between cells counted"),
        "large_object_share": f"{v:.0%} of the segmented area is in objects over {LARGE_OBJECT_FACTOR:g}x the "
                              "median size (likely merged nuclei, or objects that are not nuclei: dust, debris, text)",
        "touching_share": f"{v:.0%} of the objects counted touch another (crowded: splits may be wrong)",
        "merge_share": f"{v:.0%} of the objects are far larger than their neighbours (likely merged nuclei)",
        # measured in the file's pixels: an oversampled image's sharp outlines span more of them (a DSB image
        # enlarged 2x reads far softer)
        # with its limit: a fine-tuned model's sits just below the softest image it learnt, and a slide a little
        # softer than those reads "soft" at 0.19 against 0.20
        "focus": f"nucleus outlines are soft ({_below('focus', v, limit)}: blur, out of focus, or nuclei imaged at a "
                 "far higher magnification than the model's training images)",
        "flip_disagreement": f"the model's answers on the flipped image disagree ({v:.0%})",
        "foreground_share": (f"{v:.0%} of the image is foreground, more than the model was calibrated on"
                             + (f" ({limit:.0%} at most)" if limit is not None else "")
                             + ": crowded, or read otherwise than the model expects (check the nucleus size and invert)"),
    }[signal]


NEAR_LIMIT = 0.95
"""An unflagged count whose score reaches this share of a limit is "near a limit" (the app says which). Above
1 / 1.1 of the range margin: an image like the furthest calibration image (0.91 of a range limit) is not near."""


SIZE_LIMIT_REASON = ("the nucleus size is beyond what resizing can correct (a resize past 0.25-4x, or an image too "
                     "large to enlarge as far as its nuclei need)")


def judge(signals: dict[str, float], rule: QualityRule, *,
          counts: tuple[str, float, float] | None = None) -> Quality:
    """Apply ``rule`` to ``signals``. ``counts``: (comparison, count, second count) behind
    ``count_disagreement`` (a :data:`COMPARISONS` key), so that its reason names the two counts."""
    reasons, ratios, fired = [], [0.0], set()
    nearest: tuple[float, str] = (0.0, "")
    for field, key, below in LIMITS:
        limit, value = getattr(rule, field), signals.get(key, math.nan)
        if limit is None or not np.isfinite(value):
            continue
        ratio = _ratio(value, limit, below)
        ratios.append(ratio)
        scale = signals.get("nucleus_scale")
        nearest = max(nearest, (ratio, _reason(key, value, limit, near=True, counts=counts, scale=scale)))
        if ratio >= 1.0:
            reasons.append(_reason(key, value, limit, counts=counts, scale=scale))
            fired.add(key)
    if rule.joint_limits:
        values = {k: signals.get(k, math.nan) for k, _ in rule.joint_limits}
        if all(np.isfinite(v) for v in values.values()):
            r = [_ratio(values[k], limit, BELOW[k]) for k, limit in rule.joint_limits]
            ratios.append(min(r))
            text = (" and ".join(_reason(k, v, counts=counts, scale=signals.get("nucleus_scale"))
                                 for k, v in values.items())
                    + ": unusual together for this model, though each is within its own limit")
            nearest = max(nearest, (min(r), text))
            if min(r) >= 1.0 and not fired & set(values):  # said already where one of them is past its own limit
                reasons.append(text)
    if rule.flag_size_at_limit and signals.get("size_at_limit", 0.0) >= 1.0:
        reasons.append(SIZE_LIMIT_REASON)
        ratios.append(1.0)
    if rule.always:
        reasons.append(rule.always)
        ratios.append(1.0)
    return Quality(flag=bool(reasons), score=float(max(ratios)), reasons=tuple(reasons), signals=dict(signals),
                   nearest="" if reasons or nearest[0] < NEAR_LIMIT else nearest[1])


def combine(parts: Sequence[Quality | None]) -> Quality | None:
    """One verdict for an image counted in blocks (:mod:`cellcount.blocks`): flagged when any block is,
    with that block's reasons; the score is the largest; the signals are the worst block's."""
    known = [(i, q) for i, q in enumerate(parts) if q is not None]
    if not known:
        return None
    worst = max(known, key=lambda iq: iq[1].score)[1]
    # a reason every block gives (the model's own, such as a fine-tune's held-out verdict) is said once
    everywhere = [r for r in known[0][1].reasons if all(r in q.reasons for _, q in known[1:])]
    blocks_of: dict[str, list[int]] = {}  # the same reason from several blocks is said once, naming them
    worst_first = sorted(known, key=lambda iq: iq[1] is not worst)  # its reasons survive the cap below
    for i, q in worst_first:
        for r in q.reasons:
            if r not in everywhere:
                blocks_of.setdefault(r, []).append(i + 1)
    said = [f"{_blocks_text(sorted(ids))}: {r}" for r, ids in blocks_of.items()]
    if len(said) > MAX_BLOCK_REASONS:  # a slide of hundreds of blocks: a cell a spreadsheet can still hold
        said = [*said[:MAX_BLOCK_REASONS], f"and {len(said) - MAX_BLOCK_REASONS} more reasons in other blocks"]
    reasons = (*everywhere, *said)
    flag = any(q.flag for _, q in known)
    return Quality(flag=flag, score=worst.score, reasons=reasons, signals=dict(worst.signals),
                   nearest="" if flag else worst.nearest)


MAX_BLOCK_REASONS = 8
"""An image counted by blocks lists at most this many of its blocks' distinct reasons (the worst block's are the
signals): one reason per block made a 9-block image's cell 2,095 characters, and a slide's would pass Excel's
32,767."""


def _blocks_text(ids: list[int]) -> str:
    if len(ids) == 1:
        return f"block {ids[0]}"
    shown = ", ".join(str(i) for i in ids[:5])
    return f"blocks {shown}" + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def with_note(quality: Quality | None, note: str) -> Quality:
    """``quality`` flagged with one more reason found outside the model (e.g. only one plane of a stack was
    read), so the note reaches every table and page that shows the flag. It comes first: it says what to change
    (it would otherwise come after the signals it causes: "its 2 channels were averaged" after seven of them)."""
    if quality is None:
        return Quality(flag=True, score=1.0, reasons=(note,), signals={})
    return dataclasses.replace(quality, flag=True, score=max(quality.score, 1.0), reasons=(note, *quality.reasons))


def signals_from_table(rows: Any) -> list[dict[str, float]]:
    """Per-image signals from an evaluation's per-image table (its ``q_*`` columns; a DataFrame or the
    CSV ``python -m cellcount.evaluate --out`` wrote, read back)."""
    return [{k[2:]: float(v) for k, v in row.items() if k.startswith("q_")} for row in rows.to_dict("records")]


def quality_summary(card: Any) -> list[str]:
    """Plain sentences on a model card's quality flag: what it was calibrated on, what it caught there, and
    its novelty reference (for the Models page and ``cellcount models``)."""
    extra = getattr(card, "extra", None) or {}
    q = extra.get("quality") or {}
    out = []
    cal, on = q.get("calibration") or {}, q.get("calibrated_on")
    if on:
        out.append(f"Limits calibrated on {_plain_source(on)}.")
    n, share, big, held = (cal.get(k) for k in ("n", "flagged_share", "large_errors", "large_errors_flagged_share"))
    if isinstance(n, (int, float)) and isinstance(share, (int, float)) and math.isfinite(share):
        caught = (f", holding {held:.0%} of the {big} counts off by more than {LARGE_ERROR:.0%}"
                  if isinstance(big, (int, float)) and big and isinstance(held, (int, float)) and math.isfinite(held)
                  else "")
        out.append(f"There it flagged {share:.0%} of {int(n)} images{caught}.")
    elif not cal:
        out.append("No calibrated limits: the library's default limits apply.")
    if (q.get("rule") or {}).get("always"):
        out.append(f"Every count is flagged: {q['rule']['always']}.")
    nov, limit = extra.get("novelty"), (q.get("rule") or {}).get("max_novelty")
    if isinstance(nov, dict) and limit is not None:
        fitted = nov.get("fitted_on", "")  # a fine-tune's: its training and held-out images
        which = ("of your images (those it was fine-tuned on and those held out)" if "held-out" in fitted
                 else "training images")
        out.append(f"Novelty: each image is compared with {nov.get('images', 'its')} {which} as the model's "
                   f"encoder sees them; flagged above {float(limit):.2f} (about 1 for images like them).")
    else:
        out.append("No novelty reference: images unlike the training images are caught only by the other signals.")
    return out


_SPLIT_WORDS = {"val": "validation", "test": "test", "train": "training", "heldout": "held-out", "all": ""}


def _plain_source(on: str) -> str:
    """A card's ``calibrated_on`` in a user's words: "53 images of ../shared/datasets/dsb2018 (split val) by
    scripts/quality_report.py; max_flip_disagreement from the same images with --test-time-flips" reads "53 DSB
    2018 validation images (no shipped model trained on them; the flips' limit from the same images counted with
    flips)"; the script and the path stay in card.json. Other text is shown with its paths shortened."""
    from .io import readable_paths

    m = re.match(r"(\d+) images of (\S+) \(split (\w+)\)", on)
    if not m:
        return readable_paths(on)
    n, data, split = m.groups()
    dsb = "dsb2018" in data.lower()
    which = _SPLIT_WORDS.get(split, split)
    words = (" ".join(w for w in (n, "DSB 2018", which, "images") if w) if dsb
             else f"{n} images of {PurePath(data).name or data}" + (f" ({which} split)" if which else ""))
    notes = ["no shipped model trained on them"] if dsb and split in ("val", "test", "heldout") else []
    if "--test-time-flips" in on:
        notes.append("the flips' limit from the same images counted with flips")
    return words + (f" ({'; '.join(notes)})" if notes else "")


def card_entry(rule: QualityRule, report: dict[str, float], calibrated_on: str) -> dict[str, Any]:
    """The model card's ``extra["quality"]``: the rule, what it did on the calibration images, and which."""
    return {"rule": rule.to_dict(), "calibration": report, "calibrated_on": calibrated_on}


def relative_errors(true: Sequence[float], pred: Sequence[float]) -> np.ndarray:
    """|pred - true| / true per image, for telling large errors: infinite where an image with no objects was
    counted at least one (a count of 20 on an empty image is off by more than any share of its true count, where
    the per-image tables' NaN, "undefined", left such images out of the large errors), 0 where it was counted
    none (a density integral under a half rounds to no cell)."""
    t, p = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t > 0, np.abs(p - t) / t, np.where(np.abs(p - t) < 0.5, 0.0, np.inf))


def flag_report(flags: Sequence[bool], rel_errors: Sequence[float], *, large: float = LARGE_ERROR) -> dict[str, float]:
    """Share of images flagged, number of large errors (> ``large`` of the true count; ``rel_errors`` from
    :func:`relative_errors`: NaN is not one), and the share of those that were flagged (the flag's recall)."""
    f = np.asarray(flags, bool)
    e = np.asarray(rel_errors, np.float64)
    big = ~np.isnan(e) & (e > large)
    return {
        "n": int(len(f)),
        "flagged_share": float(f.mean()) if len(f) else math.nan,
        "large_errors": int(big.sum()),
        "large_errors_flagged_share": float((f & big).sum() / big.sum()) if big.any() else math.nan,
    }


def range_limit(values: Sequence[float], *, below: bool, margin: float = 1.1) -> float | None:
    """A limit ``margin`` beyond the largest of ``values`` (``below``: under the smallest), which none of them
    reaches; None without a positive finite edge (a signal that was 0 on every image says nothing)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    edge = (v.min() if below else v.max()) if len(v) else 0.0
    return round(float(edge / margin if below else edge * margin), 4) if edge > 0 else None


MIN_NOVELTY_IMAGES = 20
"""Fewer calibration images than this: the novelty limit sits just outside the largest value (a range limit)
instead of at a quantile, which a handful of images cannot place."""


def _novelty_limit(values: np.ndarray, quantile: float, max_flagged: float) -> float | None:
    """The novelty limit: at ``quantile`` of the calibration images (no tighter than the flag budget allows),
    strictly above the values it is to leave alone; a range limit for few images."""
    v = values[np.isfinite(values)]
    if not len(v):
        return None
    if len(v) < MIN_NOVELTY_IMAGES:
        return range_limit(v, below=False)
    q = min(max(quantile, 1.0 - max_flagged), 1.0)
    limit = float(np.quantile(v, q))
    above = v[v > limit]
    # judge flags value >= limit: between the last value kept and the next, so ties are not flagged
    limit = (limit + above.min()) / 2 if len(above) else limit * 1.1
    return round(limit, 4) if limit > 0 else None


def calibrate_rule(
    signals: Sequence[dict[str, float]],
    rel_errors: Sequence[float],
    *,
    max_flagged: float = 0.2,
    large: float = LARGE_ERROR,
    max_limits: int = 3,
    range_margin: float | None = 1.1,
    joint_limit: bool = True,
    novelty_quantile: float | None = NOVELTY_QUANTILE,
) -> tuple[QualityRule, dict[str, float]]:
    """Limits that flag at most ``max_flagged`` of the images while holding as many large errors as possible.

    Each single limit is off or one of three quantiles of its signal on these images (the 80th, 90th, 95th
    percentile; 20th, 10th, 5th for minimums); the joint limit on :data:`JOINT_SIGNALS` is off or the same
    quantile of each (70th to 85th); at most ``max_limits`` limits are on, plus the size clamp on or off.
    Ties go to fewer flags, then fewer limits, then the size clamp on; when the joint limit is not among
    them, it is added at the loosest quantile the flag budget still allows (if any). A grid this coarse
    cannot fit the images of a small validation set one by one. Every single limit left off is then set just outside what
    these images showed (``range_margin`` times their largest value, or their smallest divided by it; None:
    left off): no image here reaches it, and an image beyond it is unlike all of them. ``joint_limit=False``
    and ``max_limits=0``: range limits (and the size clamp) only, for images whose errors say nothing (a model's
    own training images).

    The novelty limit, where these images have the signal, is set first, at ``novelty_quantile`` of them, and
    the other limits share what is left of the flag budget: it marks images unlike the training images,
    which says nothing about the errors of images like them, so it is not chosen by those errors.
    """
    n = len(signals)
    values = {key: np.array([s.get(key, math.nan) for s in signals], np.float64) for _, key, _ in LIMITS}

    def quantile(key: str, q: float) -> float | None:
        finite = values[key][np.isfinite(values[key])]
        return round(float(np.quantile(finite, 1 - q if BELOW[key] else q)), 4) if len(finite) else None

    def flags_of(rule: QualityRule) -> np.ndarray:
        return np.array([judge(x, rule).flag for x in signals], bool)

    off = {f: None for f, _, _ in LIMITS}
    novelty = _novelty_limit(values["novelty"], novelty_quantile, max_flagged) if novelty_quantile else None
    fixed = (flags_of(QualityRule(**{**off, "max_novelty": novelty}, flag_size_at_limit=False)) if novelty is not None
             else np.zeros(n, bool))
    options: list[list[tuple[dict[str, Any], np.ndarray]]] = []  # per limit: (rule fields, flags) when on
    for field, key, _ in LIMITS:
        if field == "max_novelty":
            continue
        opts = []
        for q in (0.8, 0.9, 0.95):
            limit = quantile(key, q)
            if limit is not None:
                opts.append(({field: limit}, flags_of(QualityRule(**{**off, field: limit}, flag_size_at_limit=False))))
        options.append(opts)
    joint = []
    for q in (0.7, 0.75, 0.8, 0.85) if joint_limit else ():
        limits = tuple((key, quantile(key, q)) for key in JOINT_SIGNALS)
        if all(v is not None for _, v in limits):
            fields = {"joint_limits": limits}
            joint.append((fields, flags_of(QualityRule(**off, flag_size_at_limit=False, **fields))))
    if joint:
        options.append(joint)
    at_limit = np.array([x.get("size_at_limit", 0.0) >= 1.0 for x in signals], bool)
    e = np.asarray(rel_errors, np.float64)
    big = ~np.isnan(e) & (e > large)
    best_key, best = None, None
    for k in range(max_limits + 1):
        for chosen in itertools.combinations(range(len(options)), k):
            for picks in itertools.product(*(options[i] for i in chosen)):
                base = fixed.copy()
                for _, f in picks:
                    base |= f
                for size_flag in (False, True):
                    flags = base | at_limit if size_flag else base
                    if n and flags.mean() > max_flagged:
                        continue
                    # the size clamp stays on when it costs no flags here: it is a safety for images the
                    # validation set may not have (a resize clamped by more than 25%)
                    key = (int((flags & big).sum()), -int(flags.sum()), -k, size_flag)
                    if best_key is None or key > best_key:
                        best_key, best = key, (picks, size_flag, flags)
    picks, size_flag, chosen_flags = best if best is not None else ((), False, fixed)
    if joint and not any("joint_limits" in f for f, _ in picks):
        # the budget the fitted limits left goes to the joint limit, loosest first: it is what flags images
        # unlike these (another stain, another kind of cell), which a validation set cannot show
        for fields_, f in joint:
            if n and (chosen_flags | f).mean() <= max_flagged:
                picks = (*picks, (fields_, f))
                break
    fields: dict[str, Any] = {**off, "max_novelty": novelty}
    for f, _ in picks:
        fields.update(f)
    for field, key, below in LIMITS:
        if fields[field] is None and range_margin and field != "max_novelty":
            fields[field] = range_limit(values[key], below=below, margin=range_margin)
    rule = QualityRule(**fields, flag_size_at_limit=size_flag)
    fitted = (["max_novelty"] if novelty is not None else []) + [name for f, _ in picks for name in f]
    return rule, {**flag_report(flags_of(rule), e, large=large), "fitted_limits": fitted}
