"""Page basics shared by every page: paths, the entry point, errors, progress, tables and downloads.

Not a page (``st.navigation`` lists the pages explicitly); compute stays in :mod:`cellcount`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from cellcount.errors import ImageTooLargeError
from cellcount.io.files import MICROSCOPE_EXTENSIONS
from cellcount.io.read import OVER_CAP_HINT, PIXEL_CAP_TEXT

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = ROOT / "data" / "samples"
IMAGE_TYPES = ["png", "jpg", "jpeg", "tif", "tiff", "bmp"]
MICROSCOPE_TYPES = sorted(e.lstrip(".") for e in MICROSCOPE_EXTENSIONS)
"""Accepted by the image uploaders only to be refused by name with what to do (export as TIFF): a browser
turns them away with "files are not allowed" otherwise, and Batch's table would never list them."""
MICROSCOPE_HELP = ("The microscope formats in the list (CZI, ND2, LIF, ...) are not read: a file of one is named with how "
                   "to export it as TIFF (Fiji: File > Save As > Tiff), which is read.")
"""Said by the image uploaders, whose list of accepted types names those formats as if they were read."""
CACHE_TTL_S = 3600
PERSIST = "session"  # widget values survive visits to other pages

TOO_LARGE_HINT = f"Crop it first (Fiji: Image > Crop). On the command line, {OVER_CAP_HINT}"
"""Said with the reader's refusal of an image above the pixel cap: the cap alone does not say what to do."""

ENTRY_FLAG = "_app_entry"
GOTO_KEY = "_app_goto"


DELETED_WHERE = "on the Models page, here, in another tab or by another user of this server"
"""Where a trained model the page was using can have been deleted (every user of the server shares the models)."""
ELSEWHERE = "elsewhere"
"""Who stopped a batch or a fine-tune from a tab that did not start it (the one that did is told so)."""
STOPPED_ELSEWHERE = ", from a tab or browser other than the one that started it"
STARTED_ELSEWHERE = ("started in another tab or browser (yours, or someone else's on this app's server), or in this tab "
                     "before it was reloaded")


def stop_elsewhere(job: Any, confirm_key: str) -> None:
    """Stop a job (a batch, a fine-tune) this session did not start, and untick its confirmation ``confirm_key``: the
    next such job asks again."""
    st.session_state.pop(confirm_key, None)
    job.cancel(by=ELSEWHERE)


def require_entry_point(page: str) -> None:
    """Send a deep link through ``streamlit_app.py`` (call first thing in each page).

    When the very first request to a fresh server is a deep link (``/count``), Streamlit runs the page in
    its legacy ``pages/`` mode, without ``streamlit_app.py`` (no navigation, no page config). The page
    then redirects to the entry point, which remembers the target and switches back to it.
    """
    if not st.session_state.get(ENTRY_FLAG):
        st.session_state[GOTO_KEY] = page
        # with the address's parameters: the tab's token (pages/_tabstate.py), which a restarted app's first
        # request, a deep link, brings to get the tab's settings back
        st.switch_page(str(ROOT / "streamlit_app.py"), query_params=st.query_params.to_dict())


def show_error(err: BaseException, where: Any = None, *, name: str | None = None) -> None:
    """Show a library error as a message (no traceback); ``name``: the uploaded file's name, for errors about
    bytes read from memory (which the library can only call ``<bytes>``)."""
    text = str(err).replace("<bytes>", name) if name else str(err)
    if isinstance(err, ImageTooLargeError) and text.endswith(PIXEL_CAP_TEXT):  # what to do, not only what is wrong
        text += f". {TOO_LARGE_HINT}"
    (where or st).error(text, icon=":material/error:")


def progress_callback(bar, label: str) -> Callable[[int, int], None]:
    """``progress(done, total)`` for the library, drawing on an ``st.progress`` element."""

    def update(done: int, total: int) -> None:
        frac = min(max(done / total, 0.0), 1.0) if total else 1.0
        bar.progress(frac, text=f"{label}: {done} / {total}")

    return update


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


FLAG_WORD = "⚠ check"
"""A flagged count in the tables: a word, where a read-only tick looked like a disabled control, the least visible
column of the table that says not to trust a count (and in the dark theme a grey box on grey)."""


def flag_words(values: pd.Series) -> pd.Series:
    """The quality flag column (bool, or NaN where nothing was counted) as the tables show it: :data:`FLAG_WORD` or
    empty."""
    return values.map(lambda v: FLAG_WORD if isinstance(v, (bool, int, float)) and v == v and bool(v) else "")


def flag_column(label: str, width: int, help: str) -> Any:
    """The column config of :func:`flag_words`'s column."""
    return st.column_config.TextColumn(label, width=width, help=help)


def dataframe(df: pd.DataFrame, *, container: Any = None, **kwargs: Any) -> Any:
    """``st.dataframe`` without the index, missing values shown as a dash."""
    return (container or st).dataframe(df, hide_index=True, placeholder="—", **kwargs)


DENSITY_PEAKS_NOTE = (
    "A density model counts by its map's integral; F1, precision and recall check its peaks (approximate centres) "
    "against your dots within 5 px: cells in clumps share a peak, so these can show misses where the count is right."
)
"""Under a density model's object-match figures (Evaluate, Train)."""


CSV_HELP = ("Comma separated with decimal points, in UTF-8. An Excel set to ';' lists (German, French ...) puts each "
            "row in one cell on a double click: open it with Data > From Text/CSV instead.")


def download_button(
    label: str, data: Any, file_name: str, mime: str, key: str, *, container: Any = None, **kwargs: Any
) -> None:
    """Download button that does not rerun the page; a CSV's says how it opens in an Excel set to ';' lists."""
    if mime == "text/csv":
        kwargs.setdefault("help", CSV_HELP)
    (container or st).download_button(
        label, data, file_name, mime, key=key, on_click="ignore", icon=":material/download:", **kwargs
    )


def number_formats(columns: Iterable[str], fmt: str) -> dict[str, Any]:
    """``column_config`` giving these columns the printf-style format ``fmt``."""
    return {c: st.column_config.NumberColumn(format=fmt) for c in columns}


def show_messages(prefix: str, container: Any = None) -> None:
    msg = st.session_state.pop(f"{prefix}__msg", None)
    if msg:
        kind, text = msg
        if kind == "toast":  # a passing notice: a message in the page would stay through later slider moves
            st.toast(text, icon=":material/info:", duration="long")
        else:
            getattr(container or st, kind)(text)


def csv_bytes(df: pd.DataFrame) -> bytes:
    """Formula-safe CSV bytes for a download: :func:`cellcount.csvout.csv_bytes`."""
    from cellcount.csvout import csv_bytes as _csv_bytes

    return _csv_bytes(df)


def fixed(value: float, digits: int = 2, *, sign: bool = False) -> str:
    """:func:`cellcount.metrics.fixed`: halves rounded away from zero, as the tables in the browser round them."""
    from cellcount.metrics import fixed as _fixed

    return _fixed(value, digits, sign=sign)


def stem(name: str) -> str:
    return Path(name).stem or "image"


# ------------------------------------------------------------------------------- uploads kept on return
MAX_KEPT_BYTES = 200 * 1024 * 1024
"""Uploads up to this size are kept for the session, to show again after a visit to another page."""
MAX_UNDO_BYTES = 50 * 1024 * 1024
"""Kept files up to this size also stay while a new upload is shown, so that clearing it brings them back."""


class KeptFile:
    """An uploaded file kept in the session: what the pages read of one (its name, size and bytes)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data, self.size = name, data, len(data)

    def getvalue(self) -> bytes:
        return self._data


def uploaders_empty(*keys: str) -> bool:
    """Call before drawing the uploaders ``keys``: True when none has state, as after a visit to another page
    (Streamlit forgets an uploader's files then); an uploader whose state exists but is empty was cleared by
    the user."""
    return all(k not in st.session_state for k in keys)


def preset_kept_uploads(key: str, groups: list[list[Any]]) -> None:
    """Set ``groups`` as the files :func:`kept_uploads` under ``key`` shows, as if the user had uploaded them on an
    earlier visit (another page opening this one on the user's own files)."""
    st.session_state[f"{key}_kept"] = groups
    st.session_state[f"{key}_restored"] = True
    st.session_state.pop(f"{key}_kept_id", None)


def kept_uploads(key: str, groups: list[list[Any]], *, returning: bool, note: Callable[[list[list[Any]]], str],
                 remove_key: str, remove_label: str = "Remove them", keep_beside: dict[int, str] | None = None,
                 ) -> list[list[Any]] | None:
    """The files to use, one list per uploader: ``groups`` when any were uploaded (kept for later; copied
    once per new set), else those kept from before the user left the page (``returning``: see
    :func:`uploaders_empty`), shown with ``note(kept)`` and a button to remove them, until the user uploads
    again or removes them; None when there is nothing. ``keep_beside`` {uploader index: what its files are}:
    the uploaders whose kept files stay when the user, back on the page, uploads into another one only (the
    images kept beside corrected ground truth; not old ground truth beside new images, which file names
    could pair wrongly). Clearing every uploader again (x) after such an upload brings back the files shown
    before it (up to :data:`MAX_UNDO_BYTES`), as an undo: the user loses nothing by trying a file."""
    kept_key, restored_key, id_key = f"{key}_kept", f"{key}_restored", f"{key}_kept_id"
    fill_key, before_key = f"{key}_fill", f"{key}_before"
    if any(groups):
        if st.session_state.get(restored_key) and st.session_state.get(kept_key):
            earlier = st.session_state[kept_key]
            if sum(f.size for g in earlier for f in g) <= MAX_UNDO_BYTES:  # an undo need not double a large set
                st.session_state[before_key] = (earlier, st.session_state.get(id_key))
            if keep_beside:
                # a new upload into one uploader replaces that one's files; ``keep_beside``'s kept files stay, as
                # the page said they were there
                st.session_state[fill_key] = {i: earlier[i] for i in keep_beside if not groups[i] and earlier[i]}
        st.session_state[restored_key] = False
        fill = {i: f for i, f in (st.session_state.get(fill_key) or {}).items() if not groups[i]}
        st.session_state[fill_key] = fill
        if fill:
            groups = [g or list(fill.get(i, [])) for i, g in enumerate(groups)]
            c, d = st.columns([3, 1])
            what = " and ".join(f"{len(f)} {keep_beside[i]}" for i, f in fill.items())
            c.caption(f"Using the {what} you uploaded earlier beside your new upload.")
            if d.button("Remove those", key=f"{remove_key}_fill", icon=":material/close:"):
                st.session_state.pop(fill_key, None)
                st.session_state.pop(before_key, None)
                st.rerun()
        ids = tuple((f.name, f.size, getattr(f, "file_id", None)) for g in groups for f in g)
        if st.session_state.get(id_key) != ids:
            size = sum(f.size for g in groups for f in g)
            st.session_state[kept_key] = ([[KeptFile(f.name, f.getvalue()) for f in g] for g in groups]
                                          if size <= MAX_KEPT_BYTES else None)
            st.session_state[id_key] = ids
        if st.session_state.get(kept_key) is None:
            st.caption(f"These files are larger than {MAX_KEPT_BYTES // 2**20} MB together, so they are not kept "
                       "for the session: after a visit to another page, upload them again.")
        return groups
    st.session_state.pop(fill_key, None)
    before = st.session_state.pop(before_key, None)
    if before is not None and not returning:  # the new upload was cleared (x): back to what was shown before it
        st.session_state[kept_key], st.session_state[id_key] = before
        st.session_state[restored_key] = True
    if returning and st.session_state.get(kept_key):
        st.session_state[restored_key] = True  # until the user uploads again or removes them
    if not (st.session_state.get(restored_key) and st.session_state.get(kept_key)):
        for k in (kept_key, id_key):
            st.session_state.pop(k, None)
        return None
    kept = st.session_state[kept_key]
    st.caption(note(kept))
    # below the note, at its own width: in a narrow column a side column cut the label to "Rem..."
    row = st.container(horizontal=True)
    if row.button(remove_label, key=remove_key, icon=":material/close:"):
        for k in (kept_key, id_key, before_key):
            st.session_state.pop(k, None)
        st.session_state[restored_key] = False
        st.rerun()
    if sum(map(len, kept)) > 1:  # one wrong file among many: removed alone, the others kept
        _remove_some(row, kept, kept_key, remove_key)
    return st.session_state.get(kept_key)


def _remove_some(where: Any, kept: list[list[Any]], kept_key: str, remove_key: str) -> None:
    """A popover to leave some of the ``kept`` files out; with two uploaders (images, ground truth) each name says
    which, as an image and its label image may share it."""
    def named(pick: tuple[int, int]) -> str:
        g, i = pick
        return f"{kept[g][i].name} ({'ground truth' if g else 'image'})" if len(kept) > 1 else kept[g][i].name

    version = st.session_state.get(f"{remove_key}_some_n", 0)  # a fresh, empty choice after each removal
    # keyed by the removals so far: a fresh popover, closed, after each (it reopened over the warnings it caused)
    with where.popover("Remove some", icon=":material/playlist_remove:", key=f"{remove_key}_some_pop_{version}"):
        drop = st.multiselect("Files to remove", [(g, i) for g, files in enumerate(kept) for i in range(len(files))],
                              format_func=named, key=f"{remove_key}_some_{version}")
        if st.button("Remove these", key=f"{remove_key}_some_go", disabled=not drop, type="primary"):
            left = [[f for i, f in enumerate(files) if (g, i) not in drop] for g, files in enumerate(kept)]
            st.session_state[kept_key] = left if any(left) else None  # all chosen: as "Remove them"
            st.session_state[f"{remove_key}_some_n"] = version + 1
            st.rerun()
