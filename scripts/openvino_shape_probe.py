"""OpenVINO: one graph compiled for a fixed tile shape against one compiled with free height and width, in fp32 and
int8, on the same tiles (median of alternating calls), and how long each compile takes. Why
:class:`cellcount.models.openvino_net.OpenVinoNet` compiles one graph per tile shape.

    python scripts/openvino_shape_probe.py [--model unet-mask-varied] [--px 384] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from cellcount.models import load_model
    from cellcount.models import openvino_net as ovn
    from cellcount.models.autotune import cpu_model
    from cellcount.models.backends import fold_batchnorm, onnx_graph

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="unet-mask-varied")
    p.add_argument("--px", type=int, default=384)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    if not ovn.openvino_available():
        print("openvino is not installed", file=sys.stderr)
        return 1
    core = ovn._core()
    folded = fold_batchnorm(load_model(args.model).net)
    x = np.random.default_rng(0).uniform(0, 1, (1, 1, args.px, args.px)).astype(np.float32)
    print(f"{args.model}, {args.px} px tile, {cpu_model()}\n")
    print("| graph | compile s (fixed / free) | ms per tile (fixed / free) | free / fixed |")
    print("|---|---|---|---|")
    for int8 in (False, True):
        graph = onnx_graph(folded, int8=int8)
        calls = {}
        compile_s = {}
        for shape in ("fixed", "free"):
            model = core.read_model(graph)
            if shape == "fixed":
                model.reshape({model.inputs[0].any_name: list(x.shape)})
            t0 = time.perf_counter()
            compiled = core.compile_model(model, "CPU", {**ovn._FP32_CONFIG, "INFERENCE_NUM_THREADS": "2"})
            compile_s[shape] = time.perf_counter() - t0
            request = compiled.create_infer_request()
            request.infer({0: x})
            calls[shape] = request
        times = {k: [] for k in calls}
        for _ in range(args.repeats):
            for k, request in calls.items():
                t0 = time.perf_counter()
                request.infer({0: x})
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        print(f"| {'int8' if int8 else 'fp32'} | {compile_s['fixed']:.2f} / {compile_s['free']:.2f} | "
              f"{med['fixed']:.1f} / {med['free']:.1f} | {med['free'] / med['fixed']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
