"""How often the app's and the CLI's "95%" bootstrap intervals hold what they claim, over few images.

Draws n images' absolute count errors from a population whose mean is known (the default model's per-image errors
on DSB's validation half, and a geometric distribution as skewed as a hard set's) and counts how often the MAE
interval covers the population's mean; then, for two equally good models (the same errors plus independent noise),
how often the paired interval calls them different. The intervals: the plain percentile bootstrap, the expanded
percentile (:func:`cellcount.metrics.expanded_level`), the bootstrap-t, the span of the last two, and that span capped
at :data:`cellcount.metrics.MAE_HIGH_CAP` x the largest error; "(used)" marks what cellcount.metrics reports.

    python scripts/interval_coverage.py [--repeats 600]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from cellcount.metrics import (
    BOOTSTRAP_SAMPLES,
    MAE_HIGH_CAP,
    _percentile_interval,
    _studentized_mean_interval,
    mae_confidence_interval,
)

ROOT = Path(__file__).resolve().parents[1]


def _methods(x: np.ndarray, seed: int) -> list[tuple[float, float]]:
    """(low, high) of the mean of ``x`` by the plain percentile, the expanded percentile, the bootstrap-t, the span
    of the last two, and the MAE's (:func:`cellcount.metrics.mae_confidence_interval`: that span from 0, capped)."""
    kw = {"level": 0.95, "n_boot": BOOTSTRAP_SAMPLES, "seed": seed}
    out = [_percentile_interval((x,), np.mean, paired=False, expand=False, **kw),
           _percentile_interval((x,), np.mean, paired=False, expand=True, **kw),
           _studentized_mean_interval(x, **kw)]
    span = (min(out[1][0], out[2][0]), max(out[1][1], out[2][1]))
    return out + [span, mae_confidence_interval(x, seed=seed) if (x >= 0).all() else (np.nan, np.nan)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=600)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    dsb = pd.read_csv(ROOT / "results/unet-mask-varied.val.csv")["abs_error"].to_numpy(float)
    pops = {"unet-mask-varied's DSB validation errors": dsb,
            "geometric (mean 3)": rng.geometric(0.25, 200_000) - 1.0,
            # a model that counts most images of a set exactly (as a fine-tune on its own kind of image)
            "60% exact, the rest DSB's errors": np.where(rng.random(200_000) < 0.6, 0.0,
                                                         rng.choice(dsb[dsb > 0], 200_000)),
            # one image in 15 far off (a wrong channel, a field of debris): the bootstrap-t's upper end flies off
            # when a sample holds one of them, which the cap at 1.5 x the largest error stops
            "DSB's errors, 1 image in 15 off by 100-300": np.where((far := np.random.default_rng(1)).random(200_000) < 1 / 15,
                                                                    far.uniform(100, 300, 200_000),
                                                                    far.choice(dsb, 200_000))}
    # the last population draws from a generator of its own, so the other rows keep the draws they had without it
    own = {"DSB's errors, 1 image in 15 off by 100-300": far}
    print(f"{args.repeats} draws per row\n")
    print("| what | images | plain percentile | expanded percentile | bootstrap-t | span of the last two | the span, at most "
          f"{MAE_HIGH_CAP:g} x the largest error |")
    print("|---|---|---|---|---|---|---|")
    for name, pop in pops.items():
        mu = pop.mean()
        for n in (5, 8, 15, 30):
            got = [_methods(own.get(name, rng).choice(pop, n), k) for k in range(args.repeats)]
            hits = np.mean([[lo <= mu <= hi for lo, hi in g] for g in got], axis=0)
            # the MAE's interval is reported from 0 up
            width = np.median([[hi - max(lo, 0.0) for lo, hi in g] for g in got], axis=0)
            print(f"| MAE interval covers the mean of {name} (MAE {mu:.2f}; median width) | {n} | {hits[0]:.1%} "
                  f"({width[0]:.1f}) | {hits[1]:.1%} ({width[1]:.1f}) | {hits[2]:.1%} ({width[2]:.1f}) | "
                  f"{hits[3]:.1%} ({width[3]:.1f}) | **{hits[4]:.1%}** ({width[4]:.1f}) (used) |")
    for n in (5, 8, 15, 30):
        said = []
        for k in range(args.repeats):
            e = (rng.geometric(0.2, n) - 1.0) * rng.choice([-1, 1], n)
            d = np.abs(e + rng.integers(-2, 3, n)) - np.abs(e + rng.integers(-2, 3, n))  # paired: the differences
            said.append([lo > 0 or hi < 0 for lo, hi in _methods(d, k)])
        s = np.mean(said, axis=0)
        print(f"| two equally good models called different (5% promised) | {n} | {s[0]:.1%} | **{s[1]:.1%}** (used) | "
              f"{s[2]:.1%} | - | - |")


if __name__ == "__main__":
    main()
