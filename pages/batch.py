"""Batch page: many images or a zip, one model, one set of settings; the table fills as images finish."""

from __future__ import annotations

import json
import time
import uuid

import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount import viz
from cellcount.batch import BatchItem, counts_frame, distinct_names, labels_zip, objects_frame, same_content
from cellcount.errors import error_text
from cellcount.history import Recorder
from cellcount.io import iter_zip_images, left_out, split_ground_truth_files, zip_image_names
from cellcount.io.archive import is_zip_metadata
from cellcount.io.read import PIXEL_CAP_TEXT
from cellcount.jobs import BatchJob
from cellcount.params import setting_label, setting_text
from pages import _settings as settings
from pages import _shared as sh
from pages._quality import CHECK_HELP

sh.require_entry_point("batch")

P = "batch"
JOB = f"{P}__job"
STOPPED = f"{P}__stopped"
"""A batch stopped here: its rows and the names it never reached, to count on from (:func:`stopped_batch`)."""
POLL_S = 1.0
WATCH_S = 2.0
"""How often an idle Batch page looks for a batch started or ended in another session, so that a tab left open
shows a colleague's batch and its Count button waits for it."""


def _upload_key(f) -> tuple:
    """An upload told from another by name and content, as the batch tells them: two plates' A01.tif of one camera
    have the same name and size (read as one copy, the button said 8 images and 9 were counted). The hash is kept
    per upload (its file id), so a rerun does not hash every byte again."""
    import hashlib

    digests = st.session_state.setdefault(f"{P}__upload_digests", {})
    file_id = getattr(f, "file_id", None)
    digest = digests.get(file_id) if file_id else None
    if digest is None:
        digest = hashlib.blake2b(f.getvalue(), digest_size=16).digest()
        if file_id:
            if len(digests) > 10_000:  # uploads replaced many times over: start again
                digests.clear()
            digests[file_id] = digest
    return f.name, digest


def button_label(files, include_ground_truth: bool = False) -> str:
    """'Count 12 image(s)', counting the images inside zips as the batch will read them (a broken zip as one
    file, reported when counted), not the zips as one file each, and not the files named like ground truth
    that :func:`collect` leaves out."""
    names, zips, loose = [], 0, set()
    for f in files or []:
        if f.name.lower().endswith(".zip"):
            zips += 1
            members = zip_image_names(f.getvalue())
            names += [f"{f.name}/{m}" for m in members] if members else [f.name]
        elif is_zip_metadata(f.name):  # ._ files, .DS_Store, Thumbs.db: listed, never counted
            continue
        elif (key := _upload_key(f)) not in loose:  # a copy uploaded again counts once
            loose.add(key)
            names.append(f.name)
    left_out = 0 if include_ground_truth else len(split_ground_truth_files(names, uploaded=True)[1])
    return (f"Count {len(names) - left_out} image(s)"
            + (f" ({zips} zip file(s) opened)" if zips else "")
            + (f", {left_out} named like ground truth left out" if left_out else ""))


GT_NAMED = ("named like ground truth: not counted (as on the command line; turn on \"Count files named like "
            "ground truth\" to count it)")


def collect(files, *, include_ground_truth: bool = False) -> tuple[list[tuple[str, bytes]], list[BatchItem], list[str]]:
    """Uploads -> (name, bytes) to count, plus items for what is not counted: unreadable zip members (errors),
    a zip's files that are not images, and files named like ground truth (``a_mask.png``, ``labels/a.png``:
    skipped, as the command line skips them, unless ``include_ground_truth``), so a folder of images and their
    labels counts the images only; and notes on names: one row per image (:func:`cellcount.batch.distinct_names`)."""
    items, bad = _collect(files)
    if not include_ground_truth:
        items, bad = _without_ground_truth(items, bad)
    items, copies, renamed = distinct_names(items)
    notes = []
    if copies:
        notes.append(f"{len(copies)} file(s) uploaded twice (same name, same content) counted once: "
                     + ", ".join(f"`{n}`" for n in sorted(set(copies))[:5]) + (" ..." if len(set(copies)) > 5 else ""))
    if same := same_content(items):  # counted each, as named: but a total with a copy in it counts its cells twice
        shown = "; ".join(f"`{copy}` = `{first}`" for copy, first in same[:5])
        notes.append(f"{len(same)} file(s) hold the same bytes as another under another name (copies?), each counted, "
                     f"so the total counts their cells more than once: {shown}" + (" ..." if len(same) > 5 else "")
                     + ". Leave the copies out if they are not separate images.")
    if renamed:
        shown = "; ".join(f"`{old}` as `{new}`" for new, old in list(renamed.items())[:5])
        notes.append(f"{len(renamed)} different file(s) shared a name already taken (a browser sends no folders), so "
                     f"each has a row of its own, in upload order: {shown}" + (" ..." if len(renamed) > 5 else "")
                     + ". Rename them (by plate or well) or upload a zip of their folders to keep the names apart.")
    return items, bad, notes


def _without_ground_truth(items: list[tuple[str, bytes]],
                          bad: list[BatchItem]) -> tuple[list[tuple[str, bytes]], list[BatchItem]]:
    # zip members ("a.zip/b.csv"), but not one refused for its path ("../labels/x.png"): that reason stays
    members = [b.name for b in bad if "/" in b.name and not b.reason.startswith("unsafe path")]
    _, named = split_ground_truth_files([name for name, _ in items] + members, uploaded=True)
    skip = {str(path) for path in named}
    # a zip's annotation tables (``a_points.csv``) are left out like the label images beside them, not failures
    bad = [BatchItem(b.name, "skipped", GT_NAMED, None) if b.name in skip else b for b in bad]
    bad += [BatchItem(name, "skipped", GT_NAMED, None) for name, _ in items if name in skip]
    return [(name, data) for name, data in items if name not in skip], bad


def _collect(files) -> tuple[list[tuple[str, bytes]], list[BatchItem]]:
    items: list[tuple[str, bytes]] = []
    bad: list[BatchItem] = []
    for f in files:
        data = f.getvalue()
        if f.name.lower().endswith(".zip"):
            try:
                for member, content, reason in iter_zip_images(data):
                    if content is None:  # a readme in the zip is left out as a folder's would be, not failed
                        bad.append(BatchItem(f"{f.name}/{member}", "skipped" if left_out(reason) else "error",
                                             reason or "skipped", None))
                    else:
                        items.append((f"{f.name}/{member}", content))
            except cc.CellcountError as err:
                bad.append(BatchItem(f.name, "error", error_text(err, f.name), None))
        elif is_zip_metadata(f.name):  # ._ files, .DS_Store, Thumbs.db, copied from a USB stick: no image, as in a zip
            bad.append(BatchItem(f.name, "skipped", "not an image: a file the operating system keeps (macOS's ._ "
                                 "files and .DS_Store, Windows' Thumbs.db)", None))
        else:
            items.append((f.name, data))
    return items, bad


@st.cache_resource(max_entries=1)
def running_batches() -> dict[str, BatchJob]:
    """The batches of this app process by session, counting or finished and not yet shown: a batch goes on when
    its tab is closed or reloaded, so a new session must see it (one batch at a time: a laptop CPU has no room for
    two) and can show its results."""
    return {}


def owner() -> str:
    """This browser session's id (kept in session state, so page switches keep it)."""
    return st.session_state.setdefault(f"{P}__owner", uuid.uuid4().hex)


UNSHOWN_KEEP_S = 3600
"""How long a finished batch its own session has not shown stays on offer (its label images held in memory)."""


BOARD_TOKEN = "board_token"
"""A shown batch's own name in its options, which :data:`SHOWN` keeps."""

SHOWN = f"{P}__shown"
"""The other sessions' finished batches this session has shown: each stays on offer to the rest (its own tab,
reloaded, among them): showing it in one tab must not take its label images from the others."""


def others_batch() -> BatchJob | None:
    """A batch of another session (or of this browser before a reload): still counting, or finished and not yet
    shown by its own session (gone with a reloaded tab), whose results, label images too, can be shown here."""
    board, me = running_batches(), owner()
    for who, job in list(board.items()):  # a copy: other sessions change it
        if job.ended_at is not None and time.time() - job.ended_at > UNSHOWN_KEEP_S:
            board.pop(who, None)  # its results (label images and all) held no longer: its run is in the history
    shown = st.session_state.get(SHOWN, set())
    return next((job for who, job in list(board.items())
                 if who != me and job.options.get(BOARD_TOKEN, "-") not in shown), None)


def _off_the_board(job: BatchJob | None = None) -> None:
    """Drop ``job`` from the board (shown by a session), or with None every finished batch (a new one starts:
    those not shown are on the Runs page)."""
    board = running_batches()
    for who, j in list(board.items()):
        if j is job or (job is None and not j.snapshot().running):
            board.pop(who, None)


def _card_changes(job: BatchJob) -> str:
    """The settings a batch counts with that differ from its model card's, as the controls name them ("" when
    none), as a settings file's note names them."""
    kind = job.model.output_kind
    card = cc.resolve_params(job.model, None).acting(kind)
    changed = {k: v for k, v in job.params.acting(kind).items() if card.get(k) != v}
    return ", ".join(f"{setting_label(k)}: {setting_text(k, v)}" for k, v in changed.items())


def card_or_changes(job: BatchJob) -> str:
    """"its model card's settings", or "its card's settings except Min. area: 31"."""
    changes = _card_changes(job)
    return f"its card's settings except {changes}" if changes else "its model card's settings"


def own_settings(job: BatchJob) -> str:
    """The settings a batch counts with where they differ from its model card's: a reloaded tab shows the card's in
    its panel, which reads as the running batch's."""
    changes = _card_changes(job)
    return (f"these settings changed from its model card (not shown in this tab's panel): {changes}" if changes
            else "its model card's settings")


def running_settings_note(job: BatchJob) -> str:
    """What this session's running batch counts with, and whether the settings shown beside it are still those: the
    panel shows the session's settings, which may have been edited on any page since the batch started."""
    text = f"Counting with {job.model.name} and {card_or_changes(job)}."
    try:
        current = settings.params(job.model)
    except cc.CellcountError:  # the settings shown are invalid meanwhile: they apply to nothing yet
        current = None
    kind = job.model.output_kind
    if current is None or current.acting(kind) != job.params.acting(kind):
        text += (" The settings shown were changed since it started: they apply to the next batch, not to this one "
                 "(its CSV and settings file record what it counts with).")
    return text


def other_panel(other: BatchJob) -> None:
    """Another session's batch: its progress, redrawn every second, and a Stop; the page is drawn again when
    it ends, so that Count comes back."""

    @st.fragment(run_every=POLL_S)
    def panel() -> None:
        s = other.snapshot()
        if not s.running:
            st.rerun()
        c = st.container(border=True)
        done, total = images_progress(other, s)
        c.info(f"Another batch is counting in this app ({done} of {total} image(s) so far, started "
               f"{time.strftime('%H:%M', time.localtime(time.time() - s.elapsed_s))}) with {other.model.name}, "
               f"{own_settings(other)}: {sh.STARTED_ELSEWHERE}. Its results will be on the Runs page. Count is back when it "
               "ends (one batch at a time).")
        if other.cancel_requested:
            c.caption("Stopping after the image being counted ...")
        else:  # it may be a colleague's batch on a shared server: Stop needs the tick first
            sure = c.checkbox("I want to stop this batch, which may be someone else's", key=f"{P}_stop_sure")
            c.button("Stop that batch", key=f"{P}_stop_other", on_click=sh.stop_elsewhere, args=(other, f"{P}_stop_sure"),
                     icon=":material/stop:", disabled=not sure,
                     help="It stops after the image being counted; the images counted so far are kept on the Runs "
                     "page. Whoever started it is told it was stopped from another tab or browser.")

    panel()


def board_state() -> tuple[int, bool] | None:
    """What this page shows of the other sessions' batches: the batch on offer (or None) and whether it counts."""
    other = others_batch()
    return None if other is None else (id(other), other.snapshot().running)


def watch_board(drawn: tuple[int, bool] | None) -> None:
    """Draw the page again when another session's batch starts, ends or goes off the board since it was drawn."""

    @st.fragment(run_every=WATCH_S)
    def watch() -> None:
        if board_state() != drawn:
            st.rerun()

    watch()


def finished_other_panel(other: BatchJob) -> None:
    """A batch of another session that finished with no session to show it (its tab reloaded or closed): its
    counts are on the Runs page, its label images not (they can be shown here)."""
    done, total = images_progress(other, other.snapshot())
    c = st.container(border=True)
    labels = " (its label images are not: show them here)" if other.model.output_kind == "mask" else ""
    ended = "was stopped" if other.snapshot().status == "cancelled" else "has finished"  # a stop is no finish
    c.info(f"A batch counted in this app {ended}: {done} of {total} image(s) with {other.model.name}, "
           f"{sh.STARTED_ELSEWHERE}. Its counts are on the Runs page{labels}; shown here, they stay on offer to "
           f"other tabs until a new batch starts or an hour after it ended.")
    c.button("Show its results here", key=f"{P}_claim", icon=":material/download:",
             on_click=lambda: finish_batch(other, claimed=True))


def start_batch(files, model: cc.models.CountModel, params: cc.CountParams, page: int | str | None,
                include_ground_truth: bool = False, *, rest_of: dict | None = None) -> None:
    """Count in a background job (:class:`cellcount.jobs.BatchJob`): it goes on while the user visits other
    pages, and the images finished before a stop are kept. ``rest_of``: a stopped batch (:func:`stopped_batch`)
    whose images never reached are counted now, its rows kept first: one table of every image, as if never stopped."""
    items, bad, notes = collect(files, include_ground_truth=include_ground_truth)
    if rest_of is not None:
        rest = set(rest_of["rest"])
        items, bad = [it for it in items if it[0] in rest], list(rest_of["done"])
    _off_the_board()  # finished batches nobody showed: their runs are in the history
    size_model = sh.get_size_model(model, params)  # before the record: a failure here leaves no run "running"
    # the session's backend, as Count, Evaluate and Compare run it: bf16 and fp32 counts may differ by an object
    requested, running = sh.requested_backend(), sh.backend_in_use(model)
    record = Recorder(source="app", model=model.name, model_sha256=model.card.sha256,
                      # the card's counting digest as the CLI records it: a settings file downloaded from Runs then
                      # warns when counted after the card changed
                      settings={"model": model.name, "model_sha256": model.card.sha256, "params": params.to_dict(),
                                "model_card": model.card.counting_digest(), "cellcount_version": cc.__version__,
                                **({"plane": page} if page is not None else {}),
                                **({"backend": running} if running else {})},
                      inputs=[it.name for it in bad] + [name for name, _ in items])
    st.session_state.pop(f"{P}__result", None)  # never shown beside a new batch as if it were its result
    st.session_state[JOB] = BatchJob(items, model, params, failed=bad, record=record,
                                     options={"size_model": size_model, "page": page, "backend": requested}).start()
    running_batches()[owner()] = st.session_state[JOB]
    st.session_state.pop(STOPPED, None)
    st.session_state[f"{JOB}_settings"] = sh.settings_json(model.name, params, page, output_kind=model.output_kind,
                                                           backend=running)
    st.session_state[f"{JOB}_uploads"] = upload_ids(files)
    st.session_state[f"{JOB}_notes"] = notes


def stopped_batch(files, model: cc.models.CountModel, params: cc.CountParams | None,
                  page: int | str | None) -> dict | None:
    """The batch stopped here whose images never reached may be counted now: the same uploads, model, settings and
    plane (else its rows would not be one batch's); None otherwise."""
    stopped = st.session_state.get(STOPPED)
    if (stopped is None or params is None or not stopped["rest"] or stopped["model"] != model.name
            or stopped["settings"] != params.to_json() or stopped["page"] != page
            or stopped["uploads"] != upload_ids(files)):
        return None
    return stopped


def upload_ids(files) -> list[tuple[str, int]]:
    """What identifies a set of uploads: each file's name and size."""
    return [(f.name, f.size) for f in files or []]


def finish_batch(job: BatchJob, *, claimed: bool = False) -> None:
    """The finished (or stopped) job's rows -> the page's result; the job is forgotten first, so that an
    error here (out of memory for the label zip) does not leave the page waiting on it for ever. ``claimed``:
    another session's job (its own tab gone), whose upload notes went with that session."""
    st.session_state.pop(JOB, None)
    if claimed:  # left on offer to the other tabs (its own among them), not again to this one: by a token of its own
        # (an id() reused by a later job would hide that running batch here)
        st.session_state.setdefault(SHOWN, set()).add(job.options.setdefault(BOARD_TOKEN, uuid.uuid4().hex))
    else:
        _off_the_board(job)
    s = job.snapshot()
    ok = [it for it in s.done if it.status == "ok"]
    rows = [*s.done, *job.not_counted()]  # every input has a row, those never reached too
    note = None
    counted, n = images_progress(job, s)
    st.session_state.pop(STOPPED, None)
    if s.status == "cancelled":
        where = sh.STOPPED_ELSEWHERE if s.cancelled_by == sh.ELSEWHERE else ""
        note = f"Stopped after {counted} of {n} image(s){where}: these are the ones counted."
        if not claimed:  # its rows, to go on from them with the images it never reached (Count the rest)
            st.session_state[STOPPED] = {"done": list(s.done), "rest": [it.name for it in job.not_counted()],
                                         "model": job.model.name, "settings": job.params.to_json(),
                                         "page": job.options.get("page"),
                                         "uploads": st.session_state.get(f"{JOB}_uploads")}
    elif s.status == "failed":
        note = f"The batch stopped after {counted} of {n} image(s): {s.error}"
    if job.record is not None and job.record.warning:
        note = (note + " " if note else "") + f"This batch is not in the run history: {job.record.warning}"
    counts = counts_frame(rows, job.options.get("page"))  # what was counted of the stacks
    st.session_state[f"{P}__result"] = {
        "counts": counts,
        "uploads": None if claimed else st.session_state.pop(f"{JOB}_uploads", None),
        "objects_csv": sh.csv_bytes(objects_frame(ok)),
        # never named as an upload left out (the user's own a_labels.tif, replaced when unpacked beside it)
        "labels_zip": labels_zip(ok, taken=[it.name for it in rows if it.status != "ok"])
        if job.model.output_kind == "mask" else None,
        # from the job's own model: the model may have been deleted on the Models page while the batch ran
        "settings": ((None if claimed else st.session_state.pop(f"{JOB}_settings", None))
                     or sh.settings_json(job.model.name, job.params, job.options.get("page"),
                                         output_kind=job.model.output_kind,
                                         backend=sh.backend_in_use(job.model, job.options.get("backend") or "auto"))),
        "model": job.model.name,
        # the downloads of one batch named alike and apart from another's (not counts.csv, counts (1).csv ...)
        "stamp": f"{job.model.name}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(job.ended_at or time.time()))}",
        "density": job.model.output_kind == "density",
        "note": note,
        "name_notes": [] if claimed else st.session_state.pop(f"{JOB}_notes", []),
        # what another tab's batch counted with: this tab's panel shows this tab's settings, not those
        "claimed": f"{job.model.name} and {card_or_changes(job)}" if claimed else None,
    }


def images_progress(job: BatchJob, s) -> tuple[int, int]:
    """(images done, images in all) as the Count button counts them: a file or zip member that could not be read
    is an image that failed; a zip's other files and files named like ground truth are rows, not images."""
    skipped = sum(it.status == "skipped" for it in job.failed)
    return len(s.done) - skipped, len(job.names) + len(job.failed) - skipped


def job_panel(job: BatchJob) -> None:
    """Progress and the rows so far while the batch runs (redrawn every second without rerunning the page)."""
    was_running = job.snapshot().running

    @st.fragment(run_every=POLL_S if was_running else None)
    def panel() -> None:
        s = job.snapshot()
        if s.running:
            # the images to count, as the button said: a zip's other files and unreadable members are rows, not images
            counted, n = images_progress(job, s)
            st.progress(counted / max(n, 1), text=f"Counting: {counted} / {n} image(s)")
            st.caption(running_settings_note(job))
            if s.done:
                counts_table(counts_frame(s.done))
            if job.cancel_requested:
                st.info("Stopping after the image being counted ...")
            else:
                st.button("Stop", key=f"{P}_stop", on_click=job.cancel, icon=":material/stop:",
                          help="Stop after the image being counted; the images counted so far are kept.")
            st.caption("It keeps counting if you open other pages; come back here for the results.")
            return
        finish_batch(job)
        st.rerun()  # the whole page: the result, and the Count button back

    panel()


def counts_table(df: pd.DataFrame) -> None:
    """The per-image table as the page shows it, while a batch counts and after: the verdict beside the count; the
    reasons last and wide (cut at 170 px even on a wide screen, and on a small one they push the score off it); the
    CSV holds every column in its order."""
    shown = [c for c in ("file", "plane", "status", "count", "check", "check_score", "check_reasons") if c in df]
    if "reason" in df and df["reason"].fillna("").astype(str).str.len().any():  # why a file was not counted
        shown.insert(shown.index("status") + 1, "reason")
    sh.dataframe(
        df[shown].assign(**({"check": sh.flag_words(df["check"])} if "check" in shown else {})),
        column_config={
            "file": st.column_config.TextColumn("file", width=180, help="The file's name (hover for all of it)"),
            # "ok" beside a flagged count would read as "the count is fine"
            "status": st.column_config.TextColumn(
                width=60, help="ok: the file was read and counted (whether to trust the count: 'check this image'); "
                     "error: it could not be (the reason says why); skipped: not counted, on purpose"),
            "reason": st.column_config.TextColumn(width=170, help="Why the file was not counted"),
            "count": st.column_config.NumberColumn(width=60),
            "check": sh.flag_column("check this image", 120, CHECK_HELP),
            "check_reasons": st.column_config.TextColumn("why", width=420,
                                                         help="Why the count may be wrong (empty: no warning)"),
            "check_score": st.column_config.NumberColumn(
                "check score", format="%.2f", width=90,
                help="How close the count came to a quality limit: the signal furthest toward its limit, as a share "
                     "of it (1 or more: flagged; 0.95-1: near a limit)"),
        },
    )


def show_result(res: dict, current: cc.CountParams | None, page: int | str | None, files=None,
                model_name: str | None = None) -> None:
    df = res["counts"]
    ok = df[df["status"] == "ok"]
    bad = df[df["status"] != "ok"]
    if files and res.get("uploads") is not None and upload_ids(files) != res["uploads"]:
        st.warning(f"These results are of the batch counted earlier ({len(res['uploads'])} file(s)), not of the "
                   "files above: press Count to count these.")
    if res.get("note"):
        st.warning(res["note"])
    for text in res.get("name_notes", []):
        st.info(text, icon=":material/content_copy:")
    failed = bad[bad["status"] == "error"]
    skipped = bad[bad["status"] != "error"]  # never reached (a stopped batch) or named like ground truth
    m = st.container(key="metrics_batch").columns(5)  # keyed: the tiles wrap on a narrow page
    m[0].metric("Images counted", len(ok))
    m[1].metric("Failed", len(failed), help="Files that could not be read or counted (listed below)")
    m[2].metric("Not counted", len(skipped), help="Files named like ground truth, files in a zip that are not "
                "images, and files a stopped batch never reached (the 'reason' column says which)")
    flagged = ok[ok["check"].fillna(False).astype(bool)] if "check" in ok else ok.iloc[:0]
    m[3].metric("Total count", int(ok["count"].sum()) if len(ok) else 0,
                # a flagged image (a nearly empty well sized wrong) can make most of a total: its share beside it
                # short, the tile cuts it; the objects in the flagged images, not flagged objects
                delta=f"{int(flagged['count'].sum())} in {len(flagged)} flagged" if len(flagged) else None,
                delta_color="off", delta_arrow="off",
                help="Objects counted in all images; below it, how many of them are in the "
                f"{len(flagged)} image(s) flagged \"check this image\"")
    m[4].metric("Time", f"{df['seconds'].sum():.1f} s")
    gt_named = skipped[skipped["reason"] == GT_NAMED]
    if len(gt_named):
        shown = ", ".join(f"`{f}`" for f in gt_named["file"].head(5)) + (" ..." if len(gt_named) > 5 else "")
        st.info(f"{len(gt_named)} file(s) named like ground truth were not counted: {shown}. Turn on \"Count files "
                "named like ground truth\" and count again if they are images.")
    others = skipped[skipped["reason"] != GT_NAMED]
    if len(others):  # a zip's readme, images a stopped batch never reached: why, without scrolling the table
        # one reason once for the files it holds ("not counted: the batch was stopped ..." read three times)
        by_reason = others.assign(reason=others["reason"].fillna("")).groupby("reason", sort=False)["file"].apply(list)
        shown = "; ".join(", ".join(f"`{f}`" for f in files[:5]) + (" ..." if len(files) > 5 else "")
                          + f": {str(reason).removeprefix('not counted: ')}" for reason, files in by_reason.head(5).items())
        st.info(f"{len(others)} file(s) not counted: {shown}" + (" ..." if len(by_reason) > 5 else ""))
    flagged = int(ok["check"].fillna(False).astype(bool).sum()) if "check" in ok else 0
    if flagged:
        from cellcount.quality import names_settings

        by_settings = int(ok.loc[ok["check"].fillna(False).astype(bool), "check_reasons"].map(names_settings).sum()) \
            if "check_reasons" in ok else 0
        st.warning(f"{flagged} image(s) flagged \"check this image\": their counts may be wrong (column \"check "
                   "this image\", reasons beside it and below; in the CSV: check, check_reasons)."
                   + (f" {'All' if by_settings == flagged else by_settings} of them name your settings among the "
                      "reasons: they move the count far from the model card's or drop many objects, which can set off "
                      "the other reasons too. Check those settings first (Reset to the model card counts as the model "
                      "was calibrated)." if by_settings else ""))
        with st.expander(f"Why these {flagged} image(s) are flagged"):
            rows = ok[ok["check"].fillna(False).astype(bool)]
            for _, row in rows.head(50).iterrows():
                st.markdown(f"- `{row['file']}` ({row['count']:g}): {row.get('check_reasons', '')}")
            if len(rows) > 50:
                st.caption(f"... and {len(rows) - 50} more: the per-image CSV has every reason.")
    ran = json.loads(res["settings"])
    if res.get("claimed"):
        st.info(f"Counted in another tab or browser with {res['claimed']}. The settings shown here are this tab's: "
                "they apply to the next batch.")
    elif model_name is not None and ran.get("model") != model_name:
        st.warning(f"These results were counted with {ran.get('model')}, not {model_name} (the model chosen now): "
                   "press Count to count with it.")
    elif current is not None and (any(current.to_dict().get(k, v) != v for k, v in ran["params"].items())
                                  or ran.get("plane") != page):  # the settings that acted (the file lists those)
        st.warning("The settings changed since this batch ran; press Count again to apply them.")
    if len(failed):
        with st.container(border=True):
            st.markdown(f"**{len(failed)} file(s) could not be counted** (the batch went on):")
            over_cap = False
            for _, row in failed.iterrows():
                reason = str(row["reason"])  # it names the file already where it was read from it
                reason = reason.removeprefix(f"{row['file']}: ").removeprefix(f"{row['file'].rsplit('/', 1)[-1]}: ")
                over_cap = over_cap or reason.endswith(PIXEL_CAP_TEXT)
                st.markdown(f"- `{row['file']}` — {reason}")
            if over_cap:  # what to do, as the Count page and the command line say it
                st.caption(f"Images above the pixel cap: {sh.TOO_LARGE_HINT[0].lower()}{sh.TOO_LARGE_HINT[1:]}")
    counts_table(df)
    st.caption("Every column (the model and the backend it ran in, the count before rounding, the nucleus size and resize factor, the time, "
               "the settings) is in the Per-image CSV.")
    if len(ok) >= 3:  # a histogram of one or two counts is one or two bars that say less than the table
        st.plotly_chart(viz.count_histogram(ok["count"]), key=f"{P}_hist")
    files = [
        ("Per-image CSV", sh.csv_bytes(df), "counts.csv", "text/csv", "counts"),
        # a density model's rows are its peaks (approximate centres), not the counted objects
        ("Centres CSV", res["objects_csv"], "centres.csv", "text/csv", "objects") if res.get("density") else
        ("Objects CSV", res["objects_csv"], "objects.csv", "text/csv", "objects"),
    ]
    if res["labels_zip"] is not None:
        files.append(("Label images (zip)", res["labels_zip"], "labels.zip", "application/zip", "labels"))
    files.append(("Settings JSON", res["settings"], "settings.json", "application/json", "settings"))
    row = st.container(horizontal=True)
    stamp = res.get("stamp")
    for label, data, name, mime, key in files:
        sh.download_button(label, data, f"{stamp}_{name}" if stamp else name, mime, f"{P}_dl_{key}", container=row)


CUT_OFF_WINDOW_H = 24
"""An app batch cut off this recently (the app stopped while it counted) is said on the page."""


def cut_off_note() -> None:
    """The app's latest batch, where its process ended before it finished (the app was stopped or restarted while it
    counted), within :data:`CUT_OFF_WINDOW_H` hours, said once per browser session: its uploads and progress went
    with the app, and the page would otherwise show an empty batch as if none had run. A batch counted since (by
    anyone on this server) is the latest: an old cut-off is then no news to every colleague's new tab."""
    from cellcount import history

    if st.session_state.get(f"{P}__cut_off_said"):
        return
    st.session_state[f"{P}__cut_off_said"] = True
    try:
        runs = history.list_runs(20)
    except history.HistoryError:
        return
    app_runs = runs[runs["source"] == "app"]
    if not len(app_runs):
        return
    run = app_runs.iloc[0]  # the newest
    if run["status"] != history.ENDED or not run["n_rows"] < run["n_inputs"]:
        return
    try:
        started = pd.Timestamp(run["started_at"])
        recent = pd.Timestamp.now(tz=started.tz) - started < pd.Timedelta(hours=CUT_OFF_WINDOW_H)
    except (TypeError, ValueError):
        return
    if recent:
        st.warning(f"A batch counted in this app ended before it finished: run {run['id']} ({run['model']}), "
                   f"{run['n_rows']} of {run['n_inputs']} image(s), when the app stopped or restarted. The "
                   f"{run['n_rows']} counted are on the Runs page (its CSVs); to count the rest, upload the images "
                   "again here.", icon=":material/history:")


st.title("Batch")
st.caption(
    "Count many images with one model and one set of settings. Upload image files and/or zip files "
    "(folders inside are fine). Files that cannot be read are listed with the reason; the rest go on."
)
left, right = st.columns([1, 3], gap="medium")
with left:
    model_name, model = sh.pick_model(P)
    sh.show_messages(P)
    sh.settings_panel(P, model_name, model)

with right:
    cut_off_note()
    returning = sh.uploaders_empty(f"{P}_files")
    up = st.file_uploader(
        "Images or zip files", type=[*sh.IMAGE_TYPES, *sh.MICROSCOPE_TYPES, "zip"], accept_multiple_files=True, key=f"{P}_files",
        help=f"PNG, JPEG, BMP or TIFF images, or zip files of them (folders inside are fine). {sh.MICROSCOPE_HELP}",
    )
    kept = sh.kept_uploads(f"{P}_uploads", [list(up or [])], returning=returning,
                           note=lambda k: f"Showing the {len(k[0])} file(s) you uploaded earlier; upload again to "
                           "replace them.", remove_key=f"{P}_forget_uploads")
    files = kept[0] if kept else []
    try:
        params = settings.params(model)  # the session's settings: the ones tuned on Count or Evaluate
    except cc.CellcountError as err:
        sh.show_error(err)
        params = None
    page = sh.stack_plane_ui(P)
    include_gt = st.toggle(
        "Count files named like ground truth", False, key=f"{P}_include_gt",
        help="Off: files named like annotations (a_labels.tif, a_mask.png, a_dots.png, files in labels/ or masks/ "
        "folders) are listed but not counted, as the command line does (--include-ground-truth), so a folder of "
        "images with their labels counts the images only. On: every image file is counted.")
    job = st.session_state.get(JOB)
    other = others_batch() if job is None else None
    if other is not None and not other.snapshot().running:
        finished_other_panel(other)
        other = None  # Count is back
    if other is not None:
        other_panel(other)
    run = st.button(
        button_label(files, include_gt),
        key=f"{P}_run",
        # a click is dropped when the button is drawn disabled on the run it starts (another batch started since the
        # page was drawn): the callback, run first, still sees it
        on_click=lambda: st.session_state.__setitem__(f"{P}__clicked", True),
        type="primary",
        disabled=not files or params is None or job is not None or other is not None,
        icon=":material/play_arrow:",
        help="A batch is counting: wait for it or stop it" if job is not None or other is not None else None,
    )
    clicked = st.session_state.pop(f"{P}__clicked", False)
    stopped = stopped_batch(files, model, params, page) if job is None and other is None else None
    # the images a stopped batch never reached, counted on to one table (Count again recounted all 25 for 20)
    rest = stopped is not None and st.button(
        f"Count the {len(stopped['rest'])} not counted", key=f"{P}_rest", icon=":material/fast_forward:",
        on_click=lambda: st.session_state.__setitem__(f"{P}__clicked", True),  # as Count's: said if beaten
        help="Count the images the stopped batch never reached, with the same model and settings; the images counted "
        "before are kept, and the table, CSVs and label images hold them all.")
    if rest and not sh.model_gone_now(P):
        start_batch(files, model, params, page, include_gt, rest_of=stopped)
        st.rerun()
    if run and (gone := sh.model_gone_now(P)):
        st.warning(f"Nothing was counted: {gone}, the model you chose, is no longer installed. Check the model on the "
                   f"left (now {model_name}), then press Count again.")
    elif clicked and other is not None:  # another batch started since the page was drawn: nothing counted
        st.warning("Nothing was counted: another batch started in this app before your click (above). Your images "
                   "are kept here: press Count again when it ends.",
                   icon=":material/block:")
    elif run and params is not None and job is None and other is None:
        start_batch(files, model, params, page, include_gt)
        st.rerun()  # drawn again with the job: the Count button disabled while it counts
    if job is None and other is None:
        watch_board(board_state())
    if job is not None:
        job_panel(job)
    else:
        result = st.session_state.get(f"{P}__result")
        if result is not None:
            show_result(result, params, page, files, model_name)
        elif not files:
            st.info("Upload images (PNG, JPEG, TIFF 8/16-bit) or a zip of them, then press Count.")
