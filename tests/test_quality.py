"""The quality flag: signals, the rule, its calibration, and the multihead pipeline that feeds it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cellcount as cc
from cellcount.pipeline import Prediction, postprocess, resize_maps, resolve_params
from cellcount.quality import QualityRule, calibrate_rule, flag_report, judge, quality_signals


def _signals(**kw):
    base = {"count": 50.0, "density_count": 50.0, "probability": None, "image_norm": None, "diameter_px": 18.4,
            "reference_diameter_px": 18.4, "size_at_limit": False}
    return quality_signals(**{**base, **kw})


@pytest.mark.parametrize(
    "kw, flagged, reason",
    [
        ({}, False, None),
        ({"density_count": 80.0}, True, "two counts"),          # 30 / 82 = 0.37 > 0.15
        ({"density_count": 55.0}, False, None),                 # 5 / 57 = 0.09
        ({"count": 1.0, "density_count": 2.0}, False, None),    # near-empty field: 1 / 4 = 0.25 ... see rule below
        ({"diameter_px": 60.0}, True, "off the size"),
        ({"diameter_px": 6.0}, True, "off the size"),
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
    unsure = _signals(probability=np.where(prob > 0, 0.55, 0.0).astype(np.float32), image_norm=img * 0.1)
    assert unsure["uncertain_fraction"] == 1.0 and unsure["contrast"] == pytest.approx(0.08)
    q = judge(unsure, QualityRule())
    assert q.flag and len(q.reasons) == 2
    assert math.isnan(_signals(density_count=None)["count_disagreement"])


def test_flag_report_counts_large_errors_held():
    rep = flag_report([True, False, False, True], [0.5, 0.3, 0.01, 0.02])
    assert rep == {"n": 4, "flagged_share": 0.5, "large_errors": 2, "large_errors_flagged_share": 0.5}


@pytest.mark.slow
def test_calibration_respects_the_flag_budget_and_finds_the_signal():
    rng = np.random.default_rng(0)
    n = 60
    disagreement = rng.uniform(0, 0.1, n)
    errors = rng.uniform(0, 0.1, n)
    bad = rng.choice(n, 8, replace=False)
    disagreement[bad] = rng.uniform(0.3, 0.6, 8)   # the large errors are the ones whose counts disagree
    errors[bad] = rng.uniform(0.2, 0.5, 8)
    signals = [{"count_disagreement": d, "size_ratio": 1.0, "uncertain_fraction": 0.1, "contrast": 0.5,
                "size_at_limit": 0.0} for d in disagreement]
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
    assert {"density_count", "check", "quality_score", "check_reasons"} <= set(row)


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
    assert disagree.quality.flag and "two counts" in disagree.quality.reasons[0]


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
