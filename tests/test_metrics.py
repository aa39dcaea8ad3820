"""Tests of cellcount.metrics: count errors, IoU matching and point matching on exact geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellcount.metrics import (
    MatchResult,
    aggregate_matches,
    count_errors,
    count_metrics,
    iou_matrix,
    mae_confidence_interval,
    match_instances,
    match_points,
    paired_difference,
    paired_mae_difference,
)

CENTRES = [(15, 15), (15, 50), (45, 15), (45, 50)]


def test_count_metrics_on_known_vectors():
    true = [10, 20, 30, 0]
    pred = [12, 18, 33, 1]  # errors +2, -2, +3, +1
    m = count_metrics(true, pred)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(2.0)
    assert m["rmse"] == pytest.approx(math.sqrt(18 / 4))
    assert m["bias"] == pytest.approx(1.0)
    assert m["mape"] == pytest.approx(100 * (0.2 + 0.1 + 0.1) / 3)  # images with true 0 left out
    assert m["r2"] == pytest.approx(1 - 18 / 500)  # mean 15: ss_tot = 25 + 25 + 225 + 225


def test_mae_interval_known_cases():
    assert mae_confidence_interval([3.0] * 10) == (3.0, 3.0)  # no spread, no uncertainty
    errs = np.random.default_rng(0).exponential(4.0, 100)
    lo, hi = mae_confidence_interval(errs)
    assert lo < errs.mean() < hi
    assert mae_confidence_interval(errs) == (lo, hi)  # fixed seed: the same report twice
    lo9, hi9 = mae_confidence_interval(errs, level=0.5)
    assert lo < lo9 < hi9 < hi  # a lower level is a narrower interval
    # standard error of a mean: the 95% interval is about +-1.96 sd / sqrt(n)
    half = 1.96 * errs.std() / np.sqrt(errs.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert all(math.isnan(v) for v in mae_confidence_interval([2.0, 1.0, 3.0, 4.0]))  # too few images
    m = count_metrics([10, 20, 30, 40, 50], [11, 18, 30, 44, 50])
    assert m["mae_ci_low"] <= m["mae"] <= m["mae_ci_high"]


def test_intervals_over_few_images_are_wider_than_the_plain_percentile_bootstrap():
    """A plain percentile "95%" interval called two equally good models different 15% of the time at 5 images
    and covered the default model's MAE 71% of the time (scripts/interval_coverage.py): both intervals are widened."""
    from cellcount.metrics import _percentile_interval, expanded_level

    assert expanded_level(0.95, 5) == pytest.approx(0.998, abs=0.001)  # z = sqrt(5/4) * t(0.975, 4) = 3.10
    assert 0.95 < expanded_level(0.95, 1000) < 0.951
    errs = np.array([0.0, 1.0, 1.0, 2.0, 14.0])  # one hard image carries most of the MAE
    plain = _percentile_interval((errs,), np.mean, paired=False, level=0.95, n_boot=2000, seed=0, expand=False)
    lo, hi = mae_confidence_interval(errs)
    assert lo >= 0 and hi > plain[1] + 3, "the bootstrap-t reaches further up, where the hard images' MAE lies"
    # mostly exact counts: the bootstrap-t alone, unable to studentize resamples of zeros, ended at the MAE (2.8)
    lo, hi = mae_confidence_interval([0.0, 0.0, 0.0, 0.0, 14.0])
    assert lo == 0 and hi > 2.8 + 5
    d = paired_difference(np.zeros(5), np.array([0.0, 1.0, 2.0, 1.0, 3.0]))
    narrow = _percentile_interval((np.zeros(5), np.array([0.0, 1.0, 2.0, 1.0, 3.0])),
                                  lambda a, b, axis: b.mean(axis) - a.mean(axis), paired=True, level=0.95,
                                  n_boot=2000, seed=0, expand=False)
    assert d["low"] < narrow[0] and d["high"] > narrow[1]


def test_the_mae_interval_ends_within_reach_of_the_largest_error():
    """A tester's 11 images, the worst 253 off (MAE 24.6): "95% CI 0.00-1979.28". The bootstrap-t's resamples
    without that image have almost no spread and put its upper end far off: it ends at 1.5 x the largest error."""
    from cellcount.metrics import MAE_HIGH_CAP, _studentized_mean_interval

    errs = np.array([1, 10, 253, 1, 0, 3, 0, 0, 3, 0, 0], float)
    assert _studentized_mean_interval(errs, level=0.95, n_boot=2000, seed=0)[1] > 1000, "the case under test"
    lo, hi = mae_confidence_interval(errs)
    assert lo < errs.mean() < hi == MAE_HIGH_CAP * 253
    spread = np.random.default_rng(0).exponential(4.0, 40)
    uncapped = _studentized_mean_interval(spread, level=0.95, n_boot=2000, seed=0)[1]
    assert mae_confidence_interval(spread)[1] >= uncapped, "many images: the cap does not act"


def test_paired_mae_difference():
    rng = np.random.default_rng(1)
    true = rng.integers(10, 100, 60)
    a = true + rng.normal(0, 5, 60).round()
    # b misses by exactly one more cell than a on every image: the difference is certain
    b = true + np.sign(a - true + 0.5) * (np.abs(a - true) + 1)
    d = paired_mae_difference(true, a, b)
    assert d["difference"] == pytest.approx(1.0)
    assert d["low"] == pytest.approx(1.0) and d["high"] == pytest.approx(1.0) and d["significant"] == 1.0
    # two models with unrelated errors of the same size: no verdict
    c = true + rng.normal(0, 5, 60).round()
    d = paired_mae_difference(true, a, c)
    assert d["low"] < 0 < d["high"] and d["significant"] == 0.0
    assert paired_mae_difference(true, c, a)["difference"] == pytest.approx(-d["difference"])
    few = paired_mae_difference([1, 2, 3, 4], [2, 2, 3, 4], [3, 2, 3, 4])
    # no interval: unknown, not "not significant" (a card read 0.0 beside a verdict of "unlikely to be chance")
    assert math.isnan(few["low"]) and math.isnan(few["significant"])


def test_count_metrics_edge_cases():
    assert count_metrics([5, 5], [5, 5])["mae"] == 0.0
    assert math.isnan(count_metrics([5, 5], [4, 6])["r2"])  # constant truth: R^2 undefined
    empty = count_metrics([], [])
    assert empty["n"] == 0 and math.isnan(empty["mae"])
    with pytest.raises(ValueError, match="shape"):
        count_metrics([1, 2], [1])
    errs = count_errors([0, 4], [1, 3])
    assert errs["error"].tolist() == [1.0, -1.0]
    assert math.isnan(errs["rel_error"][0]) and errs["rel_error"][1] == 0.25


def test_small_shift_matches_all_instances(draw_disks):
    true = draw_disks((60, 66), CENTRES, 8)
    pred = draw_disks((60, 66), [(r + 2, c + 1) for r, c in CENTRES], 8)
    m = match_instances(true, pred, iou_threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (4, 0, 0)
    assert 0.5 < m.mean_matched_iou < 1.0
    assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)
    assert match_instances(true, true).mean_matched_iou == 1.0


def test_large_shift_matches_nothing(draw_disks):
    true = draw_disks((60, 66), CENTRES, 8)
    pred = np.roll(true, 20, axis=1)  # no object overlaps its partner by IoU 0.5
    m = match_instances(true, pred, iou_threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (0, 4, 4)
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)


def test_iou_threshold_is_inclusive():
    true = np.zeros((20, 20), np.int32)
    pred = np.zeros((20, 20), np.int32)
    true[5:11, 5:11] = 1
    pred[5:11, 7:13] = 1  # 6x6 squares shifted by 2: IoU = 24 / 48 = 0.5 exactly
    assert iou_matrix(true, pred)[0, 0] == 0.5
    assert match_instances(true, pred, iou_threshold=0.5).tp == 1
    assert match_instances(true, pred, iou_threshold=0.51).tp == 0


def test_non_consecutive_label_ids(draw_disks):
    true = draw_disks((60, 66), CENTRES, 8)
    pred = draw_disks((60, 66), [(r + 1, c) for r, c in CENTRES], 8)
    ref = match_instances(true, pred)
    sparse_true = np.where(true > 0, true * 7 + 100, 0)
    sparse_pred = np.where(pred > 0, 1000 - pred * 3, 0)
    m = match_instances(sparse_true, sparse_pred)
    assert (m.tp, m.fp, m.fn) == (ref.tp, ref.fp, ref.fn) == (4, 0, 0)
    assert m.mean_matched_iou == pytest.approx(ref.mean_matched_iou)


def test_below_iou_half_the_matching_keeps_the_most_pairs():
    """Below IoU 0.5 an object may pass the threshold with two others: maximising the IoU sum alone matched two
    pairs where three are valid one to one (an auditor; StarDist and Cellpose count three)."""
    t = np.array([[1, 1, 1, 1, 0, 0, 0, 2, 3, 3, 3, 3, 3, 3]], np.int32)
    p = np.array([[1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 2, 3, 3]], np.int32)
    # t1/p1 0.8; t2/p2 0.2 (the only pair for t2); t3/p2 0.57, t3/p3 0.33: the sum took t3/p2 over two pairs
    assert match_instances(t, p, iou_threshold=0.2).tp == 3
    assert match_instances(t, p, iou_threshold=0.5).tp == 2, "at 0.5 and above the pairs are unique: unchanged"


def test_one_to_one_matching(draw_disks):
    true = draw_disks((40, 40), [(20, 20)], 8)
    pred = np.zeros_like(true)
    pred[true > 0] = 1
    pred[(true > 0) & (np.indices(true.shape)[1] >= 20)] = 2  # the object split in two halves
    m = match_instances(true, pred)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)


def test_empty_images():
    empty = np.zeros((10, 10), np.int32)
    some = empty.copy()
    some[1:3, 1:3] = 1
    some[6:8, 6:8] = 4
    m = match_instances(empty, empty)
    assert (m.tp, m.fp, m.fn) == (0, 0, 0) and (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)
    m = match_instances(empty, some)
    assert (m.tp, m.fp, m.fn) == (0, 2, 0) and m.precision == 0.0
    m = match_instances(some, empty)
    assert (m.tp, m.fp, m.fn) == (0, 0, 2) and m.recall == 0.0
    with pytest.raises(ValueError, match="shape"):
        match_instances(empty, np.zeros((5, 5), np.int32))


def test_match_points_within_radius():
    true = [(10, 10), (30, 30)]
    pred = [(12, 10), (30, 36)]  # distances 2 and 6
    m = match_points(true, pred, radius_px=5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    m = match_points(true, pred, radius_px=6)  # inclusive
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    # one-to-one: two detections near one dot
    m = match_points([(10, 10)], [(10, 11), (11, 10)], radius_px=3)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert (match_points(np.zeros((0, 2)), pred).fp, match_points(true, []).fn) == (2, 2)


def test_precision_recall_f1_formulas():
    m = MatchResult(tp=6, fp=2, fn=4)
    assert m.precision == 6 / 8 and m.recall == 6 / 10
    assert m.f1 == pytest.approx(2 * m.precision * m.recall / (m.precision + m.recall))
    assert m.f1 == 12 / 18
    d = m.to_dict()
    assert {"tp", "fp", "fn", "precision", "recall", "f1", "mean_matched_iou"} <= set(d)


def test_aggregate_matches_micro_average():
    agg = aggregate_matches([MatchResult(2, 1, 0, 0.8), MatchResult(1, 0, 3, 0.5), MatchResult(0, 2, 0)])
    assert (agg.tp, agg.fp, agg.fn) == (3, 3, 3)
    assert agg.mean_matched_iou == pytest.approx((2 * 0.8 + 0.5) / 3)
    assert math.isnan(aggregate_matches([]).mean_matched_iou)


def test_fixed_rounds_halves_away_from_zero_as_the_app_tables_do():
    """Evaluate showed one MAE as 8.12 (Python's format) and 8.13 (a table column); the CLI printed 8.12."""
    from cellcount.metrics import fixed

    assert fixed(8.125) == "8.13" and fixed(-8.125, sign=True) == "-8.13" and fixed(0.5, 0) == "1"
    assert fixed(float("nan")) == "—" and fixed(2.0, sign=True) == "+2.00"
    assert fixed(np.float32(0.5), 0) == "1" and fixed(np.int64(3)) == "3.00"


def test_unmatched_objects_are_the_missed_and_the_extra_of_the_matching():
    from cellcount.metrics import match_instances, unmatched_objects
    from cellcount.viz import UNMATCHED_COLOR, mark_objects

    true = np.zeros((40, 40), np.int32)
    true[2:10, 2:10], true[20:30, 20:30], true[2:8, 30:36] = 1, 2, 7  # 7: no prediction near it
    pred = np.zeros_like(true)
    pred[2:10, 2:11], pred[20:30, 20:25], pred[33:38, 2:6] = 4, 5, 9  # 5: half of 2 (IoU 0.5), 9: nothing there
    pred[20:30, 25:30] = 6  # the other half of 2: a split nucleus
    missed, extra = unmatched_objects(true, pred, iou_threshold=0.6)
    m = match_instances(true, pred, iou_threshold=0.6)
    assert missed.tolist() == [2, 7] and extra.tolist() == [5, 6, 9]
    assert (len(missed), len(extra)) == (m.fn, m.fp)
    rgb = mark_objects(np.full((40, 40, 3), 128, np.uint8), true, missed)
    marked = np.all(rgb == UNMATCHED_COLOR, axis=-1)
    assert marked[19:31, 19:31].any() and marked[1:9, 29:37].any() and not marked[:12, :12].any()
    assert unmatched_objects(true, np.zeros_like(true))[0].tolist() == [1, 2, 7]


def test_dots_unmatched_by_objects_are_those_the_score_counts():
    import numpy as np

    from cellcount.metrics import match_points_in_objects, unmatched_points_in_objects

    lab = np.zeros((20, 20), np.int32)
    lab[2:6, 2:6], lab[10:14, 10:14], lab[15:18, 2:5] = 1, 2, 3
    dots = np.array([[3, 3], [4, 4], [11, 11], [0, 19]], float)  # two dots in one object, one in none
    missed, extra = unmatched_points_in_objects(dots, lab)
    score = match_points_in_objects(dots, lab)
    assert list(missed) == [1, 3] and list(extra) == [3]
    assert (len(missed), len(extra)) == (score.fn, score.fp)


def test_unmatched_points_names_the_dots_and_centres_match_points_leaves():
    """Evaluate's worst images marked no missed dot for a density model (473 missed, none shown: a tester)."""
    from cellcount.metrics import match_points, unmatched_points

    dots = np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 90.0]])
    centres = np.array([[11.0, 10.0], [52.0, 49.0], [20.0, 80.0]])
    missed, extra = unmatched_points(dots, centres, radius_px=5.0)
    assert missed.tolist() == [2] and extra.tolist() == [2]
    m = match_points(dots, centres, radius_px=5.0)
    assert (m.tp, m.fp, m.fn) == (2, 1, 1)
    assert [a.tolist() for a in unmatched_points(dots, np.zeros((0, 2)))] == [[0, 1, 2], []]


def test_matching_many_objects_builds_no_matrix_of_every_pair():
    """A dense (n_true, n_pred) IoU matrix of a 36-megapixel image's 21,000 objects took 3.6 GB, its copies 12.9 GB
    (a tester's evaluate): the matching works on the overlapping pairs alone."""
    import tracemalloc

    side = 100  # 100 x 100 objects of 2 x 2 px: a dense matrix would be 10,000^2 float64, 800 MB
    true = np.kron(np.arange(1, side * side + 1, dtype=np.int32).reshape(side, side), np.ones((2, 2), np.int32))
    pred = true.copy()
    pred[::2, :] = 0  # every object keeps half its pixels: IoU 0.5
    tracemalloc.start()
    try:
        m = match_instances(true, pred, iou_threshold=0.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (m.tp, m.fp, m.fn) == (side * side, 0, 0) and m.mean_matched_iou == 0.5
    assert peak < 100 * 2 ** 20, f"{peak / 2 ** 20:.0f} MiB"


def test_the_matching_by_groups_is_the_matching_over_all_objects():
    """Each group of objects linked by pairs at the threshold is matched apart: the same pairs and IoUs as one
    assignment over the whole IoU matrix (brute force on small random label images)."""
    from scipy.optimize import linear_sum_assignment
    from skimage.draw import disk

    from cellcount.metrics import _instance_pairs

    rng = np.random.default_rng(3)

    def labels(n: int) -> np.ndarray:
        out = np.zeros((64, 64), np.int32)
        for k in range(1, n + 1):
            rr, cc = disk(tuple(rng.integers(0, 64, 2)), int(rng.integers(3, 8)), shape=out.shape)
            out[rr, cc] = k
        return out

    for _ in range(40):
        true, pred = labels(int(rng.integers(1, 20))), labels(int(rng.integers(1, 20)))
        for thr in (0.2, 0.5):
            iou = iou_matrix(true, pred)
            valid = iou >= thr
            r, c = linear_sum_assignment(np.where(valid, min(iou.shape) + 1 + iou, 0.0), maximize=True)
            want = iou[r, c][valid[r, c]]
            got = _instance_pairs(true, pred, thr)[4]
            assert len(got) == len(want) and got.sum() == pytest.approx(want.sum())


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5, float("nan")])
def test_an_iou_threshold_outside_zero_to_one_is_refused(threshold, capsys):
    """At 0 two objects that do not touch "matched" in the library; it refuses such a threshold, as evaluate and
    compare do."""
    from cellcount.errors import ParameterError
    from cellcount.evaluate.cli import main as evaluate_main
    from cellcount.evaluate.compare_cli import main as compare_main

    true = np.zeros((8, 8), np.int32)
    true[:2, :2] = 1
    pred = np.zeros((8, 8), np.int32)
    pred[5:, 5:] = 1
    with pytest.raises(ParameterError, match=r"lies in \(0, 1\]"):
        match_instances(true, pred, iou_threshold=threshold)
    for run in (lambda: compare_main(["--data", "nowhere", "classical-otsu", "classical-otsu", "--iou", str(threshold)]),
                lambda: evaluate_main(["--data", "nowhere", "--model", "classical-otsu", "--iou", str(threshold)])):
        assert run() != 0
        assert "an IoU threshold lies in (0, 1]" in capsys.readouterr().err
