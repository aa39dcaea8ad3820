"""Figures behind three ground-truth checks (a probe, not a test): how often neighbouring foreground pixels of real
label images differ in value (``cellcount.groundtruth.truth.NOISY_IDS_SHARE`` refuses a label image past it), how
many more separate regions than ids they hold (``CLASS_MAP_EXTRA_REGIONS`` refuses a class map), and how near the
closest dots of real dot tables lie (``NEAR_POINTS_PX`` says dots that near mark one cell twice).

    python scripts/annotation_faults_probe.py [--data-root ../shared/datasets]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def differ_share(a: np.ndarray) -> float:
    """Share of neighbouring foreground pixel pairs whose values differ (as ``_refuse_noisy_ids`` measures it)."""
    pairs = differ = 0
    for x, y in ((a[:, 1:], a[:, :-1]), (a[1:, :], a[:-1, :])):
        both = (x != 0) & (y != 0)
        pairs += int(both.sum())
        differ += int((both & (x != y)).sum())
    return differ / max(pairs, 1)


def extra_regions(a: np.ndarray) -> int:
    """Separate 8-connected regions of one value beyond one per id (as ``_refuse_class_map`` counts them)."""
    from skimage.measure import label

    return int(label(a, background=0, connectivity=2).max()) - len(np.unique(a[a != 0]))


def main() -> int:
    import warnings

    warnings.simplefilter("ignore")  # the readers warn of the very pairs counted here
    from scipy.spatial import cKDTree

    from cellcount.groundtruth import read_points_csv
    from cellcount.io import read_image
    from cellcount.models.autotune import cpu_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    args = p.parse_args()
    root = Path(args.data_root)
    print(f"machine: {cpu_model()}")
    for name, files in (("dsb2018 labels", sorted((root / "dsb2018" / "labels").glob("*"))),
                        ("samples' labels", sorted((REPO / "data" / "samples").glob("*_labels.tif")))):
        arrays = [np.asarray(read_image(f)) for f in files]
        shares = np.array([differ_share(a) for a in arrays])
        extra = np.array([extra_regions(a) for a in arrays])
        print(f"{name}: {len(shares)} label images, neighbouring foreground pixels that differ: max {shares.max():.3f}, "
              f"99th percentile {np.percentile(shares, 99):.3f}; regions beyond one per id: max {extra.max()}, in "
              f"{int((extra > 0).sum())} image(s)")
    for name in ("mbm", "vgg_cells"):
        tables = sorted((root / name / "dots").glob("*.csv"))
        nearest, close = [], 0
        for t in tables:
            pts = read_points_csv(t).points
            if len(pts) > 1:
                d = cKDTree(pts).query(pts, k=2)[0][:, 1]
                nearest.append(d.min())
                close += int((d <= 2.0).sum()) // 2
        if nearest:
            print(f"{name}: {len(tables)} dot tables, closest pair per table: min {min(nearest):.2f} px, median "
                  f"{np.median(nearest):.2f} px; pairs within 2 px: {close}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
