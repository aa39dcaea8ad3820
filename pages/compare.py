"""Compare page: 2-4 models, or one model with two settings, on the same images side by side."""

from __future__ import annotations

import hashlib
import re
import time

import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount import viz
from cellcount.errors import error_text
from cellcount.evaluate.compare import as_written, compare_counts, rows_table, whole
from cellcount.measure import median_diameter
from cellcount.metrics import MIN_BOOTSTRAP_IMAGES, count_metrics, paired_mae_difference
from cellcount.models.loading import FALLBACK_MODEL
from pages import _groundtruth as gt_ui
from pages import _settings as settings
from pages import _shared as sh

sh.require_entry_point("compare")

P = "compare"
PANEL_PX = 360
"""Height of the side-by-side pictures (their width is about this, or less with four models)."""
MAX_CONFIGS = 4


def _png_button(name: str) -> dict:
    """Plotly's camera button saving the panel as ``name``.png at three times its size."""
    return {"toImageButtonOptions": {"format": "png", "filename": re.sub(r"[^\w.-]+", "_", name), "scale": 3}}


def _paired_caption(x: str, y: str, truth: pd.Series, px: pd.Series, py: pd.Series) -> str:
    """Is the MAE difference between two configurations more than the luck of these images?"""
    d = paired_mae_difference(truth.to_numpy(float), px.to_numpy(float), py.to_numpy(float))
    if pd.isna(d["low"]):
        return f"An interval on the MAE difference needs at least {MIN_BOOTSTRAP_IMAGES} images with ground truth."
    verdict = (
        f"{y if d['difference'] < 0 else x} is more accurate than {x if d['difference'] < 0 else y} on these images"
        if d["significant"]
        else "the difference is within what image-to-image luck explains; add images to decide"
    )
    return (
        f"MAE({y}) − MAE({x}) = {d['difference']:+.2f} (95% paired bootstrap interval "
        f"{d['low']:+.2f} to {d['high']:+.2f}): {verdict}."
    )


FILE_COLUMN = st.column_config.TextColumn("file", width="medium", help="The image's file name (hover for all of it)")
"""A fixed width for file names: long ones (DSB's are 64 characters) push the models' columns off the page."""


def pick_configs() -> list[tuple[str, str, cc.CountParams]]:
    """(label, model name, params) per configuration."""
    ss = st.session_state
    names = cc.list_models()
    mode = sh.pick_one(
        "Compare",
        ["Models", "Settings"],
        f"{P}_mode",
        default="Models" if len(names) > 1 else "Settings",
        radio=True,
        format_func={"Models": "2-4 models", "Settings": "one model, two settings"}.get,
    )
    if mode == "Models":
        sh.finetune_watch(P)  # as the one-model mode's picker does: a fine-tune's model joins the list when it ends
        if f"{P}_models" not in ss:  # first visit: the model in use on the other pages, beside another
            # the model in use, unless it is gone (then the default)
            current = next((n for n in (settings.current_model(), cc.models.default_model_name()) if n in names),
                           names[0] if names else None)
            # the other: the default, or the default's fallback (the model it replaced) when the default is in use
            other = FALLBACK_MODEL if current == cc.models.default_model_name() else cc.models.default_model_name()
            chosen = [n for n in dict.fromkeys([current, other, *names]) if n in names]
            ss[f"{P}_models"] = chosen[:2]
        # a model deleted meanwhile drops out, said; a list the user emptied stays empty (no models put back unasked)
        gone = [n for n in ss[f"{P}_models"] if n not in names]
        ss[f"{P}_models"] = [n for n in ss[f"{P}_models"] if n in names]
        if gone:
            st.warning(f"{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} no longer installed (deleted "
                       f"{sh.DELETED_WHERE}), so taken out of this comparison.")
        picked = st.multiselect(
            "Models",
            names,
            key=f"{P}_models",
            persist_state=sh.PERSIST,
            max_selections=MAX_CONFIGS,
            wrap=True,  # chips on several lines: one line cut the second name off
            help=f"Up to {MAX_CONFIGS} at a time (\"Select all\" takes the first {MAX_CONFIGS}).",
        )
        models = [sh.get_model(n) for n in picked]
        # each with what was edited, as the other pages' settings line says it ("edited" alone, for a channel set
        # on Count, says nothing)
        st.caption("Each model runs with the settings in use for it this session (the same as on Count, "
                   "Batch and Evaluate): " + "; ".join(settings.describe(m).removeprefix("Settings of ") for m in models)
                   + ".")
        sh.reset_models_button(P, models)
        if len(names) < 2:
            st.info("Only one model is installed: compare two settings of it instead (switch above).")
        return [(settings.short_label(m), m.name, settings.params(m)) for m in models]
    model_name, model = sh.pick_model(P)  # a change is announced here, with what happens to the settings
    configs = []
    st.caption("A is the session's settings for this model (shared with the other pages); B starts as a copy "
               "of them and changes only here.")
    sh.settings_status(model, f"{P}_a")
    sh.use_local_settings(f"{P}_b", model)
    for label in ("A", "B"):
        prefix = f"{P}_{label.lower()}"
        with st.expander(f"Settings {label}", expanded=label == "B"):
            overrides = sh.params_ui(model, prefix)
        configs.append(
            (f"{label}: {model_name}", model_name, sh.resolve(model, sh.current_input(prefix, model), overrides))
        )
    # B named by what it changes (of the settings that act): "A: m" and "B: m" alone leave the table, verdict and CSV
    # silent on what B is
    (_, _, a), (b_label, _, b) = configs
    # every change (the CSV's headers name B by them), and A with where its settings came from
    changed = settings.changes_text(a.acting(model.output_kind), b.acting(model.output_kind), most=8, sep=" ")
    configs[0] = (f"A: {settings.short_label(model)}", model_name, a)
    configs[1] = (f"{b_label} ({changed or 'same as A'})", model_name, b)
    return configs


def tuned_note(configs, sources: list[sh.Source]) -> None:
    """Said when a configuration's settings were tuned (Evaluate's Optimise, Apply) on some of these images: its
    errors here are in-sample and flatter it against the others, as a model's own training images would."""
    digests = {s.digest.split(":plane=")[0] for s in sources}
    fitted = {}
    for label, name, params in configs:
        model = sh.get_model(name)
        try:  # the session's settings, where they were tuned: a configuration changed here from them is not
            tuned = params == settings.params(model)
        except cc.CellcountError:
            tuned = False
        if tuned and (hit := settings.tuned_on(model) & digests):
            fitted[label] = len(hit)
    if fitted:
        by_share: dict[int, list[str]] = {}
        for label, k in fitted.items():
            by_share.setdefault(k, []).append(label)
        st.warning(
            "Settings tuned on " + "; ".join(f"{k} of these {len(sources)} images: {' and '.join(labels)}"
                                             for k, labels in by_share.items())
            + " (Evaluate, Optimise). A configuration scored on the images its settings were tuned on counts them "
            "better than it will count new ones, so the comparison favours it: compare on other images, or reset "
            "its settings to the card's first.", icon=":material/tune:")


def pick_images() -> list[sh.Source]:
    ss = st.session_state
    kind = sh.pick_one("Images", ["Samples", "Upload"], f"{P}_source", radio=True)
    if kind == "Samples":
        names = sh.sample_names()
        if f"{P}_samples" not in ss:
            ss[f"{P}_samples"] = names[:4]
        ss[f"{P}_samples"] = [n for n in ss[f"{P}_samples"] if n in names]
        chosen = st.multiselect(
            "Sample images",
            names,
            key=f"{P}_samples",
            persist_state=sh.PERSIST,
            wrap=True,
            help="The samples have ground truth, so per-image errors are shown.",
        )
        truths = sh.sample_truths()
        st.session_state[f"{P}__truths"] = {n: truths[n] for n in chosen if n in truths}
        return [sh.sample_source(n) for n in chosen]
    found = gt_ui.ground_truth_ui(P, optional=True)
    if found is None:
        return []
    st.session_state[f"{P}__truths"] = {n: gt for n, _, gt in found.items}  # label images: edge objects known
    labelled = [sh.Source(n, d, sh.digest_of(d), gt.count) for n, d, gt in found.items]
    return labelled + [sh.Source(n, d, sh.digest_of(d)) for n, d in found.unlabelled]


def run(configs, sources, page: int | str | None = None) -> pd.DataFrame:
    from cellcount.evaluate import match_objects, scored_true_count, scored_truth

    truths = st.session_state.get(f"{P}__truths", {})
    rows = []
    bar = st.progress(0.0, text="Comparing ...")
    total = len(configs) * len(sources)
    step = 0
    for src in sources:
        src_page = None
        try:
            src_page = page if sh.has_planes(src) else None  # a one-plane file as it is, as Batch reads it
            image = sh.read_image_cached(src.digest, src.data, src_page)
            note = sh.image_note(src.digest, src.data, src_page)  # the first plane of a stack read: flagged, as on Count
        except cc.CellcountError as err:
            reason = str(err).replace("<bytes>", src.name)
            # a row per setting all the same, so the per-row CSV lists the file with why it has no count
            rows += [{"file": src.name, "true": src.truth, "config": label, "model": model_name, "backend": None,
                      "settings": params.settings_json(sh.get_model(model_name).output_kind), "count": None, "count_estimate": None,
                      "seconds": None, "check": None, "check_score": None, "check_reasons": "", "status": "error",
                      "reason": reason, **({"plane": src_page} if src_page is not None else {})}
                     for label, model_name, params in configs]
            step += len(configs)
            continue
        for label, model_name, params in configs:
            row = {
                "file": src.name,
                "true": src.truth,
                "config": label,
                "model": model_name,
                "backend": None,  # the one its network ran in (models may run in different ones on one machine)
                "settings": params.settings_json(sh.get_model(model_name).output_kind),
                "count": None,
                "count_estimate": None,
                "seconds": None,
                "check": None,
                "check_score": None,
                "check_reasons": "",
                "status": "ok",
                "reason": "",  # status and reason as Batch's and the command line's counts CSVs have them
                # what was counted of a z-stack: its plane or projection, as the counts CSVs' plane column says
                **({"plane": src_page} if src_page is not None else {}),
            }
            try:
                dropped = sh.channel_note(params, image)
                params = sh.for_image(params, image)
                made = sh.predictions_made()
                pred = sh.predict_source(src, image, model_name, params)
                # a prediction kept from earlier (Count, Evaluate, an earlier comparison) carries the time of its
                # making, cold or under other load: not this comparison's to show
                fresh = sh.predictions_made() > made
                res = cc.postprocess(pred, params, measure=False)
                if dropped:
                    res.quality = cc.quality.with_note(res.quality, dropped)
                if src.name in truths and src.truth is not None:  # as Evaluate scores it: with "Exclude edge
                    # objects" on, the truth's edge objects are left out too (else a perfect count reads -2 per image)
                    row["true"] = scored_true_count(truths[src.name], params, pred.output_kind)
                    # objects matched as Evaluate and `cellcount compare` match them, for F1
                    gt = scored_truth(pred, params, truths[src.name])
                    if gt.labels is None or res.labels is None or gt.labels.shape == res.labels.shape:
                        found, how = match_objects(res, gt)
                        if found is not None:
                            row.update(tp=found.tp, fp=found.fp, fn=found.fn, match=how)
                if note:
                    res.quality = cc.quality.with_note(res.quality, note)
                row.update(
                    # a model's one-off setup (its first use on this machine) is not its speed
                    count=res.count, count_estimate=res.count_estimate, backend=pred.backend,
                    seconds=sum(v for k, v in res.seconds.items() if k != "setup") if fresh else None,
                    timed_here=fresh,
                )
                if res.quality is not None:
                    row.update(check=bool(res.quality.flag), check_score=round(float(res.quality.score), 3),
                               check_reasons="; ".join(res.quality.reasons))
            except cc.CellcountError as err:
                row.update(status="error", reason=error_text(err, src.name))
            rows.append(row)
            step += 1
            bar.progress(step / total, text=f"{step} / {total}")
    bar.empty()
    return pd.DataFrame(rows)


def show(long: pd.DataFrame, configs, sources, page: int | str | None = None, sig: str = "", stamp: str = "") -> None:
    labels = [c[0] for c in configs]
    # a file with no count (unreadable) keeps its row, empty, in the table and its CSV; the figures use the rest
    cmp = compare_counts(long, labels, {s.name: s.truth for s in sources})
    table, wide, scored, truth, edges_out, has_truth = (cmp.table, cmp.wide, cmp.scored, cmp.truth, cmp.edges_out,
                                                         cmp.has_truth)
    st.subheader("Counts")
    if has_truth and not truth.notna().all():
        st.caption(f"Errors over the {int(truth.notna().sum())} of {len(truth)} images that have ground truth.")
    if cmp.f1_note:
        st.caption(f"{cmp.f1_note}.")
    sh.dataframe(
        cmp.per_config,
        # widths and short headers that fit at 1400 px with 4 models' names (the CSV keeps the long names)
        column_config={
            "config": st.column_config.TextColumn(width=200),  # wider for "m (edited: Min. area 30)"; 1400 px fits 200
            "RMSE": st.column_config.NumberColumn(format="%.2f", width=55),
            "median time per image (ms)": st.column_config.NumberColumn(
                "ms / image", format="%.0f", width=70, help="Median time per image: normalise + model + postprocess "
                "(the median: a model's first image also pays for its loading and warm-up)"),
            "total count": st.column_config.NumberColumn("total", width=60, help="Objects counted on all images"),
            "images with ground truth": st.column_config.NumberColumn("labelled", width=60,
                                                                      help="Images with ground truth"),
            "MAE": st.column_config.NumberColumn(
                "MAE", format="%.2f", width=55, help="Count error: mean of |predicted - true| cells per image"),
            "MAE 95% CI": st.column_config.TextColumn(
                width=95, help="95% bootstrap interval of the MAE the model would have on new images like these "
                "(not of these images' own MAE: with few images it reaches past their largest error; needs at "
                f"least {MIN_BOOTSTRAP_IMAGES})"),
            "bias": st.column_config.NumberColumn(
                format="%+.2f", width=55, help="Mean of predicted - true: above 0 over-counts"),
            "F1": st.column_config.NumberColumn(
                format="%.3f", width=50, help="Objects matched to the ground truth's, as Evaluate matches them "
                "(outlines overlapping by IoU 0.5; dots inside a segmentation's objects, or near a density model's "
                "approximate centres), over the images whose truth has objects or dots, not a count alone"),
            "F1 images": st.column_config.NumberColumn(
                width=60, help="How many images the F1 is over: those every configuration's objects were matched on"),
            "images flagged": st.column_config.NumberColumn(
                "flagged", width=58, help="Images whose count this model's quality flag marks \"check this image\""),
            "vs lowest MAE": st.column_config.TextColumn(
                width=175, help="The MAE difference from the configuration with the lowest MAE, on the same images, with its 95% "
                "paired bootstrap interval: 'more error' when the interval is above 0, 'less error on these images' "
                "when below (on the images both counted), else 'within luck': image-to-image luck explains it"),
        },
    )
    flagged = long[long["check"].fillna(False).astype(bool)]
    if len(flagged):
        # of the images counted: an unreadable upload is none of them ("3 of 4" would be wrong for 3 of the 3 read)
        st.warning(f"{flagged['file'].nunique()} of the {len(wide)} image(s) counted flagged \"check this image\" by at "
                   "least one model or setting: agreement is not correctness (models that learnt from the same kind of "
                   "images can be wrong alike).")
        with st.expander("Why they are flagged"):
            for _, r in flagged.head(50).iterrows():
                st.markdown(f"- `{r['file']}`, {r['config']}: {r['check_reasons']}")
    # counts and errors as two tables of at most 1 + 1 + 4 columns, so that 4 long model names fit at
    # 1400 px; the CSV holds both
    counts = [c for c in table.columns if not c.startswith(("error: ", "true: "))]
    sh.dataframe(
        table,
        column_order=counts,
        column_config={**{c: st.column_config.NumberColumn(format="%d" if whole(table[c]) else "%.1f")
                          for c in counts if c not in ("file", "true")}, "file": FILE_COLUMN},
    )
    errors = [c for c in table.columns if c.startswith("error: ")]
    if errors:
        st.caption("Error per image (predicted − true; below 0 under-counts)")
        if edges_out:
            st.caption(f"{' and '.join(edges_out)} leave{'s' if len(edges_out) == 1 else ''} out the objects touching "
                       "the image's edge (\"Exclude edge objects\"), so their errors are against the truth without "
                       "them (\"true: ...\" columns), as Evaluate scores them. Dots and counts cannot say which "
                       "objects touch the edge: those keep them.")
        true_cols = [f"true: {c}" for c in edges_out]
        sh.dataframe(
            table,
            column_order=["file", *true_cols, *errors],
            column_config={**{c: st.column_config.NumberColumn(c.removeprefix("error: "),
                                                                 format="%+d" if whole(table[c]) else "%+.1f")
                              for c in errors},
                           **{c: st.column_config.NumberColumn(format="%d") for c in true_cols}, "file": FILE_COLUMN},
        )
    failed = long[long["status"] != "ok"]
    for file, rows in failed.groupby("file", sort=False):  # an unreadable file once, not once per setting
        reasons = rows["reason"].unique()
        if len(reasons) == 1 and len(rows) == len(labels):  # the reason names the file already
            st.warning(reasons[0] if file in reasons[0] else f"`{file}`: {reasons[0]}")
        else:
            for _, r in rows.iterrows():
                st.warning(f"`{file}` with {r['config']}: {r['reason']}")
    row = st.container(horizontal=True)
    name = f"comparison_{stamp}" if stamp else "comparison"
    # whole counts as whole numbers (17, not 17.0), as the other CSV writes them; an empty cell stays empty
    sh.download_button("Comparison CSV", sh.csv_bytes(as_written(table)), f"{name}.csv", "text/csv", f"{P}_dl", container=row,
                       help="One row per image: the counts side by side (and the errors, with ground truth).")
    sh.download_button("Every count CSV", sh.csv_bytes(rows_table(long)), f"{name}_rows.csv", "text/csv", f"{P}_dl_rows",
                       container=row, help="One row per image and model or setting: the model, its settings (JSON), "
                       "the count, the quality flag and why, and why a file could not be counted.")

    if len(wide.columns) >= 2:
        a, b = st.columns(2)
        with a:
            pair = st.columns(2)
            # the two with the lowest MAE first (with ground truth): the verdict below is on these two, the table's best
            order = list(wide.columns)
            if has_truth and "MAE" in cmp.per_config:
                mae = dict(zip(cmp.per_config["config"], cmp.per_config["MAE"], strict=True))
                order = sorted(order, key=lambda c: (pd.isna(mae.get(c)), 0.0 if pd.isna(mae.get(c)) else mae[c]))
            x = pair[0].selectbox("x axis", list(wide.columns), index=list(wide.columns).index(order[0]), key=f"{P}_x")
            y = pair[1].selectbox("y axis", list(wide.columns), index=list(wide.columns).index(order[1]), key=f"{P}_y")
            st.plotly_chart(viz.agreement_scatter(wide.reset_index(), x, y), key=f"{P}_agree")
            # the images both counted: one that a configuration could not count has no difference to take
            both = wide[x].notna() & wide[y].notna()
            if x != y and both.any():
                d = count_metrics(wide.loc[both, x].to_numpy(float), wide.loc[both, y].to_numpy(float))
                st.caption(
                    f"Mean |{y} − {x}| = {d['mae']:.2f} cells per image; mean difference {d['bias']:+.2f}"
                    + (f" (on the {int(both.sum())} of {len(wide)} images both counted)." if not both.all() else ".")
                )
                if has_truth:
                    known = truth.reindex(wide.index).notna() & both
                    st.caption(_paired_caption(x, y, truth.reindex(wide.index)[known], scored[x][known],
                                               scored[y][known]))
    else:
        b = st.container()
    with b:
        timed = long.dropna(subset=["seconds"])
        if len(timed):
            st.plotly_chart(viz.model_times_figure(timed), key=f"{P}_times")
        counted = long["status"].eq("ok") if "status" in long else pd.Series(True, index=long.index)
        reused = int((counted & ~long.get("timed_here", pd.Series(True, index=long.index)).fillna(False).astype(bool)).sum())
        st.caption("Median time per image: normalise + model + postprocess, of the predictions made in this comparison "
                   "(a model's one-off setup on this machine, timing its backends, is left out, and the median keeps "
                   "its warm-up on its first image out of its speed)."
                   + (f" {reused} of the {int(counted.sum())} were made earlier (on another page, or for an earlier "
                      "comparison) and kept: their times, taken then under other load, are left out"
                      + ("; a model with none made here has no time." if reused < int(counted.sum()) else
                         ", so no time is shown: the benchmark (BENCHMARKS.md) times the models alike.")
                      if reused else ""))

    st.subheader("Side by side")
    names = [s.name for s in sources]
    # a widget of its own per comparison, started from the image chosen last: one kept across comparisons is not
    # drawn while "Press Compare" shows, and then names the first image while the panels show the one chosen
    chosen = st.session_state.get(f"{P}__show_choice")
    pick = st.selectbox("Image", names, index=names.index(chosen) if chosen in names else 0,
                        key=f"{P}_show_{hashlib.sha256(sig.encode()).hexdigest()[:12]}")
    st.session_state[f"{P}__show_choice"] = pick
    src = sources[names.index(pick)]
    src_page = page if sh.has_planes(src) else None
    try:
        image = sh.read_image_cached(src.digest, src.data, src_page, name=src.name)
    except cc.CellcountError as err:
        sh.show_error(err, name=src.name)
        return
    from cellcount.evaluate import scored_true_count

    truths = st.session_state.get(f"{P}__truths", {})
    gt = truths.get(src.name)
    # the truth drawn beside the predictions where it has outlines or dots (a count alone is in each title)
    drawn = gt is not None and ((gt.labels is not None and gt.labels.shape == image.shape[:2])
                                or (gt.labels is None and gt.points is not None))
    cols = st.columns(len(configs) + drawn)
    # the truth a configuration that leaves out edge objects is scored against: said beside all that is drawn
    edgeless = sorted({t for _, m, p in configs if drawn and (t := scored_true_count(gt, p, sh.get_model(m).output_kind))
                       != gt.count}) if drawn else []
    if drawn:
        with cols[-1]:
            if gt.labels is not None:
                # no legend: the title says it, and the picture stays level with the predictions' (they have none)
                fig = viz.image_figure(viz.ground_truth_overlay(image, gt.labels), height=PANEL_PX,
                                       title=f"Ground truth<br>{gt.count} annotated" + (
                                           f" ({edgeless[0]} off the edge)" if edgeless else ""))
            else:
                fig = viz.points_figure(image, gt.points, height=PANEL_PX, legend=False,
                                        title=f"Ground truth<br>{gt.count} annotated"
                                        + (f" ({edgeless[0]} off the edge)" if edgeless else ""))
            st.plotly_chart(fig, key=f"{P}_side_truth", config=_png_button(f"truth_{sh.stem(src.name)}"))
    for col, (label, model_name, params) in zip(cols[:len(configs)], configs, strict=True):
        with col:
            try:
                params = sh.for_image(params, image)
                pred = sh.predict_source(src, image, model_name, params)
                res = cc.postprocess(pred, params, image=image)
            except cc.CellcountError as err:
                sh.show_error(err, name=src.name)
                continue
            true = src.truth
            if true is not None and src.name in truths:  # the truth this configuration is scored against
                true = scored_true_count(truths[src.name], params, res.output_kind)
            truth = f" (true {true})" if true is not None else ""
            title = f"{label}<br>{res.count}{truth}"  # on one line, four panels cut "(true 4..." off
            if res.output_kind == "density":
                # the integral is the count; its peaks (approximate centres) stay off, as on the Count page
                fig = viz.density_figure(image, res.density, None, height=360,
                                         title=f"{label}<br>{res.count_estimate:.1f}{truth}")
            else:
                # drawn as on the Count page: a colour chosen against the image (a fixed green vanishes on purple H&E)
                rgb, _ = viz.render_outlines(viz.display_image(image), res.labels, res.rejected, color="auto",
                                             rejected_colors=viz.OUTLINE_COLORS, rejected_ids=res.rejected_ids,
                                             thickness=viz.thickness_for(image.shape, PANEL_PX, median_diameter(res.objects)))
                fig = viz.overlay_figure(
                    rgb, objects=res.objects, title=title, height=PANEL_PX, pixel_size_um=params.pixel_size_um
                )
            # the camera button's file named by model and image, at 3x the panel (a title's "431.2" would be 4312 in
            # the name, and the picture 140 px wide)
            st.plotly_chart(fig, key=f"{P}_side_{label}", config=_png_button(f"{model_name}_{sh.stem(src.name)}"))


st.title("Compare")
st.caption("Run several models, or one model with two settings, on the same images.")
left, right = st.columns([2, 3], gap="large")
with left:
    try:
        configs = pick_configs()
    except cc.CellcountError as err:
        sh.show_error(err)
        st.stop()
    for prefix in (P, f"{P}_a", f"{P}_b"):  # a model change, a reset, a settings file: said here, not on the next page
        sh.show_messages(prefix)
with right:
    sources = pick_images()
    page = None
    most = max((sh.n_planes(s) for s in sources), default=1)
    if most > 1:  # z-stacks: the plane Count and Batch read, or another of those these files hold
        page = sh.stack_plane_ui(P, verb="Compare on", planes=most)
        sources = [sh.plane_source(s, page if sh.has_planes(s) else None) for s in sources]
    ready = len(configs) >= 1 and bool(sources)
    if not ready:
        st.info("Choose at least one model (two to compare) and one image.")
    elif len({(m, p) for _, m, p in configs}) < len(configs):
        st.warning("Two configurations are identical: change a setting or a model to see a difference.")
    if ready:  # a model's own training images flatter it beside the others
        learnt: set[str] = set()
        set_key = "|".join(f"{s.name}:{s.digest}" for s in sources)  # names too: the check answers with names
        by_model = {}
        for name in dict.fromkeys(m for _, m, _ in configs):
            model = sh.get_model(name)
            seen = sh.trained_on_names(model, ((s.name, s.data) for s in sources), set_key)
            if seen:
                learnt.update(seen)
                by_model[name] = (model, seen)
        if len(by_model) == 1:
            model, seen = next(iter(by_model.values()))
            st.warning(model.card.trained_on_note(seen, len(sources), advice=len(seen) == len(sources)),
                       icon=":material/school:")
        elif by_model:  # one note for all, not a box per model (three alike are noise)
            st.warning(f"{len(learnt)} of these {len(sources)} images {'was' if len(learnt) == 1 else 'were'} among the "
                       "training images of "
                       + ", ".join(f"{name} ({len(seen)})" for name, (_, seen) in by_model.items())
                       + " (" + ", ".join(cc.io.short_name(n) for n in sorted(learnt)[:5])
                       + (f" and {len(learnt) - 5} more" if len(learnt) > 5 else "")
                       + "): a model's error on its own training images is likely lower than on images it has not "
                       "seen.", icon=":material/school:")
        unseen = [s for s in sources if s.name not in learnt]
        if learnt and unseen and st.toggle(
            f"Compare on the {len(unseen)} image(s) no model here learnt from",
            value=True,
            key=f"{P}_unseen_only",
            help="A model counts the images it learnt from better than new ones: a fair comparison leaves them out.",
        ):
            sources = unseen
        tuned_note(configs, sources)
    run_now = st.button(
        f"Compare on {len(sources)} image(s)",
        key=f"{P}_run",
        type="primary",
        icon=":material/play_arrow:",
        disabled=not ready,
    )
if not ready:
    st.stop()
sig = repr(
    [(lab, m, sh.prediction_version(m, p), p.to_json()) for lab, m, p in configs] + [(s.digest, s.truth) for s in sources]
    + [sh.requested_backend()]
)
if run_now:
    st.session_state[f"{P}__result"] = {"sig": sig, "table": run(configs, sources, page),
                                        "what": ([lab for lab, _, _ in configs], len(sources)),
                                        # downloads named by when it ran, as Batch's are: two comparisons' CSVs
                                        # would be "comparison.csv" and "comparison (1).csv"
                                        "stamp": time.strftime("%Y%m%d-%H%M%S")}
stored = st.session_state.get(f"{P}__result")
if stored is None or stored["sig"] != sig:
    if stored is not None and "what" in stored:  # the table would go with no word when a setting changes on Batch
        labels, n = stored["what"]
        st.info(f"The last comparison ({'; '.join(labels)}, on {n} image(s)) no longer matches what is chosen: the "
                "models, the settings in use (changed here or on another page) or the images changed. Press Compare "
                "to count again; setting them back shows it again.", icon=":material/update:")
    else:
        st.info("Press Compare to count the images with every configuration.")
    st.stop()
show(stored["table"], configs, sources, page, sig, stored.get("stamp", ""))
