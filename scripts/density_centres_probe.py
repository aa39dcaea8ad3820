"""How many approximate centres a density model finds, unblurred and blurred, against the true counts.

    python scripts/density_centres_probe.py [--model unet-density] [--sigmas 0 1 2 3 3.5 4 5]

On the DSB validation half (split by file name as the shipped models were) and the generated samples: per sigma
(in the model's pixels, i.e. x 18.4 / the nucleus diameter the model read at), the centres' per-image MAE
against the true count, apart for the images resized below 0.8x (large nuclei) and the rest, and the density
integral's MAE beside them. The blur the pipeline uses is ``PEAK_SMOOTH_SHARE`` x that diameter
(docs/quality.md, "Density centres").
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cellcount as cc  # noqa: E402
from cellcount.groundtruth import load_dsb_folder  # noqa: E402
from cellcount.pipeline import read_diameter_px  # noqa: E402
from cellcount.training.data import dsb_part  # noqa: E402

pp = importlib.import_module("cellcount.postprocess")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-density")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "dsb2018"))
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0, 1, 2, 3, 3.5, 4, 5])
    args = ap.parse_args(argv)
    model = cc.load_model(args.model)
    params = cc.resolve_params(model, {})
    items = [(p.name, p, gt.count) for p, gt in load_dsb_folder(args.data)
             if dsb_part(p.name, 0.2, 0, hold_out_test=True) == "val"]
    samples = pd.read_csv(ROOT / "data" / "samples" / "counts.csv")
    items += [(f"sample {r.iloc[0]}", ROOT / "data" / "samples" / r.iloc[0], int(r.iloc[1])) for _, r in samples.iterrows()]
    rows = []
    for name, path, true in items:
        pred = cc.predict(cc.read_image(path), model, params)
        ref_px = 18.4 * read_diameter_px(pred) / pred.reference_diameter_px  # sigma in the model's pixels -> image px
        row = {"image": name, "true": true, "scale": pred.model_scale, "integral": pp.density_count(pred.maps[0])}
        for s in args.sigmas:
            row[f"sigma {s:g}"] = len(pp.density_peaks(pred.maps[0], min_distance_px=params.peak_min_distance_px,
                                                       smooth_px=s * ref_px / 18.4))
        rows.append(row)
    df = pd.DataFrame(rows)
    dsb = df[~df["image"].str.startswith("sample ")]
    cols = ["integral", *[f"sigma {s:g}" for s in args.sigmas]]
    print(f"{args.model}: per-image MAE against the true count ({len(dsb)} DSB validation images)")
    print("| images | n | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for label, part in (("resized below 0.8x", dsb[dsb.scale < 0.8]), ("the rest", dsb[dsb.scale >= 0.8]),
                        ("all", dsb)):
        maes = [np.abs(part[c] - part["true"]).mean() for c in cols]
        print(f"| {label} | {len(part)} | " + " | ".join(f"{m:.2f}" for m in maes) + " |")
    big = dsb[dsb.scale < 0.8]
    print(f"\nresized below 0.8x: {int(big['true'].sum())} nuclei; centres: "
          + ", ".join(f"{c} {int(big[c].sum())}" for c in cols[1:]))
    print("\nsamples: true count, integral and centres per sigma")
    print(df[df["image"].str.startswith("sample ")][["image", "true", "integral", *cols[1:]]]
          .round(1).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
