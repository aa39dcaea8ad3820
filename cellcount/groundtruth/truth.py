"""The ground-truth record (:class:`GroundTruth`), its checks and warnings, and instance labels from an array."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from cellcount.errors import GroundTruthError
from cellcount.io import (
    DEFAULT_MAX_PIXELS,
)

logger = logging.getLogger(__name__)


MAX_DOT_AREA_PX = 9
"""A binary ground-truth image whose every blob is at most this many pixels (3 x 3) holds dots, not nuclei."""


MAX_STAMP_AREA_PX = 49
"""The largest dot a drawing tool stamps that a binary image is read as dots by (a disc of radius 4): ..."""
MIN_STAMPS = 5
STAMP_SHARE = 0.8
"""... when at least :data:`MIN_STAMPS` blobs, this share of them, have one and the same area (a brush's), larger
than a speck, and no blob is smaller but along the image's edge (a stamp cut off there; the larger ones are stamps
that touch): nuclei drawn or thresholded vary in size, and a thresholded mask's noise is specks."""


def holds_only_specks(gt: GroundTruth) -> bool:
    """Whether ground truth read as a binary mask is a dot image: every blob at most :data:`MAX_DOT_AREA_PX`, or
    most of them stamped alike by one brush (:data:`MAX_STAMP_AREA_PX`, :data:`STAMP_SHARE`), as 5 x 5 squares
    or discs of radius 3 are."""
    if gt.kind != "mask" or not gt.count or gt.labels is None:
        return False
    by_id = np.bincount(gt.labels.ravel())
    by_id[0] = 0
    areas = by_id[by_id > 0]
    if int(areas.max()) <= MAX_DOT_AREA_PX:
        return True
    sizes, n = np.unique(areas, return_counts=True)
    common = int(n.argmax())
    stamp = int(sizes[common])
    if not (len(areas) >= MIN_STAMPS and MAX_DOT_AREA_PX < stamp <= MAX_STAMP_AREA_PX
            and n[common] >= STAMP_SHARE * len(areas)):
        return False
    small = np.flatnonzero((by_id > 0) & (by_id < stamp))
    lab = gt.labels
    return bool(np.isin(small, np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])).all())  # cut off by an edge


GROUND_TRUTH_KINDS = ("labels", "mask", "points", "count")
"""Values of :attr:`GroundTruth.kind`."""


# 8-connectivity: a hand-drawn or thresholded mask of one cell often touches itself only diagonally
_STRUCTURE_8 = np.ones((3, 3), dtype=bool)


MAX_COORDINATE_PX = 1 << 20
"""Largest point coordinate accepted (pixels): far beyond any image within the pixel cap."""


MAX_GROUND_TRUTH_COUNT = DEFAULT_MAX_PIXELS
"""Largest count accepted as ground truth: one cell per pixel of the largest image read. A larger number
(``1e300`` in a spreadsheet) is a typo, and would make every error metric infinite."""


def _check_count(count: object, where: str) -> None:
    """Raise GroundTruthError unless ``count`` is a whole number in [0, MAX_GROUND_TRUTH_COUNT]."""
    ok = isinstance(count, (int, np.integer)) and not isinstance(count, (bool, np.bool_))
    if not ok or not 0 <= int(count) <= MAX_GROUND_TRUTH_COUNT:
        raise GroundTruthError(
            f"{where}: count must be a whole number within [0, {MAX_GROUND_TRUTH_COUNT:,}], got {count!r}"
        )


class SpeckledMaskWarning(UserWarning):
    """A binary mask holds specks far smaller than its other objects (noise?); they count as cells."""


class BinaryMaskWarning(UserWarning):
    """A binary mask was split into objects by connectivity: touching cells are merged into one."""


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Ground truth of one image.

    Attributes
    ----------
    kind : str
        ``'labels'`` (instance labels), ``'mask'`` (a binary mask split by 8-connectivity, so touching
        cells are merged), ``'points'`` (one point per cell) or ``'count'`` (only the number).
    count : int
        Number of cells: distinct non-zero labels, or number of points.
    labels : numpy.ndarray or None
        int32 (H, W), 0 = background, for ``'labels'`` and ``'mask'``; ids need not be consecutive.
    points : numpy.ndarray or None
        float64 (N, 2) of (row, col) pixel coordinates, for ``'points'``.
    source : str
        Where it was read from (file name), for messages and reports.
    """

    kind: str
    count: int
    labels: np.ndarray | None = field(default=None, repr=False)
    points: np.ndarray | None = field(default=None, repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in GROUND_TRUTH_KINDS:
            raise GroundTruthError(f"kind must be one of {GROUND_TRUTH_KINDS}, got {self.kind!r}")
        _check_count(self.count, self.source or "ground truth")

    def content_bytes(self) -> bytes:
        """What the annotation says (labels, points, count) as bytes, for fingerprints: two annotations
        that score a count alike give the same bytes, wherever they were read from."""
        parts = []
        if self.labels is not None:
            parts.append(np.ascontiguousarray(self.labels, np.int32).tobytes())
        if self.points is not None:
            parts.append(np.ascontiguousarray(self.points, np.float64).tobytes())
        parts.append(str(self.count).encode())
        return b"".join(parts)


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------
def _count_labels(labels: np.ndarray) -> int:
    """Number of distinct non-zero values of a non-negative integer array."""
    if labels.size == 0:
        return 0
    top = int(labels.max())
    if top == 0:
        return 0
    if top <= 4 * labels.size + 1024:
        return int(np.count_nonzero(np.bincount(labels.ravel())[1:]))
    return int(np.count_nonzero(np.unique(labels)))


def _colours_to_ids(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """Map each colour of an (H, W, 3) image to an id (black -> 0), then split each colour into its
    8-connected regions, because colour maps reuse colours for objects that do not touch.

    Returns (int64 (H, W) labels, number of distinct object colours)."""
    from skimage.measure import label as cc_label  # heavy import, only needed here

    flat = rgb.reshape(-1, 3)
    if np.issubdtype(rgb.dtype, np.integer) and rgb.min() >= 0 and rgb.max() <= 0xFFFF:
        v = flat.astype(np.int64)
        keys = (v[:, 0] << 32) | (v[:, 1] << 16) | v[:, 2]
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        has_black = bool(uniq[0] == 0)
    else:
        uniq, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
        has_black = bool(np.all(uniq[0] == 0))
    ids = inverse.reshape(rgb.shape[:2]).astype(np.int64)
    if not has_black:  # e.g. a white canvas: taken as an object, it added one to the count
        background = int(np.argmax(counts))
        logger.warning("colour label image has no black background; its commonest colour %s is taken as "
                       "the background", tuple(int(c) for c in flat[np.argmax(inverse.ravel() == background)]))
        ids = np.where(ids == background, 0, ids + 1)
    n_colours = len(uniq) - 1
    return cc_label(ids, background=0, connectivity=2).astype(np.int64), n_colours


def from_corner_based(points: np.ndarray) -> np.ndarray:
    """(row, col) points of a tool whose pixel (0, 0) spans 0-1, its centre at 0.5 (QuPath, ImageJ's float
    coordinates and measured centres), in ours, where a pixel's centre is its index: the outlines of the same tools
    are moved alike (``exported._outlines_to_labels``), and a click at a pixel's centre read unmoved would match the
    next pixel half the time (half-way values round to even)."""
    return np.maximum(np.asarray(points, np.float64) - 0.5, 0.0)


class PredictedLabelsWarning(UserWarning):
    """A label image or objects table cellcount wrote (its TIFF description, its columns say so): a model's count,
    which scores any model that counts alike as perfect, unless someone corrected it by hand."""


class DuplicatePointsWarning(UserWarning):
    """A point table listed the same point more than once (a double export); each was counted once."""


def _points_truth(points: np.ndarray, name: str) -> GroundTruth:
    """Point ground truth, each point once: two cells never share a position to a hundredth of a pixel, so
    repeats are a double export (every row twice doubled the true counts, and a model fine-tuned on them
    counted about twice the cells), and are dropped with a :class:`DuplicatePointsWarning`."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) > 1:
        _, first = np.unique(np.round(pts, 2), axis=0, return_index=True)
        if len(first) < len(pts):
            warnings.warn(f"{name}: {len(pts) - len(first)} of its {len(pts)} points repeat another point exactly "
                          "(exported twice, or one cell marked twice?); each position is counted once",
                          DuplicatePointsWarning, stacklevel=3)
            pts = pts[np.sort(first)]
    if len(pts) > 1:  # near, not equal: one cell clicked twice, which scores a found nucleus as a miss
        from scipy.spatial import cKDTree

        close = cKDTree(pts).query_pairs(NEAR_POINTS_PX, output_type="ndarray")
        if len(close):
            warnings.warn(f"{name}: {len(close)} pair(s) of its points lie within {NEAR_POINTS_PX:g} px of each other "
                          "(one cell marked twice?); each counts as a cell, and the second of a pair in one object "
                          "reads as a miss", DuplicatePointsWarning, stacklevel=3)
    return GroundTruth(kind="points", count=len(pts), points=pts, source=name)


NEAR_POINTS_PX = 2.0
"""Two dots this near mark one cell twice (a double click lands 0-2 px apart): no two nuclei's centres lie so close
(dots copied 0.5 px away read as the model's misses, unsaid); mbm's own tables hold 9 pairs within 2 px, the
nearest 1.0 px apart (``python scripts/annotation_faults_probe.py``)."""


MASK_SPECK_PX = 4
"""A binary mask's blob of at most this many pixels, beside larger objects whose median is at least
:data:`SPECK_MEDIAN_PX`, is most likely noise (from thresholding, or JPEG saving) rather than a cell."""
SPECK_MEDIAN_PX = 25


def _warn_binary(name: str, what: str, n_objects: int, labels: np.ndarray | None = None) -> None:
    warnings.warn(
        f"{name}: binary mask ({what}) split into {n_objects} objects by 8-connected components; "
        "touching cells are merged into one object",
        BinaryMaskWarning,
        stacklevel=3,
    )
    if labels is None or n_objects < 2:
        return
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    specks = int(np.count_nonzero(areas <= MASK_SPECK_PX))
    others = areas[areas > MASK_SPECK_PX]  # the median of the objects, however many specks there are
    if specks and len(others) and float(np.median(others)) >= SPECK_MEDIAN_PX:
        warnings.warn(
            f"{name}: {specks} of the mask's {n_objects} objects are specks of at most {MASK_SPECK_PX} px beside "
            f"objects of {int(np.median(others))} px (median): noise in the mask? They count as cells of the ground "
            "truth; remove them from the mask to leave them out",
            SpeckledMaskWarning,
            stacklevel=3,
        )


def labels_from_array(arr: np.ndarray, *, source: str = "") -> GroundTruth:
    """Build ground truth from a label image, a binary mask or a colour-coded instance image.

    Parameters
    ----------
    arr : numpy.ndarray
        (H, W) integer, bool or integral-valued float labels (0 = background), or (H, W, 3|4) colour-coded
        instances (black = background, or the commonest colour when no pixel is black; alpha ignored;
        each colour's 8-connected regions become one id each). An (H, W, C) image whose channels are equal is taken as (H, W).
    source : str
        Recorded in the result, used in messages.

    Returns
    -------
    GroundTruth
        ``kind='labels'`` with int32 labels (more than 65,535 labels are kept; ids above the int32 range
        are renumbered 1..N). An array with a single non-zero value that forms several 8-connected
        regions (or a bool / 0-255 / 0-65535 array) is a binary mask: it is labelled by 8-connected
        components, returned as ``kind='mask'`` and a :class:`BinaryMaskWarning` is issued, because
        touching cells merge into one object.

    Raises
    ------
    GroundTruthError
        Wrong shape, negative values, non-integral or non-finite floats, non-numeric dtype.
    """
    name = source or "label image"
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    is_colour = False
    if a.ndim == 3:
        if a.shape[2] not in (3, 4):
            raise GroundTruthError(
                f"{name}: a label image must be (H, W) or colour (H, W, 3|4), got shape {a.shape}"
            )
        a = a[:, :, :3]
        if np.array_equal(a[:, :, 0], a[:, :, 1]) and np.array_equal(a[:, :, 0], a[:, :, 2]):
            a = a[:, :, 0]
        else:
            is_colour = True
    if a.ndim != (3 if is_colour else 2) or 0 in a.shape:
        raise GroundTruthError(f"{name}: a label image must be a non-empty (H, W) array, got shape {a.shape}")
    was_bool = a.dtype == bool
    if was_bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise GroundTruthError(f"{name}: labels must be integers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise GroundTruthError(f"{name}: labels contain NaN or infinite values")
        if not np.array_equal(a, np.round(a)):
            raise GroundTruthError(f"{name}: labels must be whole numbers, found non-integral float values")
        if a.size and float(a.max()) >= 2.0**53:
            raise GroundTruthError(f"{name}: float labels above 2**53 cannot be represented exactly")
        a = a.astype(np.int64)
    if a.size and int(a.min()) < 0:
        raise GroundTruthError(f"{name}: labels must be >= 0, found {int(a.min())}")
    n_colours = 0
    if is_colour:  # a colour mask through JPEG too: its colours change inside each object
        rgb = a.astype(np.int64)
        _refuse_noisy_ids((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], name)
        a, n_colours = _colours_to_ids(a)

    if is_colour and n_colours == 1 and int(a.max()) > 1:
        _warn_binary(name, "one colour", int(a.max()), a)
        return GroundTruth(kind="mask", count=int(a.max()), labels=a.astype(np.int32), source=source)
    if is_colour and int(a.max()) - n_colours >= max(REUSED_COLOURS_MIN, REUSED_COLOURS_SHARE * n_colours):
        # a palette cycled over the objects (skimage's label2rgb: about 7 colours): touching objects of one colour
        # are one region, so objects would go missing unsaid
        warnings.warn(f"{name}: a colour label image of {int(a.max())} objects in only {n_colours} colours (a palette "
                      "used again for several objects): touching objects of one colour are read as one; save label "
                      "images with one id per object (16-bit grey) or one colour per object",
                      ReusedColoursWarning, stacklevel=2)
    values = np.unique(a[a != 0]) if a.any() else np.zeros(0, dtype=a.dtype)
    if len(values) == 1 and not is_colour:
        comps, n_comp = ndi.label(a != 0, structure=_STRUCTURE_8)
        value = int(values[0])
        _refuse_background(comps, value, name)  # a 0/1 mask saved inverted is one region of value 1
        if was_bool or n_comp > 1 or value in (255, 65535):
            _warn_binary(name, f"single value {value}", n_comp, comps)
            return GroundTruth(kind="mask", count=n_comp, labels=comps.astype(np.int32), source=source)
    if not is_colour and len(values) >= 3:
        _refuse_noisy_ids(a, name)
    if a.dtype == np.uint8 and not is_colour and len(values) >= 200 and int(a.max()) == 255:
        a = _unwrapped_8bit(a, len(values), name)
    if not is_colour and 2 <= len(values) <= CLASS_MAP_MAX_VALUES:
        _refuse_class_map(a, len(values), name)
    if a.size and int(a.max()) > np.iinfo(np.int32).max:
        from skimage.segmentation import relabel_sequential

        logger.info("%s: label ids above the int32 range renumbered 1..N", name)
        a = relabel_sequential(a.astype(np.int64))[0]
    labels = a.astype(np.int32)
    return GroundTruth(kind="labels", count=_count_labels(labels), labels=labels, source=source)


CLASS_MAP_MAX_VALUES = 64
"""Label images of at most this many values are checked for being a class map (:func:`_refuse_class_map`)."""
CLASS_MAP_EXTRA_REGIONS = 10
"""A label image whose values mark at least this many more separate regions than there are values, and at least
twice as many regions as values, is a class map: of DSB's 522 label images, 520 have one region per id and two have
one extra (``python scripts/annotation_faults_probe.py``)."""


def _refuse_class_map(a: np.ndarray, n_values: int, name: str) -> None:
    """GroundTruthError where each value marks many separate regions: a class map (ilastik's Simple Segmentation,
    a semantic mask of a few classes) read as one object per value would score every model against a count of 2-3."""
    from skimage.measure import label

    regions = int(label(a, background=0, connectivity=2).max())
    if regions - n_values >= CLASS_MAP_EXTRA_REGIONS and regions >= 2 * n_values:
        raise GroundTruthError(
            f"{name}: its {n_values} values mark {regions} separate regions, so it holds no one id per object: a "
            "class map (one value per kind of pixel, as ilastik's Simple Segmentation saves), read as one object "
            "per value. Save the instance labels (one id per object), or a binary mask of the nuclei (0 and 255)")


NOISY_IDS_SHARE = 0.35
"""A label image whose neighbouring foreground pixels differ in value this often holds no one id per object: a
mask that went through JPEG and was saved again as PNG read 0.54-0.82 (its 70-79 grey levels counted as 70-79
objects where 23-90 nuclei were), DSB's 522 label images at most 0.034, the samples' 0.026 (``python
scripts/annotation_faults_probe.py``; results/probes/amd-zen5-2026-12-07-annotation-faults.txt); 5 x 5 px objects
packed edge to edge, all touching, would read about 0.2."""


def _refuse_noisy_ids(a: np.ndarray, name: str) -> None:
    """GroundTruthError where the ids change inside objects (:data:`NOISY_IDS_SHARE`) and each lies in many pieces:
    compression noise or smoothing, read as one object per grey level."""
    pairs = differ = 0
    for x, y in ((a[:, 1:], a[:, :-1]), (a[1:, :], a[:-1, :])):
        both = (x != 0) & (y != 0)
        pairs += int(both.sum())
        differ += int((both & (x != y)).sum())
    if not (pairs >= 100 and differ > NOISY_IDS_SHARE * pairs):
        return
    from skimage.measure import label

    # and each value in pieces all over (noise), not one region per id (objects of a pixel or two, touching)
    n_values = len(np.unique(a[a != 0]))
    if int(label(a, background=0, connectivity=1).max()) > 3 * n_values:
        raise GroundTruthError(
            f"{name}: neighbouring pixels inside its objects differ in value ({differ / pairs:.0%} of them), so it holds "
            "no one id per object: a mask or label image that went through lossy compression (JPEG, even if saved "
            "again as PNG) or was smoothed or resized. Export the labels again from the original, as PNG or TIFF")


BACKGROUND_SHARE = 0.5
"""A binary mask's region that covers more than this share of the image and touches all four edges is its
background, not a nucleus: the mask was saved inverted (or its nuclei merge into one region)."""


def _refuse_background(comps: np.ndarray, value: int, name: str) -> None:
    """GroundTruthError when the largest region of a binary mask's labelled ``comps`` is its background: a mask
    saved inverted (nuclei black on white) read as one object, scoring every model against a count of 1."""
    if not comps.any():
        return
    areas = np.bincount(comps.ravel())
    areas[0] = 0
    big = int(areas.argmax())
    if areas[big] <= BACKGROUND_SHARE * comps.size:
        return
    edges = (comps[0], comps[-1], comps[:, 0], comps[:, -1])
    if all((edge == big).any() for edge in edges):
        raise GroundTruthError(
            f"{name}: a mask whose largest region (value {value}) covers {areas[big] / comps.size:.0%} of the "
            "image and touches all four edges: that is the background, not a nucleus. The mask may be saved inverted "
            "(nuclei black on white: invert it, so that nuclei are white on black), or its nuclei touch so much that "
            "they merge into one region (save a label image, one value per nucleus)")


CELLPOSE_SEG_NOTE = ("Cellpose's _seg.npy is not read (it holds pickled Python objects, which a file can use to run "
                     "code): save Cellpose's masks as PNG (its _cp_masks.png is read as a label image)")
"""Why a Cellpose ``<image>_seg.npy`` beside the images is not used (said by the folder reader and the app)."""


REUSED_COLOURS_SHARE = 0.2
REUSED_COLOURS_MIN = 3
"""A colour label image with more objects (regions of one colour) than colours, by at least this share of its
colours and this many, uses colours for several objects: a colour per object (one or two split in two) stays
under it, and 15 nuclei in 10 colours (one pair merged) are over it."""


class ReusedColoursWarning(UserWarning):
    """A colour label image whose colours each mark several objects: touching objects of one colour merge."""


class WrappedLabelsWarning(UserWarning):
    """An 8-bit label image whose ids repeat in places apart: more than 255 objects saved as 8-bit (ids wrap)."""


CLIPPED_APART_SHARE = 0.5
"""The share of id 255's regions that must touch no other id for an 8-bit label image to read as clipped: clipped
objects are nuclei of their own (a few touch a neighbour); 255 drawn as outlines surrounds every other id."""
CLIPPED_REGIONS = 5
"""Regions apart that id 255 of an 8-bit label image must mark, every other id marking one, to be read as ids
clipped at 255 (one object with a stray pixel or two is not that)."""


def _apart_share(a: np.ndarray, split: np.ndarray) -> float:
    """The share of the regions of id 255 in an 8-bit label image ``a`` (``split``: its regions) that touch no
    pixel of another id (8-neighbours)."""
    top = a == 255
    others = (a != 0) & ~top
    near = ndi.binary_dilation(others, structure=_STRUCTURE_8)
    regions = np.unique(split[top])
    touching = np.unique(split[top & near])
    return 1.0 - len(touching) / max(len(regions), 1)


STRAY_SHARE = 0.25
"""A region of one id under this share of the median region's area is a stray piece of its object, not another
object whose id wrapped."""


def _unwrapped_8bit(a: np.ndarray, n_ids: int, name: str) -> np.ndarray:
    """An 8-bit label image using id 255 with ids that each mark several regions apart: more objects than 8 bits
    hold, their ids wrapped (313 nuclei read as 255 objects, silently). Each region of one id becomes an object,
    with a warning; labels whose ids each mark one region are returned as they are."""
    from skimage.measure import label as regions

    split = regions(a, background=0, connectivity=2)
    n = int(split.max())
    if n <= n_ids:
        return a
    # wrapped ids repeat for many ids; a stray pixel of one object, or one id used for boundaries, is not that: only
    # regions of an object's size count (stray pixels beside 6 objects read as 6 ids wrapped, 261 objects for 255)
    id_of_region = ndi.maximum(a, split, index=np.arange(1, n + 1)).astype(np.int64)
    area = np.bincount(split.ravel(), minlength=n + 1)[1:]
    whole = area >= STRAY_SHARE * float(np.median(area))
    regions_of = np.bincount(id_of_region[whole], minlength=256)
    if int((regions_of > 1).sum()) < 5:
        if (regions_of[255] >= CLIPPED_REGIONS and int((regions_of[1:255] > 1).sum()) == 0
                and _apart_share(a, split) >= CLIPPED_APART_SHARE):
            # ids past 255 set to 255 (Fiji's 16 -> 8-bit without scaling, a saturating cast): only 255 repeats, in
            # regions of their own; 255 as the objects' outlines (every region of it around another id) is not that
            warnings.warn(f"{name}: an 8-bit label image whose id 255 marks {int(regions_of[255])} regions apart, "
                          "every other id one: likely more than 255 objects saved in 8 bits, the ids above 255 "
                          f"clipped to 255; read as {n} objects, one per region of one id, though touching objects "
                          "of id 255 stay merged (save label images as 16-bit)", WrappedLabelsWarning, stacklevel=3)
            return split.astype(np.int64)
        if regions_of[255] >= CLIPPED_REGIONS and int((regions_of[1:255] > 1).sum()) == 0:
            # many of 255's regions touch other ids: outlines drawn in 255, or a crowded image's ids clipped there
            # (a 272-nucleus field read as 255): which, the file cannot say, so it is read as it is and said
            warnings.warn(f"{name}: an 8-bit label image whose id 255 marks {int(regions_of[255])} regions apart, "
                          "many of them touching other objects: either outlines drawn in 255, or more than 255 "
                          f"objects saved in 8 bits with the ids above 255 clipped to 255; read as it is ({n_ids} "
                          "objects). Save label images as 16-bit to be sure", WrappedLabelsWarning, stacklevel=3)
        return a
    warnings.warn(f"{name}: an 8-bit label image whose ids repeat in {n - n_ids} place(s) apart: likely more than "
                  f"255 objects saved in 8 bits, their ids wrapped; read as {n} objects, one per region of one id, "
                  "though objects whose id wrapped to 0 (256, 512 ...) are lost as background (save label images "
                  "as 16-bit)", WrappedLabelsWarning, stacklevel=3)
    return split.astype(np.int64)


def _name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else ""


def _expected_hw(expected_shape: Sequence[int] | None) -> tuple[int, int] | None:
    if expected_shape is None:
        return None
    shape = tuple(int(n) for n in expected_shape)
    if len(shape) < 2:
        raise GroundTruthError(f"expected_shape must be (H, W) or (H, W, C), got {expected_shape}")
    return shape[0], shape[1]


def _check_shape(name: str, shape: tuple[int, ...], expected_shape: Sequence[int] | None) -> None:
    expected = _expected_hw(expected_shape)
    if expected is not None and tuple(shape[:2]) != expected:
        raise GroundTruthError(
            f"{name}: ground truth shape {tuple(shape[:2])} (H, W) does not match the image shape "
            f"{expected} (H, W)"
        )
