"""A fine-tune on objects unlike nuclei, annotated with dots: the measured object size against a stated one.

    python scripts/finetune_size_probe.py --base unet-density [--diameter 65] [--n 16] [--holdout 6]
        [--steps 200] [--px 384] [--first-seed 100] [--option KEY=VALUE] [--json FILE]

Generated adipocyte-like images (large polygonal cells about 65 px across with white interiors and thin pink
membranes, a few small dark nuclei on the membranes, uneven light, noise; a dot at each cell's centroid) are
the kind of set a base model trained on nuclei misreads: it sizes the small nuclei or the membrane texture,
not the cells. Fine-tunes ``--base`` on ``n - holdout`` of them with dots only, measuring the object size as
a fine-tune does by default, or at ``--diameter`` when given, and scores the base and the new model on the
held-out images (:func:`cellcount.finetune.finetune`). Prints one JSON line (and writes it to ``--json``).
Not a benchmark: the images are generated, so it shows a mechanism, not an accuracy on real fat cells.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fat_cell_image(seed: int, px: int = 384, diameter: float = 65.0) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image, (N, 2) row/col centroids of the cells whose centroid lies inside the image)."""
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    step = diameter * 0.93
    seeds = [(y + rng.normal(0, step * 0.18), x + rng.normal(0, step * 0.18))
             for r, y in enumerate(np.arange(-step, px + step, step * 0.866))
             for x in np.arange(-step + (r % 2) * step / 2, px + step, step)]  # a jittered hexagonal grid
    yy, xx = np.mgrid[:px, :px]
    _, nearest = cKDTree(np.array(seeds)).query(np.c_[yy.ravel(), xx.ravel()])
    cells = nearest.reshape(px, px) + 1  # Voronoi cells
    membrane = ndi.binary_dilation(find_boundaries(cells), iterations=1)
    img = np.empty((px, px, 3), np.float32)
    img[:] = (242, 236, 244)
    img[membrane] = (205, 120, 175)
    my, mx = np.nonzero(membrane)
    for k in rng.choice(len(my), size=int(len(seeds) * 0.3), replace=False):  # nuclei on the membranes
        img[(yy - my[k]) ** 2 + (xx - mx[k]) ** 2 < 16] = (90, 60, 140)
    img = ndi.gaussian_filter(img, (1.0, 1.0, 0)) + rng.normal(0, 5, img.shape)
    img *= (0.9 + 0.1 * np.sin(xx / px * 3 + seed))[..., None]
    ids = np.unique(cells)
    centroids = np.array(ndi.center_of_mass(np.ones_like(cells), cells, ids))
    return np.clip(img, 0, 255).astype(np.uint8), centroids


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from cellcount.finetune import finetune
    from cellcount.groundtruth import GroundTruth
    from cellcount.models.autotune import cpu_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="unet-density")
    p.add_argument("--diameter", type=float, default=None, help="state the object diameter (default: measure it)")
    p.add_argument("--n", type=int, default=16, help="images generated")
    p.add_argument("--holdout", type=int, default=6)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--px", type=int, default=384)
    p.add_argument("--first-seed", type=int, default=100, help="the images are seeds first-seed ... first-seed + n - 1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword of cellcount.finetune.finetune (YAML value), e.g. dot_disc=0.6")
    p.add_argument("--json")
    args = p.parse_args(argv)
    import yaml

    options = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.option)}
    items = []
    for seed in range(args.first_seed, args.first_seed + args.n):
        image, dots = fat_cell_image(seed, args.px)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        items.append((f"fat_{seed:03d}.png", buf.getvalue(), GroundTruth("points", len(dots), points=dots)))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        res = finetune(args.base, items, name="size-probe", steps=args.steps, holdout=args.holdout, out_dir=out,
                       threads=args.threads, seed=0, diameter_px=args.diameter, **options)
    row = {"command": " ".join(["python", *sys.argv]), "machine": cpu_model(), "base": args.base,
           "diameter": args.diameter, "options": options, "steps": res.steps, "reading": res.reading, "size_note": res.size_note,
           "mae_before": round(res.before["mae"], 2), "mae_after": round(res.after["mae"], 2),
           "mape_after": round(res.after["mape"], 1), "mean_true": float(np.mean([c["true"] for c in res.holdout_counts])),
           "counts": [(c["true"], round(c["before"], 1), round(c["after"], 1)) for c in res.holdout_counts],
           "seconds": round(time.perf_counter() - t0, 1)}
    line = json.dumps(row)
    print(line)
    if args.json:
        Path(args.json).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
