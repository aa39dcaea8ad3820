"""Probe: could a mask model size nuclei from its own first pass, without the density size model?

For each DSB image of a split: the true median nucleus diameter (from the labels); the size model's estimate
(what ``auto_nucleus_size`` uses today); and two read off the mask model's own scale-1 objects: the median
object diameter, and the disc diameter of its foreground area per object (``area_count_size`` with the mask
model's own count in place of the density's). Then the count three ways: sized by the size model (today),
never resized, and resized by the own-objects disc diameter beyond ``AUTO_RESCALE_TOLERANCE`` (a second pass
of the same model, no second network). Prints the size estimates' log-correlation with the truth and the
share off by more than 25% / 50%, and each rule's count MAE and MAPE (docs/RESULTS.md, "Sizing without a
second network").

With ``--varied N``: N images of the varied generator (``cellcount.training.data.varied_synthetic``: nuclei
6-80 px, fluorescence, gray brightfield and H&E-like colour; ``--seed``, one no training config uses) instead
of DSB, with the figures also by modality and by true nucleus size.

    python scripts/self_size_probe.py [--model unet-mask-varied] [--split val] [--limit 0] [--data DIR]
    python scripts/self_size_probe.py --varied 60 [--seed 9001]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from reference_diameter import median_diameter  # noqa: E402  (scripts/ is on the path when run as a script)

import cellcount as cc  # noqa: E402
from cellcount.groundtruth import read_label_image  # noqa: E402
from cellcount.params import resolve_params  # noqa: E402
from cellcount.sizing import AUTO_RESCALE_TOLERANCE, reference_diameter  # noqa: E402
from cellcount.training.data import dsb_part, varied_synthetic  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask-varied")
    p.add_argument("--split", default="val", choices=["train", "val"])
    p.add_argument("--limit", type=int, default=0, help="the first N images of the split (0: all)")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/dsb2018"))
    p.add_argument("--varied", type=int, default=0, help="N generated varied images instead of DSB")
    p.add_argument("--seed", type=int, default=9001, help="the generator's seed (--varied)")
    args = p.parse_args()
    model = cc.load_model(args.model)
    card = resolve_params(model)
    if model.output_kind != "mask":
        p.error(f"{args.model} is not a mask model")
    size_model = cc.models.size_model_for(model, card)
    plain = card.replace(auto_nucleus_size=False)
    ref = reference_diameter(model.card)
    sizes: dict[str, list[float]] = {"truth": [], "size model": [], "own objects' median": [], "own disc": []}
    counts: dict[str, list[int]] = {"truth": [], "sized by the size model": [], "never resized": [],
                                    "sized by its own disc": [], "sized by its own median": []}
    reruns = 0
    kinds: list[str] = []
    for image, truth_labels, truth_count, kind in samples(args):
        kinds.append(kind)
        sized = cc.predict(image, model, card, size_model=size_model)
        first = cc.predict(image, model, plain)
        objects = cc.postprocess(first, plain, image=image)
        n = max(objects.count, 1)
        disc = float(np.sqrt(4 * np.count_nonzero(first.maps[0] > 0.5) / (np.pi * n))) if objects.count else np.nan
        sizes["truth"].append(median_diameter(truth_labels))
        sizes["size model"].append(sized.estimated_diameter_px or np.nan)
        sizes["own objects' median"].append(float(np.median(objects.objects["equivalent_diameter_px"]))
                                            if objects.count else np.nan)
        sizes["own disc"].append(disc)
        median = sizes["own objects' median"][-1]
        own = rerun(image, model, plain, disc, objects.count, ref)
        own_median = rerun(image, model, plain, median, objects.count, ref)
        reruns += own is not None
        own = objects.count if own is None else own
        own_median = objects.count if own_median is None else own_median
        counts["truth"].append(truth_count)
        counts["sized by the size model"].append(cc.postprocess(sized, card, image=image).count)
        counts["never resized"].append(objects.count)
        counts["sized by its own disc"].append(own)
        counts["sized by its own median"].append(own_median)
    true_d = np.asarray(sizes.pop("truth"))
    t = np.asarray(counts.pop("truth"), float)
    source = f"varied generator, seed {args.seed}" if args.varied else f"DSB {args.split} split"
    print(f"{args.model}, {source}, {len(t)} images")
    groups = {"all": np.ones(len(t), bool)}
    if args.varied:
        k = np.asarray(kinds)
        groups.update({name: k == name for name in sorted(set(kinds))})
        groups.update({"nuclei < 12 px": true_d < 12, "nuclei 12-30 px": (true_d >= 12) & (true_d <= 30),
                       "nuclei > 30 px": true_d > 30})
    for group, sel in groups.items():
        if not sel.any():
            continue
        print(f"\n{group} ({int(sel.sum())} images)")
        print("| size estimate | log-correlation with the truth | off by > 25% | off by > 50% |")
        print("|---|---|---|---|")
        for key, values in sizes.items():
            v = np.asarray(values, float)[sel]
            ok = np.isfinite(v)
            err = np.abs(np.log(v[ok] / true_d[sel][ok]))
            corr = np.corrcoef(np.log(v[ok]), np.log(true_d[sel][ok]))[0, 1] if ok.sum() > 2 else np.nan
            print(f"| {key} | {corr:.3f} | {np.mean(err > np.log(1.25)):.0%} | {np.mean(err > np.log(1.5)):.0%} |")
        print("\n| count | MAE | MAPE |\n|---|---|---|")
        for key, values in counts.items():
            e = np.abs(np.asarray(values, float)[sel] - t[sel])
            print(f"| {key} | {e.mean():.2f} | {100 * np.mean(e / np.maximum(t[sel], 1)):.1f}% |")
    print(f"\nown-disc reruns: {reruns} of {len(t)} images")
    return 0


def rerun(image, model, plain, diameter: float, count: int, ref: float) -> int | None:
    """The count of a second pass resized by ``diameter`` when it is beyond the auto band, else None."""
    if not np.isfinite(diameter) or abs(np.log(diameter / ref)) <= np.log(AUTO_RESCALE_TOLERANCE):
        return None
    again = plain.replace(nucleus_diameter_px=diameter)
    return cc.postprocess(cc.predict(image, model, again), again, image=image).count


def samples(args):
    """(image, true labels, true count, kind) per image: DSB's ``--split`` or ``--varied`` generated ones."""
    if args.varied:
        rng = np.random.default_rng(args.seed)
        for _ in range(args.varied):
            s = varied_synthetic(320, rng=rng)
            bright = s.params.get("bright_background")
            kind = ("H&E-like colour" if s.image.ndim == 3 else "gray brightfield") if bright else "fluorescence"
            yield s.image, s.labels, s.count, kind
        return
    root = Path(args.data)
    names = sorted(f.name for f in (root / "images").glob("*.png") if dsb_part(f.name) == args.split)
    for name in names[: args.limit] if args.limit else names:
        truth = read_label_image(root / "labels" / name)
        yield cc.read_image(root / "images" / name), truth.labels, truth.count, "dsb"


if __name__ == "__main__":
    sys.exit(main())
