"""Markdown results table from ``python -m cellcount.evaluate --json`` outputs (one per model)."""

from __future__ import annotations

import json
import sys


def fmt(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(paths: list[str]) -> None:
    rows = [r for r in (json.load(open(p)) for p in paths) if "mae" in r]  # skip *.settings.json
    rows.sort(key=lambda r: r["mae"])
    print("| model | images | count MAE | RMSE | bias | MAPE % | F1@0.5 | precision | recall | ms / Mpx |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['n']} | {r['mae']:.2f} | {r['rmse']:.2f} | {r['bias']:+.2f} | {r['mape']:.1f} | "
              f"{fmt(r.get('f1'), '.3f')} | {fmt(r.get('precision'), '.3f')} | {fmt(r.get('recall'), '.3f')} | "
              f"{r.get('ms_per_megapixel', float('nan')):.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
