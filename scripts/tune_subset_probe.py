"""Does tuning the postprocessing on a few of a user's images help on the rest of them? (the Evaluate page's
Optimise, the fine-tune's re-tune)

    python scripts/tune_subset_probe.py [--model unet-mask] [--split val] [--n 8] [--draws 10]

Counts the DSB split once, then per draw tunes (``cellcount.evaluate.tune_params``, default grid) on ``n``
random images and scores the other images three ways: the card's settings, the tuned settings, and the
tuned settings with steps of at least ``--min-gain`` only, and each of these two only where a 4-fold cross
check on the tuning images (:func:`cellcount.evaluate.cross_check`) says tuning beats the card there. Prints a Markdown table of held-out count MAE and F1@0.5 per
draw and their means.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from cellcount.evaluate import (
    cross_check,
    evaluate_predictions,
    labelled_items,
    predict_pairs,
    tune_params,
)
from cellcount.models import load_model
from cellcount.params import resolve_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unet-mask")
    ap.add_argument("--data", default="../shared/datasets/dsb2018")
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--min-gain", type=float, default=0.05)
    args = ap.parse_args()
    model = load_model(args.model)
    card = resolve_params(model, None)
    items = list(labelled_items(args.data, args.split, None, 0.2, 0))
    t0 = time.perf_counter()
    pairs = predict_pairs(items, model, card)
    print(f"{model.name}, {len(pairs)} images of {args.data} (split {args.split}) predicted in "
          f"{time.perf_counter() - t0:.0f} s; tune on {args.n}, score the other {len(pairs) - args.n}; "
          f"{platform.processor() or platform.machine()}", flush=True)
    g = f"{args.min_gain:g}"
    print(f"| draw | card: MAE, F1 | tuned | tuned, min gain {g} | tuned if a 4-fold check on the {args.n} says so "
          f"| the same, min gain {g} | tuned settings |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for draw in range(args.draws):
        rng = np.random.default_rng(draw)
        idx = rng.permutation(len(pairs))
        tune_on, held = [pairs[i] for i in idx[:args.n]], [pairs[i] for i in idx[args.n:]]
        tuned = tune_params(tune_on, card).best_params
        gained = tune_params(tune_on, card, min_gain=args.min_gain).best_params
        start, after = cross_check(tune_on, card)
        checked = tuned if after < start else card
        start, after = cross_check(tune_on, card, min_gain=args.min_gain)
        checked_gain = gained if after < start else card
        scores = []
        for params in (card, tuned, gained, checked, checked_gain):
            s = evaluate_predictions(held, params, keep_results=False).summary
            scores.append((s["mae"], s["f1"]))
        rows.append(scores)
        changed = {k: v for k, v in tuned.to_dict().items() if card.to_dict()[k] != v}
        print(f"| {draw} | " + " | ".join(f"{m:.2f}, {f:.3f}" for m, f in scores) + f" | {changed} |", flush=True)
    mean = np.mean(np.array(rows), axis=0)
    print("| mean | " + " | ".join(f"{m:.2f}, {f:.3f}" for m, f in mean) + " | |")


if __name__ == "__main__":
    main()
