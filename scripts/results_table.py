"""Markdown results tables from ``python -m cellcount.evaluate`` outputs (one per model).

    python scripts/results_table.py results/*.json                      # the results table
    python scripts/results_table.py --by-kind METADATA.csv results/*.csv  # MAE and MAPE per image kind
    python scripts/results_table.py --paired results/*.csv              # MAE differences with intervals
    python scripts/results_table.py --paired --ref unet-density results/*.csv  # ... against another model
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(paths: list[str]) -> None:
    # the file name names the row: results/<model>+auto-size.json is the model with auto_nucleus_size
    rows = [{**r, "model": Path(p).name.removesuffix(".json")} for p in paths
            for r in [json.load(open(p))] if "mae" in r]  # skip *.settings.json
    rows.sort(key=lambda r: (r["mae"] is None, r["mae"] or 0.0))  # undefined (null: no images) last
    print("| model | images | count MAE | MAE 95% CI | RMSE | bias | MAPE % | F1@0.5 | precision | recall | ms / Mpx |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ci = (f"{r['mae_ci_low']:.2f}-{r['mae_ci_high']:.2f}" if r.get("mae_ci_low") is not None
              and r.get("mae_ci_high") is not None else "-")
        print(f"| {r['model']} | {r['n']} | {fmt(r['mae'], '.2f')} | {ci} | {fmt(r['rmse'], '.2f')} | "
              f"{fmt(r['bias'], '+.2f')} | {fmt(r['mape'], '.1f')} | "
              f"{fmt(r.get('f1'), '.3f')} | {fmt(r.get('precision'), '.3f')} | {fmt(r.get('recall'), '.3f')} | "
              f"{r.get('ms_per_megapixel', float('nan')):.0f} |")




def by_kind(csv_paths: list[str], metadata: str) -> None:
    """Count MAE and mean percentage error split by image kind (DSB metadata's bright_background column)."""
    import pandas as pd

    meta = pd.read_csv(metadata).set_index("filename")["bright_background"]
    print("| model | MAE dark-background (fluorescence) | MAPE dark | MAE bright-background (brightfield/H&E) "
          "| MAPE bright |")
    print("|---|---|---|---|---|")
    for p in sorted(csv_paths):
        df = pd.read_csv(p)
        bright = df["file"].map(lambda f: meta.get(str(f).rsplit("/", 1)[-1]))
        name = p.rsplit("/", 1)[-1].removesuffix(".csv")
        if bright.isna().all():  # not DSB images (vgg_cells, mbm): no kind to split by
            continue
        cells = []
        for kind in (0, 1):
            part = df.loc[bright == kind]
            cells += [f"{part['abs_error'].mean():.2f} (n={len(part)})", f"{100 * part['rel_error'].abs().mean():.1f}%"]
        print(f"| {name} | " + " | ".join(cells) + " |")


def paired(csv_paths: list[str], ref_name: str | None = None) -> None:
    """MAE of every model minus the best one's (or ``ref_name``'s), on the same images, with a paired
    bootstrap interval."""
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    from cellcount.metrics import paired_mae_difference

    tables = {p.rsplit("/", 1)[-1].removesuffix(".csv"): pd.read_csv(p).set_index("file") for p in csv_paths}
    best = ref_name or min(tables, key=lambda k: tables[k]["abs_error"].mean())
    ref = tables[best]
    print(f"| model | MAE - MAE of {best} | 95% paired bootstrap interval | interval excludes 0 |")
    print("|---|---|---|---|")
    others = []
    for name, t in sorted(tables.items(), key=lambda kv: kv[1]["abs_error"].mean()):
        if name == best:
            continue
        if not ref.index.isin(t.index).all():  # another set of images (a test or validation part): not paired
            others.append(name)
            continue
        t = t.reindex(ref.index)
        d = paired_mae_difference(ref["true"].to_numpy(), ref["pred"].to_numpy(), t["pred"].to_numpy())
        print(f"| {name} | {d['difference']:+.2f} | {d['low']:+.2f} to {d['high']:+.2f} | "
              f"{'yes' if d['significant'] == 1 else 'no' if d['significant'] == 0 else 'n/a'} |")
    if others:
        print(f"\nNot on {best}'s images, left out: {', '.join(others)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--by-kind"]:
        by_kind(sys.argv[3:], sys.argv[2])
    elif sys.argv[1:3] == ["--paired", "--ref"]:
        paired(sys.argv[4:], sys.argv[3])
    elif sys.argv[1:2] == ["--paired"]:
        paired(sys.argv[2:])
    else:
        main(sys.argv[1:])
