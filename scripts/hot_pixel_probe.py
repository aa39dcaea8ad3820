"""Where the hot-pixel note (:func:`cellcount.io.normalize.hot_pixel_note`) stands on real images (not a test).

    python scripts/hot_pixel_probe.py [--datasets ../shared/datasets] [--limit N]

Prints, with the machine: how many images of DSB 2018, the generated samples, vgg_cells and mbm the note fires on
(its false alarms: none of them has hot pixels); then the first ``--limit`` DSB fluorescence images (dark
background) as a 12-bit camera's in a 16-bit file (x 12: nuclei up to about 3,000) with 0.1%, 0.2%, 0.5% and 2% of
their pixels at 65,535 (hot pixels) at random places, each with the share noted and the default model's count against
the clean image's (the count falls when they set the top of the range: from 0.2% at the default High percentile
99.8), and the count at the High percentile the note advises where it advises one (up to 0.5%).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cellcount as cc  # noqa: E402
from cellcount.io import hot_pixel_note, is_bright_background, list_image_files, read_image  # noqa: E402

SHARES = (0.001, 0.002, 0.005, 0.02)


def spiked(image: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    out = image.astype(np.uint16) * np.uint16(12)
    flat = out.reshape(-1, *out.shape[2:])
    idx = rng.choice(flat.shape[0], int(share * flat.shape[0]), replace=False)
    flat[idx] = 65535
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--limit", type=int, default=20, help="DSB images spiked with hot pixels")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    sets = {"dsb2018": list_image_files(args.datasets / "dsb2018" / "images"),
            "samples": list_image_files(ROOT / "data" / "samples"),
            "vgg_cells": list_image_files(args.datasets / "vgg_cells" / "images"),
            "mbm": list_image_files(args.datasets / "mbm" / "images")}
    for name, files in sets.items():
        fired = [f.name[:16] for f in files if hot_pixel_note(read_image(f))]
        print(f"{name}: {len(fired)} of {len(files)} images noted" + (f" ({', '.join(fired[:8])})" if fired else ""))
    model = cc.load_model(cc.models.default_model_name())
    rng = np.random.default_rng(0)
    dark = [f for f in sets["dsb2018"] if not is_bright_background(np.asarray(read_image(f), np.float32).mean(
        axis=-1) if read_image(f).ndim == 3 else read_image(f))][: args.limit]
    print(f"\n{len(dark)} DSB fluorescence images with hot pixels ({model.name}): noted / count against clean")
    print("| share | noted | median count / clean count | images counting under half | advised High percentile: "
          "median count / clean count (images) |")
    print("|---|---|---|---|---|")
    clean = {f: cc.count_image(spiked(read_image(f), 0.0, rng), model).count for f in dark}
    for share in SHARES:
        noted, ratios, advised = 0, [], []
        for f in dark:
            img = spiked(read_image(f), share, rng)
            note = hot_pixel_note(img)
            noted += bool(note)
            ratios.append(cc.count_image(img, model).count / max(clean[f], 1))
            if note and (found := re.search(r"lower High percentile to ([0-9.]+)", note)):
                advised.append(cc.count_image(img, model, {"high_pct": float(found.group(1))}).count
                               / max(clean[f], 1))
        told = f"{np.median(advised):.2f} ({len(advised)})" if advised else "none advised"
        print(f"| {share:.1%} | {noted} of {len(dark)} | {np.median(ratios):.2f} | {sum(r < 0.5 for r in ratios)} | "
              f"{told} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
