"""The novelty signal: encoder features, the reference beside the weights, the flag's limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cellcount.errors import ModelCardError, WeightsIntegrityError
from cellcount.novelty import NOVELTY_FILE, NoveltyReference, encoder_features, image_features
from cellcount.quality import NOVELTY_QUANTILE, QualityRule, calibrate_rule

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


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
    mode = (tmp_path / NOVELTY_FILE).stat().st_mode & 0o777
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert mode == plain.stat().st_mode & 0o777, "readable as the weights beside it are (safetensors wrote 0600)"
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


def test_count_carries_novelty_and_flags_an_image_past_the_limit(tiny_model, rng, draw_disks, monkeypatch):
    import dataclasses

    from cellcount import pipeline
    from cellcount.pipeline import count_image

    model = tiny_model()
    centres = [(y, x) for y in range(20, 240, 40) for x in range(20, 240, 40)]
    image = (draw_disks((256, 256), centres, 8) > 0).astype(np.float32)
    feats = [image_features(model.net, np.roll(image, s, axis=1), image, 1.0) for s in range(0, 40, 4)]
    model.novelty = NoveltyReference.fit(np.stack(feats))
    # the untrained network's maps need not show nuclei: the window is judged on the image's own disks here
    monkeypatch.setattr(model, "predict_maps", lambda view, **kw: np.stack([view, np.zeros_like(view)]))
    result = count_image(image, model)
    value = result.quality.signals["novelty"]
    assert np.isfinite(value) and value > 0
    model.card = dataclasses.replace(model.card, extra={"quality": {"rule": {"max_novelty": value / 2}}})
    flagged = count_image(image, model)
    assert flagged.quality.flag
    reason = next(r for r in flagged.quality.reasons if "unlike the images this model was trained on" in r)
    assert "check the nucleus size setting" in reason and f"flagged from {value / 2:.2f}" in reason and "; " not in reason
    calls = []
    monkeypatch.setattr(pipeline, "image_novelty", lambda *a, **k: calls.append(1) or 1.0)
    params = pipeline.resolve_params(model, None)
    pred = pipeline.predict(image, model, params)
    for threshold in (0.3, 0.5, 0.7):  # a slider move reruns postprocessing, never the encoder
        pipeline.postprocess(pred, params.replace(threshold=threshold))
    assert len(calls) == 1
    model.novelty = None
    assert np.isnan(count_image(image, model).quality.signals["novelty"])


def test_nothing_to_judge_in_an_empty_or_small_window(tiny_model, rng):
    net = tiny_model().net
    img = rng.random((400, 400), dtype=np.float32)
    weight = np.zeros_like(img)
    assert image_features(net, img, weight, 1.0) is None, "no nucleus in the window (an empty block of a mosaic)"
    assert image_features(net, img, weight, 1.0, density=True) is None
    weight[100:150, 100:150] = 1.0
    assert image_features(net, img, weight, 1.0) is not None
    assert image_features(net, img[:150, :150], weight[:150, :150], 1.0) is None, "150 px: too small to judge"
    assert image_features(net, img[:150, :150], weight[:150, :150], 1.7) is not None, "255 px at the model's scale"


def test_an_image_too_small_for_the_main_window_is_judged_against_the_small_windows_reference(tiny_model, rng):
    from cellcount.novelty import SMALL_WINDOW_PX, fit_reference, image_novelty, window_for

    assert [window_for((h, w), 1.0) for h, w in ((400, 300), (239, 500), (150, 150), (119, 400))] == \
        [256, SMALL_WINDOW_PX, SMALL_WINDOW_PX, None]
    assert window_for((150, 150), 1.7) == 256, "255 px at the model's scale"
    net = tiny_model().net
    views = []
    for i in range(12):  # six large training images and six small ones, nuclei everywhere
        side = 300 if i % 2 else 150
        img = rng.random((side, side), dtype=np.float32)
        views.append((img, np.ones_like(img), 1.0))
    ref, n_big, n_small = fit_reference(net, views)
    assert (n_big, n_small) == (6, 12), "every image has a small window; only the large ones a main one"
    assert ref.small is not None and len(ref.small.features) == 12 and len(ref.features) == 6
    small = rng.random((140, 140), dtype=np.float32)
    got = image_novelty(net, ref, small, np.ones_like(small), 1.0)
    want = ref.small.score(image_features(net, small, np.ones_like(small), 1.0, window_px=SMALL_WINDOW_PX))
    assert got == pytest.approx(want) and 0 < got < 3, "like the training images' small windows"
    import dataclasses

    assert image_novelty(net, dataclasses.replace(ref, small=None), small, np.ones_like(small), 1.0) is None, \
        "a reference without the small window (written before it existed) judges no small image"
    assert image_novelty(net, ref, small[:110, :110], np.ones((110, 110), np.float32), 1.0) is None, "under 120 px"


def test_the_small_reference_round_trips_and_an_old_file_without_it_still_loads(tmp_path, rng):
    import dataclasses

    ref = dataclasses.replace(NoveltyReference.fit(_cluster(rng)), small=NoveltyReference.fit(_cluster(rng, 20, centre=2.0)))
    back = NoveltyReference.load(tmp_path / NOVELTY_FILE, ref.save(tmp_path / NOVELTY_FILE))
    x = _cluster(rng, 1, centre=2.0)[0]
    assert back.small is not None and back.small.score(x) == pytest.approx(ref.small.score(x))
    old = NoveltyReference.fit(_cluster(rng))
    assert NoveltyReference.load(tmp_path / "old.safetensors", old.save(tmp_path / "old.safetensors")).small is None
    bad = dataclasses.replace(ref, small=NoveltyReference.fit(_cluster(rng, f=8)))
    with pytest.raises(WeightsIntegrityError, match="not a usable"):
        NoveltyReference.load(tmp_path / "bad.safetensors", bad.save(tmp_path / "bad.safetensors"))


def test_the_window_is_resized_by_the_models_scale(tiny_model, rng):
    from cellcount.sizing import resize_image

    net = tiny_model().net
    img = rng.random((600, 600), dtype=np.float32)
    weight = np.zeros_like(img)
    weight[300:500, 300:500] = 1.0
    got = image_features(net, img, weight, 2.0)  # 128 px at the image's size -> 256 at the model's
    rows, cols = __import__("cellcount.novelty", fromlist=["novelty_window"]).novelty_window(weight, 2.0)
    assert rows.stop - rows.start == 128
    assert np.allclose(got, encoder_features(net, resize_image(img[rows, cols], 2.0)), atol=1e-5)


def test_score_uses_k_neighbours_in_units_of_each_features_spread():
    train = np.zeros((6, 2), np.float32)
    train[:, 0] = [0, 1, 2, 3, 4, 5]  # feature 0 spreads widely, feature 1 not at all (std ~ 1e-6)
    train[:, 1] = [0, 0, 0, 0, 0, 1e-3]
    ref = NoveltyReference.fit(train, k=2)
    one = NoveltyReference(ref.features, ref.mean, ref.std, ref.scale, k=1)
    x = np.array([0.0, 0.0], np.float32)
    assert ref.score(x) > one.score(x), "the mean of 2 neighbours is further than the nearest"
    moved = ref.score(np.array([0.0, 2e-3], np.float32))
    assert moved > 5 * ref.score(x), "a small change in a feature that never varies is a large one"


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
    card["extra"]["novelty"] = {"file": NOVELTY_FILE}  # no sha256
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsIntegrityError, match="without its sha256"):
        load_model_folder(folder)
    assert load_model_folder(folder, with_novelty=False).novelty is None, "how a new reference is written"
    wrong = NoveltyReference.fit(_cluster(rng, f=7)).save(folder / NOVELTY_FILE)  # another encoder's features
    card["extra"]["novelty"] = {"file": NOVELTY_FILE, "sha256": wrong}
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsIntegrityError, match="other settings"):
        load_model_folder(folder)
    card["extra"]["novelty"] = {"file": NOVELTY_FILE, "sha256": sha, "window_px": 128}
    NoveltyReference.fit(_cluster(rng)).save(folder / NOVELTY_FILE)
    card["extra"]["novelty"]["sha256"] = __import__("hashlib").sha256((folder / NOVELTY_FILE).read_bytes()).hexdigest()
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsIntegrityError, match="rerun"):
        load_model_folder(folder)
    (folder / NOVELTY_FILE).write_bytes(b"not a safetensors file")
    card["extra"]["novelty"] = {"file": NOVELTY_FILE,
                                "sha256": __import__("hashlib").sha256(b"not a safetensors file").hexdigest()}
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsIntegrityError, match="not a novelty reference"):
        load_model_folder(folder)


def test_a_card_copied_to_another_folder_drops_the_reference(tiny_model, tmp_path, rng):
    import copy

    from cellcount.models import save_model
    from cellcount.models.loading import load_model_folder

    model = tiny_model()
    folder = save_model(model.net, model.card, tmp_path / "a")
    sha = NoveltyReference.fit(_cluster(rng)).save(folder / NOVELTY_FILE)
    model.card.extra = {**model.card.extra, "novelty": {"file": NOVELTY_FILE, "sha256": sha}}
    save_model(model.net, model.card, folder)
    assert load_model_folder(folder).novelty is not None
    other = save_model(model.net, copy.deepcopy(model.card), tmp_path / "b")
    assert load_model_folder(other).novelty is None


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
    assert (novelty >= rule.max_novelty).sum() == round(n * (1 - NOVELTY_QUANTILE)), "the least familiar twentieth"
    assert "max_novelty" in rep["fitted_limits"]
    assert rep["flagged_share"] <= 0.2 and rep["large_errors_flagged_share"] == 1.0
    # no reference, no limit: a fine-tune's training images carry no novelty
    rule2, _ = calibrate_rule([{k: v for k, v in s.items() if k != "novelty"} for s in signals], errors)
    assert rule2.max_novelty is None
    assert QualityRule.from_card(type("C", (), {"extra": {"quality": {"rule": rule.to_dict()}}})()) == rule
    # the budget holds with the novelty limit on; few or equal values get a range limit, never a flag each
    assert calibrate_rule(signals, errors, max_flagged=0.02)[1]["flagged_share"] <= 0.02
    assert calibrate_rule(signals, errors, max_flagged=0.0)[1]["flagged_share"] == 0.0
    assert calibrate_rule([{"novelty": 1.0}] * 30, np.zeros(30))[1]["flagged_share"] == 0.0
    assert calibrate_rule(signals[:5], errors[:5])[0].max_novelty > novelty[:5].max()


def test_bf16_novelty_stays_close_to_fp32_and_follows_the_fast_paths_precision(tiny_model, rng, monkeypatch):
    import cellcount as cc
    from cellcount import pipeline
    from cellcount.io import read_image
    from cellcount.models.autotune import BackendChoice

    shipped = cc.load_model("unet-mask")
    p = pipeline.predict(read_image(SAMPLES / "s01_sparse_small.png"), shipped)
    a, b = (shipped.novelty.score(image_features(shipped.net, p.image_norm, p.maps[0], p.model_scale, bf16=x))
            for x in (False, True))
    assert b == pytest.approx(a, rel=0.05)

    model = tiny_model()
    model.novelty = NoveltyReference.fit(rng.normal(size=(8, 16)))
    img = rng.random((256, 256), dtype=np.float32)
    seen = []
    monkeypatch.setattr(pipeline, "image_novelty", lambda *a, bf16, **k: seen.append(bf16) or 1.0)
    monkeypatch.setattr(model, "backend_choice", lambda requested="auto": BackendChoice(requested, "requested"))
    # the maps themselves do not matter here (and a CPU without bf16 could not build that backend)
    monkeypatch.setattr(model, "predict_maps", lambda view, **kw: np.zeros((2, *view.shape), np.float32))
    pipeline.predict(img, model, backend="bf16")
    pipeline.predict(img, model, backend="torch")
    pipeline.predict(img, model, fast=False)
    assert seen == [True, False, False], "bf16 only where the fast path runs in bf16"


@pytest.mark.slow
def test_shipped_references_fit_their_encoders_and_read_a_sample_as_familiar():
    import cellcount as cc
    from cellcount.io import read_image
    from cellcount.novelty import feature_count

    for name in ("unet-mask", "multihead-unet", "unet-density"):
        model = cc.load_model(name)
        assert model.novelty is not None and model.novelty.features.shape[1] == feature_count(model.net) == 448
        result = cc.count_image(read_image(SAMPLES / "s01_sparse_small.png"), model)
        assert 0 < result.quality.signals["novelty"] < model.card.extra["quality"]["rule"]["max_novelty"] * 3
        assert np.isnan(cc.count_image(np.zeros((300, 300), np.float32), model).quality.signals["novelty"]), \
            "a blank image shows nothing to judge"


def test_flag_summary_explains_the_rule_in_words():
    import cellcount as cc
    from cellcount.io import readable_paths
    from cellcount.quality import quality_summary

    assert readable_paths("53 images of ../shared/datasets/dsb2018 (split val)") == "53 images of dsb2018 (split val)"
    text = " ".join(quality_summary(cc.models.model_card("unet-mask")))
    # in a user's words: no script, split code or relative path (they stay in card.json)
    assert "calibrated on 53 DSB 2018 validation images (no shipped model trained on them" in text
    assert "../" not in text and "scripts/" not in text and "split val" not in text
    from cellcount.quality import _plain_source

    assert _plain_source("53 images of ../shared/datasets/dsb2018 (split val) by scripts/quality_report.py; "
                         "max_flip_disagreement from the same images with --test-time-flips") == (
        "53 DSB 2018 validation images (no shipped model trained on them; the flips' limit from the same images "
        "counted with flips)")
    # the user's own folder: no claim about training, no "all" split
    assert _plain_source("20 images of /data/lab/nuclei (split all) by cellcount evaluate") == "20 images of nuclei"
    assert _plain_source("20 images of /data/lab/nuclei (split val)") == "20 images of nuclei (validation split)"
    assert _plain_source("the 12 training images of the fine-tune") == "the 12 training images of the fine-tune"
    assert "training images as the model's encoder sees them" in text
    assert "No novelty reference" in " ".join(quality_summary(cc.models.model_card("classical-otsu")))
    # a fine-tune's reference holds its held-out images too: not called "training images" (a tester counted 8 of 6)
    card = cc.models.model_card("unet-mask")
    card.extra = {**card.extra, "novelty": {**card.extra["novelty"], "images": 8,
                                            "fitted_on": "the training and held-out images of the fine-tune (x)"}}
    assert "compared with 8 of your images (those it was fine-tuned on and those held out)" in " ".join(
        quality_summary(card))


def test_the_window_is_exactly_its_size_wherever_the_image_is_larger():
    """Like with like: a 300 px image is read over a 256 px window, not whole (the size estimate's margin)."""
    from cellcount.novelty import novelty_window

    weight = np.zeros((300, 310), np.float32)
    weight[200:280, 220:300] = 1.0
    rows, cols = novelty_window(weight, 1.0)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (256, 256)
    assert rows.stop >= 280 and cols.stop >= 300, "placed over the foreground"
    rows, cols = novelty_window(weight[:200, :200], 1.0)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (200, 200), "smaller images: all of it"


def test_a_reference_of_small_images_only_judges_every_image_over_the_small_window(tiny_model, rng, tmp_path):
    """A fine-tune on small crops has no image for the main window: its reference is the small one alone, and
    a large unseen image is judged over a 128 px window against it (like with like), not left unjudged."""
    from cellcount.novelty import SMALL_WINDOW_PX, fit_reference, image_novelty

    net = tiny_model().net
    views = [(img, np.ones_like(img), 1.0) for img in (rng.random((150, 150), dtype=np.float32) for _ in range(6))]
    ref, n_big, n_small = fit_reference(net, views)
    assert (n_big, n_small, ref.window_px, ref.small) == (0, 6, SMALL_WINDOW_PX, None)
    large = rng.random((400, 400), dtype=np.float32)
    got = image_novelty(net, ref, large, np.ones_like(large), 1.0)
    want = ref.score(image_features(net, large, np.ones_like(large), 1.0, window_px=SMALL_WINDOW_PX))
    assert got == pytest.approx(want)
    back = NoveltyReference.load(tmp_path / NOVELTY_FILE, ref.save(tmp_path / NOVELTY_FILE))
    assert back.window_px == SMALL_WINDOW_PX and back.score(ref.features[0]) == pytest.approx(ref.score(ref.features[0]))
    assert fit_reference(net, views[:3]) is None, "three images: too few for either window"
