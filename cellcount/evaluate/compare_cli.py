"""Command line: ``cellcount compare --data DIR CONFIG CONFIG [...]``: models (each with its card's settings), or
settings files (each with the model it was saved for), scored side by side on the same labelled images, as the
Compare page scores them, with each one's paired MAE difference from the one with the lowest MAE.

Exit codes as ``cellcount evaluate``'s: 0 done; 1 done, but some images or their ground truth could not be used
(each named on stderr and left out); 2 bad input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..cliparams import normalize_argv, plain_warnings, prog_name
from ..errors import ParameterError
from ..metrics import MIN_BOOTSTRAP_IMAGES
from ..pipeline import CountParams, resolve_params
from . import evaluate_predictions, predict_pairs, with_read_notes
from .cli import _check_options, _encoded, _is_json_with, keep_others, read_labelled
from .compare import as_written, compare_counts

logger = logging.getLogger(__name__)

MAX_CONFIGS = 8


@dataclass
class Config:
    label: str  # "A: unet-mask", "B: unet-mask (tuned.json)"
    model: object
    params: CountParams
    settings: str | None  # the settings file, None for the card's


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog_name("cellcount.evaluate.compare_cli"),
        description="Score two or more models, or one model's settings, side by side on the same labelled images: "
        "each one's count error with its 95% interval, and its MAE difference from the one with the lowest MAE "
        "with a paired interval (is it more than image-to-image luck?), as the app's Compare page does.")
    p.add_argument("configs", nargs="+", metavar="MODEL_OR_SETTINGS",
                   help="a model (name from `cellcount models`, or folder), counted with its card's settings, or a "
                   "settings file (.json: the app's download, `count`'s counts.settings.json, `evaluate "
                   "--save-settings`), counted with the model it was saved for; two files of one model compare "
                   f"two settings; 2 to {MAX_CONFIGS}")
    p.add_argument("--data", required=True, help="folder with images + ground truth, or DSB layout (as evaluate's)")
    p.add_argument("--split", choices=["all", "train", "val", "test", "heldout"], default="all",
                   help="DSB-style deterministic split by file name, as evaluate's (default all)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="with --split: the validation share (default 0.2)")
    p.add_argument("--split-seed", type=int, default=0, help="with --split: the split's seed (default 0)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--keep-trained", action="store_true",
                   help="score the images a model learnt from too (by default they are named and, where others "
                   "remain, left out for every model: the error on them flatters the model that learnt them)")
    p.add_argument("--iou", type=float, default=0.5,
                   help="overlap at which a predicted object matches a true one, for F1 (default 0.5)")
    p.add_argument("--out", help="per-image CSV: each image's truth and every configuration's count and error")
    p.add_argument("--json", help="write each configuration's figures as JSON here")
    p.add_argument("--exact", action="store_true", help="plain fp32 path (default: the fast path)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the figures, warnings and errors")
    return p


def main(argv: list[str] | None = None) -> int:
    from ..errors import run_cli

    args = build_parser().parse_args(normalize_argv(argv))
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    with plain_warnings():
        return run_cli(lambda: _run(args))


def _is_settings_file(ref: str) -> bool:
    return ref.lower().endswith(".json") and not Path(ref).is_dir()


def load_configs(refs: list[str]) -> list[Config]:
    """Each reference as a :class:`Config`, labelled A, B, ... (ParameterError or ModelNotFoundError first)."""
    from ..models import load_model
    from ..settingsfile import model_from_file, model_sha256_from_file, params_from_file

    if not 2 <= len(refs) <= MAX_CONFIGS:
        raise ParameterError(f"{len(refs)} model(s) or settings file(s) given: compare takes 2 to {MAX_CONFIGS} "
                             "(`cellcount evaluate` scores one)")
    configs = []
    for letter, ref in zip(string.ascii_uppercase, refs, strict=False):
        if _is_settings_file(ref):
            overrides = params_from_file(ref)  # checked before any image is read
            name = model_from_file(ref)
            if not name:
                raise ParameterError(f"{ref} names no model: save the settings from the app or `count`, which name "
                                     "theirs, or give the model instead")
            model = load_model(name)
            sha = model_sha256_from_file(ref)
            if sha and model.card.sha256 and sha != model.card.sha256:
                print(f"warning: {model.name} is not the model {ref} was saved with: its weights changed since, so "
                      "these settings may count differently now", file=sys.stderr)
            params, settings = resolve_params(model, overrides), ref
            label = f"{letter}: {model.name} ({Path(ref).name})"
        else:
            model = load_model(ref)
            params, settings = resolve_params(model, {}), None
            label = f"{letter}: {model.name}"
        configs.append(Config(label, model, params, settings))
    return configs


def _leave_out_trained(items: list, configs: list[Config], paths: dict[str, Path], keep: bool) -> list:
    """``items`` without the images any configuration's model learnt from (named on stderr), where others remain
    and ``keep`` is off: each model is scored on the same images."""
    from ..models import with_base_training

    seen: set[str] = set()
    names = [name for name, _, _ in items]
    for cfg in configs:
        card = with_base_training(cfg.model.card)
        mine = card.trained_on(_encoded(paths, names) if card.training_digests() else [(n, None) for n in names])
        if mine:
            print(f"warning: {cfg.label}: {card.trained_on_note(mine, len(items), advice=False)}", file=sys.stderr)
        seen.update(mine)
    if seen and not keep and len(seen) < len(items):
        print(f"warning: those {len(seen)} image(s) are left out of every configuration's scores ({len(items) - len(seen)}"
              " scored; --keep-trained keeps them)", file=sys.stderr)
        return [item for item in items if item[0] not in seen]
    return items


def _long_rows(cfg: Config, per_image: pd.DataFrame) -> pd.DataFrame:
    """Evaluate's per-image table as the Compare page's rows (one per image of this configuration)."""
    whole = per_image["pred"].dropna().mod(1).eq(0).all()
    return pd.DataFrame({
        "file": per_image["file"], "true": per_image["true"], "config": cfg.label, "model": cfg.model.name,
        "settings": cfg.settings or "card",
        "count": per_image["pred"].round().astype("Int64") if whole else per_image["pred"],
        "count_estimate": per_image["pred"], "seconds": per_image["model_seconds"],
        "check": per_image["check"] if "check" in per_image else None,
        "check_reasons": per_image["check_reasons"] if "check_reasons" in per_image else "",
    })


def _run(args: argparse.Namespace) -> int:
    from ..csvout import atomic_write_bytes, write_csv
    from ..models.card import finite_json

    args.save_settings = None  # evaluate's output checks, for --out and --json
    _check_options(args)
    keep_others(args, {"out": lambda held: bool(re.match(rb"(\xef\xbb\xbf)?file,(true,)?A: ", held)),
                       "json": _is_json_with({"data", "split", "configs"})})
    configs = load_configs(args.configs)
    data = read_labelled(args)
    skipped, read_notes = data.skipped, data.notes
    items = _leave_out_trained(data.items, configs, data.paths, args.keep_trained)
    logger.info("%d configurations on %d image(s) with ground truth from %s (split %s)", len(configs), len(items),
                args.data, args.split)
    long: list[pd.DataFrame] = []
    f1: dict[str, float] = {}
    for cfg in configs:
        t0 = time.perf_counter()
        pairs = with_read_notes(predict_pairs(items, cfg.model, cfg.params, fast=not args.exact, warn_trained=False),
                                read_notes)
        rep = evaluate_predictions(pairs, cfg.params, iou_threshold=args.iou, keep_results=False)
        del pairs  # one configuration's predictions held at a time
        long.append(_long_rows(cfg, rep.per_image))
        if "f1" in rep.summary:
            f1[cfg.label] = rep.summary["f1"]
        logger.info("%s: counted in %.1f s", cfg.label, time.perf_counter() - t0)
    rows = pd.concat(long, ignore_index=True)
    cmp = compare_counts(rows, [c.label for c in configs], {name: gt.count for name, _, gt in items})
    summary = cmp.per_config.rename(columns={"median time per image (ms)": "model ms per image (median)"})
    if f1:
        summary.insert(summary.columns.get_loc("bias"), f"F1@{args.iou:g}", summary["config"].map(f1))
    if "images with ground truth" in summary and summary["images with ground truth"].nunique() == 1:
        summary = summary.drop(columns="images with ground truth")  # said once, above the table
    print(_text_table(summary))
    if len(items) < MIN_BOOTSTRAP_IMAGES:
        print(f"note: {len(items)} image(s): a difference needs at least {MIN_BOOTSTRAP_IMAGES} for an interval, so "
              "none says whether it is more than image-to-image luck", file=sys.stderr)
    if cmp.edges_out:
        print(f"note: {', '.join(cmp.edges_out)} leave out the objects touching the image's edge, so their errors are "
              "against the truth without them (label images); dots and counts keep theirs", file=sys.stderr)
    if args.out:
        write_csv(as_written(cmp.table), args.out)
    if args.json:
        atomic_write_bytes(args.json, json.dumps(finite_json({
            "data": args.data, "split": args.split, "images": len(items),
            "configs": [{"label": c.label, "model": c.model.name, "settings": c.settings or "card",
                         "params": c.params.acting(c.model.output_kind)} for c in configs],
            "figures": summary.to_dict(orient="records")}), indent=2, default=float).encode())
    if skipped:
        print(f"{len(skipped)} image(s) left out (see the warnings above); the figures are for the other {len(items)}",
              file=sys.stderr)
        return 1
    return 0


def _text_table(df: pd.DataFrame) -> str:
    """The figures as an aligned text table (two decimals; counts as whole numbers)."""
    shown = df.copy()
    for c in shown.columns:
        if c in ("images flagged", "total count", "images with ground truth"):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:g}")
        elif c == "bias":
            shown[c] = shown[c].map(lambda v: f"{v:+.2f}")
        elif c.startswith("model ms"):
            shown[c] = shown[c].map(lambda v: f"{v:.0f}")
        elif pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: "—" if not np.isfinite(v) else f"{v:.2f}")
    return shown.to_string(index=False)
