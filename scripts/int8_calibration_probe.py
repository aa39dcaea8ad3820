"""How the int8 backend's activation ranges move counts: each calibration (min/max, or ranges ending at a
percentile of the calibration tiles' values) against the plain fp32 path, on the benchmark's 24 count images
(shipped samples + DSB 2018, as ``scripts/bench.py``'s count check), for every shipped network.

    python scripts/int8_calibration_probe.py [--models unet-density unet-mask-varied] [--percentiles 100 99.999]

100 means min/max. Prints one Markdown table; the chosen setting is
:data:`cellcount.models.openvino_net.CALIBRATION_PERCENTILE` (docs/benchmark_history.md has the runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def main(argv: list[str] | None = None) -> int:
    import bench
    import numpy as np

    from cellcount.models import backends
    from cellcount.models import openvino_net as ovn
    from cellcount.pipeline import count_image, resolve_params

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", help="shipped model names (default: every network)")
    p.add_argument("--percentiles", nargs="+", type=float, default=[100.0, 99.999, 99.9999],
                   help="where activation ranges end (100: min/max)")
    args = p.parse_args(argv)
    if not ovn.openvino_available():
        print("openvino is not installed", file=sys.stderr)
        return 1
    images = bench.count_images(bench.BenchConfig.make(False))
    print(f"{len(images)} images; machine: {bench.machine_info()['cpu']}\n")
    print("| model | calibration | total count diff | sum of per-image diffs | images differing |")
    print("|---|---|---|---|---|")
    for bm in bench.bench_models(args.models):
        model, params = bm.model, resolve_params(bm.model)
        exact = np.array([count_image(img, model, params, fast=False).count_estimate for _, img in images])
        folded = backends.fold_batchnorm(model.net)
        for pct in args.percentiles:
            graph = backends._export_onnx(folded)
            net = ovn.OpenVinoNet(ovn.quantize_int8(graph, percentile=pct), int8=True)
            model._fast_nets["int8"] = net  # this calibration's network, in place of the cached one
            est = np.array([count_image(img, model, params, fast=True, backend="int8").count_estimate
                            for _, img in images])
            total = 100 * (est.sum() - exact.sum()) / exact.sum()
            spread = 100 * np.abs(est - exact).sum() / exact.sum()
            label = "min/max" if pct >= 100 else f"{pct:g}th percentile"
            print(f"| {bm.name} | {label} | {total:+.2f}% | {spread:.2f}% | {int((np.rint(est) != np.rint(exact)).sum())}"
                  f"/{len(images)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
