"""Probe: could a mask model size nuclei from its own first pass, without the density size model?

For each DSB image of a split: the true median nucleus diameter (from the labels); the size model's estimate
(what ``auto_nucleus_size`` uses today); and two read off the mask model's own scale-1 objects: the median
object diameter, and the disc diameter of its foreground area per object (``area_count_size`` with the mask
model's own count in place of the density's). Then the count three ways: sized by the size model (today),
never resized, and resized by the own-objects disc diameter beyond ``AUTO_RESCALE_TOLERANCE`` (a second pass
of the same model, no second network). Prints the size estimates' log-correlation with the truth and the
share off by more than 25% / 50%, and each rule's count MAE and MAPE (docs/RESULTS.md, "Sizing without a
second network").

    python scripts/self_size_probe.py [--model unet-mask-varied] [--split val] [--limit 0] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from reference_diameter import median_diameter  # noqa: E402  (scripts/ is on the path when run as a script)

import cellcount as cc  # noqa: E402
from cellcount.groundtruth import read_label_image  # noqa: E402
from cellcount.params import resolve_params  # noqa: E402
from cellcount.sizing import AUTO_RESCALE_TOLERANCE, reference_diameter  # noqa: E402
from cellcount.training.data import dsb_part  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask-varied")
    p.add_argument("--split", default="val", choices=["train", "val"])
    p.add_argument("--limit", type=int, default=0, help="the first N images of the split (0: all)")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/dsb2018"))
    args = p.parse_args()
    root = Path(args.data)
    names = sorted(f.name for f in (root / "images").glob("*.png") if dsb_part(f.name) == args.split)
    names = names[: args.limit] if args.limit else names
    model = cc.load_model(args.model)
    card = resolve_params(model)
    if model.output_kind != "mask":
        p.error(f"{args.model} is not a mask model")
    size_model = cc.models.size_model_for(model, card)
    plain = card.replace(auto_nucleus_size=False)
    ref = reference_diameter(model.card)
    sizes: dict[str, list[float]] = {"truth": [], "size model": [], "own objects' median": [], "own disc": []}
    counts: dict[str, list[int]] = {"truth": [], "sized by the size model": [], "never resized": [],
                                    "sized by its own disc": []}
    reruns = 0
    for name in names:
        image = cc.read_image(root / "images" / name)
        truth = read_label_image(root / "labels" / name)
        sized = cc.predict(image, model, card, size_model=size_model)
        first = cc.predict(image, model, plain)
        objects = cc.postprocess(first, plain, image=image)
        n = max(objects.count, 1)
        disc = float(np.sqrt(4 * np.count_nonzero(first.maps[0] > 0.5) / (np.pi * n))) if objects.count else np.nan
        sizes["truth"].append(median_diameter(truth.labels))
        sizes["size model"].append(sized.estimated_diameter_px or np.nan)
        sizes["own objects' median"].append(float(np.median(objects.objects["equivalent_diameter_px"]))
                                            if objects.count else np.nan)
        sizes["own disc"].append(disc)
        own = objects.count
        if np.isfinite(disc) and abs(np.log(disc / ref)) > np.log(AUTO_RESCALE_TOLERANCE):
            again = plain.replace(nucleus_diameter_px=disc)
            own = cc.postprocess(cc.predict(image, model, again), again, image=image).count
            reruns += 1
        counts["truth"].append(truth.count)
        counts["sized by the size model"].append(cc.postprocess(sized, card, image=image).count)
        counts["never resized"].append(objects.count)
        counts["sized by its own disc"].append(own)
    true_d = np.asarray(sizes.pop("truth"))
    print(f"{args.model}, DSB {args.split} split, {len(names)} images")
    print("| size estimate | log-correlation with the truth | off by > 25% | off by > 50% |")
    print("|---|---|---|---|")
    for key, values in sizes.items():
        v = np.asarray(values, float)
        ok = np.isfinite(v)
        err = np.abs(np.log(v[ok] / true_d[ok]))
        print(f"| {key} | {np.corrcoef(np.log(v[ok]), np.log(true_d[ok]))[0, 1]:.3f} | {np.mean(err > np.log(1.25)):.0%} "
              f"| {np.mean(err > np.log(1.5)):.0%} |")
    t = np.asarray(counts.pop("truth"), float)
    print("\n| count | MAE | MAPE |\n|---|---|---|")
    for key, values in counts.items():
        e = np.abs(np.asarray(values, float) - t)
        print(f"| {key} | {e.mean():.2f} | {100 * np.mean(e / np.maximum(t, 1)):.1f}% |")
    print(f"\nown-disc reruns: {reruns} of {len(names)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
