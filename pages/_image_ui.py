"""Images and model output in the app: samples, uploads, and ``st.cache_data`` / ``st.cache_resource`` caches
keyed on the sha256 of the image bytes, the model name and ``CountParams.input_key()``, so slider changes
only rerun ``cellcount.postprocess``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount.groundtruth import GroundTruth, load_labelled_folder
from cellcount.io.files import microscope_file_problem
from cellcount.params import INPUT_FIELDS
from pages._model_ui import get_model, get_size_model, prediction_version
from pages._ui import CACHE_TTL_S, SAMPLES_DIR, progress_callback, show_error


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
def _read_cached(digest: str, page: int | str | None, _data: bytes
                 ) -> tuple[np.ndarray, str | None, tuple | None, str | None]:
    image, planes = cc.io.read_image_planes(_data, page=page)
    note = f"only the first of its {planes[0]} {planes[1]} was counted" if page is None and planes else None
    # tiles the file does not store beside content (a damaged TIFF), read as empty, or a poor JPEG: for the badge
    return image, note, planes, cc.io.read.file_note(_data, image, page)


def read_image_cached(digest: str, _data: bytes, page: int | str | None = None, *, name: str | None = None,
                      scored: bool = False) -> np.ndarray:
    """Decoded image (native dtype) for the bytes with this sha256 (``page``: the plane of a z-stack, or
    "max"); when only the first of several planes was read, a warning above it says how to choose (``scored``:
    Evaluate, where the annotated plane is the one to save as a file of its own)."""
    image, note, planes, _ = _read_cached(digest, page, _data)
    if note:
        which = f"**{name}**" if name else "This file"
        if scored:
            st.warning(f"{which} holds {planes[0]} {planes[1]}; only the first was read and scored: save the plane "
                       "that was annotated as a file of its own.", icon="⚠️")
        else:
            choose = ("a time point" if planes[1] == "time points" else "an image"
                      if planes[1] in cc.io.read.CHOSEN_IMAGES else "a plane or their maximum projection")
            st.warning(f"{which} holds {planes[0]} {planes[1]}; only the first was read and counted. Choose {choose} "
                       "above (**Plane** on Count, **Z-stacks** on Batch and Compare).", icon="⚠️")
    return image


def image_note(digest: str, _data: bytes, page: int | str | None = None) -> str | None:
    """Why the file's count may not be what the user meant (e.g. only one plane of a z-stack), or None: a
    reason for the quality badge."""
    _, note, _, lost = _read_cached(digest, page, _data)
    return "; ".join(n for n in (note, lost) if n) or None


PLANE_CHOICE = "plane_choice"
"""The session's choice for z-stacks ("first", "max" or a plane number), not a widget key: widget state is
dropped when its page is left, and Count, Batch and Compare share this one (a settings file sets it too)."""


def shared_plane_widget(key: str, choices: list[int | str], to_widget=lambda v: v) -> None:
    """Before a plane widget is drawn: start it from the session's choice (mapped by ``to_widget``) when it has
    no state of its own (first draw, or back from another page)."""
    if key not in st.session_state:
        value = to_widget(st.session_state.get(PLANE_CHOICE, "first"))
        st.session_state[key] = value if value in choices else "first"


PLANE_WIDGETS = ("count_plane", "batch_plane", "compare_plane")
PLANE_NUMBERS = 100
"""Plane numbers offered where the files are not known yet (Batch, Compare)."""


def stack_plane_ui(prefix: str, verb: str = "Count", planes: int = PLANE_NUMBERS) -> int | str | None:
    """For pages of many files: which plane of each z-stack (or other file with several planes) to read, or
    their maximum projection; the session's choice, as Count's Plane. Returns the ``page`` to read (None: the
    first plane, said in each such file's quality flag). ``planes``: the plane numbers offered (the most any
    file holds, where the files are known)."""
    options: list[int | str] = ["first", "max", *range(planes)]
    key = f"{prefix}_plane"
    shared_plane_widget(key, options)
    plane = st.selectbox(
        "Z-stacks and other files with several planes", options, key=key, on_change=remember_plane, args=(key,),
        format_func=lambda o: {"first": f"{verb} the first plane (the row is flagged)",
                               "max": f"{verb} their maximum projection"}.get(o) or f"{verb} plane {o} (0 = the first)",
        help="Maximum-intensity projection: each pixel's brightest value over all planes, so every nucleus appears "
        "whichever plane it is in focus on; not for files whose planes are channels (it mixes the nuclei with the "
        "other stains: choose the nuclei's plane). A plane number reads that plane of each file (a file with fewer planes "
        "is listed as failed, with why). Files with one plane are read as they are either way; Count, Batch and "
        "Compare share this choice.",
    )
    return None if plane == "first" else plane


def has_planes(source: Source) -> bool:
    """Whether ``source`` holds several planes (a z-stack, time series or multi-page file); False when unreadable
    (its error is shown where it is read)."""
    return n_planes(source) > 1


def n_planes(source: Source) -> int:
    """How many planes ``source`` holds (1: one image; also when unreadable)."""
    return _n_planes(source.digest, source.data)


@st.cache_data(max_entries=512, ttl=CACHE_TTL_S, show_spinner=False)
def _n_planes(digest: str, _data: bytes) -> int:
    """Cached apart from the decoded images (8 of them): Compare asks it of every image on every rerun."""
    try:
        planes = cc.io.read_image_planes(_data)[1]
    except cc.CellcountError:
        return 1
    return planes[0] if planes else 1


def plane_source(source: Source, page: int | str | None) -> Source:
    """``source`` whose digest names the plane read (every cache keyed by it tells planes apart)."""
    return source if page is None else replace(source, digest=f"{source.digest}:plane={page}")


def set_plane_choice(plane: int | str) -> None:
    """Make ``plane`` (a plane number, "max" or "first") the session's choice for z-stacks, as a settings file or a
    reopened run names it; each page's plane widget starts again from it."""
    st.session_state[PLANE_CHOICE] = plane
    for key in PLANE_WIDGETS:
        st.session_state.pop(key, None)


def remember_plane(key: str) -> None:
    """on_change of a plane widget: its value becomes the session's choice."""
    st.session_state[PLANE_CHOICE] = st.session_state[key]


def plane_ui(prefix: str, source: Source) -> tuple[Source, int | str | None]:
    """For a z-stack, time series or multi-frame file: which plane to count, or their maximum projection.

    Returns the source to count (its digest names the plane, so every cache keyed by it tells planes apart)
    and the ``page`` to read. Files with one plane: the source as it is and None.
    """
    if why := microscope_file_problem(source.name, source.data[:4]):  # taken by the uploader to be said, not dropped
        raise cc.ImageReadError(f"{source.name}: {why}")
    planes = _read_cached(source.digest, None, source.data)[2]
    if not planes:
        return source, None
    n, what = planes
    # option values and labels that do not depend on the file, so that a choice survives the next upload
    # (the browser answers with the label; "first", not None, which a selectbox takes for "nothing chosen")
    options: list[int | str] = ["first", "max", *range(n)]
    key = f"{prefix}_plane"
    shared_plane_widget(key, options)
    if st.session_state.get(key, "first") not in options:  # a plane this file does not have
        st.session_state[key] = "first"
    images = what in cc.io.read.CHOSEN_IMAGES  # an OME file's positions, pages of other sizes: one of them
    labels = {"first": f"The first {'image' if images else 'plane'} only, not chosen (the count is flagged)",
              "max": "Maximum projection of all planes" + (" (not of time points: cells move)"
                                                           if what == "time points" else " (not of separate images)"
                                                           if images else "")}
    page = st.selectbox(
        "Plane", options, key=key,
        format_func=lambda o: labels.get(o) or f"{'Image' if images else 'Plane'} {o} (0 = the first)",
        help="Which plane of the file to count, or their maximum-intensity projection (each pixel's brightest "
        "value over all planes: every nucleus appears, whichever plane it is in focus on; the usual way to "
        f"count a z-stack). This file holds {n} {what}. The count, the outlines and the downloads are of "
        "what you choose here; Batch starts from the same choice.",
        on_change=remember_plane, args=(key,),
    )
    if page == "max" and "channels" in what:  # a projection of channels mixes e.g. nuclei with cytoplasm
        st.caption(f"If these {n} planes are channels (nuclei in one, other stains in the others) or time points, a "
                   "maximum projection mixes them: choose the plane that holds your nuclei instead.")
    if page not in options or page == "first":
        return source, None
    return plane_source(source, page), page


@st.cache_data(max_entries=24, ttl=CACHE_TTL_S, show_spinner=False)
def thumbnail_cached(digest: str, _data: bytes, max_side: int = 200) -> np.ndarray:
    from cellcount import viz

    return viz.thumbnail(cc.read_image(_data), max_side=max_side)


def _input_params(input_key: tuple) -> cc.CountParams:
    return cc.CountParams(**dict(zip(INPUT_FIELDS, input_key, strict=True)))


_MADE = threading.local()  # per script thread (one per session): how many predictions it ran, not took from the cache


def predictions_made() -> int:
    """How many predictions this session's script thread has run (not found cached) so far: a caller compares the
    figure before and after a call to tell a prediction made now (its time measured now) from one kept."""
    return getattr(_MADE, "n", 0)


# cache_resource, not cache_data: a hit returns the same object instead of unpickling 10+ MB of maps on every
# slider move; callers treat predictions as read-only (postprocess never modifies its input)
@st.cache_resource(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def predict_cached(
    digest: str, model_name: str, version: str, input_key: tuple, _image: np.ndarray, backend: str = "auto"
) -> cc.Prediction:
    """Model output for one image; the progress bar lives inside so a cache hit replays it empty."""
    _MADE.n = predictions_made() + 1  # runs on a miss only
    model, params = get_model(model_name), _input_params(input_key)
    size_model = get_size_model(model, params)
    bar = st.progress(0.0, text=f"Running {model_name} ...")
    try:
        return cc.predict(_image, model, params, progress=progress_callback(bar, "tiles"), size_model=size_model,
                          backend=backend)
    finally:  # also when it fails: a bar left at "Running ..." reads as still working beside the error
        bar.empty()


def for_image(params: cc.CountParams, image: np.ndarray) -> cc.CountParams:
    """``params`` as they apply to ``image``: a channel chosen for other images means nothing for one without that
    channel, whose control shows "all channels" (a 2-channel file would fail "channel 2 is out of range" with
    no control left to change it). A one-channel image keeps it: counted as it is, its flag says so, as in Batch
    and the CLI (:func:`cellcount.params.channel_for_image`)."""
    n_channels = 1 if image.ndim == 2 else image.shape[2]
    if params.channel is not None and n_channels > 1 and params.channel >= n_channels:
        return params.replace(channel=None)  # the channel control shows "all channels" for it too
    return params


def channel_note(params: cc.CountParams, image: np.ndarray) -> str | None:
    """What :func:`for_image` did to ``params`` for ``image``, for its count's flag (None: nothing): a channel the
    image lacks among several was left out, and the image counted from the mean of its channels."""
    n_channels = 1 if image.ndim == 2 else image.shape[2]
    if params.channel is None or n_channels == 1 or params.channel < n_channels:
        return None
    return (f"channel {params.channel} was chosen, but this image has {n_channels} channels (0-{n_channels - 1}): it "
            "was counted from the mean of its channels (Batch and the command line refuse it with this setting); "
            "choose the channel that holds its nuclei")


def with_file_pixel_size(params: cc.CountParams, source: Source, image: np.ndarray) -> cc.CountParams:
    """``params`` to measure ``source``'s objects with: its file's pixel size where the settings give none, as
    Batch and the CLI measure (never stored as a setting: another file has its own)."""
    from cellcount.params import measuring_by_file

    return measuring_by_file(params, file_metadata(source, image).pixel_size_um)


@st.cache_data(max_entries=24, ttl=CACHE_TTL_S, show_spinner=False)
def _metadata_cached(digest: str, n_channels: int, _data: bytes) -> cc.io.ImageMetadata:
    return cc.io.read_metadata(_data, n_channels=n_channels)


def pixel_size_note(params: cc.CountParams, source: Source, image: np.ndarray) -> str | None:
    """Where the Pixel size setting replaces ``source``'s own other calibration, what to say (as Batch and the CLI
    flag it); else None."""
    return cc.io.pixel_size_conflict(params.pixel_size_um, file_metadata(source, image).pixel_size_um)


def file_metadata(source: Source, image: np.ndarray) -> cc.io.ImageMetadata:
    """What ``source``'s file says of itself (channel names, pixel size) for the decoded ``image``."""
    n_channels = 1 if image.ndim == 2 else int(image.shape[2])
    return _metadata_cached(source.digest.split(":")[0], n_channels, source.data)


def prediction_key(source: Source, model_name: str, params: cc.CountParams) -> str:
    """What a prediction of ``source`` depends on (image, model and size-model versions, input settings,
    backend): the key of :func:`predict_source` and of every cache built on its prediction (the overlay),
    so none of them outlives a replaced model or a backend change."""
    return "|".join(map(str, (source.digest, model_name, prediction_version(model_name, params),
                              params.input_key(), requested_backend())))


def predict_source(
    source: Source, image: np.ndarray, model_name: str, params: cc.CountParams
) -> cc.Prediction:
    return predict_cached(source.digest, model_name, prediction_version(model_name, params), params.input_key(),
                          image, requested_backend())


BACKEND_KEY = "inference_backend"  # not a widget key: the choice survives the Timing tab being hidden


def requested_backend() -> str:
    """The session's inference backend: its Timing-tab setting, else ``$CELLCOUNT_BACKEND``, else auto."""
    from cellcount.models.autotune import requested_backend as from_user

    try:
        return from_user(st.session_state.get(BACKEND_KEY))
    except cc.CellcountError as err:  # a bad environment variable: say so, count with auto
        st.warning(str(err))
        return "auto"


def backend_in_use(model: cc.models.CountModel, requested: str | None = None) -> str | None:
    """The backend counts with ``model`` run in when ``requested`` (default: the session's choice) is asked for (for
    the records: bf16 and fp32 counts may differ by an object); None for a model without a network, or where it
    cannot be told."""
    if not isinstance(model, cc.models.NetModel):
        return None
    try:
        return model.backend_in_use(requested or requested_backend())[0]
    except cc.CellcountError:
        return None


def backend_ui(prefix: str, model: cc.models.CountModel) -> None:
    """The inference backend setting and what it runs with, and why (timings measured on first use)."""
    from cellcount.models.autotune import CHOICES
    from cellcount.models.backends import backend_note, buildable_backends

    if not isinstance(model, cc.models.NetModel):
        st.caption("The classical baseline runs no network: no inference backend.")
        return
    current = requested_backend()
    options = [c for c in CHOICES if c == "auto" or c in buildable_backends() or c == current]
    key = f"{prefix}_backend"
    st.session_state[key] = current
    st.selectbox(
        "Inference backend", options, key=key,
        on_change=lambda: st.session_state.__setitem__(BACKEND_KEY, st.session_state[key]),
        help="auto: the backend measured fastest for this model on this machine (timed once, remembered in the "
        "cache folder, timed again when that was on a busy machine). The others force one: onnxruntime, openvino and "
        "torch compute in fp32, bf16 in bfloat16 (totals within about 0.5%, not every image: one near Split Auto's "
        "switch can take the other split). int8 (never chosen by auto) is the fastest on many CPUs but moves each "
        "image's count by about 1% on average. Force one to compare counts across days. The CELLCOUNT_BACKEND "
        "environment variable sets the default.",
    )
    try:
        name, why = model.backend_in_use(current)
    except cc.CellcountError as err:
        show_error(err)
        return
    st.caption(f"{model.name} runs with **{name}**: {why}.")
    if note := backend_note(current):
        st.warning(f"{current}: {note}.", icon=":material/speed:")


@st.cache_data(max_entries=2, ttl=CACHE_TTL_S, show_spinner=False)
def predict_set_cached(
    set_digest: str,
    model_name: str,
    version: str,
    input_key: tuple,
    _items: list[tuple[str, bytes, GroundTruth]],
    backend: str = "auto",
) -> list[tuple[str, cc.Prediction, GroundTruth]]:
    """Model output for a whole labelled set (evaluation and tuning reuse it for any postprocessing)."""
    from cellcount.evaluate import predict_pairs

    model, params = get_model(model_name), _input_params(input_key)
    size_model = get_size_model(model, params)
    bar = st.progress(0.0, text=f"Running {model_name} ...")
    from cellcount.evaluate import with_read_notes

    try:
        images, notes = [], {}
        for name, data, gt in _items:
            image, planes = cc.io.read_image_planes(data)
            images.append((name, image, gt))
            if planes is not None:  # scored on the first plane, flagged, as the command line's evaluate does
                notes[name] = (f"{name}: the file holds {planes[0]} {planes[1]}; only the first was read and scored "
                               "(save the plane that was annotated as a file of its own)")
        return with_read_notes(predict_pairs(images, model, params, progress=progress_callback(bar, "images"),
                                             size_model=size_model, backend=backend, warn_trained=False), notes)
    finally:
        bar.empty()


@st.cache_data(max_entries=8, ttl=CACHE_TTL_S, show_spinner="Evaluating ...")
def evaluate_cached(
    sig: str, params_json: str, iou_threshold: float, _pairs: list, _params: cc.CountParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-image table and summary for predictions ``sig`` postprocessed with these settings."""
    from cellcount.evaluate import evaluate_predictions

    report = evaluate_predictions(_pairs, _params, iou_threshold=iou_threshold, keep_results=False)
    return report.per_image, report.summary


def set_digest(items: Iterable[tuple[str, bytes, Any]]) -> str:
    """The images of a labelled set (names and bytes): what the model's output depends on."""
    h = hashlib.sha256()
    for name, data, _ in items:
        h.update(name.encode("utf-8", "replace"))
        h.update(digest_of(data).encode())
    return h.hexdigest()


def truth_digest(items: Iterable[tuple[str, bytes, GroundTruth]]) -> str:
    """The ground truth of a labelled set (kind, count, labels, points): what the scores depend on besides
    the predictions. New ground truth for the same images must be scored again."""
    h = hashlib.sha256()
    for name, _, gt in items:
        h.update(name.encode("utf-8", "replace"))
        h.update(hashlib.sha256(gt.content_bytes()).digest())
    return h.hexdigest()


def image_caption(source: Source, image: np.ndarray, page: int | str | None = None) -> str:
    h, w = image.shape[:2]
    ch = 1 if image.ndim == 2 else image.shape[2]
    text = f"**{source.name}** · {w} × {h} px (W × H) · {image.dtype} · {ch} channel{'s' if ch > 1 else ''}"
    if page is not None:
        text += " · maximum projection of its planes" if page == "max" else f" · plane {page}"
    if source.truth is not None:
        text += f" · ground truth {source.truth} cells"
    meta = file_metadata(source, image)
    if meta.pixel_size_um:
        text += f" · {meta.pixel_size_um:g} µm per pixel (the file's: it measures the objects unless Pixel size is set)"
    elif meta.pixel_note:
        text += f" · {meta.pixel_note}"
    return text


@st.cache_resource(max_entries=1, show_spinner=False)
def sample_truths() -> dict[str, GroundTruth]:
    """Each shipped sample's ground truth by file name (its label image: which objects touch the edge)."""
    return {name: gt for name, _, gt in sample_pairs()}


@st.cache_data(max_entries=1, ttl=CACHE_TTL_S, show_spinner="Loading labelled samples ...")
def sample_pairs() -> list[tuple[str, bytes, GroundTruth]]:
    """The shipped samples with their ground truth, as (name, image bytes, GroundTruth)."""
    return [(p.name, p.read_bytes(), gt) for p, gt in load_labelled_folder(SAMPLES_DIR)]
