"""Tiled, batched forward pass with blended overlaps.

Tiles overlap by ``overlap`` pixels and are blended with a tapered weight; the accumulated output is
divided by the accumulated weight, so the effective weights at every pixel sum to one. A density map's
integral therefore does not depend on the tiling, and an object on a seam is not counted twice.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from .errors import ParameterError

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each batch of tiles."""


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Copy of ``net`` (eval mode) with each ``Conv2d -> BatchNorm2d`` pair of an ``nn.Sequential`` folded.

    The convolution takes the BatchNorm's scale and shift into its weights and bias; the BatchNorm
    becomes ``nn.Identity``. Outputs are unchanged up to float rounding (about 1e-6 on logits), and a
    full pass over the activations per BatchNorm is saved. ``net`` itself is not modified.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(net).eval()
    n = 0
    for module in folded.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = torch.nn.Identity()
                n += 1
    logger.debug("folded %d BatchNorm layers", n)
    return folded


def onnxruntime_available() -> bool:
    """True when ONNX Runtime (and the ``onnx`` package the exporter needs) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


class OnnxRuntimeNet(torch.nn.Module):
    """A network exported to ONNX and run by ONNX Runtime's CPU kernels, behind the ``nn.Module`` call.

    On the 2-core AVX2 laptop CPU, ONNX Runtime runs the folded U-Nets 1.5-2x faster than PyTorch's
    NHWC convolutions (BENCHMARKS.md) with the same fp32 arithmetic (outputs within 1e-5). The export
    happens in memory when the model is first used for counting (about a second); nothing is written to
    disk. ``run`` is thread-safe, so one instance serves every app session.
    """

    def __init__(self, net: torch.nn.Module, *, threads: int | None = None) -> None:
        super().__init__()
        import io
        import warnings

        import onnxruntime as ort

        buf = io.BytesIO()
        dims = {0: "batch", 2: "height", 3: "width"}
        with warnings.catch_warnings():  # the TorchScript-based exporter warns that it is legacy
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net.eval(), torch.zeros(1, 1, 64, 64), buf, input_names=["x"], output_names=["y"],
                dynamic_axes={"x": dims, "y": dims}, opset_version=17, dynamo=False,
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session.run(None, {"x": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(y)


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU does bfloat16 arithmetic natively (AVX512-BF16 or AMX-BF16, Linux flags).

    Only then is bf16 autocast fast: without it PyTorch emulates bf16 and runs 10-100x slower than fp32
    (measured on an AVX2-only CPU, BENCHMARKS.md). Unknown platforms answer False (the fp32 path).
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


class Bf16Net(torch.nn.Module):
    """A (BatchNorm-folded) network run in bfloat16 on the CPU, NHWC; float32 in and out.

    U-Nets run as :class:`~cellcount.models.unet_fused.FusedUNet`: bf16 weights pre-packed for oneDNN
    and each convolution fused with its ReLU, residual addition or gate sum (1.05-1.27x faster per tile
    than tracing, BENCHMARKS.md). Other networks, or a PyTorch without those operators (``fuse=False``
    forces this), are traced and frozen with TorchScript, which also lets oneDNN pre-pack the weights;
    on a CPU with AMX/AVX512-BF16 either runs about 3x faster than fp32. The traced graph has no
    shape-dependent code (a U-Net on inputs divisible by ``2**depth``), so one trace serves every tile
    size. Should both fail, the network runs eagerly under bf16 autocast. bf16 keeps 8 mantissa bits,
    so logits move by up to about 0.1-0.2 and a few objects per thousand near the threshold can flip:
    the benchmark checks that counts stay within 0.5% of the fp32 path.
    """

    def __init__(self, net: torch.nn.Module, *, jit: bool = True, fuse: bool = True) -> None:
        super().__init__()
        import warnings

        from .models.unet import UNet
        from .models.unet_fused import FusedUNet, fused_ops_available

        self.net = net.eval().to(memory_format=torch.channels_last)
        self.fused = self.traced = None
        if fuse and isinstance(net, UNet) and fused_ops_available():
            try:
                self.fused = FusedUNet(self.net)
            except Exception as exc:  # noqa: BLE001 - a private oneDNN API: fall back to tracing
                logger.warning("fused bf16 U-Net unavailable (%s); tracing instead", exc)
        if jit and self.fused is None:
            try:
                pure = copy.deepcopy(self.net).to(torch.bfloat16)
                probe = torch.zeros(1, 1, 64, 64, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
                with warnings.catch_warnings(), torch.inference_mode():
                    warnings.simplefilter("ignore")  # TorchScript's deprecation notices
                    self.traced = torch.jit.freeze(torch.jit.trace(pure, probe))
            except Exception as exc:  # noqa: BLE001 - any tracing failure: the eager path still works
                logger.warning("TorchScript tracing failed (%s); running bf16 autocast eagerly", exc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if self.fused is not None:
            return self.fused(x)
        if self.traced is not None:
            return self.traced(x.to(torch.bfloat16)).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(x).float()


BACKENDS = ("auto", "bf16", "onnxruntime", "torch")


def resolve_backend(backend: str = "auto") -> str:
    """The fast-path backend ``"auto"`` stands for on this machine: ``"bf16"`` on CPUs with native
    bfloat16, else ``"onnxruntime"`` when installed, else ``"torch"``."""
    if backend not in BACKENDS:
        raise ParameterError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend != "auto":
        return backend
    if cpu_has_bf16():
        return "bf16"
    return "onnxruntime" if onnxruntime_available() else "torch"


def optimize_for_inference(net: torch.nn.Module, *, backend: str = "auto") -> torch.nn.Module:
    """The fast-path network: BatchNorm folded (:func:`fold_batchnorm`), then run by the backend
    :func:`resolve_backend` picks: bf16 with fused oneDNN convolutions (:class:`Bf16Net`, CPUs with
    AMX/AVX512-BF16), ONNX Runtime (fp32), or PyTorch with NHWC weights (fp32).

    The fp32 backends match the original network within float rounding; bf16 within about 0.1-0.2 on the
    logits (counts within 0.5%, checked by ``python -m cellcount.bench``). Measured and rejected
    (BENCHMARKS.md): bf16 on CPUs without native bf16 (10-100x slower), TorchScript freezing and
    ``torch.compile`` (no gain), int8 static quantization (counts 1.5% lower; quantized
    ``ConvTranspose2d`` gives wrong outputs in this torch build).
    """
    backend = resolve_backend(backend)
    folded = fold_batchnorm(net)
    for p in folded.parameters():
        p.requires_grad_(False)
    if backend == "bf16":
        return Bf16Net(folded)
    if backend == "onnxruntime":
        return OnnxRuntimeNet(folded)
    return folded.to(memory_format=torch.channels_last)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with windows of ``tile`` (last one flush with the end)."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    return sorted(set(starts))


def balanced_tile(length: int, tile: int, overlap: int, divisor: int = 1) -> int:
    """Smallest tile size (a multiple of ``divisor``, at most ``tile`` rounded up) that covers ``length``
    with as few tiles as ``tile`` needs.

    With the last tile flush with the end, ``tile_starts`` can make the last tile overlap its neighbour by
    almost a whole tile (1024 px with 512 px tiles and 32 px overlap: three tiles, 2.25x the pixels).
    Shrinking the tiles to share the length evenly keeps the overlap near ``overlap`` and the wasted
    work small, without changing the number of forward passes.
    """
    tile = _round_up(tile, divisor)
    if length <= tile:
        return _round_up(length, divisor)
    stride = max(tile - overlap, 1)
    n = math.ceil((length - tile) / stride) + 1
    return min(tile, _round_up(math.ceil((length + (n - 1) * overlap) / n), divisor))


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) float32 weights: 1 in the middle, linear ramps over ``overlap`` px at the edges."""
    return np.outer(_ramp(tile, overlap), _ramp(tile, overlap))


def _round_up(x: int, m: int) -> int:
    return ((x + m - 1) // m) * m


@torch.inference_mode()
def predict_tiled(
    net: torch.nn.Module,
    image: np.ndarray,
    *,
    out_channels: int,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 4,
    divisor: int = 16,
    device: torch.device | str | None = None,
    channels_last: bool = True,
    progress: ProgressFn | None = None,
    balanced: bool = False,
) -> np.ndarray:
    """Run ``net`` over ``image`` in overlapping tiles and blend the outputs.

    Parameters
    ----------
    net : torch.nn.Module
        Fully convolutional network mapping (B, 1, h, w) to (B, out_channels, h, w); in eval mode.
    image : (H, W) float32
        Normalised image.
    tile, overlap : int
        Tile size (rounded up to a multiple of ``divisor``) and overlap between neighbours, px.
    batch_size : int
        Tiles per forward pass.
    device : torch.device or str, optional
        Defaults to CUDA when present, else CPU.
    channels_last : bool
        Use the NHWC memory format (faster convolutions on CPU).
    progress : callable, optional
        ``progress(done_tiles, total_tiles)`` after each batch.
    balanced : bool
        Shrink the tiles (see :func:`balanced_tile`) so that they share each axis evenly: same number
        of tiles, less overlap work. Off by default so that the plain path keeps its tiling.

    Returns
    -------
    (out_channels, H, W) float32 raw network output (logits or density), blended.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ParameterError(f"predict_tiled expects a (H, W) image, got shape {image.shape}")
    if tile < divisor or overlap < 0 or batch_size < 1:
        raise ParameterError(f"need tile >= {divisor}, overlap >= 0, batch_size >= 1")
    device = torch.device(device) if device is not None else default_device()
    h, w = image.shape
    tile = _round_up(tile, divisor)
    # Small images: one tile of the padded image size (no wasted work on a full 256 tile).
    if balanced:
        th, tw = balanced_tile(h, tile, overlap, divisor), balanced_tile(w, tile, overlap, divisor)
    else:
        th, tw = min(tile, _round_up(h, divisor)), min(tile, _round_up(w, divisor))
    overlap = min(overlap, th // 2, tw // 2)
    ph, pw = max(h, th), max(w, tw)
    # reflect-pad to the tile grid; symmetric handles 1-pixel images too
    padded = np.pad(image, ((0, ph - h), (0, pw - w)), mode="symmetric") if (ph, pw) != (h, w) else image
    rows = tile_starts(ph, th, th - overlap)
    cols = tile_starts(pw, tw, tw - overlap)
    coords = [(r, c) for r in rows for c in cols]
    window = np.outer(_ramp(th, overlap), _ramp(tw, overlap))
    acc = np.zeros((out_channels, ph, pw), np.float32)
    wsum = np.zeros((ph, pw), np.float32)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    total = len(coords)
    for start in range(0, total, batch_size):
        chunk = coords[start:start + batch_size]
        batch = np.stack([padded[r:r + th, c:c + tw] for r, c in chunk])[:, None]
        x = torch.from_numpy(batch).to(device).contiguous(memory_format=fmt)
        with torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext():
            y = net(x)
        y = y.float().cpu().numpy()
        for (r, c), out in zip(chunk, y):
            acc[:, r:r + th, c:c + tw] += out * window
            wsum[r:r + th, c:c + tw] += window
        if progress is not None:
            progress(min(start + batch_size, total), total)
    acc /= wsum  # in place: no second full-size map (matters for 4096 x 4096 images)
    if (ph, pw) == (h, w):
        return acc
    return np.ascontiguousarray(acc[:, :h, :w])


def _ramp(n: int, overlap: int) -> np.ndarray:
    w = np.ones(n, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
        w[:overlap] = ramp
        w[n - overlap:] = ramp[::-1]
    return w
