"""Write ``weights/<name>/golden.npz``: a model's fp32 output on a fixed tiny input, for regression tests.

Usage::

    python scripts/make_golden.py                 # every folder of weights/ that holds card.json
    python scripts/make_golden.py unet-mask       # some of them (names or folders)
    python scripts/make_golden.py --weights-dir path/to/weights

The input is the 64x64 crop at rows 128:192, cols 32:96 (four nuclei) of
``data/samples/s01_sparse_small.png`` after :func:`cellcount.normalize_image` of the whole image; the
output is ``model.predict_maps(input, fast=False)`` (the plain fp32 path). ``golden.npz`` holds
``input`` (64, 64) float32, ``output`` (C, 64, 64) float32 and ``weights_sha256`` (the card's hash, so a
test can tell stale golden files from changed model code). Rerun after retraining a model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "s01_sparse_small.png"
CROP = (128, 32, 64)  # row0, col0, size
GOLDEN_FILE = "golden.npz"


def _import_cellcount():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import cellcount

    return cellcount


def golden_input(sample: str | Path = SAMPLE) -> np.ndarray:
    """The (64, 64) float32 input: the fixed crop of the normalised sample image."""
    cc = _import_cellcount()
    norm = cc.normalize_image(cc.read_image(sample))
    r0, c0, n = CROP
    return np.ascontiguousarray(norm[r0:r0 + n, c0:c0 + n], dtype=np.float32)


def make_golden(folder: str | Path, *, sample: str | Path = SAMPLE) -> Path:
    """Run the model in ``folder`` on :func:`golden_input` and write ``folder/golden.npz``."""
    cc = _import_cellcount()
    folder = Path(folder)
    model = cc.load_model(folder)
    x = golden_input(sample)
    out = model.predict_maps(x, fast=False).astype(np.float32)
    path = folder / GOLDEN_FILE
    np.savez_compressed(path, input=x, output=out, weights_sha256=np.array(model.card.sha256))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help="model names or folders (default: all in --weights-dir)")
    p.add_argument("--weights-dir", default=str(REPO / "weights"))
    args = p.parse_args(argv)
    wd = Path(args.weights_dir)
    if args.models:
        folders = [Path(m) if (Path(m) / "card.json").is_file() else wd / m for m in args.models]
    else:
        folders = sorted(d for d in wd.iterdir() if (d / "card.json").is_file()) if wd.is_dir() else []
    if not folders:
        print(f"no model folders with card.json in {wd}", file=sys.stderr)
        return 2
    for folder in folders:
        if not (folder / "card.json").is_file():
            print(f"{folder}: no card.json", file=sys.stderr)
            return 2
        path = make_golden(folder)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
