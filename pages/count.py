"""Count page: one image, one model, live postprocessing, outlines, objects, downloads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount import viz
from cellcount.io import labels_to_tiff_bytes
from cellcount.postprocess import REJECT_REASONS
from pages import _shared as sh

sh.require_entry_point("count")

P = "count"


def pick_source() -> sh.Source | None:
    """Sample or upload -> Source (None when nothing is uploaded yet)."""
    kind = sh.pick_one("Image", ["Sample", "Upload"], f"{P}_source", radio=True)
    if kind == "Sample":
        name = sh.pick_one("Sample image", sh.sample_names(), f"{P}_sample", format_func=sh.sample_label)
        return sh.sample_source(name)
    up = st.file_uploader(
        "Upload an image",
        type=sh.IMAGE_TYPES,
        key=f"{P}_upload",
        help="PNG, JPEG, BMP or TIFF; 8/16-bit, grayscale, RGB or multichannel (choose the channel below).",
    )
    return sh.upload_source(up) if up is not None else None


def size_note(result: cc.CountResult) -> str:
    """What the nucleus size did to the model input."""
    given = result.params.nucleus_diameter_px
    what = (f"Nucleus diameter {given:g} px" if given else
            f"Estimated nucleus diameter {result.estimated_diameter_px:.0f} px")
    if result.model_scale == 1.0:
        return f"{what}: close enough to the size the model was trained on; the image was used as it is."
    return (f"{what}: the model saw this image resized {result.model_scale:.2f}x, so that its nuclei match the "
            "size it was trained on; objects and areas are in the original pixels.")


def show_overlay(image: np.ndarray, result: cc.CountResult) -> None:
    bright = result.inverted
    colors = viz.OUTLINE_COLORS_BRIGHT if bright else viz.OUTLINE_COLORS
    if result.output_kind == "density":
        fig = viz.density_figure(image, result.density, result.peaks, count_estimate=result.count_estimate)
        st.plotly_chart(fig, key=f"{P}_density_fig")
        st.caption(
            "Density map (cells per pixel) over the image; crosses are local maxima (approximate "
            "centres). The count is the integral of the map, not the number of crosses."
        )
        return
    thick = 2 if max(image.shape[:2]) > 1200 else 1
    rgb = viz.outline_overlay(image, result.labels, result.rejected, colors=colors, thickness=thick)
    legend = viz.outline_legend(result.count, colors=colors, n_rejected=result.n_rejected)
    fig = viz.overlay_figure(
        rgb, legend=legend, objects=result.objects, pixel_size_um=result.params.pixel_size_um
    )
    st.plotly_chart(fig, key=f"{P}_overlay_fig")
    reasons = ", ".join(REJECT_REASONS.values())
    st.caption(
        f"Kept objects are outlined; rejected objects ({reasons}) are tinted and outlined in their own "
        "colour. Hover an object for its label and area; drag to zoom, double-click to reset."
    )
    if st.toggle("Show probability map", key=f"{P}_show_prob"):
        st.plotly_chart(
            viz.probability_figure(result.probability, threshold=result.params.threshold), key=f"{P}_prob_fig"
        )


def downloads(source: sh.Source, result: cc.CountResult) -> None:
    s = sh.stem(source.name)
    counts = pd.DataFrame([{"file": source.name, **result.summary_row()}])
    objects = result.objects.assign(file=source.name)
    files = [
        ("Counts CSV", sh.csv_bytes(counts), f"{s}_counts.csv", "text/csv", "counts", None),
        ("Objects CSV", sh.csv_bytes(objects), f"{s}_objects.csv", "text/csv", "objects", None),
    ]
    if result.labels is not None:
        files.append(
            (
                "Label image (TIFF)",
                labels_to_tiff_bytes(result.labels),
                f"{s}_labels.tif",
                "image/tiff",
                "labels",
                "Kept objects 1..N; 16-bit when N < 65,536, else 32-bit.",
            )
        )
    files.append(
        (
            "Settings JSON",
            sh.settings_json(result.model_name, result.params),
            f"{s}_settings.json",
            "application/json",
            "settings",
            "Load it again here, or use it with the CLI: --settings FILE.",
        )
    )
    row = st.container(horizontal=True)
    for label, data, name, mime, key, help_text in files:
        sh.download_button(label, data, name, mime, f"{P}_dl_{key}", container=row, help=help_text)


def show_result(source: sh.Source, image: np.ndarray, result: cc.CountResult) -> None:
    m = st.columns(4)
    delta = None if source.truth is None else f"{result.count - source.truth:+d} vs ground truth"
    m[0].metric(
        "Count",
        result.count,
        delta=delta,
        delta_color="off",
        help="Objects kept after postprocessing"
        if result.output_kind == "mask"
        else "Integral of the density map, rounded",
    )
    if result.output_kind == "density":
        m[1].metric("Integrated count", f"{result.count_estimate:.1f}")
        m[2].metric("Peaks", len(result.peaks), help="Local maxima of the density map")
    else:
        m[1].metric("Ground truth", "—" if source.truth is None else source.truth)
        m[2].metric(
            "Image inverted",
            "yes" if result.inverted else "no",
            help="Bright background detected (or forced): objects were made bright for the model",
        )
    if result.estimated_diameter_px is not None or result.model_scale != 1.0:
        st.caption(size_note(result))
    m[3].metric(
        "Postprocess time",
        f"{1000 * (result.seconds.get('postprocess', 0) + result.seconds.get('measure', 0)):.0f} ms",
        help=f"What a slider move costs (postprocess + measure). The model ran once for this image "
        f"({1000 * result.seconds.get('model', 0):.0f} ms) and is cached; see the Timing tab.",
    )

    tabs = st.tabs(["Image", "Objects", "Areas" if result.output_kind == "mask" else "Peaks", "Timing"])
    with tabs[0]:
        show_overlay(image, result)
    with tabs[1]:
        if len(result.objects):
            floats = [c for c in result.objects.columns if result.objects[c].dtype.kind == "f"]
            sh.dataframe(result.objects, height=360, column_config=sh.number_formats(floats, "%.2f"))
        else:
            st.info("No objects with the current settings.")
    with tabs[2]:
        if result.output_kind == "mask" and len(result.objects):
            p = result.params
            st.plotly_chart(
                viz.area_histogram(
                    result.objects,
                    pixel_size_um=p.pixel_size_um,
                    min_area_px=p.min_area_px,
                    max_area_px=p.max_area_px,
                ),
                key=f"{P}_area_fig",
            )
        elif result.output_kind == "density":
            st.caption("Density models do not segment objects; the table lists peak positions and values.")
        else:
            st.info("No objects with the current settings.")
    with tabs[3]:
        st.plotly_chart(viz.stage_times_figure(result.seconds), key=f"{P}_time_fig")
        st.caption(
            "The model stage ran once for this image and these input settings; moving a slider only "
            "reruns postprocess and measure."
        )
    downloads(source, result)


@st.fragment
def results_panel(source: sh.Source, image: np.ndarray, model_name: str, inputs: dict) -> None:
    """Sliders + results: a slider change reruns only this fragment (postprocessing, never the model)."""
    model = sh.get_model(model_name)
    left, right = st.columns([1, 3], gap="medium")
    with left:
        st.subheader("Postprocessing")
        overrides = sh.params_ui(model, P)
        sh.reset_button(P, model_name, icon=":material/restart_alt:")
    with right:
        try:
            params = sh.resolve(model, inputs, overrides)
            pred = sh.predict_source(source, image, model_name, params)
            result = cc.postprocess(pred, params, image=image)
        except cc.CellcountError as err:
            sh.show_error(err)
            return
        show_result(source, image, result)


st.title("Count")
top = st.columns([3, 2, 2])
with top[0]:
    source = pick_source()
model_name, model = sh.pick_model(P, container=top[1])
with top[2].expander("Settings file"):
    sh.settings_upload(P)
sh.show_messages(P)

if source is None:
    st.info("Upload an image (PNG, JPEG, TIFF 8/16-bit, multichannel) or choose a sample.")
    st.stop()
try:
    image = sh.read_image_cached(source.digest, source.data)
except cc.CellcountError as err:
    sh.show_error(err)
    st.stop()

st.markdown(sh.image_caption(source, image))
with top[2]:
    inputs = sh.input_ui(P, image)
results_panel(source, image, model_name, inputs)
