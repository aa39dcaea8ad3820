"""A few nuclei in a wide background: counts with and without sizing by the density near the foreground.

Fields of noise at a DSB image's background level with 0-30 of its nuclei pasted in, and real DSB images placed
in a field three times as wide of their own background pixels; counted with the default model's card settings
(automatic nucleus size), once as shipped and once with ``cellcount.sizing.MIN_NEAR_SHARE = 0`` (the whole
density integral sizes the nuclei, as before). Then the share of the density's mass near the foreground on the
DSB validation images (``--validation``), which the guard must leave alone. Prints a Markdown table.

    python scripts/sparse_field_probe.py [--model unet-mask-varied] [--validation]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.measure import regionprops

import cellcount as cc
from cellcount import sizing
from cellcount.models.autotune import cpu_model

DSB = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "dsb2018"


def _pair(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    image = next((DSB / "images").glob(prefix + "*.png"))
    return np.array(Image.open(image))[..., 0], np.array(Image.open(DSB / "labels" / image.name))


def noise_fields(seed: int = 2):
    """(name, image, true count): DSB 003cee89's nuclei pasted onto noise at its background level."""
    base, labels = _pair("003cee89357d")
    props, bg = regionprops(labels), float(np.median(base))
    rng = np.random.default_rng(seed)
    for n in (512, 1024):
        for k in (0, 1, 2, 8, 12, 30):
            out = np.clip(bg + rng.normal(0, 2.0, (n, n)), 0, 255)
            for i, p in enumerate(props[:k]):
                y0, x0, y1, x1 = p.bbox
                patch = base[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3]
                step = (n - 60) // 6  # a 6 x 6 grid inside the field: every nucleus pasted whole
                ty, tx = 30 + (i % 6) * step, 30 + (i // 6) * step
                sl = (slice(ty, ty + patch.shape[0]), slice(tx, tx + patch.shape[1]))
                out[sl] = np.maximum(out[sl], patch[: out[sl].shape[0], : out[sl].shape[1]])
            yield f"noise {n} px, {k} nuclei", out.round().astype(np.uint8), k


def wide_fields(seed: int = 0):
    """(name, image, true count): real DSB images in the middle of a 3x field of their own background pixels."""
    for prefix in ("93c5638e", "e5aeb5b3", "c15c652c", "0b2e702f"):
        a, labels = _pair(prefix)
        big = np.random.default_rng(seed).choice(a[labels == 0], (a.shape[0] * 3, a.shape[1] * 3))
        big[a.shape[0]:2 * a.shape[0], a.shape[1]:2 * a.shape[1]] = a
        yield f"DSB {prefix} in a 3x field", big.astype(np.uint8), len(np.unique(labels)) - 1


def validation_shares(model) -> list[float]:
    """Share of the size density's mass within NEAR_FOREGROUND_PX of the foreground, per DSB validation image."""
    import cv2

    from cellcount.training.data import dsb_part

    shares: list[float] = []
    real = sizing._disc_size

    def record(fg, density, window):
        width = 2 * sizing.NEAR_FOREGROUND_PX + 1
        near = cv2.dilate(fg.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))) > 0
        total = float(density.sum(dtype=np.float64))
        if total >= 0.5:
            shares.append(float(density[near].sum(dtype=np.float64)) / total)
        return real(fg, density, window)

    sizing._disc_size = record
    try:
        for path in sorted((DSB / "images").glob("*.png")):
            if dsb_part(path.name) == "val":
                cc.count_image(cc.read_image(path), model)
    finally:
        sizing._disc_size = real
    return shares


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-mask-varied")
    ap.add_argument("--validation", action="store_true", help="also the shares on the DSB validation images")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    model = cc.load_model(args.model)
    print(f"{args.model}; {cpu_model()}, {os.cpu_count()} cores\n")
    print("| image | true | count before (size px, resize) | count now (size px, resize) | flagged now |")
    print("|---|---|---|---|---|")
    for name, image, truth in [*noise_fields(), *wide_fields()]:
        out = []
        for share in (0.0, sizing.MIN_NEAR_SHARE):
            kept, sizing.MIN_NEAR_SHARE = sizing.MIN_NEAR_SHARE, share
            try:
                r = cc.count_image(image, model)
            finally:
                sizing.MIN_NEAR_SHARE = kept
            size = "-" if r.estimated_diameter_px is None else f"{r.estimated_diameter_px:.1f}"
            out.append((f"{r.count} ({size}, {r.model_scale:.2f}x)", r.quality.flag))
        print(f"| {name} | {truth} | {out[0][0]} | {out[1][0]} | {'yes' if out[1][1] else 'no'} |", flush=True)
    if args.validation:
        shares = validation_shares(model)
        print(f"\nDSB validation images: {len(shares)}; share of the density near the foreground: min "
              f"{min(shares):.2f}, 5th percentile {np.percentile(shares, 5):.2f}, median {np.median(shares):.2f}; "
              f"below {sizing.MIN_NEAR_SHARE}: {sum(s < sizing.MIN_NEAR_SHARE for s in shares)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
