"""Tests of training: targets, mass-preserving augmentation, losses, and 2-step runs of the training CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cellcount.models import NetModel, load_model, read_card
from cellcount.models.backends import available_backends
from cellcount.models.card import write_card
from cellcount.train import load_config, train
from cellcount.training.augment import augment, elastic, flip_rotate, intensity, random_crop_scaled
from cellcount.training.data import is_validation, prepare_item
from cellcount.training.losses import MASK_LOSSES, density_loss, mask_loss, multihead_loss
from cellcount.training.targets import CONTACT, border_target, boundary_band, density_from_labels, touching_border

# --------------------------------------------------------------------------------------------------
# targets


def test_density_sums_exactly_to_the_count_with_border_objects(draw_disks):
    # two disks cut by the image border, one in a corner, two inside
    labels = draw_disks((50, 60), [(0, 30), (25, 59), (0, 0), (20, 20), (35, 40)], [5, 4, 6, 7, 3])
    d = density_from_labels(labels)
    assert d.dtype == np.float32 and d.shape == labels.shape
    assert float(d.sum(dtype=np.float64)) == pytest.approx(5.0, abs=1e-4)
    assert (d >= 0).all()
    assert not density_from_labels(np.zeros((10, 10), np.int32)).any()
    # non-consecutive ids count once each
    sparse = np.where(labels > 0, labels * 11, 0)
    assert float(density_from_labels(sparse).sum(dtype=np.float64)) == pytest.approx(5.0, abs=1e-4)


def test_touching_border_marks_only_pixels_between_touching_objects():
    labels = np.zeros((30, 50), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2  # touches object 1 along columns 14 | 15
    labels[5:15, 35:45] = 3  # isolated
    border = touching_border(labels, width=0)
    assert border.dtype == bool
    assert border[5:15, 14:16].all(), "both sides of the shared edge are marked"
    rows, cols = np.nonzero(border)
    assert cols.min() >= 13 and cols.max() <= 16 and rows.min() >= 4 and rows.max() <= 15
    assert not border[:, 30:].any(), "an isolated object has no touching border"
    assert not border[10, 5:13].any() and not border[10, 17:25].any()
    wide = touching_border(labels, width=1)
    assert wide.sum() > border.sum() and (wide | ~border).all()
    separate = labels.copy()
    separate[:, 15:17] = 0  # a 2-px gap: no longer touching
    assert not touching_border(separate, width=1).any()


def test_border_target_marks_contacts_within_the_band():
    labels = np.zeros((30, 50), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2  # touches object 1
    labels[5:15, 35:45] = 3  # isolated
    target = border_target(labels, width=1)
    assert target.dtype == np.uint8 and set(np.unique(target)) == {0, 1, CONTACT}
    np.testing.assert_array_equal(target > 0, boundary_band(labels, width=1))
    contact = target == CONTACT
    assert contact[10, 14:16].all(), "the shared edge is a contact"
    assert not contact[:, 30:].any(), "an isolated object has no contact pixels"
    assert (target[10, 3:7] == 1).all(), "an outline against the background is plain band"
    assert not (contact & ~touching_border(labels, width=1)).any()


def test_prepare_item_targets(draw_disks):
    labels = draw_disks((40, 40), [(10, 10), (10, 21), (30, 30)], 5)
    image = np.where(labels > 0, 200, 20).astype(np.uint8)
    mask_item = prepare_item("x", image, labels, kind="mask", density_scale=1.0)
    assert mask_item.count == 3 and set(mask_item.targets) == {"mask", "border"}
    assert mask_item.targets["border"].any()  # disks 1 and 2 touch
    dens = prepare_item("x", image, labels, kind="density", density_scale=100.0)
    assert float(dens.targets["density"].sum()) == pytest.approx(300.0, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# augmentation


def _sample(draw_disks):
    labels = draw_disks((64, 64), [(8, 8), (30, 40), (55, 20), (60, 60)], 5)
    image = np.where(labels > 0, 0.9, 0.1).astype(np.float32)
    targets = {"density": density_from_labels(labels) * np.float32(100), "mask": (labels > 0).astype(np.uint8)}
    return image, targets


@pytest.mark.parametrize("seed", range(4))
def test_random_crop_covering_the_image_preserves_mass(seed, draw_disks):
    image, targets = _sample(draw_disks)
    mass = float(targets["density"].sum())
    img, out = random_crop_scaled(image, targets, size=32, scale=0.5, rng=np.random.default_rng(seed))
    assert img.shape == (32, 32) and out["density"].shape == (32, 32) and out["mask"].shape == (32, 32)
    assert float(out["density"].sum()) == pytest.approx(mass, rel=0.01)
    # a small image is padded with background: mass is kept too
    small = {"density": targets["density"][:20, :20]}
    _, out_small = random_crop_scaled(image[:20, :20], small, size=32, scale=1.0, rng=np.random.default_rng(seed))
    assert float(out_small["density"].sum()) == pytest.approx(float(small["density"].sum()), rel=0.01)


@pytest.mark.parametrize("seed", range(8))
def test_flip_rotate_is_exact(seed, draw_disks):
    image, targets = _sample(draw_disks)
    img, out = flip_rotate(image, targets, rng=np.random.default_rng(seed))
    assert float(out["density"].sum(dtype=np.float64)) == pytest.approx(float(targets["density"].sum(dtype=np.float64)),
                                                                        rel=1e-6)
    assert np.array_equal(np.sort(out["density"], axis=None), np.sort(targets["density"], axis=None))
    # image and targets move together
    np.testing.assert_array_equal(img > 0.5, out["mask"] > 0)


@pytest.mark.parametrize("seed", range(4))
def test_elastic_preserves_mass(seed, draw_disks):
    image, targets = _sample(draw_disks)
    img, out = elastic(image, targets, rng=np.random.default_rng(seed))
    assert img.shape == image.shape
    assert float(out["density"].sum()) == pytest.approx(float(targets["density"].sum()), rel=0.02)
    assert set(np.unique(out["mask"]).tolist()) <= {0, 1}, "masks use nearest-neighbour sampling"


def test_augment_output(draw_disks):
    image, targets = _sample(draw_disks)
    img, out = augment(image, targets, size=32, rng=np.random.default_rng(0), elastic_p=1.0)
    assert img.shape == (32, 32) and img.dtype == np.float32
    assert out["density"].dtype == np.float32 and out["mask"].shape == (32, 32)


def test_intensity_strength_scales_the_brightness_jitter():
    """A fine-tune on one set may keep brightness: at strength 0 only blur and noise remain (the mean of a flat
    image stays put); at 1 its brightness moves from crop to crop."""
    flat = np.full((32, 32), 0.5, np.float32)
    means = {s: np.array([intensity(flat, rng=np.random.default_rng(k), invert_p=0.0, strength=s).mean()
                          for k in range(40)]) for s in (0.0, 1.0)}
    assert np.abs(means[0.0] - 0.5).max() < 0.01
    assert means[1.0].std() > 0.05


# --------------------------------------------------------------------------------------------------
# losses and split


@pytest.mark.parametrize("kind", MASK_LOSSES)
def test_mask_losses_prefer_the_right_answer(kind):
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:12, 4:12] = 1
    border = torch.zeros_like(target)
    good = torch.cat([(target * 2 - 1) * 8, (border * 2 - 1) * 8], dim=1)
    bad = -good
    lg = mask_loss(good, target, border, kind=kind, border_weight=0.5)
    lb = mask_loss(bad, target, border, kind=kind, border_weight=0.5)
    assert lg.ndim == 0 and torch.isfinite(lg) and lg < lb


def test_contact_weight_penalises_missed_contacts_only():
    target = torch.zeros(1, 1, 16, 16)
    target[:, :, 4:12, 2:14] = 1
    band = torch.zeros_like(target)
    band[:, :, 4:12, 7:9] = CONTACT  # where two nuclei touch
    band[:, :, 4, 2:14] = 1
    fg = (target * 2 - 1) * 8
    miss = torch.cat([fg, torch.where(band == 1, 8.0, -8.0)], dim=1)  # the band without its contacts
    hit = torch.cat([fg, torch.where(band > 0, 8.0, -8.0)], dim=1)
    plain = mask_loss(miss, target, band, kind="bce", border_weight=0.5)
    weighted = mask_loss(miss, target, band, kind="bce", border_weight=0.5, contact_weight=5.0)
    assert weighted > plain * 2, "a missed contact costs more with contact_weight"
    exact = mask_loss(hit, target, band, kind="bce", border_weight=0.5, contact_weight=5.0)
    assert exact < plain / 10, "predicting the contacts removes that cost"
    no_contacts = (band > 0).float()  # a 0/1 band target: the weight has nothing to act on
    assert mask_loss(miss, target, no_contacts, kind="bce", border_weight=0.5, contact_weight=5.0) == pytest.approx(
        float(mask_loss(miss, target, no_contacts, kind="bce", border_weight=0.5)))


def test_unknown_loss_names_raise():
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="bce_dice"):
        mask_loss(x, x, None, kind="hinge", border_weight=0.5)
    with pytest.raises(ValueError, match="multiscale"):
        density_loss(x, x, weights={"ssim": 1.0})
    assert density_loss(x, x, weights={"pixel": 1.0, "multiscale": 1.0, "count": 0.1}) == 0


def test_validation_split_is_deterministic():
    names = [f"img_{i:04d}.png" for i in range(1000)]
    val = [is_validation(n, 0.2, 0) for n in names]
    assert val == [is_validation(n, 0.2, 0) for n in names]
    assert 0.15 < np.mean(val) < 0.25
    assert val != [is_validation(n, 0.2, 1) for n in names]


# --------------------------------------------------------------------------------------------------
# the training CLI on tiny synthetic data


@pytest.fixture
def synthetic_split(monkeypatch, draw_disks):
    """Replace the DSB loader with 3 training and 2 validation images built from disks."""
    calls = []

    def fake_load_dsb_split(root, *, kind, val_fraction, seed, density_scale, limit=None, grayscale="mean", **_):
        calls.append(root)
        items = []
        for i in range(5):
            n = 3 + i
            shape = (64, 64) if i < 3 else (48, 48)
            centres = [(8 + 14 * (k // 3), 8 + 14 * (k % 3)) for k in range(n)]
            labels = draw_disks(shape, centres, 5)
            image = np.where(labels > 0, 200, 20).astype(np.uint8)
            items.append(prepare_item(f"syn_{i}.png", image, labels, kind=kind, density_scale=density_scale))
            items[-1].file_sha256 = f"{i:064x}"
        return items[:3], items[3:]

    monkeypatch.setattr("cellcount.training.data.load_dsb_split", fake_load_dsb_split)
    return calls


def _tiny_config(tmp_path, kind: str, steps: int = 2):
    channels = {"mask": 2, "density": 1, "multihead": 3}[kind]
    overrides = {"name": f"tiny-{kind}", "output_kind": kind, "model.base_width": 4, "model.depth": 2,
                 "model.out_channels": channels, "train.steps": steps, "train.batch_size": 2, "train.crop": 32,
                 "train.val_every": 2, "train.warmup_steps": 1, "train.threads": 1, "augment.elastic_p": 0.5,
                 "inference.tile_size": 32, "inference.tile_overlap": 8,
                 "out_dir": str(tmp_path / "weights"), "run_dir": str(tmp_path / "runs")}
    argv = [x for k, v in overrides.items() for x in (f"--{k}", str(v))]
    return load_config(None, argv)


@pytest.mark.parametrize("kind", ["mask", "density", "multihead"])
def test_train_two_steps_writes_a_loadable_model(kind, tmp_path, synthetic_split):
    cfg = _tiny_config(tmp_path, kind)
    assert cfg["model"]["base_width"] == 4 and cfg["train"]["crop"] == 32  # overrides parsed
    folder = train(cfg)
    assert synthetic_split, "the data loader was used"
    assert folder == tmp_path / "weights" / f"tiny-{kind}"
    assert (folder / "config.yaml").is_file() and (tmp_path / "runs" / f"tiny-{kind}" / "checkpoint.pt").is_file()

    card = json.loads((folder / "card.json").read_text())
    assert {"training", "metrics"} <= set(card)
    assert card["training"]["split"]["n_train"] == 3 and card["training"]["split"]["n_val"] == 2
    assert card["training"]["split"]["val_files"] == ["syn_3.png", "syn_4.png"]
    assert [h["step"] for h in card["training"]["history"]] == [2]
    assert {"mae", "rmse", "bias"} <= set(card["metrics"]["validation"])
    assert card["output_kind"] == kind and card["kwargs"]["head"] == ("density" if kind == "density" else "mask")

    model = load_model(folder)
    assert isinstance(model, NetModel)
    maps = model.predict_maps(np.random.default_rng(0).uniform(0, 1, (40, 40)).astype(np.float32), fast=False)
    assert maps.shape == ({"mask": 2, "density": 1, "multihead": 3}[kind], 40, 40) and np.isfinite(maps).all()
    if kind != "density":
        assert ((maps[:2] >= 0) & (maps[:2] <= 1)).all(), "probabilities"
    if kind != "mask":
        assert (maps[-1] >= 0).all(), "a density is never negative"


@pytest.mark.slow
def test_init_from_a_mask_model_grows_the_output_layer_for_a_multihead(tmp_path, synthetic_split):
    import torch

    first = train(_tiny_config(tmp_path, "mask", steps=2))
    cfg = _tiny_config(tmp_path, "multihead", steps=2)
    cfg["init"] = {"from": str(first)}
    cfg["train"]["lr"] = 0.0
    cfg["train"]["weight_decay"] = 0.0
    cfg["out_dir"] = str(tmp_path / "stage2")
    card = read_card(train(cfg))
    assert card.training["init_from"]["output_channels_added"] is True
    a, b = load_model(first).net.state_dict(), load_model(tmp_path / "stage2" / cfg["name"]).net.state_dict()
    assert torch.equal(a["out.weight"], b["out.weight"][:2]), "the mask heads keep the source's weights"
    assert torch.equal(a["stem.body.0.weight"], b["stem.body.0.weight"]), "the trunk too"


@pytest.mark.slow
@pytest.mark.parametrize("branch", [True, "decoder"])
def test_a_density_branch_learns_beside_a_frozen_mask_model(branch, tmp_path, synthetic_split):
    import torch

    first = train(_tiny_config(tmp_path, "mask", steps=2))
    cfg = _tiny_config(tmp_path, "multihead", steps=2)
    cfg["model"].update(out_channels=2, density_branch=branch)
    cfg["init"] = {"from": str(first)}
    cfg["train"]["trainable"] = "new_outputs"
    cfg["out_dir"] = str(tmp_path / "stage2")
    card = read_card(train(cfg))
    assert card.kwargs["density_branch"] == branch
    fresh = card.training["init_from"]["fresh_parameters"]
    assert fresh and all(k.startswith("density_dec." if branch == "decoder" else "density_out.") for k in fresh)
    model = load_model(tmp_path / "stage2" / cfg["name"])
    a, b = load_model(first).net.state_dict(), model.net.state_dict()
    assert all(torch.equal(v, b[k]) for k, v in a.items()), "the mask network stays bit-identical"
    image = np.random.default_rng(0).uniform(0, 1, (40, 56)).astype(np.float32)
    slow = model.predict_maps(image, fast=False)
    assert slow.shape == (3, 40, 56) and (slow[2] >= 0).all()
    np.testing.assert_allclose(slow[:2], load_model(first).predict_maps(image, fast=False), atol=1e-6)
    for backend in available_backends():  # every inference path runs the branch as the network does
        np.testing.assert_allclose(model.predict_maps(image, fast=True, backend=backend), slow, atol=2e-2 if
                                   backend == "bf16" else 1e-3, err_msg=backend)


def test_density_branch_kinds_are_checked():
    from cellcount.models import create_model

    with pytest.raises(ValueError, match="density_branch"):
        create_model("unet", head="mask", density_branch="wide")
    with pytest.raises(ValueError, match="density_branch"):
        create_model("unet", head="density", density_branch="decoder")
    with pytest.raises(ValueError, match="depth >= 2"):
        create_model("unet", head="mask", depth=1, density_branch="decoder")


@pytest.mark.slow
def test_train_resumes_from_the_checkpoint(tmp_path, synthetic_split):
    first = read_card(train(_tiny_config(tmp_path, "mask", steps=2)))
    resumed = read_card(train(_tiny_config(tmp_path, "mask", steps=4), resume=True))
    history = resumed.training["history"]
    assert [h["step"] for h in history] == [2, 4]
    assert history[0] == first.training["history"][0], "the first run's history is carried over"
    assert resumed.training["steps"] == 4 and resumed.training["selected_step"] in (2, 4)
    # the choice is among every validation, those before the resume too (ties go to the later step)
    lowest = min(h["mae"] for h in history)
    assert resumed.training["selected_step"] == max(h["step"] for h in history if h["mae"] == lowest)
    # stopping early: a resume with steps = the last checkpoint's ends at once and ships the best so far
    again = read_card(train(_tiny_config(tmp_path, "mask", steps=4), resume=True))
    assert again.training["selected_step"] == resumed.training["selected_step"]


@pytest.mark.slow
def test_select_last_ships_the_final_weights(tmp_path, synthetic_split):
    cfg = _tiny_config(tmp_path, "mask", steps=4)
    cfg["train"]["select"] = "last"
    card = read_card(train(cfg))
    assert card.training["selected_step"] == 4
    assert card.metrics["validation"]["mae"] == card.training["history"][-1]["mae"]
    assert "final weights" in card.metrics["validation_note"]
    cfg["train"]["select"] = "newest"
    with pytest.raises(ValueError, match="select"):
        train(cfg)


def test_relu_density_head_outputs_exact_zeros_and_loads(tmp_path, synthetic_split):
    import torch

    from cellcount.models import create_model

    net = create_model("unet", base_width=4, depth=2, out_channels=1, head="density", density_act="relu").eval()
    with torch.no_grad():
        net.out.bias.fill_(-5.0)  # a confidently-empty map: softplus would leak, ReLU gives zeros
        y = net(torch.zeros(1, 1, 32, 32))
    assert (y >= 0).all() and (y == 0).all()
    with pytest.raises(ValueError, match="density_act"):
        create_model("unet", head="density", density_act="tanh")
    cfg = _tiny_config(tmp_path, "density")
    cfg["model"]["density_act"] = "relu"
    model = load_model(train(cfg))
    assert model.card.kwargs["density_act"] == "relu"
    maps = model.predict_maps(np.zeros((40, 40), np.float32), fast=True)
    assert (maps >= 0).all()


@pytest.mark.parametrize("kind", ["mask", "density"])
def test_bf16_training_runs_and_records_its_precision(kind, tmp_path, synthetic_split):
    cfg = _tiny_config(tmp_path, kind)
    cfg["train"]["precision"] = "bf16"
    folder = train(cfg)
    card = read_card(folder)
    assert card.training["precision"] == "bf16"
    assert np.isfinite(card.training["history"][-1]["loss"])
    # weights are saved in float32 whatever the training precision
    maps = load_model(folder).predict_maps(np.full((40, 40), 0.5, np.float32), fast=False)
    assert maps.dtype == np.float32 and np.isfinite(maps).all()
    cfg["train"]["precision"] = "fp16"
    with pytest.raises(ValueError, match="precision"):
        train(cfg)


@pytest.mark.slow
def test_init_from_starts_a_second_stage_from_trained_weights(tmp_path, synthetic_split):
    import torch

    first = train(_tiny_config(tmp_path, "mask", steps=2))
    cfg = _tiny_config(tmp_path, "mask", steps=2)
    cfg["init"] = {"from": str(first)}
    cfg["train"]["lr"] = 0.0  # no update: the second stage must start exactly at the first's weights
    cfg["train"]["weight_decay"] = 0.0
    cfg["out_dir"] = str(tmp_path / "stage2")
    second = train(cfg)
    card = read_card(second)
    assert card.training["init_from"]["folder"] == str(first)
    assert card.training["init_from"]["sha256"] == read_card(first).sha256
    # the images both stages learnt from are on the card, so scoring the model on them warns; validation's are not
    assert read_card(first).training["train_sha256"] == [f"{i:064x}" for i in range(3)]
    assert card.training["train_sha256"] == [f"{i:064x}" for i in range(3)] and "train_sha256" not in card.training["init_from"]
    # parameters unchanged at lr 0 (BatchNorm running statistics do move in train mode)
    a, b = dict(load_model(first).net.named_parameters()), dict(load_model(second).net.named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    earlier = read_card(first)  # weights that had learnt from other images before: those are listed too
    earlier.training["train_sha256"] = ["f" * 64]
    write_card(earlier, first)
    cfg["out_dir"] = str(tmp_path / "stage3")
    assert read_card(train(cfg)).training["train_sha256"] == [f"{i:064x}" for i in range(3)] + ["f" * 64]
    cfg["model"]["base_width"] = 8  # another architecture cannot take these weights
    with pytest.raises(ValueError, match="init.from"):
        train(cfg)


def test_committed_configs_load_and_match_the_shipped_weights():
    """Every config in configs/ (ablations included) loads, uses only known keys in the sections the trainer
    reads (a typo such as ``contact_weigth`` would otherwise be ignored silently), and describes the same
    architecture as the shipped weights of its name."""
    from pathlib import Path

    import yaml

    from cellcount.train import DEFAULTS

    root = Path(__file__).resolve().parents[1]
    paths = sorted((root / "configs").rglob("*.yaml"))
    assert len(paths) >= 8
    experimental = root / "configs" / "experimental"  # models in training: no shipped weights yet
    for path in paths:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        for section in ("train", "loss", "augment", "inference", "input", "init"):
            unknown = set(raw.get(section) or {}) - set(DEFAULTS[section])
            assert not unknown, f"{path.name}: unknown {section} keys {sorted(unknown)}"
        cfg = load_config(path, [])
        if experimental in path.parents:
            assert not (root / "weights" / cfg["name"]).exists(), f"{path.name}: shipped, so not experimental"
            continue
        card = read_card(root / "weights" / cfg["name"])
        assert cfg["architecture"] == card.architecture, path.name
        assert {k: card.kwargs[k] for k in cfg["model"]} == cfg["model"], path.name


def test_multihead_density_learns_where_its_raw_output_is_negative():
    """The density head counts with a ReLU, but a blob that starts out negative must still get a gradient
    (a plain ReLU would leave it at zero forever); background already at zero gets none."""
    out = torch.zeros(1, 3, 8, 8)
    out[:, 2] = -1.0
    out.requires_grad_(True)
    density = torch.zeros(1, 1, 8, 8)
    density[..., 2:4, 2:4] = 5.0
    targets = {"mask": torch.zeros(1, 1, 8, 8), "border": torch.zeros(1, 1, 8, 8), "density": density}
    loss = multihead_loss(out, targets, mask_kind="bce", border_weight=0.5, density_terms={"pixel": 1.0})
    loss.backward()
    grad = out.grad[0, 2]
    assert (grad[2:4, 2:4] < 0).all(), "descending the loss raises the negative output under the blob"
    assert (grad[5:, 5:] == 0).all(), "background predicted at 0 (ReLU of a negative) is already right"
    count = multihead_loss(out, targets, mask_kind="bce", border_weight=0.5, density_terms={"count": 1.0})
    out.grad = None
    count.backward()
    assert (out.grad[0, 2, 5:, 5:] == 0).all(), "no term pushes negative background further down"
    assert float(loss.detach()) == pytest.approx(float(mask_loss(out[:, :2].detach(), targets["mask"], targets["border"],
                                                        kind="bce", border_weight=0.5))
                                        + float((density ** 2).mean()), rel=1e-5), "the forward value is the ReLU's"


def test_background_margin_pushes_the_background_below_zero_only():
    """With background_margin, background pixels whose raw density is above -margin are pushed down; the
    blobs and a background already below -margin are left alone."""
    out = torch.zeros(1, 3, 8, 8)
    out[0, 2, 6:, 6:] = -2.0  # already below the margin
    out.requires_grad_(True)
    density = torch.zeros(1, 1, 8, 8)
    density[..., 2:4, 2:4] = 5.0
    targets = {"mask": torch.zeros(1, 1, 8, 8), "border": torch.zeros(1, 1, 8, 8), "density": density}
    plain = multihead_loss(out, targets, mask_kind="bce", border_weight=0.5, density_terms={"pixel": 0.0})
    margin = multihead_loss(out, targets, mask_kind="bce", border_weight=0.5, density_terms={"pixel": 0.0},
                            background_margin=1.0)
    margin.backward()
    grad = out.grad[0, 2]
    assert float(margin.detach()) > float(plain.detach())
    assert (grad[0, :] > 0).all(), "background at 0: descending lowers it"
    assert (grad[2:4, 2:4] == 0).all() and (grad[6:, 6:] == 0).all()


def test_multihead_density_targets_distilled_from_a_density_model(tmp_path, synthetic_split, monkeypatch):
    """train.distill_density: the density head's targets are the density model's maps on the same crops (in
    this training's density scale), not the label-drawn ones."""
    import cellcount.train as train_mod
    import cellcount.training.losses as losses

    teacher_folder = train(_tiny_config(tmp_path, "density", steps=2))
    teacher = load_model(teacher_folder)
    x = np.random.default_rng(3).uniform(0, 1, (2, 1, 32, 32)).astype(np.float32)
    fixed = {"mask": np.zeros_like(x), "border": np.zeros_like(x), "density": np.zeros_like(x)}
    monkeypatch.setattr(train_mod, "_batch", lambda *a, **k: (x.copy(), {k2: v.copy() for k2, v in fixed.items()}))
    seen = []
    real = losses.multihead_loss
    monkeypatch.setattr(losses, "multihead_loss", lambda out, targets, **kw: seen.append(targets) or real(out, targets, **kw))
    cfg = _tiny_config(tmp_path, "multihead", steps=2)
    cfg["train"]["distill_density"] = str(teacher_folder)
    train(cfg)
    with torch.no_grad():
        want = torch.relu(teacher.net.eval()(torch.from_numpy(x))).numpy()
    want *= cfg["train"]["density_scale"] / teacher.card.density_scale
    assert seen and want.max() > 0
    np.testing.assert_allclose(seen[0]["density"].numpy(), want, rtol=1e-4, atol=1e-6)
    cfg["train"]["distill_density"] = str(tmp_path / "weights" / "tiny-multihead")  # not a density model
    with pytest.raises(ValueError, match="not a density model"):
        train(cfg)


def test_checkpoints_are_ranked_by_count_error_then_by_the_density_heads_count():
    from cellcount.train import _rank

    # a frozen trunk: the same segmentation count at every step, so the density head decides
    assert _rank({"mae": 4.6, "density_mae": 9.3}) < _rank({"mae": 4.6, "density_mae": 9.9})
    # the count the user gets comes first, even against a better density head
    assert _rank({"mae": 4.6, "density_mae": 9.9}) < _rank({"mae": 4.9, "density_mae": 8.3})
    assert _rank({"mae": 3.0}) < _rank({"mae": 3.1})


def test_saved_configs_hold_no_machine_specific_folders(tmp_path, monkeypatch):
    """The config beside the weights reruns on another machine: folders outside the working directory become
    the defaults, ones inside it relative; every shipped config already is."""
    from pathlib import Path

    import yaml

    from cellcount.train import portable_config

    monkeypatch.chdir(tmp_path)
    cfg = {"name": "x", "out_dir": "/scratch/elsewhere/model", "run_dir": str(tmp_path / "runs" / "r1"),
           "config_path": "/home/someone/cfg/x.yaml"}
    out = portable_config(cfg)
    assert out["out_dir"] == "weights" and out["run_dir"] == "runs/r1" and out["config_path"] == "x.yaml"
    assert cfg["out_dir"] == "/scratch/elsewhere/model", "the running config is left alone"
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "weights").glob("*/config.yaml")):
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        for key in ("out_dir", "run_dir", "config_path"):
            assert not Path(str(saved.get(key, ""))).is_absolute(), f"{path}: {key} {saved[key]}"


def test_a_config_cannot_ask_for_percentiles_that_counting_would_not_use():
    """The card records input.low_pct / high_pct as the model's reading of images, but counting reads every
    image with CountParams' defaults: other values would train one way and count another."""
    from cellcount.params import CountParams
    from cellcount.train import load_config

    cfg = load_config(None, [])
    assert (cfg["input"]["low_pct"], cfg["input"]["high_pct"]) == (CountParams().low_pct, CountParams().high_pct)
    with pytest.raises(SystemExit, match="not supported"):
        load_config(None, ["--input.low_pct", "2"])


@pytest.mark.slow
def test_batches_built_by_worker_processes_train_a_loadable_model(tmp_path, synthetic_split):
    cfg = _tiny_config(tmp_path, "mask", steps=3)
    cfg["train"]["workers"] = 2
    folder = train(cfg)
    card = json.loads((folder / "card.json").read_text())
    assert card["training"]["workers"] == 2 and card["training"]["device"] == "cpu"
    assert card["training"]["steps"] == 3 and [h["step"] for h in card["training"]["history"]] == [2, 3]
    assert isinstance(load_model(folder), NetModel)


def test_a_time_budget_cuts_the_steps_and_the_saved_config_repeats_them(tmp_path, synthetic_split, monkeypatch):
    import yaml

    monkeypatch.setattr("cellcount.train.FIT_AFTER_STEPS", (2,))
    cfg = _tiny_config(tmp_path, "mask", steps=10_000)
    cfg["train"].update(time_budget_s=0.001, validations=1)  # no time left after the probe: stop there
    folder = train(cfg)
    card = json.loads((folder / "card.json").read_text())
    assert card["training"]["steps"] == 2 and [h["step"] for h in card["training"]["history"]] == [2]
    saved = yaml.safe_load((folder / "config.yaml").read_text())["train"]
    assert saved["steps"] == 2 and saved["time_budget_s"] is None and saved["fitted_to_budget_s"] == 0.001


def test_a_cuda_device_where_there_is_none_is_a_clear_error():
    import torch

    from cellcount.train import _train_device

    assert _train_device("cpu").type == "cpu"
    assert _train_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        _train_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            _train_device("cuda")


def test_a_time_budget_refits_at_the_pace_after_the_first_steps():
    from cellcount.train import _fit_to_budget

    plan, tr = {"steps": 10_000, "val_every": 10_000}, {"steps": 10_000, "time_budget_s": 100.0, "validations": 5}
    marks = [(0, 0.0), (100, 10.0)]  # 0.1 s/step while warming up: 900 more steps fit 90 s
    _fit_to_budget(plan, marks, tr)
    assert plan["steps"] == 100 + 800 and plan["val_every"] == 180
    odd = {"steps": 10_000, "val_every": 10_000}
    _fit_to_budget(odd, [(0, 0.0), (100, 10.0)], {**tr, "validations": 7})
    assert odd["val_every"] * 7 >= odd["steps"] > odd["val_every"] * 6, "the last check is the final step's"
    marks.append((600, 35.0))  # then 0.05 s/step: 55 s left of the 90 fit 1100 more
    _fit_to_budget(plan, marks, tr)
    assert plan["steps"] == 600 + 1100 and plan["fitted"]
    never_longer = {"steps": 5, "val_every": 5}
    _fit_to_budget(never_longer, [(0, 0.0), (1, 0.001)], {**tr, "steps": 50})
    assert never_longer["steps"] == 50, "the config's step count caps a fast run"


def test_a_resumed_run_keeps_the_length_its_time_budget_fitted(tmp_path, synthetic_split, monkeypatch):
    monkeypatch.setattr("cellcount.train.FIT_AFTER_STEPS", (2,))
    cfg = _tiny_config(tmp_path, "mask", steps=10_000)
    cfg["train"].update(time_budget_s=0.001, validations=1)
    train(cfg)
    again = _tiny_config(tmp_path, "mask", steps=10_000)
    again["train"].update(time_budget_s=1000.0, validations=1)  # a new budget is not a new run
    card = json.loads((train(again, resume=True) / "card.json").read_text())
    assert card["training"]["steps"] == 2 and [h["step"] for h in card["training"]["history"]] == [2]
