"""How the U-Net's width and heads set the time of one forward pass (issues #18 and #20).

    python scripts/bench_widths.py [--size 512] [--repeats 7]

Builds untrained U-Nets (depth 4) of several base widths, with three output channels (a multihead network)
or two plus the full-resolution density branch, and times one ONNX Runtime pass of a size x size image on
this machine (the backend the timing picks on CPUs without native bf16), median of the repeats after one
warm-up call. Weights do not change the time, so no training is needed to see what a width costs.
Prints a table with the machine's CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellcount.models import create_model  # noqa: E402
from cellcount.models.autotune import cpu_model  # noqa: E402
from cellcount.models.backends import build_backend, onnxruntime_available  # noqa: E402

VARIANTS = [  # (base width, output channels, density branch, what it is)
    (16, 2, False, "unet-mask (foreground, border)"),
    (16, 3, False, "base 16, three heads"),
    (16, 2, True, "base 16, density branch at full resolution (run 3)"),
    (12, 3, False, "base 12, three heads"),
    (10, 3, False, "base 10, three heads"),
    (8, 3, False, "base 8, three heads (run 4)"),
    (8, 2, True, "base 8, density branch"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    if not onnxruntime_available():
        print("onnxruntime is not installed", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    x = torch.randn(1, 1, args.size, args.size)
    rows = []
    for width, out, branch, what in VARIANTS:
        net = create_model("unet", in_channels=1, base_width=width, depth=4, out_channels=out, head="mask",
                           density_branch=branch).eval()
        params = sum(p.numel() for p in net.parameters())
        fast = build_backend(net, "onnxruntime")
        times = []
        with torch.no_grad():
            fast(x)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fast(x)
                times.append(time.perf_counter() - t0)
        rows.append((what, params, 1000 * statistics.median(times)))
    base = rows[0][2]
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} threads; one ONNX Runtime pass of "
          f"{args.size} x {args.size}, median of {args.repeats}")
    print("| network | parameters | ms per pass | vs unet-mask |")
    print("|---|---|---|---|")
    for what, params, ms in rows:
        print(f"| {what} | {params:,} | {ms:.0f} | {base / ms:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
