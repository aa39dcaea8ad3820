"""Count many images: one bad file is reported and skipped, the rest carry on.

Zip uploads are read by :mod:`cellcount.io.archive`.
"""

from __future__ import annotations

import io
import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from .errors import CellcountError, ChannelError, ImageReadError, ParameterError, PlaneError, error_text
from .groundtruth import GroundTruth
from .io import DEFAULT_MAX_PIXELS, labels_to_tiff_bytes, planes_note, projection_note, read_image_planes
from .io.files import microscope_file_problem
from .io.metadata import pixel_size_conflict, read_metadata
from .io.read import file_note, planes_as_channels, unapplied_plane_note
from .measure import MICRON_COLUMNS
from .models import size_model_for
from .models.base import CountModel
from .params import measuring_by_file
from .pipeline import CountParams, CountResult, check_model, count_image, resolve_params
from .quality import with_note

logger = logging.getLogger(__name__)



def same_content(items: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """(name, the name of the first item with the same bytes) for each item that repeats an earlier one's bytes under
    another name (:func:`distinct_names` takes those under the same name): a copy counted twice in a total."""
    import hashlib

    first: dict[str, str] = {}
    same = []
    for name, data in items:
        if not len(data):  # empty files: no cells to count twice (each gets its error row)
            continue
        key = hashlib.sha256(data).hexdigest()
        if key in first:
            same.append((name, first[key]))
        else:
            first[key] = name
    return same


def distinct_names(items: Iterable[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[str], dict[str, str]]:
    """Files uploaded without their folders, as a browser sends them, made one row per image: the same file
    (name and content) uploaded again is counted once, and a different file under a name already taken gets
    the name a file manager gives a copy (``A01 (2).tif``), so that no two rows, objects or label images share
    a name (two plates' ``A01.tif`` would otherwise be two rows "A01.tif" and one object table mixing both).

    Returns (the items to count, in order; the names of the copies left out; ``{new name: name uploaded}``)."""
    import hashlib

    pending = list(items)
    taken = {name for name, _ in pending}
    by_name: dict[str, set[str]] = {}  # name uploaded -> the contents seen under it
    kept: list[tuple[str, bytes]] = []
    copies: list[str] = []
    renamed: dict[str, str] = {}
    for name, data in pending:
        digest = hashlib.sha256(data).hexdigest()
        if name not in by_name:
            by_name[name] = {digest}
            kept.append((name, data))
        elif digest in by_name[name]:
            copies.append(name)
        else:
            by_name[name].add(digest)
            base = Path(name).name
            folder, stem, suffix = name[: len(name) - len(base)], Path(base).stem, Path(base).suffix
            k = 2
            while f"{folder}{stem} ({k}){suffix}" in taken:
                k += 1
            new = f"{folder}{stem} ({k}){suffix}"
            taken.add(new)
            renamed[new] = name
            kept.append((new, data))
    return kept, copies, renamed


@dataclass
class BatchItem:
    """Outcome for one file of a batch."""

    name: str
    status: str  # "ok" | "error" | "skipped" (left out on purpose, or an input a stopped batch never reached)
    reason: str
    result: CountResult | None
    seconds: float = 0.0
    model: str = ""
    """Model name for a failed item (a successful one takes it from its result)."""
    settings: str = ""
    """Settings JSON for a failed item, as in :meth:`CountResult.summary_row`."""
    plane: int | str | None = None
    """The plane of a stack counted (or ``"max"``, their projection); None where the file holds one plane or none
    was chosen."""
    regions: pd.DataFrame | None = None
    """Counts per region (file, region, row0, col0, row1, col1, count) of an image counted by blocks with
    regions asked for (:mod:`cellcount.blocks`)."""

    def row(self) -> dict[str, Any]:
        s = self.result.summary_row() if self.result else {"model": self.model, "settings": self.settings}
        return {
            "file": self.name,
            "model": s.get("model", ""),
            "backend": s.get("backend"),
            "count": s.get("count"),
            "count_estimate": s.get("count_estimate"),
            "status": self.status,
            "reason": self.reason,
            # the quality flag: whether this count may be wrong, and why (cellcount.quality)
            "check": s.get("check"),
            "check_score": s.get("check_score"),
            "check_reasons": s.get("check_reasons", ""),
            # what the nucleus size did: the factor the model input was resized by, the estimated diameter
            "model_scale": s.get("model_scale"),
            "estimated_diameter_px": s.get("estimated_diameter_px"),
            "split_used": s.get("split_used"),  # split_mode "auto": the split this image got (borders / both)
            "inverted": s.get("inverted"),  # invert "auto": whether it was read as a bright background, inverted
            "seconds": round(self.seconds, 4),  # the whole item (reading included), not the model's share
            "settings": s.get("settings", ""),
        }


def labelled_uploads(
    files: Iterable[tuple[str, bytes]],
) -> tuple[list[tuple[str, bytes, GroundTruth]], list[tuple[str, str]]]:
    """Images with ground truth from uploaded ``(name, bytes)`` files and zips -> (items, skipped).

    :func:`cellcount.labelled.labelled_set` with images and ground truth in one list (told apart by name);
    images without ground truth are among the skipped.
    """
    from .labelled import labelled_set

    found = labelled_set(files)
    return found.items, (found.skipped + [(name, "no ground truth") for name, _ in found.unlabelled]
                         + [(text, "uploaded more than once: used once") for text in found.duplicates])


def _read_for_count(src: Any, name: str, p: CountParams, page: int | str | None,
                    max_pixels: int, *, strict_page: bool = False) -> tuple[Any, str | None, CountParams, int | str | None]:
    """The image of one batch item (only ``p.channel`` decoded), its note, the params to count it with (with the
    pixel size the file states where none was given: µm columns in its object table), and the page read. A
    plane or channel chosen for the stacks or composites of a folder does not fail a file with only one: it is
    counted as it is (else --plane 2 would fail every 2-D image of a mixed folder). A channel's note says so; a
    one-plane file needs no note, since it holds no other plane to have meant (a flag on every 2-D image of the
    batch would bury its real ones). ``strict_page``: a plane asked of
    one file (:func:`count_file`) that has only one is an error, as :func:`cellcount.io.read_image` says it."""
    if isinstance(src, (bytes, bytearray, memoryview)) and (why := microscope_file_problem(name, bytes(src[:4]))):
        raise ImageReadError(f"{name}: {why}")  # an upload's bytes carry no name for the reader to say it by
    notes: list[str] = []
    channel = p.channel
    dropped = None
    for _ in range(3):  # at most: the plane dropped, then the channel
        try:
            image, planes = read_image_planes(src, channel=channel, page=page, max_pixels=max_pixels)
        except PlaneError as err:
            if err.n_planes != 1 or page is None or strict_page:
                raise
            dropped, page = page, None
            continue
        except ChannelError as err:
            if err.n_channels != 1 or channel is None:
                raise
            channel = None  # read whole; count_image notes the channel (channel_for_image)
            continue
        if page is None and planes is not None:
            notes.append(planes_note(name, planes))
        if lost := file_note(src, image, page):  # tiles the file does not store, beside content; a poor JPEG
            notes.append(lost)
        asked = dropped if dropped is not None else page if page == "max" and planes is None else None
        if (asked is not None and (channel is not None or (np.ndim(image) == 3 and np.shape(image)[2] > 1))
                and planes_as_channels(src)):
            # a z-stack saved without its axes (tifffile.imwrite of a (3, H, W) array) reads as channels: the plane
            # or projection asked for cannot be applied, and the count is of the planes' mean, or of the one chosen
            notes.append(unapplied_plane_note(asked, np.shape(image)[2] if channel is None else None, channel))
        elif isinstance(page, str) and (caution := projection_note(name, planes)):  # said, not flagged: as on Count
            logger.warning("%s", caution)
        # a channel selected while reading is counted as the (H, W) plane it gave
        image_params = p.replace(channel=None) if channel is not None else p
        meta = read_metadata(src)
        image_params = measuring_by_file(image_params, meta.pixel_size_um)
        if p.pixel_size_um is None and not meta.pixel_size_um and meta.pixel_note:
            logger.warning("%s: %s", name, meta.pixel_note)  # said, not flagged: only its µm columns are left empty
        elif conflict := pixel_size_conflict(p.pixel_size_um, meta.pixel_size_um):  # flagged: its µm figures are off
            notes.append(conflict)
        return image, "; ".join(notes) or None, image_params, page if planes is not None else None
    raise AssertionError("unreachable")


def _count_source(src: bytes | str | Path, name: str, model: CountModel, p: CountParams, *, page: int | str | None,
                  max_pixels: int, size_model: CountModel | None, backend: str | None,
                  measure: bool, strict_page: bool = False) -> tuple[CountResult, int | str | None]:
    """One file counted as a batch counts it: (its result, the plane read; :func:`_read_for_count`)."""
    image, note, image_params, page_read = _read_for_count(src, name, p, page, max_pixels, strict_page=strict_page)
    result = count_image(image, model, image_params, size_model=size_model, backend=backend, measure=measure)
    # the batch's settings (a pixel size read from the file measured the objects: it is no setting, and
    # a settings file or --resume must not carry one image's calibration to the others)
    result.params = p
    if note:  # one plane of a z-stack: the count is flagged with the reason
        result.quality = with_note(result.quality, note.replace("<bytes>", name))
    return result, page_read


def count_file(
    source: bytes | str | os.PathLike,
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    *,
    page: int | str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    size_model: CountModel | None = None,
    backend: str | None = None,
    measure: bool = True,
) -> CountResult:
    """Count one image file (a path or its bytes) as the command line does: the file's own pixel size (OME,
    ImageJ) for the µm columns unless ``params`` give one, ``page`` (a plane of a z-stack, or ``"max"`` for their
    maximum projection; :func:`cellcount.io.read_image`), and what the file says about the count in the quality
    flag (a stack counted from its first plane, where :func:`cellcount.count_image` of the array
    :func:`cellcount.read_image` returns cannot tell; a plane or projection the file cannot give; a pixel size other
    than the file's). A maximum projection of planes the file does not name is said in a logged warning, not flagged:
    they may be channels, but most such files are z-stacks saved without their axes. Reading errors are raised, as by
    ``read_image``."""
    check_model(model, "count_file")
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    name = Path(source).name if isinstance(source, (str, os.PathLike)) else "<bytes>"
    return _count_source(source, name, model, p, page=page, max_pixels=max_pixels,
                         size_model=size_model if size_model is not None else size_model_for(model, p),
                         backend=backend, measure=measure, strict_page=True)[0]


def count_paths(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    **kwargs: Any,
) -> Iterator[BatchItem]:
    """Count the images that files, folders and glob patterns name, as ``cellcount count`` does: listed by
    :func:`cellcount.io.list_image_files` (ground truth left out), an ``error`` item first for each file found that
    cannot be counted (a dangling link, an unreadable folder, a file named that is no image), then each image as
    :func:`count_many` counts it (``kwargs`` are its options)."""
    from .io import list_image_files

    check_model(model, "count_paths")
    skipped: list[tuple[Path, str]] = []
    files = list_image_files(paths, on_skip=lambda path, why: skipped.append((path, why)))
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    for path, why in skipped:  # the command line writes their rows too: a table without them would lose them unsaid
        yield BatchItem(str(path), "error", f"not counted: {why}", None, model=model.name,
                        settings=p.settings_json(model.output_kind))
    yield from count_many([(str(f), f) for f in files], model, p, total=len(files), **kwargs)


def count_many(
    items: Iterable[tuple[str, bytes | str | Path]],
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    total: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    keep_maps: bool = False,
    backend: str | None = None,
    size_model: CountModel | None = None,
    page: int | str | None = None,
    measure: bool = True,
    strict_page: bool = False,
) -> Iterator[BatchItem]:
    """Count each ``(name, bytes or path)``; yield a :class:`BatchItem` as soon as each one finishes.

    Any failure inside one item becomes an ``error`` item with the reason and the batch continues:
    :class:`CellcountError` and OS errors with their message, MemoryError as "ran out of memory", and
    anything else (an OpenCV or PyTorch error, a bug) with its type and message (the traceback is logged
    at debug level). ``keep_maps=False`` drops the probability/density maps from results to keep memory
    bounded on long batches. Only the image's own channel (``params.channel``) is decoded. The size
    model (``auto_nucleus_size`` on a mask model) is loaded once here unless ``size_model`` is given.
    ``backend``: see :func:`cellcount.predict`. ``page``: the plane of z-stacks and other multi-plane files,
    or ``"max"`` for their maximum projection (:func:`cellcount.io.read_image`); None counts the first plane
    and flags the row; a file of one plane is counted as it is, unless ``strict_page`` (one file named on its own:
    the plane asked for is an error row, as :func:`count_file` raises it). ``measure=False`` skips each result's object table (``objects`` is empty; counts and
    quality flags are the same) for a caller that writes no objects.
    """
    check_model(model, "count_many")
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    if size_model is None:
        size_model = size_model_for(model, p)
    settings = p.settings_json(model.output_kind)
    items = list(items) if total is None else items
    n_total = total if total is not None else len(items)  # type: ignore[arg-type]
    names: set[str] = set()
    doubled: set[str] = set()
    for i, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):  # a bare path unpacks into characters
            raise ParameterError("count_many takes (name, source) pairs, e.g. [(str(p), p) for p in paths]; got "
                                 f"{type(item).__name__} {str(item)[:80]!r}")
        name, src = item
        if name in names and name not in doubled:  # A01.png of plate1/ and plate2/ as two rows: which is which?
            doubled.add(name)
            logger.warning("%s is the name of two or more items: their rows cannot be told apart; name each by its "
                           "path (str(p) rather than p.name)", name)
        names.add(name)
        t0 = time.perf_counter()
        reason, failed = "", True
        try:
            result, page_read = _count_source(src, name, model, p, page=page, max_pixels=max_pixels,
                                              size_model=size_model, backend=backend, measure=measure,
                                              strict_page=strict_page)
            if not keep_maps:
                result.probability = None
                result.density = None
            failed = False
        except (CellcountError, OSError) as err:
            # name the file (uploads are read from bytes, which io calls "<bytes>")
            reason = error_text(err, name)
        except MemoryError:
            reason = "ran out of memory on this image"
        except Exception as err:  # noqa: BLE001 - one image must never end the batch, whatever it raises
            logger.debug("unexpected error on %s", name, exc_info=True)
            reason = error_text(err, name)
        seconds = time.perf_counter() - t0
        if failed:  # by the flag, not by the reason's text: an error without words is still an error
            item = BatchItem(name, "error", " ".join(reason.split()) or "unexpected error", None, seconds, model=model.name,
                             settings=settings)
            # the reader's messages name the file already
            why = item.reason[len(name) + 2:] if item.reason.startswith(f"{name}: ") else item.reason
            logger.warning("failed %s: %s (the rest go on)", name, why)
        else:
            item = BatchItem(name, "ok", "", result, seconds, plane=page_read)
        yield item
        if progress is not None:
            progress(i + 1, n_total)


COUNT_COLUMNS = ("file", "model", "backend", "count", "count_estimate", "status", "reason", "check", "check_score",
                 "check_reasons", "model_scale", "estimated_diameter_px", "split_used", "inverted", "seconds",
                 "settings")
"""Columns of :func:`counts_frame` (the per-image CSV)."""


def with_plane(rows: pd.DataFrame, plane: int | str | None) -> pd.DataFrame:
    """``rows`` (:func:`counts_frame`) with a ``plane`` column after ``file`` when a plane of the stacks (or
    ``"max"``, their projection) was chosen: a projection's count and a first plane's look alike in a CSV
    parted from its settings file. In place; returned for chaining."""
    if plane is not None and "plane" not in rows.columns:
        rows.insert(1, "plane", plane)
    return rows


def counts_frame(items: Iterable[BatchItem], plane: int | str | None = None) -> pd.DataFrame:
    """Per-image table with the :data:`COUNT_COLUMNS`; with the ``plane`` chosen for the stacks, a ``plane``
    column after ``file`` (:func:`with_plane`), empty for a file counted as its only plane (a 2-D image in a
    folder of stacks was not projected, and its row must not say so)."""
    items = list(items)
    df = pd.DataFrame([it.row() for it in items], columns=list(COUNT_COLUMNS))
    df["count"] = df["count"].astype("Int64")  # stays integer with empty cells for failed files
    if plane is not None:
        planes = [plane if it.status != "ok" or it.plane is not None else None for it in items]
        df.insert(1, "plane", pd.array(planes, dtype="Int64" if isinstance(plane, int) else object))
    return df


def item_objects(item: BatchItem) -> pd.DataFrame:
    """The object table of one successful item with a leading ``file`` column (empty for a failed one)."""
    if item.result is None:
        return pd.DataFrame(columns=["file", "label"])
    return objects_table(item.result, item.name)


def objects_table(result: CountResult, name: str) -> pd.DataFrame:
    """``result``'s object table as every objects CSV has it (Count's download, Batch, the CLI): a leading
    ``file`` column, and the µm columns whether or not a pixel size was known (empty then), with that pixel size
    (``pixel_size_um``: the file's own where the settings give none, which the settings column cannot say)."""
    df = result.objects.assign(file=name)
    columns = ["file", *[c for c in df.columns if c != "file"]]
    if "centroid_row_um" not in df:  # one set of columns whichever files state a pixel size (the file's own, or
        # none): a CSV stream's header is its first image's, and drops what later images add
        columns += MICRON_COLUMNS if "area_px" in df else MICRON_COLUMNS[2:]
    df = df.assign(pixel_size_um=result.pixel_size_um if "centroid_row_um" in df else None)
    return df.reindex(columns=[*columns, "pixel_size_um"])


def objects_frame(items: Iterable[BatchItem]) -> pd.DataFrame:
    """All objects of all successful items, with a leading ``file`` column."""
    frames = [item_objects(it) for it in items if it.result is not None and len(it.result.objects)]
    if not frames:
        return pd.DataFrame(columns=["file", "label"])
    return pd.concat(frames, ignore_index=True)


LABELS_INDEX = "labels_index.csv"
"""Beside label images written for many inputs: which label image belongs to which input (``--labels-dir`` is
flat: ``a/img.png`` and ``b/img.png`` give ``img_labels.tif`` and ``img_2_labels.tif``; the app's zip keeps the
folders, :func:`labels_zip`)."""


def _in_zip(name: str) -> PurePosixPath:
    """Where an upload's file lies once a zip of results is unpacked beside the uploads: its folders kept (a zip's
    plate1/A01.tif), the zip's own name without .zip."""
    path = PurePosixPath(name.replace("\\", "/"))
    folder = "/".join(part[:-4] if part.lower().endswith(".zip") else part
                      for part in path.parent.parts if part not in ("", ".", "..", "/"))
    return PurePosixPath(folder, path.name) if folder else PurePosixPath(path.name)


def labels_zip(items: Iterable[BatchItem], taken: Iterable[str] = ()) -> bytes:
    """Zip of ``<stem>_labels.tif`` (16/32-bit) for every successful mask-model item, in the folders of its name (a
    zip member's, the zip's name without ``.zip``), and :data:`LABELS_INDEX` naming each one's image (two loose
    images may share a stem). ``taken``: the other uploads' names (ground truth left out, as ``a_labels.tif``), whose
    places a label image never takes: unpacked beside them it would replace the user's own annotation (``--labels-dir``
    numbers its names alike)."""
    from .csvout import csv_bytes

    buf = io.BytesIO()
    index: list[dict[str, str]] = []
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        # in any letter case: unpacked on macOS or Windows, A_labels.TIF is a_labels.tif
        seen: set[str] = {str(_in_zip(n)).casefold() for n in taken}
        for it in items:
            if it.result is None or it.result.labels is None:
                continue
            name = _in_zip(it.name)
            stem = str(name.with_suffix(""))
            out = f"{stem}_labels.tif"
            k = 1
            while out.casefold() in seen:
                k += 1
                out = f"{stem}_{k}_labels.tif"
            seen.add(out.casefold())
            zf.writestr(out, labels_to_tiff_bytes(it.result.labels, model=it.result.model_name,
                                                  pixel_size_um=it.result.pixel_size_um))
            index.append({"file": it.name, "labels_file": out})
        if index:
            zf.writestr(LABELS_INDEX, csv_bytes(pd.DataFrame(index)))
    return buf.getvalue()


