"""A folder of images with their ground truth in any of the accepted forms (:func:`load_labelled_folder`)."""

from __future__ import annotations

import functools
import logging
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cellcount.errors import CellcountError, GroundTruthError
from cellcount.io import (
    DOT_DIRS,
    GROUND_TRUTH_DIRS,
    GROUND_TRUTH_SUFFIXES,
    IMAGE_EXTENSIONS,
    IMAGEJ_ROI_EXTENSIONS,
    cell_counter_stem,
    ground_truth_suffix,
    image_shape,
    imagej_roi_stem,
    list_image_files,
    role_word_ground_truth,
    split_ground_truth_files,
)

from .dsb import _is_dsb_nested, load_dsb_folder
from .exported import GEOJSON_EXTENSIONS, is_roi_set
from .names import _names, folded, listed, match_names, name_key
from .pairing import (
    _check_against_counts,
    _gt_base,
    _is_counts_table,
    _is_point_table,
    _skip_warning,
    match_ground_truth,
    role_key,
)
from .read import (
    annotations_disagree,
    check_points_fit,
    disagreeing_annotations,
    not_used_beside_broken,
    read_ground_truth,
)
from .tables import (
    _COUNT_COLUMNS,
    _FILENAME_COLUMNS,
    SPREADSHEET_EXTENSIONS,
    TABLE_EXTENSIONS,
    _count_columns,
    _csv_rows,
    _read_csv_text,
    accents_note,
    is_cellcount_counts,
    is_cellcount_objects,
    predicted_counts_message,
    read_counts_by_name,
    read_points_by_image,
    read_points_csv,
    several_counts,
    unread_annotation_note,
)
from .truth import CELLPOSE_SEG_NOTE, GROUND_TRUTH_KINDS, GroundTruth

logger = logging.getLogger(__name__)


def one_per_image(entries: Sequence, digests: Sequence[str], truths: Sequence[GroundTruth | None]) -> tuple[list, list]:
    """Entries whose images have the same content (``digests``) are one image: one of them is kept, the one
    with the richest ground truth (label images, then masks, then dots, then a count; none last), else the
    first. Returns (kept entries in their order, (dropped entry, the kept entry it repeats) pairs).

    An image uploaded or stored twice under two names would otherwise be counted twice by an evaluation,
    and a fine-tune could train on one copy and hold out the other."""
    def rank(i: int) -> tuple[int, int]:
        gt = truths[i]
        return (GROUND_TRUTH_KINDS.index(gt.kind) if gt is not None else len(GROUND_TRUTH_KINDS), i)

    best: dict[str, int] = {}
    for i, digest in enumerate(digests):
        if digest not in best or rank(i) < rank(best[digest]):
            best[digest] = i
    kept = [e for i, e in enumerate(entries) if best[digests[i]] == i]
    dropped = [(e, entries[best[digests[i]]]) for i, e in enumerate(entries) if best[digests[i]] != i]
    return kept, dropped


def counts_disagree(values: list[str]) -> str:
    """Why an image two counts tables give different counts is left out: ``values`` like "10 (a.csv)". Which
    one is right is the user's to say, not the file order's."""
    return f"the counts tables disagree: {' and '.join(values)}; remove the wrong row or table"


def _count_tables(
    csv_files: list[Path], placed: Callable[[Path, str], str] = lambda table, key: key,
) -> tuple[dict[str, int], dict[str, str], dict[Path, list[str]], dict[str, list[str]], dict[str, str]]:
    """Merge every CSV with file-name and count columns; returns (counts, name -> csv path, the header of
    each CSV that has no such columns: named when nothing else gives ground truth, the names two tables
    count differently, with each value: left out of the counts, and each name as a table spells it). Names are
    :func:`name_key`s, letter case kept (folders too), each as ``placed(table, name)`` says (:func:`_in_its_folder`)."""
    counts: dict[str, int] = {}
    where: dict[str, str] = {}
    other: dict[Path, list[str]] = {}
    disagree: dict[str, list[str]] = {}
    as_written: dict[str, str] = {}
    for path in csv_files:
        name, text = _read_csv_text(path)
        header, _ = _csv_rows(name, text)
        if _count_columns(header) is None:
            other[path] = list(header)
            continue
        if is_cellcount_counts(header):  # a count written into the data folder: never its own ground truth
            logger.warning("%s", predicted_counts_message(str(path)))
            continue
        for spelled, n in read_counts_by_name(path).items():
            spelled = placed(path, spelled)
            # letter case kept: IMG4.PNG in a table still names img4.png (match_names folds it, as Windows and macOS
            # do), but of IMG01.png and img01.png, both in the folder and in the table, each row names its own
            stem = unicodedata.normalize("NFC", spelled)
            as_written.setdefault(stem, spelled)
            if stem in counts and counts[stem] != n:
                disagree.setdefault(stem, [f"{counts[stem]} ({where[stem]})"]).append(f"{n} ({path})")
            counts.setdefault(stem, n)
            where.setdefault(stem, str(path))
    for stem in disagree:
        del counts[stem], where[stem]
    return counts, where, other, disagree, as_written


def _folder_says(path: Path, root: Path, names: frozenset[str]) -> bool:
    """``path`` lies in a folder named as one of ``names`` below ``root`` (the data folder's own name, a user's
    ``points/`` holding images with their point tables, says nothing)."""
    return path.parent != root and path.parent.name.lower() in names


def load_labelled_folder(
    root: str | os.PathLike, *, counts_only: bool = False,
    on_error: Callable[[Path, str], None] | None = None,
    on_missing: Callable[[list[Path]], None] | None = None,
) -> list[tuple[Path, GroundTruth]]:
    """Load every image of a folder that has ground truth.

    Layouts, detected in this order:

    1. DSB 2018 nested (``<id>/images`` + ``<id>/masks``): :func:`load_dsb_folder`.
    2. Anything else, searched recursively: images paired by :func:`match_ground_truth` with
       ``<stem>_labels.*``, ``_label``, ``_mask(s)``, ``_gt`` (label images or binary masks),
       ``<stem>_dots.*`` (dot images), ``<stem>_points.csv`` or ``<stem>.csv`` (point tables), same-stem
       files in a ``labels/`` or ``masks/`` folder (so the flat DSB layout ``images/`` + ``labels/`` works)
       or a ``dots/`` / ``points/`` folder (dot images or point tables: the ``images/`` + ``dots/`` layout
       of the counting benchmarks), and
       any CSV with ``filename,count`` columns (e.g. ``counts.csv``) for images without other ground
       truth. Also Fiji's Cell Counter markers (``CellCounter_<stem>.xml``), QuPath's GeoJSON (``<stem>.geojson``)
       and ImageJ's ROIs (``<stem>.roi``, ``<stem>_RoiSet.zip``, ``RoiSet_<stem>.zip``, ``<stem>.zip``).

    Images without ground truth are skipped with a logged warning.

    Parameters
    ----------
    root : str or os.PathLike
        The folder.
    counts_only : bool
        Prefer counts tables and return ``kind='count'`` ground truth without label arrays.
    on_error : callable, optional
        ``on_error(image, reason)`` for an image whose ground truth cannot be used (unreadable, another
        shape than the image) or whose file cannot be read: it is reported and left out, and the others are
        loaded. Without it the first such image raises. A counts table at odds with an image's label image or
        points is said in a logged warning, and the label image or points are used.
    on_missing : callable, optional
        Called with the images left out for want of ground truth (each logged as a warning too), so that a
        caller can say how many images its figures leave out.

    Returns
    -------
    list of (pathlib.Path, GroundTruth)
        Sorted by image path.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a folder.
    GroundTruthError
        No image or no ground truth found, unreadable ground truth, or ground truth whose shape differs
        from its image.
    """
    root = Path(root)
    if root.is_file():
        raise FileNotFoundError(f"{root} is a file: give the folder that holds the images and their annotations")
    if not root.is_dir():
        raise FileNotFoundError(f"folder not found: {root}")
    if _is_dsb_nested(root):
        return load_dsb_folder(root, counts_only=counts_only, on_missing=on_missing)
    reported: list[str] = []  # said again when nothing is left: a caller may report them only at its end
    if on_error is not None:
        tell = on_error

        def on_error(image: Path, why: str) -> None:
            # by its path in the folder: two plates' refused A01.png read as one name twice
            shown = image.relative_to(root).as_posix() if image.is_relative_to(root) else image.name
            reported.append(why if why.startswith(f"{image}") else f"{shown}: {why}")
            tell(image, why)
    files = list_image_files([root], ground_truth=True)
    read_kinds = (*TABLE_EXTENSIONS, ".xml", *GEOJSON_EXTENSIONS, *IMAGEJ_ROI_EXTENSIONS)
    walked = sorted(  # one walk: the annotation files, and those a user may take for them (spreadsheets, .txt)
        p
        for p in root.rglob("*")
        if p.suffix.lower() in (*read_kinds, *SPREADSHEET_EXTENSIONS, ".txt")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    tables = [p for p in walked if p.suffix.lower() in read_kinds]
    csv_files = [p for p in tables if p.suffix.lower() in TABLE_EXTENSIONS]
    seg_npy = sorted(p for p in root.rglob("*_seg.npy") if p.is_file())  # Cellpose's: said, never unpickled
    unread = _unread_annotations(walked)  # spreadsheets, .txt exports, Cell Counter files named like no image
    cell_counter = [p for p in tables if cell_counter_stem(p)]  # not a microscope's MetaData/<image>.xml
    outlines = [p for p in tables if p.suffix.lower() in GEOJSON_EXTENSIONS]  # QuPath's objects as GeoJSON
    # ImageJ's ROIs: a .roi, or a zip holding only .roi files (a zip of images is not ground truth)
    # (one whose name says RoiSet is one even when it cannot be read: its image is then reported with the reason,
    # not passed over as having no ground truth)
    outlines += [p for p in tables if p.suffix.lower() == ".roi"
                 or (p.suffix.lower() == ".zip" and (is_roi_set(p) or imagej_roi_stem(p) not in (None, p.stem)))]
    image_stems = {(p.parent, p.stem) for p in files}
    # point tables: named as ground truth (a_points.csv, dots/a.csv, labels/a.csv with coordinate columns), or
    # named like an image beside it (a.csv)
    stems = {p.stem for p in files}
    # a table named as ground truth is an image's points, unless it is a counts table of its own (counts_gt.csv
    # beside no image "counts": its name would read as that image's, and every count it holds go unused)
    point_tables = [p for p in csv_files if (ground_truth_suffix(p) is not None and not _is_counts_table(p, stems))
                    or ((_folder_says(p, root, DOT_DIRS) or (p.parent, _gt_base(p)[0]) in image_stems
                         or (_folder_says(p, root, GROUND_TRUTH_DIRS) and p.stem in stems)) and _is_point_table(p))]
    placed = _in_its_folder(root, files)
    shared, shared_tables = _shared_point_tables(csv_files, files, root, on_error, placed)
    point_tables = [p for p in point_tables if p not in shared_tables]
    not_counts = set(point_tables) | shared_tables
    counts, counts_where, other_tables, disagree, as_written = _count_tables(
        [p for p in csv_files if p not in not_counts], placed)
    in_dot_dirs = [p for p in files if _folder_says(p, root, DOT_DIRS)]  # dots/a.png: a dot image of images/a.png
    dot_files = set(in_dot_dirs)  # sets: folders of 10,000 images
    # named below the data folder: its own name ("points", "annotations") says nothing of the files in it
    below = {p.relative_to(root): p for p in files if p not in dot_files}
    images, gt_files = ([below[r] for r in part] for part in split_ground_truth_files(list(below)))
    # a tree of labels mirroring the images' (labels/plate1/A01.tif for images/plate1/A01.png): ground truth by
    # the folder it lies under in the data folder, not only the one just above it
    mirrored = _mirrored_ground_truth(images, root)
    set_aside = set(mirrored.values())
    images = [p for p in images if p not in set_aside]
    # the VGG cells naming in one folder: 001dots.png beside 001cell.png is the image's ground truth
    flat = [p for p, gt in zip(images, role_word_ground_truth([(p.parent, p.stem) for p in images])) if gt]
    flat_set = set(flat)
    images = [p for p in images if p not in flat_set]
    gt_files += in_dot_dirs + point_tables + flat + cell_counter + outlines
    if not images:
        # images there, all taken for annotations by their folders' or files' names (a data folder's gt/): said
        by_name = [p for p in gt_files if p.suffix.lower() in IMAGE_EXTENSIONS]
        folders = sorted({p.parent.name + "/" for p in by_name if p.parent != root})
        why = (f"; its {len(by_name)} image file(s) are all read as ground truth by their names"
               + (f" or their folders' ({', '.join(folders[:3])}: a folder named so holds annotations; name it "
                  "images/)" if folders else " (_labels, _mask, _dots ...)") if by_name else "")
        raise GroundTruthError(f"{root}: no images found (extensions {sorted(IMAGE_EXTENSIONS)}){why}")
    contested: dict[Path, str] = {}
    tied: set[Path] = set()
    matches = match_ground_truth(images, gt_files, ambiguous=contested, tied_files=tied)
    out: list[tuple[Path, GroundTruth]] = []
    missing: list[Path] = []
    relative = {p: p.relative_to(root).as_posix() for p in images}
    anchored = _anchored(root, images)
    # by the whole path below the labels folder (plate3/A01 for images/plate3/A01.png): a plate without labels
    # gets none, never another plate's
    found, _ = match_names(mirrored, {p: r for p, r in relative.items() if p not in matches})
    matches.update({img: mirrored[key] for key, img in found.items()})
    gt_files += list(mirrored.values())
    shared_of, unsure = values_by_image(shared, relative, what="points", anchored=anchored)
    count_of, unsure_counts = values_by_image({k: (n, counts_where[k]) for k, n in counts.items()}, relative,
                                               what="a count", anchored=anchored)
    disagree_of, unsure_disagree = values_by_image(disagree, relative, what="a count", anchored=anchored)
    # a tie leaves an image without its file: a counts table's row naming it still counts it
    unsure = {**{i: why for i, why in contested.items() if i not in count_of}, **unsure_disagree, **unsure_counts,
              **unsure}

    def annotation(image: Path) -> GroundTruth:
        """The image's own file, else its rows of a table of several images' points."""
        if image in matches:
            return read_ground_truth(matches[image], expected_shape=image_shape(image))
        check_points_fit(shared_of[image], image_shape(image))
        return shared_of[image]

    instead: set[Path] = set()  # readable annotations of images whose used one is broken: said with that image

    def beside_broken(image: Path) -> str:
        """Where an image's annotation cannot be read, its other annotations in the same folders: named in its
        reason, not listed as second annotations of an image that is left out."""
        broken = matches.get(image)
        if broken is None:
            return ""
        taken = set(matches.values())
        others = sorted(p for p in gt_files if p not in taken and p.parent in (image.parent, broken.parent)
                        and _gt_base(p)[0].casefold() == image.stem.casefold())
        instead.update(others)
        return not_used_beside_broken([p.name for p in others])

    for image in sorted(images):
        annotated = image in matches or image in shared_of  # richer than a count: used before the counts tables
        if image in unsure and not annotated:
            if on_error is None:
                raise GroundTruthError(f"{image}: {unsure[image]}")
            on_error(image, unsure[image])
        elif image in disagree_of and (counts_only or not annotated):
            if on_error is None:
                raise GroundTruthError(f"{image}: {counts_disagree(disagree_of[image])}")
            on_error(image, counts_disagree(disagree_of[image]))
        elif image in count_of and (counts_only or not annotated):
            out.append((image, GroundTruth(kind="count", count=count_of[image][0], source=count_of[image][1])))
        elif annotated:
            try:
                gt = annotation(image)
                _check_against_counts(gt, count_of.get(image))
            except CellcountError as err:
                if on_error is None:
                    raise
                on_error(image, f"{err}{beside_broken(image)}")
                continue
            if counts_only:
                gt = GroundTruth(kind="count", count=gt.count, source=gt.source)
            out.append((image, gt))
        else:
            table = _own_unreadable_table(image, other_tables)
            if table is None:
                missing.append(image)
                continue
            # a CSV named as this image's, neither points nor counts: its own reason, not "no ground truth"
            try:
                read_points_csv(table)
            except GroundTruthError as err:
                if on_error is None:
                    raise
                on_error(image, str(err))
    # tables of points named like no image are said too, as unmatched label images are (a Results_a.csv, say)
    stray_points = [p for p, header in other_tables.items() if _is_point_table(p) and not is_cellcount_objects(header)]
    by_number = [p for p in stray_points if "imagenumber" in other_tables[p]]  # CellProfiler's objects table
    stray_points = [p for p in stray_points if p not in by_number]
    if by_number:  # renaming would not help: its rows name images by number
        logger.warning("%s: %s: CellProfiler's objects by ImageNumber, which names no image file: not used (export "
                       "them with the images' file names: ExportToSpreadsheet, add the image file and folder names to "
                       "the object data file)", root, _names(by_number))
    unused = sorted({*gt_files, *stray_points} - set(matches.values()) - tied)  # a tied file's images say why
    out, clashing = (out, set()) if counts_only else _second_annotations_agree(out, matches, unused, on_error)
    if not out and on_error is not None and len(missing) < len(images):  # every pair was reported bad
        shown = "; ".join(reported[:3]) + (f"; and {len(reported) - 3} more" if len(reported) > 3 else "")
        raise GroundTruthError(f"{root}: no image with usable ground truth: {shown}")
    if not out:
        unmatched = sorted({p.name for p in gt_files} - {p.name for p in matches.values()})
        hint = (f"; ground truth that matches no image: {', '.join(unmatched[:3])}{' ...' if len(unmatched) > 3 else ''}"
                if unmatched else "")
        words = tuple(x.strip("_") for x in GROUND_TRUTH_SUFFIXES)
        lookalikes = [p.name for p in images if p.stem.lower().endswith(words)]  # 001dots.png beside 001cell.png
        if lookalikes:
            hint += (f"; read as images but named like ground truth: {', '.join(lookalikes[:3])}"
                     f"{' ...' if len(lookalikes) > 3 else ''} (name each like its image with a suffix, "
                     "001cell_dots.png for 001cell.png, or put them in a dots/ or labels/ folder under their images' "
                     "names)")
        for table in stray_points[:3]:  # Fiji's Results.csv: points, named like no image
            example = images[0].stem if len(images) == 1 else "img01"
            hint += (f"; {table.name} holds points but is named like no image: name it like its image "
                     f"({example}.csv or {example}_points.csv)")
        others = {t: h for t, h in other_tables.items() if t not in stray_points}
        for table in [t for t, h in others.items() if is_cellcount_objects(h)][:3]:  # not a counts table gone wrong
            hint += (f"; {table.name} holds cellcount's own objects of several images, a model's output, not split "
                     "by image")
        others = {t: h for t, h in others.items() if not is_cellcount_objects(h)}
        two_kinds = {t: several for t, h in others.items() if (several := several_counts(h))}
        others = {t: h for t, h in others.items() if t not in two_kinds}
        for table, header in list(others.items())[:3]:
            shown = ", ".join(map(repr, header[:8])) + (" ..." if len(header) > 8 else "")
            hint += f"; {table.name} has columns {shown or 'none'}"
        if others:
            hint += (f": a counts table needs a file-name column ({', '.join(_FILENAME_COLUMNS)}) and a count "
                     f"column ({', '.join(_COUNT_COLUMNS)})")
        for table, several in list(two_kinds.items())[:3]:  # its own reason, not the names it already has
            header = other_tables[table]
            hint += (f"; {table.name} has counts of {len(several)} kinds of objects "
                     f"({', '.join(header[i] for i in several[:4])}): keep the column of the objects to score, "
                     "or rename it count")
        if seg_npy:
            hint += f"; {_names(seg_npy, 3)}: {CELLPOSE_SEG_NOTE}"
        hint += "".join(f"; {path.name}: {why}" for path, why in unread[:3])
        by_stem: dict[tuple[Path, str], list[Path]] = {}
        for p in images:
            by_stem.setdefault((p.parent, p.stem.casefold()), []).append(p)
        if twins := [sorted(v) for v in by_stem.values() if len(v) > 1]:  # StarDist's labels as a.tif beside a.png
            a, b = twins[0][:2]
            hint += (f"; {len(twins)} pair(s) of images share a name in one folder ({a.name} and {b.name}"
                     f"{' ...' if len(twins) > 1 else ''}): if one of each is the other's labels, put it in a labels/ "
                     f"folder or name it {a.stem}_labels{b.suffix}")
        # a counts table whose rows name no image (a typo, or accents read in the wrong encoding): said first
        named, unsure = match_names(counts_where, relative, anchored)
        _stray_rows_warning({k: v for k, v in counts_where.items() if k not in named and k not in unsure}, as_written)
        raise GroundTruthError(
            f"{root}: none of the {len(images)} image(s) has ground truth; expected files named "
            f"<image>{{{','.join(GROUND_TRUTH_SUFFIXES)}}}.*, point tables <image>.csv, files named like the "
            f"images in a labels/, masks/, gt/, annotations/ or dots/ folder, or a filename,count CSV{hint}"
        )
    if missing and unread:  # the annotations of the images left out may be among them
        logger.warning("%s: %s", root, "; ".join(f"{path.name}: {why}" for path, why in unread[:3]))
    _skip_warning(root, missing, [p for p in unused if p not in clashing and p not in instead], paired=matches,
                  on_missing=on_missing)
    paired_stems = {image.stem for image, _ in out}
    if unread := [p for p in seg_npy if p.name[: -len("_seg.npy")] not in paired_stems]:  # its masks used: no news
        logger.warning("%s: %s: %s", root, _names(unread), CELLPOSE_SEG_NOTE)
    found, ambiguous = match_names(counts_where, relative, anchored)
    _stray_rows_warning({k: v for k, v in counts_where.items() if k not in found and k not in ambiguous}, as_written)
    return _one_per_image_file(out, on_error)


def _given_twice(given: list[tuple[str, str, str]], what: str) -> str:
    """Why an image named in two rows with different values is left out; ``given`` holds (value, table, row's
    name). Rows of one table are named by their names, the table once; rows of several by their tables."""
    tables = {table for _, table, _ in given}
    if len(tables) == 1:
        rows = " and ".join(f"{value} (row {key})" for value, _, key in given)
        return f"{tables.pop()} gives {what} for it in two rows, differently: {rows}; remove the wrong row"
    rows = " and ".join(f"{value} ({table})" for value, table, _ in given)
    return f"the tables give {what} for it twice, differently: {rows}; remove the wrong row or table"


def values_by_image(values: Mapping[str, Any], relative: Mapping[Path, str], what: str = "",
                    anchored: Mapping[Path, str] | None = None) -> tuple[dict[Path, Any], dict[Path, str]]:
    """``values`` keyed by the names tables give (:func:`name_key`) -> (image -> value, image -> why none is given
    to it: a name that could be several images', two plates' ``A01.png`` named without their folder)."""
    found, ambiguous = match_names(values, relative, anchored)
    out: dict[Path, Any] = {}
    unsure: dict[Path, str] = {}
    def same(a: Any, b: Any) -> bool:  # the count of (count, table), the points of a GroundTruth
        if isinstance(a, GroundTruth) and isinstance(b, GroundTruth):
            return a.points is not None and b.points is not None and np.array_equal(a.points, b.points)
        return (a[0] == b[0]) if isinstance(a, tuple) and isinstance(b, tuple) else a == b

    def told(v: Any) -> tuple[str, str]:  # ("5", "a.csv"), ("3 points", "b.csv"): which table says what
        if isinstance(v, GroundTruth):
            return f"{v.count} points", str(v.source)
        return (str(v[0]), str(v[1])) if isinstance(v, tuple) and len(v) == 2 else (repr(v), "")

    given: dict[Path, list[tuple[str, str, str]]] = {}
    for key, img in found.items():
        given.setdefault(img, []).append((*told(values[key]), key))
        if img in out and not same(out[img], values[key]):  # "A01.png" and "plate1/A01.png", two counts for one image
            # (IMG4.png in one table, img4.png in another: one image on a disk that ignores letter case)
            unsure[img] = _given_twice(given[img], what)
        out.setdefault(img, values[key])
    for img in unsure:
        out.pop(img, None)
    for key, imgs in ambiguous.items():
        names = ", ".join(relative[i] for i in imgs[:4]) + (" ..." if len(imgs) > 4 else "")
        # IMG01.png and img01.png: a folder does not tell them apart, the spelling does
        fix = ("spell it as the image's file is spelled, letter case too" if len({folded(relative[i]) for i in imgs}) == 1
               else "name each row's image with its folder (plate1/A01.png)")
        for img in imgs:
            unsure.setdefault(img, f"a table gives {what} for {key!r}, which names {len(imgs)} images ({names}): "
                                   f"not used; {fix}")
    return out, unsure


def item_names(root: str | os.PathLike, paths: Sequence[Path]) -> list[str]:
    """The name each image of a labelled folder goes by in scores, tables and cards: its file name, or its path
    below ``root`` where another image of the set has the same file name (two plates' ``A01.png`` are
    ``plate1/A01.png`` and ``plate2/A01.png``, not two rows called ``A01.png``)."""
    root = Path(root)
    shared = {n for n, k in Counter(p.name for p in paths).items() if k > 1}
    out = []
    for p in paths:
        if p.name not in shared:
            out.append(p.name)
            continue
        try:
            out.append(p.relative_to(root).as_posix())
        except ValueError:
            out.append(str(p))
    return out


def _anchored(root: Path, files: Iterable[Path]) -> dict[Path, str]:
    """Each file's path for :func:`match_names`: relative to ``root``, under ``root``'s own name, so that a table of
    full paths names a file of this folder only where the path runs through it (/data/plate2/A01.tif is not
    plate1/A01.tif when plate1 is the folder given)."""
    anchor = root.resolve().name
    return {p: f"{anchor}/{p.relative_to(root).as_posix()}" if anchor else p.relative_to(root).as_posix()
            for p in files}


def _in_its_folder(root: Path, files: list[Path]) -> Callable[[Path, str], str]:
    """``placed(table, name)``: a name in a table inside a subfolder, read first as that folder's
    (plate1/counts.csv's A01.png is plate1/A01.png, whatever plate2/counts.csv says of plate2's), else as written."""
    paths = set(_anchored(root, files).values())
    anchor = root.resolve().name
    known = {folded(name_key(p)) for p in paths}

    def placed(table: Path, name: str) -> str:
        folder = table.parent.relative_to(root).as_posix()
        if folder in ("", ".") or "/" in name.strip("/") or PurePosixPath(name).is_absolute():
            return name
        inside = f"{folder}/{name_key(name)}"
        return inside if folded(f"{anchor}/{inside}") in known or folded(inside) in known else name

    return placed


def _mirrored_ground_truth(files: list[Path], root: Path) -> dict[str, Path]:
    """Files under a labels/ (masks/, gt/ ...) folder of ``root`` deeper than its own children (``labels/plate1/A01.tif``):
    {their path below that folder, without extension -> file}. A tree of labels mirroring the images' tree; the
    folder just above them (plate1) does not say they are ground truth."""
    out: dict[str, Path] = {}
    for p in files:
        parts = p.relative_to(root).parts
        at = next((i for i, part in enumerate(parts[:-2]) if part.lower() in GROUND_TRUTH_DIRS), None)
        if at is not None:
            out[name_key("/".join(parts[at + 1:]))] = p
    return out


def _shared_point_tables(csv_files: list[Path], files: list[Path], root: Path, on_error,
                         placed: Callable[[Path, str], str] = lambda table, key: key,
                         ) -> tuple[dict[str, GroundTruth], set[Path]]:
    """The tables of several images' points in a folder (:func:`read_points_by_image`) that are no one image's
    table by their own name: (name of the image in the table, letter case kept -> points, the tables). A name in two
    tables is left to neither (which is right is the user's to say), with a warning."""
    own = {p.stem.casefold() for p in files}
    relative = {p: p.relative_to(root).as_posix() for p in files}
    anchored = _anchored(root, files)
    shared: dict[str, GroundTruth] = {}
    tables: set[Path] = set()
    clash: set[str] = set()
    in_tables: dict[str, tuple[str, list[tuple[str, int]]]] = {}  # each image's tables, for what clashes
    for path in csv_files:
        if _gt_base(path)[0].casefold() in own:  # a_points.csv: image a's own table
            continue
        try:
            split = read_points_by_image(path)
        except GroundTruthError as err:
            if on_error is None:
                raise
            logger.warning("%s", err)
            tables.add(path)
            continue
        if not split:
            continue
        split = {placed(path, key): gt for key, gt in split.items()}
        found, ambiguous = match_names(split, relative, anchored)
        if not found and not ambiguous:
            continue
        tables.add(path)
        for key, gt in split.items():  # letter case kept, as counts tables' rows are (match_names folds it)
            k = unicodedata.normalize("NFC", key)
            if k in shared:
                clash.add(k)
            shared.setdefault(k, gt)
            in_tables.setdefault(k, (key, []))[1].append((path.name, gt.count))
        others = sorted(k for k in split if k not in found and k not in ambiguous)
        if others:
            logger.warning("%s: the points of %d image(s) not in the folder (%s) are not used", path, len(others),
                           listed(others, 5))
    for note in tables_clash_notes({k: v for k, v in in_tables.items() if k in clash}):
        logger.warning("%s", note)
    for stem in clash:
        del shared[stem]
    return shared, tables


def tables_clash_notes(clashes: dict[str, tuple[str, list[tuple[str, int]]]]) -> list[str]:
    """What to say of images whose points are in more than one table (a CellProfiler output folder holds a table
    per kind of object, Nuclei and Cells alike): one note per set of tables, naming them with their counts and what
    to do. ``clashes``: name -> (the name as a table spells it, [(table, its count of that image)])."""
    groups: dict[tuple[str, ...], list[tuple[str, list[int]]]] = {}
    for spelled, found in clashes.values():
        groups.setdefault(tuple(t for t, _ in found), []).append((spelled, [k for _, k in found]))
    notes = []
    for tables, images in groups.items():
        differing = [(name, k) for name, k in images if len(set(k)) > 1]
        spelled, counts = (differing or images)[0]
        differ = len(differing)
        how = (f"they count {'it' if len(images) == 1 else f'{differ} of them'} differently ({spelled}: "
               + ", ".join(f"{k} in {t}" for t, k in zip(tables, counts, strict=True)) + ")" if differ
               else "they count them alike")
        notes.append(f"{len(images)} image(s) ({listed([name for name, _ in images], 5)}) have points in "
                     f"{len(tables)} tables ({', '.join(tables)}); {how}. {'Neither' if len(tables) == 2 else 'None'} "
                     "is used for them: which annotates them is yours to say, so keep that table with the images and "
                     "move the other out.")
    return notes


def _unread_annotations(walked: Sequence[Path]) -> list[tuple[Path, str]]:
    """(file, why it is not read) for the files among ``walked`` a user may take for annotations
    (:func:`unread_annotation_note`): spreadsheets, .txt exports, Cell Counter markers under another name."""
    out = []
    for path in walked:
        suffix = path.suffix.lower()
        if suffix not in (*SPREADSHEET_EXTENSIONS, ".txt", ".xml") or cell_counter_stem(path):
            continue
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096) if suffix in (".xml", ".txt") else b""
        except OSError:
            continue
        if why := unread_annotation_note(path.name, head):
            out.append((path, why))
    return out


def _stray_rows_warning(stray: dict[str, str], as_written: dict[str, str]) -> None:
    """Log the rows of counts tables that name no image of the folder (``stray``: name -> table; as the app's
    notes say them, spelled as the table spells them), so a typo in a name does not pass unseen."""
    by_table: dict[str, list[str]] = {}
    for stem, table in stray.items():
        by_table.setdefault(table, []).append(as_written.get(stem, stem))
    for table, stems in by_table.items():
        shown = ", ".join(stems[:5]) + (f" and {len(stems) - 5} more" if len(stems) > 5 else "")
        try:
            accents = accents_note(stems, Path(table).read_bytes())
        except OSError:
            accents = ""
        logger.warning("%d row%s of %s match%s no image in the folder (%s): %s not used%s", len(stems),
                       "s" if len(stems) != 1 else "", table, "" if len(stems) != 1 else "es", shown,
                       "their counts are" if len(stems) != 1 else "its count is", accents)


def _own_unreadable_table(image: Path, tables: dict[Path, list[str]]) -> Path | None:
    """The table among ``tables`` (neither points nor counts) named as ``image``'s: ``a.csv`` / ``a.tsv`` beside ``a.png``,
    or in a ``dots/`` / ``points/`` folder beside the image's folder."""
    places = [place for ext in TABLE_EXTENSIONS for place in
              (image.with_suffix(ext), *(image.parent.parent / d / f"{image.stem}{ext}" for d in DOT_DIRS))]
    return next((p for p in places if p in tables), None)


def _second_annotations_agree(out: list[tuple[Path, GroundTruth]], matches: Mapping[Path, Path],
                              unused: Sequence[Path], on_error: Callable[[Path, str], None] | None,
                              ) -> tuple[list[tuple[Path, GroundTruth]], set[Path]]:
    """(``out`` without the images whose second annotation file, ``a.csv`` beside the ``a_points.csv`` used for
    ``a.png``, counts otherwise (:func:`disagreeing_annotations`); those second files)."""
    by_stem: dict[str, list[Path]] = {}
    for image in matches:
        by_stem.setdefault(image.stem.casefold(), []).append(image)
        if key := role_key(image.stem, image=True):  # 010cell.png: its 010dots.png beside the 010cell.csv used
            by_stem.setdefault(key, []).append(image)
    seconds: dict[Path, list[Path]] = {}
    for gt in unused:
        images = by_stem.get(_gt_base(gt)[0].casefold(), []) or by_stem.get(role_key(gt.stem, image=False) or "", [])
        if len(images) == 1:  # two plates' A01.png: whose second file it is cannot be told by its name
            seconds.setdefault(images[0], []).append(gt)
    kept, clashing = [], set()
    for image, gt in out:
        others = {f.name: f for f in seconds.get(image, [])}
        clash = disagreeing_annotations(gt, [(name, functools.partial(read_ground_truth, f,
                                                                      expected_shape=image_shape(image)))
                                             for name, f in others.items()])
        if not clash:
            kept.append((image, gt))
            continue
        clashing.update(others[name] for name, _ in clash)
        why = annotations_disagree(matches[image].name, gt.count, clash, "keep the right one and move the other out "
                                   "of the folder")
        if on_error is None:
            raise GroundTruthError(f"{image}: {why}")
        on_error(image, why)
    return kept, clashing


def _one_per_image_file(pairs: list[tuple[Path, GroundTruth]],
                        on_error: Callable[[Path, str], None] | None) -> list[tuple[Path, GroundTruth]]:
    """:func:`one_per_image` over image files (by their bytes); the copies left out are reported. Only files of
    one size are read and hashed: a folder of distinct images costs a stat per file."""
    import hashlib
    from collections import Counter

    def size(path: Path) -> int | None:
        try:
            return path.stat().st_size
        except OSError:
            return None  # unreadable here: reported when it is read for counting

    sizes = [size(path) for path, _ in pairs]
    shared = {n for n, k in Counter(sizes).items() if k > 1 and n is not None}
    digests = []
    for (path, _), n in zip(pairs, sizes, strict=True):
        try:
            digests.append(hashlib.sha256(path.read_bytes()).hexdigest() if n in shared else str(path))
        except OSError:
            digests.append(str(path))
    kept, dropped = one_per_image(pairs, digests, [gt for _, gt in pairs])
    for (path, _), (other, _) in dropped:
        reason = f"the same image as {other}: used once"
        if on_error is None:
            logger.warning("%s: %s", path, reason)
        else:
            on_error(path, reason)
    return kept
