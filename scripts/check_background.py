"""How often the bright-background test misreads images, per data set, and what the misreading costs.

    python scripts/check_background.py [--datasets ../shared/datasets] [--models unet-density unet-mask]
        [--limit 12]

For every image of dsb2018 (truth: metadata.csv's ``bright_background``), vgg_cells (fluorescence) and mbm
(H&E, bright): the decision of :func:`cellcount.io.is_bright_background` and of the median rule alone (the
rule before the skewness test). Then, on up to ``--limit`` images the median rule gets wrong, each model's
count error with the image inverted (what the median rule did) and as read now. Prints the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cellcount as cc  # noqa: E402
from cellcount.io.normalize import BRIGHT_BACKGROUND_POSITION, is_bright_background, to_gray  # noqa: E402
from cellcount.models import size_model_for  # noqa: E402
from cellcount.models.autotune import cpu_model  # noqa: E402


def median_rule(image: np.ndarray) -> bool:
    g = to_gray(image)
    lo, mid, hi = np.percentile(g, [0.1, 50.0, 99.9])
    return bool(hi > lo and (mid - lo) / (hi - lo) > BRIGHT_BACKGROUND_POSITION)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--models", nargs="+", default=["unet-density", "unet-mask"])
    ap.add_argument("--limit", type=int, default=12)
    args = ap.parse_args()
    meta = pd.read_csv(args.datasets / "dsb2018" / "metadata.csv").set_index("filename")["bright_background"]
    sets = {"dsb2018": lambda name: bool(meta[name]), "vgg_cells": lambda name: False, "mbm": lambda name: True}
    print(f"machine: {cpu_model()}")
    print("| set | images | median rule wrong | now wrong |\n|---|---|---|---|")
    misread: list[tuple[str, str]] = []
    for folder, truth in sets.items():
        files = sorted((args.datasets / folder / "images").iterdir())
        old = new = 0
        for f in files:
            img = cc.read_image(f)
            o, n = median_rule(img) != truth(f.name), is_bright_background(img) != truth(f.name)
            old, new = old + o, new + n
            if o:
                misread.append((folder, f.name))
        print(f"| {folder} | {len(files)} | {old} | {new} |")
    picked = misread[: args.limit]
    if not picked:
        return 0
    print(f"\nCount error (|count - truth|, mean) on {len(picked)} images the median rule misread:")
    print("| model | inverted (median rule) | as read now |\n|---|---|---|")
    for name in args.models:
        model = cc.load_model(name)
        errs: dict[bool, list[float]] = {True: [], False: []}
        for folder, fname in picked:
            counts = pd.read_csv(args.datasets / folder / "counts.csv").set_index("filename")["count"]
            img = cc.read_image(args.datasets / folder / "images" / fname)
            for inverted in (True, False):
                params = cc.resolve_params(model, {"invert": inverted if inverted else None})
                res = cc.count_image(img, model, params, size_model=size_model_for(model, params))
                errs[inverted].append(abs(res.count - counts[fname]))
        print(f"| {name} | {np.mean(errs[True]):.1f} | {np.mean(errs[False]):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
