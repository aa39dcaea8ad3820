"""Count errors, instance matching at an IoU threshold, and point matching."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from .errors import ParameterError


def count_errors(true: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """Per-image signed (pred - true), absolute and relative (|err| / true, NaN when true = 0) errors."""
    t = np.asarray(true, np.float64)
    p = np.asarray(pred, np.float64)
    if t.shape != p.shape:
        raise ValueError(f"true and pred differ in shape: {t.shape} vs {p.shape}")
    missing = int(np.count_nonzero(~np.isfinite(t) | ~np.isfinite(p)))
    if missing:  # dropped by pandas' means, a failed count would read as a perfect one
        raise ValueError(f"{missing} of {t.size} count(s) are missing (NaN or infinite): score only images counted")
    err = p - t
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(t > 0, np.abs(err) / t, np.nan)
    return pd.DataFrame({"true": t, "pred": p, "error": err, "abs_error": np.abs(err), "rel_error": rel})


BOOTSTRAP_SAMPLES = 2000
"""Resamples behind every confidence interval here (a fixed seed, so a report reads the same twice)."""

MIN_BOOTSTRAP_IMAGES = 5
"""Fewer images give no interval: a percentile bootstrap of 2-4 values claims more certainty than it has."""


def expanded_level(level: float, n: int) -> float:
    """The percentile level that gives a bootstrap interval of ``n`` images its stated ``level`` (Hesterberg's
    expanded percentile interval: the normal quantile widened to sqrt(n / (n - 1)) x Student's t with n - 1
    degrees of freedom). The plain percentile interval is too narrow for few images: two equally good models were
    called different 15% of the time at 5 images and 9% at 8 against the 5% promised; 6.5% and 5.5% expanded
    (``python scripts/interval_coverage.py``; docs/RESULTS.md, "Intervals over few images")."""
    alpha = 1.0 - level
    z = math.sqrt(n / (n - 1)) * stats.t.ppf(1.0 - alpha / 2, n - 1)
    return float(1.0 - 2.0 * stats.norm.sf(z))


def _percentile_interval(data: tuple[np.ndarray, ...], statistic, *, paired: bool, level: float, n_boot: int,
                         seed: int, expand: bool = True) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over images, expanded (:func:`expanded_level`) unless
    ``expand`` is False (scipy's resampler, a fixed seed).

    ``paired``: the images are resampled together across the arrays of ``data``, keeping what they share."""
    level = expanded_level(level, len(data[0])) if expand else level
    res = stats.bootstrap(data, statistic, n_resamples=n_boot, confidence_level=level,
                          method="percentile", paired=paired, vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _studentized_mean_interval(x: np.ndarray, *, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Bootstrap-t interval of the mean of ``x`` (each resample's mean studentized by its own standard error):
    the percentile interval of a mean of skewed values, a few images carrying most of it, stays short of the
    mean more often than it says."""
    n = len(x)
    mean, se = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(n)
    if not se > 0:  # every value the same: no spread to resample
        return mean, mean
    resamples = x[np.random.default_rng(seed).integers(0, n, (n_boot, n))]
    se_star = resamples.std(axis=1, ddof=1) / math.sqrt(n)
    ok = se_star > 0
    t = (resamples.mean(axis=1)[ok] - mean) / se_star[ok]
    lo_q, hi_q = np.quantile(t, [(1 - level) / 2, (1 + level) / 2])
    return mean - float(hi_q) * se, mean - float(lo_q) * se


def mae_confidence_interval(
    abs_errors: np.ndarray, *, level: float = 0.95, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of the mean absolute count error over images, not below 0: the span of the bootstrap-t
    (:func:`_studentized_mean_interval`) and the expanded percentile interval (:func:`expanded_level`). The
    bootstrap-t reaches further up where a few hard images carry the MAE; the percentile interval holds where most
    errors are 0, whose resamples the bootstrap-t cannot studentize (its interval of [0, 0, 0, 0, 14] ended at the
    MAE). The upper end is at most :data:`MAE_HIGH_CAP` x the largest error. Over few images no interval of a mean
    this skewed holds its level (``python
    scripts/interval_coverage.py``; docs/RESULTS.md, "Intervals over few images").

    With ~100 images a few hard ones carry much of the MAE, so two models' MAEs often differ by less
    than this interval is wide; NaNs for fewer than :data:`MIN_BOOTSTRAP_IMAGES` images.
    """
    a = np.asarray(abs_errors, np.float64)
    if a.size < MIN_BOOTSTRAP_IMAGES:
        return float("nan"), float("nan")
    t_lo, t_hi = _studentized_mean_interval(a, level=level, n_boot=n_boot, seed=seed)
    p_lo, p_hi = _percentile_interval((a,), np.mean, paired=False, level=level, n_boot=n_boot, seed=seed)
    return max(min(t_lo, p_lo), 0.0), min(max(t_hi, p_hi), MAE_HIGH_CAP * float(a.max()))


MAE_HIGH_CAP = 1.5
"""The MAE interval ends at most this many times the largest error seen: with one image far off, the bootstrap-t's
resamples without it have almost no spread and put its upper end far beyond every error (11 images, the worst
253 off, give 0-1979 uncapped). Its coverage with and without the cap: ``scripts/interval_coverage.py``
(docs/RESULTS.md, "Intervals over few images")."""


def fixed(value: float, digits: int = 2, *, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals, halves rounded away from zero as the app's tables round them (Python's
    format rounds an exact 8.125 to 8.12 and a table column shows 8.13: one figure, two readings); "—" when not
    finite. Used where the app shows an MAE beside a table's (Evaluate's metrics and Optimise panel) and in the evaluate
    CLI's summary line."""
    from decimal import ROUND_HALF_UP, Decimal

    value = float(value)  # NumPy scalars too
    if not math.isfinite(value):
        return "—"
    q = Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{q:+}" if sign else f"{q}"


def paired_mae_difference(
    true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *, level: float = 0.95,
    n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0,
) -> dict[str, float]:
    """MAE(b) - MAE(a) on the same images, with a paired bootstrap interval.

    Resampling images (not each model separately) keeps what the two models share - the hard images -
    so the interval is much tighter than comparing two independent intervals. ``significant`` is 1.0
    when the interval excludes 0, 0.0 when it does not, NaN without an interval (too few images).
    """
    ea = count_errors(true, pred_a)["abs_error"].to_numpy()
    eb = count_errors(true, pred_b)["abs_error"].to_numpy()
    return paired_difference(ea, eb, level=level, n_boot=n_boot, seed=seed)


def paired_difference(
    abs_a: np.ndarray, abs_b: np.ndarray, *, level: float = 0.95, n_boot: int = BOOTSTRAP_SAMPLES, seed: int = 0,
) -> dict[str, float]:
    """mean(b) - mean(a) of two absolute errors per image on the same images, with :func:`paired_mae_difference`'s
    paired bootstrap interval (NaN under :data:`MIN_BOOTSTRAP_IMAGES` images) and ``significant``."""
    ea, eb = np.asarray(abs_a, np.float64), np.asarray(abs_b, np.float64)
    diff = float(eb.mean() - ea.mean()) if ea.size else float("nan")
    if ea.size < MIN_BOOTSTRAP_IMAGES:
        # unknown, not "no": a card would read 0.0 beside a CLI verdict that a large difference is unlikely to be chance
        return {"difference": diff, "low": float("nan"), "high": float("nan"), "significant": float("nan")}
    lo, hi = _percentile_interval((ea, eb), lambda a, b, axis: b.mean(axis) - a.mean(axis), paired=True,
                                  level=level, n_boot=n_boot, seed=seed)
    return {"difference": diff, "low": lo, "high": hi, "significant": float(lo > 0 or hi < 0)}


def count_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE (with a 95% bootstrap interval over images: ``mae_ci_low``, ``mae_ci_high``), RMSE, bias (mean
    signed error), MAPE (% over images with true > 0: ``mape_n`` of them), R^2 and n."""
    e = count_errors(true, pred)
    n = len(e)
    if n == 0:
        return {"n": 0, "mae": float("nan"), "mae_ci_low": float("nan"), "mae_ci_high": float("nan"),
                "rmse": float("nan"), "bias": float("nan"), "mape": float("nan"), "mape_n": 0, "r2": float("nan")}
    ss_res = float(np.sum(e["error"] ** 2))
    ss_tot = float(np.sum((e["true"] - e["true"].mean()) ** 2))
    rel = e["rel_error"].dropna()
    lo, hi = mae_confidence_interval(e["abs_error"].to_numpy())
    return {
        "n": n,
        "mae": float(e["abs_error"].mean()),
        "mae_ci_low": lo,
        "mae_ci_high": hi,
        "rmse": float(np.sqrt(np.mean(e["error"] ** 2))),
        "bias": float(e["error"].mean()),
        "mape": float(100 * rel.mean()) if len(rel) else float("nan"),
        "mape_n": int(len(rel)),
        "r2": 1 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
    }


@dataclass(frozen=True)
class MatchResult:
    """Instance or point matching outcome."""

    tp: int
    fp: int
    fn: int
    mean_matched_iou: float = float("nan")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else (1.0 if self.fn == 0 else 0.0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


def overlapping_pairs(true_labels: np.ndarray, pred_labels: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true ids, predicted ids, IoUs) of every pair of objects that overlap, from one joint histogram: memory
    grows with the pairs, not with n_true x n_pred (a dense matrix of a 36-megapixel image's 21,000 objects is
    3.6 GB)."""
    t = np.asarray(true_labels).ravel().astype(np.int64)
    p = np.asarray(pred_labels).ravel().astype(np.int64)
    npred = int(p.max(initial=0))
    area_t, area_p = np.bincount(t), np.bincount(p)
    fg = (t > 0) & (p > 0)
    pairs, inter = np.unique(t[fg] * (npred + 1) + p[fg], return_counts=True)
    ti, pi = pairs // (npred + 1), pairs % (npred + 1)
    return ti, pi, inter / (area_t[ti] + area_p[pi] - inter)


def iou_matrix(true_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """(n_true, n_pred) IoU of every pair of objects (dense: for few objects; matching uses
    :func:`overlapping_pairs`)."""
    nt = int(np.asarray(true_labels).max(initial=0))
    npred = int(np.asarray(pred_labels).max(initial=0))
    ti, pi, iou = overlapping_pairs(true_labels, pred_labels)
    out = np.zeros((nt, npred), np.float64)
    out[ti - 1, pi - 1] = iou
    return out


def check_iou_threshold(value: float, what: str = "IoU threshold") -> None:
    """Refuse an IoU threshold outside (0, 1]: at 0, objects that do not overlap would "match"."""
    if not 0 < value <= 1:
        raise ParameterError(f"{what} {value:g}: an IoU threshold lies in (0, 1], e.g. 0.5")


def _instance_pairs(true_labels: np.ndarray, pred_labels: np.ndarray, iou_threshold: float):
    """(true ids, predicted ids, matched true ids, matched predicted ids, their IoUs) of the optimal one-to-one
    matching (Hungarian on IoU) of pairs with IoU >= ``iou_threshold``.

    Only pairs at the threshold can match, so the assignment is solved on each connected group of such pairs
    apart (the objective adds up over groups: the same matching as one assignment over all objects)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    check_iou_threshold(iou_threshold)
    t = np.asarray(true_labels)
    p = np.asarray(pred_labels)
    if t.shape != p.shape:
        raise ValueError(f"label images differ in shape: {t.shape} vs {p.shape}")
    ids_t = np.nonzero(np.bincount(t.ravel().astype(np.int64))[1:])[0] + 1
    ids_p = np.nonzero(np.bincount(p.ravel().astype(np.int64))[1:])[0] + 1
    ti, pi, iou = overlapping_pairs(t, p)
    keep = iou >= iou_threshold
    ti, pi, iou = ti[keep], pi[keep], iou[keep]
    none = np.zeros(0, np.int64)
    if not len(iou):
        return ids_t, ids_p, none, none, np.zeros(0)
    rows, ri = np.unique(ti, return_inverse=True)
    cols, ci = np.unique(pi, return_inverse=True)
    n = len(rows) + len(cols)  # a graph of the objects in candidate pairs: rows first, then columns
    graph = coo_matrix((np.ones(len(iou)), (ri, len(rows) + ci)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    got_t, got_p, got_iou = [], [], []
    order = np.argsort(group[ri], kind="stable")
    bounds = np.flatnonzero(np.diff(group[ri][order])) + 1
    for edges in np.split(order, bounds):
        if len(edges) == 1:  # one pair alone (every pair at IoU > 0.5): it matches
            got_t.append(rows[ri[edges]]), got_p.append(cols[ci[edges]]), got_iou.append(iou[edges])
            continue
        r_ids, r_at = np.unique(ri[edges], return_inverse=True)
        c_ids, c_at = np.unique(ci[edges], return_inverse=True)
        sub = np.zeros((len(r_ids), len(c_ids)))
        sub[r_at, c_at] = iou[edges]
        # the most pairs first, then the most IoU among those: below IoU 0.5 one object may pass the threshold with
        # two others, and a sum of IoUs alone takes one good pair over two fair ones (StarDist and Cellpose count two)
        valid = sub > 0
        r, c = linear_sum_assignment(np.where(valid, min(sub.shape) + 1 + sub, 0.0), maximize=True)
        good = valid[r, c]
        got_t.append(rows[r_ids[r[good]]]), got_p.append(cols[c_ids[c[good]]]), got_iou.append(sub[r, c][good])
    return ids_t, ids_p, np.concatenate(got_t), np.concatenate(got_p), np.concatenate(got_iou)


def match_instances(true_labels: np.ndarray, pred_labels: np.ndarray, *, iou_threshold: float = 0.5) -> MatchResult:
    """Optimal one-to-one matching (Hungarian on IoU) counting pairs with IoU >= ``iou_threshold``.

    Labels need not be consecutive; empty label ids are ignored.
    """
    ids_t, ids_p, _, _, ious = _instance_pairs(true_labels, pred_labels, iou_threshold)
    tp = len(ious)
    return MatchResult(tp=tp, fp=len(ids_p) - tp, fn=len(ids_t) - tp,
                       mean_matched_iou=float(ious.mean()) if tp else float("nan"))


def unmatched_objects(true_labels: np.ndarray, pred_labels: np.ndarray, *,
                      iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(ids of the true objects no prediction matches: missed, ids of the predicted objects that match none:
    extra) under :func:`match_instances`' matching, so a viewer can mark them."""
    ids_t, ids_p, got_t, got_p, _ = _instance_pairs(true_labels, pred_labels, iou_threshold)
    return np.setdiff1d(ids_t, got_t), np.setdiff1d(ids_p, got_p)


def _point_pairs(true_points: np.ndarray, pred_points: np.ndarray, radius_px: float
                 ) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(number of dots, of detections, indices of the dots matched, of the detections matched): one-to-one within
    ``radius_px``, Hungarian on distance."""
    tp_ = np.asarray(true_points, np.float64).reshape(-1, 2)
    pp_ = np.asarray(pred_points, np.float64).reshape(-1, 2)
    none = np.zeros(0, np.int64)
    if len(tp_) == 0 or len(pp_) == 0:
        return len(tp_), len(pp_), none, none
    tree = cKDTree(pp_)
    pairs = tree.query_ball_point(tp_, r=radius_px)
    big = 1e9
    cost = np.full((len(tp_), len(pp_)), big)
    for i, js in enumerate(pairs):
        for j in js:
            cost[i, j] = np.hypot(*(tp_[i] - pp_[j]))
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] <= radius_px
    return len(tp_), len(pp_), r[ok], c[ok]


def match_points(true_points: np.ndarray, pred_points: np.ndarray, *, radius_px: float = 5.0) -> MatchResult:
    """One-to-one matching of detections to dots within ``radius_px`` (Hungarian on distance)."""
    n_true, n_pred, got, _ = _point_pairs(true_points, pred_points, radius_px)
    return MatchResult(tp=len(got), fp=n_pred - len(got), fn=n_true - len(got))


def unmatched_points(true_points: np.ndarray, pred_points: np.ndarray, *, radius_px: float = 5.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the dots no detection matches, of the detections that match no dot) under :func:`match_points`'
    matching (a density model's centres), so a viewer can mark them."""
    n_true, n_pred, got_t, got_p = _point_pairs(true_points, pred_points, radius_px)
    return np.setdiff1d(np.arange(n_true), got_t), np.setdiff1d(np.arange(n_pred), got_p)


def match_points_in_objects(true_points: np.ndarray, labels: np.ndarray) -> MatchResult:
    """Dots against segmented objects: an object holding one or more dots matches one of them (the others are
    missed: a merge), an object holding none is a false positive. The way to score a segmentation against dots,
    whatever the objects' size (a fixed radius around centroids misses large nuclei)."""
    pts = np.asarray(true_points, np.float64).reshape(-1, 2)
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iub" or (lab.size and lab.min() < 0):
        raise ValueError(f"labels must be non-negative integers, got {lab.dtype}"
                         + (f" with minimum {lab.min()}" if lab.size and lab.dtype.kind in "iuf" else ""))
    # the readers accept coordinates up to the image's far edge (ImageJ counts pixel corners: a dot on the last
    # pixel may read 255.7 of 256), so a point is outside only beyond that edge; within it, it takes the last pixel
    outside = (pts[:, 0] < -0.5) | (pts[:, 1] < -0.5) | (pts[:, 0] > lab.shape[0]) | (pts[:, 1] > lab.shape[1])
    if len(pts) and outside.any():  # clipped onto the edge, they would score as hits
        raise ValueError(f"{int(outside.sum())} point(s) lie outside the {lab.shape[1]} x {lab.shape[0]} px labels")
    n_objects = int(np.count_nonzero(np.bincount(lab.ravel())[1:])) if lab.size else 0
    if len(pts) == 0:
        return MatchResult(tp=0, fp=n_objects, fn=0)
    r = np.clip(np.round(pts[:, 0]).astype(np.int64), 0, lab.shape[0] - 1)
    c = np.clip(np.round(pts[:, 1]).astype(np.int64), 0, lab.shape[1] - 1)
    hit = np.unique(lab[r, c])
    tp = int(np.count_nonzero(hit))
    return MatchResult(tp=tp, fp=n_objects - tp, fn=len(pts) - tp)


def unmatched_points_in_objects(true_points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the dots no object matches: outside every object, or a second dot in one object, ids of the
    objects holding no dot) under :func:`match_points_in_objects`' matching, so a viewer can mark them."""
    pts = np.asarray(true_points, np.float64).reshape(-1, 2)
    lab = np.asarray(labels)
    ids = np.flatnonzero(np.bincount(lab.ravel())[1:]) + 1 if lab.size else np.zeros(0, np.int64)
    if not len(pts):
        return np.zeros(0, np.int64), ids
    r = np.clip(np.round(pts[:, 0]).astype(np.int64), 0, lab.shape[0] - 1)
    c = np.clip(np.round(pts[:, 1]).astype(np.int64), 0, lab.shape[1] - 1)
    hit = lab[r, c]
    _, first = np.unique(hit, return_index=True)
    matched = np.zeros(len(pts), bool)
    matched[first] = True  # the first dot of each object matches it
    matched &= hit != 0
    return np.flatnonzero(~matched), np.setdiff1d(ids, hit)


def aggregate_matches(results: list[MatchResult]) -> MatchResult:
    """Sum tp/fp/fn over images (micro-average); mean matched IoU weighted by tp."""
    tp = sum(r.tp for r in results)
    ious = [r.mean_matched_iou * r.tp for r in results if r.tp]
    return MatchResult(tp=tp, fp=sum(r.fp for r in results), fn=sum(r.fn for r in results),
                       mean_matched_iou=float(sum(ious) / tp) if tp else float("nan"))
