"""cellcount dashboard: ``streamlit run streamlit_app.py``.

Entry point: page navigation and the Home page (what the app does, models available, sample gallery).
The pages in ``pages/`` only wire :mod:`cellcount` calls to widgets and plots.
"""

from __future__ import annotations

import streamlit as st

import cellcount as cc
from cellcount.memory import keep_freed_memory
from pages import _shared as sh
from pages import _tabstate

st.set_page_config(page_title="cellcount", page_icon=":material/biotech:", layout="wide")
# as the CLI does: each image's tensors reuse the last one's pages (PyTorch's networks about 1.3x faster, a
# fine-tune's steps 1.1x), at the cost of the server keeping freed memory for the next image
keep_freed_memory()
# .streamlit/config.toml turns the sidebar menu off so that a fresh server's first request, which Streamlit
# runs in its legacy pages/ mode, shows no menu of the pages/ folder (helper modules such as _shared
# included); the menu of st.navigation below is turned back on here.
st.set_option("client.showSidebarNavigation", True)
# a zoomed picture keeps its size (one image pixel per screen pixel at 100%) and scrolls where the panel is narrower:
# shrunk to the panel, "100%" showed 70-86% and 1 px outlines blurred away (a tester, 1024 and 1400 px windows)
st.html("<style>.st-key-count_overlay_zoomed { overflow-x: auto; } "
        ".st-key-count_overlay_zoomed * { max-width: none !important; } "
        ".st-key-count_overlay_zoomed [data-testid='stElementContainer'] { width: max-content !important; } "
        ".st-key-count_overlay_zoomed img { width: auto !important; } "
        # Below 1280 px (a laptop at 1024 x 768) Streamlit's wide layout kept 5rem of margin on each side beside the
        # sidebar: Count's settings column narrowed to 130 px and cut its labels ("Postproce-ssing", "Estimate nu...")
        "@media (max-width: 1280px) { .stMainBlockContainer { padding-left: 1.5rem; "
        "padding-right: 1.5rem; } .stMainBlockContainer h3 { font-size: 1.4rem; hyphens: auto; } "
        # rows of metric tiles (containers keyed metrics_*) wrap instead of cutting their values to "0.…"
        "[class*='st-key-metrics'] [data-testid='stHorizontalBlock'] { flex-wrap: wrap; row-gap: 0.5rem; } "
        "[class*='st-key-metrics'] [data-testid='stColumn'] { min-width: 5.5rem; } "
        # a narrower menu (its page names are short) and toggle labels that wrap instead of ending in "…"
        "section[data-testid='stSidebar'][data-collapsed='false'] { width: 13rem !important; min-width: 13rem !important; } "
        "[data-testid='stWidgetLabel'] .stMarkdownEllipsis { white-space: normal; overflow: visible; } }</style>")

COUNT = st.Page("pages/count.py", title="Count", icon=":material/center_focus_strong:")
BATCH = st.Page("pages/batch.py", title="Batch", icon=":material/stacks:")
EVALUATE = st.Page("pages/evaluate.py", title="Evaluate", icon=":material/fact_check:")
COMPARE = st.Page("pages/compare.py", title="Compare", icon=":material/compare:")
MODELS = st.Page("pages/models.py", title="Models", icon=":material/model_training:")
TRAIN = st.Page("pages/train.py", title="Train", icon=":material/school:")
RUNS = st.Page("pages/runs.py", title="Runs", icon=":material/history:")

PAGE_BLURBS = [
    (
        COUNT,
        "Count one image: tune the postprocessing live, see outlines, objects and areas, download results.",
    ),
    (BATCH, "Count many images or a zip in one go; bad files are listed and skipped."),
    (EVALUATE, "Measure accuracy against ground truth and optimise the postprocessing on it."),
    (COMPARE, "Run 2-4 models (or two settings) on the same images side by side."),
    (MODELS, "Which model for which images: each model's measured error, defaults and full card."),
    (TRAIN, "Teach a model your cells: fine-tune it on a few images you annotated (dots are enough)."),
    (RUNS, "Past batches from the app and the CLI: their CSVs again, their settings back on Count or Batch."),
]


def _count_sample(filename: str) -> None:
    st.session_state["count_source"] = "Sample"
    st.session_state["count_sample"] = filename
    st.switch_page(COUNT)


def home() -> None:
    st.title("cellcount")
    st.markdown(
        "Count cells and nuclei in microscopy images (fluorescence or brightfield, 8/16-bit, multichannel) "
        "with small deep models that run on a laptop CPU, or with a classical Otsu baseline. "
        "Every count comes with outlines, a per-object table and the exact settings that produced it, "
        "so results can be checked, reproduced with the CLI and evaluated against ground truth."
    )
    st.caption("The shipped models learnt nuclei (fluorescent and brightfield, the public DSB 2018 set). On other images, "
               "H&E tissue or cells rather than nuclei, they can be far off (the Models page has the figures): check a "
               "few of yours on Evaluate, or teach a model your cells on Train.")
    per_row = 4  # seven cards in one row cut the page names short on a laptop screen
    for start in range(0, len(PAGE_BLURBS), per_row):
        cols = st.columns(per_row)
        for col, (page, blurb) in zip(cols, PAGE_BLURBS[start: start + per_row], strict=False):
            with col.container(border=True):
                st.page_link(page, label=page.title, icon=page.icon)
                st.caption(blurb)

    st.subheader("Models available")
    names = cc.list_models()
    df = sh.models_frame(names)
    sh.dataframe(
        df,
        column_config=sh.models_frame_columns(),
        # long text on the Models page; columns no model fills (a fine-tune's held-out figures before any) left
        # out, so the rest fit the page instead of scrolling past its right edge
        # (the kind, architecture and figures without the size estimate too: the Models page has them)
        column_order=[c for c in df.columns if c not in ("description", "kind", "architecture", "val MAE, no size estimate")
                      and df[c].notna().any() and (df[c] != "").any()],
    )
    sizes = sorted({int(n) for n in df.get("val images", []) if n == n and n}, reverse=True)
    if len(sizes) > 1:  # as `cellcount models` says it: a model scored on fewer images is not ranked beside the rest
        st.caption(f"The 'val' figures are over {', '.join(map(str, sizes))} images: compare only models scored on "
                   "the same number (the same images); each model's section on the Models page says which.")
    if "your held-out MAE" in df and df["your held-out MAE"].notna().any():
        st.caption("'val' figures are on nuclei images of a public set; 'your held-out MAE' on the few images of "
                   "yours a fine-tune held out (see 'held-out images'): other images, so the two do not compare. The "
                   "Models page sets a fine-tune beside its base on the same images.")
    if names == [cc.models.CLASSICAL_NAME]:
        st.info("No trained weights found in weights/: only the classical baseline is available.")

    st.subheader("Sample images")
    st.caption(
        "Generated by `python -m cellcount.synthetic`, with exact ground truth. Click Count to open one."
    )
    samples = sh.sample_frame()
    per_row = 4
    for start in range(0, len(samples), per_row):
        cols = st.columns(per_row)
        for col, (_, row) in zip(cols, samples.iloc[start : start + per_row].iterrows(), strict=False):
            name = str(row["filename"])
            with col.container(border=True):
                try:
                    src = sh.sample_source(name)
                    st.image(sh.thumbnail_cached(src.digest, src.data), width="stretch")
                except (cc.CellcountError, OSError) as err:
                    sh.show_error(err)
                    continue
                # a line may break after an underscore, not mid-word ("s04_uneven_illumination.p / ng")
                st.markdown(f"**{name.replace('_', '_' + chr(0x200B))}**")
                st.caption(
                    f"{row['conditions']} · {int(row['width'])} × {int(row['height'])} px · "
                    f"{int(row['count'])} cells"
                )
                if st.button("Count", key=f"home_count_{name}", icon=":material/play_arrow:"):
                    _count_sample(name)


st.session_state[sh.ENTRY_FLAG] = True
_tabstate.start()  # a reload or a restarted app gets this tab's settings back
if said := _tabstate.restored_note():
    (st.info if said[1] else st.warning)(said[0], icon=":material/settings_backup_restore:")
nav = st.navigation(
    [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        COUNT,
        BATCH,
        EVALUATE,
        COMPARE,
        MODELS,
        TRAIN,
        RUNS,
    ]
)
PAGES = {"count": COUNT, "batch": BATCH, "evaluate": EVALUATE, "compare": COMPARE, "models": MODELS, "train": TRAIN,
         "runs": RUNS}
goto = st.session_state.pop(sh.GOTO_KEY, None)
if goto in PAGES:
    st.switch_page(PAGES[goto], query_params=st.query_params.to_dict())  # back to the page a deep link asked for
try:
    nav.run()
finally:  # also when a rerun or st.stop ends the page early: what it changed is saved
    _tabstate.save()
