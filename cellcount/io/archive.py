"""Reading zip archives of uploads safely: members by extension, within file and byte budgets."""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from cellcount.errors import ImageReadError

from .files import IMAGE_EXTENSIONS, MICROSCOPE_EXTENSIONS, microscope_file_problem

DEFAULT_ZIP_MAX_FILES = 5000
DEFAULT_ZIP_MAX_BYTES = 2 << 30  # total uncompressed bytes accepted from one zip


def _safe_member_name(name: str) -> str | None:
    """Normalised member path, or None when it escapes the archive (absolute, '..', drive letters)."""
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) > 1 and n[1] == ":"):
        return None
    norm = posixpath.normpath(n)
    if norm.startswith("../") or norm == ".." or "/../" in f"/{norm}/":
        return None
    return norm


NOT_WANTED = "not "
"""How the reason of a member left out for its kind starts ("not an image file (extension .txt): skipped"): a
readme or a thumbnail database in a zip of images is not a failure (:func:`left_out`)."""


def left_out(reason: str | None) -> bool:
    """Whether a zip member's ``reason`` says it was left out for its kind (not an image, not a supported file),
    as a folder's other files are, rather than for a problem (unsafe path, a cap, a damaged member)."""
    return reason is not None and reason.startswith(NOT_WANTED)


# QuPath's .tsv and .geojson, Fiji's Cell Counter .xml, ImageJ's .roi and ROI sets (a zip of .roi files)
GROUND_TRUTH_TABLE_EXTENSIONS = frozenset({".csv", ".tsv", ".xml", ".geojson", ".roi", ".zip"})
"""Extensions of ground truth other than images (point tables, ``filename,count`` tables, annotation files)
accepted in labelled zips."""


OS_FILES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r", ".localized"})
"""Files an operating system leaves in folders (Finder's ``.DS_Store`` and a folder icon's ``Icon\r``, Windows'
``Thumbs.db`` and ``desktop.ini``), compared in lower case: no user's file, left out unsaid as ``._`` files are."""


def is_zip_metadata(name: str) -> bool:
    """Whether a zip member (or an uploaded file) is an operating system's metadata (``__MACOSX/``, ``._name``,
    :data:`OS_FILES`), not a user's file."""
    name = name.replace("\\", "/")
    base = posixpath.basename(name)
    return "__MACOSX/" in name or base.startswith("._") or base.lower() in OS_FILES


_UTF8_FLAG = 0x800


def open_zip(source: bytes | object) -> zipfile.ZipFile:
    """A zip (its bytes, a path or a binary file) opened for reading, its members' names as the user wrote them.

    Info-ZIP (Linux's ``zip``) stores UTF-8 names without the flag that says so, which Python then reads as
    code page 437: ``A05_µm.png`` becomes ``A05_┬╡m.png`` in a batch's table and CSVs, matching no file.
    A name without the flag that is valid UTF-8 once taken back to its bytes is read as UTF-8; others as they are."""
    zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    for info in zf.infolist():
        if info.flag_bits & _UTF8_FLAG or info.filename.isascii():
            continue
        try:
            name = info.filename.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue  # truly code page 437 (or another): kept as read
        if name in zf.NameToInfo:  # another member has that name already: read by its info, keep the first's key
            info.filename = name
            continue
        if zf.NameToInfo.get(info.filename) is info:  # (a zip may hold one raw name twice)
            del zf.NameToInfo[info.filename]
        info.filename = name  # the local header is checked against orig_filename, which stays
        zf.NameToInfo[name] = info
    return zf


def zip_files(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The files of an open zip, without folders and macOS metadata."""
    return [i for i in zf.infolist() if not i.is_dir() and not is_zip_metadata(i.filename)]


def _head(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """A member's first 4 bytes (None where it cannot be read)."""
    try:
        with zf.open(info) as fh:
            return fh.read(4)
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError):
        return None


def _walk(zf: zipfile.ZipFile, extensions: Iterable[str], max_files: int, max_bytes: int):
    """``(info, name, reason)`` per member the readers consider: reason None for members to read, else why it is
    skipped; folders and macOS metadata are left out silently. One walk for reading and for counting."""
    wanted = {e.lower() for e in extensions}
    kind = "an image file" if wanted <= set(IMAGE_EXTENSIONS) else "a supported file"
    total = n = 0
    # by path (plate2/A01 before plate2/A02), not in the order the zip was written in
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        if info.is_dir():
            continue
        safe = _safe_member_name(info.filename)
        if safe is None:
            yield info, info.filename, "unsafe path in zip (absolute or '..'): skipped"
            continue
        if is_zip_metadata(safe):
            continue  # macOS metadata, not user files
        base = posixpath.basename(safe)
        suffix = Path(base).suffix.lower()
        disguised = False  # a microscope format that is a TIFF inside (.svs, .lsm): read, as a folder's or an upload's
        if suffix in MICROSCOPE_EXTENSIONS:
            head = _head(zf, info) if wanted & set(IMAGE_EXTENSIONS) else None
            if why := microscope_file_problem(base, head):  # the images the user meant, in a format not read
                yield info, safe, why
                continue
            disguised = True
        if suffix == ".zip" and suffix not in wanted:  # its images are not opened: said how to have them counted
            yield info, safe, (f"{NOT_WANTED}{kind}: a zip inside a zip is not opened; upload it on its own, or zip its "
                               "images with the others")
            continue
        if suffix not in wanted and not disguised:
            yield info, safe, f"{NOT_WANTED}{kind} (extension {Path(base).suffix or 'none'}): skipped"
            continue
        n += 1
        total += info.file_size
        if n > max_files:
            what = "images" if kind == "an image file" else "files"
            yield info, safe, f"zip holds more than {max_files} {what}: skipped"
        elif total > max_bytes:
            yield info, safe, f"zip expands beyond the cap of {max_bytes:,} bytes (max_bytes): skipped"
        else:
            yield info, safe, None


def zip_image_names(data: bytes, *, max_files: int = DEFAULT_ZIP_MAX_FILES,
                    max_bytes: int = DEFAULT_ZIP_MAX_BYTES) -> list[str] | None:
    """The member names of the images :func:`iter_zip_images` would read from ``data`` (from the directory,
    nothing inflated), or None when it is no readable zip."""
    try:
        with open_zip(data) as zf:
            return [name for _, name, reason in _walk(zf, IMAGE_EXTENSIONS, max_files, max_bytes) if reason is None]
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def count_zip_images(data: bytes, *, max_files: int = DEFAULT_ZIP_MAX_FILES,
                     max_bytes: int = DEFAULT_ZIP_MAX_BYTES) -> int | None:
    """How many images :func:`iter_zip_images` would read from ``data`` (:func:`zip_image_names`), or None
    when it is no readable zip."""
    names = zip_image_names(data, max_files=max_files, max_bytes=max_bytes)
    return None if names is None else len(names)


def iter_zip_images(
    data: bytes, *, max_files: int = DEFAULT_ZIP_MAX_FILES, max_bytes: int = DEFAULT_ZIP_MAX_BYTES
) -> Iterator[tuple[str, bytes | None, str | None]]:
    """Yield ``(name, image_bytes, None)`` for images in a zip and ``(name, None, reason)`` for skipped members.

    Nested folders are walked; folders, macOS resource forks, non-image files, path-traversal names and
    members beyond the file/byte budget are reported with a reason. A corrupt zip raises ImageReadError.
    """
    return iter_zip_members(data, extensions=IMAGE_EXTENSIONS, max_files=max_files, max_bytes=max_bytes)


def iter_zip_members(
    data: bytes,
    *,
    extensions: Iterable[str],
    max_files: int = DEFAULT_ZIP_MAX_FILES,
    max_bytes: int = DEFAULT_ZIP_MAX_BYTES,
) -> Iterator[tuple[str, bytes | None, str | None]]:
    """:func:`iter_zip_images` for members with any of ``extensions`` (lower case, with the dot).

    Ground-truth zips need images and CSV tables: ``extensions=IMAGE_EXTENSIONS | {".csv"}``. The same
    safety checks apply; ``max_files`` counts every accepted member.
    """
    try:
        zf = open_zip(data)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ImageReadError(f"not a readable zip file: {err}") from err
    with zf:
        for info, safe, reason in _walk(zf, extensions, max_files, max_bytes):
            if reason is not None:
                yield safe, None, reason
                continue
            try:
                # a bounded read: zf.read() inflates the whole stream at once, so a member whose header
                # claims a few bytes could still inflate to gigabytes in memory; the CRC check catches it
                with zf.open(info) as fh:
                    content = fh.read(info.file_size + 1)
                    if len(content) > info.file_size or fh.read(1):
                        raise zipfile.BadZipFile("member is larger than its header says")
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as err:
                yield safe, None, f"cannot extract from zip: {err}"
            else:
                yield safe, content, None
