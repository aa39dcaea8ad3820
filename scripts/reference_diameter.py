"""The nucleus size the shipped models were trained at: median over the DSB training images of each image's
median equivalent nucleus diameter (px). ``cellcount.pipeline.REFERENCE_DIAMETER_PX`` holds this value;
``nucleus_diameter_px`` rescales images towards it.

    python scripts/reference_diameter.py [--data ../shared/datasets/dsb2018]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from cellcount.groundtruth import load_labelled_folder  # noqa: E402
from cellcount.pipeline import REFERENCE_DIAMETER_PX  # noqa: E402
from cellcount.training.data import is_validation  # noqa: E402


def median_diameter(labels: np.ndarray) -> float:
    """Median equivalent diameter (px) of the labelled objects."""
    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(np.sqrt(4 * areas[areas > 0] / np.pi)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/datasets/dsb2018")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    args = p.parse_args()
    per_image = [median_diameter(gt.labels) for path, gt in load_labelled_folder(args.data)
                 if not is_validation(path.name, args.val_fraction, args.split_seed) and gt.labels is not None]
    value = float(np.median(per_image))
    print(f"{len(per_image)} training images: median of per-image median nucleus diameters {value:.2f} px "
          f"(cellcount.pipeline.REFERENCE_DIAMETER_PX = {REFERENCE_DIAMETER_PX})")
    return 0 if abs(value - REFERENCE_DIAMETER_PX) < 0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
