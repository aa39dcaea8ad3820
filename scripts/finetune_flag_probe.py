"""How often a fine-tuned model's quality flag fires on unseen images of the set it learnt (a probe).

    python scripts/finetune_flag_probe.py --set vgg_cells --n 32 --steps 100 [--draw 0] [--base unet-density]

Fine-tunes the base on N images of the set's validation draw (as ``scripts/finetune_benchmark.py
--validation`` draws them: vgg_cells trains from images 1-50 and scores 51-100; mbm within its first half),
counts the draw's other images with the new model and prints the share flagged "check this image", the
share of large errors (> 15%) among the flagged, the MAE and the most common reasons. A flag that fires on
every image of the kind the model was just taught says nothing.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def main(argv: list[str] | None = None) -> int:
    from finetune_benchmark import dataset, link_folder, split

    import cellcount as cc
    from cellcount.finetune import finetune
    from cellcount.models.autotune import cpu_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=["vgg_cells", "mbm"], required=True)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    p.add_argument("--base", default="unet-density")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--draw", type=int, default=0)
    p.add_argument("--by-slide", action="store_true",
                   help="mbm: train on the validation draw's first N images in name order (its first slides) and count "
                   "the rest (other slides), as a user teaches on a few slides and counts the next")
    p.add_argument("--other", choices=["vgg_cells", "mbm"],
                   help="also count this other set's first 20 images: unlike the ones the model learnt, they should be flagged")
    args = p.parse_args(argv)
    data = dataset(Path(args.data_root) / args.set, args.set)
    tr, te = split(args.set, len(data), args.n, args.draw, validation=True)
    if args.by_slide:  # the same images, split by name: mbm's names begin with the slide's number
        half = sorted(tr + te, key=lambda i: data[i][0].name)
        tr, te = sorted(half[:args.n]), sorted(half[args.n:])
    with tempfile.TemporaryDirectory() as tmp:
        folder = link_folder(Path(tmp) / "data", [data[i] for i in tr])
        res = finetune(args.base, folder, name="flag-probe", steps=args.steps, holdout=0, out_dir=Path(tmp) / "m",
                       seed=args.draw, threads=1)
        model = cc.load_model(res.folder)
        params = cc.resolve_params(model, None)
        size_model = cc.models.size_model_for(model, params)
        flags, big, errors, reasons, novelty = [], [], [], collections.Counter(), {"same": [], "other": []}
        for i in te:
            r = cc.count_image(cc.read_image(data[i][0]), model, params, size_model=size_model)
            flags.append(r.quality.flag)
            novelty["same"].append(r.quality.signals.get("novelty"))
            errors.append(r.count_estimate - data[i][2])
            big.append(abs(errors[-1]) > 0.15 * data[i][2])
            reasons.update(r.quality.reasons)
        other = []
        if args.other:
            for img, _, true in dataset(Path(args.data_root) / args.other, args.other)[:20]:
                r = cc.count_image(cc.read_image(img), model, params, size_model=size_model)
                novelty["other"].append(r.quality.signals.get("novelty"))
                other.append((r.quality.flag, abs(r.count_estimate - true) > 0.15 * true))
    flags, big = np.array(flags), np.array(big)
    print(f"{args.set}, {args.base} fine-tuned on {len(tr)} images ({args.steps} steps, draw {args.draw}"
          f"{', by slide' if args.by_slide else ''}), "
          f"{len(te)} unseen images, {cpu_model()}")
    print(f"flagged {flags.mean():.0%}; large errors {big.sum()}, of them flagged "
          f"{(flags & big).sum()}; MAE {np.mean(np.abs(errors)):.2f}")
    print("reasons:", reasons.most_common(6))
    if other:
        o = np.array(other)
        print(f"{args.other} (another kind of image), first {len(o)}: flagged {o[:, 0].mean():.0%}; large errors "
              f"{o[:, 1].sum()}, of them flagged {(o[:, 0] & o[:, 1]).sum()}")
    limit = ((model.card.extra.get("quality") or {}).get("rule") or {}).get("max_novelty")
    for which, values in novelty.items():
        v = np.array([x for x in values if x is not None], float)
        if len(v):
            print(f"novelty, {which} kind: min {v.min():.2f}, median {np.median(v):.2f}, 90th percentile "
                  f"{np.percentile(v, 90):.2f}, max {v.max():.2f} (limit {limit if limit is None else round(limit, 2)})")
    print("rule from:", (model.card.extra.get("quality") or {}).get("calibrated_on", "the defaults"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
