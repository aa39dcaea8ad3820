"""Train page: teach a model your cells from a few annotated images (a fine-tune in a background job).

Annotations come through the Evaluate page's uploaders (label images, masks, dot images, point CSVs, a zip),
or by clicking on the images in the app. The fine-tune itself is :class:`cellcount.jobs.FinetuneJob`: it runs
in a thread of the app process, so it keeps running while the user looks at other pages, and this page shows
its progress again on return.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

import cellcount as cc
from cellcount import annotate, viz
from cellcount.finetune import (
    DEFAULT_HOLDOUT,
    DEFAULT_MAX_STEPS,
    DEFAULT_MINUTES,
    MIN_IMAGE_PX,
    MIN_TRAIN_S,
    backends_note,
    check_new_name,
    free_name,
    holdout_verdict,
    model_kind,
)
from cellcount.finetune.reading import few_dots as too_few_dots
from cellcount.finetune.reading import few_dots_line, partly_dotted, undotted_count
from cellcount.groundtruth import GroundTruth
from cellcount.groundtruth.read import file_dots_note
from cellcount.io import not_an_image, short_name
from cellcount.jobs import FinetuneJob, JobBoard, JobSnapshot, interrupted_finetunes
from cellcount.labelled import LabelledSet
from pages import _groundtruth as gt_ui
from pages import _settings as settings
from pages import _shared as sh

sh.require_entry_point("train")

P = "train"
POINTS = f"{P}__points"  # image key -> float64 (N, 2) clicked points (row, col)
UNDO = f"{P}__undo"  # image key -> earlier point arrays
GUESSES = f"{P}__guesses"  # image key -> (model, its count) of each image shown for dotting
FAR = f"{P}__far"  # image key -> ((model, count), dots' digest), the part of that count far from every dot
BASIS = f"{P}__basis"  # image key -> the dots its edits started from (annotate.dots_id): a points file's, or none
POLL_S = 1.0
STAGES = {"prepare": "Reading images and making targets", "train": "Training", "tune": "Re-tuning postprocessing",
          "evaluate": "Scoring the held-out images", "done": "Saving"}


job_board, owner = sh.finetune_board, sh.finetune_owner  # shared: the other pages say when a run ends


def clock(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


# --------------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------------
def clear_result(board: JobBoard, me: str) -> None:
    """Clear this session's finished run; after a saved model, the name box too (its name is now taken). A run
    that failed or was cancelled saved nothing: the name typed for it stays for the next try."""
    job = board.get(me)
    saved = job is not None and job.snapshot().status == "done"
    board.clear(me)
    if saved:
        st.session_state.pop(f"{P}_name", None)


def progress_text(s: JobSnapshot) -> str:
    p = s.progress
    if p is None:
        return "Starting ..."
    text = STAGES.get(p.stage, p.stage)
    if p.stage == "train":
        of = (f"of about {p.steps} (as many as the time budget buys)" if p.estimated and p.steps else
              "(timing the first steps to see how many the budget buys)" if p.estimated else f"of {p.steps}")
        # a fixed number of steps: re-tuning and scoring come after the steps, and take their own time ("about
        # 0:10 left" could be a minute before the end); a time budget holds them
        then = "" if p.estimated else ", then re-tuning and scoring"
        text += f": step {p.step} {of} · loss {p.loss:.4f} · about {clock(p.remaining_s)} of training left{then}"
    elif p.message:
        text += f": {p.message}"
    return text + f" · {clock(s.elapsed_s)} elapsed"


def holdout_frames(res) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: measure x before/after, per image: file, true, before, after and their errors)."""
    rows = []
    for key, label in (("mae", "count MAE"), ("rmse", "RMSE"), ("bias", "bias (predicted − true)"),
                       ("mape", "relative error (%)"), ("f1", "F1"), ("precision", "precision"),
                       ("recall", "recall")):
        if key in res.before and key in res.after:
            after = "fine-tuned weights (not kept)" if getattr(res, "kept_base", False) else "after (new model)"
            row = {"measure": label, "before (base model)": res.before[key], after: res.after[key]}
            if key in getattr(res, "settings_only", {}):  # how much the settings alone change
                row["base weights, new settings"] = res.settings_only[key]
            rows.append(row)
    per = pd.DataFrame(res.holdout_counts)
    if len(per):
        per["error before"] = per["before"] - per["true"]
        per["error after"] = per["after"] - per["true"]
        if getattr(res, "kept_base", False):  # the saved model counts as "before"
            per = per.rename(columns={"after": "fine-tuned (not kept)", "error after": "error fine-tuned"})
    return pd.DataFrame(rows), per


def one_of_theirs(res: Any) -> Any:
    """One of the user's own uploaded images of this fine-tune, a held-out one first (loose files kept for the
    session; None when they came in a zip or were too large to keep): "Count with" on a shipped sample would show
    it flagged as read the wrong way round by a model fine-tuned on H&E."""
    kept = st.session_state.get(f"{P}_uploads_kept") or [[]]
    by_name = {f.name: f for f in kept[0]}
    return next((by_name[n] for n in [*res.holdout_files, *res.train_files] if n in by_name), None)


def open_on_count(image: Any) -> None:
    """Put ``image`` on the Count page as an upload it shows (as one kept from an earlier visit)."""
    if image is None:
        return
    st.session_state["count_source"] = "Upload"
    sh.preset_kept_uploads("count_upload", [[image]])


def show_result(s: JobSnapshot) -> None:
    if s.status == "failed":
        # refused before any training (a budget too short, an unreadable set): said so, not as a fault
        if not s.unexpected and (s.progress is None or s.progress.stage == "prepare"):
            st.warning(f"The fine-tune of {s.name} did not start training, and saved nothing: {s.error}",
                       icon=":material/warning:")
        else:
            st.error(f"The fine-tune of {s.name} failed: {s.error}", icon=":material/error:")
        return
    if s.status == "cancelled":
        where = sh.STOPPED_ELSEWHERE if s.cancelled_by == sh.ELSEWHERE else ""
        st.info(f"The fine-tune of {s.name} was cancelled after {clock(s.elapsed_s)}{where}; nothing was saved.")
        return
    res = s.result
    if not Path(res.folder).is_dir():  # deleted since (Models page, in any tab of any user of this server)
        st.info(f"**{res.name}** was saved, then deleted ({sh.DELETED_WHERE}): it is in no model list any more.",
                icon=":material/delete:")
        return
    st.success(
        f"**{res.name}** is saved in `{res.folder}` ({res.steps} steps in {res.precision}, {clock(res.seconds)}). It "
        "is in the model list of every page (Count, Batch, Evaluate, Compare); its card, with these figures, is on "
        "the Models page.",
        icon=":material/check_circle:",
    )
    if res.reading:
        st.caption(f"How {res.name} reads images: {res.reading}")
    if res.precision_why:
        st.caption(f"Trained in {res.precision_why}.")
    if res.size_note:
        st.warning(res.size_note, icon=":material/straighten:")
    for text in res.notes:
        st.warning(f"Note: {text}", icon=":material/info:")
    if st.button(f"Count with {res.name}", key=f"{P}_use", icon=":material/center_focus_strong:"):
        settings.set_current_model(res.name)
        open_on_count(one_of_theirs(res))
        st.switch_page("pages/count.py")
    if not res.before:
        st.caption("No image was held out, so there is no before/after score.")
        return
    kept = getattr(res, "kept_base", False)
    after = "the fine-tuned weights (not kept)" if kept else res.name
    st.markdown(f"**Held-out images** ({len(res.holdout_files)}, never used for training or to choose settings; they measure the count before and after, and join the reference images the quality flag compares new images with): "
                f"{s.base} before, {after} after" + (f"; {res.name} counts them as {s.base} does" if kept else ""))
    # held-out images from the training images' slide can count far better than images of another patient's
    st.caption("The held-out images come from your upload, often imaged like the training images (the same slide, "
               "day or microscope): images from other slides, patients or days may count worse. Score a few of "
               "those on the Evaluate page before relying on the new model for them.")
    # an image dotted in part and held out scores both models against its few dots (errors of thousands of
    # percent), and the warning given before Start is no longer on the page
    thin = [line for name, line in st.session_state.get(f"{P}__sparse", {}).items() if name in res.holdout_files]
    if thin:
        st.warning(f"{len(thin)} held-out image(s) had far fewer dots than cells when the run started ("
                   f"{'; '.join(thin[:3])}{' …' if len(thin) > 3 else ''}): their true counts are the dots, so the "
                   "errors below are too large for both models there. Dot every cell of held-out images.",
                   icon=":material/warning:")
    summary, per = holdout_frames(res)
    sh.dataframe(summary, column_config=sh.number_formats(summary.columns[1:], "%.2f"))
    if ran := backends_note(getattr(res, "holdout_backends", {}), base=s.base,
                            name="the fine-tuned weights" if kept else res.name):
        st.caption(f"Backends: {ran}.")  # never capitalised: it may begin with a model's name ("unet-density")
    if "f1" in res.before and model_kind(s.base) == "density":
        st.caption(sh.DENSITY_PEAKS_NOTE)
    if res.paired:
        warn, text = holdout_verdict(res.paired, len(res.holdout_files),
                                     name="the fine-tuned model (not kept)" if kept else res.name, base=s.base,
                                     before=res.before, after=res.after, segmentation=model_kind(s.base) != "density")
        if kept:
            text += f" So {res.name} keeps {s.base}'s weights and settings."
        if warn:
            st.warning(text, icon=":material/warning:")
        else:
            st.caption(text)
    counts = [c for c in per.columns if c != "file"]
    whole = len(per) and all(float(v).is_integer() for c in counts for v in per[c])  # objects, not a density's sum
    formats = sh.number_formats(counts, "%d" if whole else "%.1f")
    if len(per) and all(float(v).is_integer() for v in per["true"]):  # annotations count whole objects
        formats.update(sh.number_formats(["true"], "%d"))
    sh.dataframe(per, column_config=formats)


def last_run_text(s: JobSnapshot) -> str:
    """A line on the last fine-tune that ended on this server, for a session that did not follow it."""
    ago = clock(max(time.time() - (s.started_s + s.elapsed_s), 0.0))
    what = {"done": f"saved {s.name}: it is in every page's model list, and its card, with the before/after figures "
                    "on the held-out images, is on the Models page",
            "cancelled": f"{s.name} was cancelled: nothing was saved",
            "failed": f"{s.name} failed: {s.error}"}.get(s.status, s.status)
    return (f"The last fine-tune on this app's server (from {s.base}, ended {ago} ago, in this tab before a reload "
            f"or in another) {what}.")


def started_here(job) -> bool:
    """Whether this session started ``job`` (not followed it from another tab or before a reload)."""
    return st.session_state.get(f"{P}__started") == job.job_id


def job_panel(board: JobBoard, me: str) -> None:
    """Progress while the job runs (redrawn every second without rerunning the page), then its outcome."""
    job = board.get(me)
    if job is None:
        return
    st.subheader(f"Fine-tune: {job.name}")
    elsewhere = not started_here(job)
    if elsewhere:
        st.caption("Started in another tab or browser on this app's server (yours, or someone else's using the same "
                   "server), or in this tab before it was reloaded.")
    was_running = job.snapshot().running

    @st.fragment(run_every=POLL_S if was_running else None)
    def panel() -> None:
        s = job.snapshot()
        if s.running:
            st.progress(s.fraction, text=progress_text(s))
            if s.notes:  # as they come: a partly dotted image is said before the budget is spent, not after
                st.info("Notes so far (the result repeats them; Cancel to fix the images first): "
                        + "; ".join(n[0].upper() + n[1:] for n in s.notes[-4:])
                        + (f"; and {len(s.notes) - 4} more" if len(s.notes) > 4 else "") + ".",
                        icon=":material/info:")
            if len(s.losses) > 1:
                st.plotly_chart(viz.training_curve(pd.DataFrame(s.losses, columns=["step", "loss"])),
                                key=f"{P}_loss")
            if job.cancel_requested:
                st.info("Cancelling: the run stops after the current step.")
            elif not elsewhere:
                st.button("Cancel", key=f"{P}_cancel", on_click=job.cancel, icon=":material/cancel:")
            else:  # someone else may be following it: one click from a second tab cancelled it without a word
                sure = st.checkbox("I want to stop this run, which may be someone else's", key=f"{P}_cancel_sure")
                st.button("Cancel this run (started elsewhere)", key=f"{P}_cancel", on_click=sh.stop_elsewhere,
                          args=(job, f"{P}_cancel_sure"), icon=":material/cancel:", disabled=not sure,
                          help="Whoever started it is told it was cancelled from another tab or browser.")
            st.caption("It keeps running if you open other pages; come back here to follow it.")
            return
        if was_running:
            st.rerun()  # the whole page: the new model goes into the model lists, the form comes back
        sh.finetune_seen(job.job_id)
        show_result(s)

    panel()
    if not was_running:
        st.button("Clear", key=f"{P}_clear", on_click=clear_result, args=(board, me), icon=":material/close:",
                  help="Hide this result (the model stays saved).")


# --------------------------------------------------------------------------------------------------
# annotating by clicking
# --------------------------------------------------------------------------------------------------
def image_key(name: str, data: bytes) -> str:
    return f"{name}#{sh.digest_of(data)[:12]}"


def points_of(key: str, initial: np.ndarray | None = None) -> np.ndarray:
    """The dots of an image: the user's edits if any, else ``initial`` (its points file's), else none. Only
    edits are stored, so a points file uploaded after its image still shows and is edited from."""
    store = st.session_state.setdefault(POINTS, {})
    if key in store:
        return store[key]
    return np.zeros((0, 2)) if initial is None else np.asarray(initial, np.float64).reshape(-1, 2)


def set_points(key: str, pts: np.ndarray, initial: np.ndarray | None = None) -> None:
    if key not in st.session_state.get(POINTS, {}):  # the first edit: remember what it started from
        st.session_state.setdefault(BASIS, {})[key] = annotate.dots_id(initial)
    st.session_state.setdefault(UNDO, {}).setdefault(key, []).append(points_of(key, initial))
    st.session_state.setdefault(POINTS, {})[key] = pts


def use_file_dots(keys: list[str]) -> None:
    """Drop the clicked dots of ``keys`` for their points files' (Undo brings the clicks back)."""
    for key in keys:
        clicked = st.session_state.get(POINTS, {}).pop(key, None)
        if clicked is not None:
            st.session_state.setdefault(UNDO, {}).setdefault(key, []).append(clicked)
        st.session_state.get(BASIS, {}).pop(key, None)


def undo(key: str) -> None:
    history = st.session_state.get(UNDO, {}).get(key)
    if history:
        st.session_state[POINTS][key] = history.pop()


def on_click(key: str, widget: str, shape: tuple[int, int], radius_px: float,
             initial: np.ndarray | None = None) -> None:
    """The click component's value -> a point added, or the nearest one removed."""
    value = st.session_state.get(widget)
    if not isinstance(value, dict) or "x" not in value:
        return
    row, col = annotate.display_to_image(value["x"], value["y"], display_size=(value["width"], value["height"]),
                                         shape=shape)
    near = annotate.remove_radius(radius_px, display_width=value["width"], image_width=shape[1])
    set_points(key, annotate.toggle_point(points_of(key, initial), row, col, shape=shape, remove_radius_px=near),
               initial)


def model_guess(key: str, data: bytes, image: np.ndarray) -> tuple[str, int] | None:
    """How many cells the base chosen to start from (else the model in use, else the default) finds on an image
    being dotted, with the card's settings:
    a dot count far below it may be a partly dotted image, which would teach the missed cells as background (3
    of about 20 nuclei dotted, say). None where no network model loads."""
    nets = [n for n in cc.list_models() if n != cc.models.CLASSICAL_NAME]
    # the base chosen to start from, once chosen: another model's hint may be far off on the set
    name = st.session_state.get(f"{P}_base") or settings.current_model(cc.models.default_model_name())
    name = name if name in nets else cc.models.default_model_name()
    if name not in nets:
        return None
    known = st.session_state.get(GUESSES, {}).get(key)
    if known is not None and known[0] == name:  # a click reruns the page: the image and model are the same
        return known
    try:
        pred, params = _guess_prediction(name, data, image)
        guess = (name, int(round(cc.postprocess(pred, params, measure=False).count)))
    except cc.CellcountError:
        return None
    st.session_state.setdefault(GUESSES, {})[key] = guess
    return guess


def _guess_prediction(name: str, data: bytes, image: np.ndarray) -> tuple[cc.Prediction, cc.CountParams]:
    """Model ``name``'s prediction on an image being dotted, with its card's settings (cached)."""
    model = sh.get_model(name)
    params = sh.for_image(cc.resolve_params(model), image)
    return sh.predict_cached(sh.digest_of(data), name, sh.prediction_version(name, params), params.input_key(),
                             image, sh.requested_backend()), params


def far_from_dots(key: str, data: bytes, image: np.ndarray, pts: np.ndarray, guess: tuple[str, int]) -> None:
    """Note for :func:`few_dots` how much of the model's count on an image with few dots lies far from every dot
    (:func:`~cellcount.finetune.reading.undotted_count`), for the dots shown: an image dotted completely but
    over-counted by the model (H&E) is no partly dotted one, as the command line judges it."""
    sig = (guess, annotate.dots_id(pts))
    known = st.session_state.setdefault(FAR, {})
    if key in known and known[key][0] == sig:
        return
    far = None
    if too_few_dots(len(pts), guess[1]):  # only where the count alone would say so
        try:
            far = undotted_count(_guess_prediction(guess[0], data, image)[0], guess[1], pts)
        except cc.CellcountError:
            far = None
    known[key] = (sig, far)


@st.cache_data(max_entries=1024, ttl=sh.CACHE_TTL_S, show_spinner=False)
def _image_hw(digest: str, _data: bytes) -> tuple[int, int] | None:
    """The image's height and width in pixels; None when it cannot be read (the fine-tune names it)."""
    import warnings

    try:
        with warnings.catch_warnings():  # a stack's "first plane read": said by the fine-tune, not here
            warnings.simplefilter("ignore")
            h, w = cc.read_image(_data).shape[:2]
            return int(h), int(w)
    except (cc.CellcountError, OSError, ValueError):
        return None


def too_small(data: bytes) -> bool:
    """Whether an image is under :data:`~cellcount.finetune.MIN_IMAGE_PX` on a side (the fine-tune leaves it out)."""
    hw = _image_hw(sh.digest_of(data), data)
    return hw is not None and min(hw) < MIN_IMAGE_PX


def dots_in_microns(items: list[tuple[str, bytes, GroundTruth]]) -> list[str]:
    """What :func:`~cellcount.groundtruth.read.file_dots_note` says of each points file whose dots crowd its image's
    top-left corner, as coordinates in µm do."""
    out = []
    for name, data, gt in items:
        if gt.kind == "points" and (hw := _image_hw(sh.digest_of(data), data)) and (note := file_dots_note(name, gt, hw)):
            out.append(note)
    return out


def few_dots(items: list[tuple[str, bytes, GroundTruth]]) -> dict[str, str]:
    """The images with far fewer dots than the model finds on them (:func:`partly_dotted`), by name, each with a line
    saying so: those shown for dotting (:func:`model_guess` counts them there), dotted here or by a points file (the
    page's own points CSV uploaded again is judged too); the others the run's notes name."""
    guesses = st.session_state.get(GUESSES, {})
    out = {}
    for name, data, gt in items:
        key = image_key(name, data)
        model, n = guesses.get(key, (None, 0))
        if gt.kind != "points":
            continue
        sig, far = st.session_state.get(FAR, {}).get(key, (None, None))
        if sig is None or sig[0] != (model, n) or sig[1] != annotate.dots_id(gt.points):
            far = None  # measured for other dots or another model: the count alone
        if partly_dotted(gt.count, n, far):
            out[name] = few_dots_line(short_name(name), gt.count, model, n, far)
    return out


def annotate_ui(candidates: list[tuple[str, bytes, np.ndarray | None]], *, guess: bool = True) -> None:
    """Click to add a dot on each cell; click a dot to remove it. ``guess``: say how many cells the model in use
    finds on the image (:func:`model_guess`)."""
    names = [n for n, _, _ in candidates]
    # starting on the first without dots, those named below it (images look alike, and the first may be one
    # already dotted); the options' own labels stay as they are, as a label that changes with each
    # click resets the choice
    undotted = [n for n, d, initial in candidates if not len(points_of(image_key(n, d), initial))]
    pick = sh.pick_one("Image to annotate", names, f"{P}_annotate_image", default=next(iter(undotted), None))
    # always drawn, so that the elements below keep their places while a click reruns the page (a caption that goes
    # with the first dot would leave a second "Cells dotted" beside the new one for a moment)
    st.caption(f"No dots yet: {', '.join(short_name(n) for n in undotted[:8])}{' …' if len(undotted) > 8 else ''}."
               if undotted else "Every image here has dots.")
    name, data, initial = candidates[names.index(pick)]
    key = image_key(name, data)
    try:
        image = sh.read_image_cached(sh.digest_of(data), data)
    except cc.CellcountError as err:
        sh.show_error(err, name=short_name(name))
        return
    h, w = image.shape[:2]
    zoom = annotate.display_zoom((h, w))
    radius = st.slider("Dot size (px)", 2, 20, 4, key=f"{P}_dot_px", persist_state=sh.PERSIST,
                       help="Radius of the circles drawn, in image pixels; a click this close to a dot removes it.")
    pts = points_of(key, initial)
    left, right = st.columns([3, 1])
    with left:
        streamlit_image_coordinates(
            viz.points_overlay(image, pts, zoom=zoom, radius_px=radius),
            # as wide as the column: a wider picture was cut off on the right, its cells left undotted (the
            # component's "auto" shows the picture at its own size, however wide)
            use_column_width="always", png_compression_level=1, key=f"{P}_click_{key}", cursor="crosshair",
            on_click=functools.partial(on_click, key, f"{P}_click_{key}", (h, w), float(radius), initial),
        )
    found = model_guess(key, data, image) if guess else None
    if found is not None:
        far_from_dots(key, data, image, pts, found)
    with right:
        st.metric("Cells dotted", len(pts))
        if found is not None:
            st.caption(f"{found[0]} finds about {found[1]} cells here (it may be wrong on cells unlike nuclei).")
        st.button("Undo", key=f"{P}_undo", on_click=undo, args=(key,), icon=":material/undo:",
                  disabled=not st.session_state.get(UNDO, {}).get(key))
        st.button("Clear dots", key=f"{P}_clear_dots", on_click=set_points, args=(key, np.zeros((0, 2)), initial),
                  icon=":material/delete:", disabled=not len(pts))
        sh.download_button("Points CSV", annotate.points_csv(pts), f"{sh.stem(name)}_points.csv", "text/csv",
                           key=f"{P}_points_csv", help="x,y per dot: reads back as this image's ground truth "
                           "here, on Evaluate and in `python -m cellcount.finetune`.")
        # drawn as wide as the column, whatever zoom the picture was sent at: no factor that the screen belies
        st.caption(f"{w} × {h} px" + (", enlarged to the column's width (pixels kept sharp)." if zoom > 1 else "."))


# --------------------------------------------------------------------------------------------------
# the training set
# --------------------------------------------------------------------------------------------------
def training_set(found: LabelledSet) -> list[tuple[str, bytes, GroundTruth]]:
    """Uploaded annotations, with clicked dots in place of a file's points, plus images dotted here."""
    clicked, basis = st.session_state.get(POINTS, {}), st.session_state.get(BASIS, {})
    items, unused, over = [], [], []
    for name, data, gt in found.items:
        key = image_key(name, data)
        pts = clicked.get(key)
        if pts is not None and len(pts) and gt.kind in ("labels", "mask"):
            unused.append(short_name(name))
        file_dots = annotate.dots_id(gt.points) if gt.kind == "points" else None
        if pts is not None and file_dots is not None and basis.get(key, file_dots) != file_dots != annotate.dots_id(pts):
            over.append((key, f"{short_name(name)} ({len(pts)} clicked, {gt.count} in the file)"))
        # dots replace a file's points, and give a count-only image the positions it lacks
        dotted = pts is not None and (gt.kind == "points" or (gt.kind == "count" and len(pts)))
        items.append((name, data, annotate.points_ground_truth(pts, source=name) if dotted else gt))
    if unused:  # the outlines teach more than dots: they are used, and the clicks said to be set aside
        st.info(f"The dots you clicked on {', '.join(unused[:5])}{' …' if len(unused) > 5 else ''} are not used: "
                "the outlines uploaded for it since are (they teach more than dots).")
    if over:  # clicks made before the image's points file came: which dots are used is said
        st.info(f"Your clicked dots are used, not those of the points files uploaded since, on "
                f"{'; '.join(t for _, t in over[:5])}{' …' if len(over) > 5 else ''}.", icon=":material/info:")
        st.button("Use the files' dots instead", key=f"{P}_use_file_dots", on_click=use_file_dots,
                  args=([k for k, _ in over],), help="Your clicks on these images are set aside (Undo brings "
                  "them back on the image shown).")
    refused = {name for name, _ in found.truth_refused}
    stand_in = []  # refused annotations, clicked dots used instead: said (old clicks must not train unsaid)
    for name, data in found.unlabelled + found.truth_refused:
        pts = clicked.get(image_key(name, data))
        if pts is not None and len(pts):
            items.append((name, data, annotate.points_ground_truth(pts, source=name)))
            if name in refused:
                stand_in.append(f"{short_name(name)} ({len(pts)} clicked)")
    if stand_in:
        st.warning(f"The annotation files of {'; '.join(stand_in[:5])}{' …' if len(stand_in) > 5 else ''} could not be "
                   "used (above), so the dots you clicked on each are used instead: every cell without a dot is taught "
                   "as background. Upload one right annotation file for each, or dot all its cells below.",
                   icon=":material/warning:")
    return items


def settings_ui(n_images: int, just_saved: str | None = None, *, dots_only: bool = False,
                outlines: bool = False) -> dict | None:
    """Base model, new name, time budget and held-out images -> the job's arguments (None: not ready).
    ``just_saved``: the model this session's run saves or saved (its name is taken, and that is no error).
    ``dots_only``: every annotation is dots, which a density model learns from directly; ``outlines``: some are
    label images or masks, whose outlines only a segmentation model learns."""
    nets = [n for n in cc.list_models() if n != cc.models.CLASSICAL_NAME]
    if not nets:
        st.info("No trained network to start from: weights/ holds none (the classical baseline cannot learn).")
        return None
    a, b = st.columns(2)
    current = settings.current_model()
    if current not in nets:
        current = cc.models.default_model_name()
    density = [n for n in nets if model_kind(n) == "density"] if dots_only else []
    if density and model_kind(current) == "mask":  # dots only: a density base learns them directly (docs/finetuning.md)
        current = "unet-density" if "unet-density" in density else density[0]
    segmenting = [n for n in nets if model_kind(n) != "density"] if outlines else []
    if segmenting and model_kind(current) == "density":  # outlines: a segmentation base learns them
        default = cc.models.default_model_name()
        current = default if default in segmenting else segmenting[0]
    gone = st.session_state.get(f"{P}_base")
    gone = gone if gone is not None and gone not in nets else None  # deleted meanwhile: Start must not take another
    base = sh.pick_one("Start from", nets, f"{P}_base", default=current if current in nets else None,
                       container=a, format_func=sh.model_label,
                       help="The model to fine-tune: a shipped model or one you trained before.")
    # the proposed name follows the base until the user types their own
    proposal = free_name(f"{base}-mine", set(cc.list_models()))
    if st.session_state.get(f"{P}_name") in (None, st.session_state.get(f"{P}_name_proposed")):
        st.session_state[f"{P}_name"] = proposal
    st.session_state[f"{P}_name_proposed"] = proposal
    name = b.text_input("Name of the new model", key=f"{P}_name", persist_state=sh.PERSIST, max_chars=80,
                        help="A folder name: letters, digits, spaces, dots, - and _ (not / \\ : * ? \" < > |, nor a dot or space "
                        "at either end); shipped models' names are taken. With spaces, quote it on the command line: --model \"my cells\".").strip()
    if density and model_kind(base) == "mask":
        st.info(f"Your annotations are dots. A segmentation model such as {base} learns from its own outlines "
                f"corrected by your dots, which works where cells are separate; where they touch or overlap, a "
                f"density model ({', '.join(density)}) learns from the dots directly and usually counts better "
                "(docs/finetuning.md). Label images or masks teach a segmentation model the outlines too.")
    if segmenting and model_kind(base) == "density":
        st.info(f"Your annotations include outlines (label images or masks). A density model such as {base} learns "
                "only where each cell is from them, and counts without outlines; a segmentation model "
                f"({', '.join(segmenting[:3])}) learns the outlines too and shows each cell it counts.")
    c, d, e = st.columns(3)
    fixed_steps = bool(st.session_state.get(f"{P}_steps"))  # Advanced's fixed steps replace the budget: shown off
    minutes = c.number_input("Time budget (minutes)", 0.5, 240.0, DEFAULT_MINUTES, 0.5, key=f"{P}_minutes", persist_state=sh.PERSIST,
                             disabled=fixed_steps,
                             help=("Off: a fixed number of training steps is set under Advanced, and the run "
                                   "takes as long as they take. " if fixed_steps else "") + "The whole run (reading, training, scoring) fits in it; about 5 minutes is "
                             f"enough for 32 images of 256 × 256 px on a laptop CPU. A faster CPU stops after "
                             f"{DEFAULT_MAX_STEPS} training steps. Reading and scoring your images come out of it first, "
                             "as timed on this computer as the run starts (longer while it is busy): a budget that "
                             f"leaves under {MIN_TRAIN_S:g} s of training is refused, naming one with a minute of "
                             "training (about 1.5-2.5 minutes for a dozen images), and one that leaves training "
                             "under half of it says so.")
    default_held = min(max(int(round(DEFAULT_HOLDOUT * n_images)), 1 if n_images >= 2 else 0), max(n_images - 1, 0))
    # the proposal follows the set until the user types their own: the 0 proposed for one dotted image, kept as
    # more are dotted, would leave the run no before/after score and no fallback to the base
    if st.session_state.get(f"{P}_holdout") in (None, st.session_state.get(f"{P}_holdout_proposed")):
        st.session_state[f"{P}_holdout"] = default_held
    st.session_state[f"{P}_holdout_proposed"] = default_held
    if (st.session_state.get(f"{P}_holdout") or 0) > max(n_images - 1, 0):  # kept from a set with more images
        st.session_state[f"{P}_holdout"] = max(n_images - 1, 0)
    held = d.number_input("Held-out images", 0, max(n_images - 1, 0), key=f"{P}_holdout", persist_state=sh.PERSIST,
                          help="Kept out of training and tuning; they score the base and the new model, and a "
                          "fine-tune that counts them worse keeps the base's weights. 0: no before/after score "
                          "and no such check.")
    diameter = e.number_input("Object diameter (px, 0 = measure it)", 0.0, 1000.0, 0.0, 1.0, key=f"{P}_diameter", persist_state=sh.PERSIST,
                              help="If you know how large your objects are, say so: the new model then learns and "
                              "counts them at that size. Otherwise it is measured from your label images, or by "
                              "the base model when you have only dots, which can go wrong for objects unlike "
                              "nuclei (fat cells, large cells at high magnification).")
    with st.expander("Advanced"):
        steps = st.number_input("Fixed number of training steps (0: use the time budget)", 0, 100_000, 0,
                                key=f"{P}_steps", persist_state=sh.PERSIST)
        seed = st.number_input("Seed (held-out draw, batches)", 0, 2**31 - 1, 0, key=f"{P}_seed", persist_state=sh.PERSIST)
        keep_worse = st.checkbox("Keep the fine-tuned weights even if worse", False, key=f"{P}_keep_worse",
                                 persist_state=sh.PERSIST,
                                 help="By default, when the fine-tuned weights count the held-out images clearly worse "
                                 "than the base (a count MAE over 5% higher and at least 2 objects more error over "
                                 "the held-out images together), the new model keeps the base's weights and settings "
                                 "(it counts as the base does) and says so. Tick this to save the fine-tuned weights "
                                 "anyway: every count of such a model is then flagged 'check this image'.")
    if 0 < diameter < 2:
        st.error("An object diameter under 2 px cannot be learnt: give at least 2, or 0 to measure it.")
        return None
    try:
        check_new_name(name)
    except cc.CellcountError as err:
        if name == just_saved:
            st.caption(f"{name} is the model of your fine-tune above; give a new name to train another one.")
        else:
            sh.show_error(err)
        return None
    budget = {"steps": int(steps), "minutes": None} if steps else {"minutes": float(minutes), "steps": None}
    size = {"diameter_px": float(diameter)} if diameter > 0 else {}
    if gone:
        a.warning(f"{gone}, the model you started from, is no longer installed (deleted on the Models page, here or in "
                  f"another tab): {base} is chosen instead.")
    return {"base": base, "name": name, "base_gone": gone,
            "options": {**budget, "holdout": int(held), "seed": int(seed), **size,
                        **({"keep_worse": True} if keep_worse else {})}}


# --------------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------------
st.title("Train")
st.markdown(
    "Teach a model your cells: fine-tune it on a few of your images with their annotations. Dots on the cells "
    "are enough. Part of the images is held out to show the count error before and after; the new model is "
    "saved with a card and appears in every page's model list."
)
board = job_board()
me = owner()
board.follow(me)  # a fine-tune started before a reload (or in another tab) is shown here, with its Cancel
if board.get(me) is None and (last := board.latest_finished()) is not None:  # one that ended before a reload
    st.caption(last_run_text(last.snapshot()))
for cut in interrupted_finetunes():  # a run the server's stop cut off: said to every visit for a day
    st.warning(f"The fine-tune of **{cut['name']}** from {cut['base']}, started "
               f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(cut['started']))}, was cut off when the app's server "
               "stopped (a restart or a crash): nothing of it was saved. Start it again below.",
               icon=":material/warning:")


def job_and_stop() -> None:
    """The page ends here (no data yet): this session's fine-tune, if any, is still shown."""
    job_panel(board, me)
    st.stop()


st.subheader("1. Images and annotations")
found = gt_ui.ground_truth_ui(P, optional=True,  # images without annotations can be dotted below
                              gt_label="Annotations (or a zip; or click dots on the images below)",
                              without="uploaded without annotations (dot them below to use them)",
                              # a count alone says how many, not where: fine-tuning refuses it undotted
                              gt_help=gt_ui.GT_HELP + " A counts CSV gives no positions: its images are dotted "
                              "below before they can teach the model (where their count helps you check the dots).")
if found is None:
    st.caption("Upload images with label images, masks, dot images or point CSVs (as on Evaluate), or images "
               "alone and dot the cells below.")
    job_and_stop()

candidates = [(n, d, gt.points if gt.kind == "points" else None) for n, d, gt in found.items
              if gt.kind in ("points", "count")]  # a count alone has no positions: dotted here, it gets them
# images whose annotation was refused (its reason shown above) may be dotted anew; an upload that is no image is
# said where it is listed, not offered for dotting (it would fail only once opened, named "<bytes>")
not_images = [why for n, d in found.unlabelled if (why := not_an_image(short_name(n), d))]
if not_images:
    st.warning(f"{len(not_images)} file(s) could not be used: {'; '.join(not_images[:5])}"
               f"{' …' if len(not_images) > 5 else ''}", icon=":material/warning:")
candidates += [(n, d, None) for n, d in found.unlabelled + found.truth_refused
               if not (not_images and not_an_image(n, d))]
candidates.sort(key=lambda c: c[0].casefold())  # by name, as a file browser lists them (a zip keeps any order)
step = 2  # the sections are numbered as they appear
if candidates:
    st.subheader(f"{step}. Dot the cells")
    step += 1
    st.caption("Click on each cell to put a dot on it; click a dot to remove it. Images without annotation files "
               "are used once they have dots; an image that came with a points CSV shows the file's dots, and your clicks "
               "add to them or remove them. "
               "Dots and uploads are kept while you visit other pages, but **not through a reload or in a new tab**: "
               "download each image's points CSV (beside the image) to keep your dots, and upload it again with the "
               "image. Dot every cell of an image: a cell without a dot is taught as background.")
    annotate_ui(candidates, guess=board.running() is None)  # no second network beside a running fine-tune

items = training_set(found)
counts_only = [n for n, _, gt in items if gt.kind == "count"]
if counts_only:
    st.warning(f"{len(counts_only)} image(s) have a count only, which cannot show a model where the cells are; "
               f"they are left out: {', '.join(counts_only[:8])}. Dot them above instead.")
    items = [it for it in items if it[2].kind != "count"]
tiny = [n for n, d, _ in items if too_small(d)]
if tiny:  # left out by the fine-tune too: said before Start, and kept out of the count and the held-out proposal
    st.warning(f"{len(tiny)} image(s) are under {MIN_IMAGE_PX} px on a side, too small to learn from or to score, "
               f"and are left out: {', '.join(short_name(n) for n in tiny[:8])}{' …' if len(tiny) > 8 else ''}.",
               icon=":material/warning:")
    items = [it for it in items if it[0] not in set(tiny)]

st.subheader(f"{step}. Fine-tune")
if not items:
    st.info("No image has annotations yet.")
    job_and_stop()
st.caption(f"{len(items)} annotated image(s).")
sparse = few_dots(items)
if sparse:
    lines = list(sparse.values())
    st.warning(f"Fewer dots than cells? {len(sparse)} image(s) have under half the cells a model finds on them: "
               f"{'; '.join(lines[:5])}{' …' if len(lines) > 5 else ''}. Every cell without a dot is taught as "
               "background (an image left with no dots, as holding no cells): dot every cell of those images, or "
               "remove them from the upload.", icon=":material/warning:")
if microns := dots_in_microns(items):  # beside Start, not only among the reading notes above; trained as read
    st.warning(f"Dots in µm? {'; '.join(microns[:3])}{' …' if len(microns) > 3 else ''}. Misplaced dots teach the "
               "model wrong cells: fix the file, or remove the image from the upload.", icon=":material/straighten:")
clicked = st.session_state.get(POINTS, {})
empty = [short_name(n) for n, d, gt in items if gt.count == 0 and image_key(n, d) not in clicked]
if empty:  # a points CSV with its header line only reads as an image without cells (an export gone wrong, say)
    st.warning(f"{len(empty)} image(s) have annotation files without a single cell: {', '.join(empty[:5])}"
               f"{' …' if len(empty) > 5 else ''}. They are taught as images without cells (all background); if "
               "they have cells, dot them above or export their annotations again.", icon=":material/warning:")
mine = board.get(me)
saved = mine.snapshot() if mine is not None and started_here(mine) else None  # a followed run's name is not ours
job_args = settings_ui(len(items), saved.name if saved is not None and saved.status in ("running", "done") else None,
                       dots_only=all(gt.kind == "points" for _, _, gt in items),
                       outlines=any(gt.kind in ("labels", "mask") for _, _, gt in items))
busy = board.running()
if busy is not None:
    st.caption(f"One fine-tune runs at a time on a laptop CPU: Start is back when {busy.name} (below) has finished.")
if st.button("Start fine-tuning", key=f"{P}_start", type="primary", icon=":material/model_training:",
             disabled=job_args is None or busy is not None):
    if job_args["base_gone"]:  # pressed in the run that found its base deleted: the user has not seen the new one
        st.warning(f"Nothing was started: {job_args['base_gone']} is no longer installed. Check \"Start from\" (now "
                   f"{job_args['base']}), then press Start again.")
        st.stop()
    try:
        board.clear(me)
        job = board.start(me, FinetuneJob(job_args["base"], items, job_args["name"], job_args["options"]))
        st.session_state[f"{P}__started"] = job.job_id
        st.session_state[f"{P}__sparse"] = sparse  # said again under the result, where held out
    except cc.CellcountError as err:
        sh.show_error(err)
    else:
        st.rerun()  # the button greys out while the job runs
job_panel(board, me)  # under the button that started it
