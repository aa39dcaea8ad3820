"""Tests of cellcount.pipeline: parameter precedence, cached predictions, CountResult, settings JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cellcount.errors import ParameterError
from cellcount.io import read_image
from cellcount.models import CLASSICAL_NAME, CountModel, ModelCard, load_model
from cellcount.pipeline import (
    CountParams,
    CountResult,
    count_image,
    flip_averaged_maps,
    params_from_json,
    postprocess,
    predict,
    resolve_params,
)


class FixedMapsModel(CountModel):
    """Returns fixed maps whatever the input, and counts its forward passes."""

    def __init__(self, maps: np.ndarray, kind: str = "mask", postprocess: dict | None = None) -> None:
        self.card = ModelCard(name=f"fixed-{kind}", architecture="fixed", output_kind=kind,
                              postprocess=postprocess or {})
        self.maps = maps.astype(np.float32)
        self.calls = 0

    def predict_maps(self, image, *, progress=None, fast=True, device=None):
        self.calls += 1
        assert image.shape == self.maps.shape[1:]
        return self.maps.copy()


@pytest.fixture
def disks_of_three_sizes(draw_disks) -> np.ndarray:
    """Labels: radius 2 (area 13), radius 4 (area 49) and radius 7 (area 149) disks, far apart."""
    return draw_disks((48, 64), [(12, 12), (12, 44), (34, 30)], [2, 4, 7])


# --------------------------------------------------------------------------------------------------
# parameters


def test_resolve_params_precedence():
    model = FixedMapsModel(np.zeros((1, 4, 4)), postprocess={"min_area_px": 15, "threshold": 0.4})
    defaults = CountParams()
    assert resolve_params(None) == defaults
    from_card = resolve_params(model)
    assert (from_card.min_area_px, from_card.threshold) == (15, 0.4)
    assert from_card.opening_radius_px == defaults.opening_radius_px
    overridden = resolve_params(model, {"min_area_px": 3, "exclude_border": True})
    assert (overridden.min_area_px, overridden.threshold, overridden.exclude_border) == (3, 0.4, True)
    assert resolve_params(model, CountParams(min_area_px=7)).min_area_px == 7


def test_unknown_parameter_lists_valid_names():
    with pytest.raises(ParameterError) as info:
        resolve_params(None, {"min_area": 5})
    msg = str(info.value)
    assert "min_area" in msg
    for name in ("min_area_px", "threshold", "split_mode", "pixel_size_um"):
        assert name in msg


@pytest.mark.parametrize("bad", [{"threshold": 1.5}, {"min_area_px": -1}, {"min_distance_px": -1},
                                 {"min_area_px": 20, "max_area_px": 10}, {"low_pct": 50, "high_pct": 40},
                                 {"pixel_size_um": 0}])
def test_invalid_parameter_values_raise(bad):
    with pytest.raises(ParameterError):
        resolve_params(None, bad)


def test_max_area_zero_means_no_limit():
    assert CountParams(min_area_px=20, max_area_px=0).max_area_px == 0


def test_replace_and_input_key():
    p = CountParams()
    q = p.replace(min_area_px=50)
    assert q.min_area_px == 50 and p.min_area_px == CountParams().min_area_px
    assert q.input_key() == p.input_key()
    assert p.replace(invert=True).input_key() != p.input_key()


def test_settings_json_round_trip():
    params = resolve_params(None, {"min_area_px": 25, "max_area_px": 400, "threshold": 0.35, "invert": True,
                                   "split_mode": "off", "pixel_size_um": 0.65})
    assert resolve_params(None, params_from_json(params.to_json())) == params
    # the CLI's settings file wraps the parameters with the model name
    wrapped = json.dumps({"model": CLASSICAL_NAME, "params": params.to_dict()})
    assert resolve_params(None, params_from_json(wrapped.encode())) == params


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"bogus_key": 1}'])
def test_bad_settings_json_raises(text):
    with pytest.raises(ParameterError):
        params_from_json(text)


def test_a_later_versions_record_beside_params_is_read_past():
    """0.2.0 refused files of the next version for its "cellcount_version" key: a key that is no setting and no
    misspelling of one is read past."""
    text = json.dumps({"model": CLASSICAL_NAME, "params": {"threshold": 0.5}, "written_on": "a later version"})
    assert params_from_json(text) == {"threshold": 0.5}


@pytest.mark.parametrize("extra, says", [({"min_area_px": 150}, 'move it into "params"'),
                                         ({"treshold": 0.3}, 'unknown key "treshold"'),
                                         ({"plain": "max"}, 'unknown key "plain"')])
def test_a_setting_beside_params_is_refused_not_ignored(extra, says, tmp_path):
    """A setting written by hand beside "params" was not read: the run counted with the card's value, exit 0."""
    from cellcount.settingsfile import params_from_file

    text = json.dumps({"model": CLASSICAL_NAME, "params": {"threshold": 0.5}, **extra})
    with pytest.raises(ParameterError, match=says):
        params_from_json(text)
    (tmp_path / "s.json").write_text(text)
    with pytest.raises(ParameterError, match="settings file .*s.json: "):  # the error names the file
        params_from_file(tmp_path / "s.json")
    written = {"model": CLASSICAL_NAME, "model_sha256": "ab", "params": {"threshold": 0.5}, "plane": "max",
               "blocks": {"block_px": 2048}, "backend": "torch", "backends_of_resumed_rows": ["torch"]}
    assert params_from_json(json.dumps(written)) == {"threshold": 0.5}  # what the app and the CLI write is read
    summary = {"model": CLASSICAL_NAME, "data": "d", "split": "val", "params": {"threshold": 0.5}, "mae": 3.2, "n": 9}
    assert params_from_json(json.dumps(summary)) == {"threshold": 0.5}  # evaluate --json's summary, as before
    from cellcount.settingsfile import model_from_file

    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ParameterError, match=r"^settings file .*bad.json: is not valid JSON"):
        model_from_file(tmp_path / "bad.json")  # read first by the CLI: it named no file


# --------------------------------------------------------------------------------------------------
# predict once, postprocess many times


def test_postprocess_reuses_the_prediction(disks_of_three_sizes):
    model = FixedMapsModel((disks_of_three_sizes > 0)[None].astype(np.float32))
    image = np.zeros(disks_of_three_sizes.shape, np.uint8)
    base = resolve_params(model, {"opening_radius_px": 0, "min_area_px": 0})
    pred = predict(image, model, base)
    assert model.calls == 1
    counts = [postprocess(pred, base.replace(min_area_px=m)).count for m in (0, 13, 14, 49, 50, 150)]
    assert counts == [3, 3, 2, 2, 1, 0]
    assert postprocess(pred, base.replace(max_area_px=49)).count == 2
    assert model.calls == 1, "postprocess must not run the model"


def test_mask_result_is_consistent(disks_of_three_sizes):
    model = FixedMapsModel((disks_of_three_sizes > 0)[None].astype(np.float32))
    image = (disks_of_three_sizes > 0).astype(np.uint8) * 200
    res = count_image(image, model, {"opening_radius_px": 0, "min_area_px": 0, "pixel_size_um": 0.5})
    assert isinstance(res, CountResult) and res.output_kind == "mask"
    assert res.count == 3 and res.count_estimate == 3.0
    assert res.labels.dtype == np.int32 and res.labels.max() == 3
    assert len(res.objects) == 3 and res.peaks.shape == (3, 2)
    assert sorted(res.objects["area_px"]) == [13, 49, 149]
    assert "area_um2" in res.objects
    assert res.params.pixel_size_um == 0.5
    row = res.summary_row()
    assert row["count"] == 3 and json.loads(row["settings"])["pixel_size_um"] == 0.5
    # the settings column names what acts on the model: a multihead result (it has a density count, though
    # its kind reads "mask") also lists the count source; no mask result lists the density peaks' distance
    assert "count_source" not in json.loads(row["settings"]) and "peak_min_distance_px" not in row["settings"]
    multihead = json.loads(dataclasses.replace(res, density_count=3.2).summary_row()["settings"])
    assert multihead["count_source"] == res.params.count_source and multihead["threshold"] == res.params.threshold


def test_density_result_uses_the_integral():
    rr, cc = np.indices((40, 40))
    density = np.zeros((40, 40))
    for r, c in [(10, 10), (10, 30), (30, 20)]:
        g = np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / 8.0)
        density += g / g.sum()
    model = FixedMapsModel(density[None], kind="density")
    res = count_image(np.zeros((40, 40), np.uint8), model)
    assert res.output_kind == "density" and res.labels is None
    assert res.count == 3 and res.count_estimate == pytest.approx(3.0, abs=1e-4)
    assert res.peaks.shape == (3, 2) and len(res.objects) == 3
    # a faint map that integrates to no cell lists no centres: 25% of its own maximum found noise peaks
    faint = count_image(np.zeros((40, 40), np.uint8), FixedMapsModel(density[None] * 0.1, kind="density"))
    assert faint.count == 0 and faint.peaks.shape == (0, 2) and len(faint.objects) == 0


def test_count_image_on_a_sample_with_the_classical_model(samples_dir):
    image = read_image(samples_dir / "s01_sparse_small.png")
    model = load_model(CLASSICAL_NAME)
    res = count_image(image, model)
    assert isinstance(res, CountResult)
    assert res.count > 0
    assert len(res.objects) == res.count == int(res.labels.max())
    assert res.labels.shape == image.shape[:2]
    assert res.params == resolve_params(model)  # the card's defaults travel with the result
    assert set(res.seconds) >= {"normalize", "model", "postprocess"}


# --------------------------------------------------------------------------------------------------
# test-time flips


def test_flip_averaged_maps_is_the_mean_of_the_four_views(tiny_model, rng):
    model = tiny_model("unet", "mask")
    image = rng.random((40, 56)).astype(np.float32)
    views = [model.predict_maps(np.ascontiguousarray(np.flip(image, ax)) if ax else image)
             for ax in ((), (1,), (0,), (0, 1))]
    expected = (views[0] + np.flip(views[1], 2) + np.flip(views[2], 1) + np.flip(views[3], (1, 2))) / 4
    calls = []
    got = flip_averaged_maps(model, image, progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.shape == views[0].shape and got.dtype == np.float32
    assert not np.allclose(got, views[0], atol=1e-6), "a random network is not flip-equivariant"
    assert calls[-1] == (calls[-1][1], calls[-1][1]) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_test_time_flips_is_an_input_parameter(samples_dir):
    """It reruns the model (input_key); a pointwise model (Otsu) gives the same count either way."""
    p = CountParams()
    assert not p.test_time_flips and p.replace(test_time_flips=True).input_key() != p.input_key()
    model = load_model(CLASSICAL_NAME)
    image = read_image(samples_dir / "s01_sparse_small.png")
    plain = count_image(image, model)
    flipped = count_image(image, model, {"test_time_flips": True})
    assert flipped.params.test_time_flips and flipped.count == plain.count
    np.testing.assert_allclose(flipped.probability, plain.probability, atol=1e-6)



# --------------------------------------------------------------------------------------------------
# nucleus size: resizing the model input


class ThresholdModel(CountModel):
    """Mask 'model' that thresholds its input at 0.5 (at whatever size it gets) and records the sizes."""

    def __init__(self, kind: str = "mask", extra: dict | None = None) -> None:
        self.card = ModelCard(name=f"threshold-{kind}", architecture="fixed", output_kind=kind, extra=extra or {},
                              postprocess={"split_mode": "off", "opening_radius_px": 0, "min_area_px": 0})
        self.shapes: list[tuple[int, int]] = []

    def predict_maps(self, image, *, progress=None, fast=True, device=None):
        self.shapes.append(image.shape)
        fg = (image > 0.5).astype(np.float32)
        if self.output_kind == "density":  # one count per 100 foreground pixels, at the model's scale
            return fg[None] / np.float32(100.0)
        return fg[None]


def test_model_scale_tolerance_clamps_and_card_reference():
    from cellcount.pipeline import REFERENCE_DIAMETER_PX, model_scale

    m = ThresholdModel()
    assert model_scale(m, None, (100, 100)) == model_scale(m, 0, (100, 100)) == 1.0
    assert model_scale(m, REFERENCE_DIAMETER_PX * 1.2, (100, 100)) == 1.0  # within the 1.25x tolerance
    assert model_scale(m, REFERENCE_DIAMETER_PX * 2, (100, 100)) == pytest.approx(0.5)
    assert model_scale(m, REFERENCE_DIAMETER_PX / 2, (100, 100)) == pytest.approx(2.0)
    assert model_scale(m, 1000, (100, 100)) == 0.25 and model_scale(m, 2, (100, 100)) == 4.0  # clamped
    assert model_scale(m, 2, (9000, 9000)) == 1.0  # upscaled, a 9000^2 image would exceed the pixel cap
    assert model_scale(m, 2, (4096, 4096)) == pytest.approx(2.0)  # capped at 8192^2
    assert model_scale(ThresholdModel(extra={"reference_diameter_px": 30.0}), 60, (100, 100)) == pytest.approx(0.5)


def test_model_scale_is_on_a_grid_so_a_slightly_different_estimate_resizes_alike():
    from cellcount.sizing import REFERENCE_DIAMETER_PX, RESCALE_TOLERANCE, SCALE_STEPS_PER_OCTAVE, model_scale

    if not SCALE_STEPS_PER_OCTAVE:
        pytest.skip("the resize grid is off")
    m = ThresholdModel()
    step = 2 ** (1 / SCALE_STEPS_PER_OCTAVE)
    # estimates 1% apart (what bf16 against fp32, or other tiles, move one by) resize alike, except across a
    # grid line: 2^(1/8) is 12.5% of an octave, 1% is 1.4% of one, so about 11% of such pairs straddle a line
    sizes = np.geomspace(REFERENCE_DIAMETER_PX * 1.6, REFERENCE_DIAMETER_PX * 3.5, 400)
    same = np.mean([model_scale(m, d, (100, 100)) == model_scale(m, 1.01 * d, (100, 100)) for d in sizes])
    assert 0.85 <= same < 1.0
    for diameter in np.geomspace(REFERENCE_DIAMETER_PX / 3.9, REFERENCE_DIAMETER_PX * 3.9, 200):
        scale, exact = model_scale(m, diameter, (100, 100)), REFERENCE_DIAMETER_PX / diameter
        if scale == 1.0:  # inside the tolerance band: left as it is
            assert 1 / RESCALE_TOLERANCE <= exact <= RESCALE_TOLERANCE
            continue
        assert np.log2(scale) * SCALE_STEPS_PER_OCTAVE == pytest.approx(round(np.log2(scale) * SCALE_STEPS_PER_OCTAVE))
        assert 1 / np.sqrt(step) - 1e-9 <= scale / exact <= np.sqrt(step) + 1e-9  # the nearest grid point
        assert not 1 / RESCALE_TOLERANCE <= scale <= RESCALE_TOLERANCE, "a factor outside the band stays outside"
    cap = np.sqrt(8192 ** 2 / 5000 ** 2)  # the pixel cap is not on the grid: it depends on the shape alone
    assert model_scale(m, 2, (5000, 5000)) == pytest.approx(cap)


def test_nucleus_diameter_validation():
    for bad in (1, -5, 5000):
        with pytest.raises(ParameterError, match="nucleus_diameter_px"):
            CountParams(nucleus_diameter_px=bad)
    assert CountParams(nucleus_diameter_px=0).nucleus_diameter_px == 0
    assert CountParams(nucleus_diameter_px=40).input_key() != CountParams().input_key()  # reruns the model


def test_given_diameter_resizes_the_model_input_not_the_outputs(draw_disks):
    from cellcount.pipeline import REFERENCE_DIAMETER_PX

    labels = draw_disks((120, 160), [(30, 40), (30, 110), (85, 75)], [18, 18, 18])
    image = (labels > 0).astype(np.float32)
    model = ThresholdModel()
    res = count_image(image, model, {"nucleus_diameter_px": 2 * REFERENCE_DIAMETER_PX})
    assert model.shapes == [(60, 80)]  # the model saw the image at half size
    assert res.labels.shape == (120, 160) and res.count == 3  # objects at full size
    assert res.model_scale == pytest.approx(0.5)
    assert abs(int((res.labels > 0).sum()) - int((labels > 0).sum())) < 0.05 * (labels > 0).sum()
    pred = predict(image, model, {"nucleus_diameter_px": 2 * REFERENCE_DIAMETER_PX})
    assert pred.model_scale == pytest.approx(0.5) and pred.maps.shape == (1, 120, 160)
    assert predict(image, model).model_scale == 1.0


def test_given_diameter_keeps_a_density_count(draw_disks):
    from cellcount.pipeline import REFERENCE_DIAMETER_PX

    labels = draw_disks((120, 160), [(30, 40), (30, 110), (85, 75)], [18, 18, 18])
    image = (labels > 0).astype(np.float32)
    model = ThresholdModel("density")
    small = count_image(image, model, {"nucleus_diameter_px": 2 * REFERENCE_DIAMETER_PX})
    # the map made at half size sums to (foreground px at half size) / 100; resizing it back keeps that sum
    half = model.predict_maps(np.asarray(__import__("cv2").resize(image, (80, 60), interpolation=3)))
    assert small.density.shape == (120, 160)
    assert small.count_estimate == pytest.approx(float(half.sum()), rel=1e-5)


class ForegroundDensityModel(CountModel):
    """A density model putting 1 / ``area_per_nucleus`` on every pixel above 0.5: a count of foreground
    area / ``area_per_nucleus`` wherever it looks. Records the shapes it is given."""

    def __init__(self, area_per_nucleus: float) -> None:
        self.card = ModelCard(name="fg-density", architecture="fixed", output_kind="density")
        self.area_per_nucleus = area_per_nucleus
        self.shapes: list[tuple[int, int]] = []

    def predict_maps(self, image, *, progress=None, fast=True, device=None):
        self.shapes.append(image.shape)
        return ((image > 0.5) / np.float32(self.area_per_nucleus)).astype(np.float32)[None]


def _stub_size_model(monkeypatch, area_per_nucleus: float) -> ForegroundDensityModel:
    """The size model replaced by a :class:`ForegroundDensityModel`."""
    stub = ForegroundDensityModel(area_per_nucleus)
    monkeypatch.setattr("cellcount.models.size_model_for", lambda *a: pytest.fail("the size model is passed in"))
    return stub


def test_estimated_diameter_is_foreground_area_over_the_size_models_count(monkeypatch):
    from cellcount.sizing import estimate_nucleus_diameter

    stub = _stub_size_model(monkeypatch, 100.0)
    fg = np.zeros((50, 60), np.float32)
    fg[:20, :20] = 0.9  # 400 px of foreground; the size model counts 100 px per nucleus
    assert estimate_nucleus_diameter(fg, fg, stub) == pytest.approx(np.sqrt(4 * 100 / np.pi))
    assert estimate_nucleus_diameter(fg * 0, fg * 0, stub) is None  # no foreground


def test_size_window_is_the_square_with_most_foreground():
    from cellcount.sizing import SIZE_WINDOW_MARGIN_PX, size_window

    fg = np.zeros((900, 700), bool)
    fg[600:700, 450:650] = True  # the dense corner
    fg[100:110, 100:110] = True
    rows, cols = size_window(fg, 256)
    assert rows.stop - rows.start == 256 == cols.stop - cols.start
    assert fg[rows, cols].sum() == fg[600:700, 450:650].sum()
    small = np.zeros((256 + 2 * SIZE_WINDOW_MARGIN_PX, 100), bool)
    assert size_window(small, 256) == (slice(0, small.shape[0]), slice(0, 100))  # fits: the whole image
    assert size_window(np.zeros((1000, 40), bool), 256)[1] == slice(0, 40)  # narrower than the window


def test_size_estimate_reads_only_the_window_and_its_margin(monkeypatch, draw_disks):
    import cellcount.sizing as sz
    from cellcount.sizing import SIZE_WINDOW_MARGIN_PX, estimate_nucleus_diameter

    monkeypatch.setattr(sz, "SIZE_WINDOW_PX", 256)

    labels = draw_disks((800, 800), [(500 + 40 * i, 500 + 40 * j) for i in range(4) for j in range(4)], [9] * 16)
    fg = (labels > 0).astype(np.float32)
    stub = _stub_size_model(monkeypatch, float((labels == 1).sum()))  # one disc's area per nucleus
    d = estimate_nucleus_diameter(fg, fg, stub)
    assert d == pytest.approx(np.sqrt(4 * (labels == 1).sum() / np.pi), rel=1e-4)
    assert stub.shapes == [(256 + 2 * SIZE_WINDOW_MARGIN_PX,) * 2]


def test_auto_nucleus_size_reruns_the_model_at_the_estimated_scale(monkeypatch, draw_disks):
    from cellcount.pipeline import REFERENCE_DIAMETER_PX

    labels = draw_disks((120, 160), [(30, 40), (30, 110), (85, 75)], [18, 18, 18])
    image = (labels > 0).astype(np.float32)
    stub = _stub_size_model(monkeypatch, float((labels == 1).sum()))  # one nucleus per disc
    model = ThresholdModel()
    res = count_image(image, model, {"auto_nucleus_size": True}, size_model=stub)
    assert res.estimated_diameter_px == pytest.approx(36.0, rel=0.03)  # three discs of radius 18
    exact = REFERENCE_DIAMETER_PX / res.estimated_diameter_px
    assert res.model_scale == pytest.approx(exact, rel=0.045)  # on the resize grid: within half a step
    assert model.shapes[0] == (120, 160) and model.shapes[1][0] < 70  # first pass, then at about half size
    assert res.count == 3 and res.labels.shape == (120, 160)
    row = res.summary_row()  # the counts table says what happened
    assert row["model_scale"] == pytest.approx(res.model_scale, abs=1e-4)
    assert row["estimated_diameter_px"] == pytest.approx(res.estimated_diameter_px, abs=0.01)
    # a size the user states wins over the estimate; nuclei near the training size keep the first pass
    model.shapes.clear()
    given = count_image(image, model, {"auto_nucleus_size": True, "nucleus_diameter_px": REFERENCE_DIAMETER_PX})
    assert given.estimated_diameter_px is None and given.model_scale == 1.0 and len(model.shapes) == 1
    stub = _stub_size_model(monkeypatch, float((labels == 1).sum()) / 4)  # four per disc: 18 px, the training size
    model.shapes.clear()
    near = count_image(image, model, {"auto_nucleus_size": True}, size_model=stub)
    assert near.model_scale == 1.0 and len(model.shapes) == 1


def test_density_nucleus_diameter_from_the_maps_own_spread():
    from cellcount.sizing import density_nucleus_diameter
    from cellcount.training.targets import density_from_labels

    for radius in (5, 9, 20):
        labels = np.zeros((300, 300), np.int32)
        rr, cc = np.indices(labels.shape)
        for i, (y, x) in enumerate([(75, 75), (75, 225), (225, 75), (225, 225)]):
            labels[(rr - y) ** 2 + (cc - x) ** 2 <= radius**2] = i + 1
        d = density_nucleus_diameter(density_from_labels(labels))
        assert d == pytest.approx(2 * radius, rel=0.05)  # the target's Gaussians give back the diameter
    assert density_nucleus_diameter(np.zeros((20, 20))) is None


def test_auto_nucleus_size_rescales_density_models_by_their_own_map(monkeypatch, draw_disks):
    import cellcount.pipeline as pl
    from cellcount.pipeline import REFERENCE_DIAMETER_PX

    monkeypatch.setattr("cellcount.models.size_model_for", lambda *a: pytest.fail("density models need no size model"))
    labels = draw_disks((120, 160), [(30, 40)], [18])
    model = ThresholdModel("density")
    monkeypatch.setattr(pl, "density_nucleus_diameter", lambda d: 2 * REFERENCE_DIAMETER_PX)
    res = count_image((labels > 0).astype(np.float32), model, {"auto_nucleus_size": True})
    assert res.estimated_diameter_px == 2 * REFERENCE_DIAMETER_PX and res.model_scale == pytest.approx(0.5)
    assert len(model.shapes) == 2 and res.density.shape == (120, 160)
    monkeypatch.setattr(pl, "density_nucleus_diameter", lambda d: 1.2 * REFERENCE_DIAMETER_PX)  # within 1.25x
    model.shapes.clear()
    near = count_image((labels > 0).astype(np.float32), model, {"auto_nucleus_size": True})
    assert near.model_scale == 1.0 and len(model.shapes) == 1


class DiskMultihead(ThresholdModel):
    """Multihead 'model': foreground = input > 0.5, no borders, density = one unit per connected disc
    (spread over its pixels), at whatever size it gets; records the sizes."""

    def __init__(self) -> None:
        super().__init__("multihead")

    def predict_maps(self, image, *, progress=None, fast=True, device=None):
        from scipy import ndimage as ndi

        self.shapes.append(image.shape)
        fg = (image > 0.5).astype(np.float32)
        labels, n = ndi.label(fg)
        area = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float32)
        density = np.where(labels > 0, 1.0 / np.maximum(area[labels], 1), 0).astype(np.float32)
        return np.stack([fg, np.zeros_like(fg), density])


def test_multihead_size_is_its_own_foreground_area_over_its_own_count(monkeypatch, draw_disks):
    """One pass gives both: no size model, and nuclei of twice the training size are resized by about 0.5."""
    from cellcount.pipeline import REFERENCE_DIAMETER_PX
    from cellcount.sizing import area_count_size

    monkeypatch.setattr("cellcount.models.size_model_for", lambda *a: pytest.fail("multihead models need no size model"))
    d = 2 * REFERENCE_DIAMETER_PX
    centres = [(50 + 80 * i, 50 + 80 * j) for i in range(3) for j in range(3)]
    labels = draw_disks((260, 260), centres, [d / 2] * len(centres))
    model = DiskMultihead()
    maps = model.predict_maps((labels > 0).astype(np.float32))
    assert area_count_size(maps[0], maps[2]).diameter == pytest.approx(d, rel=0.05)
    model.shapes.clear()
    res = count_image((labels > 0).astype(np.float32), model, {"auto_nucleus_size": True})
    assert res.estimated_diameter_px == pytest.approx(d, rel=0.05)
    assert res.model_scale == pytest.approx(0.5, rel=0.05) and len(model.shapes) == 2
    assert res.count == 9 and res.density.shape == (260, 260)
    model.shapes.clear()  # within the estimate's 1.5x band: the first pass is kept
    near = draw_disks((260, 260), centres, [0.65 * REFERENCE_DIAMETER_PX] * len(centres))
    assert count_image((near > 0).astype(np.float32), model, {"auto_nucleus_size": True}).model_scale == 1.0
    assert len(model.shapes) == 1


def test_auto_nucleus_size_without_its_size_model_is_a_clear_error(monkeypatch, tmp_path):
    import cellcount.pipeline as pl
    from cellcount.models import loading

    monkeypatch.setattr(loading, "DEFAULT_WEIGHTS_DIR", tmp_path)  # no shipped weights at all
    with pytest.raises(ParameterError, match="auto_nucleus_size needs the size model 'unet-density'"):
        count_image(np.ones((32, 32), np.float32), ThresholdModel(), {"auto_nucleus_size": True})
    with pytest.raises(ParameterError, match="auto_nucleus_size needs the size model 'unet-density'"):
        pl.predict(np.ones((32, 32), np.float32), ThresholdModel(), {"auto_nucleus_size": True})  # loads it too
    named = ThresholdModel(extra={"size_model": "my-density"})  # a card names its own size model
    with pytest.raises(ParameterError, match="size model 'my-density'"):
        count_image(np.ones((32, 32), np.float32), named, {"auto_nucleus_size": True})


def test_old_split_keys_map_onto_split_mode():
    """Settings files and cards written before split_mode (watershed / use_border_channel) still load."""
    from cellcount.params import upgrade_keys as upgrade_split_keys

    assert upgrade_split_keys({"watershed": False}) == {"split_mode": "off"}
    assert upgrade_split_keys({"watershed": True}) == {"split_mode": "borders"}
    assert upgrade_split_keys({"watershed": True}, borders_available=False) == {"split_mode": "distance"}
    assert upgrade_split_keys({"use_border_channel": False, "min_area_px": 3}) == {
        "split_mode": "distance", "min_area_px": 3}
    assert upgrade_split_keys({"watershed": False, "split_mode": "both"}) == {"split_mode": "both"}  # new key wins
    # an old settings file on a model without a border channel (classical baseline)
    model = load_model(CLASSICAL_NAME)
    old = params_from_json(json.dumps({"params": {"watershed": True, "use_border_channel": True}}))
    assert resolve_params(model, old).split_mode == "distance"
    assert resolve_params(model, {"watershed": False}).split_mode == "off"
    assert "watershed" not in resolve_params(model).to_dict()
    with pytest.raises(ParameterError, match="predicts borders"):
        resolve_params(model, {"split_mode": "borders"})


def test_predict_on_an_already_normalised_image_skips_normalisation(tiny_model, rng):
    """Training validates on items normalised once at load: predict must not stretch them a second time."""
    from cellcount.io.normalize import model_input

    model = tiny_model("unet", "multihead")
    raw = (rng.random((48, 40)) * 900 + 50).astype(np.uint16)
    norm, _ = model_input(raw, grayscale=model.card.normalization.get("grayscale", "mean"))
    params = {"auto_nucleus_size": False}
    from_raw = predict(raw, model, params)
    from_norm = predict(norm, model, params, normalized=True)
    np.testing.assert_allclose(from_norm.maps, from_raw.maps, atol=1e-6)
    np.testing.assert_array_equal(from_norm.image_norm, norm)
    # a dimmed input is taken as it is (a second percentile stretch would brighten it back)
    dim = predict(norm * 0.5, model, params, normalized=True)
    np.testing.assert_array_equal(dim.image_norm, norm * 0.5)
    assert not np.allclose(dim.maps, from_raw.maps, atol=1e-4)


def test_a_hand_made_countparams_warns_that_the_cards_settings_are_not_applied(tiny_model):
    """cc.CountParams(peak_min_distance_px=3) dropped the card's tuned threshold and split mode without a word
    (a dict of overrides keeps them)."""
    import warnings

    import cellcount as cc

    model = tiny_model(kind="mask")
    model.card.postprocess = {"threshold": 0.7, "min_area_px": 5}
    image = np.zeros((32, 32), np.float32)
    with pytest.warns(UserWarning, match=r"leave threshold, min_area_px at the library defaults"):
        cc.count_image(image, model, cc.CountParams())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cc.count_image(image, model, {"min_area_px": 9})  # overrides of the card: no warning
        cc.count_image(image, model, cc.resolve_params(model, {"threshold": 0.6}))
        cc.count_image(image, model, cc.resolve_params(model, {"threshold": 0.5, "min_area_px": 0}))  # defaults, chosen
        cc.count_image(image, model, cc.resolve_params(model, {}).replace(threshold=0.5))
    with pytest.warns(UserWarning, match="leave threshold"):
        cc.count_image(image, model, cc.CountParams().replace(min_area_px=5))


def test_postprocess_refuses_settings_the_prediction_was_not_made_with(tiny_model):
    """invert / nucleus size / flips change the model's input: postprocess used to ignore them and still
    report them in result.params."""
    import cellcount as cc

    model = tiny_model(kind="mask")
    params = cc.resolve_params(model, {"auto_nucleus_size": False})
    pred = cc.predict(np.zeros((32, 32), np.float32), model, params)
    cc.postprocess(pred, params.replace(threshold=0.3))  # postprocessing settings: fine
    with pytest.raises(cc.ParameterError, match="invert changes what the model sees"):
        cc.postprocess(pred, params.replace(invert=not params.invert if isinstance(params.invert, bool) else True))


def test_a_file_or_a_model_name_where_pixels_or_a_model_go_is_a_clear_error():
    import cellcount as cc

    model = cc.load_model(cc.models.CLASSICAL_NAME)
    for wrong in ("a.png", b"\x89PNG"):
        with pytest.raises(cc.ImageReadError, match="read the file first with cellcount.read_image"):
            cc.count_image(wrong, model)
    with pytest.raises(cc.ParameterError, match=r"cellcount.load_model\('unet-mask'\)"):
        cc.count_image(np.zeros((8, 8)), "unet-mask")


def test_filters_that_drop_a_quarter_of_the_objects_flag_the_count(draw_disks):
    """Min. area 200 / Max. area 600 / edge exclusion kept 152 of ~300 nuclei under a green badge."""
    import cellcount as cc

    centres = [(12 + 24 * (k // 8), 12 + 24 * (k % 8)) for k in range(64)]
    radii = [3 if k % 2 else 8 for k in range(64)]  # half of them small
    image = (draw_disks((200, 200), centres, radii) > 0).astype(np.float32)
    model = cc.load_model(cc.models.CLASSICAL_NAME)
    kept = cc.count_image(image, model, {"min_area_px": 5})
    assert not any("filters dropped" in r for r in kept.quality.reasons)
    dropped = cc.count_image(image, model, {"min_area_px": 100})
    assert dropped.quality.flag and any("filters dropped 32 of 64 objects (32 too small" in r
                                        for r in dropped.quality.reasons)
    # the card's own filters (a fine-tune's, tuned on the user's images) drop what they were tuned to drop
    import dataclasses

    params = cc.resolve_params(model, {"min_area_px": 100})
    pred = cc.predict(image, model, params)
    tuned = dataclasses.replace(pred, card_mask_settings=params.values("mask"))
    assert not any("filters dropped" in r for r in cc.postprocess(tuned, params).quality.reasons)
    assert any("filters dropped" in r for r in cc.postprocess(pred, params).quality.reasons), "the classical card's 5"


def test_settings_that_move_the_count_far_from_the_cards_flag_it(draw_disks, monkeypatch):
    """A tester turned the split off: 327 -> 191 objects under "No warning sign". The card settings' count is made
    once per prediction, with the stages a slider move reuses left as they were."""
    import cellcount as cc
    from cellcount import pipeline

    # 16 pairs of touching disks: split, 32 objects; not split, 16
    centres = [(c[0], c[1] + dx) for c in [(20 + 40 * (k // 4), 20 + 40 * (k % 4)) for k in range(16)] for dx in (0, 13)]
    image = (draw_disks((170, 190), centres, 7) > 0).astype(np.float32)
    model = cc.load_model(cc.models.CLASSICAL_NAME)
    pred = cc.predict(image, model, cc.resolve_params(model))
    card = cc.postprocess(pred, cc.resolve_params(model))
    assert card.count == 32 and not any("model card's" in r for r in card.quality.reasons)
    calls, real = [], pipeline.pp.segment
    monkeypatch.setattr(pipeline.pp, "segment", lambda *a, **k: calls.append(1) or real(*a, **k))
    merged = cc.postprocess(pred, cc.resolve_params(model, {"split_mode": "off"}))
    assert merged.count == 16 and len(calls) == 1  # the card settings' count was kept from the count above
    assert ("settings other than the model card's (Split touching nuclei) count 16 fewer objects than the card's "
            "would (16 against 32): check that the change is wanted") in merged.quality.reasons
    again = cc.postprocess(pred, cc.resolve_params(model, {"split_mode": "off", "min_area_px": 16}))
    assert len(calls) == 2 and any("model card's" in r for r in again.quality.reasons)  # its own segment only
    # the auto distance given as the number it stands for is the card's setting (blocks of a large image do that)
    unet = cc.load_model("unet-mask")
    assert cc.resolve_params(unet).min_distance_px == 0 and cc.resolve_params(unet).split_mode == "both"
    fresh = cc.predict(image, unet, cc.resolve_params(unet))
    auto = pipeline.split_distance_px(fresh, cc.resolve_params(unet))
    calls.clear()
    same = cc.postprocess(fresh, cc.resolve_params(unet, {"min_distance_px": auto}))
    assert len(calls) == 1 and fresh.memo["card_count"] == same.count
    small = cc.postprocess(pred, cc.resolve_params(model, {"min_area_px": 16}))  # a change that moves no count
    assert small.count == 32 and not any("model card's" in r for r in small.quality.reasons)


def test_wrong_arguments_to_load_model_and_count_many_say_what_to_pass(samples_dir):
    import cellcount as cc
    from cellcount.batch import count_many

    with pytest.raises(cc.ModelNotFoundError, match="named by a string or a folder path"):
        cc.load_model(None)
    model = cc.load_model(cc.models.CLASSICAL_NAME)
    with pytest.raises(cc.ParameterError, match=r"\(name, source\) pairs"):
        list(count_many([samples_dir / "s01_sparse_small.png"], model))
    pairs = [("s01", samples_dir / "s01_sparse_small.png")]
    assert [it.status for it in count_many(pairs, model)] == ["ok"]


def test_auto_split_distance_follows_the_nucleus_diameter(draw_disks):
    """min_distance_px 0: 0.4 x the diameter given, else estimated, else the training size at the scale run;
    two joined disks (radius 8 and 7) 14 px apart split at 6 px (diameter 16) but not at 20 px (diameter 50)."""
    from cellcount.params import AUTO_DISTANCE_FRACTION
    from cellcount.pipeline import Prediction, split_distance_px

    assert AUTO_DISTANCE_FRACTION == 0.4
    prob = (draw_disks((48, 64), [(24, 18), (24, 32)], [8, 7]) > 0).astype(np.float32)
    params = CountParams(opening_radius_px=0, min_area_px=0, split_mode="distance", min_distance_px=0)

    def result(**kw):
        pred = Prediction("m", "mask", prob[None], prob, False, params.input_key(), **kw)
        return postprocess(pred, params), split_distance_px(pred, params)

    res, used = result(estimated_diameter_px=16.0)
    assert used == res.min_distance_px == 6 and res.count == 2
    res, used = result(estimated_diameter_px=50.0)
    assert used == 20 and res.count == 1
    assert result(reference_diameter_px=18.4, model_scale=0.5)[1] == 15, "no estimate: 18.4 px at half scale"
    assert result(estimated_diameter_px=2.0)[1] == 2, "never below 2 px"
    given = params.replace(nucleus_diameter_px=30.0)
    assert split_distance_px(Prediction("m", "mask", prob[None], prob, False, given.input_key(),
                                        estimated_diameter_px=16.0), given) == 12
    fixed = params.replace(min_distance_px=5)
    assert split_distance_px(Prediction("m", "mask", prob[None], prob, False, (), estimated_diameter_px=50.0),
                             fixed) == 5


def test_density_centres_are_blurred_by_the_size_the_model_read_at():
    """A density map enlarged back from a quarter scale (nuclei 74 px across in the image): its rippled blob is one
    approximate centre; read at 4x (nuclei 5 px across) the same ripples are barely blurred and stay several. The
    count (the integral) does not depend on it."""
    from cellcount.pipeline import Prediction
    from cellcount.postprocess import PEAK_SMOOTH_SHARE

    yy, xx = np.mgrid[:96, :96]
    blob = np.exp(-((yy - 48) ** 2 + (xx - 48) ** 2) / (2 * 20.0 ** 2)) * (1 + 0.15 * np.sin(yy / 2.0) * np.sin(xx / 2.0))
    density = (blob / blob.sum()).astype(np.float32)
    params = CountParams(peak_min_distance_px=3)

    def centres(scale):
        pred = Prediction("d", "density", density[None], density, False, params.input_key(),
                          reference_diameter_px=18.4, model_scale=scale)
        return postprocess(pred, params)

    assert PEAK_SMOOTH_SHARE * 18.4 / 0.25 > 12
    quarter, full = centres(0.25), centres(4.0)
    assert len(quarter.peaks) == 1 and quarter.count == 1
    assert len(full.peaks) > 1, "read at 4x, the same blob is many small nuclei' worth: barely blurred"
    assert quarter.count_estimate == pytest.approx(full.count_estimate)


def test_a_negative_split_distance_names_the_auto_value():
    with pytest.raises(ParameterError, match=r"0 = auto"):
        CountParams(min_distance_px=-1)


def test_a_channel_does_not_apply_to_a_one_channel_image():
    """channel=2 (chosen for composites) on a grayscale image: counted as it is, the flag says so, and the
    prediction postprocesses with the settings it was asked with; a 3-channel image lacking channel 5 fails."""
    model = load_model(CLASSICAL_NAME)
    gray = np.zeros((32, 32), np.uint8)
    gray[8:14, 8:14] = 200
    res = count_image(gray, model, {"channel": 2})
    assert res.count == count_image(gray, model).count == 1
    assert res.quality.flag and any("only one channel" in r for r in res.quality.reasons)
    pred = predict(gray, model, resolve_params(model, {"channel": 2}))
    assert postprocess(pred, resolve_params(model, {"channel": 2})).count == 1
    assert not any("only one channel" in r for r in count_image(gray, model, {"channel": 0}).quality.reasons)
    with pytest.raises(ParameterError, match="channel 5 is out of range"):
        count_image(np.dstack([gray] * 3), model, {"channel": 5})


def test_plain_mistakes_get_messages_not_internals():
    """A tester's slips: a 1-D array, a model name to resolve_params, a dict or a model to postprocess."""
    from cellcount.errors import ImageReadError

    model = load_model(CLASSICAL_NAME)
    with pytest.raises(ImageReadError, match=r"shape \(H, W\) or \(H, W, C\), got shape \(100,\)"):
        count_image(np.zeros(100), model)
    with pytest.raises(ParameterError, match="takes a loaded model, got the name 'unet-mask'"):
        resolve_params("unet-mask", {"threshold": 0.3})
    for call in (predict, count_image):  # "resolve_params takes a loaded model" named no function the user called
        with pytest.raises(ParameterError, match=rf"{call.__name__} takes a loaded model, got 'unet-mask'"):
            call(np.zeros((20, 20)), "unet-mask")
        with pytest.raises(ParameterError, match=rf"{call.__name__} takes one image .* a list of 2: count arrays one"):
            call([np.zeros((20, 20))] * 2, model)  # it said "looks like a stack or a channels-first array"
    pred = predict(np.zeros((20, 20)), model)
    for wrong in ({"threshold": 0.3}, model):
        with pytest.raises(ParameterError, match="postprocess takes CountParams"):
            postprocess(pred, wrong)
    with pytest.raises(ParameterError, match="postprocess takes the Prediction that predict"):
        postprocess(model, resolve_params(model))  # an AttributeError on "input_key" (a tester)
    import cellcount as cc

    with pytest.raises(ParameterError, match="count_file takes a loaded model, got 'unet-mask'"):
        cc.count_file(b"not read", "unet-mask")  # it said "resolve_params takes ..."
    with pytest.raises(ParameterError, match="count_many takes a loaded model"):
        list(cc.batch.count_many([("a.png", b"x")], "unet-mask"))
    assert "count_file" in dir(cc), "help(cellcount) left out the lazily loaded count_file"


def test_a_size_model_that_cannot_size_nuclei_is_refused(tiny_model):
    """A mask model given as its own size model counted 184 for 145 (flagged only as two counts 16-fold apart); a
    name gave "'str' object has no attribute 'predict_maps'" (a tester)."""
    mask = tiny_model(kind="mask")
    image = np.zeros((64, 64), np.float32)
    params = {"auto_nucleus_size": True, "nucleus_diameter_px": None}
    with pytest.raises(ParameterError, match=r"size_model must be a density model .* got 'tiny-unet-mask' \(mask\)"):
        count_image(image, mask, params, size_model=mask)
    with pytest.raises(ParameterError, match="size_model takes a loaded density model, got 'unet-density'"):
        predict(image, mask, params, size_model="unet-density")
    assert predict(image, mask, params, size_model=tiny_model(kind="density")).maps.shape[-2:] == (64, 64)


def test_a_models_first_use_is_timed_as_setup_not_as_its_model_time(monkeypatch):
    """The backend choice and the runner are made before the clock starts (Compare showed one of two models of
    the same size 4x slower for its first use); the time is reported once as "setup"."""
    import time as _time

    import cellcount as cc
    from cellcount import pipeline

    model = cc.load_model(cc.models.CLASSICAL_NAME)
    calls = []

    def slow_prepare(m, fast, backend):
        calls.append(m)
        if m is model:
            _time.sleep(0.05)

    monkeypatch.setattr(pipeline, "_prepare", slow_prepare)
    image = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)
    seconds = cc.predict(image, model).seconds
    assert seconds["setup"] >= 0.05 and seconds["model"] < 0.05 and model in calls


def test_objects_are_measured_on_the_channel_counted():
    """The Count page passes the whole multichannel image: intensities were the mean of all channels while the CLI,
    which decodes only the chosen one, measured that one (a tester: max 1263.33 against 1403)."""
    import cellcount as cc

    img = np.zeros((64, 64, 3), np.uint16)
    img[20:30, 20:30, 1] = 1000  # the nuclei, in channel 1
    img[..., 0] = 300  # another stain everywhere
    model = cc.load_model("classical-otsu")
    result = cc.count_image(img, model, {"channel": 1})
    alone = cc.count_image(img[..., 1], model)
    assert result.count == alone.count == 1
    assert result.objects["max_intensity"].tolist() == alone.objects["max_intensity"].tolist() == [1000]


def test_a_few_nuclei_in_a_wide_background_are_sized_by_the_density_on_them(draw_disks):
    """A little density over every background pixel of a near-empty field added up to hundreds of "nuclei":
    their area over that count read as 1-3 px nuclei, and the image was enlarged 4x and its noise counted (1438
    objects for 1 nucleus). The count that sizes them is the mass near the foreground when that is a small share;
    a field whose density lies on its nuclei is sized as before."""
    from cellcount.sizing import area_count_size

    d = 16.0
    one = (draw_disks((512, 512), [(200, 300)], [d / 2]) > 0).astype(np.float32)
    density = np.full(one.shape, 100.0 / one.size, np.float32)  # 100 "nuclei" of background, spread thin
    density += one / one.sum()  # the nucleus: unit mass on it
    est = area_count_size(one, density)
    assert est.diameter == pytest.approx(d, rel=0.1) and est.count == pytest.approx(101, rel=0.01)
    centres = [(40 + 60 * i, 40 + 60 * j) for i in range(8) for j in range(8)]
    many = (draw_disks((512, 512), centres, [d / 2] * len(centres)) > 0).astype(np.float32)
    labels_mass = many / many.sum() * len(centres)
    thin = np.full(many.shape, 20.0 / many.size, np.float32)  # a fifth of the mass off the nuclei: kept in the count
    expected = float(np.sqrt(4 * many.sum() / (np.pi * (len(centres) + 20))))
    assert area_count_size(many, labels_mass + thin).diameter == pytest.approx(expected, rel=1e-4)


def test_a_settings_file_with_several_mistakes_names_them_all():
    """A tester's file with a bad Min. area and a threshold of 1.7 was refused for the threshold alone."""
    from cellcount.errors import ParameterError
    from cellcount.settingsfile import params_from_json

    with pytest.raises(ParameterError) as err:
        params_from_json('{"params": {"min_area_px": "abc", "threshold": 1.7}}')
    assert "min_area_px must be a whole number" in str(err.value) and "threshold must be within [0, 1]" in str(err.value)
    with pytest.raises(ParameterError) as err:  # several unknown names: named together, the valid ones listed once
        params_from_json('{"params": {"data": 1, "split": 2, "threshold": 2}}')
    assert "unknown parameters ['data', 'split']" in str(err.value) and str(err.value).count("valid:") == 1
    with pytest.raises(ParameterError) as err:  # a valid pair beside an unknown name: read with the file's values
        params_from_json('{"params": {"min_area_px": 2, "max_area_px": 5, "foo": 1}}')
    assert "unknown parameters ['foo']" in str(err.value) and "Max. area" not in str(err.value)
    with pytest.raises(ParameterError) as err:
        params_from_json('{"params": {"low_pct": 99, "high_pct": 1, "foo": 2}}')
    assert "Low percentile (99) must be below the High percentile (1)" in str(err.value)
    with pytest.raises(ParameterError, match="low_pct"):  # a mistake of two values together still says itself
        params_from_json('{"params": {"low_pct": 99.5, "high_pct": 0.5}}')


def test_each_result_names_the_backend_its_network_ran_in(tiny_model, draw_disks):
    """Python and the CLI counted one image an object apart, each process having chosen its own backend: which
    ran is part of the result and of its counts row."""
    from cellcount.inference import default_device

    if str(default_device()) != "cpu":
        pytest.skip("a GPU runs PyTorch whatever backend is asked: the names are the device's")
    image = ((draw_disks((64, 64), [(20, 20), (40, 44)], 6) > 0) * 200).astype(np.uint8)
    model = tiny_model()
    fast = count_image(image, model, {"auto_nucleus_size": False}, backend="torch")
    assert fast.backend == "torch" and fast.summary_row()["backend"] == "torch"
    assert count_image(image, model, {"auto_nucleus_size": False}, fast=False).backend == "torch-plain"
    assert count_image(image, load_model(CLASSICAL_NAME)).backend is None


def test_the_environments_backend_is_run_where_none_is_asked(tiny_model, draw_disks, monkeypatch):
    """`count --backend onnxruntime --workers 2` set $CELLCOUNT_BACKEND on the workers, which counted in bf16 by their
    own timing, while the settings file said onnxruntime (a tester): a call that asks none runs the environment's."""
    from cellcount.inference import default_device
    from cellcount.models.backends import available_backends

    if str(default_device()) != "cpu":
        pytest.skip("a GPU runs PyTorch whatever backend is asked")
    image = ((draw_disks((64, 64), [(20, 20), (40, 44)], 6) > 0) * 200).astype(np.uint8)
    model = tiny_model()
    for name in available_backends():
        monkeypatch.setenv("CELLCOUNT_BACKEND", name)
        assert count_image(image, model, {"auto_nucleus_size": False}).backend == name
    assert count_image(image, model, {"auto_nucleus_size": False}, backend="torch").backend == "torch", "asked wins"
    monkeypatch.setenv("CELLCOUNT_BACKEND", "fp16")
    with pytest.raises(ParameterError, match="CELLCOUNT_BACKEND must be one of"):
        count_image(image, model, {"auto_nucleus_size": False})


def test_the_backend_is_timed_in_the_process_as_every_entry_point_runs_it(tiny_model, monkeypatch):
    """The CLI keeps freed memory, which times PyTorch faster: a Python session that did not timed under another
    key and chose another backend than the CLI for the same model."""
    from cellcount import memory
    from cellcount.models import autotune

    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append("kept"))
    monkeypatch.setattr(autotune, "choose_backend", lambda *a, **k: calls.append("timed") or autotune.BackendChoice(
        backend="torch", reason="requested"))
    tiny_model().backend_choice("torch")
    assert calls == ["kept", "timed"]


def test_settings_by_their_old_names_still_count_from_python(tiny_model, draw_disks):
    """The check for settings that do nothing sorted the names given before leaving out the old ones: a settings
    file of an earlier version (``watershed``) crashed count_image."""
    image = ((draw_disks((64, 64), [(20, 20)], 6) > 0) * 200).astype(np.uint8)
    assert count_image(image, tiny_model(), {"watershed": False, "auto_nucleus_size": False}).params.split_mode == "off"


def test_a_model_that_is_none_is_refused_saying_how_to_load_one():
    with pytest.raises(ParameterError, match=r"takes a model loaded by cellcount.load_model\(name\), got None"):
        count_image(np.zeros((16, 16), np.uint8), None)


def test_settings_that_do_nothing_for_the_model_are_said_from_python_as_on_the_command_line(tiny_model, draw_disks):
    image = ((draw_disks((64, 64), [(20, 20)], 6) > 0) * 200).astype(np.uint8)
    with pytest.warns(UserWarning, match=r"do nothing here: threshold, min_area_px \(tiny-unet-density: a density"):
        count_image(image, tiny_model(kind="density"), {"threshold": 0.2, "min_area_px": 50, "auto_nucleus_size": False})


def test_a_count_of_nothing_is_flagged_where_no_signal_could_be_measured(tiny_model):
    """With no object found every signal is unmeasured, so no limit could fire: 0 for 73 nuclei read as fine."""
    from cellcount.pipeline import NOTHING_FOUND

    image = np.random.default_rng(0).integers(0, 40, (64, 64)).astype(np.uint8)
    model = tiny_model()
    pred = predict(image, model, {"auto_nucleus_size": False})
    pred.maps[:] = 0.0  # an untrained network's map made empty, as a model that recognises nothing gives it
    r = postprocess(pred, resolve_params(model, {"auto_nucleus_size": False}))
    assert r.count == 0 and r.quality.flag and r.quality.reasons == (NOTHING_FOUND,)
    # the filters dropped what was found: their own reason says so, not that the model found nothing
    pred.maps[0][8:20, 8:20] = 1.0
    pred.memo.clear()
    dropped = postprocess(pred, resolve_params(model, {"auto_nucleus_size": False, "min_area_px": 1000}))
    assert dropped.count == 0 and NOTHING_FOUND not in dropped.quality.reasons


def test_a_pillow_image_is_counted_by_its_colours_not_its_palette_indices(draw_disks):
    """count_image(PIL palette image) counted the palette's indices as intensities (48 for 71 on a DSB image);
    read_image of the same file gives its colours."""
    from PIL import Image

    from cellcount.models import CLASSICAL_NAME

    model = load_model(CLASSICAL_NAME)
    labels = draw_disks((96, 96), [(20, 20), (20, 70), (70, 30), (70, 75)], 9)
    pal = Image.fromarray((labels == 0).astype(np.uint8), mode="P")  # nuclei index 0, background index 1
    pal.putpalette([250, 250, 250, 5, 5, 5])  # bright nuclei on a dark background: the indices read inverted
    dark = {"invert": False}  # fluorescence: bright objects
    assert count_image(pal, model, dark).count == count_image(np.asarray(pal.convert("RGB")), model, dark).count == 4
    assert count_image(np.asarray(pal), model, dark).count != 4, "the indices alone count otherwise"


def test_a_models_own_settings_passed_back_say_nothing_of_inert_ones(tiny_model, draw_disks, recwarn):
    """json.loads(resolve_params(m).to_json()) passed back warned that the model's own density settings do
    nothing: only settings that differ from the card's are said."""
    import json

    model = tiny_model()
    image = ((draw_disks((64, 64), [(20, 20)], 6) > 0) * 200).astype(np.uint8)
    own = {**json.loads(resolve_params(model).to_json()), "auto_nucleus_size": False}
    count_image(image, model, own)
    assert not [w for w in recwarn if "do nothing here" in str(w.message)]
