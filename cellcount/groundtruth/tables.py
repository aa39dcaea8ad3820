"""Ground truth in tables: point CSVs (one image's, or many images' in one table) and per-image counts."""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np

from cellcount.errors import GroundTruthError
from cellcount.io import (
    IMAGE_EXTENSIONS,
)
from cellcount.io.files import MICROSCOPE_EXTENSIONS

from .names import name_key
from .truth import (
    MAX_COORDINATE_PX,
    MAX_GROUND_TRUTH_COUNT,
    GroundTruth,
    PredictedLabelsWarning,
    _name,
    _points_truth,
    from_corner_based,
)

CsvSource = str | os.PathLike | bytes | IO[bytes] | IO[str]


_FILENAME_COLUMNS = ("filename", "file_name", "file", "image", "image_name", "image_id", "name", "path", "slice")
"""Header names of the image's file name in a counts table (``Image Name`` reads as ``image_name``). ``slice``: Fiji's
Analyze Particles summary (Slice, Count, Total Area ...), whose Slice is the image's title; in a table of points
(Fiji's Multi-point Results: X, Y, Slice, Counter, Count) it is a plane's number, and the table is not one of counts."""


_COUNT_COLUMNS = ("count", "cell_count", "n_cells", "cells", "nuclei", "nuclei_count", "n_nuclei", "nucleus_count")
_REGION_COUNT_COLUMNS = ("num detections", "num cells")
"""The number of objects in each row's region (QuPath's annotation measurements: an annotation's centroid and its
'Num Detections'): a table of counts, never one point per row."""
_PREFIXED_NAME, _PREFIXED_COUNT = "filename_", "count_"
"""CellProfiler's Image table: ``FileName_<channel>`` and ``Count_<objects>`` (its objects tables get the first
when exported with the images' file names)."""


_POINT_COLUMN_PAIRS = (  # (row column, col column), lower-case
    ("row", "col"),
    ("row", "column"),
    ("y", "x"),
    ("centroid-0", "centroid-1"),
    ("centroid_row", "centroid_col"),
    ("ym", "xm"),
    ("location_center_y", "location_center_x"),  # CellProfiler's objects table
    ("centroid y px", "centroid x px"),  # QuPath's detections in pixels
    ("centroid_y", "centroid_x"),
)


_IMAGE_COLUMNS = ("imagenumber", "image", "image_name", "filename", "file")
"""Columns that name the image of each point in a table of many images' points."""


_MICRON_MARKS = ("µm", "μm", "um", "micron")
"""Header words of coordinates in calibrated units (QuPath's "Centroid X µm", a calibrated Fiji table)."""


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------
_PLAUSIBLE = frozenset("ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝßàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿŒœ"  # the accents of names
                       "€…‘’“”„–—•°µ§±×²³½«»")  # and the signs of notes and units
"""Characters a European table plausibly holds beyond ASCII, by which cp850 and Mac Roman are told apart."""


def _plausibility(text: str) -> int:
    """Plausible characters beyond ASCII less twice the others (box drawing, control codes, odd symbols)."""
    return sum(1 if ch in _PLAUSIBLE else -2 for ch in text if ord(ch) > 127)


def _decode_csv(raw: bytes) -> str:
    """CSV bytes -> text: UTF-16 (Excel's "Unicode text", with a BOM or plainly interleaved with NULs),
    UTF-8 with or without a BOM, else Windows-1252 where it decodes, else the 8-bit encoding of Excel's that reads
    the more plausible characters: DOS's cp850 or Mac Roman. A cp850 or Mac Roman table that Windows-1252 decodes is
    read wrong (``Maße`` in cp850 reads ``Maáe``): its rows then name no image, and say to save it as CSV UTF-8."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    if len(raw) >= 4 and raw[1:4:2] == b"\x00\x00" and raw[0:4:2] != b"\x00\x00":
        return raw.decode("utf-16-le")
    if len(raw) >= 4 and raw[0:4:2] == b"\x00\x00" and raw[1:4:2] != b"\x00\x00":
        return raw.decode("utf-16-be")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:  # Windows-1252, Excel's usual CSV, wherever it decodes (its signs and rarer letters make a guess unsafe)
        return raw.decode("cp1252")
    except UnicodeDecodeError:  # it leaves five bytes undefined: cp850's ü and É, Mac Roman's ç, è, ê, ù
        pass
    # Excel's "CSV (MS-DOS)" or "CSV (Macintosh)" (both decode every byte): the more plausible, in a tie Mac Roman
    # where lines end with CR alone, as the Mac's did
    mac_lines = b"\r" in raw and b"\n" not in raw
    read = [raw.decode(encoding) for encoding in (("mac_roman", "cp850") if mac_lines else ("cp850", "mac_roman"))]
    return max(read, key=_plausibility)


ACCENTS_ADVICE = ("names with accented letters may have been read in the wrong encoding: save the table as "
                  "'CSV UTF-8' (Excel: File > Save As)")
"""Said beside rows of a table naming no image where a name holds letters beyond ASCII."""


def unicode_text(raw: bytes) -> bool:
    """Whether CSV bytes are UTF-8 or UTF-16 (read without a guess), not one of the 8-bit encodings."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (len(raw) >= 4 and b"\x00" in raw[:4]):
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def accents_note(names: Sequence[str], raw: bytes) -> str:
    """'; names with accented letters ...' where any of ``names`` holds a letter beyond ASCII and the table ``raw``
    was read in a guessed 8-bit encoding, else ''."""
    return f"; {ACCENTS_ADVICE}" if any(not name.isascii() for name in names) and not unicode_text(raw) else ""


SPREADSHEET_EXTENSIONS = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
_CELL_COUNTER_ROOT = b"<CellCounter_Marker_File"


def _looks_tabular(head: bytes) -> bool:
    """Whether a text file's first bytes (up to 4096) are lines of a table as Excel saves one as text: its first lines
    (up to 3, at least 2) split alike by tabs (a README's prose, commas and all, is not)."""
    try:
        lines = [line for line in _decode_csv(head).splitlines() if line.strip()]
        lines = lines[:-1] if len(head) >= 4096 else lines  # the last may be cut short
        lines = lines[:3]
    except UnicodeDecodeError:
        return False
    return len(lines) >= 2 and len({line.count("\t") for line in lines}) == 1 and lines[0].count("\t") >= 1


def unread_annotation_note(name: str, head: bytes = b"") -> str | None:
    """Why a file a user may take for an annotation is not read, and what to do, or None: a spreadsheet, a .txt
    export of a table, or Fiji Cell Counter markers under a name that names no image (the last two by ``head``, the
    file's first bytes)."""
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    stem = PurePosixPath(name.replace("\\", "/")).stem
    if suffix in SPREADSHEET_EXTENSIONS:
        return ("a spreadsheet is not read: save its table as CSV (Excel: File > Save As > 'CSV UTF-8'; "
                "LibreOffice: 'Text CSV')")
    if suffix == ".txt" and not head:  # a zip's member, not opened
        return (f"a .txt file is not read: if it is a table (Excel's 'Unicode Text' is one, tab separated), rename it "
                f"{stem}.tsv")
    if suffix == ".txt" and _looks_tabular(head):
        return f"a .txt file is not read: it looks like a table (Excel's 'Unicode Text' is one): rename it {stem}.tsv"
    if suffix == ".xml" and _CELL_COUNTER_ROOT.lower() in head[:4096].lower():
        return ("it holds Fiji Cell Counter markers, which are read under the name Cell Counter gives them: rename it "
                "CellCounter_<image>.xml, naming its image")
    return None


def _read_csv_text(source: CsvSource) -> tuple[str, str]:
    """Return (name, text) of a CSV given as path, bytes or file-like (see :func:`_decode_csv`)."""
    name = _name(source) or "<csv>"
    try:
        if isinstance(source, (str, os.PathLike)):
            raw: bytes | str = Path(source).read_bytes()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            raw = bytes(source)
        elif hasattr(source, "read"):
            raw = source.read()
        else:
            raise TypeError(f"CSV source must be a path, bytes or file-like, not {type(source).__name__}")
        text = _decode_csv(bytes(raw)) if isinstance(raw, (bytes, bytearray)) else str(raw).lstrip("\ufeff")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as err:
        raise GroundTruthError(f"{name}: cannot read CSV: {err}") from err
    if "\x00" in text:
        raise GroundTruthError(f"{name}: not a text CSV (it holds NUL bytes)")
    text = re.sub(r"\r(?!\n)", "\n", text)  # Excel for Mac's "CSV (Macintosh)" ends its lines with CR alone
    text = unicodedata.normalize("NFC", text)  # names written on macOS spell é as e and an accent, as files seldom do
    first, _, rest = text.partition("\n")
    if re.fullmatch(r"\s*sep=.\s*", first, flags=re.IGNORECASE):  # Excel's separator line: the header follows it
        text = rest
    if not text.strip():
        raise GroundTruthError(f"{name}: CSV file is empty")
    return name, text


CSV_DELIMITERS = (",", ";", "\t")
"""Field separators recognised from a CSV's header line: comma, semicolon (Excel in locales whose decimal
mark is a comma, where numbers are then read with a decimal comma too) and tab."""


def _delimiter(text: str) -> str:
    """The separator of the first non-empty line: the one of :data:`CSV_DELIMITERS` it holds most often
    outside quotes (comma on a tie or when none appears)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    unquoted = "".join(part for i, part in enumerate(first.split('"')) if i % 2 == 0)
    counts = {d: unquoted.count(d) for d in CSV_DELIMITERS}
    best = max(CSV_DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _csv_rows(name: str, text: str, *, raw: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, lowercased and stripped, data rows); ``raw``: (the first row as written, data rows)."""
    delimiter = _delimiter(text)
    try:
        rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise GroundTruthError(f"{name}: malformed CSV: {err}") from err
    if not rows:
        raise GroundTruthError(f"{name}: CSV file is empty")
    header = [h.strip().strip("\ufeff") if raw else h.strip().strip("\ufeff").lower() for h in rows[0]]
    return header, rows[1:]


def _number(cell: str, *, decimal_comma: bool = False) -> float:
    """A CSV cell as a float (NaN when it is not a number); ``decimal_comma``: "12,5" is 12.5."""
    try:
        return float(cell.replace(",", ".") if decimal_comma and cell.count(",") == 1 else cell)
    except ValueError:
        return float("nan")


def _point_columns(header: list[str]) -> tuple[int, int] | None:
    """(row index, col index) into the header, or None when no known coordinate columns exist."""
    for row_name, col_name in _POINT_COLUMN_PAIRS:
        if row_name in header and col_name in header:
            return header.index(row_name), header.index(col_name)
    axes = sorted((int(h[5:]), i) for i, h in enumerate(header) if h.startswith("axis-") and h[5:].isdigit())
    if len(axes) >= 2:  # napari: axis-0 = row, axis-1 = col; 3-D points: the last two axes
        return axes[-2][1], axes[-1][1]
    return None


def _name_column(header: list[str], names: Sequence[str]) -> int | None:
    """The first of ``names`` in the header, else its first CellProfiler ``FileName_<channel>`` column."""
    found = next((header.index(c) for c in names if c in header), None)
    if found is None:
        found = next((i for i, h in enumerate(header) if h.startswith(_PREFIXED_NAME)), None)
    return found


def _prefixed_counts(header: list[str]) -> list[int]:
    """CellProfiler's ``Count_<objects>`` columns."""
    return [i for i, h in enumerate(header) if h.startswith(_PREFIXED_COUNT) and len(h) > len(_PREFIXED_COUNT)]


def _region_count_column(header: list[str]) -> int | None:
    return next((header.index(c) for c in _REGION_COUNT_COLUMNS if c in header), None)


def _words(header: list[str]) -> list[str]:
    """Header names with their spaces as underscores: Excel's ``Image Name`` and ``Cell Count`` read as
    ``image_name`` and ``cell_count``."""
    return ["_".join(h.split()) for h in header]


def several_counts(header: list[str]) -> list[int]:
    """The count columns of a header when it has more than one (``n_nuclei`` and ``n_cells``, CellProfiler's
    ``Count_Nuclei`` and ``Count_Cells``): which objects to score is the user's to say. Empty otherwise."""
    words = _words(header)
    named = [i for i, w in enumerate(words) if w in _COUNT_COLUMNS]
    if len(named) > 1 and "count" not in words:  # a column named count is the count (cells: HeLa beside it)
        return named
    prefixed = _prefixed_counts(header)
    return prefixed if not named and len(prefixed) > 1 else []


def _count_columns(header: list[str]) -> tuple[int, int] | None:
    words = _words(header)
    file_col = _name_column(words, _FILENAME_COLUMNS)
    named = [i for i, w in enumerate(words) if w in _COUNT_COLUMNS]
    if "count" in words:  # the count, whatever else is named like one (a cell line in a "cells" column)
        named = [words.index("count")]
    count_col = named[0] if len(named) == 1 else None if named else _region_count_column(header)
    if count_col is None and not named and len(_prefixed_counts(header)) == 1:  # several: the user's to say
        count_col = _prefixed_counts(header)[0]
    if file_col is not None and words[file_col] == "slice" and _point_columns(header) is not None:
        file_col = None  # Fiji's Multi-point Results: Slice is a plane's number beside each point
    if file_col is None or count_col is None:
        return (0, 1) if _headerless_counts(header) else None
    return file_col, count_col


def _decimal_comma(text: str) -> bool:
    """Whether a table's numbers may have a decimal comma: separated by semicolons (Excel's "CSV" where the decimal
    mark is a comma) or tabs (Excel's "Unicode text"), where a comma cannot separate fields."""
    return _delimiter(text) in (";", "\t")


def _headerless_counts(first_row: list[str]) -> bool:
    """Whether a table's first row is an image's name and its count (``A01.tif,34``, as Excel saves two columns
    typed without titles): the table is then read from that row on, name first."""
    cells = [c.strip() for c in first_row]
    if len(cells) != 2 or not cells[0]:
        return False
    named_image = PurePosixPath(cells[0].replace("\\", "/")).suffix.lower() in (*IMAGE_EXTENSIONS, *MICROSCOPE_EXTENSIONS)
    value = _number(cells[1])
    return named_image and bool(np.isfinite(value)) and value >= 0 and value == int(value)


_PREDICTION_COLUMNS = ("count_estimate", "check_score")
"""Columns of the counts tables cellcount writes (:data:`cellcount.batch.COUNT_COLUMNS`), which no ground truth has."""


def is_cellcount_counts(header: list[str]) -> bool:
    """A table header (lower-case) of cellcount's own counts (``cellcount count``, the Batch page): the model's
    predictions, which read as ground truth would score the model against itself."""
    return "model" in header and any(c in header for c in _PREDICTION_COLUMNS)


def is_cellcount_objects(header: list[str]) -> bool:
    """A table header (lower-case) of cellcount's own object table (``count --objects``, the pages' objects
    download) or a density model's approximate centres (the Count page's centres CSV): the model's objects, never
    the ground truth of its images."""
    if "label" not in header:
        return False
    return ("area_px" in header and "equivalent_diameter_px" in header) or (
        "density" in header and "centroid_row" in header and "centroid_col" in header)


def is_labels_index(raw: bytes) -> bool:
    """Whether a CSV is the index cellcount writes beside its label images (``labels_index.csv``: ``file`` and
    ``labels_file`` columns), which pairs them with their images and is no ground truth of its own."""
    try:
        first = _decode_csv(raw[:1024]).splitlines()[:1]
    except UnicodeDecodeError:
        return False
    return bool(first) and [c.strip().strip('"').lower() for c in first[0].split(",")] == ["file", "labels_file"]


def predicted_counts_message(name: str) -> str:
    return (f"{name} holds cellcount's own counts (its columns model, count_estimate, check_score), not ground truth: "
            "not used. If you corrected its counts by hand, keep only its file and count columns")


TWO_FOLDERS_EXAMPLE = "plate1/A01.png and plate2/A01.png"

TABLE_EXTENSIONS = (".csv", ".tsv")
"""Tables of points or counts: comma, semicolon or tab separated (QuPath saves its measurements as .tsv)."""


def _read_bounded(source: CsvSource, limit: int, unnamed: str, why: str) -> tuple[str, bytes]:
    """(name, bytes) of a path, bytes or file-like, refused beyond ``limit`` bytes (``why`` says what that means)."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(source, "rb") as fh:
            data = fh.read(limit + 1)
    elif isinstance(source, (bytes, bytearray)):
        name, data = unnamed, bytes(source)
    else:
        name = getattr(source, "name", unnamed)
        data = source.read(limit + 1)
        data = data.encode("utf-8") if isinstance(data, str) else data
    if len(data) > limit:
        raise GroundTruthError(f"{name}: over {limit >> 20} MB: {why}")
    return name, data


class SeveralRegionsWarning(UserWarning):
    """A table of regions with their counts (QuPath's annotation measurements) gives an image several regions: that
    image is left out, the others keep their counts."""


class NoCoordinateColumns(GroundTruthError):
    """A CSV read as points has no coordinate columns (nor coordinates in microns): not a table of points at all,
    unlike one whose points cannot be used (in microns, of several images, a bad value)."""


def read_points_csv(source: CsvSource) -> GroundTruth:
    """Read point annotations (one row per cell) from a CSV.

    Recognised columns (case-insensitive): ``row, col`` / ``y, x`` (Fiji) / ``YM, XM`` (Fiji's centre of mass) /
    ``axis-0, axis-1`` (napari; for 3-D points the last two axis columns) / ``centroid-0, centroid-1``
    (scikit-image) / ``Location_Center_Y, Location_Center_X`` (CellProfiler) / ``Centroid Y px, Centroid X px``
    (QuPath). Coordinates are pixels; ``x`` is the column and ``y`` the row. Columns in microns (QuPath's
    ``Centroid X µm``) are refused, saying how to export pixels; Fiji writes calibrated units without saying so
    unless the image is uncalibrated: convert those to pixels first. A table of several images' objects (an
    ``ImageNumber`` or ``Image`` column with more than one value: CellProfiler's, QuPath's project exports) is
    refused: one table per image.

    Parameters
    ----------
    source : str, os.PathLike, bytes or file-like
        The CSV.

    Returns
    -------
    GroundTruth
        ``kind='points'``, ``points`` float64 (N, 2) of (row, col).

    Raises
    ------
    GroundTruthError
        No coordinate columns, a non-numeric or negative coordinate (the message names the line),
        unreadable or empty file.
    """
    name, text = _read_csv_text(source)
    header, rows = _csv_rows(name, text)
    decimal_comma = _decimal_comma(text)
    cols = _point_columns(header)
    if cols is None and header and all(np.isfinite(_number(c.strip(), decimal_comma=decimal_comma)) for c in header):
        raise NoCoordinateColumns(f"{name}: no header line (the first row is numbers, {header}); add one naming the "
                               "columns, e.g. x,y (x is the column, y the row)")
    if cols is None:
        if problem := _microns_problem(name, header, text):
            raise GroundTruthError(problem)
        raise NoCoordinateColumns(
            f"{name}: no coordinate columns found in header {header}; expected x,y or row,col or "
            "axis-0,axis-1 (also Location_Center_X,Location_Center_Y from CellProfiler, Centroid X px,Centroid Y px "
            "from QuPath)"
        )
    if (region := _region_count_column(header)) is not None:
        raise GroundTruthError(
            f"{name}: one row per region with its number of objects ({header[region]!r}: QuPath's annotation "
            "measurements), not one row per object: for the counts, name the table so that no image has its name "
            "(counts.tsv), where each image's row is read as its count; for points, export the detections")
    rows = _without_summary_rows(header, rows)
    own = is_cellcount_objects(header)
    if own and "file" in header and len({row[header.index("file")].strip() for row in rows
                                         if header.index("file") < len(row)}) > 1:
        raise GroundTruthError(f"{name} holds cellcount's own objects of several images (its columns label, area_px "
                               "or density): a model's output, not ground truth, so it is not split by image. If you "
                               "corrected it by hand, keep each image's rows in a table of its own named like it "
                               "(img01_points.csv)")
    raw = _csv_rows(name, text, raw=True)[0]
    imagej = imagej_results(raw)  # its fractions put a pixel's centre at +0.5, split by image or not
    titled = imagej or "Label" in [h.strip() for h in raw]  # ImageJ's Label names images by their titles
    image_columns = [*_IMAGE_COLUMNS, *(h for h in header if h.startswith(_PREFIXED_NAME)), "label"]
    for column in image_columns:  # one table for many images: every image would get all their objects
        if column in header:
            i = header.index(column)
            values = sorted({row[i].strip() for row in rows if i < len(row)})
            if column == "label":  # Fiji's image titles; classes (alive, dead) or ROI names name no image
                values = sorted({t for v in values if (t := _label_image(v, imagej=titled)) is not None})
            if len(values) > 1:
                where = ("; or put it beside the images (a folder, or with them in an upload), where it is split by "
                         "that column")
                if column == "label":  # split beside the images only where each label is a file name
                    where = ("; or put it beside the images, where it is split by its Label when each names an image "
                             "file with its extension (img01.png:0001-0001)")
                    if not all(_IMAGEJ_LABEL.match(v) or ":" in v for v in values):  # words, perhaps classes
                        where += (". If the column holds classes of one image's cells (alive, dead), name it 'class': "
                                  "ImageJ's Results name images in 'Label'")
                if column == "imagenumber":  # CellProfiler's objects table: images by number, not by name
                    where = (". CellProfiler names images by number there: export the objects with the images' file "
                             "names (ExportToSpreadsheet: add the image file and folder names to the object data "
                             "file), which is split by image when put beside the images, or score the counts "
                             "of its Image table (FileName_ and Count_ columns)")
                raise GroundTruthError(
                    f"{name}: the points of {len(values)} images ({column!r} column: {', '.join(values[:3])}"
                    f"{', ...' if len(values) > 3 else ''}): ground truth needs one table per image, named like it "
                    f"(img01_points.csv){where}")
    if own:  # one image's: read, as a label image cellcount wrote is, and said
        warnings.warn(f"{name}: a table of cellcount's own objects (its columns label, area_px or density): scoring "
                      "against it measures agreement with that count, not accuracy; use it as ground truth only once "
                      "corrected by hand", PredictedLabelsWarning, stacklevel=2)
    return _points_truth(_coordinates(name, header, rows, cols, decimal_comma, imagej=imagej), name)


def _coordinates(name: str, header: list[str], rows: list[list[str]], cols: tuple[int, int],
                 decimal_comma: bool, row_numbers: Sequence[int] | None = None, imagej: bool = False) -> np.ndarray:
    """float64 (N, 2) of the ``cols`` (row, col) of ``rows``; a bad value names its data row (``row_numbers``:
    each row's number in the file, default 1, 2, ...)."""
    points = np.zeros((len(rows), 2), dtype=np.float64)
    for k, row in enumerate(rows):
        for j, col in enumerate(cols):
            cell = row[col].strip() if col < len(row) else ""
            value = _number(cell, decimal_comma=decimal_comma)
            if not np.isfinite(value) or value < 0 or value > MAX_COORDINATE_PX:
                if k == len(rows) - 1 and not any(c.strip() for c in row[col:]):  # the last line stops short
                    raise GroundTruthError(
                        f"{name}: its last data row ({row_numbers[k] if row_numbers else k + 1}) stops before its "
                        f"{header[col]!r} value: the file looks cut off (saved or copied part-way?); export it again, "
                        "or remove that row")
                raise GroundTruthError(
                    f"{name}: data row {row_numbers[k] if row_numbers else k + 1}: coordinate {header[col]!r} = "
                    f"{cell!r} is not a non-negative number"
                )
            points[k, j] = value
    if _corner_based(header, cols[0], points, imagej):
        points = from_corner_based(points)
    return points


def imagej_results(raw: list[str]) -> bool:
    """Whether a table's header, as written, is an ImageJ Results table's: its capitalised coordinate columns (``X,Y``
    or ``XM,YM``) beside its unnamed row-number column or another of its measurements. A table pandas writes
    (``,x,y``: an unnamed index) or a user's ``X,Y`` alone is not one."""
    names = [h.strip() for h in raw]
    coords = {"X", "Y"} <= set(names) or {"XM", "YM"} <= set(names)
    return coords and (bool(names) and names[0] == "" or bool({"Area", "Mean", "Label", "XM"} & set(names)))


def _corner_based(header: list[str], row_col: int, points: np.ndarray, imagej: bool = False) -> bool:
    """Whether ``points`` (read from the row column ``row_col``) put a pixel's centre at +0.5, to be read as
    :func:`cellcount.groundtruth.truth.from_corner_based` reads them: QuPath's centroids always; ImageJ's (``XM,YM``, or
    ``X,Y`` in a table of its measurements) where they hold fractions: an object's centroid or centre of mass and a
    sub-pixel point (ImageJ adds 0.5), whereas a clicked point's ``X`` and ``XM`` are both its pixel's index. Plain
    x,y tables (ours, CellProfiler's, pandas' with its index) name pixels by index, and are read as they are.
    ``imagej``: the table is ImageJ's (:func:`imagej_results`)."""
    name = header[row_col]
    if name == "centroid y px":
        return True
    return name in ("y", "ym") and imagej and not np.array_equal(points, np.round(points))


_IMAGEJ_LABEL = re.compile(r"^([^:]+\.(?:png|tiff?|jpe?g|bmp))(?::.*)?$", re.IGNORECASE)
"""Fiji's Results ``Label`` of a measured point: ``img01.png`` or ``img01.png:0001-0001`` (image:ROI); a label
column of anything else (an object's number) names no image."""

_SUMMARY_LABELS = frozenset({"mean", "sd", "min", "max"})
"""Row labels of the statistics ImageJ's Analyze > Summarize appends below a Results table's rows: no points."""


def _without_summary_rows(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    """``rows`` without ImageJ's Summarize rows (:data:`_SUMMARY_LABELS` in its Label or row-number column), in
    a table with either column: read as dots, its Mean and SD rows would be two more cells."""
    where = [i for i, h in enumerate(header) if h == "label" or (i == 0 and h == "")]
    return [row for row in rows if not any(i < len(row) and row[i].strip().lower() in _SUMMARY_LABELS for i in where)]


def _label_image(value: str, *, imagej: bool) -> str | None:
    """The image a Label value names, or None: Fiji's ``img01.png`` or ``title:ROI``, and in ImageJ's Results
    (``imagej``: its ``Label`` column, capitalised) any title; not a number (an object's) nor, elsewhere, a word (a
    class: alive, dead)."""
    value = value.strip()
    if not value or np.isfinite(_number(value)):
        return None
    if m := _IMAGEJ_LABEL.match(value):
        return m.group(1)
    if ":" in value:
        return value.split(":", 1)[0]
    return value if imagej else None


_POINT_IMAGE_COLUMNS = ("image", "image_name", "filename", "file", "file_name")
"""Columns naming each point's image in a table of several images' points (QuPath's measurement export: Image)."""


def _microns_problem(name: str, header: list[str], text: str) -> str | None:
    """What to do about coordinate columns in microns (QuPath's ``Centroid X µm``), or None where there are none."""
    raw = next(csv.reader(io.StringIO(text), delimiter=_delimiter(text)))  # the user's own spelling
    microns = [r.strip().strip("\ufeff") for h, r in zip(header, raw, strict=False)
               if ("x" in h or "y" in h) and set(re.split(r"[^a-z0-9µμ]+", h)) & set(_MICRON_MARKS)]
    if not microns:
        return None
    return (f"{name}: the coordinates are in microns ({', '.join(repr(h) for h in microns[:2])}), and ground truth "
            "needs pixels: export them in pixels (QuPath: 'Centroid X px'; Fiji: Analyze > Set Scale > Click to "
            "Remove Scale, then measure again), or divide by the pixel size into columns named x,y")


def read_points_by_image(source: CsvSource) -> dict[str, GroundTruth] | None:
    """Split a table of several images' points by the column that names each point's image (``Image``,
    ``image_name``, ``filename``, ``file``: QuPath's export of a project's detections, one table from Fiji or a
    script): {:func:`name_key` of the image named, folders kept -> its points} (:func:`match_names` says which image
    each names); None when the table has no such column or no
    coordinate columns (another kind of table). Coordinates as :func:`read_points_csv` reads them; an image
    with a row but no point (a blank coordinate) is not made up: such rows are refused like any bad value.

    Raises
    ------
    GroundTruthError
        A bad coordinate (the message names the line), unreadable file.
    """
    name, text = _read_csv_text(source)
    header, rows = _csv_rows(name, text)
    rows = _without_summary_rows(header, rows)
    cols = _point_columns(header)
    column = _name_column(header, _POINT_IMAGE_COLUMNS)
    column = None if column is None else header[column]
    image_of = str.strip
    if column is None and cols is not None and "label" in header:  # Fiji's Results with "Display label" on
        i = header.index("label")
        if rows and all(i < len(row) and _IMAGEJ_LABEL.match(row[i].strip()) for row in rows):
            column, image_of = "label", lambda v: _IMAGEJ_LABEL.match(v.strip()).group(1)
    if column is not None and cols is None and _count_columns(header) is None and not is_cellcount_objects(header):
        if problem := _microns_problem(name, header, text):  # QuPath's project export, calibrated
            raise GroundTruthError(problem)
    if cols is None or column is None or is_cellcount_objects(header) or _region_count_column(header) is not None:
        return None  # not a table of points (regions with their counts are read as counts)
    i = header.index(column)
    decimal_comma = _decimal_comma(text)
    groups: dict[str, tuple[str, list[list[str]], list[int]]] = {}
    for k, row in enumerate(rows, start=1):
        value = image_of(row[i]) if i < len(row) else ""
        if not value:
            raise GroundTruthError(f"{name}: data row {k}: no image named in column {column!r}")
        stem = name_key(value)
        spelled, members, numbers = groups.setdefault(stem, (value, [], []))
        members.append(row)
        numbers.append(k)
    return {stem: _points_truth(_coordinates(name, header, members, cols, decimal_comma, numbers,
                                             imagej=imagej_results(_csv_rows(name, text, raw=True)[0])),
                                f"{name} ({column} {spelled})")
            for stem, (spelled, members, numbers) in groups.items()}


def read_counts_csv(source: CsvSource) -> dict[str, int]:
    """Read a table of per-image counts.

    Parameters
    ----------
    source : str, os.PathLike, bytes or file-like
        CSV with a file-name column (``filename``, ``file``, ``image``, ``file_name``, ``image_name``,
        ``image_id`` or ``name``) and a ``count`` column (also ``cell_count``, ``n_cells``, ``cells``);
        header names are case-insensitive.

    Returns
    -------
    dict of str to int
        Count per file stem (``'img01.png'`` and ``'sub/img01.tif'`` are both keyed ``'img01'``; a name without
        an image extension keeps its dots). :func:`read_counts_by_name` keeps the folders.

    Raises
    ------
    GroundTruthError
        Missing columns, a count that is not a non-negative whole number (the message names the row),
        or the same stem listed twice with different counts.
    """
    name, text = _read_csv_text(source)
    counts: dict[str, int] = {}
    for key, n in _counts_by_name(name, text).items():
        stem = key.rsplit("/", 1)[-1]
        if stem in counts and counts[stem] != n:
            raise GroundTruthError(f"{name}: {stem!r} is listed twice with counts {counts[stem]} and {n} (this reader "
                                   "keys images by file name alone)")
        counts[stem] = n
    return counts


def read_counts_by_name(source: CsvSource) -> dict[str, int]:
    """:func:`read_counts_csv`'s table keyed by each row's :func:`name_key` (folders kept: two plates' ``A01.png``
    are two rows), for :func:`match_names`. Raises as it does, for one name listed twice with two counts."""
    return _counts_by_name(*_read_csv_text(source))


def _counts_by_name(name: str, text: str) -> dict[str, int]:
    header, rows = _csv_rows(name, text)
    decimal_comma = _decimal_comma(text)
    cols = _count_columns(header)
    if _headerless_counts(header):  # no titles: the first row is data, its name as written
        rows = [_csv_rows(name, text, raw=True)[0], *rows]
    if cols is None and (several := several_counts(header)):
        raw = _csv_rows(name, text, raw=True)[0]
        raise GroundTruthError(
            f"{name}: counts of {len(several)} kinds of objects ({', '.join(raw[i] for i in several[:4])}): keep the "
            "column of the objects to score, or rename it count")
    if cols is None:
        raise GroundTruthError(
            f"{name}: expected columns 'filename' (or 'image' / 'file') and 'count', found {header}"
        )
    if is_cellcount_counts(header):
        raise GroundTruthError(predicted_counts_message(name))
    file_col, count_col = cols
    counts: dict[str, int] = {}
    several: dict[str, list[int]] = {}  # image -> its regions' counts (QuPath's annotation measurements)
    for k, row in enumerate(rows):
        filename = row[file_col].strip() if file_col < len(row) else ""
        cell = row[count_col].strip() if count_col < len(row) else ""
        where = f"{name}: data row {k + 1} ({filename or 'no file name'})"
        if not filename:
            raise GroundTruthError(f"{where}: the file name is empty")
        value = _number(cell, decimal_comma=decimal_comma)
        if not np.isfinite(value) or not 0 <= value <= MAX_GROUND_TRUTH_COUNT or value != int(value):
            raise GroundTruthError(
                f"{where}: count {cell!r} is not a whole number within [0, {MAX_GROUND_TRUTH_COUNT:,}]"
            )
        key = name_key(filename)
        if key in counts and counts[key] != int(value):
            if count_col == _region_count_column(header):  # several regions of one image: which to score is unsaid
                several.setdefault(key, [counts[key]]).append(int(value))
                continue
            raise GroundTruthError(f"{where}: {key!r} is listed twice with counts {counts[key]} and {cell}; if they are "
                                   f"two images of different folders, name each with its folder ({TWO_FOLDERS_EXAMPLE})")
        counts[key] = int(value)
    if several:
        shown = "; ".join(f"{k} ({', '.join(map(str, v))})" for k, v in list(several.items())[:3])
        warnings.warn(f"{name}: {len(several)} image(s) have several regions with their counts, left out: {shown}"
                      f"{' ...' if len(several) > 3 else ''}. Which region to score is yours to say: keep one row per "
                      "image (such as the region around all the counted cells)", SeveralRegionsWarning, stacklevel=2)
    return {k: n for k, n in counts.items() if k not in several}
