"""How many images of each data set :func:`cellcount.io.channels_differ` says mix stains (false alarms).

    python scripts/check_channels.py [--datasets ../shared/datasets]

Reads every image of dsb2018, vgg_cells and mbm (no model runs) and prints, per set, the images read, those
with two or more channels holding signal, and those said to mix stains (with their names).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cellcount.io import channels_differ, list_image_files, read_image  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}")
    for name in ("dsb2018", "vgg_cells", "mbm"):
        files = list_image_files(args.datasets / name / "images")
        n_colour, flagged = 0, []
        for f in files:
            image = read_image(f)
            n_colour += image.ndim == 3
            if channels_differ(image):
                flagged.append(f.name)
        print(f"{name}: {len(files)} images, {n_colour} with channels, {len(flagged)} said to mix stains "
              f"{flagged[:10]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
