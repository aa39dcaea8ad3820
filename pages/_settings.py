"""The session's one set of settings: resolved parameter values per model, read and written by every page.

Lives under one plain ``st.session_state`` key, not in widget state, so Streamlit never drops it (widget
state is dropped or reset when a widget is not drawn in a run, e.g. while an upload is being replaced).
Widgets are views of it: they are drawn from it and write to it in their ``on_change`` callbacks.

Per model: the model's own fields (threshold, split mode ...) and where they came from. Shared by all
models: the fields that describe the image rather than the model (channel, invert, percentiles, nucleus
diameter, pixel size), so they survive a model change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import streamlit as st

import cellcount as cc
from cellcount.params import PARAM_NAMES, SCHEMA, has_border_channel, upgrade_keys

STORE_KEY = "_settings"
IMAGE_FIELDS = (
    *(f for f in cc.CountParams.INPUT_FIELDS if f != "auto_nucleus_size"),  # a card says if it was tuned with it
    "pixel_size_um",
)
ORIGINS = {
    "card": "the model card",
    "tuned": "tuned on your data",
    "edited": "edited",
    "file": "loaded from a file",
    "run": "a past run",
}
STARTED_FROM = {  # "edited (starting from ...)"
    "card": "the model card",
    "tuned": "the settings tuned on your data",
    "edited": "your edits",
    "file": "a settings file",
    "run": "a past run's settings",
}


def _label(name: str) -> str:
    from cellcount.params import setting_label

    return setting_label(name, short=True)


def _state() -> dict[str, Any]:
    ss = st.session_state
    if STORE_KEY not in ss:
        # "edited_image": the image fields changed by hand since the last reset / applied settings
        ss[STORE_KEY] = {"models": {}, "image": {}, "edited_image": [], "model": None}
    return ss[STORE_KEY]


def card_values(model: cc.models.CountModel) -> dict[str, Any]:
    """The model card's resolved settings (CountParams defaults < card.postprocess)."""
    return cc.resolve_params(model).to_dict()


def _card_identity(model: cc.models.CountModel) -> str:
    """Changes when a model is replaced under its name (deleted and trained again, its card rewritten)."""
    card = getattr(model, "card", None)
    if card is None:
        return ""
    return f"{card.sha256}|{json.dumps(card.postprocess, sort_keys=True, default=str)}"


def _entry(model: cc.models.CountModel) -> dict[str, Any]:
    models = _state()["models"]
    identity = _card_identity(model)
    before = models[model.name].get("card", "") if model.name in models else identity
    replaced = before != identity
    if model.name not in models or replaced:
        # settings tuned, loaded or edited for the weights that had this name would count the new ones silently
        card = card_values(model)
        own = {k: v for k, v in card.items() if k not in IMAGE_FIELDS}
        models[model.name] = {
            "values": own,
            "card_values": dict(own),  # what "its own settings" are measured from where the model is not at hand
            "origin": "card",
            "detail": ("" if not replaced else
                       "the model was replaced under this name since its earlier settings were set: these are the "
                       "new card's" if before.split("|")[0] != identity.split("|")[0] else
                       "its card's settings were rewritten since the earlier settings were set: these are the new card's"),
            "card": identity,
        }
    return models[model.name]


def known(model_name: str) -> bool:
    """Whether this session already holds settings for ``model_name``."""
    return model_name in _state()["models"]


def values(model: cc.models.CountModel) -> dict[str, Any]:
    """Every parameter's value for ``model`` (its own fields + the shared image fields)."""
    image = _state()["image"]
    card = None
    out = dict(_entry(model)["values"])
    for name in IMAGE_FIELDS:
        if name in image:
            out[name] = image[name]
        else:
            card = card or card_values(model)
            out[name] = card[name]
    return out


def params(model: cc.models.CountModel) -> cc.CountParams:
    """The settings in use for ``model`` as CountParams (raises ParameterError if they are invalid)."""
    return cc.resolve_params(model, values(model))


def put(model: cc.models.CountModel, new: dict[str, Any], *, origin: str, detail: str = "",
        tuned_on: Iterable[str] = ()) -> None:
    """Set several values at once (tuned settings, a settings file, reset) and record where they came from;
    ``tuned_on``: the digests of the images tuned settings were fitted to (:func:`tuned_on`).

    Old keys (``watershed``, ``use_border_channel``) are upgraded for this model first.
    """
    new = upgrade_keys(new, borders_available=has_border_channel(model))
    entry = _entry(model)
    card = card_values(model)
    for name, value in new.items():
        if name in IMAGE_FIELDS:
            # shared only where it departs from this model's card: the card's own reading of the image (a
            # fine-tuned card's fixed invert and diameter, say) is not a decision about the image that every
            # other model must follow (Apply of unet-density's tuned settings would make a fine-tune count at
            # another model's diameter instead of its own)
            if value == card[name]:
                _state()["image"].pop(name, None)
            else:
                _state()["image"][name] = value
            if name in _edited_image():
                _edited_image().remove(name)  # now from ``origin``
        elif name in PARAM_NAMES:
            entry["values"][name] = value
    entry["origin"], entry["detail"] = origin, detail
    entry["tuned_on"] = sorted(set(tuned_on)) if origin == "tuned" else []
    if entry["tuned_on"]:  # remembered by value (every setting, the image's too): reopened from a run, they are these
        remember_tuned(model, entry["tuned_on"])


def remember_tuned(model: cc.models.CountModel, digests: Iterable[str]) -> None:
    """The settings in use for ``model`` were tuned on the images of ``digests`` (a settings file that says so)."""
    kept = _state().setdefault("tuned_sets", {}).setdefault(model.name, [])
    kept[:] = [*kept[-(TUNED_SETS_KEPT - 1):], (values(model), sorted(set(digests)))]


TUNED_SETS_KEPT = 5
"""The settings of the last few Applies per model remembered by value (:func:`tuned_on`)."""


def tuned_on(model: cc.models.CountModel) -> set[str]:
    """The digests of the images the settings in use for ``model`` were tuned on (Evaluate's Optimise, then
    Apply), edited since or not; empty for settings from anywhere else. Scores on those images flatter them."""
    entry = _entry(model)
    if entry["origin"] == "tuned" or entry["detail"] == f"starting from {STARTED_FROM['tuned']}":
        return set(entry.get("tuned_on", ()))
    # the values of settings tuned in this session, come back another way (a past run's, a settings file): they fit
    # those images all the same
    now = values(model)
    return {d for tuned, digests in _state().get("tuned_sets", {}).get(model.name, []) if tuned == now for d in digests}


def edit(model: cc.models.CountModel, name: str, value: Any) -> None:
    """One value changed by hand (a widget)."""
    if name in IMAGE_FIELDS:  # shared by every model: each model's settings now read as edited
        image = _state()["image"]
        card = card_values(model).get(name)
        # the value in use already (the card's while none was set): a control sending what it showed is no edit
        # (a channel control made for a new number of channels sends "all channels" back: no edit, nothing changed)
        if image.get(name, card) == value:
            return
        if value == card and name in _edited_image():  # set back by hand: the card's again, no longer an edit
            image.pop(name, None)
            _edited_image().remove(name)
            return
        image[name] = value
        if name not in _edited_image():
            _edited_image().append(name)
        return
    entry = _entry(model)
    if entry["values"].get(name) == value:
        return
    if entry["origin"] != "edited":  # where the edits start: undone by hand, the settings are these again
        entry["base"] = {"values": dict(entry["values"]), "origin": entry["origin"], "detail": entry["detail"]}
    entry["values"][name] = value
    base = entry.get("base")
    if entry["origin"] == "edited" and base is not None and entry["values"] == base["values"]:
        # every edit undone by hand: the card's, tuned or loaded settings again, with what goes with them (tuned
        # ones keep the images they were tuned on, for the in-sample warnings)
        entry["origin"], entry["detail"] = base["origin"], base["detail"]
    elif entry["origin"] != "edited":
        entry["detail"] = f"starting from {STARTED_FROM[entry['origin']]}"
        entry["origin"] = "edited"


def image_values() -> dict[str, Any]:
    """The image settings set for every model (channel, invert, nucleus size ...), by name: a copy."""
    return dict(_state()["image"])


def reset(model: cc.models.CountModel) -> None:
    """Back to the model card (the image fields too)."""
    _state()["models"].pop(model.name, None)
    _state()["image"].clear()
    _edited_image().clear()
    _entry(model)


def _edited_image() -> list[str]:
    return _state().setdefault("edited_image", [])


def _image_changes(model: cc.models.CountModel) -> list[str]:
    """The image fields that make ``model``'s settings read as edited: those changed by hand, and, while its
    own settings are its card's, those that settings applied for another model set off this card's values
    (the image fields are shared)."""
    changed = list(_edited_image())
    image = _state()["image"]
    if image and _entry(model)["origin"] == "card":
        card = card_values(model)
        changed += [n for n in IMAGE_FIELDS if n in image and image[n] != card[n] and n not in changed]
    return changed


def _own_changes(model: cc.models.CountModel, most: int = 4) -> str:
    """"Probability threshold: 0.5, Split touching nuclei: Model borders": the model's own settings (not the image
    fields) that differ from its card, as the app shows them; "" when none. Edited from tuned, loaded or past-run
    settings: those that differ from them, the edits (tuned values listed first would hide the edit behind "1 more")."""
    entry = _entry(model)
    base = entry.get("base")
    if entry["origin"] == "edited" and base is not None and base["origin"] != "card":
        return changes_text(base["values"], entry["values"], most=most)
    return changes_text(card_values(model), entry["values"], most=most)


def changes_text(before: dict[str, Any], after: dict[str, Any], *, most: int = 4, sep: str = ": ") -> str:
    """The settings of ``after`` that differ from ``before`` (names in both), short labels and values as the app shows
    them ("Probability threshold: 0.5, Min. area: 40, 2 more"); "" when none."""
    from cellcount.params import setting_text

    changed = [f"{_label(n)}{sep}{setting_text(n, v)}" for n, v in after.items() if n in before and before[n] != v]
    if len(changed) > most:
        changed = [*changed[:most], f"{len(changed) - most} more"]
    return ", ".join(changed)


def image_settings_note(model_name: str) -> str:
    """What a change to ``model_name`` does to the image settings, in words: those set by hand apply to every
    model and are named; the others follow the new model's card (saying they all "stay as they were" would hide
    invert and the nucleus size changing to the new card's)."""
    from cellcount.params import setting_text

    image = _state()["image"]
    if not image:
        return f"Image settings (invert, nucleus size ...) follow {model_name}'s card."
    kept = ", ".join(f"{_label(n)} {setting_text(n, v)}" for n, v in image.items())
    return f"The image settings you set ({kept}) stay as they were; the others follow {model_name}'s card."


def card_reading_overridden(model: cc.models.CountModel) -> list[tuple[str, Any, Any]]:
    """(field, the card's value, the value in use) for each image field the model's card sets itself (a fine-tune
    fixes its set's invert and nucleus diameter) that the shared image settings override: the count is then not
    the one the card was made for."""
    own = model.card.postprocess if isinstance(model.card.postprocess, dict) else {}
    image = _state()["image"]
    card = None
    out = []
    for name in IMAGE_FIELDS:
        # a value the card states, not one that means "not set" (invert None is auto, diameter 0 is not given)
        if own.get(name) is not None and own.get(name) != SCHEMA[name].off and name in image:
            card = card or card_values(model)
            if image[name] != card[name]:
                out.append((name, card[name], image[name]))
    return out


def overridden_note(model: cc.models.CountModel) -> str | None:
    """A warning, in words, when :func:`card_reading_overridden` finds anything, else None."""
    from cellcount.params import setting_text

    found = card_reading_overridden(model)
    if not found:
        return None
    card = ", ".join(f"{_label(n)} {setting_text(n, c)}" for n, c, _ in found)
    used = ", ".join(f"{_label(n)} {setting_text(n, u)}" for n, _, u in found)
    return (f"{model.name}'s card reads images with {card}, and the settings in use say {used} (changed here or "
            "applied for another model): its counts may be far off. Reset to the model card to count as it was made to.")


def origin(model: cc.models.CountModel, *, image: bool = True) -> tuple[str, str]:
    """(origin key, detail) of ``model``'s settings: "edited" too when an image field (channel, invert,
    nucleus diameter ...) differs (:func:`_image_changes`), as those apply to every model (``image=False``:
    its own fields' origin only)."""
    entry = _entry(model)
    if image and _image_changes(model) and entry["origin"] != "edited":
        return "edited", f"starting from {STARTED_FROM[entry['origin']]}"
    return entry["origin"], entry["detail"]


def short_label(model: cc.models.CountModel) -> str:
    """``model``'s name, with what its settings change from the card where they do ("unet-mask (edited: Min. area
    30)"), so that a comparison's rows and CSV tell a setting's error from the model's."""
    key, _ = origin(model)
    if key == "card":
        return model.name
    own = changes_text(card_values(model), _entry(model)["values"], most=2, sep=" ")
    changes = [c for c in (own, _image_changes_text(model)) if c]
    return f"{model.name} ({ORIGINS[key]}{': ' + '; '.join(changes) if changes else ''})"


def _image_changes_text(model: cc.models.CountModel) -> str:
    """The image settings changed by hand with their values ("Channel 4"), or "": a comparison's CSV said "(edited:
    Channel)", leaving which channel to guess."""
    from cellcount.params import setting_text

    now = values(model)
    return ", ".join(f"{_label(name)} {setting_text(name, now[name])}" for name in _image_changes(model))


def describe(model: cc.models.CountModel) -> str:
    """One line: which settings are in use and where they came from (naming the image settings changed by hand)."""
    key, detail = origin(model)
    text = f"Settings of **{model.name}**: {ORIGINS[key]}"
    # what differs from the card, edited, tuned or loaded, also where its control is folded away (Apply after Optimise
    # lists its changes as an edit does, not "tuned on your data" alone)
    if origin(model, image=False)[0] != "card" and (own := _own_changes(model)):
        detail = f"{detail}; {own}" if detail else own
    if changed := _image_changes_text(model):  # with their values: a channel chosen for one image applies to every image
        detail = f"{detail}; Input changed: {changed}" if detail else f"Input changed: {changed}"
    line = f"{text} ({detail})" if detail else text
    if key == "card" and (kept := _kept_elsewhere(model.name)):  # tuned ones would vanish from the line, unsaid
        line += f"; {kept}"
    return line


def _kept_elsewhere(name: str) -> str:
    """What other models keep of their own (tuned, loaded, edited) for when they are chosen again, or ""."""
    others = [(n, e["origin"]) for n, e in _state()["models"].items()
              if n != name and e.get("origin", "card") != "card" and e["values"] != e.get("card_values", e["values"])]
    if not others:
        return ""
    kept = {"tuned": "its settings tuned on your data", "file": "its settings from a file",
            "run": "a past run's settings", "edited": "your edits"}
    shown = ", ".join(f"{n} keeps {kept.get(o, 'its settings')}" for n, o in others[:2])
    return f"{shown}{' ...' if len(others) > 2 else ''} for when it is chosen again"


def current_model(default: str | None = None) -> str | None:
    """The model last chosen on any page (pages share it, so settings tuned on one are used on the next)."""
    return _state()["model"] or default


def set_current_model(name: str) -> None:
    _state()["model"] = name
