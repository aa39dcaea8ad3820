"""First use of each shipped model on this machine: the backend timing with an empty cache (not a test).

    python scripts/bench_first_use.py [--models unet-mask ...]

Points ``XDG_CACHE_HOME`` at a new temporary folder, so every model times its backends as on a fresh
machine, and prints the choice, the timing's own seconds and the whole first use (building the backends
included), with the CPU and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+",
                    default=["unet-mask", "attention-unet-mask", "residual-unet-mask", "unet-density"])
    args = ap.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cellcount-first-use-")
    sys.path.insert(0, str(ROOT))
    import cellcount as cc
    from cellcount.models.autotune import cpu_model

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f}")
    for name in args.models:
        model = cc.load_model(name)
        t0 = time.perf_counter()
        choice = model.backend_choice("auto")
        print(f"{name}: {choice.describe()}; whole first use {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
