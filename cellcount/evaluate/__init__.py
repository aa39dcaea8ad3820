"""Evaluate a model against ground truth and tune postprocessing on it (the library; the command line
``python -m cellcount.evaluate`` is :mod:`cellcount.evaluate.cli`).

Labelled data: images with label images, masks, dots, a counts CSV, or the DSB layout (see
:func:`cellcount.groundtruth.load_labelled_folder`).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..groundtruth import GroundTruth
from ..metrics import (
    MatchResult,
    aggregate_matches,
    count_metrics,
    fixed,
    match_instances,
    match_points,
    match_points_in_objects,
)
from ..models import size_model_for
from ..models.base import CountModel
from ..params import BORDER_SPLIT_MODES, DISTANCE_SPLIT_MODES, SCHEMA
from ..pipeline import CountParams, CountResult, Prediction, postprocess, predict
from ..postprocess import edge_ids
from .annotation import centres_of, swapped_f1, unannotated_share

logger = logging.getLogger(__name__)

Pair = tuple[str, Prediction, GroundTruth]

# Search space of the postprocessing tuner (mask models). Coordinate descent over these values.
DEFAULT_GRID: dict[str, list[Any]] = {
    "threshold": [0.3, 0.4, 0.5, 0.6, 0.7],
    "opening_radius_px": [0, 1, 2],
    "split_mode": ["borders", "both", "auto", "distance"],
    "min_distance_px": [0, 2, 3, 4, 5, 6, 8, 10],
    "min_area_px": [0, 5, 10, 20, 30, 50],
}


@dataclass
class EvaluationReport:
    """Per-image table, summary metrics, and the CountResults behind them."""

    per_image: pd.DataFrame
    summary: dict[str, float]
    results: dict[str, CountResult] = field(default_factory=dict)


@dataclass
class TuneResult:
    """Best parameters found, MAE before/after, and every setting tried (``f1`` where it was scored)."""

    best_params: CountParams
    before: float
    after: float
    table: pd.DataFrame

    def edge_note(self) -> str | None:
        """:func:`at_grid_edge` of the best setting against the values actually tried (the table)."""
        return at_grid_edge(self.best_params, tried=self.table)


MAE_TOLERANCE = 0.01
"""Settings whose count MAE is within this fraction of the best one count as equally good; among them the
tuner takes the best F1@0.5 (outlines), so it does not trade segmentation quality for a count difference
of a hundredth of a cell per image."""


class TrainingImagesWarning(UserWarning):
    """Some images scored are ones the model learnt from: its error on them flatters it."""


POINT_RADIUS_PX = 5.0
"""A density model's centre matches a dot within this distance (px) in the F1 against dots."""


def _warn_training_images(items: Sequence[tuple[str, np.ndarray, GroundTruth]], model: CountModel) -> None:
    """A :class:`TrainingImagesWarning` naming the images of ``items`` that ``model`` learnt from (what `cellcount
    evaluate` and the app leave out or say; a notebook following the docstrings is told too)."""
    card = getattr(model, "card", None)
    if card is None:
        return
    from ..io import pixel_digest
    from ..models import with_base_training

    card = with_base_training(card)
    pixels = card.training_pixel_digests()
    if pixels:  # by content alone where the card knows it: well names repeat across plates (plate2/A01.png)
        seen = [name for name, image, _ in items if pixel_digest(image) in pixels]
    elif card.training_digests():  # file digests, and no bytes here to check them against
        return
    else:  # a card that records names only
        seen = card.trained_on([(name, None) for name, _, _ in items])
    if seen:
        warnings.warn(card.trained_on_note(seen, len(items)), TrainingImagesWarning, stacklevel=3)


def ran_in(pairs: list) -> str:
    """The backends the predictions of (name, prediction, truth) ``pairs`` ran in, joined ("" where unknown)."""
    return " + ".join(dict.fromkeys(p.backend for _, p, _ in pairs if getattr(p, "backend", None)))


def predict_pairs(
    items: Sequence[tuple[str, np.ndarray, GroundTruth]],
    model: CountModel,
    params: CountParams,
    *,
    progress: Callable[[int, int], None] | None = None,
    size_model: CountModel | None = None,
    fast: bool = True,
    backend: str | None = None,
    warn_trained: bool = True,
) -> list[Pair]:
    """Run the model once per image (the slow part), keeping predictions for evaluation and tuning.

    ``size_model``, ``backend``: see :func:`cellcount.pipeline.predict`; the size model is loaded once here when
    the settings need one. Images the model learnt from (by their pixels or, for a fine-tune, their names) raise a
    :class:`TrainingImagesWarning`, unless ``warn_trained`` is False (a caller that leaves them out or says so)."""
    if warn_trained:
        _warn_training_images(items, model)
    if size_model is None:
        size_model = size_model_for(model, params)
    out = []
    for i, (name, image, gt) in enumerate(items):
        out.append((name, predict(image, model, params, fast=fast, size_model=size_model, backend=backend), gt))
        if progress:
            progress(i + 1, len(items))
    return out


def _edges_left_out(output_kind: str, params: CountParams) -> bool:
    """Whether ``params`` leave the objects on the image's edge out of a model of ``output_kind``'s objects."""
    return bool(params.exclude_border) and output_kind != "density"


def _count_keeps_edges(output_kind: str, params: CountParams) -> bool:
    """Whether the count is a density head's integral (a multihead model counting from its density map), which
    keeps the edge objects that the segmentation leaves out."""
    return output_kind == "multihead" and params.count_source == "density"


def scored_truth(pred: Prediction, params: CountParams, gt: GroundTruth) -> GroundTruth:
    """``gt`` as the counts with ``params`` are scored against it: with "Exclude edge objects" on, a label image's
    objects that touch the edge are left out of the truth too (else an otherwise perfect model scores -2 on every
    image, the truth's cut objects counted as missed); out of its count too unless the count is a
    density integral, which keeps them. Dots and counts cannot say which of their objects touch the edge and stay
    as they are (:data:`BORDER_TRUTH_KEPT` in the summary)."""
    if not _edges_left_out(pred.output_kind, params) or gt.labels is None:
        return gt
    edge = edge_ids(gt.labels)
    if not len(edge):
        return gt
    labels = np.where(np.isin(gt.labels, edge), 0, gt.labels)
    return dataclasses.replace(gt, labels=labels, count=_true_count(pred, params, gt))


def _true_count(pred: Prediction, params: CountParams, gt: GroundTruth) -> int:
    """:func:`scored_truth`'s count, without building its label image (the tuner asks it many times)."""
    return scored_true_count(gt, params, pred.output_kind)


def scored_true_count(gt: GroundTruth, params: CountParams, output_kind: str) -> int:
    """The true count a count made with ``params`` by a model of ``output_kind`` is scored against: ``gt``'s count,
    less its label image's edge objects where "Exclude edge objects" leaves them out of the count
    (:func:`scored_truth`; Evaluate, Compare and Count's truth alike)."""
    if not _edges_left_out(output_kind, params) or gt.labels is None or _count_keeps_edges(output_kind, params):
        return gt.count
    return int(gt.count - len(edge_ids(gt.labels)))


BORDER_TRUTH_KEPT = "border_truth_kept"
"""Summary key: images scored with "Exclude edge objects" on whose truth (dots, a count) keeps its edge objects."""


def match_objects(res: CountResult, gt: GroundTruth, *, iou_threshold: float = 0.5,
                  point_radius_px: float = POINT_RADIUS_PX) -> tuple[MatchResult | None, str | None]:
    """How a count's objects match its ground truth's, as :func:`evaluate_predictions` scores them: outlines by IoU
    (``"iou"``), dots inside a segmentation's objects (``"objects"``), dots near a density map's peaks
    (``"points"``); (None, None) for a truth of a count alone. ``gt`` as :func:`scored_truth` gives it."""
    if gt.labels is not None and res.labels is not None:
        return match_instances(gt.labels, res.labels, iou_threshold=iou_threshold), "iou"
    if gt.points is not None and res.labels is not None:  # a segmentation: dots inside its objects
        return match_points_in_objects(gt.points, res.labels), "objects"
    if gt.points is not None and len(res.peaks) + len(gt.points) > 0:
        return match_points(gt.points, res.peaks, radius_px=point_radius_px), "points"
    return None, None


def evaluate_predictions(
    pairs: Sequence[Pair],
    params: CountParams,
    *,
    iou_threshold: float = 0.5,
    point_radius_px: float = POINT_RADIUS_PX,
    keep_results: bool = True,
    measure: bool = False,
) -> EvaluationReport:
    """Postprocess each prediction with ``params`` and compare with its ground truth.

    Instance metrics (tp/fp/fn, precision, recall, F1 at ``iou_threshold``) are computed for mask
    outputs against label ground truth; against dots, a mask output's objects match the dots inside them
    (one per object) and a density output's peaks the dots within ``point_radius_px``. The summary's
    ``match`` says which: "iou", "objects", "points" or "mixed".
    Ground truth whose shape differs from the image raises GroundTruthError naming the file.
    """
    from ..errors import GroundTruthError

    rows, matches, results = [], [], {}
    kinds = set()  # how objects were matched: "iou", "objects" (dots inside objects), "points" (near peaks)
    kept_edges = 0  # images whose truth cannot leave its edge objects out as the counts do
    for name, pred, gt in pairs:
        res = postprocess(pred, params, measure=measure)
        if (_edges_left_out(pred.output_kind, params) and gt.labels is None
                and not _count_keeps_edges(pred.output_kind, params)):
            kept_edges += 1
        gt = scored_truth(pred, params, gt)
        # a whole count as a whole number (not 105.0 beside a true 105); a density integral as it is
        counted = res.count if res.count_estimate == res.count else res.count_estimate
        row: dict[str, Any] = {"file": name, "true": gt.count, "pred": counted}
        if gt.labels is not None and res.labels is not None and gt.labels.shape != res.labels.shape:
            raise GroundTruthError(
                f"ground truth for {name} has shape {gt.labels.shape}, the image {res.labels.shape}"
            )
        m, kind = match_objects(res, gt, iou_threshold=iou_threshold, point_radius_px=point_radius_px)
        if m is not None:
            matches.append(m)
            kinds.add(kind)
            some = bool(m.tp + m.fp + m.fn)  # nothing in the truth nor the count: no score (as the summary has none)
            row.update({"tp": m.tp, "fp": m.fp, "fn": m.fn, "precision": m.precision if some else np.nan,
                        "recall": m.recall if some else np.nan, "f1": m.f1 if some else np.nan,
                        "mean_iou": m.mean_matched_iou, "match": kind})
            if gt.labels is None and gt.points is not None and len(gt.points):
                # the dots matched with x and y swapped (a table's columns the wrong way round, annotation.py)
                row["f1_xy_swapped"] = swapped_f1(res, gt, point_radius_px)
            # counted where the annotation has nothing: a truth of part of the image (annotation.py)
            row["unannotated_share"], row["unannotated"] = unannotated_share(
                centres_of(res.labels, res.peaks if res.labels is None else None),
                centres_of(gt.labels, gt.points if gt.labels is None else None), pred.shape)
        if res.density_count is not None:
            row["density_count"] = res.density_count
        if res.quality is not None:
            row.update(res.quality.row())
            row.update({f"q_{k}": v for k, v in res.quality.signals.items()})
        row["model_scale"] = pred.model_scale
        row["estimated_diameter_px"] = pred.estimated_diameter_px
        row["backend"] = getattr(pred, "backend", None)  # backends count an object apart now and then: each row says
        row["model_seconds"] = pred.seconds.get("model", float("nan"))
        row["megapixels"] = pred.shape[0] * pred.shape[1] / 1e6
        rows.append(row)
        if keep_results:
            results[name] = res
    df = pd.DataFrame(rows)
    if len(df):
        df.insert(3, "error", df["pred"] - df["true"])
        df.insert(4, "abs_error", df["error"].abs())
        df.insert(5, "rel_error", np.where(df["true"] > 0, df["abs_error"] / df["true"].where(df["true"] > 0), np.nan))
    summary: dict[str, Any] = count_metrics(df["true"].to_numpy(), df["pred"].to_numpy()) if len(df) else {"n": 0}
    if matches:
        agg = aggregate_matches(matches)
        summary.update({"tp": agg.tp, "fp": agg.fp, "fn": agg.fn,
                        "f1_n": len(matches),  # images whose truth has objects or points to match (not a count alone)
                        "match": kinds.pop() if len(kinds) == 1 else "mixed"})
        if agg.tp + agg.fp + agg.fn:  # nothing in the truth or the counts: no F1 (0 of 0 is no score)
            summary.update({"precision": agg.precision, "recall": agg.recall, "f1": agg.f1,
                            "mean_iou": agg.mean_matched_iou})
    if kept_edges:
        summary[BORDER_TRUTH_KEPT] = kept_edges
    if len(df):
        summary["ms_per_megapixel"] = float(1000 * df["model_seconds"].sum() / df["megapixels"].sum())
        summary["model_seconds_median"] = float(df["model_seconds"].median())
    return EvaluationReport(per_image=df, summary=summary, results=results)


def recorded_table(per_image: pd.DataFrame, pairs: Sequence[Pair], model: Any, params: CountParams, *,
                   iou_threshold: float) -> pd.DataFrame:
    """``per_image`` (:func:`evaluate_predictions`) as written to a CSV (``evaluate --out``, the app's Per-image
    CSV): which annotation scored each image, the model and its settings (JSON), and the IoU threshold its objects
    were matched at (dots match by position, a count alone not at all), so that the file alone says what made it."""
    truth = {name: gt.source for name, _, gt in pairs}
    matched = per_image["match"] if "match" in per_image else [None] * len(per_image)
    return per_image.assign(ground_truth_file=per_image["file"].map(truth), model=model.name,
                            settings=params.settings_json(model.output_kind),
                            iou_threshold=[iou_threshold if m == "iou" else None for m in matched])


def _mae(pairs: Sequence[Pair], params: CountParams) -> float:
    true = [_true_count(p, params, gt) for _, p, gt in pairs]
    pred = [postprocess(p, params, measure=False).count_estimate for _, p, _ in pairs]
    return float(np.mean(np.abs(np.subtract(pred, true))))


def tune_params(
    pairs: Sequence[Pair],
    params: CountParams,
    *,
    grid: dict[str, list[Any]] | None = None,
    rounds: int = 2,
    progress: Callable[[int, int], None] | None = None,
    mae_tolerance: float = MAE_TOLERANCE,
    min_gain: float = 0.0,
) -> TuneResult:
    """Coordinate descent on count MAE over ``grid`` (default :data:`DEFAULT_GRID`), from ``params``;
    ``min_distance_px`` is tried only in the split modes that use it, and those modes with every grid
    distance (:func:`_candidates`); border split modes only for models with a border map.

    Only postprocessing is searched: the predictions are reused, the model never reruns. Density
    outputs have no tunable count parameters (the count is the integral) and return ``params`` as is.
    Then every setting tried whose MAE is within ``mae_tolerance`` (a fraction) of the best is scored for
    F1@0.5 against the ground-truth objects, and the best F1 wins (ties: lower MAE); ``mae_tolerance=0``
    or ground truth without objects (counts only) keeps the lowest MAE. ``min_gain``: a step is taken only
    when it lowers the MAE by at least this fraction (small gains on a few images are mostly noise).
    """
    grid = DEFAULT_GRID if grid is None else grid
    before = _mae(pairs, params)
    if not pairs or pairs[0][1].output_kind == "density":
        return TuneResult(params, before, before, pd.DataFrame([{**params.to_dict(), "mae": before}]))
    if "split_mode" in grid:  # only the modes this model can run
        borders = pairs[0][1].maps.shape[0] > 1
        grid = {**grid, "split_mode": [m for m in grid["split_mode"] if borders or m not in BORDER_SPLIT_MODES]}
    best, best_mae = params, before
    tried: dict[tuple, float] = {_signature(params): before}
    settings: dict[tuple, CountParams] = {_signature(params): params}  # the first setting of each identity
    total = rounds * sum(len(grid[key]) if key == "min_distance_px" else len(_candidates(grid, key, params))
                         for key in grid)  # an upper bound: the distance is tried only in some modes
    done = 0
    for sweep in range(2):  # again, once, where the walk past a grid's top moved a setting: the others around it
        for _ in range(rounds if sweep == 0 else 1):
            improved = False
            for key in grid:
                for change in _candidates(grid, key, best):
                    done += 1
                    try:
                        cand = dataclasses.replace(best, **change)
                    except ParameterError:  # conflicts with a fixed setting (e.g. min area above max area): skip
                        if progress:
                            progress(min(done, total), total)
                        continue
                    sig = _signature(cand)
                    if sig not in tried:
                        tried[sig], settings[sig] = _mae(pairs, cand), cand
                    if tried[sig] < best_mae * (1 - min_gain) - 1e-9:
                        best, best_mae, improved = cand, tried[sig], True
                    if progress:
                        progress(min(done, total), total)
            if not improved:
                break
        walked_from = best
        # a best value at the top of its grid: larger ones, a step at a time, until one counts worse
        for key, step in EDGE_STEPS.items():
            if key not in grid or len(grid[key]) < 2 or getattr(best, key) < max(grid[key]):
                continue  # (a start above the grid's top, a card's earlier tuning, walks on from there too)
            if key == "min_distance_px" and best.split_mode not in DISTANCE_SPLIT_MODES:
                continue
            value = getattr(best, key)
            for _ in range(MAX_EDGE_STEPS):
                value = step(value)
                try:
                    cand = dataclasses.replace(best, **{key: value}) if value is not None else None
                except ParameterError:  # conflicts with a fixed setting (e.g. min area above max area)
                    cand = None
                if cand is None:
                    break
                sig = _signature(cand)
                if sig not in tried:
                    tried[sig], settings[sig] = _mae(pairs, cand), cand
                if tried[sig] > best_mae + 1e-9:  # worse: the range is passed; level: walk on (a plateau ends)
                    break
                if tried[sig] < best_mae * (1 - min_gain) - 1e-9:
                    best, best_mae = cand, tried[sig]
        if best is walked_from:
            break
    scored = sorted(tried.items(), key=lambda kv: kv[1])  # (signature, mae), best first
    f1: dict[tuple, float] = {}
    has_objects = any(gt.labels is not None or gt.points is not None for _, _, gt in pairs)
    if mae_tolerance > 0 and has_objects:
        for sig, mae in scored:
            if mae > best_mae * (1 + mae_tolerance) + 1e-9:
                break
            f1[sig] = float(evaluate_predictions(pairs, settings[sig], keep_results=False).summary.get("f1", np.nan))
        ranked = sorted((sig for sig in f1 if np.isfinite(f1[sig])), key=lambda sig: (-f1[sig], tried[sig]))
        if ranked:
            best, best_mae = settings[ranked[0]], tried[ranked[0]]
    table = pd.DataFrame([{**settings[sig].to_dict(), "mae": mae, "f1": f1.get(sig, np.nan)} for sig, mae in scored])
    unused = ~table["split_mode"].isin(DISTANCE_SPLIT_MODES)
    table["min_distance_px"] = table["min_distance_px"].astype(object).where(~unused, None)  # shown as "none"
    return TuneResult(best, before, best_mae, table)


EDGE_KEYS = ("threshold", "min_distance_px", "min_area_px")
"""Numeric settings whose searched values are a range: a best value at its top may want a larger one."""
EDGE_STEPS: dict[str, Callable[[Any], Any]] = {
    "threshold": lambda v: round(v + 0.1, 2) if v < 0.85 else None,
    "min_distance_px": lambda v: v + 2 if v < 30 else None,
    "min_area_px": lambda v: int(round(max(1.5 * v, v + 10))),
}
"""The next larger value :func:`tune_params` tries for a setting whose best is at the top of its grid."""
MAX_EDGE_STEPS = 6
"""At most this many values beyond a grid's top (min_area_px: 50 -> 75 -> 112 -> ... -> 567)."""
EDGE_WALK_TEXT = ("if the best value is the largest tried, larger ones are tried too while they count no worse "
                  "(threshold in steps of 0.1 up to 0.9; distance 2 px more a step, up to 30; min. area half again, at "
                  f"least 10 px more, a step; at most {MAX_EDGE_STEPS} more)")
"""What :data:`EDGE_STEPS` do, in words, for the texts that list the values tried: the lists alone name neither the
0.9 nor the min. area of 75 a tuning can end at."""


def at_grid_edge(params: CountParams, grid: dict[str, list[Any]] | None = None, *,
                 tried: pd.DataFrame | None = None) -> str | None:
    """A sentence naming the settings of ``params`` at the largest value searched (``tried``: a tuning's table of
    every setting scored; else the top of ``grid``, default :data:`DEFAULT_GRID`), where a larger value may count
    better; None when none is. A setting at the grid's top may not be the best (min_area_px at 50, where 90
    can halve the error of large nuclei): the tuner steps past a top that wins, :data:`EDGE_STEPS`."""
    grid = DEFAULT_GRID if grid is None else grid
    top = []
    for key in EDGE_KEYS:
        if key == "min_distance_px" and params.split_mode not in DISTANCE_SPLIT_MODES:
            continue
        values = (pd.to_numeric(tried[key], errors="coerce").dropna().unique() if tried is not None and key in tried
                  else grid.get(key, []))
        if len(values) > 1 and getattr(params, key) == max(values):
            top.append(key)
    if not top:
        return None
    names = ", ".join(f"{key} {getattr(params, key):g}" for key in top)
    return f"at the top of the range searched ({names}): larger values were not tried and may count better"


def cross_check(pairs: Sequence[Pair], params: CountParams, *, folds: int = 4, seed: int = 0,
                progress: Callable[[int, int], None] | None = None, **tune_kw: Any) -> tuple[float, float]:
    """(MAE of ``params``, MAE of tuned settings) on images the tuning did not see: the images are split into
    ``folds`` parts, each part counted with settings tuned (:func:`tune_params`, ``tune_kw``) on the others,
    so every image is scored once by settings that never saw it. Whether tuning on a set this size helps.
    ``progress(parts done, parts)`` after each part. Per image, with how sure the difference is:
    :func:`cross_check_errors`."""
    start_err, tuned_err = cross_check_errors(pairs, params, folds=folds, seed=seed, progress=progress, **tune_kw)
    return float(np.mean(start_err)), float(np.mean(tuned_err))


CROSS_CHECK_FOLDS = 4
"""The parts a tuning's cross-check splits the images into (fewer with fewer images: :func:`cross_check_folds`)."""


def cross_check_folds(n_images: int, folds: int = CROSS_CHECK_FOLDS) -> int:
    """The parts :func:`cross_check_errors` splits ``n_images`` into: ``folds``, or one per image below that."""
    return min(folds, n_images)


def cross_check_errors(pairs: Sequence[Pair], params: CountParams, *, folds: int = CROSS_CHECK_FOLDS, seed: int = 0,
                       progress: Callable[[int, int], None] | None = None,
                       **tune_kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cross_check`'s absolute count errors per image (in ``pairs`` order): with ``params``, and with
    settings tuned on the other parts. :func:`cellcount.metrics.paired_difference` of the two says whether
    the gain is more than these images' chance."""
    n = len(pairs)
    if n < 2:
        raise ParameterError("cross-checking the tuning needs at least 2 images")
    order = np.random.default_rng(seed).permutation(n)
    start_err, tuned_err = np.zeros(n), np.zeros(n)
    parts = np.array_split(order, cross_check_folds(n, folds))
    for done, part in enumerate(parts, 1):
        held = set(part.tolist())
        train = [pairs[i] for i in range(n) if i not in held]
        tuned = tune_params(train, params, **tune_kw).best_params
        for p, errs in ((params, start_err), (tuned, tuned_err)):
            for i in part:
                _, pred, gt = pairs[i]
                errs[i] = abs(postprocess(pred, p, measure=False).count_estimate - _true_count(pred, p, gt))
        if progress:
            progress(done, len(parts))
    return start_err, tuned_err


def check_tunable(pairs: Sequence[Pair]) -> None:
    """Refuse to tune on images whose ground truth all hold no objects (negative controls): the tuning can only
    learn to count fewer (a high threshold, a large min. area), its own check calls that a gain, and the settings
    then miss real cells on other images."""
    if pairs and all(gt.count == 0 for _, _, gt in pairs):
        raise ParameterError(
            f"the ground truth of all {len(pairs)} images holds no objects: tuning on them can only learn to count fewer "
            "(settings that remove whatever is found), and such settings miss real cells elsewhere. Tune on images "
            "with cells; images without any are for checking the counts")


KIND_MIN_IMAGES = 3
"""Images of each kind (bright and dark background) a set needs before :func:`tuning_kinds_note` judges them."""


def tuning_kinds_note(pairs: Sequence[Pair], start_err: np.ndarray, tuned_err: np.ndarray) -> str | None:
    """Where a set mixes bright-background (brightfield, H&E) and fluorescence images, at least
    :data:`KIND_MIN_IMAGES` of each, and :func:`cross_check_errors` finds the tuning helps one kind while the other
    counts worse: which, with each kind's MAE (the set's one verdict hides it); None otherwise."""
    bright = np.array([bool(getattr(pred, "inverted", False)) for _, pred, _ in pairs])
    if min(bright.sum(), (~bright).sum()) < KIND_MIN_IMAGES:
        return None
    kinds = {"bright-background (brightfield, H&E)": bright, "fluorescence (dark-background)": ~bright}
    mae = {k: (int(m.sum()), float(np.mean(start_err[m])), float(np.mean(tuned_err[m]))) for k, m in kinds.items()}
    better = [k for k, (_, a, b) in mae.items() if b < a]
    worse = [k for k, (_, a, b) in mae.items() if b > a]
    if not better or not worse:
        return None
    (nb, ab, bb), (nw, aw, bw) = mae[better[0]], mae[worse[0]]
    return (f"the gain comes from the {nb} {better[0]} images (MAE {fixed(ab)} -> {fixed(bb)} on images each tuning did "
            f"not see); the {nw} {worse[0]} images count worse with the tuned settings ({fixed(aw)} -> {fixed(bw)}): "
            "tune on images of the kind you will count, or on each kind apart")


@dataclass(frozen=True)
class TuningCheck:
    """What :func:`cross_check_errors` says about tuning on a set: the MAE on images each tuning did not see
    with the settings it started from (``kept``) and tuned (``tuned``), and the paired 95% interval of
    ``tuned - kept`` (NaN under :data:`cellcount.metrics.MIN_BOOTSTRAP_IMAGES` images)."""

    kept: float
    tuned: float
    low: float
    high: float

    @classmethod
    def of(cls, start_err: np.ndarray, tuned_err: np.ndarray) -> TuningCheck:
        from ..metrics import paired_difference

        d = paired_difference(start_err, tuned_err)
        return cls(float(np.mean(start_err)), float(np.mean(tuned_err)), d["low"], d["high"])

    @property
    def verdict(self) -> str:
        """"helps" (lower, and the interval excludes no gain), "unsure" (lower, within chance) or "no gain"."""
        if self.tuned >= self.kept:
            return "no gain"
        return "helps" if self.high < 0 else "unsure"

    def interval_text(self) -> str:
        if not np.isfinite([self.low, self.high]).all():
            return "too few images for an interval"
        return f"95% interval of the change {fixed(self.low, sign=True)} to {fixed(self.high, sign=True)}"


def _signature(params: CountParams) -> tuple:
    """A setting's identity for the tuner: in split modes that ignore ``min_distance_px`` its value is
    replaced by the schema default, so "borders at 0" and "borders at 4" are tried once (the tuner keeps and
    returns the setting itself, whose distance is the user's)."""
    d = params.to_dict()
    if d["split_mode"] not in DISTANCE_SPLIT_MODES:
        d["min_distance_px"] = SCHEMA["min_distance_px"].default
    return tuple(sorted(d.items(), key=str))


def _candidates(grid: dict[str, list[Any]], key: str, current: CountParams) -> list[dict[str, Any]]:
    """The changes one step of :func:`tune_params` tries for ``key``.

    ``min_distance_px`` acts only in :data:`DISTANCE_SPLIT_MODES`, so it is tried only there, and a split
    mode that uses it is tried with each grid distance: a mode judged at one distance (the card's) alone
    would lose to another mode that its own best distance beats.
    """
    if key == "min_distance_px":
        return [{key: v} for v in grid[key]] if current.split_mode in DISTANCE_SPLIT_MODES else []
    if key == "split_mode" and "min_distance_px" in grid:
        return [{key: m, "min_distance_px": d} if m in DISTANCE_SPLIT_MODES else {key: m}
                for m in grid[key] for d in (grid["min_distance_px"] if m in DISTANCE_SPLIT_MODES else [None])]
    return [{key: v} for v in grid[key]]


def worse_images(pairs: Sequence[Pair], before: CountParams, after: CountParams) -> pd.DataFrame:
    """The images whose count is further from the truth with ``after`` than with ``before`` (settings tuned on
    a set fit the set as a whole, not every image in it): file, true count, both counts, worst first."""
    rows = []
    for name, pred, gt in pairs:
        a = postprocess(pred, before, measure=False).count_estimate
        b = postprocess(pred, after, measure=False).count_estimate
        ta, tb = _true_count(pred, before, gt), _true_count(pred, after, gt)
        if abs(b - tb) > abs(a - ta) + 1e-9:
            rows.append({"file": name, "true": tb, "before": a, "after": b,
                         "worse_by": abs(b - tb) - abs(a - ta)})
    df = pd.DataFrame(rows, columns=["file", "true", "before", "after", "worse_by"])
    return df.sort_values("worse_by", ascending=False, ignore_index=True)


def calibrate_density(pairs: Sequence[Pair]) -> tuple[float, float, float]:
    """Count gain ``k`` for a density model: the ``k`` minimising the MAE of ``k x integral`` on ``pairs``.

    A density network trained with a pixel-wise loss shrinks its peaks (and so its counts) by a roughly
    constant factor; one gain fitted on tuning images corrects that without touching the map's shape.
    The minimiser of sum |k p_i - t_i| is the p-weighted median of t_i / p_i. Returns (k, MAE before,
    MAE after); ``k`` is 1 when nothing was predicted.
    """
    true = np.array([gt.count for _, _, gt in pairs], np.float64)
    pred = np.array([float(p.maps[0].sum(dtype=np.float64)) for _, p, _ in pairs])
    before = float(np.mean(np.abs(pred - true))) if len(pairs) else float("nan")
    ok = pred > 0
    if not ok.any():
        return 1.0, before, before
    ratio, w = true[ok] / pred[ok], pred[ok]
    order = np.argsort(ratio)
    cum = np.cumsum(w[order])
    k = float(ratio[order][np.searchsorted(cum, 0.5 * cum[-1])])
    if k <= 0:  # most of the mass on images with no cells: a gain of 0 would count nothing anywhere
        raise ParameterError("the count gain fitted on these images is 0 (most of the model's density lies on images "
                             "whose ground truth holds no objects): calibrate on images with cells")
    return k, before, float(np.mean(np.abs(k * pred - true)))


def labelled_items(data: str, split: str, limit: int | None, val_fraction: float, split_seed: int, *,
                   on_error=None, notes: dict[str, str] | None = None, paths: dict[str, Path] | None = None,
                   missing: list[Path] | None = None, page: int | str | None = None,
                   stacks: set[str] | None = None):
    """(name, image, ground truth) of the labelled images of ``data`` in ``split`` (the first ``limit``).
    ``on_error(path, reason)``: an image or ground truth that cannot be used is reported there and left out
    (:func:`cellcount.groundtruth.load_labelled_folder`); without it the first one raises. ``notes``: filled
    with name -> why its score may not be what was meant (only the first plane of a stack was read), for
    :func:`with_read_notes`. ``paths``: filled with name -> file of each image yielded. ``missing``: filled
    with the folder's images left out for want of ground truth (each logged as a warning), of any split, as
    ``on_error`` is called for any. ``page``: the plane of z-stacks (or ``"max"``, their projection) to score, as the
    Compare page's Z-stacks choice reads them (a one-plane file as it is); ``stacks``: filled with the names of the
    files that held several planes."""
    from ..errors import CellcountError, PlaneError
    from ..groundtruth import item_names, load_labelled_folder
    from ..io import read_image_planes
    from ..io.read import planes_as_channels, unapplied_plane_note
    from ..training.data import dsb_part

    pairs = load_labelled_folder(data, on_error=on_error, on_missing=None if missing is None else missing.extend)
    # named among the whole folder: an image keeps its name with --split and --limit (plate1/A01.png either way)
    name_of = dict(zip([p for p, _ in pairs], item_names(data, [p for p, _ in pairs]), strict=True))
    if split != "all":
        def part(name: str) -> str:
            p = dsb_part(name, val_fraction, split_seed)
            return "heldout" if split == "heldout" and p != "train" else p

        pairs = [(p, gt) for p, gt in pairs if part(p.name) == split]
    if limit:
        pairs = pairs[:limit]
    for path, gt in pairs:
        name = name_of[path]
        try:
            try:
                image, planes = read_image_planes(path, page=page)
            except PlaneError as err:
                if page is None or err.n_planes != 1:
                    raise
                image, planes = read_image_planes(path)  # one plane: scored as it is, as Batch counts it
                if notes is not None and np.ndim(image) == 3 and np.shape(image)[2] > 1 and planes_as_channels(path):
                    # a stack saved without its axes reads as channels: the plane asked cannot be applied, said
                    notes[name_of[path]] = f"{name_of[path]}: {unapplied_plane_note(page, np.shape(image)[2])}"
        except CellcountError as err:
            if on_error is None:
                raise
            on_error(path, str(err))
            continue
        if planes is not None and stacks is not None:
            stacks.add(name)
        if planes is not None and notes is not None and page is None:
            notes[name] = (f"{name}: the file holds {planes[0]} {planes[1]}; only the first was read and "
                           "scored (save the plane that was annotated as a file of its own)")
        if paths is not None:
            paths[name] = path
        yield name, image, gt


def with_read_notes(pairs: list[Pair], notes: dict[str, str]) -> list[Pair]:
    """``pairs`` whose images have a note from :func:`labelled_items` carry it into their quality flag, as a
    count of that file does."""
    from ..pipeline import _notes

    return [(n, dataclasses.replace(p, input_note=_notes(p.input_note, notes[n])) if n in notes else p, gt)
            for n, p, gt in pairs]
