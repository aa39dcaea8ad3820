"""Tests of cellcount.models.openvino_net: the ``openvino`` backend computes the fp32 network's output, the opt-in
``int8`` backend stays close to it, its quantised graph is made once and cached, and ``auto`` never takes it."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
import torch
from torch import nn

from cellcount.errors import ParameterError
from cellcount.io.normalize import NORMALIZED_RANGE
from cellcount.models import ModelCard, NetModel, backends, load_model
from cellcount.models import openvino_net as ovn
from cellcount.models.backends import build_backend, fold_batchnorm

needs_openvino = pytest.mark.skipif(not ovn.openvino_available(), reason="openvino not installed")


def _tiny_net(arch: str = "unet", head: str = "mask") -> nn.Module:
    from test_backends import _tiny_net_with_stats  # tests/ is on the import path (pytest's rootdir import mode)

    return _tiny_net_with_stats(arch, head, base_width=8)


@needs_openvino
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet", "attention_unet", "residual_unet"])
def test_openvino_fp32_matches_torch_on_every_tile_shape(arch, monkeypatch):
    """Each input shape is compiled once and kept (up to COMPILED_SHAPES_KEPT, the least recently used go)."""
    monkeypatch.setattr(ovn, "COMPILED_SHAPES_KEPT", 2)
    net = _tiny_net(arch)
    ov_net = build_backend(net, "openvino")
    assert isinstance(ov_net, ovn.OpenVinoNet) and not ov_net.int8
    rng = np.random.default_rng(1)
    for shape in [(1, 1, 32, 48), (2, 1, 64, 64), (1, 1, 32, 48), (1, 1, 16, 16)]:
        x = torch.from_numpy(rng.uniform(0, 1, shape).astype(np.float32))
        np.testing.assert_allclose(ov_net(x).numpy(), net(x).detach().numpy(), atol=1e-4)
    assert list(ov_net._compiled) == [(1, 1, 32, 48), (1, 1, 16, 16)]


def test_calibration_tiles_are_fixed_and_normalised():
    a, b = ovn.calibration_tiles(64), ovn.calibration_tiles(64)
    assert len(a) >= 8 and all(t.shape == (64, 64) and t.dtype == np.float32 for t in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # the same int8 graph on every machine
    assert all(NORMALIZED_RANGE[0] <= t.min() and t.max() <= NORMALIZED_RANGE[1] for t in a)
    assert len({round(float(t.mean()), 4) for t in a}) == len(a)  # varied, not one tile repeated


@needs_openvino
def test_int8_keeps_the_input_and_output_convolutions_in_fp32():
    import onnx

    from cellcount.models.backends import _export_onnx

    model = onnx.load_from_string(_export_onnx(fold_batchnorm(_tiny_net("attention_unet"))))
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{i}"
    keep = ovn._keep_fp32(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs[0].name in keep and convs[-1].name in keep  # the stem's first convolution and the output head
    assert any("psi" in name for name in keep)  # an attention gate's one-channel map
    assert len(keep) < len(convs) / 2  # the wide convolutions, where the time goes, are quantised


@functools.cache
def _tiles_64(make=ovn.calibration_tiles) -> list[np.ndarray]:
    return make(64)


def _small_tiles(px: int = 256) -> list[np.ndarray]:
    """Calibration on 64 px tiles keeps these tests short."""
    return _tiles_64()


@needs_openvino
def test_int8_backend_is_close_to_fp32_and_its_graph_is_made_once(monkeypatch, tmp_path):
    """The quantised graph goes to the cache folder beside the fp32 export; a second build reads it back. The
    quantiser's advice and progress reach neither the log nor stdout, and its log filter is removed."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(ovn, "calibration_tiles", _small_tiles)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # the quantiser's helpers write temporary files; none may land here
    made = []
    real = ovn.quantize_int8
    monkeypatch.setattr(ovn, "quantize_int8", lambda graph: made.append(1) or real(graph))
    net = _tiny_net("unet")
    filters = list(logging.getLogger().filters)
    first = build_backend(net, "int8", cache=True)
    second = build_backend(net, "int8", cache=True)
    assert made == [1] and len(list((tmp_path / "cellcount" / "onnx").glob("*.int8.onnx"))) == 1
    assert logging.getLogger().filters == filters and not list((tmp_path / "cwd").iterdir())
    x = torch.from_numpy(_small_tiles()[2][None, None].copy())
    ref = net(x).detach().numpy()
    for q in (first, second):
        out = q(x).numpy()
        assert q.int8 and out.shape == ref.shape
        # int8 rounding: far from bitwise, but the same map (an untrained net's logits span a few units)
        assert np.abs(out - ref).mean() < 0.05 * ref.std() and np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.995


@needs_openvino
def test_quantiser_advice_is_filtered_only_while_quantising():
    f = ovn._QuantiserAdvice()
    ort_record = logging.LogRecord("root", logging.WARNING, "/x/site-packages/onnxruntime/quantization/quant_utils.py",
                                   1, "Please consider pre-processing", None, None)
    ours = logging.LogRecord("cellcount", logging.WARNING, "/home/me/quantization/cellcount/pipeline.py", 1, "m",
                             None, None)
    assert not f.filter(ort_record) and f.filter(ours)


def test_int8_is_opt_in_and_both_need_openvino(monkeypatch):
    monkeypatch.setattr(ovn, "openvino_available", lambda: True)
    assert "int8" not in backends.available_backends() and "openvino" in backends.available_backends()
    assert "int8" in backends.buildable_backends()
    monkeypatch.setattr(ovn, "openvino_available", lambda: False)
    assert not {"int8", "openvino"} & set(backends.buildable_backends())
    for name in ("int8", "openvino"):
        with pytest.raises(ParameterError, match="pip install openvino"):
            backends.check_backend(name)


def test_cli_backend_choices_are_the_autotune_choices():
    from cellcount.cliparams import BACKEND_CHOICES
    from cellcount.models.autotune import CHOICES

    assert BACKEND_CHOICES == CHOICES


@needs_openvino
@pytest.mark.slow
def test_int8_counts_the_shipped_unet_close_to_fp32():
    """The shipped U-Net through count_image on a generated 512 x 512 image of about 300 nuclei: int8 within 2%
    of the plain fp32 path (its measured spread: about 1% per image, BENCHMARKS.md), openvino within 0.5%."""
    from cellcount.pipeline import count_image
    from cellcount.synthetic import make_synthetic

    try:
        model = load_model("unet-mask")
    except Exception as err:  # noqa: BLE001 - a checkout without the shipped weights
        pytest.skip(f"shipped unet-mask not loadable: {err}")
    image = make_synthetic((512, 512), rng=7, n_cells=300).image
    exact = count_image(image, model, fast=False).count
    assert abs(count_image(image, model, fast=True, backend="int8").count - exact) <= 0.02 * exact
    assert abs(count_image(image, model, fast=True, backend="openvino").count - exact) <= 0.005 * exact


@needs_openvino
def test_a_net_model_runs_openvino_through_predict_maps():
    net = _tiny_net("unet", "density")
    card = ModelCard(name="tiny", architecture="unet", output_kind="density", kwargs={"depth": 2, "out_channels": 1})
    model = NetModel(net, card)
    image = np.random.default_rng(3).uniform(0, 1, (70, 45)).astype(np.float32)
    np.testing.assert_allclose(model.predict_maps(image, fast=True, backend="openvino"),
                               model.predict_maps(image, fast=True, backend="torch"), atol=1e-5)


def test_openvino_version_is_read_without_importing_it(monkeypatch):
    import importlib.metadata
    import sys

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert ovn.openvino_version() is None
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2026.4.1")
    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    assert ovn.openvino_version() == "2026.4.1" and "openvino" not in sys.modules


_FREED_THEN_INTERRUPTED = """
import gc, os, signal, sys
import numpy as np, torch
from cellcount.models import openvino_net as ovn
from cellcount.models.backends import _export_onnx, fold_batchnorm
from cellcount.models import create_model
torch.manual_seed(0)
graph = _export_onnx(fold_batchnorm(create_model("unet", base_width=8, depth=2, out_channels=2, head="mask")))
x = torch.zeros(1, 1, 64, 64)
nets = [ovn.OpenVinoNet(graph), ovn.OpenVinoNet(graph)]
for net in nets:
    net(x)
del nets, net
gc.collect()
got = []
signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), signal.SIGINT)
print("interrupted", got)
"""


@needs_openvino
@pytest.mark.slow
def test_two_networks_freed_leave_ctrl_c_working():
    """With an OpenVINO Core per network, two networks used and freed made the next Ctrl-C a segmentation fault
    (it killed the whole test run at the CLI's interrupt test); every network now shares the process's one Core."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _FREED_THEN_INTERRUPTED], cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "interrupted [2]" in proc.stdout, (proc.returncode, proc.stderr[-2000:])
    assert ovn._core() is ovn._core()
