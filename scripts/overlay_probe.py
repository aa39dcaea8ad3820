"""Where the burned-in-marks flag (``cellcount.overlay``) stands on real images (a probe, not a test).

    python scripts/overlay_probe.py [--datasets ../shared/datasets] [--model NAME] [--limit N]

Counts with the default model, and prints with the machine: the most flat strokes (:func:`stroke_objects`) among the
objects of any image of DSB (every part), the samples, vgg_cells and mbm, and how many reach ``MIN_STROKES``; then
DSB validation images with a time stamp and a scale bar drawn in white (Pillow's default font, 2x), as a microscope's
software draws them: the count before and after, the strokes found and whether the count is flagged for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cellcount as cc  # noqa: E402
from cellcount.io import list_image_files, read_image, to_gray  # noqa: E402
from cellcount.models.autotune import cpu_model  # noqa: E402
from cellcount.overlay import MIN_STROKES, stroke_objects  # noqa: E402
from cellcount.training.data import dsb_part  # noqa: E402


def stamped(gray: np.ndarray) -> np.ndarray:
    """``gray`` as 8-bit with a time stamp and a 10 px scale bar drawn in white near its lower edge."""
    from PIL import Image, ImageDraw

    pixels = np.clip(gray / max(float(gray.max()), 1e-9) * 230, 0, 230).astype(np.uint8)
    small = Image.new("L", (pixels.shape[1] // 2, 12), 0)
    ImageDraw.Draw(small).text((2, 1), "12:45:07 t=042", fill=255)
    text = np.asarray(small.resize((small.width * 2, small.height * 2), Image.NEAREST))
    out = pixels.copy()
    h = min(text.shape[0], out.shape[0])
    region = out[-h - 2:-2, : text.shape[1]]
    region[text[:h, : region.shape[1]] > 0] = 255
    out[-8:-4, -50:-10] = 255  # the scale bar
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--model", default=None, help="default: the default model")
    ap.add_argument("--limit", type=int, default=0, help="at most this many images per set (0: all)")
    args = ap.parse_args()
    model = cc.load_model(args.model or cc.models.default_model_name())
    print(f"machine: {cpu_model()}; model {model.name}; flagged from {MIN_STROKES} strokes")
    dsb = list_image_files(args.datasets / "dsb2018" / "images")
    sets = {"dsb2018 (all parts)": dsb, "samples": list_image_files(ROOT / "data" / "samples"),
            "vgg_cells": list_image_files(args.datasets / "vgg_cells" / "images"),
            "mbm": list_image_files(args.datasets / "mbm" / "images")}
    for name, files in sets.items():
        files = files[: args.limit] if args.limit else files
        found = []
        for f in files:
            image = read_image(f)
            result = cc.count_image(image, model)
            found.append((stroke_objects(result.labels, to_gray(image)), f.name[:16]))
        most = max(found)
        print(f"{name}: {len(found)} images, most strokes {most[0]} ({most[1]}), at {MIN_STROKES} or more: "
              f"{sum(n >= MIN_STROKES for n, _ in found)}")
    val = [f for f in dsb if dsb_part(f.name) == "val"]
    val = val[: args.limit] if args.limit else val
    flagged = 0
    print("DSB validation images with a time stamp and scale bar: count before -> after, strokes, flagged for them")
    for f in val:
        gray = to_gray(read_image(f))
        before = cc.count_image(gray, model).count
        image = stamped(gray)
        result = cc.count_image(image, model)
        n = stroke_objects(result.labels, to_gray(image))
        said = any("thin strokes of one flat value" in r for r in result.quality.reasons)
        flagged += said
        print(f"  {f.name[:16]}: {before} -> {result.count}, {n} strokes, {'flagged' if said else 'not flagged'}")
    print(f"flagged for their marks: {flagged} of {len(val)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
