"""Does a fine-tuned density model fit its own training images, and would a linear count calibration fitted
on them help on unseen ones? (issue #19, a research probe; not a test)

    python scripts/finetune_benchmark.py --set vgg_cells --base unet-density --validation --n 32 --draws 2 \\
        --steps 300 --keep-models DIR
    python scripts/finetune_calibration_probe.py --models DIR [--set vgg_cells] [--n 32] [--draws 2]

For each kept draw: the MAE on its training images and on its test images, the line count ~ a * true + b
fitted on the training images, the test MAE with that line undone, and the same line's leave-one-out MAE
within the training images (what a user's own data would say about it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import finetune_benchmark as fb  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", required=True, type=Path, help="the --keep-models folder of finetune_benchmark.py")
    p.add_argument("--set", default="vgg_cells", choices=["vgg_cells", "mbm"])
    p.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--draws", type=int, default=2)
    args = p.parse_args(argv)
    import cellcount as cc
    from cellcount.models.autotune import cpu_model

    data = fb.dataset(args.data_root / args.set, args.set)
    print(f"{args.set} (validation split), N = {args.n}, models from {args.models}, {cpu_model()}\n")
    print("| draw | train MAE | train: count ~ a x true + b | test MAE | test MAE, line undone | train MAE, line undone (leave one out) |")
    print("|---|---|---|---|---|---|")
    for d in range(args.draws):
        model = cc.load_model(args.models / f"bench-{args.set}-{args.n}-{d}")
        tr, te = fb.split(args.set, len(data), args.n, d, validation=True)
        counts = {}
        for name, idx in (("train", tr), ("test", te)):
            items = [data[i] for i in idx]
            counts[name] = np.array(fb.test_counts(model, items)), np.array([n for *_, n in items], float)
        (c, t), (ct, tt) = counts["train"], counts["test"]
        a, b = np.polyfit(t, c, 1)
        loo = []
        for i in range(len(t)):
            keep = np.arange(len(t)) != i
            ai, bi = np.polyfit(t[keep], c[keep], 1)
            loo.append((c[i] - bi) / ai - t[i])
        print(f"| {d} | {np.abs(c - t).mean():.2f} | a = {a:.3f}, b = {b:+.1f} | {np.abs(ct - tt).mean():.2f} | "
              f"{np.abs((ct - b) / a - tt).mean():.2f} | {np.abs(loo).mean():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
