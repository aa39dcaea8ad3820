"""Measure each speed lever of the fast path on its own, in one run (the before/after table of docs/benchmark_history.md).

    python scripts/bench_levers.py [--model unet-mask] [--px 1024] [--repeats 5] [--skip-int8] [--bf16-only]

Inference levers are cumulative, from the naive loop to the shipped fast path, timed in alternating
repeats on one synthetic image (median and min seconds). Then: a tile-size sweep of the network alone,
torch threads, the stages of the mask postprocessing, int8 static quantization (FX graph mode, x86
backend) as a probe, and the watershed alternatives that were tried for postprocessing (cv2.watershed,
flooding one mask component at a time), each checked for equal labels. ``--bf16-only`` times just the
naive loop and the bf16 variants (traced vs fused oneDNN U-Net) and stops.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402

from cellcount.inference import predict_tiled  # noqa: E402
from cellcount.models import load_model  # noqa: E402
from cellcount.models.backends import Bf16Net, build_backend, cpu_has_bf16, fold_batchnorm  # noqa: E402


def timed(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    times = bench.time_interleaved(fns, repeats)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def inference_levers(model, image: np.ndarray, repeats: int, *, bf16_only: bool = False) -> dict[str, tuple[float, float]]:
    """Cumulative levers: naive -> old fast path -> balanced tiles -> batch 1 -> 384 tiles -> folded BatchNorm
    -> ONNX Runtime (by tile size) -> bf16 (eager autocast, traced, fused; CPUs with native bf16 only)."""
    depth = 2 ** int(model.card.kwargs.get("depth", 4))
    c, ov = model.out_channels, model.card.tile_overlap
    nchw = bench.contiguous_copy(model.net)
    bf16_net = build_backend(model.net, "bf16") if cpu_has_bf16() else None
    bf16_traced = Bf16Net(fold_batchnorm(model.net), fuse=False) if cpu_has_bf16() else None
    bf16_eager = Bf16Net(fold_batchnorm(model.net), jit=False, fuse=False) if cpu_has_bf16() else None

    def tiled(net, tile, batch, *, overlap=ov, balanced=False, channels_last=True):
        return lambda: predict_tiled(net, image, out_channels=c, tile=tile, overlap=overlap, batch_size=batch,
                                     divisor=depth, device="cpu", channels_last=channels_last, balanced=balanced)

    naive = {"naive loop: NCHW, 256 tiles, no overlap, batch 1": lambda: bench.naive_predict(
        nchw, image, out_channels=c, output_kind=model.output_kind, density_scale=model.card.density_scale)}
    bf16 = {
        "bf16 eager autocast (folded, NHWC), 512 tiles": tiled(bf16_eager, 512, 1, balanced=True),
        "bf16 weights, TorchScript traced + frozen, 256 tiles": tiled(bf16_traced, 256, 1, balanced=True),
        "bf16 traced + frozen, 384 tiles": tiled(bf16_traced, 384, 1, balanced=True),
        "bf16 traced + frozen, 512 tiles (the fast path before the fused U-Net)": tiled(bf16_traced, 512, 1,
                                                                                       balanced=True),
        "bf16 traced + frozen, 256 tiles, batch 4": tiled(bf16_traced, 256, 4, balanced=True),
        "bf16 fused oneDNN U-Net, 512 tiles (= shipped fast path with native bf16)": tiled(bf16_net, 512, 1,
                                                                                          balanced=True),
    } if bf16_net is not None else {}
    if bf16_only:
        return timed({**naive, **bf16}, repeats)
    folded = build_backend(model.net, "torch")
    ort_net = build_backend(model.net, "onnxruntime")
    return timed({
        **naive,
        "naive tiling + NHWC (channels_last)": tiled(model.net, 256, 1, overlap=0),
        "plain fp32 path: 256 tiles + 32 overlap, NCHW input": tiled(model.net, 256, 1, channels_last=False),
        "old fast path: NHWC, 512 tiles + 32 overlap, batch 4": tiled(model.net, 512, 4),
        "+ balanced tiles": tiled(model.net, 512, 4, balanced=True),
        "+ batch 1": tiled(model.net, 512, 1, balanced=True),
        "+ tiles of at most 384 px": tiled(model.net, 384, 1, balanced=True),
        "+ BatchNorm folded (torch fast path)": tiled(folded, 384, 1, balanced=True),
        "+ ONNX Runtime, 256 tiles": tiled(ort_net, 256, 1, balanced=True),
        "+ ONNX Runtime, 384 tiles (fast path without native bf16)": tiled(ort_net, 384, 1, balanced=True),
        "+ ONNX Runtime, 512 tiles": tiled(ort_net, 512, 1, balanced=True),
        **bf16,
    }, repeats)


def tile_sweep(model, repeats: int) -> dict[int, tuple[float, float]]:
    """Seconds per megapixel of one forward pass of the fast-path network (this machine's backend), by
    square tile size."""
    net = model.fast_net(model.backend_choice().backend)
    out = {}
    with torch.inference_mode():
        for t in (128, 192, 256, 320, 384, 512, 768, 1024):
            x = torch.rand(1, 1, t, t).contiguous(memory_format=torch.channels_last)
            med, mn = timed({"x": lambda x=x: net(x)}, max(repeats, int(4e6 / (t * t))))["x"]
            out[t] = (med * 1e6 / (t * t), mn * 1e6 / (t * t))
    return out


def postprocess_breakdown(repeats: int) -> dict[str, float]:
    """Median ms of each stage of the mask slider path on the benchmark's 1024 x 1024 map."""
    from cellcount.measure import object_table
    from cellcount.pipeline import postprocess, split_distance_px

    pp = importlib.import_module("cellcount.postprocess")
    models = bench.bench_models(["unet-mask"])
    label, _, pred, params, image = bench.postprocess_cases(models, bench.BenchConfig.make(False))[0]
    prob, border = pred.maps[0], pred.maps[1]
    distance = split_distance_px(pred, params)  # the card's 0 = auto, made from the image's nucleus size
    cores = params.split_mode == "both"
    mask = pp.fill_holes(pp.open_close(pp.threshold(prob, params.threshold),
                                       opening_radius_px=params.opening_radius_px))
    labels = pp.watershed_split(mask, min_distance_px=distance, border_prob=border,
                                min_seed_area_px=max(4, params.min_area_px // 2), split_cores=cores)
    kept = pp.filter_objects(labels, min_area_px=params.min_area_px).labels
    stages = {
        "threshold + opening + fill holes": lambda: pp.fill_holes(pp.open_close(
            pp.threshold(prob, params.threshold), opening_radius_px=params.opening_radius_px)),
        "watershed_split": lambda: pp.watershed_split(mask, min_distance_px=distance, border_prob=border,
                                                      min_seed_area_px=max(4, params.min_area_px // 2),
                                                      split_cores=cores),
        "filter_objects": lambda: pp.filter_objects(labels, min_area_px=params.min_area_px),
        "measure.object_table": lambda: object_table(kept, image),
        "total: cellcount.postprocess": lambda: postprocess(pred, params, image=image),
    }
    return {k: 1e3 * v[0] for k, v in timed(stages, repeats).items()}


def thread_levers(model, image: np.ndarray, repeats: int) -> dict[str, tuple[float, float]]:
    out = {}
    default = torch.get_num_threads()
    for n in sorted({1, default, 2 * default}):
        torch.set_num_threads(n)
        out[f"fast path, torch threads = {n}"] = timed({"x": lambda: model.predict_maps(image)}, repeats)["x"]
    torch.set_num_threads(default)
    return out


def int8_probe(model, image: np.ndarray, calib: list[np.ndarray], repeats: int) -> dict[str, object]:
    """FX static int8 (x86): speed vs the folded fp32 net, logit error and pixels flipping at 0.5."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    warnings.filterwarnings("ignore")
    torch.backends.quantized.engine = "x86"
    # quantized ConvTranspose2d gives wrong outputs in this torch build (max logit error ~30): keep it fp32
    qmap = get_default_qconfig_mapping("x86").set_object_type(torch.nn.ConvTranspose2d, None)
    t0 = time.perf_counter()
    x0 = torch.from_numpy(calib[0])[None, None]
    prepared = prepare_fx(fold_batchnorm(model.net), qmap, example_inputs=(x0,))
    with torch.no_grad():
        for c in calib:
            prepared(torch.from_numpy(c)[None, None])
    qnet = convert_fx(prepared)
    calib_s = time.perf_counter() - t0
    folded = build_backend(model.net, "torch")
    x = torch.from_numpy(image)[None, None].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        t = timed({"fp32 folded": lambda: folded(x), "int8": lambda: qnet(x)}, repeats)
        ref, got = folded(x), qnet(x)
    return {"times": t, "calibration_s": calib_s, "max_abs_logit_diff": float((got - ref).abs().max()),
            "mean_abs_logit_diff": float((got - ref).abs().mean()),
            "fg_pixels_flipped_pct": float(100 * ((got[:, 0] > 0) != (ref[:, 0] > 0)).float().mean())}


def watershed_alternatives(model, images: list[np.ndarray]) -> dict[str, object]:
    """cv2.watershed and per-component flooding against skimage's watershed on real predictions."""
    import cv2
    from skimage.segmentation import watershed

    from cellcount.models import size_model_for
    from cellcount.pipeline import predict, resolve_params

    pp = importlib.import_module("cellcount.postprocess")  # the package re-exports a function of that name

    params = resolve_params(model)
    size_model = size_model_for(model, params)
    n = same_percomp = same_cv2 = same_count_cv2 = 0
    for img in images:
        prob = predict(img, model, params, size_model=size_model).maps
        mask = pp.fill_holes(pp.open_close(pp.threshold(prob[0], params.threshold),
                                           opening_radius_px=params.opening_radius_px))
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        core = mask & ~(prob[1] > 0.5) if prob.shape[0] > 1 else mask
        markers = pp.relabel_sequential(pp.label_components(core))
        if markers.max() == 0:
            continue
        ref = watershed(-dist, markers, mask=mask)
        n += 1
        same_percomp += np.array_equal(_per_component(-dist, markers, mask), ref)
        alt = _cv2_watershed(dist, markers, mask)
        same_cv2 += np.array_equal(alt, ref)
        same_count_cv2 += len(np.unique(alt[alt > 0])) == len(np.unique(ref[ref > 0]))
    return {"maps": n, "per-component flooding: identical labels": same_percomp,
            "cv2.watershed: identical labels": same_cv2, "cv2.watershed: same number of objects": same_count_cv2}


def _per_component(surface, markers, mask):
    """Flood only 4-connected mask components holding >= 2 markers, each on its bounding box."""
    import cv2
    from skimage.segmentation import watershed

    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    n_ids = int(markers.max()) + 1
    where = np.flatnonzero(markers)
    pairs = np.unique(comp.ravel()[where].astype(np.int64) * n_ids + markers.ravel()[where])
    pc, pm = np.divmod(pairs, n_ids)
    per = np.bincount(pc, minlength=n)
    lut = np.zeros(n, np.int32)
    lut[pc[per[pc] == 1]] = pm[per[pc] == 1]
    lut[0] = 0
    labels = lut[comp]
    for c in np.flatnonzero(per >= 2):
        if c:
            x, y, w, h = (int(v) for v in stats[c, :4])
            box = (slice(y, y + h), slice(x, x + w))
            inside = comp[box] == c
            labels[box][inside] = watershed(surface[box], np.where(inside, markers[box], 0), mask=inside)[inside]
    return labels


def _cv2_watershed(dist, markers, mask):
    """cv2.watershed on the 8-bit inverted distance (3 channels), background as one more marker."""
    import cv2

    d8 = (255 - np.clip(dist / max(float(dist.max()), 1e-6) * 255, 0, 255)).astype(np.uint8)
    mk = markers.astype(np.int32).copy()
    bg = int(mk.max()) + 1
    mk[~mask] = bg
    cv2.watershed(cv2.merge([d8, d8, d8]), mk)
    mk[(mk == bg) | (mk < 0)] = 0
    return mk


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask")
    p.add_argument("--px", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-int8", action="store_true")
    p.add_argument("--bf16-only", action="store_true", help="only the naive loop and the bf16 variants")
    args = p.parse_args()
    model = load_model(args.model)
    image = bench.normalised(bench.synthetic_image(args.px, seed=1).image)
    print(f"# levers: {args.model}, {args.px} x {args.px}, median/min of {args.repeats}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    base = None
    for name, (med, mn) in inference_levers(model, image, args.repeats, bf16_only=args.bf16_only).items():
        base = base or med
        print(f"| {name} | {med:.3f} | {mn:.3f} | {base / med:.2f}x |", flush=True)
    if args.bf16_only:
        return 0
    fpp = bench.flops_per_pixel(bench.contiguous_copy(model.net))
    backend = model.backend_choice().backend
    peak = bench.matmul_peak_gflops(dtype="bf16" if backend == "bf16" else "fp32")
    print(f"# tile sweep (one forward pass, fast-path net, {backend}); matmul peak {peak:.1f} GFLOP/s")
    for t, (med, mn) in tile_sweep(model, args.repeats).items():
        print(f"| {t} | {med:.3f} | {mn:.3f} | {fpp * 1e6 / med / 1e9:.0f} GFLOP/s ({100 * fpp * 1e6 / med / 1e9 / peak:.0f}%) |",
              flush=True)
    for name, (med, mn) in thread_levers(model, image, args.repeats).items():
        print(f"| {name} | {med:.3f} | {mn:.3f} | |", flush=True)
    print("# postprocessing stages, median ms:", postprocess_breakdown(max(args.repeats, 11)), flush=True)
    if not args.skip_int8:
        calib = [bench.normalised(bench.synthetic_image(256, seed=s).image) for s in range(4)]
        print("int8 probe:", int8_probe(model, image, calib, args.repeats))
    from cellcount.io import list_image_files, read_image, split_ground_truth_files

    files = split_ground_truth_files(list_image_files(bench.SAMPLES_DIR, ground_truth=True))[0]
    dsb = sorted((bench.DSB_DIR / "images").glob("*.png"))[::25]
    print("watershed alternatives:", watershed_alternatives(model, [read_image(f) for f in [*files, *dsb]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
