"""Calibrate each shipped model's quality flag on the DSB validation split and score it on the scoring sets.

    python scripts/quality_report.py [--write-card] [MODEL ...]

For every model and set it runs ``python -m cellcount.evaluate --out results/quality/<model>.<set>.csv``
(skipped when that CSV exists: the per-image signals do not depend on the rule, so calibrating again is
instant), fits the rule on the validation CSV with :func:`cellcount.quality.calibrate_rule` (the same fit as
``--calibrate-quality``), stores it in the card with ``--write-card``, and prints a Markdown table: per model
and set, the images, the median relative count error, the large errors (> 15% of the true count), the share
of images flagged, the share of the large errors in flagged images and that share for errors over 50%. The
scoring sets (DSB test split, vgg_cells, mbm) are never used to fit anything. Test-time flips are off by
default, so the flips' limit comes from a second validation run with them on (``--flips``): just outside
the largest disagreement it showed.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cellcount.evaluate.cli import _card_folder  # noqa: E402
from cellcount.models import load_model  # noqa: E402
from cellcount.models.card import write_card  # noqa: E402
from cellcount.quality import (  # noqa: E402
    calibrate_rule,
    card_entry,
    flag_report,
    judge,
    range_limit,
    relative_errors,
    signals_from_table,
)

DATA = ROOT.parent / "shared" / "datasets"
MODELS = ("unet-mask-varied", "unet-mask", "attention-unet-mask", "residual-unet-mask", "unet-density", "multihead-unet")
SETS = (("dsb2018", "val"), ("dsb2018", "test"), ("vgg_cells", "all"), ("mbm", "all"))
OUT = ROOT / "results" / "quality"


def per_image(model: str, data: str, split: str, *extra: str) -> pd.DataFrame:
    csv = OUT / f"{model}.{data}.{split}{'+flips' if extra else ''}.csv"
    if not csv.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "cellcount.evaluate", "--model", model, "--data", f"../shared/datasets/{data}",
               "--split", split, *extra, "--out", str(csv.relative_to(ROOT))]
        print("$", " ".join(cmd[1:]), file=sys.stderr)
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=sys.stderr)  # the table alone on stdout
    return pd.read_csv(csv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(MODELS))
    ap.add_argument("--write-card", action="store_true", help="store each calibrated rule in its model's card")
    ap.add_argument("--flips", nargs="*", default=["unet-mask-varied", "unet-mask"], metavar="MODEL",
                    help="also evaluate the validation split with test-time flips and put the flips' limit just "
                    "outside what it showed (default: the default model, unet-mask-varied, and unet-mask)")
    args = ap.parse_args(argv)
    print("| model | set | images | median error | large errors | flagged | large errors flagged | errors > 50% flagged "
          "| rule |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        val = per_image(name, "dsb2018", "val")
        rule, rep = calibrate_rule(signals_from_table(val), relative_errors(val["true"], val["pred"]))
        if name in args.flips:  # flips are off by default: their limit comes from a run with them on
            flips = per_image(name, "dsb2018", "val", "--test-time-flips")
            rule = dataclasses.replace(rule, max_flip_disagreement=range_limit(
                flips["q_flip_disagreement"].to_numpy(), below=False))
        if args.write_card:
            model = load_model(name)
            model.card.extra = {**model.card.extra, "quality": card_entry(
                rule, rep, f"{rep['n']} images of ../shared/datasets/dsb2018 (split val) by scripts/quality_report.py"
                + ("; max_flip_disagreement from the same images with --test-time-flips" if name in args.flips else ""))}
            write_card(model.card, _card_folder(name, name))
        fitted = rep["fitted_limits"]
        limits = ", ".join([f"{k} {getattr(rule, k):g}" for k in fitted if k != "joint_limits"]
                           + [" and ".join(f"{k} {v:g}" for k, v in rule.joint_limits) + " together"] * bool(rule.joint_limits)
                           + ["size clamp"] * rule.flag_size_at_limit + ["range limits on the rest"]
                           + ([f"flips {rule.max_flip_disagreement:g}"] if rule.max_flip_disagreement is not None else []))
        for data, split in SETS:
            df = val if (data, split) == ("dsb2018", "val") else per_image(name, data, split)
            flags = [judge(s, rule).flag for s in signals_from_table(df)]
            q = flag_report(flags, relative_errors(df["true"], df["pred"]))
            huge = flag_report(flags, relative_errors(df["true"], df["pred"]), large=0.5)
            held = q["large_errors_flagged_share"]
            held_huge = (f"{huge['large_errors_flagged_share']:.0%} of {huge['large_errors']}"
                         if huge["large_errors"] else "-")
            print(f"| {name} | {data} {split} | {q['n']} | {df['rel_error'].median():.0%} | {q['large_errors']} | "
                  f"{q['flagged_share']:.0%} | "
                  f"{'-' if held != held else f'{held:.0%}'} | {held_huge} | {limits if split == 'val' else ''} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
