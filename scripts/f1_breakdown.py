"""Where a mask model's F1@0.5 is lost on DSB: each missed nucleus and each extra object by cause, and what
the split modes change (issue #18: F1 >= 0.85 wanted).

    python scripts/f1_breakdown.py --model unet-mask --split val [--flips]

A "fraction" row sets the split distance to that fraction of each image's nucleus diameter (``min_distance_px``
0 = auto, whose fraction is :data:`cellcount.params.AUTO_DISTANCE_FRACTION`).

The model runs once per image; every variant below only re-runs the postprocessing. A true nucleus without
a match at IoU >= 0.5 is *merged* when the object covering most of it also covers most of another true
nucleus, *missed* when no object touches it, else *poorly outlined*; an extra object is *split* when the
nucleus under most of it has another object on most of its area too, *spurious* when it touches no nucleus,
else *poorly outlined*.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform

import cv2
import numpy as np

import cellcount.params
from cellcount.evaluate import evaluate_predictions, labelled_items, predict_pairs
from cellcount.groundtruth import GroundTruth
from cellcount.metrics import iou_matrix
from cellcount.models import load_model
from cellcount.params import resolve_params
from cellcount.pipeline import postprocess

VARIANTS = [
    {},
    {"split_mode": "distance", "min_distance_px": 4},
    {"split_mode": "distance", "min_distance_px": 6},
    {"split_mode": "both", "min_distance_px": 6},
    {"split_mode": "both", "min_distance_px": 8},
    {"split_mode": "both", "min_distance_px": 10},
    {"split_mode": "both", "min_distance_px": 12},
    # 0 = auto: a fraction of each image's nucleus diameter (cellcount.params.AUTO_DISTANCE_FRACTION)
    {"split_mode": "both", "min_distance_px": 0, "fraction": 0.3},
    {"split_mode": "both", "min_distance_px": 0, "fraction": 0.4},
    {"split_mode": "both", "min_distance_px": 0, "fraction": 0.5},
    {"split_mode": "both", "min_distance_px": 0, "fraction": 0.6},
]


def causes(true: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """Unmatched true nuclei and extra objects by cause (see the module docstring)."""
    iou = iou_matrix(true, pred)
    t_ids = np.nonzero(np.bincount(true.ravel().astype(np.int64))[1:])[0]
    p_ids = np.nonzero(np.bincount(pred.ravel().astype(np.int64))[1:])[0]
    iou = iou[np.ix_(t_ids, p_ids)]
    area_t = np.bincount(true.ravel())[t_ids + 1].astype(float)
    area_p = np.bincount(pred.ravel())[p_ids + 1].astype(float)
    # intersection from IoU: i = iou (a + b) / (1 + iou)
    inter = iou * (area_t[:, None] + area_p[None, :]) / (1 + iou)
    most_t = inter > 0.5 * area_t[:, None]  # object j covers most of nucleus i
    most_p = inter > 0.5 * area_p[None, :]  # nucleus i lies under most of object j
    out = dict.fromkeys(["missed", "merged", "poor_fn", "spurious", "split", "poor_fp"], 0)
    if iou.size == 0:
        out["missed"], out["spurious"] = len(t_ids), len(p_ids)
        return out
    for i in np.nonzero(iou.max(axis=1) < 0.5)[0]:
        if iou[i].max() == 0:
            out["missed"] += 1
        elif (most_t[:, np.argmax(iou[i])].sum() >= 2):
            out["merged"] += 1
        else:
            out["poor_fn"] += 1
    for j in np.nonzero(iou.max(axis=0) < 0.5)[0]:
        if iou[:, j].max() == 0:
            out["spurious"] += 1
        elif most_p[np.argmax(iou[:, j])].sum() >= 2:
            out["split"] += 1
        else:
            out["poor_fp"] += 1
    return out


def zoomed(item: tuple, zoom: float) -> tuple:
    """``(name, image, ground truth)`` resized by ``zoom``: the image linearly, the labels by nearest pixel."""
    if zoom == 1.0:
        return item
    name, image, gt = item
    size = (max(1, round(image.shape[1] * zoom)), max(1, round(image.shape[0] * zoom)))
    labels = cv2.resize(gt.labels.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
    count = int(np.count_nonzero(np.bincount(labels.ravel())[1:]))
    return name, cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), GroundTruth(
        kind="labels", count=count, labels=labels, source=gt.source)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-mask")
    ap.add_argument("--data", default="../shared/datasets/dsb2018")
    ap.add_argument("--split", default="val")
    ap.add_argument("--flips", action="store_true", help="count with test-time flips")
    ap.add_argument("--zoom", type=float, default=1.0,
                    help="resize every image and its labels by this factor first (another magnification)")
    args = ap.parse_args()
    model = load_model(args.model)
    base = resolve_params(model, {"test_time_flips": True} if args.flips else {})
    items = [zoomed(item, args.zoom) for item in labelled_items(args.data, args.split, None, 0.2, 0)]
    pairs = predict_pairs(items, model, base)
    print(f"{model.name} on {len(items)} images of {args.data} (split {args.split}, zoom {args.zoom:g}); "
          f"flips {args.flips}; "
          f"{platform.processor() or platform.machine()}")
    print("| settings | count MAE | bias | precision | recall | F1@0.5 | missed | merged | poorly outlined | "
          "spurious | split | poorly outlined (extra) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kw in VARIANTS:
        settings = {k: v for k, v in kw.items() if k != "fraction"}
        params = dataclasses.replace(base, **settings)
        cellcount.params.AUTO_DISTANCE_FRACTION = kw.get("fraction", 0.4)
        s = evaluate_predictions(pairs, params, keep_results=False).summary
        total = dict.fromkeys(["missed", "merged", "poor_fn", "spurious", "split", "poor_fp"], 0)
        for _, pred, gt in pairs:
            for k, v in causes(gt.labels, postprocess(pred, params).labels).items():
                total[k] += v
        name = ", ".join(f"{k}={v}" for k, v in kw.items()) or "the card's"
        print(f"| {name} | {s['mae']:.2f} | {s['bias']:+.2f} | {s['precision']:.3f} | {s['recall']:.3f} | "
              f"{s['f1']:.3f} | " + " | ".join(str(total[k]) for k in total) + " |", flush=True)


if __name__ == "__main__":
    main()
