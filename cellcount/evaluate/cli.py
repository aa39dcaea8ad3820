"""Command line: ``python -m cellcount.evaluate --model NAME --data DIR [--split train|val|test|heldout|all]
[--out per_image.csv] [--tune [--write-card]]`` plus every parameter option (:mod:`cellcount.cliparams`).

Exit codes: 0 done; 1 done, but some images or their ground truth could not be used (each named on stderr
and left out); 2 bad input (model, card, data, ground truth, settings, an option out of range, an unwritable
output), with a one-line reason on stderr, checked before any image is counted; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..cliparams import (
    BACKEND_CHOICES,
    add_param_options,
    inert_options_note,
    load_cli_model,
    normalize_argv,
    param_overrides,
    plain_warnings,
    prog_name,
    setup_logging,
)
from ..errors import CellcountError, ParameterError
from ..metrics import check_iou_threshold, fixed
from ..params import TUNED_FIELDS
from ..pipeline import resolve_params
from ..settingsfile import settings_text
from . import (
    BORDER_TRUTH_KEPT,
    CROSS_CHECK_FOLDS,
    EDGE_WALK_TEXT,
    TuningCheck,
    calibrate_density,
    check_tunable,
    cross_check_errors,
    cross_check_folds,
    evaluate_predictions,
    labelled_items,
    predict_pairs,
    ran_in,
    recorded_table,
    tune_params,
    tuning_kinds_note,
    with_read_notes,
)
from .annotation import partial_annotation_note, swapped_axes_note

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog_name("cellcount.evaluate"), description="Evaluate a model on labelled images.")
    p.add_argument("--model", default=None, help="model name (python -m cellcount models) or folder (default: the "
                   "model --settings was saved for, else the default model)")
    p.add_argument("--data", required=True, help="folder with images + ground truth, or DSB layout")
    p.add_argument("--split", choices=["all", "train", "val", "test", "heldout"], default="all",
                   help="DSB-style deterministic split by file name (cellcount.training.data.dsb_part): 'val' "
                   "chooses models and settings, 'test' is scored once, 'heldout' is both (the validation split "
                   "of earlier rounds); default all")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="with --split: the share of images in the validation part (default 0.2)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="with --split: the seed of the split by file name (default 0, the shipped models' split)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--keep-trained", action="store_true",
                   help="score the images the model learnt from too (by default they are named and, where others "
                   "remain, left out: the model's error on them flatters it)")
    p.add_argument("--iou", type=float, default=0.5,
                   help="overlap (intersection over union) at which a predicted object matches a true one, for "
                   "precision, recall and F1 (default 0.5)")
    p.add_argument("--out", help="per-image CSV path")
    p.add_argument("--json", help="write the summary as JSON here")
    p.add_argument("--tune", action="store_true",
                   help="search postprocessing settings on this data, one at a time over a grid of values; "
                   f"{EDGE_WALK_TEXT} (density models: fit the count gain)")
    p.add_argument("--write-card", action="store_true",
                   help="with --tune: store the best settings in the model's card (the card before is kept beside it; "
                   "a shipped model's changes for every count with it: fine-tune a model of your own instead)")
    p.add_argument("--no-cross-check", action="store_true",
                   help=f"with --tune: skip the check of the tuning on images it did not see ({CROSS_CHECK_FOLDS}-fold; "
                   f"about {CROSS_CHECK_FOLDS}x the tuning time)")
    p.add_argument("--record-metrics", action="store_true",
                   help="store this evaluation's summary as the card's validation metrics")
    p.add_argument("--save-settings", help="write the (tuned) settings JSON here (loadable by the app and CLI)")
    p.add_argument("--exact", action="store_true", help="plain fp32 path (default: the fast path)")
    p.add_argument("--backend", choices=list(BACKEND_CHOICES), default=None,
                   help="inference backend of the fast path (default: $CELLCOUNT_BACKEND, else auto = the one measured "
                        "fastest on this machine), as for count: a count made in another may differ by an object")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="only the figures, warnings and errors (no reading or timing lines), as count's -q")
    p.add_argument("--calibrate-quality", action="store_true",
                   help="fit the quality flag's limits on this data (at most 20%% flagged, most large errors "
                   "held); with --write-card store them in the card")
    add_param_options(p, legacy_set=True)
    return p


def _card_folder(ref: str, name: str) -> Path:
    """The weights folder whose card.json ``--write-card`` / ``--record-metrics`` update."""
    from ..models.loading import _model_folder

    return Path(ref) if (Path(ref) / "card.json").is_file() else _model_folder(name, None)


def _store_card(card, args: argparse.Namespace, model) -> Path:
    """Write ``card`` into ``model``'s folder; where it changes the counts (settings, density scale: not recorded
    figures or the quality rule), the card it replaces is kept beside it first (once a run): written into a shipped
    model, it changes every count with it on this installation, which is said, with the way back."""
    import sys

    from ..csvout import keep_copy
    from ..models.card import CARD_FILE, read_card, write_card
    from ..models.loading import DEFAULT_WEIGHTS_DIR

    folder = _card_folder(args.model, model.name)
    kept = vars(args).setdefault("_cards_kept", set())
    try:
        old = read_card(folder)
        counts_alike = old.counting_digest() == card.counting_digest() and old.postprocess == card.postprocess
    except (CellcountError, OSError, ValueError):
        counts_alike = False
    if folder not in kept and (folder / CARD_FILE).is_file() and not counts_alike:
        kept.add(folder)
        copy = keep_copy(folder / CARD_FILE)
        shipped = folder.resolve().is_relative_to(DEFAULT_WEIGHTS_DIR.resolve())
        print(f"note: {model.name}'s card before this run is kept as {copy} (copy it back to undo)"
              + (f"; {model.name} is a shipped model: every count with it on this installation now uses the card "
                 "written here (to keep the shipped one, fine-tune a model of your own: `cellcount finetune`)"
                 if shipped else ""), file=sys.stderr)
    return write_card(card, folder)


def _encoded(paths: dict[str, Path], names: list[str]) -> Iterator[tuple[str, bytes | None]]:
    """(name, file bytes) of the images ``names`` (None where unreadable), one file at a time (a set of large stacks
    is not held twice), so that a model's training images are recognised by content
    (:meth:`cellcount.models.ModelCard.trained_on`)."""
    for name in names:
        try:
            yield name, paths[name].read_bytes()
        except (KeyError, OSError):
            yield name, None


def _digests(paths: dict[str, Path], names: list[str]) -> list[str]:
    """The sha256 of the image files ``names`` (those that can be read), as the app's digests of uploads."""
    import hashlib

    return [hashlib.sha256(data).hexdigest() for _, data in _encoded(paths, names) if data is not None]


def _as_saved(path: str | Path, model, params) -> bool:
    """Whether ``params`` are the settings file's own, no option given beside it changing them (then they were fitted
    to nothing here)."""
    from ..settingsfile import params_from_file

    try:
        return resolve_params(model, params_from_file(path)).acting(model.output_kind) == params.acting(
            model.output_kind)
    except (OSError, CellcountError):
        return False


def tuned_on_from_file(path: str | Path) -> set[str]:
    """:func:`cellcount.settingsfile.tuned_on_from_json` of a file (empty where it cannot be read)."""
    from ..settingsfile import tuned_on_from_json

    try:
        return tuned_on_from_json(Path(path).read_bytes())
    except (OSError, CellcountError):
        return set()


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation CLI; the exit codes are the module's."""
    from ..errors import run_cli

    args = build_parser().parse_args(normalize_argv(argv))
    setup_logging(logging.WARNING if args.quiet else logging.INFO)
    with plain_warnings():
        return run_cli(lambda: _run(args))


def _check_options(args: argparse.Namespace, ours: dict[str, Callable[[bytes], bool]] | None = None,
                   inputs: list[str] = ()) -> None:
    """ParameterError for an option out of range or an output that cannot be written, before any counting
    (output folders are created): one that would replace a file of ``--data`` other than this command's own
    (``ours``: a test of a file's bytes per output option, default :data:`OURS`), one of the ``inputs`` (the
    settings files read) or another output."""
    from ..csvout import check_writable, not_a_file_problem

    ours = OURS if ours is None else ours
    given = {option: getattr(args, option, None) for option in ours}
    named: dict[Path, str] = {}
    for ref in inputs:
        try:
            named[Path(ref).resolve()] = f"the settings file {ref} this command reads"
        except (OSError, RuntimeError):
            pass
    for option, value in given.items():
        if not value:
            continue
        flag = "--" + option.replace("_", "-")
        try:
            where = Path(value).resolve()
        except (OSError, RuntimeError):
            continue
        clash = named.get(where)
        # one output written over another, or a table over a settings file read (--json naming it); tuned
        # settings saved over the file they were read from update it
        if clash and not (option == "save_settings" and clash.startswith("the settings file")):
            raise ParameterError(f"{flag} {value} is also {clash}; give each output a file of its own")
        named[where] = f"the {flag} output"

    if args.limit is not None and args.limit < 1:
        raise ParameterError(f"--limit {args.limit}: give the number of images to use, at least 1")
    check_iou_threshold(args.iou, "--iou")
    if not 0 < args.val_fraction < 1:
        raise ParameterError(f"--val-fraction {args.val_fraction:g}: a fraction between 0 and 1, e.g. 0.2")
    for option, value in given.items():
        if not value:
            continue
        path, flag = Path(value), "--" + option.replace("_", "-")
        if problem := not_a_file_problem(value):
            raise ParameterError(f"{flag} {problem}; give a file name")
        if path.is_dir():
            raise ParameterError(f"{flag} {path} is a folder; give a file name")
        if _replaces_data(path, Path(args.data), ours[option]):
            raise ParameterError(f"{flag} {path} would replace a file of --data {args.data} (an image or its ground "
                                 "truth); write the results outside the data folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            check_writable(path)
        except OSError as err:
            raise ParameterError(f"{flag} {path}: cannot write there ({err.strerror or err})") from None


def _is_json_with(keys: set[str]) -> Callable[[bytes], bool]:
    def test(held: bytes) -> bool:
        try:
            data = json.loads(held)
        except ValueError:
            return False
        return isinstance(data, dict) and keys <= set(data)
    return test


OURS: dict[str, Callable[[bytes], bool]] = {
    "out": lambda held: bool(re.match(rb"(\xef\xbb\xbf)?file([,\t])true\2pred\2", held)),  # .tsv: tabs
    "json": _is_json_with({"model", "data", "split", "params"}),
    "save_settings": _is_json_with({"model", "params"}),  # kept when it holds other settings (_keep_other_settings)
}
"""What each output of this command looks like: an existing file so is replaced (a run again), any other kept."""


def _keep_other_settings(path: Path, text: bytes) -> None:
    """A settings file at ``path`` that holds other settings than ``text`` is kept beside it first: its format is
    the app's download too, so telling this command's own from a user's by their look would replace settings
    tuned by hand in the app."""
    import sys

    from ..csvout import keep_copy

    try:
        held = path.read_bytes() if path.is_file() else None
    except OSError:
        held = None
    if held and held.strip() != text.strip():
        print(f"note: {path} held other settings; kept as {keep_copy(path)}", file=sys.stderr)


MAX_OWN_OUTPUT_BYTES = 1 << 20
"""How much of an existing output is read to tell whether this command wrote it (its JSONs are a few kB; a
table's header is at its start)."""


def keep_others(args: argparse.Namespace, ours: dict[str, Callable[[bytes], bool]]) -> None:
    """Each existing output that is not what its option writes (``ours``: a test of the file's bytes), a table of
    the user's given as ``--out`` say, is first kept beside it as ``NAME.replaced-DATE-TIME.SUFFIX``, with a note
    (a user's own table is never replaced in silence; count keeps them alike)."""
    import sys

    from ..csvout import keep_copy

    for option, looks_ours in ours.items():
        value = getattr(args, option, None)
        if not value or not Path(value).is_file():
            continue
        try:
            with open(value, "rb") as f:
                held = f.read(MAX_OWN_OUTPUT_BYTES)
            if held.strip() and not looks_ours(held):
                print(f"note: {value} is not a file this command wrote; kept as {keep_copy(value)}", file=sys.stderr)
        except OSError as err:
            raise ParameterError(f"--{option.replace('_', '-')} {value} exists and cannot be kept before it is "
                                 f"replaced ({err.strerror or err})") from None


def _replaces_data(path: Path, data: Path, looks_ours: Callable[[bytes], bool]) -> bool:
    """``path`` names an existing entry in (or is) ``data`` that this command did not write before (``looks_ours``
    tells its own outputs by their bytes): an image, its
    ground truth or a counts table, which the output would replace (count refuses the same for its inputs). The
    entry itself counts, as a write replaces it: a link in ``data`` to an image elsewhere is refused, a link
    elsewhere to a file in ``data`` is not."""
    import os

    try:
        target = path.parent.resolve() / path.name  # the entry a write replaces, not what a link points to
        root = data.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop on Python < 3.13
        return False
    if not os.path.lexists(target):
        return False
    if not (target == root or root in target.parents):
        return False
    if target.is_symlink() or not target.is_file():
        return True
    try:
        with target.open("rb") as f:
            held = f.read(MAX_OWN_OUTPUT_BYTES)  # an image named as the output is never read whole
    except OSError:
        return True
    return not looks_ours(held)


@dataclasses.dataclass
class Labelled:
    """What :func:`read_labelled` read: the (name, image, ground truth) ``items``, the files ``skipped`` (each named
    on stderr), each image's read note (a stack's first plane) and its file, and the images ``unlabelled`` (left
    out for want of ground truth, each in a logged warning)."""

    items: list
    skipped: list[str]
    notes: dict[str, str]
    paths: dict[str, Path]
    unlabelled: list[Path] = dataclasses.field(default_factory=list)
    stacks: set[str] = dataclasses.field(default_factory=set)
    """The names of the files that held several planes (``--plane`` chose among them)."""

    def left_out_line(self, n: int, limit: int | None = None) -> str | None:
        """The closing line on what the folder's images the figures (of ``n`` images) leave out, or None when
        nothing was. Of the whole folder, whatever ``--split`` and ``--limit`` chose, as the warnings name them;
        ``limit``: the ``--limit`` that capped the images scored, said with them."""
        total = len(self.skipped) + len(self.unlabelled)
        if not total:
            return None
        parts = [f"{len(self.unlabelled)} without ground truth"] if self.unlabelled else []
        if self.skipped:
            parts.append(f"{len(self.skipped)} whose file or ground truth could not be used")
        capped = f", the first of the others (--limit {limit})" if limit else ""
        return (f"{total} image(s) of the folder left out ({', '.join(parts)}; see the warnings above); the figures "
                f"are for {n} image(s){capped}")


def read_labelled(args: argparse.Namespace) -> Labelled:
    """The labelled images of ``--data`` (``--split``, ``--limit``), each file that cannot be used named on stderr
    and left out; ParameterError when none is left."""
    import sys

    skipped: list[str] = []

    def skip(path, reason: str) -> None:
        skipped.append(str(path))
        named = next((f"{n}: " for n in (str(path), Path(path).name) if reason.startswith(f"{n}: ")), "")
        print(f"warning: skipped {path}: {reason[len(named):]}", file=sys.stderr)  # the readers name the file too

    notes: dict[str, str] = {}
    paths: dict[str, Path] = {}
    unlabelled: list[Path] = []
    stacks: set[str] = set()
    items = list(labelled_items(args.data, args.split, args.limit, args.val_fraction, args.split_seed, on_error=skip,
                                notes=notes, paths=paths, missing=unlabelled, page=getattr(args, "plane", None),
                                stacks=stacks))
    for text in notes.values():
        print(f"warning: {text}", file=sys.stderr)
    if not items:
        raise ParameterError(f"no labelled images in {args.data} with --split {args.split}"
                             + (f" and --limit {args.limit}" if args.limit is not None else ""))
    return Labelled(items, skipped, notes, paths, unlabelled, stacks)


def _run(args: argparse.Namespace) -> int:
    import sys

    from ..csvout import atomic_write_bytes, write_csv
    from ..models import default_model_name, with_base_training
    from ..models.card import finite_json

    _check_options(args, OURS, [args.settings] if args.settings else [])
    keep_others(args, OURS)
    from ..models.autotune import requested_backend

    backend = requested_backend(args.backend)  # as count chooses it, so that the two count alike
    model = load_cli_model(args, default_model_name())
    params = resolve_params(model, param_overrides(args))
    inert = inert_options_note(args, params, model)  # as count says it: accepted in silence, they would look acted on
    if inert:
        print(inert, file=sys.stderr)
    t0 = time.perf_counter()
    data = read_labelled(args)
    items, skipped, read_notes, paths = data.items, data.skipped, data.notes, data.paths

    def left_out() -> str:  # a card written from a run that skipped images says so
        return (f"; {len(skipped)} image(s) of the folder left out (unreadable, unusable ground truth or a copy of "
                "another)" if skipped else "")

    if args.settings and read_notes:
        from ..settingsfile import plane_from_file

        if (plane := plane_from_file(args.settings)) is not None:  # annotations belong to one plane, not a choice
            print(f"note: {args.settings} names the plane {plane!r} of z-stacks, which evaluate does not use: it scores "
                  "a stack's first plane, as said above", file=sys.stderr)
    logger.info("%d image%s with ground truth from %s (split %s)", len(items), "" if len(items) == 1 else "s",
                args.data, args.split)
    card = getattr(model, "card", None)
    seen, leave_out = [], False
    if card is not None:
        card = with_base_training(card)  # a fine-tune made before cards listed its base's training images
        # by content where the card has its training images' hashes, else by a fine-tune's file names
        names = [name for name, _, _ in items]
        seen = card.trained_on(_encoded(paths, names) if card.training_digests() else
                               [(name, None) for name in names])
    if seen:  # a model's own training images flatter its error: left out where others remain, as Evaluate does
        leave_out = not args.keep_trained and len(seen) < len(items)
        print(f"warning: {card.trained_on_note(seen, len(items), advice=not leave_out)}"
              + (f" Left out of the scores ({len(items) - len(seen)} scored; --keep-trained keeps them)."
                 if leave_out else ""), file=sys.stderr)
        if leave_out:
            learnt = set(seen)
            items = [item for item in items if item[0] not in learnt]
    pairs = with_read_notes(predict_pairs(items, model, params, fast=not args.exact, backend=backend,
                                          warn_trained=False), read_notes)
    ran = ran_in(pairs) or None  # every record names it: bf16 and fp32 may count an object apart
    logger.info("predicted in %.1fs", time.perf_counter() - t0)
    tuned_on_these, no_gain, checked = bool(args.tune), False, False  # figures on the tuning images flatter the tuned settings
    tuning: dict | None = None  # what --tune did, for --json: its figures are the flattering ones otherwise alone
    if args.tune:
        check_tunable(pairs)
        # the annotation of part of each image: said before the tuning fits settings to it
        if partly := partial_annotation_note(evaluate_predictions(pairs, params, keep_results=False).per_image):
            print(f"warning: {partly} The tuning below fits the annotation as it is.", file=sys.stderr)
    if args.tune and model.output_kind == "density":
        k, before, after = calibrate_density(pairs)
        print(f"density calibration: count gain {k:.4f}; MAE {before:.3f} -> {after:.3f}")
        tuning = {"fitted": "density count gain", "count_gain": k, "mae_before": before, "mae_after": after}
        if args.save_settings and not args.write_card:  # the gain is the model's (its card), not a setting
            print(f"note: the count gain is part of the model (its card's density scale), not a setting, so "
                  f"{args.save_settings} does not hold it; --write-card stores it in {model.name}", file=sys.stderr)
        pairs = [(n, dataclasses.replace(p, maps=p.maps * np.float32(k)), gt) for n, p, gt in pairs]
        if args.write_card and hasattr(model, "net"):
            card = model.card
            old_scale = card.density_scale
            card.density_scale = old_scale / k
            # the gain was fitted on predictions with this size mode: it becomes the card's default too
            card.postprocess = {**card.postprocess, "auto_nucleus_size": params.auto_nucleus_size}
            card.postprocess_tuned_on = (
                f"count gain {k:.4f} (density_scale {old_scale:g} -> {card.density_scale:.4f}) fitted on "
                f"{len(pairs)} images of {args.data} (split {args.split}, limit {args.limit}); "
                f"count MAE {before:.3f} -> {after:.3f} by cellcount.evaluate --tune{left_out()}"
            )
            print(f"wrote the calibrated density scale into {_store_card(card, args, model)}")
    elif args.tune:
        tr = tune_params(pairs, params)
        changed = {k: v for k, v in tr.best_params.to_dict().items() if params.to_dict()[k] != v}
        tuned_on_these = bool(changed)  # the card's own settings kept: nothing fitted to these images
        print(f"tuning: MAE {tr.before:.3f} -> {tr.after:.3f}; changed {changed or 'nothing'}")
        tuning = {"fitted": "postprocessing settings", "mae_before": tr.before, "mae_after": tr.after,
                  "changed": changed, "cross_check": None}
        if edge := tr.edge_note():
            print(f"note: tuned settings {edge} (evaluate with a larger value set to see)")
        if changed and len(pairs) >= 2 and not args.no_cross_check:
            errors = cross_check_errors(pairs, params)
            check = TuningCheck.of(*errors)
            verdict = {"helps": "tuning helps on images like these",
                       "unsure": f"a gain these {len(pairs)} images cannot tell from chance (bring more to be sure)",
                       }.get(check.verdict, "the tuned settings fit these images but count new ones no better: keep "
                                            "the current ones unless you will count no others")
            folds = cross_check_folds(len(pairs))
            print(f"checked on images each tuning did not see ({folds}-fold): MAE {check.kept:.3f} with the current "
                  f"settings, {check.tuned:.3f} tuned ({check.interval_text()}): {verdict}")
            if kinds := tuning_kinds_note(pairs, *errors):
                print(f"note: {kinds}", file=sys.stderr)
            no_gain, checked = check.verdict not in ("helps", "unsure"), True
            tuning["cross_check"] = {"folds": folds, "mae_current_settings": check.kept, "mae_tuned": check.tuned,
                                     "change_ci_low": check.low, "change_ci_high": check.high,
                                     "verdict": check.verdict}
        params = tr.best_params
        if args.write_card and hasattr(model, "net"):
            card = model.card
            card.postprocess = {k: params.to_dict()[k] for k in TUNED_FIELDS}
            card.postprocess_tuned_on = (
                f"{len(pairs)} images of {args.data} (split {args.split}, limit {args.limit}); "
                f"count MAE {tr.before:.3f} -> {tr.after:.3f} by cellcount.evaluate --tune{left_out()}"
            )
            print(f"wrote tuned settings into {_store_card(card, args, model)}")
    if args.save_settings and no_gain:
        print(f"note: {args.save_settings} holds the tuned settings, as asked, though the check above found they count "
              "new images no better than the current ones", file=sys.stderr)
    if args.save_settings:
        # the settings that act, as count's settings file lists them, with the backend the tuning counted in (the
        # app's file records it too): `count --settings` says when it runs another
        # with the images tuned on (their files' sha256, as the app records them): scored on them again later, in
        # the app or here, the figures are said to flatter the settings
        text = settings_text(model.name, params, model.output_kind, model_sha256=model.card.sha256,
                             model_card=model.card.counting_digest(), backend=ran,
                             tuned_on=_digests(paths, [n for n, _, _ in pairs]) if tuned_on_these else ()).encode()
        _keep_other_settings(Path(args.save_settings), text)
        atomic_write_bytes(args.save_settings, text)
        if not args.quiet:  # the tuning's output ended without a word of the file it was run to write
            print(f"settings written to {args.save_settings} (count --settings {args.save_settings}, or the app's "
                  "'Settings file')", file=sys.stderr)
    rep = evaluate_predictions(pairs, params, iou_threshold=args.iou, keep_results=False)
    if args.out:  # images the model learnt from, kept in (--keep-trained or all of them): each row says so
        kept_in = rep.per_image["file"].isin(seen) if seen else None
        table = rep.per_image.assign(learnt_from=kept_in) if kept_in is not None and kept_in.any() else rep.per_image
        # which annotation scored each image (a folder may hold a label image and a points CSV of one image) and
        # what counted it, as the app's Evaluate download records them
        write_csv(recorded_table(table, pairs, model, params, iou_threshold=args.iou), args.out)
    s = rep.summary

    def over(k: int | None, which: str) -> str:
        """' (over 3 of the 5 images, those with objects)' where a figure leaves some images out."""
        return f" (over {k} of the {s['n']} images, those {which})" if k is not None and k < s["n"] else ""

    ci = (f"95% CI {fixed(s['mae_ci_low'])}-{fixed(s['mae_ci_high'])}"
          if np.isfinite([s['mae_ci_low'], s['mae_ci_high']]).all() else "too few images for a 95% CI")
    # halves rounded away from zero, as the app shows the same figures
    line = (f"{model.name}: n={s['n']} MAE={fixed(s['mae'])} ({ci}) RMSE={fixed(s['rmse'])} "
            f"bias={fixed(s['bias'], sign=True)} "
            f"MAPE={s['mape']:.1f}%{over(s.get('mape_n'), 'with objects')} "
            + (f"R2={s['r2']:.3f}" if np.isfinite(s["r2"]) else "R2 n/a (needs 2+ images with different counts)"))
    if "f1" in s:
        # the F1's name says how objects were matched: by IoU only against label images
        how = {"objects": "F1(dots in objects)", "points": "F1(points within 5 px)"}.get(
            s.get("match"), f"F1@{args.iou}" if s.get("match") == "iou" else f"F1(IoU {args.iou} / dots in objects)")
        line += (f" precision={s['precision']:.3f} recall={s['recall']:.3f} {how}={s['f1']:.3f}"
                 f"{over(s.get('f1_n'), 'with label images, masks or points as truth')}")
    elif s.get("f1_n"):
        line += " F1 n/a (no objects in the truth nor in the counts)"
    line += (f" | {s.get('ms_per_megapixel', float('nan')):.0f} ms/Mpx, "
             f"{1000 * rep.per_image['model_seconds'].median():.0f} ms/image (median)" + (f", {ran}" if ran else ""))
    print(line)
    if not args.tune and (partly := partial_annotation_note(rep.per_image)):
        print(f"warning: {partly}", file=sys.stderr)
    if swapped := swapped_axes_note(rep.per_image):
        print(f"warning: {swapped}", file=sys.stderr)
    if len(empty := rep.per_image[rep.per_image["true"] == 0]):  # as the app's upload summary says it
        shown = ", ".join(f"{r['file']} (counted {r['pred']:g})" for _, r in empty.head(4).iterrows())
        print(f"note: the ground truth of {len(empty)} image(s) holds no objects ({shown}"
              f"{' ...' if len(empty) > 4 else ''}): images without cells, or annotations whose export failed (a "
              "points CSV with only its header line, an all-black label image)", file=sys.stderr)
    if (args.settings and not args.tune and _as_saved(args.settings, model, params)
            and (hit := tuned_on_from_file(args.settings) & set(_digests(paths, [n for n, _, _ in pairs])))):
        print(f"note: {args.settings} holds settings tuned on {len(hit)} of these {len(pairs)} images, so these "
              "figures flatter them; score them on other images to know how they count new ones", file=sys.stderr)
    if tuned_on_these:
        print("note: these figures are on the images the settings were tuned on, so they flatter them; "
              + ("the check on images each tuning did not see (above) is the one for new images" if checked else
                 "score the settings on other images to know how they count new ones"), file=sys.stderr)
    if kept := s.get(BORDER_TRUTH_KEPT):
        print(f"note: objects touching the edge are not counted (--exclude-border) but the truth of {kept} image(s) "
              "(dots or counts) cannot leave its own out: those are scored against every object; label images as "
              "truth leave theirs out alike")
    if "check" in rep.per_image:
        from ..quality import relative_errors, signals_from_table

        signals = signals_from_table(rep.per_image)
        if args.calibrate_quality:
            from ..quality import calibrate_rule, card_entry

            rule, qrep = calibrate_rule(signals, relative_errors(rep.per_image["true"], rep.per_image["pred"]))
            print(f"quality flag calibrated: {rule.to_dict()}")
            if args.write_card and hasattr(model, "net"):
                model.card.extra = {**model.card.extra, "quality": card_entry(
                    rule, qrep, f"{len(pairs)} images of {args.data} (split {args.split}) by "
                                f"cellcount.evaluate --calibrate-quality{left_out()}")}
                _store_card(model.card, args, model)
                print("wrote the quality rule into the card")
            model_rule = rule
        else:
            model_rule = None
        from ..quality import flag_report, judge

        flags = ([judge(x, model_rule).flag for x in signals] if model_rule is not None
                 else rep.per_image["check"].astype(bool).tolist())
        q = flag_report(flags, relative_errors(rep.per_image["true"], rep.per_image["pred"]))
        s.update({"flagged_share": q["flagged_share"], "large_errors": q["large_errors"],
                  "large_errors_flagged_share": q["large_errors_flagged_share"]})
        caught = (f", {q['large_errors_flagged_share']:.0%} of them flagged" if q["large_errors"] else "")
        print(f"quality flag: {q['flagged_share']:.0%} of {q['n']} image{'' if q['n'] == 1 else 's'} flagged; "
              f"{q['large_errors']} large error{'' if q['large_errors'] == 1 else 's'} (> 15%){caught}")
    if args.record_metrics and hasattr(model, "net"):
        summary = {k: v for k, v in s.items() if k != "match"}
        default_auto = bool(model.card.postprocess.get("auto_nucleus_size", False))
        if params.auto_nucleus_size != default_auto:  # the card's other size mode: kept beside its defaults
            key = "validation_auto_nucleus_size" if params.auto_nucleus_size else "validation_fixed_size"
            model.card.metrics = {**model.card.metrics, key: summary}
        else:
            tuned_here = f"of {args.data} (split {args.split}," in (model.card.postprocess_tuned_on or "")
            # the card's other size mode, recorded beside it, stays (a block of the mode that is now the default
            # does not: its figures were made under other defaults)
            other = "validation_fixed_size" if default_auto else "validation_auto_nucleus_size"
            kept = {other: model.card.metrics[other]} if other in model.card.metrics else {}
            model.card.metrics = {
                "validation": summary,
                "validation_note": (f"python -m cellcount.evaluate on {args.data} split {args.split} "
                                    f"({s['n']} images, never used for training"
                                    + ("; the postprocessing was tuned on them" if tuned_here else " or tuning")
                                    + f"){left_out()}; count metrics with the card's postprocessing; F1 at IoU {args.iou}"),
                **kept,
            }
        _store_card(model.card, args, model)
    if args.json:
        iou_used = s.get("match") in ("iou", "mixed")  # dots match by position, counts alone not at all
        record = {"model": model.name, "model_sha256": model.card.sha256, "backend": ran,
                  "iou_threshold": args.iou if iou_used else None,
                  # the settings that act on this model, as the counts CSVs and settings files list them
                  "data": args.data, "split": args.split, "params": params.acting(model.output_kind), **s,
                  "images_without_ground_truth": [str(p) for p in data.unlabelled], "files_skipped": skipped,
                  # the model's own training images: left out of the figures, or scored with them (--keep-trained)
                  "training_images_left_out": seen if leave_out else [],
                  "training_images_scored": [] if leave_out else seen,
                  # the figures above are on the images --tune fitted to, where it changed anything: they flatter it
                  "tuned_on_these_images": tuned_on_these, **({"tuning": tuning} if tuning else {})}
        atomic_write_bytes(args.json, json.dumps(finite_json(record), indent=2, default=float).encode())
    if closing := data.left_out_line(s["n"], args.limit):
        print(closing, file=sys.stderr)
    if skipped:
        return 1
    return 0

