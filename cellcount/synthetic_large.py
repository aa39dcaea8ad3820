"""A synthetic image of any size, written tile by tile as a tiled TIFF: tests and benchmarks of block-wise
counting (:mod:`cellcount.blocks`) without holding the image in memory.

``python -m cellcount.synthetic_large big.tif --size 20480`` writes a 20,480 x 20,480 8-bit TIFF of
fluorescent nuclei and ``big.json`` with its exact nucleus count. Each 512-px TIFF tile is its own
:func:`cellcount.synthetic.make_synthetic` image (seeded from ``seed`` and the tile index), so memory stays
at one tile whatever the size; nuclei lie inside their tile.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .errors import ParameterError
from .synthetic import make_synthetic

TILE_PX = 512


def write_large_tiff(
    path: str | os.PathLike,
    shape: tuple[int, int],
    *,
    seed: int = 0,
    cells_per_tile: int = 120,
    tile_px: int = TILE_PX,
) -> int:
    """Write a tiled, zlib-compressed uint8 TIFF of ``shape`` (multiples of ``tile_px``); return its count.

    The count (exact: the sum of the tiles' nuclei) is also written next to it as ``<stem>.json``.
    """
    import tifffile

    h, w = (int(v) for v in shape)
    if h <= 0 or w <= 0 or h % tile_px or w % tile_px:
        raise ParameterError(f"shape must be positive multiples of {tile_px} px, got {h} x {w}")
    total = 0

    def tiles() -> Iterator[np.ndarray]:
        nonlocal total
        for i in range((h // tile_px) * (w // tile_px)):
            sample = make_synthetic((tile_px, tile_px), rng=np.random.default_rng([seed, i]), n_cells=cells_per_tile,
                                    color=False, bit_depth=8, illumination=0.1, cluster_fraction=0.2)
            total += sample.count
            yield sample.image

    tifffile.imwrite(path, tiles(), shape=(h, w), dtype=np.uint8, tile=(tile_px, tile_px), compression="zlib",
                     bigtiff=h * w > 2**31)
    Path(path).with_suffix(".json").write_text(json.dumps({"shape": [h, w], "count": total, "seed": seed,
                                                           "cells_per_tile": cells_per_tile}, indent=2))
    return total


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cellcount.synthetic_large", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="TIFF file to write")
    ap.add_argument("--size", type=int, default=10240, help="height and width in px (a multiple of 512)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cells-per-tile", type=int, default=120, help="nuclei drawn per 512 x 512 tile")
    args = ap.parse_args(argv)
    if args.size < 512 or args.size % 512:
        ap.error(f"--size must be a positive multiple of 512, got {args.size}")
    n = write_large_tiff(args.out, (args.size, args.size), seed=args.seed, cells_per_tile=args.cells_per_tile)
    print(f"wrote {args.out}: {args.size} x {args.size} px, {n} nuclei")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
