"""Finding image files (files, folders, globs) and telling ground-truth files apart by their names."""

from __future__ import annotations

import contextlib
import errno
import glob
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
"""File extensions (lower case) that :func:`list_image_files` keeps."""

NAMED_ONLY_EXTENSIONS = frozenset({".gif", ".webp"})
"""Formats Pillow reads that :func:`list_image_files` keeps where a file is named on its own (as ``read_image`` and
``count_file`` read it), not where a folder or pattern lists them (rarely microscopy there)."""

MICROSCOPE_EXTENSIONS = frozenset({".czi", ".nd2", ".lif", ".lof", ".vsi", ".oib", ".oif", ".oir", ".ims", ".dv",
                                   ".lsm", ".stk", ".zvi", ".sld", ".ndpi", ".svs", ".scn", ".mrxs"})
"""Microscope vendors' formats that :func:`list_image_files` cannot count: a folder walk reports each one as
skipped (export it as TIFF), so a folder of raw files does not give a table that silently lacks them."""


TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
"""A TIFF's (or BigTIFF's) first four bytes, little- or big-endian."""


def microscope_file_problem(name: str, head: bytes | None = None) -> str | None:
    """Why a file named ``name`` is not counted, where its extension is a microscope vendor's format
    (:data:`MICROSCOPE_EXTENSIONS`), else None: the one message of folder walks, zips, uploads and ``read_image``.
    ``head``: the file's first bytes, when known; a TIFF among those formats (.lsm, .svs, .ndpi ...) is read."""
    suffix = os.path.splitext(str(name))[1].lower()
    if suffix not in MICROSCOPE_EXTENSIONS or (head is not None and head[:4] in TIFF_MAGICS):
        return None
    return (f"a microscope file (extension {suffix}) this program cannot read: export it as TIFF (Fiji: open it "
            "with Bio-Formats, then File > Save As > Tiff)")

GROUND_TRUTH_SUFFIXES = ("_labels", "_label", "_cp_masks", "_masks", "_mask", "_gt", "_dots", "_points")
"""Stem suffixes that mark a ground-truth file (``img01_labels.tif``; ``img01_cp_masks.png``: Cellpose's label
images), in order of preference."""

DOT_DIRS = frozenset({"dots", "points"})
"""Folder names whose files are dot annotations (``dots/img01.png`` for ``images/img01.png``)."""

GROUND_TRUTH_DIRS = frozenset({"labels", "label", "masks", "mask", "gt", "ground_truth", "groundtruth", "ground-truth",
                               "ground truth", "annotations", "annotation"})
"""Folder names whose files :func:`split_ground_truth_files` treats as ground truth (not :data:`DOT_DIRS`:
``count`` counts a folder named ``points/``; beside images, readers of labelled sets add them)."""


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _tiff_in_disguise(path: Path) -> bool:
    """A file of a microscope format that is a TIFF inside (.lsm, .svs, .ndpi ...): read as the app reads its
    upload, from its content (:func:`microscope_file_problem`)."""
    if path.suffix.lower() not in MICROSCOPE_EXTENSIONS:
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in TIFF_MAGICS
    except OSError:
        return False


def _is_zarr_dir(path: Path) -> bool:
    """An OME-Zarr folder (``*.zarr``): one image, counted by blocks (:mod:`cellcount.blocks`)."""
    return path.suffix.lower() == ".zarr" and path.is_dir()


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


SkipFn = Callable[[Path, str], None]
"""Called as ``on_skip(path, reason)`` for each entry :func:`list_image_files` cannot list."""


def _log_skip(path: Path, reason: str) -> None:
    logger.warning("skipped %s: %s", path, reason)


def _broken_link_reason(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (dangling or a loop), or None when it can (or is no link)."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"dangling symbolic link (target {os.readlink(path)} does not exist)"
    return None


def _holds_images(folder: str, most: int = 5000) -> bool:
    """Whether ``folder`` holds an image file below it (stops at the first; looks at ``most`` entries at most: a
    ``.git`` or ``.venv`` is not searched whole on every count)."""
    seen = 0
    for _, dirnames, filenames in os.walk(folder):
        if any(_is_image_file(Path(f)) for f in filenames):
            return True
        seen += len(dirnames) + len(filenames)
        if seen > most:
            return False
    return False


def _walk_folder(root: Path, on_skip: SkipFn, on_hidden: Callable[[Path], None] | None = None,
                 on_other: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Image-named files under ``root`` (symbolic links followed, hidden entries skipped, those that are or hold
    images reported to ``on_hidden``, other files to ``on_other``); every folder that cannot be read, link loop and
    dangling link is reported through ``on_skip``."""
    seen: set[tuple[int, int]] = set()
    # the folders in the tree itself: a link to one of them (latest -> run42) is another name for files listed
    # under their own path, passed over without a word (it would read as a skipped folder, and the run as failed)
    inside: set[tuple[int, int]] = set()  # listed once, at the first folder link met: most trees have none

    def linked_inside(folder: str) -> bool:
        if not os.path.islink(folder):
            return False
        try:
            st = os.stat(folder)
        except OSError:
            return False
        if not inside:
            for dirpath, dirnames, _ in os.walk(root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".") and not _is_zarr_dir(Path(dirpath, d))]
                with contextlib.suppress(OSError):
                    here = os.stat(dirpath)
                    inside.add((here.st_dev, here.st_ino))
        return (st.st_dev, st.st_ino) in inside

    def onerror(err: OSError) -> None:
        on_skip(Path(err.filename or root), f"cannot read folder: {err.strerror or err}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError as err:
            on_skip(Path(dirpath), f"cannot read folder: {err.strerror or err}")
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            on_skip(Path(dirpath), "folder already listed through another path (symbolic link loop?)")
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        if on_hidden is not None:
            for d in sorted(dirnames):
                if d.startswith(".") and not os.path.islink(os.path.join(dirpath, d)) \
                        and _holds_images(os.path.join(dirpath, d)):  # a hidden link: another name, maybe of the tree
                    on_hidden(Path(dirpath, d))
            for f in sorted(filenames):
                if f.startswith(".") and _is_image_file(Path(f)) and not f.startswith("._"):  # not macOS's ._ files
                    on_hidden(Path(dirpath, f))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not linked_inside(os.path.join(dirpath, d)))
        zarrs = [d for d in dirnames if _is_zarr_dir(Path(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in zarrs]  # an OME-Zarr is one image, not a folder
        yield from (Path(dirpath, d) for d in zarrs)
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            path = Path(dirpath, fname)
            broken = _broken_link_reason(path)
            if broken:
                on_skip(path, broken)
            elif (_is_image_file(path) or _tiff_in_disguise(path)) and path.is_file():
                yield path
            elif why := microscope_file_problem(path.name):
                on_skip(path, why)
            elif on_other is not None:
                on_other(path)


def _through_folder_link(match: Path, base: str) -> bool:
    """Whether a folder between ``base`` (the pattern's part without wildcards) and ``match`` is a link."""
    folder, stop = os.path.abspath(match.parent), os.path.abspath(base)
    while folder != stop and folder.startswith(stop):
        if os.path.islink(folder):
            return True
        folder = os.path.dirname(folder)
    return False


def _without_folder_link_copies(matches: list[Path], pattern: str) -> list[Path]:
    """``matches`` less those reached through a link to a folder whose file a match also reaches by its own path
    (``imgs/**/*.png`` with ``imgs/latest -> run42`` reaches each image twice), as a folder search leaves such
    links out; a linked file itself is another path, kept (see :func:`list_image_files`). Matches through a link
    above the pattern's wildcards (``/scratch`` a link to ``/data/scratch``), the user's way to the files, are kept."""
    parts = Path(pattern).parts
    fixed = list(itertools.takewhile(lambda part: not _has_glob(part), parts))
    base = os.path.join(*fixed) if fixed else "."
    direct: set[str] = set()
    through_link: list[tuple[Path, str]] = []
    for m in matches:
        real = os.path.realpath(m)
        if _through_folder_link(m, base):
            through_link.append((m, real))
        else:
            direct.add(real)
    copies = {id(m) for m, real in through_link if real in direct}
    return [m for m in matches if id(m) not in copies]


def list_image_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike], *, on_skip: SkipFn | None = None,
    on_hidden: Callable[[Path], None] | None = None, ground_truth: bool = False,
    on_other: Callable[[Path], None] | None = None,
) -> list[Path]:
    """List the image files named by files, folders and glob patterns, without ground truth by default.

    Parameters
    ----------
    paths : path or iterable of paths
        Each item is a file (kept when its extension is in :data:`IMAGE_EXTENSIONS`), a folder
        (searched recursively, following symbolic links; hidden files and folders are skipped) or a glob
        pattern (``**`` allowed). In folders, files of :data:`MICROSCOPE_EXTENSIONS` are reported to
        ``on_skip``; other non-image files (tables, notes) are passed over.
    on_skip : callable, optional
        Called as ``on_skip(path, reason)`` for every folder that cannot be read, symbolic-link loop and
        dangling link met on the way, and every file named on its own that is not an image of
        :data:`IMAGE_EXTENSIONS`, so nothing is skipped in silence. Default: a logged warning.
    on_hidden : callable, optional
        Called with each hidden image file and hidden folder holding images that a folder search passes over
        (names starting with "."), so that the caller can say so; they are no failures.
    ground_truth : bool
        False (default): files a folder search or pattern finds named like ground truth
        (:func:`split_ground_truth_files`: ``a_labels.tif``, ``masks/a.png`` ...) are left out, as ``cellcount
        count`` leaves them out, with one logged warning saying how many, so that a batch over a folder of images
        with their annotations counts the images only (a labels file counted as an image would give a row of its own,
        unflagged); a file named on its own is kept. True: listed too.
    on_other : callable, optional
        Called with each other file a folder search passes over (notes, tables: neither images nor microscope
        files), so that the caller can say what was not counted.

    Returns
    -------
    list of pathlib.Path
        Image files with a case-insensitive extension in :data:`IMAGE_EXTENSIONS`, sorted and
        de-duplicated by absolute path (a link and its target are two paths, each listed).

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or a glob pattern that matches nothing.
    """
    skip = on_skip or _log_skip
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)  # searched again below
    found: dict[Path, Path] = {}
    named: set[Path] = set()  # files named on their own: the caller meant them, ground truth or not
    repeated: list[Path] = []  # a file given again (by another spelling of its path, a pattern, its folder)
    for item in paths:
        text = os.fspath(item)
        path = Path(text)
        if path.is_file() or _is_zarr_dir(path):
            candidates: Iterable[Path] = [path]
            named.add(Path(os.path.abspath(path)))
        elif path.is_dir():
            candidates = _walk_folder(path, skip, on_hidden, on_other)
        elif _has_glob(text):
            matches = [Path(m) for m in glob.glob(text, recursive=True)]
            if not matches:
                raise FileNotFoundError(f"no file matches the pattern: {text}")
            for m in matches:
                broken = _broken_link_reason(m)
                if broken:
                    skip(m, broken)
            candidates = _without_folder_link_copies([m for m in matches if m.is_file()], text)
        else:
            broken = _broken_link_reason(path)
            raise FileNotFoundError(f"path does not exist: {text}" + (f" ({broken})" if broken else ""))
        for cand in candidates:
            if not _utf8_name(cand):  # its row, label file and history could not be written: one file, not the batch
                skip(cand, "its path is not valid UTF-8 (bytes of another system's encoding in its own name or a "
                     "folder's, as old Windows or Samba shares write them): rename it to count it")
            elif (_is_image_file(cand) or _is_zarr_dir(cand) or _tiff_in_disguise(cand)
                  or (path.is_file() and cand.suffix.lower() in NAMED_ONLY_EXTENSIONS)):
                # one row per path: a folder named twice (data and data/ctrl) lists its files once, but a link
                # and the file it points to are two paths, each in its own folder (two conditions' tables); by
                # the resolved path, the one sorted first would take the row and the other none, silently
                key = Path(os.path.abspath(cand))
                if key in found:
                    repeated.append(cand)
                found.setdefault(key, cand)
            elif path.is_file():  # named on its own: the user meant it, so say why it is left out
                skip(cand, f"not an image file this program reads (extension {cand.suffix.lower() or 'none'}; it reads "
                     f"{', '.join(sorted(IMAGE_EXTENSIONS))}" + (": export it as TIFF)" if cand.suffix.lower()
                                                                in MICROSCOPE_EXTENSIONS else
                                                                "; unzip it and name the folder, or count the zip on "
                                                                "the app's Batch page)" if cand.suffix.lower() == ".zip"
                                                                else ")"))
    files = sorted(found.values(), key=lambda p: (str(p.parent), p.name))
    if repeated:  # one row each, as asked once: said, so that a count of inputs given matches the rows
        logger.warning("%d input(s) given more than once (the same file by another path, a pattern or its folder) are "
                       "listed once: %s", len(repeated), ", ".join(str(p) for p in repeated[:3])
                       + (" ..." if len(repeated) > 3 else ""))
    if ground_truth:
        _say_linked_copies(files)
        return files
    searched = [f for f in files if Path(os.path.abspath(f)) not in named]
    left_out = set(split_ground_truth_files(searched, roots=searched_folders(paths))[1])
    if left_out:  # said once, not per file: a folder of images with their labels has as many as images
        shown = ", ".join(str(p) for p in sorted(left_out)[:3]) + (" ..." if len(left_out) > 3 else "")
        logger.warning("left out %d file(s) named like ground truth (%s); list_image_files(..., ground_truth=True) "
                       "lists them", len(left_out), shown)
    kept = [f for f in files if f not in left_out]
    _say_linked_copies(kept)
    return kept


def same_files(paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(path, the first of ``paths`` with the same bytes) for each file that repeats an earlier one under another
    path: a copy, counted as an image of its own, whose cells a folder's total then counts twice. Only files of one
    size are compared, by their first 64 KiB, then whole: a folder of distinct images costs a stat per file (and a
    little reading where a camera's files share their size). Symbolic links to one file are said where the inputs
    are listed, not here; hard links, which nothing else says, are."""
    import hashlib

    def head(path: Path, whole: bool = False) -> str | None:
        try:
            with open(path, "rb") as fh:
                if not whole:
                    return hashlib.sha256(fh.read(1 << 16)).hexdigest()
                h = hashlib.sha256()
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
                return h.hexdigest()
        except OSError:
            return None  # unreadable here: reported where it is read for counting

    by_size: dict[int, list[Path]] = {}
    real: set[str] = set()  # one file behind symbolic links: said as such where the inputs are listed
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_file() and (where := os.path.realpath(path)) not in real:
                real.add(where)
                by_size.setdefault(path.stat().st_size, []).append(path)
    out = []
    by_size.pop(0, None)  # empty files: no cells to count twice (each gets its error row)
    for group in (g for g in by_size.values() if len(g) > 1):
        by_head: dict[str, list[Path]] = {}
        for path in group:
            if (key := head(path)) is not None:
                by_head.setdefault(key, []).append(path)
        for alike in (g for g in by_head.values() if len(g) > 1):
            first: dict[str, Path] = {}
            for path in alike:
                if (key := head(path, whole=True)) is not None:
                    if key in first:
                        out.append((path, first[key]))
                    else:
                        first[key] = path
    return out


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as text that UTF-8 files can hold: bytes of another encoding in its name as ``\\xff`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def said_path(path: str | os.PathLike) -> str:
    """``path`` for a line of a message (:func:`printable_path`, with control characters escaped: a newline in a
    file's name split a note across two lines of a log)."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if ord(ch) < 32 or ord(ch) == 127 else ch
                   for ch in printable_path(path))


def real_path(path: str | os.PathLike) -> Path:
    """``path`` with its links resolved; a loop of links (which cannot be resolved) as its absolute path: one
    file in a loop fails where it is read, not the whole run."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a link loop, before Python 3.13
        return Path(os.path.abspath(path))


def _utf8_name(path: Path) -> bool:
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes kept as surrogates (os.fsdecode)
        return False
    return True


def _say_linked_copies(files: list[Path]) -> None:
    """One logged warning when some listed paths are the same file (a link beside its target): each is counted
    under its own name, so a total over them counts that image more than once."""
    by_file: dict[Path, list[Path]] = {}
    for f in files:
        by_file.setdefault(real_path(f), []).append(f)
    twins = [paths for paths in by_file.values() if len(paths) > 1]
    if twins:
        shown = "; ".join(" = ".join(str(p) for p in paths) for paths in twins[:3]) + (" ..." if len(twins) > 3 else "")
        logger.warning("%d file(s) are listed under more than one path (symbolic links to one file: %s); each path is "
                       "counted, so a total over them counts that image more than once", len(twins), shown)


def ground_truth_suffix(path: str | os.PathLike) -> str | None:
    """Return the ground-truth suffix (one of :data:`GROUND_TRUTH_SUFFIXES`) that ends the stem, or None."""
    stem = Path(path).stem.lower()
    for suffix in GROUND_TRUTH_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return suffix
    return None


def short_name(name: str, keep: int = 24) -> str:
    """``name`` for display: a stem longer than ``keep`` characters cut to its first 12 and "…", the extension
    kept (DSB's names are 64-digit hashes that break mid-word across a narrow column; their start tells them
    apart)."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    return f"{stem[:12]}…{dot}{ext}" if len(stem) > keep else name


def readable_paths(text: object) -> str:
    """A record of where data came from, for people: the development checkout's relative data paths
    (``../shared/datasets/dsb2018``) named by the data set alone (``dsb2018``)."""
    import re

    return re.sub(r"(?:\.\./)+shared/datasets/", "", str(text))


IMAGE_WORDS = ("cells", "cell", "images", "image", "img", "raw")
GROUND_TRUTH_WORDS = ("labels", "label", "masks", "mask", "dots", "dot", "points", "gt")
"""Trailing words that name a file's role in the ``001cell.png`` / ``dots/001dots.png`` layout of the VGG cells
benchmark: an image and its ground truth share what comes before them."""


def word_base(stem: str, words: tuple[str, ...]) -> str | None:
    """``stem`` without a trailing word of ``words`` and the separators before it (``001cell`` -> ``001``,
    ``img-03_dots`` -> ``img-03``), or None when it ends in none of them after a digit or a separator (a letter
    before it makes another word: ``hela_qdot``, ``timepoints``) or nothing is left."""
    low = stem.lower()
    for word in words:
        # a digit or a separator before the word: "001dots", "img_cell", not "hela_qdot" or "timepoints"
        if low.endswith(word) and len(low) > len(word) and not low[-len(word) - 1].isalpha():
            base = stem[: -len(word)].rstrip("_-. ")
            return base or None
    return None


def role_word_ground_truth(files: Sequence[tuple[object, str]]) -> list[bool]:
    """For (folder, stem) pairs: which name ground truth by the VGG cells naming, ``001dots`` beside an image
    ``001cell`` in the same folder (:func:`word_base`)."""
    partners = {(folder, b.casefold()) for folder, stem in files if (b := word_base(stem, IMAGE_WORDS))}
    return [(b := word_base(stem, GROUND_TRUTH_WORDS)) is not None and (folder, b.casefold()) in partners
            for folder, stem in files]


CELLCOUNTER_PREFIX = "cellcounter_"
"""Fiji's Cell Counter names its saved markers ``CellCounter_<image>.xml``: the image's stem follows the prefix."""


def cell_counter_stem(path: str | os.PathLike) -> str | None:
    """The image stem of a file named as Fiji's Cell Counter saves its markers (``CellCounter_<image>.xml``), else
    None: the only XML read as ground truth (a microscope's ``MetaData/<image>.xml`` beside an image is not)."""
    p = Path(os.fspath(path).replace("\\", "/"))
    if p.suffix.lower() == ".xml" and p.stem.lower().startswith(CELLCOUNTER_PREFIX) and len(p.stem) > len(CELLCOUNTER_PREFIX):
        stem = p.stem[len(CELLCOUNTER_PREFIX):]
        # Cell Counter names the file after the image's title, which keeps its extension unless Fiji dropped it
        inner = Path(stem)
        return inner.stem if inner.suffix.lower() in IMAGE_EXTENSIONS and inner.stem else stem
    return None


IMAGEJ_ROI_EXTENSIONS = (".roi", ".zip")
"""Fiji / ImageJ's ROIs: one ``.roi`` file (a multi-point selection, one outline) or the ROI Manager's set, a zip
of ``.roi`` files (``RoiSet.zip`` unless renamed)."""
_ROI_SET_WORDS = ("_roiset", "-roiset", " roiset", "_rois", "-rois", "_roi", "-roi")
_ROI_SET_PREFIXES = ("roiset_", "roiset-", "roiset ")


def imagej_roi_stem(path: str | os.PathLike) -> str | None:
    """The image stem of a file named as ImageJ ROIs of that image (``img01.roi``, ``img01_RoiSet.zip``,
    ``RoiSet_img01.zip``, ``img01_rois.zip``, ``img01.zip``, ``img01.tif.roi``), else None. A plain ``img01.zip`` may as well be a
    zip of images: the caller looks inside (:func:`cellcount.groundtruth.is_roi_set`)."""
    p = Path(os.fspath(path).replace("\\", "/"))
    if p.suffix.lower() not in IMAGEJ_ROI_EXTENSIONS:
        return None
    stem, low = p.stem, p.stem.lower()
    base = None if low == "roiset" else stem
    for word in _ROI_SET_WORDS:
        if low.endswith(word) and len(low) > len(word):
            base = stem[: -len(word)]
            break
    else:
        for prefix in _ROI_SET_PREFIXES:
            if low.startswith(prefix) and len(low) > len(prefix):
                base = stem[len(prefix):]
                break
    # a macro's getTitle() keeps the image's extension: img01.tif.roi, img01.tif_RoiSet.zip
    if base and Path(base).suffix.lower() in IMAGE_EXTENSIONS:
        base = Path(base).stem
    return base


def split_ground_truth_files(paths: Iterable[str | os.PathLike], *, roots: Iterable[str | os.PathLike] = (),
                             uploaded: bool = False) -> tuple[list[Path], list[Path]]:
    """Split file paths into (images, ground truth) by name convention.

    A file is ground truth when its stem ends with one of :data:`GROUND_TRUTH_SUFFIXES`
    (case-insensitive: ``a_labels.tif``, ``a_mask.png``, ``a_dots.png``, ``a_points.csv`` ...) or when it
    lies in a folder named like :data:`GROUND_TRUTH_DIRS` (``labels/``, ``masks/`` ...), just above it or at any
    depth within the searched folders ``roots`` (their own names included; the folders above them say nothing:
    :func:`ground_truth_base`), so that a tree of labels mirroring the images' (``labels/plate1/A01.png``) is
    ground truth; with ``uploaded``, the paths are upload names (``a.zip/labels/plate1/A01.png``), every folder in
    them searched. A file is also ground truth when named as Fiji's
    Cell Counter saves its markers (:func:`cell_counter_stem`). In a :data:`DOT_DIRS` folder (``dots/``,
    ``points/``), which may hold images of their own, a file is ground truth when it is named as one
    (``dots/001dots.png``, :func:`word_base`) or like an image in an ``images/`` folder beside it
    (``dots/a.png`` beside ``images/a.png``): counted, dot annotations read as cells. In any folder, a file named
    for its role beside an image named for its own (``001dots.png`` beside ``001cell.png``,
    :func:`role_word_ground_truth`) is ground truth too.

    Returns
    -------
    images, ground_truth : list of pathlib.Path
        Both in input order.
    """
    images: list[Path] = []
    gt: list[Path] = []
    paths = [Path(item) for item in paths]
    base = ground_truth_base(roots)
    # images in an images/ folder beside the dots/ one: microscopes restart their numbering per folder, so a
    # same-named file in any other folder (ctrl/img001.tif beside points/img001.tif) says nothing
    beside = {(p.parent.parent, p.stem.casefold()) for p in paths if p.parent.name.lower() in IMAGE_WORDS}
    # VGG cells' own layout: 001dots.png beside 001cell.png in one folder (as Evaluate pairs them)
    role_words = role_word_ground_truth([(p.parent, p.stem) for p in paths])
    for path, role_word in zip(paths, role_words, strict=True):
        dots = role_word or path.parent.name.lower() in DOT_DIRS and (
            word_base(path.stem, GROUND_TRUTH_WORDS) is not None
            or (path.parent.parent, path.stem.casefold()) in beside)
        if (dots or ground_truth_suffix(path) or path.parent.name.lower() in GROUND_TRUTH_DIRS
                or _in_ground_truth_tree(path, base, uploaded=uploaded) or cell_counter_stem(path)):
            gt.append(path)
        else:
            images.append(path)
    return images, gt


def searched_folders(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The folders that :func:`list_image_files` searches for ``paths``: each folder given, and a glob pattern's
    folder before its first wildcard (``tree`` for ``'tree/**/*.png'``); files given are none."""
    out = []
    for item in paths:
        text = os.fspath(item)
        if _has_glob(text):
            fixed = list(itertools.takewhile(lambda part: not _has_glob(part), Path(text).parts))
            out.append(Path(*fixed) if fixed else Path("."))
        elif os.path.isdir(text):
            out.append(Path(text))
    return out


def ground_truth_base(roots: Iterable[str | os.PathLike]) -> Path | None:
    """The folder whose subfolders :func:`split_ground_truth_files` searches for ground-truth folder names: the one
    above the searched folders' common folder (absolute), so that their own names count (``count tree/labels``) and
    the folders above them do not (``/data/gt/run1/images/a.png`` is an image when ``/data/gt/run1`` is searched);
    ``count tree/images/p1 tree/labels/p1`` (a shell's glob) searches ``tree``. None without searched folders."""
    absolute = [os.path.abspath(r) for r in roots]
    if not absolute:
        return None
    try:
        return Path(os.path.commonpath(absolute)).parent
    except ValueError:  # folders on different drives share none
        return None


def _in_ground_truth_tree(path: Path, base: Path | None, *, uploaded: bool = False) -> bool:
    """``path`` lies in a :data:`GROUND_TRUTH_DIRS` folder below ``base`` (:func:`ground_truth_base`), or, with
    ``uploaded``, anywhere in its name."""
    if uploaded:
        inside = path.parts[:-1]
    elif base is None:
        return False
    else:
        try:
            inside = Path(os.path.abspath(path)).relative_to(base).parts[:-1]
        except ValueError:  # not below the searched folders: a file named on the command line
            return False
    return any(part.lower() in GROUND_TRUTH_DIRS for part in inside)
