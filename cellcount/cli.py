"""Command line: ``python -m cellcount count PATHS... --model NAME --out counts.csv`` and ``... models``.

Exit codes: 0 all files counted; 1 some files failed (their rows say why); 2 usage error or nothing
to count (unknown model or bad card, no images found, bad settings, an unusable output path); 75 another run is
writing an output (retry once it ends); 130 interrupted (Ctrl-C or SIGTERM: the CSV holds every image finished so far, ``--resume`` continues).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path

from .cliparams import (
    BACKEND_CHOICES,
    add_param_options,
    as_command,
    inert_options_note,
    load_cli_model,
    normalize_argv,
    param_overrides,
    plain_warnings,
    plane_option,
    setup_logging,
)
from .outputs import (
    TABLE_SUFFIXES,
    blocks_record,
    check_outputs,
    export_text,
    fingerprint,
    index_row,
    inputs_path,
    label_names,
    labels_index,
    not_a_table_problem,
    real,
    region_spec,
    regions_path,
    replaced_counts,
    replaced_tables,
    settings_path,
    write_labels,
)
from .resume import previous_backend_record, previous_backends, resume_rows

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from .blocks import DEFAULT_BLOCK_PX, DEFAULT_OVERLAP_PX

    p = argparse.ArgumentParser(prog="cellcount", description="Count cells and nuclei in microscopy images.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("count", help="count objects in images, folders or globs")
    c.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    c.add_argument("--model", default=None,
                   help="model name (see 'cellcount models') or folder (default: the default model)")
    c.add_argument("--out", default="counts.csv", help="per-image CSV (default counts.csv)")
    c.add_argument("--objects", help="also write a per-object CSV here")
    c.add_argument("--labels-dir", help="also write <stem>_labels.tif label images here (mask models)")
    c.add_argument("--include-ground-truth", action="store_true",
                   help="also count files that look like ground truth (*_labels, *_mask, ...)")
    c.add_argument("--plane", type=plane_option, default=None, metavar="N|max",
                   help="z-stacks, time series and other multi-plane files: count plane N (0 = the first) or "
                        "'max', their maximum-intensity projection (default: the plane --settings names, else the first "
                        "plane, and the row is flagged)")
    add_param_options(c)
    c.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: keep the rows of --out (and --objects) counted with the same "
                        "model and settings, count only the other images")
    c.add_argument("--backend", choices=list(BACKEND_CHOICES), default=None,
                   help="inference backend (default: $CELLCOUNT_BACKEND, else auto = the one measured fastest on "
                        "this machine at first use; -v shows the timings)")
    d = c.add_argument_group("many images and huge images (Dask; docs/SCALING.md)")
    d.add_argument("--workers", type=int, metavar="N",
                   help="count on N local worker processes (a Dask cluster on this machine; the model is loaded "
                        "once per worker; workers x threads = cores). Images above the pixel cap that are TIFF or "
                        "OME-Zarr are counted by blocks")
    d.add_argument("--scheduler", metavar="ADDRESS", help="count on a running Dask cluster (tcp://host:8786)")
    d.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="largest image counted whole, H x W pixels (default 8192 x 8192); larger ones are refused "
                        "in-process and counted by blocks with --workers / --scheduler")
    d.add_argument("--block-px", type=int, default=None,
                   help=f"block side for huge images counted with --workers / --scheduler, px (default {DEFAULT_BLOCK_PX})")
    d.add_argument("--overlap-px", type=int, default=None,
                   help=f"block overlap, px: more than the largest object's diameter (default {DEFAULT_OVERLAP_PX})")
    d.add_argument("--region-grid", metavar="ROWSxCOLS", help="huge images: also count per cell of this grid")
    d.add_argument("--regions", metavar="CSV", help="huge images: also count per box (name,row0,col0,row1,col1)")
    d.add_argument("--regions-out", help="CSV of the region counts (default: <out>.regions.csv)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    c.add_argument("-q", "--quiet", action="store_true",
                   help="no progress, notes or summary; files that failed are still listed on stderr")
    c.add_argument("-v", "--verbose", action="store_true", help="also say which inference backend runs, and why")
    m = sub.add_parser("models", help="list the available models, show one's card, or remove one you trained")
    mx = m.add_mutually_exclusive_group()
    mx.add_argument("--remove", metavar="NAME", help="delete a model you trained (its folder in the user models "
                    "folder); shipped models cannot be removed")
    mx.add_argument("--card", metavar="NAME", help="print a model's card as JSON (a name or a model folder; lists "
                    "over 20 items, such as its training images' hashes, shortened to their length)")
    r = sub.add_parser("runs", help="list past runs (the history in the user's data folder) or export one")
    r.add_argument("--limit", type=_at_least_one, default=20, help="how many of the latest runs to list (default 20)")
    r.add_argument("--show", type=int, metavar="ID", help="print one run's record (settings, inputs) as JSON")
    r.add_argument("--export", type=int, metavar="ID", help="write one run's per-image rows as CSV to --out")
    r.add_argument("--settings-out", metavar="FILE",
                   help="with --export: also write the run's settings JSON here (for count --settings)")
    r.add_argument("--out", default="-", help="with --export: the CSV file (default: standard output)")
    for name, (_, hlp) in MODULE_COMMANDS.items():  # listed in --help; main() hands them their own argv
        sub.add_parser(name, help=f"{hlp} (see 'cellcount {name} --help')", add_help=False)
    return p


PROGRESS_LINE_S = 60.0
"""Where stderr is no terminal (a cron job's log), a plain progress line at most this often instead of the bar."""


def _progress_bar(enabled: bool):
    """``progress(done, total)`` for :func:`cellcount.batch.count_many`, drawn by tqdm on stderr (rate, ETA); a line
    every :data:`PROGRESS_LINE_S` where stderr is not a terminal (the bar's redraws filled logs)."""
    import time

    from tqdm import tqdm

    bar = None
    terminal = sys.stderr.isatty()
    last_line = time.monotonic()

    def log_line(done: int, total: int, text: str) -> None:
        """A plain line in a log, at most every :data:`PROGRESS_LINE_S`."""
        nonlocal last_line
        if 0 < done < total and time.monotonic() - last_line >= PROGRESS_LINE_S:
            last_line = time.monotonic()
            print(f"progress: {text}", file=sys.stderr, flush=True)

    def update(done: int, total: int) -> None:
        nonlocal bar
        if not enabled:
            return
        if not terminal:
            log_line(done, total, f"{done}/{total} images")
            return
        if bar is None:
            bar = tqdm(total=total, unit="image", file=sys.stderr, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def blocks(name: str, done: int, total: int) -> None:
        """An image counted by blocks: its blocks beside the bar (else a slide sits at 0/1 for minutes), or in the log's
        progress line where stderr is not a terminal (a slide on a cluster job would say nothing for its whole run)."""
        if not enabled:
            return
        if not terminal:
            log_line(done, total, f"{Path(name).name}: block {done}/{total}")
            return
        if bar is not None and not bar.disable:
            bar.set_postfix_str(f"{Path(name).name}: block {done}/{total}" if done < total else "", refresh=True)

    update.blocks = blocks
    return update


def cmd_models(remove: str | None = None, *, card: str | None = None) -> int:
    from .errors import CellcountError
    from .models import default_model_name, list_models, load_model, remove_user_model

    if card is not None:  # what the Models page shows in full, for a script or a reader of the command line
        from .models.card import finite_json

        try:
            shown = load_model(card).card.to_dict()
        except (CellcountError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

        def short(value):  # hundreds of inherited image hashes say nothing to a reader: their number does
            if isinstance(value, dict):
                return {k: short(v) for k, v in value.items()}
            if isinstance(value, list) and len(value) > 20:
                return f"<{len(value)} items>"
            return [short(v) for v in value] if isinstance(value, list) else value

        training = shown.get("training") or {}
        if training.get("finetuned_from"):  # the base's images (and its base's), beside data's own: said which
            for key in ("train_sha256", "train_pixel_sha256"):
                if isinstance(training.get(key), list) and training[key]:
                    training[key] = (f"<{len(training[key])} items: the images {training['finetuned_from'].get('name')} "
                                     "and the models it came from learnt from, recognised by content>")

        print(json.dumps(finite_json(short(shown)), indent=2, default=str))
        return 0

    if remove is not None:
        try:
            folder = remove_user_model(remove)
        except (CellcountError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"removed {remove} ({folder})")
        return 0

    default = default_model_name()
    sizes = set()
    for name in list_models():
        try:
            card = load_model(name).card
        except CellcountError as err:
            print(f"{name}: cannot load ({err})")
            continue
        print(("[default] " if name == default else "") + card.summary())
        if isinstance(n := (card.metrics.get("validation") or {}).get("n") if isinstance(card.metrics, dict) else None, int):
            sizes.add(n)
    from .models.loading import shadowed_user_models

    for folder in shadowed_user_models():  # never used under a shipped model's name: said, not passed over in silence
        print(f"note: {folder} is named like a shipped model, which keeps the name: rename the folder to use it")
    if len(sizes) > 1:  # figures on different image sets do not compare, which one list otherwise invites
        print(f"note: the validation MAEs above were measured on different image sets "
              f"({', '.join(str(n) for n in sorted(sizes, reverse=True))} images): compare those of the same size only")
    return 0


def _from_ground_truth_folder(path: Path) -> str:
    """``path`` from its last ground-truth folder down (``labels/p1/A01.png``), else its folder and name: what made
    it ground truth, shown."""
    from .io.files import GROUND_TRUTH_DIRS

    at = max((i for i, part in enumerate(path.parts[:-1]) if part.lower() in GROUND_TRUTH_DIRS), default=len(path.parts) - 2)
    return Path(*path.parts[max(at, 0):]).as_posix()


_OWN_OUTPUT_SUFFIXES = (".csv", ".tsv", ".json")
"""Tables and settings files, often a run's own outputs kept beside its images: not worth a note each run."""
def _recorded_backend(path: str | Path, model_name: str) -> str | None:
    """The backend a settings file records its run of ``model_name`` with, when it is one of the backends (a GPU's
    is not); None for a file saved for another model, whose backend ran another network."""
    from .errors import CellcountError
    from .models.autotune import CHOICES
    from .settingsfile import backend_from_file, model_from_file

    try:
        recorded = backend_from_file(path)
        saved_for = model_from_file(path)
    except (CellcountError, OSError):  # already read for its settings: a problem there was said
        return None
    if saved_for != model_name:
        return None
    return recorded if recorded in CHOICES and recorded != "auto" else None


def cmd_count(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as run_scope:  # the outputs stay held (hold_outputs) until the run ends
        return _count(args, run_scope)


def _count(args: argparse.Namespace, run_scope: contextlib.ExitStack) -> int:
    import pandas as pd

    from .batch import COUNT_COLUMNS, BatchItem, count_many, counts_frame, item_objects, with_plane
    from .csvout import CsvStream, atomic_write_bytes, publish_with
    from .errors import CellcountError
    from .io import IMAGE_EXTENSIONS, list_image_files
    from .io.files import printable_path, said_path, searched_folders
    from .io.read import OVER_CAP_HINT, OVER_CAP_WORKERS_HINT, PIXEL_CAP_TEXT
    from .models import NetModel, default_model_name, size_model_for
    from .models.autotune import requested_backend
    from .models.backends import backend_note
    from .pipeline import resolve_params

    skipped: list[tuple[Path, str]] = []

    def warn(path: Path, reason: str) -> None:
        path = Path(printable_path(path))  # its row is written in UTF-8
        skipped.append((path, reason))
        print(f"warning: {said_path(path)} not counted: {reason}", file=sys.stderr)  # a row says so too, counted as failed

    try:
        model = load_cli_model(args, default_model_name())
        params = resolve_params(model, param_overrides(args))
        if args.plane is None and args.settings:  # a settings file saved for z-stacks names its plane
            from .settingsfile import plane_from_file

            args.plane = plane_from_file(args.settings)
        inert = inert_options_note(args, params, model)
        if inert and not args.quiet:
            print(inert, file=sys.stderr)
        if args.labels_dir and model.output_kind == "density" and not args.quiet:
            print(f"note: {model.name} counts from a density map and draws no outlines: --labels-dir writes nothing",
                  file=sys.stderr)
        if model.output_kind == "density":
            args.labels_dir = None
        size_model = size_model_for(model, params)  # loaded once for the whole run
        backend = requested_backend(args.backend)
        if note := backend_note(backend):
            print(f"note: --backend {backend}: {note}", file=sys.stderr)
        hidden: list[Path] = []
        others: list[Path] = []
        files = list_image_files(args.paths, on_skip=warn, on_hidden=hidden.append, ground_truth=True,
                                 on_other=others.append)
    except (CellcountError, OSError, ValueError) as err:  # ValueError: e.g. a card.json that is not JSON
        print(f"error: {err}", file=sys.stderr)
        return 2
    searched = searched_folders(args.paths)
    if not args.quiet:
        _passed_over_notes(hidden, others, searched)
    problem = _check_cluster_options(args) or check_outputs(args, files)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from .csvout import OutputBusy, hold_outputs

    held = [p for p in (args.out, args.objects) if p]
    if args.labels_dir:  # two runs into one labels folder write the same index: the second is refused, as for --out
        from .batch import LABELS_INDEX

        held.append(Path(args.labels_dir) / LABELS_INDEX)
    try:  # before --resume reads them: another run's half-written rows are no run to resume
        if args.labels_dir:
            Path(args.labels_dir).mkdir(parents=True, exist_ok=True)
        run_scope.enter_context(hold_outputs(held))
    except OutputBusy as err:  # another run holds an output: worth trying again once it ends, unlike a usage error
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BUSY
    except OSError as err:  # a folder gone since it was checked
        print(f"error: cannot write the results: {err}", file=sys.stderr)
        return 2
    gt_files: list[Path] = []
    if not args.include_ground_truth:  # searched: labels/plate1/a.png below them too
        files, gt_files, skipped = _leave_out_ground_truth(files, skipped, searched, quiet=args.quiet)
    if not args.quiet:
        _copies_note(files)
    # the images counted: label images never to be written over (an earlier run's own label files, named like
    # ground truth and left out, may be: a --labels-dir inside the counted folder filled with x_2_labels.tif copies)
    all_inputs = {real(f) for f in files}
    if not files:
        if gt_files:  # every file given was ground truth: label images named so, or annotation tables
            shown = f"{_from_ground_truth_folder(gt_files[0])}{' ...' if len(gt_files) > 1 else ''}"
            images = [p for p in gt_files if p.suffix.lower() in IMAGE_EXTENSIONS]
            print(f"error: every file given is ground truth ({shown}), nothing to count"
                  + ("; --include-ground-truth counts images named like it" if images else ""), file=sys.stderr)
        else:
            print("error: no image files found in " + " ".join(map(printable_path, args.paths)), file=sys.stderr)
        return 2
    if not args.resume:  # (no other run writes it: held above)
        tables = [Path(p) for p in (args.objects, regions_path(args) if region_spec(args) else None) if p]
        try:
            replaced = [replaced_counts(Path(args.out))] + replaced_tables(tables)
        except OSError as err:
            print(f"error: an output exists and cannot be kept before it is replaced: {err}", file=sys.stderr)
            return 2
        for note in replaced:
            if note and not args.quiet:
                print(note, file=sys.stderr)
    keep_counts, keep_objects, keep_regions, done = None, None, None, set()
    if args.resume:
        # the skipped files still there get their rows again; one gone since (a dangling link) keeps a counted row
        resumed = resume_rows(args, model, params, files + [path for path, _ in skipped if path.exists()])
        if isinstance(resumed, str):
            print(f"error: {resumed}", file=sys.stderr)
            return 2
        keep_counts, keep_objects, keep_regions, done = resumed
    from .csvout import escape_cell, unescape_cell

    todo = [f for f in files if escape_cell(str(f)) not in done]
    if done and not args.quiet:
        print(f"note: --resume: {len(done)} image(s) already counted with these settings, {len(todo)} to go",
              file=sys.stderr)
    if isinstance(model, NetModel) and not args.quiet and args.verbose:
        print("backend: {} ({})".format(*model.backend_in_use(backend)), file=sys.stderr)
    settings = _run_settings(args, model, params, backend, done, todo)
    n_ok = n_err = total = n_check = total_check = 0
    failed: list[tuple[str, str]] = []
    workers_ran: set[str] = set()  # the backends the rows name: workers choose theirs on their machines
    whole: list[str] = []  # counted whole, so without region counts
    no_labels: list[str] = []  # counted by blocks, so without a label image in --labels-dir
    if keep_counts is not None:
        n_ok = len(keep_counts)
        total = int(sum(int(float(c)) for c in keep_counts["count"] if c != ""))
        kept_check = keep_counts["check"] == "True"
        n_check = int(kept_check.sum())
        total_check = int(sum(int(float(c)) for c in keep_counts.loc[kept_check, "count"] if c != ""))
    written: set[str] = set()
    label_plan: dict[str, str] = {}
    interrupted = False
    unwritten: list[OSError] = []  # tables that could not be written at the end (their folder gone read-only)
    counts_out = objects_out = regions_out = index_out = None
    cluster = None
    if args.workers or args.scheduler:
        cluster = _start_cluster(args, backend)
        if isinstance(cluster, str):
            print(f"error: {cluster}", file=sys.stderr)
            return 2
    from .history import Recorder

    # each input with its row, in the order the rows end in (a file that cannot be read among the rest)
    inputs = [str(p) for p in sorted([*files, *(path for path, _ in skipped)], key=lambda p: (str(p.parent), p.name))]
    record = Recorder(source="cli", model=model.name, model_sha256=model.card.sha256,
                      # where the run was made and what else it wrote: inputs are recorded as given (relative paths),
                      # and the objects and label images are found again only from here
                      settings={**settings, "resume": bool(args.resume), "working_dir": os.getcwd(),
                                "paths": [str(p) for p in args.paths],
                                **{k: str(real(Path(v))) for k, v in (("objects", args.objects),
                                                                      ("labels_dir", args.labels_dir)) if v}},
                      inputs=inputs,
                      out_path=str(real(Path(args.out))))
    if keep_counts is not None:
        record.add(keep_counts.to_dict("records"))
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
    try:
        # the outputs are replaced at once: a stale CSV from an earlier run never stays in place
        atomic_write_bytes(settings_path(args.out), json.dumps(settings, indent=2).encode("utf-8"))
        atomic_write_bytes(inputs_path(args.out), json.dumps({str(f): fingerprint(f) for f in files}).encode("utf-8"))
        if keep_counts is not None:  # rows kept by --resume were counted with this plane (else all count again)
            with_plane(keep_counts, args.plane)
        counts_out = CsvStream(args.out, columns=with_plane(pd.DataFrame(columns=COUNT_COLUMNS), args.plane).columns.tolist(),
                               keep=keep_counts)
        for path, reason in skipped:  # a file named that cannot be counted gets its row too, not only a warning
            if escape_cell(str(path)) in done:  # counted before it went (kept, as a file gone since is)
                continue
            # named with the run's model and settings, as every other error row (a join on them would lose these)
            row = counts_frame([BatchItem(str(path), "error", f"not counted: {reason}", None, model=model.name,
                                          settings=params.settings_json(model.output_kind))], args.plane)
            counts_out.append(row)
            record.add(row.to_dict("records"))
        objects_out = CsvStream(args.objects, keep=keep_objects, empty_columns=("file", "label")) if args.objects else None
        if args.labels_dir:
            index_out, earlier, ours = labels_index(args, done, {escape_cell(str(f)) for f in files})
            written.update(earlier)  # resumed: never reuse an earlier image's label file name
            label_plan = label_names(Path(args.labels_dir), [str(f) for f in todo], written, all_inputs, ours)
        from .io import DEFAULT_MAX_PIXELS

        max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
        progress = _progress_bar(not (args.no_progress or args.quiet))
        if cluster is not None:
            from .distributed import count_on_cluster

            regions_out = CsvStream(regions_path(args), keep=keep_regions,
                                    empty_columns=("file", "region", "row0", "col0", "row1", "col1", "count")
                                    ) if region_spec(args) else None
            items = count_on_cluster([(str(f), f) for f in todo], model, params, cluster, model_ref=args.model,
                                     progress=progress, max_pixels=max_pixels, block_px=args.block_px,
                                     overlap_px=args.overlap_px, regions=region_spec(args), page=args.plane,
                                     block_progress=progress.blocks)
        else:
            items = count_many([(str(f), f) for f in todo], model, params, progress=progress, size_model=size_model,
                               strict_page=len(files) == 1 and not searched,  # one file named: its plane must exist
                               backend=backend, max_pixels=max_pixels, page=args.plane,
                               measure=objects_out is not None)  # the object table only where it is written
        for item in items:
            # the counts row marks the image done for --resume, so the published counts never run ahead of
            # the published regions and objects: those first, and counts held back while their publish waits
            with _whole():
                if regions_out is not None:
                    regions_out.append(item.regions if item.regions is not None else [])
                    if item.regions is None and item.status == "ok":
                        whole.append(item.name)
                if args.labels_dir and item.result is not None and item.result.labels is not None:
                    written_as = write_labels(Path(args.labels_dir), item.name, item.result.labels, written, all_inputs,
                                              ours, label_plan, model=item.result.model_name,
                                              pixel_size_um=item.result.pixel_size_um)
                    index_out.append(index_row(item.name, written_as))
                elif args.labels_dir and item.status == "ok" and item.result is not None:  # by blocks: none held
                    no_labels.append(item.name)
                    index_out.append(index_row(item.name, ""))  # none, on purpose: --resume keeps its row
                if objects_out is not None:
                    objects_out.append(item_objects(item) if item.result is not None else [])
                shown = item
                if item.status != "ok" and item.reason and PIXEL_CAP_TEXT in item.reason:  # what to do, in the row too
                    hint = OVER_CAP_HINT if cluster is None else OVER_CAP_WORKERS_HINT  # (said once at the end too)
                    shown = dataclasses.replace(item, reason=f"{item.reason}; {hint}")
                row = counts_frame([shown], args.plane)
                counts_out.append(row, publish=False)
                publish_with(counts_out, regions_out, objects_out, index_out)  # never ahead of them
                record.add(row.to_dict("records"))
                if item.status == "ok":
                    if item.result.backend:
                        workers_ran.add(item.result.backend)
                    n_ok += 1
                    total += int(item.result.count)
                    if item.result.quality is not None and item.result.quality.flag:
                        n_check += 1
                        total_check += int(item.result.count)
                else:
                    n_err += 1
                    failed.append((item.name, item.reason))
                item.result = None  # free memory as we go
    except KeyboardInterrupt:
        interrupted = True
    except OSError as err:
        record.finish("failed")
        print(f"\nerror: cannot write the results: {err}; run the same command with --resume once it can be written "
              "(the images counted whose every table was written are kept)", file=sys.stderr)
        return 2
    finally:
        # the files end in the order of the inputs: unreadable files' rows are written first, workers finish in any
        # order and --resume appends; an in-process run's objects are in order already (read whole to be sorted)
        # rows --resume kept of files gone since among them, as they stood (they ended the file)
        kept = [] if keep_counts is None else [str(unescape_cell(f)) for f in keep_counts["file"]]
        names = sorted({*inputs, *kept}, key=lambda n: (str(Path(n).parent), Path(n).name))
        order = ("file", [escape_cell(name) for name in names])
        anywhere = args.workers or args.scheduler or args.resume
        for sink in (index_out, regions_out, objects_out, counts_out):  # regions and objects first, as above
            if sink is not None:
                try:  # one table that cannot be written: the counts stay no further than it, and no traceback
                    sink.close(order=order if anywhere or sink is not objects_out else None, publish=not unwritten)
                except OSError as err:
                    unwritten.append(err)
        if cluster is not None:
            from .distributed import close

            close(cluster)
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    if unwritten:
        record.finish("failed")
        print(f"\nerror: cannot write the results: {unwritten[0]}; the counts CSV holds the images whose every table "
              "was written: run the same command with --resume once the folder is writable", file=sys.stderr)
        return 2
    if cluster is not None and workers_ran and "backend" not in settings:  # chosen on the workers: known only now
        ran = sorted(workers_ran)
        settings.update({"backend": ran[0]} if len(ran) == 1 else {"backends": ran})
        with contextlib.suppress(OSError):  # the counts are written; a record that cannot be is no failure
            atomic_write_bytes(settings_path(args.out), json.dumps(settings, indent=2).encode("utf-8"))
        if not args.quiet:
            print(f"note: the workers ran the {' and '.join(ran)} backend (recorded in {settings_path(args.out)})",
                  file=sys.stderr)
    n_rows = n_ok + n_err
    record.finish("interrupted" if interrupted else "done")
    if interrupted:
        print(f"\ninterrupted: {n_rows} of {len(files)} images are in {args.out}; run the same command with "
              "--resume to count the rest", file=sys.stderr)
        return 130
    _report(args, model, n_ok=n_ok, n_err=n_err, total=total, n_check=n_check, total_check=total_check,
            kept=len(keep_counts) if keep_counts is not None else 0, done=done, todo=todo, skipped=skipped,
            failed=failed, whole=whole, no_labels=no_labels)
    return 1 if n_err or skipped else 0


def _passed_over_notes(hidden: list[Path], others: list[Path], searched: list[Path]) -> None:
    """What a folder search passed over: hidden files and folders with images, and files that are not images (a
    folder's notes and tables get no row: said, as the app lists a zip's)."""
    from .io import split_ground_truth_files
    from .io.archive import OS_FILES
    from .io.files import said_path

    if hidden:  # as file browsers hide them
        shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in hidden[:3]) + (" ..." if len(hidden) > 3 else "")
        print(f"note: left out {len(hidden)} hidden file(s) or folder(s) with images (names starting with '.': "
              f"{shown}); name them, or a pattern such as 'folder/.*.png', to count them", file=sys.stderr)
    others = [p for p in split_ground_truth_files(others, roots=searched)[0]  # annotation tables: ground truth
              if p.suffix.lower() not in _OWN_OUTPUT_SUFFIXES and p.name.lower() not in OS_FILES]
    if others:
        shown = ", ".join(said_path(p) for p in others[:3]) + (" ..." if len(others) > 3 else "")
        zips = sum(p.suffix.lower() == ".zip" for p in others)
        print(f"note: passed over {len(others)} file(s) that are not images ({shown})"
              + (f"; {zips} zip file(s) among them: unzip one and name its folder to count its images" if zips else ""),
              file=sys.stderr)


def _leave_out_ground_truth(files: list[Path], skipped: list[tuple[Path, str]], searched: list[Path], *,
                            quiet: bool) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """(the images to count, the ground-truth files left out, the files that get an error row): label images and
    annotation tables named on the command line (``count folder/*`` names a_points.csv) are left out alike, as the
    app does, with no error row."""
    from .io import split_ground_truth_files

    files, gt_files = split_ground_truth_files(files, roots=searched)
    tables = set(split_ground_truth_files([path for path, _ in skipped], roots=searched)[1])
    gt_files += sorted(tables)
    skipped = [(path, why) for path, why in skipped if path not in tables]
    if gt_files and not quiet:
        # with their folder: labels/a.png beside images/a.png alone reads as if the images were skipped
        shown = ", ".join(_from_ground_truth_folder(p) for p in gt_files[:3]) + (" ..." if len(gt_files) > 3 else "")
        print(f"note: skipped {len(gt_files)} file(s) named like ground truth ({shown}); "
              "use --include-ground-truth to count them", file=sys.stderr)
    return files, gt_files, skipped


def _copies_note(files: list[Path]) -> None:
    """Files counted that hold the same bytes under another name: each counted as named, so a folder's total holds
    their cells twice."""
    from .io.files import said_path, same_files

    if copies := same_files(files):
        shown = "; ".join(f"{said_path(a)} = {said_path(b)}" for a, b in copies[:3])
        print(f"note: {len(copies)} file(s) hold the same bytes as another under another name (copies?), each counted, "
              f"so a total counts their cells more than once: {shown}{' ...' if len(copies) > 3 else ''}",
              file=sys.stderr)


def _report(args: argparse.Namespace, model, *, n_ok: int, n_err: int, total: int, n_check: int, total_check: int,
            kept: int, done: set[str], todo: list[Path], skipped: list[tuple[Path, str]], failed: list[tuple[str, str]],
            whole: list[str], no_labels: list[str]) -> None:
    """What a finished ``count`` prints: the summary line, each failed image, and notes on rows without region
    counts or label images."""
    from .io.read import BYTES_CAP_TEXT, OVER_BYTES_HINT, OVER_CAP_HINT, OVER_CAP_WORKERS_HINT, PIXEL_CAP_TEXT

    if not args.quiet:
        what = ("(density integrals; the objects CSV lists its peaks, approximate centres)"
                if model.output_kind == "density" else "objects")
        # a resumed run's file holds the earlier rows too: said apart from those counted now
        counted = (f"counted {n_ok}/{n_ok + n_err + len(skipped)} images" if not done else
                   f"counted {n_ok - kept} of the {len(todo)} image(s) left ({kept} kept from before): "
                   f"{n_ok}/{n_ok + n_err + len(skipped)} counted")
        print(f"{counted} with {model.name}: total {total} {what} -> {args.out}"
              + (f"; {n_check} flagged 'check this image' (columns check, check_reasons), {total_check} of the "
                 "total in them" if n_check else "")
              + (f"; {n_err + len(skipped)} failed (see the 'reason' column"
                 # the rest are opened and fail there: "1 of them could not be read at all" would read as 1 of 5
                 + (f"; {len(skipped)} of them not even opened (a broken link, a folder that cannot be read, a file "
                    "that is no image), said above" if skipped else "") + ")"
                 if n_err or skipped else ""))
    for name, reason in failed:  # with --quiet too: an exit status of 1 alone does not say which
        # the reason names the file already where it was read from it
        print(f"  failed: {reason if reason.startswith(f'{name}: ') else f'{name}: {reason}'}", file=sys.stderr)
    if any(PIXEL_CAP_TEXT in reason for _, reason in failed):  # on workers too: a PNG is not counted by blocks
        print(f"note: {OVER_CAP_WORKERS_HINT if args.workers or args.scheduler else OVER_CAP_HINT}", file=sys.stderr)
    if any(BYTES_CAP_TEXT in reason for _, reason in failed) and not (args.workers or args.scheduler):
        print(f"note: {OVER_BYTES_HINT}", file=sys.stderr)
    if whole:  # an empty regions CSV says nothing of why (an 8000 x 8000 slide, under the cap, is counted whole)
        shown = ", ".join(whole[:3]) + (f" and {len(whole) - 3} more" if len(whole) > 3 else "")
        print(f"note: {len(whole)} image(s) were counted whole, not by blocks, so they have no region counts "
              f"({shown}): regions are counted on TIFF and OME-Zarr images counted by blocks, those above "
              "--max-pixels; give a --max-pixels below a TIFF's pixel count to count it by blocks, and save other "
              "formats as TIFF first", file=sys.stderr)
    if no_labels:  # else an empty labels folder says nothing of why
        shown = ", ".join(no_labels[:3]) + (f" and {len(no_labels) - 3} more" if len(no_labels) > 3 else "")
        print(f"note: {len(no_labels)} image(s) counted by blocks have no label image in {args.labels_dir} ({shown}): "
              "an image above --max-pixels is counted block by block and never held whole, its labels neither; its "
              "objects are in --objects", file=sys.stderr)


def _run_settings(args: argparse.Namespace, model, params, backend: str | None, done: set[str], todo: list[Path]) -> dict:
    """The settings file beside ``--out``: what counted its rows (model, weights, settings, plane, blocks, backend),
    with a note where rows kept by ``--resume`` or the settings file given ran in another backend."""
    from ._version import __version__
    from .models import NetModel
    from .models.backends import BACKENDS

    settings = {"model": model.name, "model_sha256": model.card.sha256, "model_card": model.card.counting_digest(),
                "cellcount_version": __version__,
                "out": Path(args.out).name,
                **({"objects": str(args.objects)} if args.objects else {}),
                "params": params.acting(model.output_kind),
                **({"plane": args.plane} if args.plane is not None else {}),
                **({"blocks": blocks} if (blocks := blocks_record(args)) is not None else {})}
    if done and not todo:  # nothing counted now: the backends that counted the rows kept, as recorded
        return {**settings, **previous_backend_record(args.out)}
    if isinstance(model, NetModel) and args.workers and backend and backend != "auto":  # every local worker runs it
        settings["backend"] = backend
    if isinstance(model, NetModel) and not (args.workers or args.scheduler):  # else workers choose on their machines
        # bf16 and fp32 counts may differ by an object or two: which one ran is part of the record
        settings["backend"] = model.backend_in_use(backend)[0]
        before = previous_backends(args.out) if done else []
        if set(before) - {settings["backend"]}:  # kept rows ran with another: the record names every one
            settings["backends_of_resumed_rows"] = before
            if not args.quiet:
                others = " and ".join(b for b in before if b != settings["backend"])
                print(f"note: --resume: the {len(done)} row(s) kept include rows counted with the {others} backend, "
                      f"the rest are counted with {settings['backend']} (totals agree within 0.5%)", file=sys.stderr)
        # on a CPU only: a GPU always runs PyTorch, whatever was asked
        if args.settings and not args.quiet and (recorded := _recorded_backend(args.settings, model.name)) \
                and recorded != settings["backend"] and settings["backend"] in BACKENDS:
            print(f"note: {args.settings} records a run with the {recorded} backend; this one runs {settings['backend']}"
                  f", so a count may differ by an object (totals agree within 0.5%): --backend {recorded} runs that "
                  "run's backend where this machine has it", file=sys.stderr)
    return settings


SMALL_BLOCK_PX = 400
"""Blocks smaller than this get a note: 400 px blocks count within 0.5% of the whole image (docs/SCALING.md, tested),
where 320 px blocks of a 640 px image can count a few percent more, most of the difference near the seams."""


def _check_cluster_options(args: argparse.Namespace) -> str | None:
    """A message when the Dask / block options cannot be used; None when all is well."""
    from .errors import ParameterError

    if args.workers is not None and args.scheduler:
        return "give --workers (a cluster on this machine) or --scheduler (a running one), not both"
    if args.workers is not None and args.workers < 1:
        return f"--workers must be at least 1, got {args.workers}"
    if (args.region_grid or args.regions) and not (args.workers or args.scheduler):
        return "--region-grid / --regions count huge images by blocks, which runs with --workers or --scheduler"
    if args.region_grid and args.regions:
        return "give --region-grid or --regions, not both"
    if args.max_pixels is not None and args.max_pixels < 1:
        return f"--max-pixels must be at least 1, got {args.max_pixels}"
    from .blocks import DEFAULT_BLOCK_PX, DEFAULT_OVERLAP_PX

    given = [o for o, v in (("--block-px", args.block_px), ("--overlap-px", args.overlap_px)) if v is not None]
    if given and not (args.workers or args.scheduler) and not args.quiet:  # else silent options look acted on
        one = len(given) == 1
        print(f"note: {' and '.join(given)} set{'s' if one else ''} the blocks of huge images counted with --workers or "
              f"--scheduler; this run counts each image whole, so {'it changes' if one else 'they change'} nothing",
              file=sys.stderr)
    args.block_px = DEFAULT_BLOCK_PX if args.block_px is None else args.block_px
    args.overlap_px = DEFAULT_OVERLAP_PX if args.overlap_px is None else args.overlap_px
    if args.block_px < 64 or args.overlap_px < 0:
        return f"need --block-px >= 64 and --overlap-px >= 0, got {args.block_px} and {args.overlap_px}"
    if args.block_px < SMALL_BLOCK_PX and (args.workers or args.scheduler) and not args.quiet:
        print(f"note: blocks of {args.block_px} px hold little context around their seams, where objects are then "
              f"counted less surely than in the whole image; blocks of {SMALL_BLOCK_PX}-{DEFAULT_BLOCK_PX} px (the default) "
              "count as the whole image does more closely", file=sys.stderr)
    try:
        region_spec(args)
    except ValueError as err:
        if isinstance(err, ParameterError):
            return str(err)
        return (f"--region-grid must look like 4x4 (rows x columns, each at least 1), got {args.region_grid!r}")
    return None


def _start_cluster(args: argparse.Namespace, backend: str | None = None):
    """A Dask client (local workers or a running scheduler), or a message saying why not; local workers run
    ``backend`` when one was asked for."""

    # worker restarts and slow shutdowns are handled, not news: Dask logs errors only (workers read it too)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    try:
        from .distributed import connect, local_cluster
    except ImportError as err:
        return f"--workers / --scheduler need Dask: pip install 'dask[distributed]' ({err})"
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        if args.workers:
            client = local_cluster(args.workers, backend=backend)
            client.wait_for_workers(args.workers, timeout=120)
        else:
            client = connect(args.scheduler)
    except (OSError, TimeoutError, ValueError) as err:
        return f"cannot start or reach the Dask cluster: {err}"
    if not args.quiet:
        how = f"{args.workers} local worker(s)" if args.workers else f"the cluster at {args.scheduler}"
        print(f"note: counting on {how}", file=sys.stderr)
    return client


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``runs --limit 0`` said "no runs recorded yet")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_runs(args: argparse.Namespace) -> int:
    """List the history of runs, or print / export one run."""

    from .csvout import atomic_write_bytes, delimiter, not_a_file_problem
    from .history import HistoryError, db_path, get_run, list_runs

    try:
        if args.show is not None or args.export is not None:
            run_id = args.show if args.show is not None else args.export
            run = get_run(run_id)
            if args.show is not None:
                print(json.dumps(run, indent=2))
                return 0
            text = export_text(run_id, sep=delimiter(args.out) if args.out and args.out != "-" else ",")
            targets = (("--settings-out", args.settings_out, (".json",)),
                       ("--out", None if args.out == "-" else args.out, TABLE_SUFFIXES))
            for option, target, suffixes in targets:  # both checked before either is written
                if not target:
                    continue
                # a rename onto /dev/null or /dev/stdout replaced the device itself ("-" is standard output)
                if problem := not_a_file_problem(target):
                    print(f"error: {option} {problem}; give a file name" + (" (or - for standard output)"
                                                                            if option == "--out" else ""), file=sys.stderr)
                    return 2
                if problem := not_a_table_problem(Path(target), suffixes):
                    print(f"error: {option} {problem}", file=sys.stderr)
                    return 2
            for _, target, _ in targets:
                if target:  # as count does: the folder is made (else the error named a temporary file in it)
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
            if args.settings_out:  # as the Runs page's download: with the backend, which count --settings compares
                from .errors import CellcountError
                from .models import list_models, load_model
                from .settingsfile import record_text

                name = run["settings"].get("model", run["model"])
                try:  # the acting settings of a model installed here; all recorded for one gone or broken
                    kind = load_model(name).output_kind if name in list_models() else None
                except (CellcountError, OSError, ValueError):
                    kind = None
                atomic_write_bytes(args.settings_out,
                                   record_text({"model": run["model"], **run["settings"]}, kind).encode("utf-8"))
            if args.out == "-":
                sys.stdout.write(text)
            else:
                with contextlib.suppress(OSError):  # the same rows already there: nothing to keep
                    if Path(args.out).read_bytes() != text.encode("utf-8") and (note := replaced_counts(Path(args.out))):
                        print(note, file=sys.stderr)
                atomic_write_bytes(args.out, text.encode("utf-8"))
            return 0
        runs = list_runs(args.limit)
    except KeyError as err:
        print(f"error: {err.args[0]} ({db_path()}); see 'python -m cellcount runs'", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `runs --export ID | head`: the caller's quiet ending, not a history error
        raise
    except (HistoryError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not len(runs):
        print(f"no runs recorded yet in {db_path()}")
        return 0
    shown = runs[["id", "started_at", "source", "host", "model", "status", "n_inputs", "n_ok", "n_failed",
                  "n_skipped", "total_count", "out_path"]].rename(columns={"out_path": "out"})
    # which counts CSV each run wrote (an app run writes none), beside the current folder where it lies below it
    shown["out"] = shown["out"].map(_shown_path)
    print(shown.to_string(index=False))
    print(f"({len(runs)} latest of the history {db_path()}; 'runs --export ID --out x.csv' writes a run's CSV)")
    return 0


def _shown_path(path: object) -> str:
    if not isinstance(path, str) or not path:
        return "-"
    try:
        return Path(path).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path


def _raise_interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: stop like Ctrl-C, so the rows counted so far are published."""
    raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _whole():
    """One image's rows written as a whole: a Ctrl-C or SIGTERM meanwhile stops the run once they are (the CSV, the
    run history and the "interrupted: N of M" line agree; one landing between them left the count one short)."""
    if not _main_thread():
        yield
        return
    got: list[int] = []
    # a signal ignored (a job started with `&` ignores Ctrl-C) stays ignored
    held = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
    if got:  # after the rows, and only where nothing else (a full disk) is on its way out
        raise KeyboardInterrupt


# Commands with their own parser in their own module: `cellcount evaluate ...` = `python -m cellcount.evaluate ...`
MODULE_COMMANDS = {
    "evaluate": ("cellcount.evaluate.cli", "score a model against ground truth, tune its settings"),
    "compare": ("cellcount.evaluate.compare_cli", "score models or settings side by side on labelled images"),
    "train": ("cellcount.train", "train a model from a config"),
    "finetune": ("cellcount.finetune", "fine-tune a model on your own annotated images"),
}


def run() -> None:
    """The process entry point (``cellcount`` and ``python -m cellcount``): :func:`main`, then exit without
    the interpreter's final garbage collection, which walks every object torch's import made (a noticeable
    part of a short command's time). Files and streams are closed as usual."""
    import gc

    from .memory import keep_freed_memory

    keep_freed_memory()  # each image's tensors reuse the last one's pages instead of faulting in new ones
    code = main()
    gc.freeze()  # frozen objects are skipped by the collection at exit; nothing is left unwritten by it
    raise SystemExit(code)


EXIT_BUSY = 75
"""Exit status when another run is writing an output (sysexits' EX_TEMPFAIL): a job array's script can retry this,
where exit 2 (a usage error) says the command itself is wrong."""


def main(argv: list[str] | None = None) -> int:
    with plain_warnings():
        try:
            return _main(argv)
        except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (loading a model, reading a folder)
            print("\ninterrupted", file=sys.stderr)
            return 130


def _main(argv: list[str] | None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in MODULE_COMMANDS:
        with as_command(argv[0]):
            return importlib.import_module(MODULE_COMMANDS[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(normalize_argv(argv))
    setup_logging(logging.ERROR if getattr(args, "quiet", False) else logging.WARNING)
    try:
        if args.command == "models":
            return cmd_models(args.remove, card=args.card)
        if args.command == "runs":
            return cmd_runs(args)
        return cmd_count(args)
    except BrokenPipeError:  # `cellcount runs | head`: the reader left; nothing is lost, say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
