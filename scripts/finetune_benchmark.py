"""Fine-tuning against the published few-shot counting benchmarks (issue: "Teach cellcount your cells").

    python scripts/finetune_benchmark.py --set vgg_cells --n 8 16 32 --draws 5 --minutes 5
    python scripts/finetune_benchmark.py --set mbm --n 15 --draws 3 --minutes 5

vgg_cells: train on N images drawn from 1-100, test on 101-200 (the published protocol); mbm: train on N
images, test on the rest. Each draw fine-tunes the base model on the drawn images' dots alone (no hold-out:
the test images score it), then counts the test images. Prints a markdown table: count MAE mean +- std
over draws for the fine-tuned model, the base model on the same test images, and the time each
fine-tune took; ``--json`` keeps every draw (with each test image's count). ``--validation`` trains and
scores within the training half (for choosing settings without looking at the test images); ``--option``
passes a keyword to :func:`cellcount.finetune.finetune`. The data are read from ../shared/datasets and never copied
into the repository (the fine-tune folders are temporary links).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PUBLISHED = {
    "vgg_cells": "N = 32: Count-ception 2.4 +- 0.4, FCRN-A 2.9 +- 0.2, Lempitsky & Zisserman 3.5 +- 0.2",
    "mbm": "N = 15: Count-ception 8.8 +- 2.3 (as published by Cohen et al. 2017)",
}


def dataset(root: Path, name: str) -> list[tuple[Path, np.ndarray, int]]:
    """(image path, (N, 2) row/col dots, count) for every image of the set, in file order."""
    from cellcount.groundtruth import read_counts_csv, read_dot_image, read_points_csv

    counts = read_counts_csv(root / "counts.csv")
    out = []
    for img in sorted((root / "images").glob("*.png")):
        if name == "vgg_cells":
            gt = read_dot_image(root / "dots" / img.name.replace("cell", "dots"))
        else:
            gt = read_points_csv(root / "dots" / f"{img.stem}.csv")
        out.append((img, gt.points, int(counts.get(img.stem, gt.count))))
    return out


def split(name: str, n_images: int, n: int, draw: int, *, validation: bool = False) -> tuple[list[int], list[int]]:
    """(train, test) indices of one draw. ``validation``: choosing settings never looks at the test images:
    vgg_cells trains from images 1-50 and scores 51-100; mbm trains from its first 22 images (in a fixed
    shuffled order) and scores the other training-half images."""
    rng = np.random.default_rng([2010, n, draw])
    if name == "vgg_cells":  # the protocol: train from images 1-100, test on 101-200
        if validation:
            return sorted(rng.choice(50, n, replace=False).tolist()), list(range(50, 100))
        return sorted(rng.choice(100, n, replace=False).tolist()), list(range(100, min(200, n_images)))
    if validation:
        half = np.random.default_rng(2010).permutation(n_images)[: n_images // 2]
        order = half[rng.permutation(len(half))]
        return sorted(order[:n].tolist()), sorted(order[n:].tolist())
    order = rng.permutation(n_images)
    return sorted(order[:n].tolist()), sorted(order[n:].tolist())


def link_folder(folder: Path, items: list[tuple[Path, np.ndarray, int]]) -> Path:
    """Images linked into ``folder`` with ``<stem>_points.csv`` (x,y) beside each."""
    folder.mkdir(parents=True)
    for img, pts, _ in items:
        (folder / img.name).symlink_to(img.resolve())
        rows = "\n".join(f"{c:.2f},{r:.2f}" for r, c in pts)
        (folder / f"{img.stem}_points.csv").write_text("x,y\n" + rows + "\n")
    return folder


def test_counts(model, items, overrides: dict | None = None) -> list[float]:
    """The model's count of each test image, with its card's settings (and ``overrides`` over them)."""
    import cellcount as cc

    params = cc.resolve_params(model, overrides)
    size_model = cc.models.size_model_for(model, params)  # loaded once for all images
    return [float(cc.count_image(cc.read_image(img), model, params, size_model=size_model).count_estimate)
            for img, _, _ in items]


def mae(counts: list[float], items) -> float:
    return float(np.mean([abs(c - n) for c, (_, _, n) in zip(counts, items)]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=["vgg_cells", "mbm"], required=True)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    p.add_argument("--base", default=None, help="model to fine-tune (default: the default model)")
    p.add_argument("--n", type=int, nargs="+", default=[32])
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--first-draw", type=int, default=0, help="run draws first-draw .. first-draw + draws - 1")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=None, help="a fixed number of steps instead of the time budget")
    p.add_argument("--train-seed", type=int, default=None,
                   help="the fine-tune's seed is this plus the draw number (default: the draw number)")
    p.add_argument("--json", help="write every draw here")
    p.add_argument("--validation", action="store_true",
                   help="research split: train and score within images 1-100 (vgg_cells) or half the set (mbm)")
    p.add_argument("--keep-models", help="copy each draw's fine-tuned model into this folder (to score it again)")
    p.add_argument("--score-models", metavar="DIR",
                   help="no training: score the models --keep-models kept in DIR on their draws' test images")
    p.add_argument("--count-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a counting setting over the models' cards (YAML value), e.g. test_time_flips=true")
    p.add_argument("--base-only", action="store_true", help="only the base model's MAE on the test images")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword of cellcount.finetune.finetune (YAML value), e.g. lr=0.001; repeatable")
    args = p.parse_args(argv)

    import yaml

    import cellcount as cc
    from cellcount.finetune import finetune
    from cellcount.memory import keep_freed_memory
    from cellcount.models.autotune import cpu_model
    from cellcount.models.backends import cpu_flags, cpu_has_bf16

    keep_freed_memory()  # as the app and `cellcount finetune` train (a step 1.1x faster on a Zen 3)

    options = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.option)}
    count_options = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.count_option)} or None
    base_name = args.base or cc.models.default_model_name()
    base = cc.load_model(base_name)
    data = dataset(Path(args.data_root) / args.set, args.set)
    if args.base_only:
        for n in args.n:
            te = [data[i] for i in split(args.set, len(data), n, 0, validation=args.validation)[1]]
            print(f"{args.set} N={n}: {base_name} MAE {mae(test_counts(base, te), te):.2f} on {len(te)} test images "
                  "(draw 0's)")
        return 0
    if args.score_models:
        scored = []
        for folder in sorted(Path(args.score_models).glob(f"bench-{args.set}-*-*")):
            n, d = (int(x) for x in folder.name.rsplit("-", 2)[1:])
            te = [data[i] for i in split(args.set, len(data), n, d, validation=args.validation)[1]]
            scored.append({"model": folder.name, "n": n, "draw": d, "test_images": len(te),
                           "mae": mae(test_counts(cc.load_model(folder), te, count_options), te)})
            print(f"{folder.name}: MAE {scored[-1]['mae']:.2f} on {len(te)} test images, settings over the card "
                  f"{count_options}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"set": args.set, "scored_models": args.score_models,
                                                   "validation": args.validation, "count_options": count_options,
                                                   "draws": scored}, indent=2))
        return 0
    rows, draws = [], []
    base_cache: dict[tuple[int, ...], float] = {}  # the base model's test MAE per test set
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            maes, bases, secs = [], [], []
            for d in range(args.first_draw, args.first_draw + args.draws):
                tr, te = split(args.set, len(data), n, d, validation=args.validation)
                folder = link_folder(Path(tmp) / f"{n}-{d}", [data[i] for i in tr])
                t0 = time.perf_counter()
                res = finetune(base_name, folder, name=f"bench-{args.set}-{n}-{d}", minutes=args.minutes, steps=args.steps, holdout=0,
                               out_dir=Path(tmp) / "models", seed=d + (args.train_seed or 0), **options)
                secs.append(time.perf_counter() - t0)
                if args.keep_models:
                    shutil.copytree(res.folder, Path(args.keep_models) / res.folder.name, dirs_exist_ok=True)
                model = cc.load_model(res.folder)
                test_items = [data[i] for i in te]
                counts = test_counts(model, test_items, count_options)
                maes.append(mae(counts, test_items))
                key = tuple(te)
                if key not in base_cache:
                    base_cache[key] = mae(test_counts(base, test_items), test_items)
                bases.append(base_cache[key])
                draws.append({"n": n, "draw": d, "train": [data[i][0].name for i in tr], "test_images": len(te),
                              "mae": maes[-1], "base_mae": bases[-1], "seconds": secs[-1], "steps": res.steps,
                              "precision": res.precision, "precision_why": res.precision_why,
                              "postprocess": model.card.postprocess, "tuned_on": model.card.postprocess_tuned_on,
                              "test_counts": [{"file": data[i][0].name, "true": data[i][2], "pred": round(c, 2)}
                                              for i, c in zip(te, counts)]})
                print(f"N={n} draw {d}: MAE {maes[-1]:.2f} (base {bases[-1]:.2f}), {secs[-1]:.0f} s, {res.steps} steps in {res.precision}",
                      flush=True)
            rows.append((n, np.mean(maes), np.std(maes), np.mean(bases), np.median(secs)))
    machine = (f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} cores, "
               f"{'native' if cpu_has_bf16() else 'no native'} bf16 ({', '.join(sorted(cpu_flags() & {'avx512_bf16', 'amx_bf16'})) or '-'})")
    split_name = "validation split" if args.validation else "published split"
    budget = f"{args.steps} steps" if args.steps else f"budget {args.minutes:g} min"
    print(f"\n{args.set} ({split_name}), base {base_name}, {args.draws} draws, {budget}, options {options}, {machine}\n")
    print("| N | fine-tuned MAE (mean +- std) | base model MAE | median fine-tune time |")
    print("|---|---|---|---|")
    for n, m, s, b, t in rows:
        print(f"| {n} | {m:.2f} +- {s:.2f} | {b:.2f} | {t:.0f} s |")
    print(f"\nPublished: {PUBLISHED[args.set]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"set": args.set, "base": base_name, "machine": machine,
                                               "minutes": args.minutes, "steps": args.steps,
                                               "train_seed": args.train_seed, "validation": args.validation, "options": options, "count_options": count_options, "draws": draws}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
