"""Where a fine-tune's count error comes from: bias, spread, and what one count gain could remove.

    python scripts/finetune_errors.py results/probes/*.json

Reads :mod:`scripts.finetune_benchmark` JSON files and prints, per draw: the MAE, the bias (mean signed
error), the spread (standard deviation of the per-image errors), and the MAE after the single best gain on
those same test images. That last figure looks at the images it scores: a bound on what a better calibration
could do, never a result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def errors(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, bias, spread and the best-gain MAE (gains 0.8-1.2 in steps of 0.001) of one draw's counts."""
    err = pred - true
    gains = np.linspace(0.8, 1.2, 401)
    maes = np.abs(pred[None, :] * gains[:, None] - true[None, :]).mean(axis=1)
    best = int(np.argmin(maes))
    return {"mae": float(np.abs(err).mean()), "bias": float(err.mean()), "spread": float(err.std()),
            "best_gain": float(gains[best]), "best_gain_mae": float(maes[best])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    print("| file | N | draw | MAE | bias | spread | best gain (oracle) | MAE at it |")
    print("|---|---|---|---|---|---|---|---|")
    for f in args.files:
        for d in json.loads(Path(f).read_text())["draws"]:
            true = np.array([c["true"] for c in d["test_counts"]], float)
            pred = np.array([c["pred"] for c in d["test_counts"]], float)
            e = errors(true, pred)
            print(f"| {Path(f).stem} | {d['n']} | {d['draw']} | {e['mae']:.2f} | {e['bias']:+.2f} | {e['spread']:.2f} "
                  f"| {e['best_gain']:.3f} | {e['best_gain_mae']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
