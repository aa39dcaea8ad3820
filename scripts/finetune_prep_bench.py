"""Time a fine-tune's fixed part (reading, targets, tuning, scoring; one training step) on vgg_cells (not a test).

    python scripts/finetune_prep_bench.py [--n 32] [--repeats 2]

Fine-tunes unet-density on the first N images of vgg_cells' validation draw 0 with ``steps=1`` and prints the
seconds per run: what a time budget spends outside training. Run it from two checkouts to compare them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    args = p.parse_args(argv)
    sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]  # this checkout's cellcount
    import finetune_benchmark as fb

    import cellcount
    from cellcount.finetune import finetune

    data = fb.dataset(Path(args.data_root) / "vgg_cells", "vgg_cells")
    train, _ = fb.split("vgg_cells", len(data), args.n, 0, validation=True)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = fb.link_folder(Path(tmp) / "data", [data[i] for i in train])
        for r in range(args.repeats):
            t0 = time.perf_counter()
            finetune("unet-density", folder, name=f"prep-{r}", steps=1, holdout=0, out_dir=Path(tmp) / "models")
            times.append(time.perf_counter() - t0)
            print(f"run {r}: {times[-1]:.1f} s", flush=True)
    print(f"median {statistics.median(times):.1f} s over {len(times)} runs ({args.n} images, 1 step; "
          f"cellcount from {Path(cellcount.__file__).parent})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
