"""What ``count --resume`` keeps of an earlier run into the same ``--out``, and what it counts again."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .outputs import (
    blocks_record,
    fingerprint,
    inputs_path,
    other_regions,
    real,
    region_spec,
    regions_path,
    replaced_tables,
    settings_path,
)

if TYPE_CHECKING:
    import pandas as pd


def same_settings(cells: pd.Series, acting: dict) -> pd.Series:
    """Which rows' ``settings`` cells hold ``acting`` (:meth:`CountParams.acting`): a row lists the settings
    that act on its model, and a CSV from before that listed every setting, so the rest are not compared."""
    def same(cell) -> bool:
        try:
            values = json.loads(cell)
        except (TypeError, ValueError):
            return False
        return isinstance(values, dict) and all(k in values and values[k] == v for k, v in acting.items())

    return cells.map(same).astype(bool)


def changed_inputs(out: Path, kept: list[str], by_name: dict[str, Path]) -> set[str]:
    """Of the ``kept`` rows' files, those changed since the earlier run started: another size or modification
    time than the inputs file recorded (a copy that keeps the source's time, ``cp -p`` or ``rsync -a``, still
    differs from the file it replaced), or, for a run from before that file, written after it started."""
    try:
        recorded = json.loads(inputs_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if isinstance(recorded, dict):
        return {name for name in kept if recorded.get(str(by_name[name])) != fingerprint(by_name[name])}
    started = (settings_path(out) if settings_path(out).is_file() else out).stat().st_mtime
    return {name for name in kept if modified_since(by_name[name], started)}


def moved_inputs(out: Path, gone: list[str], files: list[Path]) -> dict[str, str]:
    """Of the rows of files gone since (``gone``, as the CSV writes them), those whose file is among ``files`` under
    another path: the same size and modification time as the inputs file recorded (``mv`` keeps both). Returns
    old row name -> new path. Without it, a folder renamed between a run and its --resume would have each image
    counted twice, the old row kept as "no longer exists" and the image counted again under its new name."""
    from .csvout import unescape_cell

    try:
        recorded = json.loads(inputs_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    by_print: dict[tuple, list[Path]] = {}
    for f in files:  # only files the earlier run was not given: one of those counted already is no new path
        fp = fingerprint(f) if str(f) not in recorded else None
        if fp:
            by_print.setdefault(tuple(fp), []).append(f)
    wanted: dict[tuple, list[str]] = {}
    for name in gone:
        fp = recorded.get(unescape_cell(name))
        if isinstance(fp, list):
            wanted.setdefault(tuple(fp), []).append(name)
    # one to one: a size and time that two gone rows, or two new paths, share says nothing
    return {names[0]: str(by_print[fp][0]) for fp, names in wanted.items()
            if len(names) == 1 and len(by_print.get(fp, [])) == 1}


def previous_backend_record(out: str | Path) -> dict:
    """The backend entries (``backend``, ``backends_of_resumed_rows``) of the settings file beside ``out``, as they
    are: what a resumed run that counts nothing more records for the rows it keeps."""
    try:
        previous = json.loads(settings_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(previous, dict):
        return {}
    return {k: previous[k] for k in ("backend", "backends_of_resumed_rows") if previous.get(k)}


def previous_backends(out: str | Path) -> list[str]:
    """The backends an earlier run into ``out`` recorded for its rows (with those of the runs it resumed)."""
    import pandas as pd

    from .csvout import delimiter

    previous = previous_backend_record(out)
    resumed = previous.get("backends_of_resumed_rows")
    names = [previous.get("backend"), *(resumed if isinstance(resumed, list) else [])]
    try:  # the rows name theirs too: a run by workers records none (each worker chose on its machine)
        names += list(pd.read_csv(out, dtype=str, keep_default_na=False, usecols=["backend"],
                                  sep=delimiter(Path(out)))["backend"].unique())
    except (OSError, ValueError, pd.errors.ParserError):
        pass
    return sorted({str(n) for n in names if n})


def resume_rows(args: argparse.Namespace, model, params, files: list[Path]):
    """:func:`resume_plan`; where it counts again images counted before (other settings, changed files, another
    model), the counts CSV and the object and region tables are first kept beside them, as a run without
    ``--resume`` keeps them (else the object table would lose the rows of the images counted again)."""
    import pandas as pd

    from .csvout import delimiter, escape_cell, keep_copy, unescape_cell

    resumed = resume_plan(args, model, params, files)
    if isinstance(resumed, str):
        return resumed
    out = Path(args.out)
    try:
        old = pd.read_csv(out, dtype=str, keep_default_na=False, usecols=["file", "status"], sep=delimiter(out))
    except (OSError, ValueError, pd.errors.ParserError):
        return resumed
    again = set(old.loc[old["status"] == "ok", "file"]) - set(resumed[3])
    if not again:
        return resumed
    tables = [Path(p) for p in (args.objects, regions_path(args) if region_spec(args) else None) if p]
    try:
        notes = [f"note: --resume counts {len(again)} image(s) again, replacing their rows; {out} is first kept as "
                 f"{keep_copy(out)}"] + replaced_tables(tables)
    except OSError as err:
        return f"an output exists and cannot be kept before it is replaced: {err}"
    # rows are matched by the path as given: imgs/a.png then /data/imgs/a.png is counted again, so that is said, with
    # how to avoid it (a cron job run from another folder redoes its whole batch)
    given = {os.path.abspath(f): escape_cell(str(f)) for f in files}
    respelt = [(name, given[path]) for name in sorted(again)
               if (path := os.path.abspath(unescape_cell(name))) in given and given[path] != name]
    if respelt:
        notes.append(f"note: --resume: {len(respelt)} of them are the same files named otherwise before ({respelt[0][0]}, "
                     f"now {respelt[0][1]}); give the paths as the earlier run did to resume without counting them "
                     "again")
    if not args.quiet:
        print("\n".join(notes), file=sys.stderr)
    return resumed


GONE_REASON = "the file no longer exists: counted by the earlier run, kept"
"""The ``reason`` of a row a resume keeps for a file gone since (an unmounted drive, a file moved away)."""


def resume_plan(args: argparse.Namespace, model, params, files: list[Path]):
    """Rows of an interrupted run to keep: (counts rows, objects rows, regions rows, done file names) or a message.

    A row is kept when its file is one of this run's inputs and it was counted (status ok) with the same
    model (name and weights' sha256) and the same settings; everything else is counted again.
    """
    import pandas as pd

    from .batch import COUNT_COLUMNS
    from .csvout import delimiter, escape_cell

    out = Path(args.out)
    if not out.is_file():
        return None, None, None, set()
    try:
        old = pd.read_csv(out, dtype=str, keep_default_na=False, sep=delimiter(out))
    except (OSError, ValueError, pd.errors.ParserError) as err:
        return f"--resume: cannot read {out}: {err}"
    old = old.rename(columns={"quality_score": "check_score"})  # the column's name before 2026-12-04
    for c in ("backend", "check", "check_score", "check_reasons", "split_used", "inverted"):  # newer than some CSVs
        if c not in old.columns:
            old[c] = ""
    if not old["backend"].astype(bool).any() and len(set(before := previous_backends(out))) == 1:
        old["backend"] = before[0]  # rows written before the column: their run's record names the one that ran
    missing = [c for c in COUNT_COLUMNS if c not in old.columns]
    if missing:
        return f"--resume: {out} is not a counts CSV of this program (no columns {missing})"
    # rows of images not given this time would be dropped from the rewritten CSV: refuse rather than lose them
    # (the same file by another path, ./a.png or /abs/a.png, is given; a file deleted since cannot be)
    from .io import split_ground_truth_files

    given = {escape_cell(str(f)) for f in files} | {str(real(f)) for f in files}
    absent = sorted(name for name in set(old["file"]) if name not in given and str(real(Path(name))) not in given)
    counted = set(old.loc[old["status"] == "ok", "file"])  # an error row of a file not given now is dropped
    others = [name for name in absent if name in counted and Path(name).is_file()]
    # a file gone since (a drive unmounted, a file moved away) keeps its counted row as it was
    gone = old[old["file"].isin(set(absent) - set(others)) & (old["status"] == "ok")].drop_duplicates("file", keep="last")
    moved = moved_inputs(out, list(gone["file"]), files)
    if moved:  # counted again under their new paths, not kept twice
        gone = gone[~gone["file"].isin(moved)]
        if not args.quiet:
            first = next(iter(moved.items()))
            print(f"note: --resume: {len(moved)} image(s) in {out} were moved or renamed since ({first[0]} is now "
                  f"{first[1]}{' ...' if len(moved) > 1 else ''}); their old rows are dropped and they are counted "
                  "under their new paths", file=sys.stderr)
    if len(gone) and not others and not args.quiet:
        print(f"note: --resume: {len(gone)} image(s) in {out} no longer exist; their rows are kept, counted by the "
              f"earlier run, and the totals include them (their reason column says so)", file=sys.stderr)
    gone = gone.assign(reason=GONE_REASON)  # the CSV alone says which counts no file stands behind now
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        hint = (" (files named like ground truth: the earlier run had --include-ground-truth?)"
                if not args.include_ground_truth and split_ground_truth_files(others)[1] else "")
        return (f"--resume: {out} holds {len(others)} image(s) that are not among these inputs ({shown}){hint}; "
                "their rows would be lost: resume with the same paths as before, or write to a new --out")
    try:
        previous = json.loads(settings_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    if isinstance(previous, dict) and previous.get("out", out.name) != out.name:
        # cc.csv and cc.tsv share cc.settings.json: the other run's record says nothing of this output's rows
        if not args.quiet:
            print(f"note: --resume: {settings_path(out).name} records the run into {previous['out']}, not {out.name} "
                  "(outputs named alike but for their extension share it); counting all images again: give outputs "
                  "names that differ before the extension", file=sys.stderr)
        return None, None, None, set()
    if isinstance(previous, dict) and previous.get("objects") and not args.objects and not args.quiet:
        # its rows stop at the interruption: a table that looks whole but lacks the images counted now
        print(f"note: --resume: the earlier run into {out} also wrote the objects table {previous['objects']}, which "
              f"this run does not update (no --objects): it lacks the images counted now; resume with --objects "
              f"{previous['objects']} to complete it", file=sys.stderr)
    if isinstance(previous, dict) and previous.get("model", model.name) != model.name:
        print(f"note: --resume: {out} was counted with {previous.get('model')}, not {model.name}; counting all "
              "images again", file=sys.stderr)
        return None, None, None, set()
    if isinstance(previous, dict) and previous.get("model_sha256", model.card.sha256) != model.card.sha256:
        print(f"note: --resume: the weights of {model.name} changed since {out} was written; counting all "
              "images again", file=sys.stderr)
        return None, None, None, set()
    if isinstance(previous, dict) and previous.get("model_card", model.card.counting_digest()) != model.card.counting_digest():
        # a density scale calibrated since (evaluate --tune --write-card), or another folder of that name
        print(f"note: --resume: the card of {model.name} changed since {out} was written (its density scale, "
              "normalisation, tiles or size model); counting all images again", file=sys.stderr)
        return None, None, None, set()
    if isinstance(previous, dict) and previous.get("plane") != args.plane:
        print(f"note: --resume: {out} was counted with another --plane; counting all images again", file=sys.stderr)
        return None, None, None, set()
    if isinstance(previous, dict) and other_regions(previous.get("blocks"), blocks_record(args)):
        print(f"note: --resume: {out} was counted with other regions (--region-grid, --regions) or blocks for them; "
              "counting all images again", file=sys.stderr)
        return None, None, None, set()
    same = same_settings(old["settings"], params.acting(model.output_kind))
    by_name = {escape_cell(str(f)): f for f in files}
    keep = old[(old["status"] == "ok") & (old["model"] == escape_cell(model.name)) & same
               & old["file"].isin(set(by_name))].drop_duplicates("file", keep="last")
    # an image replaced or edited since the earlier run started is counted again
    changed = changed_inputs(out, list(keep["file"]), by_name)
    if changed:
        keep = keep[~keep["file"].isin(changed)]
        if not args.quiet:
            print(f"note: --resume: {len(changed)} image(s) changed since {out} was counted; they are counted again",
                  file=sys.stderr)
    names = set(by_name)
    other = set(old.loc[(old["status"] == "ok") & old["file"].isin(names) & ~same, "file"])
    again = other - set(keep["file"])
    if again and not args.quiet:
        print(f"note: --resume: {len(again)} image(s) in {out} were counted with other settings; they are counted "
              "again with these", file=sys.stderr)
    if args.labels_dir and len(keep):
        unlabelled = without_labels(Path(args.labels_dir), set(keep["file"]))
        if unlabelled:
            keep = keep[~keep["file"].isin(unlabelled)]
            if not args.quiet:
                print(f"note: --resume: {len(unlabelled)} image(s) counted before have no label image in "
                      f"{args.labels_dir} (was --labels-dir given then?); they are counted again", file=sys.stderr)
    keep = pd.concat([keep, gone]) if len(gone) else keep
    kept_files = set(keep["file"])
    tables = {}
    for what, path in (("objects", args.objects), ("regions", regions_path(args) if region_spec(args) else None)):
        rows = kept_rows(path, what, kept_files) if path and len(keep) else None
        if isinstance(rows, str):
            return rows
        if rows is False:
            return None, None, None, set()
        tables[what] = rows
    return keep, tables["objects"], tables["regions"], kept_files


def without_labels(labels_dir: Path, files: set[str]) -> set[str]:
    """Which of ``files`` (CSV cells) the label folder's index names no existing label image for: an earlier run
    without --labels-dir, resumed with it, wrote labels for the new images only. An index row with no label file is
    an image counted by blocks, which has none: not counted again for it."""
    import pandas as pd

    from .batch import LABELS_INDEX
    from .csvout import unescape_cell

    try:
        index = pd.read_csv(labels_dir / LABELS_INDEX, dtype=str, keep_default_na=False)
        has = {f for f, lab in zip(index["file"], index["labels_file"], strict=True)
               if not lab or (labels_dir / unescape_cell(lab)).is_file()}
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        has = set()
    return files - has


def kept_rows(path, what: str, files: set[str]):
    """The rows of the earlier run's ``what`` CSV (objects, regions) for the images kept; False when it cannot be
    read (then everything is counted again), a message when it is not such a CSV."""
    import pandas as pd

    from .csvout import delimiter

    try:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False, sep=delimiter(path))
    except (OSError, ValueError, pd.errors.ParserError):
        print(f"note: --resume: no readable {what} CSV {path}; counting all images again", file=sys.stderr)
        return False
    if "file" not in rows.columns:
        return f"--resume: {path} is not a {what} CSV written by this program (no 'file' column)"
    return rows[rows["file"].isin(files)]


def modified_since(path: Path, when: float) -> bool:
    """The file was written after ``when`` (a timestamp), or cannot be read now."""
    try:
        return path.stat().st_mtime > when
    except OSError:
        return True
