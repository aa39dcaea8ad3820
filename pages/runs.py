"""Runs page: the history of batches (CLI and app), their CSVs again, their settings back on Count or Batch."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import cellcount as cc
from cellcount import history
from cellcount.csvout import csv_bytes
from cellcount.params import setting_label, setting_text
from cellcount.settingsfile import record_text
from pages import _settings as settings
from pages import _shared as sh

sh.require_entry_point("runs")

P = "runs"
LIST_COLUMNS = {"id": "run", "started_at": "started", "source": "from", "host": "computer", "model": "model",
                "status": "status", "n_inputs": "images", "n_ok": "counted", "n_failed": "failed",
                "n_skipped": "not counted",
                "total_count": "total count"}
ROW_COLUMNS = {"file": "file", "count": "count", "status": "status", "reason": "why not counted",
               "check": "check this image", "check_score": "check score", "check_reasons": "why"}  # why: last, wide
"""The per-image columns shown here, by the names the app uses; the CSV keeps every column."""


def when(stamp: str | None) -> str:
    """A run's time as people write it: 2026-12-03 15:21 UTC (the record keeps ISO 8601 to the second)."""
    if not stamp:
        return "—"
    try:
        t = pd.Timestamp(stamp)
    except ValueError:
        return str(stamp)
    return t.tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC") if t.tzinfo else t.strftime("%Y-%m-%d %H:%M")


def run_label(runs, run_id: int) -> str:
    r = runs[runs["id"] == run_id].iloc[0]
    done = f"{r['n_rows']} image(s)" if r["n_rows"] == r["n_inputs"] else f"{r['n_rows']} of {r['n_inputs']} image(s)"
    return f"#{r['id']} · {when(r['started_at'])} · {r['source']} · {r['model']} · {done} · {r['status']}"


def settings_table(run: dict) -> pd.DataFrame:
    """The run's settings by the names and values the app shows (those that act for its model's kind)."""
    values = run["settings"].get("params", {}) or {}
    try:
        kind = sh.get_model(run["model"]).output_kind
        acting = set(cc.CountParams(**{k: v for k, v in values.items() if k in cc.CountParams().to_dict()})
                     .acting(kind))
    except (cc.CellcountError, TypeError, ValueError):  # a model deleted since, or settings of another version
        acting = set(values)
    known = cc.CountParams().to_dict()
    # a setting of another version (not a field now) keeps its recorded name: nothing recorded is hidden
    rows = [{"setting": setting_label(k), "value": setting_text(k, v)} for k, v in values.items()
            if k in acting or k not in known]
    for key, label in (("plane", "Z-stack plane"), ("backend", "inference backend"),
                       ("backends_of_resumed_rows", "backends of rows kept from an earlier run")):
        value = run["settings"].get(key)
        if value is not None:
            rows.append({"setting": label, "value": ", ".join(map(str, value)) if isinstance(value, list) else str(value)})
    return pd.DataFrame(rows, columns=["setting", "value"])


def open_on(page: str, run: dict) -> None:
    """Make the run's model and settings the session's, then go to ``page``."""
    params = run["settings"].get("params", {})
    try:
        model = sh.get_model(run["model"])
        cc.resolve_params(model, params)  # refuse settings this version cannot use, before storing them
    except cc.CellcountError as err:
        st.session_state[f"{P}__msg"] = ("error", f"Cannot open run #{run['id']}'s settings: {err}")
        return
    settings.set_current_model(model.name)
    detail = f"run #{run['id']} of {when(run['started_at'])}"  # as the table writes it
    recorded, now = run.get("model_sha256"), getattr(getattr(model, "card", None), "sha256", None)
    if recorded and now and recorded != now:  # said beside the settings on the page opened, where it matters
        detail += (f"; that run counted with other weights named {model.name} (replaced since): the same "
                   "settings can count differently now")
    ran, runs_now = run["settings"].get("backend"), sh.backend_in_use(model)
    if isinstance(ran, str) and runs_now and ran != runs_now:  # as `count --settings` notes it
        detail += (f"; that run ran the {ran} backend and this session runs {runs_now} (Count's Timing tab), so a "
                   "count may differ by an object")
    settings.put(model, params, origin="run", detail=detail)
    sh.set_plane_choice(run["settings"].get("plane", "first"))  # the run counted z-stacks this way
    st.switch_page(f"pages/{page}.py")


st.title("Runs")
st.caption(
    "Every batch counted here or with `python -m cellcount count` is recorded on this computer, and everyone using "
    "this app's server sees every run here (the app has no user accounts): when, "
    "which model and settings, which images, and every per-image row. Download a run's CSV again or "
    "reuse its settings. The command line lists the same runs: `python -m cellcount runs`. Fine-tunes are not runs "
    "here: each fine-tuned model's card, on the Models page, says what it learnt from and how it scored."
)
sh.show_messages(P)
try:
    runs = history.list_runs(500)
except history.HistoryError as err:
    sh.show_error(err)
    st.stop()
if not len(runs):
    st.info(f"No runs recorded yet. Count images on the Batch page or with the CLI. (History: {history.db_path()})")
    st.stop()

# a run that ended before its end (killed, interrupted, the app restarted) never reached its last inputs, which have
# no row: not counted too ("not counted 0" beside 3 of 100)
unreached = (runs["n_inputs"] - runs["n_rows"]).clip(lower=0).where(
    runs["status"].isin([history.ENDED, "interrupted", "failed"]), 0)
sh.dataframe(runs[list(LIST_COLUMNS)].assign(started_at=runs["started_at"].map(when),
                                             n_skipped=runs["n_skipped"] + unreached), key=f"{P}_table",
             column_config={k: st.column_config.Column(v) for k, v in LIST_COLUMNS.items()})
st.caption(f"{len(runs)} latest run(s) in {history.db_path()}")
run_id = st.selectbox("Run", list(runs["id"]), key=f"{P}_run", format_func=lambda i: run_label(runs, i))
try:
    run = history.get_run(int(run_id))
    rows = history.run_rows(int(run_id))
except (KeyError, history.HistoryError) as err:
    sh.show_error(err if isinstance(err, history.HistoryError) else LookupError(err.args[0]))
    st.stop()

m = st.container(key="metrics_run").columns(4)  # keyed: the tiles wrap on a narrow page
m[0].metric("Images", len(rows) if len(rows) == run["n_inputs"] else f"{len(rows)} of {run['n_inputs']}",
            help="Files with a row (counted, failed or not counted) of the inputs the run was given")
ok = rows[rows["status"] == "ok"] if len(rows) else rows
m[1].metric("Counted", len(ok))
m[2].metric("Total count", int(ok["count"].astype(float).sum()) if len(ok) else 0)
m[3].metric("Status", run["status"],
            help="ended: its process stopped before it finished (the app or the command was stopped, killed or "
            "restarted); its rows are what it counted" if run["status"] == history.ENDED else None)
st.markdown(
    f"**{run['model']}** · {run['source']} on {run['host']} · started {when(run['started_at'])}, "
    + (f"finished {when(run['finished_at'])}" if run["finished_at"] else "still counting"
       if run["status"] == "running" else "never finished"),
    help=f"The model's weights: sha256 {run['model_sha256'] or 'not recorded'} (a model retrained since under "
    "the same name has other weights).",
)
if len(rows):
    shown = [c for c in ROW_COLUMNS if c in rows.columns]
    sh.dataframe(rows.assign(**({"check": sh.flag_words(rows["check"])} if "check" in shown else {})),
                 key=f"{P}_rows", column_order=shown,
                 # the score as Batch shows it (two decimals: one scale on both pages); text cut less
                 column_config={c: st.column_config.Column(ROW_COLUMNS[c]) for c in shown}
                 | {"check_score": st.column_config.NumberColumn(ROW_COLUMNS["check_score"], format="%.2f"),
                    "check_reasons": st.column_config.TextColumn(ROW_COLUMNS["check_reasons"], width=320),
                    "reason": st.column_config.TextColumn(ROW_COLUMNS["reason"], width=150)})
    st.caption("Every column (count estimate, nucleus size, timings, settings) is in the per-image CSV.")
with st.expander("Settings and inputs"):
    sh.dataframe(settings_table(run), key=f"{P}_settings")
    st.caption(f"{len(run['inputs'])} input(s):")
    st.code("\n".join(map(str, run["inputs"])) or "—", language=None)
    if st.toggle("Show the settings as recorded (JSON)", key=f"{P}_raw"):
        st.json(run["settings"])
row = st.container(horizontal=True)
# the settings that act on its model, as every other settings file lists them (a run records them all), and the
# backend it ran in, which count --settings compares with its own
settings_file = record_text({"model": run["model"], **run["settings"]},
                            sh.get_model(run["model"]).output_kind if run["model"] in cc.list_models() else None)
# formula-safe as every CSV: the history keeps an app run's file names as they are (a CLI run's rows were escaped
# when its CSV was written, and an escaped cell is left as it is)
csv = csv_bytes(rows)
sh.download_button("Per-image CSV", csv, f"run-{run['id']}-counts.csv", "text/csv", f"{P}_dl_csv", container=row)
kept_objects = history.objects_path(run["id"])
if run["source"] == "app" and kept_objects.is_file():  # a CLI run's objects are in its own --objects file
    try:
        density = sh.get_model(run["model"]).output_kind == "density"
    except cc.CellcountError:  # deleted since
        density = False
    what = "Centres" if density else "Objects"
    sh.download_button(f"{what} CSV", kept_objects.read_text(encoding="utf-8").encode("utf-8-sig"),  # as the counts
                       f"run-{run['id']}-{what.lower()}.csv", "text/csv", f"{P}_dl_objects", container=row)
sh.download_button("Settings JSON", settings_file, f"run-{run['id']}-settings.json", "application/json",
                   f"{P}_dl_settings", container=row)
gone = run["model"] not in cc.list_models()  # deleted (a fine-tune) or renamed since: its settings have no model
gone_help = f"{run['model']} is no longer installed (deleted or renamed since this run)" if gone else None
if row.button("Open settings on Count", key=f"{P}_to_count", icon=":material/center_focus_strong:", disabled=gone,
              help=gone_help):
    open_on("count", run)
if row.button("Open settings on Batch", key=f"{P}_to_batch", icon=":material/stacks:", disabled=gone, help=gone_help):
    open_on("batch", run)
if gone:
    st.caption(f"{gone_help}: its settings can be downloaded, not opened.")
sh.show_messages(P)
