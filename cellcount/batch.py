"""Count many images: one bad file is reported and skipped, the rest carry on.

Also safe zip handling for uploads: nested folders are fine, non-images and unsafe names are reported.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import CellcountError, ImageReadError
from .groundtruth import GroundTruth
from .io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, labels_to_tiff_bytes, read_image
from .models.base import CountModel
from .pipeline import CountParams, CountResult, count_image, resolve_params

logger = logging.getLogger(__name__)

DEFAULT_ZIP_MAX_FILES = 5000
DEFAULT_ZIP_MAX_BYTES = 2 << 30  # total uncompressed bytes accepted from one zip


@dataclass
class BatchItem:
    """Outcome for one file of a batch."""

    name: str
    status: str  # "ok" | "error"
    reason: str
    result: CountResult | None
    seconds: float = 0.0
    model: str = ""
    """Model name for a failed item (a successful one takes it from its result)."""
    settings: str = ""
    """Settings JSON for a failed item, as in :meth:`CountResult.summary_row`."""

    def row(self) -> dict[str, Any]:
        s = self.result.summary_row() if self.result else {"model": self.model, "settings": self.settings}
        return {
            "file": self.name,
            "model": s.get("model", ""),
            "count": s.get("count"),
            "count_estimate": s.get("count_estimate"),
            "status": self.status,
            "reason": self.reason,
            # what the nucleus size did: the factor the model input was resized by, the estimated diameter
            "model_scale": s.get("model_scale"),
            "estimated_diameter_px": s.get("estimated_diameter_px"),
            "seconds": round(self.seconds, 4),  # the whole item (reading included), not the model's share
            "settings": s.get("settings", ""),
        }


def _safe_member_name(name: str) -> str | None:
    """Normalised member path, or None when it escapes the archive (absolute, '..', drive letters)."""
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) > 1 and n[1] == ":"):
        return None
    norm = posixpath.normpath(n)
    if norm.startswith("../") or norm == ".." or "/../" in f"/{norm}/":
        return None
    return norm


GROUND_TRUTH_TABLE_EXTENSIONS = frozenset({".csv"})
"""Extensions of ground-truth tables (point tables, ``filename,count`` tables) accepted in labelled zips."""


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
    wanted = {e.lower() for e in extensions}
    kind = "an image file" if wanted <= set(IMAGE_EXTENSIONS) else "a supported file"
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ImageReadError(f"not a readable zip file: {err}") from err
    total = 0
    n = 0
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            safe = _safe_member_name(name)
            if safe is None:
                yield name, None, "unsafe path in zip (absolute or '..'): skipped"
                continue
            base = posixpath.basename(safe)
            if base.startswith("._") or "__MACOSX/" in safe:
                continue  # macOS metadata, not user files
            if Path(base).suffix.lower() not in wanted:
                yield safe, None, f"not {kind} (extension {Path(base).suffix or 'none'}): skipped"
                continue
            n += 1
            total += info.file_size
            if n > max_files:
                what = "images" if kind == "an image file" else "files"
                yield safe, None, f"zip holds more than {max_files} {what}: skipped"
                continue
            if total > max_bytes:
                yield safe, None, f"zip expands beyond the cap of {max_bytes:,} bytes (max_bytes): skipped"
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


def labelled_uploads(
    files: Iterable[tuple[str, bytes]],
) -> tuple[list[tuple[str, bytes, GroundTruth]], list[tuple[str, str]]]:
    """Images with ground truth from uploaded ``(name, bytes)`` files and zips -> (items, skipped).

    :func:`cellcount.labelled.labelled_set` with images and ground truth in one list (told apart by name);
    images without ground truth are among the skipped.
    """
    from .labelled import labelled_set

    found = labelled_set(files)
    return found.items, found.skipped + [(name, "no ground truth") for name, _ in found.unlabelled]


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
) -> Iterator[BatchItem]:
    """Count each ``(name, bytes or path)``; yield a :class:`BatchItem` as soon as each one finishes.

    Any failure inside one item becomes an ``error`` item with the reason and the batch continues:
    :class:`CellcountError` and OS errors with their message, MemoryError as "ran out of memory", and
    anything else (an OpenCV or PyTorch error, a bug) with its type and message (the traceback is logged
    at debug level). ``keep_maps=False`` drops the probability/density maps from results to keep memory
    bounded on long batches. Only the image's own channel (``params.channel``) is decoded. ``backend``:
    see :func:`cellcount.predict`.
    """
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    settings = json.dumps(p.to_dict(), sort_keys=True)
    items = list(items) if total is None else items
    n_total = total if total is not None else len(items)  # type: ignore[arg-type]
    for i, (name, src) in enumerate(items):
        t0 = time.perf_counter()
        reason = ""
        try:
            image = read_image(src, channel=p.channel, max_pixels=max_pixels)
            # the channel is already selected: counting the (H, W) plane with channel=None is the same
            result = count_image(image, model, p.replace(channel=None) if p.channel is not None else p,
                                 backend=backend)
            result.params = p
            if not keep_maps:
                result.probability = None
                result.density = None
        except (CellcountError, OSError) as err:
            # name the file (uploads are read from bytes, which io calls "<bytes>")
            reason = f"{type(err).__name__}: " + str(err).replace("<bytes>", name)
        except MemoryError:
            reason = "ImageTooLargeError: ran out of memory on this image"
        except Exception as err:  # noqa: BLE001 - one image must never end the batch, whatever it raises
            logger.debug("unexpected error on %s", name, exc_info=True)
            reason = f"{type(err).__name__}: {str(err).strip() or 'unexpected error'}".replace("<bytes>", name)
        seconds = time.perf_counter() - t0
        if reason:
            item = BatchItem(name, "error", " ".join(reason.split()), None, seconds, model=model.name,
                             settings=settings)
            logger.warning("skipped %s: %s", name, item.reason)
        else:
            item = BatchItem(name, "ok", "", result, seconds)
        yield item
        if progress is not None:
            progress(i + 1, n_total)


COUNT_COLUMNS = ("file", "model", "count", "count_estimate", "status", "reason", "model_scale",
                 "estimated_diameter_px", "seconds", "settings")
"""Columns of :func:`counts_frame` (the per-image CSV)."""


def counts_frame(items: Iterable[BatchItem]) -> pd.DataFrame:
    """Per-image table with the :data:`COUNT_COLUMNS`."""
    rows = [it.row() for it in items]
    df = pd.DataFrame(rows, columns=list(COUNT_COLUMNS))
    df["count"] = df["count"].astype("Int64")  # stays integer with empty cells for failed files
    return df


def item_objects(item: BatchItem) -> pd.DataFrame:
    """The object table of one successful item with a leading ``file`` column (empty for a failed one)."""
    if item.result is None:
        return pd.DataFrame(columns=["file", "label"])
    df = item.result.objects.assign(file=item.name)
    return df[["file", *[c for c in df.columns if c != "file"]]]


def objects_frame(items: Iterable[BatchItem]) -> pd.DataFrame:
    """All objects of all successful items, with a leading ``file`` column."""
    frames = [item_objects(it) for it in items if it.result is not None and len(it.result.objects)]
    if not frames:
        return pd.DataFrame(columns=["file", "label"])
    return pd.concat(frames, ignore_index=True)


def labels_zip(items: Iterable[BatchItem]) -> bytes:
    """Zip of ``<stem>_labels.tif`` (16/32-bit) for every successful mask-model item."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        seen: set[str] = set()
        for it in items:
            if it.result is None or it.result.labels is None:
                continue
            stem = Path(it.name).stem
            out = f"{stem}_labels.tif"
            k = 1
            while out in seen:
                k += 1
                out = f"{stem}_{k}_labels.tif"
            seen.add(out)
            zf.writestr(out, labels_to_tiff_bytes(it.result.labels))
    return buf.getvalue()


