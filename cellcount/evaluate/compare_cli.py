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

from ..cliparams import normalize_argv, plain_warnings, plane_option, prog_name, setup_logging
from ..errors import ModelNotFoundError, ParameterError
from ..metrics import MIN_BOOTSTRAP_IMAGES
from ..pipeline import CountParams, resolve_params
from . import evaluate_predictions, predict_pairs, with_read_notes
from .cli import _check_options, _encoded, _is_json_with, keep_others, read_labelled
from .compare import as_written, compare_counts, rows_table

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
    p.add_argument("--plane", type=plane_option, default=None, metavar="N|max",
                   help="z-stacks and other multi-plane files: score plane N (0 = the first) or 'max', their "
                   "maximum-intensity projection, as the Compare page's Z-stacks choice (default: the first plane, "
                   "flagged); a one-plane file is scored as it is")
    p.add_argument("--keep-trained", action="store_true",
                   help="score the images a model learnt from too (by default they are named and, where others "
                   "remain, left out for every model: the error on them flatters the model that learnt them)")
    p.add_argument("--iou", type=float, default=0.5,
                   help="overlap at which a predicted object matches a true one, for F1 (default 0.5)")
    p.add_argument("--out", help="per-image CSV: each image's truth and every configuration's count and error")
    p.add_argument("--rows", help="CSV of every count: one row per image and configuration, with the model, its "
                   "settings, the count, its error, the quality flag with its reasons and the objects matched (tp, fp, fn) where "
                   "they could be (the columns of the app's 'Every count CSV')")
    p.add_argument("--json", help="write each configuration's figures (numbers) and the options used as JSON here")
    p.add_argument("--exact", action="store_true", help="plain fp32 path (default: the fast path)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the figures, warnings and errors")
    return p


def main(argv: list[str] | None = None) -> int:
    from ..errors import run_cli

    args = build_parser().parse_args(normalize_argv(argv))
    setup_logging(logging.WARNING if args.quiet else logging.INFO)
    with plain_warnings():
        return run_cli(lambda: _run(args))


def _is_settings_file(ref: str) -> bool:
    return ref.lower().endswith(".json") and not Path(ref).is_dir()


def load_configs(refs: list[str]) -> list[Config]:
    """Each reference as a :class:`Config`, labelled A, B, ... (ParameterError or ModelNotFoundError first)."""
    from ..models import load_model
    from ..settingsfile import model_changed_note, model_from_file, params_from_file

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
            try:
                model = load_model(name)
            except ModelNotFoundError as err:
                raise ModelNotFoundError(f"{ref} was saved for the model {name!r}, which is not installed here "
                                         f"({err})") from err
            if changed := model_changed_note(ref, model):
                print(f"warning: {changed}", file=sys.stderr)
            params, settings = resolve_params(model, overrides), ref
            label = f"{letter}: {model.name} ({Path(ref).name})"
        else:
            if Path(ref).is_file():  # not a model folder, nor a settings file by its name
                raise ParameterError(f"{ref} is a file, not a model: a settings file's name ends in .json; a model is "
                                     "a name from `cellcount models` or its folder")
            model = load_model(ref)
            params, settings = resolve_params(model, {}), None
            label = f"{letter}: {model.name}"
        configs.append(Config(label, model, params, settings))
    for i, cfg in enumerate(configs):  # the same twice: its figures repeat the other's (the app says so too)
        same = next((c for c in configs[:i] if c.model.card.sha256 == cfg.model.card.sha256
                     and c.model.name == cfg.model.name
                     and c.params.acting(c.model.output_kind) == cfg.params.acting(cfg.model.output_kind)), None)
        if same is not None:
            print(f"note: {cfg.label} counts as {same.label} does (the same model and the same settings that act): "
                  "its figures repeat them", file=sys.stderr)
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
    if seen:  # kept: asked, or none would be left; the verdicts then favour the models that learnt them
        print(f"warning: the {len(seen)} image(s) some model learnt from are scored"
              + (" (--keep-trained)" if keep else ", as no other image would be left")
              + ": the figures flatter the model(s) that learnt them; compare on other images to judge", file=sys.stderr)
    return items


def _long_rows(cfg: Config, per_image: pd.DataFrame, plane: int | str | None = None,
               stacks: set[str] = frozenset()) -> pd.DataFrame:
    """Evaluate's per-image table as the Compare page's rows (one per image of this configuration), with the
    ``plane`` scored of the files that held several (``stacks``), as the page's rows record it."""
    rows = pd.DataFrame({
        "file": per_image["file"], "true": per_image["true"], "config": cfg.label, "model": cfg.model.name,
        "backend": per_image["backend"] if "backend" in per_image else None,  # models may run in different ones
        # the settings themselves, as the page's CSV gives them: a card rewritten since would make "card" another
        "settings": cfg.params.settings_json(cfg.model.output_kind),
        # rounded, as the page's rows and every counts CSV give it (a density model's 37.547 reads 38 there); the
        # integral itself in count_estimate
        "count": per_image["pred"].round().astype("Int64"),
        "count_estimate": per_image["pred"], "seconds": per_image["model_seconds"],
        "status": "ok", "reason": "",  # every image scored was read and counted, as the page's rows say it
        "check": per_image["check"] if "check" in per_image else None,
        "check_score": per_image["check_score"] if "check_score" in per_image else None,
        "check_reasons": per_image["check_reasons"] if "check_reasons" in per_image else "",
        # objects matched to the truth's, where they were (for F1 over the images every configuration matched)
        **{k: per_image[k] for k in ("tp", "fp", "fn") if k in per_image},
    })
    if plane is not None and stacks:
        rows.insert(1, "plane", [plane if f in stacks else None for f in per_image["file"]])
    return rows


OURS = {"out": lambda held: bool(re.match(rb"(\xef\xbb\xbf)?file([,\t])(true\2)?A: ", held)),  # .tsv: tabs
        "rows": lambda held: bool(re.match(rb"(\xef\xbb\xbf)?file([,\t])true\2config\2model\2", held)),
        "json": _is_json_with({"data", "split", "configs"})}
"""This command's outputs, told by their bytes: an existing one is replaced, any other file kept beside first."""


def _f1_note(label: str, summary: dict, iou: float) -> str | None:
    """How a configuration's F1 matched objects, where not outlines at ``iou`` on every image (as evaluate names
    it): dots inside objects, peaks near dots, or over fewer images than scored."""
    how = {"objects": "dots inside its objects", "points": "its centres within 5 px of the dots",
           "mixed": f"outlines at IoU {iou:g} against label images, dots elsewhere"}.get(summary.get("match"))
    n, k = summary.get("n"), summary.get("f1_n")
    over = f"over {k} of the {n} images (those with label images, masks or points)" if k is not None and k < n else ""
    return f"{label}: F1 matches {', '.join(x for x in (how, over) if x)}" if how or over else None


def _run(args: argparse.Namespace) -> int:
    from ..csvout import atomic_write_bytes, write_csv
    from ..models.card import finite_json
    from . import BORDER_TRUTH_KEPT

    _check_options(args, OURS, [ref for ref in args.configs if _is_settings_file(ref)])
    keep_others(args, OURS)
    configs = load_configs(args.configs)
    data = read_labelled(args)
    skipped, read_notes = data.skipped, data.notes
    items = _leave_out_trained(data.items, configs, data.paths, args.keep_trained)
    left_out = sorted({name for name, _, _ in data.items} - {name for name, _, _ in items})
    print(f"{len(configs)} configurations on {len(items)} image(s) with ground truth from {args.data} (split "
          f"{args.split}{f', limit {args.limit}' if args.limit else ''})")
    long: list[pd.DataFrame] = []
    summaries: dict[str, dict] = {}
    notes: list[str] = []
    for cfg in configs:
        t0 = time.perf_counter()
        pairs = with_read_notes(predict_pairs(items, cfg.model, cfg.params, fast=not args.exact, warn_trained=False),
                                read_notes)
        rep = evaluate_predictions(pairs, cfg.params, iou_threshold=args.iou, keep_results=False)
        del pairs  # one configuration's predictions held at a time
        long.append(_long_rows(cfg, rep.per_image, args.plane, data.stacks))
        summaries[cfg.label] = rep.summary
        if kept := rep.summary.get(BORDER_TRUTH_KEPT):  # as evaluate says it
            notes.append(f"{cfg.label} leaves out the objects touching the edge, but the truth of {kept} image(s) "
                         "(dots or counts) cannot leave its own out: those are scored against every object")
        logger.info("%s: counted in %.1f s", cfg.label, time.perf_counter() - t0)
    rows = pd.concat(long, ignore_index=True)
    cmp = compare_counts(rows, [c.label for c in configs], {name: gt.count for name, _, gt in items})
    summary = cmp.per_config.rename(columns={"median time per image (ms)": "model ms per image (median)"})
    # how each matched its objects (and, where all were matched on the same images, over how many)
    notes[:0] = [note for label, s in summaries.items() if "f1" in s
                 and (note := _f1_note(label, {**s, "f1_n": None} if cmp.f1_note else s, args.iou))]
    if cmp.f1_note:
        notes.append(cmp.f1_note)
    if "F1" in summary:  # beside the count errors (over the images every configuration matched, where they differ)
        summary.insert(summary.columns.get_loc("bias"), "F1", summary.pop("F1"))
        notes.insert(0, f"F1: objects matched to the truth's outlines at IoU {args.iou:g} on every image, unless said "
                        "below" if any(": F1 matches" in n for n in notes) else
                     f"F1: objects matched to the truth's outlines at IoU {args.iou:g}")
    if "images with ground truth" in summary and summary["images with ground truth"].nunique() == 1:
        summary = summary.drop(columns="images with ground truth")  # said once, above the table
    print(_text_table(summary))
    if len(items) < MIN_BOOTSTRAP_IMAGES:
        notes.append(f"{len(items)} image(s): a difference needs at least {MIN_BOOTSTRAP_IMAGES} for an interval, so "
                     "none says whether it is more than image-to-image luck")
    if cmp.edges_out:
        notes.append(f"{', '.join(cmp.edges_out)} leave{'s' if len(cmp.edges_out) == 1 else ''} out the objects "
                     "touching the image's edge, so their errors are against the truth without them (label images; the "
                     "'true: ...' columns of --out)")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        write_csv(as_written(cmp.table), args.out)
    if args.rows:
        write_csv(rows_table(rows), args.rows)
    if args.json:
        atomic_write_bytes(args.json, json.dumps(finite_json({**_json_summary(args, configs, items, left_out, skipped,
                                                                              summaries, cmp),
                                                              "images_without_ground_truth": [
                                                                  str(p) for p in data.unlabelled]}),
                                                 indent=2, default=float).encode())
    if closing := data.left_out_line(len(items), args.limit):
        print(closing, file=sys.stderr)
    if skipped:
        return 1
    return 0


FIGURES = ("n", "mae", "mae_ci_low", "mae_ci_high", "rmse", "bias", "mape", "r2", "precision", "recall", "f1", "f1_n",
           "match", "ms_per_megapixel")
"""The numbers of each configuration's evaluation that its JSON holds."""


def _flag(value: float | None) -> bool | None:
    """A 1.0 / 0.0 / NaN figure as JSON's true / false / null (the paired verdict's ``significant``)."""
    return None if value is None or not np.isfinite(value) else bool(value)


def _json_summary(args: argparse.Namespace, configs: list[Config], items: list, left_out: list[str],
                  skipped: list[str], summaries: dict[str, dict], cmp) -> dict:
    """The comparison as numbers (the table's strings are for reading): each configuration's figures, its paired
    difference from the lowest MAE, and the options and images behind them."""
    rows = cmp.per_config.set_index("config")
    out = []
    for c in configs:
        figures = {k: summaries[c.label][k] for k in FIGURES if k in summaries[c.label]}
        figures["images_flagged"] = int(rows.loc[c.label, "images flagged"])
        figures["total_count"] = float(rows.loc[c.label, "total count"])
        if "F1 images" in rows and pd.notna(rows.loc[c.label, "F1 images"]):  # the table's F1: over the same images
            figures["f1_same_images"] = float(rows.loc[c.label, "F1"])
            figures["f1_same_images_n"] = int(rows.loc[c.label, "F1 images"])
        paired = cmp.paired.get(c.label)
        out.append({"label": c.label, "model": c.model.name, "settings": c.settings or "card",
                    "params": c.params.acting(c.model.output_kind), "figures": figures,
                    "vs_lowest_mae": ({"lowest": True} if rows.loc[c.label].get("vs lowest MAE") == "lowest"
                                      else paired and {**paired, "significant": _flag(paired.get("significant"))})})
    return {"data": args.data, "split": args.split, "val_fraction": args.val_fraction, "split_seed": args.split_seed,
            "limit": args.limit, "plane": args.plane, "iou": args.iou, "keep_trained": args.keep_trained, "exact": args.exact,
            "images": len(items), "images_learnt_left_out": left_out, "files_skipped": skipped, "configs": out}


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
    # headers of several words ran together ("images flagged model ms per image"): two spaces between columns
    widths = [max(len(str(c)), *(len(str(v)) for v in shown[c])) for c in shown.columns]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(shown.columns, widths, strict=True))]
    lines += ["  ".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)) for row in shown.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.exit(main())
