"""How far JPEG compression moves the default model's counts on real images (a probe, not a test): the limit below
which a JPEG is flagged (``cellcount.io.read.JPEG_MIN_QUALITY``) is read off it.

    python scripts/jpeg_quality_probe.py [--datasets ../shared/datasets] [--model NAME] [--qualities 10 20 30 50 75 95]

Saves each DSB validation image (grey, 8-bit) as JPEG at each quality, counts it as a file (``count_file``), and
prints per quality the median and 90th percentile of the absolute relative error against the truth, the share of
large errors (> 15%), and whether the quality estimated from the file (``jpeg_quality``) matches; with the machine.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cellcount as cc  # noqa: E402
from cellcount.io import list_image_files, read_image, to_gray  # noqa: E402
from cellcount.io.read import JPEG_MIN_QUALITY, jpeg_quality  # noqa: E402
from cellcount.models.autotune import cpu_model  # noqa: E402
from cellcount.training.data import dsb_part  # noqa: E402


def main() -> int:
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--model", default=None, help="default: the default model")
    ap.add_argument("--qualities", type=int, nargs="+", default=[10, 20, 30, 40, 50, 75, 95])
    args = ap.parse_args()
    model = cc.load_model(args.model or cc.models.default_model_name())
    files = [f for f in list_image_files(args.datasets / "dsb2018" / "images") if dsb_part(f.name) == "val"]
    truth = {r.split(",")[0]: int(r.split(",")[1]) for r in
             (args.datasets / "dsb2018" / "counts.csv").read_text().splitlines()[1:] if r.strip()}
    print(f"machine: {cpu_model()}; model {model.name}; {len(files)} DSB validation images; flagged below quality "
          f"{JPEG_MIN_QUALITY}")
    print("quality  estimated  median |rel err|  90th pct  large errors (>15%)")
    for quality in [None, *args.qualities]:
        errors, estimated = [], set()
        for f in files:
            grey = to_gray(read_image(f))
            pixels = np.clip(grey / max(float(grey.max()), 1e-9) * 255, 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, "PNG" if quality is None else "JPEG", quality=quality or 95)
            data = buf.getvalue()
            if quality is not None:
                estimated.add(jpeg_quality(data))
            true = truth.get(f.name, truth.get(f.stem))
            count = cc.count_file(data, model).count
            errors.append(abs(count - true) / max(true, 1))
        e = np.asarray(errors)
        print(f"{'PNG' if quality is None else quality:>7}  {','.join(map(str, sorted(estimated))) or '-':>9}  "
              f"{np.median(e):>16.1%}  {np.percentile(e, 90):>8.1%}  {np.mean(e > 0.15):>19.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
