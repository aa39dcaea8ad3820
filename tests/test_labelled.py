"""Tests of cellcount.labelled: pairing uploaded images with ground truth by name, in memory."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from cellcount.io import labels_to_tiff_bytes
from cellcount.labelled import labelled_set, pair_by_stem
from cellcount.synthetic import make_synthetic


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def samples():
    """Three synthetic images with exact labels: (image PNG, labels TIFF, count)."""
    out = []
    for seed, n in ((1, 12), (2, 20), (3, 7)):
        s = make_synthetic((96, 128), rng=seed, n_cells=n, radius_px=(4.0, 7.0))
        out.append((_png(s.image), labels_to_tiff_bytes(s.labels), s.count, s))
    return out


# --------------------------------------------------------------------------------------------------
# pair_by_stem: names only
# --------------------------------------------------------------------------------------------------
def test_same_stems_pair_across_lists():
    pairs, unmatched, unused = pair_by_stem(["a.png", "b.tif"], ["b.tif", "a.png"])
    assert pairs == {"a.png": "a.png", "b.tif": "b.tif"}
    assert unmatched == [] and unused == []


def test_suffixes_and_preference_order():
    pairs, unmatched, unused = pair_by_stem(
        ["a.png", "b.png", "c.png", "D.png"],
        ["a_mask.png", "a_labels.tif", "b_points.csv", "c_dots.png", "d_Labels.TIF"],
    )
    assert pairs == {"a.png": "a_labels.tif", "b.png": "b_points.csv", "c.png": "c_dots.png",
                     "D.png": "d_Labels.TIF"}  # labels before masks; case-insensitive as a fallback
    assert unmatched == [] and unused == ["a_mask.png"]


def test_cellpose_masks_pair_with_their_images():
    """Cellpose saves <stem>_cp_masks.png: read as "_masks" the stem was <stem>_cp, and every file matched no image
    (a tester)."""
    pairs, unmatched, unused = pair_by_stem(["DAPI_s01.tif", "DAPI_s02.tif"],
                                            ["DAPI_s01_cp_masks.png", "DAPI_s02_cp_masks.png"])
    assert pairs == {"DAPI_s01.tif": "DAPI_s01_cp_masks.png", "DAPI_s02.tif": "DAPI_s02_cp_masks.png"}
    assert unmatched == [] and unused == []


def test_a_table_of_several_images_points_says_to_split_it(samples):
    """CellProfiler's one objects table for a whole experiment, in the ground-truth box: the reason is the points'
    (split it per image), not that a counts table needs 'filename' and 'count' columns (a tester)."""
    img = samples[0][0]
    table = b"ImageNumber,ObjectNumber,Location_Center_X,Location_Center_Y\n1,1,10,20\n2,1,30,5\n"
    out = labelled_set([("a.png", img)], [("MyExpt_Nuclei.csv", table)])
    assert [n for n, _ in out.skipped] == ["MyExpt_Nuclei.csv"]
    assert "the points of 2 images" in out.skipped[0][1] and "one table per image" in out.skipped[0][1]
    junk = labelled_set([("a.png", img)], [("notes.csv", b"a,b\n1,2\n")])
    assert "expected columns 'filename'" in junk.skipped[0][1], "neither kind: what a counts table needs"


def test_fiji_cell_counter_files_pair_by_the_name_cell_counter_gives_them(samples):
    from test_groundtruth import CELL_COUNTER_XML

    img = samples[0][0]
    out = labelled_set([("a.png", img)], [("CellCounter_a.xml", CELL_COUNTER_XML.encode())])
    assert [(n, gt.kind, gt.count) for n, _, gt in out.items] == [("a.png", "points", 3)]
    zipped = labelled_set([("all.zip", _zip({"a.png": img, "CellCounter_a.xml": CELL_COUNTER_XML.encode()}))])
    assert [(n, gt.count) for n, _, gt in zipped.items] == [("a.png", 3)], "in one zip with its image too"


def test_metadata_xml_in_uploads_is_not_ground_truth(samples):
    img = samples[0][0]
    zipped = labelled_set([("all.zip", _zip({"a.png": img, "counts.csv": b"filename,count\na.png,3\n",
                                             "MetaData/a.xml": b"<Data/>"}))])
    assert [(n, gt.count) for n, _, gt in zipped.items] == [("a.png", 3)] and not zipped.skipped
    loose = labelled_set([("a.png", img)], [("a.xml", b"<Data/>"), ("counts.csv", b"filename,count\na.png,3\n")])
    assert [(n, gt.count) for n, _, gt in loose.items] == [("a.png", 3)]
    assert loose.skipped and "CellCounter_<image>.xml" in loose.skipped[0][1]


def test_tab_separated_tables_in_uploads(samples):
    img = samples[0][0]
    out = labelled_set([("a.png", img)], [("a_points.tsv", b"Centroid X px\tCentroid Y px\n3\t4\n")])
    assert [(n, gt.kind, gt.count) for n, _, gt in out.items] == [("a.png", "points", 1)]


def test_geojson_outlines_in_uploads(samples):
    import json

    img, _, _, _ = samples[0]
    h, w = np.asarray(Image.open(io.BytesIO(img))).shape[:2]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[2, 2], [8, 2], [8, 8], [2, 8], [2, 2]]]}}]}
    out = labelled_set([("a.png", img)], [("a.geojson", json.dumps(fc).encode())])
    [(name, _, gt)] = out.items
    assert name == "a.png" and gt.kind == "labels" and gt.count == 1 and gt.labels.shape == (h, w)
    scripted = labelled_set([("a.png", img)], [("a.png.geojson", json.dumps(fc).encode())])  # getImageName() + ext
    assert [n for n, _, _ in scripted.items] == ["a.png"] and not scripted.unused


def test_unmatched_files_are_reported_in_order():
    pairs, unmatched, unused = pair_by_stem(["x.png", "a.png", "y.png"], ["a_labels.tif", "z_labels.tif", "q.png"])
    assert pairs == {"a.png": "a_labels.tif"}
    assert unmatched == ["x.png", "y.png"] and unused == ["z_labels.tif", "q.png"]


def test_folders_decide_between_same_stems():
    pairs, _, unused = pair_by_stem(
        ["p1/images/a.png", "p2/images/a.png"], ["p2/labels/a.png", "p1/labels/a.png"]
    )
    assert pairs == {"p1/images/a.png": "p1/labels/a.png", "p2/images/a.png": "p2/labels/a.png"}
    assert unused == []


# --------------------------------------------------------------------------------------------------
# labelled_set: bytes in, GroundTruth out
# --------------------------------------------------------------------------------------------------
def test_same_name_labels_through_a_second_list(samples):
    images = [(f"img{k}.png", img) for k, (img, _, _, _) in enumerate(samples)]
    labels = [(f"img{k}.png", _png(s.labels.astype(np.uint16))) for k, (_, _, _, s) in enumerate(samples)]
    out = labelled_set(images, labels)
    assert [(n, gt.kind, gt.count) for n, _, gt in out.items] == [
        (f"img{k}.png", "labels", c) for k, (_, _, c, _) in enumerate(samples)
    ]
    assert out.items[0][1] == samples[0][0]  # the image's own bytes
    assert np.array_equal(out.items[1][2].labels, samples[1][3].labels)
    assert not (out.unlabelled or out.unused or out.skipped or out.duplicates)


def test_a_counts_table_beside_label_images_is_said_to_be_set_aside(samples):
    """A counts CSV uploaded with label images was silently ignored, even where its counts disagreed."""
    images = [(f"img{k}.png", img) for k, (img, _, _, _) in enumerate(samples)]
    labels = [(f"img{k}.png", _png(s.labels.astype(np.uint16))) for k, (_, _, _, s) in enumerate(samples)]
    table = "filename,count\n" + "".join(f"img{k}.png,{c + (k == 1)}\n" for k, (_, _, c, _) in enumerate(samples))
    out = labelled_set(images, [*labels, ("counts.csv", table.encode())])
    assert [gt.kind for _, _, gt in out.items] == ["labels"] * 3, "label images win"
    assert any(n.startswith("counts.csv: 3 image(s) it lists have label images") for n in out.notes)
    assert any("disagree for 1 image(s): img1.png" in n for n in out.notes)
    assert not labelled_set(images, labels).notes


def test_duplicates_are_counted_once_with_a_note(samples):
    img, lab, count, _ = samples[0]
    twice = [("a.png", img), ("a.png", img), ("a.png", img)]
    out = labelled_set(twice, [("a_labels.tif", lab), ("a_labels.tif", lab)])
    assert [(n, gt.count) for n, _, gt in out.items] == [("a.png", count)]
    assert out.duplicates == ["a.png", "a.png", "a_labels.tif"]
    # a zip uploaded twice: its members once each
    zipped = _zip({"a.png": img, "a_labels.tif": lab})
    again = labelled_set([("set.zip", zipped), ("set.zip", zipped)])
    assert len(again.items) == 1 and again.duplicates == ["a.png", "a_labels.tif"]
    # the same image again under another path (a zip's images/a.png beside a loose a.png): one image, so a
    # fine-tune cannot train on one copy and hold out the other
    both = labelled_set([("set.zip", _zip({"images/a.png": img, "labels/a.png": lab})), ("a.png", img),
                         ("b.png", samples[1][0])], [("a_labels.tif", lab), ("b_labels.tif", samples[1][1])])
    assert sorted(n for n, _, _ in both.items) == ["b.png", "images/a.png"]
    assert both.duplicates == ["a.png (the same image as images/a.png)"]
    # of two copies the one with the richer annotation is kept (dots over a count), and the other's is named
    table = b"filename,count\na.png,5\n"
    richer = labelled_set([("a.png", img), ("counts.csv", table), ("copy.png", img)], [("copy_labels.tif", lab)])
    assert [(n, gt.kind) for n, _, gt in richer.items] == [("copy.png", "labels")]
    assert richer.duplicates == [f"a.png (the same image as copy.png; its annotation (count, 5 objects) is not used: "
                                 f"copy.png's (labels, {count}) is)"]
    # a later, different file under a name already taken is the corrected one: it replaces the earlier, said (a
    # tester's corrected img05.csv of 20 points was set aside while the old one, of 24, trained)
    old, corrected = b"x,y\n10,10\n20,20\n30,30\n", b"x,y\n10,10\n20,20\n"
    fixed = labelled_set([("a.png", img)], [("a.csv", old), ("a.csv", corrected)])
    assert [(n, gt.count) for n, _, gt in fixed.items] == [("a.png", 2)] and not fixed.skipped
    assert "a.csv: uploaded again with other contents; the later upload is used" in fixed.notes
    # two different images under one name (two plates' loose files) cannot be told apart: both refused (the first
    # was kept and scored against the labels uploaded for the other, under a note that it was not used)
    clash = labelled_set([("a.png", img), ("a.png", samples[1][0])], [("a.png", lab)])
    assert not clash.items and clash.skipped == [("a.png", clash.skipped[0][1])], clash.skipped
    assert "2 different files with this name" in clash.skipped[0][1]
    # their annotation is named as unused for that reason, not as matching no image (a tester)
    assert not clash.unused and "a.png: not used, as the images named like it were refused" in " ".join(clash.notes)


def test_one_ground_truth_file_two_images_could_claim_serves_neither(samples):
    """Two plates' images in a zip and one labels/A01.tif: the first plate took it in silence (a facility tester);
    in the CLI both plates were scored against it."""
    img, lab, _, _ = samples[0]
    other = samples[1][0]
    tied = labelled_set([("set.zip", _zip({"plate1/A01.png": img, "plate2/A01.png": other, "labels/A01.tif": lab}))])
    assert not tied.items
    reasons = dict(tied.skipped)
    assert set(reasons) == {"plate1/A01.png", "plate2/A01.png"}, tied.skipped
    assert "labels/A01.tif could be the ground truth of this image or of plate2/A01.png" in reasons["plate1/A01.png"]
    assert not tied.unused, "said with its images, not also as matching no image"
    # closer to one of them (a mirrored labels tree): that one takes it, the other has none
    near = labelled_set([("set.zip", _zip({"images/plate1/A01.png": img, "images/plate2/A01.png": other,
                                            "labels/plate1/A01.tif": lab}))])
    assert [n for n, _, _ in near.items] == ["images/plate1/A01.png"]
    assert [n for n, _ in near.unlabelled] == ["images/plate2/A01.png"]


def test_a_folder_with_one_labels_file_for_two_plates_pairs_neither(tmp_path, samples):
    from cellcount.errors import GroundTruthError
    from cellcount.groundtruth import load_labelled_folder

    img, lab, _, _ = samples[0]
    for plate, data in (("plate1", img), ("plate2", samples[1][0])):
        (tmp_path / "images" / plate).mkdir(parents=True)
        (tmp_path / "images" / plate / "A01.png").write_bytes(data)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "A01.tif").write_bytes(lab)
    reported = {}
    with pytest.raises(GroundTruthError, match="no image with usable ground truth"):
        load_labelled_folder(tmp_path, on_error=lambda p, why: reported.setdefault(p.parent.name, why))
    assert set(reported) == {"plate1", "plate2"}
    assert "labels/A01.tif could be the ground truth of this image or of plate2/A01.png" in reported["plate1"]
    with pytest.raises(GroundTruthError) as refused:  # each named by its path in the folder, not A01.png twice
        load_labelled_folder(tmp_path, on_error=lambda p, why: None)
    assert "images/plate1/A01.png: " in str(refused.value) and "images/plate2/A01.png: " in str(refused.value)
    (tmp_path / "labels" / "plate2").mkdir()
    (tmp_path / "labels" / "A01.tif").rename(tmp_path / "labels" / "plate2" / "A01.tif")
    pairs = load_labelled_folder(tmp_path, on_error=lambda p, why: None)
    assert [p.parent.name for p, _ in pairs] == ["plate2"]


def test_unmatched_and_unreadable_files_name_the_users_file(samples):
    img, lab, _, _ = samples[0]
    wrong_shape = labels_to_tiff_bytes(np.ones((10, 10), np.int32))
    out = labelled_set(
        [("a.png", img), ("b.png", samples[1][0]), ("c.png", samples[2][0]), ("broken.png", b"not a png")],
        [("a_labels.tif", lab), ("b.tif", wrong_shape), ("zz_labels.tif", lab), ("broken.png", lab),
         ("zz_points.csv", b"x,y\n1,2\n")],
    )
    assert [n for n, _, _ in out.items] == ["a.png"]
    assert [n for n, _ in out.unlabelled] == ["c.png"]
    assert out.unused == ["zz_labels.tif", "zz_points.csv"]
    reasons = dict(out.skipped)
    assert set(reasons) == {"b.png", "broken.png"}
    assert reasons["b.png"].startswith("b.tif:") and "does not match" in reasons["b.png"]
    assert "broken.png" in reasons["broken.png"]
    assert not any("/tmp" in r or "<bytes>" in r for r in reasons.values())


def test_points_csvs_dot_images_and_counts_tables(samples):
    (img0, _, c0, s0), (img1, _, c1, s1), (img2, _, c2, _) = samples
    xy = "X,Y\n" + "".join(f"{c:.1f},{r:.1f}\n" for r, c in s0.centroids)  # ImageJ's columns
    dots = np.zeros(s1.labels.shape, np.uint8)
    rc = np.round(s1.centroids).astype(int)
    dots[rc[:, 0], rc[:, 1]] = 255
    n_dots = len({tuple(p) for p in rc})
    counts = b"\xef\xbb\xbffilename,count\r\nc.png,7\r\n"  # UTF-8 with BOM, Windows line ends
    out = labelled_set(
        [("a.png", img0), ("b.png", img1), ("c.png", img2)],
        [("a.csv", xy.encode()), ("b.png", _png(dots)), ("counts.csv", counts)],
    )
    got = {n: (gt.kind, gt.count) for n, _, gt in out.items}
    # a same-name image of one-pixel dots is read as dots, not as a mask of tiny nuclei
    assert got == {"a.png": ("points", c0), "b.png": ("points", n_dots), "c.png": ("count", 7)}
    assert np.allclose(out.items[0][2].points, s0.centroids, atol=0.06)
    in_folder = labelled_set([("b.png", img1)], [("dots.zip", _zip({"dots/b.png": _png(dots)}))])
    assert in_folder.items[0][2].kind == "points"
    vgg = labelled_set([("001cell.png", img1), ("002cell.png", img1)], [("001dots.png", _png(dots))])
    assert [(n, gt.kind) for n, _, gt in vgg.items] == [("001cell.png", "points")], "the VGG cells naming"
    one_box = labelled_set([("001cell.png", img1), ("001dots.png", _png(dots)), ("002cell.png", img1)])
    assert [(n, gt.kind) for n, _, gt in one_box.items] == [("001cell.png", "points")], "both in one uploader"


def test_one_zip_with_images_and_labels_folders(samples):
    members = {"set/images/a.png": samples[0][0], "set/labels/a.png": samples[0][1],
               "set/images/b.png": samples[1][0], "set/masks/b.tif": samples[1][1], "set/notes.txt": b"x"}
    out = labelled_set([("set.zip", _zip(members))])
    assert [(n, gt.count) for n, _, gt in out.items] == [("images/a.png", samples[0][2]),
                                                         ("images/b.png", samples[1][2])]
    assert [n for n, _ in out.skipped] == ["set.zip/set/notes.txt"]


def test_two_zips_with_same_name_labels(samples):
    images = _zip({f"images/{k}.png": img for k, (img, _, _, _) in enumerate(samples)})
    labels = _zip({f"labels/{k}.tif": lab for k, (_, lab, _, _) in enumerate(samples)})
    out = labelled_set([("images.zip", images)], [("labels.zip", labels)])
    assert [(n, gt.count) for n, _, gt in out.items] == [(f"{k}.png", c) for k, (_, _, c, _) in enumerate(samples)]


def test_one_zip_of_images_and_labels_in_both_boxes(samples):
    """A tester dropped the same zip into the images box and the ground-truth box: each image was paired with
    its own copy as "labels" (81,399 objects on an RGB image, MAE 20,112) and the real labels were unused."""
    both = _zip({**{f"lab/images/{k}.png": img for k, (img, _, _, _) in enumerate(samples)},
                 **{f"lab/labels/{k}.png": lab for k, (_, lab, _, _) in enumerate(samples)}})
    out = labelled_set([("lab.zip", both)], [("lab.zip", both)])
    assert [(n, gt.kind, gt.count) for n, _, gt in out.items] == [
        (f"images/{k}.png", "labels", c) for k, (_, _, c, _) in enumerate(samples)]
    assert not out.unused and sorted(out.duplicates) == [
        f"images/{k}.png (the same file as the image images/{k}.png: not used as ground truth)" for k in range(3)]


def test_an_image_is_never_its_own_ground_truth(samples):
    out = labelled_set([("a.png", samples[0][0]), ("b.png", samples[1][0])],
                       [("a.png", samples[0][0]), ("b.png", samples[1][1])])
    assert [n for n, _, _ in out.items] == ["b.png"] and [n for n, _ in out.unlabelled] == ["a.png"]
    assert out.duplicates == ["a.png (the same file as the image a.png: not used as ground truth)"]
    # a zip with its images at the top and labels/ beside them, in both boxes: the labels are used
    both = _zip({"a.png": samples[0][0], "b.png": samples[1][0], "labels/a.tif": samples[0][1],
                 "labels/b.tif": samples[1][1]})
    out = labelled_set([("set.zip", both)], [("set.zip", both)])
    assert [(n, gt.count) for n, _, gt in out.items] == [("a.png", samples[0][2]), ("b.png", samples[1][2])]


def test_an_annotations_folder_holds_ground_truth(samples):
    """A tester's zip of images/ + annotations/ read the annotations as 12 more images: nothing to evaluate."""
    both = _zip({**{f"set/images/{k}.png": samples[k][0] for k in range(3)},
                 **{f"set/annotations/{k}.png": samples[k][1] for k in range(3)}})
    for out in (labelled_set([("set.zip", both)]), labelled_set([("set.zip", both)], [("set.zip", both)])):
        assert [(n, gt.count) for n, _, gt in out.items] == [(f"images/{k}.png", samples[k][2]) for k in range(3)]
        assert not out.unlabelled


def test_a_second_annotation_of_an_image_is_said_to_be_unused_not_unmatched(samples):
    """labels/ and masks/ with the same images' annotations: the copies were said to "match no image"."""
    members = {**{f"images/{k}.png": samples[k][0] for k in range(2)},
               **{f"labels/{k}.png": samples[k][1] for k in range(2)},
               **{f"masks/{k}.png": samples[k][1] for k in range(2)}}
    out = labelled_set([("set.zip", _zip(members))])
    assert [(n, gt.count) for n, _, gt in out.items] == [(f"images/{k}.png", samples[k][2]) for k in range(2)]
    assert not out.unused
    assert any("2 ground-truth file(s) are second annotations" in n and "masks/0.png" in n for n in out.notes)


def test_a_broken_annotation_names_the_readable_one_uploaded_beside_it(samples):
    """A truncated a_labels.tif refused its image, and the readable a_points.csv beside it was then said to "match no
    image" (sending the user renaming a file named right): the image's reason names it instead."""
    out = labelled_set([("a.png", samples[0][0]), ("b.png", samples[1][0])],
                       [("a_labels.tif", samples[0][1][:-40]), ("a_points.csv", b"x,y\n1,1\n2,2\n"),
                        ("b_labels.tif", samples[1][1])])
    assert [n for n, _, _ in out.items] == ["b.png"] and [n for n, _ in out.truth_refused] == ["a.png"]
    (name, why), = out.skipped
    assert name == "a.png" and why.endswith("; a_points.csv beside it, another annotation of this image, is not used in "
                                            "its place (which one is right is yours to say): fix or remove the broken file")
    assert not out.unused


def test_two_uploaded_annotations_of_one_image_that_disagree_are_refused_naming_both(samples):
    """A stale a_points.csv (2 dots) beside a.csv (5) was used by the suffix order, the other said only to be a
    second annotation; the image is now refused naming both, and may be dotted anew (truth_refused). Files that
    agree are used as before: the nearest and first by suffix."""
    img = samples[0][0]
    out = labelled_set([("a.png", img)], [("a_points.csv", b"x,y\n1,1\n2,2\n"),
                                          ("a.csv", b"x,y\n1,1\n2,2\n3,3\n4,4\n5,5\n")])
    assert not out.items and [n for n, _ in out.truth_refused] == ["a.png"]
    assert out.skipped == [("a.png", "a.png: two annotations that disagree: a_points.csv (2 objects) and a.csv (5): "
                                     "keep the right one and upload it alone")]
    assert not any("second annotations" in n for n in out.notes), "the clash is said once, as a refusal"
    assert out.unused == [], "not also a file that matches no image (the Train page said both of a.csv)"
    agree = labelled_set([("a.png", img)], [("a_points.csv", b"x,y\n1,1\n2,2\n"), ("a.csv", b"x,y\n3,3\n4,4\n")])
    assert [(n, gt.count) for n, _, gt in agree.items] == [("a.png", 2)] and not agree.skipped
    # the VGG cells naming: 010dots.png is 010cell.png's, beside its 010cell.csv (said to match no image before)
    dots = np.zeros(samples[0][3].labels.shape, np.uint8)
    dots[10, 10:60:10] = 255  # 5 dots
    vgg = labelled_set([("010cell.png", img)], [("010cell.csv", b"x,y\n1,1\n2,2\n"), ("010dots.png", _png(dots))])
    assert not vgg.items and vgg.skipped[0][1].startswith("010cell.png: two annotations that disagree: 010cell.csv (2 "
                                                          "objects) and 010dots.png (5)") and not vgg.unused


def test_ground_truth_in_folders_of_any_name_beside_a_labels_folder_stays_ground_truth(samples):
    """A reviewer's case for a rule since dropped: one file in labels/ made every image in annotations/ an image."""
    gt = _zip({"masks/0.png": samples[0][1], "annotations/1.png": samples[1][1], "annotations/2.png": samples[2][1]})
    out = labelled_set([(f"{k}.png", samples[k][0]) for k in range(3)], [("gt.zip", gt)])
    assert [(n, gt.count) for n, _, gt in out.items] == [(f"{k}.png", samples[k][2]) for k in range(3)]


def test_dsb_nested_layout_in_a_zip(samples):
    _, _, count, s = samples[0]
    members = {"abc/images/abc.png": samples[0][0]}
    for k in range(1, count + 1):
        members[f"abc/masks/m{k:03d}.png"] = _png(((s.labels == k) * 255).astype(np.uint8))
    out = labelled_set([("one.zip", _zip(members))])
    assert [(n, gt.kind, gt.count) for n, _, gt in out.items] == [("abc/images/abc.png", "labels", count)]


def test_images_come_in_file_name_order_whatever_the_upload_order(samples):
    """The app's per-image table and its bootstrap interval (which resamples by position) were those of the
    zip's member order: another interval than the command line's for the same images."""
    members = {f"images/{k}.png": samples[k][0] for k in (2, 0, 1)}
    members.update({f"labels/{k}.png": samples[k][1] for k in (1, 2, 0)})
    out = labelled_set([("set.zip", _zip(members))])
    assert [n for n, _, _ in out.items] == ["images/0.png", "images/1.png", "images/2.png"]
    loose = labelled_set([(f"{k}.png", samples[k][0]) for k in (1, 2, 0)],
                         [(f"{k}.png", samples[k][1]) for k in (2, 1, 0)])
    assert [n for n, _, _ in loose.items] == ["0.png", "1.png", "2.png"]
    nested = labelled_set([("set.zip", _zip({"plate2/images/a.png": samples[0][0], "plate1/images/b.png": samples[1][0],
                                              "plate2/labels/a.png": samples[0][1], "plate1/labels/b.png": samples[1][1]}))])
    assert [n for n, _, _ in nested.items] == ["plate1/images/b.png", "plate2/images/a.png"]  # as a folder's paths


def test_a_same_name_ground_truth_error_names_the_file_once(samples):
    wrong_shape = labels_to_tiff_bytes(np.ones((10, 10), np.int32))
    out = labelled_set([("a.tif", samples[0][0])], [("a.tif", wrong_shape)])
    (name, reason), = out.skipped
    assert name == "a.tif" and reason.startswith("its ground-truth file of the same name: ") and "a.tif" not in reason


def test_rows_of_a_counts_table_that_name_no_uploaded_image_are_said(samples):
    """A tester's 'other_image;12' row was left out without a word (a typo in a name would pass unseen)."""
    (img0, _, _, _), (img1, _, _, _) = samples[:2]
    table = "\ufeffImage;Cells\r\na;12\r\nb.png;7\r\nOther_Image;12\r\n".encode()
    out = labelled_set([("a.png", img0), ("b.png", img1)], [("counts_partial.csv", table)])
    assert {n: gt.count for n, _, gt in out.items} == {"a.png": 12, "b.png": 7}
    assert [n for n in out.notes if "counts_partial.csv" in n] == [
        "1 row of counts_partial.csv matches no uploaded image (Other_Image): its count is not used."]
    every = labelled_set([("a.png", img0)], [("c.csv", b"filename,count\na.png,3\n")])
    assert not any("matches no uploaded image" in n or "match no uploaded image" in n for n in every.notes)


def test_two_counts_tables_that_disagree_on_an_image_leave_it_out_saying_why(samples):
    """Two tables with different counts for one image: the first uploaded won, silently (10 or 99 by upload
    order). Tables that agree, or list other images, still count."""
    img0, img1 = samples[0][0], samples[1][0]
    a = b"filename,count\na.png,10\nb.png,4\n"
    b = b"filename,count\na.png,99\nb.png,4\n"
    out = labelled_set([("a.png", img0), ("b.png", img1)], [("countsA.csv", a), ("countsB.csv", b)])
    assert [(n, gt.count) for n, _, gt in out.items] == [("b.png", 4)]
    assert out.skipped == [("a.png", "the counts tables disagree: 10 (countsA.csv) and 99 (countsB.csv); "
                                     "remove the wrong row or table")]


def test_imagej_roi_sets_in_uploads_stay_whole(samples):
    from test_groundtruth import _imagej_roi, _roi_set

    img = samples[0][0]
    rect, clicks = _imagej_roi(1, 2, 2, 8, 10), _imagej_roi(10, 3, 4, 9, 11, xs=(4, 10), ys=(3, 8))
    roi_set = _roi_set({"0001.roi": rect, "0002.roi": _imagej_roi(2, 20, 20, 30, 30)})
    # two uploaders: the ROI Manager's set under the image's own name
    out = labelled_set([("a.png", img)], [("a.zip", roi_set)])
    assert [(n, gt.kind, gt.count) for n, _, gt in out.items] == [("a.png", "labels", 2)] and not out.skipped
    # one uploader, named by convention
    out = labelled_set([("a.png", img), ("a_RoiSet.zip", roi_set), ("b.png", img[:-1] + b"\x00"), ("b.roi", clicks)])
    got = {n: (gt.kind, gt.count) for n, _, gt in out.items}
    assert got.get("a.png") == ("labels", 2)
    # a zip of folders with ROI files and a set inside; another zip inside is said, not read
    bundle = _zip({"set/images/a.png": img, "set/rois/a.roi": clicks, "set/labels/c.zip": _zip({"x.png": img}),
                   "set/images/d.png": samples[1][0], "set/labels/d.zip": roi_set})
    out = labelled_set([("set.zip", bundle)])
    assert {n: (gt.kind, gt.count) for n, _, gt in out.items} == {"images/a.png": ("points", 2),
                                                                    "images/d.png": ("labels", 2)}
    assert any("zip inside the zip" in why for _, why in out.skipped)
    # one zip of per-image ROI files, named after the images: opened into them
    bundle = labelled_set([("a.png", img), ("d.tif", samples[1][0])],
                          [("annotations.zip", _zip({"a.roi": clicks, "d.tif.roi": rect}))])
    assert {n: (gt.kind, gt.count) for n, _, gt in bundle.items} == {"a.png": ("points", 2), "d.tif": ("labels", 1)}
    unnamed = labelled_set([("a.png", img)], [("RoiSet.zip", roi_set)])
    assert not unnamed.items and any("rename it after its image" in note for note in unnamed.notes)


def _cellcount_counts_csv(rows: dict[str, int]) -> bytes:
    """A counts table as ``cellcount count`` and the Batch page write it (their own columns)."""
    from cellcount.batch import COUNT_COLUMNS

    header = ",".join(COUNT_COLUMNS)
    lines = [",".join({"file": f, "model": "unet-mask-varied", "count": str(n), "count_estimate": str(n),
                       "status": "ok", "check": "False", "check_score": "0.5"}.get(c, "") for c in COUNT_COLUMNS)
             for f, n in rows.items()]
    return "\n".join([header, *lines, ""]).encode()


def test_a_counts_table_cellcount_wrote_is_not_taken_as_ground_truth(samples):
    """A model's own counts uploaded as ground truth scored it against itself: errors of 0, silently."""
    (img, labels, _, _), (img2, _, _, _) = samples[0], samples[1]
    table = _cellcount_counts_csv({"a.png": 12, "b.png": 20})
    out = labelled_set([("a.png", img), ("b.png", img2)], [("a_labels.tif", labels), ("counts.csv", table)])
    assert [name for name, _, _ in out.items] == ["a.png"] and [n for n, _ in out.unlabelled] == ["b.png"]
    assert any(name == "counts.csv" and "cellcount's own counts" in why and "not ground truth" in why
               for name, why in out.skipped)


def test_points_listed_twice_are_said_among_the_notes(samples):
    """The duplicate-points warning went to a log only: on the pages the true count changed without a word."""
    img = samples[0][0]
    out = labelled_set([("a.png", img)], [("a_points.csv", b"x,y\n10,12\n30,40\n10,12\n")])
    assert out.items[0][2].count == 2
    assert any("a_points.csv: 1 of its 3 points repeat another point exactly" in n for n in out.notes)


def test_cellpose_seg_npy_is_said_to_be_unread_with_what_to_save_instead(tmp_path, samples):
    """Cellpose's _seg.npy: the app said only "files are not allowed", the CLI "none has ground truth"."""
    from cellcount.errors import GroundTruthError
    from cellcount.groundtruth import load_labelled_folder

    img = samples[0][0]
    out = labelled_set([("a.png", img)], [("a_seg.npy", b"\x93NUMPY")])
    assert dict(out.skipped)["a_seg.npy"].startswith("Cellpose's _seg.npy is not read")
    assert "_cp_masks.png" in dict(out.skipped)["a_seg.npy"]
    (tmp_path / "a.png").write_bytes(img)
    (tmp_path / "a_seg.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(GroundTruthError, match=r"a_seg.npy: Cellpose's _seg.npy is not read .* _cp_masks.png"):
        load_labelled_folder(tmp_path)


def test_an_annotation_uploaded_again_in_one_list_is_the_corrected_one(samples):
    """One list of images and annotations: a points CSV uploaded again with other contents is a corrected
    annotation, as in the ground-truth box (both copies were refused as two plates' files: a reviewer)."""
    img = samples[0][0]
    old, corrected = b"x,y\n10,10\n20,20\n30,30\n", b"x,y\n10,10\n20,20\n"
    out = labelled_set([("a.png", img), ("a.csv", old), ("a.csv", corrected)])
    assert [(n, gt.count) for n, _, gt in out.items] == [("a.png", 2)] and not out.skipped
    assert "a.csv: uploaded again with other contents; the later upload is used" in out.notes


def test_labels_named_as_their_image_in_one_list_are_pointed_out(samples):
    """StarDist's nuc01.tif beside nuc01.png in one zip were taken for images without a word (the CLI says why)."""
    img, lab, _, _ = samples[0]
    out = labelled_set([("set.zip", _zip({"nuc01.png": img, "nuc01.tif": lab}))])
    assert not out.items
    assert any("1 pair(s) of images share a name (nuc01.png and nuc01.tif)" in n and "ground-truth box" in n
               for n in out.notes), out.notes


def test_two_plates_tables_or_labels_uploaded_in_one_list_are_no_corrections_of_each_other(samples):
    """An annotation uploaded again among the images is a corrected one only where it names one image uploaded
    once: two plates' counts.csv (their zips' folders stripped) replaced each other (a reviewer)."""
    img, lab, _, _ = samples[0]
    other = samples[1][0]
    out = labelled_set([("p1.zip", _zip({"plate1/A01.png": img, "plate1/counts.csv": b"filename,count\nA01.png,5\n"})),
                        ("p2.zip", _zip({"plate2/A01.png": other, "plate2/counts.csv": b"filename,count\nA01.png,7\n"}))])
    reasons = dict(out.skipped)
    assert "counts.csv" in reasons and "different files with this name" in reasons["counts.csv"], out.skipped
    assert not any("the later upload is used" in n for n in out.notes)


def test_a_file_two_plates_lie_as_close_to_serves_neither_even_when_one_has_its_own():
    """plate1 with its own labels and a top-level labels/A01.tif as close to both plates: plate2 took it in silence
    (a reviewer); a second tied file (masks/) was said to match no image."""
    amb, tied = {}, set()
    pairs, _, unused = pair_by_stem(["plate1/A01.png", "plate2/A01.png"], ["plate1/labels/A01.tif", "labels/A01.tif"],
                                    ambiguous=amb, tied_files=tied)
    assert pairs == {"plate1/A01.png": "plate1/labels/A01.tif"} and set(amb) == {"plate2/A01.png"}
    assert tied == {"labels/A01.tif"} and not unused
    amb, tied = {}, set()
    pairs, _, unused = pair_by_stem(["plate1/A01.png", "plate2/A01.png"], ["labels/A01.tif", "masks/A01.tif"],
                                    ambiguous=amb, tied_files=tied)
    assert not pairs and tied == {"labels/A01.tif", "masks/A01.tif"} and not unused
    # the same image's own file in its folder wins over the one above it (the app tied A01.png and sub/A01.png)
    pairs, _, _ = pair_by_stem(["A01.png", "sub/A01.png"], ["A01_labels.tif"])
    assert pairs == {"A01.png": "A01_labels.tif"}


def test_specks_in_an_uploaded_mask_are_said_on_the_page(samples):
    """The speck note reaches the upload's notes (the page shows them), not only a log."""
    img = samples[0][0]
    mask = np.zeros((96, 128), np.uint8)
    mask[10:20, 10:20] = mask[30:40, 30:40] = mask[10:20, 40:50] = 255
    mask[5, 60] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    out = labelled_set([("a.png", img)], [("a_mask.png", buf.getvalue())])
    assert [gt.count for _, _, gt in out.items] == [4]
    assert any("a_mask.png: 1 of the mask's 4 objects are specks" in n for n in out.notes), out.notes


def test_an_operating_systems_files_uploaded_with_a_folder_are_left_out_unsaid():
    """.DS_Store among Evaluate's uploads was listed as a file that "could not be used"."""
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20), 5, np.uint8)).save(buf, format="PNG")
    found = labelled_set([("a.png", buf.getvalue()), (".DS_Store", b"\x00\x00\x00\x01Bud1"), ("Thumbs.db", b"x")],
                         [("a.csv", b"x,y\n3,3\n"), (".DS_Store", b"Bud1"), ("desktop.ini", b"[.ShellClassInfo]")])
    assert [n for n, _, _ in found.items] == ["a.png"]
    assert not found.skipped and not found.unused and not found.unlabelled


def test_spreadsheets_txt_exports_and_misnamed_cell_counter_files_say_what_to_do(samples):
    """An .xlsx or Excel's 'Unicode Text' (.txt) in the ground-truth box met Streamlit's 'files are not allowed',
    in a zip 'not a supported file (extension .xlsx)'; Cell Counter markers under another name were passed over
    (a tester): each is said with what to do."""
    from test_groundtruth import CELL_COUNTER_XML

    img = samples[0][0]
    out = labelled_set([("a.png", img)], [("counts.xlsx", b"PK\x03\x04"), ("counts.txt", "filename\tcount\r\na.png\t3\r\n".encode("utf-16")),
                                          ("a_zaehlung.xml", CELL_COUNTER_XML.encode())])
    why = dict(out.skipped)
    assert "save its table as CSV" in why["counts.xlsx"] and "'CSV UTF-8'" in why["counts.xlsx"]
    assert "rename it counts.tsv" in why["counts.txt"]
    assert "Cell Counter markers" in why["a_zaehlung.xml"] and "CellCounter_<image>.xml" in why["a_zaehlung.xml"]
    zipped = labelled_set([("all.zip", _zip({"a.png": img, "counts.ods": b"PK\x03\x04"}))])
    assert "save its table as CSV" in dict(zipped.skipped)["all.zip/counts.ods"]


def test_rows_naming_no_image_with_accents_say_the_encoding_may_be_wrong(samples):
    img = samples[0][0]
    table = "filename,count\na.png,3\nMa\u00e1e1.png,4\n"  # cp850's Maße1 read as Windows-1252
    out = labelled_set([("a.png", img)], [("counts.csv", table.encode("cp1252"))])
    assert any("matches no uploaded image (Ma\u00e1e1)" in n and "'CSV UTF-8'" in n for n in out.notes), out.notes
    utf8 = labelled_set([("a.png", img)], [("counts.csv", table.encode())])
    assert not any("CSV UTF-8" in n for n in utf8.notes), "read as UTF-8: no encoding was guessed"
    plain = labelled_set([("a.png", img)], [("counts.csv", b"filename,count\na.png,3\nb.png,4\n")])
    assert not any("CSV UTF-8" in n for n in plain.notes), "a typo in a plain name: no word of encodings"


def test_the_batch_label_zips_own_index_is_no_bad_file(samples):
    """The Batch page's label zip holds labels_index.csv (file, labels_file): fed back to Evaluate it was reported as
    a file that 'could not be used', cellcount's own file blamed (a tester)."""
    img, labels, n, _ = samples[0]
    index = "file,labels_file\r\na.png,a_labels.tif\r\n".encode("utf-8-sig")
    out = labelled_set([("a.png", img)], [("labels.zip", _zip({"a_labels.tif": labels, "labels_index.csv": index}))])
    assert [(name, gt.count) for name, _, gt in out.items] == [("a.png", n)]
    assert not out.skipped and not out.unused, (out.skipped, out.unused)


def test_the_count_pages_objects_download_is_said_to_be_cellcounts_own(samples):
    """<stem>_objects.csv from the Count page 'matched no image' (its name is one); named like its image it was
    scored as ground truth without a word (a tester)."""
    import warnings

    img = samples[0][0]
    table = b"label,area_px,centroid_row,centroid_col,equivalent_diameter_px\n1,30,5,6,6.1\n2,30,15,16,6.1\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said on the page, nothing left to the log
        out = labelled_set([("a.png", img)], [("a_objects.csv", table)])
        named = labelled_set([("a.png", img)], [("a_points.csv", table)])
    assert not out.unused and "cellcount's own objects table" in dict(out.skipped)["a_objects.csv"]
    assert [(n, gt.count) for n, _, gt in named.items] == [("a.png", 2)]
    assert any("a table of cellcount's own objects" in n for n in named.notes), named.notes
