"""Ground-truth upload shared by Evaluate and Compare: images and ground truth through two uploaders.

Not a page. Pairing and reading live in :func:`cellcount.labelled.labelled_set`; this module draws the
uploaders, caches the pairing on the uploads' digests and says what was paired, skipped or uploaded twice.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Any

import pandas as pd
import streamlit as st

from cellcount.groundtruth import listed
from cellcount.io import GROUND_TRUTH_SUFFIXES, not_an_image
from cellcount.labelled import LabelledSet, labelled_set
from pages import _shared as sh

GT_TYPES = [*sh.IMAGE_TYPES, "csv", "tsv", "xml", "geojson", "roi", "zip",
            # taken to say why they are not read (Cellpose's _seg.npy, spreadsheets, .txt exports), not "not allowed"
            "npy", "xlsx", "xlsm", "xls", "ods", "numbers", "txt"]
GT_HELP = (
    "Instance label images or binary masks (PNG/TIFF; Cellpose's `_cp_masks.png`, StarDist's label TIFFs), dot "
    "images (one dot per cell), point CSVs in pixels (x,y, ImageJ's X,Y, row,col, CellProfiler's "
    "Location_Center_X/Y, QuPath's Centroid X/Y px; .csv or .tsv), Fiji Cell Counter's `CellCounter_img01.xml`, outlines or points as GeoJSON (`img01.geojson`, QuPath's export), ImageJ / Fiji ROIs (`img01.roi`, or the ROI Manager's set saved as `img01_RoiSet.zip`), or a counts "
    "CSV (`filename,count`; comma or semicolon; UTF-8 or Excel's UTF-16). A file belongs to the image with the "
    "same name (`img01.tif` for `img01.png`) or with a suffix (`img01_labels.tif`, `img01_mask.png`, "
    "`img01_dots.png`, `img01_points.csv`). A zip may hold folders such as `images/` + `labels/` (or `masks/`), "
    "or the DSB 2018 layout."
)
IMAGES_HELP = (
    "Images, or a zip of them. Ground truth named by convention (`img01_labels.tif`, a `labels/` folder in "
    "the zip, a counts CSV) may come through here too."
)
MAX_LISTED = 8

KIND_WORDS = {"labels": "label images", "mask": "masks", "points": "dots", "count": "counts only"}
"""How each ground-truth kind is named in the upload summary ("4 with dots", not "4 points")."""


def kind_word(gt: Any) -> str:
    """How a ground truth is named to the user: its kind, and outlines by where they came from (ImageJ's ROIs
    and GeoJSON are read into label images, but the user uploaded outlines)."""
    source = str(gt.source or "").lower()
    if gt.kind == "labels" and source.endswith((".roi", ".zip")):
        return "ImageJ ROIs"
    if gt.kind == "labels" and source.endswith(".geojson"):
        return "GeoJSON outlines"
    return KIND_WORDS.get(gt.kind, gt.kind)


def _digest(files: list[Any]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode("utf-8", "replace"))
        h.update(hashlib.sha256(f.getvalue()).digest())
    return h.hexdigest()


@st.cache_data(max_entries=4, ttl=sh.CACHE_TTL_S, show_spinner="Reading ground truth ...")
def _pair_cached(images_digest: str, gt_digest: str, _images: list[Any], _gt: list[Any]) -> LabelledSet:
    return labelled_set([(f.name, f.getvalue()) for f in _images], [(f.name, f.getvalue()) for f in _gt])


def _names(names: list[str], most: int = MAX_LISTED) -> str:
    return listed([f"`{n}`" for n in names], most)


GT_WORDS = tuple(x.strip("_") for x in GROUND_TRUTH_SUFFIXES)
"""File names ending in these words (``001dots.png``) are likely ground truth, whatever their separator."""


def rename_hints(unused: list[str], unlabelled: list[str]) -> list[tuple[str, str]]:
    """(ground-truth file, the name that would pair it) for unmatched files that end in a ground-truth word and
    share the start of their name with one image left without ground truth (``009dots.png`` beside
    ``009cell.png``: ``009cell_dots.png``)."""
    import os.path
    from pathlib import PurePosixPath

    out = []
    for name in unused:
        path = PurePosixPath(name)
        word = next((w for w in GT_WORDS if path.stem.lower().endswith(w)), None)
        if word is None:
            continue
        head = path.stem[: -len(word)].rstrip("_-. ")
        images = [i for i in unlabelled if head and PurePosixPath(i).stem.startswith(head)
                  and len(os.path.commonprefix([PurePosixPath(i).stem, path.stem])) >= len(head)]
        if len(images) == 1:
            out.append((name, f"{PurePosixPath(images[0]).stem}_{word}{path.suffix}"))
    return out


def lookalikes_note(found: LabelledSet) -> None:
    """A hint when images are named like ground truth (``001dots.png`` beside ``001cell.png``)."""
    lookalikes = [n for n, _ in found.unlabelled if sh.stem(n).lower().endswith(GT_WORDS)]
    if lookalikes:
        many = len(lookalikes) > 1
        st.info(f"{_names(lookalikes)} {'look' if many else 'looks'} like ground truth but "
                f"{'were' if many else 'was'} read as image(s): ground truth goes under Ground truth, named like "
                "its image (`001cell_dots.png` for `001cell.png`).", icon=":material/help:")


MAX_PAIRS_SHOWN = 100
"""Pairs listed in the "which annotation" table (each row is drawn on every rerun)."""


def _source_name(source: Any) -> str:
    """A ground truth's file as the user knows it: an upload's own name (a zip member's path in the zip), a
    file on this machine (the labelled samples) by its name, not the server's path."""
    text = str(source or "")
    return PurePath(text).name if PurePath(text).is_absolute() else text


def show_report(found: LabelledSet, *, optional: bool, without: str = "without ground truth") -> None:
    """What was paired, and every file that was not used, by the user's file names; ``without`` says what the
    images with no ground truth are (where it is optional)."""
    if found.items:
        kinds: dict[str, int] = {}
        for _, _, gt in found.items:
            kinds[kind_word(gt)] = kinds.get(kind_word(gt), 0) + 1
        st.caption(
            f"{len(found.items)} image(s) with ground truth ("
            + ", ".join(f"{n} with {k}" for k, n in kinds.items())
            + ")" + (f"; {n_without} {without}" if optional and (n_without := sum(
                not not_an_image(n, d) for n, d in found.unlabelled)) else "")  # a text file is no image without them
            + "."
            + (f" {empty} of them hold no objects: images without cells, or annotations whose export failed (a "
               "points CSV with only its header line, an all-black label image)." if (
                   empty := sum(gt.count == 0 for _, _, gt in found.items)) else "")
            + (" Binary masks are split into objects where they do not touch: touching nuclei in a mask count "
               "as one, so prefer instance label images." if KIND_WORDS["mask"] in kinds else "")
        )
        # the uploaders cut long names to "BM_GRAZ...01_000.png": here each image and its annotation in full
        with st.expander("Which annotation goes with which image"):
            rows = [{"image": name, "ground truth": _source_name(gt.source), "kind": kind_word(gt),
                     "objects": gt.count} for name, _, gt in found.items[:MAX_PAIRS_SHOWN]]
            st.table(pd.DataFrame(rows).set_index("image"))  # a static table: a few lines, no scrolling widget
            if len(found.items) > MAX_PAIRS_SHOWN:
                st.caption(f"... and {len(found.items) - MAX_PAIRS_SHOWN} more.")
    if found.duplicates:
        # one entry per extra copy; an image and its same-name labels both uploaded twice share a name
        extra = len(found.duplicates)
        st.info(
            f"{extra} extra cop{'y' if extra == 1 else 'ies'} of files uploaded more than once (the same file, or "
            "the same image under another name) left out; each file is used once: "
            f"{_names(sorted(set(found.duplicates)))}.",
            icon=":material/content_copy:",
        )
    if found.unlabelled and not optional:
        st.warning(
            f"{len(found.unlabelled)} image(s) have no ground truth and are left out: "
            f"{_names([n for n, _ in found.unlabelled])}. Upload a file of the same name (or `<name>_labels`, "
            "`_mask`, `_dots`, `_points`) under Ground truth, or list them in a counts CSV."
        )
    for note in found.notes:
        st.info(note, icon=":material/info:")
    unused = [n for n in found.unused if PurePath(n).name.lower() != "roiset.zip"]  # a note above says what to do
    if unused:
        renames = rename_hints(unused, [n for n, _ in found.unlabelled])
        images_here = images_among(unused) if not (found.items or found.unlabelled) else []
        how = ("Rename " + ", ".join(f"`{a}` to `{b}`" for a, b in renames) + "." if renames else
               f"Some of them are images ({_names(images_here[:3])}): put the images, or the zip holding images and "
               "their ground truth, in the Images uploader; ground truth there is told apart by its folder "
               "(labels/, masks/) or name (_labels, _mask, _points)." if images_here else
               "Name each like its image, or like its image with a suffix (`001cell_dots.png` or "
               "`001cell_labels.tif` for `001cell.png`); an annotation whose image you removed on purpose is only "
               "left out.")
        st.warning(f"{len(unused)} ground-truth file(s) match no image: {_names(unused)}. {how}")
    lookalikes_note(found)
    if found.skipped:
        groups = skipped_by_reason(found.skipped)
        lines = "\n".join(f"- {_names(names, 3)}: {reason}" for reason, names in list(groups.items())[:MAX_LISTED])
        more = f"\n- ... and {len(groups) - MAX_LISTED} more reasons" if len(groups) > MAX_LISTED else ""
        # an error when nothing is left to evaluate: the reasons are then what the user must read
        (st.warning if found.items else st.error)(f"{len(found.skipped)} file(s) could not be used:\n{lines}{more}")


def images_among(names: list[str]) -> list[str]:
    """The names that read as images beside others that read as ground truth (by extension, folder and suffix): a
    zip of images/ and labels/ dropped into the ground-truth box alone. Empty when none reads as ground
    truth: labels named exactly like their images, waiting for the images."""
    from cellcount.io import IMAGE_EXTENSIONS, split_ground_truth_files

    images, truth = split_ground_truth_files(names, uploaded=True)
    image_paths = {str(p) for p in images}
    found = [n for n in names if str(PurePath(n)) in image_paths and PurePath(n).suffix.lower() in IMAGE_EXTENSIONS]
    return found if truth else []


def skipped_by_reason(skipped: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The files that could not be used, by reason (each without its file name in front): eight QuPath tables in
    microns would give one long paragraph eight times."""
    groups: dict[str, list[str]] = {}
    for name, reason in skipped:
        text = reason
        for prefix in (name, PurePath(name).name, "<csv>"):
            text = text.removeprefix(f"{prefix}: ")
        groups.setdefault(text, []).append(name)
    return groups


def ground_truth_ui(prefix: str, *, optional: bool = False, gt_label: str | None = None,
                    without: str = "without ground truth", gt_help: str = GT_HELP) -> LabelledSet | None:
    """Images and ground-truth uploaders (keys ``<prefix>_files``, ``<prefix>_gt_files``) -> the pairing.

    None until something is uploaded. With ``optional``, ground truth is not required (Compare): images
    without it are kept in ``unlabelled`` and not warned about. ``gt_label``: the second uploader's label
    (default: what ground truth is there); ``without``: what the report calls images with none; ``gt_help``: its
    help (Train's says what a count alone can teach).
    """
    returning = sh.uploaders_empty(f"{prefix}_files", f"{prefix}_gt_files")
    a, b = st.columns(2)
    images = a.file_uploader(
        "Images (or a zip)", type=GT_TYPES, accept_multiple_files=True, key=f"{prefix}_files", help=IMAGES_HELP
    )
    gt = b.file_uploader(
        gt_label or ("Ground truth (optional; or a zip)" if optional else "Ground truth (or a zip)"),
        type=GT_TYPES,
        accept_multiple_files=True,
        key=f"{prefix}_gt_files",
        help=gt_help,
    )
    files = sh.kept_uploads(f"{prefix}_uploads", [list(images or []), list(gt or [])], returning=returning,
                            note=lambda kept: f"Showing the {sum(map(len, kept))} file(s) you uploaded earlier; "
                            "an image added on the left replaces all of them, annotations too (clear it with its x to get "
                            "them back); new ground truth on the right replaces only the ground truth.",
                            remove_key=f"{prefix}_forget_uploads", keep_beside={0: "image(s)"})
    if files is None:
        return None
    images, gt = files
    found = _pair_cached(_digest(images), _digest(gt), images, gt)
    if not optional and not gt and not (found.items or found.skipped or found.unused):  # the usual first step
        st.info(f"{len(found.unlabelled)} image(s) uploaded. Now add their ground truth on the right: label "
                "images or masks named like the images (or `<name>_labels`, `_mask`, `_dots`, `_points`), point "
                "CSVs, or a counts CSV.", icon=":material/arrow_forward:")
        lookalikes_note(found)
        return None
    show_report(found, optional=optional, without=without)
    return found
