"""Ground truth: instance labels, binary masks, dot annotations, point tables and per-image counts.

Every reader returns a :class:`GroundTruth`. Folder loaders pair images with their ground truth by the
name conventions of :mod:`cellcount.io` (``img_labels.tif``, ``img_mask.png``, ``img_dots.png``,
``img_points.csv``, a ``labels/`` folder next to ``images/``, a ``filename,count`` CSV) and by the two
DSB 2018 layouts (``<id>/images/<id>.png`` + ``<id>/masks/*.png``, or flat ``images/`` + ``labels/``).

The readers live in submodules by kind of file (``images``, ``tables``, ``exported``), the folder loaders in
``folders`` and ``dsb``; everything is imported from here.
"""

from __future__ import annotations

from .dsb import load_dsb_folder
from .exported import (
    GEOJSON_EXTENSIONS,
    MAX_GEOJSON_BYTES,
    MAX_ROI_BYTES,
    MAX_ROIS,
    MAX_XML_BYTES,
    QUPATH_OBJECTS,
    IgnoredClassWarning,
    is_roi_set,
    read_cellcounter_xml,
    read_geojson,
    read_imagej_rois,
)
from .folders import (
    counts_disagree,
    item_names,
    load_labelled_folder,
    one_per_image,
    tables_clash_notes,
    values_by_image,
)
from .images import MergedDotsWarning, PredictedLabelsWarning, read_dot_image, read_label_image
from .names import listed, match_names, name_key
from .pairing import SECOND_ANNOTATION_RULE, closest_pairs, match_ground_truth
from .read import (
    CalibratedPointsWarning,
    annotations_disagree,
    check_points_fit,
    disagreeing_annotations,
    not_used_beside_broken,
    read_ground_truth,
)
from .tables import (
    CSV_DELIMITERS,
    SPREADSHEET_EXTENSIONS,
    TABLE_EXTENSIONS,
    CsvSource,
    NoCoordinateColumns,
    SeveralRegionsWarning,
    accents_note,
    is_cellcount_counts,
    is_cellcount_objects,
    is_labels_index,
    predicted_counts_message,
    read_counts_by_name,
    read_counts_csv,
    read_points_by_image,
    read_points_csv,
    unread_annotation_note,
)
from .truth import (
    CELLPOSE_SEG_NOTE,
    GROUND_TRUTH_KINDS,
    MAX_COORDINATE_PX,
    MAX_DOT_AREA_PX,
    MAX_GROUND_TRUTH_COUNT,
    BinaryMaskWarning,
    DuplicatePointsWarning,
    GroundTruth,
    ReusedColoursWarning,
    SpeckledMaskWarning,
    WrappedLabelsWarning,
    holds_only_specks,
    labels_from_array,
)

__all__ = [
    "SECOND_ANNOTATION_RULE",
    "SeveralRegionsWarning",
    "IgnoredClassWarning",
    "CalibratedPointsWarning",
    "annotations_disagree",
    "not_used_beside_broken",
    "check_points_fit",
    "disagreeing_annotations",
    "BinaryMaskWarning",
    "SpeckledMaskWarning",
    "CSV_DELIMITERS",
    "CsvSource",
    "CsvSource",
    "DuplicatePointsWarning",
    "GEOJSON_EXTENSIONS",
    "GROUND_TRUTH_KINDS",
    "GroundTruth",
    "MAX_COORDINATE_PX",
    "MAX_DOT_AREA_PX",
    "MAX_GEOJSON_BYTES",
    "MAX_GROUND_TRUTH_COUNT",
    "MAX_ROIS",
    "MAX_ROI_BYTES",
    "MAX_XML_BYTES",
    "NoCoordinateColumns",
    "MergedDotsWarning",
    "PredictedLabelsWarning",
    "QUPATH_OBJECTS",
    "TABLE_EXTENSIONS",
    "SPREADSHEET_EXTENSIONS",
    "ReusedColoursWarning",
    "closest_pairs",
    "CELLPOSE_SEG_NOTE",
    "WrappedLabelsWarning",
    "counts_disagree",
    "holds_only_specks",
    "accents_note",
    "is_cellcount_counts",
    "is_cellcount_objects",
    "is_labels_index",
    "is_roi_set",
    "item_names",
    "labels_from_array",
    "listed",
    "load_dsb_folder",
    "load_labelled_folder",
    "match_ground_truth",
    "match_names",
    "name_key",
    "one_per_image",
    "predicted_counts_message",
    "read_cellcounter_xml",
    "read_counts_by_name",
    "read_counts_csv",
    "read_dot_image",
    "read_geojson",
    "read_ground_truth",
    "read_imagej_rois",
    "read_label_image",
    "read_points_by_image",
    "read_points_csv",
    "unread_annotation_note",
    "tables_clash_notes",
    "values_by_image",
]
