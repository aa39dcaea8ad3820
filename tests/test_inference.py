"""Tests of cellcount.inference: tiling equals a single pass for pointwise nets, seams count once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cellcount.errors import ParameterError
from cellcount.inference import blend_window, predict_tiled, tile_starts
from cellcount.models import ModelCard, NetModel, create_model
from cellcount.pipeline import count_image

TILINGS = [(16, 0), (32, 8), (48, 16), (64, 31)]


class AffineNet(nn.Module):
    """Pointwise network with fixed weights: channel 0 = 2x + 0.5, channel 1 = -x."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.5, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class LogitNet(nn.Module):
    """Pointwise network whose output is the logit of its input: sigmoid(output) gives the input back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.clamp(1e-4, 1 - 1e-4)
        return torch.log(p / (1 - p))


def _affine_reference(image: np.ndarray) -> np.ndarray:
    return np.stack([2 * image + 0.5, -image]).astype(np.float32)


def _gaussian(shape, centre, sigma=2.0):
    rr, cc = np.indices(shape)
    g = np.exp(-((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 1), (31, 33), (32, 32), (33, 31), (70, 45), (100, 129)])
@pytest.mark.parametrize(("tile", "overlap"), TILINGS)
def test_pointwise_net_tiled_equals_single_pass(shape, tile, overlap, rng):
    image = rng.uniform(-0.5, 1.5, shape).astype(np.float32)
    out = predict_tiled(AffineNet().eval(), image, out_channels=2, tile=tile, overlap=overlap, batch_size=3,
                        divisor=16, device="cpu")
    assert out.shape == (2, *shape) and out.dtype == np.float32
    np.testing.assert_allclose(out, _affine_reference(image), atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_memory_format_does_not_change_results(channels_last, rng):
    image = rng.uniform(0, 1, (40, 50)).astype(np.float32)
    out = predict_tiled(AffineNet().eval(), image, out_channels=2, tile=32, overlap=8, divisor=4, device="cpu",
                        channels_last=channels_last)
    np.testing.assert_allclose(out, _affine_reference(image), atol=1e-5)


def test_density_integral_is_independent_of_tiling(rng):
    shape = (100, 90)
    centres = rng.uniform(8, 82, (7, 2))
    density = sum(_gaussian(shape, c) for c in centres)
    integrals = [
        float(predict_tiled(nn.ReLU().eval(), density, out_channels=1, tile=t, overlap=o, divisor=4,
                            device="cpu").sum(dtype=np.float64))
        for t, o in [(128, 0), *TILINGS, (20, 10)]
    ]
    assert integrals == pytest.approx([float(density.sum(dtype=np.float64))] * len(integrals), rel=5e-3)
    assert integrals[0] == pytest.approx(7.0, rel=5e-3)


@pytest.mark.parametrize("centre", [(28, 28), (28, 52), (52, 40)])
def test_gaussian_on_a_tile_seam_keeps_unit_mass(centre):
    # tile 32, overlap 8, stride 24: tiles start at 0, 24, 48; rows/cols 24..31 and 48..55 lie in two tiles
    assert tile_starts(80, 32, 24) == [0, 24, 48]
    density = _gaussian((80, 80), centre)
    out = predict_tiled(nn.Identity(), density, out_channels=1, tile=32, overlap=8, divisor=4, device="cpu")
    assert float(out.sum(dtype=np.float64)) == pytest.approx(1.0, rel=5e-3)
    np.testing.assert_allclose(out[0], density, atol=1e-6)


def test_mask_model_counts_an_object_on_a_seam_once(draw_disks):
    labels = draw_disks((80, 80), [(28, 28), (28, 52), (52, 28)], 6)
    image = np.where(labels > 0, 200, 20).astype(np.uint8)
    card = ModelCard(name="logit", architecture="test-logit", output_kind="mask",
                     kwargs={"out_channels": 1, "depth": 2}, tile_size=32, tile_overlap=8,
                     extra={"fast_tile_size": 32})
    model = NetModel(LogitNet(), card)
    params = {"min_area_px": 0, "opening_radius_px": 0, "split_mode": "distance", "min_distance_px": 4}
    for fast in (False, True):
        res = count_image(image, model, params, fast=fast)
        assert res.count == 3
        assert res.labels[28, 28] and res.labels[28, 52] and res.labels[52, 28]
        assert sorted(res.objects["area_px"]) == sorted(np.bincount(labels.ravel())[1:].tolist())


def test_unet_single_tile_equals_direct_forward_on_padded_image(rng):
    torch.manual_seed(0)
    net = create_model("unet", base_width=4, depth=2, out_channels=2).eval()
    image = rng.uniform(0, 1, (30, 45)).astype(np.float32)
    out = predict_tiled(net, image, out_channels=2, tile=64, overlap=8, divisor=4, device="cpu",
                        channels_last=False)
    padded = np.pad(image, ((0, 2), (0, 3)), mode="symmetric")  # to the next multiple of 4
    with torch.no_grad():
        ref = net(torch.from_numpy(padded)[None, None])[0, :, :30, :45].numpy()
    assert out.shape == (2, 30, 45)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_unet_tiled_output_shape_for_sizes_not_multiple_of_the_tile(tiny_model, rng):
    model = tiny_model("unet", "mask")
    for shape in [(1, 1), (31, 33), (32, 32), (70, 45)]:
        maps = model.predict_maps(rng.uniform(0, 1, shape).astype(np.float32), fast=False)
        assert maps.shape == (2, *shape) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and (maps >= 0).all() and (maps <= 1).all()


def test_progress_reports_every_batch_and_ends_with_total():
    calls: list[tuple[int, int]] = []
    image = np.zeros((80, 80), np.float32)
    predict_tiled(nn.Identity(), image, out_channels=1, tile=32, overlap=8, batch_size=4, divisor=4, device="cpu",
                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 9), (8, 9), (9, 9)]


def test_progress_single_tile():
    calls: list[tuple[int, int]] = []
    predict_tiled(nn.Identity(), np.zeros((5, 7), np.float32), out_channels=1, tile=64, divisor=4, device="cpu",
                  progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]


def test_blend_window_and_tile_starts():
    w = blend_window(32, 8)
    assert w.shape == (32, 32) and w.dtype == np.float32
    assert (w > 0).all() and w.max() == 1.0 and w[16, 16] == 1.0 and w[0, 0] < w[0, 16]
    assert tile_starts(10, 32, 24) == [0]
    starts = tile_starts(100, 32, 24)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(b - a <= 24 for a, b in zip(starts, starts[1:]))


def test_bad_arguments_raise():
    with pytest.raises(ParameterError, match=r"\(H, W\)"):
        predict_tiled(nn.Identity(), np.zeros((4, 4, 3), np.float32), out_channels=1, device="cpu")
    with pytest.raises(ParameterError, match="tile"):
        predict_tiled(nn.Identity(), np.zeros((4, 4), np.float32), out_channels=1, tile=8, divisor=16,
                      device="cpu")
    with pytest.raises(ParameterError, match="overlap"):
        predict_tiled(nn.Identity(), np.zeros((4, 4), np.float32), out_channels=1, overlap=-1, device="cpu")
