"""Models in the app: loaded once per process with ``st.cache_resource`` keyed on (name, card version),
shared read-only by every session; the model picker and the models table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount.jobs import JobBoard
from cellcount.models import CLASSICAL_NAME, ModelCard, model_card, size_model_name
from cellcount.models import loading as _loading
from pages import _settings as settings
from pages._ui import CACHE_TTL_S, DELETED_WHERE, pick_one, show_error


def model_version(name: str) -> str:
    """Changes when a model's card is rewritten (retrained or re-fine-tuned weights), so caches pick up the
    new model. Shipped models first, then the user's, as :func:`cellcount.load_model` looks them up."""
    card = next((d / name / "card.json" for d in (_loading.DEFAULT_WEIGHTS_DIR, _loading.user_models_dir())
                 if (d / name / "card.json").is_file()), None)
    if name == CLASSICAL_NAME or card is None:
        return "builtin"
    stat = card.stat()
    return f"{stat.st_mtime_ns}-{stat.st_size}"


@st.cache_resource(max_entries=6, show_spinner="Loading model ...")
def _load_model(name: str, version: str) -> cc.models.CountModel:
    return cc.load_model(name)


def get_model(name: str) -> cc.models.CountModel:
    """The model, loaded once per process and shared (read-only) by every session."""
    return _load_model(name, model_version(name))


def prediction_version(name: str, params: cc.CountParams) -> str:
    """:func:`model_version` of the model and of the size model ``params`` need with it: a mask model's maps
    depend on the size model's estimate too (a user's size model may be replaced under its name)."""
    version = model_version(name)
    size = size_model_name(get_model(name), params)
    return version if size is None else f"{version}+{size}:{model_version(size)}"


def get_size_model(model: cc.models.CountModel, params: cc.CountParams) -> cc.models.CountModel | None:
    """The size model ``params`` need with ``model`` (None when none), from the same shared cache."""
    name = size_model_name(model, params)
    return None if name is None else get_model(name)


# the model last shown on a page sharing the current model: one key for them all, so a change made on one
# page is announced there and not again on the next page visited
SHOWN_MODEL_KEY = "_shared__shown_model"


def model_label(name: str) -> str:
    try:
        card = model_card(name)
    except (cc.CellcountError, OSError, ValueError):
        return name
    # the architecture is in the name already, and the default's kind on the Models page: "(mask, default)" is
    # cut off in the narrow settings column ("unet-mask-varied (mask, defa")
    if name == cc.models.default_model_name():
        return f"{name} (default)"
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
        default=cc.models.default_model_name() if names else None,  # preselected on a first visit
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


FINETUNE_OWNER_KEY = "train__owner"
FINETUNE_WATCHED_KEY = "train__watched"  # (job id, name) of the run this session's pages saw running, until its end is said
FINETUNE_POLL_S = 3.0


@st.cache_resource(max_entries=1)
def finetune_board() -> JobBoard:
    """One fine-tune board per app process, shared by the sessions: one fine-tune runs at a time (the Train page)."""
    return JobBoard()


def finetune_owner() -> str:
    """This browser session's id on the fine-tune board (kept in session state, so page switches keep it)."""
    return st.session_state.setdefault(FINETUNE_OWNER_KEY, uuid.uuid4().hex)


def finetune_watch(prefix: str) -> None:
    """On a page with a model picker, while this session's fine-tune runs: a poll that draws the page again when the
    run ends, so that its model is in the list at once, and a notice of the end, said once (the Train page, which
    shows the outcome itself, takes the notice back: :func:`finetune_seen`)."""
    job = finetune_board().get(st.session_state[FINETUNE_OWNER_KEY]) if FINETUNE_OWNER_KEY in st.session_state else None
    s = job.snapshot() if job is not None else None
    watched = st.session_state.get(FINETUNE_WATCHED_KEY)
    if s is not None and s.running:
        st.session_state[FINETUNE_WATCHED_KEY] = (job.job_id, s.name)

        @st.fragment(run_every=FINETUNE_POLL_S)
        def poll() -> None:
            if not job.snapshot().running:
                st.rerun(scope="app")  # the page again: its model list, and the notice below

        poll()
    elif watched is not None:  # a run seen here has ended since
        st.session_state.pop(FINETUNE_WATCHED_KEY, None)
        if s is None or job.job_id != watched[0]:  # cleared on Train, whose outcome the user saw: nothing to add
            return
        text = (f"Fine-tuning finished: {s.name} is in the model list." if s.status == "done"
                else f"Fine-tuning {s.name} ended without a new model: see the Train page.")
        st.session_state[f"{prefix}__msg"] = ("toast", text)


def finetune_seen(job_id: str) -> None:
    """The Train page showed this run's outcome: no other page repeats it."""
    if (st.session_state.get(FINETUNE_WATCHED_KEY) or (None,))[0] == job_id:
        st.session_state.pop(FINETUNE_WATCHED_KEY, None)


def pick_model(prefix: str, *, container: Any = None) -> tuple[str, cc.models.CountModel]:
    """:func:`model_picker` + the loaded model; a load error stops the page. A model change is announced
    with what happens to the settings."""
    finetune_watch(prefix)
    name = model_picker(prefix, container=container)
    st.session_state.pop(f"{prefix}__gone", None)
    try:
        model = get_model(name)
    except cc.CellcountError as err:
        show_error(err)
        st.stop()
    shown_key = SHOWN_MODEL_KEY
    shown = st.session_state.get(shown_key)
    if shown is not None and shown != name:
        # known first: origin() makes the model's entry; the image settings are said apart below
        own = settings.origin(model, image=False)[0] if settings.known(name) else "card"
        if own != "card":
            what = f"your settings for {name} ({settings.ORIGINS[own]}) are kept"
        else:
            what = "its settings come from its model card"
        try:  # the settings left behind are kept too: said, so a switch back is no surprise
            left = settings.origin(get_model(shown), image=False)[0] if settings.known(shown) else "card"
        except cc.CellcountError:
            left = "card"
        if left != "card":
            what += f"; your settings for {shown} stay with it for when you switch back"
        if shown not in cc.list_models():  # deleted meanwhile (Models page, another tab): said where it stays
            st.session_state[f"{prefix}__gone"] = shown  # for this run: a button pressed in it must not act
            st.session_state[f"{prefix}__msg"] = (
                "warning",
                f"{shown} is no longer installed (deleted {DELETED_WHERE}), so this page "
                f"now uses {name}: {what}. Results shown below are {name}'s.",
            )
        else:
            st.session_state[f"{prefix}__msg"] = (
                "toast",
                f"Model changed from {shown} to {name}: {what}. {settings.image_settings_note(name)}",
            )
    st.session_state[shown_key] = name
    note = model.card.extra.get("guide_note") if isinstance(model.card.extra, dict) else None
    if note:  # what to know before trusting its counts (the Models page's guide shows the same)
        (container or st).caption(f"{name}: {note}.")
    settings.values(model)  # creates its entry from the card when new
    return name, model


def model_gone_now(prefix: str) -> str | None:
    """The model this page used until this run when it was deleted meanwhile (another tab, the command line) and
    :func:`pick_model` put another in its place: a button pressed in this same run acted with the replacement
    before the user could see it (Batch counted two images with the default model for a deleted fine-tune)."""
    return st.session_state.get(f"{prefix}__gone")


def validation_metrics(card: ModelCard, key: str = "validation") -> dict[str, Any]:
    """The card's validation summary with its default settings (``key="validation_fixed_size"``: with
    ``auto_nucleus_size`` off, for a model whose default has it on)."""
    m = card.metrics.get(key, {}) if isinstance(card.metrics, dict) else {}
    return m if isinstance(m, dict) else {}


def models_frame_columns() -> dict[str, Any]:
    """``column_config`` for :func:`models_frame` (formats and help)."""
    return {
        "val MAE": st.column_config.NumberColumn(format="%.2f", help="Count MAE on validation images the model never "
                                                 "trained on (DSB's held-out 98, or their validation half's 53: see "
                                                 "'val images'), card defaults"),
        "val MAE, no size estimate": st.column_config.NumberColumn(
            format="%.2f", help="The same with auto_nucleus_size off (models whose default has it on)"),
        "val F1@0.5": st.column_config.NumberColumn(format="%.3f", help="Instance F1 at IoU 0.5"),
        "val images": st.column_config.NumberColumn(
            format="%d", help="How many validation images the figures come from: compare only figures on the same "
            "number (the same images)"),
        "role": st.column_config.TextColumn(width=170, help="The default model (preselected on every page), or "
                                            "the model a fine-tune started from"),
        "your held-out MAE": st.column_config.NumberColumn(
            format="%.2f", help="A fine-tuned model's count MAE on the images of yours it held out (its base's on "
            "the same images: Models page); few images say little"),
        "held-out images": st.column_config.NumberColumn(format="%d"),
    }


def models_frame(names: Iterable[str]) -> pd.DataFrame:
    """One row per model from its card: which is the default or fine-tuned from which, kind, architecture,
    validation MAE / F1, and a fine-tune's MAE on the user's held-out images (its only measure: "—" here would
    contradict the Models page's figure)."""
    rows = []
    default = cc.models.default_model_name()
    for name in names:
        try:
            card = model_card(name)
        except (cc.CellcountError, OSError, ValueError) as err:
            rows.append({"model": name, "kind": "?", "architecture": f"card unreadable: {err}"})
            continue
        m = validation_metrics(card)
        held = validation_metrics(card, "holdout_after")
        base = card.training.get("finetuned_from") if isinstance(card.training, dict) else None
        rows.append(
            {
                "model": name,
                "role": "; ".join([*(["default"] if name == default else []),
                                   *([f"fine-tuned from {base['name']}"] if isinstance(base, dict) and base.get("name")
                                     else [])]),
                "kind": card.output_kind,
                "architecture": card.architecture,
                "val MAE": m.get("mae"),
                "val MAE, no size estimate": validation_metrics(card, "validation_fixed_size").get("mae"),
                "val F1@0.5": m.get("f1"),
                "val images": m.get("n"),
                "your held-out MAE": held.get("mae"),
                "held-out images": held.get("n"),
                "description": card.description,
            }
        )
    return pd.DataFrame(rows)


@st.cache_data(max_entries=8, ttl=CACHE_TTL_S, show_spinner=False)
def _trained_on(name: str, version: str, set_key: str, _images: list[tuple[str, bytes]]) -> list[str]:
    return cc.models.with_base_training(get_model(name).card).trained_on(_images)


def trained_on_names(model: cc.models.CountModel, images: Iterable[tuple[str, bytes]], set_key: str) -> list[str]:
    """The names of ``images`` that ``model`` learnt from (its error there is optimistic); checked once per image
    set (``set_key``: its digest) and model version, not on every slider move."""
    return _trained_on(model.name, model_version(model.name), set_key, list(images))
