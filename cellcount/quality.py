"""A quality flag on every count: signals that a count may be wrong, and when to tell the user to check.

Each signal is measured on what the pipeline already has (maps, labels, the size estimate), so it costs
no extra model pass:

* ``count_disagreement``: multihead models count twice, by segmentation and by the density integral;
  two independent routes that disagree mean at least one is wrong (merges, fragments, unseen objects).
* ``size_ratio``: how far the nucleus size (estimated or stated) is from the model's training size, and
  ``size_at_limit``: the resize factor hit its clamp, so nuclei stay off-size for the model.
* ``uncertain_fraction``: share of the possibly-foreground pixels the model is unsure about
  (probability between 0.2 and 0.8): blur, low contrast and unfamiliar image types all raise it.
* ``contrast``: median normalised intensity of the foreground minus that of the background.

:class:`QualityRule` turns signals into a flag with plain reasons. Its limits are calibrated on
validation images by :func:`calibrate_rule` (stored in the model card under ``quality``); the defaults
are used otherwise.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

UNCERTAIN_LOW, UNCERTAIN_HIGH = 0.2, 0.8
STRIDE = 2
LARGE_ERROR = 0.15
"""A count off by more than this fraction of the true count is a large error (the flag's target)."""


@dataclass(frozen=True)
class QualityRule:
    """Limits beyond which a count is flagged "check this image". ``None`` turns a signal off."""

    max_count_disagreement: float | None = 0.15
    max_size_ratio: float | None = 2.5
    max_uncertain_fraction: float | None = 0.35
    min_contrast: float | None = 0.15
    flag_size_at_limit: bool = True

    @classmethod
    def from_card(cls, card: Any) -> QualityRule:
        """The rule stored in a model card's ``extra["quality"]["rule"]``, else the defaults."""
        stored = ((getattr(card, "extra", None) or {}).get("quality") or {}).get("rule") or {}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Quality:
    """The verdict on one count: ``flag`` (check this image), a score (>= 1 when flagged: the largest
    signal relative to its limit), plain-language ``reasons`` and the raw ``signals``."""

    flag: bool
    score: float
    reasons: tuple[str, ...]
    signals: dict[str, float]

    def row(self) -> dict[str, Any]:
        """Columns for a counts table."""
        return {"check": self.flag, "quality_score": round(self.score, 3), "check_reasons": "; ".join(self.reasons)}


def quality_signals(
    *,
    count: float,
    density_count: float | None,
    probability: np.ndarray | None,
    image_norm: np.ndarray | None,
    diameter_px: float | None,
    reference_diameter_px: float,
    size_at_limit: bool,
) -> dict[str, float]:
    """Raw signals for one image (NaN where one does not apply). ``probability`` is the (H, W)
    foreground probability, ``image_norm`` the model's normalised input, ``diameter_px`` the nucleus
    size used (estimated or stated)."""
    sig = {k: math.nan for k in ("count_disagreement", "size_ratio", "uncertain_fraction", "contrast")}
    sig["size_at_limit"] = float(bool(size_at_limit))
    if density_count is not None:
        # relative to the larger count, with 2 nuclei of slack so 1 vs 2 on a near-empty field is no alarm
        sig["count_disagreement"] = abs(count - density_count) / (max(count, density_count) + 2.0)
    if diameter_px:
        r = float(diameter_px) / reference_diameter_px
        sig["size_ratio"] = max(r, 1.0 / r)
    if probability is not None:
        p = np.asarray(probability)
        maybe = p > UNCERTAIN_LOW
        n = int(np.count_nonzero(maybe))
        if n:
            sig["uncertain_fraction"] = float(np.count_nonzero(maybe & (p < UNCERTAIN_HIGH))) / n
        if image_norm is not None and np.shape(image_norm) == p.shape:
            # medians over every STRIDE-th pixel each way: the same to 4 decimals on the samples, without ~20 ms
            # per slider move on a 1-megapixel image (the thin uncertain band needs every pixel; it is cheap)
            fg = p[::STRIDE, ::STRIDE] > 0.5
            if fg.any() and (~fg).any():
                img = np.asarray(image_norm)[::STRIDE, ::STRIDE]
                sig["contrast"] = float(np.median(img[fg]) - np.median(img[~fg]))
    return sig


def judge(signals: dict[str, float], rule: QualityRule) -> Quality:
    """Apply ``rule`` to ``signals``."""
    reasons, ratios = [], [0.0]

    def over(value: float, limit: float | None, reason: str, *, below: bool = False) -> None:
        if limit is None or not np.isfinite(value):
            return
        ratio = (limit / max(value, 1e-6)) if below else value / max(limit, 1e-9)
        ratios.append(ratio)
        if ratio >= 1.0:
            reasons.append(reason)

    d = signals.get("count_disagreement", math.nan)
    over(d, rule.max_count_disagreement, f"the two counts (segmentation, density) differ by {d:.0%}")
    s = signals.get("size_ratio", math.nan)
    over(s, rule.max_size_ratio, f"nuclei are {s:.1f}x off the size the model was trained on")
    u = signals.get("uncertain_fraction", math.nan)
    over(u, rule.max_uncertain_fraction, f"the model is unsure about {u:.0%} of the foreground (blur, low "
         "contrast or an unfamiliar image type)")
    c = signals.get("contrast", math.nan)
    over(c, rule.min_contrast, f"low contrast between nuclei and background ({c:.2f})", below=True)
    if rule.flag_size_at_limit and signals.get("size_at_limit", 0.0) >= 1.0:
        reasons.append("the nucleus size is beyond what resizing can correct")
        ratios.append(1.0)
    return Quality(flag=bool(reasons), score=float(max(ratios)), reasons=tuple(reasons), signals=dict(signals))


def flag_report(flags: Sequence[bool], rel_errors: Sequence[float], *, large: float = LARGE_ERROR) -> dict[str, float]:
    """Share of images flagged, number of large errors (> ``large`` of the true count), and the share of
    those that were flagged (the flag's recall)."""
    f = np.asarray(flags, bool)
    e = np.asarray(rel_errors, np.float64)
    big = np.isfinite(e) & (e > large)
    return {
        "n": int(len(f)),
        "flagged_share": float(f.mean()) if len(f) else math.nan,
        "large_errors": int(big.sum()),
        "large_errors_flagged_share": float((f & big).sum() / big.sum()) if big.any() else math.nan,
    }


def calibrate_rule(
    signals: Sequence[dict[str, float]],
    rel_errors: Sequence[float],
    *,
    max_flagged: float = 0.2,
    large: float = LARGE_ERROR,
    base: QualityRule | None = None,
) -> tuple[QualityRule, dict[str, float]]:
    """Limits that flag at most ``max_flagged`` of the images while holding as many large errors as possible.

    A coarse grid over each limit (quantiles of the signal on these images), ties broken by fewer flags:
    a grid this coarse cannot fit each image of a small validation set one by one.
    """
    base = base or QualityRule()
    grids: dict[str, list[float | None]] = {}
    for field, key, below in (("max_count_disagreement", "count_disagreement", False),
                              ("max_size_ratio", "size_ratio", False),
                              ("max_uncertain_fraction", "uncertain_fraction", False),
                              ("min_contrast", "contrast", True)):
        vals = np.array([s.get(key, math.nan) for s in signals], np.float64)
        vals = vals[np.isfinite(vals)]
        qs = (0.05, 0.1, 0.2) if below else (0.8, 0.9, 0.95)
        grids[field] = [None] + ([round(float(np.quantile(vals, q)), 4) for q in qs] if len(vals) else [])
    best: tuple[QualityRule, dict[str, float]] | None = None
    for d, s, u, c, limit in itertools.product(grids["max_count_disagreement"], grids["max_size_ratio"],
                                               grids["max_uncertain_fraction"], grids["min_contrast"], (True, False)):
        rule = dataclasses.replace(base, max_count_disagreement=d, max_size_ratio=s,
                                   max_uncertain_fraction=u, min_contrast=c, flag_size_at_limit=limit)
        rep = flag_report([judge(x, rule).flag for x in signals], rel_errors, large=large)
        if rep["flagged_share"] > max_flagged:
            continue
        key = (np.nan_to_num(rep["large_errors_flagged_share"]), -rep["flagged_share"])
        if best is None or key > (np.nan_to_num(best[1]["large_errors_flagged_share"]),
                                  -best[1]["flagged_share"]):
            best = (rule, rep)
    if best is None:  # nothing flags few enough images: flag nothing but the size limit
        rule = QualityRule(None, None, None, None, base.flag_size_at_limit)
        best = (rule, flag_report([judge(x, rule).flag for x in signals], rel_errors, large=large))
    return best
