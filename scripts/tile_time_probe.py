"""Whole-image network time at two largest tile sizes, alternating, per model and backend (not a test).

    python scripts/tile_time_probe.py [--pairs unet-mask-varied@openvino unet-mask-varied@torch ...]
        [--tiles 384 528] [--sizes 512 1024] [--repeats 7]

Each image (``scripts/bench_browser.make_image``, scaled to 0-1) goes through ``predict_maps(backend=B, tile=T)``
once per tile size to compile and warm up, then ``--repeats`` times with the tile sizes taking turns; the medians and
their ratio are printed as a Markdown table. What ``cellcount.models.backends.FAST_TILE_PX`` was chosen by.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIRS = ["unet-mask-varied@openvino", "unet-mask-varied@int8", "unet-mask-varied@onnxruntime",
                 "unet-mask-varied@torch", "unet-density@openvino", "attention-unet-mask@openvino",
                 "multihead-unet@openvino"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS, metavar="MODEL@BACKEND")
    ap.add_argument("--tiles", nargs=2, type=int, default=[384, 528])
    ap.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT))
    import bench_browser
    import numpy as np

    from cellcount.io import read_image
    from cellcount.memory import keep_freed_memory
    from cellcount.models import load_model
    from cellcount.models.autotune import cpu_model

    keep_freed_memory()  # as the CLI and the app run
    images = {}
    with tempfile.TemporaryDirectory() as tmp:
        for px in args.sizes:
            path = Path(tmp) / f"probe_{px}.png"
            bench_browser.make_image(path, px)
            a = read_image(path).astype(np.float32)
            a = a.mean(-1) if a.ndim == 3 else a
            images[px] = ((a - a.min()) / (a.max() - a.min() + 1e-6)).astype(np.float32)
    small, large = args.tiles
    print(f"{cpu_model()}, {os.cpu_count()} logical CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"medians of {args.repeats} alternating passes")
    print(f"| model | backend | image | tile {small}: ms | tile {large}: ms | {small} / {large} |")
    print("|---|---|---|---|---|---|")
    for pair in args.pairs:
        name, _, backend = pair.partition("@")
        model = load_model(name)
        for px, image in images.items():
            times: dict[int, list[float]] = {small: [], large: []}
            for tile in times:
                model.predict_maps(image, backend=backend, tile=tile)
            for _ in range(args.repeats):
                for tile, mine in times.items():
                    t0 = time.perf_counter()
                    model.predict_maps(image, backend=backend, tile=tile)
                    mine.append(time.perf_counter() - t0)
            a, b = statistics.median(times[small]), statistics.median(times[large])
            print(f"| {name} | {backend} | {px} x {px} | {1e3 * a:.0f} | {1e3 * b:.0f} | {a / b:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
