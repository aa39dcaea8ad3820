"""Benchmark: how fast cellcount counts on this machine, measured in one run.

``python scripts/bench.py [--quick] [--markdown TABLE.md] [--json out.json]`` prints Markdown tables:

* the inference backend each model runs with by default (measured on first use, :mod:`cellcount.models.autotune`)
  and the timings behind that choice;
* per model and per backend available here (the shipped models without the classical baseline, plus an untrained
  stand-in built from ``configs/<name>.yaml`` for each config without trained weights): network time per
  megapixel of the fast path, of the plain fp32 path (``predict_maps(fast=False)``) and of a naive reference loop
  (fp32, batch of one, non-overlapping 256 x 256 tiles, NCHW, as the original density-map app did); achieved
  GFLOP/s and percent of the matrix-multiply peak of the backend's precision, measured in the same run; and the
  count difference to the fp32 path through :func:`cellcount.count_image` on the shipped samples plus a few DSB
  2018 images;
* postprocessing latency of the app's slider path (:func:`cellcount.postprocess`, object table included) on a
  1024 x 1024 map: mask with and without watershed, density peaks;
* end-to-end CLI throughput (the default model, its nucleus-size estimate included) on 100 generated
  512 x 512 images and peak RSS counting a 4096 x 4096 image, both in subprocesses.

Times are medians of repeats that alternate between the variants, so ratios compare like with like even on a
busy machine. ``--quick`` is a tiny version for the test suite (small images, few repeats); its figures are not
comparable with the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from cellcount.models import NetModel
    from cellcount.pipeline import CountParams, Prediction

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: the checkout's cellcount first
    sys.path.insert(0, str(REPO))
CONFIG_DIR = REPO / "configs"
SAMPLES_DIR = REPO / "data" / "samples"
DSB_DIR = Path(os.environ.get("CELLCOUNT_DSB_DIR", REPO.parent / "shared" / "datasets" / "dsb2018"))

TARGETS = {
    "speedup_vs_naive": 3.0,  # fast path (chosen backend) / naive loop, at least
    "pct_of_peak": 60.0,  # network GFLOP/s of the chosen backend / mm peak of its precision, at least
    "count_diff_pct": 0.5,  # |sum fast - sum fp32| / sum fp32 over the count images, every backend, at most
    "postprocess_ms": 100.0,  # median slider-path latency on a 1024 x 1024 map, at most
    "cli_seconds": 15.0,  # 100 images of 512 x 512 through the CLI, default model, at most
    "peak_rss_gb": 2.0,  # counting one 4096 x 4096 image, at most
}
NAIVE_TILE_PX = 256
CELLS_PER_MEGAPIXEL = 600  # synthetic images: about as crowded as the denser DSB fields


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and repeats of one benchmark run (full or ``--quick``)."""

    quick: bool
    infer_px: int  # square image for the network timings
    infer_repeats: int
    n_samples: int | None  # shipped samples for the count comparison (None = all)
    n_dsb: int  # DSB images for the count comparison
    pp_px: int  # square map for the postprocessing timings
    pp_repeats: int
    cli_images: int
    cli_px: int
    rss_px: int
    mm_n: int
    mm_repeats: int

    @classmethod
    def make(cls, quick: bool) -> BenchConfig:
        if quick:
            return cls(True, 256, 1, 1, 1, 256, 3, 10, 256, 1024, 512, 2)
        return cls(False, 1024, 9, None, 12, 1024, 21, 100, 512, 4096, 2048, 5)


@dataclass
class BenchModel:
    """A model under test: trained weights from ``weights/`` or an untrained stand-in from its config."""

    model: NetModel
    trained: bool

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def label(self) -> str:
        return self.name if self.trained else f"{self.name} (untrained)"

    @property
    def val_mae(self) -> float:
        m = self.model.card.metrics.get("validation", {}) if isinstance(self.model.card.metrics, dict) else {}
        return float(m.get("mae", math.inf))


@dataclass
class BenchResults:
    """Everything one run measured (written as JSON with ``--json``)."""

    config: dict[str, Any]
    machine: dict[str, Any]
    command: str
    backends: list[str] = field(default_factory=list)  # every backend this machine can run, opt-in ones included
    auto_backends: list[str] = field(default_factory=list)  # those "auto" chooses from
    matmul_gflops: dict[str, float] = field(default_factory=dict)  # per precision ("fp32", "bf16", "int8")
    matmul_by_library: dict[str, float] = field(default_factory=dict)  # fp32 GFLOP/s per library
    models: list[dict[str, Any]] = field(default_factory=list)
    postprocess: list[dict[str, Any]] = field(default_factory=list)
    cli: dict[str, Any] = field(default_factory=dict)
    cli_compared: list[dict[str, Any]] = field(default_factory=list)  # --cli-compare: other models, same images
    memory: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------- timing


def time_once(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Call each function once to warm up, then ``repeats`` rounds of one call each, alternating.

    Alternating spreads background load evenly over the variants, so their ratio stays meaningful.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(time_once(fn))
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# -------------------------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """CPU, cores, library versions, torch threads and the load average when the run started."""
    import cv2
    import torch

    from cellcount.models.autotune import cpu_model, machine_fingerprint
    from cellcount.models.backends import cpu_has_bf16

    return {
        "cpu": cpu_model(),
        "cpu_bf16": cpu_has_bf16(),
        "logical_cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": machine_fingerprint()["onnxruntime"],
        "python": platform.python_version(),
        "load_avg_1min_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, *, dtype: str = "fp32", library: str = "torch") -> float:
    """GFLOP/s of one ``n x n`` matrix product (``dtype`` ``"fp32"``, ``"bf16"`` or ``"int8"``), best of ``repeats``:
    the achievable peak for that precision with ``library``: ``"torch"`` (``torch.mm``), ``"onnxruntime"`` (its
    MatMul kernel, fp32 only; on AMD CPUs it beats the MKL kernel ``torch.mm`` calls there) or ``"openvino"``
    (fp32, or int8: the only library of the int8 backend; operations counted as for floats)."""
    import torch

    if dtype == "int8" and library != "openvino":
        raise ValueError("the int8 peak is measured with OpenVINO only")
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}[dtype]
    a, b = torch.rand(n, n, dtype=dt), torch.rand(n, n, dtype=dt)
    if library in ("onnxruntime", "openvino"):
        if dtype == "bf16":
            raise ValueError(f"the {library} peak is measured in fp32 (and int8 with OpenVINO) only")
        run = (_onnx_matmul(a.numpy(), b.numpy()) if library == "onnxruntime"
               else _openvino_matmul(a.numpy(), b.numpy(), int8=dtype == "int8"))
    else:
        out = torch.empty(n, n, dtype=dt)
        run = lambda: torch.mm(a, b, out=out)  # noqa: E731
    run()
    best = min(time_once(run) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _openvino_matmul(a: np.ndarray, b: np.ndarray, *, int8: bool):
    """A call running ``a @ b`` with OpenVINO as the backends run it (f32 precision, the threads torch uses); with
    ``int8``, both operands quantised (``a`` to uint8 in the graph, ``b`` stored int8) as the int8 backend's
    quantised convolutions are, so OpenVINO runs an int8 product."""
    import onnx
    import openvino as ov
    import torch
    from onnx import TensorProto, helper, numpy_helper

    n, k = a.shape[0], b.shape[1]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(a.shape))
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [n, k])
    if int8:
        nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
                 helper.make_node("MatMul", ["xd", "wd"], ["z"])]
        inits = [numpy_helper.from_array(np.array(1 / 255, np.float32), "xs"),
                 numpy_helper.from_array(np.array(0, np.uint8), "xz"),
                 numpy_helper.from_array(np.clip(np.rint(b * 127), -127, 127).astype(np.int8), "wq"),
                 numpy_helper.from_array(np.array(1 / 127, np.float32), "ws"),
                 numpy_helper.from_array(np.array(0, np.int8), "wz")]
    else:
        nodes, inits = [helper.make_node("MatMul", ["x", "w"], ["z"])], [numpy_helper.from_array(b, "w")]
    model = helper.make_model(helper.make_graph(nodes, "matmul", [x], [z], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString()), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(torch.get_num_threads())})
    request = compiled.create_infer_request()
    return lambda: request.infer({0: a})


def _onnx_matmul(a: np.ndarray, b: np.ndarray):
    """A call running ``a @ b`` in an ONNX Runtime session with the threads torch uses (as the backend does)."""
    import io
    import warnings

    import onnxruntime as ort
    import torch

    class MatMul(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x @ y

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(MatMul(), (torch.from_numpy(a), torch.from_numpy(b)), buf, input_names=["x", "y"],
                          output_names=["z"], opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feeds = {"x": a, "y": b}
    return lambda: session.run(None, feeds)


def fp32_peaks(n: int, repeats: int, backends: list[str]) -> dict[str, float]:
    """fp32 matrix-multiply GFLOP/s per library available (torch, and ONNX Runtime and OpenVINO where they are
    backends)."""
    out = {"torch": matmul_peak_gflops(n, repeats)}
    for library in ("onnxruntime", "openvino"):
        if library in backends:
            out[library] = matmul_peak_gflops(n, repeats, library=library)
    return out


# --------------------------------------------------------------------------------------------- models


def untrained_model(config_path: Path) -> NetModel:
    """A seeded, untrained network with the architecture, kwargs and card defaults of a training config."""
    import torch
    import yaml

    from cellcount.models import ModelCard, NetModel, create_model
    from cellcount.train import network_kwargs

    cfg = yaml.safe_load(config_path.read_text())
    kind = cfg["output_kind"]
    kwargs = network_kwargs(cfg)
    torch.manual_seed(0)
    net = create_model(cfg["architecture"], **kwargs)
    card = ModelCard(
        name=cfg["name"], architecture=cfg["architecture"], output_kind=kind, kwargs=kwargs,
        description=cfg.get("description", ""),
        density_scale=float(cfg.get("train", {}).get("density_scale", 100.0)) if kind == "density" else 1.0,
        postprocess=dict(cfg.get("postprocess") or {}),
        postprocess_tuned_on="untrained stand-in built by scripts/bench.py",
    )
    return NetModel(net, card)


def bench_models(names: Sequence[str] | None = None, *, config_dir: Path = CONFIG_DIR) -> list[BenchModel]:
    """Shipped models (classical baseline excluded) and untrained stand-ins for configs without weights."""
    import yaml

    from cellcount.models import CLASSICAL_NAME, NetModel, list_models, load_model

    out: list[BenchModel] = []
    for name in list_models():
        if name == CLASSICAL_NAME:
            continue
        model = load_model(name)
        if isinstance(model, NetModel):
            out.append(BenchModel(model, trained=True))
    shipped = {bm.name for bm in out}
    for path in sorted(config_dir.glob("*.yaml")):
        if yaml.safe_load(path.read_text()).get("name") not in shipped:
            out.append(BenchModel(untrained_model(path), trained=False))
    if names:
        out = [bm for bm in out if bm.name in set(names)]
    return out


def best_model(models: Sequence[BenchModel], kind: str) -> BenchModel | None:
    """The model of ``kind`` to use for the postprocessing and CLI rows: trained first, then lowest val MAE."""
    cands = [bm for bm in models if bm.model.output_kind == kind]
    return min(cands, key=lambda bm: (not bm.trained, bm.val_mae, bm.name)) if cands else None


def contiguous_copy(net: torch.nn.Module) -> torch.nn.Module:
    """Copy of ``net`` with NCHW (contiguous) weights, as a plain PyTorch program would hold them."""
    import torch

    return copy.deepcopy(net).to(memory_format=torch.contiguous_format).eval()


def naive_predict(
    net: torch.nn.Module, image: np.ndarray, *, out_channels: int, output_kind: str, density_scale: float = 1.0,
    tile: int = NAIVE_TILE_PX,
) -> np.ndarray:
    """The reference loop of the original density-map app: fp32, batch of one, non-overlapping tiles, NCHW.

    ``image`` (H, W) float32 is reflect-padded to a multiple of ``tile``; returns (C, H, W) float32
    probabilities (mask) or density in count units, like :meth:`NetModel.predict_maps`.
    """
    import torch

    h, w = image.shape
    ph, pw = math.ceil(h / tile) * tile, math.ceil(w / tile) * tile
    padded = np.pad(np.asarray(image, np.float32), ((0, ph - h), (0, pw - w)), mode="symmetric")
    raw = np.zeros((out_channels, ph, pw), np.float32)
    with torch.inference_mode():
        for r in range(0, ph, tile):
            for c in range(0, pw, tile):
                x = torch.from_numpy(np.ascontiguousarray(padded[r:r + tile, c:c + tile]))[None, None]
                raw[:, r:r + tile, c:c + tile] = net(x)[0].numpy()
    raw = raw[:, :h, :w]
    if output_kind == "mask":
        return (1.0 / (1.0 + np.exp(-raw))).astype(np.float32)
    return (np.maximum(raw, 0) / float(density_scale)).astype(np.float32)


def flops_per_pixel(net: torch.nn.Module, size: int = 256) -> float:
    """Network FLOPs per input pixel (multiply-add = 2), counted by ``torch.utils.flop_counter``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, 1, size, size))
    return counter.get_total_flops() / float(size * size)


# --------------------------------------------------------------------------------------------- images


def synthetic_image(px: int, seed: int, *, bright_background: bool = False) -> Any:
    """A square synthetic sample with about :data:`CELLS_PER_MEGAPIXEL` nuclei (fixed seed)."""
    from cellcount.synthetic import make_synthetic

    n = max(5, round(CELLS_PER_MEGAPIXEL * px * px / 1e6))
    return make_synthetic((px, px), rng=seed, n_cells=n, bright_background=bright_background)


def normalised(image: np.ndarray) -> np.ndarray:
    """Grayscale, background auto-inverted, percentile-normalised float32 (the model input)."""
    from cellcount.io import is_bright_background, normalize_image, to_gray

    gray = to_gray(image)
    return normalize_image(gray, invert=is_bright_background(gray))


def count_images(cfg: BenchConfig, dsb_dir: Path = DSB_DIR) -> list[tuple[str, np.ndarray]]:
    """The fixed image set of the count comparison: shipped samples, then evenly spaced DSB images."""
    from cellcount.io import list_image_files, read_image, split_ground_truth_files

    files: list[Path] = []
    if SAMPLES_DIR.is_dir():
        files = split_ground_truth_files(list_image_files(SAMPLES_DIR, ground_truth=True))[0][: cfg.n_samples]
    dsb = sorted((dsb_dir / "images").glob("*.png")) if (dsb_dir / "images").is_dir() else []
    if dsb and cfg.n_dsb:
        step = max(len(dsb) // cfg.n_dsb, 1)
        files += dsb[::step][: cfg.n_dsb]
    return [(f.name, read_image(f)) for f in files]


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an 8-bit gray or RGB image (PNG) with OpenCV."""
    import cv2

    img = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


# ------------------------------------------------------------------------------------------ inference


def precision(backend: str) -> str:
    """The arithmetic a backend's convolutions run in: the matrix-multiply peak it is judged against."""
    return backend if backend in ("bf16", "int8") else "fp32"


def bench_inference(bm: BenchModel, cfg: BenchConfig, backends: Sequence[str],
                    peaks: dict[str, float]) -> dict[str, Any]:
    """Network seconds per megapixel: naive loop, plain fp32 and the fast path of each backend, alternating
    repeats; GFLOP/s and percent of the matrix-multiply peak of each backend's precision."""
    model = bm.model
    image = normalised(synthetic_image(cfg.infer_px, seed=1).image)
    naive_net = contiguous_copy(model.net)
    card = model.card

    def naive() -> np.ndarray:
        return naive_predict(naive_net, image, out_channels=model.out_channels, output_kind=card.output_kind,
                             density_scale=card.density_scale)

    fns: dict[str, Callable[[], Any]] = {"naive": naive, "fp32": lambda: model.predict_maps(image, fast=False)}
    for b in backends:
        fns[b] = lambda b=b: model.predict_maps(image, fast=True, backend=b)
    times = time_interleaved(fns, cfg.infer_repeats)
    mpx = image.size / 1e6
    med = {k: median(v) for k, v in times.items()}
    fpp = flops_per_pixel(naive_net)
    rows = {}
    for b in backends:
        gflops = fpp * image.size / med[b] / 1e9
        peak = peaks.get(precision(b), 0.0)
        rows[b] = {
            "s_per_mpx": med[b] / mpx,
            "speedup_vs_naive": med["naive"] / med[b],
            # each repeat's naive / fast, timed back to back: a second view that a slow spell of the shared
            # machine cannot tilt (it hits both calls of one pair); the target is judged on the medians
            "speedup_pairs": [a / c for a, c in zip(times["naive"], times[b])],
            "speedup_vs_fp32": med["fp32"] / med[b],
            "gflops": gflops,
            "precision": precision(b),
            "pct_of_peak": 100.0 * gflops / peak if peak else float("nan"),
        }
    return {
        "image_px": list(image.shape),
        "s_per_mpx": {"naive": med["naive"] / mpx, "fp32": med["fp32"] / mpx},
        "gflop_per_mpx": fpp * 1e6 / 1e9,
        "backends": rows,
        "repeats": cfg.infer_repeats,
    }


def bench_counts(bm: BenchModel, images: Sequence[tuple[str, np.ndarray]], backends: Sequence[str]) -> dict[str, Any]:
    """Counts through :func:`cellcount.count_image` (card defaults), fp32 path vs the fast path of each backend."""
    from cellcount.pipeline import count_image, resolve_params

    params = resolve_params(bm.model)
    exact = [count_image(img, bm.model, params, fast=False) for _, img in images]
    ref = np.array([r.count_estimate for r in exact], np.float64)
    out: dict[str, Any] = {"n_images": len(images), "total_fp32": float(ref.sum()), "backends": {}}
    for b in backends:
        fast = [count_image(img, bm.model, params, fast=True, backend=b) for _, img in images]
        est = np.array([r.count_estimate for r in fast], np.float64)
        out["backends"][b] = {
            "total_fast": float(est.sum()),
            "total_diff_pct": float(100.0 * (est.sum() - ref.sum()) / max(ref.sum(), 1e-9)),
            "abs_diff_pct": float(100.0 * np.abs(est - ref).sum() / max(ref.sum(), 1e-9)),
            "max_abs_diff": float(np.abs(est - ref).max()) if len(est) else 0.0,
            "images_differing": sum(a.count != f.count for a, f in zip(exact, fast)),
            "per_image": [{"image": name, "fp32": float(a), "fast": float(f)}
                          for (name, _), a, f in zip(images, ref, est)],
        }
    return out


# --------------------------------------------------------------------------------------- postprocess


def ground_truth_prediction(sample: Any, kind: str, params: CountParams) -> Prediction:
    """A model-free map from a synthetic sample's labels: blurred foreground + touching borders (mask), or
    unit-mass Gaussians at the centroids (density). Used when no trained model can supply a realistic map."""
    import cv2

    from cellcount.pipeline import Prediction

    labels = sample.labels
    if kind == "mask":
        fg = cv2.GaussianBlur((labels > 0).astype(np.float32), (0, 0), 1.5)
        border = np.zeros(labels.shape, np.float32)
        for a, b in ((labels[:-1], labels[1:]), (labels[:, :-1], labels[:, 1:])):
            touch = (a != b) & (a > 0) & (b > 0)
            border[: touch.shape[0], : touch.shape[1]] += touch
        border = np.clip(cv2.GaussianBlur(np.minimum(border, 1), (0, 0), 1.0) * 2, 0, 1)
        maps = np.stack([fg, border])
    else:
        dens = np.zeros(labels.shape, np.float32)
        for r, c in np.asarray(sample.centroids):
            dens[min(int(round(r)), labels.shape[0] - 1), min(int(round(c)), labels.shape[1] - 1)] += 1.0
        maps = cv2.GaussianBlur(dens, (0, 0), 3.0)[None]
    return Prediction(
        model_name="synthetic ground truth", output_kind=kind, maps=maps.astype(np.float32),
        image_norm=normalised(sample.image), inverted=False, input_key=params.input_key(),
    )


def postprocess_cases(
    models: Sequence[BenchModel], cfg: BenchConfig
) -> list[tuple[str, str, Prediction, CountParams, np.ndarray]]:
    """(row label, map source, cached prediction, params, original image) for the slider-path rows."""
    from cellcount.models import size_model_for
    from cellcount.pipeline import predict, resolve_params

    sample = synthetic_image(cfg.pp_px, seed=2)
    cases = []
    for kind in ("mask", "density"):
        bm = best_model(models, kind)
        if bm is None:
            continue
        params = resolve_params(bm.model)
        if bm.trained:
            pred = predict(sample.image, bm.model, params, fast=True, size_model=size_model_for(bm.model, params))
            source = f"{bm.name} prediction"
        else:
            pred, source = ground_truth_prediction(sample, kind, params), "synthetic ground-truth map"
        if kind == "mask":
            cases.append(("mask + watershed", source, pred, params, sample.image))
            cases.append(("mask, no watershed", source, pred, params.replace(split_mode="off"), sample.image))
        else:
            cases.append(("density peaks", source, pred, params, sample.image))
    return cases


def bench_postprocess(models: Sequence[BenchModel], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Median latency of :func:`cellcount.postprocess` (object table included) per case."""
    from cellcount.pipeline import postprocess

    rows = []
    for label, source, pred, params, image in postprocess_cases(models, cfg):
        result = postprocess(pred, params, image=image)
        times, serial = [], []

        def call(p=pred, q=params, i=image):
            # what a threshold move costs: the kept mask and split are dropped (the image's quality signals stay)
            p.memo.pop("mask", None)
            p.memo.pop("split", None)
            return postprocess(p, q, image=i)

        for _ in range(cfg.pp_repeats):  # alternating: as the app runs it, and on one thread (cellcount.parallel)
            times.append(time_once(call))
            with one_thread():
                serial.append(time_once(call))
        rows.append({
            "case": label, "map": source, "map_px": list(pred.shape), "count": result.count,
            "median_ms": 1e3 * median(times), "min_ms": 1e3 * min(times), "repeats": cfg.pp_repeats,
            "one_thread_median_ms": 1e3 * median(serial),
        })
    return rows


@contextlib.contextmanager
def one_thread():
    """Postprocessing without its helper thread (``CELLCOUNT_POSTPROCESS_THREADS=1``) inside the block."""
    old = os.environ.get("CELLCOUNT_POSTPROCESS_THREADS")
    os.environ["CELLCOUNT_POSTPROCESS_THREADS"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["CELLCOUNT_POSTPROCESS_THREADS"]
        else:
            os.environ["CELLCOUNT_POSTPROCESS_THREADS"] = old


# ------------------------------------------------------------------------------------ CLI and memory


def cli_model_ref(bm: BenchModel, folder: Path) -> str:
    """What to pass to ``--model``: the name of a shipped model, or a saved folder for a stand-in."""
    from cellcount.models import save_model

    if bm.trained:
        return bm.name
    card = copy.deepcopy(bm.model.card)
    return str(save_model(bm.model.net, card, folder / bm.name))


def cli_env() -> dict[str, str]:
    """Environment for the CLI subprocesses: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def count_command(paths: Sequence[Path], model_ref: str, out: Path) -> list[str]:
    """``count`` with ``-v``: it names the backend it runs with on stderr. ``model_ref`` may end in ``@BACKEND``
    (``--cli-compare unet-mask-varied@int8``): that backend is forced."""
    model, _, backend = model_ref.partition("@")
    return [sys.executable, "-m", "cellcount", "count", *map(str, paths), "--model", model,
            *(["--backend", backend] if backend else []), "--out", str(out), "--no-progress", "-v"]


def backend_line(stderr: str) -> str:
    """The ``backend: ...`` line that ``count -v`` writes, without the prefix ('' when absent)."""
    return next((line.split(":", 1)[1].strip() for line in stderr.splitlines() if line.startswith("backend:")), "")


_LAUNCHER = """
import os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print(f"\\n__measured__ {os.waitstatus_to_exitcode(status)} {time.perf_counter() - t0} {usage.ru_maxrss}",
      file=sys.stderr)
"""
"""Runs a command and reports its exit code, wall seconds and peak RSS (KiB on Linux). Started from a
small interpreter because Linux carries the parent's high-water RSS into a forked child's ``ru_maxrss``:
started from this benchmark, which holds every model, a child's peak would read as the benchmark's."""


def run_measured(cmd: list[str]) -> tuple[int, float, float, str]:
    """Run ``cmd``; return (exit code, wall seconds, peak RSS in MiB of that child, its stderr).

    The child is started by :data:`_LAUNCHER` (a bare interpreter of about 10 MiB), whose ``os.wait4``
    gives the child's own ``ru_maxrss``; the wall time is the child's alone.
    """
    if not hasattr(os, "wait4"):  # Windows: wall time only
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return proc.returncode, time.perf_counter() - t0, float("nan"), proc.stderr.decode(errors="replace")
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], env=cli_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    stderr = proc.stderr.decode(errors="replace")
    head, sep, measured = stderr.rpartition("\n__measured__ ")
    if not sep:  # the launcher itself failed (command not found, killed): no figures, its error kept
        logger.warning("%s could not be measured (launcher exit %s): %s", " ".join(cmd[:4]), proc.returncode,
                       stderr.strip()[-500:])
        return proc.returncode or 1, float("nan"), float("nan"), stderr
    stderr = head
    code, seconds, rss_kib = measured.split()
    rc = int(code)
    if rc != 0:
        logger.warning("%s exited with %s: %s", " ".join(cmd[:4]), rc, stderr.strip()[-500:])
    return rc, float(seconds), float(rss_kib) / (1024 if sys.platform == "darwin" else 1) / 1024, stderr


def bench_cli(model_ref: str, label: str, cfg: BenchConfig, tmp: Path) -> dict[str, Any]:
    """Wall time of ``python -m cellcount count DIR`` on generated images (interpreter start included)."""
    folder = tmp / "cli_images"
    if not folder.is_dir():  # the same images for every model of the run
        folder.mkdir()
        for i in range(cfg.cli_images):
            sample = synthetic_image(cfg.cli_px, seed=100 + i, bright_background=(i % 4 == 3))
            write_image(folder / f"img_{i:03d}.png", sample.image)
    rc, seconds, rss, err = run_measured(count_command([folder], model_ref, tmp / "cli_counts.csv"))
    return {"model": label, "images": cfg.cli_images, "image_px": [cfg.cli_px, cfg.cli_px], "exit_code": rc,
            "seconds": seconds, "images_per_s": cfg.cli_images / seconds, "peak_rss_mib": rss,
            "backend": backend_line(err)}


def bench_cli_alternating(refs: Sequence[tuple[str, str]], cfg: BenchConfig, tmp: Path, repeats: int
                          ) -> list[dict[str, Any]]:
    """:func:`bench_cli` for each (model ref, label), ``repeats`` times in turn (A B A B ...: a slow spell of a
    shared host falls on both), each reported as its median run with every run's seconds beside it."""
    runs: list[list[dict[str, Any]]] = [[] for _ in refs]
    for r in range(repeats):
        for (ref, label), mine in zip(refs, runs):
            logger.info("CLI throughput (%s, run %d of %d)", label, r + 1, repeats)
            mine.append(bench_cli(ref, label, cfg, tmp))
    out = []
    for mine in runs:
        ok = [x for x in mine if x["exit_code"] == 0] or mine
        seconds = [x["seconds"] for x in ok]
        mid = min(ok, key=lambda x: abs(x["seconds"] - median(seconds)))  # a run, not an average of two
        out.append({**mid, "seconds": median(seconds), "images_per_s": cfg.cli_images / median(seconds),
                    "seconds_runs": [x["seconds"] for x in mine], "exit_codes": [x["exit_code"] for x in mine]})
    return out


def bench_memory(model_ref: str, label: str, cfg: BenchConfig, tmp: Path) -> dict[str, Any]:
    """Peak RSS of the CLI counting one ``rss_px`` square image (a 4 x 4 mosaic of a synthetic sample)."""
    base = synthetic_image(cfg.rss_px // 4, seed=3).image
    big = np.tile(base, (4, 4) + (1,) * (base.ndim - 2))
    path = tmp / f"big_{cfg.rss_px}.png"
    write_image(path, big)
    rc, seconds, rss, _ = run_measured(count_command([path], model_ref, tmp / "big_counts.csv"))
    return {"model": label, "image_px": list(big.shape[:2]), "exit_code": rc, "seconds": seconds,
            "peak_rss_mib": rss}


# ------------------------------------------------------------------------------------------- markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _met(ok: bool | None) -> str:
    return "n/a (quick)" if ok is None else ("yes" if ok else "**no**")


def _pairs(row: dict[str, Any]) -> str:
    """The per-repeat naive / fast ratios as 'median (min-max)'."""
    r = row.get("speedup_pairs") or []
    return f"{median(r):.2f}x ({min(r):.2f}-{max(r):.2f})" if r else "-"


INFERENCE_COLUMNS = ["model", "backend", "fast s/Mpx", "fast vs naive", "per repeat: median (min-max)",
                     "fast vs fp32", "GFLOP/s (% of its precision's mm peak)", "total count diff",
                     "sum of per-image diffs", "images differing"]



def postprocess_section(res: BenchResults) -> list[str]:
    """The postprocessing table and its note (Markdown lines)."""
    out = ["### Postprocessing (slider path, object table included)", ""]
    out += _table(["case", "map", "size", "objects", "median ms", "min ms", "median ms, one thread"], [
        [r["case"], r["map"], f"{r['map_px'][0]} x {r['map_px'][1]}", r["count"], f"**{r['median_ms']:.1f}**",
         f"{r['min_ms']:.1f}", f"{r['one_thread_median_ms']:.1f}"] for r in res.postprocess])
    out += ["", f"`cellcount.postprocess(prediction, params, image=image)` on a cached prediction (split as the "
            f"card says; the whole chain from the threshold, as a threshold move runs it), median of "
            f"{res.config['pp_repeats']} calls; \"one thread\": the same calls alternated with these, "
            "`CELLCOUNT_POSTPROCESS_THREADS=1` (no helper thread, `cellcount.parallel`)."]
    return out


def network_sections(res: BenchResults) -> list[str]:
    """The backend choice and network inference tables (Markdown lines)."""
    peaks = ", ".join(f"**{v:.1f} GFLOP/s** {k}" for k, v in res.matmul_gflops.items())
    names = [b if b in res.auto_backends or not res.auto_backends else f"{b} (opt-in: never chosen by auto)"
             for b in res.backends]
    out = [f"Backends available here: {', '.join(names)}. Matrix-multiply peak ({res.config['mm_n']} x "
           f"{res.config['mm_n']}, best of {res.config['mm_repeats']} before and after the networks; fp32: the faster "
           "library, "
           + ", ".join(f"{k} {v:.1f}" for k, v in res.matmul_by_library.items()) + f"): {peaks}.",
           "", "### Backend chosen at first use", ""]
    out += _table(["model", "backend", "why"], [
        [r["label"], f"**{r['choice']['backend']}**", _why(r["choice"])] for r in res.models])
    out += ["", "`NetModel.backend_choice()`: each available backend timed on one tile (after one warm-up call, the backends "
            "taking turns), "
            "the fastest kept in the user's cache folder for this machine and these weights; `reason` cached = "
            "timed by an earlier process on this machine.", "", "### Network inference", ""]
    rows = []
    for r in res.models:
        inf, cnt = r["inference"], r["counts"]
        rows.append([r["label"], "naive loop (fp32)", f"{inf['s_per_mpx']['naive']:.3f}", "1.00x", "", "", "", "", "", ""])
        rows.append([r["label"], "plain fp32 path", f"{inf['s_per_mpx']['fp32']:.3f}", "", "", "1.00x", "", "", "", ""])
        for b, row in inf["backends"].items():
            c = cnt["backends"][b]
            chosen = (" (chosen)" if b == r["choice"]["backend"]
                      else " (opt-in)" if res.auto_backends and b not in res.auto_backends else "")
            rows.append([
                r["label"], f"{b}{chosen}", f"{row['s_per_mpx']:.3f}", f"**{row['speedup_vs_naive']:.2f}x**",
                _pairs(row), f"{row['speedup_vs_fp32']:.2f}x",
                f"{row['gflops']:.1f} ({row['pct_of_peak']:.0f}% of {row['precision']})",
                f"{c['total_diff_pct']:+.2f}%", f"{c['abs_diff_pct']:.2f}%", f"{c['images_differing']}/{cnt['n_images']}",
            ])
    px = res.models[0]["inference"]["image_px"]
    out += _table(INFERENCE_COLUMNS, rows)
    out += ["", f"Times: median of {res.config['infer_repeats']} alternating repeats on a {px[0]} x {px[1]} "
            "synthetic image, network + tiling + stitching; fast vs naive = ratio of the medians (the target), "
            "per repeat = naive / fast of each back-to-back pair. naive = fp32, batch 1, non-overlapping "
            f"{NAIVE_TILE_PX} px tiles, NCHW; plain fp32 = `predict_maps(fast=False)`; backend rows = "
            "`predict_maps(fast=True, backend=...)` (BatchNorm folded, balanced tiles). GFLOP/s = network FLOPs for "
            "the image area / time, against the matrix-multiply peak of the backend's precision. Counts through "
            f"`count_image` (card defaults) against the plain fp32 path, on {res.models[0]['counts']['n_images']} "
            "images (shipped samples + DSB 2018; count estimates for density models): total count diff = "
            "(sum fast - sum fp32) / sum fp32 (the target); sum of per-image diffs = sum |fast - fp32| / sum fp32.",
            ""]
    return out


def render_markdown(res: BenchResults) -> str:
    """The benchmark tables as Markdown (what ``--markdown`` writes and the command prints)."""
    m, quick = res.machine, res.config["quick"]
    out = [f"Command: `{res.command}`" + ("  (quick: small sizes, not comparable with the targets)" if quick else ""),
           "",
           f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, {m['cpu_capability']}, native bf16: "
           f"{'yes' if m['cpu_bf16'] else 'no'}; torch {m['torch']} ({m['torch_threads']} threads), "
           f"ONNX Runtime {m.get('onnxruntime')}, numpy {m['numpy']}, OpenCV {m['opencv']}, Python {m['python']}; "
           f"load average {m['load_avg_1min_start']} at start, {m.get('load_avg_1min_end')} at end; "
           f"{m['date_utc']} UTC; run took {res.seconds:.0f} s.",
           ""]
    if res.models:  # --cli-only and --postprocess-only runs time no network
        out += network_sections(res)
    if res.postprocess:
        out += postprocess_section(res) + [""]
    out += ["### CLI and memory", ""]
    cli, mem = res.cli, res.memory
    rows = []
    if cli:
        rows.append([f"`count` on {cli['images']} images of {cli['image_px'][0]} x {cli['image_px'][1]}",
                     cli["model"], cli.get("backend") or "-",
                     f"**{cli['seconds']:.1f} s** ({cli['images_per_s']:.1f} images/s{_runs(cli)})",
                     _exits(cli)])
    for other in res.cli_compared:
        ratio = f"; {cli['seconds'] / other['seconds']:.2f}x the default model's speed" if cli else ""
        rows.append(["`count` on the same images (`--cli-compare`)", other["model"], other.get("backend") or "-",
                     f"{other['seconds']:.1f} s ({other['images_per_s']:.1f} images/s{ratio}{_runs(other)})",
                     _exits(other)])
    if mem:
        rows.append([f"peak RSS, `count` on one {mem['image_px'][0]} x {mem['image_px'][1]} image", mem["model"], "",
                     f"**{mem['peak_rss_mib']:.0f} MiB** ({mem['seconds']:.1f} s)", f"exit {mem['exit_code']}"])
    out += _table(["check", "model", "backend (from `count -v`)", "value", "status"], rows)
    out += ["", f"Subprocess wall time on {m['cpu']}, interpreter start, model loading and the model card's "
            "nucleus-size estimate included.", "", "### Targets", ""]
    out += _table(["target", "value", "met"], target_rows(res))
    return "\n".join(out) + "\n"


def _runs(cli: dict[str, Any]) -> str:
    """'; median of 3 runs: 16.5, 18.7, 22.1 s' for a repeated CLI check ('' for one run)."""
    runs = cli.get("seconds_runs") or []
    return f"; median of {len(runs)} runs: " + ", ".join(f"{s:.1f}" for s in runs) + " s" if len(runs) > 1 else ""


def _exits(cli: dict[str, Any]) -> str:
    codes = sorted(set(cli.get("exit_codes") or [cli["exit_code"]]))
    return "exit " + "/".join(map(str, codes))


def _why(choice: dict[str, Any]) -> str:
    from cellcount.models.autotune import timings_text

    return choice["reason"] + timings_text(choice["timings_s_per_mpx"], int(choice["tile_px"])) + (
        f"; timing took {choice['measure_s']:.2f} s" if choice["reason"] == "measured" else "")


def target_rows(res: BenchResults) -> list[list[str]]:
    """(target, achieved value, met?) for every target; quick runs are not judged."""
    quick = res.config["quick"]
    judge: Callable[[bool], bool | None] = (lambda ok: None) if quick else (lambda ok: ok)
    rows = []
    for r in res.models:
        chosen = r["choice"]["backend"]
        row = r["inference"]["backends"][chosen]
        s, pct = row["speedup_vs_naive"], row["pct_of_peak"]
        rows.append([f"{r['label']} ({chosen}): fast >= {TARGETS['speedup_vs_naive']:g}x naive", f"{s:.2f}x",
                     _met(judge(s >= TARGETS["speedup_vs_naive"]))])
        rows.append([f"{r['label']} ({chosen}): >= {TARGETS['pct_of_peak']:g}% of the {row['precision']} mm peak",
                     f"{pct:.0f}%", _met(judge(pct >= TARGETS["pct_of_peak"]))])
        for b, c in r["counts"]["backends"].items():
            d = abs(c["total_diff_pct"])
            rows.append([f"{r['label']} ({b}): total count within {TARGETS['count_diff_pct']:g}% of fp32",
                         f"{d:.2f}%", _met(judge(d <= TARGETS["count_diff_pct"]))])
    for r in res.postprocess:
        rows.append([f"postprocess {r['case']} <= {TARGETS['postprocess_ms']:g} ms", f"{r['median_ms']:.1f} ms",
                     _met(judge(r["median_ms"] <= TARGETS["postprocess_ms"]))])
    if res.cli:
        rows.append([f"CLI, 100 images of 512 x 512, default model <= {TARGETS['cli_seconds']:g} s",
                     f"{res.cli['seconds']:.1f} s",
                     _met(judge(all(c == 0 for c in res.cli.get("exit_codes", [res.cli["exit_code"]]))
                                and res.cli["seconds"] <= TARGETS["cli_seconds"]))])
    if res.memory:
        gb = res.memory["peak_rss_mib"] / 1024
        rows.append([f"peak RSS, 4096 x 4096 image <= {TARGETS['peak_rss_gb']:g} GiB", f"{gb:.2f} GiB",
                     _met(judge(res.memory["exit_code"] == 0 and gb <= TARGETS["peak_rss_gb"]))])
    return rows


# ---------------------------------------------------------------------------------------------- main


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite (small images, few repeats)")
    p.add_argument("--markdown", type=Path, help="also write the Markdown tables here")
    p.add_argument("--json", type=Path, help="also write every measurement as JSON here")
    p.add_argument("--models", nargs="+", help="only these model names (default: all)")
    p.add_argument("--dsb-dir", type=Path, default=DSB_DIR,
                   help=f"DSB 2018 folder (default $CELLCOUNT_DSB_DIR, else {DSB_DIR})")
    p.add_argument("--skip-cli", action="store_true", help="skip the CLI throughput and memory subprocesses")
    p.add_argument("--cli-only", action="store_true", help="only the CLI throughput and memory subprocesses")
    p.add_argument("--postprocess-only", action="store_true",
                   help="only the postprocessing (slider path) timings, with and without the helper thread")
    p.add_argument("--cli-compare", nargs="+", metavar="MODEL[@BACKEND]",
                   help="also time the CLI with these models on the same images, after the default model; "
                        "MODEL@BACKEND forces a backend (unet-mask-varied@int8)")
    p.add_argument("--cli-repeats", type=_positive, default=1,
                   help="runs of each CLI check, alternating models; the median is reported (default 1)")
    p.add_argument("--repeats", type=int, help="alternating repeats of the network timings (default 9, quick 1)")
    return p


def cli_model(models: Sequence[BenchModel]) -> BenchModel | None:
    """The model of the CLI rows: the default model (what ``count`` users get), else the best mask model."""
    from cellcount.models import CLASSICAL_NAME, NetModel, default_model_name, load_model

    name = default_model_name()
    found = next((bm for bm in models if bm.name == name), None)
    if found is None and name != CLASSICAL_NAME:
        model = load_model(name)
        found = BenchModel(model, trained=True) if isinstance(model, NetModel) else None
    return found or best_model(models, "mask")


def run(args: argparse.Namespace, command: str) -> BenchResults:
    """Run every benchmark section and collect the results."""
    from cellcount.models.backends import available_backends, buildable_backends

    cfg = BenchConfig.make(args.quick)
    if args.repeats:
        cfg = dataclasses.replace(cfg, infer_repeats=args.repeats)
    t0 = time.perf_counter()
    res = BenchResults(config=dataclasses.asdict(cfg), machine=machine_info(), command=command,
                       backends=buildable_backends(), auto_backends=available_backends())
    if args.postprocess_only:
        logger.info("postprocessing")
        res.postprocess = bench_postprocess(bench_models(args.models), cfg)
        res.seconds = time.perf_counter() - t0
        return res
    logger.info("matrix-multiply peak")
    # the fp32 peak is the best of the libraries' GEMMs: a backend is judged against the fastest product
    # this machine can do in its precision, not against one library's kernel
    res.matmul_by_library = fp32_peaks(cfg.mm_n, cfg.mm_repeats, res.backends)
    res.matmul_gflops["fp32"] = max(res.matmul_by_library.values())
    if "bf16" in res.backends:
        res.matmul_gflops["bf16"] = matmul_peak_gflops(cfg.mm_n, cfg.mm_repeats, dtype="bf16")
    if "int8" in res.backends:
        res.matmul_gflops["int8"] = matmul_peak_gflops(cfg.mm_n, cfg.mm_repeats, dtype="int8", library="openvino")
    models = [] if args.cli_only else bench_models(args.models)
    images = [] if args.cli_only else count_images(cfg, args.dsb_dir)
    for bm in models:
        logger.info("inference: %s", bm.label)
        choice = bm.model.backend_choice("auto").to_dict()  # first: its timing runs on a fresh process
        res.models.append({"name": bm.name, "label": bm.label, "trained": bm.trained, "kind": bm.model.output_kind,
                           "choice": choice,
                           "inference": bench_inference(bm, cfg, res.backends, res.matmul_gflops),
                           "counts": bench_counts(bm, images, res.backends)})
    if models:  # the peak again, after the networks: the best of both stands (a slow spell lowers one)
        again = fp32_peaks(cfg.mm_n, cfg.mm_repeats, res.backends)
        res.matmul_by_library = {k: max(v, res.matmul_by_library[k]) for k, v in again.items()}
        res.matmul_gflops["fp32"] = max(res.matmul_by_library.values())
        if "bf16" in res.backends:
            res.matmul_gflops["bf16"] = max(res.matmul_gflops["bf16"],
                                            matmul_peak_gflops(cfg.mm_n, cfg.mm_repeats, dtype="bf16"))
        if "int8" in res.backends:
            res.matmul_gflops["int8"] = max(res.matmul_gflops["int8"], matmul_peak_gflops(
                cfg.mm_n, cfg.mm_repeats, dtype="int8", library="openvino"))
        for r in res.models:
            for row in r["inference"]["backends"].values():
                row["pct_of_peak"] = 100.0 * row["gflops"] / res.matmul_gflops[row["precision"]]
    logger.info("postprocessing")
    res.postprocess = bench_postprocess(models, cfg)
    cli_bm = cli_model(models)
    if cli_bm is not None and not args.skip_cli:
        with tempfile.TemporaryDirectory(prefix="cellcount-bench-") as tmp:
            ref = cli_model_ref(cli_bm, Path(tmp) / "models")
            refs = [(ref, cli_bm.label), *((name, name) for name in args.cli_compare or ())]
            res.cli, *res.cli_compared = bench_cli_alternating(refs, cfg, Path(tmp), args.cli_repeats)
            logger.info("peak memory")
            res.memory = bench_memory(ref, cli_bm.label, cfg, Path(tmp))
    res.machine["load_avg_1min_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    res.seconds = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = "python scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        from cellcount.memory import keep_freed_memory

        keep_freed_memory()  # the networks timed as the app and the CLI run them (PyTorch's 1.3x faster with it)
        res = run(args, command.strip())
        if args.postprocess_only:
            m = res.machine
            text = "\n".join([f"Command: `{res.command}`", "", f"Machine: {m['cpu']}, {m['logical_cores']} logical cores; "
                              f"load average {m['load_avg_1min_start']} at start; {m['date_utc']} UTC.", "",
                              *postprocess_section(res)]) + "\n"
        else:
            text = render_markdown(res)
        print(text)
        if args.markdown:
            args.markdown.write_text(text, encoding="utf-8")
        if args.json:
            args.json.write_text(json.dumps(dataclasses.asdict(res), indent=2), encoding="utf-8")
        return 0

    from cellcount.errors import run_cli

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
