"""Count page: one image, one model, live postprocessing, a readable viewer, objects, downloads."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount import viz
from cellcount.batch import BatchItem, counts_frame, objects_table
from cellcount.io import labels_to_tiff_bytes, short_name, split_ground_truth_files
from cellcount.measure import BOX_COLUMNS, likely_merges, median_diameter
from cellcount.pipeline import split_distance_px
from cellcount.postprocess import REJECT_REASONS, auto_split_note
from pages import _settings as settings
from pages import _shared as sh
from pages import _tabstate
from pages._quality import quality_badge

sh.require_entry_point("count")

P = "count"
ZOOMS = {"Fit": 0, "100% (full resolution)": 1, "200%": 2, "400%": 4}
COLORS = {"Auto (contrast with the image)": "auto", "One colour per object": "per object",
          **{name.capitalize(): rgb for name, rgb in viz.OUTLINE_CANDIDATES.items()}}


def pick_source() -> sh.Source | None:
    """Sample or upload -> Source (None when nothing is uploaded yet)."""
    kind = sh.pick_one("Image", ["Sample", "Upload"], f"{P}_source", radio=True)
    if kind == "Sample":
        name = sh.pick_one("Sample image", sh.sample_names(), f"{P}_sample", format_func=sh.sample_label)
        return sh.sample_source(name)
    returning = sh.uploaders_empty(f"{P}_upload")
    up = st.file_uploader(
        "Upload an image",
        type=[*sh.IMAGE_TYPES, *sh.MICROSCOPE_TYPES],
        key=f"{P}_upload",
        help="PNG, JPEG, BMP or TIFF; 8/16-bit, grayscale, RGB or multichannel (choose the channel below). "
        f"Replacing or removing the image never changes the settings. {sh.MICROSCOPE_HELP}",
    )
    files = sh.kept_uploads(f"{P}_upload", [[up] if up is not None else []], returning=returning,
                            note=lambda kept: f"Showing **{short_name(kept[0][0].name)}**, which you uploaded earlier; upload "
                            "another image to replace it.", remove_key=f"{P}_forget_upload", remove_label="Remove it")
    return sh.upload_source(files[0][0]) if files else None


def size_note(result: cc.CountResult) -> str:
    """What the nucleus size did to the model input."""
    given = result.params.nucleus_diameter_px
    # one decimal: 12.3 px used as it is beside 12.2 px resized read as a contradiction at whole pixels (the band's
    # edge lies between them)
    what = (f"Nucleus diameter {given:g} px" if given else
            f"Estimated nucleus diameter {result.estimated_diameter_px:.1f} px")
    if result.model_scale == 1.0:
        made_for = "its settings assume" if result.model_name == cc.models.CLASSICAL_NAME else "the model was trained on"
        return f"{what}: close enough to the size {made_for}; the image was used as it is."
    return (f"{what}: the model saw this image resized {result.model_scale:.2f}x, so that its nuclei match the "
            "size it was trained on; objects and areas are in the original pixels.")


VIEW_KEY = f"{P}_view"  # the display options, kept here while the Display panel is closed
VIEW_DEFAULTS = {"color": next(iter(COLORS)), "zoom": next(iter(ZOOMS)), "thickness": 1, "opacity": 1.0,
                 "contrast": (0.5, 99.5), "merges": True, "row": 0.5, "col": 0.5}


def _view_widget(name: str, widget: Any, *args: Any, options: list | None = None, **kwargs: Any) -> Any:
    """One display control, starting from its current value: the widget's own state, or the option kept while
    it was not drawn. The value is passed to the widget each run: a control the browser mounts afresh (replacing
    the image inserts a progress bar above it) would otherwise show its default while the server kept the
    option, and the next touch would send those defaults back."""
    key = f"{VIEW_KEY}_{name}"
    current = st.session_state[key] if key in st.session_state else st.session_state[VIEW_KEY][name]
    if options is not None:  # a selectbox
        value = widget(*args, options, index=options.index(current), key=key, **kwargs)
    else:
        value = widget(*args, value=current, key=key, **kwargs)
    st.session_state[VIEW_KEY][name] = value
    return value


def view_ui(shape: tuple[int, int]) -> dict:
    """Display options of the viewer (they never change the count). Their controls are drawn only while the
    panel is open: closed, a slider move re-sends six controls fewer to the browser (scripts/bench_browser.py)."""
    v = st.session_state.setdefault(VIEW_KEY, dict(VIEW_DEFAULTS))
    # open or closed as it was left, also after a run that did not draw it (an image being replaced); through
    # the state, not ``expanded``: that is part of the widget's identity, so a changing value loses clicks
    key = f"{VIEW_KEY}_open"
    if key not in st.session_state:
        st.session_state[key] = bool(v.get("open"))
    panel = st.expander("Display", key=key, on_change="rerun")
    v["open"] = bool(panel.open)
    if panel.open:
        with panel:
            a, b = st.columns(2)
            _view_widget("color", a.selectbox, "Outline colour", options=list(COLORS),
                         help="Auto picks green, yellow or blue: the first that stands out from both the objects "
                         "and the background around the outlines.")
            _view_widget("zoom", b.selectbox, "Zoom", options=list(ZOOMS),
                         help="100%: one image pixel per screen pixel; the position sliders choose the window.")
            _view_widget("thickness", a.slider, "Outline thickness (px)", 1, 5)
            _view_widget("opacity", b.slider, "Outline opacity", 0.2, 1.0, step=0.1,
                         help="How much the outlines cover the picture: lower lets the nucleus edge under them show. "
                         "Only the picture; the count is the same.")
            _view_widget("contrast", st.slider, "Display contrast (percentiles of the image shown black and white)",
                         0.0, 100.0, step=0.5, help="Only the picture; the model and the count use the image as it is.")
            _view_widget("merges", st.toggle, "Mark likely merges",
                         help="Red (black or white beside one colour per object; rejected objects are then grey): objects over 2.5x the median area of their 8 nearest neighbours and with a "
                         "waist (not convex), often two or more nuclei counted as one. One large round "
                         "nucleus is not marked.")
            zoom = ZOOMS[v["zoom"]]
            if zoom and max(shape) * zoom <= viz.ZOOM_VIEW_PX:  # no window to move: say so (200% looks less than Fit)
                st.caption(f"At {zoom * 100}% the whole image is shown ({shape[1] * zoom} × {shape[0] * zoom} px on "
                           "screen, scrolling where the panel is narrower); "
                           "Fit shows it as wide as the panel. A window to move appears when a zoom makes it larger "
                           f"than {viz.ZOOM_VIEW_PX} px.")
            elif zoom:
                c1, c2 = st.columns(2)
                # steps no longer than half the window, so that every part of a wide image can be reached (at 400%
                # a step of 0.05 of 4000 px moves 200 px, past the 160 px shown)
                _view_widget("row", c2.slider, "Window: top → bottom", 0.0, 1.0, step=viz.window_step(shape[0], zoom))
                _view_widget("col", c1.slider, "Window: left → right", 0.0, 1.0, step=viz.window_step(shape[1], zoom))
    low, high = v["contrast"]
    if high <= low:  # both ends at one value stretch nothing: shown a step apart, said
        low, high = (low - 0.5, low) if low >= 0.5 else (low, low + 0.5)
        st.caption(f"Both ends of the contrast at {v['contrast'][0]:g}: shown between {low:g} and {high:g}.")
    return {"color": COLORS[v["color"]], "zoom": ZOOMS[v["zoom"]], "thickness": v["thickness"],
            "opacity": v["opacity"], "contrast": (low, high), "merges": v["merges"],
            "centre": (v["row"], v["col"]) if ZOOMS[v["zoom"]] else (0.5, 0.5)}


@st.cache_data(max_entries=8, ttl=sh.CACHE_TTL_S, show_spinner=False)
def probability_stats_cached(prediction_key: str, _prob: np.ndarray) -> tuple:
    return sh.probability_stats(_prob)


@st.cache_resource(max_entries=4, ttl=sh.CACHE_TTL_S, show_spinner=False)  # read-only: no copy per hit
def display_cached(digest: str, contrast: tuple, _image: np.ndarray) -> np.ndarray:
    return viz.display_image(_image, low_pct=contrast[0], high_pct=contrast[1])


@st.cache_data(max_entries=16, ttl=sh.CACHE_TTL_S, show_spinner=False)
def overlay_cached(
    digest: str, prediction_key: str, params_json: str, view: tuple, _image: np.ndarray, _result: cc.CountResult
) -> tuple[bytes, dict, int]:
    """JPEG of the outlined picture for these plain keys (image, prediction, settings, display options)."""
    v = dict(view)
    rgb, legend, merges = outlined(display_cached(digest, v["contrast"], _image), _result, v)
    # a small image's pixels stay square: enlarged here, not smoothed by the browser
    rgb = viz.zoom_view(rgb, zoom=v["zoom"], center=v["centre"]) if v["zoom"] else viz.enlarge_small(rgb)
    return viz.encode_jpeg(rgb), legend, len(merges)


FIT_HEIGHT_PX = 900
"""A tall image is fitted to this height rather than to the column's width (zoom to 100% for its pixels)."""

FIT_WIDTH_PX = 800
"""About how wide Fit shows an image on a laptop's screen (the panel at 1400 px): outlines are drawn at least a
screen pixel wide there (a 4000 px image's 1-px outlines shrank to a tint)."""




def show_overlay(source: sh.Source, image: np.ndarray, result: cc.CountResult, view: dict, prediction_key: str) -> None:
    digest, channel = source.digest, result.params.channel
    if channel is not None and image.ndim == 3 and channel < image.shape[2]:  # what was counted, not the composite
        image, digest = image[..., channel], f"{source.digest}:channel={channel}"
    if result.output_kind == "density":
        peaks = result.peaks if st.toggle("Show approximate centres", False, key=f"{P}_show_peaks") else None
        fig = viz.density_figure(image, result.density, peaks, count_estimate=result.count_estimate)
        st.plotly_chart(fig, key=f"{P}_density_fig")
        st.caption(
            "Density map (cells per pixel) over the image. The count is the integral (sum) of the map; the "
            "crosses, when shown, are approximate centres (local maxima) and can be fewer or more than the count."
        )
        return
    if result.count == 0:
        st.info("No objects with the current settings.")
    h, w = image.shape[:2]
    fitted = not view["zoom"] and h > FIT_HEIGHT_PX and h > 1.5 * w  # a tall strip at the column's width ran on and on
    drawn = user_thickness = view["thickness"]
    if not view["zoom"]:  # a large image shrunk to the panel thins 1-px outlines to a tint: about a screen pixel wide
        # how long its longest side is on screen: a fitted strip's height, else the panel's width times its aspect
        shown_px = FIT_HEIGHT_PX if fitted else int(FIT_WIDTH_PX * max(h, w) / w)
        drawn = max(drawn, viz.thickness_for(image.shape, shown_px, median_diameter(result.objects)))
        view = {**view, "thickness": drawn}
    key = tuple(sorted((k, v) for k, v in view.items()))
    jpeg, legend, n_merges = overlay_cached(
        digest, prediction_key, result.params.to_json(), key, image, result
    )
    chips = " &nbsp; ".join(
        f"<span style='display:inline-block;width:.8em;height:.8em;border:1px solid #666;"
        f"background:rgb{tuple(c)}'></span> {name}" for name, c in legend.items()
    )
    st.markdown(chips, unsafe_allow_html=True)
    if view["zoom"]:  # at its own size, scrolling where the panel is narrower (streamlit_app.py's style)
        st.container(key=f"{P}_overlay_zoomed").image(jpeg, width="content")
    elif fitted:
        st.container(key=f"{P}_overlay").image(jpeg, width=max(60, int(FIT_HEIGHT_PX * w / h)))
    else:
        st.container(key=f"{P}_overlay").image(jpeg, width="stretch")
    # the reasons this picture shows (a border rule that is off rejects nothing: it was named all the same)
    reasons = ", ".join(r for r in REJECT_REASONS.values() if any(k.endswith(f": {r}") for k in legend))
    shown = "rejected (not counted)" in legend  # one colour per object: rejected ones grey, whatever the reason
    st.caption(
        f"{source.name}: kept objects are outlined"
        + (f"; rejected objects ({reasons}) in their own colour. " if reasons else
           "; rejected objects in grey. " if shown else ". ")
        + (f"{n_merges} object(s) marked as likely merges. " if n_merges else "")
        + (f"Shown: channel {channel}, the one counted. " if digest != source.digest else "")
        + ("A tall image is fitted to the page's height: zoom to 100% to see its pixels. " if fitted else "")
        + (f"Outlines {drawn} px wide at Fit, so that they show at this size (zoom in for thinner ones). "
           if drawn > user_thickness else "")
        + "Display options (colour, thickness, contrast, zoom) never change the count."
    )


def counts_row(name: str, result: cc.CountResult, plane: dict) -> pd.DataFrame:
    """The one image's row in the counts CSV's columns (``cellcount.batch.COUNT_COLUMNS``: the Batch page's and
    the CLI's), with the z-stack plane after the file name when one was chosen."""
    row = counts_frame([BatchItem(name, "ok", "", result, seconds=sum(result.seconds.values()))])
    if plane:
        row.insert(1, "plane", plane["plane"])
    return row


def overlay_png(image: np.ndarray, result: cc.CountResult, view: dict) -> bytes:
    """The whole outlined picture as the viewer draws it (colour, thickness, opacity, contrast, likely merges), at
    the image's full resolution and without zoom, as a PNG for a figure (not a screenshot)."""
    if result.params.channel is not None and image.ndim == 3 and result.params.channel < image.shape[2]:
        image = image[..., result.params.channel]  # the channel counted, as the viewer shows it
    base = viz.display_image(image, low_pct=view["contrast"][0], high_pct=view["contrast"][1])
    return viz.encode_png(outlined(base, result, view)[0])


def outlined(base: np.ndarray, result: cc.CountResult, view: dict) -> tuple[np.ndarray, dict, list]:
    """``base`` (the display picture) with the result's outlines drawn as ``view`` says: (RGB, legend, merges)."""
    merges = likely_merges(result.objects, labels=result.labels) if view["merges"] else []
    boxes = result.objects.set_index("label").loc[merges, BOX_COLUMNS].to_numpy() if len(merges) else None
    rgb, legend = viz.render_outlines(base, result.labels, result.rejected, color=view["color"],
                                      thickness=view["thickness"], opacity=view["opacity"], merges=merges,
                                      merge_boxes=boxes, rejected_colors=viz.OUTLINE_COLORS,
                                      rejected_ids=result.rejected_ids)
    return rgb, legend, merges


def downloads(source: sh.Source, result: cc.CountResult, page: int | str | None = None, *,
              image: np.ndarray | None = None, view: dict | None = None) -> None:
    """The download row; ``image`` and ``view`` (a mask model's viewer options) add the outlined picture."""
    plane = {} if page is None else {"plane": page}  # what was counted of a z-stack
    # named by the plane too: plane 0, plane 2 and the projection downloaded under one name
    s = sh.stem(source.name) + ("" if page is None else "_max" if page == "max" else f"_plane{page}")
    files = [
        ("Counts CSV", lambda: sh.csv_bytes(counts_row(source.name, result, plane)), f"{s}_counts.csv", "text/csv",
         "counts", "The columns of the Batch page's and the command line's counts CSV."),
    ]
    if result.output_kind == "density":  # its rows are peaks, not the counted objects
        files.append(("Centres CSV", lambda: sh.csv_bytes(objects_table(result, source.name)), f"{s}_centres.csv",
                      "text/csv", "objects", f"Approximate centres (local maxima of the density map): "
                      f"{len(result.objects)} rows, not the count ({result.count}, the map's integral)."))
    else:
        files.append(("Objects CSV", lambda: sh.csv_bytes(objects_table(result, source.name)),
                      f"{s}_objects.csv", "text/csv", "objects", None))
    if result.labels is not None:
        files.append(("Label image (TIFF)", lambda: labels_to_tiff_bytes(result.labels, model=result.model_name,
                                                                         pixel_size_um=result.pixel_size_um), f"{s}_labels.tif",
                      "image/tiff", "labels", "Kept objects 1..N; 16-bit when N < 65,536, else 32-bit."))
    if result.labels is not None and image is not None and view:
        files.append(("Outlines (PNG)", lambda: overlay_png(image, result, view), f"{s}_outlines.png", "image/png",
                      "overlay", "The picture with its outlines as shown (colour, thickness, contrast), at full "
                      "resolution, for a figure."))
    files.append(("Settings JSON", sh.settings_json(result.model_name, result.params, page), f"{s}_settings.json",
                  "application/json", "settings", "Load it again here, or use it with the CLI: --settings FILE."))
    row = st.container(horizontal=True)
    for label, data, name, mime, key, help_text in files:
        sh.download_button(label, data, name, mime, f"{P}_dl_{key}", container=row, help=help_text)


def _keep_a_view(key: str) -> None:
    """Callback of the view selector: a click on the selected view (which clears it) keeps the last one."""
    if st.session_state.get(key) is None:
        st.session_state[key] = st.session_state.get(f"{key}_last", "Image")
    st.session_state[f"{key}_last"] = st.session_state[key]


def show_result(source: sh.Source, image: np.ndarray, result: cc.CountResult, prediction_key: str,
                page: int | str | None = None) -> None:
    m = st.container(key="metrics_count").columns(4)  # keyed: the tiles wrap on a narrow page
    truth, truth_help = source.truth, None
    if truth is not None and (gt := sh.sample_truths().get(source.name)) is not None:
        from cellcount.evaluate import scored_true_count

        truth = scored_true_count(gt, result.params, result.output_kind)
        if truth != source.truth:  # as Evaluate and Compare score it
            truth_help = (f"{source.truth} objects, less the {source.truth - truth} touching the image's edge: \"Exclude "
                          "edge objects\" leaves those out of the count")
    delta = None if truth is None else f"{result.count - truth:+d} vs truth"
    if result.output_kind == "density":
        m[0].metric("Count", result.count, delta=delta, delta_color="off",
                    help="The integral (sum) of the density map, rounded: the density model's count.")
        m[1].metric("Integral of the density map", f"{result.count_estimate:.1f}")
    elif result.counted_from_density:
        # a one-pass model counted from its density head: the outlines are its segmentation's, another number
        m[0].metric("Count", result.count, delta=delta, delta_color="off",
                    help=f"The density head's integral, rounded (the settings count from it): the {len(result.objects)} "
                         "objects outlined are the segmentation's, which the sliders change; this count they do not.")
    else:
        m[0].metric("Count", result.count, delta=delta, delta_color="off",
                    help="Objects kept after postprocessing")
        # named for what it holds where it is not the file's whole truth (the caption above says that one)
        m[1].metric("Ground truth" if truth_help is None else "Truth without edge objects",
                    "—" if truth is None else truth, help=truth_help)
    m[2].metric("Image inverted", "yes" if result.inverted else "no",
                help="Bright background detected (or forced): objects were made bright for the model")
    m[3].metric(
        "Postprocess time",
        f"{1000 * (result.seconds.get('postprocess', 0) + result.seconds.get('measure', 0)):.0f} ms",
        help=f"What a slider move costs here: postprocessing, the object table and the quality flag. The model ran once for this image "
        f"({1000 * result.seconds.get('model', 0):.0f} ms) and is cached; see the Timing tab.",
    )
    quality_badge(result)
    if result.counted_from_density:
        st.caption(f"Counted from the density head ({result.density_count:.1f}), as the settings say (Count from: "
                   f"Density): the outlines show the segmentation's {len(result.objects)} objects, which the sliders "
                   "change; the count they do not.")
    # a diameter typed near the training size changes nothing: said, so it does not look ignored
    if result.estimated_diameter_px is not None or result.model_scale != 1.0 or result.params.nucleus_diameter_px:
        st.caption(size_note(result))
    if result.split_used:  # "Auto" says which split this image got, and why
        st.caption(auto_split_note(result.split_used, result.touching_share, bright_background=result.inverted))
    view = view_ui(image.shape[:2]) if result.output_kind == "mask" else {}  # the density view is a heat map, not outlines
    # one view at a time (not tabs): only what is on screen is sent and drawn on a slider move
    views = ["Image", "Objects", "Areas" if result.output_kind == "mask" else "Centres", "Timing"]
    key = f"{P}_tab"
    if st.session_state.get(key) not in views:  # first visit, or a density model's view name on a mask model
        st.session_state[key] = st.session_state.get(f"{key}_last") if st.session_state.get(f"{key}_last") in views \
            else "Image"
    # the view comes from the session state, so what is highlighted is what is shown; clicking the view on
    # screen again keeps it (a segmented control would otherwise clear it and show nothing highlighted)
    tab = st.segmented_control("Show", views, key=key, label_visibility="collapsed",
                               on_change=_keep_a_view, args=(key,))
    if tab == "Image":
        show_overlay(source, image, result, view, prediction_key)
    elif tab == "Objects":
        if result.output_kind == "density":
            st.caption(f"A density model counts by the integral of its map ({result.count}); these "
                       f"{len(result.objects)} rows are approximate centres (local maxima), not the counted objects.")
        if len(result.objects):
            floats = [c for c in result.objects.columns if result.objects[c].dtype.kind == "f"]
            fmt = {**sh.number_formats(floats, "%.2f"), **({"density": st.column_config.NumberColumn(format="%.4f")}
                                                           if "density" in result.objects else {})}
            sh.dataframe(result.objects, height=360, column_config=fmt)
        else:
            st.info("No objects with the current settings.")
    elif tab in ("Areas", "Centres"):
        if result.output_kind == "mask" and len(result.objects):
            p = result.params
            st.plotly_chart(  # in the µm² of the table: the setting's pixel size, else the file's
                viz.area_histogram(result.objects, pixel_size_um=result.pixel_size_um, min_area_px=p.min_area_px,
                                   max_area_px=p.max_area_px),
                key=f"{P}_area_fig",
            )
        elif result.output_kind == "density":
            st.caption("Density models do not segment objects; the table lists approximate centres (local "
                       "maxima of the map), which are not the count.")
        else:
            st.info("No objects with the current settings.")
    else:
        st.plotly_chart(viz.stage_times_figure(result.seconds), key=f"{P}_time_fig")
        st.caption("The model stage ran once for this image and these input settings; moving a slider only "
                   "reruns postprocess and measure."
                   + (" \"setup\" is this model's first use since the app started (timing the inference backends on "
                      "this machine, building the network): once, not per image." if "setup" in result.seconds else ""))
        sh.backend_ui(P, sh.get_model(result.model_name))
    downloads(source, result, page, image=image if view else None, view=view)


@st.fragment
def results_panel(source: sh.Source | None, image: np.ndarray | None, model_name: str, note: str | None,
                  page: int | str | None = None) -> None:
    """Sliders + results: a slider change reruns only this fragment (postprocessing, never the model).

    The sliders are drawn whether or not an image is loaded, so replacing the upload never unmounts them.
    """
    _tabstate.save()  # a slider's rerun is this fragment's alone: the entry point does not run to keep the tab's state
    try:
        model = sh.get_model(model_name)
    except cc.CellcountError:  # deleted meanwhile (Models page, another tab): the whole page picks another
        st.rerun(scope="app")
    pred = params = error = result = crash = pred_key = None
    if source is not None and image is not None:
        try:
            # the widgets write the store in their callbacks, before this run: these are the settings drawn below
            params = sh.for_image(settings.params(model), image)
            pred = sh.predict_source(source, image, model_name, params)
            pred_key = sh.prediction_key(source, model_name, params)  # the caches built on this prediction
            # counted before anything is drawn: the sliders re-sent first kept the browser busy on the second
            # core while this ran (scripts/bench_browser.py: the server's share fell by about a quarter)
            result = cc.postprocess(pred, sh.with_file_pixel_size(params, source, image), image=image)
            result.params = params  # the file's pixel size measured the objects: no setting to download or reuse
            if note:  # one plane of a z-stack read: flagged like a batch row, so the badge and the CSV say it
                result.quality = cc.quality.with_note(result.quality, note)
            if dropped := sh.channel_note(settings.params(model), image):  # counted from the mean: never in silence
                result.quality = cc.quality.with_note(result.quality, dropped)
            if conflict := sh.pixel_size_note(params, source, image):  # the file's own calibration set aside
                result.quality = cc.quality.with_note(result.quality, conflict)
        except cc.CellcountError as err:
            error = err
        except Exception as err:  # noqa: BLE001 - raised below, once the controls that may undo it are drawn
            crash = err
    left, right = st.columns([1, 3], gap="medium")
    with left:
        st.subheader("Postprocessing")
        sh.settings_status(model, P)  # in the fragment: it follows every edit
        stats = None
        if pred is not None and pred.output_kind == "mask":
            stats = probability_stats_cached(pred_key, pred.maps[0])
        auto = (split_distance_px(pred, params.replace(min_distance_px=0))  # the diameter typed in counts too
                if pred is not None and params is not None and pred.output_kind != "density" else None)
        sh.params_ui(model, P, probability_stats=stats, auto_distance_px=auto,
                     split_used=result.split_used if result is not None else None)
    with right:
        if source is None:
            st.info("Upload an image (PNG, JPEG, TIFF 8/16-bit, multichannel) or choose a sample.")
            return
        if image is None:  # the file could not be read: the error above says why
            return
        if error is not None:
            sh.show_error(error)
            return
        if crash is not None:
            raise crash
        show_result(source, image, result, pred_key, page)


st.title("Count")
top = st.columns([3, 2, 2])
with top[0]:
    source = pick_source()
model_name, model = sh.pick_model(P, container=top[1])
with top[2].expander("Settings file"):
    sh.settings_upload(P)
sh.show_messages(P)

image = note = page = None
if source is not None:
    try:
        with top[0]:
            source, page = sh.plane_ui(P, source)  # z-stacks: a plane or the maximum projection
        image = sh.read_image_cached(source.digest, source.data, page)
        note = sh.image_note(source.digest, source.data, page)
    except cc.CellcountError as err:
        sh.show_error(err, name=source.name)
        image = None
    else:
        st.markdown(sh.image_caption(source, image, page))
        if split_ground_truth_files([source.name])[1]:  # as Batch and the CLI leave such files out
            st.warning(f"{short_name(source.name)} is named like ground truth (a label image, mask or dots): it is "
                       "counted here as if it were a microscopy image. Upload the image itself; annotations go to "
                       "Evaluate or Train.", icon=":material/label:")
if source is None or image is not None:  # none for a file that cannot be read (a channel list for no channels)
    with top[2]:
        sh.input_ui(P, model, image, channel_names=None if image is None else sh.file_metadata(source, image).channel_names)
results_panel(source, image, model_name, note, page)
