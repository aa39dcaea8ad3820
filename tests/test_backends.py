"""Tests of cellcount.models.backends: every backend computes the fp32 network's output within its
precision, and counts within 0.5% of the fp32 path."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from cellcount.errors import ParameterError
from cellcount.models import ModelCard, NetModel, backends, create_model, load_model
from cellcount.models.backends import Bf16Net, OnnxRuntimeNet, build_backend, fold_batchnorm
from cellcount.models.unet_fused import FusedUNet, fused_ops_available
from cellcount.pipeline import count_image


def _tiny_net_with_stats(arch: str, head: str, base_width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    net = create_model(arch, base_width=base_width, depth=2, out_channels=2 if head == "mask" else 1, head=head)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("arch,head", [("residual_unet", "mask"), ("attention_unet", "mask"), ("unet", "density")])
@pytest.mark.slow
def test_onnxruntime_fast_path_matches_torch(arch, head):
    """The ONNX Runtime backend computes the same maps as PyTorch's folded NHWC network."""
    if not backends.onnxruntime_available():
        pytest.skip("onnxruntime not installed")
    net = _tiny_net_with_stats(arch, head)
    card = ModelCard(name="tiny", architecture=arch, output_kind=head, kwargs={"depth": 2, "out_channels": 2})
    model = NetModel(net, card)
    image = np.random.default_rng(1).uniform(0, 1, (70, 45)).astype(np.float32)
    ort_maps = model.predict_maps(image, fast=True, backend="onnxruntime")
    torch_maps = model.predict_maps(image, fast=True, backend="torch")
    assert isinstance(model.fast_net("onnxruntime"), OnnxRuntimeNet)
    assert not isinstance(model.fast_net("torch"), OnnxRuntimeNet)
    np.testing.assert_allclose(ort_maps, torch_maps, atol=1e-5)
    x = torch.from_numpy(image[None, None, :64, :32].copy())
    np.testing.assert_allclose(build_backend(net, "onnxruntime")(x).numpy(), net.eval()(x).detach().numpy(),
                               atol=1e-4)


def test_onnx_cache_keeps_only_the_most_recently_used_exports(monkeypatch, tmp_path):
    """Every new network adds an export; beyond ONNX_CACHE_KEEP the least recently used (read or written)
    are deleted, and so are temporary files of writes that died long ago."""
    if not backends.onnxruntime_available():
        pytest.skip("onnxruntime not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "cellcount" / "onnx"
    folder.mkdir(parents=True)
    old = [folder / f"{i:032x}.onnx" for i in range(backends.ONNX_CACHE_KEEP + 3)]
    for i, f in enumerate(old):
        f.write_bytes(b"x")
        os.utime(f, (1000.0 + i, 1000.0 + i))  # old[0] least recently used
    dead = folder / "abc.onnx.1.2.tmp"
    dead.write_bytes(b"half")
    os.utime(dead, (1000.0, 1000.0))
    build_backend(_tiny_net_with_stats("unet", "mask"), "onnxruntime", cache=True)
    kept = sorted(folder.iterdir())
    assert len(kept) == backends.ONNX_CACHE_KEEP and not dead.exists()
    assert not any(f.exists() for f in old[:4]) and all(f.exists() for f in old[4:])


def test_onnx_export_is_kept_per_network_and_read_back(monkeypatch, tmp_path):
    """The second build of the same network reads its graph from the cache folder (no export); other weights
    get their own file; an empty (interrupted) cache file or an unwritable cache folder only means exporting."""
    if not backends.onnxruntime_available():
        pytest.skip("onnxruntime not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    net = _tiny_net_with_stats("unet", "mask")
    x = torch.from_numpy(np.random.default_rng(2).uniform(0, 1, (1, 1, 32, 48)).astype(np.float32))
    want = net(x).detach().numpy()
    exports = []
    real_export = backends._export_onnx
    monkeypatch.setattr(backends, "_export_onnx", lambda n: exports.append(1) or real_export(n))
    first = build_backend(net, "onnxruntime", cache=True)
    path = backends.onnx_cache_file(fold_batchnorm(net))
    assert path.is_file() and path.parent == tmp_path / "cellcount" / "onnx" and len(exports) == 1
    again = build_backend(net, "onnxruntime", cache=True)
    assert len(exports) == 1  # read back, not exported
    np.testing.assert_allclose(again(x).numpy(), want, atol=1e-4)
    np.testing.assert_allclose(first(x).numpy(), want, atol=1e-4)

    other = _tiny_net_with_stats("unet", "mask")
    with torch.no_grad():
        next(other.parameters()).add_(0.5)  # new weights: a new file, and their own outputs
    assert backends.onnx_cache_file(fold_batchnorm(other)) != path
    np.testing.assert_allclose(build_backend(other, "onnxruntime", cache=True)(x).numpy(),
                               other(x).detach().numpy(), atol=1e-4)
    assert len(exports) == 2

    path.write_bytes(b"")  # a file cut short: exported again, and rewritten
    np.testing.assert_allclose(build_backend(net, "onnxruntime", cache=True)(x).numpy(), want, atol=1e-4)
    assert len(exports) == 3 and path.stat().st_size > 0

    path.write_bytes(b"not an ONNX graph")  # damaged: exported again and replaced
    np.testing.assert_allclose(build_backend(net, "onnxruntime", cache=True)(x).numpy(), want, atol=1e-4)
    assert len(exports) == 4 and path.read_bytes() != b"not an ONNX graph"
    net.head = "density"  # a card-chosen attribute changes the graph without changing a weight
    assert backends.onnx_cache_file(fold_batchnorm(net)) != path
    net.head = "mask"

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    np.testing.assert_allclose(build_backend(net, "onnxruntime", cache=True)(x).numpy(), want, atol=1e-4)
    assert len(exports) == 5


def test_unknown_backend_is_refused_with_the_valid_names(tiny_model):
    net = _tiny_net_with_stats("unet", "mask")
    with pytest.raises(ParameterError, match="'bf16', 'int8', 'onnxruntime', 'openvino', 'torch'"):
        build_backend(net, "tensorrt")
    with pytest.raises(ParameterError, match="'auto'"):
        tiny_model().predict_maps(np.zeros((32, 32), np.float32), backend="int4")


@pytest.mark.parametrize("arch,head", [("unet", "mask"), ("residual_unet", "mask"), ("attention_unet", "mask"),
                                       ("unet", "density"), ("residual_unet", "density")])
@pytest.mark.slow
def test_bf16_backend_close_to_fp32(arch, head):
    """Each bf16 variant (fused oneDNN U-Net, traced, eager autocast) keeps float32 in/out and stays within
    bf16 rounding of the fp32 network."""
    net = _tiny_net_with_stats(arch, head)
    fast = build_backend(net, "bf16")
    traced = Bf16Net(fold_batchnorm(net), fuse=False)
    eager = Bf16Net(fold_batchnorm(net), jit=False, fuse=False)
    assert isinstance(fast, Bf16Net) and (fast.fused is not None) == fused_ops_available()
    assert traced.fused is None and traced.traced is not None and eager.traced is None
    rng = np.random.default_rng(2)
    for shape in ((1, 1, 64, 48), (2, 1, 32, 96)):  # one network serves every tile shape and batch size
        x = torch.from_numpy(rng.uniform(0, 1, shape).astype(np.float32))
        with torch.inference_mode():
            ref = net(x)
            for y in (fast(x), traced(x), eager(x)):
                assert y.dtype == torch.float32 and y.shape == ref.shape
                # bf16 has an 8-bit mantissa: relative error per operation ~0.4%
                assert float((y - ref).abs().max()) <= 0.05 * float(ref.abs().max()) + 0.05
                if head == "density":
                    assert float(y.min()) >= 0


@pytest.mark.slow
def test_fused_unet_needs_folded_batchnorm_and_a_unet():
    if not fused_ops_available():
        pytest.skip("this PyTorch build or CPU has no fused oneDNN bf16 convolutions")
    net = _tiny_net_with_stats("residual_unet", "mask")
    with pytest.raises(ValueError, match="fold the BatchNorms"):
        FusedUNet(net)
    with pytest.raises(ValueError, match="needs a UNet"):
        FusedUNet(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)))
    assert FusedUNet(fold_batchnorm(net)) is not None
    # a network that is not a U-Net takes the traced path
    other = Bf16Net(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()).eval())
    assert other.fused is None and other.traced is not None


def test_bf16_is_offered_only_on_cpus_with_native_bf16(monkeypatch):
    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert backends.available_backends()[0] == "bf16"
    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    avail = backends.available_backends()
    assert "bf16" not in avail and avail[-1] == "torch"
    assert ("onnxruntime" in avail) == backends.onnxruntime_available()


def test_bf16_forced_without_native_bf16_says_it_is_emulated(monkeypatch, tmp_path, capsys):
    """A tester's `--backend bf16` on an AVX2 CPU ran 15x slower than fp32 and counted a few images 0.6-0.9% off,
    without a word."""
    from PIL import Image

    from cellcount.cli import main

    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert backends.backend_note("bf16") is None
    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert "emulated" in backends.backend_note("bf16") and backends.backend_note("torch") is None
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    assert main(["count", str(tmp_path / "a.png"), "--model", "classical-otsu", "--backend", "bf16",
                 "--out", str(tmp_path / "c.csv"), "--no-progress"]) == 0
    assert "note: --backend bf16: this CPU has no native bf16" in capsys.readouterr().err


@pytest.mark.slow
def test_every_available_backend_counts_within_half_a_percent_of_fp32():
    """The shipped U-Net through count_image (card defaults, size estimate included) on a generated
    512 x 512 image of about 300 nuclei: each backend of this machine against the plain fp32 path."""
    from cellcount.synthetic import make_synthetic

    try:
        model = load_model("unet-mask")
    except Exception as err:  # noqa: BLE001 - a checkout without the shipped weights
        pytest.skip(f"shipped unet-mask not loadable: {err}")
    image = make_synthetic((512, 512), rng=7, n_cells=300).image
    exact = count_image(image, model, fast=False)
    assert exact.count >= 200  # 0.5% of it is at least one object
    for name in backends.available_backends():
        fast = count_image(image, model, fast=True, backend=name)
        assert abs(fast.count - exact.count) <= 0.005 * exact.count, (name, fast.count, exact.count)
