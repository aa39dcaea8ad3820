"""Tests of cellcount.models: every architecture, save/load identity, integrity checks, golden outputs."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cellcount.errors import ModelNotFoundError, WeightsIntegrityError
from cellcount.models import (
    CLASSICAL_NAME,
    ClassicalModel,
    NetModel,
    create_model,
    list_architectures,
    list_models,
    load_model,
    model_card,
    read_card,
    save_model,
)
from cellcount.pipeline import count_image

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
GOLDEN_FOLDERS = sorted(p.parent for p in WEIGHTS.glob("*/golden.npz") if (p.parent / "card.json").is_file())
NO_GOLDEN = pytest.param(None, marks=pytest.mark.skip(
    reason="no weights/<name>/ holds card.json + golden.npz yet; after training run python scripts/make_golden.py"))


def _load_make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", REPO / "scripts" / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_golden(folder: Path) -> None:
    golden = np.load(folder / "golden.npz")
    card = read_card(folder)
    assert str(golden["weights_sha256"]) == card.sha256, (
        f"{folder}/golden.npz was made for other weights; rerun python scripts/make_golden.py {folder.name}")
    x = golden["input"]
    assert x.shape == (64, 64) and x.dtype == np.float32
    out = load_model(folder).predict_maps(x, fast=False)
    assert out.shape == golden["output"].shape
    np.testing.assert_allclose(out, golden["output"], atol=1e-4, err_msg=f"{folder.name}: output changed")


def _image(rng, shape=(40, 48)) -> np.ndarray:
    return rng.uniform(0, 1, shape).astype(np.float32)


@pytest.fixture
def saved_model(tiny_model, tmp_path) -> tuple[Path, NetModel]:
    model = tiny_model("unet", "mask")
    return save_model(model.net, model.card, tmp_path / "tiny"), model


# --------------------------------------------------------------------------------------------------
# every architecture


def test_registry_lists_the_three_architectures():
    assert {"unet", "attention_unet", "residual_unet"} <= set(list_architectures())


@pytest.mark.parametrize("architecture", list_architectures())
@pytest.mark.parametrize(("head", "channels"), [("mask", 2), ("density", 1)])
def test_forward_shape(architecture, head, channels):
    torch.manual_seed(0)
    net = create_model(architecture, base_width=4, depth=2, out_channels=channels, head=head).eval()
    assert net.divisor == 4
    with torch.no_grad():
        y = net(torch.randn(2, 1, 16, 48))
    assert y.shape == (2, channels, 16, 48)
    assert torch.isfinite(y).all()
    if head == "density":
        assert (y >= 0).all()


@pytest.mark.parametrize("architecture", list_architectures())
@pytest.mark.parametrize("kind", ["mask", "density"])
def test_save_load_identity(architecture, kind, tiny_model, tmp_path, rng):
    model = tiny_model(architecture, kind)
    x = _image(rng)
    before = model.predict_maps(x, fast=False)
    folder = save_model(model.net, model.card, tmp_path / model.name)
    assert (folder / "weights.safetensors").is_file() and (folder / "card.json").is_file()
    assert model.card.sha256 == hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()

    loaded = load_model(folder)
    assert isinstance(loaded, NetModel)
    assert loaded.card.to_dict() == model.card.to_dict()
    after = loaded.predict_maps(x, fast=False)
    assert after.shape == (2 if kind == "mask" else 1, *x.shape)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    for (k, a), (k2, b) in zip(model.net.state_dict().items(), loaded.net.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_load_by_name_from_a_weights_dir(saved_model):
    folder, _ = saved_model
    assert list_models(folder.parent) == ["tiny", CLASSICAL_NAME]
    with pytest.raises(ModelNotFoundError, match="weights folder not found"):  # the shipped ones vanished unsaid
        list_models(folder.parent / "typo")
    # named as listed, not as its card (written as tiny-unet-mask): a folder renamed or copied by hand is the model
    # of its new name in every count, and listed once
    assert load_model("tiny", weights_dir=folder.parent).name == "tiny"
    assert load_model(folder).name == "tiny-unet-mask", "a folder given by its path, outside the list: its card's"


def test_model_card_without_loading_weights(saved_model):
    folder, _ = saved_model
    (folder / "weights.safetensors").unlink()  # the card alone is enough
    assert model_card("tiny", weights_dir=folder.parent) == dataclasses.replace(read_card(folder), name="tiny")
    assert model_card(folder).name == "tiny-unet-mask"
    assert model_card(CLASSICAL_NAME).output_kind == "mask"
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        model_card("no-such-model", weights_dir=folder.parent)


# --------------------------------------------------------------------------------------------------
# unknown names


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ModelNotFoundError) as info:
        create_model("transformer-xxl")
    msg = str(info.value)
    assert "transformer-xxl" in msg
    for name in list_architectures():
        assert name in msg


def test_unknown_model_lists_valid_names(saved_model):
    folder, _ = saved_model
    with pytest.raises(ModelNotFoundError) as info:
        load_model("no-such-model", weights_dir=folder.parent)
    msg = str(info.value)
    assert "no-such-model" in msg and "tiny" in msg and CLASSICAL_NAME in msg
    assert isinstance(info.value, KeyError)  # also catchable as a KeyError


# --------------------------------------------------------------------------------------------------
# integrity


def test_sha256_mismatch_raises(saved_model):
    folder, _ = saved_model
    wpath = folder / "weights.safetensors"
    data = bytearray(wpath.read_bytes())
    data[-1] ^= 0xFF
    wpath.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        load_model(folder)


def test_missing_weights_or_hash_raise(saved_model):
    folder, _ = saved_model
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = ""
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsIntegrityError, match="sha256"):
        load_model(folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(WeightsIntegrityError, match="missing"):
        load_model(folder)


def test_weights_that_do_not_fit_the_architecture_raise(saved_model):
    folder, _ = saved_model
    card = json.loads((folder / "card.json").read_text())
    card["kwargs"]["base_width"] = 8
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsIntegrityError, match="do not fit"):
        load_model(folder)


class _Payload:
    """Unpickling this creates ``marker``: the proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_payload_is_rejected_and_never_executed(writer, saved_model, tmp_path):
    folder, _ = saved_model
    # the payload is live: unpickling it elsewhere does create its marker
    probe = tmp_path / "probe_marker"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists()

    marker = tmp_path / "executed_marker"
    wpath = folder / "weights.safetensors"
    if writer == "pickle":
        wpath.write_bytes(pickle.dumps({"stem.body.0.weight": _Payload(marker)}))
    else:
        torch.save({"stem.body.0.weight": _Payload(marker)}, wpath)
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = hashlib.sha256(wpath.read_bytes()).hexdigest()  # the hash matches: only the format is wrong
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsIntegrityError, match="safetensors"):
        load_model(folder)
    assert not marker.exists(), "the pickle payload was executed"


# --------------------------------------------------------------------------------------------------
# classical baseline


def test_classical_baseline_counts_separated_disks(draw_disks, rng):
    centres = [(r, c) for r in (16, 48, 80) for c in (16, 48, 80, 112)]
    labels = draw_disks((96, 128), centres, 7)
    image = np.where(labels > 0, 180, 30) + rng.normal(0, 5, labels.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    model = load_model(CLASSICAL_NAME)
    assert isinstance(model, ClassicalModel) and model.output_kind == "mask"
    assert CLASSICAL_NAME in list_models()
    maps = model.predict_maps(image.astype(np.float32) / 255)
    assert maps.shape == (1, 96, 128) and maps.dtype == np.float32
    res = count_image(image, model)
    assert res.count == 12
    assert len(res.objects) == 12


def test_classical_constant_image_has_no_objects():
    maps = load_model(CLASSICAL_NAME).predict_maps(np.full((20, 20), 0.3, np.float32))
    assert not maps.any()


# --------------------------------------------------------------------------------------------------
# golden outputs of shipped weights


@pytest.mark.parametrize("folder", GOLDEN_FOLDERS or [NO_GOLDEN], ids=lambda f: f.name if f else "none")
def test_golden_output_of_shipped_weights(folder):
    _check_golden(folder)


def test_make_golden_round_trip(saved_model):
    folder, model = saved_model
    make_golden = _load_make_golden()
    path = make_golden.make_golden(folder)
    golden = np.load(path)
    assert golden["input"].shape == (64, 64) and golden["input"].dtype == np.float32
    assert golden["output"].shape == (2, 64, 64)
    assert np.ptp(golden["input"]) > 0.5, "the crop should hold nuclei, not only background"
    _check_golden(folder)
    # a changed network is caught
    with torch.no_grad():
        model.net.out.bias.add_(0.5)
    save_model(model.net, model.card, folder)
    np.savez(path, input=golden["input"], output=golden["output"], weights_sha256=model.card.sha256)
    with pytest.raises(AssertionError, match="output changed"):
        _check_golden(folder)


def test_a_card_is_strict_json_even_with_undefined_figures(tmp_path):
    """The interval of one held-out image is NaN; card.json held a bare NaN, which strict readers refuse."""
    from cellcount.models import ModelCard
    from cellcount.models.card import read_card, write_card

    card = ModelCard(name="c", architecture="unet", output_kind="mask",
                     metrics={"holdout_after": {"mae": 2.0, "mae_ci_low": float("nan"), "mae_ci_high": float("inf")}})
    path = write_card(card, tmp_path)

    def refuse(token):
        raise ValueError(token)

    strict = json.loads(path.read_text(), parse_constant=refuse)
    assert strict["metrics"]["holdout_after"] == {"mae": 2.0, "mae_ci_low": None, "mae_ci_high": None}
    assert read_card(tmp_path).metrics["holdout_after"]["mae_ci_low"] is None


def test_a_training_image_saved_again_is_recognised_by_its_pixels():
    """A tester's DSB training images re-saved (RGB without alpha, one-channel TIFF, grayscale PNG) were scored as
    unseen images: the card's file hashes change with any save, its pixel digests do not."""
    import io

    import tifffile
    from PIL import Image

    from cellcount.io import pixel_digest
    from cellcount.models.card import ModelCard

    gray = (np.random.default_rng(0).random((24, 32)) * 255).astype(np.uint8)
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])

    def png(arr):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    tif = io.BytesIO()
    tifffile.imwrite(tif, gray)
    original = png(rgba)
    card = ModelCard(name="m", architecture="unet", output_kind="mask", training={
        "train_sha256": [hashlib.sha256(original).hexdigest()], "train_pixel_sha256": [pixel_digest(original)]})
    other = png(np.flipud(gray).copy())
    saved_again = [("rgb.png", png(rgba[..., :3])), ("one.tif", tif.getvalue()), ("gray.png", png(gray))]
    assert card.trained_on([("a.png", original), *saved_again, ("flipped.png", other)]) == [
        "a.png", "rgb.png", "one.tif", "gray.png"]
    shipped = load_model("unet-mask").card
    assert len(shipped.training_pixel_digests()) == len(shipped.training_digests()) > 0


def test_a_card_recognises_its_training_images_by_content_or_by_name():
    from cellcount.models.card import ModelCard

    a, b = b"image a bytes", b"image b bytes"
    card = ModelCard(name="mine", architecture="unet", output_kind="density", training={
        "data": {"train_files": ["images/a.png"], "train_sha256": [hashlib.sha256(a).hexdigest()]}})
    assert card.trained_on([("copy_of_a.png", a), ("b.png", b), ("a.png", b)]) == ["copy_of_a.png"]
    assert card.trained_on([("A.PNG", None), ("b.png", None)]) == ["A.PNG"], "no bytes: by file name"
    older = ModelCard(name="old", architecture="unet", output_kind="density",
                      training={"data": {"train_files": ["a.png"]}})
    assert older.trained_on([("x/a.png", b), ("b.png", a)]) == ["x/a.png"], "a card without hashes: by name"
    assert ModelCard(name="s", architecture="unet", output_kind="mask").trained_on([("a.png", a)]) == []
    # a model trained from scratch lists its real training images' hashes (training.train_sha256); a fine-tune
    # adds its own to its base's
    scratch = ModelCard(name="s", architecture="unet", output_kind="mask",
                        training={"data": "DSB in words", "train_sha256": [hashlib.sha256(a).hexdigest()]})
    assert scratch.trained_on([("renamed.png", a), ("b.png", b), ("b2.png", None)]) == ["renamed.png"]
    tuned = ModelCard(name="t", architecture="unet", output_kind="mask", training={
        "train_sha256": [hashlib.sha256(a).hexdigest()], "data": {"train_files": ["b.png"],
                                                                  "train_sha256": [hashlib.sha256(b).hexdigest()]}})
    assert tuned.trained_on([("x.png", a), ("y.png", b), ("b.png", b"other")]) == ["x.png", "y.png"]
    from cellcount.models import list_models, model_card

    for name in list_models():
        assert model_card(name).trained_on([("a.png", a)]) == [], name


def test_every_shipped_card_lists_the_dsb_images_it_learnt_from(tmp_path):
    """Scoring a shipped model on its own training images (the DSB download) must warn: each card lists them."""
    import importlib.util

    from cellcount.models import list_models, model_card
    from cellcount.training.data import dsb_part

    for name in list_models():
        digests = model_card(name).training_digests()
        if name != "classical-otsu":
            assert len(digests) == 424 and all(len(d) == 64 for d in digests), name
            assert len(model_card(name).training_pixel_digests()) == 424, f"{name}: saved again, too"
    # the script that filled them picks exactly the files the card's split rule trains on
    spec = importlib.util.spec_from_file_location("card_train_digests", "scripts/card_train_digests.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    from PIL import Image

    names = [f"{i:02d}.png" for i in range(12)]
    for i, n in enumerate(names):
        Image.fromarray(np.full((8, 8), i * 10, np.uint8)).save(tmp_path / "images" / n)
        lab = np.zeros((8, 8), np.uint8)
        lab[2:5, 2:5] = 1
        Image.fromarray(lab).save(tmp_path / "labels" / n)
    rule = {"rule": "sha1('0:'+filename) % 10000 < 0.2 * 10000 -> validation", "val_files": []}
    want = sorted(n for n in names if dsb_part(n, 0.2, 0) == "train")
    assert 0 < len(want) < len(names)
    assert sorted(p.name for p in script.training_files(tmp_path, rule)) == want
    with pytest.raises(SystemExit, match="held-out"):
        script.training_files(tmp_path, {**rule, "val_files": [n for n in names if dsb_part(n, 0.2, 0) == "train"]})


def test_a_model_name_in_other_case_is_suggested():
    """Names are told apart case-insensitively when saved; one typed in other case gets the one meant."""
    from cellcount.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match=r"unknown model 'UNET-MASK' \(did you mean 'unet-mask'\?"):
        load_model("UNET-MASK")
    with pytest.raises(ModelNotFoundError) as err:
        load_model("no-such-model")
    assert "did you mean" not in str(err.value)
    # a typo or the other separator: the close name too (a tester's unet-mask-variied got only the list)
    for typed, meant in (("unet-mask-variied", "unet-mask-varied"), ("unet_mask", "unet-mask")):
        with pytest.raises(ModelNotFoundError, match=rf"unknown model '{typed}' \(did you mean '{meant}'\?\)"):
            load_model(typed)


def test_a_fine_tune_made_before_cards_listed_training_images_inherits_its_bases():
    """A fine-tune's card from before ``train_sha256`` existed still recognises its shipped base's DSB images."""
    import dataclasses

    from cellcount.models import model_card, with_base_training
    from cellcount.models.card import ModelCard

    base = model_card("unet-mask")
    old = ModelCard(name="old-tune", architecture="unet", output_kind="mask", training={
        "finetuned_from": {"name": "unet-mask", "sha256": base.sha256}, "data": {"train_files": ["a.png"]}})
    assert with_base_training(old).training_digests() == base.training_digests() and len(base.training_digests()) == 424
    assert old.training_digests() == set(), "the card itself is not changed"
    other = dataclasses.replace(old, training={**old.training, "finetuned_from": {"name": "unet-mask", "sha256": "0"}})
    assert with_base_training(other).training_digests() == set(), "another model under the base's name now"
    gone = dataclasses.replace(old, training={**old.training, "finetuned_from": {"name": "no-such-model"}})
    assert with_base_training(gone) is gone
    listed = dataclasses.replace(old, training={**old.training, "train_sha256": []})
    assert with_base_training(listed) is listed, "a card that lists its own (even none) is taken as it is"


def test_a_model_path_that_does_not_exist_is_said_to_be_missing():
    from cellcount.models import load_model

    with pytest.raises(ModelNotFoundError, match="/nonexistent/dir does not exist: give a model folder"):
        load_model("/nonexistent/dir")


def test_a_file_given_as_a_model_is_said_to_be_a_file(tmp_path):
    from cellcount.models import load_model

    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="weights.pt is a file, not a model folder"):
        load_model(str(tmp_path / "weights.pt"))
