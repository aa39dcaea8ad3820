"""Count an image too large for memory block by block, each object once, the density integral kept.

The image (a tiled or pyramidal TIFF, an OME-Zarr) is opened lazily (:func:`open_lazy`): only the pixels
of one block are ever decoded. Its plane is cut into a grid of *cores* that tile it without overlap; a
*block* is its core grown by ``overlap_px`` on every side (clipped at the image border), so the model and
the postprocessing see every object near a seam whole. Each block is counted like a whole image, with the
whole image's normalisation and nucleus size (:func:`plan_blocks`), and keeps only what its core owns:

* objects (mask models) and density peaks whose centroid lies in the core;
* the integral of the density map over the core (density models, and multihead ``count_source="density"``).

Cores partition the image, so each object is counted in exactly one block and the integrals add up to the
whole map's. Objects must be smaller than the overlap for this to hold (an object wider than
``overlap_px`` can be cut by a block edge): the default, 128 px, is about 7 nucleus diameters at the
models' training size.

Memory per worker is bounded by the block size, not the image: a worker process counting one 2304 x 2304
block (the default 2048 px + 2 x 128 px overlap) with unet-mask peaked at 0.8 GB resident, Python, PyTorch
and the model included (``scripts/bench_workers.py``, docs/SCALING.md).

:func:`count_blocks` runs the blocks one after another in this process; :mod:`cellcount.distributed` runs
:func:`count_block` on a Dask cluster's workers. Both end in :func:`combine_blocks`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import CellcountError, ImageReadError, ParameterError
from .io import (
    background_note,
    exposure_note,
    input_note,
    model_input,
    normalization_limits,
    pixel_size_conflict,
    read_metadata,
)
from .io.files import TIFF_MAGICS
from .io.read import decoder_error, main_series, missing_beside_content, missing_note, tiff_missing_tiles
from .models import size_model_for
from .models.base import CountModel
from .params import auto_distance_px, channel_for_image, measuring_by_file
from .pipeline import CountParams, CountResult, nothing_found, postprocess, predict, resolve_params
from .postprocess import MIN_TOUCH_OBJECTS
from .postprocess import density_count as map_integral
from .quality import Quality
from .quality import combine as combine_quality

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_PX = 2048
DEFAULT_OVERLAP_PX = 128
SAMPLE_PIXELS = 16 * 1024 * 1024
"""Pixels read to compute the whole image's normalisation: all of an image this small, else evenly spread
windows of :data:`SAMPLE_WINDOW_PX`."""
SAMPLE_WINDOW_PX = 512
ZARR_SUFFIXES = (".zarr",)
ALIGN_PX = 32
"""Block origins are multiples of this (the networks' largest pooling stride), so a block's pixels meet the
network's pooling grid as they do in the whole image: counts then match the in-memory ones more closely."""

Box = tuple[int, int, int, int]
"""(row0, col0, row1, col1), end-exclusive, in image pixels."""


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Zarr / OME-Zarr folder (``*.zarr``, ``*.ome.zarr``)."""
    p = Path(path)
    return p.suffix.lower() in ZARR_SUFFIXES and p.is_dir()


class LazyPlane:
    """One 2-D plane of a lazily read image: ``shape`` is (H, W) or (H, W, C); ``plane[r0:r1, c0:c1]``
    decodes only the chunks (TIFF tiles or strips, Zarr chunks) of that window."""

    def __init__(self, array: Any, index: tuple, shape: tuple[int, ...], move_channel: int | None) -> None:
        self._array = array
        self._index = index  # leading indices (t, z ...) then the Y, X (and C) slices are appended
        self.shape = shape
        self._move = move_channel  # position of a channel axis before Y, X within the selected array
        self.dtype = array.dtype
        self.note: str | None = None  # set by _plane when other planes (z, t ...) were left unread
        self.name = "image"  # the file's, set by _plane: a window that cannot be decoded names it
        # tiles or chunks of this plane the file does not store, read as ``fill``: found on demand (a stat or a tag
        # per chunk), by plan_blocks only, once per image: (their boxes, the chunk size (H, W), how many there are)
        self.find_missing: Callable[[], tuple[list[Box], tuple[int, int], int]] = lambda: ([], (1, 1), 0)
        self.fill = 0.0

    def __getitem__(self, window: tuple[slice, slice]) -> np.ndarray:
        try:
            return self._window(*window)
        except (CellcountError, MemoryError):
            raise
        except Exception as err:  # noqa: BLE001 - a TIFF tile's or Zarr chunk's codec error (DeflateError, blosc)
            raise decoder_error(self.name, err) from err

    def _window(self, rs: slice, cs: slice) -> np.ndarray:
        if self._move is None:
            return np.asarray(self._array[(*self._index, rs, cs)])
        # the channel axis (a slice among the leading indices) comes first in the window: moved last
        return np.moveaxis(np.asarray(self._array[(*self._index, rs, cs)]), 0, -1)


@contextlib.contextmanager
def open_lazy(source: str | os.PathLike) -> Iterator[LazyPlane]:
    """Open the first 2-D plane of a TIFF (full resolution of a pyramid) or an OME-Zarr lazily.

    Raises ImageReadError for anything else or an unsupported layout.
    """
    import zarr

    path = Path(source)
    name = os.fspath(source)
    if is_zarr(path):
        try:
            node = zarr.open(str(path), mode="r")
            if isinstance(node, zarr.Array):
                array, axes = node, ""
            else:
                attrs = dict(node.attrs)
                ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
                if not ms:
                    raise ImageReadError(f"{name}: Zarr group without OME multiscales metadata")
                array = node[ms[0]["datasets"][0]["path"]]  # the full resolution comes first
                axes = "".join(str(a["name"] if isinstance(a, dict) else a)[0] for a in ms[0].get("axes", []))
        except KeyError as err:  # the level its metadata names is not in the store
            raise ImageReadError(f"{name}: cannot open as OME-Zarr: its array {err} is missing or unreadable") from err
        except (OSError, IndexError, ValueError, TypeError) as err:
            raise ImageReadError(f"{name}: cannot open as OME-Zarr: {err}") from err
        plane = _plane(array, axes.lower() or ("yx" if len(array.shape) == 2 else "yxc"), name)
        plane.fill = float(array.fill_value) if array.fill_value is not None else 0.0
        plane.find_missing = lambda: _zarr_missing(array, axes.lower() or ("yx" if len(array.shape) == 2 else "yxc"))
        yield plane
        return
    import tifffile

    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise ImageReadError(f"{name}: cannot open: {err}") from err
    if head not in TIFF_MAGICS:
        raise ImageReadError(f"{name}: block-wise counting reads TIFF files and OME-Zarr folders only")
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError) as err:
        raise ImageReadError(f"{name}: cannot read TIFF: {err}") from err
    try:
        series = tif.series[main_series(tif)]
        store = series.aszarr(level=0)
        array = zarr.open(store, mode="r")
        plane = _plane(array, series.axes.lower().replace("s", "c"), name)
        plane.find_missing = lambda: _tiff_missing(plane, series)
        yield plane
    finally:
        tif.close()


def _zarr_missing(array: Any, axes: str) -> tuple[list[Box], tuple[int, int], int]:
    """The chunks (shards, where the array is sharded: its files) of the plane read that a local Zarr folder does not
    hold, read as the fill value: a Y, X position with any channel's chunk missing; index 0 of the other axes."""
    store = getattr(getattr(array, "store_path", None), "store", None)
    root = getattr(store, "root", None)
    if root is None or not hasattr(array.metadata, "encode_chunk_key"):
        return [], (1, 1), 0  # not a local folder: nothing to check cheaply
    folder = Path(root) / array.store_path.path
    block = tuple(getattr(array, "shards", None) or array.chunks)
    iy, ix, ic = axes.index("y"), axes.index("x"), axes.find("c")
    bh, bw = int(block[iy]), int(block[ix])
    ny, nx = -(-int(array.shape[iy]) // bh), -(-int(array.shape[ix]) // bw)
    nc = -(-int(array.shape[ic]) // int(block[ic])) if ic >= 0 else 1
    missing = []
    for r in range(ny):
        for c in range(nx):
            for k in range(nc):
                coords = [0] * len(array.shape)
                coords[iy], coords[ix] = r, c
                if ic >= 0:
                    coords[ic] = k
                if not (folder / array.metadata.encode_chunk_key(tuple(coords))).exists():
                    missing.append((r * bh, c * bw, min((r + 1) * bh, int(array.shape[iy])),
                                    min((c + 1) * bw, int(array.shape[ix]))))
                    break
    return missing, (bh, bw), ny * nx


def _tiff_missing(plane: LazyPlane, series: Any) -> tuple[list[Box], tuple[int, int], int]:
    """The tiles (or strips) of the first page that the TIFF does not store, read as 0."""
    try:
        page = (getattr(series, "levels", None) or [series])[0].pages[0]
    except (AttributeError, IndexError):
        return [], (1, 1), 0
    return tiff_missing_tiles(page, plane.shape[0], plane.shape[1])


def missing_chunks_note(plane: LazyPlane) -> str | None:
    """:func:`~cellcount.io.read.missing_note` of the plane's tiles or chunks not stored beside content."""
    boxes, block, n = plane.find_missing()
    if not boxes:
        return None
    return missing_note(missing_beside_content(boxes, block, plane.shape, plane.__getitem__, plane.fill), n)


def _plane(array: Any, axes: str, name: str) -> LazyPlane:
    """The first Y/X plane of an array with ``axes`` (letters; extra axes of size > 1 other than one
    channel axis are taken at index 0, and the plane's ``note`` says so: a z-stack counted from its first
    plane would otherwise be an unflagged count of 0 by blocks, where a count in memory says it)."""
    plane = _first_plane(array, axes, name)
    plane.name = name
    dims = dict(zip(axes, array.shape))
    left = [f"{n} {_AXIS_WORDS.get(a, 'planes')}" for a, n in dims.items() if a not in "yxc" and int(n) > 1]
    if left:
        plane.note = (f"the file holds {' x '.join(left)}; only the first plane was read and counted (counting by "
                      "blocks reads one plane: save the plane to count, or a maximum projection, as a file of its own)")
    return plane


_AXIS_WORDS = {"z": "z-planes", "t": "time points", "q": "planes", "i": "planes"}


def _first_plane(array: Any, axes: str, name: str) -> LazyPlane:
    if len(axes) != len(array.shape) or "y" not in axes or "x" not in axes:
        raise ImageReadError(f"{name}: unsupported layout (axes {axes!r}, shape {tuple(array.shape)})")
    shape = dict(zip(axes, array.shape))
    iy, ix = axes.index("y"), axes.index("x")
    if ix != iy + 1:
        raise ImageReadError(f"{name}: unsupported layout (axes {axes!r}): Y and X must be adjacent")
    ic = axes.find("c")
    lead = [0] * iy
    h, w = int(shape["y"]), int(shape["x"])
    if ic == -1 or shape["c"] == 1:
        if ic == len(axes) - 1:  # Y X C(1)
            return _SqueezedPlane(array, tuple(lead), (h, w))
        if ic != -1:
            lead[ic] = 0
        return LazyPlane(array, tuple(lead), (h, w), None)
    if ic == len(axes) - 1:  # Y X C: channels last, as read_image returns them
        return LazyPlane(array, tuple(lead), (h, w, int(shape["c"])), None)
    if ic < iy:  # C Y X, or T C Z Y X (OME-NGFF's order): every channel, index 0 of the other leading axes
        return LazyPlane(array, tuple(slice(None) if k == ic else 0 for k in range(iy)), (h, w, int(shape["c"])), ic)
    raise ImageReadError(f"{name}: unsupported layout (axes {axes!r}): channels must come before Y, X or last")


class _SqueezedPlane(LazyPlane):
    def _window(self, rs: slice, cs: slice) -> np.ndarray:
        return np.asarray(self._array[(*self._index, rs, cs, 0)])


def lazy_shape(source: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of a lazily readable image (header only)."""
    with open_lazy(source) as plane:
        return plane.shape[0], plane.shape[1]


@dataclass(frozen=True)
class BlockPlan:
    """How one huge image is counted: its blocks, and the normalisation and size shared by all of them."""

    source: str
    shape: tuple[int, int]
    cores: tuple[Box, ...]
    blocks: tuple[Box, ...]
    limits: tuple[float, float]
    bright: bool
    nucleus_diameter_px: float | None
    block_px: int
    overlap_px: int
    regions: tuple[tuple[str, int, int, int, int], ...] = ()
    estimated_diameter_px: float | None = None
    """The sized block's estimated nucleus diameter, also when it was close enough to the training size
    not to resize (``nucleus_diameter_px`` None): the auto split distance of every block follows it."""
    seconds: float = 0.0
    """How long planning took (the normalisation sample and the size estimate's model passes): part of the image's
    time, which a row's ``seconds`` reports."""
    note: str | None = None
    """Why the count may not be what the user meant (only the first plane of a stack was read): the image's
    quality flag carries it, as a count in memory does."""
    file_pixel_size_um: float | None = None
    """The file's own calibration (OME, ImageJ), which measures the objects where the settings give none, as for an
    image counted whole."""
    one_channel: bool = False
    """A channel was chosen but the image has one: it is counted as it is (:func:`cellcount.params.channel_for_image`),
    as an image counted whole is (the channel chosen for a folder's composites must not fail its one-channel slide)."""


@dataclass
class BlockPart:
    """What one block contributes: only what its core owns, in whole-image coordinates."""

    index: int
    count: int
    count_estimate: float
    density_count: float | None
    objects: pd.DataFrame
    regions: dict[str, float]
    seconds: float
    model_scale: float = 1.0
    n_rejected: dict[str, int] = field(default_factory=dict)
    quality: Quality | None = None
    """The block's quality verdict (:mod:`cellcount.quality`); the image's combines them."""
    split_used: str | None = None
    """With split mode "auto": the split this block got (:attr:`cellcount.pipeline.CountResult.split_used`)."""
    backend: str | None = None
    """The inference backend the block's network ran in (workers on other machines may choose another)."""


def grid(shape: tuple[int, int], block_px: int, overlap_px: int) -> tuple[tuple[Box, ...], tuple[Box, ...]]:
    """(cores, blocks): cores tile ``shape`` in near-equal parts of at most ``block_px``; each block is its
    core grown by ``overlap_px``, clipped at the border."""
    h, w = shape
    rows = _cuts(h, block_px, ALIGN_PX)
    cols = _cuts(w, block_px, ALIGN_PX)
    overlap_px = ALIGN_PX * math.ceil(overlap_px / ALIGN_PX)
    cores, blocks = [], []
    for r0, r1 in rows:
        for c0, c1 in cols:
            cores.append((r0, c0, r1, c1))
            blocks.append((max(0, r0 - overlap_px), max(0, c0 - overlap_px), min(h, r1 + overlap_px),
                           min(w, c1 + overlap_px)))
    return tuple(cores), tuple(blocks)


def _cuts(length: int, block_px: int, align: int = 1) -> list[tuple[int, int]]:
    n = max(1, math.ceil(length / block_px))
    edges = [min(length, align * round(i * length / n / align)) for i in range(n)] + [length]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def region_grid(shape: tuple[int, int], rows: int, cols: int) -> list[tuple[str, int, int, int, int]]:
    """A ``rows`` x ``cols`` grid of regions named ``r<i>c<j>`` covering the image."""
    if rows < 1 or cols < 1:
        raise ParameterError(f"a region grid needs at least 1 x 1 cells, got {rows} x {cols}")
    return [(f"r{i}c{j}", r0, c0, r1, c1) for i, (r0, r1) in enumerate(_cuts(shape[0], math.ceil(shape[0] / rows)))
            for j, (c0, c1) in enumerate(_cuts(shape[1], math.ceil(shape[1] / cols)))]


def read_regions(path: str | os.PathLike) -> list[tuple[str, int, int, int, int]]:
    """User boxes from a CSV with columns ``name,row0,col0,row1,col1`` (end-exclusive pixels)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ParameterError(f"cannot read regions {path}: {err}") from err
    need = ["name", "row0", "col0", "row1", "col1"]
    if [c for c in need if c not in df.columns]:
        raise ParameterError(f"regions {path} needs the columns {need}, found {list(df.columns)}")
    out = []
    for r in df.itertuples(index=False):
        box = (str(r.name), int(r.row0), int(r.col0), int(r.row1), int(r.col1))
        if not (box[3] > box[1] and box[4] > box[2]):
            raise ParameterError(f"region {box[0]!r} in {path} is empty (row1 <= row0 or col1 <= col0)")
        out.append(box)
    return out


def _sample(plane: LazyPlane, budget: int) -> np.ndarray:
    """The whole plane when it has at most ``budget`` pixels, else evenly spread windows stacked in rows."""
    h, w = plane.shape[:2]
    if h * w <= budget:
        return plane[0:h, 0:w]
    win = SAMPLE_WINDOW_PX
    n = max(1, budget // (win * win))
    side = max(1, math.isqrt(n))
    rs = np.linspace(0, max(0, h - win), side).astype(int)
    cs = np.linspace(0, max(0, w - win), side).astype(int)
    return np.concatenate([plane[r:r + win, c:c + win] for r in rs for c in cs], axis=0)


SIZING_STEP = 8
"""Every this many pixels is read of each block to find the one with the most foreground for the size estimate."""


def _sizing_block(plane: LazyPlane, cores: Sequence[tuple[int, int, int, int]],
                  blocks: Sequence[tuple[int, int, int, int]], params: CountParams, limits: tuple[float, float],
                  bright: bool, grayscale: str) -> int:
    """Index of the block to estimate the nucleus size on: the one whose core holds the most foreground (the
    model's normalised input over its midpoint, every :data:`SIZING_STEP`-th pixel kept; the reader still decodes
    every tile or strip, so this costs about half a read of the image, next to minutes of counting), as a whole-image count
    sizes on its square with the most foreground; the centre block when it holds at least 80% of the most. The centre alone could be an
    empty part of a slide (no estimate: large nuclei counted in pieces) or a sparse one."""
    centre = len(blocks) // 2
    if len(blocks) == 1:
        return 0
    shares = []
    for r0, c0, r1, c1 in cores:
        view = np.asarray(plane[slice(r0, r1, SIZING_STEP), slice(c0, c1, SIZING_STEP)])
        norm, _ = model_input(view, channel=params.channel, invert=bright, grayscale=grayscale, limits=limits)
        shares.append(float(np.mean(norm > 0.5)))
    return centre if shares[centre] >= 0.8 * max(shares) else int(np.argmax(shares))


def plan_blocks(
    source: str | os.PathLike,
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    *,
    block_px: int = DEFAULT_BLOCK_PX,
    overlap_px: int = DEFAULT_OVERLAP_PX,
    regions: Sequence[tuple[str, int, int, int, int]] = (),
    sample_pixels: int = SAMPLE_PIXELS,
) -> BlockPlan:
    """Open ``source`` lazily and decide its blocks, normalisation and nucleus size.

    The normalisation (percentiles, bright background) is computed once on the whole image or a spread
    sample of it. With ``auto_nucleus_size`` (and no ``nucleus_diameter_px``), the size is estimated once
    on the block with the most foreground (:func:`_sizing_block`) and applied to every block.
    """
    t0 = time.perf_counter()
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    if block_px < 64 or overlap_px < 0:
        raise ParameterError(f"need block_px >= 64 and overlap_px >= 0, got {block_px}, {overlap_px}")
    grayscale = model.card.normalization.get("grayscale", "mean")
    with open_lazy(source) as plane:
        shape = (int(plane.shape[0]), int(plane.shape[1]))
        note = plane.note
        p, one_channel = channel_for_image(p, int(plane.shape[2]) if len(plane.shape) == 3 else 1)
        if one_channel:
            note = f"{note}; {one_channel}" if note else one_channel
        regions, outside = _regions_inside(regions, shape)
        if outside:  # a box beyond the image would count 0 (or a part of it) in silence; the image keeps its count
            said = ", ".join(repr(name) for name in outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5
                                                                    else "")
            what = (f"region(s) {said} lie outside or across the edge of this {shape[1]} x {shape[0]} px image (W x H): "
                    "those outside have no count, those across it are counted on the part inside")
            note = f"{note}; {what}" if note else what
        if lost := missing_chunks_note(plane):
            note = f"{note}; {lost}" if note else lost
        sample = _sample(plane, sample_pixels)
        limits, bright = normalization_limits(sample, channel=p.channel, invert=p.invert, low_pct=p.low_pct,
                                              high_pct=p.high_pct, grayscale=grayscale)
        # what the image as a whole says of its count (channels averaged, clipped, a background unlike the
        # setting), from the sample, as predict says it of an image counted whole
        for said in (input_note(sample, channel=p.channel), exposure_note(sample, channel=p.channel),
                     background_note(sample, channel=p.channel, invert=p.invert)):
            if said:
                note = f"{note}; {said}" if note else said
        del sample
        cores, blocks = grid(shape, block_px, overlap_px)
        file_size = _file_pixel_size(source)
        if conflict := pixel_size_conflict(p.pixel_size_um, file_size):  # flagged, as for an image counted whole
            note = f"{note}; {conflict}" if note else conflict
        diameter = estimated = p.nucleus_diameter_px or None
        if diameter is None and p.auto_nucleus_size:
            mid = blocks[_sizing_block(plane, cores, blocks, p, limits, bright, grayscale)]
            centre = plane[mid[0]:mid[2], mid[1]:mid[3]]
            pred = predict(centre, model, p.replace(invert=bright), limits=limits, size_model=size_model_for(model, p))
            if pred.estimated_diameter_px:
                estimated = float(np.clip(pred.estimated_diameter_px, 2.0, 1000.0))
                diameter = estimated if pred.model_scale != 1.0 else None
            del centre, pred
    return BlockPlan(source=os.fspath(source), shape=shape, cores=cores, blocks=blocks, limits=limits, bright=bright,
                     nucleus_diameter_px=diameter, block_px=block_px, overlap_px=overlap_px,
                     regions=tuple(tuple(r) for r in regions), estimated_diameter_px=estimated,
                     seconds=time.perf_counter() - t0, note=note, file_pixel_size_um=file_size,
                     one_channel=bool(one_channel))


def _file_pixel_size(source: str | os.PathLike) -> float | None:
    """A file's own pixel size in µm (:func:`cellcount.io.read_metadata`, or an OME-Zarr's scale), None where it
    states none or cannot be read so."""
    if is_zarr(source):
        return zarr_pixel_size(source)
    try:
        return read_metadata(source).pixel_size_um
    except (CellcountError, OSError, ValueError):
        return None


_UNIT_UM = {"micrometer": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0, "μm": 1.0, "nanometer": 1e-3, "nm": 1e-3,
            "millimeter": 1e3, "mm": 1e3}


def zarr_pixel_size(source: str | os.PathLike) -> float | None:
    """The full resolution's pixel size in µm an OME-Zarr states (its multiscales' axes units and the first dataset's
    scale, times the multiscale's own scale), None where it states none in a length unit or Y and X differ by over 1%:
    the µm columns of its objects, as a TIFF's own calibration gives them."""
    import zarr

    try:
        attrs = dict(zarr.open(str(source), mode="r").attrs)
        ms = (attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales"))[0]
        axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes", [])]
        scale = [1.0] * len(axes)
        for transforms in (ms.get("coordinateTransformations") or [], ms["datasets"][0].get("coordinateTransformations")
                           or []):
            for tr in transforms:
                if tr.get("type") == "scale":
                    scale = [s * float(v) for s, v in zip(scale, tr["scale"], strict=True)]
        names = [str(a.get("name", "")).lower() for a in axes]
        sizes = []
        for axis in ("y", "x"):
            k = names.index(axis)
            unit = _UNIT_UM.get(str(axes[k].get("unit", "")).lower())
            if unit is None:
                return None
            sizes.append(scale[k] * unit)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, OSError):
        return None
    y, x = sizes
    return float(x) if x > 0 and abs(y - x) <= 0.01 * x else None


def block_params(plan: BlockPlan, params: CountParams) -> CountParams:
    """The settings every block is counted with: the plan's inversion and size, and the auto split distance
    (``min_distance_px`` 0) made from the plan's nucleus diameter, as for the whole image; border objects are
    judged on the whole image, not the block."""
    distance = params.min_distance_px
    if not distance and plan.estimated_diameter_px:
        distance = auto_distance_px(plan.estimated_diameter_px)
    return measuring_by_file(params, plan.file_pixel_size_um).replace(
        invert=plan.bright, auto_nucleus_size=False, nucleus_diameter_px=plan.nucleus_diameter_px, exclude_border=False,
        min_distance_px=distance, channel=None if plan.one_channel else params.channel)


def _inside(rows: np.ndarray, cols: np.ndarray, box: Box) -> np.ndarray:
    return (rows >= box[0]) & (rows < box[2]) & (cols >= box[1]) & (cols < box[3])


def count_block(plan: BlockPlan, index: int, model: CountModel, params: CountParams) -> BlockPart:
    """Count block ``index`` of ``plan`` and keep what its core owns (see the module notes)."""
    t0 = time.perf_counter()
    core, box = plan.cores[index], plan.blocks[index]
    with open_lazy(plan.source) as plane:
        image = plane[box[0]:box[2], box[1]:box[3]]
    bp = block_params(plan, params)
    pred = predict(image, model, bp, limits=plan.limits)
    result = postprocess(pred, bp, image=image)
    del pred
    h, w = plan.shape
    objects = result.objects
    if len(objects):
        objects = objects.assign(centroid_row=objects["centroid_row"] + box[0],
                                 centroid_col=objects["centroid_col"] + box[1])
        for col, off in (("bbox_row0", box[0]), ("bbox_row1", box[0]), ("bbox_col0", box[1]), ("bbox_col1", box[1])):
            if col in objects.columns:
                objects[col] = objects[col] + off
        for col, px in (("centroid_row_um", "centroid_row"), ("centroid_col_um", "centroid_col")):
            if col in objects.columns and bp.pixel_size_um:  # from the whole image's corner, as the pixels are
                objects[col] = objects[px] * bp.pixel_size_um
        keep = _inside(objects["centroid_row"].to_numpy(), objects["centroid_col"].to_numpy(), core)
        if params.exclude_border and "bbox_row0" in objects.columns:
            keep &= ~((objects["bbox_row0"] == 0) | (objects["bbox_col0"] == 0) | (objects["bbox_row1"] == h)
                      | (objects["bbox_col1"] == w)).to_numpy()
        objects = objects[keep].reset_index(drop=True)
    local = (slice(core[0] - box[0], core[2] - box[0]), slice(core[1] - box[1], core[3] - box[1]))
    density = result.density
    density_count = None if density is None else map_integral(density[local])
    by_density = result.output_kind == "density" or (density_count is not None and params.count_source == "density")
    estimate = density_count if by_density else float(len(objects))
    regions: dict[str, float] = {}
    for name, r0, c0, r1, c1 in plan.regions:
        inter = (max(r0, core[0]), max(c0, core[1]), min(r1, core[2]), min(c1, core[3]))
        if inter[2] <= inter[0] or inter[3] <= inter[1]:
            continue
        if by_density:
            regions[name] = map_integral(density[inter[0] - box[0]:inter[2] - box[0],
                                                     inter[1] - box[1]:inter[3] - box[1]])
        elif len(objects):
            regions[name] = float(_inside(objects["centroid_row"].to_numpy(), objects["centroid_col"].to_numpy(),
                                          inter).sum())
        else:
            regions[name] = 0.0
    return BlockPart(index=index, count=len(objects), count_estimate=float(estimate), density_count=density_count,
                     objects=objects, regions=regions, seconds=time.perf_counter() - t0,
                     model_scale=result.model_scale, n_rejected=dict(result.n_rejected), quality=result.quality,
                     split_used=result.split_used, backend=result.backend)


def combine_blocks(plan: BlockPlan, parts: Sequence[BlockPart], model: CountModel | str, output_kind: str,
                   params: CountParams) -> tuple[CountResult, pd.DataFrame]:
    """The whole image's result from its blocks' parts, and its region counts (file-less table:
    region, row0, col0, row1, col1, count)."""
    parts = sorted(parts, key=lambda part: part.index)
    if [part.index for part in parts] != list(range(len(plan.blocks))):
        raise ValueError("combine_blocks needs exactly one part per block")
    frames = [part.objects for part in parts if len(part.objects)]
    objects = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label"])
    objects["label"] = np.arange(1, len(objects) + 1)
    estimate = float(sum(part.count_estimate for part in parts))
    densities = [part.density_count for part in parts]
    density_total = None if any(d is None for d in densities) else float(sum(densities))
    kind = "density" if output_kind == "density" else "mask"
    by_density = kind == "density" or (density_total is not None and params.count_source == "density")
    count = int(round(estimate)) if by_density else int(sum(part.count for part in parts))
    rejected: dict[str, int] = {}
    for part in parts:
        for k, v in part.n_rejected.items():
            rejected[k] = rejected.get(k, 0) + v
    peaks = objects[["centroid_row", "centroid_col"]].to_numpy() if len(objects) else np.zeros((0, 2))
    result = CountResult(
        model_name=model if isinstance(model, str) else model.name, output_kind=kind, count=count,
        count_estimate=estimate if by_density else float(count), labels=None, rejected=None, probability=None,
        density=None, peaks=peaks, objects=objects, params=params,
        seconds={"plan": plan.seconds, "blocks": float(sum(part.seconds for part in parts))}, inverted=plan.bright,
        n_rejected=rejected, model_scale=parts[0].model_scale if parts else 1.0,
        estimated_diameter_px=plan.estimated_diameter_px if params.auto_nucleus_size else None,  # as a whole image reports it
        density_count=density_total if output_kind == "multihead" else None,
        min_distance_px=None if kind == "density" else block_params(plan, params).min_distance_px or None,
        # a whole image of nothing is judged as a whole (its empty blocks are not)
        quality=nothing_found(_noted(_noted(combine_quality([part.quality for part in parts]), plan.note),
                                     _mixed_split_note(parts)), count, dropped=sum(rejected.values())),
        split_used=_splits_used(parts), backend=_joined({part.backend for part in parts}),
        pixel_size_um=block_params(plan, params).pixel_size_um,
    )
    rows = []
    for name, r0, c0, r1, c1 in plan.regions:
        value = sum(part.regions.get(name, 0.0) for part in parts)
        rows.append({"region": name, "row0": r0, "col0": c0, "row1": r1, "col1": c1,
                     "count": round(value, 3) if by_density else int(value)})
    return result, pd.DataFrame(rows, columns=["region", "row0", "col0", "row1", "col1", "count"])


def _joined(names: set[str | None]) -> str | None:
    """One backend name for the blocks' (``bf16+torch`` where workers ran different ones)."""
    named = sorted(n for n in names if n)
    return "+".join(named) if named else None


def _splits_used(parts: Sequence[BlockPart]) -> str | None:
    """The split the blocks got with split mode "auto": one name when they agree, else each with its blocks
    ("mixed: borders 1, both 3": each block chooses for itself, as an image does)."""
    used = [part.split_used for part in parts if part.split_used]
    if not used:
        return None
    kinds = sorted(set(used))
    if len(kinds) == 1:
        return kinds[0]
    return "mixed: " + ", ".join(f"{k} {used.count(k)}" for k in kinds)


def _regions_inside(regions, shape: tuple[int, int]) -> tuple[list[tuple[str, int, int, int, int]], list[str]]:
    """``regions`` clipped to an image of ``shape`` (boxes wholly outside dropped), and the names of those that
    were not wholly inside."""
    kept, off = [], []
    for label, r0, c0, r1, c1 in regions:
        cr0, cc0, cr1, cc1 = max(r0, 0), max(c0, 0), min(r1, shape[0]), min(c1, shape[1])
        if (cr0, cc0, cr1, cc1) != (r0, c0, r1, c1):
            off.append(label)
        if cr1 > cr0 and cc1 > cc0:
            kept.append((label, cr0, cc0, cr1, cc1))
    return kept, off


def _mixed_split_note(parts: Sequence[BlockPart]) -> str | None:
    """Why to check a count whose blocks split touching nuclei differently (split mode "auto" decides per block,
    on the share of touching objects it sees): the count can then differ from a whole image's, split one way,
    by a few percent (a crowded sample: 240 by blocks, 252 whole)."""
    # a block of under MIN_TOUCH_OBJECTS objects (a slide's empty margin) has no share to decide on: it reads
    # "borders" whatever the image, which flagged crowded slides whose every block of cells chose "both"
    used = _splits_used([part for part in parts if part.count >= MIN_TOUCH_OBJECTS])
    if not used or not used.startswith("mixed: "):
        return None
    return (f"its blocks split touching nuclei differently (split mode auto: {used.removeprefix('mixed: ')}), so "
            "its count can differ from a whole-image count by a few percent: choose the split (borders or both) "
            "for counts that do not depend on the blocks")


def _noted(quality: Quality | None, note: str | None) -> Quality | None:
    from .quality import with_note

    return with_note(quality, note) if note else quality


def count_blocks(
    source: str | os.PathLike,
    model: CountModel,
    params: CountParams | dict[str, Any] | None = None,
    *,
    block_px: int = DEFAULT_BLOCK_PX,
    overlap_px: int = DEFAULT_OVERLAP_PX,
    regions: Sequence[tuple[str, int, int, int, int]] = (),
    progress=None,
) -> tuple[CountResult, pd.DataFrame]:
    """Count a huge image block by block in this process: (result without label image, region counts).

    ``progress(done, total)`` is called after each block.
    """
    p = params if isinstance(params, CountParams) else resolve_params(model, params)
    plan = plan_blocks(source, model, p, block_px=block_px, overlap_px=overlap_px, regions=regions)
    parts = []
    for i in range(len(plan.blocks)):
        parts.append(count_block(plan, i, model, p))
        if progress is not None:
            progress(i + 1, len(plan.blocks))
    return combine_blocks(plan, parts, model, model.output_kind, p)


def plan_summary(plan: BlockPlan) -> str:
    """One line for logs: size, blocks, normalisation."""
    return json.dumps({"shape": plan.shape, "blocks": len(plan.blocks), "block_px": plan.block_px,
                       "overlap_px": plan.overlap_px, "limits": plan.limits, "bright": plan.bright})
