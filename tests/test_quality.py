"""The quality flag: signals, the rule, its calibration, and the multihead pipeline that feeds it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cellcount as cc
from cellcount.pipeline import Prediction, postprocess, resize_maps, resolve_params
from cellcount.quality import (
    LIMITS,
    QualityRule,
    calibrate_rule,
    density_foreground,
    flag_report,
    judge,
    quality_signals,
)


def _signals(**kw):
    base = {"count": 50.0, "second_count": 50.0, "probability": None, "image_norm": None, "diameter_px": 18.4,
            "reference_diameter_px": 18.4, "size_at_limit": False}
    return quality_signals(**{**base, **kw})


@pytest.mark.parametrize(
    "kw, flagged, reason",
    [
        ({}, False, None),
        ({"second_count": 80.0}, True, "two independent counts"),  # 30 / 82 = 0.37 > 0.15
        ({"second_count": 55.0}, False, None),                 # 5 / 57 = 0.09
        ({"count": 1.0, "second_count": 2.0}, False, None),    # near-empty field: 1 / 4 = 0.25 ... see rule below
        ({"diameter_px": 60.0}, True, "3.3x larger than those the model was trained on"),  # which way, said
        ({"diameter_px": 6.0}, True, "3.1x smaller than those the model was trained on"),
        ({"size_at_limit": True}, True, "beyond what resizing"),
    ],
)
def test_judge_flags_what_the_rule_says(kw, flagged, reason):
    rule = QualityRule(max_count_disagreement=0.3 if kw.get("count") == 1.0 else 0.15)
    q = judge(_signals(**kw), rule)
    assert q.flag is flagged
    assert (q.score >= 1.0) is flagged
    if reason:
        assert any(reason in r for r in q.reasons)
    else:
        assert q.reasons == ()


def test_uncertainty_and_contrast_come_from_the_maps():
    prob = np.zeros((20, 20), np.float32)
    prob[5:15, 5:15] = 0.95
    img = np.where(prob > 0.5, 0.9, 0.1).astype(np.float32)
    sure = _signals(probability=prob, image_norm=img)
    assert sure["uncertain_fraction"] == 0.0 and sure["contrast"] == pytest.approx(0.8)
    assert sure["foreground_share"] == pytest.approx(100 / 400)
    crowded = judge(_signals(probability=np.full((20, 20), 0.9, np.float32)), QualityRule(max_foreground_share=0.6))
    assert crowded.flag and "foreground" in crowded.reasons[0]
    unsure = _signals(probability=np.where(prob > 0, 0.55, 0.0).astype(np.float32), image_norm=img * 0.1)
    assert unsure["uncertain_fraction"] == 1.0 and unsure["contrast"] == pytest.approx(0.08)
    q = judge(unsure, QualityRule())
    assert q.flag and len(q.reasons) == 2
    assert math.isnan(_signals(second_count=None)["count_disagreement"])


def test_flag_report_counts_large_errors_held():
    rep = flag_report([True, False, False, True], [0.5, 0.3, 0.01, 0.02])
    assert rep == {"n": 4, "flagged_share": 0.5, "large_errors": 2, "large_errors_flagged_share": 0.5}


def test_a_count_on_an_image_with_no_objects_is_a_large_error():
    """20 counted where the truth has none: the per-image NaN ("undefined") left it out of the large errors,
    and so out of the share the flag catches."""
    from cellcount.quality import relative_errors

    rel = relative_errors([10, 0, 0, 20, 0], [10, 20, 0, 25, 0.3])
    assert rel.tolist() == [0.0, math.inf, 0.0, 0.25, 0.0], "a density integral of 0.3 is no cell counted"
    rep = flag_report([False, True, False, False, False], rel)
    assert rep["large_errors"] == 2 and rep["large_errors_flagged_share"] == 0.5
    assert flag_report([True], [math.nan])["large_errors"] == 0, "an unknown error is not a large one"


def test_calibration_respects_the_flag_budget_and_finds_the_signal():
    rng = np.random.default_rng(0)
    n = 60
    disagreement = rng.uniform(0, 0.1, n)
    errors = rng.uniform(0, 0.1, n)
    bad = rng.choice(n, 8, replace=False)
    disagreement[bad] = rng.uniform(0.3, 0.6, 8)   # the large errors are the ones whose counts disagree
    errors[bad] = rng.uniform(0.2, 0.5, 8)
    signals = [{"count_disagreement": d, "size_ratio": 1.0, "uncertain_fraction": u, "contrast": 0.5,
                "size_at_limit": 0.0} for d, u in zip(disagreement, rng.uniform(0.1, 0.3, n))]
    rule, rep = calibrate_rule(signals, errors, max_flagged=0.2)
    assert rep["flagged_share"] <= 0.2
    assert rep["large_errors_flagged_share"] == 1.0
    assert rule.max_count_disagreement is not None


def test_resize_maps_keeps_the_mass_of_density_channels_only():
    rng = np.random.default_rng(1)
    maps = rng.uniform(0, 1, (3, 20, 30)).astype(np.float32)
    out = resize_maps(maps, (50, 70), density=(2,))
    assert out[2].sum() == pytest.approx(maps[2].sum(), rel=1e-4)
    assert out[0].max() <= 1.0 and out[0].sum() > 3 * maps[0].sum()  # probabilities are interpolated


def test_multihead_result_carries_both_counts_and_a_quality_verdict(tiny_model, draw_disks):
    model = tiny_model(kind="multihead")
    image = np.where(draw_disks((64, 64), [(16, 16), (40, 40)], 6) > 0, 0.9, 0.1).astype(np.float32)
    res = cc.count_image(image, model, {"auto_nucleus_size": True})
    assert res.output_kind == "mask" and res.labels is not None
    assert res.density is not None and res.density_count == pytest.approx(float(res.density.sum()), rel=1e-5)
    assert res.quality is not None and set(res.quality.signals) >= {"count_disagreement", "contrast"}
    row = res.summary_row()
    assert {"density_count", "check", "check_score", "check_reasons"} <= set(row)


def test_two_heads_that_agree_or_disagree_flag_accordingly(draw_disks):
    labels = draw_disks((64, 64), [(16, 16), (16, 40), (40, 16), (40, 40)], 6)
    fg = (labels > 0).astype(np.float32)
    params = resolve_params(None, {"min_area_px": 5, "opening_radius_px": 0})

    def result(total: float):
        density = fg * np.float32(total / fg.sum())
        maps = np.stack([fg * 0.98, np.zeros_like(fg), density])
        pred = Prediction("m", "multihead", maps, fg, False, params.input_key())
        return postprocess(pred, params)

    agree, disagree = result(4.0), result(12.0)
    assert agree.count == disagree.count == 4
    assert not agree.quality.flag
    assert disagree.quality.flag and disagree.quality.reasons[0].endswith(
        "the 4 objects found against the density head's estimate of 12")


def test_count_source_density_reports_the_integral(draw_disks):
    labels = draw_disks((64, 64), [(16, 16), (40, 40)], 6)
    fg = (labels > 0).astype(np.float32)
    params = resolve_params(None, {"min_area_px": 5, "opening_radius_px": 0, "count_source": "density"})
    maps = np.stack([fg * 0.98, np.zeros_like(fg), fg * np.float32(5.0 / fg.sum())])
    res = postprocess(Prediction("m", "multihead", maps, fg, False, params.input_key()), params)
    assert res.count == 5 and res.count_estimate == pytest.approx(5.0, rel=1e-5)
    assert res.labels.max() == 2, "the objects are still outlined"
    with pytest.raises(cc.CellcountError, match="count_source"):
        resolve_params(None, {"count_source": "peaks"})


@pytest.mark.parametrize("diameter, scale, at_limit", [
    (13.0, 1.0, False),   # 1.4x off, left alone within the estimate's tolerance: not a limit
    (40.0, 0.46, False),  # resized as asked
    (3.0, 4.0, True),     # asked for 6.1x, clamped to 4x
    (300.0, 0.25, True),  # asked for 0.061x, clamped to 0.25x
])
def test_size_at_limit_means_a_clamped_resize(diameter, scale, at_limit):
    params = resolve_params(None, {})
    prob = np.zeros((16, 16), np.float32)
    pred = Prediction("m", "mask", prob[None], prob, False, params.input_key(), model_scale=scale,
                      estimated_diameter_px=diameter)
    from cellcount.pipeline import assess

    assert bool(assess(pred, params, 0).signals["size_at_limit"]) is at_limit


def test_object_signals_see_merged_and_touching_objects(draw_disks):
    centres = [(10 + 20 * i, 10) for i in range(6)]
    separate = draw_disks((130, 60), centres, 5)
    sig = _signals(labels=separate)
    assert sig["large_object_share"] == 0.0 and sig["touching_share"] == 0.0
    merged = separate.copy()
    merged[100:130, 30:60] = 7  # a clump of 900 px, over 4x the ~80 px of a disc
    merged[20, 16] = 8          # a one-pixel object touching disc 2 (id 2 spans columns 5-15 on row 30)
    merged[30, 16] = 8
    sig = _signals(labels=merged)
    areas = np.bincount(merged.ravel())[1:]
    assert sig["large_object_share"] == pytest.approx(900 / areas.sum())
    assert sig["touching_share"] == pytest.approx(2 / 8)  # disc 2 and object 8 touch
    few = _signals(labels=draw_disks((40, 40), [(10, 10), (30, 30)], 5))
    assert math.isnan(few["large_object_share"]) and math.isnan(few["touching_share"])  # too few to judge
    q = judge(_signals(labels=merged), QualityRule(max_large_object_share=0.5, max_touching_share=0.2))
    assert q.flag and any("merged" in r for r in q.reasons) and any("touch" in r for r in q.reasons)


def test_merge_share_counts_objects_far_larger_than_their_neighbours(draw_disks):
    """Three nuclei merged into one isolated object among single ones: a likely merge by its neighbours, which
    neither the touching share (it touches nothing) nor the large-object share (under 4x) sees."""
    centres = [(12 + 24 * r, 12 + 24 * c) for r in range(4) for c in range(4)]
    labels = draw_disks((100, 100), centres, 6)
    assert _signals(labels=labels)["merge_share"] == 0.0
    pair = draw_disks((100, 100), [(36, 28), (36, 36), (36, 44)], 6) > 0  # overlapping discs: one object, ~3x
    labels[20:52, 20:58][labels[20:52, 20:58] > 0] = 0
    labels[pair] = 99
    sig = _signals(labels=labels)
    n = len(np.unique(labels)) - 1
    assert sig["merge_share"] == pytest.approx(1 / n) and sig["touching_share"] == 0.0
    assert sig["large_object_share"] == 0.0
    q = judge(sig, QualityRule(max_merge_share=0.05))
    assert q.flag and any("larger than their neighbours" in r for r in q.reasons)
    assert not any("larger than their neighbours" in r for r in judge(sig, QualityRule()).reasons), \
        "off unless a card's rule sets it"


def test_focus_falls_with_blur_but_not_with_contrast(draw_disks):
    import cv2

    fg = draw_disks((96, 96), [(24, 24), (24, 72), (72, 24), (72, 72)], 10) > 0
    prob = fg.astype(np.float32)
    sharp = np.where(fg, 0.9, 0.1).astype(np.float32)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    f_sharp = _signals(probability=prob, image_norm=sharp)["focus"]
    f_faint = _signals(probability=prob, image_norm=0.4 + 0.25 * sharp)["focus"]
    f_blur = _signals(probability=prob, image_norm=blurred)["focus"]
    assert f_blur < 0.5 * f_sharp
    assert f_faint == pytest.approx(f_sharp, rel=1e-3), "focus is per unit of contrast"
    assert judge(_signals(probability=prob, image_norm=blurred), QualityRule(min_focus=0.5 * f_sharp)).flag


def test_mask_model_compares_its_count_with_the_size_models(draw_disks):
    labels = draw_disks((64, 64), [(16, 16), (16, 40), (40, 16), (40, 40)], 6)
    fg = (labels > 0).astype(np.float32)
    params = resolve_params(None, {"min_area_px": 5, "opening_radius_px": 0})
    whole = (slice(0, 64), slice(0, 64))

    def quality(size_count, window=whole):
        pred = Prediction("m", "mask", fg[None] * 0.98, fg, False, params.input_key(), size_count=size_count,
                          size_window=window)
        return postprocess(pred, params).quality

    assert quality(4.0).signals["count_disagreement"] == 0.0 and not quality(4.0).flag
    assert quality(12.0).flag and quality(12.0).reasons[0] == (
        "two independent counts of this image differ by 57%: the 4 objects found against the size model's "
        "density estimate of 12")
    # over part of the image only, the reason says so
    assert "in the part of the image the size model read" in quality(12.0, (slice(0, 28), slice(0, 64))).reasons[0]
    # the size model read the top half only: its 2 nuclei against the 2 objects reaching into that half
    assert quality(2.0, (slice(0, 28), slice(0, 64))).signals["count_disagreement"] == 0.0
    assert math.isnan(quality(None).signals["count_disagreement"])  # no size model ran


def test_density_model_compares_its_integral_with_its_peaks(draw_disks):
    import cv2

    points = np.zeros((64, 64), np.float32)
    for r, c in [(16, 16), (16, 48), (48, 16), (48, 48)]:
        points[r, c] = 1.0
    density = cv2.GaussianBlur(points, (0, 0), 2.0)
    params = resolve_params(None, {})

    def quality(scale):
        pred = Prediction("d", "density", (density * np.float32(scale))[None], density, False, params.input_key())
        return postprocess(pred, params).quality

    assert quality(1.0).signals["count_disagreement"] == pytest.approx(0.0, abs=0.01)
    assert quality(3.0).signals["count_disagreement"] == pytest.approx(8 / 14, abs=0.01)  # 12 vs 4 peaks
    assert "the density map's integral (12.0) against its 4 peaks" in quality(3.0).reasons[0]


def test_calibration_uses_few_limits_and_prefers_fewer_flags():
    rng = np.random.default_rng(3)
    n = 50
    signals = [{k: float(rng.uniform()) for k in ("count_disagreement", "uncertain_fraction", "large_object_share",
                                                  "touching_share")} | {"contrast": 0.5, "focus": 0.3}
               for _ in range(n)]
    errors = np.full(n, 0.05)
    worst = np.argsort([s["touching_share"] for s in signals])[-5:]
    errors[worst] = 0.4  # the large errors are the most crowded images
    rule, rep = calibrate_rule(signals, errors, max_flagged=0.2, max_limits=2, range_margin=None)
    assert rep["large_errors_flagged_share"] == 1.0 and rep["flagged_share"] <= 0.2
    assert rule.max_touching_share is not None
    on = [f for f, _, _ in LIMITS if getattr(rule, f) is not None]
    assert on == ["max_touching_share"], "one limit holds them all: no other is switched on"
    assert rule.max_touching_share == pytest.approx(np.quantile([s["touching_share"] for s in signals], 0.9), abs=1e-4), \
        "the 90th percentile flags the fewest images that hold them"
    assert rule.joint_limits, "the budget left goes to the joint limit"
    assert rep["flagged_share"] == pytest.approx(0.2), "... at the loosest quantile that fits in it"
    assert QualityRule.from_card(type("Card", (), {"extra": {"quality": {"rule": rule.to_dict()}}})()) == rule


def test_flip_disagreement_is_measured_when_flips_are_on(tiny_model, rng):
    from cellcount.flips import flip_maps

    class Stub:
        output_kind = "mask"

        def __init__(self, lopsided):
            self.lopsided = lopsided

        def predict_maps(self, view, progress=None, fast=True, **kw):
            fg = np.zeros_like(view)
            fg[:, : view.shape[1] // 2] = 1.0  # always the left half of what it is shown: not flip-equivariant
            return (fg if self.lopsided else (view > 0.5).astype(np.float32))[None]

    image = rng.random((40, 56)).astype(np.float32)
    assert flip_maps(Stub(False), image)[1] == 0.0, "a pointwise model agrees with itself"
    assert flip_maps(Stub(True), image)[1] == 1.0, "every foreground pixel is missed by the flipped views"
    model = tiny_model("unet", "mask")
    off = cc.count_image(image, model, {"test_time_flips": False})
    on = cc.count_image(image, model, {"test_time_flips": True})
    assert math.isnan(off.quality.signals["flip_disagreement"])
    assert on.quality.signals["flip_disagreement"] == flip_maps(model, image)[1]
    flagged = judge({"flip_disagreement": 0.3}, QualityRule(max_flip_disagreement=0.2))
    assert flagged.flag and any("flipped" in r for r in flagged.reasons)


def test_joint_limits_flag_only_together_and_round_trip_through_the_card():
    rule = QualityRule(max_count_disagreement=None, max_uncertain_fraction=None, min_contrast=None,
                       joint_limits=(("count_disagreement", 0.2), ("uncertain_fraction", 0.25)))
    both = {"count_disagreement": 0.3, "uncertain_fraction": 0.3, "contrast": 0.5}
    assert judge(both, rule).flag and "unusual together" in judge(both, rule).reasons[0]
    assert not judge({**both, "uncertain_fraction": 0.2}, rule).flag, "one signal alone is not enough"
    assert not judge({**both, "uncertain_fraction": math.nan}, rule).flag
    card = type("Card", (), {"extra": {"quality": {"rule": rule.to_dict()}}})()
    assert rule.to_dict()["joint_limits"] == {"count_disagreement": 0.2, "uncertain_fraction": 0.25}
    assert QualityRule.from_card(card) == rule


def test_calibration_finds_errors_that_only_two_signals_together_mark():
    rng = np.random.default_rng(5)
    n = 60
    d, u = rng.uniform(0, 0.2, n), rng.uniform(0.1, 0.3, n)
    errors = rng.uniform(0, 0.1, n)
    bad = np.arange(8)
    d[bad], u[bad] = 0.17, 0.27          # each within the top 25% but below the highest single values
    d[8:14], u[14:20] = 0.2, 0.3         # high on one signal only: fine images
    errors[bad] = 0.3
    signals = [{"count_disagreement": a, "uncertain_fraction": b} for a, b in zip(d, u)]
    rule, rep = calibrate_rule(signals, errors, max_flagged=0.2)
    assert rule.joint_limits and rep["large_errors_flagged_share"] == 1.0 and rep["flagged_share"] <= 0.2


def test_limits_left_off_sit_just_outside_the_validation_range():
    rng = np.random.default_rng(7)
    signals = [{"count_disagreement": float(a), "contrast": float(c), "large_object_share": 0.0}
               for a, c in zip(rng.uniform(0, 0.3, 40), rng.uniform(0.2, 0.6, 40))]
    errors = np.full(40, 0.05)  # no large errors: nothing to fit, every limit is a range limit
    rule, rep = calibrate_rule(signals, errors)
    top = max(s["count_disagreement"] for s in signals)
    low = min(s["contrast"] for s in signals)
    assert rule.max_count_disagreement == pytest.approx(1.1 * top, abs=1e-4)
    assert rule.min_contrast == pytest.approx(low / 1.1, abs=1e-4)
    assert rule.max_large_object_share is None, "a signal that was 0 on every image gives no range"
    assert rep["flagged_share"] == 0.0
    assert judge({"count_disagreement": 1.2 * top, "contrast": 0.4}, rule).flag


def test_density_models_get_image_signals_from_their_map(draw_disks):
    from cellcount.training.targets import density_from_labels

    labels = draw_disks((120, 120), [(30, 30), (30, 90), (90, 30), (90, 90)], 9)
    density = density_from_labels(labels)
    fg = density_foreground(density, 19.0)
    assert abs(int((fg > 0.5).sum()) - int((labels > 0).sum())) < 0.15 * (labels > 0).sum(), "about the discs"
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32)
    params = resolve_params(None, {})
    res = postprocess(Prediction("d", "density", density[None], image, False, params.input_key()), params)
    assert res.quality.signals["contrast"] == pytest.approx(0.7, abs=0.05)
    assert np.isfinite(res.quality.signals["focus"]) and np.isfinite(res.quality.signals["uncertain_fraction"])
    faint = postprocess(Prediction("d", "density", density[None], 0.1 + 0.05 * (image > 0.5), False,
                                   params.input_key()), params)
    assert judge(faint.quality.signals, QualityRule()).flag, "low contrast is flagged for density models too"


def test_a_count_near_a_limit_says_which_and_a_joint_reason_is_not_said_twice():
    rule = QualityRule(max_count_disagreement=0.2, max_uncertain_fraction=None, min_contrast=None, max_size_ratio=None,
                       joint_limits=(("count_disagreement", 0.1), ("uncertain_fraction", 0.2)))
    near = judge({"count_disagreement": 0.196, "uncertain_fraction": 0.1}, rule)
    assert not near.flag and near.score == pytest.approx(0.98) and "differ by 20%" in near.nearest
    assert judge({"count_disagreement": 0.182, "uncertain_fraction": 0.1}, rule).nearest == "", \
        "the furthest calibration image sits at 1 / 1.1 of a range limit: not 'near'"
    assert judge({"contrast": -0.5}, QualityRule(min_contrast=0.2)).score == 100.0, "capped, not 400,000"
    from cellcount.quality import combine
    blocks = combine([judge({"count_disagreement": 0.196, "uncertain_fraction": 0.1}, rule),
                      judge({"count_disagreement": 0.01, "uncertain_fraction": 0.1}, rule)])
    assert not blocks.flag and "differ by 20%" in blocks.nearest, "an image counted in blocks is near a limit too"
    assert judge({"count_disagreement": 0.05, "uncertain_fraction": 0.1}, rule).nearest == ""
    both = judge({"count_disagreement": 0.3, "uncertain_fraction": 0.3}, rule)
    assert len(both.reasons) == 1 and "differ by 30%" in both.reasons[0], "the joint limit adds nothing new here"
    joint = judge({"count_disagreement": 0.15, "uncertain_fraction": 0.3}, rule)
    assert joint.flag and "unusual together" in joint.reasons[0] and "; " not in joint.reasons[0]
    assert judge({"count_disagreement": 0.3}, rule).nearest == "", "flagged counts are not 'near'"


def test_a_fixed_background_that_the_image_contradicts_is_a_reason_to_check(tiny_model, draw_disks):
    """A model fine-tuned on fluorescence (Invert off in its card) counted an H&E image about 10x over without
    saying it had read the image the wrong way round."""
    import cellcount as cc

    model = tiny_model()
    bright = np.where(draw_disks((96, 96), [(30, 30), (60, 60)], 8) > 0, 40, 220).astype(np.uint8)
    fixed = cc.count_image(bright, model, {"invert": False, "auto_nucleus_size": False})
    assert fixed.quality.flag and any("looks like a bright-background image" in r for r in fixed.quality.reasons)
    auto = cc.count_image(bright, model, {"invert": None, "auto_nucleus_size": False})
    assert not any("background image" in r for r in auto.quality.reasons)
    agrees = cc.count_image(bright, model, {"invert": True, "auto_nucleus_size": False})
    assert not any("background image" in r for r in agrees.quality.reasons)


def test_the_classical_baseline_says_it_has_no_calibrated_flag():
    """Its 'probability' is rescaled intensity: every image read as 85-99% uncertain, and the badge said
    "the model is unsure"; it now says what is true of every count it makes."""
    from cellcount.models.loading import BASELINE_CHECK

    yy, xx = np.mgrid[:96, :96]
    img = np.zeros((96, 96), np.float32)
    for cy, cx in ((25, 25), (25, 70), (70, 40)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = 1.0
    r = cc.count_image(img, cc.load_model("classical-otsu"))
    assert r.count == 3
    assert r.quality.flag and BASELINE_CHECK in r.quality.reasons
    assert not any("unsure" in reason for reason in r.quality.reasons)
    assert judge(_signals(), QualityRule(always="no rule")).reasons == ("no rule",)


def test_no_objects_against_a_density_estimate_says_what_that_can_mean():
    """An empty field counted 0 was flagged as "the 0 objects found against the density estimate of 23" (a
    tester read a miss); the reason says an empty field's background makes that density too."""
    q = judge(_signals(count=0.0, second_count=23.0), QualityRule(max_count_disagreement=0.15),
              counts=("size_model", 0.0, 23.0))
    assert q.flag and q.reasons[0].startswith("no objects were found, but the density map adds up to 23: an empty field")
    q = judge(_signals(count=5.0, second_count=23.0), QualityRule(max_count_disagreement=0.15),
              counts=("size_model", 5.0, 23.0))
    assert "the 5 objects found against the size model's density estimate of 23" in q.reasons[0]


def test_a_negative_contrast_is_said_in_words_not_as_a_low_figure():
    """"low contrast (-0.14)" read as a misprint to a tester: what was counted is darker than its background."""
    from cellcount.quality import _reason

    assert _reason("contrast", 0.05).startswith("low contrast between nuclei and background (0.05")
    text = _reason("contrast", -0.14)
    assert "darker than the background" in text and "(contrast -0.14)" in text and "check Invert" in text
    assert "; " not in text  # tables join the reasons with it


def test_a_count_from_the_density_head_is_not_blamed_on_the_object_filters(draw_disks):
    """Count from the density head (95 whatever the filters) was flagged "the settings' filters dropped 40 of 122
    objects: check Min. area" (a tester); counted from the objects, the same filters are said."""
    labels = draw_disks((64, 64), [(16, 16), (16, 40), (40, 16), (40, 40), (28, 28)], [6, 6, 6, 6, 2])
    labels += draw_disks((64, 64), [(5, 5), (5, 58), (58, 5), (58, 58), (30, 5)], 2) * (labels == 0)
    fg = (labels > 0).astype(np.float32)
    density = fg * np.float32(4.0 / fg.sum())
    maps = np.stack([fg * 0.98, np.zeros_like(fg), density])
    for source, said in (("segmentation", True), ("density", False)):
        params = resolve_params(None, {"min_area_px": 60, "opening_radius_px": 0, "split_mode": "off",
                                       "count_source": source})
        res = postprocess(Prediction("m", "multihead", maps, fg, False, params.input_key()), params)
        assert res.n_rejected and sum(res.n_rejected.values()) >= 5
        assert any("filters dropped" in r for r in res.quality.reasons) == said, (source, res.quality.reasons)


def test_a_soft_or_faint_image_is_told_with_the_limit_it_passed():
    """A fine-tuned model's focus limit sits just below the softest image it learnt: a slide at 0.19 read "soft"
    with nothing to say it was 0.19 against 0.20. The limit is named, in decimals that tell the two apart."""
    from cellcount.quality import QualityRule, judge

    q = judge({"focus": 0.19, "contrast": 0.5}, QualityRule(min_focus=0.2, min_contrast=0.1))
    assert q.flag and any("(focus 0.19, flagged below 0.20:" in r for r in q.reasons), q.reasons
    q = judge({"focus": 0.199, "contrast": 0.05}, QualityRule(min_focus=0.2, min_contrast=0.1))
    assert any("(focus 0.199, flagged below 0.200:" in r for r in q.reasons), q.reasons
    assert any(r.startswith("low contrast between nuclei and background (0.05, flagged below 0.10:") for r in q.reasons)
