"""Probe: how the quality flag does on images unlike DSB's, drawn by the varied generator.

Counts N images of ``cellcount.training.data.varied_synthetic`` (nuclei 6-80 px; fluorescence, gray brightfield
and H&E-like colour; dense overlapping clusters, defocus, uneven light, JPEG), drawn with a seed no training
config uses, with a model's card settings, and reports the share flagged, the large errors (count off by more
than 15% of the true count) the flag holds, and the unflagged large errors with their signals. The flag's
limits are fitted on DSB validation images only; this set is another look at them, not a fit
(docs/quality.md, "On generated images unlike DSB's").

    python scripts/flag_varied_probe.py [--model unet-mask-varied] [--n 120] [--seed 9001] [--csv FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import cellcount as cc  # noqa: E402
from cellcount.quality import LARGE_ERROR, flag_report  # noqa: E402
from cellcount.training.data import varied_synthetic  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask-varied")
    p.add_argument("--n", type=int, default=120)
    p.add_argument("--seed", type=int, default=9001, help="not a seed any training config uses")
    p.add_argument("--csv", help="write the per-image rows (counts, flag, signals) here")
    args = p.parse_args()
    model = cc.load_model(args.model)
    rng = np.random.default_rng(args.seed)
    rows = []
    for i in range(args.n):
        s = varied_synthetic(320, rng=rng)
        result = cc.count_image(s.image, model)
        kind = ("H&E-like colour" if s.image.ndim == 3 else "gray brightfield") if s.params["bright_background"] \
            else "fluorescence"
        rows.append({"image": i, "kind": kind, "true": s.count, "pred": result.count, "check": result.quality.flag,
                     "check_score": result.quality.score, **result.quality.signals})
    df = pd.DataFrame(rows)
    df["rel_error"] = (df["pred"] - df["true"]).abs() / df["true"].clip(lower=1)
    if args.csv:
        df.to_csv(args.csv, index=False)
    print(f"{args.model}, varied generator, seed {args.seed}, {len(df)} images")
    print("| images | n | median error | large errors | flagged | large errors flagged | errors > 50% flagged |")
    print("|---|---|---|---|---|---|---|")
    for kind, part in [("all", df), *df.groupby("kind")]:
        rep = flag_report(part["check"].astype(bool), part["rel_error"])
        big = part["rel_error"] > 0.5
        held = f"{part['check'][big].mean():.0%} of {int(big.sum())}" if big.any() else "-"
        print(f"| {kind} | {len(part)} | {part['rel_error'].median():.0%} | {rep['large_errors']} | "
              f"{part['check'].mean():.0%} | {rep['large_errors_flagged_share']:.0%} | {held} |")
    missed = df[(df["rel_error"] > LARGE_ERROR) & ~df["check"]]
    cols = ["true", "pred", "rel_error", "kind", "novelty", "count_disagreement", "uncertain_fraction", "size_ratio",
            "merge_share", "check_score"]
    print(f"\nlarge errors not flagged ({len(missed)}):")
    print(missed[cols].round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
