"""Counts of the images the size estimate resizes: plain fp32 path against each fast backend, with the resize
grid and without it (not a test).

    python scripts/resize_counts.py [--models unet-mask multihead-unet residual-unet-mask]
        [--data ../shared/datasets/dsb2018] [--split train] [--limit N]

A mask model resizes an image whose estimated nucleus size is far from its training size. The estimate moves
by a percent or so with the backend and the tiling, and an exact resize factor moves with it, which can change
the count (one DSB image: 21 objects on the plain fp32 path, 18 in bf16). ``cellcount.sizing`` rounds the
factor to :data:`~cellcount.sizing.SCALE_STEPS_PER_OCTAVE` steps per doubling. For each model this picks the
images of the split that the plain path resizes, counts them with the card's settings on the plain fp32 path
and on each available fast backend, with the grid (as shipped) and without it (exact factors), and prints how
far each backend's counts are from the plain path's. The split's images are the training split by default:
a stability check, not a score.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["unet-mask", "multihead-unet", "residual-unet-mask"])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "dsb2018")
    ap.add_argument("--split", default="train", choices=["train", "val"])
    ap.add_argument("--limit", type=int, help="only the first N images of the split (a quick look)")
    args = ap.parse_args(argv)

    from cellcount import sizing
    from cellcount.io import read_image
    from cellcount.models import load_model, size_model_for
    from cellcount.models.autotune import cpu_model
    from cellcount.models.backends import available_backends
    from cellcount.pipeline import count_image, resolve_params
    from cellcount.training.data import dsb_part

    files = sorted(p for p in (args.data / "images").glob("*.png")
                   if dsb_part(p.name, hold_out_test=True) == args.split)[: args.limit]
    images = [read_image(f) for f in files]
    backends = available_backends()
    grid = sizing.SCALE_STEPS_PER_OCTAVE
    print(f"{len(files)} images of the DSB {args.split} split; {cpu_model()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; backends {', '.join(backends)}")
    print("| model | resize factors | images resized | backend | total diff vs plain fp32 | sum of per-image diffs "
          "| images counted differently |")
    print("|---|---|---|---|---|---|---|")
    try:
        for name in args.models:
            model = load_model(name)
            params = resolve_params(model)
            size_model = size_model_for(model, params)
            sizing.SCALE_STEPS_PER_OCTAVE = 0
            plain = [count_image(im, model, params, fast=False, size_model=size_model) for im in images]
            resized = [im for im, r in zip(images, plain, strict=True) if r.model_scale != 1.0]
            exact_ref = [r.count for r in plain if r.model_scale != 1.0]  # the exact rows' reference, counted once
            for steps in (0, grid):
                sizing.SCALE_STEPS_PER_OCTAVE = steps
                ref = exact_ref if not steps else [
                    count_image(im, model, params, fast=False, size_model=size_model).count for im in resized]
                label = f"grid, {steps} steps per doubling" if steps else "exact"
                for b in backends:
                    fast = [count_image(im, model, params, fast=True, backend=b, size_model=size_model).count
                            for im in resized]
                    total = max(sum(ref), 1)
                    diff = 100 * (sum(fast) - sum(ref)) / total
                    absdiff = 100 * sum(abs(a - c) for a, c in zip(fast, ref, strict=True)) / total
                    differing = sum(a != c for a, c in zip(fast, ref, strict=True))
                    print(f"| {name} | {label} | {len(resized)} | {b} | {diff:+.2f}% | {absdiff:.2f}% | "
                          f"{differing} ({100 * differing / max(len(ref), 1):.0f}%) |", flush=True)
    finally:
        sizing.SCALE_STEPS_PER_OCTAVE = grid
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
