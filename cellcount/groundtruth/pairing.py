"""Which ground-truth file in a folder belongs to which image, and the warnings about the rest."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cellcount.errors import GroundTruthError
from cellcount.io import (
    GROUND_TRUTH_SUFFIXES,
    GROUND_TRUTH_WORDS,
    IMAGE_EXTENSIONS,
    IMAGE_WORDS,
    IMAGEJ_ROI_EXTENSIONS,
    cell_counter_stem,
    ground_truth_suffix,
    imagej_roi_stem,
    word_base,
)

from .exported import GEOJSON_EXTENSIONS
from .names import _names, folded, listed
from .tables import TABLE_EXTENSIONS, _count_columns, _csv_rows, _point_columns, _read_csv_text, read_counts_csv
from .truth import GroundTruth

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# pairing files
# --------------------------------------------------------------------------------------------------
def _is_counts_table(path: Path, image_stems: set[str]) -> bool:
    """Whether a CSV named as an image's ground truth is a table of counts instead: counts columns, no coordinate
    columns, and no image of the name it gives (``counts_gt.csv`` beside no ``counts.png``)."""
    base = path.stem[: -len(ground_truth_suffix(path) or "")] if ground_truth_suffix(path) else path.stem
    if base in image_stems:
        return False
    try:
        header = _csv_rows(*_read_csv_text(path))[0]
    except (GroundTruthError, OSError, UnicodeError):
        return False
    return _count_columns(header) is not None and _point_columns(header) is None


def _is_point_table(path: Path) -> bool:
    """Whether a CSV has coordinate columns (x,y / X,Y / row,col ...); False when unreadable."""
    try:
        name, text = _read_csv_text(path)
        return _point_columns(_csv_rows(name, text)[0]) is not None
    except (GroundTruthError, OSError, UnicodeError):
        return False


def _gt_base(path: Path) -> tuple[str, int]:
    """(image stem this ground truth belongs to, preference rank of its suffix)."""
    if (stem := cell_counter_stem(path)) is not None:
        return stem, GROUND_TRUTH_SUFFIXES.index("_points")
    if (path.suffix.lower() in (*GEOJSON_EXTENSIONS, *TABLE_EXTENSIONS)
            and Path(path.stem).suffix.lower() in IMAGE_EXTENSIONS):  # img01.tif.geojson: a QuPath script's name
        return Path(path.stem).stem, len(GROUND_TRUTH_SUFFIXES)
    if (stem := imagej_roi_stem(path)) is not None:  # img01.roi, img01_RoiSet.zip, RoiSet_img01.zip
        return stem, len(GROUND_TRUTH_SUFFIXES)
    suffix = ground_truth_suffix(path)
    if suffix:
        base = path.stem[: -len(suffix)]
        if Path(base).suffix.lower() in IMAGE_EXTENSIONS:  # img01.png_points.csv: a script adding to the full name
            base = Path(base).stem
        return base, GROUND_TRUTH_SUFFIXES.index(suffix)
    return path.stem, len(GROUND_TRUTH_SUFFIXES)


def _shared_folders_inward(image: Path, gt: Path) -> int:
    """How many folders just above two files have the same names, from the innermost out
    (``images/plate1/a.png`` and ``labels/plate1/a.tif``: 1)."""
    n = 0
    for a, b in zip(reversed(image.parent.parts), reversed(gt.parent.parts), strict=False):
        if a.casefold() != b.casefold():
            break
        n += 1
    return n


def _shared_folders_outward(image: Path, gt: Path) -> int:
    """How many folders two files' paths share from the top (``plate1/A01.png`` and ``plate1/labels/A01.tif``: one
    more than ``plate2/A01.png`` and it)."""
    n = 0
    for a, b in zip(image.parent.parts, gt.parent.parts, strict=False):
        if a.casefold() != b.casefold():
            break
        n += 1
    return n


def closest_pairs(options: Mapping[Any, Sequence[tuple[tuple, Any]]], copies: Mapping[Any, Any] | None = None,
                  ) -> tuple[dict[Any, Any], dict[Any, tuple[Any, list[Any]]], set[Any]]:
    """Each image with the ground-truth file closest to it, each file with one image.

    ``options``: image -> its candidate files, each as (key, file), a smaller key closer. The pairs are taken
    closest first across all images, so an image keeps its own file beside it whatever others lie further off. A
    file that two or more images are equally close to (two plates' ``A01.png``, one ``labels/A01.tif``) goes to
    none of them, also when one of them has a file of its own: which plate it belongs to is not known, and
    scoring either against it would be a guess. Images that ``copies`` maps to one value are one image
    uploaded twice: the first of them takes the file.

    Returns (image -> file, image -> (the file it tied for, the other images) for images left without a file by a
    tie, the files tied for)."""
    copies = copies or {}
    order = {image: k for k, image in enumerate(options)}
    entries = sorted(((key, str(gt), order[image], image, gt) for image, cands in options.items() for key, gt in cands),
                     key=lambda e: e[:3])
    rivals: dict[tuple[Any, tuple], list[Any]] = {}
    for key, _, _, image, gt in entries:
        rivals.setdefault((gt, key), []).append(image)
    pairs: dict[Any, Any] = {}
    taken: set[Any] = set()
    contested: set[Any] = set()
    tied: dict[Any, tuple[Any, list[Any]]] = {}
    for key, _, _, image, gt in entries:
        if image in pairs or gt in taken:
            continue
        near = list(dict.fromkeys(rivals[(gt, key)]))
        if len({copies.get(i, i) for i in near}) > 1:
            taken.add(gt)  # no one's
            contested.add(gt)
            for i in near:
                tied.setdefault(i, (gt, [o for o in near if o != i]))
            continue
        pairs[image] = gt
        taken.add(gt)
    return pairs, {i: t for i, t in tied.items() if i not in pairs}, contested


def match_ground_truth(
    image_paths: Iterable[str | os.PathLike], gt_paths: Iterable[str | os.PathLike], *,
    ambiguous: dict[Path, str] | None = None, tied_files: set[Path] | None = None,
) -> dict[Path, Path]:
    """Pair images with ground-truth files by file stem.

    A ground-truth file matches an image when its stem is the image stem plus one of
    :data:`cellcount.io.GROUND_TRUTH_SUFFIXES` (``img01_labels.tif``, ``img01_mask.png``,
    ``img01_dots.png``, ``img01_points.csv`` ...), or is the same stem in another folder
    (``labels/img01.png`` for ``images/img01.png``). Stems are compared exactly first, then
    case-insensitively; last, an image and a ground-truth file whose stems differ only in a trailing role word
    (``001cell.png`` and ``dots/001dots.png``, the VGG cells layout: :func:`cellcount.io.word_base`). Among several candidates the one in the image's folder wins, then one in a
    sibling folder, then the suffix order of ``GROUND_TRUTH_SUFFIXES`` (labels before masks before dots).
    A file serves one image, taken closest first (:func:`closest_pairs`); where several images without one lie
    equally close to it (``labels/A01.tif`` beside ``images/plate1/A01.png`` and ``images/plate2/A01.png``) none
    takes it, ``ambiguous``, when given, receives why for each of them, and ``tied_files`` the files.

    Returns
    -------
    dict of pathlib.Path to pathlib.Path
        image path -> ground-truth path, for the images that have one (as given, not resolved).
    """
    exact: dict[str, list[tuple[int, Path]]] = {}
    folded: dict[str, list[tuple[int, Path]]] = {}
    whole: dict[str, list[tuple[int, Path]]] = {}  # img01.png_points.csv by the image's whole name, before its stem
    gt_paths = list(gt_paths)
    for item in gt_paths:
        gt = Path(item)
        base, rank = _gt_base(gt)
        exact.setdefault(base, []).append((rank, gt))
        folded.setdefault(base.lower(), []).append((rank, gt))
        if (suffix := ground_truth_suffix(gt)) and Path(named := gt.stem[: -len(suffix)]).suffix.lower() in IMAGE_EXTENSIONS:
            whole.setdefault(named.lower(), []).append((rank, gt))

    def usable(image: Path, cands: list[tuple[int, Path]]) -> list[tuple[int, int, str, Path]]:
        out = []
        for rank, gt in cands:
            if gt == image or gt.resolve() == image.resolve():
                continue
            same_dir = gt.parent.resolve() == image.parent.resolve()
            if (rank == len(GROUND_TRUTH_SUFFIXES) and same_dir
                    and gt.suffix.lower() not in (*TABLE_EXTENSIONS, *GEOJSON_EXTENSIONS, *IMAGEJ_ROI_EXTENSIONS)):
                continue  # identical stem must live in another folder (a CSV is never the image itself)
            if same_dir:
                proximity = 0
            elif gt.parent.parent.resolve() == image.parent.resolve():
                proximity = 1  # a folder inside the image's (a.png, labels/a.tif)
            elif gt.parent.parent.resolve() == image.parent.parent.resolve():
                proximity = 2  # a sibling folder (images/a.png, labels/a.tif)
            else:
                proximity = 3
            # then the folders the two share from the top (sub/labels/A01.tif for sub/A01.png, not labels/A01.tif
            # beside sub/), then from the innermost out (labels/plate2/A01.tif for images/plate2/A01.png, a mirrored
            # tree)
            out.append((proximity, (-_shared_folders_outward(image, gt), -_shared_folders_inward(image, gt)), rank,
                        str(gt), gt))
        return [((p, *shared, rank), gt) for p, shared, rank, _, gt in sorted(out, key=lambda t: t[:4])]

    # the VGG cells layout: 001cell.png and dots/001dots.png share "001" (after every other pairing)
    worded: dict[str, list[tuple[int, Path]]] = {}
    for item in gt_paths:
        base = word_base(Path(item).stem, GROUND_TRUTH_WORDS)
        if base:
            worded.setdefault(base.lower(), []).append((len(GROUND_TRUTH_SUFFIXES) + 1, Path(item)))

    images = [Path(item) for item in image_paths]
    options: dict[Path, list[tuple[tuple, Path]]] = {}
    for image in images:
        for exactness, cands in enumerate((whole.get(image.name.lower(), []), exact.get(image.stem, []),
                                           folded.get(image.stem.lower(), []))):
            options.setdefault(image, []).extend(((exactness, *key), gt) for key, gt in usable(image, cands))
    result, tied, contested = closest_pairs(options)
    if tied_files is not None:
        tied_files.update(contested)
    for image, (gt, others) in tied.items():
        if ambiguous is not None:
            shown = f"{gt.parent.name}/{gt.name} could be the ground truth of this image or of " + listed(
                [f"{p.parent.name}/{p.name}" for p in others])
            if all(Path(p).parent == image.parent for p in others):  # x.png and x.tif beside x_labels.png
                ambiguous[image] = (f"{shown} (images of one name but for their extension, in one folder): keep one of "
                                    "them, or rename one of them and its ground truth alike")
            else:
                ambiguous[image] = (f"{shown} (the same name in other folders, as close to each): put each one's "
                                    "ground truth beside it, or in a labels/ tree that mirrors the images' folders")
    # after every other pairing, and only files no image took: the closest folder first, across all images
    used = set(result.values())
    offers = sorted(
        (key, str(gt), str(image), image, gt)
        for image in images if image not in result and (base := word_base(image.stem, IMAGE_WORDS))
        for key, gt in usable(image, worded.get(base.lower(), []))
    )
    for *_, image, gt in offers:
        if image not in result and gt not in used:
            result[image] = gt
            used.add(gt)
    return result


def role_key(stem: str, *, image: bool) -> str | None:
    """The part an image and its annotation share in the VGG cells layout (``001`` of ``001cell`` and ``001dots``),
    as a key apart from any stem, for finding an image's second annotations by it too (a ``010dots.png`` beside the
    ``010cell.csv`` used for ``010cell.png`` would read as matching no image, and a count at odds with the
    CSV's would go unsaid); None for a name without a role word."""
    base = word_base(stem, IMAGE_WORDS if image else GROUND_TRUTH_WORDS)
    return "\0" + base.casefold() if base else None


SECOND_ANNOTATION_RULE = ("the one used is the nearest to its image by folder, then by suffix: _labels, _mask, _dots, "
                          "_points, then the first by name")
"""Which of an image's annotations is scored, as the warnings about the others say it."""


def _skip_warning(root: Path, missing: list[Path], unused: list[Path] | None = None, *,
                  on_missing: Callable[[list[Path]], None] | None = None,
                  paired: Iterable[Path] = ()) -> None:
    """Log the images left without ground truth and the ground truth left unused; an unused file named like an
    image of ``paired`` (``a_points.csv`` beside the ``a_labels.tif`` used for ``a.png``) is a second
    annotation, not one that "matches no image" (which would send the user renaming files named right).
    ``on_missing`` is called with the images left out (none: not called)."""
    if missing and on_missing is not None:
        on_missing(list(missing))
    # a broken file among them is said to be one: "without ground truth" alone sends the user looking for labels
    broken = [p for p in missing if not _readable(p)]
    missing = [p for p in missing if p not in broken]

    def shown(paths: list[Path]) -> str:  # by their paths in the folder: two plates' A01.png are two images
        return listed([p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name for p in paths])

    if missing:
        logger.warning("%s: %d image(s) without ground truth skipped: %s", root, len(missing), shown(missing))
    if broken:
        logger.warning("%s: %d file(s) without ground truth that cannot be read as images either, skipped: %s",
                       root, len(broken), shown(broken))
    stems = {p.stem.casefold() for p in paired} | {k for p in paired if (k := role_key(p.stem, image=True))}
    second = [gt for gt in unused or [] if _gt_base(gt)[0].casefold() in stems
              or role_key(gt.stem, image=False) in stems]
    unused = [gt for gt in unused or [] if gt not in second]
    if second:
        # by their paths in the folder: which of labels/a.png and masks/a.png was passed over
        logger.warning("%s: %d ground-truth file(s) are second annotations of images that have one already, and "
                       "are not used: %s (%s)", root, len(second), shown(second), SECOND_ANNOTATION_RULE)
    if unused:
        logger.warning("%s: %d ground-truth file(s) match no image: %s (name each like its image)", root,
                       len(unused), _names(unused))


def _readable(path: Path) -> bool:
    """Whether ``path``'s image header can be read (its pixels are not decoded)."""
    from cellcount.errors import CellcountError, ImageTooLargeError
    from cellcount.io.read import image_shape

    try:
        image_shape(path)
    except ImageTooLargeError:  # an image, only too large to count here
        return True
    except (CellcountError, OSError):
        return False
    return True


def _check_against_counts(gt: GroundTruth, listed: tuple[int, str] | int | None) -> None:
    """Warn when a counts table (``listed``: its count, or (count, table)) says otherwise than ``gt``."""
    n = listed[0] if isinstance(listed, tuple) else listed
    if n is not None and n != gt.count:
        logger.warning("%s: %d objects in the ground truth but %d in the counts table", gt.source, gt.count, n)


def _folded_counts(path: Path) -> dict[str, int]:
    """A counts table keyed by folded stem (:func:`folded`: IMG4 in the table names img4.png, as on Windows and macOS);
    two rows naming one image with different counts are left out, with a warning."""
    counts: dict[str, int] = {}
    clash: set[str] = set()
    for spelled, n in read_counts_csv(path).items():
        stem = folded(spelled)
        if stem in counts and counts[stem] != n:
            clash.add(stem)
        counts.setdefault(stem, n)
    for stem in clash:
        logger.warning("%s: rows naming %s (in any case) give different counts; left out", path, stem)
        del counts[stem]
    return counts
