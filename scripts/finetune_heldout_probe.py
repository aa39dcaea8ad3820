"""How a fine-tune's held-out figures compare with its counts of new images of the same kind, and its flag on them.

    python scripts/finetune_heldout_probe.py [--base unet-mask-varied] [--steps 200] [--first-seed 100]
        [--n 15] [--holdout 5] [--new 20]

Generates ``--n`` adipocyte-like images (``finetune_size_probe.fat_cell_image``) with a points CSV each, fine-tunes
``--base`` on them with ``--holdout`` held out (dots only, ``--steps`` steps, seed 0), then counts ``--new`` further
images (seeds first-seed + 500 on) with the new model through the command line, and prints: the held-out images'
mean relative error, the upper bound the held-out flag takes (:func:`cellcount.finetune.heldout_error_bound`),
whether every count is flagged for it, and on the new images the mean relative error, the large errors (> 15%)
and how many of them and of all were flagged. Generated images: a mechanism, not an accuracy on real fat cells.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def write_set(folder: Path, seeds: range, *, points: bool) -> dict[str, int]:
    """Images (and their points CSVs) of ``seeds`` in ``folder``: {file name: true count}."""
    from finetune_size_probe import fat_cell_image
    from skimage.io import imsave

    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for seed in seeds:
        image, centres = fat_cell_image(seed)
        imsave(folder / f"f{seed}.png", image, check_contrast=False)
        if points:
            (folder / f"f{seed}_points.csv").write_text("x,y\n" + "".join(f"{c:.1f},{r:.1f}\n" for r, c in centres))
        truth[f"f{seed}.png"] = len(centres)
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="unet-mask-varied")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--n", type=int, default=15)
    ap.add_argument("--holdout", type=int, default=5)
    ap.add_argument("--new", type=int, default=20)
    args = ap.parse_args()

    from cellcount.finetune import finetune, heldout_error_bound
    from cellcount.quality import LARGE_ERROR, relative_errors

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_set(tmp / "data", range(args.first_seed, args.first_seed + args.n), points=True)
        res = finetune(args.base, tmp / "data", name="probe", steps=args.steps, holdout=args.holdout,
                       out_dir=tmp / "models", seed=0)
        held = [c for c in res.holdout_counts if c["true"] > 0]
        rel_held = relative_errors([c["true"] for c in held], [c["after"] for c in held])
        first_new = args.first_seed + 500
        truth = write_set(tmp / "new", range(first_new, first_new + args.new), points=False)
        env = {**os.environ, "CELLCOUNT_MODELS_DIR": str(tmp / "models"), "CELLCOUNT_DATA_DIR": str(tmp / "history")}
        subprocess.run([sys.executable, "-m", "cellcount", "count", str(tmp / "new"), "--model", "probe", "--out",
                        str(tmp / "new.csv"), "--no-progress", "-q"], env=env, check=True)
        rows = pd.read_csv(tmp / "new.csv")
        true = np.array([truth[Path(f).name] for f in rows["file"]], float)
        rel_new = relative_errors(true, rows["count"].to_numpy(float))
        flagged = rows["check"].fillna(False).astype(bool).to_numpy()
        large = rel_new > LARGE_ERROR
        flag_all = any("held-out images" in str(r) for r in rows["check_reasons"])
    print(json.dumps({
        "base": args.base, "steps": res.steps, "seeds": [args.first_seed, args.first_seed + args.n - 1],
        "new_seeds": [first_new, first_new + args.new - 1],
        "heldout_mean_rel_error_pct": round(100 * float(np.mean(rel_held)), 1),
        "heldout_bound_pct": round(100 * heldout_error_bound(rel_held), 1),
        "every_count_flagged": flag_all,
        "new_mean_rel_error_pct": round(100 * float(np.mean(rel_new)), 1),
        "new_large_errors": int(large.sum()), "new_large_errors_flagged": int((large & flagged).sum()),
        "new_flagged": int(flagged.sum()), "new_images": int(len(rows)),
    }))


if __name__ == "__main__":
    main()
