"""Peak memory (RSS) of counting a many-channel TIFF in the CLI and in the app's Count page.

    python scripts/peak_memory.py [--channels 250] [--size 2048] [--layout pages|separate|contig]

Writes a zlib-compressed uint8 TIFF of ``channels`` x ``size`` x ``size`` (about 1.3 MB for 250 x 2048 x
2048: a few bright disks on a dark field), then runs each case in a fresh Python process and prints that
process's peak resident memory (``ru_maxrss``) and what it did. docs/LIMITS.md states the bound this
measures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def make_tiff(path: Path, channels: int, size: int, layout: str) -> None:
    import numpy as np
    import tifffile

    plane = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(0)
    for cy, cx in rng.integers(20, size - 20, (40, 2)):
        plane[(yy - cy) ** 2 + (xx - cx) ** 2 < 81] = 200
    if layout == "pages":  # one page per channel, axes CYX
        def pages():
            for _ in range(channels):
                yield plane
        tifffile.imwrite(path, pages(), shape=(channels, size, size), dtype=np.uint8, compression="zlib",
                         metadata={"axes": "CYX"})
    else:  # one page holding every channel as samples (planar or interleaved)
        stack = np.broadcast_to(plane[None] if layout == "separate" else plane[..., None],
                                (channels, size, size) if layout == "separate" else (size, size, channels))
        tifffile.imwrite(path, np.ascontiguousarray(stack), photometric="minisblack", compression="zlib",
                         planarconfig=layout, rowsperstrip=64)


def child(kind: str, tif: str, out: str, channel: int | None) -> None:
    """Run one case in this process and print a JSON line with its peak RSS."""
    import logging

    logging.disable(logging.WARNING)
    if kind == "cli":
        from cellcount.cli import main

        argv = ["count", tif, "--model", "classical-otsu", "--out", out, "--no-progress", "-q"]
        if channel is not None:
            argv += ["--channel", str(channel)]
        rc = main(argv)
        import pandas as pd

        row = pd.read_csv(out).iloc[0]
        what = f"exit {rc}, status {row['status']}, count {row['count']}, {str(row['reason'])[:90]}"
    else:
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
        at.session_state["count_model"] = "classical-otsu"
        at.session_state["count_source"] = "Upload"
        at.run()
        at.switch_page("pages/count.py")
        at.run()
        at.file_uploader(key="count_upload").set_value((Path(tif).name, Path(tif).read_bytes(), "image/tiff"))
        at.run()
        errors = [e.value for e in at.error]
        metrics = [f"{m.label}={m.value}" for m in at.metric][:2]
        what = f"errors {[e[:90] for e in errors]}, metrics {metrics}, exception {bool(at.exception)}"
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_rss_mb": round(peak_mb), "what": what}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=250)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--layout", choices=["pages", "separate", "contig"], default="pages")
    ap.add_argument("--child", nargs=4, metavar=("KIND", "TIFF", "OUT", "CHANNEL"), help=argparse.SUPPRESS)
    ap.add_argument("--make", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        make_tiff(Path(args.make), args.channels, args.size, args.layout)
        return 0
    if args.child:
        kind, tif, out, ch = args.child
        child(kind, tif, out, None if ch == "all" else int(ch))
        return 0
    with tempfile.TemporaryDirectory(prefix="cellcount-mem-") as tmp:
        tif = Path(tmp) / f"c{args.channels}_{args.layout}.tif"
        # in another process: Linux passes a parent's peak RSS on to the children it starts afterwards
        subprocess.run([sys.executable, __file__, "--make", str(tif), "--channels", str(args.channels), "--size",
                        str(args.size), "--layout", args.layout], check=True, cwd=ROOT)
        print(f"{tif.name}: {args.channels} x {args.size} x {args.size} uint8, {tif.stat().st_size / 1e6:.1f} MB "
              f"({args.layout})")
        for kind, ch in (("cli", "all"), ("cli", "3"), ("app", "all")):
            proc = subprocess.run([sys.executable, __file__, "--child", kind, str(tif), str(Path(tmp) / "c.csv"), ch],
                                  capture_output=True, text=True, cwd=ROOT)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                print(f"  {kind:3} channel={ch:3}: failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
                continue
            res = json.loads(lines[-1])
            print(f"  {kind:3} channel={ch:3}: peak RSS {res['peak_rss_mb']:5d} MB  {res['what']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
