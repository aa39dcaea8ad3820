"""A fine-tune on real label images: the base model fine-tuned on N images of the DSB 2018 validation split
(label images), scored against the base on the rest of that split (not a test, not a benchmark).

    python scripts/finetune_dsb_probe.py --base unet-mask --n 16 --steps 300 [--kind all|bright|dark]
        [--annotation labels|points] [--option KEY=VALUE] [--json FILE]

DSB's validation split mixes fluorescence and brightfield images and nuclei from about 10 to 55 px across,
as images gathered from several sources are: a check that a fine-tune on such a set does not leave the base
worse. The base models never trained on the validation split; the test split is not read. The N training
images are a fixed draw (``--draw``); :func:`cellcount.finetune.finetune` holds out the rest and scores the
base and the new model on them, paired. Prints one JSON line (and writes it to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def dots_of(gt):
    """A label image's nuclei as dots at their centroids."""
    from scipy import ndimage as ndi

    from cellcount.groundtruth import GroundTruth

    ids = np.unique(gt.labels[gt.labels > 0])
    centres = np.array(ndi.center_of_mass(np.ones_like(gt.labels), gt.labels, ids)).reshape(-1, 2)
    return GroundTruth("points", len(centres), points=centres, source=gt.source)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd
    import yaml

    from cellcount.finetune import finetune
    from cellcount.groundtruth import read_label_image
    from cellcount.models.autotune import cpu_model
    from cellcount.training.data import dsb_part

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets" / "dsb2018"))
    p.add_argument("--base", default="unet-mask")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--draw", type=int, default=0)
    p.add_argument("--kind", choices=["all", "bright", "dark"], default="all", help="background of the images used")
    p.add_argument("--annotation", choices=["labels", "points"], default="labels",
                   help="train from the label images, or from a dot at each labelled nucleus's centroid")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword of cellcount.finetune.finetune (YAML value), e.g. size=set")
    p.add_argument("--json")
    args = p.parse_args(argv)
    root = Path(args.data_root)
    options = {"threads": 1, **{k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.option)}}
    meta = pd.read_csv(root / "metadata.csv").set_index("filename")
    names = sorted(q.name for q in (root / "images").glob("*.png") if dsb_part(q.name) == "val")
    if args.kind != "all":
        names = [x for x in names if bool(meta.loc[x, "bright_background"]) == (args.kind == "bright")]
    if not 0 < args.n < len(names):
        raise SystemExit(f"--n must be within 1..{len(names) - 1} ({len(names)} images)")
    order = np.random.default_rng([7, args.draw]).permutation(len(names))
    chosen = [names[i] for i in order]
    items = [(x, (root / "images" / x).read_bytes(), read_label_image(root / "labels" / x)) for x in chosen]
    if args.annotation == "points":  # the same nuclei as dots (the held-out images are scored by their count)
        items = [(x, b, dots_of(gt)) for x, b, gt in items]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        r = finetune(args.base, items, name="dsb-probe", steps=args.steps, holdout=len(names) - args.n,
                     out_dir=Path(tmp) / "models", **options)
        card = json.loads((r.folder / "card.json").read_text())
    keep = ("mae", "f1", "bias", "mape")
    out = {"base": args.base, "annotation": args.annotation, "n": len(r.train_files), "held_out": len(r.holdout_files), "kind": args.kind,
           "draw": args.draw, "steps": r.steps, "options": options,
           "size": card["training"]["size"], "background": card["training"].get("background"),
           "tuned": card.get("postprocess_tuned_on"),
           "before": {k: round(r.before[k], 3) for k in keep if k in r.before},
           "after": {k: round(r.after[k], 3) for k in keep if k in r.after},
           "paired_mae_difference": r.paired, "seconds": round(time.time() - t0),
           "kept_base_weights": r.kept_base,  # "after" is the fine-tuned weights' figure either way
           "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
