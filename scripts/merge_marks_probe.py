"""Which of the viewer's "likely merge" marks are merges: a model's objects far larger than their neighbours
(``cellcount.measure.likely_merges``) on labelled images, split by whether each holds two or more true
nuclei, with each object's solidity (area / convex hull area), to choose a shape condition for the marks.

    python scripts/merge_marks_probe.py --model unet-mask --data ../shared/datasets/dsb2018 --split val

Prints, for solidity limits, how many marks are kept among true merges and among single nuclei.
"""

from __future__ import annotations

import argparse

import numpy as np


def object_truth(pred: np.ndarray, true: np.ndarray, labels: np.ndarray) -> list[int]:
    """For each label in ``labels``, how many true nuclei have at least half their area inside it."""
    out = []
    t_area = np.bincount(true.ravel())
    for lab in labels:
        inside = true[pred == lab]
        hits = np.bincount(inside[inside > 0], minlength=t_area.size)
        out.append(int(np.sum(hits[1:] >= 0.5 * np.maximum(t_area[1:], 1))))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="unet-mask")
    p.add_argument("--data", default="../shared/datasets/dsb2018")
    p.add_argument("--split", default="val")
    args = p.parse_args(argv)

    import cellcount as cc
    from cellcount.groundtruth import load_labelled_folder
    from cellcount.measure import likely_merges, solidity
    from cellcount.models import size_model_for
    from cellcount.training.data import dsb_part

    model = cc.load_model(args.model)
    params = cc.resolve_params(model, None)
    size_model = size_model_for(model, params)
    rows = []
    for path, gt in load_labelled_folder(args.data):
        if args.split != "all" and dsb_part(path.name) != args.split:
            continue
        if gt.labels is None:
            continue
        image = cc.read_image(path)
        res = cc.postprocess(cc.predict(image, model, params, size_model=size_model), params, image=image)
        marks = likely_merges(res.objects)
        if not len(marks):
            continue
        nuclei = object_truth(res.labels, gt.labels, marks)
        sol = solidity(res.labels, res.objects.set_index("label").loc[marks])
        rows += [(path.name, int(m), n, s) for m, n, s in zip(marks, nuclei, sol)]
    merged = np.array([r[2] >= 2 for r in rows])
    sol = np.array([r[3] for r in rows])
    print(f"{args.model} on {args.data} ({args.split}): {len(rows)} marks, {merged.sum()} hold 2+ true nuclei, "
          f"{(~merged).sum()} hold 0-1")
    print("| solidity limit | merges kept | single nuclei kept | share of kept marks that are merges |")
    print("|---|---|---|---|")
    for limit in (1.01, 0.97, 0.95, 0.93, 0.91, 0.9, 0.88, 0.85):
        keep = sol < limit
        share = merged[keep].mean() if keep.any() else float("nan")
        print(f"| < {limit:.2f} | {int((keep & merged).sum())} of {int(merged.sum())} | "
              f"{int((keep & ~merged).sum())} of {int((~merged).sum())} | {100 * share:.0f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
