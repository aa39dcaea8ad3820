"""Where the overexposure note's limit and the smoothed channel comparison stand on real images (not a test).

    python scripts/exposure_probe.py [--datasets ../shared/datasets] [--model NAME]

Prints, with the machine: the largest clipped share (:func:`cellcount.io.normalize.clipped_share`) of the DSB
training and validation images, of the DSB test part, the generated samples, vgg_cells and mbm, by background, beside
the limit (``CLIPPED_SHARE``); the DSB bright-background test images brightened 1x, 1.6x, 2x and 3x (clipped at 255), each with
its clipped share, count against the truth and flag with the default model; and how many gray-as-RGB DSB training and
validation images (the first 60) :func:`cellcount.io.channels_differ` says mix stains once Gaussian noise of sigma
5, 10 and 25 is added to each channel independently.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cellcount as cc  # noqa: E402
from cellcount.io import channels_differ, is_bright_background, list_image_files, read_image  # noqa: E402
from cellcount.io.normalize import CLIPPED_SHARE, clipped_and_bright, clipped_share  # noqa: E402
from cellcount.training.data import dsb_part  # noqa: E402


def normalize_smooth() -> float:
    from cellcount.io import normalize

    return normalize.NOISE_SMOOTH_PX


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--model", default=None, help="default: the default model")
    ap.add_argument("--smooth", type=float, default=None, help="channels_differ's smoothing in px (NOISE_SMOOTH_PX); "
                    "0.001: none, as before it smoothed")
    ap.add_argument("--noise-only", action="store_true", help="only the channel comparison under noise")
    args = ap.parse_args()
    if args.smooth is not None:
        from cellcount.io import normalize

        normalize.NOISE_SMOOTH_PX = args.smooth
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; limit {CLIPPED_SHARE} of "
          "the nucleus pixels (bright background: the stained ones; dark: the bright ones)")
    dsb = list_image_files(args.datasets / "dsb2018" / "images")
    parts = {f: dsb_part(f.name) for f in dsb}
    sets = {"dsb2018 train+val": [f for f in dsb if parts[f] != "test"], "dsb2018 test": [f for f in dsb if parts[f] == "test"],
            "samples": list_image_files(ROOT / "data" / "samples"),
            "vgg_cells": list_image_files(args.datasets / "vgg_cells" / "images"),
            "mbm": list_image_files(args.datasets / "mbm" / "images")}
    for name, files in sets.items() if not args.noise_only else ():
        shares = [(*clipped_and_bright(read_image(f)), f.name[:12]) for f in files]
        for bright in (False, True):
            kind = [(s, n) for s, b, n in shares if b == bright]
            if kind:
                top = max(kind)
                print(f"{name}, {'bright' if bright else 'dark'} background: {len(kind)} images, largest clipped share "
                      f"{top[0]:.4f} ({top[1]}), 99th percentile {np.quantile([s for s, _ in kind], 0.99):.4f}, over "
                      f"the limit {sum(s > CLIPPED_SHARE for s, _ in kind)}")
    model = cc.load_model(args.model or cc.models.default_model_name())
    truth = {row.split(",")[0]: row.split(",")[1] for row in
             (args.datasets / "dsb2018" / "counts.csv").read_text().splitlines()[1:]}
    if not args.noise_only:
        print(f"\nbright-background DSB test images brightened, {model.name}: gain clipped-share count/truth flag")
    for f in sets["dsb2018 test"] if not args.noise_only else ():
        image = read_image(f)
        if image.ndim != 3 or not is_bright_background(image[..., :3].mean(axis=2)):
            continue
        cells = []
        for gain in (1, 1.6, 2, 3):
            bright = np.clip(image[..., :3].astype(np.float32) * gain, 0, 255).astype(np.uint8)
            r = cc.count_image(bright, model)
            cells.append(f"{gain}x {clipped_share(bright):.2f} {r.count}/{truth.get(f.name, '?')} "
                         f"{'flagged' if r.quality.flag else 'ok'}")
        print(f"{f.name[:12]}: " + "; ".join(cells))
    rng = np.random.default_rng(0)
    grey = []
    for f in sets["dsb2018 train+val"]:
        image = read_image(f)
        if image.ndim == 3 and np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]):
            grey.append(image[..., :3])
        if len(grey) == 60:
            break
    said = {sigma: sum(channels_differ(np.clip(g.astype(np.float32) + rng.normal(0, sigma, g.shape), 0, 255)
                                        .astype(np.uint8)) for g in grey) for sigma in (5, 10, 25)}
    print(f"\n{len(grey)} gray-as-RGB DSB train+val images with per-channel noise said to mix stains "
          f"(smoothing {normalize_smooth()} px): "
          + ", ".join(f"sigma {s}: {n}" for s, n in said.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
