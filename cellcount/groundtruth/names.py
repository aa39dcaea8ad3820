"""How ground truth is matched to images by name, and how lists of names are shown in messages."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from cellcount.io import (
    IMAGE_EXTENSIONS,
)
from cellcount.io.files import MICROSCOPE_EXTENSIONS


def name_key(name: str) -> str:
    """A file name as a table (or an upload, or a path under a folder) writes it -> the key images are matched by:
    forward slashes, no leading ``./``, no image extension (``2023.05.12_s1`` keeps its dots), not casefolded
    (:func:`match_names` compares casefolded)."""
    n = name.strip().replace("\\", "/")
    while n.startswith("./"):
        n = n[2:]
    p = PurePosixPath(n)  # a table may name the acquisition (A01.czi) of the TIFF exported from it
    return str(p.with_suffix("")) if p.suffix.lower() in (*IMAGE_EXTENSIONS, *MICROSCOPE_EXTENSIONS) else n


def match_names(keys: Iterable[str], images: Mapping[Any, str], anchored: Mapping[Any, str] | None = None
                ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Which image each of ``keys`` (:func:`name_key`) names, ``images`` mapping an image to its path (relative to
    its folder, or its name in an upload): the one whose path without extension is the key, or ends with
    ``/`` + the key, or is how the key ends (a table of full paths, as ``cellcount count`` writes them),
    casefolded (``A01.png`` names ``plate1/A01.png``; ``plate2/A01.png`` and ``/data/plate2/A01.png`` only that one).
    Returns (key -> image, key -> the images it could name when more than one: two plates' ``A01.png`` named
    without their folder, which no count or point may be given to silently). ``anchored``: each image's path with
    its folder's own name above it (:func:`_anchored`): a full path (``/data/plate2/A01.tif``) must run through it,
    so that it never names ``A01.tif`` of the folder ``plate1``."""
    paths = {img: folded(name_key(path)) for img, path in images.items()}
    full = {img: folded(name_key(path)) for img, path in (anchored or images).items()}
    by_last: dict[str, list[Any]] = {}
    for img, path in paths.items():
        by_last.setdefault(path.rsplit("/", 1)[-1], []).append(img)
    found: dict[str, Any] = {}
    ambiguous: dict[str, list[Any]] = {}
    for key in keys:
        k = folded(key)
        tail = full if k.startswith("/") or re.match(r"[a-z]:/", k) else paths
        hits = [img for img in by_last.get(k.rsplit("/", 1)[-1], [])
                if paths[img] == k or paths[img].endswith("/" + k) or k.endswith("/" + tail[img])]
        if len(hits) > 1:  # IMG01.png and img01.png, both in the table: each row names the one spelled like it
            exact = [img for img in hits if _spelled_as(key, images[img], (anchored or images)[img])]
            hits = exact if len(exact) == 1 else hits
        if len(hits) == 1:
            found[key] = hits[0]
        elif hits:
            ambiguous[key] = hits
    return found, ambiguous


def _spelled_as(key: str, path: str, anchored: str) -> bool:
    """Whether ``key`` names ``path`` as :func:`match_names` does, letter case kept."""
    k, p, a = (unicodedata.normalize("NFC", name_key(x)) for x in (key, path, anchored))
    return p == k or p.endswith("/" + k) or k.endswith("/" + a)


def folded(name: str) -> str:
    """``name`` compared casefolded and with its accents composed alike: a table saved on macOS writes ``é`` as
    ``e`` and a combining accent (NFD), where the file's name on disk has the one character (NFC)."""
    return unicodedata.normalize("NFC", name).casefold()


def listed(names: Sequence[str], most: int = 8) -> str:
    """Names for a message: all of them up to ``most``, else the first ones and how many more."""
    names = list(names)
    return ", ".join(names) if len(names) <= most else ", ".join(names[:most]) + f" and {len(names) - most} more"


def _names(paths: list[Path], most: int = 8) -> str:
    return listed([p.name for p in paths], most)
