"""Probe: which split of touching nuclei for crowded fields, and where "auto" switches to "both".

Counts held-out generated images (a seed no training run used) with a mask model's card settings in the split
modes "borders", "both", "distance" and "auto" (borders; "both" where more than
``cellcount.postprocess.CROWDED_TOUCHING_SHARE`` of the objects touch on a dark background), and sweeps that
share on the same predictions. Two kinds of images: dense fluorescent fields (120-320 nuclei of 10-26 px on 384
x 384, mostly in overlapping clusters) and the varied generator of ``unet-mask-varied``'s training data
(``cellcount.training.data.varied_synthetic``). Prints MAPE and mean signed error per mode (docs/RESULTS.md,
"Splitting crowded nuclei"). The DSB figures of that section come from ``python -m cellcount.evaluate ...
--split-mode M``.

    python scripts/crowded_split_probe.py [--model unet-mask-varied] [--dense 30] [--varied 60] [--seed 9001]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import cellcount as cc  # noqa: E402
from cellcount.params import resolve_params  # noqa: E402
from cellcount.postprocess import CROWDED_TOUCHING_SHARE  # noqa: E402
from cellcount.synthetic import make_synthetic  # noqa: E402
from cellcount.training.data import varied_synthetic  # noqa: E402

MODES = ("borders", "both", "distance", "auto")


def images(n_dense: int, n_varied: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n_dense):
        yield "dense", make_synthetic(
            (384, 384), rng=rng, n_cells=int(rng.integers(120, 320)),
            radius_px=(float(rng.uniform(5, 8)), float(rng.uniform(9, 13))),
            cluster_fraction=float(rng.uniform(0.6, 0.9)), overlap=float(rng.uniform(0.15, 0.4)),
            blur_sigma=float(rng.uniform(0.5, 1.5)), texture=float(rng.uniform(0, 0.8)))
    for _ in range(n_varied):
        yield "varied", varied_synthetic(320, rng=rng)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask-varied")
    p.add_argument("--dense", type=int, default=30)
    p.add_argument("--varied", type=int, default=60)
    p.add_argument("--seed", type=int, default=9001, help="not a seed any training config uses")
    args = p.parse_args()
    model = cc.load_model(args.model)
    card = resolve_params(model)
    size_model = cc.models.size_model_for(model, card)
    rows = []
    for kind, s in images(args.dense, args.varied, args.seed):
        pred = cc.predict(s.image, model, card, size_model=size_model)
        row = {"kind": kind, "true": s.count, "dark": not pred.inverted}
        for mode in MODES:
            res = cc.postprocess(pred, card.replace(split_mode=mode), image=s.image)
            row[mode] = res.count
            if mode == "auto":  # the share "auto" decides on (the border split's, before the area filter)
                row["touch"] = res.touching_share if res.touching_share is not None else float("nan")
        rows.append(row)
    print(f"{args.model}, generated images (seed {args.seed}), auto switches above {CROWDED_TOUCHING_SHARE}")
    print("| images | " + " | ".join(f"{m}: MAPE (signed)" for m in MODES) + " |")
    print("|---" * (len(MODES) + 1) + "|")
    for kind in ("dense", "varied"):
        part = [r for r in rows if r["kind"] == kind]
        if not part:
            continue
        t = np.array([r["true"] for r in part], float)
        cells = []
        for m in MODES:
            c = np.array([r[m] for r in part], float)
            cells.append(f"{100 * np.mean(np.abs(c - t) / t):.1f}% ({100 * np.mean((c - t) / t):+.1f}%)")
        print(f"| {kind} ({len(part)}) | " + " | ".join(cells) + " |")
    print("\nthe switch's share, swept (dark backgrounds only, as 'auto'):")
    for share in (0.2, 0.3, 0.4, 0.5, 0.7):
        cells = []
        for kind in ("dense", "varied"):
            part = [r for r in rows if r["kind"] == kind]
            t = np.array([r["true"] for r in part], float)
            c = np.array([r["both"] if r["dark"] and r["touch"] > share else r["borders"] for r in part], float)
            cells.append(f"{kind} {100 * np.mean(np.abs(c - t) / t):.1f}%")
        print(f"  {share}: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
