"""Probe: the size model at half resolution for large nuclei (``cellcount.sizing.LARGE_NUCLEUS_PX``) against
always at full resolution.

For each image: the true median nucleus diameter and count; the size model's estimate and its count (the quality
flag's second count) both ways, from one first pass of the mask model; with ``--counts``, the mask model's final
count both ways (``count_image``, the card's settings). Prints, by true nucleus size and in all, the share of
size estimates off by more than 25% / 50%, the second count's mean absolute percentage error, and the final
counts' MAE and MAPE (docs/RESULTS.md, "Sizing large nuclei at half resolution").

    python scripts/size_resolution_probe.py --varied 120 [--seed 9001] [--counts]
    python scripts/size_resolution_probe.py --split train|val [--limit N] [--counts]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from reference_diameter import median_diameter  # noqa: E402  (scripts/ is on the path when run as a script)
from self_size_probe import samples  # noqa: E402

import cellcount as cc  # noqa: E402
import cellcount.sizing as sizing  # noqa: E402
from cellcount.params import resolve_params  # noqa: E402

RULES = {"full resolution": float("inf"), "half for large nuclei": sizing.LARGE_NUCLEUS_PX}
BINS = ((0, 12), (12, 24), (24, 40), (40, 1000))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask-varied")
    p.add_argument("--split", default="val", choices=["train", "val"])
    p.add_argument("--limit", type=int, default=0, help="the first N images of the split (0: all)")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/dsb2018"))
    p.add_argument("--varied", type=int, default=0, help="N generated varied images instead of DSB")
    p.add_argument("--seed", type=int, default=9001, help="the generator's seed (--varied)")
    p.add_argument("--counts", action="store_true", help="also the final count each way")
    args = p.parse_args()
    model = cc.load_model(args.model)
    card = resolve_params(model)
    size_model = cc.models.size_model_for(model, card)
    plain = card.replace(auto_nucleus_size=False)
    truth_d, truth_n, halves = [], [], 0
    est: dict[str, list[float]] = {r: [] for r in RULES}
    second: dict[str, list[float]] = {r: [] for r in RULES}
    final: dict[str, list[float]] = {r: [] for r in RULES}
    for image, labels, count, _kind in samples(args):
        truth_d.append(median_diameter(labels))
        truth_n.append(count)
        first = cc.predict(image, model, plain)
        for rule, large in RULES.items():
            sizing.LARGE_NUCLEUS_PX = large
            size = sizing.estimate_nucleus_size(first.image_norm, first.maps[0], size_model, border_prob=first.maps[1])
            halves += size.scale != 1.0
            est[rule].append(size.diameter or np.nan)
            second[rule].append(size.count)
            if args.counts:
                final[rule].append(cc.count_image(image, model, card, size_model=size_model).count)
        sizing.LARGE_NUCLEUS_PX = RULES["half for large nuclei"]
    td, tn = np.asarray(truth_d), np.asarray(truth_n, float)
    source = f"varied generator, seed {args.seed}" if args.varied else f"DSB {args.split} split"
    print(f"{args.model}, {source}, {len(td)} images; half resolution used for {halves} of them "
          f"(LARGE_NUCLEUS_PX = {sizing.LARGE_NUCLEUS_PX:g})")
    groups = {"all": np.ones(len(td), bool)}
    groups.update({f"nuclei {lo}-{hi} px" if hi < 1000 else f"nuclei >= {lo} px": (td >= lo) & (td < hi)
                   for lo, hi in BINS})
    head = "| images | rule | size off by > 25% | > 50% | second count MAPE |"
    if args.counts:
        head += " final count MAE | MAPE |"
    print("\n" + head + "\n" + "|---" * (head.count("|") - 1) + "|")
    for group, sel in groups.items():
        if not sel.any():
            continue
        for rule in RULES:
            d = np.asarray(est[rule])[sel]
            err = np.abs(np.log(d / td[sel]))
            ape = np.abs(np.asarray(second[rule])[sel] - tn[sel]) / np.maximum(tn[sel], 1)
            row = (f"| {group} ({int(sel.sum())}) | {rule} | {np.mean(~(err <= np.log(1.25))):.1%} | "
                   f"{np.mean(~(err <= np.log(1.5))):.1%} | {100 * ape.mean():.1f}% |")
            if args.counts:
                e = np.abs(np.asarray(final[rule], float)[sel] - tn[sel])
                row += f" {e.mean():.2f} | {100 * np.mean(e / np.maximum(tn[sel], 1)):.1f}% |"
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
