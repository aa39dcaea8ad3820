"""Probes of accuracy levers that need no retraining, on the DSB validation split (model selection aid).

    python scripts/quality_probes.py --model attention-unet-mask --second residual-unet-mask

With the card's settings (``auto_nucleus_size`` included): (1) test-time flips (``test_time_flips``: probability maps averaged over the
identity and three flips), (2) averaging the probability maps of two mask models, (3) postprocessing tuned separately on
bright- and dark-background training-split images (120, as scripts/evaluate_all.sh), (4) the nucleus size
given (``nucleus_diameter_px``): each image's median ground-truth nucleus diameter, standing in for a user
who knows the magnification - it uses the labels, so it is not a blind score. Prints count MAE and F1@0.5
on the 98 validation images for each; ``--probes`` picks some.

    python scripts/quality_probes.py --probes known-size
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from reference_diameter import median_diameter  # noqa: E402

import cellcount as cc  # noqa: E402
from cellcount.evaluate import evaluate_predictions, labelled_items, tune_params  # noqa: E402
from cellcount.pipeline import predict, resolve_params  # noqa: E402


def line(label: str, pairs, params) -> None:
    s = evaluate_predictions(pairs, params, keep_results=False).summary
    print(f"| {label} | {s['mae']:.3f} | {s['f1']:.3f} |", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="attention-unet-mask")
    p.add_argument("--second", default="residual-unet-mask")
    p.add_argument("--data", default="../shared/datasets/dsb2018")
    p.add_argument("--tune-n", type=int, default=120)
    p.add_argument("--probes", default="flips,average,per-kind,known-size",
                   help="comma-separated subset of flips, average, per-kind, known-size")
    args = p.parse_args()
    probes = set(args.probes.split(","))
    model, second = cc.load_model(args.model), cc.load_model(args.second)
    params, params2 = resolve_params(model), resolve_params(second)
    sizer, sizer2 = cc.models.size_model_for(model), cc.models.size_model_for(second)  # loaded once
    val_items = list(labelled_items(args.data, "heldout", None, 0.2, 0))  # read once, used for both models
    val = [(n, predict(img, model, params, size_model=sizer), gt) for n, img, gt in val_items]
    print(f"| {args.model} on {len(val)} validation images | count MAE | F1@0.5 |\n|---|---|---|")
    line("card settings", val, params)
    if "flips" in probes:
        flipped = params.replace(test_time_flips=True)  # at the estimated size too, with auto_nucleus_size
        line("test-time flips (4 maps averaged)", [(n, predict(img, model, flipped, size_model=sizer), gt) for n, img, gt in val_items],
             params)
    if "average" in probes:
        second_maps = {n: predict(img, second, params2, size_model=sizer2).maps for n, img, _ in val_items}
        line(f"averaged with {args.second}",
             [(n, dataclasses.replace(pr, maps=(pr.maps + second_maps[n]) / 2), gt) for n, pr, gt in val], params)
    if "known-size" in probes:
        sized = [(n, predict(img, model, params.replace(nucleus_diameter_px=median_diameter(gt.labels))), gt)
                 for n, img, gt in val_items]
        line("nucleus size given (median ground-truth diameter per image)", sized, params)
    if "per-kind" not in probes:
        return 0
    train = [(n, predict(img, model, params, size_model=sizer), gt)
             for n, img, gt in labelled_items(args.data, "train", args.tune_n, 0.2, 0)]
    per_kind = []
    for inverted in (True, False):
        tuned = tune_params([t for t in train if t[1].inverted == inverted], params).best_params
        per_kind += [(t, tuned) for t in val if t[1].inverted == inverted]
    rows = [evaluate_predictions([t], q, keep_results=False).per_image for t, q in per_kind]
    mae = float(np.mean([abs(r["error"].iloc[0]) for r in rows]))
    print(f"| postprocessing tuned per image kind (bright / dark background) | {mae:.3f} | - |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
