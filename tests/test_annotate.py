"""Annotating by clicking: add/remove a dot, display -> image coordinates, the CSV read back."""

from __future__ import annotations

import numpy as np
import pytest

from cellcount.annotate import (
    display_to_image,
    display_zoom,
    points_csv,
    points_ground_truth,
    remove_radius,
    toggle_point,
)
from cellcount.errors import ParameterError
from cellcount.groundtruth import read_points_csv
from cellcount.viz import points_overlay


def test_toggle_adds_far_removes_near_and_ignores_outside():
    pts = np.zeros((0, 2))
    pts = toggle_point(pts, 10, 20, shape=(50, 60))
    pts = toggle_point(pts, 30, 40, shape=(50, 60))
    assert pts.tolist() == [[10, 20], [30, 40]]
    before = pts.copy()
    fewer = toggle_point(pts, 12, 22, shape=(50, 60), remove_radius_px=3)
    assert fewer.tolist() == [[30, 40]] and np.array_equal(pts, before), "input not modified"
    assert toggle_point(pts, 14, 24, shape=(50, 60), remove_radius_px=3).shape == (3, 2)
    assert toggle_point(pts, 50, 5, shape=(50, 60)).tolist() == pts.tolist(), "row 50 is outside"


def test_display_to_image_scales_to_the_pixel_clicked():
    assert display_to_image(0, 0, display_size=(400, 200), shape=(50, 100)) == (0.0, 0.0)
    assert display_to_image(399.9, 199.9, display_size=(400, 200), shape=(50, 100)) == (49.0, 99.0)
    assert display_to_image(10, 9, display_size=(400, 200), shape=(50, 100)) == (2.0, 2.0)
    with pytest.raises(ParameterError):
        display_to_image(1, 1, display_size=(0, 10), shape=(5, 5))


def test_points_csv_reads_back_as_the_same_ground_truth():
    pts = np.array([[3.0, 7.0], [12.5, 0.0]])
    gt = read_points_csv(points_csv(pts).encode())
    assert gt.kind == "points" and gt.count == 2 and np.allclose(gt.points, pts)
    assert points_csv(np.zeros((0, 2))) == "x,y\n"
    mine = points_ground_truth(pts, source="a.png")
    assert mine.count == 2 and np.array_equal(mine.points, pts) and mine.points is not pts


def test_points_overlay_enlarges_and_marks_the_dots():
    img = np.zeros((20, 30), np.uint8)
    out = points_overlay(img, np.array([[10.0, 15.0]]), zoom=3, radius_px=3)
    assert out.shape == (60, 90, 3) and out.dtype == np.uint8
    assert out.any() and not out[:, :20].any(), "only around the dot"


def test_large_images_are_drawn_shrunk_and_small_ones_enlarged():
    assert display_zoom((64, 64)) == 8 and display_zoom((300, 200)) == 2 and display_zoom((1000, 1400)) == 1
    assert display_zoom((2800, 2000)) == 0.5
    big = np.zeros((2800, 2000), np.uint8)
    out = points_overlay(big, np.array([[2000.0, 1000.0]]), zoom=0.5, radius_px=4)
    assert out.shape == (1400, 1000, 3)
    ring = np.argwhere(out.any(axis=2))  # the dot's circle, at least 1/60 of the long side across: visible shrunk
    assert abs(ring[:, 0].mean() - 1000) < 1.5 and abs(ring[:, 1].mean() - 500) < 1.5
    assert ring[:, 0].max() - ring[:, 0].min() >= 2 * 1400 // 120
    with pytest.raises(ValueError):
        points_overlay(big, None, zoom=1.5)


def test_a_click_a_few_screen_pixels_from_a_dot_removes_it_however_small_the_image_is_shown():
    assert remove_radius(4, display_width=512, image_width=64) == 4  # enlarged: the dot size
    assert remove_radius(4, display_width=700, image_width=2100) == pytest.approx(18)  # 3 image px per screen px
    pts = np.array([[100.0, 100.0]])
    near = remove_radius(4, display_width=700, image_width=2100)
    assert toggle_point(pts, 110, 110, shape=(2100, 2100), remove_radius_px=near).shape == (0, 2)
