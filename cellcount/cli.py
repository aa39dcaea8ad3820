"""Command line: ``python -m cellcount count PATHS... --model NAME --out counts.csv`` and ``... models``.

Exit codes: 0 all files counted; 1 some files failed (their rows say why); 2 usage error or nothing
to count (unknown model, no images found, bad settings).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .pipeline import LEGACY_SPLIT_KEYS
from .postprocess import SPLIT_MODES

logger = logging.getLogger(__name__)

POSTPROCESS_OPTIONS: list[tuple[str, type, str]] = [
    ("threshold", float, "foreground probability threshold (mask models), 0-1"),
    ("opening_radius_px", int, "binary opening radius, px (0 = off)"),
    ("closing_radius_px", int, "binary closing radius, px (0 = off)"),
    ("split_mode", str, "how touching objects are split (mask models): borders = along the model's predicted "
     "borders, distance = at distance-transform maxima, both, off (default: the model card's)"),
    ("min_distance_px", int, "split modes 'distance' and 'both': minimum distance between object centres, px; "
     "larger = fewer splits, lower count"),
    ("min_area_px", int, "drop objects smaller than this (an object of exactly this area is kept)"),
    ("max_area_px", int, "drop objects larger than this (0 = no limit; exactly this area is kept)"),
    ("peak_min_distance_px", int, "density models: minimum distance between peaks, px"),
    ("pixel_size_um", float, "pixel size in micrometres (adds um columns to objects.csv)"),
    ("nucleus_diameter_px", float, "typical nucleus diameter, px: images are resized so that nuclei match the "
     "model's training size (about 18 px; default: images as they are)"),
    ("channel", int, "channel index of multichannel images (default: mean of channels)"),
]
BOOL_OPTIONS: list[tuple[str, str]] = [
    ("fill_holes", "fill holes inside objects (mask models)"),
    ("exclude_border", "drop objects that touch the image border"),
    ("test_time_flips", "average the model over the image and its three flips (4x the model time)"),
    ("auto_nucleus_size", "estimate the nucleus size from a first pass and rerun resized when it is far from the "
     "training size (on in the shipped models' cards; mask models: about 2x the model time)"),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cellcount", description="Count cells and nuclei in microscopy images.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("count", help="count objects in images, folders or globs")
    c.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    c.add_argument("--model", required=True, help="model name (see 'python -m cellcount models') or folder")
    c.add_argument("--out", default="counts.csv", help="per-image CSV (default counts.csv)")
    c.add_argument("--objects", help="also write a per-object CSV here")
    c.add_argument("--labels-dir", help="also write <stem>_labels.tif label images here (mask models)")
    c.add_argument("--settings", help="settings JSON (as downloaded from the app) with parameter values")
    c.add_argument("--include-ground-truth", action="store_true",
                   help="also count files that look like ground truth (*_labels, *_mask, ...)")
    for name, typ, hlp in POSTPROCESS_OPTIONS:
        choices = list(SPLIT_MODES) if name == "split_mode" else None
        c.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None, help=hlp, choices=choices)
    for name in LEGACY_SPLIT_KEYS:  # old flags, still read: mapped onto --split-mode by resolve_params
        c.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None,
                       help=argparse.SUPPRESS)
    for name, hlp in BOOL_OPTIONS:
        c.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None,
                       help=f"{hlp} (default: the model card's setting)")
    c.add_argument("--invert", choices=["auto", "yes", "no"], default=None,
                   help="invert bright-background images (default: auto-detect)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    c.add_argument("-q", "--quiet", action="store_true")
    sub.add_parser("models", help="list the available models")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .pipeline import params_from_json

    ov: dict[str, Any] = {}
    if args.settings:
        ov.update(params_from_json(Path(args.settings).read_bytes()))
    for name, _, _ in POSTPROCESS_OPTIONS:
        v = getattr(args, name)
        if v is not None:
            ov[name] = v
    for name, _ in BOOL_OPTIONS:
        v = getattr(args, name)
        if v is not None:
            ov[name] = v
    legacy = {name: getattr(args, name) for name in LEGACY_SPLIT_KEYS if getattr(args, name) is not None}
    if legacy and args.split_mode is None:  # an old flag overrides the settings file's split_mode
        ov.pop("split_mode", None)
        ov.update(legacy)
    if args.invert is not None:
        ov["invert"] = {"auto": None, "yes": True, "no": False}[args.invert]
    return ov


class _Progress:
    """A minimal progress bar on stderr (no dependency)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        fill = int(width * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_models() -> int:
    from .errors import CellcountError
    from .models import list_models, load_model

    for name in list_models():
        try:
            print(load_model(name).card.summary())
        except CellcountError as err:
            print(f"{name}: cannot load ({err})")
    return 0


def _check_outputs(args: argparse.Namespace) -> str | None:
    """Create the output folders up front; a message when an output path cannot be used (before counting)."""
    for option, value in (("--out", args.out), ("--objects", args.objects)):
        if value and Path(value).is_dir():
            return f"{option} {value} is a folder; give a file name such as counts.csv"
    if args.labels_dir and Path(args.labels_dir).exists() and not Path(args.labels_dir).is_dir():
        return f"--labels-dir {args.labels_dir} is a file, not a folder"
    try:
        for value in (args.out, args.objects):
            if value:
                Path(value).parent.mkdir(parents=True, exist_ok=True)
        if args.labels_dir:
            Path(args.labels_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot create an output folder: {err}"
    return None


def cmd_count(args: argparse.Namespace) -> int:
    from .batch import count_many, counts_frame, objects_frame
    from .errors import CellcountError
    from .io import labels_to_tiff_bytes, list_image_files, split_ground_truth_files
    from .models import load_model
    from .pipeline import resolve_params

    try:
        model = load_model(args.model)
        params = resolve_params(model, _overrides(args))
        files = list_image_files(args.paths)
    except (CellcountError, OSError, ValueError) as err:  # ValueError: e.g. a card.json that is not JSON
        print(f"error: {err}", file=sys.stderr)
        return 2
    problem = _check_outputs(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not args.include_ground_truth:
        files, gt_files = split_ground_truth_files(files)
        if gt_files and not args.quiet:
            shown = ", ".join(p.name for p in gt_files[:3]) + (" ..." if len(gt_files) > 3 else "")
            print(f"note: skipped {len(gt_files)} file(s) named like ground truth ({shown}); "
                  "use --include-ground-truth to count them", file=sys.stderr)
    if not files:
        print("error: no image files found in " + " ".join(args.paths), file=sys.stderr)
        return 2
    items = []
    written: set[str] = set()
    for item in count_many([(str(f), f) for f in files], model, params, progress=_Progress(not args.no_progress)):
        items.append(item)
        if args.labels_dir and item.result is not None and item.result.labels is not None:
            stem, k = Path(item.name).stem, 1
            out_name = f"{stem}_labels.tif"
            while out_name in written:  # a.png and a.tif, or sub1/a.png and sub2/a.png
                k += 1
                out_name = f"{stem}_{k}_labels.tif"
            written.add(out_name)
            (Path(args.labels_dir) / out_name).write_bytes(labels_to_tiff_bytes(item.result.labels))
        if item.result is not None:
            item.result.labels = item.result.rejected = None  # free memory as we go
    df = counts_frame(items)
    try:
        df.to_csv(args.out, index=False)
        if args.objects:
            objects_frame(items).to_csv(args.objects, index=False)
        settings_path = Path(args.out).with_suffix(".settings.json")
        settings_path.write_text(json.dumps({"model": model.name, "params": params.to_dict()}, indent=2))
    except OSError as err:
        print(f"error: cannot write the results: {err}", file=sys.stderr)
        return 2
    n_err = int((df["status"] != "ok").sum())
    if not args.quiet:
        ok = df[df["status"] == "ok"]
        print(f"counted {len(ok)}/{len(df)} images with {model.name}: total {int(ok['count'].sum()) if len(ok) else 0} "
              f"objects -> {args.out}" + (f"; {n_err} failed (see the 'reason' column)" if n_err else ""))
        for _, r in df[df["status"] != "ok"].iterrows():
            print(f"  failed: {r['file']}: {r['reason']}", file=sys.stderr)
    return 1 if n_err else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR if getattr(args, "quiet", False) else logging.WARNING,
                        format="%(levelname)s %(message)s")
    if args.command == "models":
        return cmd_models()
    return cmd_count(args)
