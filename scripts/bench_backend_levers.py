"""Levers of each inference backend, one forward pass of one tile at a time (issue #20).

    python scripts/bench_backend_levers.py [--model unet-mask] [--tile 256] [--repeats 7] [--compile]

Times the network alone (no tiling) on a square tile, median of alternating repeats after one warm-up
call each, and prints seconds per megapixel, GFLOP/s and percent of the fp32 (or bf16) matrix-multiply peak
measured in the same run. Variants: PyTorch fp32 NHWC with and without BatchNorm folding and NCHW; oneDNN's
fused convolutions (``FusedUNet``) in fp32; ONNX Runtime with all or basic graph optimisations and with 1 or
all threads; ONNX Runtime and PyTorch at other tile sizes; ``--compile``: ``torch.compile`` (Inductor) of the
folded network, with its compile time; bf16 variants where the CPU has native bf16.

``--breakdown BACKEND``: instead, where one whole-image pass (1024 x 1024, the benchmark's tiling) spends its
time, operator by operator (``torch.profiler``; PyTorch backends only), the pixels the overlapping tiles add,
and the GFLOP/s of the convolutions alone against the whole pass.
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


def breakdown(model, backend: str, repeats: int) -> int:
    """Print where one tiled pass of a 1024 x 1024 image spends its time (see the module docstring)."""
    if backend not in ("torch", "bf16"):
        raise SystemExit(f"--breakdown profiles PyTorch operators: use torch or bf16, not {backend}")
    from torch.profiler import ProfilerActivity, profile

    import cellcount.inference as inference

    image = bench.normalised(bench.synthetic_image(1024, seed=1).image)
    tiles: list[tuple[int, ...]] = []
    net = model.fast_net(backend)

    def counting(x: torch.Tensor) -> torch.Tensor:
        tiles.append(tuple(x.shape))
        return net(x)

    model.predict_maps(image, backend=backend)  # warm up, and the tiling the fast path picks
    calls: list[dict] = []
    real = inference.predict_tiled

    def spy(n, img, **kw):  # the keyword arguments predict_maps passes: tile, overlap, batch size ...
        calls.append(kw)
        return real(n, img, **kw)

    inference.predict_tiled = spy
    try:
        model.predict_maps(image, backend=backend)
    finally:
        inference.predict_tiled = real
    kw = calls[-1]
    real(counting, image, **kw)  # the same tiling, tiles recorded
    tile_px = sum(b * h * w for b, _, h, w in tiles)
    fpp = bench.flops_per_pixel(bench.contiguous_copy(model.net))
    peak = bench.matmul_peak_gflops(2048, 5, dtype="bf16" if backend == "bf16" else "fp32")
    best = None
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            model.predict_maps(image, backend=backend)
            wall = time.perf_counter() - t0
        if best is None or wall < best[0]:
            best = (wall, prof)
    wall, prof = best
    rows = sorted(((e.key, e.self_cpu_time_total / 1e6, e.count)  # wall time on the calling thread
                   for e in prof.key_averages()), key=lambda r: -r[1])
    conv_s = sum(t for k, t, _ in rows if "convolution" in k or "conv_transpose" in k or k == "aten::mkldnn_convolution")
    print(f"# {model.card.name}, backend {backend}, 1024 x 1024, tiles {len(tiles)} x {tiles[0][1:]} "
          f"(tile pixels {tile_px / 1024 ** 2:.2f}x the image's), fastest of {repeats}: {wall:.3f} s; "
          f"{torch.get_num_threads()} threads; {precision_name(backend)} mm peak {peak:.1f} GFLOP/s")
    print(f"# convolutions: {conv_s:.3f} s, {fpp * tile_px / conv_s / 1e9:.0f} GFLOP/s "
          f"({100 * fpp * tile_px / conv_s / 1e9 / peak:.0f}% of peak) over the tiles' pixels; whole pass "
          f"{fpp * 1024 ** 2 / wall / 1e9:.0f} GFLOP/s ({100 * fpp * 1024 ** 2 / wall / 1e9 / peak:.0f}%) over the "
          "image's")
    print("| operator | calls | s (self) | share of the pass |")
    print("|---|---|---|---|")
    for key, secs, count in rows[:12]:
        print(f"| {key} | {count} | {secs:.4f} | {100 * secs / wall:.0f}% |")
    return 0


def precision_name(backend: str) -> str:
    return "bf16" if backend == "bf16" else "fp32"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile)")
    p.add_argument("--breakdown", metavar="BACKEND", help="profile one 1024 x 1024 pass with this backend instead")
    args = p.parse_args(argv)
    model = load_model(args.model)
    if args.breakdown:
        return breakdown(model, args.breakdown, args.repeats)
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
