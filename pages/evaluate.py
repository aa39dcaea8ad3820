"""Evaluate page: accuracy against ground truth, worst images, and postprocessing tuned on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount import viz
from cellcount.evaluate import (
    BORDER_TRUTH_KEPT,
    CROSS_CHECK_FOLDS,
    DEFAULT_GRID,
    EDGE_WALK_TEXT,
    POINT_RADIUS_PX,
    TuningCheck,
    check_tunable,
    cross_check_errors,
    recorded_table,
    tune_params,
    tuning_kinds_note,
    worse_images,
)
from cellcount.evaluate.annotation import partial_annotation_note, swapped_axes_note
from cellcount.metrics import unmatched_objects, unmatched_points, unmatched_points_in_objects
from cellcount.params import BORDER_SPLIT_MODES, has_border_channel, setting_label, setting_text
from pages import _groundtruth as gt_ui
from pages import _settings as settings
from pages import _shared as sh

sh.require_entry_point("evaluate")

P = "eval"
# the columns that fit beside the settings at 1400 px (precision and recall are in the totals above and the CSV)
PER_IMAGE_COLUMNS = ("file", "learnt_from", "true", "pred", "error", "rel_error", "check", "f1", "mean_iou")
PER_IMAGE_CONFIG = {
    "file": st.column_config.TextColumn("file", width=170, help="The image's file name (hover for all of it)"),
    "learnt_from": st.column_config.CheckboxColumn("learnt", width=60, help="The model learnt from this image: its "
                                                                       "error here is likely lower than on new ones"),
    "true": st.column_config.NumberColumn("true", width=60),
    "pred": st.column_config.NumberColumn("predicted", format="%.1f", width=80),
    "error": st.column_config.NumberColumn("error", format="%+.1f", help="predicted - true", width=60),
    "rel_error": st.column_config.NumberColumn("rel. error", format="%.1f%%", help="|predicted - true| / true count, in % (the CSV's rel_error: the same as a fraction)",
                                               width=80),
    "check": sh.flag_column("check", 70, "The quality flag: this count may be wrong (the reasons are in the CSV's "
                            "check_reasons)"),
    "f1": st.column_config.NumberColumn("F1", format="%.2f", width=60, help="Objects matched to ground truth "
                                        "(precision and recall per image in the CSV)"),
    "mean_iou": st.column_config.NumberColumn("mean IoU", format="%.2f", width=80),
}
MAX_REASONS_SHOWN = 20
"""Flagged images listed with their reasons under the quality flag's caption (the rest: the CSV)."""
SORTS = {"error": "signed error", "abs_error": "largest error", "file": "file name", "true": "true count"}


def pick_data() -> list:
    """(name, image bytes, GroundTruth) per labelled image: the shipped samples or the user's uploads."""
    kind = sh.pick_one("Data", ["Labelled samples", "Upload"], f"{P}_source", radio=True)
    if kind == "Labelled samples":
        st.caption("The 12 shipped samples with their exact label images.")
        return sh.sample_pairs()
    found = gt_ui.ground_truth_ui(P)
    if found is None and st.session_state.get(f"{P}_files"):
        st.stop()  # images without ground truth yet: the uploaders said what to add
    if found is not None and not found.items:
        if not found.unlabelled and not found.skipped:  # ground truth files and no images
            st.info("Now add the images this ground truth belongs to, in the Images uploader.")
        else:
            st.error("None of the uploaded images has ground truth that could be used (see above).")
        st.stop()
    return found.items if found is not None else []


def _digits(value: float) -> int:
    """Decimals for a count error in a metric tile: fewer for large values, so six tiles fit a row ("+141.50" and
    "-84.921" would be cut to "+14…" and "-84.…" at 1400 px)."""
    return 2 if not np.isfinite(value) or abs(value) < 100 else 1 if abs(value) < 1000 else 0


FEW_FOR_INTERVAL = 10  # under this many images the MAE's "95%" interval held it 80-94% of the time


def show_summary(s: dict, iou_threshold: float) -> None:
    m = st.container(key="metrics_counts").columns(6)  # the key's class lets the tiles wrap on a narrow page
    m[0].metric("Images", int(s.get("n", 0)))
    ci = (f"; 95% bootstrap interval over these images {sh.fixed(s['mae_ci_low'])}-{sh.fixed(s['mae_ci_high'])}"
          if np.isfinite(s.get("mae_ci_low", np.nan)) else "")
    m[1].metric("MAE", sh.fixed(s["mae"], _digits(s["mae"])), help=f"Mean absolute count error (cells per image){ci}")
    if ci:
        st.caption(f"MAE {sh.fixed(s['mae'])}: 95% bootstrap interval over these images "
                   f"{sh.fixed(s['mae_ci_low'])}–{sh.fixed(s['mae_ci_high'])} (the model's MAE on images like these, "
                   "judged from these: it lies in it 95 times in 100; one new set's own MAE, over few images, strays "
                   "further. Its top can pass the largest error seen here: one far-off image among few stands for "
                   "others like it)."
                   + (" Over so few images it holds the MAE less often than it says: 80-94% of the time at 5-8 images "
                      "in simulations (docs/RESULTS.md)." if s.get("n", 0) < FEW_FOR_INTERVAL else ""))
    m[2].metric("RMSE", sh.fixed(s["rmse"], _digits(s["rmse"])))
    m[3].metric("Bias", sh.fixed(s["bias"], _digits(s["bias"]), sign=True), help="Mean of predicted - true: > 0 over-counts")
    n, with_objects = int(s.get("n", 0)), int(s.get("mape_n", s.get("n", 0)))
    empty = (f" Over the {with_objects} of the {n} images whose truth has objects: an error relative to a true count of "
             "0 is undefined." if with_objects < n else "")
    # whole percents from 100 on: a tile of six in a row fits about five characters at 1400 px
    m[4].metric("MAPE", f"{s['mape']:.{1 if abs(s['mape']) < 100 else 0}f} %" if np.isfinite(s.get("mape", np.nan)) else "—",
                help=f"Mean absolute count error relative to the true count, in %.{empty}")
    m[5].metric("R²", sh.fixed(s["r2"], 3 if abs(s["r2"]) < 10 else 1) if np.isfinite(s.get("r2", np.nan)) else "—")
    if "f1" in s:
        how = {
            "iou": f"IoU matching (IoU ≥ {iou_threshold:.2f})",
            "objects": "dots inside the objects (one dot per object; more in one object: a merge)",
            "points": "point matching (within 5 px of the density peaks)",
        }.get(s.get("match"), f"IoU matching (IoU ≥ {iou_threshold:.2f}) for label images, dots inside the "
                              "objects for dots")
        if s.get("match") == "points":  # a density model: the peaks are a by-product, the count is the integral
            st.caption(sh.DENSITY_PEAKS_NOTE)
        m = st.container(key="metrics_objects").columns(6)
        m[0].metric("Precision", f"{s['precision']:.3f}", help=how)
        m[1].metric("Recall", f"{s['recall']:.3f}", help=how)
        # pooled over two rules (dots match more loosely than outlines): the tile says so, not the caption alone
        m[2].metric("F1 (mixed)" if s.get("match") == "mixed" else "F1", f"{s['f1']:.3f}", help=how)
        if np.isfinite(s.get("mean_iou", np.nan)):
            m[3].metric("Mean IoU", f"{s['mean_iou']:.3f}", help="Mean IoU of the matched pairs")
        m[4].metric("Extra", int(s["fp"]), help="Predicted objects without a true match (false positives), as the worst images mark them")
        m[5].metric("Missed", int(s["fn"]), help="True objects without a predicted match (false negatives)")
        f1_n = int(s.get("f1_n", n))
        st.caption(f"{int(s['tp'])} matched objects by {how}"
                   + (f", over the {f1_n} of the {n} images with label images, masks or dots as truth (a count alone "
                      "has nothing to match)." if f1_n < n else "."))
    if kept := s.get(BORDER_TRUTH_KEPT):
        st.caption(f"\"Exclude edge objects\" is on, but the truth of {kept} image(s) (dots or counts) cannot leave "
                   "its own edge objects out: those images are scored against every object (label images as truth "
                   "leave theirs out alike).")
    if "ms_per_megapixel" in s:
        per_image = (f"{s['model_seconds_median']:.2f} s per image (median), "
                     if np.isfinite(s.get("model_seconds_median", np.nan)) else "")
        st.caption(
            f"Time in the networks: {per_image}{s['ms_per_megapixel']:,.0f} ms per megapixel of these images, "
            "counting the size estimate, the resize for small or large nuclei (small ones are enlarged: more "
            "pixels to read) and the novelty check. Predictions kept from an earlier run keep its time."
        )


def flag_caption(per_image: pd.DataFrame) -> None:
    """How the quality flag did on these images: how many it flagged, and how many of the large errors."""
    if "check" not in per_image or not len(per_image):
        return
    from cellcount.quality import LARGE_ERROR, flag_report, relative_errors

    rep = flag_report(per_image["check"].fillna(False).astype(bool),
                      relative_errors(per_image["true"], per_image["pred"]))
    held = (f"{round(rep['large_errors_flagged_share'] * rep['large_errors'])} of them in flagged images"
            if rep["large_errors"] else "none to catch")
    st.caption(f"Quality flag: {round(rep['flagged_share'] * rep['n'])} of {rep['n']} images flagged \"check this "
               f"image\"; {rep['large_errors']} counts off by more than {LARGE_ERROR:.0%} of the true count, {held}.")
    flagged = per_image[per_image["check"].fillna(False).astype(bool)]
    if len(flagged) and "check_reasons" in flagged:  # the table shows the flag alone: the reasons are said here
        with st.expander(f"Why {len(flagged)} image(s) were flagged"):
            shown = flagged.head(MAX_REASONS_SHOWN)
            st.markdown("\n".join(f"- `{f}` (true {_count_text(t)}, counted {_count_text(c)}): {r}" for f, t, c, r in
                                  zip(shown["file"], shown["true"], shown["pred"], shown["check_reasons"], strict=True))
                        + (f"\n\n{len(flagged) - len(shown)} more in the per-image CSV's check_reasons."
                           if len(flagged) > len(shown) else ""))


def _count_text(value: float, *, sign: bool = False) -> str:
    """A count as the tables show it: whole counts without decimals (a segmentation), else one decimal."""
    fmt = ("+" if sign else "") + ("d" if float(value).is_integer() else ".1f")
    return format(int(value) if float(value).is_integer() else float(value), fmt)


def show_worst(per_image: pd.DataFrame, items: dict, preds: dict, params: cc.CountParams, k: int = 3,
               iou: float = 0.5) -> None:
    """The k images with the largest absolute error: prediction beside ground truth, with the objects that found no
    match at IoU ``iou`` marked on each side (extra predictions, missed nuclei) where the truth has outlines."""
    worst = per_image.sort_values("abs_error", ascending=False).head(k)
    for _, row in worst.iterrows():
        name = row["file"]
        data, gt = items[name]
        try:
            image = sh.read_image_cached(sh.digest_of(data), data, name=name, scored=True)
            res = cc.postprocess(preds[name], params, measure=False)
        except cc.CellcountError as err:
            sh.show_error(err)
            continue
        st.markdown(
            f"**{name}** — true {int(row['true'])}, predicted {_count_text(row['pred'])} "
            f"(error {_count_text(row['error'], sign=True)})"
        )
        a, b = st.columns(2)
        a.markdown("Prediction")  # headings as text: a figure title collided with the figure's legend
        b.markdown("Ground truth")
        if res.output_kind == "density":
            a.plotly_chart(
                viz.density_figure(
                    image, res.density, res.peaks, count_estimate=res.count_estimate, height=380
                ),
                key=f"{P}_worst_pred_{name}",
            )
        missed = extra = missed_dots = None
        if res.output_kind != "density" and gt.labels is not None and gt.labels.shape == res.labels.shape:
            missed, extra = unmatched_objects(gt.labels, res.labels, iou_threshold=iou)
        elif res.output_kind != "density" and gt.points is not None:  # dots: an object holding none is extra
            missed_dots, extra = unmatched_points_in_objects(gt.points, res.labels)
        elif gt.points is not None and res.peaks is not None:  # a density model's centres, matched as scored
            missed_dots, _ = unmatched_points(gt.points, res.peaks, radius_px=POINT_RADIUS_PX)
        if res.output_kind != "density":
            colors = viz.OUTLINE_COLORS_BRIGHT if res.inverted else viz.OUTLINE_COLORS
            rgb = viz.outline_overlay(image, res.labels, res.rejected, colors=colors, rejected_ids=res.rejected_ids)
            # only the kinds present: four empty entries would push the picture below its ground truth's
            legend = viz.outline_legend(res.count, colors=colors, reasons=[r for r, n in res.n_rejected.items() if n],
                                        n_rejected=res.n_rejected)
            if extra is not None and len(extra):  # what the prediction has that the truth has not
                rgb = viz.mark_objects(rgb, res.labels, extra, color=viz.unmatched_color(res.inverted))
                legend[f"{'no dot inside' if missed_dots is not None else 'no true match'} ({len(extra)})"] = (
                    viz.unmatched_color(res.inverted))
            a.plotly_chart(viz.overlay_figure(rgb, legend=legend, height=380), key=f"{P}_worst_pred_{name}")
        if gt.labels is not None:
            rgb = viz.ground_truth_overlay(image, gt.labels)
            legend = {f"ground truth ({gt.count})": viz.GROUND_TRUTH_COLOR}
            if missed is not None and len(missed):
                rgb = viz.mark_objects(rgb, gt.labels, missed, color=viz.unmatched_color(res.inverted))
                legend[f"missed ({len(missed)})"] = viz.unmatched_color(res.inverted)
            b.plotly_chart(viz.image_figure(rgb, legend=legend, height=380), key=f"{P}_worst_gt_{name}")
        elif gt.points is not None:
            b.plotly_chart(viz.points_figure(image, gt.points, height=380, missed=missed_dots,
                                             missed_color=viz.unmatched_color(res.inverted)), key=f"{P}_worst_gt_{name}")
        else:
            b.info(f"Ground truth is a count only ({gt.count}).")


TUNING_VERDICTS = {"unsure": "a gain on unseen images within chance", "no better": "no better on unseen images"}
"""The tuning check's verdict, carried in the settings line wherever the tuned settings are used (Batch would say
only "tuned on your data" of settings the check advised against)."""


def _apply_tuned(best: dict, model_name: str, n_images: int, digests: tuple[str, ...] = (),
                 verdict: str | None = None) -> None:
    # the images tuned on go with the settings: Compare says when it scores them on those images again
    said = TUNING_VERDICTS.get(verdict or "")
    sh.apply_settings(model_name, best, origin="tuned", tuned_on=digests,
                      detail=f"Evaluate, {n_images} images" + (f"; the check: {said}" if said else ""))
    st.session_state[f"{P}__msg"] = (
        "success", f"Tuned settings of {model_name} applied: Count, Batch, Evaluate and Compare now use them, in "
        "this tab, kept when it reloads (a new tab starts from the model card): download them (Tuned settings "
        "JSON) to keep them, and load the file on any page or with the command line's --settings.")


def tried_table(table: pd.DataFrame) -> pd.DataFrame:
    """The tuner's table of settings tried, named and shown as on the Count page (MAE, and F1 where scored)."""
    shown = pd.DataFrame({setting_label(k): [setting_text(k, v) for v in table[k]] for k in DEFAULT_GRID if k in table})
    shown["count MAE"] = table["mae"].round(3).to_numpy()
    if "f1" in table:
        shown["F1 (scored near the best MAE)"] = table["f1"].round(3).to_numpy()
    return shown


def in_sample_note(sig: str, params: cc.CountParams, model: cc.models.CountModel, digests: set[str]) -> None:
    """Said above the scores when the settings in use were tuned on these same images: the scores then fit them
    (an in-sample MAE is lower than the MAE on images the tuning did not see), or on some of
    them (one image swapped; the settings applied, or reopened from a run)."""
    tuned = st.session_state.get(f"{P}__tune")
    if not tuned or tuned["sig"] != sig or tuned["best"] == tuned["start"] or params.to_dict() != tuned["best"]:
        try:
            hit = settings.tuned_on(model) & digests if params == settings.params(model) else set()
        except cc.CellcountError:
            hit = set()
        if hit:
            st.info(f"These scores use settings tuned on {len(hit)} of these {len(digests)} images (Evaluate, "
                    "Optimise), so they fit those better than they will fit new ones.", icon=":material/info:")
        return
    check = tuned.get("check")
    unseen = (f" On images the tuning did not see, they counted at MAE {sh.fixed(check.tuned)} against "
              f"{sh.fixed(check.kept)} for the settings tuning started from (Optimise, below)." if check is not None
              else " Expect a higher error on new images.")
    st.info("These scores use settings tuned on these same images, so they fit them better than they will fit "
            f"new ones.{unseen}", icon=":material/info:")


def tune_section(pairs, params: cc.CountParams, model: cc.models.CountModel, sig: str,
                 digests: tuple[str, ...] = (), partly: str | None = None) -> None:
    """Optimise and Apply on ``pairs``; ``digests``: their images', kept with the tuning's result; ``partly``: the
    note that they look partly annotated, which the tuning would fit."""
    st.subheader("Optimise postprocessing on this ground truth")
    if model.output_kind == "density":
        st.info("Density models count by integrating the map: there is no count parameter to tune.")
        return
    modes = [m for m in DEFAULT_GRID["split_mode"] if has_border_channel(model) or m not in BORDER_SPLIT_MODES]
    shown = {**DEFAULT_GRID, "split_mode": modes}
    grid = "; ".join(f"{setting_label(k)}: {', '.join(setting_text(k, v) for v in values)}"
                     for k, values in shown.items())
    st.caption(
        "Tries other values of the postprocessing settings one at a time, starting from the current ones, and "
        "keeps what lowers the count error (MAE) on these images; among settings within 1% of the best MAE, the "
        "one whose outlines match best (F1) wins. The model does not rerun. "
        f"Values tried: {grid} (the distance only in the split modes that use it); {EDGE_WALK_TEXT}. Settings "
        "tuned on a few "
        "images fit those images, so the tuning is also checked on images it did not see (your images in "
        f"{CROSS_CHECK_FOLDS} parts, or one per image when fewer, each part counted with settings tuned on the others)."
    )
    if partly:
        st.warning("These images look partly annotated (see above): Optimise would fit the settings to the missing "
                   "annotation (raising Min. area to drop the cells nobody marked) and call that a gain. Tune on "
                   "images annotated throughout.", icon=":material/crop:")
    if st.button("Optimise", key=f"{P}_tune", icon=":material/tune:"):
        stop = st.empty()  # the way to stop it, while it runs (there is no Stop button: a rerun ends a run)
        stop.caption("To stop it, open another page or change a setting: nothing is tuned or changed then.")
        bar = st.progress(0.0, text="Trying settings ...")
        st.session_state[f"{P}__tuning"] = sig  # until it ends: a run left unfinished is said, not lost unsaid
        try:
            check_tunable(pairs)
            tr = tune_params(pairs, params, progress=sh.progress_callback(bar, "settings tried"))
            check = kinds = None
            if len(pairs) >= 2 and tr.best_params != params:
                bar.progress(0.0, text="Checking the tuning on images it did not see ...")
                errors = cross_check_errors(pairs, params, progress=sh.progress_callback(
                    bar, "parts checked (each counted with settings tuned on the others)"))
                check, kinds = TuningCheck.of(*errors), tuning_kinds_note(pairs, *errors)
        except cc.CellcountError as err:
            st.session_state.pop(f"{P}__tuning", None)
            sh.show_error(err)
            return
        finally:
            bar.empty()
            stop.empty()
        worse = worse_images(pairs, params, tr.best_params)
        st.session_state.pop(f"{P}__tuning", None)
        st.session_state[f"{P}__tune"] = {
            "check": check,
            "kinds": kinds,
            "worse": worse,
            "sig": sig,
            "before": tr.before,
            "after": tr.after,
            "best": tr.best_params.to_dict(),
            "edge": tr.edge_note(),
            "start": params.to_dict(),
            "table": tr.table.head(200),
            "model": model.name,
            "digests": digests,  # the images it fitted: Apply records them with the settings
        }
    elif st.session_state.pop(f"{P}__tuning", None) == sig:
        # stopped by leaving the page or a change (Streamlit ends the run): said, or the result would just be missing
        st.info("Optimise stopped before it finished (another page or a change ended it): nothing was tuned or "
                "changed. Press Optimise to run it again; it takes about a minute for a dozen images.",
                icon=":material/info:")
    tuned = st.session_state.get(f"{P}__tune")
    if not tuned or tuned["sig"] != sig:
        return
    changed = {k: (tuned["start"][k], v) for k, v in tuned["best"].items() if tuned["start"][k] != v}
    check = tuned.get("check")
    helps = check is None or check.verdict == "helps"
    m = st.columns(3)
    m[0].metric("MAE before", sh.fixed(tuned['before']), help="On these images, with the settings tuning started from.")
    m[1].metric(
        "MAE after (these images)",
        sh.fixed(tuned['after']),  # rounded as the MAE above shows the same figure once applied
        delta=sh.fixed(tuned['after'] - tuned['before'], sign=True),
        delta_color="inverse" if helps else "off",
        help="On the same images the settings were tuned on: always at most 'before'. Whether tuning helps on "
        "other images is the check below.",
    )
    m[2].metric("Settings changed", len(changed))
    if edge := tuned.get("edge"):
        st.caption(f"Tuned settings {edge}: set them by hand to see.")
    # the settings in use may have moved since: the comparison is with those tuning started from
    moved = params.to_dict() not in (tuned["start"], tuned["best"])
    # once applied, "the current settings" would be the tuned ones: name those tuning started from instead
    start_words = "the settings tuning started from" if params.to_dict() != tuned["start"] else "the current settings"
    if changed and check is not None:
        text = (f"On images the tuning did not see, {start_words} count at MAE {sh.fixed(check.kept)} and tuned ones "
                f"at {sh.fixed(check.tuned)} ({check.interval_text()})")
        if check.verdict == "helps":
            st.success(f"{text}: tuning helps on images like these.")
        elif check.verdict == "unsure":
            st.info(f"{text}: a gain these {len(pairs)} images cannot tell from chance. Bring more images to be "
                    "sure before counting new ones with the tuned settings.", icon=":material/help:")
        else:
            st.warning(f"{text}: the tuned settings fit these {len(pairs)} images but count new ones no better. "
                       f"Keep {'those' if params.to_dict() != tuned['start'] else 'the current'} settings (or bring "
                       "more images); apply only if "
                       "you will count no others.")
        if tuned.get("kinds"):  # the gain held by one kind of image in a mixed set
            st.warning(tuned["kinds"][0].upper() + tuned["kinds"][1:] + ".", icon=":material/call_split:")
    if changed:
        sh.dataframe(
            pd.DataFrame([{"setting": setting_label(k), "before": setting_text(k, a), "tuned": setting_text(k, b)}
                          for k, (a, b) in changed.items()])
        )
        worse = tuned.get("worse")
        if worse is not None and len(worse):
            st.caption(
                f"{len(worse)} of {len(pairs)} image(s) count further from their ground truth with the tuned "
                "settings: "
                + ", ".join(f"{r.file} ({r.before:g} -> {r.after:g}, true {r.true})" for r in worse.head(5).itertuples())
                + (" ..." if len(worse) > 5 else "") + ". Check that these images are not the kind you count most."
            )
    else:
        st.info("The current settings are already the best on this grid.")
    applied = params.to_dict() == tuned["best"]
    if applied and changed:
        st.caption("The tuned settings are in use on every page.")
    elif moved:
        now = params.to_dict()
        # Apply sets every tuned value: the edits made since, to settings the tuning left alone, go too (a Max. area
        # of 2000 falls back to no limit under "Tuned settings applied"), so they are named
        undone = [f"{setting_label(k, short=True)} {setting_text(k, now[k])} → {setting_text(k, v)}"
                  for k, v in tuned["best"].items()
                  if k in now and now[k] != v and now[k] != tuned["start"].get(k)]  # edited since tuning
        st.warning(
            "The settings were changed after tuning: 'before' and the check above refer to the settings tuning "
            "started from, not to those in use now (the figures at the top). Run Optimise again to compare with them."
            + (f" Apply would also undo what you changed since: {', '.join(undone)}." if undone else ""),
            icon=":material/warning:",
        )
    c = st.columns(2)
    c[0].button(
        "Applied (all pages)" if applied and changed else "Apply (all pages)",
        key=f"{P}_apply",
        on_click=_apply_tuned,
        args=(tuned["best"], tuned["model"], len(pairs), tuned.get("digests", ()),
              None if check is None or check.verdict == "helps" else
              ("unsure" if check.verdict == "unsure" else "no better")),
        type="secondary" if applied or not helps else "primary",
        disabled=applied,
        icon=":material/check:",
    )
    sh.download_button(
        "Tuned settings JSON",
        sh.settings_json(tuned["model"], tuned["best"], tuned_on=tuned.get("digests", ())),  # its images with it
        f"{tuned['model']}_tuned_settings.json",  # named by its model, as Count's and Batch's downloads are
        "application/json",
        f"{P}_dl_tuned",
        container=c[1],
    )
    with st.expander("All settings tried"):
        st.dataframe(tried_table(tuned["table"]), hide_index=True)


st.title("Evaluate")
st.caption(
    "Compare counts with ground truth. Predictions are computed once per image set and model; "
    "changing the postprocessing re-evaluates immediately."
)
left, right = st.columns([1, 3], gap="medium")
with left:
    model_name, model = sh.pick_model(P)
    inputs, overrides = sh.settings_panel(P, model_name, model)
    iou = st.slider(
        "IoU threshold for matching",
        0.1,
        0.9,
        0.5,
        0.05,
        key=f"{P}_iou",
        help="How much a predicted object must overlap a true one to match it: IoU (intersection over union) is "
        "the area they share divided by the area either covers, 1 for identical outlines. A match needs at least "
        "this (F1@0.5 by default). Used "
        "with label images and masks; dots are matched by the objects holding them (by a density model's peaks "
        "within 5 px).",
        disabled=model.output_kind == "density",
    )

with right:
    sh.show_messages(P)
    try:
        items = pick_data()
    except (cc.CellcountError, FileNotFoundError) as err:
        sh.show_error(err)
        st.stop()
    if not items:
        st.info("Choose the labelled samples, or upload images and their ground truth.")
        st.stop()
    try:
        params = sh.resolve(model, inputs, overrides)
    except cc.CellcountError as err:
        sh.show_error(err)
        st.stop()
    data_sig = sh.set_digest(items)
    version, backend = sh.prediction_version(model_name, params), sh.requested_backend()
    sig = f"{data_sig}|{sh.truth_digest(items)}|{model_name}|{version}|{params.input_key()}|{backend}"
    if st.button("Evaluate", key=f"{P}_run", type="primary", icon=":material/play_arrow:"):
        if gone := sh.model_gone_now(P):
            st.warning(f"Nothing was evaluated: {gone}, the model you chose, is no longer installed. Check the model "
                       f"(now {model_name}), then press Evaluate again.")
            st.stop()
        st.session_state[f"{P}__active"] = sig
    if st.session_state.get(f"{P}__active") != sig:
        st.info("Press Evaluate to run the model on these images.")
        st.stop()
    try:
        pairs = sh.predict_set_cached(
            data_sig, model_name, version, params.input_key(), items, backend
        )
        # the predictions depend on the images only; the ground truth is this run's (it may be new)
        pairs = [(name, pred, gt) for (name, pred, _), (_, _, gt) in zip(pairs, items, strict=True)]
        # images the model learnt from flatter its scores: said, and left out unless the user keeps them
        seen = sh.trained_on_names(model, ((name, data) for name, data, _ in items), data_sig)
        if seen:  # the advice to leave them out is the toggle below, where some remain
            st.warning(model.card.trained_on_note(seen, len(items), advice=len(seen) == len(items)),
                       icon=":material/school:")
        if seen and len(seen) < len(items) and st.toggle(
            f"Score only the {len(items) - len(seen)} image(s) it has not learnt from",
            value=True,
            key=f"{P}_unseen_only",
            help="The scores, the tables and Optimise then leave out the images listed above.",
        ):
            learnt = set(seen)
            pairs = [p for p in pairs if p[0] not in learnt]
            sig = f"{sig}|unseen"
        per_image, summary = sh.evaluate_cached(sig, params.to_json(), iou, pairs, params)
        if seen and per_image["file"].isin(seen).any():  # kept in: each such row says so, in the CSV too
            per_image = per_image.assign(learnt_from=per_image["file"].isin(seen))
    except cc.CellcountError as err:
        sh.show_error(err)
        st.stop()

    scored = {name for name, _, _ in pairs}
    digests = {n: sh.digest_of(d) for n, d, _ in items if n in scored}  # once: the note and Optimise use them
    in_sample_note(sig, params, model, set(digests.values()))
    show_summary(summary, iou)
    if partly := partial_annotation_note(per_image):  # an annotation of part of each image: every count too high
        st.warning(partly, icon=":material/crop:")
    if swapped := swapped_axes_note(per_image):  # dots with x and y the wrong way round: F1 wrong, counts right
        st.warning(swapped, icon=":material/swap_horiz:")
    flag_caption(per_image)
    tabs = st.tabs(
        ["Per image", "Predicted vs true", "Errors", "Worst images"], key=f"{P}_tabs", on_change="rerun"
    )
    if tabs[0].open:
        with tabs[0]:
            # the columns that fit at 1400 px; the CSV holds them all (tp/fp/fn, timings, size estimate)
            shown = [c for c in PER_IMAGE_COLUMNS if c in per_image]
            # one decimal for every relative error (Streamlit's "percent" drops them where they are 0)
            config = dict(PER_IMAGE_CONFIG)
            if (per_image["pred"].dropna() % 1 == 0).all():  # whole counts (segmentation): no ".0" after each
                config["pred"] = st.column_config.NumberColumn("predicted", format="%d", width=80)
                config["error"] = st.column_config.NumberColumn("error", format="%+d", help="predicted - true", width=60)
            sh.dataframe(per_image.assign(rel_error=100 * per_image["rel_error"],
                                          **({"check": sh.flag_words(per_image["check"])} if "check" in shown else {})),
                         column_order=shown,
                         column_config=config)
            st.caption("More columns (precision, recall, matched / extra / missed objects, nucleus-size estimate, "
                       "timings) in the CSV.")
            # which model and settings made these counts: the file alone says (as the Batch and Compare CSVs do)
            recorded = recorded_table(per_image, pairs, model, params, iou_threshold=iou)
            sh.download_button(
                "Per-image CSV", sh.csv_bytes(recorded), f"{model.name}_evaluation.csv", "text/csv", f"{P}_dl_table",
                help="Every column, with the model, its settings (JSON), the backend, the annotation file and the IoU "
                     "threshold of the matches on each row, as `cellcount evaluate --out` writes them.",
            )
    if tabs[1].open:
        tabs[1].plotly_chart(viz.pred_vs_true_scatter(per_image), key=f"{P}_scatter")
    if tabs[2].open:
        with tabs[2]:
            order = st.segmented_control(
                "Sort by",
                list(SORTS),
                format_func=SORTS.get,
                default="error",
                key=f"{P}_err_sort",
                persist_state=sh.PERSIST,
            )
            st.plotly_chart(viz.error_bars(per_image, sort_by=order or "error"), key=f"{P}_errbars")
            st.plotly_chart(viz.error_histogram(per_image), key=f"{P}_errhist")
    if tabs[3].open:
        with tabs[3]:
            show_worst(per_image, {n: (d, g) for n, d, g in items}, {n: p for n, p, _ in pairs}, params, iou=iou)
            st.caption(f"Objects without a match at IoU ≥ {iou:g} are marked (yellow on bright backgrounds, white on "
                       "dark ones): extra on the left, missed on the right, where the ground truth has outlines; with "
                       "dots, objects holding none on the left, and dots in no object (or a second dot in one: a "
                       f"merge) on the right. A density model's centres match dots within {POINT_RADIUS_PX:g} px: "
                       "dots without one are marked on the right.")
    tune_section(pairs, params, model, sig, tuple(digests[n] for n, _, _ in items if n in digests), partly)
