"""Tests of cellcount.postprocess: exact counts on synthetic geometry, inclusive area bounds, dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from cellcount.errors import ParameterError
from cellcount.postprocess import (
    KEPT,
    ON_BORDER,
    TOO_LARGE,
    TOO_SMALL,
    count_in_region,
    density_count,
    density_peaks,
    fill_holes,
    filter_objects,
    label_components,
    open_close,
    probability_histogram,
    relabel_sequential,
    segment,
    threshold,
    uncertain_share,
    watershed_split,
)


def _assert_consecutive_int32(labels: np.ndarray, n: int) -> None:
    assert labels.dtype == np.int32
    assert set(np.unique(labels).tolist()) == set(range(n + 1)) | ({0} if n else set())


def _gaussian(shape, centre, sigma):
    rr, cc = np.indices(shape)
    g = np.exp(-((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2) / (2 * sigma**2))
    return g / g.sum()


@pytest.fixture
def touching_disks(draw_disks) -> np.ndarray:
    """Two radius-9 disks whose centres are 17 px apart: one 8-connected blob with a neck."""
    return draw_disks((40, 60), [(20, 20), (20, 37)], 9) > 0


# --------------------------------------------------------------------------------------------------
# touching objects


def test_touching_disks_merge_without_watershed_and_split_with_it(touching_disks):
    assert label_components(touching_disks).max() == 1
    split = watershed_split(touching_disks, min_distance_px=4)
    assert split.max() == 2
    assert (split[touching_disks] > 0).all() and (split[~touching_disks] == 0).all()
    # the split runs through the neck: each disk centre is in a different object
    assert split[20, 20] != split[20, 37]


def test_segment_split_switch(touching_disks):
    prob = touching_disks.astype(np.float32)
    assert segment(prob, split_mode="off").count == 1
    assert segment(prob, split_mode="distance", min_distance_px=4).count == 2
    # a larger min. distance splits less
    assert segment(prob, split_mode="distance", min_distance_px=30).count == 1


def test_border_channel_splits_touching_squares():
    mask = np.zeros((30, 40), bool)
    mask[8:20, 6:18] = True
    mask[8:20, 18:30] = True  # a second square sharing the edge at column 17/18
    border = np.zeros((30, 40), np.float32)
    border[8:20, 17:19] = 0.9
    assert watershed_split(mask, min_distance_px=4).max() == 1  # one rectangle for the distance transform
    labels = watershed_split(mask, min_distance_px=4, border_prob=border)
    assert labels.max() == 2
    assert len(np.unique(labels[8:20, 6:17])) == 1 and len(np.unique(labels[8:20, 19:30])) == 1
    assert labels[10, 10] != labels[10, 25]
    assert (labels[mask] > 0).all(), "the border pixels themselves still belong to an object"


def test_split_modes_use_only_their_own_knobs(draw_disks):
    """borders: the border band splits, min_distance_px does nothing; distance: min_distance_px acts;
    both: border cores are split further at distance maxima; off: nothing splits."""
    # two squares sharing an edge (split only by the border band) + two touching disks (no band)
    prob = np.zeros((40, 100), np.float32)
    prob[8:20, 6:18] = prob[8:20, 18:30] = 1.0
    disks = draw_disks((40, 100), [(20, 55), (20, 72)], 9) > 0
    prob[disks] = 1.0
    border = np.zeros_like(prob)
    border[8:20, 17:19] = 0.9

    def count(mode, d):
        return segment(prob, split_mode=mode, min_distance_px=d, border_prob=border).count

    assert count("off", 4) == 2
    assert count("borders", 4) == count("borders", 40) == 3  # squares split, disks not; distance unused
    assert count("distance", 4) == 3 and count("distance", 40) == 2  # disks split, squares not
    assert count("both", 4) == 4 and count("both", 40) == 3
    with pytest.raises(ParameterError, match="border map"):
        segment(prob, split_mode="borders")
    with pytest.raises(ParameterError, match="split_mode must be one of"):
        segment(prob, split_mode="watershed")


def test_auto_split_uses_both_only_where_most_objects_touch_on_a_dark_background(draw_disks):
    """Crowded: pairs of squares split by the border band (every object touches its partner), each square a pair
    of touching disks the band missed: "auto" splits as "both". Sparse (the same squares apart) or a bright
    background: as "borders"."""
    from cellcount.postprocess import CROWDED_TOUCHING_SHARE, auto_split_note, crowded_share, touching_share

    def field(pairs: bool) -> tuple[np.ndarray, np.ndarray]:
        prob = np.zeros((60, 240), np.float32)
        border = np.zeros_like(prob)
        for k in range(6):  # six squares, in three touching pairs (or all apart)
            c0 = 10 + k * 36 if not pairs else 10 + (k // 2) * 76 + (k % 2) * 28
            disks = draw_disks((60, 240), [(30, c0 + 7), (30, c0 + 21)], 8) > 0  # two touching disks per object
            prob[disks] = 1.0
            if pairs and k % 2:
                border[18:42, c0 - 2:c0 + 1] = 0.9  # the band between the pair's two objects
        return prob, border

    crowded, band = field(True)
    borders = segment(crowded, split_mode="borders", border_prob=band, min_distance_px=4)
    assert touching_share(borders.labels) > CROWDED_TOUCHING_SHARE
    assert crowded_share(crowded > 0.5, band, 0) == touching_share(borders.labels)  # read before the flooding
    both = segment(crowded, split_mode="both", border_prob=band, min_distance_px=4)
    assert both.count > borders.count
    auto = segment(crowded, split_mode="auto", border_prob=band, min_distance_px=4, memo=(memo := {}))
    assert auto.count == both.count and auto.split_used == "both" and auto.touching_share > CROWDED_TOUCHING_SHARE
    again = segment(crowded, split_mode="auto", border_prob=band, min_distance_px=4, memo=memo)  # from the memo
    assert again.count == both.count and memo["split"][1][1][0] == "both"  # one split kept, the one chosen
    bright = segment(crowded, split_mode="auto", border_prob=band, min_distance_px=4, bright_background=True)
    assert bright.count == borders.count
    # the note names the part of the rule that chose (a tester read "45% touched; Both above 30%" as a contradiction)
    assert auto_split_note(bright.split_used, bright.touching_share, bright_background=True).endswith(
        "touched another: over 30%, but Both is chosen only on a dark background, and this image's is bright).")
    assert auto_split_note(auto.split_used, auto.touching_share, bright_background=False).startswith(
        "Split touching nuclei, Auto: Both on this image (after the border split alone ")
    assert auto_split_note("borders", float("nan"), bright_background=True).endswith("(too few nuclei to judge).")
    assert "after the border split alone 30.2% of the nuclei touched another: over 30%" in auto_split_note(
        "borders", 0.302, bright_background=True), "not '30% ... over 30%'"
    sparse, band = field(False)
    apart = segment(sparse, split_mode="borders", border_prob=band, min_distance_px=4)
    assert touching_share(apart.labels) == 0.0
    sparse_auto = segment(sparse, split_mode="auto", border_prob=band, min_distance_px=4)
    assert sparse_auto.count == apart.count and sparse_auto.split_used == "borders"
    assert np.isnan(touching_share(np.zeros((5, 5), np.int32)))


# --------------------------------------------------------------------------------------------------
# area bounds (inclusive)


def test_min_area_is_inclusive(draw_disks):
    labels = draw_disks((40, 70), [(20, 15), (20, 50)], 7)
    area = int((labels == 1).sum())
    assert (labels == 2).sum() == area
    rr, cc = np.nonzero(labels == 2)
    labels[rr[0], cc[0]] = 0  # object 2 has exactly one pixel less than object 1
    assert (labels == 2).sum() == area - 1

    res = filter_objects(labels, min_area_px=area)
    assert res.count == 1
    assert res.labels[20, 15] == 1 and res.labels[20, 50] == 0
    assert (res.rejected[labels == 2] == TOO_SMALL).all()
    assert (res.rejected[labels != 2] == KEPT).all()
    assert filter_objects(labels, min_area_px=area - 1).count == 2
    assert filter_objects(labels, min_area_px=area + 1).count == 0


def test_max_area_is_inclusive(draw_disks):
    labels = draw_disks((40, 40), [(20, 20)], 8)
    area = int((labels > 0).sum())
    assert filter_objects(labels, max_area_px=area).count == 1
    res = filter_objects(labels, max_area_px=area - 1)
    assert res.count == 0
    assert (res.rejected[labels > 0] == TOO_LARGE).all()


def test_segment_applies_area_bounds_through_the_chain(draw_disks):
    labels = draw_disks((40, 40), [(20, 20)], 6)
    area = int((labels > 0).sum())
    prob = (labels > 0).astype(np.float32)
    assert segment(prob, min_area_px=area, max_area_px=area).count == 1
    assert segment(prob, min_area_px=area + 1).count == 0


def test_bad_area_bounds_raise():
    labels = np.ones((4, 4), np.int32)
    with pytest.raises(ParameterError, match="min_area_px"):
        filter_objects(labels, min_area_px=-1)
    with pytest.raises(ParameterError, match="min_area_px"):
        filter_objects(labels, min_area_px=10, max_area_px=5)


# --------------------------------------------------------------------------------------------------
# empty input, dtypes, no mutation


def test_empty_map_gives_no_objects():
    prob = np.zeros((32, 48), np.float32)
    res = segment(prob, opening_radius_px=1, min_area_px=0)
    assert res.count == 0
    assert res.labels.dtype == np.int32 and res.labels.shape == prob.shape and not res.labels.any()
    assert watershed_split(prob > 0.5).dtype == np.int32
    assert label_components(prob > 0.5).dtype == np.int32
    assert density_count(prob) == 0.0
    assert density_peaks(prob).shape == (0, 2)


@pytest.mark.parametrize("bad", [np.zeros((0, 5)), np.zeros((3, 3, 3))])
def test_bad_map_shapes_raise(bad):
    with pytest.raises(ParameterError, match=r"\(H, W\)"):
        threshold(bad, 0.5)


def test_threshold_treats_nan_as_background_and_rejects_nan_level():
    prob = np.array([[0.2, 0.8], [np.nan, 0.6]], np.float32)
    assert threshold(prob, 0.5).tolist() == [[False, True], [False, True]]
    with pytest.raises(ParameterError, match="finite"):
        threshold(prob, float("nan"))


def test_labels_int32_and_consecutive_after_filtering(draw_disks):
    centres = [(10, 10), (10, 40), (40, 10), (40, 40), (25, 25)]
    labels = draw_disks((52, 52), centres, [3, 6, 3, 6, 6])
    res = filter_objects(labels * 3, min_area_px=50)  # ids 3, 6, ...: gaps, and two objects dropped
    assert res.count == 3
    _assert_consecutive_int32(res.labels, 3)
    seg = segment((labels > 0).astype(np.float32), min_area_px=50)
    _assert_consecutive_int32(seg.labels, 3)


def test_inputs_are_not_mutated(touching_disks, rng):
    prob = np.where(touching_disks, 0.9, 0.1).astype(np.float32) + rng.uniform(0, 0.05, touching_disks.shape)
    prob = prob.astype(np.float32)
    border = np.zeros_like(prob)
    border[:, 28] = 0.9
    labels = label_components(touching_disks)
    density = rng.uniform(0, 1, (20, 20)).astype(np.float32)
    copies = [a.copy() for a in (prob, border, touching_disks, labels, density)]
    threshold(prob, 0.5)
    open_close(touching_disks, opening_radius_px=2, closing_radius_px=2)
    fill_holes(touching_disks)
    watershed_split(touching_disks, border_prob=border)
    filter_objects(labels, min_area_px=5, exclude_border=True)
    relabel_sequential(labels, np.array([False, False]))
    segment(prob, opening_radius_px=1, closing_radius_px=1, border_prob=border, exclude_border=True,
            split_mode="both")
    density_peaks(density)
    count_in_region(density, density > 0.5)
    for before, after in zip(copies, (prob, border, touching_disks, labels, density)):
        np.testing.assert_array_equal(before, after)


# --------------------------------------------------------------------------------------------------
# morphology


def test_fill_holes_fills_a_ring_but_not_a_shape_open_to_the_border():
    rr, cc = np.indices((41, 41))
    d2 = (rr - 20) ** 2 + (cc - 20) ** 2
    ring = (d2 <= 12**2) & (d2 > 6**2)
    filled = fill_holes(ring)
    assert filled[20, 20] and filled.sum() == (d2 <= 12**2).sum()

    c_shape = ring.copy()
    c_shape[17:24, :21] = False  # a gap from the hole to the left: the hole is open to the outside
    assert not fill_holes(c_shape)[20, 20]
    np.testing.assert_array_equal(fill_holes(c_shape), c_shape)

    # a ring cut by the top edge: its 'hole' reaches the image border, so it is background, not a hole
    d2_top = rr**2 + (cc - 20) ** 2
    half_ring = (d2_top <= 12**2) & (d2_top > 6**2)
    np.testing.assert_array_equal(fill_holes(half_ring), half_ring)


def test_open_close_radius_zero_is_identity(rng):
    mask = rng.random((37, 29)) > 0.6
    out = open_close(mask, opening_radius_px=0, closing_radius_px=0)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, mask)


def test_opening_removes_specks_and_closing_fills_gaps(draw_disks):
    disk = draw_disks((40, 40), [(20, 20)], 8) > 0
    with_speck = disk.copy()
    with_speck[2, 2] = True
    np.testing.assert_array_equal(open_close(with_speck, opening_radius_px=1), disk)
    cut = disk.copy()
    cut[:, 20] = False  # a 1-px slit through the disk
    assert label_components(cut).max() == 2
    assert label_components(open_close(cut, closing_radius_px=1)).max() == 1
    with pytest.raises(ParameterError):
        open_close(disk, opening_radius_px=-1)


# --------------------------------------------------------------------------------------------------
# border exclusion


def test_exclude_border_rejects_objects_touching_the_edge(draw_disks):
    labels = draw_disks((40, 40), [(20, 20), (5, 0)], 4)  # object 2 is cut by the left edge
    res = filter_objects(labels, exclude_border=True)
    assert res.count == 1
    assert res.labels[20, 20] == 1 and not res.labels[labels == 2].any()
    assert (res.rejected[labels == 2] == ON_BORDER).all()
    assert (res.rejected[labels != 2] == KEPT).all()
    assert filter_objects(labels, exclude_border=False).count == 2


# --------------------------------------------------------------------------------------------------
# more objects than uint16 holds


def test_more_than_65535_single_pixel_objects():
    mask = np.zeros((600, 600), bool)
    mask[::2, ::2] = True  # 300 x 300 = 90,000 isolated pixels (no 8-neighbours)
    labels = label_components(mask)
    assert labels.dtype == np.int32 and labels.max() == 90_000
    res = filter_objects(labels, min_area_px=1, max_area_px=1)
    assert res.count == 90_000 and res.labels.dtype == np.int32
    assert filter_objects(labels, min_area_px=2).count == 0


def test_more_than_65535_squares_through_segment():
    prob = np.zeros((780, 780), np.float32)
    for dr in (0, 1):
        for dc in (0, 1):
            prob[dr::3, dc::3] = 1.0  # 2x2 squares on a 3-px pitch: 260 x 260 = 67,600 objects
    res = segment(prob, split_mode="off", fill_holes=False, min_area_px=4, max_area_px=4)
    assert res.count == 67_600
    assert res.labels.dtype == np.int32
    assert np.bincount(res.labels.ravel())[1:].tolist() == [4] * 67_600
    assert segment(prob, split_mode="off", fill_holes=False, min_area_px=5).count == 0


def test_relabel_sequential_with_large_sparse_ids():
    mask = np.zeros((600, 600), bool)
    mask[::2, ::2] = True
    labels = label_components(mask).astype(np.int64) * 3  # ids up to 270,000 with gaps
    keep = np.zeros(labels.max() + 1, bool)
    keep[6::6] = True  # keep every other object
    out = relabel_sequential(labels, keep)
    assert out.dtype == np.int32
    assert out.max() == 45_000
    _assert_consecutive_int32(out, 45_000)
    np.testing.assert_array_equal(out > 0, keep[labels])
    # order is preserved: the k-th kept id becomes k
    np.testing.assert_array_equal(out[labels == 12], 2)
    full = relabel_sequential(labels)
    np.testing.assert_array_equal(full, labels // 3)


# --------------------------------------------------------------------------------------------------
# density maps


def test_density_count_is_the_sum(rng):
    d = rng.uniform(0, 0.01, (50, 40)).astype(np.float32)
    assert density_count(d) == pytest.approx(float(d.sum(dtype=np.float64)), rel=1e-9)
    d[0, 0] = np.nan
    assert np.isfinite(density_count(d))


def test_density_peaks_finds_well_separated_gaussians():
    centres = [(12, 12), (12, 50), (40, 30), (52, 8), (50, 54)]
    d = sum(_gaussian((64, 64), c, 2.0) for c in centres).astype(np.float32)
    assert density_count(d) == pytest.approx(5.0, abs=1e-4)
    peaks = density_peaks(d, min_distance_px=3)
    assert peaks.shape == (5, 2)
    found = sorted(map(tuple, np.round(peaks).astype(int).tolist()))
    assert found == sorted(centres)


def _rippled_blob(shape=(96, 96), centre=(48, 48), sigma=20.0):
    """One nucleus's density enlarged from a model's scale: a wide blob with ripples (several local maxima)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blob = _gaussian(shape, centre, sigma)
    ripple = 1 + 0.15 * np.sin(yy / 2.0) * np.sin(xx / 2.0)
    return (blob * ripple).astype(np.float32)


def test_density_peaks_blur_makes_one_centre_of_an_enlarged_blob():
    d = _rippled_blob()
    assert len(density_peaks(d, min_distance_px=3)) > 3, "the unblurred ripples are several maxima"
    peaks = density_peaks(d, min_distance_px=3, smooth_px=0.19 * 48)
    assert len(peaks) == 1 and np.allclose(peaks[0], (48, 48), atol=2)
    assert density_count(d) == pytest.approx(float(d.sum()))  # the count is the integral, never blurred


def test_count_in_region_box_and_mask():
    d = (_gaussian((40, 60), (10, 10), 2.0) + _gaussian((40, 60), (30, 45), 2.0)).astype(np.float32)
    assert count_in_region(d, (0, 0, 20, 20)) == pytest.approx(1.0, abs=1e-3)
    assert count_in_region(d, (0, 0, 40, 60)) == pytest.approx(2.0, abs=1e-4)
    region = np.zeros(d.shape, bool)
    region[20:, 30:] = True
    assert count_in_region(d, region) == pytest.approx(1.0, abs=1e-3)
    assert count_in_region(d, ~region) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ParameterError, match="shape"):
        count_in_region(d, np.ones((5, 5), bool))


def test_watershed_on_multi_marker_crops_matches_a_full_watershed():
    """_flood_components floods only components with >= 2 markers; objects match a full-image watershed."""
    import cv2
    from skimage.filters import gaussian
    from skimage.segmentation import watershed

    from cellcount.postprocess import _flood_components, _local_maxima

    rng = np.random.default_rng(5)
    for _ in range(10):
        mask = gaussian(rng.uniform(size=(120, 150)), 2.5) > 0.5
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        markers = _local_maxima(cv2.GaussianBlur(dist, (0, 0), 1.0) * mask, 2)
        full, fast = watershed(-dist, markers, mask=mask), _flood_components(dist, markers, mask)
        assert set(np.unique(full)) == set(np.unique(fast))  # every marker keeps its object
        assert (full > 0).sum() == (fast > 0).sum()
        assert (full != fast).mean() < 0.002  # only tie pixels on basin borders may differ


def test_packed_flooding_matches_one_watershed_per_component():
    """_flood_packed floods every multi-seed component in one mosaic; nothing leaks between crops."""
    import cv2
    from skimage.filters import gaussian
    from skimage.segmentation import watershed

    from cellcount.postprocess import _flood_packed, _local_maxima

    rng = np.random.default_rng(11)
    mask = gaussian(rng.uniform(size=(300, 400)), 3.0) > 0.5
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    markers = _local_maxima(cv2.GaussianBlur(dist, (0, 0), 1.0) * mask, 2)
    _, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    seeds_per_comp = [len(np.unique(markers[(comp == c) & (markers > 0)])) for c in range(stats.shape[0])]
    ids = np.array([c for c in range(1, stats.shape[0]) if seeds_per_comp[c] >= 2])
    assert len(ids) >= 10, "the fixture needs many clumps to fill several shelves"
    packed = np.zeros(mask.shape, np.int32)
    _flood_packed(packed, -dist, markers, comp, stats, ids)
    reference = np.zeros(mask.shape, np.int32)
    for c in ids:
        x, y, w, h = stats[c, :4]
        sl = (slice(y, y + h), slice(x, x + w))
        sub = comp[sl] == c
        reference[sl][sub] = watershed(-dist[sl], np.where(sub, markers[sl], 0), mask=sub)[sub]
    assert set(np.unique(packed)) == set(np.unique(reference))
    in_ids = np.isin(comp, ids)
    assert (packed[~in_ids] == 0).all() and (packed[in_ids] > 0).all()
    assert (packed != reference).mean() < 0.002  # only tie pixels on basin borders may differ
    for c in ids:  # every object stays inside its own component
        assert set(np.unique(packed[comp == c])) <= set(np.unique(markers[comp == c]))


def test_filter_objects_counts_rejected_objects_per_reason():
    labels = np.zeros((20, 20), np.int32)
    labels[0:3, 5:8] = 1  # 9 px, touches the border
    labels[5:7, 5:7] = 2  # 4 px: too small
    labels[10:13, 10:13] = 3  # 9 px: kept
    labels[14:20, 0:6] = 4  # 36 px: too large, but on the border too (the border reason is reported)
    labels[15:16, 15:16] = 6  # 1 px: too small; label 5 is absent and must not be counted
    res = filter_objects(labels, min_area_px=5, max_area_px=20, exclude_border=True)
    assert res.count == 1
    assert res.n_rejected == {"too small": 2, "too large": 0, "touches border": 2}
    assert sum(res.n_rejected.values()) == len({1, 2, 4, 6})
    assert filter_objects(np.zeros((4, 4), np.int32)).n_rejected == {
        "too small": 0, "too large": 0, "touches border": 0}


def test_probability_histogram_and_uncertain_share():
    prob = np.zeros((10, 10), np.float32)
    prob[:5] = 1.0
    prob[5, :4] = 0.5
    prob[6, 0] = np.nan
    shares, edges = probability_histogram(prob, bins=10)
    assert edges[0] == 0 and edges[-1] == 1 and shares.sum() == pytest.approx(1.0)
    assert shares[0] == pytest.approx(45 / 99) and shares[-1] == pytest.approx(50 / 99)
    assert uncertain_share(prob) == pytest.approx(4 / 99)
    assert uncertain_share(np.full((4, 4), np.nan)) == 0.0


def test_flooding_leaves_settled_seed_pixels_out_and_finds_the_same_basins():
    """Large seeds (the cores of split mode "borders"): seed pixels with no unlabelled neighbour are left out
    of the flood, and the basins are still those of one watershed over the whole mask."""
    import cv2
    from skimage.filters import gaussian
    from skimage.segmentation import watershed

    from cellcount.postprocess import _components_min_area, _flood_components

    rng = np.random.default_rng(5)
    mask = gaussian(rng.uniform(size=(300, 400)), 3.0) > 0.5
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    cores = _components_min_area(dist > 2.5, 3)  # big seeds, most of each object
    assert (cores > 0).sum() > 0.3 * mask.sum()
    ours = _flood_components(dist, cores, mask)
    reference = watershed(-dist, cores, mask=mask)
    assert (ours[cores > 0] == cores[cores > 0]).all()  # seeds keep their label
    assert set(np.unique(ours)) == set(np.unique(reference))
    assert (ours[mask] != reference[mask]).mean() < 0.002  # only tie pixels on basin borders may differ


def test_segment_memo_reuses_stages_and_never_returns_a_stale_result():
    """A memo kept across calls gives exactly what a fresh call gives, whichever parameter changed."""
    from skimage.filters import gaussian

    from cellcount.postprocess import segment

    rng = np.random.default_rng(3)
    prob = gaussian(rng.uniform(size=(120, 160)), 2.0)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    memo: dict = {}
    settings = [
        dict(threshold=0.5), dict(threshold=0.5, min_distance_px=6), dict(threshold=0.55, min_distance_px=6),
        dict(threshold=0.55, min_distance_px=6, min_area_px=30), dict(threshold=0.5), dict(split_mode="off"),
        dict(threshold=0.5, opening_radius_px=1), dict(threshold=0.5, fill_holes=False),
    ]
    for kw in settings:
        fresh = segment(prob, **kw)
        again = segment(prob, **kw, memo=memo)
        np.testing.assert_array_equal(again.labels, fresh.labels)
        np.testing.assert_array_equal(again.rejected, fresh.rejected)
        assert again.count == fresh.count
    assert {"mask", "split"} <= set(memo)


def test_relabel_sequential_with_the_callers_areas_gives_the_same_labels():
    from cellcount.postprocess import object_areas

    labels = np.array([[0, 3, 3, 7], [9, 9, 0, 7], [0, 0, 0, 7]], np.int64)
    areas = object_areas(labels)
    for keep in (None, areas >= 2):
        np.testing.assert_array_equal(relabel_sequential(labels, keep, areas=areas), relabel_sequential(labels, keep))
    np.testing.assert_array_equal(relabel_sequential(labels, areas >= 3, areas=areas), (labels == 7).astype(np.int32))
