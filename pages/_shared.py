"""UI helpers shared by the pages: cached loaders, model picker, parameter widgets, tables, settings files.

Not a page (``st.navigation`` lists the pages explicitly). Compute stays in :mod:`cellcount`; this module
only turns widgets into parameter dicts and caches library calls on plain keys:

* models: ``st.cache_resource`` keyed on (name, card version), shared read-only across sessions;
* images and model output: ``st.cache_data`` keyed on the sha256 of the image bytes, the model name and
  ``CountParams.input_key()``, so slider changes only rerun ``cellcount.postprocess``.

Widget keys are ``<prefix>_<CountParams field>`` (``count_threshold``, ``batch_min_area_px`` ...).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount.groundtruth import GroundTruth, load_labelled_folder
from cellcount.models import CLASSICAL_NAME, ModelCard, model_card
from cellcount.models import loading as _loading
from cellcount.pipeline import has_border_channel, params_from_json
from pages import _settings as settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = ROOT / "data" / "samples"
IMAGE_TYPES = ["png", "jpg", "jpeg", "tif", "tiff", "bmp"]
CACHE_TTL_S = 3600
PERSIST = "session"  # widget values survive visits to other pages

INPUT_FIELDS = tuple(cc.CountParams.INPUT_FIELDS)
MASK_FIELDS = (
    "threshold",
    "opening_radius_px",
    "closing_radius_px",
    "fill_holes",
    "split_mode",
    "min_distance_px",
    "min_area_px",
    "max_area_px",
    "exclude_border",
)
DENSITY_FIELDS = ("peak_min_distance_px",)
SPLIT_LABELS = {
    "borders": "Model borders",
    "distance": "Distance transform",
    "both": "Both",
    "off": "Off",
}

HELP = {
    "threshold": "Pixels whose foreground probability is above this value are nucleus. Lower: objects grow "
    "and may merge; higher: they shrink and faint ones vanish. The histogram below shows how many pixels lie "
    "at each probability: when nearly all are at 0 or 1 (the shipped models), the threshold barely moves the "
    "count, which is why it sits under Advanced for such images.",
    "opening_radius_px": "Removes specks and thin bridges narrower than about twice this radius before "
    "counting (0 = off). Larger: fewer tiny objects and more clumps separated; too large erodes small nuclei "
    "away (lower count).",
    "closing_radius_px": "Closes gaps and notches narrower than about twice this radius (0 = off). Larger: "
    "broken nuclei become whole (lower count), but close neighbours can merge (also lower).",
    "fill_holes": "Fills background holes inside an object (hollow-looking nuclei). Changes areas, rarely the "
    "count.",
    "split_mode": "How nuclei that touch are separated. Model borders: along the thin border the model "
    "predicts between touching nuclei (the shipped models' default). Distance transform: at the centres of "
    "round shapes, at least 'Min. distance' apart. Both: border split first, then the distance transform on "
    "what is still joined. Off: touching nuclei count as one (lowest count).",
    "min_distance_px": "Two centres closer than this are one nucleus. Larger: fewer splits, lower count; "
    "smaller: more splits, higher count (too small cuts elongated nuclei in pieces).",
    "min_area_px": "Objects smaller than this many pixels are not counted (an object of exactly this area is "
    "counted). Larger: lower count (debris dropped).",
    "max_area_px": "Objects larger than this many pixels are not counted (0 = no limit). Smaller: lower count "
    "(clumps and debris dropped).",
    "exclude_border": "Does not count objects that touch the image edge (they are cut, so their areas are "
    "wrong). On: lower count.",
    "peak_min_distance_px": "Only for the markers: two approximate centres closer than this are one marker. "
    "The count is the integral (sum) of the density map and does not change with it.",
    "pixel_size_um": "Pixel size in micrometres; adds µm and µm² columns to the object table (0 = unknown). "
    "Does not change the count.",
    "invert": "Auto detects a bright background (brightfield, H&E) and inverts so nuclei are bright, as the "
    "models expect. Set it by hand if the count is near zero or the outlines surround the background.",
    "channel": "Which channel holds the nuclei (e.g. DAPI); 'all' averages the channels. Counting in a channel "
    "without nuclei gives a wrong, usually much lower, count.",
    "low_pct": "Intensity percentile mapped to black before the model. Higher: faint background and faint nuclei "
    "drop out (lower count).",
    "high_pct": "Intensity percentile mapped to white before the model. Lower: faint nuclei become brighter "
    "(often a higher count); bright nuclei saturate.",
    "nucleus_diameter_px": "Typical nucleus diameter in this image, if you know it (from the magnification: "
    "diameter in µm / pixel size in µm). The image is resized so that its nuclei match the size the model "
    "was trained on (about 18 px); large nuclei are then no longer cut into pieces. 0 = use the image as it is.",
    "auto_nucleus_size": "When no diameter is given: estimate the nucleus size from a first pass and resize the "
    "image when nuclei are far from the training size (mask models: foreground area / the density model's count, "
    "a density pass per image; density models: the spread of their own map, free). A second pass runs only on "
    "images it resizes. On by default for the shipped models (their settings were tuned with it); lowers the "
    "count error on large nuclei (docs/RESULTS.md).",
    "test_time_flips": "Run the model on the image and its three mirror images and average the maps: "
    "4x the model time, slightly more accurate counts and outlines; the count moves little either way.",
}


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
ENTRY_FLAG = "_app_entry"
GOTO_KEY = "_app_goto"


def require_entry_point(page: str) -> None:
    """Send a deep link through ``streamlit_app.py`` (call first thing in each page).

    When the very first request to a fresh server is a deep link (``/count``), Streamlit runs the page in
    its legacy ``pages/`` mode, without ``streamlit_app.py`` (no navigation, no page config). The page
    then redirects to the entry point, which remembers the target and switches back to it.
    """
    if not st.session_state.get(ENTRY_FLAG):
        st.session_state[GOTO_KEY] = page
        st.switch_page(str(ROOT / "streamlit_app.py"))


# --------------------------------------------------------------------------------------------------
# errors and progress
# --------------------------------------------------------------------------------------------------
def show_error(err: BaseException, where: Any = None) -> None:
    """Show a library error as a message (no traceback)."""
    (where or st).error(str(err), icon=":material/error:")


def progress_callback(bar, label: str) -> Callable[[int, int], None]:
    """``progress(done, total)`` for the library, drawing on an ``st.progress`` element."""

    def update(done: int, total: int) -> None:
        frac = min(max(done / total, 0.0), 1.0) if total else 1.0
        bar.progress(frac, text=f"{label}: {done} / {total}")

    return update


# --------------------------------------------------------------------------------------------------
# widgets and tables
# --------------------------------------------------------------------------------------------------
def pick_one(
    label: str,
    options: list,
    key: str,
    *,
    default: Any = None,
    radio: bool = False,
    container: Any = None,
    **kwargs: Any,
) -> Any:
    """Persistent selectbox (or horizontal radio) under ``key``.

    A stored value that is not an option (or none yet) becomes ``default``, the first option when None.
    """
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0] if default is None else default
    c = container or st
    if radio:
        return c.radio(label, options, key=key, persist_state=PERSIST, horizontal=True, **kwargs)
    return c.selectbox(label, options, key=key, persist_state=PERSIST, **kwargs)


def dataframe(df: pd.DataFrame, *, container: Any = None, **kwargs: Any) -> Any:
    """``st.dataframe`` without the index, missing values shown as a dash."""
    return (container or st).dataframe(df, hide_index=True, placeholder="—", **kwargs)


def download_button(
    label: str, data: Any, file_name: str, mime: str, key: str, *, container: Any = None, **kwargs: Any
) -> None:
    """Download button that does not rerun the page."""
    (container or st).download_button(
        label, data, file_name, mime, key=key, on_click="ignore", icon=":material/download:", **kwargs
    )


def number_formats(columns: Iterable[str], fmt: str) -> dict[str, Any]:
    """``column_config`` giving these columns the printf-style format ``fmt``."""
    return {c: st.column_config.NumberColumn(format=fmt) for c in columns}


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------
def model_version(name: str) -> str:
    """Changes when a model's card is rewritten (retrained weights), so caches pick up the new model."""
    card = _loading.DEFAULT_WEIGHTS_DIR / name / "card.json"
    if name == CLASSICAL_NAME or not card.is_file():
        return "builtin"
    stat = card.stat()
    return f"{stat.st_mtime_ns}-{stat.st_size}"


@st.cache_resource(max_entries=6, show_spinner="Loading model ...")
def _load_model(name: str, version: str) -> cc.models.CountModel:
    return cc.load_model(name)


def get_model(name: str) -> cc.models.CountModel:
    """The model, loaded once per process and shared (read-only) by every session."""
    return _load_model(name, model_version(name))


def model_label(name: str) -> str:
    try:
        card = model_card(name)
    except (cc.CellcountError, OSError, ValueError):
        return name
    # the architecture is in the name already; with it the label was cut off in the narrow settings column
    return f"{name} ({card.output_kind})"


def model_picker(prefix: str, *, label: str = "Model", container: Any = None, shared: bool = True) -> str:
    """Selectbox of :func:`cellcount.list_models` under key ``<prefix>_model``; returns the name.

    ``shared``: the choice is the session's current model (:mod:`pages._settings`), the same on every page,
    so settings tuned with a model on one page are used with it on the next.
    """
    names = cc.list_models()
    key = f"{prefix}_model"
    if shared:
        current = settings.current_model()
        if current in names:
            st.session_state[key] = current
    name = pick_one(
        label,
        names,
        key,
        container=container,
        format_func=model_label,
        on_change=(lambda: settings.set_current_model(st.session_state[key])) if shared else None,
        help="Trained networks from weights/ plus the classical Otsu baseline. Mask models segment "
        "objects; density models estimate the count as the integral of a density map. Each model keeps "
        "its own settings for this session.",
    )
    if shared:
        settings.set_current_model(name)
    return name


def pick_model(prefix: str, *, container: Any = None) -> tuple[str, cc.models.CountModel]:
    """:func:`model_picker` + the loaded model; a load error stops the page. A model change is announced
    with what happens to the settings."""
    name = model_picker(prefix, container=container)
    try:
        model = get_model(name)
    except cc.CellcountError as err:
        show_error(err)
        st.stop()
    shown_key = f"{prefix}__shown_model"
    shown = st.session_state.get(shown_key)
    if shown is not None and shown != name:
        if settings.known(name) and settings.origin(model)[0] != "card":
            what = f"your settings for {name} ({settings.ORIGINS[settings.origin(model)[0]]}) are kept"
        else:
            what = "its settings come from its model card"
        st.session_state[f"{prefix}__msg"] = (
            "info",
            f"Model changed from {shown} to {name}: {what}. Image settings (channel, invert, nucleus size, "
            "pixel size) stay as they were.",
        )
    st.session_state[shown_key] = name
    settings.values(model)  # creates its entry from the card when new
    return name, model


def validation_metrics(card: ModelCard, key: str = "validation") -> dict[str, Any]:
    """The card's validation summary with its default settings (``key="validation_fixed_size"``: with
    ``auto_nucleus_size`` off, for a model whose default has it on)."""
    m = card.metrics.get(key, {}) if isinstance(card.metrics, dict) else {}
    return m if isinstance(m, dict) else {}


def models_frame_columns() -> dict[str, Any]:
    """``column_config`` for :func:`models_frame` (formats and help)."""
    return {
        "val MAE": st.column_config.NumberColumn(format="%.2f", help="Count MAE on the validation split, card defaults"),
        "val MAE, no size estimate": st.column_config.NumberColumn(
            format="%.2f", help="The same with auto_nucleus_size off (models whose default has it on)"),
        "val F1@0.5": st.column_config.NumberColumn(format="%.3f", help="Instance F1 at IoU 0.5"),
    }


def models_frame(names: Iterable[str]) -> pd.DataFrame:
    """One row per model from its card: kind, architecture, validation MAE / F1."""
    rows = []
    for name in names:
        try:
            card = model_card(name)
        except (cc.CellcountError, OSError, ValueError) as err:
            rows.append({"model": name, "kind": "?", "architecture": f"card unreadable: {err}"})
            continue
        m = validation_metrics(card)
        rows.append(
            {
                "model": name,
                "kind": card.output_kind,
                "architecture": card.architecture,
                "val MAE": m.get("mae"),
                "val MAE, no size estimate": validation_metrics(card, "validation_fixed_size").get("mae"),
                "val F1@0.5": m.get("f1"),
                "description": card.description,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """An image to count: display name, encoded bytes and their sha256, true count when known."""

    name: str
    data: bytes
    digest: str
    truth: int | None = None


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_data(max_entries=2, ttl=CACHE_TTL_S, show_spinner=False)
def sample_frame() -> pd.DataFrame:
    """``data/samples/manifest.csv``: filename, count, height, width, dtype, conditions ..."""
    path = SAMPLES_DIR / "manifest.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["filename", "count", "conditions"])
    return pd.read_csv(path)


def sample_names() -> list[str]:
    return sample_frame()["filename"].astype(str).tolist()


def sample_label(filename: str) -> str:
    df = sample_frame()
    row = df[df["filename"] == filename]
    if not len(row):
        return filename
    r = row.iloc[0]
    return f"{filename} — {r['conditions']} ({int(r['count'])} cells)"


def sample_source(filename: str) -> Source:
    path = SAMPLES_DIR / Path(filename).name
    data = path.read_bytes()
    df = sample_frame()
    row = df[df["filename"] == filename]
    truth = int(row.iloc[0]["count"]) if len(row) else None
    return Source(filename, data, digest_of(data), truth)


def upload_source(uploaded) -> Source:
    data = uploaded.getvalue()
    return Source(uploaded.name, data, digest_of(data))


@st.cache_data(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def read_image_cached(digest: str, _data: bytes) -> np.ndarray:
    """Decoded image (native dtype) for the bytes with this sha256."""
    return cc.read_image(_data)


@st.cache_data(max_entries=24, ttl=CACHE_TTL_S, show_spinner=False)
def thumbnail_cached(digest: str, _data: bytes, max_side: int = 200) -> np.ndarray:
    from cellcount import viz

    return viz.thumbnail(cc.read_image(_data), max_side=max_side)


def _input_params(input_key: tuple) -> cc.CountParams:
    return cc.CountParams(**dict(zip(INPUT_FIELDS, input_key, strict=True)))


# cache_resource, not cache_data: a hit returns the same object instead of unpickling 10+ MB of maps on every
# slider move; callers treat predictions as read-only (postprocess never modifies its input)
@st.cache_resource(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def predict_cached(
    digest: str, model_name: str, version: str, input_key: tuple, _image: np.ndarray, backend: str = "auto"
) -> cc.Prediction:
    """Model output for one image; the progress bar lives inside so a cache hit replays it empty."""
    model = get_model(model_name)
    bar = st.progress(0.0, text=f"Running {model_name} ...")
    pred = cc.predict(_image, model, _input_params(input_key), progress=progress_callback(bar, "tiles"),
                      backend=backend)
    bar.empty()
    return pred


def predict_source(
    source: Source, image: np.ndarray, model_name: str, params: cc.CountParams
) -> cc.Prediction:
    return predict_cached(source.digest, model_name, model_version(model_name), params.input_key(), image,
                          requested_backend())


BACKEND_KEY = "inference_backend"  # not a widget key: the choice survives the Timing tab being hidden


def requested_backend() -> str:
    """The session's inference backend: its Timing-tab setting, else ``$CELLCOUNT_BACKEND``, else auto."""
    from cellcount.models.autotune import requested_backend as from_user

    try:
        return from_user(st.session_state.get(BACKEND_KEY))
    except cc.CellcountError as err:  # a bad environment variable: say so once per run, count with auto
        st.warning(str(err))
        return "auto"


def backend_ui(prefix: str, model: cc.models.CountModel) -> None:
    """The inference backend setting and what it runs with, and why (timings measured on first use)."""
    from cellcount.models.autotune import CHOICES
    from cellcount.models.backends import available_backends

    if not isinstance(model, cc.models.NetModel):
        st.caption("The classical baseline runs no network: no inference backend.")
        return
    current = requested_backend()
    options = [c for c in CHOICES if c == "auto" or c in available_backends() or c == current]
    key = f"{prefix}_backend"
    st.session_state[key] = current
    st.selectbox(
        "Inference backend", options, key=key,
        on_change=lambda: st.session_state.__setitem__(BACKEND_KEY, st.session_state[key]),
        help="auto: the backend measured fastest for this model on this machine (timed once, remembered in the "
        "cache folder). The others force one: onnxruntime and torch compute in fp32, bf16 in bfloat16 (counts "
        "within 0.5%). The CELLCOUNT_BACKEND environment variable sets the default.",
    )
    try:
        choice = model.backend_choice(current)
    except cc.CellcountError as err:
        show_error(err)
        return
    st.caption(f"{model.name} runs with **{choice.backend}**: {choice.why()}.")


@st.cache_data(max_entries=2, ttl=CACHE_TTL_S, show_spinner=False)
def predict_set_cached(
    set_digest: str,
    model_name: str,
    version: str,
    input_key: tuple,
    _items: list[tuple[str, bytes, GroundTruth]],
) -> list[tuple[str, cc.Prediction, GroundTruth]]:
    """Model output for a whole labelled set (evaluation and tuning reuse it for any postprocessing)."""
    from cellcount.evaluate import predict_pairs

    model = get_model(model_name)
    bar = st.progress(0.0, text=f"Running {model_name} ...")
    images = [(name, cc.read_image(data), gt) for name, data, gt in _items]
    pairs = predict_pairs(images, model, _input_params(input_key), progress=progress_callback(bar, "images"))
    bar.empty()
    return pairs


@st.cache_data(max_entries=8, ttl=CACHE_TTL_S, show_spinner="Evaluating ...")
def evaluate_cached(
    sig: str, params_json: str, iou_threshold: float, _pairs: list, _params: cc.CountParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-image table and summary for predictions ``sig`` postprocessed with these settings."""
    from cellcount.evaluate import evaluate_predictions

    report = evaluate_predictions(_pairs, _params, iou_threshold=iou_threshold, keep_results=False)
    return report.per_image, report.summary


def set_digest(items: Iterable[tuple[str, bytes, Any]]) -> str:
    h = hashlib.sha256()
    for name, data, _ in items:
        h.update(name.encode("utf-8", "replace"))
        h.update(digest_of(data).encode())
    return h.hexdigest()


def image_caption(source: Source, image: np.ndarray) -> str:
    h, w = image.shape[:2]
    ch = 1 if image.ndim == 2 else image.shape[2]
    text = f"**{source.name}** · {w} × {h} px (W × H) · {image.dtype} · {ch} channel{'s' if ch > 1 else ''}"
    if source.truth is not None:
        text += f" · ground truth {source.truth} cells"
    return text


# --------------------------------------------------------------------------------------------------
# labelled data (evaluation)
# --------------------------------------------------------------------------------------------------
@st.cache_data(max_entries=1, ttl=CACHE_TTL_S, show_spinner="Loading labelled samples ...")
def sample_pairs() -> list[tuple[str, bytes, GroundTruth]]:
    """The shipped samples with their ground truth, as (name, image bytes, GroundTruth)."""
    return [(p.name, p.read_bytes(), gt) for p, gt in load_labelled_folder(SAMPLES_DIR)]


# --------------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------------
INVERT_OPTIONS = {"auto": None, "on": True, "off": False}
ALL_CHANNELS = -1  # widget value for channel=None (mean of the channels)
UNCERTAIN_SHARE = 0.02
"""Below this share of foreground pixels between 0.1 and 0.9, the threshold barely acts: it goes under Advanced."""


def _to_widget(name: str, value: Any) -> Any:
    if name == "invert":
        return {None: "auto", True: "on", False: "off"}.get(value, "auto")
    if name == "channel":
        return ALL_CHANNELS if value is None else int(value)
    if name in ("max_area_px",):
        return int(value or 0)
    if name in ("pixel_size_um", "nucleus_diameter_px"):
        return float(value or 0.0)
    if name in ("low_pct", "high_pct", "threshold"):
        return float(value)
    if name in (
        "opening_radius_px",
        "closing_radius_px",
        "min_distance_px",
        "min_area_px",
        "peak_min_distance_px",
    ):
        return int(value)
    return value


def _from_widget(name: str, value: Any) -> Any:
    if name == "invert":
        return INVERT_OPTIONS.get(value)
    if name == "channel":
        return None if value is None or value == ALL_CHANNELS else int(value)
    if name == "max_area_px":
        return int(value) or None
    if name in ("pixel_size_um", "nucleus_diameter_px"):
        return float(value) or None
    return value


def _key(prefix: str, name: str) -> str:
    return f"{prefix}_{name}"


# Widgets are views of the settings store (pages/_settings.py). Each run draws them with the store's value
# (``value=`` and, when it differs, the widget key), and their on_change callback writes the store. So a
# widget that Streamlit drops or remounts at its default (e.g. while an upload is replaced) comes back
# with the store's value instead of 0 / off, and no page reads a value that only lives in widget state.
# A prefix with a local scope (Compare's variant B) binds to its own dict instead of the store.
def _local(prefix: str) -> dict[str, Any] | None:
    return st.session_state.get(f"{prefix}__local")


def _stored(prefix: str, model: cc.models.CountModel, name: str) -> Any:
    local = _local(prefix)
    if local is not None and name in local:
        return local[name]
    return settings.values(model)[name]


def _on_edit(prefix: str, name: str, model_name: str) -> None:
    value = _from_widget(name, st.session_state[_key(prefix, name)])
    local = _local(prefix)
    if local is not None:
        local[name] = value
    else:
        settings.edit(get_model(model_name), name, value)


def _bind(prefix: str, model: cc.models.CountModel, name: str, lo: Any = None, hi: Any = None) -> dict[str, Any]:
    """Widget kwargs bound to the stored value of ``name`` (clamped into [lo, hi] for display)."""
    value = _to_widget(name, _stored(prefix, model, name))
    if lo is not None and hi is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = type(value)(min(max(value, lo), hi))
    key = _key(prefix, name)
    if st.session_state.get(key) != value:
        st.session_state[key] = value
    return {"key": key, "on_change": _on_edit, "args": (prefix, name, model.name), "help": HELP[name]}


def _slider(c: Any, prefix: str, model: Any, name: str, label: str, lo: float, hi: float, **kwargs: Any) -> Any:
    b = _bind(prefix, model, name, lo, hi)
    return c.slider(label, lo, hi, value=st.session_state[b["key"]], **b, **kwargs)


def _number(c: Any, prefix: str, model: Any, name: str, label: str, **kwargs: Any) -> Any:
    b = _bind(prefix, model, name, kwargs.get("min_value"), kwargs.get("max_value"))
    return c.number_input(label, value=st.session_state[b["key"]], **b, **kwargs)


def _toggle(c: Any, prefix: str, model: Any, name: str, label: str) -> bool:
    b = _bind(prefix, model, name)
    return c.toggle(label, value=bool(st.session_state[b["key"]]), **b)


def _choice(c: Any, prefix: str, model: Any, name: str, label: str, options: list, *, radio: bool = False,
            **kwargs: Any) -> Any:
    b = _bind(prefix, model, name)
    if st.session_state[b["key"]] not in options:
        st.session_state[b["key"]] = options[0]
    index = options.index(st.session_state[b["key"]])
    if radio:
        return c.radio(label, options, index=index, horizontal=True, **b, **kwargs)
    return c.selectbox(label, options, index=index, **b, **kwargs)


def input_ui(prefix: str, model: cc.models.CountModel, image: np.ndarray | None = None, *,
             container: Any = None) -> dict[str, Any]:
    """Channel (multichannel images), invert, test-time flips and percentile widgets; these change the model
    input."""
    c = container or st
    n_channels = 1 if image is None or image.ndim == 2 else int(image.shape[2])
    out: dict[str, Any] = {}
    if image is None or n_channels > 1:
        options = [ALL_CHANNELS, *range(n_channels if image is not None else 4)]
        names = ["red", "green", "blue"] if n_channels == 3 else []

        def fmt(v: int) -> str:
            if v == ALL_CHANNELS:
                return "all channels (mean)"
            return f"channel {v} ({names[v]})" if v < len(names) else f"channel {v}"

        out["channel"] = _from_widget("channel", _choice(c, prefix, model, "channel", "Channel", options, format_func=fmt))
    else:
        out["channel"] = _stored(prefix, model, "channel")  # unused for a single channel; kept as stored
    out["invert"] = _from_widget(
        "invert",
        _choice(c, prefix, model, "invert", "Invert (dark objects on a bright background)", list(INVERT_OPTIONS),
                radio=True),
    )
    out["test_time_flips"] = bool(_toggle(c, prefix, model, "test_time_flips", "Test-time flips (4x slower)"))
    out["auto_nucleus_size"] = bool(_toggle(c, prefix, model, "auto_nucleus_size", "Estimate nucleus size"))
    out["nucleus_diameter_px"] = _from_widget(
        "nucleus_diameter_px",
        _number(c, prefix, model, "nucleus_diameter_px", "Nucleus diameter (px, 0 = as is)", min_value=0.0,
                max_value=1000.0, step=1.0, format="%.0f"),
    )
    with c.expander("Intensity normalisation"):
        out["low_pct"] = _number(st, prefix, model, "low_pct", "Low percentile", min_value=0.0, max_value=50.0,
                                 step=0.1)
        out["high_pct"] = _number(st, prefix, model, "high_pct", "High percentile", min_value=50.0,
                                  max_value=100.0, step=0.1)
    return out


def probability_stats(probability: np.ndarray) -> tuple[np.ndarray, float]:
    """(pixel shares per probability bin, share between 0.1 and 0.9) of a foreground map (library calls)."""
    from cellcount.postprocess import probability_histogram, uncertain_share

    return probability_histogram(probability)[0], uncertain_share(probability)


def _threshold_ui(c: Any, prefix: str, model: Any, stats: tuple[np.ndarray, float] | None) -> float:
    value = _slider(c, prefix, model, "threshold", "Probability threshold", 0.0, 1.0, step=0.01, format="%.2f")
    if stats is not None:
        from cellcount import viz

        c.image(viz.encode_png(viz.histogram_strip(stats[0], threshold=value)), width="stretch")
        c.caption(f"Pixels per foreground probability, 0 to 1 (log scale; red: the threshold). "
                  f"{100 * stats[1]:.1f}% lie between 0.1 and 0.9, the only ones the threshold can move.")
    return value


def params_ui(model: cc.models.CountModel, key_prefix: str, *, container: Any = None,
              probability_stats: tuple[np.ndarray, float] | None = None) -> dict[str, Any]:
    """Postprocessing widgets for ``model`` (mask or density), drawn from and writing to the settings store;
    returns the values in use (only the knobs that act in the chosen split mode are shown).

    ``probability_stats``: :func:`probability_stats` of the image on screen (Count page); the histogram is
    drawn under the threshold, which stays in the main panel only when a useful share of pixels is uncertain.
    """
    c = container or st
    p = key_prefix
    out: dict[str, Any] = {}
    if model.output_kind == "density":
        c.caption("The count is the integral (sum) of the density map: no setting here changes it.")
        out["peak_min_distance_px"] = _slider(c, p, model, "peak_min_distance_px",
                                              "Approximate centres: min. distance (px)", 1, 30)
    else:
        modes = [m for m in SPLIT_LABELS if has_border_channel(model) or m not in ("borders", "both")]
        out["split_mode"] = _choice(c, p, model, "split_mode", "Split touching nuclei", modes,
                                    format_func=SPLIT_LABELS.get)
        if out["split_mode"] in ("distance", "both"):
            out["min_distance_px"] = _slider(c, p, model, "min_distance_px", "Min. distance between centres (px)",
                                             1, 50)
        a, b = c.columns(2)
        out["min_area_px"] = _number(a, p, model, "min_area_px", "Min. area (px)", min_value=0, step=1)
        out["max_area_px"] = _from_widget(
            "max_area_px", _number(b, p, model, "max_area_px", "Max. area (px, 0 = none)", min_value=0, step=10)
        )
        out["exclude_border"] = _toggle(c, p, model, "exclude_border", "Exclude objects on the image edge")
        main_threshold = probability_stats is not None and probability_stats[1] >= UNCERTAIN_SHARE
        if main_threshold:
            out["threshold"] = _threshold_ui(c, p, model, probability_stats)
        with c.expander("Advanced"):
            if not main_threshold:
                if probability_stats is not None:
                    st.caption("Nearly every pixel's probability is close to 0 or 1 in this image, so the "
                               "threshold changes the count very little.")
                out["threshold"] = _threshold_ui(st, p, model, probability_stats)
            out["opening_radius_px"] = _slider(st, p, model, "opening_radius_px", "Opening radius (px)", 0, 10)
            out["closing_radius_px"] = _slider(st, p, model, "closing_radius_px", "Closing radius (px)", 0, 10)
            out["fill_holes"] = _toggle(st, p, model, "fill_holes", "Fill holes")
    out["pixel_size_um"] = _from_widget(
        "pixel_size_um",
        _number(c, p, model, "pixel_size_um", "Pixel size (µm, 0 = unknown)", min_value=0.0, step=0.01,
                format="%.4f"),
    )
    # fields without a widget here (the other model kind's, a split mode's unused knob) keep their stored
    # value, so a settings file round-trips unchanged
    for name in (*MASK_FIELDS, *DENSITY_FIELDS):
        out.setdefault(name, _stored(p, model, name))
    return out


def current_input(prefix: str, model: cc.models.CountModel) -> dict[str, Any]:
    """The input fields in use (for pages that draw the input widgets elsewhere)."""
    return {name: _stored(prefix, model, name) for name in INPUT_FIELDS}


def use_local_settings(prefix: str, model: cc.models.CountModel) -> None:
    """Bind ``prefix``'s widgets to a copy of the store's settings for ``model`` (Compare's variant B):
    edits there do not change the settings the other pages use."""
    ss = st.session_state
    if ss.get(f"{prefix}__local_model") != model.name:
        ss[f"{prefix}__local"] = settings.values(model)
        ss[f"{prefix}__local_model"] = model.name


def reset_params(prefix: str, model_name: str) -> None:
    """Callback: back to the model card's settings (input fields included)."""
    model = get_model(model_name)
    if _local(prefix) is not None:
        st.session_state[f"{prefix}__local"] = settings.card_values(model)
    else:
        settings.reset(model)
    st.session_state[f"{prefix}__msg"] = ("info", f"Settings reset to the model card of {model_name}.")
    st.rerun()  # the whole page, also from a fragment: the input widgets outside it change too


def reset_button(prefix: str, model_name: str, **kwargs: Any) -> None:
    """The "Reset to the model card" button (:func:`reset_params`)."""
    st.button(
        "Reset to the model card", key=f"{prefix}_reset", on_click=reset_params, args=(prefix, model_name),
        help="Every setting back to the values in this model's card (as shipped, or as tuned into the card).",
        **kwargs,
    )


def settings_status(model: cc.models.CountModel, prefix: str, *, container: Any = None) -> None:
    """Which settings are in use and where they came from, with the one-click reset."""
    c = container or st
    row = c.container(horizontal=True, vertical_alignment="center")
    row.caption(settings.describe(model) + " · the same on Count, Batch, Evaluate and Compare")
    with row:
        reset_button(prefix, model.name, icon=":material/restart_alt:", type="tertiary",
                     disabled=settings.origin(model)[0] == "card")


def apply_settings(model_name: str, values: dict[str, Any], *, origin: str, detail: str = "") -> None:
    """Write ``values`` into the store for ``model_name`` and make it the current model (Apply, a file)."""
    settings.put(get_model(model_name), values, origin=origin, detail=detail)
    settings.set_current_model(model_name)


def settings_json(model_name: str, params: cc.CountParams | dict[str, Any]) -> str:
    """Settings file: ``{"model": ..., "params": {...}}``, the format the CLI writes and reads (--settings)."""
    values = params.to_dict() if isinstance(params, cc.CountParams) else dict(params)
    return json.dumps({"model": model_name, "params": values}, indent=2)


def _apply_settings_file(prefix: str) -> None:
    uploaded = st.session_state.get(f"{prefix}_settings_file")
    if uploaded is None:
        return
    data = uploaded.getvalue()
    try:
        overrides = params_from_json(data)
    except cc.CellcountError as err:
        st.session_state[f"{prefix}__msg"] = ("error", f"{uploaded.name}: {err}")
        return
    note = ""
    named = json.loads(data).get("model") if data.strip().startswith(b"{") else None
    model_name = settings.current_model() or st.session_state.get(f"{prefix}_model")
    if isinstance(named, str) and named in cc.list_models():
        model_name, note = named, f" Model: {named}."
    elif named:
        note = f" The file names model {named!r}, which is not installed; the current model is kept."
    try:
        cc.resolve_params(get_model(model_name), overrides)
    except cc.CellcountError as err:
        st.session_state[f"{prefix}__msg"] = ("error", f"{uploaded.name}: {err}")
        return
    apply_settings(model_name, overrides, origin="file", detail=uploaded.name)
    st.session_state[f"{prefix}__shown_model"] = model_name  # announced here, not as a model change
    st.session_state[f"{prefix}__msg"] = (
        "success",
        f"Applied {len(overrides)} setting(s) from {uploaded.name}: {', '.join(sorted(overrides))}.{note}",
    )


def settings_upload(prefix: str, *, container: Any = None) -> None:
    """Uploader for a settings JSON (from this app or the CLI); applied to the store on upload."""
    (container or st).file_uploader(
        "Load settings JSON",
        type=["json"],
        key=f"{prefix}_settings_file",
        on_change=_apply_settings_file,
        args=(prefix,),
        help="A settings file downloaded from this app (or used with the CLI's --settings).",
    )


def settings_panel(
    prefix: str, model_name: str, model: cc.models.CountModel
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings in use, Input, Postprocessing and Settings file expanders -> (input values, overrides)."""
    settings_status(model, prefix)
    with st.expander("Input", expanded=False):
        inputs = input_ui(prefix, model)
    with st.expander("Postprocessing", expanded=True):
        overrides = params_ui(model, prefix)
    with st.expander("Settings file"):
        settings_upload(prefix)
    return inputs, overrides


def show_messages(prefix: str, container: Any = None) -> None:
    msg = st.session_state.pop(f"{prefix}__msg", None)
    if msg:
        kind, text = msg
        getattr(container or st, kind)(text)


def resolve(model: cc.models.CountModel, *parts: dict[str, Any]) -> cc.CountParams:
    """``resolve_params(model, overrides)`` with the parts merged left to right."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return cc.resolve_params(model, merged)


def csv_bytes(df: pd.DataFrame) -> bytes:
    """Formula-safe CSV bytes for a download: :func:`cellcount.csvout.csv_bytes`."""
    from cellcount.csvout import csv_bytes as _csv_bytes

    return _csv_bytes(df)


def stem(name: str) -> str:
    return Path(name).stem or "image"
