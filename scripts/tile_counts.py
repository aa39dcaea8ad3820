"""Counts of a fast backend at two largest tile sizes against the plain fp32 path (not a test).

    python scripts/tile_counts.py [--models residual-unet-mask unet-mask] [--tiles 512 528]
        [--sizes 696x520 1024x1024] [--data ../shared/datasets/dsb2018] [--backend bf16]
    python scripts/tile_counts.py --time MODEL TILE [--backend B] [--image-px 1024]
        # 20 passes over one square image, to be timed from outside (farm-bench, A/B by tile size)

A tile size changes where the fast path's seams fall, so objects near the threshold can flip; this counts
the DSB images whose tiling the sizes change (by default the 696 x 520 and 1024 x 1024 ones, read from the
set's metadata.csv) with each model's card settings, once on the plain fp32 path and once per tile size on
``--backend``, and prints the total difference and the sum of per-image differences, as ``scripts/bench.py`` does
for its 24 images.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["residual-unet-mask", "unet-mask"])
    ap.add_argument("--tiles", nargs="+", type=int, default=[512, 528])
    ap.add_argument("--sizes", nargs="+", default=["696x520", "1024x1024"], help="width x height")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "dsb2018")
    ap.add_argument("--backend", default="bf16", help="the fast backend whose tiles change (default bf16)")
    ap.add_argument("--time", nargs=2, metavar=("MODEL", "TILE"), help="only run 20 passes (for an outside timer)")
    ap.add_argument("--image-px", type=int, default=1024, help="side of the image --time passes over")
    args = ap.parse_args(argv)
    if args.time:
        return passes(args.time[0], int(args.time[1]), backend=args.backend, px=args.image_px)

    from cellcount.io import read_image
    from cellcount.models import backends, load_model, size_model_for
    from cellcount.pipeline import count_image, resolve_params

    sizes = {tuple(s.split("x")) for s in args.sizes}
    with open(args.data / "metadata.csv", newline="") as fh:
        files = [args.data / "images" / r["filename"] for r in csv.DictReader(fh) if (r["width"], r["height"]) in sizes]
    print(f"{len(files)} images of {', '.join(args.sizes)} from {args.data}")
    print(f"| model | tile | total fp32 | total {args.backend} | total diff | sum of per-image diffs | images differing |")
    print("|---|---|---|---|---|---|---|")
    default_tile = backends.FAST_TILE_PX[args.backend]
    try:
        for name in args.models:
            model = load_model(name)
            params = resolve_params(model)
            size_model = size_model_for(model, params)
            images = [read_image(f) for f in files]
            ref = [count_image(im, model, params, fast=False, size_model=size_model).count for im in images]
            for tile in args.tiles:
                backends.FAST_TILE_PX[args.backend] = tile
                fast = [count_image(im, model, params, fast=True, backend=args.backend, size_model=size_model).count
                        for im in images]
                total, diff = sum(ref), sum(fast) - sum(ref)
                absdiff = sum(abs(a - b) for a, b in zip(fast, ref, strict=True))
                print(f"| {name} | {tile} | {total} | {sum(fast)} | {100 * diff / total:+.2f}% | "
                      f"{100 * absdiff / total:.2f}% | {sum(a != b for a, b in zip(fast, ref, strict=True))}/{len(ref)} |")
    finally:
        backends.FAST_TILE_PX[args.backend] = default_tile
    return 0


def passes(name: str, tile: int, n: int = 20, *, backend: str = "bf16", px: int = 1024) -> int:
    """``n`` passes of ``name`` on ``backend`` over one ``px`` x ``px`` image with tiles of at most ``tile`` px."""
    import numpy as np

    from cellcount.models import load_model

    model = load_model(name)
    image = np.random.default_rng(0).random((px, px)).astype(np.float32)
    for _ in range(n):
        model.predict_maps(image, backend=backend, tile=tile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
