"""Annotations as other programs export them: Fiji's Cell Counter XML and ImageJ ROIs, QuPath's (or napari's) GeoJSON."""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Sequence

import numpy as np

from cellcount.errors import GroundTruthError
from cellcount.io import (
    DEFAULT_MAX_PIXELS,
    open_zip,
    zip_files,
)

from .tables import CsvSource, _read_bounded
from .truth import MAX_COORDINATE_PX, GroundTruth, _count_labels, _expected_hw, _points_truth, from_corner_based

MAX_XML_BYTES = 64 * 1024 * 1024


def read_cellcounter_xml(source: CsvSource) -> GroundTruth:
    """Markers saved by Fiji's Cell Counter plugin (``CellCounter_<image>.xml``) as points.

    Every marker type counts (a type is usually a class of cell: positive, negative); ``MarkerX``/``MarkerY`` are
    pixels of the image (x the column).

    Raises
    ------
    GroundTruthError
        Not a Cell Counter file, not XML, a marker without numeric coordinates, or too large.
    """
    import xml.etree.ElementTree as ET

    name, data = _read_bounded(source, MAX_XML_BYTES, "<xml>", "not a Cell Counter file")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise GroundTruthError(f"{name}: not readable XML ({err})") from err
    if root.tag != "CellCounter_Marker_File":
        raise GroundTruthError(f"{name}: XML, but not markers saved by Fiji's Cell Counter (root <{root.tag}>); "
                               "export the points as a CSV with x,y columns instead")
    points = []
    for k, marker in enumerate(root.iter("Marker")):
        try:
            x, y = float(marker.findtext("MarkerX", "")), float(marker.findtext("MarkerY", ""))
        except ValueError:
            raise GroundTruthError(f"{name}: marker {k + 1} has no numeric MarkerX/MarkerY") from None
        if not (0 <= x <= MAX_COORDINATE_PX and 0 <= y <= MAX_COORDINATE_PX):
            raise GroundTruthError(f"{name}: marker {k + 1} at ({x:g}, {y:g}) is not inside an image")
        points.append((y, x))
    return _points_truth(np.asarray(points, np.float64).reshape(-1, 2), name)


GEOJSON_EXTENSIONS = (".geojson",)


QUPATH_OBJECTS = frozenset({"detection", "cell"})
"""QuPath's object types that are the counted objects: where a GeoJSON file has any, its annotations (the region
the detection ran in), tiles and TMA cores are left out."""


MAX_GEOJSON_BYTES = 256 * 1024 * 1024


class IgnoredClassWarning(UserWarning):
    """Objects of QuPath's ``Ignore*`` class (its class for what is not to be counted) were left out."""


def _ignored(feature: dict) -> bool:
    """Whether a QuPath object is of its ``Ignore*`` class (``properties.classification.name``, or a bare name)."""
    props = feature.get("properties")
    cls = props.get("classification") if isinstance(props, dict) else None
    name = cls.get("name") if isinstance(cls, dict) else cls
    return isinstance(name, str) and name.strip().lower().startswith("ignore")


def read_geojson(source: CsvSource, *, expected_shape: Sequence[int] | None = None) -> GroundTruth:
    """Objects exported as GeoJSON (QuPath's "Export objects as GeoJSON", napari, others), in image pixels.

    QuPath's exports: where there are detections or cells (``objectType``), they alone are the objects (the
    annotation the detection ran in is the region, not an object), and a cell is its nucleus (``nucleusGeometry``)
    when it has one. Polygons and multipolygons (one object each; holes kept out) become an instance label image of
    ``expected_shape`` (H, W), drawn in file order, a later object over an earlier one; without a shape, the
    extent of the outlines. Points and multipoints become points. A file with both is refused: outlines and dots
    are two annotations.
    """
    import json

    name, data = _read_bounded(source, MAX_GEOJSON_BYTES, "<geojson>", "too large for ground truth")
    try:
        obj = json.loads(data.decode("utf-8-sig"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as err:  # ValueError: JSON's NaN / Infinity too
        raise GroundTruthError(f"{name}: not readable GeoJSON ({err})") from err
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features") or []
    elif isinstance(obj, list):  # QuPath's older exports: a list of features
        features = obj
    elif isinstance(obj, dict) and obj.get("type") == "Feature":
        features = [obj]
    elif isinstance(obj, dict) and "coordinates" in obj:
        features = [{"geometry": obj}]
    else:
        raise GroundTruthError(f"{name}: JSON, but not GeoJSON objects (a FeatureCollection or a list of features)")
    features = [f for f in features if isinstance(f, dict)]
    types = {_qupath_type(f) for f in features}
    if types & QUPATH_OBJECTS:  # QuPath's export holds its regions too (an annotation around the detected cells)
        features = [f for f in features if _qupath_type(f) in (*QUPATH_OBJECTS, "")]
    if n_ignored := sum(map(_ignored, features)):
        features = [f for f in features if not _ignored(f)]
        warnings.warn(f"{name}: {n_ignored} object(s) of QuPath's class Ignore* left out (its class for what is not "
                      "to be counted)", IgnoredClassWarning, stacklevel=2)
    polygons: list[list[list[np.ndarray]]] = []  # objects -> parts -> rings (x, y)
    points: list[tuple[float, float]] = []
    try:
        for feature in features:
            # a QuPath cell: its nucleus when it has one, the counted object here
            geometry = feature.get("nucleusGeometry") or feature.get("geometry") or {}
            if not isinstance(geometry, dict):
                continue
            kind, coords = geometry.get("type"), geometry.get("coordinates")
            if kind in ("Polygon", "MultiPolygon"):
                parts = [coords] if kind == "Polygon" else list(coords or [])
                rings = [[np.asarray(ring, np.float64).reshape(-1, np.shape(ring)[-1] if np.ndim(ring) == 2 else 2)[:, :2]
                          for ring in part] for part in parts if part]
                rings = [[r for r in part if len(r)] for part in rings]
                rings = [part for part in rings if part]
                if rings:  # an empty polygon is no object
                    polygons.append(rings)
            elif kind == "Point":
                points.append((float(coords[1]), float(coords[0])))
            elif kind == "MultiPoint":
                points.extend((float(c[1]), float(c[0])) for c in coords)
            # lines (a measurement), collections: not objects, passed over
    except (TypeError, ValueError, IndexError, AttributeError, OverflowError) as err:
        raise GroundTruthError(f"{name}: a feature without usable coordinates ({err})") from err
    every_ring = [r for obj in polygons for part in obj for r in part]
    if not all(np.isfinite(r).all() for r in every_ring) or not np.isfinite(np.asarray(points, np.float64)).all():
        raise GroundTruthError(f"{name}: coordinates that are not numbers (NaN or infinite)")
    polygons = _objects_not_regions(polygons, points)
    if polygons and points:
        raise GroundTruthError(f"{name}: holds both outlines ({len(polygons)}) and points ({len(points)}): export "
                               "one kind of annotation per image")
    if not polygons:
        arr = np.asarray(points, np.float64).reshape(-1, 2)
        if len(arr) and (arr.min() < 0 or arr.max() > MAX_COORDINATE_PX):
            raise GroundTruthError(f"{name}: a point lies at negative or huge coordinates: not image pixels")
        return _points_truth(from_corner_based(arr), name)
    labels = _outlines_to_labels(polygons, expected_shape, name)
    return GroundTruth(kind="labels", count=_count_labels(labels), labels=labels, source=name)


def _outlines_to_labels(polygons: list[list[list[np.ndarray]]], expected_shape: Sequence[int] | None,
                        name: str) -> np.ndarray:
    """Objects -> parts -> rings of (x, y) vertices at pixel corners (QuPath's and ImageJ's convention: a pixel's
    centre is at +0.5) -> an int32 instance label image of ``expected_shape`` (H, W), drawn in order, a later object
    over an earlier one; without a shape, the outlines' extent. A part's first ring outlines, the others are holes;
    an object smaller than a pixel keeps its centre pixel."""
    from skimage.draw import polygon as fill_polygon

    rings = [r for obj in polygons for part in obj for r in part]
    shape = _expected_hw(expected_shape)
    if shape is None:
        top = max(float(r[:, 1].max()) for r in rings), max(float(r[:, 0].max()) for r in rings)
        shape = (int(np.ceil(top[0])) + 1, int(np.ceil(top[1])) + 1)
    if shape[0] * shape[1] > DEFAULT_MAX_PIXELS:
        raise GroundTruthError(f"{name}: outlines over {shape[1]} x {shape[0]} px (W x H): above the pixel cap")
    labels = np.zeros(shape, np.int32)
    for i, parts in enumerate(polygons, 1):
        # pixel centres at integer coordinates: QuPath's and ImageJ's outlines have them at +0.5
        object_rings = [[r - 0.5 for r in part] for part in parts]
        every = np.concatenate([r for part in object_rings for r in part])
        r0, c0 = max(0, int(np.floor(every[:, 1].min()))), max(0, int(np.floor(every[:, 0].min())))
        r1, c1 = min(shape[0], int(np.ceil(every[:, 1].max())) + 1), min(shape[1], int(np.ceil(every[:, 0].max())) + 1)
        if r1 <= r0 or c1 <= c0:
            continue  # wholly outside the image
        mask = np.zeros((r1 - r0, c1 - c0), bool)  # the object's box only: thousands of objects stay cheap
        for part in object_rings:
            for k, ring in enumerate(part):
                rr, cc = fill_polygon(ring[:, 1] - r0, ring[:, 0] - c0, mask.shape)
                mask[rr, cc] = k == 0  # the first ring outlines; the others are holes
        if not mask.any():  # smaller than a pixel: its centre pixel
            y, x = every[:, 1].mean() + 0.5, every[:, 0].mean() + 0.5
            if r0 <= y < r1 and c0 <= x < c1:
                mask[int(y) - r0, int(x) - c0] = True
        labels[r0:r1, c0:c1][mask] = i
    return labels


MAX_ROI_BYTES = 256 * 1024 * 1024


MAX_ROIS = 1_000_000


def is_roi_set(source: str | os.PathLike | bytes) -> bool:
    """Whether a zip (a path or its bytes) is an ImageJ ROI set: every file in it a ``.roi`` (the ROI Manager's
    ``RoiSet.zip``), not a zip of images or tables."""
    import zipfile

    try:
        with open_zip(source) as zf:
            names = [i.filename for i in zip_files(zf)]
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return bool(names) and all(n.lower().endswith(".roi") for n in names)


def read_imagej_rois(source: CsvSource, *, expected_shape: Sequence[int] | None = None) -> GroundTruth:
    """ImageJ / Fiji ROIs as ground truth: a ``.roi`` file or the ROI Manager's set (``RoiSet.zip``, a zip of them).

    Outlines (polygon, freehand, traced, rectangle, oval, ellipse; a composite ROI is one object, its inner rings
    holes) become an instance label image of ``expected_shape`` (H, W), one object per ROI, drawn in the set's
    order; points (the multi-point tool, with or without counters: every point counts) become points. Lines,
    angles and text are not objects and are passed over; a set with both outlines and points is refused, as one
    with neither. ROIs of every plane of a stack count: annotate the plane you count. Read with ``roifile``.

    Raises
    ------
    GroundTruthError
        Not an ROI file or set, no objects in it, outlines and points together, or too large.
    """
    import zipfile

    from roifile import ROI_SUBTYPE, ROI_TYPE, ImagejRoi

    name, data = _read_bounded(source, MAX_ROI_BYTES, "<roi>", "too large for ground truth")
    blobs: list[tuple[str, bytes]] = []
    if data[:2] == b"PK":  # a zip: the ROI Manager's set
        try:
            with open_zip(data) as zf:
                members = zip_files(zf)
                if not members or not all(i.filename.lower().endswith(".roi") for i in members):
                    raise GroundTruthError(f"{name}: a zip, but not an ImageJ ROI set (the ROI Manager's RoiSet.zip "
                                           "holds only .roi files)")
                if len(members) > MAX_ROIS or sum(i.file_size for i in members) > MAX_ROI_BYTES:
                    raise GroundTruthError(f"{name}: more ROIs than ground truth may hold")
                blobs = [(i.filename, zf.read(i)) for i in members]
        except GroundTruthError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, RuntimeError) as err:  # RuntimeError: encrypted
            raise GroundTruthError(f"{name}: not a readable zip of ImageJ ROIs ({err})") from err
    else:
        blobs = [(name, data)]
    polygons: list[list[list[np.ndarray]]] = []
    points: list[np.ndarray] = []
    passed_over: set[str] = set()
    for member, blob in blobs:
        if blob[:4] != b"Iout":
            raise GroundTruthError(f"{name}: {member if member != name else 'it'} is not an ImageJ ROI (.roi) file")
        try:
            roi = ImagejRoi.frombytes(blob)
            kind, subtype = roi.roitype, roi.subtype
            if kind == ROI_TYPE.POINT:
                pts = np.asarray(roi.coordinates(), np.float64).reshape(-1, 2)[:, ::-1]  # (x, y) -> (row, col)
                # sub-pixel points are ImageJ's float coordinates (a pixel's centre at +0.5); integer ones name the
                # pixel itself
                points.append(from_corner_based(pts) if roi.subpixel_coordinates is not None else pts)
                continue
            is_outline = kind in (ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED, ROI_TYPE.OVAL) or (
                kind == ROI_TYPE.RECT and subtype not in (ROI_SUBTYPE.TEXT, ROI_SUBTYPE.IMAGE))
            if not is_outline:
                passed_over.add(getattr(kind, "name", str(kind)).lower())
                continue
            rings = [np.asarray(r, np.float64).reshape(-1, 2) for r in roi.coordinates(multi=True)]
        except (ValueError, TypeError, IndexError, KeyError, struct.error) as err:
            raise GroundTruthError(f"{name}: {member} is a damaged ImageJ ROI ({err})") from err
        rings = [r for r in rings if len(r) >= 3 and np.isfinite(r).all()]
        if rings:
            polygons.append(_roi_parts(rings))
        else:
            passed_over.add("outlines of fewer than 3 points (no area)")
    every = np.concatenate(points) if points else np.zeros((0, 2))
    # a rectangle or outline drawn around the nuclei or the clicks (the field counted) is a region, not an object
    polygons = _objects_not_regions(polygons, [tuple(p) for p in every])
    if polygons and len(every):
        raise GroundTruthError(f"{name}: holds both outlines ({len(polygons)}) and points ({len(every)}): save one "
                               "kind of annotation per image")
    if not polygons and not len(every):
        what = f"only {', '.join(sorted(passed_over))}, not objects" if passed_over else "the set is empty"
        raise GroundTruthError(f"{name}: no outlines or points to count: {what}")
    if not polygons:
        if not np.isfinite(every).all() or every.min() < 0 or every.max() > MAX_COORDINATE_PX:
            raise GroundTruthError(f"{name}: a point lies at negative or huge coordinates: not image pixels")
        return _points_truth(every, name)
    labels = _outlines_to_labels(polygons, expected_shape, name)
    return GroundTruth(kind="labels", count=_count_labels(labels), labels=labels, source=name)


def _roi_parts(rings: list[np.ndarray]) -> list[list[np.ndarray]]:
    """A composite ROI's rings as the parts of one object: the largest ring outlines, a ring inside it is a
    hole, a ring outside it another part."""
    from skimage.measure import points_in_poly

    def area(r: np.ndarray) -> float:
        return 0.5 * abs(float(np.dot(r[:, 0], np.roll(r[:, 1], 1)) - np.dot(r[:, 1], np.roll(r[:, 0], 1))))

    outer, *rest = sorted(rings, key=area, reverse=True)
    inside = [bool(points_in_poly(r[:1], outer)[0]) for r in rest]
    return [[outer, *(r for r, hole in zip(rest, inside) if hole)], *([r] for r, hole in zip(rest, inside) if not hole)]


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a coordinate")


def _qupath_type(feature: dict) -> str:
    """A QuPath object's type, lower-case ("annotation", "detection", "cell", "tile"; "" when not said): from
    ``properties.objectType`` (QuPath 0.3+), ``properties.object_type`` or the legacy ``id`` (``PathCellObject``)."""
    props = feature.get("properties")
    props = props if isinstance(props, dict) else {}
    kind = props.get("objectType") or props.get("object_type")
    if not kind and isinstance(feature.get("id"), str) and feature["id"].startswith("Path"):
        kind = feature["id"][4:].removesuffix("Object")  # PathDetectionObject -> Detection
    return str(kind or "").lower()


def _objects_not_regions(polygons: list, points: list) -> list:
    """The outlines without those drawn around others (a region annotation around hand-drawn nuclei or counting
    points, which a GeoJSON export of all objects holds too): an outline far larger than the typical one that holds
    another object's centre or a point. Checked only for outlines over 4x the median box area, so thousands of
    nuclei stay cheap."""
    if not polygons or len(polygons) + len(points) < 2:
        return polygons
    from skimage.measure import points_in_poly

    boxes = [np.concatenate([r for part in obj for r in part]) for obj in polygons]
    areas = np.array([np.ptp(b[:, 0]) * np.ptp(b[:, 1]) for b in boxes])
    centres = np.array([b.mean(axis=0) for b in boxes])  # (x, y)
    others = np.concatenate([centres, np.asarray([(x, y) for y, x in points], np.float64).reshape(-1, 2)])
    median = float(np.median(areas)) if len(polygons) > 1 else 0.0
    keep = []
    for i, obj in enumerate(polygons):
        region = False
        if areas[i] > 4 * median:
            inside = np.zeros(len(others), bool)
            for part in obj:
                inside |= points_in_poly(others, part[0])
            inside[i] = False
            region = bool(inside.any())
        keep.append(not region)
    return [obj for obj, k in zip(polygons, keep, strict=True) if k]
