"""Levers of each inference backend, one forward pass of one tile at a time (issue #20).

    python scripts/bench_backend_levers.py [--model unet-mask] [--tile 256] [--repeats 7] [--compile]

Times the network alone (no tiling) on a square tile, median of alternating repeats after one warm-up
call each, and prints seconds per megapixel, GFLOP/s and percent of the fp32 (or bf16) matrix-multiply peak
measured in the same run. Variants: PyTorch fp32 NHWC with and without BatchNorm folding and NCHW; oneDNN's
fused convolutions (``FusedUNet``) in fp32; ONNX Runtime with all or basic graph optimisations and with 1 or
all threads; ONNX Runtime and PyTorch at other tile sizes; ``--compile``: ``torch.compile`` (Inductor) of the
folded network, with its compile time; bf16 variants where the CPU has native bf16.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402

from cellcount.models import load_model  # noqa: E402
from cellcount.models.backends import OnnxRuntimeNet, build_backend, cpu_has_bf16, fold_batchnorm  # noqa: E402
from cellcount.models.unet_fused import FusedUNet  # noqa: E402


def ort_variant(net: torch.nn.Module, *, threads: int | None = None, level: str = "all") -> OnnxRuntimeNet:
    """:class:`OnnxRuntimeNet` of ``net``, its session rebuilt with ``threads`` and graph optimisation ``level``."""
    import onnxruntime as ort

    wrapped = OnnxRuntimeNet(net, threads=threads)
    if level == "all":
        return wrapped
    buf = io.BytesIO()
    dims = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), torch.zeros(1, 1, 64, 64), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": dims, "y": dims}, opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                     "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
    opts.log_severity_level = 3
    wrapped.session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    return wrapped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    args = p.parse_args(argv)
    model = load_model(args.model)
    folded = fold_batchnorm(model.net)
    t = args.tile
    x = torch.rand(1, 1, t, t).contiguous(memory_format=torch.channels_last)
    xs = {k: torch.rand(1, 1, k, k).contiguous(memory_format=torch.channels_last) for k in (256, 384, 512)}
    variants = {
        "torch fp32 NHWC, BatchNorm folded (backend torch)": (build_backend(model.net, "torch"), x),
        "torch fp32 NHWC, BatchNorm not folded": (model.net, x),
        "torch fp32 NCHW, folded": (fold_batchnorm(model.net).to(memory_format=torch.contiguous_format),
                                    x.contiguous()),
        "ONNX Runtime, all graph optimisations, all threads (backend onnxruntime)": (ort_variant(folded), x),
        "ONNX Runtime, basic graph optimisations": (ort_variant(folded, level="basic"), x),
        "ONNX Runtime, 1 thread": (ort_variant(folded, threads=1), x),
        "ONNX Runtime, BatchNorm not folded": (ort_variant(model.net), x),
    }
    try:
        variants["oneDNN fused convolutions (FusedUNet) in fp32"] = (FusedUNet(folded, dtype=torch.float32), x)
    except (RuntimeError, ValueError) as err:
        print(f"# FusedUNet fp32 unavailable: {err}")
    ort_net = variants["ONNX Runtime, all graph optimisations, all threads (backend onnxruntime)"][0]
    for k, xk in xs.items():
        if k != t:
            variants[f"ONNX Runtime, {k} px tile"] = (ort_net, xk)
            variants[f"torch fp32 NHWC folded, {k} px tile"] = (variants[
                "torch fp32 NHWC, BatchNorm folded (backend torch)"][0], xk)
    if cpu_has_bf16():
        variants["bf16 fused U-Net (backend bf16)"] = (build_backend(model.net, "bf16"), x)
    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(build_backend(model.net, "torch"))
        with torch.inference_mode():
            compiled(x)
        print(f"# torch.compile: first call (compile) {time.perf_counter() - t0:.1f} s")
        variants["torch.compile (Inductor) of the folded NHWC network"] = (compiled, x)

    fpp = bench.flops_per_pixel(bench.contiguous_copy(model.net))
    peaks = {"fp32": bench.matmul_peak_gflops(2048, 5)}
    if cpu_has_bf16():
        peaks["bf16"] = bench.matmul_peak_gflops(2048, 5, dtype="bf16")
    fns = {}
    for name, (net, inp) in variants.items():
        fns[name] = (lambda net=net, inp=inp: net(inp))
    with torch.inference_mode():
        times = bench.time_interleaved(fns, args.repeats)
    print(f"# {args.model}, {t} px tile unless named, median of {args.repeats} alternating calls, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; mm peak "
          + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()))
    print("| variant | s/Mpx | GFLOP/s | % of peak |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        px = variants[name][1].shape[-1] ** 2
        med = statistics.median(ts)
        gflops = fpp * px / med / 1e9
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        print(f"| {name} | {med / px * 1e6:.3f} | {gflops:.1f} | {100 * gflops / peak:.0f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
