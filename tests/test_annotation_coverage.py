"""Ground truth of part of its image: the objects counted where the annotation has none, said before it misleads."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellcount.evaluate.annotation import MIN_OUTSIDE, MIN_SHARE, partial_annotation_note, unannotated_share


def test_the_share_counted_outside_the_annotated_squares():
    truth = np.array([[10.0, 10.0], [10.0, 40.0], [60.0, 10.0]])  # the left half of a 100 x 100 image
    counted = np.vstack([truth, [[10.0, 80.0], [60.0, 90.0], [90.0, 70.0]]])
    share, n = unannotated_share(counted, truth, (100, 100))
    assert (share, n) == (0.5, 3)
    assert unannotated_share(truth, truth, (100, 100)) == (0.0, 0)
    assert math.isnan(unannotated_share(counted, np.zeros((0, 2)), (100, 100))[0]), "an empty truth says nothing here"


def test_the_note_names_the_images_past_both_limits():
    table = pd.DataFrame({"file": ["a.png", "b.png", "c.png"], "unannotated_share": [0.5, MIN_SHARE, 0.6],
                          "unannotated": [20, MIN_OUTSIDE, MIN_OUTSIDE - 1]})
    note = partial_annotation_note(table)
    assert note.startswith("2 of the 3 image(s) have a quarter or more") and "a.png 50%, b.png 25%" in note
    assert partial_annotation_note(table.assign(unannotated_share=0.1)) is None
    assert partial_annotation_note(table.drop(columns=["unannotated_share"])) is None


@pytest.mark.slow
def test_evaluate_warns_of_labels_of_the_left_half_and_tuning_says_it_fits_them(samples_dir, tmp_path, capsys):
    """A tester's labels of each image's left half: MAE 23, and --tune "helped" to settings that took the fully
    labelled images from MAE 2.4 to 17, with no word of the annotation."""
    from cellcount.evaluate.cli import main

    shutil.copy(samples_dir / "s02_dense_clusters.png", tmp_path / "s02.png")
    labels = tifffile.imread(samples_dir / "s02_dense_clusters_labels.tif")
    half = labels.copy()
    half[:, labels.shape[1] // 2:] = 0
    tifffile.imwrite(tmp_path / "s02_labels.tif", half)
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of the 1 image(s) have a quarter or more of their counted objects in parts of the image where " \
           "the annotation has none" in err
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "--tune", "--no-cross-check", "-q"]) == 0
    assert "The tuning below fits the annotation as it is." in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "s02_labels.tif", labels)  # annotated throughout: nothing said
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "-q"]) == 0
    assert "annotation has none" not in capsys.readouterr().err


def test_evaluate_names_images_whose_truth_holds_no_objects(samples_dir, tmp_path, capsys):
    """An all-black label image of an image with 66 nuclei: the app said so, the command line did not."""
    from cellcount.evaluate.cli import main

    shutil.copy(samples_dir / "s02_dense_clusters.png", tmp_path / "s02.png")
    shutil.copy(samples_dir / "s01_sparse_small.png", tmp_path / "s01.png")
    shutil.copy(samples_dir / "s01_sparse_small_labels.tif", tmp_path / "s01_labels.tif")
    tifffile.imwrite(tmp_path / "s02_labels.tif", np.zeros((512, 512), np.uint16))
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "-q"]) == 0
    err = capsys.readouterr().err
    assert "note: the ground truth of 1 image(s) holds no objects (s02.png (counted " in err
    assert "annotations whose export failed" in err


def test_dots_with_x_and_y_swapped_are_said(samples_dir, tmp_path, capsys):
    """Dot tables with x and y the wrong way round on square images: every count right, F1 0.15, nothing said; on a
    non-square image the refusal asked about µm."""
    from cellcount.errors import GroundTruthError
    from cellcount.evaluate.cli import main
    from cellcount.groundtruth import read_ground_truth

    for stem in ("s01_sparse_small", "s03_large_nuclei"):
        shutil.copy(samples_dir / f"{stem}.png", tmp_path / f"{stem}.png")
        dots = pd.read_csv(samples_dir / f"{stem}_points.csv")
        pd.DataFrame({"x": dots["row"], "y": dots["col"]}).to_csv(tmp_path / f"{stem}_points.csv", index=False)
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "-q"]) == 0
    assert "match the objects far better with x and y swapped" in capsys.readouterr().err
    shutil.copy(samples_dir / "s03_large_nuclei_points.csv", tmp_path / "s03_large_nuclei_points.csv")
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "-q"]) == 0  # one of two swapped: said too
    err = capsys.readouterr().err
    assert "1 of the 2 image(s) with dots match the objects far better with x and y swapped (F1 as read -> swapped: " \
           "s01_sparse_small.png" in err
    shutil.copy(samples_dir / "s01_sparse_small_points.csv", tmp_path / "s01_sparse_small_points.csv")
    assert main(["--model", "classical-otsu", "--data", str(tmp_path), "-q"]) == 0
    assert "swapped" not in capsys.readouterr().err
    wide = tmp_path / "wide.csv"
    wide.write_text("x,y\n10,150\n20,180\n")  # inside a 200 x 100 (W x H) image only with x and y swapped
    try:
        read_ground_truth(wide, expected_shape=(100, 200))
    except GroundTruthError as err:
        assert "with x and y swapped every point would lie inside" in str(err)
    else:
        raise AssertionError("points outside the image were read")


def test_the_swapped_note_counts_the_images_it_could_judge_and_says_so() -> None:
    """11 images with dots read "3 of the 9 image(s) with dots": two not square, their swapped dots off the image."""
    from cellcount.evaluate.annotation import swapped_axes_note

    table = pd.DataFrame({"file": ["a.png", "b.png", "c.png"], "f1": [0.1, 0.9, 0.8],
                          "f1_xy_swapped": [0.9, 0.1, np.nan]})
    assert swapped_axes_note(table).startswith("1 of the 2 image(s) with dots that fit the image either way match")
    assert swapped_axes_note(table.iloc[:2]).startswith("1 of the 2 image(s) with dots match")
