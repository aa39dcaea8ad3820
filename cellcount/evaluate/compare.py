"""Models, or one model's settings, side by side on the same images: the per-image table and each
configuration's figures, with a paired verdict against the one with the lowest MAE (the Compare page and
``cellcount compare``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..metrics import count_metrics, paired_mae_difference

LONG_COLUMNS = ("file", "true", "config", "count", "count_estimate", "seconds", "check")
"""What :func:`compare_counts` reads of each row (one per image and configuration): ``true`` is the truth that
configuration is scored against (without the edge objects where its settings leave them out), ``count_estimate``
the count its error is taken from (a density model's integral), ``seconds`` its time on that image. Rows may carry
``tp``, ``fp`` and ``fn`` too (its objects matched to the truth's, :func:`cellcount.evaluate.match_objects`): the
comparison then gives each configuration its F1 over the images that have them."""


@dataclass
class Comparison:
    """``table``: one row per image (file, the truth as given, each configuration's count, ``error: X`` and, where
    its truth differs from the given one, ``true: X``). ``per_config``: one row per configuration that counted an
    image. ``wide``: the counts (files by configurations, files with at least one count); ``scored``: the same
    moved by each configuration's truth's difference from the given one, so that every error is against one
    truth (for paired comparisons); ``truth``: the truth as given, per file; ``edges_out``: the configurations
    scored against a truth without its edge objects."""

    table: pd.DataFrame
    per_config: pd.DataFrame
    wide: pd.DataFrame
    scored: pd.DataFrame
    truth: pd.Series
    edges_out: list[str]
    f1_note: str = ""
    """Where the configurations' objects could be matched on different images (a density model's centres match dots,
    not outlines): over which images their F1 is taken, so that the column compares like with like."""
    paired: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each configuration's paired MAE difference from the lowest (:func:`cellcount.metrics.paired_mae_difference`:
    ``difference``, ``low``, ``high``, ``significant``), the lowest and those with no image in common left out."""

    @property
    def has_truth(self) -> bool:
        return bool(self.truth.notna().any())


def whole(values: pd.Series) -> bool:
    """Whole numbers only (objects counted), shown and written without decimals; a density model's integral keeps
    its own."""
    v = values.dropna()
    return bool(len(v)) and bool((v % 1 == 0).all())


def as_written(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its whole-number columns as integers (17, not 17.0; an empty cell stays empty) and the others
    to 3 decimals (a density model's integral: 17.471, not 17.470979669914154), as the counts CSVs write them."""
    numeric = [c for c in table.columns if c != "file" and pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c])]
    return table.round({c: 3 for c in numeric}).astype({c: "Int64" for c in numeric if whole(table[c])})


ROW_COLUMNS = ("file", "plane", "true", "config", "model", "backend", "settings", "count", "count_estimate", "error", "check",
               "check_score", "check_reasons", "status", "reason", "tp", "fp", "fn", "seconds")
"""The columns of every comparison's rows CSV, in this order where the rows have them (the Compare page's "Every count
CSV" and ``cellcount compare --rows``: a script written for one reads the other): ``count_estimate`` is a density
model's unrounded integral (its ``count`` rounded), ``seconds`` the image's time where it was timed, ``plane`` the
plane of a z-stack counted (or ``max``, their projection) where one was chosen."""


def rows_table(long: pd.DataFrame) -> pd.DataFrame:
    """The rows CSV of a comparison: one row per image and configuration with its ``error`` (the count its error is
    taken from, a density model's integral, minus the truth that configuration is scored against), in
    :data:`ROW_COLUMNS`' order, whole numbers written whole (:func:`as_written`)."""
    every = long.assign(error=long["count_estimate"] - long["true"])
    return as_written(every[[c for c in ROW_COLUMNS if c in every]])


def interval(low: float, high: float) -> str:
    return f"{low:.2f}–{high:.2f}" if pd.notna(low) else "—"


def compare_counts(long: pd.DataFrame, labels: list[str], given: dict[str, int | None]) -> Comparison:
    """The comparison of ``long`` (rows as :data:`LONG_COLUMNS` say; a file with no count, unreadable, keeps its
    row, empty, in the table; the figures use the rest), its configurations in the order of ``labels``, against
    the truth as given per file (None: none)."""
    wide_all = long.pivot_table(index="file", columns="config", values="count_estimate", sort=False, dropna=False)
    wide_all = wide_all[[c for c in labels if c in wide_all.columns]]
    wide = wide_all.dropna(how="all")
    files = long["file"].drop_duplicates()
    truth = pd.Series([given.get(f) for f in files], index=files, dtype="Int64")
    true_wide = long.pivot_table(index="file", columns="config", values="true", sort=False, dropna=False).reindex(
        index=wide_all.index, columns=wide_all.columns)
    has_truth = bool(truth.notna().any())  # errors over the images that have ground truth
    edges_out = [c for c in wide_all.columns
                 if has_truth and (true_wide[c] - truth.reindex(true_wide.index).astype(float)).fillna(0).ne(0).any()]
    # each configuration's count, then (where its truth is not the one given: edge objects left out) the truth it is
    # scored against, then its error: an error read beside the truth it was taken from
    columns: dict[str, pd.Series] = {}
    if has_truth:
        columns["true"] = truth.reindex(wide_all.index)
    for c in wide_all.columns:
        columns[c] = wide_all[c]
        if c in edges_out:
            columns[f"true: {c}"] = true_wide[c].astype("Int64")
        if has_truth:
            columns[f"error: {c}"] = wide_all[c] - true_wide[c]
    table = pd.DataFrame(columns, index=wide_all.index).rename_axis("file").reset_index()

    # F1 over the images every configuration's objects were matched on: a density model scored on two dot images
    # beside mask models scored on six would read as the best F1
    matched = {c: set(long.loc[(long["config"] == c) & long["tp"].notna(), "file"]) for c in wide.columns
               } if "tp" in long.columns else {}
    matched = {c: files for c, files in matched.items() if files}
    common = set.intersection(*matched.values()) if matched else set()
    uneven = len({frozenset(files) for files in matched.values()}) > 1
    f1_note = ""
    if uneven and common:
        f1_note = (f"F1 over the {len(common)} image(s) every configuration's objects were matched on (a density "
                   "model's centres match dots, not outlines); their MAE is over every image with ground truth")
    elif uneven:
        f1_note = ("F1 over different images for each configuration (no image had every configuration's objects "
                   "matched; 'F1 images' says how many): compare their MAE instead")
    per_config = []
    for c in wide.columns:
        t = long[long["config"] == c]
        row: dict = {"config": c}
        if has_truth:  # the errors first: they are what a comparison is for
            k = t.dropna(subset=["true", "count_estimate"])
            s = count_metrics(k["true"].to_numpy(float), k["count_estimate"].to_numpy(float))
            row.update({"MAE": s["mae"], "MAE 95% CI": interval(s["mae_ci_low"], s["mae_ci_high"]),
                        "bias": s["bias"], "RMSE": s["rmse"], "images with ground truth": len(k)})
            if c in matched:  # objects matched (outlines, or dots): Evaluate's F1
                m = t[t["file"].isin(common if uneven and common else matched[c])].dropna(subset=["tp"])
                tp, fp, fn = (float(m[k].sum()) for k in ("tp", "fp", "fn"))
                row["F1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
                if uneven:
                    row["F1 images"] = m["file"].nunique()
        row.update({"images flagged": int(t["check"].fillna(False).astype(bool).sum()),
                    "median time per image (ms)": 1000 * t["seconds"].median(), "total count": _total(t)})
        per_config.append(row)
    # the counts moved by each configuration's own truth's difference from the given one: each error kept, against
    # one truth, for the paired comparisons (the verdicts and the Compare page's scatter caption alike)
    scored = (wide - true_wide.reindex(wide.index)).add(truth.reindex(wide.index).astype(float), axis=0)
    paired = _against_best(per_config, scored, truth) if has_truth and len(per_config) >= 2 else {}
    return Comparison(table=table, per_config=pd.DataFrame(per_config), wide=wide, scored=scored, truth=truth,
                      edges_out=edges_out, f1_note=f1_note, paired=paired)


def _total(rows: pd.DataFrame) -> float:
    """The configuration's counts summed as the table shows them: a density model's integrals (300.8), not their
    rounded counts (302), so that the total agrees with the bias and MAE beside it."""
    column = "count_estimate" if "count_estimate" in rows else "count"
    total = float(pd.to_numeric(rows[column], errors="coerce").sum())
    return int(total) if total.is_integer() else round(total, 1)


def _against_best(per_config: list[dict], wide: pd.DataFrame, truth: pd.Series) -> dict[str, dict[str, float]]:
    """Each row's paired MAE difference from the lowest-MAE configuration ("vs lowest MAE"), on the images where
    both have a count: with three or more, one pair's comparison alone left the others without a verdict. Returns
    the differences as numbers, by configuration."""
    best = min(per_config, key=lambda r: r["MAE"] if pd.notna(r["MAE"]) else float("inf"))["config"]
    t = truth.reindex(wide.index)
    numbers: dict[str, dict[str, float]] = {}
    for i, row in enumerate(per_config):
        c = row["config"]
        known = t.notna() & wide[best].notna() & wide[c].notna()
        if c == best:
            text = "lowest"
        elif not known.any():
            text = "—"
        else:
            d = paired_mae_difference(t[known].to_numpy(float), wide[best][known].to_numpy(float),
                                      wide[c][known].to_numpy(float))
            numbers[c] = {**d, "images": int(known.sum())}
            if pd.isna(d["low"]):
                text = f"{d['difference']:+.2f} (too few images to tell)"
            else:
                # on the images both counted, the other can even be the better one
                verdict = ("within luck" if not d["significant"] else
                           "more error" if d["difference"] > 0 else "less error on these images")
                text = f"{d['difference']:+.2f} ({d['low']:+.2f} to {d['high']:+.2f}): {verdict}"
        items = list(row.items())  # beside the MAE's own interval
        at = [k for k, _ in items].index("MAE 95% CI") + 1
        per_config[i] = dict([*items[:at], ("vs lowest MAE", text), *items[at:]])
    return numbers


if __name__ == "__main__":  # the library module, run by mistake for the command: said, not a silent exit
    import sys

    print("this is the comparison's library module: run `cellcount compare` (or python -m cellcount compare)",
          file=sys.stderr)
    sys.exit(2)
