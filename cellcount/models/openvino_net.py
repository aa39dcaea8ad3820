"""OpenVINO backends: the network's ONNX export run by OpenVINO's CPU plugin, in fp32 or quantised to int8.

* ``openvino``: the fp32 graph, its inference precision pinned to f32 (left alone, OpenVINO runs bf16 on CPUs
  that have it, whose counts are the ``bf16`` backend's business).
* ``int8``: the graph with int8 weights (one scale per output channel) and int8 activations (one scale per
  tensor, ranges read off generated calibration tiles, :func:`calibration_tiles`), run by OpenVINO's int8
  kernels (VNNI on the Xeon measured in BENCHMARKS.md). The convolutions that read the image and the small ones
  that write the outputs or an attention gate's map stay fp32: they cost little and are where rounding would move
  a threshold or a density integral the most. ``scripts/bench.py`` reports how far its counts are from fp32.

Each tile shape gets its own compiled graph, kept for the next tiles of that shape: a graph compiled with free height
and width ran int8 1.43x slower (fp32 1.03x) on an Intel Xeon without AMX (``scripts/openvino_shape_probe.py``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import importlib.util
import io
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

CALIBRATION_RECIPE = "synthetic-tiles-v1"
"""Names the calibration tiles and quantiser settings; part of the int8 graph's cache name."""

CALIBRATION_PERCENTILE = 99.999
"""Each activation's int8 range ends at this percentile of its values over the calibration tiles. With the full range
(min/max) the density U-Net's total on the bench's 24 images is 1.8% below fp32 (its many small activations rounded
coarsely); with this one, 0.2% (``scripts/int8_calibration_probe.py``)."""

COMPILED_SHAPES_KEPT = 8
"""Compiled graphs kept per network, one per input shape (the most recently used): a few tile shapes per image
size; each costs 0.1-0.3 s to compile on 2 cores."""

_FP32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}


def openvino_available() -> bool:
    """True when OpenVINO, and the ``onnx`` exporter and ONNX Runtime's quantiser it is fed by, can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in ("openvino", "onnx", "onnxruntime"))


def openvino_version() -> str | None:
    """OpenVINO's installed version, or None where it is not installed (read from the package's metadata:
    importing OpenVINO takes 0.2 s, which a run that never uses it should not pay)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        return None


def calibration_tiles(px: int = 256) -> list[np.ndarray]:
    """Normalised (H, W) float32 tiles the int8 ranges are read from: generated nuclei of 3 to 40 px radius,
    sparse and crowded, fluorescence and bright-field, through :func:`cellcount.io.normalize.model_input`
    as a user's image would go. Fixed seeds: the same tiles, so the same int8 graph, on every machine."""
    from ..io.normalize import model_input
    from ..synthetic import make_synthetic

    area = px * px
    specs = [  # (radius range px, nuclei per 1000 px^2 of radius-10 nuclei, bright background, clusters)
        ((3.0, 6.0), 2.0, False, 0.3), ((5.0, 11.0), 1.0, False, 0.3), ((5.0, 11.0), 2.5, False, 0.8),
        ((10.0, 20.0), 0.8, False, 0.5), ((20.0, 40.0), 0.6, False, 0.3), ((5.0, 11.0), 0.1, False, 0.0),
        ((4.0, 9.0), 1.2, True, 0.3), ((8.0, 16.0), 1.0, True, 0.6), ((15.0, 30.0), 0.7, True, 0.3),
        ((6.0, 12.0), 1.8, False, 0.9),
    ]
    tiles = []
    for seed, (radius, density, bright, clusters) in enumerate(specs):
        radius = (min(radius[0], px / 8), min(radius[1], px / 4))  # a small px (tests): nuclei that fit
        mean_r = sum(radius) / 2
        n = max(1, round(density * area / 1000 * (10.0 / mean_r) ** 2))
        sample = make_synthetic((px, px), rng=9000 + seed, n_cells=n, radius_px=radius, bright_background=bright,
                                cluster_fraction=clusters, overlap=0.3 if clusters > 0.5 else 0.15)
        tiles.append(model_input(sample.image)[0])
    return tiles


def _keep_fp32(model) -> list[str]:
    """Names of the Conv nodes left in fp32: those reading the graph's input, and those with at most 4 output
    channels (the output heads, an attention gate's map)."""
    inits = {t.name: t for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    keep = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        weight = inits.get(node.input[1]) if len(node.input) > 1 else None
        if node.input[0] in inputs or (weight is not None and weight.dims and weight.dims[0] <= 4):
            keep.append(node.name)
    return keep


class _QuantiserAdvice(logging.Filter):
    """Drops the records of ONNX Runtime's quantiser (advice meant for its own users, not ours)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime/quantization/" not in record.pathname.replace("\\", "/")


def quantize_int8(graph: bytes, *, percentile: float | None = None) -> bytes:
    """``graph`` (an fp32 ONNX export) quantised to int8 by ONNX Runtime's static quantiser in the QDQ form that
    OpenVINO runs: weights symmetric per output channel, activations per tensor with ranges up to the
    ``percentile`` (default :data:`CALIBRATION_PERCENTILE`; 100: min/max) of their values over
    :func:`calibration_tiles`; only convolutions (and transposed ones) are quantised, :func:`_keep_fp32`'s stay
    fp32."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    pct = CALIBRATION_PERCENTILE if percentile is None else float(percentile)
    tiles = calibration_tiles()

    class _Tiles(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"x": t[None, None].astype(np.float32)} for t in tiles])

        def get_next(self):
            return next(self._it, None)

    model = onnx.load_from_string(graph)
    for i, node in enumerate(model.graph.node):  # the quantiser addresses nodes by name; the export may leave some blank
        node.name = node.name or f"{node.op_type}_{i}"
    logger.info("quantising the network to int8 (once per network and machine: the graph is cached)")
    root = logging.getLogger()
    quiet = _QuantiserAdvice()
    root.addFilter(quiet)  # the quantiser suggests a pre-processing step on the root logger, and prints its progress
    with tempfile.TemporaryDirectory(prefix="cellcount-int8-") as tmp, contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings(), contextlib.ExitStack() as stack:
        stack.callback(root.removeFilter, quiet)
        warnings.simplefilter("ignore")
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        quantize_static(str(src), str(dst), _Tiles(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax if pct >= 100 else CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": pct}, op_types_to_quantize=["Conv", "ConvTranspose"],
                        nodes_to_exclude=_keep_fp32(model))
        return dst.read_bytes()


def cached_int8(graph: bytes, cache_path: Path | None) -> bytes:
    """:func:`quantize_int8` of ``graph``, read from beside the fp32 export's cache file when it was made before;
    ``cache_path`` None: not cached (made each time)."""
    if cache_path is None:
        return quantize_int8(graph)
    import onnxruntime

    h = hashlib.sha256(graph)
    h.update(f"|{CALIBRATION_RECIPE}|onnxruntime {onnxruntime.__version__}".encode())
    h.update(Path(__file__).read_bytes())
    path = cache_path.with_name(f"{h.hexdigest()[:32]}.int8.onnx")
    with contextlib.suppress(OSError):
        data = path.read_bytes()
        if data:
            os.utime(path)
            return data
    data = quantize_int8(graph)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        logger.debug("could not keep the int8 graph in %s: %s", path, err)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return data


@functools.lru_cache(maxsize=1)
def _core():
    """The process's one OpenVINO ``Core``. With one per network, once two networks have been used and freed the
    process dies of a segmentation fault at its next Ctrl-C (OpenVINO 2026.4; tests/test_openvino.py)."""
    import openvino as ov

    return ov.Core()


class OpenVinoNet(torch.nn.Module):
    """An ONNX ``graph`` (:func:`cellcount.models.backends.onnx_graph`) run by OpenVINO on the CPU, behind the ``nn.Module`` call; ``int8``
    says that it is a quantised one. Thread-safe (each call takes its own infer request), so one instance serves
    every app session."""

    def __init__(self, graph: bytes, *, int8: bool = False, threads: int | None = None) -> None:
        super().__init__()
        self.int8 = int8
        self._core = _core()
        self._model = self._core.read_model(graph)
        self._config = {**_FP32_CONFIG, "INFERENCE_NUM_THREADS": str(int(threads or torch.get_num_threads()))}
        self._compiled: collections.OrderedDict[tuple[int, ...], object] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _compiled_for(self, shape: tuple[int, ...]):
        with self._lock:
            compiled = self._compiled.get(shape)
            if compiled is not None:
                self._compiled.move_to_end(shape)
                return compiled
            model = self._model.clone()
            model.reshape({model.inputs[0].any_name: list(shape)})
            compiled = self._core.compile_model(model, "CPU", self._config)
            self._compiled[shape] = compiled
            while len(self._compiled) > COMPILED_SHAPES_KEPT:
                self._compiled.popitem(last=False)
            return compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        request = self._compiled_for(tuple(arr.shape)).create_infer_request()
        out = request.infer({0: arr})
        return torch.from_numpy(np.array(out[0], dtype=np.float32, copy=True))
