"""The novelty signal: encoder features, the reference beside the weights, the flag's limit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellcount.errors import ModelCardError, WeightsIntegrityError
from cellcount.novelty import NOVELTY_FILE, NoveltyReference, encoder_features, image_features
from cellcount.quality import NOVELTY_QUANTILE, QualityRule, calibrate_rule


def _cluster(rng, n=40, f=16, centre=0.0):
    return (centre + rng.normal(0, 1, (n, f))).astype(np.float32)


def test_an_image_like_the_training_images_reads_about_one_and_an_unlike_one_far_more(rng):
    train = _cluster(rng)
    ref = NoveltyReference.fit(train)
    like = np.median([ref.score(x) for x in _cluster(rng, 30)])
    unlike = ref.score(np.full(16, 6.0, np.float32))
    assert 0.7 < like < 1.4
    assert unlike > 3 * like


def test_reference_needs_more_images_than_neighbours(rng):
    with pytest.raises(ValueError, match="more than 3"):
        NoveltyReference.fit(_cluster(rng, n=3))


def test_reference_round_trips_and_refuses_a_replaced_file(tmp_path, rng):
    ref = NoveltyReference.fit(_cluster(rng))
    sha = ref.save(tmp_path / NOVELTY_FILE)
    back = NoveltyReference.load(tmp_path / NOVELTY_FILE, sha)
    x = _cluster(rng, 1)[0]
    assert back.score(x) == pytest.approx(ref.score(x))
    NoveltyReference.fit(_cluster(rng, centre=1.0)).save(tmp_path / NOVELTY_FILE)
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        NoveltyReference.load(tmp_path / NOVELTY_FILE, sha)
    with pytest.raises(WeightsIntegrityError, match="missing"):
        NoveltyReference.load(tmp_path / "nothing.safetensors", sha)


def test_encoder_features_pool_the_coarse_levels_of_any_image_size(tiny_model, rng):
    net = tiny_model().net  # base width 4, depth 2: level 2 has 16 channels
    for shape in ((64, 64), (37, 51), (5, 3)):
        f = encoder_features(net, rng.random(shape, dtype=np.float32))
        assert f.shape == (16,) and np.isfinite(f).all()
    # the window is the part of the image with the most foreground, at the model's scale
    img = np.zeros((600, 600), np.float32)
    img[400:560, 420:580] = rng.random((160, 160))
    weight = np.zeros_like(img)
    weight[400:560, 420:580] = 1.0
    assert np.allclose(image_features(net, img, weight, 1.0), encoder_features(net, img[304:560, 324:580]), atol=1e-5)


def test_count_carries_novelty_and_flags_an_image_past_the_limit(tiny_model, rng, draw_disks):
    import dataclasses

    from cellcount.pipeline import count_image

    model = tiny_model()
    image = (draw_disks((96, 96), [(30, 30), (60, 60)], 8) > 0).astype(np.float32)
    feats = [image_features(model.net, np.roll(image, s, axis=1), image, 1.0) for s in range(0, 40, 4)]
    model.novelty = NoveltyReference.fit(np.stack(feats))
    result = count_image(image, model)
    value = result.quality.signals["novelty"]
    assert np.isfinite(value) and value > 0
    model.card = dataclasses.replace(model.card, extra={"quality": {"rule": {"max_novelty": value / 2}}})
    flagged = count_image(image, model)
    assert flagged.quality.flag
    assert any("unlike the images the model was trained on" in r for r in flagged.quality.reasons)
    model.novelty = None
    assert "novelty" not in count_image(image, model).quality.signals or np.isnan(
        count_image(image, model).quality.signals["novelty"])


def test_model_folder_loads_its_reference_and_refuses_a_path_outside_it(tiny_model, tmp_path, rng):
    from cellcount.models import save_model
    from cellcount.models.loading import load_model_folder

    model = tiny_model()
    folder = save_model(model.net, model.card, tmp_path / "m")
    sha = NoveltyReference.fit(_cluster(rng)).save(folder / NOVELTY_FILE)
    card = json.loads((folder / "card.json").read_text())
    card.setdefault("extra", {})["novelty"] = {"file": NOVELTY_FILE, "sha256": sha}
    (folder / "card.json").write_text(json.dumps(card))
    assert load_model_folder(folder).novelty is not None
    card["extra"]["novelty"]["file"] = "../elsewhere.safetensors"
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="novelty"):
        load_model_folder(folder)


def test_calibration_sets_the_novelty_limit_first_and_fits_the_rest_in_what_is_left():
    rng = np.random.default_rng(3)
    n = 100
    novelty = rng.uniform(0.5, 1.5, n)
    disagreement = rng.uniform(0, 0.1, n)
    errors = rng.uniform(0, 0.1, n)
    bad = rng.choice(n, 10, replace=False)
    disagreement[bad] = rng.uniform(0.3, 0.6, 10)
    errors[bad] = rng.uniform(0.2, 0.5, 10)
    signals = [{"count_disagreement": d, "novelty": v, "size_at_limit": 0.0} for d, v in zip(disagreement, novelty)]
    rule, rep = calibrate_rule(signals, errors, max_flagged=0.2)
    assert rule.max_novelty == pytest.approx(np.quantile(novelty, NOVELTY_QUANTILE), abs=1e-4)
    assert "max_novelty" in rep["fitted_limits"]
    assert rep["flagged_share"] <= 0.2 and rep["large_errors_flagged_share"] == 1.0
    # no reference, no limit: a fine-tune's training images carry no novelty
    rule2, _ = calibrate_rule([{k: v for k, v in s.items() if k != "novelty"} for s in signals], errors)
    assert rule2.max_novelty is None
    assert QualityRule.from_card(type("C", (), {"extra": {"quality": {"rule": rule.to_dict()}}})()) == rule


def test_bf16_features_stay_close_to_fp32_and_follow_the_fast_paths_precision(tiny_model, rng, monkeypatch):
    from cellcount import pipeline
    from cellcount.models.autotune import BackendChoice

    model = tiny_model()
    img = rng.random((64, 64), dtype=np.float32)
    a, b = encoder_features(model.net, img), encoder_features(model.net, img, bf16=True)
    assert np.corrcoef(a, b)[0, 1] > 0.99
    model.novelty = NoveltyReference.fit(rng.normal(size=(8, 16)))
    seen = []
    monkeypatch.setattr(pipeline, "image_novelty", lambda *a, bf16, **k: seen.append(bf16) or 1.0)
    monkeypatch.setattr(model, "backend_choice", lambda requested="auto": BackendChoice(requested, "requested"))
    # the maps themselves do not matter here (and a CPU without bf16 could not build that backend)
    monkeypatch.setattr(model, "predict_maps", lambda view, **kw: np.zeros((2, *view.shape), np.float32))
    pipeline.predict(img, model, backend="bf16")
    pipeline.predict(img, model, backend="torch")
    pipeline.predict(img, model, fast=False)
    assert seen == [True, False, False], "bf16 only where the fast path runs in bf16"
