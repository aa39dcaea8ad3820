"""Pair uploaded images with their ground truth by file name, in memory.

Images and ground truth may arrive as two lists (two uploaders, so a label image may share its image's
name) or as one list split by name convention (``img_labels.tif``, a ``labels/`` folder); zips are
unpacked in both. Nothing is written to disk, so every message names the user's file (``a.png``,
``set.zip/labels/a.png``), never a temporary path. The readers are those of :mod:`cellcount.groundtruth`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import posixpath
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from .errors import CellcountError, GroundTruthError
from .groundtruth import (
    CELLPOSE_SEG_NOTE,
    GEOJSON_EXTENSIONS,
    SECOND_ANNOTATION_RULE,
    TABLE_EXTENSIONS,
    BinaryMaskWarning,
    CalibratedPointsWarning,
    DuplicatePointsWarning,
    GroundTruth,
    IgnoredClassWarning,
    MergedDotsWarning,
    NoCoordinateColumns,
    PredictedLabelsWarning,
    ReusedColoursWarning,
    SeveralRegionsWarning,
    SpeckledMaskWarning,
    WrappedLabelsWarning,
    accents_note,
    annotations_disagree,
    check_points_fit,
    closest_pairs,
    counts_disagree,
    disagreeing_annotations,
    holds_only_specks,
    is_labels_index,
    is_roi_set,
    listed,
    match_names,
    not_used_beside_broken,
    one_per_image,
    read_cellcounter_xml,
    read_counts_by_name,
    read_dot_image,
    read_geojson,
    read_imagej_rois,
    read_label_image,
    read_points_by_image,
    read_points_csv,
    tables_clash_notes,
    unread_annotation_note,
    values_by_image,
)
from .groundtruth.pairing import role_key
from .io import (
    DOT_DIRS,
    GROUND_TRUTH_DIRS,
    GROUND_TRUTH_SUFFIXES,
    GROUND_TRUTH_WORDS,
    IMAGE_EXTENSIONS,
    IMAGE_WORDS,
    IMAGEJ_ROI_EXTENSIONS,
    cell_counter_stem,
    ground_truth_suffix,
    imagej_roi_stem,
    open_zip,
    read_image,
    role_word_ground_truth,
    word_base,
    zip_files,
)

__all__ = ["LabelledSet", "labelled_set", "pair_by_stem"]

_SAME_STEM_RANK = len(GROUND_TRUTH_SUFFIXES)  # same-name ground truth ranks after the suffixed kinds


@dataclass
class LabelledSet:
    """Uploaded images paired with their ground truth.

    Attributes
    ----------
    items : list of (str, bytes, GroundTruth)
        Image name (its path in a zip), image bytes and its ground truth, in path order.
    unlabelled : list of (str, bytes)
        Images without ground truth.
    unused : list of str
        Ground-truth files that belong to no image.
    skipped : list of (str, str)
        Files that could not be used, with the reason.
    duplicates : list of str
        Files uploaded more than once (same name and content), once per extra copy, and images uploaded again
        under another name or path ("b.png (the same image as a.png)"); each was used once.
    notes : list of str
        What else the user should know: a counts table set aside because its images have label images,
        masks or dots (used instead), and counts that disagree with them.
    truth_refused : list of (str, bytes)
        Readable images whose ground truth was refused (its reason in ``skipped``): they may still be annotated
        anew (the Train page's dots).
    """

    items: list[tuple[str, bytes, GroundTruth]] = field(default_factory=list)
    unlabelled: list[tuple[str, bytes]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    truth_refused: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class _File:
    name: str  # what the user calls it: "a.png", or a zip member's path "labels/a.png"
    data: bytes

    def buffer(self) -> io.BytesIO:
        """The bytes as a named file, so readers' messages say the user's file name."""
        buf = io.BytesIO(self.data)
        buf.name = self.name
        return buf


def _folder(name: str) -> tuple[str, ...]:
    return PurePosixPath(name).parent.parts


def _gt_bases(name: str) -> list[tuple[str, int]]:
    """(image stem this ground truth may belong to, preference rank); lower ranks win."""
    stem = PurePosixPath(name).stem
    if (name.lower().endswith((*GEOJSON_EXTENSIONS, *TABLE_EXTENSIONS))
            and PurePosixPath(stem).suffix.lower() in IMAGE_EXTENSIONS):  # img01.tif.geojson, img01.tif.csv
        return [(PurePosixPath(stem).stem, _SAME_STEM_RANK), (stem, _SAME_STEM_RANK)]
    if (image_stem := cell_counter_stem(name)) is not None:  # Fiji's CellCounter_<image>.xml
        return [(image_stem, GROUND_TRUTH_SUFFIXES.index("_points")), (stem, _SAME_STEM_RANK)]
    if (image_stem := imagej_roi_stem(name)) is not None:  # ImageJ's img01.roi, img01_RoiSet.zip, RoiSet_img01.zip
        return [(image_stem, _SAME_STEM_RANK), (stem, _SAME_STEM_RANK)]
    suffix = ground_truth_suffix(name)
    bases = [(stem, _SAME_STEM_RANK)]
    if suffix:
        bases.insert(0, (stem[: -len(suffix)], GROUND_TRUTH_SUFFIXES.index(suffix)))
    return bases


def _shared_folders(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _closeness(image_folder: tuple[str, ...], gt_folder: tuple[str, ...]) -> tuple[int, int, int]:
    """How close a ground-truth file lies to an image, smaller closer, as the folder reader judges it
    (:func:`cellcount.groundtruth.match_ground_truth`): in the image's folder, in a folder inside it
    (``labels/a.tif`` for ``a.png``), in a sibling folder (``images/a.png``, ``labels/a.tif``), elsewhere; then the
    folders they share from the top, then those just above each that have the same names from the innermost out
    (``labels/plate2/A01.tif`` for ``images/plate2/A01.png``, a mirrored tree)."""
    if gt_folder == image_folder:
        where = 0
    elif gt_folder[:-1] == image_folder:
        where = 1
    elif gt_folder and image_folder and gt_folder[:-1] == image_folder[:-1]:
        where = 2
    else:
        where = 3
    return where, -_shared_folders(image_folder, gt_folder), -_shared_folders(image_folder[::-1], gt_folder[::-1])


def pair_by_stem(images: Sequence[str], ground_truth: Sequence[str], *, ambiguous: dict[str, str] | None = None,
                 copies: dict[str, str] | None = None, tied_files: set[str] | None = None,
                 ) -> tuple[dict[str, str], list[str], list[str]]:
    """Pair image names with ground-truth names by file stem.

    A ground-truth file belongs to an image when its stem is the image's stem (``a.png`` and ``a.tif``,
    possible when they come through separate uploaders) or the stem plus one of
    :data:`cellcount.io.GROUND_TRUTH_SUFFIXES` (``a_labels.tif``, ``a_mask.png``, ``a_points.csv`` ...).
    Stems are compared exactly, then case-insensitively. Among several candidates the one sharing the
    most folders with the image wins (``plate1/labels/a.png`` for ``plate1/images/a.png``), then the
    suffix order (labels, masks, dots, points, same name). Each ground-truth file serves one image, pairs taken
    closest first (:func:`cellcount.groundtruth.closest_pairs`); where several images without one share as many
    folders with it (``plate1/A01.png`` and ``plate2/A01.png`` with one ``labels/A01.tif``) none takes it, and
    ``ambiguous``, when given, receives why for each (images that ``copies`` maps to one name are one image
    uploaded twice: the first of them takes it). Last, an
    image and a ground-truth file whose stems differ only in a trailing role word pair (``001cell.png`` and
    ``001dots.png``, the VGG cells layout; :func:`cellcount.io.word_base`).

    Parameters
    ----------
    images, ground_truth : sequence of str
        File names, optionally with folders (``/``-separated).

    Returns
    -------
    pairs : dict of str to str
        Image name -> ground-truth name.
    unmatched_images : list of str
        Images without ground truth, in input order.
    unused : list of str
        Ground-truth names no image claimed, in input order.
    """
    exact: dict[str, list[tuple[int, str]]] = {}
    folded: dict[str, list[tuple[int, str]]] = {}
    for gt in ground_truth:
        for base, rank in _gt_bases(gt):
            exact.setdefault(base, []).append((rank, gt))
            folded.setdefault(base.casefold(), []).append((rank, gt))
    options: dict[str, list[tuple[tuple, str]]] = {}
    for image in images:
        stem, where = PurePosixPath(image).stem, _folder(image)
        for exactness, (table, key) in enumerate(((exact, stem), (folded, stem.casefold()))):
            options.setdefault(image, []).extend(((exactness, *_closeness(where, _folder(gt)), rank), gt)
                                                 for rank, gt in table.get(key, []))
    pairs, tied, contested = closest_pairs(options, copies)
    taken = set(pairs.values()) | contested
    if tied_files is not None:
        tied_files.update(contested)
    for image, (gt, others) in tied.items():
        if ambiguous is not None:
            ambiguous[image] = (f"{gt} could be the ground truth of this image or of {', '.join(others)} (the same "
                                "name, as close to each): put each one's ground truth beside it, or in a labels/ tree "
                                "that mirrors the images' folders (labels/plate1/A01.tif), or rename them alike "
                                "(plate1_A01.png, plate1_A01.tif)")
    # last, the VGG cells layout: 001cell.png and 001dots.png share "001"
    worded: dict[str, list[str]] = {}
    for gt in ground_truth:
        base = word_base(PurePosixPath(gt).stem, GROUND_TRUTH_WORDS)
        if base and gt not in taken:
            worded.setdefault(base.casefold(), []).append(gt)
    offers = sorted(  # the closest folders first, across all images
        (-_shared_folders(_folder(image), _folder(gt)), image, gt)
        for image in images if image not in pairs and (base := word_base(PurePosixPath(image).stem, IMAGE_WORDS))
        for gt in worded.get(base.casefold(), [])
    )
    for _, image, gt in offers:
        if image not in pairs and gt not in taken:
            pairs[image] = gt
            taken.add(gt)
    unmatched = [i for i in images if i not in pairs]
    unused = [g for g in dict.fromkeys(ground_truth) if g not in taken]
    return pairs, unmatched, unused


def _unpack(uploads: Iterable[tuple[str, bytes]], skipped: list[tuple[str, str]]) -> list[_File]:
    """Loose files as they are; zip members (images, CSV) under their paths in the zip, a single top folder
    stripped (a zipped folder)."""
    from .io import GROUND_TRUTH_TABLE_EXTENSIONS, iter_zip_members
    from .io.archive import is_zip_metadata

    files: list[_File] = []
    for raw_name, data in uploads:
        name = PurePosixPath(str(raw_name).replace("\\", "/")).name or "upload"
        if is_zip_metadata(name):  # .DS_Store, Thumbs.db, ._ files dragged in with a folder: left out unsaid, as in a zip
            continue
        if why := (unread_annotation_note(name, bytes(data[:4096])) if not cell_counter_stem(name) else None):
            skipped.append((name, why))  # a spreadsheet, a .txt export, Cell Counter markers under another name
            continue
        if name.lower().endswith(".xml") and not cell_counter_stem(name):
            skipped.append((name, f"an XML file is read as ground truth only under the name Fiji's Cell Counter gives "
                                  f"it, CellCounter_<image>.xml ({name} is not)"))
            continue
        if name.lower().endswith(".npy"):  # the Train and Evaluate uploaders take it to say this, not "not allowed"
            skipped.append((name, CELLPOSE_SEG_NOTE if name.lower().endswith("_seg.npy") else
                            "a NumPy file is not read as ground truth: save label images as PNG or TIFF"))
            continue
        if not name.lower().endswith(".zip") or is_roi_set(bytes(data)):  # an ROI set is one annotation
            files.append(_File(name, bytes(data)))
            continue
        members: list[_File] = []
        try:
            for member, content, reason in iter_zip_members(
                data, extensions=set(IMAGE_EXTENSIONS) | GROUND_TRUTH_TABLE_EXTENSIONS
            ):
                if content is None:
                    skipped.append((f"{name}/{member}", unread_annotation_note(member) or reason or "skipped"))
                elif member.lower().endswith(".zip") and not is_roi_set(content):
                    skipped.append((f"{name}/{member}", "a zip inside the zip (only ImageJ ROI sets are read there): "
                                                        "unzip it first"))
                elif not member.lower().endswith(".xml") or cell_counter_stem(member):  # metadata XML: not ours
                    members.append(_File(member, content))
        except CellcountError as err:
            skipped.append((name, str(err)))
            continue
        tops = {m.name.split("/", 1)[0] for m in members}
        top = next(iter(tops), "")
        dsb_id = any(m.name.startswith(f"{top}/images/{top}.") for m in members)  # keep <id>/images/<id>.png
        meaningful = top.lower() in GROUND_TRUTH_DIRS | DOT_DIRS  # labels/, dots/ tell what the files are
        if len(tops) == 1 and all("/" in m.name for m in members) and not (dsb_id or meaningful):
            members = [_File(m.name.split("/", 1)[1], m.data) for m in members]
        files.extend(members)
    return files


def _expand_roi_bundles(gt_files: list[_File], image_stems: set[str]) -> list[_File]:
    """A zip of ``.roi`` files named after the uploaded images (``img01.roi``, ``img02.roi``: one annotation per
    image, zipped) opened into those files; a zip of ``.roi`` files named otherwise stays one image's ROI set
    (the ROI Manager names its members by position, ``0123-0456.roi``)."""
    import zipfile

    out: list[_File] = []
    for f in gt_files:
        own = imagej_roi_stem(f.name)
        if not f.name.lower().endswith(".zip") or (own or "").casefold() in image_stems:
            out.append(f)
            continue
        try:
            with open_zip(f.data) as zf:
                members = [(i.filename, i) for i in zip_files(zf) if i.filename.lower().endswith(".roi")]
                named = [(n, i) for n, i in members if (imagej_roi_stem(n) or "").casefold() in image_stems]
                if not named:
                    out.append(f)
                    continue
                out.extend(_File(n, zf.read(i)) for n, i in members)  # the others: reported as matching no image
        except (zipfile.BadZipFile, OSError, ValueError, RuntimeError):
            out.append(f)  # read (and its reason given) as one ROI set
    return out


SAME_NAME_REFUSED = "different files with this name were uploaded"


def _dedupe(files: list[_File], duplicates: list[str], skipped: list[tuple[str, str]], notes: list[str], *,
            later_replaces: bool) -> list[_File]:
    """Drop files uploaded twice (same name and content). A second, different file under a name already taken:
    with ``later_replaces`` (the ground-truth uploader, where it is a corrected annotation: uploaders list files in
    the order they came, and a corrected ``img05.csv`` set aside would leave the old one to train) it
    replaces the earlier, in its place; otherwise (images, which two plates' loose files name alike) every file
    of that name is skipped: which of them a ground-truth file of that name belongs to is not known, and keeping
    the first would score it against whichever plate's labels came last. (Equal content
    under two names is kept: two images may share an empty mask, and a test may reuse one image.)"""
    digests = [hashlib.sha256(f.data).hexdigest() for f in files]
    kinds: dict[str, set[str]] = {}
    for f, digest in zip(files, digests, strict=True):
        kinds.setdefault(f.name, set()).add(digest)
    # an annotation uploaded again among the images is a corrected one only where it names one image uploaded
    # once (a.csv beside a.png): two plates' counts.csv, or their labels/A01.tif beside two different A01.png, are
    # not corrections of each other
    images: dict[str, set[str]] = {}
    for f, digest in zip(files, digests, strict=True):
        if _maybe_image(f.name):
            images.setdefault(PurePosixPath(f.name).stem.casefold(), set()).add(digest)
    single = {stem for stem, held in images.items() if len(held) == 1}
    by_name: dict[str, str] = {}
    kept: dict[str, _File] = {}
    for f, digest in zip(files, digests, strict=True):
        if by_name.get(f.name) == digest:
            duplicates.append(f.name)
            continue
        replaces = later_replaces or (not _maybe_image(f.name)
                                      and any(b.casefold() in single for b, _ in _gt_bases(f.name)))
        if len(kinds[f.name]) > 1 and not replaces:
            if f.name not in by_name:
                skipped.append((f.name, f"{len(kinds[f.name])} {SAME_NAME_REFUSED} (two plates?): none is used, as "
                                        "which one its ground truth belongs to is not known; rename them "
                                        "(plate1_A01.png) or upload a zip of their folders"))
            by_name[f.name] = digest
            continue
        if f.name in by_name and replaces:
            notes.append(f"{f.name}: uploaded again with other contents; the later upload is used")
        by_name[f.name] = digest
        kept[f.name] = f
    return list(kept.values())


def _maybe_image(name: str) -> bool:
    """Whether an upload of the images' list may be an image (an image file not named as ground truth)."""
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS and not _is_ground_truth(name)


def _is_ground_truth(name: str) -> bool:
    folders = {p.lower() for p in _folder(name)}
    return bool(ground_truth_suffix(name) or folders & (GROUND_TRUTH_DIRS | DOT_DIRS) or cell_counter_stem(name)
                or name.lower().endswith(IMAGEJ_ROI_EXTENSIONS))  # _unpack keeps a zip whole only for ROI sets


def _check_points(gt: GroundTruth, shape: tuple[int, ...]) -> GroundTruth:
    check_points_fit(gt, shape)
    return gt


_SAID_ON_THE_PAGE = (DuplicatePointsWarning, WrappedLabelsWarning, ReusedColoursWarning, PredictedLabelsWarning, CalibratedPointsWarning,
                     IgnoredClassWarning, SeveralRegionsWarning, MergedDotsWarning, SpeckledMaskWarning)
"""Warnings about one image's ground truth that become the upload's notes (shown on the page)."""


def _notes_from(caught: list, notes: list[str]) -> None:
    """The caught warnings of :data:`_SAID_ON_THE_PAGE` into ``notes``; any other warned again as it was."""
    for w in caught:
        if issubclass(w.category, _SAID_ON_THE_PAGE):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _read_pair(gt: _File, shape: tuple[int, ...]) -> GroundTruth:
    """Ground truth of one image of ``shape``, the reader chosen by the file's name and folder."""
    if gt.name.lower().endswith(TABLE_EXTENSIONS):
        return _check_points(read_points_csv(gt.buffer()), shape)
    if gt.name.lower().endswith(".xml"):
        return _check_points(read_cellcounter_xml(gt.buffer()), shape)
    if gt.name.lower().endswith(GEOJSON_EXTENSIONS):
        return _check_points(read_geojson(gt.buffer(), expected_shape=shape), shape)
    if gt.name.lower().endswith(IMAGEJ_ROI_EXTENSIONS):
        return _check_points(read_imagej_rois(gt.buffer(), expected_shape=shape), shape)
    folders = {p.lower() for p in _folder(gt.name)}
    if ground_truth_suffix(gt.name) in ("_dots", "_points") or folders & DOT_DIRS:
        return read_dot_image(gt.buffer(), expected_shape=shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BinaryMaskWarning)
        labels = read_label_image(gt.buffer(), expected_shape=shape)
    same_name = ground_truth_suffix(gt.name) is None  # "_mask" / "_labels" say what the file is
    if same_name and holds_only_specks(labels):
        return read_dot_image(gt.buffer(), expected_shape=shape)  # a same-name dot image: no object is a nucleus
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return labels


def _read_pair_named(gt: _File, shape: tuple[int, ...], image: str) -> GroundTruth:
    """:func:`_read_pair`; an error about a file named as its image is said once ("a.png: its ground-truth
    file of the same name: ...", not "a.png: a.png: ...")."""
    try:
        return _read_pair(gt, shape)
    except CellcountError as err:
        text = str(err)
        if gt.name != image or not text.startswith(f"{gt.name}: "):
            raise
        raise type(err)("its ground-truth file of the same name: " + text[len(gt.name) + 2:]) from err


def _dsb_masks(image: str, gt_names: Iterable[str]) -> list[str]:
    """DSB 2018 nested layout: ``<id>/images/<id>.png`` owns every file in ``<id>/masks/``."""
    parts = _folder(image)
    if len(parts) < 2 or parts[-1].lower() != "images" or parts[-2] != PurePosixPath(image).stem:
        return []
    return [g for g in gt_names if _folder(g) == (*parts[:-1], "masks")]


def _merge_masks(masks: list[_File], shape: tuple[int, ...]) -> np.ndarray:
    """One-object-per-file masks -> int32 labels; a pixel claimed twice keeps the earlier mask."""
    labels = np.zeros(shape[:2], np.int32)
    for k, m in enumerate(sorted(masks, key=lambda f: f.name), start=1):
        arr = read_image(m.buffer())
        if arr.shape[:2] != labels.shape:
            raise GroundTruthError(f"{m.name}: mask shape {arr.shape[:2]} (H, W) differs from its image's {labels.shape}")
        on = arr.any(axis=2) if arr.ndim == 3 else arr != 0
        labels[on & (labels == 0)] = k
    return labels


def labelled_set(
    images: Iterable[tuple[str, bytes]], ground_truth: Iterable[tuple[str, bytes]] | None = None
) -> LabelledSet:
    """Pair uploaded images with their ground truth.

    Parameters
    ----------
    images : iterable of (str, bytes)
        Uploaded files (name, content): images, and zips of them. With ``ground_truth=None`` this one list
        holds both, told apart by name (``a_labels.tif``, ``a_mask.png``, ``a_dots.png``,
        ``a_points.csv``, files in ``labels/`` / ``masks/`` / ``dots/`` folders, the DSB 2018 layouts,
        ``filename,count`` CSV tables).
    ground_truth : iterable of (str, bytes), optional
        Ground truth uploaded separately (files and zips): instance label images, binary masks, dot images
        (``_dots`` / ``_points`` suffix or a ``dots/`` folder), point CSVs, counts CSVs. Here a file may
        have its image's own name.

    Returns
    -------
    LabelledSet
        Pairs by :func:`pair_by_stem`; images without a ground-truth file take their count from a counts
        table. Unreadable files, ground truth of the wrong shape and unmatched files are reported by the
        user's file name; the same file uploaded twice is used once and listed in ``duplicates``.
    """
    out = LabelledSet()
    files = _dedupe(_unpack(images, out.skipped), out.duplicates, out.skipped, out.notes, later_replaces=False)
    extra = [] if ground_truth is None else _dedupe(_unpack(ground_truth, out.skipped), out.duplicates, out.skipped,
                                                    out.notes, later_replaces=True)
    # ground truth named as such (a_labels.tif, labels/, a CSV) counts as ground truth in either list
    by_name_only = [_is_ground_truth(f.name) or f.name.lower().endswith((*TABLE_EXTENSIONS, *GEOJSON_EXTENSIONS))
                    for f in files]
    # the VGG cells naming in one list: 001dots.png beside 001cell.png is that image's ground truth
    worded = role_word_ground_truth([(_folder(f.name), PurePosixPath(f.name).stem) for f in files])
    by_name_only = [a or b for a, b in zip(by_name_only, worded, strict=True)]
    gt_files = [f for f, is_gt in zip(files, by_name_only, strict=True) if is_gt] + extra
    image_files = [
        f for f, is_gt in zip(files, by_name_only, strict=True)
        if not is_gt and PurePosixPath(f.name).suffix.lower() in IMAGE_EXTENSIONS
    ]

    # a ground-truth file with an image's very bytes is that image uploaded again (one zip of images/ and labels/
    # dropped into both boxes), never its labels: it paired each image with itself (81,399 "objects")
    image_digests = {hashlib.sha256(f.data).hexdigest(): f.name for f in image_files}
    copies = {id(f): image_digests.get(hashlib.sha256(f.data).hexdigest()) for f in gt_files}
    for f in gt_files:
        if copies[id(f)]:
            out.duplicates.append(f"{f.name} (the same file as the image {copies[id(f)]}: not used as ground truth)")
    gt_files = [f for f in gt_files if not copies[id(f)]]
    gt_files = _expand_roi_bundles(gt_files, {PurePosixPath(f.name).stem.casefold() for f in image_files})

    # CSVs that share an image's stem are point tables; the others are tables of counts per image
    image_stems = {PurePosixPath(f.name).stem.casefold() for f in image_files}
    uploaded = {f.name: f.name for f in image_files}  # names in tables are matched to these (match_names)
    counts: dict[str, tuple[int, str]] = {}
    raw_of: dict[str, bytes] = {}  # each counts table's bytes: an accent advice only where its encoding was guessed
    disagree: dict[str, list[str]] = {}  # an image two tables give different counts: "10 (a.csv)", "99 (b.csv)"
    spelled: dict[str, str] = {}  # a row's name as the table spells it
    pool: list[_File] = []
    stray: list[str] = []
    shared: dict[str, GroundTruth] = {}  # points from tables of several images' points (QuPath's Image column)
    clash: set[str] = set()
    in_tables: dict[str, tuple[str, list[tuple[str, int]]]] = {}  # each image's tables, for what clashes
    for f in gt_files:
        if not f.name.lower().endswith(TABLE_EXTENSIONS) or any(b.casefold() in image_stems for b, _ in _gt_bases(f.name)):
            pool.append(f)
            continue
        if is_labels_index(f.data):  # the Batch label zip's own index: its label images pair by their names
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:  # said on the page, not only in a log
                warnings.simplefilter("always", DuplicatePointsWarning)
                split = read_points_by_image(f.buffer())
        except GroundTruthError as err:
            out.skipped.append((f.name, str(err)))
            continue
        found, ambiguous = match_names(split or {}, uploaded)
        if split and not found and not ambiguous:  # its images were not uploaded: unused, not broken
            shown = ", ".join(list(split)[:5]) + (" …" if len(split) > 5 else "")
            out.notes.append(f"{f.name}: the points of {len(split)} image(s), none of them uploaded ({shown}): not used.")
            continue
        if found or ambiguous:
            out.notes.extend(str(w.message) for w in caught if issubclass(w.category, DuplicatePointsWarning))
            for key, gt in split.items():  # letter case kept, as counts tables' rows are (match_names folds it)
                k = unicodedata.normalize("NFC", key)
                clash.update({k} if k in shared else set())
                shared.setdefault(k, gt)
                in_tables.setdefault(k, (key, []))[1].append((f.name, gt.count))
            others = sorted(k for k in split if k not in found and k not in ambiguous)
            if others:
                out.notes.append(f"{f.name}: the points of {len(others)} image(s) that were not uploaded "
                                 f"({', '.join(others[:5])}{' …' if len(others) > 5 else ''}) are not used.")
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SeveralRegionsWarning)
                table = read_counts_by_name(f.buffer())
            _notes_from(caught, out.notes)
        except GroundTruthError as err:
            try:  # a point table of an image that was not uploaded: unused, not broken
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", PredictedLabelsWarning)
                    read_points_csv(f.buffer())
                if any(issubclass(w.category, PredictedLabelsWarning) for w in caught):  # the Count page's download
                    out.skipped.append((f.name, "cellcount's own objects table (a model's output) is not ground "
                                                "truth; once corrected by hand, name it like its image "
                                                "(img01_points.csv) to score against it"))
                else:
                    stray.append(f.name)
            except NoCoordinateColumns:  # neither kind of table: what a counts table needs
                out.skipped.append((f.name, str(err)))
            except GroundTruthError as points_err:  # points that cannot be used (microns, several images' objects)
                out.skipped.append((f.name, str(points_err)))
            continue
        raw_of[f.name] = f.data
        for stem, n in table.items():  # letter case kept, as a folder's tables are read (match_names folds it)
            key = unicodedata.normalize("NFC", stem)
            first = counts.setdefault(key, (n, f.name))
            if first[0] != n:
                disagree.setdefault(key, [f"{first[0]} ({first[1]})"]).append(f"{n} ({f.name})")
            spelled.setdefault(key, stem)

    by_name = {f.name: f for f in pool}
    used: set[str] = set()
    dsb = {i.name: _dsb_masks(i.name, by_name) for i in image_files}
    for names in dsb.values():
        used.update(names)
    contested: dict[str, str] = {}
    tied: set[str] = set()
    pairs, _, _ = pair_by_stem([i.name for i in image_files if not dsb[i.name]],
                               [n for n in by_name if n not in used], ambiguous=contested,
                               copies={f.name: image_digests[hashlib.sha256(f.data).hexdigest()] for f in image_files},
                               tied_files=tied)
    used.update(pairs.values())
    used.update(tied)  # its images say why it is not used: not also "matches no image"
    # which table is right is the user's to say, not the upload order's: each such image refused, saying which tables
    out.notes.extend(tables_clash_notes({k: v for k, v in in_tables.items() if k in clash}))
    clash_of, _ = values_by_image({v[0]: v[1] for k, v in in_tables.items() if k in clash}, uploaded)
    for stem in clash:
        shared.pop(stem)
    shared_of, unsure = values_by_image(shared, uploaded, what="points")
    count_of, unsure_counts = values_by_image(counts, uploaded, what="a count")
    disagree_of, unsure_disagree = values_by_image(disagree, uploaded, what="a count")
    unsure = {**{n: why for n, why in contested.items() if n not in count_of}, **unsure_disagree, **unsure_counts,
              **unsure, **{n: "its points are in " + " and ".join(f"{t} ({k} point{'s' * (k != 1)})" for t, k in found)
                           + ": keep the table that annotates it" for n, found in clash_of.items()}}
    for image in image_files:
        name = image.name
        if not (dsb[name] or name in pairs or name in count_of or name in shared_of or name in disagree_of
                or name in unsure):
            out.unlabelled.append((image.name, image.data))
            continue
        shape = None
        try:
            shape = read_image(image.buffer()).shape
            if dsb[image.name]:
                labels = _merge_masks([by_name[n] for n in dsb[image.name]], shape)
                source = posixpath.dirname(dsb[image.name][0])
                gt = GroundTruth(kind="labels", count=int(len(np.unique(labels[labels > 0]))), labels=labels,
                                 source=source)
            elif image.name in pairs:
                with warnings.catch_warnings(record=True) as caught:  # said on the page, not only in a log
                    for said in _SAID_ON_THE_PAGE:
                        warnings.simplefilter("always", said)
                    gt = _read_pair_named(by_name[pairs[image.name]], shape, image.name)
                _notes_from(caught, out.notes)
            elif name in shared_of:  # points, richer than a count: before the counts tables
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", CalibratedPointsWarning)
                    gt = _check_points(shared_of[name], shape)
                _notes_from(caught, out.notes)
            elif name in unsure:  # a name in a table that could be several images' (two plates' A01.png)
                raise GroundTruthError(unsure[name])
            elif name in disagree_of:  # which one is right is the user's to say, not the upload order's
                raise GroundTruthError(counts_disagree(disagree_of[name]))
            else:
                n, table = count_of[name]
                gt = GroundTruth(kind="count", count=n, source=table)
        except CellcountError as err:
            beside = ""
            if shape is not None and name in pairs:  # its other annotations: said here, not as matching no image
                others = [n for n in by_name if n not in used and posixpath.dirname(n) in {
                    posixpath.dirname(name), posixpath.dirname(pairs[name])}
                    and any(b.casefold() == PurePosixPath(name).stem.casefold() for b, _ in _gt_bases(n))]
                used.update(others)
                beside = not_used_beside_broken([PurePosixPath(n).name for n in others])
            out.skipped.append((image.name, f"{err}{beside}"))
            if shape is not None:  # the image is fine, its annotation is not
                out.truth_refused.append((image.name, image.data))
            continue
        out.items.append((image.name, image.data, gt))
    out.unused = [n for n in by_name if n not in used] + stray
    # the annotations of two plates' images named alike (both refused, said why) match an image: not "no image"
    refused = {PurePosixPath(n).stem.casefold() for n, why in out.skipped if SAME_NAME_REFUSED in why}
    if held := [n for n in out.unused if any(b.casefold() in refused for b, _ in _gt_bases(n))]:
        out.unused = [n for n in out.unused if n not in held]
        out.notes.append(f"{listed(held, 5)}: not used, as the images named like {'it' if len(held) == 1 else 'them'} "
                         "were refused (several different files of one name).")
    # labels saved under their image's own name, dropped among the images (StarDist's a.tif beside a.png): said
    by_stem: dict[tuple[str, str], list[str]] = {}
    for name, _ in out.unlabelled:
        by_stem.setdefault((posixpath.dirname(name), PurePosixPath(name).stem.casefold()), []).append(name)
    if twins := [sorted(v) for v in by_stem.values() if len(v) > 1]:
        a, b = twins[0][:2]
        out.notes.append(f"{len(twins)} pair(s) of images share a name ({a} and {b}{' ...' if len(twins) > 1 else ''}): "
                         "if one of each is the other's labels, upload them in the ground-truth box (they may keep "
                         f"the image's name there), or name them like {PurePosixPath(a).stem}_labels"
                         f"{PurePosixPath(b).suffix}.")
    # rows of a counts table that name no uploaded image: said, so a typo in a name does not pass unseen
    by_table: dict[str, list[str]] = {}
    named, ambiguous = match_names(counts, uploaded)
    for stem, (_, table) in counts.items():
        if stem not in named and stem not in ambiguous:
            by_table.setdefault(table, []).append(spelled.get(stem, stem))
    for table, stems in by_table.items():
        shown = ", ".join(stems[:5]) + (f" and {len(stems) - 5} more" if len(stems) > 5 else "")
        out.notes.append(f"{len(stems)} row{'s' if len(stems) != 1 else ''} of {table} match{'' if len(stems) != 1 else 'es'} "
                         f"no uploaded image ({shown}): {'their counts are' if len(stems) != 1 else 'its count is'} "
                         f"not used{accents_note(stems, raw_of.get(table, b''))}.")
    _drop_same_images(out)
    # a second annotation of an image that has one (labels/a.png and masks/a.png) matches an image: it is not
    # used, and saying it "matches no image" would send the user renaming files that are named right
    paired = {PurePosixPath(name).stem.casefold() for name, _, _ in out.items}
    paired |= {k for name, _, _ in out.items if (k := role_key(PurePosixPath(name).stem, image=True))}
    second = [n for n in out.unused if any(b.casefold() in paired for b, _ in _gt_bases(n))
              or role_key(PurePosixPath(n).stem, image=False) in paired]
    candidates = {n: by_name[n] for n in second if n in by_name}
    second = _second_annotations_agree(out, candidates)
    # a second annotation is said as one, or in its image's refusal where it disagrees: not as matching no image
    out.unused = [n for n in out.unused if n not in candidates]
    if second:
        shown = ", ".join(second[:5]) + (f" and {len(second) - 5} more" if len(second) > 5 else "")
        out.notes.append(f"{len(second)} ground-truth file(s) are second annotations of images that have one "
                         f"already, and are not used: {shown} ({SECOND_ANNOTATION_RULE}).")
    unnamed = [n for n in out.unused if PurePosixPath(n).name.lower() == "roiset.zip"]
    if unnamed:  # the ROI Manager's default name: which image's ROIs it holds is not said
        only = [PurePosixPath(n).stem for n, _ in out.unlabelled]
        example = f"{only[0]}_RoiSet.zip" if len(only) == 1 else "img01_RoiSet.zip for img01.tif"
        out.notes.append(f"{', '.join(unnamed)}: the ROI Manager's default name says nothing of the image its ROIs "
                         f"were drawn on; rename it after its image ({example}) and upload it again.")
    # in path order, whatever the order of the upload or the zip, as the command line lists a folder: the same
    # table, and the same bootstrap interval over the images
    out.items.sort(key=lambda item: item[0])
    out.unlabelled.sort(key=lambda item: item[0])
    out.truth_refused.sort(key=lambda item: item[0])
    _note_counts_tables(out, count_of)
    return out


def _second_annotations_agree(out: LabelledSet, second: dict[str, _File]) -> list[str]:
    """The ``second`` annotation files that agree with the one used for their image (or cannot be compared); an
    image whose second file counts otherwise (:func:`disagreeing_annotations`) moves from ``out.items`` to
    ``out.skipped``, naming both."""
    by_stem: dict[str, list[str]] = {}
    for name in second:
        for base, _ in _gt_bases(name):
            by_stem.setdefault(base.casefold(), []).append(name)
        if key := role_key(PurePosixPath(name).stem, image=False):  # 010dots.png of 010cell.png (VGG cells)
            by_stem.setdefault(key, []).append(name)
    kept, clashing = [], set()
    for name, data, gt in out.items:
        stem = PurePosixPath(name).stem
        others = list(dict.fromkeys(by_stem.get(stem.casefold(), []) + by_stem.get(role_key(stem, image=True) or "", [])))
        # the image's shape, decoded only for an image with a second file
        shape = None if not others else gt.labels.shape if gt.labels is not None else read_image(io.BytesIO(data)).shape
        clash = disagreeing_annotations(gt, [(o, functools.partial(_read_pair_named, second[o], shape, name))
                                             for o in others])
        if clash:
            clashing.update(n for n, _ in clash)
            out.skipped.append((name, f"{name}: " + annotations_disagree(
                str(gt.source or "its annotation"), gt.count, clash, "keep the right one and upload it alone")))
            out.truth_refused.append((name, data))
        else:
            kept.append((name, data, gt))
    out.items = kept
    return [n for n in second if n not in clashing]


def _drop_same_images(out: LabelledSet) -> None:
    """An image uploaded again under another path (a zip's ``images/a.png`` beside a loose ``a.png``) is one
    image (:func:`cellcount.groundtruth.one_per_image`: the copy with the richest annotation is kept), so that a
    fine-tune cannot train on one copy and hold out the other, nor an evaluation count it twice. The others
    go to ``duplicates``."""
    entries = [(name, data, gt) for name, data, gt in out.items] + [(name, data, None) for name, data in out.unlabelled]
    kept, dropped = one_per_image(entries, [hashlib.sha256(data).hexdigest() for _, data, _ in entries],
                                  [gt for _, _, gt in entries])
    for (name, _, gt), (other, _, other_gt) in dropped:
        differs = gt is not None and other_gt is not None and (gt.kind, gt.count) != (other_gt.kind, other_gt.count)
        unused = (f"; its annotation ({gt.kind}, {gt.count} objects) is not used: {other}'s ({other_gt.kind}, "
                  f"{other_gt.count}) is" if differs else "")
        out.duplicates.append(f"{name} (the same image as {other}{unused})")
    out.items = [(n, d, gt) for n, d, gt in kept if gt is not None]
    out.unlabelled = [(n, d) for n, d, gt in kept if gt is None]


def _note_counts_tables(out: LabelledSet, counts: dict[str, tuple[int, str]]) -> None:
    """Notes on counts tables whose rows were not used (their images have other ground truth, which wins)
    and on counts that disagree with that ground truth: otherwise a table beside label images is silently
    ignored."""
    superseded: dict[str, int] = {}
    disagree: list[str] = []
    for name, _, gt in out.items:
        row = counts.get(name)
        if row is None or gt.kind == "count":
            continue
        superseded[row[1]] = superseded.get(row[1], 0) + 1
        if row[0] != gt.count:
            disagree.append(f"{name} ({row[0]} in {row[1]}, {gt.count} in its {gt.kind})")
    for table, n in superseded.items():
        out.notes.append(f"{table}: {n} image(s) it lists have label images, masks or dots, which are used "
                         "instead of its counts.")
    if disagree:
        shown = ", ".join(disagree[:3]) + (f" and {len(disagree) - 3} more" if len(disagree) > 3 else "")
        out.notes.append(f"The counts table and the other ground truth disagree for {len(disagree)} image(s): {shown}.")
