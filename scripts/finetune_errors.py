"""Where a fine-tune's count error comes from: bias, spread, and what one count gain could remove.

    python scripts/finetune_errors.py results/probes/*.json
    python scripts/finetune_errors.py --ensemble A.json B.json   # also: the mean of their counts per image

Reads :mod:`scripts.finetune_benchmark` JSON files and prints, per draw: the MAE, the bias (mean signed
error), the spread (standard deviation of the per-image errors), and the MAE after the single best gain on
those same test images. That last figure looks at the images it scores: a bound on what a better calibration
could do, never a result. ``--ensemble``: the files are fine-tunes of the same draws with other seeds; a last
row per draw scores the mean of their counts of each image (what averaging the models would count).
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
    p.add_argument("--ensemble", action="store_true", help="also score the mean count per image over the files")
    args = p.parse_args(argv)
    pooled: dict[tuple[int, int], dict[str, list[float]]] = {}
    truth: dict[str, float] = {}
    print("| file | N | draw | MAE | bias | spread | best gain (oracle) | MAE at it |")
    print("|---|---|---|---|---|---|---|---|")
    for f in args.files:
        for d in json.loads(Path(f).read_text())["draws"]:
            true = np.array([c["true"] for c in d["test_counts"]], float)
            pred = np.array([c["pred"] for c in d["test_counts"]], float)
            e = errors(true, pred)
            print(f"| {Path(f).stem} | {d['n']} | {d['draw']} | {e['mae']:.2f} | {e['bias']:+.2f} | {e['spread']:.2f} "
                  f"| {e['best_gain']:.3f} | {e['best_gain_mae']:.2f} |")
            for c in d["test_counts"]:
                pooled.setdefault((d["n"], d["draw"]), {}).setdefault(c["file"], []).append(c["pred"])
                truth[c["file"]] = c["true"]
    if args.ensemble:
        for (n, draw), per_file in sorted(pooled.items()):
            files = sorted(per_file)
            k = {len(per_file[f]) for f in files}
            e = errors(np.array([truth[f] for f in files], float), np.array([np.mean(per_file[f]) for f in files]))
            print(f"| mean of {'/'.join(map(str, sorted(k)))} | {n} | {draw} | {e['mae']:.2f} | {e['bias']:+.2f} | "
                  f"{e['spread']:.2f} | {e['best_gain']:.3f} | {e['best_gain_mae']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
