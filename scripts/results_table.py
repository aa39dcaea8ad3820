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




def by_kind(csv_paths: list[str], metadata: str) -> None:
    """Count MAE split by image kind (DSB metadata's bright_background column)."""
    import pandas as pd

    meta = pd.read_csv(metadata).set_index("filename")["bright_background"]
    print("| model | MAE dark-background (fluorescence) | MAE bright-background (brightfield/H&E) |")
    print("|---|---|---|")
    for p in sorted(csv_paths):
        df = pd.read_csv(p)
        bright = df["file"].map(meta)
        name = p.rsplit("/", 1)[-1].removesuffix(".csv")
        print(f"| {name} | {df.loc[bright == 0, 'abs_error'].mean():.2f} (n={int((bright == 0).sum())}) | "
              f"{df.loc[bright == 1, 'abs_error'].mean():.2f} (n={int((bright == 1).sum())}) |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--by-kind"]:
        by_kind(sys.argv[3:], sys.argv[2])
    else:
        main(sys.argv[1:])
