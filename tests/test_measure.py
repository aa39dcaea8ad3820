"""Tests of cellcount.measure: per-object areas, centroids, boxes, intensities and micrometre columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellcount.measure import OBJECT_COLUMNS, likely_merges, object_table, peaks_table, solidity

UM_COLUMNS = ["area_um2", "equivalent_diameter_um", "centroid_row_um", "centroid_col_um"]


@pytest.fixture
def rectangles() -> np.ndarray:
    """Label 2: rows 2..5 x cols 3..9 (4 x 7 = 28 px); label 5: rows 10..12 x cols 0..3 (3 x 4 = 12 px)."""
    labels = np.zeros((16, 12), np.int32)
    labels[2:6, 3:10] = 2
    labels[10:13, 0:4] = 5
    return labels


def test_areas_centroids_and_boxes_of_rectangles(rectangles):
    df = object_table(rectangles)
    assert list(df.columns) == OBJECT_COLUMNS
    assert df["label"].tolist() == [2, 5]  # missing ids are skipped, ids kept
    assert df["area_px"].tolist() == [28, 12]
    assert df["centroid_row"].tolist() == [3.5, 11.0]
    assert df["centroid_col"].tolist() == [6.0, 1.5]
    boxes = df[["bbox_row0", "bbox_col0", "bbox_row1", "bbox_col1"]].to_numpy().tolist()
    assert boxes == [[2, 3, 6, 10], [10, 0, 13, 4]]  # end-exclusive
    np.testing.assert_allclose(df["equivalent_diameter_px"], np.sqrt(4 * np.array([28, 12]) / np.pi))
    assert df["mean_intensity"].isna().all()


def test_intensities(rectangles):
    image = np.zeros(rectangles.shape, np.float32)
    image[2:6, 3:10] = 10.0
    image[2, 3] = 38.0  # mean (27 * 10 + 38) / 28 = 11
    image[10:13, 0:4] = 4.0
    df = object_table(rectangles, image)
    assert df["mean_intensity"].tolist() == pytest.approx([11.0, 4.0])
    assert df["max_intensity"].tolist() == [38.0, 4.0]
    rgb = np.repeat(image[..., None], 3, axis=2)
    assert object_table(rectangles, rgb)["mean_intensity"].tolist() == pytest.approx([11.0, 4.0])


def test_pixel_size_columns(rectangles):
    df = object_table(rectangles, pixel_size_um=0.5)
    assert set(UM_COLUMNS) <= set(df.columns)
    assert df["area_um2"].tolist() == [7.0, 3.0]
    assert df["centroid_row_um"].tolist() == [1.75, 5.5]
    assert df["centroid_col_um"].tolist() == [3.0, 0.75]
    np.testing.assert_allclose(df["equivalent_diameter_um"], 0.5 * df["equivalent_diameter_px"])
    assert not set(UM_COLUMNS) & set(object_table(rectangles).columns)


def test_empty_labels_give_an_empty_frame():
    df = object_table(np.zeros((8, 8), np.int32))
    assert len(df) == 0 and list(df.columns) == OBJECT_COLUMNS
    df_um = object_table(np.zeros((8, 8), np.int32), pixel_size_um=2.0)
    assert len(df_um) == 0 and set(UM_COLUMNS) <= set(df_um.columns)


def test_bad_arguments_raise(rectangles):
    with pytest.raises(ValueError, match="pixel_size_um"):
        object_table(rectangles, pixel_size_um=0)
    with pytest.raises(ValueError, match="shape"):
        object_table(rectangles, np.zeros((3, 3)))


def test_peaks_table():
    density = np.zeros((10, 10), np.float32)
    density[2, 3] = 0.5
    df = peaks_table(np.array([[2.2, 2.8], [7.0, 7.0]]), density, pixel_size_um=2.0)
    assert df["label"].tolist() == [1, 2]
    assert df["density"].tolist() == [0.5, 0.0]
    assert df["centroid_col_um"].tolist() == pytest.approx([5.6, 14.0])
    assert len(peaks_table(np.zeros((0, 2)), density)) == 0


def test_fast_table_matches_scipy_reference_on_random_labels():
    """The foreground-only bincount/reduceat path equals ndi.mean/maximum/center_of_mass."""
    from scipy import ndimage as ndi
    from skimage.measure import label

    rng = np.random.default_rng(3)
    labels = label(rng.uniform(size=(97, 131)) > 0.55)
    labels[labels == 2] = 0  # a gap in the label ids
    image = rng.normal(size=labels.shape)
    df = object_table(labels, image)
    ids = df["label"].to_numpy()
    assert 2 not in ids and len(ids) == len(np.unique(labels)) - 1
    np.testing.assert_allclose(df["max_intensity"], ndi.maximum(image, labels, ids))
    np.testing.assert_allclose(df["mean_intensity"], ndi.mean(image, labels, ids))
    com = np.array(ndi.center_of_mass(np.ones_like(image), labels, ids))
    np.testing.assert_allclose(df[["centroid_row", "centroid_col"]].to_numpy(), com)
    np.testing.assert_array_equal(df["area_px"], ndi.sum(np.ones_like(image), labels, ids))


def test_likely_merges_marks_objects_far_larger_than_their_neighbours():
    rows = [{"label": i + 1, "area_px": 100, "centroid_row": 20 * (i // 5), "centroid_col": 20 * (i % 5)}
            for i in range(25)]
    rows[12]["area_px"] = 300  # a merge in the middle of the field
    rows.append({"label": 26, "area_px": 1000, "centroid_row": 500, "centroid_col": 500})
    rows += [{"label": 27 + i, "area_px": 900, "centroid_row": 500 + 20 * i, "centroid_col": 520} for i in range(8)]
    merges = likely_merges(pd.DataFrame(rows))
    # 300 > 2.5 x 100 is marked; 1000 among 900-px neighbours is not (large nuclei, not a merge)
    assert merges.tolist() == [13]
    assert likely_merges(pd.DataFrame(rows[:3])).size == 0


def _field_with_a_merge_and_a_large_nucleus():
    """Small round nuclei on a grid, one large round nucleus and one merged pair of nuclei (a waist)."""
    import cv2

    lab = np.zeros((200, 200), np.int32)
    k = 1
    for r in range(20, 200, 40):
        for c in range(20, 120, 40):
            cv2.circle(lab, (c, r), 6, k, -1)
            k += 1
    cv2.circle(lab, (150, 40), 14, k, -1)  # one large nucleus
    cv2.circle(lab, (140, 120), 9, k + 1, -1)  # two touching nuclei counted as one
    cv2.circle(lab, (158, 120), 9, k + 1, -1)
    return lab, k, k + 1


def test_solidity_reads_a_waist():
    lab, large, merged = _field_with_a_merge_and_a_large_nucleus()
    table = object_table(lab)
    sol = dict(zip(table["label"], solidity(lab, table)))
    assert sol[large] > 0.95 and sol[1] > 0.9, "round objects are (nearly) convex"
    assert 0.8 < sol[merged] < 0.92, "two touching discs: about 0.88"
    square = np.zeros((20, 20), np.int32)
    square[5:15, 5:15] = 1
    assert solidity(square, object_table(square)) == pytest.approx([1.0])
    assert solidity(lab, table.set_index("label").loc[[merged]]) == pytest.approx([sol[merged]]), "label index"


def test_likely_merges_with_labels_leaves_a_large_round_nucleus_unmarked():
    lab, large, merged = _field_with_a_merge_and_a_large_nucleus()
    table = object_table(lab)
    assert set(likely_merges(table)) == {large, merged}, "by area alone both are far larger than their neighbours"
    assert likely_merges(table, labels=lab).tolist() == [merged], "only the one with a waist"


def test_an_infinite_pixel_is_measured_as_the_images_largest_finite_value() -> None:
    """One +Inf pixel gave its object max_intensity 1.8e308 and mean 5.6e305 (nan_to_num's float64 limits)."""
    from cellcount.measure import object_table

    labels = np.zeros((8, 8), np.int32)
    labels[1:4, 1:4] = 1
    image = np.full((8, 8), 5.0, np.float32)
    image[2, 2], image[6, 6], image[1, 1] = np.inf, 40.0, -np.inf
    row = object_table(labels, image).iloc[0]
    assert row["max_intensity"] == 40.0 and row["mean_intensity"] == (40.0 + 8 * 5.0) / 9  # -Inf: the smallest, 5
