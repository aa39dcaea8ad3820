"""Evaluate a model against ground truth and tune postprocessing on it.

CLI: ``python -m cellcount.evaluate --model NAME --data DIR [--split train|val|test|heldout|all] [--out per_image.csv]
[--tune [--write-card]]``. DIR holds images with label images, masks, dots, a counts CSV, or the DSB
layout (see :func:`cellcount.groundtruth.load_labelled_folder`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ParameterError
from .groundtruth import GroundTruth
from .metrics import aggregate_matches, count_metrics, match_instances, match_points
from .models.base import CountModel
from .pipeline import CountParams, CountResult, Prediction, postprocess, predict, resolve_params

logger = logging.getLogger(__name__)

Pair = tuple[str, Prediction, GroundTruth]

# Search space of the postprocessing tuner (mask models). Coordinate descent over these values.
DEFAULT_GRID: dict[str, list[Any]] = {
    "threshold": [0.3, 0.4, 0.5, 0.6, 0.7],
    "opening_radius_px": [0, 1, 2],
    "min_distance_px": [2, 3, 4, 5, 6, 8, 10],
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


MAE_TOLERANCE = 0.01
"""Settings whose count MAE is within this fraction of the best one count as equally good; among them the
tuner takes the best F1@0.5 (outlines), so it does not trade segmentation quality for a count difference
of a hundredth of a cell per image."""


def predict_pairs(
    items: Sequence[tuple[str, np.ndarray, GroundTruth]],
    model: CountModel,
    params: CountParams,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[Pair]:
    """Run the model once per image (the slow part), keeping predictions for evaluation and tuning."""
    out = []
    for i, (name, image, gt) in enumerate(items):
        out.append((name, predict(image, model, params), gt))
        if progress:
            progress(i + 1, len(items))
    return out


def evaluate_predictions(
    pairs: Sequence[Pair],
    params: CountParams,
    *,
    iou_threshold: float = 0.5,
    point_radius_px: float = 5.0,
    keep_results: bool = True,
    measure: bool = False,
) -> EvaluationReport:
    """Postprocess each prediction with ``params`` and compare with its ground truth.

    Instance metrics (tp/fp/fn, precision, recall, F1 at ``iou_threshold``) are computed for mask
    outputs against label ground truth; point metrics (within ``point_radius_px``) against dots.
    Ground truth whose shape differs from the image raises GroundTruthError naming the file.
    """
    from .errors import GroundTruthError

    rows, matches, results = [], [], {}
    for name, pred, gt in pairs:
        res = postprocess(pred, params, measure=measure)
        row: dict[str, Any] = {"file": name, "true": gt.count, "pred": res.count_estimate}
        m = None
        if gt.labels is not None and res.labels is not None:
            if gt.labels.shape != res.labels.shape:
                raise GroundTruthError(
                    f"ground truth for {name} has shape {gt.labels.shape}, the image {res.labels.shape}"
                )
            m = match_instances(gt.labels, res.labels, iou_threshold=iou_threshold)
        elif gt.points is not None and len(res.peaks) + len(gt.points) > 0:
            m = match_points(gt.points, res.peaks, radius_px=point_radius_px)
        if m is not None:
            matches.append(m)
            row.update({"tp": m.tp, "fp": m.fp, "fn": m.fn, "precision": m.precision, "recall": m.recall,
                        "f1": m.f1, "mean_iou": m.mean_matched_iou})
        if res.density_count is not None:
            row["density_count"] = res.density_count
        if res.quality is not None:
            row.update(res.quality.row())
            row.update({f"q_{k}": v for k, v in res.quality.signals.items()})
        row["model_scale"] = pred.model_scale
        row["estimated_diameter_px"] = pred.estimated_diameter_px
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
        summary.update({"tp": agg.tp, "fp": agg.fp, "fn": agg.fn, "precision": agg.precision,
                        "recall": agg.recall, "f1": agg.f1, "mean_iou": agg.mean_matched_iou,
                        "match": "iou" if any(gt.labels is not None for _, _, gt in pairs) else "points"})
    if len(df):
        summary["ms_per_megapixel"] = float(1000 * df["model_seconds"].sum() / df["megapixels"].sum())
    return EvaluationReport(per_image=df, summary=summary, results=results)


def _mae(pairs: Sequence[Pair], params: CountParams) -> float:
    true = [gt.count for _, _, gt in pairs]
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
) -> TuneResult:
    """Coordinate descent on count MAE over ``grid`` (default :data:`DEFAULT_GRID`), from ``params``;
    ``min_distance_px`` is left out when ``params.split_mode`` does not use it.

    Only postprocessing is searched: the predictions are reused, the model never reruns. Density
    outputs have no tunable count parameters (the count is the integral) and return ``params`` as is.
    Then every setting tried whose MAE is within ``mae_tolerance`` (a fraction) of the best is scored for
    F1@0.5 against the ground-truth objects, and the best F1 wins (ties: lower MAE); ``mae_tolerance=0``
    or ground truth without objects (counts only) keeps the lowest MAE.
    """
    grid = DEFAULT_GRID if grid is None else grid
    if params.split_mode not in ("distance", "both"):  # min_distance_px acts only in these split modes
        grid = {k: v for k, v in grid.items() if k != "min_distance_px"}
    before = _mae(pairs, params)
    if not pairs or pairs[0][1].output_kind == "density":
        return TuneResult(params, before, before, pd.DataFrame([{**params.to_dict(), "mae": before}]))
    best, best_mae = params, before
    tried: dict[tuple, float] = {tuple(sorted(params.to_dict().items(), key=str)): before}
    total = rounds * sum(len(v) for v in grid.values())
    done = 0
    for _ in range(rounds):
        improved = False
        for key, values in grid.items():
            for v in values:
                done += 1
                try:
                    cand = dataclasses.replace(best, **{key: v})
                except ParameterError:  # conflicts with a fixed setting (e.g. min area above max area): skip
                    if progress:
                        progress(done, total)
                    continue
                sig = tuple(sorted(cand.to_dict().items(), key=str))
                if sig not in tried:
                    tried[sig] = _mae(pairs, cand)
                if tried[sig] < best_mae - 1e-9:
                    best, best_mae, improved = cand, tried[sig], True
                if progress:
                    progress(done, total)
        if not improved:
            break
    scored = sorted(tried.items(), key=lambda kv: kv[1])  # (signature, mae), best first
    f1: dict[tuple, float] = {}
    has_objects = any(gt.labels is not None or gt.points is not None for _, _, gt in pairs)
    if mae_tolerance > 0 and has_objects:
        for sig, mae in scored:
            if mae > best_mae * (1 + mae_tolerance) + 1e-9:
                break
            f1[sig] = float(evaluate_predictions(pairs, CountParams(**dict(sig)), keep_results=False)
                            .summary.get("f1", np.nan))
        ranked = sorted((sig for sig in f1 if np.isfinite(f1[sig])), key=lambda sig: (-f1[sig], tried[sig]))
        if ranked:
            best, best_mae = CountParams(**dict(ranked[0])), tried[ranked[0]]
    table = pd.DataFrame([{**dict(sig), "mae": mae, "f1": f1.get(sig, np.nan)} for sig, mae in scored])
    return TuneResult(best, before, best_mae, table)


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
    return k, before, float(np.mean(np.abs(k * pred - true)))


def _load_items(data: str, split: str, limit: int | None, val_fraction: float, split_seed: int):
    from .groundtruth import load_labelled_folder
    from .io import read_image
    from .training.data import dsb_part

    pairs = load_labelled_folder(data)
    if split != "all":
        def part(name: str) -> str:
            p = dsb_part(name, val_fraction, split_seed)
            return "heldout" if split == "heldout" and p != "train" else p

        pairs = [(p, gt) for p, gt in pairs if part(p.name) == split]
    if limit:
        pairs = pairs[:limit]
    for path, gt in pairs:
        yield path.name, read_image(path), gt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cellcount.evaluate", description="Evaluate a model on labelled images.")
    p.add_argument("--model", required=True, help="model name (python -m cellcount models) or folder")
    p.add_argument("--data", required=True, help="folder with images + ground truth, or DSB layout")
    p.add_argument("--split", choices=["all", "train", "val", "test", "heldout"], default="all",
                   help="DSB-style deterministic split by file name (cellcount.training.data.dsb_part): 'val' "
                   "chooses models and settings, 'test' is scored once, 'heldout' is both (the validation split "
                   "of earlier rounds); default all")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--settings", help="settings JSON with postprocessing overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--out", help="per-image CSV path")
    p.add_argument("--json", help="write the summary as JSON here")
    p.add_argument("--tune", action="store_true",
                   help="search postprocessing settings on this data (density models: fit the count gain)")
    p.add_argument("--write-card", action="store_true", help="with --tune: store the best settings in the card")
    p.add_argument("--record-metrics", action="store_true",
                   help="store this evaluation's summary as the card's validation metrics")
    p.add_argument("--save-settings", help="write the (tuned) settings JSON here (loadable by the app and CLI)")
    p.add_argument("--exact", action="store_true", help="plain fp32 path (default: the fast path)")
    p.add_argument("--calibrate-quality", action="store_true",
                   help="fit the quality flag's limits on this data (at most 20%% flagged, most large errors "
                   "held); with --write-card store them in the card")
    return p


def _overrides(args) -> dict[str, Any]:
    from .pipeline import params_from_file

    ov: dict[str, Any] = {}
    if args.settings:
        ov.update(params_from_file(args.settings))
    for kv in args.set:
        k, _, v = kv.partition("=")
        try:
            ov[k] = json.loads(v) if v not in ("", "None") else None
        except ValueError as err:
            raise ParameterError(f"--set {kv}: the value must be a JSON number, true/false or null ({err})") from err
    return ov


def _card_folder(ref: str, name: str) -> Path:
    """The weights folder whose card.json ``--write-card`` / ``--record-metrics`` update."""
    from .models.loading import _model_folder

    return Path(ref) if (Path(ref) / "card.json").is_file() else _model_folder(name, None)


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation CLI. Exit codes: 0 done; 2 bad input (model, card, data, ground truth, settings,
    an unwritable output), with a one-line reason on stderr; 130 interrupted."""
    from .errors import run_cli

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from .csvout import atomic_write_bytes, write_csv
    from .models import load_model
    from .models.card import write_card

    model = load_model(args.model)
    params = resolve_params(model, _overrides(args))
    t0 = time.perf_counter()
    items = list(_load_items(args.data, args.split, args.limit, args.val_fraction, args.split_seed))
    if not items:
        raise ParameterError(f"no labelled images in {args.data} with --split {args.split}"
                             + (f" and --limit {args.limit}" if args.limit is not None else ""))
    logger.info("%d images with ground truth from %s (split %s)", len(items), args.data, args.split)
    pairs = [(n, predict(img, model, params, fast=not args.exact), gt) for n, img, gt in items]
    logger.info("predicted in %.1fs", time.perf_counter() - t0)
    if args.tune and model.output_kind == "density":
        k, before, after = calibrate_density(pairs)
        print(f"density calibration: count gain {k:.4f}; MAE {before:.3f} -> {after:.3f}")
        pairs = [(n, dataclasses.replace(p, maps=p.maps * np.float32(k)), gt) for n, p, gt in pairs]
        if args.write_card and hasattr(model, "net"):
            card = model.card
            old_scale = card.density_scale
            card.density_scale = old_scale / k
            # the gain was fitted on predictions with this size mode: it becomes the card's default too
            card.postprocess = {**card.postprocess, "auto_nucleus_size": params.auto_nucleus_size}
            card.postprocess_tuned_on = (
                f"count gain {k:.4f} (density_scale {old_scale:g} -> {card.density_scale:.4f}) fitted on "
                f"{len(pairs)} images of {args.data} (split {args.split}, limit {args.limit}); "
                f"count MAE {before:.3f} -> {after:.3f} by cellcount.evaluate --tune"
            )
            folder = _card_folder(args.model, model.name)
            write_card(card, folder)
            print(f"wrote the calibrated density scale into {folder / 'card.json'}")
    elif args.tune:
        tr = tune_params(pairs, params)
        changed = {k: v for k, v in tr.best_params.to_dict().items() if params.to_dict()[k] != v}
        print(f"tuning: MAE {tr.before:.3f} -> {tr.after:.3f}; changed {changed or 'nothing'}")
        params = tr.best_params
        if args.write_card and hasattr(model, "net"):
            card = model.card
            # auto_nucleus_size too: the settings were tuned on its predictions, so they belong together
            keys = ["threshold", "opening_radius_px", "closing_radius_px", "fill_holes", "split_mode",
                    "min_distance_px", "min_area_px", "max_area_px", "peak_min_distance_px", "auto_nucleus_size"]
            card.postprocess = {k: params.to_dict()[k] for k in keys}
            card.postprocess_tuned_on = (
                f"{len(pairs)} images of {args.data} (split {args.split}, limit {args.limit}); "
                f"count MAE {tr.before:.3f} -> {tr.after:.3f} by cellcount.evaluate --tune"
            )
            folder = _card_folder(args.model, model.name)
            write_card(card, folder)
            print(f"wrote tuned settings into {folder / 'card.json'}")
    if args.save_settings:
        atomic_write_bytes(args.save_settings,
                           json.dumps({"model": model.name, "params": params.to_dict()}, indent=2).encode())
    rep = evaluate_predictions(pairs, params, iou_threshold=args.iou, keep_results=False)
    if args.out:
        write_csv(rep.per_image, args.out)
    s = rep.summary
    line = (f"{model.name}: n={s['n']} MAE={s['mae']:.2f} (95% CI {s['mae_ci_low']:.2f}-{s['mae_ci_high']:.2f}) RMSE={s['rmse']:.2f} bias={s['bias']:+.2f} "
            f"MAPE={s['mape']:.1f}% R2={s['r2']:.3f}")
    if "f1" in s:
        line += f" precision={s['precision']:.3f} recall={s['recall']:.3f} F1@{args.iou}={s['f1']:.3f}"
    line += f" | {s.get('ms_per_megapixel', float('nan')):.0f} ms/Mpx, {1000 * rep.per_image['model_seconds'].mean():.0f} ms/image"
    print(line)
    if "check" in rep.per_image:
        signals = [{k[2:]: float(v) for k, v in row.items() if k.startswith("q_")}
                   for row in rep.per_image.to_dict("records")]
        if args.calibrate_quality:
            from .quality import QualityRule, calibrate_rule

            rule, qrep = calibrate_rule(signals, rep.per_image["rel_error"].to_numpy(), base=QualityRule.from_card(model.card))
            print(f"quality flag calibrated: {rule.to_dict()}")
            if args.write_card and hasattr(model, "net"):
                model.card.extra = {**model.card.extra, "quality": {
                    "rule": rule.to_dict(), "calibration": qrep,
                    "calibrated_on": f"{len(pairs)} images of {args.data} (split {args.split}) by "
                                     "cellcount.evaluate --calibrate-quality"}}
                write_card(model.card, _card_folder(args.model, model.name))
                print("wrote the quality rule into the card")
            model_rule = rule
        else:
            model_rule = None
        from .quality import flag_report, judge

        flags = ([judge(x, model_rule).flag for x in signals] if model_rule is not None
                 else rep.per_image["check"].astype(bool).tolist())
        q = flag_report(flags, rep.per_image["rel_error"].to_numpy())
        s.update({"flagged_share": q["flagged_share"], "large_errors": q["large_errors"],
                  "large_errors_flagged_share": q["large_errors_flagged_share"]})
        print(f"quality flag: {q['flagged_share']:.0%} of {q['n']} images flagged; {q['large_errors']} large errors "
              f"(> 15%), {q['large_errors_flagged_share']:.0%} of them flagged")
    if args.record_metrics and hasattr(model, "net"):
        folder = _card_folder(args.model, model.name)
        summary = {k: v for k, v in s.items() if k != "match"}
        default_auto = bool(model.card.postprocess.get("auto_nucleus_size", False))
        if params.auto_nucleus_size != default_auto:  # the card's other size mode: kept beside its defaults
            key = "validation_auto_nucleus_size" if params.auto_nucleus_size else "validation_fixed_size"
            model.card.metrics = {**model.card.metrics, key: summary}
        else:
            model.card.metrics = {
                "validation": summary,
                "validation_note": (f"python -m cellcount.evaluate on {args.data} split {args.split} "
                                    f"({s['n']} images, never used for training or tuning); "
                                    f"count metrics with the card's postprocessing; F1 at IoU {args.iou}"),
            }
        write_card(model.card, folder)
    if args.json:
        atomic_write_bytes(args.json, json.dumps({"model": model.name, "data": args.data, "split": args.split,
                                                  "params": params.to_dict(), **s}, indent=2, default=float).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
