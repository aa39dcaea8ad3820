"""``python -m cellcount.finetune`` and ``cellcount finetune``: the command line of a fine-tune."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..cliparams import setup_logging
from ..errors import CellcountError
from .core import DEFAULT_MAX_STEPS, DEFAULT_MINUTES, finetune
from .data import DEFAULT_HOLDOUT
from .fit import PRECISIONS, FinetuneProgress
from .reading import SET_AGREEMENT
from .record import backends_note
from .verdict import WORSE_OBJECTS, WORSE_SHARE, holdout_verdict, model_kind

HELD_OUT_SHOWN = 10
"""Held-out images whose counts the command prints, the farthest off first."""


def build_parser() -> argparse.ArgumentParser:
    from ..cliparams import prog_name

    p = argparse.ArgumentParser(prog=prog_name("cellcount.finetune"), description=sys.modules[__package__].__doc__.splitlines()[0])
    p.add_argument("--from", dest="base", required=True, help="the model to start from (name or folder)")
    p.add_argument("--data", required=True, help="folder of images with label images, masks, dot images or point CSVs")
    p.add_argument("--name", required=True, help="name of the new model")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None,
                        help=f"time budget of the whole run in minutes: reading, training and scoring (default "
                        f"{DEFAULT_MINUTES:g}); training gets what reading and scoring leave")
    budget.add_argument("--steps", type=int, default=None, help="a fixed number of training steps instead")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, metavar="N",
                   help=f"the most steps the time budget may buy (default {DEFAULT_MAX_STEPS}; 0: no limit), so that "
                   "a fast CPU ends the run early")
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                   help="images held out for the before/after score: a fraction below 1 (default 0.25) or a "
                   "whole number of images (1 means one image)")
    p.add_argument("--out-dir", help="where the model folder goes (default: the user models folder)")
    p.add_argument("--size", choices=["auto", "set", "image"], default="auto",
                   help="object size: one for the whole set, each image's own, or auto (one unless the label "
                   "images show several magnifications)")
    p.add_argument("--diameter", type=float, default=None, metavar="PX",
                   help="the objects' diameter in pixels, if you know it: one size for the whole set instead of "
                   "measuring it (helps with objects unlike nuclei, e.g. fat cells, annotated with dots)")
    p.add_argument("--background", choices=["auto", "set", "image"], default="auto",
                   help="bright or dark background: decided once for the set, per image, or auto (once when at "
                   f"least {100 * SET_AGREEMENT:.0f}%% of the training images agree)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="training precision: auto (bf16 where timed faster on this CPU), fp32 or bf16")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the held-out choice and of the training crops (default 0): the same seed and data "
                   "repeat a run's choices")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace a user model of the same name")
    p.add_argument("--keep-worse", action="store_true",
                   help="save the fine-tuned weights even when they count the held-out images clearly worse than the "
                   f"base (MAE over {100 * WORSE_SHARE:.0f}%% higher and at least {WORSE_OBJECTS:g} objects more error over "
                   "the held-out images together; by default the "
                   "new model then keeps the base's weights and settings); a model so kept flags every count it makes")
    return p


def main(argv: list[str] | None = None) -> int:
    from ..cliparams import plain_warnings

    with plain_warnings():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(logging.INFO)
    if not (0 <= args.holdout < 1 or (args.holdout >= 1 and float(args.holdout).is_integer())):
        print(f"error: --holdout {args.holdout:g}: give a fraction from 0 to below 1 (0.25; 0: none) or a whole "
              "number of images (8)", file=sys.stderr)
        return 2
    holdout: float | int = args.holdout if args.holdout < 1 else int(args.holdout)
    last = [0.0]

    def show(p: FinetuneProgress) -> None:
        now = time.perf_counter()
        if p.message.startswith("note: left out: "):  # now too: a user may stop the run and fix the file
            print(f"[{p.stage}] {p.message}", flush=True)
        if p.message.startswith("note: "):
            return  # printed (again) at the end, with the result
        if p.stage != "train" or now - last[0] > 5 or p.step == p.steps or p.message:
            last[0] = now
            extra = (f" step {p.step}{'/' + ('~' if p.estimated else '') + str(p.steps) if p.steps else ''} loss {p.loss:.4f}, ~{p.remaining_s:.0f} s of training left"
                     if p.stage == "train" else "")
            # a message during training (the precision chosen) gets its own line, not the step's tail
            sep = "\n[train] " if extra and p.message else " "
            print(f"[{p.stage}]{extra}{sep}{p.message}".rstrip(), flush=True)

    minutes = args.minutes if args.minutes is not None or args.steps is not None else DEFAULT_MINUTES
    try:
        res = finetune(args.base, args.data, name=args.name, minutes=minutes, steps=args.steps, holdout=holdout,
                       out_dir=args.out_dir, seed=args.seed, threads=args.threads, progress=show,
                       size=args.size, background=args.background, diameter_px=args.diameter,
                       precision=args.precision, max_steps=args.max_steps if args.max_steps > 0 else None,
                       overwrite=args.overwrite, keep_worse=args.keep_worse)
    except CellcountError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:  # --data or --from that does not exist
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the fine-tune stopped and nothing was saved", file=sys.stderr)
        return 130
    print(f"saved {res.name} to {res.folder} ({res.steps} steps in {res.precision}, {res.seconds:.0f} s)")
    from ..models.loading import user_models_dir

    if args.out_dir and Path(args.out_dir).resolve() != user_models_dir().resolve():
        # `count --model NAME` looks in the models folder only: elsewhere it says "unknown model"
        print(f"note: {res.folder} is outside your models folder ({user_models_dir()}): use it by its folder "
              f"(--model {res.folder}), or move it there to use it by name")
    print(f"trained in {res.precision_why}")
    print(f"how {res.name} reads images: {res.reading}")  # the Train page's words
    for text in [*res.notes, *([res.size_note] if res.size_note else [])]:
        print(f"note: {text}")
    if res.before:
        which = " (the fine-tuned weights, not saved: see the note above)" if res.kept_base else ""
        print(f"held-out images ({len(res.holdout_files)}): count MAE {res.before['mae']:.2f} -> "
              f"{res.after['mae']:.2f}{which}; each, the furthest off first:")
        # each image's counts: one far-off image (another magnification, an empty annotation) can make the MAE alone
        for row in sorted(res.holdout_counts, key=lambda r: -abs(r["after"] - r["true"]))[:HELD_OUT_SHOWN]:
            print(f"  {row['file']}: true {row['true']:g}, {args.base} {row['before']:.1f}, "
                  f"{'fine-tuned' if res.kept_base else res.name} {row['after']:.1f}")
        if len(res.holdout_counts) > HELD_OUT_SHOWN:
            print(f"  ... {len(res.holdout_counts) - HELD_OUT_SHOWN} more (the card lists every one)")
        if ran := backends_note(res.holdout_backends, base=args.base,
                                name="the fine-tuned weights" if res.kept_base else res.name):
            print(f"  {ran}")
        if "mae" in res.settings_only:
            which = "input settings; its postprocessing is the base's" if res.settings_kept else "settings (input and postprocessing)"
            print(f"  {args.base}'s weights with {res.name}'s {which}: MAE "
                  f"{res.settings_only['mae']:.2f}, what the settings alone do")
        who = "the fine-tuned model (not kept)" if res.kept_base else res.name
        warn, text = holdout_verdict(res.paired, len(res.holdout_files), name=who, base=args.base,
                                     before=res.before, after=res.after,
                                     segmentation=model_kind(args.base) != "density")
        if res.kept_base:
            text += f" So {res.name} keeps {args.base}'s weights: it counts these images as {args.base} does."
        print(("warning: " if warn else "") + text)
    else:  # the Train page says it too: without held-out images nothing checked the new weights against the base's
        print(f"note: no image was held out (--holdout 0, or too few images), so there is no before/after score, and "
              f"{res.name} keeps its fine-tuned weights unchecked: a fine-tune that counts worse than {args.base} is "
              "kept as well. Score it on images it has not seen (cellcount evaluate) before relying on it")
    # saved, but not from every image given: exit 1, as `count` and `evaluate` do when they left a file out
    return 1 if any(text.startswith("left out: ") for text in res.notes) else 0
