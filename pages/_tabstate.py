"""A tab's settings kept across a reload and an app restart.

Not a page. Streamlit's session state lives in the server's memory and ends with the browser's connection: a
reload (F5) or a restarted app starts a new session, which read the model cards again without a word while the
page showed the user's edited or tuned settings a moment before. Each tab's address carries a random token
(``?tab=...``); the settings store, the z-stack choice and the backend forced are written under it to the user's
data folder when they change (a visit that changes nothing writes no file), and a new session of that address reads
them back and says so; a file this app cannot use is said and replaced by the model cards' settings. A new tab (another
address) starts from the model cards, as before; whoever opens the address (a duplicated tab, a link sent to a
colleague) shares its state, and the last change is the one kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import streamlit as st

from cellcount import history
from cellcount.csvout import atomic_write_bytes
from pages._image_ui import BACKEND_KEY, PLANE_CHOICE
from pages._settings import STORE_KEY

TAB_PARAM = "tab"
"""The address's query parameter that names the tab's saved state."""
KEPT_KEYS = (STORE_KEY, PLANE_CHOICE, BACKEND_KEY)
"""Session state kept for a tab: the settings per model (with where they came from), the plane of z-stacks, the
backend forced on the Timing tab."""
KEPT_DAYS = 30
"""A tab's saved state older than this is deleted (the next time any tab saves)."""
_TOKEN_KEY = "_tab_token"
_SAVED_KEY = "_tab_saved"  # the digest of what was last written, so an unchanged state is not written again
_RESTORED_KEY = "_tab_restored"
_UNREAD_KEY = "_tab_unread"
_PRUNED_KEY = "_tab_pruned"
_TOKEN = re.compile(r"[0-9a-f]{16}")


def folder() -> Path:
    """Where tabs' states are kept: ``tabs/`` in the cellcount data folder (beside the run history)."""
    return history.data_dir() / "tabs"


def _path(token: str) -> Path:
    return folder() / f"{token}.json"


def start() -> None:
    """Call first thing in every run: give the tab its token (in the address), and on a new session of an address
    that has one, read its saved state back (once)."""
    ss = st.session_state
    if _TOKEN_KEY not in ss:
        given = st.query_params.get(TAB_PARAM, "")
        if _TOKEN.fullmatch(given or ""):
            ss[_TOKEN_KEY] = given
            _restore(given)
        else:
            ss[_TOKEN_KEY] = secrets.token_hex(8)
    if st.query_params.get(TAB_PARAM) != ss[_TOKEN_KEY]:  # page links and switches drop the address's parameters
        st.query_params[TAB_PARAM] = ss[_TOKEN_KEY]


def _restore(token: str) -> None:
    path = _path(token)
    if not path.is_file():
        return  # never saved (a tab that changed nothing) or deleted: the model cards, as a new tab
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        why = _unusable(data)
    except (OSError, ValueError) as err:
        why = f"it cannot be read ({type(err).__name__})"
    if why:  # a damaged or hand-edited file: said, and the model cards (never half of it, nor a page that fails)
        st.session_state[_RESTORED_KEY] = None
        st.session_state[_UNREAD_KEY] = why
        return
    restored = [key for key in KEPT_KEYS if key in data and key not in st.session_state]
    for key in restored:
        st.session_state[key] = data[key]
    if restored:
        st.session_state[_SAVED_KEY] = _digest(_snapshot())
        st.session_state[_RESTORED_KEY] = data.get("saved_at", "")


def _unusable(data: Any) -> str | None:
    """Why a saved tab state cannot be used as the pages use it, or None."""
    from cellcount.models.autotune import CHOICES

    if not isinstance(data, dict):
        return "it holds no settings"
    store = data.get(STORE_KEY, {"models": {}, "image": {}, "edited_image": [], "model": None})
    if (not isinstance(store, dict) or not isinstance(store.get("models"), dict)
            or not isinstance(store.get("image"), dict) or not isinstance(store.get("edited_image"), list)
            or not (store.get("model") is None or isinstance(store.get("model"), str))
            or "model" not in store):
        return "its settings are not laid out as this app writes them"
    for name, entry in store["models"].items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("values"), dict)
                or not isinstance(entry.get("card"), str) or not isinstance(entry.get("origin"), str)):
            return f"the settings of {name} are not laid out as this app writes them"
    plane = data.get(PLANE_CHOICE, "first")
    if not (plane in ("first", "max") or (isinstance(plane, int) and not isinstance(plane, bool) and plane >= 0)):
        return f"its z-stack choice {plane!r} is none this app offers"
    if data.get(BACKEND_KEY, "auto") not in CHOICES:
        return f"its backend {data.get(BACKEND_KEY)!r} is none this app offers"
    return None


def restored_note() -> tuple[str, bool] | None:
    """Once, after a session read its tab's saved state back (or could not): what happened, for the page to say, and
    whether it went well."""
    if why := st.session_state.pop(_UNREAD_KEY, None):
        return (f"The settings saved for this address could not be used ({why}): this tab starts from the model "
                "cards, which are saved for it from now on.", False)
    when = st.session_state.pop(_RESTORED_KEY, None)
    if when is None:
        return None
    return (f"The settings last saved for this address are back{f' ({when})' if when else ''}: a reload or an app "
            "restart starts a new session, and the address (its ?tab=...) keeps them. Whoever opens this address "
            "shares them: a link you send carries them, and a change there changes yours; a new tab starts from the "
            "model cards.", True)


def _snapshot() -> dict[str, Any]:
    return {key: st.session_state[key] for key in KEPT_KEYS if key in st.session_state}


def _digest(snapshot: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True, default=_plain).encode()).hexdigest()


def _as_new(snapshot: dict[str, Any]) -> bool:
    """Whether a tab's state is what a new tab starts with: every model on its card, no image setting, the first
    plane of z-stacks, the backend measured fastest."""
    store = snapshot.get(STORE_KEY) or {}
    return (all(entry.get("origin") == "card" and not entry.get("detail") for entry in store.get("models", {}).values())
            and not store.get("image") and not store.get("edited_image")
            and snapshot.get(PLANE_CHOICE, "first") == "first" and snapshot.get(BACKEND_KEY, "auto") == "auto")


def _plain(value: Any) -> Any:
    """A numpy number (a tuned setting) as the Python number it is; anything else as its text."""
    return value.item() if hasattr(value, "item") else str(value)


def save() -> None:
    """Call at the end of every run (also one a rerun or stop ends): write the tab's state where it changed."""
    token = st.session_state.get(_TOKEN_KEY)
    snapshot = _snapshot()
    if not token or not snapshot:
        return
    digest = _digest(snapshot)
    if st.session_state.get(_SAVED_KEY) == digest:
        return
    if _as_new(snapshot) and not _path(token).is_file():
        st.session_state[_SAVED_KEY] = digest  # a visit that changed nothing leaves no file
        return
    body = json.dumps({**snapshot, "saved_at": time.strftime("%Y-%m-%d %H:%M", time.localtime())}, sort_keys=True,
                      default=_plain)
    try:
        folder().mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(_path(token), body.encode("utf-8"))  # a reader (a reload) never sees half a file
    except OSError:
        return  # a read-only or full data folder: the session keeps its settings in memory, as it always did
    st.session_state[_SAVED_KEY] = digest
    if not st.session_state.get(_PRUNED_KEY):  # once a session: a slider's every move saves
        st.session_state[_PRUNED_KEY] = True
        _prune()


def _prune() -> None:
    cutoff = time.time() - KEPT_DAYS * 86400
    try:
        for path in folder().glob("*.json"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
    except OSError:
        pass
