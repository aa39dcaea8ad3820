"""Parameter widgets, generated from the schema (:data:`cellcount.params.PARAMS`: label, range, step,
format, help), bound to the settings store (:mod:`pages._settings`); settings files and reset.

Widget keys are ``<prefix>_<CountParams field>`` (``count_threshold``, ``batch_min_area_px`` ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import streamlit as st

import cellcount as cc
from cellcount.params import (
    AUTO_DISTANCE_FRACTION,
    BORDER_SPLIT_MODES,
    DISTANCE_SPLIT_MODES,
    INPUT_FIELDS,
    PARAM_NAMES,
    SCHEMA,
    has_border_channel,
    setting_label,
    setting_text,
)
from cellcount.settingsfile import (
    MODEL_CHANGED,
    backend_from_json,
    model_changed_from_json,
    model_from_json,
    params_from_json,
    plane_from_json,
    tuned_on_from_json,
)
from pages import _settings as settings
from pages._image_ui import PLANE_CHOICE, backend_in_use, set_plane_choice
from pages._model_ui import SHOWN_MODEL_KEY, get_model

INVERT_OPTIONS = {"auto": None, "on": True, "off": False}
ALL_CHANNELS = -1  # widget value for channel=None (mean of the channels)
UNCERTAIN_SHARE = 0.02
"""Below this share of foreground pixels between 0.1 and 0.9, the threshold barely acts: it goes under Advanced."""


def _to_widget(name: str, value: Any) -> Any:
    """A parameter value as its widget shows it (None as "auto", "all channels" or 0)."""
    spec = SCHEMA[name]
    if name == "invert":
        return {None: "auto", True: "on", False: "off"}.get(value, "auto")
    if name == "channel":
        return ALL_CHANNELS if value is None else int(value)
    if spec.kind in (int, float):
        return spec.kind(value or 0)
    return value


def _from_widget(name: str, value: Any) -> Any:
    """A widget's value as the parameter value (the inverse of :func:`_to_widget`)."""
    spec = SCHEMA[name]
    if name == "invert":
        return INVERT_OPTIONS.get(value)
    if name == "channel":
        return None if value is None or value == ALL_CHANNELS else int(value)
    if spec.optional and spec.kind in (int, float):
        return spec.kind(value) or None
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


CHANNEL_CHOSEN_FOR = "_widgets__channel_chosen_for"
"""The number of channels of the image the channel was last chosen on (a choice for a 2-channel TIFF would count
the green of the next upload, an RGB picture, with no more than a caption)."""


FILLED_IN = "_widgets__filled_in"
"""Widget key -> the option a choice widget shows because the stored value is not among its options."""


def _on_edit(prefix: str, name: str, model_name: str, key: str | None = None) -> None:
    raw = st.session_state[key or _key(prefix, name)]
    if name == "channel" and isinstance(raw, str):
        # Streamlit sends a selectbox's old option label ("channel 2 (blue)") when its options changed with the
        # image (a 3-channel file replaced by another): not a choice the user made, and no channel number
        return
    value = _from_widget(name, raw)
    try:
        model = get_model(model_name)
    except cc.CellcountError:  # deleted meanwhile (Models page, another tab): the rerun picks another model
        return
    if (key or _key(prefix, name)) in st.session_state.get(FILLED_IN, {}) and \
            raw == st.session_state[FILLED_IN][key or _key(prefix, name)]:
        # the control showed this because the value chosen is not among its options (channel 2 on a 2-channel
        # image shows "all channels"), and the browser sent it back a run or two later: not a choice the user
        # made (a control cannot be changed to what it shows); taken as one, it undid the choice for every
        # later image and Batch (the next 3-channel image counted from the mean: 579 nuclei for 70)
        return
    local = _local(prefix)
    if local is not None:
        local[name] = value
    else:
        settings.edit(model, name, value)
    if name == "channel" and key:  # the channel's widget key ends with the number of channels it offered
        st.session_state[CHANNEL_CHOSEN_FOR] = int(key.rsplit("_", 1)[1])


def _clear_channel(prefix: str, model_name: str) -> None:
    local = _local(prefix)
    if local is not None:
        local["channel"] = None
        return
    try:
        settings.edit(get_model(model_name), "channel", None)
    except cc.CellcountError:  # deleted meanwhile: the rerun picks another model
        pass


def _bind(prefix: str, model: cc.models.CountModel, name: str, lo: Any = None, hi: Any = None,
          key: str | None = None) -> dict[str, Any]:
    """Widget kwargs bound to the stored value of ``name`` (clamped into [lo, hi] for display); ``key``: the
    widget's own, where one setting has several widgets (the channel's, one per number of channels)."""
    value = _to_widget(name, _stored(prefix, model, name))
    if lo is not None and hi is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = type(value)(min(max(value, lo), hi))
    key = key or _key(prefix, name)
    if st.session_state.get(key) != value:
        st.session_state[key] = value
    return {"key": key, "on_change": _on_edit, "args": (prefix, name, model.name, key), "help": SCHEMA[name].explain}


def _taking_in(prefix: str, model: cc.models.CountModel, name: str, lo: Any, hi: Any) -> tuple[Any, Any]:
    """A widget's range [lo, hi] widened to take in the stored value: a settings file (or `evaluate --tune`,
    which tries larger values while they count better) may hold one beyond the usual range, and a widget
    clamping it counted with another value than the file's on the pages that read their widgets."""
    value = _to_widget(name, _stored(prefix, model, name))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return lo, hi
    kind = type(lo) if lo is not None else type(hi)
    return (kind(min(lo, value)) if lo is not None else lo), (kind(max(hi, value)) if hi is not None else hi)


# The widgets take label, range, step, format and help from the parameter schema (cellcount.params)
def _slider(c: Any, prefix: str, model: Any, name: str) -> Any:
    spec = SCHEMA[name]
    lo, hi = _taking_in(prefix, model, name, *spec.ui_range)
    b = _bind(prefix, model, name, lo, hi)
    return c.slider(spec.label, lo, hi, value=st.session_state[b["key"]], step=spec.step, format=spec.fmt, **b)


def _number(c: Any, prefix: str, model: Any, name: str) -> Any:
    spec = SCHEMA[name]
    lo, hi = _taking_in(prefix, model, name, *(spec.ui_range or (spec.kind(0 if spec.optional else spec.lo), None)))
    b = _bind(prefix, model, name, lo, hi)
    return c.number_input(spec.label, value=st.session_state[b["key"]], min_value=lo, max_value=hi,
                          step=spec.step, format=spec.fmt, **b)


def _toggle(c: Any, prefix: str, model: Any, name: str) -> bool:
    b = _bind(prefix, model, name)
    return c.toggle(SCHEMA[name].label, value=bool(st.session_state[b["key"]]), **b)


def _choice(c: Any, prefix: str, model: Any, name: str, options: list | None = None, *, radio: bool = False,
            key: str | None = None, **kwargs: Any) -> Any:
    """Selectbox (or radio) of ``options``, by default the schema's choices shown by their labels."""
    spec = SCHEMA[name]
    if options is None:
        options = list(spec.choices)
        kwargs.setdefault("format_func", dict(zip(spec.choices, spec.choice_labels, strict=True)).get)
    b = _bind(prefix, model, name, key=key)
    filled = st.session_state.setdefault(FILLED_IN, {})
    filled.pop(b["key"], None)
    if st.session_state[b["key"]] not in options:
        st.session_state[b["key"]] = filled[b["key"]] = options[0]
    index = options.index(st.session_state[b["key"]])
    if radio:
        return c.radio(spec.label, options, index=index, horizontal=True, **b, **kwargs)
    return c.selectbox(spec.label, options, index=index, **b, **kwargs)


NO_IMAGE_CHANNELS = 8
"""Channels the channel control offers where no image says how many it has (Batch: files of up to 8 channels)."""


def input_ui(prefix: str, model: cc.models.CountModel, image: np.ndarray | None = None, *,
             container: Any = None, channel_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Channel (multichannel images), invert, test-time flips and percentile widgets; these change the model
    input. ``channel_names``: the image's channels as its file names them (DAPI, GFP; red, green, blue for an RGB
    picture: :func:`cellcount.io.metadata.read_metadata`), shown beside their numbers."""
    c = container or st
    n_channels = 1 if image is None or image.ndim == 2 else int(image.shape[2])
    out: dict[str, Any] = {}
    if image is None or n_channels > 1:
        # with no image to ask (Batch): channels 0-7, and any channel chosen beyond them, so that the control shows
        # the channel the batch counts
        stored = _stored(prefix, model, "channel")
        shown = n_channels if image is not None else max(NO_IMAGE_CHANNELS, (stored or 0) + 1)
        options = [ALL_CHANNELS, *range(shown)]
        names = list(channel_names or [])  # never guessed: an unnamed 3-channel TIFF's DAPI is not "green"
        stain = model.card.normalization.get("grayscale") == "stain"

        def fmt(v: int) -> str:
            if v == ALL_CHANNELS:  # as the model reads them: a stain-reading model takes H&E's hematoxylin
                return "all channels (mean; H&E: stain)" if stain else "all channels (mean)"
            # Fiji says C=1 for the first: numbered from 0 here, as in the CLI and the library
            notes = [*(["the first"] if v == 0 else []), *([names[v]] if v < len(names) else [])]
            return f"channel {v} ({', '.join(notes)})" if notes else f"channel {v}"

        # one widget per number of channels, each knowing what it showed in place of a channel it lacks
        out["channel"] = _from_widget("channel", _choice(c, prefix, model, "channel", options, format_func=fmt,
                                                         key=f"{_key(prefix, 'channel')}_{len(options) - 1}"))
        chosen_for = st.session_state.get(CHANNEL_CHOSEN_FOR)
        stored = _stored(prefix, model, "channel")
        if image is not None and stored is not None and stored >= n_channels:  # shown as "all channels": said
            c.warning(f"Channel {stored} is chosen, but this image has {n_channels} channels: it is counted from the "
                      "mean of its channels, as the control shows (Batch refuses it with this setting). Choose the "
                      "channel that holds its nuclei.", icon=":material/warning:")
        if image is not None and out["channel"] is not None and chosen_for not in (None, n_channels):
            c.warning(f"Channel {out['channel']} was chosen for an image of {chosen_for} channels; this one has "
                      f"{n_channels}{' (an RGB picture?)' if n_channels == 3 else ''}. Check that channel "
                      f"{out['channel']} holds its nuclei, or choose another.", icon=":material/warning:")
            c.button(f"Keep channel {out['channel']}", key=f"{prefix}_keep_channel", on_click=st.session_state.__setitem__,
                     args=(CHANNEL_CHOSEN_FOR, n_channels))
    else:
        out["channel"] = _stored(prefix, model, "channel")  # unused for a single channel; kept as stored
        if out["channel"] is not None:  # said, and undone in one click: it counts every image with several channels
            c.caption(f"Channel {out['channel']} is chosen: images with several channels are counted on it alone (on "
                      "Batch too). This image has one channel and is counted as it is.")
            c.button("Use all channels", key=f"{prefix}_clear_channel", on_click=_clear_channel,
                     args=(prefix, model.name), icon=":material/layers_clear:",
                     help="Images with several channels are then counted from the mean of their channels (colour H&E "
                     "and brightfield from their hematoxylin stain, with a model that reads stain), here and on Batch, "
                     "Evaluate and Compare.")
    out["invert"] = _from_widget(
        "invert",
        _choice(c, prefix, model, "invert", list(INVERT_OPTIONS), radio=True),
    )
    # flips average a network's maps: a model without one (the classical baseline) has nothing to flip
    out["test_time_flips"] = bool(_toggle(c, prefix, model, "test_time_flips")) if hasattr(model, "net") else False
    out["auto_nucleus_size"] = bool(_toggle(c, prefix, model, "auto_nucleus_size"))
    out["nucleus_diameter_px"] = _from_widget("nucleus_diameter_px", _number(c, prefix, model, "nucleus_diameter_px"))
    with c.expander("Intensity normalisation"):
        out["low_pct"] = _number(st, prefix, model, "low_pct")
        out["high_pct"] = _number(st, prefix, model, "high_pct")
    return out


def probability_stats(probability: np.ndarray) -> tuple[np.ndarray, float]:
    """(pixel shares per probability bin, share between 0.1 and 0.9) of a foreground map (library calls)."""
    from cellcount.postprocess import probability_histogram, uncertain_share

    return probability_histogram(probability)[0], uncertain_share(probability)


def _threshold_ui(c: Any, prefix: str, model: Any, stats: tuple[np.ndarray, float] | None,
                  split_mode: str | None = None) -> float:
    value = _slider(c, prefix, model, "threshold")
    if stats is not None:
        from cellcount import viz

        c.image(viz.encode_png(viz.histogram_strip(stats[0], threshold=value)), width="stretch")
        # with model borders the threshold barely moves the count, which looks broken: say why
        why = (" With 'Model borders' (and 'Auto', mostly) the nuclei are told apart where the model drew their "
               "outlines, so the threshold mostly moves the outlines and areas, little the count."
               if split_mode in ("borders", "auto") else "")
        c.caption(f"Pixels per foreground probability, 0 to 1 (ticks every 0.25; log scale; red: the threshold). "
                  f"{100 * stats[1]:.1f}% lie between 0.1 and 0.9, the only ones the threshold can move.{why}")
    return value


def params_ui(model: cc.models.CountModel, key_prefix: str, *, container: Any = None,
              probability_stats: tuple[np.ndarray, float] | None = None,
              auto_distance_px: int | None = None, split_used: str | None = None) -> dict[str, Any]:
    """Postprocessing widgets for ``model`` (mask or density), drawn from and writing to the settings store;
    returns the values in use (only the knobs that act in the chosen split mode are shown).

    ``probability_stats``: :func:`probability_stats` of the image on screen (Count page); the histogram is
    drawn under the threshold, which stays in the main panel only when a useful share of pixels is uncertain.
    ``auto_distance_px``: what the split distance 0 (auto) makes for that image, said under the slider.
    ``split_used``: the split the image on screen got ("borders" or "both" with "auto"): with "borders" the
    distance does nothing there, and the slider says so.
    """
    c = container or st
    p = key_prefix
    out: dict[str, Any] = {}
    if model.output_kind == "density":
        c.caption("The count is the integral (sum) of the density map: no setting here changes it.")
        out["peak_min_distance_px"] = _slider(c, p, model, "peak_min_distance_px")
    else:
        spec = SCHEMA["split_mode"]
        modes = [m for m in spec.choices if has_border_channel(model) or m not in BORDER_SPLIT_MODES]
        out["split_mode"] = _choice(c, p, model, "split_mode", modes,
                                    format_func=dict(zip(spec.choices, spec.choice_labels, strict=True)).get)
        if out["split_mode"] in DISTANCE_SPLIT_MODES:
            out["min_distance_px"] = _slider(c, p, model, "min_distance_px")
            if out["min_distance_px"] == 0:
                here = f"{auto_distance_px} px on this image: " if auto_distance_px else ""
                c.caption(f"Auto: {here}{AUTO_DISTANCE_FRACTION:g} x each image's nucleus diameter ('Nucleus "
                          "diameter' when set, else the estimated one, else the model's training size).")
            if out["split_mode"] == "auto" and split_used == "borders":
                c.caption("Split mode Auto chose Model borders for this image, so this distance does not change its "
                          "count; it acts on images where Auto chooses Both (crowded fluorescent nuclei), or with "
                          "'Both' or 'Distance transform' chosen.")
        a, b = c.columns(2)
        out["min_area_px"] = _number(a, p, model, "min_area_px")
        out["max_area_px"] = _from_widget("max_area_px", _number(b, p, model, "max_area_px"))
        out["exclude_border"] = _toggle(c, p, model, "exclude_border")
        # once an image showed it in the main panel, it stays there for this model: it does not jump back
        # into Advanced when the next image happens to be nearly binary
        shown_key = f"{p}_threshold_in_main::{model.name}"
        main_threshold = probability_stats is not None and (probability_stats[1] >= UNCERTAIN_SHARE
                                                            or st.session_state.get(shown_key, False))
        if main_threshold:
            st.session_state[shown_key] = True
            out["threshold"] = _threshold_ui(c, p, model, probability_stats, out["split_mode"])
        with c.expander("Advanced"):
            if not main_threshold:
                if probability_stats is not None:
                    st.caption("Nearly every pixel's probability is close to 0 or 1 in this image, so the "
                               "threshold changes the count very little.")
                out["threshold"] = _threshold_ui(st, p, model, probability_stats, out["split_mode"])
            out["opening_radius_px"] = _slider(st, p, model, "opening_radius_px")
            out["closing_radius_px"] = _slider(st, p, model, "closing_radius_px")
            out["fill_holes"] = _toggle(st, p, model, "fill_holes")
    out["pixel_size_um"] = _from_widget("pixel_size_um", _number(c, p, model, "pixel_size_um"))
    # fields without a widget here (the other model kind's, a split mode's unused knob, a multihead model's
    # count source) keep their stored value, so a settings file round-trips unchanged and every page counts alike
    for name in PARAM_NAMES:
        if name not in INPUT_FIELDS:
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
    shared = ""
    if _local(prefix) is not None:
        st.session_state[f"{prefix}__local"] = settings.card_values(model)
    else:
        # the image settings are shared by every model: said when the reset takes them from the others too (a
        # channel 2 set for another model would otherwise go without a word)
        if image := settings.image_values():
            shared = (" The image settings shared by every model went back to the card too ("
                      + ", ".join(f"{setting_label(k, short=True)} {setting_text(k, v)}" for k, v in image.items())
                      + ": no longer in use, for any model).")
        settings.reset(model)
    st.session_state[f"{prefix}__msg"] = ("info", f"Settings reset to the model card of {model_name}.{shared}")
    st.rerun()  # the whole page, also from a fragment: the input widgets outside it change too


def reset_models(prefix: str, model_names: list[str]) -> None:
    """Callback: every model named back to its card's settings (Compare's models mode: one click, not a page per
    model), the image settings every model shares too."""
    for name in model_names:
        settings.reset(get_model(name))
    st.session_state[f"{prefix}__msg"] = (
        "info", f"Settings of {', '.join(model_names)} reset to their model cards, the image settings every model "
        "shares too.")


def reset_models_button(prefix: str, models: list[cc.models.CountModel]) -> None:
    """"Reset to the model cards" for several models, enabled while any of them counts with other settings."""
    st.button(
        "Reset to the model cards", key=f"{prefix}_reset_all", on_click=reset_models,
        args=(prefix, [m.name for m in models]), icon=":material/restart_alt:", type="tertiary",
        disabled=not models or all(settings.origin(m)[0] == "card" for m in models),
        help="Every setting of these models back to the values in their cards; the image settings (channel, "
        "invert, nucleus size, normalisation), shared by every model, go back too. On every page.",
    )


def reset_button(prefix: str, model_name: str, **kwargs: Any) -> None:
    """The "Reset to the model card" button (:func:`reset_params`)."""
    st.button(
        "Reset to the model card", key=f"{prefix}_reset", on_click=reset_params, args=(prefix, model_name),
        help="Every setting back to the values in this model's card (as shipped, or as tuned into the card); the "
        "image settings (channel, invert, nucleus size, normalisation), shared by every model, go back too.",
        **kwargs,
    )


def settings_status(model: cc.models.CountModel, prefix: str, *, container: Any = None) -> None:
    """Which settings are in use and where they came from, with the one-click reset."""
    c = container or st
    row = c.container(horizontal=True, vertical_alignment="center")
    # the plane of z-stacks chosen on one page is every page's: said with the settings (else Batch would count
    # plane 2 while its line says "the model card" alone)
    plane = st.session_state.get(PLANE_CHOICE, "first")
    read = "" if plane == "first" else (" · z-stacks: their maximum projection" if plane == "max" else
                                        f" · z-stacks: plane {plane} (0 = the first)")
    row.caption(settings.describe(model) + read + " · the same on Count, Batch, Evaluate and Compare, in this tab, "
                "kept when it reloads (keep them for good with a settings file)")
    with row:
        reset_button(prefix, model.name, icon=":material/restart_alt:", type="tertiary",
                     disabled=settings.origin(model)[0] == "card")
    if note := settings.overridden_note(model):
        c.warning(note, icon=":material/warning:")


def apply_settings(model_name: str, values: dict[str, Any], *, origin: str, detail: str = "",
                   tuned_on: Iterable[str] = ()) -> None:
    """Write ``values`` into the store for ``model_name`` and make it the current model (Apply, a file);
    ``tuned_on``: the digests of the images tuned settings were fitted to."""
    settings.put(get_model(model_name), values, origin=origin, detail=detail, tuned_on=tuned_on)
    settings.set_current_model(model_name)


def settings_json(model_name: str, params: cc.CountParams | dict[str, Any], plane: int | str | None = None, *,
                  output_kind: str | None = None, backend: str | None = None, tuned_on: Iterable[str] | None = None
                  ) -> str:
    """Settings file: ``{"model": ..., "model_sha256": ..., "params": {...}}``, the format the CLI writes and reads
    (--settings),
    with the ``plane`` of z-stacks when one was chosen (a number or "max"). Only the settings that act for the
    model's kind, as the counts CSVs list them: a density model's file naming a threshold and a split mode
    contradicted the page that says nothing changes its count (a file is read back over the card, so the
    others keep their values). ``output_kind``: the model's, when the caller has the model (else it is loaded:
    a model deleted meanwhile would fail). ``backend``: the one the counts ran in (default: the session's for the
    model), as the CLI's files record it, so `count --settings` says when it runs another."""
    from cellcount.settingsfile import settings_text

    if isinstance(params, cc.CountParams) and output_kind is None:
        output_kind = get_model(model_name).output_kind
    elif output_kind is None and params:  # a dict (tuned settings kept in the session)
        try:
            output_kind = get_model(model_name).output_kind
        except cc.CellcountError:  # deleted meanwhile: every setting it had
            output_kind = None
    try:  # the weights' fingerprint, as the CLI's files carry it: counting with weights replaced since warns
        model = get_model(model_name)
    except cc.CellcountError:  # deleted meanwhile
        model = None
    sha = (model.card.sha256 or None) if model is not None else None
    if backend is None and model is not None:
        backend = backend_in_use(model)
    if tuned_on is None and model is not None:  # settings tuned in this session, saved: their images go with them
        now = params.to_dict() if isinstance(params, cc.CountParams) else dict(params)
        tuned_on = settings.tuned_on(model) if now == settings.values(model) else ()
    return settings_text(model_name, params, output_kind, model_sha256=sha, plane=plane, backend=backend,
                         model_card=model.card.counting_digest() if model is not None else None,
                         tuned_on=tuned_on or ())



def _settings_file_key(prefix: str) -> str:
    """The settings uploader's key: a new one after each file is read, so the box is empty again (a file left
    listed after Reset or a model change looks in use, and choosing it again changes nothing)."""
    n = st.session_state.get(f"{prefix}__settings_files_read", 0)
    return f"{prefix}_settings_file" + (f"_{n}" if n else "")


def _apply_settings_file(prefix: str) -> None:
    key = _settings_file_key(prefix)
    uploaded = st.session_state.get(key)
    if uploaded is None:
        return
    st.session_state[f"{prefix}__settings_files_read"] = st.session_state.get(f"{prefix}__settings_files_read", 0) + 1
    data = uploaded.getvalue()
    try:
        overrides = params_from_json(data)
        plane = plane_from_json(data)
        named = model_from_json(data)
        recorded_backend = backend_from_json(data)
    except cc.CellcountError as err:
        st.session_state[f"{prefix}__msg"] = ("error", f"{uploaded.name}: {err}")
        return
    note, kind = "", "success"
    model_name = settings.current_model() or st.session_state.get(f"{prefix}_model")
    switched = ""
    if isinstance(named, str) and named in cc.list_models():
        # a switch is said first: "Model: X." at the end of the line is easily missed
        switched = f"Switched to {named}, the model the file names. " if named != model_name else ""
        model_name, note = named, "" if switched else f" Model: {named}, as the file names it."
        changed = model_changed_from_json(data, get_model(named))
        if changed:  # as `count --settings` warns
            kind = "warning"
            note += f" {named} is not the model the file was saved with: {MODEL_CHANGED[changed]}."
    elif named:
        note = f" The file names model {named!r}, which is not installed; the current model is kept."
    else:  # a bare object of settings (params.to_json() saved from Python): said, as count --settings says it
        note = f" The file names no model: its settings are applied to {model_name}, the model chosen here."
    try:
        cc.resolve_params(get_model(model_name), overrides)
    except cc.CellcountError as err:
        st.session_state[f"{prefix}__msg"] = ("error", f"{uploaded.name}: {err}")
        return
    # over the model card, as `count --settings` reads the file: a partial file would leave earlier edits in place
    # under "loaded from a file", and the app would count other than the command line
    from cellcount.params import has_border_channel, upgrade_keys

    model = get_model(model_name)
    overrides = upgrade_keys(overrides, borders_available=has_border_channel(model))
    card = settings.card_values(model)
    # the image settings every model shares that the file does not name go back to the card's too: said
    dropped = {k: v for k, v in settings.image_values().items() if k not in overrides and v != card.get(k)}
    apply_settings(model_name, {**card, **overrides}, origin="file", detail=uploaded.name)
    if fitted := tuned_on_from_json(data):  # tuned settings saved and loaded again: scores on those images flatter
        settings.remember_tuned(model, fitted)
    running = backend_in_use(model)
    # as `count --settings` notes it; a file of a model not installed here, or naming none, ran another network or
    # an unknown one, so its backend says nothing of this one's counts
    if recorded_backend and running and recorded_backend != running and named == model_name:
        note += (f" The file records counts made with the {recorded_backend} backend; this session runs "
                 f"{running} (Count's Timing tab), so a count may differ by an object (totals within about 0.5%; an image near Split Auto's switch can take the other split).")
    if plane is not None:  # the z-stack plane it was saved with; Count checks it against each file's planes
        set_plane_choice(plane)
        note += f" Z-stacks: {'maximum projection' if plane == 'max' else f'plane {plane}'}."
    st.session_state[SHOWN_MODEL_KEY] = model_name  # announced here, not as a model change
    # as the controls name them ("Exclude edge objects on"), not as the file spells them (exclude_border True)
    differ = [f"{setting_label(k)}: {setting_text(k, overrides[k])}" for k in sorted(overrides) if overrides[k] != card.get(k)]
    shown = ", ".join(differ[:8]) + (f" and {len(differ) - 8} more" if len(differ) > 8 else "")
    # of the settings that act on this model (not "the 2 it does not name" of a density model, on a mask model)
    rest = len(set(cc.resolve_params(model).acting(model.output_kind)) - set(overrides))
    st.session_state[f"{prefix}__msg"] = (
        kind,
        switched
        + f"Loaded {uploaded.name}: "
        + (f"{len(differ)} of the {len(overrides)} setting(s) it names differ from {model_name}'s card ({shown})."
           if differ else f"the {len(overrides)} setting(s) it names are as on {model_name}'s card.")
        + (f" The {rest} acting on {model_name} that it does not name are the card's, as the command line reads the "
           "file" if rest else "")
        + (" (the image settings you had set for every model, " + ", ".join(
            f"{setting_label(k, short=True)} {setting_text(k, v)}" for k, v in dropped.items()) + ", included)"
           if rest and dropped else "") + ("." if rest else "") + note,
    )


def settings_upload(prefix: str, *, container: Any = None) -> None:
    """Uploader for a settings JSON (from this app or the CLI); applied to the store on upload."""
    (container or st).file_uploader(
        "Load settings JSON",
        type=["json"],
        key=_settings_file_key(prefix),
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


def resolve(model: cc.models.CountModel, *parts: dict[str, Any]) -> cc.CountParams:
    """``resolve_params(model, overrides)`` with the parts merged left to right."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return cc.resolve_params(model, merged)
