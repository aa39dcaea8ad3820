"""The Count page's slider path in-process, part by part (not a test).

    python scripts/slider_parts.py [--model attention-unet-mask] [--px 1024] [--calls 15]

On ``scripts/bench_browser.py``'s generated image (touching disks; 1024 x 1024 by default) with the model card's
settings: medians of ``--calls`` calls of each part a threshold move runs (postprocessing with its mask and split
dropped before each call, the split alone, the object table, the quality assessment, the burned-in-marks check) and of
the picture's parts (outlines, JPEG). The server's share of ``bench_browser.py``'s step, without the browser.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="attention-unet-mask")
    ap.add_argument("--px", type=int, default=1024)
    ap.add_argument("--calls", type=int, default=15)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT))
    import importlib

    import bench_browser

    import cellcount as cc
    from cellcount import viz
    from cellcount.io import read_image
    from cellcount.measure import BOX_COLUMNS, likely_merges
    from cellcount.memory import keep_freed_memory
    from cellcount.models.autotune import cpu_model
    from cellcount.overlay import stroke_objects
    from cellcount.pipeline import _two_counts, assess, object_table, split_distance_px

    pp = importlib.import_module("cellcount.postprocess")  # the module: the package exports a function of that name
    keep_freed_memory()  # as the app runs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slider.png"
        bench_browser.make_image(path, args.px)
        image = read_image(path)
    model = cc.load_model(args.model)
    params = cc.resolve_params(model)
    pred = cc.predict(image, model, params)
    res = cc.postprocess(pred, params, image=image)
    base = viz.display_image(image, low_pct=0.5, high_pct=99.5)
    merges = likely_merges(res.objects, labels=res.labels)
    boxes = res.objects.set_index("label").loc[merges, BOX_COLUMNS].to_numpy() if len(merges) else None
    mask_params = params.values("mask")
    mask_params["min_distance_px"] = split_distance_px(pred, params)
    prob = pred.maps[0]
    border = pred.maps[1] if pred.maps.shape[0] > 1 else None
    seg = pp.segment(prob, **mask_params, border_prob=border, memo={})
    gray = image if image.ndim == 2 else image.mean(axis=2)
    rgb, _ = viz.render_outlines(base, res.labels, res.rejected, color="auto", merges=merges, merge_boxes=boxes)

    def rerun() -> None:
        pred.memo.pop("mask", None)
        pred.memo.pop("split", None)
        cc.postprocess(pred, params, image=image)

    parts: dict[str, Callable[[], object]] = {
        "postprocess (the whole threshold move)": rerun,
        "  segment: threshold, morphology, split, filters": lambda: pp.segment(prob, **mask_params, border_prob=border, memo={}),
        "  object table": lambda: object_table(seg.labels, image),
        "  quality assessment": lambda: assess(pred, params, *_two_counts(pred, seg.labels, seg.count, None),
                                               probability=prob, labels=seg.labels),
        "  burned-in-marks check (`pipeline.with_overlay`)": lambda: stroke_objects(seg.labels, gray),
        "likely merges": lambda: likely_merges(res.objects, labels=res.labels),
        "outlines": lambda: viz.render_outlines(base, res.labels, res.rejected, color="auto", merges=merges,
                                                merge_boxes=boxes, rejected_colors=viz.OUTLINE_COLORS),
        "JPEG": lambda: viz.encode_jpeg(rgb),
    }
    print(f"{cpu_model()}, {os.cpu_count()} logical CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{args.model} on a {args.px} x {args.px} generated image ({image.dtype}), {res.count} objects; "
          f"medians of {args.calls} calls")
    print("| part | ms |\n|---|---|")
    for name, fn in parts.items():
        fn()
        times = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {1e3 * statistics.median(times):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
