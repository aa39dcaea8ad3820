"""Partly dotted or over-counted? The share of the base model's count far from every dot, on complete annotations
on the same annotations with the dots of each image's right half removed, and with every third dot kept.

The fine-tune says "fewer dots than cells?" of an image whose dots are under half what the base model finds on it,
and only where at least ``cellcount.finetune.reading.UNDOTTED_SHARE`` of that count lies more than
``FAR_SPACINGS`` dot spacings from every dot: a base that over-counts a completely dotted set (unet-density on H&E)
finds its extra objects near the dots, an image dotted in part leaves many far from them. Prints a Markdown table.

    python scripts/undotted_probe.py [--model unet-density] [--n 44]   # mbm's H&E images and their dots
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cellcount as cc
from cellcount.finetune.reading import FEW_DOTS, SCATTERED_DOTS, UNDOTTED_SHARE, few_dots_note, measure_annotated
from cellcount.groundtruth import GroundTruth, read_ground_truth
from cellcount.models.autotune import cpu_model

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="unet-density")
    ap.add_argument("--n", type=int, default=44, help="the first N images of the set, sorted by name")
    args = ap.parse_args()
    root = DATASETS / "mbm"
    if not root.is_dir():
        print(f"error: {root} not found", file=sys.stderr)
        return 2
    model = cc.load_model(args.model)
    images = sorted((root / "images").glob("*.png"))[: args.n]
    print(f"mbm, {args.model}, {cpu_model()}; noted where dots < {FEW_DOTS:g} x found and (far share >= "
          f"{UNDOTTED_SHARE:g} or dots < {SCATTERED_DOTS:g} x found)\n")
    print("| image | dots | found | dots / found | far share | noted | left-half dots | far share | noted "
          "| every third dot | far share | noted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in images:
        image = cc.read_image(path)
        gt = read_ground_truth(root / "dots" / f"{path.stem}.csv", expected_shape=image.shape)
        half = gt.points[gt.points[:, 1] < image.shape[1] / 2]
        third = gt.points[::3]
        cells, found = [], None
        for g in (gt, GroundTruth(kind="points", count=len(half), points=half, source="left half"),
                  GroundTruth(kind="points", count=len(third), points=third, source="every third")):
            _, _, found, undotted = measure_annotated(image, g, model)
            share = undotted / found if found and undotted is not None else float("nan")
            noted = few_dots_note([path.name], [g.count], [found], args.model, undotted=[undotted]) is not None
            cells += [str(g.count), f"{share:.3f}", "yes" if noted else "no"]
        ratio = gt.count / found if found else float("nan")
        print(f"| {path.name} | {cells[0]} | {found:.0f} | {ratio:.2f} | " + " | ".join(cells[1:]) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
