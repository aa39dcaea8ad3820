"""Inference backends of the fast path: the same network, run by different kernels.

Each backend starts from the network with its BatchNorms folded into the convolutions
(:func:`fold_batchnorm`):

* ``torch``: PyTorch fp32 with NHWC (channels-last) weights;
* ``onnxruntime``: the network exported to ONNX in memory and run by ONNX Runtime's fp32 CPU kernels;
* ``bf16``: bfloat16 weights and activations, U-Nets as fused oneDNN convolutions
  (:class:`~cellcount.models.unet_fused.FusedUNet`), only offered on CPUs with native bf16;
* ``openvino`` and ``int8``: the ONNX export run by OpenVINO, in fp32 or quantised to int8
  (:mod:`cellcount.models.openvino_net`), offered where OpenVINO is installed.

Which one is fastest depends on the CPU, so :mod:`cellcount.models.autotune` times them on first use;
:func:`build_backend` only builds the one it is asked for.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import io
import logging
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ParameterError

logger = logging.getLogger(__name__)

BACKENDS = ("bf16", "int8", "onnxruntime", "openvino", "torch")
"""Every backend :func:`build_backend` knows; :func:`available_backends` lists this machine's."""

FAST_TILE_PX = {"bf16": 528, "int8": 528, "onnxruntime": 528, "openvino": 528, "torch": 528}
"""Largest tile per backend; balanced tiling shrinks it so that tiles share the image evenly.

A 512 px image runs in one pass, and 528 px (not 512) lets two tiles with the cards' 32 px overlap cover 1024 px,
where 384 needed three a side (9 tiles of 368 px, 1.16x the image's pixels, against 4 of 528 px, 1.06x). On an
Intel Xeon without AMX every backend ran a 512 px image 1.11-1.28x faster in one tile than in four of 272 px, and
a 1024 px one 1.06-1.18x (``scripts/tile_time_probe.py``); an AVX2 AMD EPYC ran ONNX Runtime no faster per pixel at
512 than at 384 (docs/benchmark_history.md)."""


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
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU does bfloat16 arithmetic natively (AVX512-BF16 or AMX-BF16, Linux flags).

    Without it PyTorch emulates bf16 at a fraction of the fp32 speed, so the backend is not offered;
    unknown platforms answer False.
    """
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def backend_note(requested: str) -> str | None:
    """What the user should know about a backend they forced, or None: bf16 without native bf16 is emulated,
    many times slower than fp32, and its counts may differ slightly."""
    if requested == "bf16" and not cpu_has_bf16():
        return ("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated here, many times slower than "
                "fp32, and its counts may differ slightly; 'auto' chooses the fastest backend this CPU has")
    return None


OPT_IN_BACKENDS = ("int8",)
"""Backends built on request only (``--backend int8``, the Timing tab), never chosen by ``auto``: int8's activation
ranges come from generated tiles, and it moves an image's count by about 1% of the fp32 count on average (bf16 0.7%,
the fp32 backends 0.4%; BENCHMARKS.md), so a user takes it knowingly."""


def available_backends() -> list[str]:
    """The backends ``auto`` times on this machine, in :data:`BACKENDS` order (:data:`OPT_IN_BACKENDS` left out)."""
    from .openvino_net import openvino_available

    out = ["bf16"] if cpu_has_bf16() else []
    if onnxruntime_available():
        out.append("onnxruntime")
    if openvino_available():
        out.append("openvino")
    return [*out, "torch"]


def buildable_backends() -> list[str]:
    """Every backend this machine can run, the opt-in ones included, in :data:`BACKENDS` order."""
    from .openvino_net import openvino_available

    extra = set(OPT_IN_BACKENDS) if openvino_available() else set()
    return [b for b in BACKENDS if b in extra or b in available_backends()]


ONNX_OPSET = 17


def cache_dir() -> Path:
    """The user's cellcount cache folder: ``$XDG_CACHE_HOME/cellcount``, else ``~/.cache/cellcount`` (the
    backend choices of :mod:`cellcount.models.autotune` and the ONNX exports live there)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "cellcount"


def onnx_cache_file(net: torch.nn.Module) -> Path:
    """Where the ONNX export of ``net`` is kept: beside the backend choices (``$XDG_CACHE_HOME/cellcount/onnx/``),
    named by a hash of everything the graph depends on: every tensor (name, shape, dtype, values), every
    module's class and plain attributes (a head's kind, an activation chosen by the card), the source of the
    modules that define them and of this exporter, torch's version and the opset."""
    import sys

    h = hashlib.sha256(f"torch {torch.__version__}|opset {ONNX_OPSET}".encode())
    sources = {__file__}
    for name, module in net.named_modules():
        sources.add(getattr(sys.modules.get(type(module).__module__), "__file__", None) or "")
        plain = {k: v for k, v in sorted(vars(module).items())
                 if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple, type(None)))}
        h.update(f"{name}|{type(module).__module__}.{type(module).__qualname__}|{plain!r}".encode())
    for source in sorted(filter(None, sources)):
        h.update(Path(source).read_bytes())
    for key, t in net.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return cache_dir() / "onnx" / f"{h.hexdigest()[:32]}.onnx"


def _export_onnx(net: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    dims = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the TorchScript-based exporter warns that it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(), torch.zeros(1, 1, 64, 64), buf, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": dims, "y": dims}, opset_version=ONNX_OPSET, dynamo=False,
        )
    return buf.getvalue()


ONNX_CACHE_KEEP = 16
"""ONNX exports kept in the cache (the most recently used; about 2-8 MB each for the shipped networks): every
fine-tuned model and every new version of cellcount or torch adds one, so older ones are deleted."""


def _prune_onnx_cache(folder: Path, keep: int = ONNX_CACHE_KEEP) -> None:
    """Delete all but the ``keep`` most recently used exports in ``folder``, and temporary files of writes
    that died over an hour ago. Best effort: another process may be pruning or reading at the same time."""
    now = time.time()
    entries = []
    for f in folder.glob("*.onnx*"):
        with contextlib.suppress(OSError):
            mtime = f.stat().st_mtime
            if f.suffix == ".tmp":
                if now - mtime > 3600:
                    f.unlink(missing_ok=True)
            elif f.suffix == ".onnx":
                entries.append((mtime, f))
    for _, f in sorted(entries, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            f.unlink(missing_ok=True)


def _cached_onnx(net: torch.nn.Module) -> tuple[bytes, Path | None]:
    """``net`` as an ONNX graph, and the cache file when it was read from one: read from the cache when it is
    there, else exported and kept there (written to a temporary name and renamed, so a reader never sees half
    a file). Any trouble with the cache (no home folder, a file that cannot be read or written) means
    exporting."""
    try:
        path: Path | None = onnx_cache_file(net)
    except (OSError, RuntimeError) as err:  # RuntimeError: no home folder to put a cache in
        logger.debug("no ONNX cache: %s", err)
        path = None
    if path is not None:
        try:
            data = path.read_bytes()
            if data:
                with contextlib.suppress(OSError):
                    os.utime(path)  # used now: pruning keeps the most recently used
                return data, path
        except OSError:
            pass
    data = _export_onnx(net)
    if path is not None:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
            _prune_onnx_cache(path.parent)
        except OSError as err:
            logger.debug("could not keep the ONNX export in %s: %s", path, err)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return data, None


def onnx_graph(net: torch.nn.Module, *, int8: bool = False, cache: bool = False) -> bytes:
    """The ONNX graph OpenVINO runs for ``net``: its fp32 export, or with ``int8`` that export quantised
    (:func:`cellcount.models.openvino_net.quantize_int8`). ``cache``: both are kept in (and read back from) the
    user's cache folder (:func:`onnx_cache_file`)."""
    graph, _ = _cached_onnx(net) if cache else (_export_onnx(net), None)
    if not int8:
        return graph
    from .openvino_net import cached_int8

    cache_path = None
    if cache:
        with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: no home folder to put a cache in
            cache_path = onnx_cache_file(net)
    return cached_int8(graph, cache_path)


class OnnxRuntimeNet(torch.nn.Module):
    """A network exported to ONNX and run by ONNX Runtime's CPU kernels, behind the ``nn.Module`` call.

    Same fp32 arithmetic as PyTorch (outputs within 1e-5). ``run`` is thread-safe, so one instance
    serves every app session. The export is a large part of a short command-line run's start, so with
    ``cache`` the exported graph is kept in the user's cache folder under a hash of the network
    (:func:`onnx_cache_file`) and read back next time; an unreadable or unwritable cache only means
    exporting again.
    """

    def __init__(self, net: torch.nn.Module, *, threads: int | None = None, cache: bool = False) -> None:
        super().__init__()
        import onnxruntime as ort

        graph, cached = _cached_onnx(net) if cache else (_export_onnx(net), None)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Idle threads sleep instead of spinning: on 2 cores the spin takes CPU from everything else in the process
        # (the size model, the novelty pass, postprocessing): the CLI's 100 images 44.5 s instead of 52.5 s on an
        # AMD EPYC Zen 3 (medians of 3, alternating), the network alone unchanged; not measured on more cores.
        # CELLCOUNT_ORT_SPIN=1 brings back ONNX Runtime's own behaviour (for such comparisons).
        if os.environ.get("CELLCOUNT_ORT_SPIN", "").strip().lower() not in ("1", "true", "yes", "on"):
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - ONNX Runtime raises its own types for a damaged graph
            if cached is None:
                raise
            logger.debug("cached ONNX graph %s is damaged: exporting again", cached, exc_info=True)
            cached.unlink(missing_ok=True)
            graph, _ = _cached_onnx(net)
            self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session.run(None, {"x": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(y)


class Bf16Net(torch.nn.Module):
    """A (BatchNorm-folded) network run in bfloat16 on the CPU, NHWC; float32 in and out.

    U-Nets run as :class:`~cellcount.models.unet_fused.FusedUNet`: bf16 weights pre-packed for oneDNN
    and each convolution fused with its ReLU, residual addition or gate sum. That operator is private to
    PyTorch, so other networks, a build without it or a failure building it (``fuse=False`` forces this)
    take a TorchScript trace, frozen so that oneDNN pre-packs the weights; should tracing fail too, the
    network runs eagerly under bf16 autocast. The traced graph has no shape-dependent code (a U-Net on
    inputs divisible by ``2**depth``), so one trace serves every tile size. bf16 keeps 8 mantissa bits,
    so logits move by up to about 0.1-0.2 and a few objects per thousand near the threshold can flip
    (``scripts/bench.py`` checks that counts stay within 0.5% of fp32).
    """

    def __init__(self, net: torch.nn.Module, *, jit: bool = True, fuse: bool = True) -> None:
        super().__init__()
        from .unet import UNet
        from .unet_fused import FusedUNet, fused_ops_available

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


def check_backend(name: str) -> str:
    """``name`` if it is a known backend that this machine can build; ParameterError otherwise."""
    if name not in BACKENDS:
        raise ParameterError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    if name == "onnxruntime" and not onnxruntime_available():
        raise ParameterError("backend 'onnxruntime' needs the onnxruntime and onnx packages (pip install onnxruntime onnx)")
    if name in ("openvino", "int8"):
        from .openvino_net import openvino_available

        if not openvino_available():
            raise ParameterError(f"backend {name!r} needs the openvino, onnxruntime and onnx packages "
                                 "(pip install openvino onnxruntime onnx)")
    return name


def build_backend(net: torch.nn.Module, name: str, *, cache: bool = False) -> torch.nn.Module:
    """The fast-path network of backend ``name``: ``net`` with BatchNorm folded, run by that backend.

    The fp32 backends match ``net`` within float rounding; bf16 within about 0.1-0.2 on the logits; int8
    further (its counts are checked by ``scripts/bench.py``). ``net`` is not modified. ``bf16`` builds on any
    CPU, but without native bf16 it is many times slower than fp32, which is why :func:`available_backends`
    leaves it out there. ``cache``: the ONNX-based backends keep their export (and int8 its quantised graph)
    in the user's cache folder (:class:`OnnxRuntimeNet`, :class:`~cellcount.models.openvino_net.OpenVinoNet`).
    """
    check_backend(name)
    folded = fold_batchnorm(net)
    for p in folded.parameters():
        p.requires_grad_(False)
    if name == "bf16":
        return Bf16Net(folded)
    if name == "onnxruntime":
        return OnnxRuntimeNet(folded, cache=cache)
    if name in ("openvino", "int8"):
        from .openvino_net import OpenVinoNet

        return OpenVinoNet(onnx_graph(folded, int8=name == "int8", cache=cache), int8=name == "int8")
    return folded.to(memory_format=torch.channels_last)
