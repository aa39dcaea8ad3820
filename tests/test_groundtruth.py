"""Tests of cellcount.groundtruth: label / mask / dot / CSV readers, pairing and folder loaders."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from cellcount.errors import GroundTruthError
from cellcount.groundtruth import (
    SECOND_ANNOTATION_RULE,
    BinaryMaskWarning,
    GroundTruth,
    MergedDotsWarning,
    SpeckledMaskWarning,
    labels_from_array,
    load_dsb_folder,
    load_labelled_folder,
    match_ground_truth,
    read_counts_csv,
    read_dot_image,
    read_ground_truth,
    read_label_image,
    read_points_by_image,
    read_points_csv,
)
from cellcount.io import labels_to_tiff_bytes

DSB = Path(__file__).resolve().parents[1].parent / "shared/datasets/dsb2018"


def _save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _two_blobs(value: int = 255, dtype: type = np.uint8) -> np.ndarray:
    arr = np.zeros((10, 12), dtype)
    arr[1:4, 1:4] = value
    arr[6:9, 7:11] = value
    return arr


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------
def test_labels_over_65535_kept_int32() -> None:
    arr = np.zeros(300 * 300, np.uint32)
    arr[:70000] = np.arange(1, 70001)
    arr = arr.reshape(300, 300)
    gt = labels_from_array(arr, source="big")
    assert gt.kind == "labels" and gt.count == 70000
    assert gt.labels is not None and gt.labels.dtype == np.int32 and int(gt.labels.max()) == 70000
    again = read_label_image(labels_to_tiff_bytes(gt.labels))
    assert again.count == 70000 and np.array_equal(again.labels, gt.labels)


def test_label_ids_need_not_be_consecutive() -> None:
    arr = np.zeros((5, 5), np.uint16)
    arr[0, 0], arr[2, 2], arr[4, 4] = 3, 40000, 7
    gt = labels_from_array(arr)
    assert gt.count == 3 and gt.labels[2, 2] == 40000
    huge = arr.astype(np.uint64)
    huge[4, 4] = 2**40
    relabelled = labels_from_array(huge)
    assert relabelled.count == 3 and relabelled.labels.max() == 3


@pytest.mark.parametrize(
    ("value", "dtype"), [(255, np.uint8), (1, np.uint8), (65535, np.uint16), (True, bool)]
)
def test_binary_mask_relabelled_with_warning(value: int, dtype: type) -> None:
    with pytest.warns(BinaryMaskWarning, match="touching cells"):
        gt = labels_from_array(_two_blobs(value, dtype), source="m.png")
    assert gt.kind == "mask" and gt.count == 2
    assert gt.labels.dtype == np.int32 and set(np.unique(gt.labels)) == {0, 1, 2}


def test_binary_mask_uses_8_connectivity() -> None:
    arr = np.zeros((4, 4), np.uint8)
    arr[0, 0] = arr[1, 1] = arr[3, 3] = 255  # two pixels touch diagonally
    with pytest.warns(BinaryMaskWarning):
        gt = labels_from_array(arr)
    assert gt.count == 2


def test_single_label_is_not_a_mask(recwarn: pytest.WarningsRecorder) -> None:
    arr = np.zeros((6, 6), np.uint16)
    arr[2:4, 2:4] = 1
    gt = labels_from_array(arr)
    assert gt.kind == "labels" and gt.count == 1
    assert not [w for w in recwarn if issubclass(w.category, BinaryMaskWarning)]
    empty = labels_from_array(np.zeros((3, 3), np.uint8))
    assert empty.kind == "labels" and empty.count == 0


def test_float_and_bad_labels() -> None:
    arr = np.array([[0.0, 1.0], [2.0, 2.0]], np.float32)
    gt = labels_from_array(arr)
    assert gt.count == 2 and gt.labels.dtype == np.int32
    with pytest.raises(GroundTruthError, match="whole numbers"):
        labels_from_array(arr + 0.5)
    with pytest.raises(GroundTruthError, match=">= 0"):
        labels_from_array(np.array([[0, -1], [1, 2]]))
    with pytest.raises(GroundTruthError, match="NaN"):
        labels_from_array(np.array([[0, np.nan]]))
    with pytest.raises(GroundTruthError, match="shape"):
        labels_from_array(np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(GroundTruthError):
        GroundTruth(kind="bogus", count=1)


def test_colour_coded_instances() -> None:
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[0:3, 0:3] = (255, 0, 0)
    rgb[0:3, 3:6] = (0, 255, 0)  # touches the red object: still separate (other colour)
    rgb[6:9, 6:9] = (255, 0, 0)  # same colour again, not touching: a third object
    rgb[6:9, 0:2] = (10, 20, 30)
    gt = labels_from_array(rgb)
    assert gt.kind == "labels" and gt.count == 4
    assert gt.labels[1, 1] != gt.labels[7, 7] and gt.labels[1, 1] != gt.labels[1, 4]
    assert gt.labels[5, 5] == 0
    gray_rgb = np.repeat(_two_blobs(3)[..., None], 3, axis=2)  # equal channels -> (H, W)
    with pytest.warns(BinaryMaskWarning):
        assert labels_from_array(gray_rgb).labels.shape == (10, 12)
    red = np.zeros((10, 12, 3), np.uint8)
    red[_two_blobs() > 0] = (200, 0, 0)  # a one-colour mask is a binary mask
    with pytest.warns(BinaryMaskWarning, match="one colour"):
        gt = labels_from_array(red)
    assert gt.kind == "mask" and gt.count == 2


def test_colour_coded_instances_on_a_white_canvas() -> None:
    """Colour labels on white (no black pixel): the white canvas was counted as one more object."""
    rgb = np.full((10, 10, 3), 255, np.uint8)
    rgb[0:3, 0:3] = (255, 0, 0)
    rgb[0:3, 3:6] = (0, 255, 0)
    rgb[6:9, 6:9] = (0, 0, 255)
    gt = labels_from_array(rgb)
    assert gt.kind == "labels" and gt.count == 3 and gt.labels[5, 5] == 0
    red = np.full((10, 12, 3), 255, np.uint8)
    red[_two_blobs() > 0] = (200, 0, 0)  # one colour on white: a binary mask, as on black
    with pytest.warns(BinaryMaskWarning, match="one colour"):
        assert labels_from_array(red).count == 2


def test_read_label_image_png_and_shape_check(tmp_path: Path) -> None:
    labels = np.zeros((8, 9), np.uint16)
    labels[1:3, 1:3] = 1
    labels[5:7, 5:8] = 300
    path = _save_png(tmp_path / "a_labels.png", labels)
    gt = read_label_image(path, expected_shape=(8, 9, 3))
    assert gt.kind == "labels" and gt.count == 2 and gt.source == str(path)
    with pytest.raises(GroundTruthError, match=r"\(8, 9\).*\(9, 8\)"):
        read_label_image(path, expected_shape=(9, 8))
    (tmp_path / "bad_labels.png").write_text("<html></html>")
    with pytest.raises(GroundTruthError, match="bad_labels"):
        read_label_image(tmp_path / "bad_labels.png")
    Image.fromarray(labels.astype(np.uint8)).convert("L").save(tmp_path / "x_labels.jpg")
    with pytest.raises(GroundTruthError, match="JPEG"):
        read_label_image(tmp_path / "x_labels.jpg")


def test_read_dot_image(tmp_path: Path) -> None:
    dots = np.zeros((20, 20), np.uint8)
    dots[2:4, 3:5] = 255
    dots[10:12, 15:17] = 1
    dots[5:7, 8:10] = 200  # painted 2x2 dots -> one point each, at its centre
    path = _save_png(tmp_path / "a_dots.png", dots)
    gt = read_dot_image(path, expected_shape=(20, 20))
    assert gt.kind == "points" and gt.count == 3 and gt.labels is None
    assert gt.points.dtype == np.float64 and gt.points.shape == (3, 2)
    assert {tuple(p) for p in gt.points} == {(2.5, 3.5), (5.5, 8.5), (10.5, 15.5)}
    white = _save_png(tmp_path / "w_dots.png", np.where(dots > 0, 0, 255).astype(np.uint8))
    assert read_dot_image(white).count == 3  # dark dots on white
    with pytest.raises(GroundTruthError, match="does not match"):
        read_dot_image(path, expected_shape=(10, 10))


def test_a_jpeg_dot_image_named_png_is_read_as_jpeg(tmp_path: Path) -> None:
    """The format from the content: JPEG dots saved under .png keep their compression noise out of the dots (36 read
    for 3 when the name decided); a stream is judged from its start, as it is read."""
    dots = np.zeros((64, 64), np.uint8)
    for r, c in [(10, 10), (30, 40), (50, 20)]:
        dots[r - 1:r + 2, c - 1:c + 2] = 255
    buf = io.BytesIO()
    Image.fromarray(dots).save(buf, "JPEG", quality=75)
    path = tmp_path / "a_dots.png"
    path.write_bytes(buf.getvalue())
    assert read_dot_image(path).count == 3
    stream = io.BytesIO(buf.getvalue())
    stream.read()  # already read once by the caller: judged from its start all the same
    assert read_dot_image(stream).count == 3
    mask = io.BytesIO()
    Image.fromarray((dots > 0).astype(np.uint8) * 255).save(mask, "JPEG")
    mask.read()
    with pytest.raises(GroundTruthError, match="JPEG"):
        read_label_image(mask)


def test_dots_that_touch_stay_apart(tmp_path: Path) -> None:
    """Dense single-pixel annotations touch (VGG cells: 2.3 of 176 cells per image were lost when each
    8-connected blob was one dot); painted discs that touch are split into as many points."""
    single = np.zeros((20, 20), np.uint8)
    # a diagonal chain of 3, a pair, and (as in a real annotation) mostly dots alone
    where = [(2, 3), (2, 4), (3, 5), (15, 2), (15, 3), (10, 10), (6, 16), (18, 18), (12, 5)]
    for r, c in where:
        single[r, c] = 255
    gt = read_dot_image(_save_png(tmp_path / "s_dots.png", single))
    assert gt.count == 9 and {tuple(p) for p in gt.points} == {(float(r), float(c)) for r, c in where}

    discs = np.zeros((30, 30), np.uint8)
    for r, c in ((5, 5), (20, 20), (5, 22), (14, 5)):
        discs[r - 1:r + 2, c - 1:c + 2] = 255  # 3x3 discs, two of them alone
    discs[13:16, 7:10] = 255  # a disc touching the one at (14, 5): one blob of 18 px = 2 dots
    gt = read_dot_image(_save_png(tmp_path / "d_dots.png", discs))
    assert gt.count == 5
    pair = sorted(tuple(p) for p in gt.points if 12 <= p[0] <= 16)
    np.testing.assert_allclose(pair, [(14.0, 5.0), (14.0, 8.0)], atol=0.01)
    discs[20:26, 3:9] = 255  # a round 6x6 dot (a larger brush) alone: one dot, not four
    with pytest.warns(MergedDotsWarning, match="1 of its dots are at least 1.5x"):  # said: it may be several
        gt = read_dot_image(_save_png(tmp_path / "b_dots.png", discs))
    assert gt.count == 6 and any(np.allclose(p, (22.5, 5.5)) for p in gt.points)


def test_painted_dots_that_overlap_are_said_to_be_read_as_one(tmp_path: Path) -> None:
    """5 px brush dots on dense cells overlap: each overlapping pair is a round blob read as one dot, and a tester's
    truth lost 4-13 cells of 104-257 without a word; now the reader says so."""
    import warnings

    dots = np.zeros((40, 40), np.uint8)
    for r, c in ((5, 5), (5, 20), (20, 5), (30, 30)):
        dots[r - 2:r + 3, c - 2:c + 3] = 255
    dots[18:23, 19:24] = 255
    dots[20:25, 21:26] = 255  # two 5x5 dots overlapping by 3 x 3: a round blob of 41 px
    with pytest.warns(MergedDotsWarning, match="1 of its dots"):
        assert read_dot_image(_save_png(tmp_path / "o_dots.png", dots)).count == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", MergedDotsWarning)  # dots apart: nothing to say
        dots[18:26, 19:27] = 0
        assert read_dot_image(_save_png(tmp_path / "a_dots.png", dots)).count == 4


def test_read_dot_image_on_a_canvas_that_is_not_black(tmp_path: Path) -> None:
    """Dots on a near-black canvas (background 1, e.g. after a colour-profile conversion) and red dots on
    white were read as 0 dots (every pixel 'non-zero', then inverted): the background is the commonest value."""
    where = [(2, 3), (10, 15), (16, 4)]
    gray = np.ones((20, 20), np.uint8)
    red = np.full((20, 20, 3), 255, np.uint8)
    for r, c in where:
        gray[r, c] = 255
        red[r, c] = (255, 0, 0)
    for name, image in (("g_dots.png", gray), ("r_dots.png", red)):
        gt = read_dot_image(_save_png(tmp_path / name, image))
        assert gt.count == 3 and {tuple(p) for p in gt.points} == {(float(r), float(c)) for r, c in where}, name
    picture = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    picture[2, 3] = (255, 0, 0)  # a dot drawn over the microscopy picture: refused, not counted as noise
    with pytest.raises(GroundTruthError, match="not dots on a plain canvas"):
        read_dot_image(_save_png(tmp_path / "p_dots.png", picture))


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------
def test_read_points_csv_variants(tmp_path: Path) -> None:
    gt = read_points_csv(b" ,X,Y\n1,10.5,3\n2,4,7\n")
    assert gt.kind == "points" and gt.count == 2
    # (row, col) = (y, x); ImageJ's fractions put a pixel's centre at +0.5: the table is read half a pixel back
    np.testing.assert_array_equal(gt.points, [[2.5, 10.0], [6.5, 3.5]])
    napari = read_points_csv(io.StringIO("index,axis-0,axis-1\n0,5,6\n"))
    np.testing.assert_array_equal(napari.points, [[5.0, 6.0]])
    napari3d = read_points_csv(b"axis-0,axis-1,axis-2\n2,5,6\n")
    np.testing.assert_array_equal(napari3d.points, [[5.0, 6.0]])
    (tmp_path / "p.csv").write_text("Row,Col\n1,2\n")
    assert read_points_csv(tmp_path / "p.csv").points.tolist() == [[1.0, 2.0]]
    assert read_points_csv(b"x,y\n").count == 0


def test_points_from_cellprofiler_and_qupath_and_their_refusals() -> None:
    """The tables biologists already have: CellProfiler's objects (Location_Center_X/Y), QuPath's detections in
    pixels; in microns, or one table of several images' objects, refused saying what to do."""
    cp = read_points_csv(b"ImageNumber,ObjectNumber,Location_Center_X,Location_Center_Y\n1,1,10,20\n1,2,30,5\n")
    assert cp.points.tolist() == [[20.0, 10.0], [5.0, 30.0]]
    qp = read_points_csv(b"Image,Name,Class,Centroid X px,Centroid Y px\na.tif,n,Tumor,3.5,4.5\n")
    # QuPath's pixel (3, 4) spans 3-4 and 4-5: its centre (3.5, 4.5) is our (3, 4), as its outlines are read
    assert qp.points.tolist() == [[4.0, 3.0]]
    with pytest.raises(GroundTruthError, match=r"in microns \('Centroid X µm', 'Centroid Y µm'\).*needs pixels"):
        read_points_csv("Image,Name,Centroid X µm,Centroid Y µm\na.tif,n,3,4\n".encode())
    with pytest.raises(GroundTruthError, match=r"in microns \('X \(um\)'"):
        read_points_csv(b"X (um),Y (um)\n1,2\n")
    with pytest.raises(GroundTruthError, match=r"the points of 2 images \('imagenumber' column: 1, 2\): .*one table "
                                               r"per image"):
        read_points_csv(b"ImageNumber,ObjectNumber,Location_Center_X,Location_Center_Y\n1,1,10,20\n2,2,30,5\n")


def test_a_points_file_in_microns_says_so_by_its_name_too(tmp_path: Path) -> None:
    path = tmp_path / "a_points.csv"
    path.write_text("Centroid X µm,Centroid Y µm\n3,4\n", encoding="utf-8")
    with pytest.raises(GroundTruthError, match="in microns"):
        read_ground_truth(path)


CELL_COUNTER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<CellCounter_Marker_File>
 <Image_Properties><Image_Filename>a.png</Image_Filename></Image_Properties>
 <Marker_Data><Current_Type>1</Current_Type>
  <Marker_Type><Type>1</Type>
   <Marker><MarkerX>10</MarkerX><MarkerY>20</MarkerY><MarkerZ>1</MarkerZ></Marker>
   <Marker><MarkerX>30</MarkerX><MarkerY>5</MarkerY><MarkerZ>1</MarkerZ></Marker>
  </Marker_Type>
  <Marker_Type><Type>2</Type>
   <Marker><MarkerX>40</MarkerX><MarkerY>40</MarkerY><MarkerZ>1</MarkerZ></Marker>
  </Marker_Type>
  <Marker_Type><Type>3</Type></Marker_Type>
 </Marker_Data>
</CellCounter_Marker_File>
"""


def test_fiji_cell_counter_markers_are_points_of_every_type(tmp_path: Path) -> None:
    """Hand counts made with Fiji's Cell Counter: CellCounter_<image>.xml, every marker type counted."""
    from cellcount.groundtruth import read_cellcounter_xml

    gt = read_cellcounter_xml(CELL_COUNTER_XML.encode())
    assert gt.kind == "points" and gt.count == 3 and gt.points.tolist() == [[20.0, 10.0], [5.0, 30.0], [40.0, 40.0]]
    with pytest.raises(GroundTruthError, match="not markers saved by Fiji's Cell Counter"):
        read_cellcounter_xml(b"<svg></svg>")
    with pytest.raises(GroundTruthError, match="not readable XML"):
        read_cellcounter_xml(b"<CellCounter_Marker_File>")
    lol = "".join(f'<!ENTITY l{k + 1} "{f"&l{k};" * 10}">' for k in range(9))
    bomb = f'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY l0 "lol">{lol}]><CellCounter_Marker_File>&l9;</CellCounter_Marker_File>'
    with pytest.raises(GroundTruthError, match="not readable XML"):  # entity expansion refused, not a billion lols
        read_cellcounter_xml(bomb.encode())
    with pytest.raises(GroundTruthError, match="marker 1 has no numeric MarkerX/MarkerY"):
        read_cellcounter_xml(b"<CellCounter_Marker_File><Marker><MarkerX>a</MarkerX></Marker></CellCounter_Marker_File>")
    # in a folder: paired with its image by the name Cell Counter gives it
    _save_png(tmp_path / "a.png", np.zeros((64, 64), np.uint8))
    (tmp_path / "CellCounter_a.xml").write_text(CELL_COUNTER_XML)
    [(image, truth)] = load_labelled_folder(tmp_path)
    assert image.name == "a.png" and truth.count == 3 and truth.source.endswith("CellCounter_a.xml")
    assert read_ground_truth(tmp_path / "CellCounter_a.xml", expected_shape=(64, 64)).count == 3
    # named after the image's title with its extension, as Cell Counter does for a title that keeps it (a tester)
    (tmp_path / "CellCounter_a.xml").rename(tmp_path / "CellCounter_a.png.xml")
    [(image, truth)] = load_labelled_folder(tmp_path)
    assert image.name == "a.png" and truth.count == 3
    with pytest.raises(GroundTruthError, match="outside"):
        read_ground_truth(tmp_path / "CellCounter_a.png.xml", expected_shape=(30, 30))


def test_a_counts_table_from_excel_for_mac_or_with_decomposed_accents(tmp_path: Path) -> None:
    """Excel for Mac's "CSV (Macintosh)" ends lines with CR alone (a Python error refused the folder), and a table
    written on macOS may spell café1 with a combining accent where the file's name has the one character."""
    import unicodedata

    names = ("café1", "naïve 2", "plain")
    for k, name in enumerate(names):
        _save_png(tmp_path / unicodedata.normalize("NFC", f"{name}.png"), np.full((16, 16), k, np.uint8))
    rows = "".join(f"{unicodedata.normalize('NFD', n)}.png,{k + 3}\r" for k, n in enumerate(names))
    (tmp_path / "counts.csv").write_bytes(("filename,count\r" + rows).encode("utf-8"))
    got = {unicodedata.normalize("NFC", image.name): gt.count for image, gt in load_labelled_folder(tmp_path)}
    assert got == {"café1.png": 3, "naïve 2.png": 4, "plain.png": 5}
    # a table in its plate's folder names that plate's image, however the accent is written (a reviewer)
    plates = tmp_path / "plates"
    for k, plate in enumerate(("plate1", "plate2")):
        _save_png(plates / plate / "café.png", np.full((16, 16), k, np.uint8))
        name = unicodedata.normalize("NFD" if k == 0 else "NFC", "café.png")
        (plates / plate / "counts.csv").write_bytes(f"filename,count\n{name},{k + 7}\n".encode())
    got = {f"{image.parent.name}/{unicodedata.normalize('NFC', image.name)}": gt.count
           for image, gt in load_labelled_folder(plates)}
    assert got == {"plate1/café.png": 7, "plate2/café.png": 8}


def test_a_microscopes_metadata_xml_is_not_ground_truth(tmp_path: Path) -> None:
    """Leica's MetaData/a.xml beside a.png took a.png's ground truth (and failed it, dropping the image) once any
    XML named like an image was read: only CellCounter_<image>.xml is (a reviewer)."""
    for k, name in enumerate(("a", "b")):
        _save_png(tmp_path / f"{name}.png", np.full((16, 16), k, np.uint8))  # two images, not one twice
    (tmp_path / "counts.csv").write_text("filename,count\na.png,3\nb.png,4\n")
    (tmp_path / "MetaData").mkdir()
    (tmp_path / "MetaData" / "a.xml").write_text("<Data><Image/></Data>")
    (tmp_path / "b.xml").write_text("<Data/>")
    got = {image.name: gt.count for image, gt in load_labelled_folder(tmp_path)}
    assert got == {"a.png": 3, "b.png": 4}


def test_qupath_tab_separated_tables_pair_as_csv_does(tmp_path: Path) -> None:
    """QuPath saves its measurements as .tsv: a_points.tsv and a counts table counts.tsv are read like CSVs."""
    for k, name in enumerate(("a", "b")):
        _save_png(tmp_path / f"{name}.png", np.full((32, 32), k, np.uint8))
    (tmp_path / "a_points.tsv").write_text("Image\tName\tCentroid X px\tCentroid Y px\na.png\tn\t3\t4\na.png\tn\t9\t9\n")
    (tmp_path / "counts.tsv").write_text("filename\tcount\nb.png\t7\n")
    got = {image.name: (gt.kind, gt.count) for image, gt in load_labelled_folder(tmp_path)}
    assert got == {"a.png": ("points", 2), "b.png": ("count", 7)}


def test_qupath_annotation_measurements_are_counts_not_one_point_per_region(tmp_path: Path) -> None:
    """QuPath's annotation measurements (one row per annotation: its centroid and 'Num Detections') were read as
    one point per image, so every image's truth was 1 and a fine-tune learnt to count one cell (a tester)."""
    for k, name in enumerate(("a", "b")):
        _save_png(tmp_path / f"{name}.png", np.full((32, 32), k, np.uint8))
    table = "Image\tName\tClass\tCentroid X px\tCentroid Y px\tNum Detections\na.png\tr\t\t10\t12\t9\nb.png\tr\t\t8\t8\t32\n"
    (tmp_path / "annotation_measurements.tsv").write_text(table)
    assert read_points_by_image(table.encode()) is None, "regions with their counts are not points"
    got = {image.name: (gt.kind, gt.count) for image, gt in load_labelled_folder(tmp_path)}
    assert got == {"a.png": ("count", 9), "b.png": ("count", 32)}
    with pytest.raises(GroundTruthError, match=r"one row per region .*'num detections'.*name the table so that no image"):
        read_points_csv(table.encode())
    two = table + "a.png\tinner\t\t5\t5\t4\n"  # a second region of image a: which one to score is the user's
    from cellcount.groundtruth import SeveralRegionsWarning

    with pytest.warns(SeveralRegionsWarning, match=r"1 image\(s\) have several regions .*left out: a \(9, 4\)"):
        assert read_counts_csv(two.encode()) == {"b": 32}, "the other images keep their counts"
    (tmp_path / "annotation_measurements.tsv").write_text(two)
    with pytest.warns(SeveralRegionsWarning):  # the folder loads, without image a
        got = {image.name: gt.count for image, gt in load_labelled_folder(tmp_path, on_error=lambda i, w: None)}
    assert got == {"b.png": 32}


def test_cellprofiler_exports_name_images_by_file_and_count_by_objects(tmp_path: Path, caplog) -> None:
    """CellProfiler's Image table (FileName_<channel>, Count_<objects>) gives counts; its objects table exported
    with the images' file names gives each image's points; by ImageNumber alone it is refused saying how."""
    image_table = "ImageNumber,FileName_DNA,PathName_DNA,Count_Nuclei\n1,a.png,/x,9\n2,b.png,/x,4\n"
    assert read_counts_csv(image_table.encode()) == {"a": 9, "b": 4}
    with pytest.raises(GroundTruthError, match=r"counts of 2 kinds of objects \(Count_Nuclei, Count_Cells\)"):
        read_counts_csv(b"FileName_DNA,Count_Nuclei,Count_Cells\na.png,9,3\n")
    objects = b"ImageNumber,ObjectNumber,FileName_DNA,Location_Center_X,Location_Center_Y\n1,1,a.png,3,4\n2,1,b.png,5,6\n"
    split = read_points_by_image(objects)
    assert {k: v.points.tolist() for k, v in split.items()} == {"a": [[4.0, 3.0]], "b": [[6.0, 5.0]]}
    with pytest.raises(GroundTruthError, match=r"CellProfiler names images by number there: export the objects with"):
        read_points_csv(b"ImageNumber,ObjectNumber,Location_Center_X,Location_Center_Y\n1,1,10,20\n2,2,30,5\n")
    for k, name in enumerate(("a", "b")):
        _save_png(tmp_path / f"{name}.png", np.full((32, 32), k, np.uint8))
    (tmp_path / "MyExpt_Image.csv").write_text(image_table)
    (tmp_path / "MyExpt_Nuclei.csv").write_text("ImageNumber,ObjectNumber,Location_Center_X,Location_Center_Y\n"
                                                "1,1,10,20\n2,1,30,5\n")
    with caplog.at_level(logging.WARNING):
        assert {image.name: gt.count for image, gt in load_labelled_folder(tmp_path)} == {"a.png": 9, "b.png": 4}
    assert "MyExpt_Nuclei.csv: CellProfiler's objects by ImageNumber" in caplog.text
    assert "match no image" not in caplog.text, "renaming would not help it"


def test_excel_unicode_text_points_with_decimal_commas(tmp_path: Path) -> None:
    """Excel's "Unicode text" is UTF-16 and tab separated, where a comma can only be a decimal mark (a tester's
    European Excel: '241,30' was refused)."""
    data = "X\tY\n241,30\t12,5\n3\t4\n".encode("utf-16")
    assert read_points_csv(data).points.tolist() == [[12.5, 241.3], [4.0, 3.0]]


def _square(x0, y0, side):
    return [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]


def test_qupath_geojson_outlines_become_labels_and_points_stay_points(tmp_path: Path) -> None:
    """QuPath's "Export objects as GeoJSON": outlines drawn as instance labels (holes kept out), points as points;
    both kinds in one file, or lines, refused."""
    import json

    from cellcount.groundtruth import read_geojson

    ring = {"type": "Polygon", "coordinates": [_square(20, 4, 10), _square(23, 7, 4)]}  # a 10 px square, 4 px hole
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(2, 2, 6)]},
         "properties": {"objectType": "detection"}},
        {"type": "Feature", "geometry": ring, "properties": {}}]}
    gt = read_geojson(json.dumps(fc).encode(), expected_shape=(32, 40))
    assert gt.kind == "labels" and gt.count == 2 and gt.labels.shape == (32, 40)
    assert (gt.labels == 1).sum() == 36 and (gt.labels == 2).sum() == 100 - 16
    assert gt.labels[5, 5] == 1 and gt.labels[9, 25] == 0, "inside the first square; the second's hole"
    listed = read_geojson(json.dumps(fc["features"]).encode(), expected_shape=(32, 40))  # older QuPath: a list
    assert listed.count == 2
    dots = read_geojson(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[3.5, 4.5], [10.5, 12.5]]}}]}).encode())
    # pixel centres at +0.5, as its outlines: the centre of pixel (row 4, col 3) is (3.5, 4.5) in QuPath
    assert dots.kind == "points" and dots.points.tolist() == [[4.0, 3.0], [12.0, 10.0]]
    both = {"type": "FeatureCollection", "features": fc["features"] + [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}}]}
    with pytest.raises(GroundTruthError, match="both outlines .2. and points .1."):
        read_geojson(json.dumps(both).encode())
    line = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [3, 3]]}}
    assert read_geojson(json.dumps(fc["features"] + [line]).encode(), expected_shape=(32, 40)).count == 2, \
        "a measuring line is passed over"
    empty = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []}, "properties": "x"}
    assert read_geojson(json.dumps(fc["features"] + [empty]).encode(), expected_shape=(32, 40)).count == 2, \
        "an empty polygon is no object (it was a 1 px object at 0, 0)"
    for bad in (b'[{"geometry": {"type": "Point", "coordinates": [NaN, 1]}}]',
                b'[{"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [Infinity, 0], [1, 1]]]}}]'):
        with pytest.raises(GroundTruthError, match="not readable GeoJSON"):
            read_geojson(bad)
    with pytest.raises(GroundTruthError, match="not readable GeoJSON"):
        read_geojson(b"{")
    # QuPath's export of a detection run: the annotation around the cells is the region, not an object; a cell
    # counts as its nucleus
    region = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(0, 0, 39)]},
              "properties": {"objectType": "annotation"}}
    cell = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(10, 10, 12)]},
            "nucleusGeometry": {"type": "Polygon", "coordinates": [_square(13, 13, 5)]},
            "properties": {"objectType": "cell"}}
    qupath = read_geojson(json.dumps([region, fc["features"][0] | {"properties": {"objectType": "detection"}},
                                      cell]).encode(), expected_shape=(32, 40))
    assert qupath.count == 2 and (qupath.labels == 2).sum() == 25, "the detection and the cell's nucleus"
    hand = read_geojson(json.dumps([region]).encode(), expected_shape=(32, 40))
    assert hand.count == 1, "annotations alone: a user's hand-drawn outlines"
    # QuPath 0.2: the type in the feature's id
    legacy = [region | {"properties": {}, "id": "PathAnnotationObject"},
              fc["features"][0] | {"properties": {}, "id": "PathDetectionObject"}]
    assert read_geojson(json.dumps(legacy).encode(), expected_shape=(32, 40)).count == 1
    # annotations only: a region drawn around hand-drawn nuclei, or around counting points, is not an object
    nuclei = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(x, y, 4)]},
               "properties": {"objectType": "annotation"}} for x, y in ((3, 3), (12, 3), (3, 12), (20, 20))]
    assert read_geojson(json.dumps([region, *nuclei]).encode(), expected_shape=(40, 40)).count == 4
    clicks = {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[5, 5], [9, 9], [20, 30]]},
              "properties": {"objectType": "annotation"}}
    counted = read_geojson(json.dumps([region, clicks]).encode(), expected_shape=(40, 40))
    assert counted.kind == "points" and counted.count == 3
    # in a folder: <image>.geojson beside its image
    _save_png(tmp_path / "a.png", np.zeros((32, 40), np.uint8))
    (tmp_path / "a.geojson").write_text(json.dumps(fc))
    [(image, truth)] = load_labelled_folder(tmp_path)
    assert image.name == "a.png" and truth.kind == "labels" and truth.count == 2
    (tmp_path / "a.geojson").rename(tmp_path / "a.png.geojson")  # a QuPath script's getImageName() + ".geojson"
    [(image, truth)] = load_labelled_folder(tmp_path)
    assert image.name == "a.png" and truth.count == 2


def test_an_images_own_unreadable_tsv_is_named_with_its_reason(tmp_path: Path) -> None:
    _save_png(tmp_path / "a.png", np.zeros((16, 16), np.uint8))
    _save_png(tmp_path / "b.png", np.ones((16, 16), np.uint8))
    (tmp_path / "b_points.csv").write_text("x,y\n1,2\n")
    (tmp_path / "a.tsv").write_text("Index\tPosX\tPosY\n1\t2\t3\n")
    seen: list[str] = []
    load_labelled_folder(tmp_path, on_error=lambda p, why: seen.append(why))
    assert any("a.tsv" in why and "no coordinate columns" in why for why in seen), seen


def test_read_points_csv_errors() -> None:
    with pytest.raises(GroundTruthError, match="no coordinate columns"):
        read_points_csv(b"a,b\n1,2\n")
    with pytest.raises(GroundTruthError, match="row 2"):
        read_points_csv(b"x,y\n1,2\nfoo,3\n")
    for cut in (b"x,y\n1,2\n3,4\n5,", b"x,y\n1,2\n3,4\n5"):  # saved part-way (a tester's row 125 of 126)
        with pytest.raises(GroundTruthError, match=r"its last data row \(3\) stops before its 'y' value: the file looks cut off"):
            read_points_csv(cut)
    with pytest.raises(GroundTruthError, match="empty"):
        read_points_csv(b"")
    with pytest.raises(GroundTruthError):
        read_points_csv(b"\xff\xfe\x00bad")


def test_read_counts_csv(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text("\ufeffImage,Count\nimg1.png,12\nsub/img2.tif,0\nimg3,7.0\n", encoding="utf-8")
    assert read_counts_csv(path) == {"img1": 12, "img2": 0, "img3": 7}
    assert read_counts_csv(b"File,count\na.png,3\n") == {"a": 3}
    # Excel's separator line before the header (it was read as the header: "found ['sep=', '']")
    assert read_counts_csv(b"sep=;\r\nfilename;count\r\na.png;3\r\n") == {"a": 3}
    with pytest.raises(GroundTruthError, match=r"row 2 \(b\.png\).*'2\.5'"):
        read_counts_csv(b"filename,count\na.png,1\nb.png,2.5\n")
    with pytest.raises(GroundTruthError, match="row 1"):
        read_counts_csv(b"filename,count\na.png,lots\n")
    with pytest.raises(GroundTruthError, match="row 1"):
        read_counts_csv(b"filename,count\na.png,-1\n")
    with pytest.raises(GroundTruthError, match="twice"):
        read_counts_csv(b"filename,count\na.png,1\na.tif,2\n")
    with pytest.raises(GroundTruthError, match="expected columns"):
        read_counts_csv(b"name_of_thing,n\na,1\n")


def test_a_counts_table_without_titles_is_read_from_its_first_row(tmp_path: Path) -> None:
    # two columns typed in Excel without titles: the first row is an image and its count, not a header
    assert read_counts_csv(b"A01.tif,34\nA02.tif,0\n") == {"A01": 34, "A02": 0}
    assert read_counts_csv("Plate 1/B03.PNG;12\nB04.png;7\n".encode("utf-16")) == {"B03": 12, "B04": 7}
    # a header that only looks odd stays a header, and a table of something else is not counts
    with pytest.raises(GroundTruthError, match="expected columns"):
        read_counts_csv(b"A01,34\nA02,0\n")  # no image extension: not surely a name
    with pytest.raises(GroundTruthError, match="expected columns"):
        read_counts_csv(b"A01.tif,3.5\n")
    _save_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    _save_png(tmp_path / "b.png", np.full((8, 8), 9, np.uint8))
    (tmp_path / "counts.csv").write_text("a.png,3\nb.png,5\n")
    assert {p.name: gt.count for p, gt in load_labelled_folder(tmp_path)} == {"a.png": 3, "b.png": 5}


# --------------------------------------------------------------------------------------------------
# pairing and folders
# --------------------------------------------------------------------------------------------------
def test_match_ground_truth_suffixes() -> None:
    images = [Path(p) for p in ["d/a.png", "d/b.tif", "d/c.png", "images/e.png", "d/f.png", "d/g.png"]]
    gts = [
        Path(p)
        for p in [
            "d/a_labels.tif",
            "d/b_MASK.png",
            "d/c_dots.png",
            "d/c_labels.png",  # labels preferred over dots
            "labels/e.png",  # same stem in a sibling folder
            "d/f_points.csv",
            "d/g.tif",  # same stem in the same folder: not ground truth
            "d/zzz_gt.png",
        ]
    ]
    got = match_ground_truth(images, gts)
    assert got == {
        Path("d/a.png"): Path("d/a_labels.tif"),
        Path("d/b.tif"): Path("d/b_MASK.png"),
        Path("d/c.png"): Path("d/c_labels.png"),
        Path("images/e.png"): Path("labels/e.png"),
        Path("d/f.png"): Path("d/f_points.csv"),
    }
    assert match_ground_truth([Path("x/q.png")], [Path("x/q_gt.png"), Path("y/q.png")]) == {
        Path("x/q.png"): Path("x/q_gt.png")
    }


def test_read_ground_truth_dispatch(tmp_path: Path) -> None:
    _save_png(tmp_path / "a_labels.png", _two_blobs(0).astype(np.uint8) + np.eye(10, 12, dtype=np.uint8) * 4)
    assert read_ground_truth(tmp_path / "a_labels.png").kind == "labels"
    _save_png(tmp_path / "a_mask.png", _two_blobs())
    with pytest.warns(BinaryMaskWarning):
        assert read_ground_truth(tmp_path / "a_mask.png").kind == "mask"
    dots = np.zeros((10, 12), np.uint8)
    dots[1, 1] = dots[5, 5] = 255
    _save_png(tmp_path / "a_dots.png", dots)
    assert read_ground_truth(tmp_path / "a_dots.png").count == 2
    (tmp_path / "a_points.csv").write_text("x,y\n1,2\n3,4\n")
    gt = read_ground_truth(tmp_path / "a_points.csv", expected_shape=(10, 12))
    assert gt.kind == "points" and gt.count == 2
    (tmp_path / "far_points.csv").write_text("x,y\n100,2\n")
    with pytest.raises(GroundTruthError, match="outside"):
        read_ground_truth(tmp_path / "far_points.csv", expected_shape=(10, 12))
    (tmp_path / "counts.csv").write_text("filename,count\na.png,2\n")
    with pytest.raises(GroundTruthError, match="read_counts_csv"):
        read_ground_truth(tmp_path / "counts.csv")
    with pytest.raises(FileNotFoundError):
        read_ground_truth(tmp_path / "missing_labels.png")


def _make_dsb_nested(root: Path) -> None:
    for k, image_id in enumerate(["id0", "id1"]):
        _save_png(root / image_id / "images" / f"{image_id}.png", np.full((10, 12, 4), 255, np.uint8))
        for j in range(3):
            mask = np.zeros((10, 12), np.uint8)
            mask[j * 3 : j * 3 + 2, k : k + 4] = 255
            if j == 1:
                mask[0, k] = 255  # overlaps mask 0: the earlier mask keeps the pixel
            _save_png(root / image_id / "masks" / f"m{j}.png", mask)
    _save_png(root / "id2" / "images" / "id2.png", np.zeros((10, 12), np.uint8))  # test image: no masks


def test_load_dsb_nested(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _make_dsb_nested(tmp_path)
    with caplog.at_level(logging.WARNING):
        items = load_dsb_folder(tmp_path)
    assert "id2.png" in caplog.text
    assert [p.name for p, _ in items] == ["id0.png", "id1.png"]
    for _, gt in items:
        assert gt.kind == "labels" and gt.count == 3 and gt.labels.shape == (10, 12)
        assert gt.labels.dtype == np.int32
    labels0 = items[0][1].labels
    assert labels0[0, 0] == 1 and labels0[3, 0] == 2 and labels0[6, 0] == 3
    assert load_labelled_folder(tmp_path)[1][1].count == 3
    assert [gt.kind for _, gt in load_dsb_folder(tmp_path, counts_only=True)] == ["count", "count"]


def test_load_dsb_flat(tmp_path: Path) -> None:
    for name, n in [("a", 2), ("b", 1)]:  # three images (the same pixels twice would be one image)
        _save_png(tmp_path / "images" / f"{name}.png", np.full((8, 8, 3), n, np.uint8))
        labels = np.zeros((8, 8), np.uint16)
        for i in range(n):
            labels[i * 3, 0:2] = i + 1
        _save_png(tmp_path / "labels" / f"{name}.png", labels)
    _save_png(tmp_path / "images" / "c.png", np.full((8, 8, 3), 5, np.uint8))
    (tmp_path / "counts.csv").write_text("filename,count\na.png,2\nb.png,1\nc.png,5\n")
    items = load_dsb_folder(tmp_path)
    assert [(p.name, gt.kind, gt.count) for p, gt in items] == [
        ("a.png", "labels", 2),
        ("b.png", "labels", 1),
        ("c.png", "count", 5),
    ]
    generic = load_labelled_folder(tmp_path)
    assert [(p.name, gt.kind, gt.count) for p, gt in generic] == [(p.name, g.kind, g.count) for p, g in items]
    assert {gt.kind for _, gt in load_labelled_folder(tmp_path, counts_only=True)} == {"count"}
    with pytest.raises(GroundTruthError, match="not a DSB"):
        load_dsb_folder(tmp_path / "labels")


def test_dsb_flat_counts_table_names_images_in_any_case(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name, v in [("IMG4", 1), ("img5", 2), ("img6", 3)]:
        _save_png(tmp_path / "images" / f"{name}.png", np.full((8, 8, 3), v, np.uint8))
    (tmp_path / "counts.csv").write_text("filename,count\nimg4.png,7\nIMG5.PNG,9\nimg6.png,3\nIMG6.png,4\n")
    with caplog.at_level(logging.WARNING):
        items = load_dsb_folder(tmp_path)
    assert [(p.name, gt.count) for p, gt in items] == [("IMG4.png", 7), ("img5.png", 9)]
    assert "different counts" in caplog.text and "img6.png" in caplog.text  # two rows disagree: left out, said


def test_a_ground_truth_folder_named_as_people_write_it(tmp_path: Path) -> None:
    """A tester's images/ beside "ground truth/" read as 16 images, none with ground truth."""
    labels = _two_blobs(1, np.uint16)
    labels[6:9, 7:11] = 2
    (tmp_path / "Ground Truth").mkdir()
    for k in range(2):
        _save_png(tmp_path / "images" / f"w{k}.png", np.full((10, 12), k, np.uint8))
        tifffile.imwrite(tmp_path / "Ground Truth" / f"w{k}.tif", labels)
    items = load_labelled_folder(tmp_path)
    assert sorted((p.name, gt.count) for p, gt in items) == [("w0.png", 2), ("w1.png", 2)]


def test_counts_table_rows_naming_no_image_are_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A counts row whose image is not in the folder (a typo, a moved file) is named in a warning, as the app's
    notes name it, instead of passing unseen; rows of present images are used."""
    _save_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "counts.csv").write_text("filename,count\na.png,4\nA_typo.png,7\nmissing.tif,2\n")
    with caplog.at_level(logging.WARNING):
        items = load_labelled_folder(tmp_path)
    assert [(p.name, gt.count) for p, gt in items] == [("a.png", 4)]
    assert f"2 rows of {tmp_path / 'counts.csv'} match no image in the folder (A_typo, missing)" in caplog.text
    caplog.clear()
    (tmp_path / "counts.csv").write_text("filename,count\na.png,4\n")
    with caplog.at_level(logging.WARNING):
        load_labelled_folder(tmp_path)
    assert "match" not in caplog.text


def test_a_folder_whose_every_annotation_is_unusable_says_why_in_the_error(tmp_path: Path) -> None:
    """The error said 'each was reported above' where the caller (a fine-tune) reports at its end: nothing
    was above it. The reasons are in the error itself."""
    for name in ("a", "b"):
        _save_png(tmp_path / f"{name}.png", np.zeros((8, 8), np.uint8))
        (tmp_path / f"{name}_points.csv").write_text("Index,PosX,PosY\n1,2,3\n")
    seen: list[str] = []
    with pytest.raises(GroundTruthError, match=r"no image with usable ground truth: a.png: .*a_points.csv: no coordinate columns found") as err:
        load_labelled_folder(tmp_path, on_error=lambda p, why: seen.append(why))
    assert len(seen) == 2 and "reported above" not in str(err.value) and "b_points.csv" in str(err.value)


def test_counts_tables_that_disagree_leave_out_that_image_only(tmp_path: Path) -> None:
    """Two tables giving a.png 10 and 99: a.png is reported and left out (which is right is the user's to say),
    b.png counted; without on_error the first such image raises, naming both values."""
    for k, name in enumerate(["a", "b"]):
        _save_png(tmp_path / f"{name}.png", np.full((8, 8), k, np.uint8))
    (tmp_path / "countsA.csv").write_text("filename,count\na.png,10\nb.png,3\n")
    (tmp_path / "countsB.csv").write_text("filename,count\na.png,99\n")
    errors: list[tuple[str, str]] = []
    items = load_labelled_folder(tmp_path, on_error=lambda p, why: errors.append((p.name, why)))
    assert [(p.name, gt.count) for p, gt in items] == [("b.png", 3)]
    assert errors == [("a.png", f"the counts tables disagree: 10 ({tmp_path / 'countsA.csv'}) and 99 "
                                f"({tmp_path / 'countsB.csv'}); remove the wrong row or table")]
    with pytest.raises(GroundTruthError, match=r"a.png: the counts tables disagree: 10 .* and 99 "):
        load_labelled_folder(tmp_path)


def test_load_labelled_folder_mixed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    img = np.zeros((10, 12), np.uint8)
    for k, name in enumerate(["a", "b", "c", "d", "e"]):  # five images: one pixel tells them apart
        _save_png(tmp_path / f"{name}.png", img + np.uint8(k))
    tifffile.imwrite(tmp_path / "a_labels.tif", (_two_blobs(0) + np.eye(10, 12, dtype=np.uint8) * 9))
    _save_png(tmp_path / "b_mask.png", _two_blobs())
    (tmp_path / "c_points.csv").write_text("x,y\n1,1\n2,2\n3,3\n")
    (tmp_path / "my_counts.csv").write_text("image,count\nd.png,4\n")
    with caplog.at_level(logging.WARNING), pytest.warns(BinaryMaskWarning):
        items = load_labelled_folder(tmp_path)
    got = {p.name: (gt.kind, gt.count) for p, gt in items}
    assert got == {
        "a.png": ("labels", 1),
        "b.png": ("mask", 2),
        "c.png": ("points", 3),
        "d.png": ("count", 4),
    }
    assert "e.png" in caplog.text and "without ground truth" in caplog.text
    (tmp_path / "zz_points.csv").write_text("x,y\n1,1\n")  # named like no image (a typo)
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.warns(BinaryMaskWarning):
        load_labelled_folder(tmp_path)
    assert "1 ground-truth file(s) match no image: zz_points.csv" in caplog.text
    # a second annotation of an image that has one is said to be one (the shipped samples' _points.csv beside
    # their _labels.tif were logged as matching no image)
    (tmp_path / "a_points.csv").write_text("x,y\n1,1\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.warns(BinaryMaskWarning):
        load_labelled_folder(tmp_path)
    assert "1 ground-truth file(s) are second annotations of images that have one already, and are not used: " \
           "a_points.csv" in caplog.text
    assert SECOND_ANNOTATION_RULE in caplog.text  # which one was used, as the app says
    assert "1 ground-truth file(s) match no image: zz_points.csv" in caplog.text


def test_a_broken_annotation_names_the_readable_one_beside_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A truncated a_labels.tif left its image out while the readable a_points.csv beside it was listed among the
    "second annotations of images that have one already": now the image's reason names it, and the list does not."""
    for k, name in enumerate("ab"):
        _save_png(tmp_path / f"{name}.png", np.full((10, 12), k, np.uint8))
    buf = io.BytesIO()
    tifffile.imwrite(buf, _two_blobs(), compression="zlib")
    (tmp_path / "a_labels.tif").write_bytes(buf.getvalue()[:-20])
    (tmp_path / "a_points.csv").write_text("x,y\n1,1\n2,2\n")
    (tmp_path / "b_points.csv").write_text("x,y\n1,1\n")
    said: list[tuple[str, str]] = []
    with caplog.at_level(logging.WARNING):
        items = load_labelled_folder(tmp_path, on_error=lambda image, why: said.append((image.name, why)))
    assert [p.name for p, _ in items] == ["b.png"]
    assert [name for name, _ in said] == ["a.png"]
    assert said[0][1].endswith("; a_points.csv beside it, another annotation of this image, is not used in its place "
                               "(which one is right is yours to say): fix or remove the broken file")
    assert "second annotations" not in caplog.text and "match no image" not in caplog.text


def test_two_annotations_of_one_image_that_disagree_leave_it_out_saying_so(tmp_path: Path) -> None:
    """A stale a_points.csv (2 dots) beside a.csv (5) was used by the suffix order, said only by a log line, and a
    fine-tune trained on it; now the image is reported with both files and counts (a caller's on_error) and left
    out, or raises without on_error. Files that agree stay as they were: the preferred one is used."""
    for k, name in enumerate("ab"):
        _save_png(tmp_path / f"{name}.png", np.full((10, 12), k, np.uint8))
    (tmp_path / "a_points.csv").write_text("x,y\n1,1\n2,2\n")
    (tmp_path / "a.csv").write_text("x,y\n1,1\n2,2\n3,3\n4,4\n5,5\n")
    (tmp_path / "b_points.csv").write_text("x,y\n1,1\n")
    said: list[tuple[str, str]] = []
    items = load_labelled_folder(tmp_path, on_error=lambda image, why: said.append((image.name, why)))
    assert [p.name for p, _ in items] == ["b.png"]
    assert said == [("a.png", "two annotations that disagree: a_points.csv (2 objects) and a.csv (5): keep the "
                              "right one and move the other out of the folder")]
    with pytest.raises(GroundTruthError, match="a.png: two annotations that disagree"):
        load_labelled_folder(tmp_path)
    (tmp_path / "a.csv").write_text("x,y\n1,1\n2,2\n")  # the same count: the preferred file is used
    assert [(p.name, gt.count) for p, gt in load_labelled_folder(tmp_path)] == [("a.png", 2), ("b.png", 1)]
    # every image in disagreement: the reason, not "no images with annotations"
    (tmp_path / "b.csv").write_text("x,y\n1,1\n2,2\n3,3\n")
    (tmp_path / "a.csv").write_text("x,y\n1,1\n")
    with pytest.raises(GroundTruthError, match="no image with usable ground truth: a.png: two annotations"):
        load_labelled_folder(tmp_path, on_error=lambda image, why: None)


def test_a_vgg_dot_image_beside_a_table_named_like_its_image_is_a_second_annotation(tmp_path: Path) -> None:
    """010cell.png with 010cell.csv (50 dots) and 010dots.png (115): the CSV was used, and the dot image said to
    "match no image" (a tester)."""
    _save_png(tmp_path / "010cell.png", np.full((10, 12), 3, np.uint8))
    (tmp_path / "010cell.csv").write_text("x,y\n1,1\n5,5\n")
    dots = np.zeros((10, 12), np.uint8)
    dots[2, 2] = dots[6, 6] = dots[8, 9] = 255
    _save_png(tmp_path / "010dots.png", dots)
    _save_png(tmp_path / "011cell.png", np.full((10, 12), 3, np.uint8))
    (tmp_path / "011cell.csv").write_text("x,y\n1,1\n")
    said: list[tuple[str, str]] = []
    items = load_labelled_folder(tmp_path, on_error=lambda image, why: said.append((image.name, why)))
    assert [p.name for p, _ in items] == ["011cell.png"]
    assert said == [("010cell.png", "two annotations that disagree: 010cell.csv (2 objects) and 010dots.png (3): keep "
                                    "the right one and move the other out of the folder")]


def test_load_labelled_folder_reads_a_dots_folder_and_same_name_point_tables(tmp_path: Path) -> None:
    """The counting benchmarks' images/ + dots/ layout, and ImageJ's a.csv beside a.png, were read as images
    without ground truth by the command line (the app paired them)."""
    img = np.zeros((10, 12), np.uint8)
    dots = img.copy()
    dots[2, 3] = dots[6, 8] = 255
    (tmp_path / "images").mkdir()
    (tmp_path / "dots").mkdir()
    _save_png(tmp_path / "images" / "001cell.png", img)
    _save_png(tmp_path / "dots" / "001cell.png", dots)
    _save_png(tmp_path / "b.png", img + 1)
    (tmp_path / "b.csv").write_text(" ,X,Y\n1,1,1\n2,2,2\n3,3,3\n")
    _save_png(tmp_path / "c.png", img + 2)
    (tmp_path / "c.csv").write_text("filename,count\nc.png,5\n")  # named like an image, but a counts table
    got = {p.name: (gt.kind, gt.count) for p, gt in load_labelled_folder(tmp_path)}
    assert got == {"001cell.png": ("points", 2), "b.png": ("points", 3), "c.png": ("count", 5)}
    (tmp_path / "dots" / "counts.csv").write_text("filename,count\n")  # a counts table in dots/ stays one
    assert {p.name for p, _ in load_labelled_folder(tmp_path)} == set(got)
    other = tmp_path / "vgg-names"
    other.mkdir()
    _save_png(other / "001cell.png", img)
    _save_png(other / "001dots.png", dots)
    flat = {p.name: (gt.kind, gt.count) for p, gt in load_labelled_folder(other)}
    assert flat == {"001cell.png": ("points", 2)}, "001dots.png beside 001cell.png: the VGG cells naming, in one folder"
    _save_png(other / "009dots.png", dots)  # named like ground truth, no partner image: still an image, with a hint
    (other / "001dots.png").unlink()
    with pytest.raises(GroundTruthError, match="read as images but named like ground truth"):
        load_labelled_folder(other)
    (other / "009dots.png").unlink()
    (other / "counts.csv").write_text("name,n\n001cell.png,2\n")  # a counts table without a count column
    with pytest.raises(GroundTruthError, match=r"counts.csv has columns 'name', 'n': a counts table needs a file-name column \(filename, .*slice\) and a count column \(count, "):
        load_labelled_folder(other)
    vgg = tmp_path / "vgg-layout"  # the VGG cells benchmark: images/001cell.png with dots/001dots.png
    (vgg / "images").mkdir(parents=True)
    (vgg / "dots").mkdir()
    _save_png(vgg / "images" / "001cell.png", img)
    _save_png(vgg / "dots" / "001dots.png", dots)
    _save_png(vgg / "images" / "002cell.png", img + 1)
    _save_png(vgg / "dots" / "003dots.png", dots)  # no image of its own: not taken by 002cell
    (vgg / "counts.csv").write_text("filename,count\n002cell.png,4\n")
    got = {p.name: (gt.kind, gt.count) for p, gt in load_labelled_folder(vgg)}
    assert got == {"001cell.png": ("points", 2), "002cell.png": ("count", 4)}


def test_the_same_image_twice_in_a_folder_is_one_image_with_the_richer_annotation(tmp_path: Path) -> None:
    img = np.zeros((10, 12), np.uint8)
    img[2:5, 2:5] = 200
    _save_png(tmp_path / "a.png", img)
    _save_png(tmp_path / "copy_of_a.png", img)
    (tmp_path / "copy_of_a_points.csv").write_text("x,y\n3,3\n")
    (tmp_path / "counts.csv").write_text("filename,count\na.png,1\n")
    _save_png(tmp_path / "b.png", img + 1)
    (tmp_path / "b_points.csv").write_text("x,y\n3,3\n")
    reported = []
    got = load_labelled_folder(tmp_path, on_error=lambda path, why: reported.append((path.name, why)))
    assert [(p.name, gt.kind) for p, gt in got] == [("b.png", "points"), ("copy_of_a.png", "points")], \
        "the copy with dots wins over the one with a count"
    assert reported == [("a.png", f"the same image as {tmp_path / 'copy_of_a.png'}: used once")]


def test_a_csv_named_as_an_image_that_reads_as_nothing_says_why(tmp_path: Path) -> None:
    """A points CSV with a header the reader does not know was reported as an image without ground truth."""
    img = np.zeros((10, 12), np.uint8)
    _save_png(tmp_path / "a.png", img)
    (tmp_path / "a.csv").write_text("pos_col,pos_row\n3,4\n")
    _save_png(tmp_path / "b.png", img + 1)
    (tmp_path / "b.csv").write_text("3,4\n5,6\n")
    _save_png(tmp_path / "c.png", img + 2)
    (tmp_path / "c.csv").write_text("x,y\n3,4\n")
    reported = {}
    got = load_labelled_folder(tmp_path, on_error=lambda path, why: reported.setdefault(path.name, why))
    assert [p.name for p, _ in got] == ["c.png"]
    assert "no coordinate columns found in header ['pos_col', 'pos_row']" in reported["a.png"]
    assert "no header line" in reported["b.png"]
    with pytest.raises(GroundTruthError, match="pos_col"):
        load_labelled_folder(tmp_path)


def test_load_labelled_folder_errors(tmp_path: Path) -> None:
    _save_png(tmp_path / "a.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(GroundTruthError, match="none of the 1 image"):
        load_labelled_folder(tmp_path)
    _save_png(tmp_path / "a_labels.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(GroundTruthError, match="does not match"):
        load_labelled_folder(tmp_path)
    (tmp_path / "a_labels.png").write_bytes(b"<html>oops</html>")
    with pytest.raises(GroundTruthError, match="a_labels"):
        load_labelled_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_labelled_folder(tmp_path / "nope")


@pytest.mark.skipif(not (DSB / "counts.csv").is_file(), reason="DSB 2018 data not available")
def test_real_dsb_subset(tmp_path: Path) -> None:
    counts = read_counts_csv(DSB / "counts.csv")
    assert len(counts) == 522
    names = sorted(p.name for p in (DSB / "images").glob("*.png"))[:3]
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        for name in names:
            (tmp_path / sub / name).symlink_to(DSB / sub / name)
    items = load_labelled_folder(tmp_path)
    assert len(items) == 3
    for path, gt in items:
        assert gt.kind == "labels" and gt.count == counts[path.stem]


def test_role_words_pair_only_after_a_digit_or_separator_and_never_take_anothers_file(tmp_path: Path) -> None:
    """A review: 'labels/hela_qdot.tif' was read as dots; a word-paired image could take a file an exact name
    claims, and the first image in order won over the one in the file's own folder."""
    from cellcount.io import word_base

    assert word_base("hela_qdot", ("dot",)) is None and word_base("timepoints", ("points",)) is None
    assert word_base("001dots", ("dots",)) == "001" and word_base("img_cell", ("cell",)) == "img"
    labels = np.zeros((10, 12), np.uint16)
    labels[1:5, 1:5], labels[5:9, 5:10] = 1, 2
    (tmp_path / "labels").mkdir()
    _save_png(tmp_path / "labels" / "hela_qdot.png", labels)
    assert read_ground_truth(tmp_path / "labels" / "hela_qdot.png").kind == "labels"
    assert match_ground_truth(["plateA/x_cell.png", "plateB/x.png"], ["plateB/x_mask.png"]) == {
        Path("plateB/x.png"): Path("plateB/x_mask.png")}
    assert match_ground_truth(["p1/images/001cell.png", "p2/images/001cell.png"], ["p2/dots/001dots.png"]) == {
        Path("p2/images/001cell.png"): Path("p2/dots/001dots.png")}


def test_a_dot_image_by_another_name_is_read_as_dots_in_folders_as_in_uploads(tmp_path: Path) -> None:
    """A review: 001gt.png (dots) beside 001cell.png was dots when uploaded but a mask of 1-px objects from a
    folder, which would teach a segmentation model specks."""
    img = np.zeros((20, 20), np.uint8)
    img[5:9, 5:9] = 200
    dots = np.zeros((20, 20), np.uint8)
    dots[3, 4] = dots[10, 12] = dots[15, 3] = 255
    _save_png(tmp_path / "001cell.png", img)
    _save_png(tmp_path / "001gt.png", dots)
    assert [(p.name, g.kind, g.count) for p, g in load_labelled_folder(tmp_path)] == [("001cell.png", "points", 3)]
    mask = np.zeros((20, 20), np.uint8)
    mask[2:8, 2:8] = 255  # a nucleus-sized blob stays a mask
    _save_png(tmp_path / "masks" / "a.png", mask)
    with pytest.warns(BinaryMaskWarning):  # touching nuclei in a binary mask merge: said once, as before
        assert read_ground_truth(tmp_path / "masks" / "a.png").kind == "mask"


def test_point_tables_in_a_labels_folder(tmp_path: Path) -> None:
    """images/IMG_1.png with labels/IMG_1.csv holding ImageJ's X,Y columns: read as points (a tester's folder was
    refused as 'no ground truth', its tables read as counts tables), as the README says."""
    (tmp_path / "labels").mkdir()
    for k in range(2):
        _save_png(tmp_path / "images" / f"IMG_{k}.png", np.full((8, 8), k, np.uint8))
        (tmp_path / "labels" / f"IMG_{k}.csv").write_text(" ,X,Y\n" + "".join(f"{i},{i + 1},2\n" for i in range(k + 2)))
    items = load_labelled_folder(tmp_path)
    assert [(p.name, gt.kind, gt.count) for p, gt in items] == [("IMG_0.png", "points", 2), ("IMG_1.png", "points", 3)]


def _imagej_roi(kind: int, top: int, left: int, bottom: int, right: int, xs=(), ys=(), subtype: int = 0,
                extra: bytes = b"") -> bytes:
    """One ROI in ImageJ's own .roi layout (RoiEncoder: a 64-byte big-endian header, then the x and y
    coordinates relative to the box), written here byte by byte so the reader is tested against the format,
    not against roifile's writer."""
    import struct

    header = bytearray(64)
    header[0:4] = b"Iout"
    struct.pack_into(">h", header, 4, 228)  # version
    header[6] = kind  # 0 polygon, 1 rectangle, 2 oval, 3 line, 10 point
    struct.pack_into(">hhhhH", header, 8, top, left, bottom, right, len(xs))
    struct.pack_into(">h", header, 48, subtype)  # 1 on a rectangle: a text ROI
    coords = b"".join(struct.pack(">h", x - left) for x in xs) + b"".join(struct.pack(">h", y - top) for y in ys)
    return bytes(header) + coords + extra


def _roi_set(members: dict[str, bytes]) -> bytes:
    from test_labelled import _zip  # the ROI Manager's set: a plain zip of .roi files

    return _zip(members)


def test_imagej_rois_outlines_points_and_roi_manager_sets(tmp_path: Path) -> None:
    import struct

    from cellcount.groundtruth import is_roi_set, read_imagej_rois

    rect = _imagej_roi(1, 10, 10, 20, 30)  # rows 10-19, columns 10-29: 200 px
    oval = _imagej_roi(2, 30, 5, 50, 25)  # a disc of radius 10: about 314 px
    square = _imagej_roi(0, 2, 40, 12, 50, xs=(40, 50, 50, 40), ys=(2, 2, 12, 12))  # vertices at pixel corners
    clicks = _imagej_roi(10, 3, 4, 9, 11, xs=(4, 10), ys=(3, 8))  # the multi-point tool: x then y
    for one, area in ((rect, 200), (square, 100)):
        gt = read_imagej_rois(one, expected_shape=(64, 64))
        assert gt.kind == "labels" and gt.count == 1 and int((gt.labels > 0).sum()) == area
    assert abs(int((read_imagej_rois(oval, expected_shape=(64, 64)).labels > 0).sum()) - np.pi * 100) < 10
    dots = read_imagej_rois(clicks)
    assert dots.kind == "points" and dots.points.tolist() == [[3, 4], [8, 10]]  # (row, col)
    # sub-pixel points are ImageJ's float coordinates, a pixel's centre at +0.5: the same pixels
    roifile = pytest.importorskip("roifile")
    fine = roifile.ImagejRoi.frompoints(np.array([[4.5, 3.5], [10.5, 8.5]]))
    fine.roitype = roifile.ROI_TYPE.POINT
    assert read_imagej_rois(fine.tobytes()).points.tolist() == [[3, 4], [8, 10]]

    # a text ROI: font size, style, name length and text length, the text in UTF-16, its angle
    text = _imagej_roi(1, 0, 0, 5, 20, subtype=1,
                       extra=struct.pack(">iiii", 12, 0, 0, 2) + "hi".encode("utf-16-be") + struct.pack(">f", 0))
    line = _imagej_roi(3, 0, 0, 5, 5)
    roi_set = _roi_set({"0001.roi": rect, "0002.roi": oval, "0003.roi": square, "0004.roi": text, "0005.roi": line})
    assert is_roi_set(roi_set) and not is_roi_set(_roi_set({"a.png": b"\x89PNG"})) and not is_roi_set(b"not a zip")
    gt = read_imagej_rois(roi_set, expected_shape=(64, 64))
    assert gt.kind == "labels" and gt.count == 3, "text and line ROIs are not objects"
    assert sorted(np.bincount(gt.labels.ravel())[1:].tolist())[:2] == [100, 200]

    with pytest.raises(GroundTruthError, match="both outlines"):
        read_imagej_rois(_roi_set({"a.roi": rect, "b.roi": clicks}))
    # a rectangle drawn around the counted field is a region, not an object, beside outlines or clicks
    field = _imagej_roi(1, 0, 0, 60, 60)
    assert read_imagej_rois(_roi_set({"0.roi": field, "a.roi": rect, "b.roi": square}), expected_shape=(64, 64)).count == 2
    assert read_imagej_rois(_roi_set({"0.roi": field, "b.roi": clicks})).kind == "points"
    with pytest.raises(GroundTruthError, match="no outlines or points.*line"):
        read_imagej_rois(_roi_set({"a.roi": line}))
    stroke = _imagej_roi(7, 3, 4, 9, 11, xs=(4, 10), ys=(3, 8))  # a freehand outline of two points: no area
    with pytest.raises(GroundTruthError, match="only outlines of fewer than 3 points"):  # the reason was empty
        read_imagej_rois(stroke)
    with pytest.raises(GroundTruthError, match="not an ImageJ ROI set"):
        read_imagej_rois(_roi_set({"a.roi": rect, "notes.txt": b"hi"}))
    with pytest.raises(GroundTruthError, match="not an ImageJ ROI"):
        read_imagej_rois(b"hello, not a ROI")
    with pytest.raises(GroundTruthError, match="damaged"):
        read_imagej_rois(rect[:20])

    # in a folder, named as Fiji users name them; a zip of images beside an image is not its ROIs
    _save_png(tmp_path / "a.png", np.zeros((64, 64), np.uint8))
    _save_png(tmp_path / "b.png", np.ones((64, 64), np.uint8))
    _save_png(tmp_path / "c.png", np.full((64, 64), 2, np.uint8))
    (tmp_path / "a_RoiSet.zip").write_bytes(roi_set)
    (tmp_path / "b.roi").write_bytes(clicks)
    (tmp_path / "c.zip").write_bytes(_roi_set({"c.png": (tmp_path / "c.png").read_bytes()}))
    loaded = {image.name: truth for image, truth in load_labelled_folder(tmp_path)}
    assert {n: (t.kind, t.count) for n, t in loaded.items()} == {"a.png": ("labels", 3), "b.png": ("points", 2)}
    assert read_ground_truth(tmp_path / "b.roi", expected_shape=(64, 64)).count == 2
    with pytest.raises(GroundTruthError, match="outside the image"):
        read_ground_truth(tmp_path / "b.roi", expected_shape=(5, 5))


def test_imagej_roi_file_names_name_their_image() -> None:
    from cellcount.io import imagej_roi_stem

    names = {"img01.roi": "img01", "img01_RoiSet.zip": "img01", "RoiSet_img01.zip": "img01",
             "img01_rois.zip": "img01", "img01-roi.roi": "img01", "img01.zip": "img01", "RoiSet.zip": None,
             "img01.png": None, "img01_points.csv": None, "img01.tif.roi": "img01", "img01.tif_RoiSet.zip": "img01"}
    assert {n: imagej_roi_stem(n) for n in names} == names


def test_counts_cellcount_wrote_into_the_folder_are_not_its_ground_truth(tmp_path: Path, caplog) -> None:
    """``cellcount count d --out d/counts.csv`` then an evaluation of d: the images without labels took the
    model's own counts as their truth and scored an error of 0 each."""
    from cellcount.batch import COUNT_COLUMNS
    from cellcount.groundtruth import load_labelled_folder, read_counts_csv

    for k, stem in enumerate(("a", "b")):  # two images, not one image twice (that is used once)
        Image.fromarray(np.full((8, 8), k, np.uint8)).save(tmp_path / f"{stem}.png")
    labels = np.zeros((8, 8), np.int32)
    labels[2:4, 2:4] = 1
    tifffile.imwrite(tmp_path / "a_labels.tif", labels)
    row = {"file": "d/b.png", "model": "unet-mask-varied", "count": "7", "count_estimate": "7.0", "status": "ok"}
    (tmp_path / "counts.csv").write_text(",".join(COUNT_COLUMNS) + "\n" + ",".join(row.get(c, "") for c in COUNT_COLUMNS)
                                         + "\n")
    with caplog.at_level(logging.WARNING):
        pairs = load_labelled_folder(tmp_path)
    assert [p.name for p, _ in pairs] == ["a.png"]
    assert "holds cellcount's own counts" in caplog.text and "keep only its file and count columns" in caplog.text
    with pytest.raises(GroundTruthError, match="not ground truth"):
        read_counts_csv(tmp_path / "counts.csv")
    (tmp_path / "counts.csv").write_text("file,count\nd/b.png,7\n")  # corrected by hand, as the message says
    assert [p.name for p, _ in load_labelled_folder(tmp_path)] == ["a.png", "b.png"]


def test_points_listed_twice_count_once_with_a_warning(tmp_path: Path) -> None:
    """Every row of a point table twice (a double export) doubled the true counts, silently, and a model
    fine-tuned on them counted about twice the cells."""
    from cellcount.groundtruth import DuplicatePointsWarning, read_points_csv

    rows = "x,y\n10,12\n30.5,40\n10,12\n30.5,40\n31,40\n"
    (tmp_path / "a_points.csv").write_text(rows)
    with pytest.warns(DuplicatePointsWarning, match="2 of its 5 points repeat"):
        gt = read_points_csv(tmp_path / "a_points.csv")
    assert gt.count == 3 and gt.points.tolist() == [[12.0, 10.0], [40.0, 30.5], [40.0, 31.0]]


def test_a_counts_table_names_its_images_whatever_their_case(tmp_path: Path) -> None:
    """IMG4.PNG in a counts table did not name img4.png (as it does on Windows and macOS, and among uploads)."""
    from cellcount.groundtruth import load_labelled_folder

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "img4.png")
    (tmp_path / "counts.csv").write_text("file,count\nIMG4.PNG,5\n")
    [(path, gt)] = load_labelled_folder(tmp_path)
    assert path.name == "img4.png" and gt.kind == "count" and gt.count == 5


def test_a_table_of_several_images_points_is_split_by_its_image_column(tmp_path, caplog) -> None:
    """QuPath's export of a project's detections (an Image column), one table from Fiji or a script: each image
    gets its own rows, in a folder as in uploads; an image's own file wins, and points win over a count."""
    from cellcount.groundtruth import read_points_by_image
    from cellcount.labelled import labelled_set

    for k in range(4):
        _save_png(tmp_path / f"IMG{k}.png", np.full((40, 50), 10 * k, np.uint8))
    table = "Image,Name,X,Y\nimg0.png,a,3,4\nimg0.png,b,10,12\nIMG1.PNG,c,5,5\nimg3.png,d,7,8\nimg9.png,e,1,1\n"
    (tmp_path / "detections.csv").write_text(table)
    (tmp_path / "IMG3_points.csv").write_text("x,y\n1,1\n2,2\n3,3\n")  # img3's own table
    (tmp_path / "counts.csv").write_text("filename,count\nimg1.png,9\nimg2.png,6\n")
    split = read_points_by_image(tmp_path / "detections.csv")
    assert {k: v.points.tolist() for k, v in split.items()} == {
        "img0": [[4, 3], [12, 10]], "IMG1": [[5, 5]], "img3": [[8, 7]], "img9": [[1, 1]]}  # as the table spells it
    with caplog.at_level(logging.WARNING):
        got = {p.name: (gt.kind, gt.count) for p, gt in load_labelled_folder(tmp_path)}
    assert got == {"IMG0.png": ("points", 2), "IMG1.png": ("points", 1), "IMG2.png": ("count", 6),
                   "IMG3.png": ("points", 3)}
    assert "not in the folder (img9)" in caplog.text
    uploads = [(p.name, p.read_bytes()) for p in sorted(tmp_path.glob("*.png"))]
    found = labelled_set(uploads, [("detections.csv", table.encode())])
    assert {n: (g.kind, g.count) for n, _, g in found.items} == {"IMG0.png": ("points", 2), "IMG1.png": ("points", 1),
                                                                "IMG3.png": ("points", 1)}
    assert any("not uploaded (img9)" in n for n in found.notes)
    # a table naming one image's points twice (two tables), and a point outside its image, are not used silently
    other = "file,x,y\nimg0.png,1,1\nimg1.png,60,5\n"
    found = labelled_set(uploads, [("a.csv", table.encode()), ("b.csv", other.encode())])
    assert "IMG0.png" not in {n for n, _, _ in found.items}
    # both tables named, with their counts, in one note and as why that image has no truth (a CellProfiler folder's
    # Nuclei and Cells tables read "c03: points in two tables (... and another)")
    assert any(n.startswith("1 image(s) (img0) have points in 2 tables (a.csv, b.csv); they count it differently "
                            "(img0: 2 in a.csv, 1 in b.csv)") for n in found.notes), found.notes
    assert dict(found.skipped)["IMG0.png"] == ("its points are in a.csv (2 points) and b.csv (1 point): keep the table "
                                               "that annotates it")
    found = labelled_set(uploads, [("b.csv", other.encode())])
    assert any("lie outside" in why for name, why in found.skipped if name == "IMG1.png")


def test_cellcounts_own_object_table_is_never_ground_truth(tmp_path) -> None:
    from cellcount.groundtruth import read_points_by_image

    (tmp_path / "o.csv").write_text("file,label,area_px,centroid_row,centroid_col,equivalent_diameter_px\n"
                                    "a.png,1,50,3.0,4.0,8.0\n")
    assert read_points_by_image(tmp_path / "o.csv") is None


def test_tables_name_images_with_their_folders(tmp_path, caplog) -> None:
    """Two plates' A01.png: a table naming each with its folder gives each its own truth (a points table keyed by
    the file's stem gave both plates' points to both, 63 for 27 and 36, silently); a row naming only one gives the
    other none (it took the same count); a name without its folder, where two images have it, is refused; a name
    with dots and no extension keeps them; a table of full paths (cellcount's own, corrected by hand) matches."""
    from cellcount.labelled import labelled_set

    for plate, v in (("plate1", 1), ("plate2", 2)):
        _save_png(tmp_path / plate / "A01.png", np.full((30, 30), v, np.uint8))
    _save_png(tmp_path / "plate2" / "2023.05.12_s1.png", np.full((30, 30), 9, np.uint8))
    points = "Image,x,y\nplate1/A01.png,1,1\nplate2/A01.png,2,2\nplate2/A01.png,3,3\nplate2/A01.png,4,4\n"
    (tmp_path / "all_points.csv").write_text(points)
    (tmp_path / "counts.csv").write_text(f"file,count\n{tmp_path}/plate2/2023.05.12_s1,5\n")
    got = {p.relative_to(tmp_path).as_posix(): (gt.kind, gt.count) for p, gt in load_labelled_folder(tmp_path)}
    assert got == {"plate1/A01.png": ("points", 1), "plate2/A01.png": ("points", 3),
                   "plate2/2023.05.12_s1.png": ("count", 5)}
    import zipfile

    with zipfile.ZipFile(tmp_path / "plates.zip", "w") as z:  # an upload keeps folders in a zip only
        for p in sorted(tmp_path.rglob("*.png")):
            z.write(p, p.relative_to(tmp_path).as_posix())
    uploads = [("plates.zip", (tmp_path / "plates.zip").read_bytes())]
    (tmp_path / "plates.zip").unlink()
    found = labelled_set(uploads, [("all_points.csv", points.encode())])
    assert {n: g.count for n, _, g in found.items} == {"plate1/A01.png": 1, "plate2/A01.png": 3}

    (tmp_path / "all_points.csv").unlink()
    (tmp_path / "counts.csv").write_text("filename,count\nplate1/A01.png,27\n2023.05.12_s1,4\n")
    with caplog.at_level(logging.WARNING):
        got = {p.relative_to(tmp_path).as_posix(): gt.count for p, gt in load_labelled_folder(tmp_path)}
    assert got == {"plate1/A01.png": 27, "plate2/2023.05.12_s1.png": 4}
    assert "plate2/A01.png" in caplog.text and "without ground truth" in caplog.text
    both = "filename,count\nplate1/A01.png,27\nplate2/A01.png,36\n"
    (tmp_path / "counts.csv").write_text(both)  # both rows, each with its folder: no longer refused as a repeat
    got = {p.relative_to(tmp_path).as_posix(): gt.count for p, gt in load_labelled_folder(tmp_path)}
    assert got == {"plate1/A01.png": 27, "plate2/A01.png": 36}
    found = labelled_set(uploads, [("counts.csv", both.encode())])
    assert {n: g.count for n, _, g in found.items} == {"plate1/A01.png": 27, "plate2/A01.png": 36}

    bare = "filename,count\nA01.png,27\n"
    (tmp_path / "counts.csv").write_text(bare)
    reasons: dict[str, str] = {}
    with pytest.raises(GroundTruthError, match="no image with usable ground truth"):
        load_labelled_folder(tmp_path, on_error=lambda image, why: reasons.setdefault(image.parent.name, why))
    assert set(reasons) == {"plate1", "plate2"} and "names 2 images" in reasons["plate1"]
    found = labelled_set(uploads, [("counts.csv", bare.encode())])
    assert not found.items and any("names 2 images" in why for _, why in found.skipped)


def test_an_8bit_label_image_of_more_than_255_objects_is_read_by_region_with_a_warning() -> None:
    """313 nuclei saved as 8-bit labels (ids wrapped modulo 256) read as 255 objects, silently."""
    from cellcount.groundtruth import WrappedLabelsWarning, labels_from_array

    lab = np.zeros((200, 200), np.int32)
    for k, (r, c) in enumerate(((r, c) for r in range(0, 200, 10) for c in range(0, 200, 10)), start=1):
        lab[r + 2:r + 7, c + 2:c + 7] = k  # 400 objects, ids 1..400
    with pytest.warns(WrappedLabelsWarning, match="save label images as 16-bit"):
        gt = labels_from_array((lab % 256).astype(np.uint8))
    assert gt.count == 399  # id 256 wrapped to 0 is background: no reader can get it back
    with warnings.catch_warnings():
        warnings.simplefilter("error", WrappedLabelsWarning)  # 255 objects, each id one region: read as they are
        assert labels_from_array(np.where(lab <= 255, lab, 0).astype(np.uint8)).count == 255
    # ids above 255 clipped to 255 (Fiji's 8-bit conversion without scaling) read as 255 objects, silently
    with pytest.warns(WrappedLabelsWarning, match="clipped to 255"):
        assert labels_from_array(np.clip(lab, 0, 255).astype(np.uint8)).count == 400
    with pytest.warns(WrappedLabelsWarning, match="clipped to 255"):  # an id unused below 255 (an object deleted)
        assert labels_from_array(np.clip(np.where(lab == 10, 0, lab), 0, 255).astype(np.uint8)).count == 399
    with warnings.catch_warnings():  # one object of id 255 with a few stray pixels apart is not that
        warnings.simplefilter("error", WrappedLabelsWarning)
        stray = np.where(lab <= 255, lab, 0).astype(np.uint8)
        stray[0, 0] = stray[0, 199] = stray[199, 0] = 255
        assert labels_from_array(stray).count == 255
        # a stray pixel beside each of 6 objects (a brush's, Cellpose's) is no wrapped id: 255, as in 16 bits (261)
        for k in range(1, 7):
            rows, cols = np.nonzero(stray == k)
            stray[rows.max() + 2, cols[rows.argmax()]] = k
        assert labels_from_array(stray).count == 255
    ringed = np.where(lab <= 210, lab, 0).astype(np.uint8)  # 210 objects, 255 the outline of each (a reviewer)
    edge = (ringed > 0) & ~ndi.binary_erosion(ringed > 0, iterations=1)
    ringed[edge] = 255
    # read as it is, and said: outlines in 255 and a crowded field's clipped ids look alike (a 272-nucleus field's
    # clipped labels, most of their 255 regions touching others, read as 255 in silence)
    with pytest.warns(WrappedLabelsWarning, match="either outlines drawn in 255, or more than 255 objects"):
        assert labels_from_array(ringed).count == 211


def test_a_labels_tree_mirroring_the_images_tree_pairs_each_plate_with_its_own(tmp_path) -> None:
    """images/plate1..3/A01.png with labels/plate1..3/A01.tif: the label files were read as images (their folder
    is plate1, not labels) and the folder refused with a message asking for what it had."""
    for k in (1, 2, 3):
        _save_png(tmp_path / "images" / f"plate{k}" / "A01.png", np.full((20, 20), 10 * k, np.uint8))
        lab = np.zeros((20, 20), np.uint16)
        for j in range(k):
            lab[2 + 5 * j:5 + 5 * j, 2:5] = j + 1
        (tmp_path / "labels" / f"plate{k}").mkdir(parents=True)
        tifffile.imwrite(tmp_path / "labels" / f"plate{k}" / "A01.tif", lab)
    got = {p.relative_to(tmp_path).as_posix(): gt.count for p, gt in load_labelled_folder(tmp_path)}
    assert got == {"images/plate1/A01.png": 1, "images/plate2/A01.png": 2, "images/plate3/A01.png": 3}
    # a plate without labels gets none, never another plate's (a reviewer's case)
    _save_png(tmp_path / "images" / "plate4" / "A01.png", np.full((20, 20), 99, np.uint8))
    got = {p.relative_to(tmp_path).as_posix(): gt.count for p, gt in load_labelled_folder(tmp_path)}
    assert "images/plate4/A01.png" not in got and len(got) == 3


def test_tables_name_an_acquisition_and_may_give_one_count_twice(tmp_path) -> None:
    """A table naming the acquisition (A01.czi) names the TIFF exported from it, as before names kept folders; two
    tables giving one image the same count are no disagreement."""
    from cellcount.labelled import labelled_set

    _save_png(tmp_path / "sub" / "A01.png", np.full((8, 8), 3, np.uint8))
    _save_png(tmp_path / "sub" / "A02.png", np.full((8, 8), 4, np.uint8))
    (tmp_path / "counts.csv").write_text("filename,count\nA01.czi,5\nA02.nd2,6\n")
    (tmp_path / "more.csv").write_text("file,count\nsub/A01.png,5\n")
    got = {p.name: gt.count for p, gt in load_labelled_folder(tmp_path)}
    assert got == {"A01.png": 5, "A02.png": 6}
    uploads = [(p.name, p.read_bytes()) for p in sorted((tmp_path / "sub").glob("*.png"))]
    found = labelled_set(uploads, [("counts.csv", (tmp_path / "counts.csv").read_bytes()),
                                   ("more.csv", b"file,count\nA01.png,5\n")])
    assert {n: g.count for n, _, g in found.items} == {"A01.png": 5, "A02.png": 6} and not found.skipped


def test_a_table_in_a_plate_folder_names_that_plates_images(tmp_path) -> None:
    """plate1/counts.csv and plate2/counts.csv each name their own A01.png (both refused as ambiguous, a
    reviewer's case); a full path through another folder names no image of this one (it matched the bare A01)."""
    for plate, n in (("plate1", 5), ("plate2", 7)):
        _save_png(tmp_path / plate / "A01.png", np.full((8, 8), n, np.uint8))
        (tmp_path / plate / "counts.csv").write_text(f"filename,count\nA01.png,{n}\n")
    got = {p.relative_to(tmp_path).as_posix(): gt.count for p, gt in load_labelled_folder(tmp_path)}
    assert got == {"plate1/A01.png": 5, "plate2/A01.png": 7}
    (tmp_path / "plate1" / "counts.csv").write_text("filename,count\n/data/plate2/A01.png,7\n")
    with pytest.raises(GroundTruthError, match="none of the 1 image"):  # plate1's A01 is not plate2's
        load_labelled_folder(tmp_path / "plate1")
    (tmp_path / "plate1" / "counts.csv").write_text(f"filename,count\n{tmp_path}/plate1/A01.png,5\n")
    assert [gt.count for _, gt in load_labelled_folder(tmp_path / "plate1")] == [5], "its own full path matches"


def test_an_8bit_label_image_with_a_stray_pixel_or_a_boundary_id_is_not_unwrapped() -> None:
    from cellcount.groundtruth import WrappedLabelsWarning, labels_from_array

    lab = np.zeros((200, 200), np.uint8)
    cells = [(r, c) for r in range(0, 160, 10) for c in range(0, 160, 10)][:255]
    for k, (r, c) in enumerate(cells, start=1):
        lab[r + 2:r + 7, c + 2:c + 7] = k  # 255 objects, ids 1..255
    lab[199, 199] = 7  # a stray pixel of object 7
    with warnings.catch_warnings():
        warnings.simplefilter("error", WrappedLabelsWarning)
        assert labels_from_array(lab).count == 255


def test_a_label_image_cellcount_wrote_is_said_to_be_a_prediction(tmp_path: Path) -> None:
    from cellcount.groundtruth import PredictedLabelsWarning
    from cellcount.io import labels_to_tiff_bytes
    from cellcount.labelled import labelled_set

    labels = np.zeros((16, 16), np.uint16)
    labels[2:6, 2:6], labels[9:13, 9:13] = 1, 2
    ours = labels_to_tiff_bytes(labels, model="unet-mask")
    (tmp_path / "a_labels.tif").write_bytes(ours)
    with pytest.warns(PredictedLabelsWarning, match="a_labels.tif: a label image cellcount wrote .*unet-mask"):
        assert read_label_image(tmp_path / "a_labels.tif").count == 2
    with pytest.warns(PredictedLabelsWarning):
        read_label_image(ours)
    with warnings.catch_warnings():  # written without a model (drawn or corrected by hand): plain labels
        warnings.simplefilter("error", PredictedLabelsWarning)
        read_label_image(labels_to_tiff_bytes(labels))
    # the same labels from another program (Fiji, napari, a hand correction saved anew) are ground truth
    tifffile.imwrite(tmp_path / "b_labels.tif", labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PredictedLabelsWarning)
        assert read_label_image(tmp_path / "b_labels.tif").count == 2
    # uploads: said on the page among the notes
    image = np.zeros((16, 16), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    got = labelled_set([("a.png", buf.getvalue()), ("a_labels.tif", ours)])
    assert len(got.items) == 1 and any("cellcount wrote" in n for n in got.notes)


def test_a_counts_table_named_as_ground_truth_is_read_as_counts(tmp_path: Path) -> None:
    _save_png(tmp_path / "m000.png", np.zeros((8, 8), np.uint8))
    _save_png(tmp_path / "m001.png", np.full((8, 8), 9, np.uint8))
    (tmp_path / "counts_gt.csv").write_text("filename,count\nm000.png,167\nm001.png,88\n")
    assert {p.name: gt.count for p, gt in load_labelled_folder(tmp_path)} == {"m000.png": 167, "m001.png": 88}
    # an image's own points table with that suffix stays its points
    (tmp_path / "counts_gt.csv").unlink()
    (tmp_path / "m000_gt.csv").write_text("x,y\n1,1\n5,5\n")
    (tmp_path / "m001_gt.csv").write_text("x,y\n2,2\n")
    assert {p.name: gt.count for p, gt in load_labelled_folder(tmp_path)} == {"m000.png": 2, "m001.png": 1}


def test_a_project_table_of_points_in_microns_says_so() -> None:
    from cellcount.groundtruth import read_points_by_image

    table = "Image\tClass\tCentroid X µm\tCentroid Y µm\nm000.png\tTumor\t1.5\t2.0\n".encode()
    with pytest.raises(GroundTruthError, match="in microns .*'Centroid X µm'.*Centroid X px"):
        read_points_by_image(table)
    assert read_points_by_image(b"Image,Centroid X px,Centroid Y px\nm000.png,3,4\n")["m000"].count == 1


def test_a_counts_table_with_stage_positions_in_microns_is_still_counts(tmp_path: Path) -> None:
    _save_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "counts.csv").write_text("image,count,stage x um,stage y um\na.png,7,1200.5,300.25\n")
    assert {p.name: gt.count for p, gt in load_labelled_folder(tmp_path)} == {"a.png": 7}


def test_an_unreadable_roi_set_is_named_not_passed_over(tmp_path: Path) -> None:
    """A corrupt a_RoiSet.zip left its image 'without ground truth' and was never named (a tester): a zip whose
    name says RoiSet is the image's ground truth, and its image is reported with the reason."""
    for name in ("a", "b"):
        _save_png(tmp_path / f"{name}.png", np.zeros((16, 16), np.uint8))
    (tmp_path / "a_RoiSet.zip").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "b_points.csv").write_text("x,y\n3,4\n")
    said = []
    got = load_labelled_folder(tmp_path, on_error=lambda image, why: said.append((image.name, why)))
    assert [image.name for image, _ in got] == ["b.png"]
    assert said and said[0][0] == "a.png" and "a_RoiSet.zip: not a readable zip of ImageJ ROIs" in said[0][1]


def test_point_tables_named_after_the_images_full_name_pair_and_strays_are_named(tmp_path: Path, caplog) -> None:
    """a.png.csv (a macro's getTitle() keeps the extension) is a.png's points, as a.png.geojson is; a table of
    points named like no image is said, as an unmatched label image is (a tester's Results_b.csv passed unsaid)."""
    for name in ("a", "b"):
        _save_png(tmp_path / f"{name}.png", np.zeros((16, 16), np.uint8))
    (tmp_path / "a.png.csv").write_text("x,y\n3,4\n5,6\n")
    (tmp_path / "Results_b.csv").write_text(" ,X,Y\n1,3,4\n")
    # cellcount's own tables (objects; a density model's centres) are predictions, never ground truth to rename
    (tmp_path / "objects.csv").write_text("file,label,area_px,centroid_row,centroid_col,equivalent_diameter_px\n"
                                          "a.png,1,30,3,4,6\n")
    (tmp_path / "centres.csv").write_text("label,centroid_row,centroid_col,density,file\n1,3,4,0.5,a.png\n")
    with caplog.at_level(logging.WARNING):
        got = {image.name: gt.count for image, gt in load_labelled_folder(tmp_path, on_error=lambda i, w: None)}
    assert got == {"a.png": 2}
    assert "1 ground-truth file(s) match no image: Results_b.csv" in caplog.text
    assert "objects.csv" not in caplog.text and "centres.csv" not in caplog.text


def test_qupath_objects_of_its_ignore_class_are_left_out_saying_so() -> None:
    """QuPath's Ignore* class marks what is not to be counted: its detections were counted (a tester)."""
    import json

    from cellcount.groundtruth import IgnoredClassWarning, read_geojson

    def det(x, cls=None):
        props = {"objectType": "detection", **({"classification": {"name": cls}} if cls else {})}
        return {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [_square(x, 2, 4)]}}

    data = json.dumps({"type": "FeatureCollection", "features": [det(2), det(10, "Tumor"), det(18, "Ignore*")]})
    with pytest.warns(IgnoredClassWarning, match=r"1 object\(s\) of QuPath's class Ignore\* left out"):
        gt = read_geojson(data.encode(), expected_shape=(16, 32))
    assert gt.count == 2


def test_a_name_listed_twice_with_two_counts_says_how_to_tell_them_apart(tmp_path):
    """A tester's counts table listed A01.png with 36 and 9 (two plates' wells): the refusal says to name each with
    its folder, which reads (docs/LIMITS.md)."""
    from cellcount.groundtruth import read_counts_by_name

    table = tmp_path / "counts.csv"
    table.write_text("\ufefffilename;count\nA01.png;36\nA01.png;9\n", encoding="utf-8")
    with pytest.raises(GroundTruthError, match=r"'A01' is listed twice with counts 36 and 9; if they are two images "
                                               r"of different folders, name each with its folder \(plate1/A01.png"):
        read_counts_by_name(table)
    table.write_text("filename;count\nplate1/A01.png;36\nplate2/A01.png;9\n", encoding="utf-8")
    assert sorted(read_counts_by_name(table).values()) == [9, 36]


def test_a_broken_file_without_ground_truth_is_said_to_be_unreadable(tmp_path: Path, caplog) -> None:
    """A broken file with no annotation was reported only as an image "without ground truth" (a tester went looking
    for its labels): it is named as a file that cannot be read either."""
    _save_png(tmp_path / "a.png", np.zeros((10, 12), np.uint8))
    tifffile.imwrite(tmp_path / "a_labels.tif", _two_blobs())
    _save_png(tmp_path / "b.png", np.ones((10, 12), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        items = load_labelled_folder(tmp_path)
    assert [p.name for p, _ in items] == ["a.png"]
    assert "1 image(s) without ground truth skipped: b.png" in caplog.text
    assert "1 file(s) without ground truth that cannot be read as images either, skipped: broken.png" in caplog.text


@pytest.mark.parametrize("folder", ["points", "annotations", "labels"])
def test_the_data_folders_own_name_does_not_make_its_images_ground_truth(samples_dir, tmp_path, folder):
    """`evaluate --data points/` (images beside their point tables, in a folder a user named so) said "no images
    found": the folder's name made every file in it a dot annotation. Folders below it still say what they hold."""
    import shutil

    root = tmp_path / folder
    root.mkdir()
    for stem in ("s01_sparse_small", "s03_large_nuclei"):
        shutil.copy(samples_dir / f"{stem}.png", root / f"{stem}.png")
        shutil.copy(samples_dir / f"{stem}_points.csv", root / f"{stem}_points.csv")
    (root / "masks").mkdir()
    shutil.copy(samples_dir / "s01_sparse_small_labels.tif", root / "masks" / "s01_sparse_small.tif")
    got = {image.name: gt for image, gt in load_labelled_folder(root)}
    assert set(got) == {"s01_sparse_small.png", "s03_large_nuclei.png"}
    assert got["s03_large_nuclei.png"].kind == "points" and got["s03_large_nuclei.png"].count == 32


def test_counts_tables_as_excel_fiji_and_two_count_columns_write_them(tmp_path: Path) -> None:
    """A facility tester's tables: 'Image Name,Cell Count' refused though image_name,cell_count pass; Fiji's Analyze
    Particles summary (Slice, Count, ...) refused; image,n_nuclei,n_cells scored against n_cells in silence."""
    from cellcount.groundtruth import read_counts_csv

    assert read_counts_csv(b"Image Name,Cell Count\na.png,3\n") == {"a": 3}
    assert read_counts_csv(b"Slice,Count,Total Area,Average Size,%Area,Mean\na.tif,7,120,17.1,2.3,200\n") == {"a": 7}
    assert read_counts_csv(b"filename,nuclei\na.png,4\n") == {"a": 4}
    assert read_counts_csv(b"filename,cells,count\na.png,HeLa,5\n") == {"a": 5}  # a column named count is the count
    for table, named in ((b"image,n_nuclei,n_cells\na.png,27,32\n", "n_nuclei, n_cells"),
                         (b"filename,cell_count,nuclei_count\na.png,4,5\n", "cell_count, nuclei_count")):
        with pytest.raises(GroundTruthError, match=f"counts of 2 kinds of objects \\({named}\\)"):
            read_counts_csv(table)
    # Fiji's Multi-point Results stay points: their Slice is a plane's number, their Count a running number
    _save_png(tmp_path / "a.png", np.zeros((10, 12), np.uint8))
    (tmp_path / "a.csv").write_text(" ,X,Y,Ch,Slice,Counter,Count\n1,1,1,1,1,0,1\n2,5,5,1,1,0,2\n")
    assert [(gt.kind, gt.count) for _, gt in load_labelled_folder(tmp_path)] == [("points", 2)]
    # in a folder the refusal names its reason, not the column names the table already has
    (tmp_path / "a.csv").unlink()
    (tmp_path / "truth.csv").write_text("image,n_nuclei,n_cells\na.png,27,32\n")
    with pytest.raises(GroundTruthError, match=r"truth.csv has counts of 2 kinds of objects \(n_nuclei, n_cells\)"):
        load_labelled_folder(tmp_path)


def test_a_colour_label_image_that_reuses_its_colours_is_said_to_merge_touching_objects() -> None:
    """skimage's label2rgb cycles about 7 colours: touching nuclei of one colour read as one (27 read as 26), silently."""
    from cellcount.groundtruth import ReusedColoursWarning, labels_from_array

    lab = np.zeros((60, 60), np.int32)
    for k, (r, c) in enumerate(((r, c) for r in range(0, 60, 10) for c in range(0, 60, 10)), start=1):
        lab[r + 2:r + 7, c + 2:c + 7] = k  # 36 objects apart
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    with pytest.warns(ReusedColoursWarning, match="36 objects in only 3 colours"):
        assert labels_from_array(palette[np.where(lab > 0, (lab - 1) % 3 + 1, 0)]).count == 36
    few = np.where((lab > 0) & (lab <= 15), (lab - 1) % 10 + 1, 0)  # 15 nuclei in 10 colours (a tester's)
    with pytest.warns(ReusedColoursWarning, match="15 objects in only 10 colours"):
        labels_from_array(np.stack([few * 20, few * 7 % 256, few], axis=-1).astype(np.uint8))
    unique = np.stack([lab * 7 % 256, lab * 13 % 256, lab], axis=-1).astype(np.uint8)  # a colour per object
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReusedColoursWarning)
        assert labels_from_array(unique).count == 36


def test_labels_named_as_their_image_in_its_folder_are_pointed_out(tmp_path: Path) -> None:
    """StarDist's labels saved as a.tif beside a.png read as a second image: "none of the 2 image(s) has ground truth"
    and nothing about why."""
    _save_png(tmp_path / "a.png", np.zeros((10, 12), np.uint8))
    lab = np.zeros((10, 12), np.uint16)
    lab[2:5, 2:5] = 1
    tifffile.imwrite(tmp_path / "a.tif", lab)
    with pytest.raises(GroundTruthError, match=r"share a name in one folder \(a.png and a.tif\).* a_labels.tif"):
        load_labelled_folder(tmp_path)


@pytest.mark.parametrize("images,labels", [
    (["plate1/A01.png", "plate2/A01.png"], ["plate1/labels/A01.tif", "plate2/labels/A01.tif"]),
    (["images/A01.png", "images/plate2/A01.png"], ["labels/A01.tif", "labels/plate2/A01.tif"]),
    (["plate1/images/A01.png", "plate2/images/A01.png"], ["plate1/labels/A01.tif", "plate2/labels/A01.tif"]),
    (["images/plate1/A01.png", "images/plate2/A01.png"], ["labels/plate1/A01.tif", "labels/plate2/A01.tif"]),
    (["A01.png", "sub/A01.png"], ["labels/A01.tif", "sub/labels/A01.tif"]),
    (["p1/A01.png", "p2/A01.png"], ["p1/A01_labels.tif", "p2/A01_labels.tif"]),
])
def test_each_of_two_images_named_alike_pairs_with_its_own_labels(tmp_path: Path, images, labels) -> None:
    """A labels file serves one image, taken closest first: a rule deciding each file's owner alone refused layouts
    where one image had its own file beside it, and read root/labels/ as no closer to root/A01.png than to
    sub/A01.png (a reviewer's layouts; each image's labels hold a different number of objects)."""
    from cellcount.labelled import pair_by_stem

    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        _save_png(tmp_path / image, np.full((20, 20), 10 * (k + 1), np.uint8))  # two images, not one twice
        lab = np.zeros((20, 20), np.uint16)
        for j in range(k + 2):
            lab[2 * j:2 * j + 1, 2:4] = j + 1
        (tmp_path / label).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(tmp_path / label, lab)
    got = {p.relative_to(tmp_path).as_posix(): gt.count for p, gt in load_labelled_folder(tmp_path)}
    assert got == {image: k + 2 for k, image in enumerate(images)}
    pairs, _, _ = pair_by_stem(images, labels)  # the app's uploads (a zip of the same tree)
    assert pairs == dict(zip(images, labels, strict=True))


def test_a_file_given_for_a_folder_of_annotations_is_said_to_be_a_file(tmp_path):
    from cellcount.groundtruth import load_labelled_folder

    (tmp_path / "a.tif").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="is a file: give the folder that holds the images"):
        load_labelled_folder(tmp_path / "a.tif")


def test_a_binary_mask_saved_inverted_is_refused_saying_why() -> None:
    """Nuclei black on white: the white background was read as one object and every model scored against a
    count of 1 (a tester's MAPE of 351%), with no word. Now refused, naming the likely cause; a mask of nuclei
    covering much of the image but not the background is read as before."""
    from cellcount.groundtruth import labels_from_array

    mask = np.zeros((40, 50), np.uint8)
    mask[5:10, 5:10] = mask[20:30, 20:28] = 255
    with pytest.raises(GroundTruthError, match="touches all four edges: that is the background.*saved inverted"):
        labels_from_array(255 - mask, source="inv.png")
    with pytest.raises(GroundTruthError, match="that is the background"):  # a 0/1 mask: one region of value 1
        labels_from_array((mask == 0).astype(np.uint8), source="inv01.png")
    big = np.zeros((40, 50), np.uint8)
    big[2:38, 2:48] = 255  # one large object, touching no edge
    with pytest.warns(BinaryMaskWarning):
        assert labels_from_array(big).count == 1
    edge = np.zeros((40, 50), np.uint8)
    edge[:, :30] = 255  # over half the image, but along three edges only
    with pytest.warns(BinaryMaskWarning):
        assert labels_from_array(edge).count == 1


def test_dots_stamped_larger_than_specks_are_read_as_dots_under_the_images_name(tmp_path: Path) -> None:
    """5 x 5 dots (or discs of radius 3) in a labels/ file named as its image were read as a mask of tiny
    nuclei: the count right, every model's F1 0 (a tester). Blobs stamped alike by one brush are dots; a mask of
    nuclei of varied sizes stays a mask."""
    from cellcount.groundtruth import load_labelled_folder

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(3)
    dots = np.zeros((60, 80), np.uint8)
    centres = [(8 + 11 * (k // 6), 8 + 12 * (k % 6)) for k in range(24)]
    for r, c in centres:
        dots[r - 2:r + 3, c - 2:c + 3] = 255
    dots[0:2, 74:79] = 255  # a stamp cut off by the image's edge
    centres.append((0.5, 76.0))
    masks = np.zeros((60, 80), np.uint8)
    for k, (r, c) in enumerate(centres[:12]):
        h = 1 + k % 4  # nuclei of varied sizes
        masks[r - h:r + h + 1, c - 2:c + 2 + k % 3] = 255
    for name, arr in (("a.png", dots), ("b.png", masks)):
        _save_png(tmp_path / "images" / name, rng.integers(0, 255, (60, 80), dtype=np.uint8))
        _save_png(tmp_path / "labels" / name, arr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BinaryMaskWarning)
        got = {p.name: gt for p, gt in load_labelled_folder(tmp_path)}
    assert got["a.png"].kind == "points" and got["a.png"].count == 25
    np.testing.assert_allclose(sorted(map(tuple, got["a.png"].points)), sorted(centres))
    assert got["b.png"].kind == "mask" and got["b.png"].count == 12
    # a thresholded mask whose noise is single-pixel specks, most of its blobs: nuclei, not dots (read as dots, its
    # large blobs were split into thousands)
    from cellcount.groundtruth import labels_from_array
    from cellcount.groundtruth.truth import holds_only_specks

    noisy = np.zeros((200, 200), np.uint8)
    for k in range(9):
        noisy[15 + 60 * (k // 3):45 + 60 * (k // 3), 15 + 60 * (k % 3):45 + 60 * (k % 3)] = 255
    noisy[rng.integers(0, 200, 60), rng.integers(0, 200, 60)] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BinaryMaskWarning)
        assert not holds_only_specks(labels_from_array(noisy))


def test_specks_in_a_binary_mask_are_said_and_still_counted() -> None:
    """A thresholded or JPEG-saved mask's 1-4 px noise became ground-truth cells with no word: said now, with how
    many, and kept (the annotation is the user's); a mask of small nuclei alone says nothing of specks."""
    arr = np.zeros((40, 60), np.uint8)
    for x in (2, 14, 26, 38):
        arr[2:9, x:x + 7] = 255  # four 49 px nuclei
    arr[30, 5] = arr[35, 50] = arr[20, 55] = 255  # three 1 px specks
    with pytest.warns(SpeckledMaskWarning, match="3 of the mask's 7 objects are specks of at most 4 px"):
        gt = labels_from_array(arr, source="m.png")
    assert gt.kind == "mask" and gt.count == 7
    arr[12:40:3, 2:60:3] = 255  # specks outnumbering the nuclei
    with pytest.warns(SpeckledMaskWarning, match=r"specks of at most 4 px beside objects of 49 px"):
        labels_from_array(arr, source="m.png")
    small = np.zeros((20, 20), np.uint8)
    small[2:4, 2:4] = small[10:12, 10:12] = small[15, 15] = 255  # small objects: no speck among them
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpeckledMaskWarning)
        with pytest.warns(BinaryMaskWarning):
            labels_from_array(small)


def test_two_images_of_one_name_beside_one_label_image_are_said_as_such(tmp_path: Path) -> None:
    """x.png and x.tif beside x_labels.png: both refused, said as "the same name in other folders" (a tester)."""
    image = np.full((16, 16), 40, np.uint8)
    _save_png(tmp_path / "x.png", image)
    tifffile.imwrite(tmp_path / "x.tif", image)
    labels = np.zeros((16, 16), np.uint8)
    labels[4:9, 4:9] = 1
    _save_png(tmp_path / "x_labels.png", labels)
    said: dict[str, str] = {}
    with pytest.raises(GroundTruthError):
        load_labelled_folder(tmp_path, on_error=lambda path, why: said.update({path.name: why}))
    assert set(said) == {"x.png", "x.tif"}, said
    assert "images of one name but for their extension, in one folder" in said["x.png"]
    assert "other folders" not in said["x.png"]


def test_an_annotation_named_after_the_images_full_name_pairs_with_it():
    """``014Cell.PNG_points.csv`` matched no image while ``013cell.tif.csv`` paired (a tester): a script adding its
    suffix to the image's whole file name."""
    from cellcount.groundtruth.pairing import match_ground_truth

    images = [Path("d/013cell.png"), Path("d/014Cell.png"), Path("d/015cell.png")]
    gts = [Path("d/013cell.tif.csv"), Path("d/014Cell.PNG_points.csv"), Path("d/015cell.tif_labels.tif")]
    assert match_ground_truth(images, gts) == dict(zip(images, gts, strict=True))
    # the whole name first: with img01.png beside img01.tif, img01.png_points.csv is the PNG's (it paired with neither)
    both = [Path("d/img01.png"), Path("d/img01.tif")]
    assert match_ground_truth(both, [Path("d/img01.png_points.csv")]) == {both[0]: Path("d/img01.png_points.csv")}


def test_a_click_at_a_pixels_centre_matches_that_pixels_object_whichever_tool_wrote_it() -> None:
    """QuPath and ImageJ put a pixel's centre at +0.5: read unmoved, a click at the centre of an object's edge pixel
    matched the next pixel half the time (half-way values round to even), so one image's F1 depended on the tool
    that wrote its dots. Their points are read as their outlines are: moved by half a pixel."""
    from cellcount.metrics import match_points_in_objects

    labels = np.zeros((40, 40), np.int32)
    labels[10:20, 10:20] = 1
    labels[10:20, 20:30] = 2  # touching: an edge click's neighbour is the other object
    edge = [(19, 19), (10, 20)]  # (row, col): the last pixel of object 1, the first of object 2
    qupath = "Centroid X px,Centroid Y px\n" + "".join(f"{c + 0.5},{r + 0.5}\n" for r, c in edge)
    imagej = " ,XM,YM\n" + "".join(f"{k},{c + 0.5},{r + 0.5}\n" for k, (r, c) in enumerate(edge, 1))
    ours = "x,y\n" + "".join(f"{c},{r}\n" for r, c in edge)
    for text in (qupath, imagej, ours):
        found = match_points_in_objects(read_points_csv(text.encode()).points, labels)
        assert (found.tp, found.fp, found.fn) == (2, 0, 0), text


def test_a_fiji_results_table_of_several_images_is_split_by_its_label(tmp_path: Path) -> None:
    """Fiji's Results with "Display label" on name each point's image in ``Label`` (``A01.png:0001-0001``, image:ROI):
    such a table beside the images was refused as "named like no image"."""
    from cellcount.groundtruth import read_points_by_image

    table = " ,Label,X,Y\n1,A01.png:0001-0001,3,4\n2,A01.png:0001-0002,5,6\n3,B02.png,7,8\n"
    assert {k: v.points.tolist() for k, v in read_points_by_image(table.encode()).items()} == {
        "A01": [[4, 3], [6, 5]], "B02": [[8, 7]]}
    assert read_points_by_image(b" ,Label,X,Y\n1,1,3,4\n") is None, "an object's number names no image"
    for k, stem in enumerate(("A01", "B02")):  # different pictures: the same one twice is counted once
        Image.fromarray(np.full((16, 16), 10 * k, np.uint8)).save(tmp_path / f"{stem}.png")
    (tmp_path / "Results.csv").write_text(table)
    assert {p.name: gt.count for p, gt in load_labelled_folder(tmp_path)} == {"A01.png": 2, "B02.png": 1}


def _flat_png(v: int) -> bytes:
    """A 32 x 32 PNG of one grey value (different values: different images, never read as one copied twice)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32), v, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_images_whose_names_differ_only_in_case_each_get_their_own_row(tmp_path: Path) -> None:
    """``IMG01.png`` and ``img01.png`` (a Linux share, a zip) with a row each in the counts table were both refused,
    told to name their folders. Each row names the image spelled like it; a row spelled like neither says so."""
    from cellcount.labelled import labelled_set

    png = _flat_png
    uploads = [("IMG01.png", png(1)), ("img01.png", png(2))]
    found = labelled_set(uploads, [("counts.csv", b"filename;count\nIMG01.png;50\nimg01.png;28\n")])
    assert {n: g.count for n, _, g in found.items} == {"IMG01.png": 50, "img01.png": 28}
    found = labelled_set(uploads, [("counts.csv", b"filename;count\nImg01.png;50\n")])
    assert not found.items and all("spell it as the image's file is spelled, letter case too" in why
                                   for _, why in found.skipped)
    for name, data in uploads:
        (tmp_path / name).write_bytes(data)
    if len(list(tmp_path.iterdir())) == 2:  # a file system that tells them apart
        (tmp_path / "counts.csv").write_text("filename,count\nIMG01.png,50\nimg01.png,28\n")
        assert {p.name: gt.count for p, gt in load_labelled_folder(tmp_path)} == {"IMG01.png": 50, "img01.png": 28}
    # one spelling names the image whatever its case where only one image has that name, as before
    found = labelled_set(uploads[:1], [("counts.csv", b"filename;count\nimg01.PNG;50\n")])
    assert {n: g.count for n, _, g in found.items} == {"IMG01.png": 50}


def test_a_mask_that_went_through_jpeg_and_back_to_png_is_refused_not_counted_by_grey_level(tmp_path: Path) -> None:
    """A binary mask saved as JPEG and again as PNG held 70-79 grey levels, read as 70-79 objects where 23-90
    nuclei were: every figure wrong, no warning. Its ids change inside the objects; a real label image's do not."""
    from cellcount.groundtruth import labels_from_array

    labels = np.zeros((64, 64), np.uint16)
    for k, (r, c) in enumerate([(5, 5), (5, 30), (30, 5), (30, 30), (45, 45)], start=1):
        labels[r:r + 14, c:c + 14] = k
    labels[5:19, 19:30] = 6  # touching its neighbours: boundaries between ids are normal
    assert labels_from_array(labels).count == 6
    rr, cc = np.mgrid[:64, :64]
    discs = np.zeros((64, 64), bool)
    for r, c in [(10, 10), (10, 30), (12, 50), (30, 12), (32, 34), (50, 20), (52, 48)]:
        discs |= (rr - r) ** 2 + (cc - c) ** 2 <= 36  # nuclei of about 12 px across
    buf = io.BytesIO()
    Image.fromarray(np.where(discs, 255, 0).astype(np.uint8)).save(buf, format="JPEG", quality=75)
    noisy = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    noisy = np.where(noisy > 30, noisy, 0)  # its near-black background cleaned, its objects still speckled
    assert len(np.unique(noisy)) > 3
    with pytest.raises(GroundTruthError, match="neighbouring pixels inside its objects differ in value"):
        labels_from_array(noisy, source="d1_labels.png")


def test_dots_marked_twice_a_fraction_of_a_pixel_apart_are_said() -> None:
    """A third of the dots copied 0.5 px away: MAE 18 and the copies drawn as the model's misses, with no word."""
    from cellcount.groundtruth import DuplicatePointsWarning

    dots = "x,y\n10,10\n10.5,10\n40,40\n41,41\n70,12\n"  # a copy 0.5 px away, a double click 1.4 px away
    with pytest.warns(DuplicatePointsWarning, match="2 pair\\(s\\) of its points lie within 2 px of each other"):
        gt = read_points_csv(dots.encode())
    assert gt.count == 5, "said, not dropped: the user decides"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicatePointsWarning)
        assert read_points_csv(b"x,y\n10,10\n13,10\n40,40\n").count == 3  # neighbours 3 px apart: no word


def test_a_data_folder_whose_images_lie_in_gt_says_why_none_were_found(tmp_path: Path) -> None:
    """Images and their labels in data/gt/: "no images found", though there were five."""
    sub = tmp_path / "gt"
    _save_png(sub / "a.png", np.full((8, 8), 3, np.uint8))
    tifffile.imwrite(sub / "a_labels.tif", np.ones((8, 8), np.uint16))
    with pytest.raises(GroundTruthError, match=r"its 2 image file\(s\) are all read as ground truth .*\(gt/: a folder "
                                               r"named so holds annotations; name it images/\)"):
        load_labelled_folder(tmp_path)


def test_a_points_table_names_the_image_spelled_like_it_and_two_tables_disagreeing_name_both() -> None:
    """A table's IMG01.png rows went to img01.png (its key folded, the image picked by spelling); one image counted
    5 by a.csv and 6 by b.csv under two spellings read "(\'img4\' among them)", naming neither."""
    from cellcount.labelled import labelled_set

    png = _flat_png
    uploads = [("IMG01.png", png(1)), ("img01.png", png(2))]
    found = labelled_set(uploads, [("qupath.csv", b"Image,x,y\nIMG01.png,5,5\nIMG01.png,20,20\nimg01.png,30,30\n")])
    assert {n: g.count for n, _, g in found.items} == {"IMG01.png": 2, "img01.png": 1}
    found = labelled_set(uploads, [("qupath.csv", b"Image,x,y\nIMG01.png,5,5\nIMG01.png,20,20\n")])
    assert {n: g.count for n, _, g in found.items} == {"IMG01.png": 2} and [n for n, _ in found.unlabelled] == ["img01.png"]
    found = labelled_set([("img4.png", png(3))], [("a.csv", b"filename,count\nIMG4.png,5\n"),
                                                  ("b.csv", b"filename,count\nimg4.png,6\n")])
    assert dict(found.skipped)["img4.png"] == ("the tables give a count for it twice, differently: 5 (a.csv) and 6 "
                                               "(b.csv); remove the wrong row or table")


def test_one_table_giving_an_image_two_counts_names_the_table_once_and_its_rows() -> None:
    """Rows IMG4.png 5 and img4.png 6 of one table read "5 (a.csv) and 6 (a.csv)": the table twice, the rows never."""
    from cellcount.labelled import labelled_set

    found = labelled_set([("img4.png", _flat_png(3))], [("a.csv", b"filename,count\nIMG4.png,5\nimg4.png,6\n")])
    assert dict(found.skipped)["img4.png"] == ("a.csv gives a count for it in two rows, differently: 5 (row IMG4) "
                                               "and 6 (row img4); remove the wrong row")


def test_a_colour_mask_that_went_through_jpeg_is_refused_too() -> None:
    """A red-on-black mask through JPEG and back to PNG read as 18,592 objects, one per colour region."""
    from cellcount.groundtruth import labels_from_array

    rr, cc = np.mgrid[:256, :256]
    discs = np.zeros((256, 256), bool)
    for r, c in [(40, 40), (40, 120), (48, 200), (120, 48), (128, 136), (200, 80), (208, 192)]:
        discs |= (rr - r) ** 2 + (cc - c) ** 2 <= 24 ** 2
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[discs] = (255, 0, 0)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=75)
    noisy = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    noisy = np.where(noisy.sum(axis=2, keepdims=True) > 60, noisy, 0).astype(np.uint8)
    with pytest.raises(GroundTruthError, match="neighbouring pixels inside its objects differ in value"):
        labels_from_array(noisy, source="mask.png")


def test_a_fiji_results_table_naming_several_images_is_not_read_as_one_images_points() -> None:
    """A Results table whose Label named s02.png and a title without extension (s03-1) was not split, and renamed
    like s02 as the message advised, gave s02 s03's dots too (199 for 167)."""
    with pytest.raises(GroundTruthError, match=r"the points of 2 images \('label' column: s02.png, s03-1\)"):
        read_points_csv(b" ,Label,X,Y\n1,s02.png,3,4\n2,s03-1,5,6\n")
    assert read_points_csv(b" ,Label,X,Y\n1,s02.png:0001,3,4\n2,s02.png:0002,5,6\n").count == 2  # one image's ROIs
    assert read_points_csv(b"label,x,y\n1,3,4\n2,5,6\n").count == 2  # numbered objects name no image


def test_a_class_map_is_refused_not_read_as_one_object_per_class() -> None:
    """64 separate nuclei whose values repeat 1, 2, 3 (ilastik's Simple Segmentation saves classes so) read as a
    count of 3, unsaid; an instance label image with one object in two pieces is still read as it is."""
    from cellcount.groundtruth import labels_from_array

    a = np.zeros((160, 160), np.uint16)
    for k in range(64):
        r, c = divmod(k, 8)
        a[r * 20 + 4: r * 20 + 14, c * 20 + 4: c * 20 + 14] = k % 3 + 1
    with pytest.raises(GroundTruthError, match=r"its 3 values mark 64 separate regions.*class map"):
        labels_from_array(a, source="classes.tif")
    instances = np.where(a > 0, 0, 0).astype(np.uint16)
    for k in range(64):
        r, c = divmod(k, 8)
        instances[r * 20 + 4: r * 20 + 14, c * 20 + 4: c * 20 + 14] = k + 1
    instances[0:2, 0:2] = 5  # one id in two pieces, as two of DSB's 522 label images have
    assert labels_from_array(instances).count == 64


def test_a_label_column_of_classes_is_read_as_one_images_points_and_imagej_titles_still_name_images() -> None:
    """A label column (alive, dead; napari's Points features) was read as image names and the table refused."""
    from cellcount.groundtruth import read_points_csv

    assert read_points_csv(b"x,y,label\n10,12,alive\n30,40,dead\n50,20,alive\n").count == 3
    assert read_points_csv(b"index,label,axis-0,axis-1\n0,nucleus,12,10\n1,mitotic,40,30\n2,nucleus,20,50\n").count == 3
    with pytest.raises(GroundTruthError, match=r"the points of 2 images \('label' column: s03-1, s03-2\)"):
        read_points_csv(b" ,Label,X,Y\n1,s03-1,10,12\n2,s03-2,30,40\n")  # ImageJ's Results: titles, no extension
    with pytest.raises(GroundTruthError, match=r"the points of 2 images"):
        read_points_csv(b"x,y,label\n10,12,a.png:0001-0001\n30,40,b.png:0002-0002\n")


def test_imagejs_summarize_rows_are_no_points() -> None:
    """Analyze > Summarize appends Mean, SD, Min and Max rows: read as 5 dots for 3 clicks, then as 5 images."""
    from cellcount.groundtruth import read_points_csv
    from cellcount.groundtruth.tables import read_points_by_image

    rows = "1,A01.png:1,12,15\n2,A01.png:2,40,33\n3,A01.png:3,71,90\n4,Mean,41,46\n5,SD,29,39\n6,Min,12,15\n7,Max,71,90\n"
    table = (" ,Label,X,Y\n" + rows).encode()
    assert read_points_csv(table).count == 3
    assert {k: v.count for k, v in read_points_by_image(table).items()} == {"A01": 3}
    unlabelled = " ,Label,X,Y\n1,,12,15\n2,,40,33\n3,,71,90\n4,Mean,41,46\n5,SD,29,39\n"
    assert read_points_csv(unlabelled.encode()).count == 3


def test_imagej_tables_read_alike_whichever_centre_columns_were_ticked() -> None:
    """A dot at pixel column 21 (ImageJ: X = XM = 21 for a clicked point; 21.5 for an object's centroid there) read
    at 21.5 as X,Y but 21 as XM,YM, whichever columns Set Measurements had ticked."""
    from cellcount.groundtruth import read_points_csv

    clicked = [b" ,X,Y\n1,21,10\n", b" ,XM,YM\n1,21,10\n", b" ,X,Y,XM,YM\n1,21,10,21,10\n"]
    centroid = [b" ,Area,X,Y\n1,1,21.5,10.5\n", b" ,Area,XM,YM\n1,1,21.5,10.5\n",
                b" ,Area,X,Y,XM,YM\n1,1,21.5,10.5,21.5,10.5\n"]
    for table in clicked + centroid:
        np.testing.assert_array_equal(read_points_csv(table).points, [[10.0, 21.0]], err_msg=table.decode())
    # plain x,y tables (ours, CellProfiler's) name pixels by index, fractions too
    np.testing.assert_array_equal(read_points_csv(b"x,y,label\n21.5,10.5,alive\n").points, [[10.5, 21.5]])


def test_imagej_is_known_by_its_capitalised_columns_not_by_an_unnamed_first_one() -> None:
    """A reviewer's cases: pandas' to_csv of regionprops centroids (``,x,y``: an unnamed index) was read as ImageJ's and
    moved half a pixel; ImageJ's ``Label,X,Y`` of two titles without extensions was read as one image's dots."""
    from cellcount.groundtruth import read_points_csv

    np.testing.assert_array_equal(read_points_csv(b",x,y\n0,10.5,20.5\n1,40.25,50.75\n").points,
                                  [[20.5, 10.5], [50.75, 40.25]])
    with pytest.raises(GroundTruthError, match=r"the points of 2 images \('label' column: s03-1, s03-2\)"):
        read_points_csv(b"Label,X,Y\ns03-1,10,12\ns03-2,30,40\n")
    np.testing.assert_array_equal(read_points_csv(b"Label,Area,X,Y\ns03-1,3,10.5,12.5\n").points, [[12.0, 10.0]])
    # one table read alike alone and split beside its images (a Label column over lower-case x,y moved it alone)
    from cellcount.groundtruth.tables import read_points_by_image

    table = b"Label,x,y\nimg01.png,10.5,20.5\nimg01.png,30.25,40.75\n"
    np.testing.assert_array_equal(read_points_csv(table).points, read_points_by_image(table)["img01"].points)


def test_a_folder_says_why_its_spreadsheets_txt_exports_and_misnamed_markers_are_not_read(tmp_path, caplog):
    """evaluate on a folder whose ground truth is counts.xlsx, counts.txt (Excel's 'Unicode Text') or Cell Counter
    markers under a name of the user's said only 'none of the 2 image(s) has ground truth' (a tester)."""
    for name in ("a.png", "b.png"):
        _save_png(tmp_path / name, np.zeros((64, 64), np.uint8))
    (tmp_path / "counts.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / "counts.txt").write_bytes("filename\tcount\r\na.png\t3\r\n".encode("utf-16"))
    (tmp_path / "a_zaehlung.xml").write_text(CELL_COUNTER_XML)
    (tmp_path / "scope.xml").write_text("<Data/>")  # a microscope's metadata: nothing to say
    (tmp_path / "README.txt").write_text("Images of Monday.\nTaken with the 20x objective, by Anna.\n")  # no table
    with pytest.raises(GroundTruthError) as err:
        load_labelled_folder(tmp_path)
    said = str(err.value)
    assert "counts.xlsx: a spreadsheet is not read: save its table as CSV" in said
    assert "counts.txt: a .txt file is not read" in said and "rename it counts.tsv" in said
    assert "a_zaehlung.xml: it holds Fiji Cell Counter markers" in said and "scope.xml" not in said
    assert "README.txt" not in said
    # with ground truth for one image, the other's left out: the unread files are said beside it
    (tmp_path / "CellCounter_a.xml").write_text(CELL_COUNTER_XML)
    with caplog.at_level("WARNING"):
        [(image, _)] = load_labelled_folder(tmp_path)
    assert image.name == "a.png"
    assert any("counts.xlsx: a spreadsheet is not read" in r.getMessage() for r in caplog.records)


def test_cellcounts_own_objects_tables_are_said_as_its_own(tmp_path):
    """An objects table cellcount wrote, split per image, was scored as ground truth without a word (MAE 0, F1 1);
    the whole table beside the images was refused as a counts table missing its columns, and in the app its advice
    (put it beside the images) could never work (a tester)."""
    import warnings

    from cellcount.groundtruth import PredictedLabelsWarning, read_points_csv

    header = "file,label,area_px,centroid_row,centroid_col,equivalent_diameter_px\n"
    one = (header + "a.png,1,30,5,6,6.1\na.png,2,30,15,16,6.1\n").encode()
    with pytest.warns(PredictedLabelsWarning, match="cellcount's own objects.*agreement with that count"):
        assert read_points_csv(one).count == 2
    both = (header + "a.png,1,30,5,6,6.1\nb.png,1,30,15,16,6.1\n").encode()
    with pytest.raises(GroundTruthError, match="own objects of several images.*not split by image"):
        read_points_csv(both)
    for name in ("a.png", "b.png"):
        _save_png(tmp_path / name, np.zeros((32, 32), np.uint8))
    (tmp_path / "objects.csv").write_bytes(both)
    with pytest.raises(GroundTruthError, match="objects.csv holds cellcount's own objects"):
        load_labelled_folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a hand-made table of the same points: no word
        assert read_points_csv(b"x,y\n6,5\n16,15\n").count == 2


def test_a_folder_whose_table_names_no_image_says_its_rows_before_the_error(tmp_path, caplog):
    """A cp850 table that Windows-1252 decodes names no image: the 'none has ground truth' error came alone, without
    the rows or the encoding advice (a reviewer)."""
    _save_png(tmp_path / "Z\u00e4hl_1.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "counts.csv").write_bytes("filename;count\r\nZ\u00e4hl_1.png;3\r\n".encode("cp850"))
    with caplog.at_level("WARNING"), pytest.raises(GroundTruthError, match="none of the 1 image"):
        load_labelled_folder(tmp_path)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "1 row of" in said and "match" in said and "'CSV UTF-8'" in said, said
