"""Throughput of counting in-process vs on 1 and 2 local Dask workers, and the memory of one block task.

    python scripts/bench_workers.py [--images 12] [--model unet-mask] [--out results/scaling.json]

Writes ``--images`` generated 512 x 512 fluorescence images (:func:`cellcount.synthetic.make_synthetic`) to
a temporary folder and counts them with the model's card settings: in this process
(:func:`cellcount.batch.count_many`), then on a local cluster of 1 and of 2 workers
(:func:`cellcount.distributed.count_on_cluster`). The cluster's start (processes, imports, first model
load) is timed apart from the counting, so images per minute describe the steady state. Then one block
task (:func:`cellcount.blocks.count_block`) runs in a fresh process for each ``--block-px`` and its peak
resident memory is read (``ru_maxrss``). The load average is recorded: on a shared machine the figures
move with the other work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def make_images(folder: Path, n: int) -> list[Path]:
    import tifffile

    from cellcount.synthetic import make_synthetic

    paths = []
    for i in range(n):
        sample = make_synthetic((512, 512), rng=i, n_cells=120, color=False, bit_depth=8)
        path = folder / f"img{i:03d}.tif"
        tifffile.imwrite(path, sample.image)
        paths.append(path)
    return paths


def in_process(paths: list[Path], model_name: str) -> dict:
    import cellcount as cc
    from cellcount.batch import count_many

    model = cc.load_model(model_name)
    params = cc.resolve_params(model)
    t0 = time.perf_counter()
    rows = list(count_many([(str(p), p) for p in paths], model, params))
    seconds = time.perf_counter() - t0
    return {"workers": 0, "start_s": 0.0, "count_s": round(seconds, 1),
            "images_per_min": round(60 * len(paths) / seconds, 2), "total": sum(r.result.count for r in rows)}


def on_cluster(paths: list[Path], model_name: str, n_workers: int) -> dict:
    import cellcount as cc
    from cellcount.distributed import close, count_on_cluster, load_on_workers, local_cluster

    model = cc.load_model(model_name)
    params = cc.resolve_params(model)
    t0 = time.perf_counter()
    client = local_cluster(n_workers)
    client.wait_for_workers(n_workers, timeout=300)
    load_on_workers(client, model_name, model.card.sha256 or "")  # the one model load per worker
    start = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        rows = list(count_on_cluster([(str(p), p) for p in paths], model, params, client))
        seconds = time.perf_counter() - t1
    finally:
        close(client)
    return {"workers": n_workers, "start_s": round(start, 1), "count_s": round(seconds, 1),
            "images_per_min": round(60 * len(paths) / seconds, 2), "total": sum(r.result.count for r in rows)}


BLOCK_SCRIPT = """
import pickle, resource, sys, time
sys.path.insert(0, {root!r})
import cellcount as cc
from cellcount import blocks
with open({plan!r}, "rb") as fh:
    plan, params = pickle.load(fh)
model = cc.load_model({model!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
part = blocks.count_block(plan, len(plan.blocks) // 2, model, params)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0, part.count)
"""


def block_memory(model_name: str, block_px: int, overlap_px: int, folder: Path) -> dict:
    """Peak RSS of one block task (the centre block of a generated 3 x 3-block image) in a fresh process,
    above that process's RSS once the model is loaded. The plan is made here, as the client does."""
    import pickle

    import cellcount as cc
    from cellcount import blocks
    from cellcount.synthetic_large import write_large_tiff

    side = 512 * -(-3 * block_px // 512)
    path = folder / f"big{side}.tif"
    if not path.exists():
        write_large_tiff(path, (side, side), seed=0)
    model = cc.load_model(model_name)
    params = cc.resolve_params(model, {"auto_nucleus_size": False})
    plan = blocks.plan_blocks(path, model, params, block_px=block_px, overlap_px=overlap_px)
    plan_file = folder / f"plan{block_px}.pickle"
    plan_file.write_bytes(pickle.dumps((plan, params)))
    code = BLOCK_SCRIPT.format(root=str(ROOT), plan=str(plan_file), model=model_name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before_kb, peak_kb, seconds, count = int(out[0]), int(out[1]), float(out[2]), int(out[3])
    box = plan.blocks[len(plan.blocks) // 2]
    return {"block_px": block_px, "overlap_px": overlap_px, "block_shape": [box[2] - box[0], box[3] - box[1]],
            "image_px": side, "rss_with_model_mb": before_kb // 1024, "peak_rss_mb": peak_kb // 1024,
            "block_task_mb": (peak_kb - before_kb) // 1024, "seconds": round(seconds, 1), "count": count}


def main() -> int:
    from cellcount.models.autotune import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--model", default="unet-mask")
    ap.add_argument("--block-px", type=int, nargs="*", default=[1024, 2048])
    ap.add_argument("--only", choices=["throughput", "memory"], help="run one half (the other is kept from --out)")
    ap.add_argument("--out", default=str(ROOT / "results" / "scaling.json"))
    args = ap.parse_args()
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "load_average_before": [round(v, 2) for v in os.getloadavg()]}
    old = json.loads(Path(args.out).read_text()) if args.only and Path(args.out).is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = old.get("runs", [])
        if args.only != "memory":
            paths = make_images(folder, args.images)
            runs = [in_process(paths, args.model)]
            print(json.dumps(runs[-1]), flush=True)
            for n in (1, 2):
                runs.append(on_cluster(paths, args.model, n))
                print(json.dumps(runs[-1]), flush=True)
        memory = old.get("block_memory", [])
        if args.only != "throughput":
            memory = [block_memory(args.model, b, 128, folder) for b in args.block_px]
    machine["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    report = {"model": args.model, "images": args.images, "image_px": [512, 512], "machine": machine,
              "runs": runs, "block_memory": memory, "peak_rss_units": "MB (ru_maxrss / 1024)",
              "machine_throughput": machine if args.only != "memory" else old.get("machine_throughput", old.get("machine"))}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
