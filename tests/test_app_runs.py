"""AppTest of the Runs page: CLI and app batches listed, CSV again, settings opened on Count."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from cellcount import history  # noqa: E402
from cellcount.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def open_page(path: str, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=90)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(path)
    at.run()
    assert not at.exception, at.exception
    return at


def test_empty_history_says_so():
    at = open_page("pages/runs.py")
    assert any("No runs recorded yet" in i.value for i in at.info)


@pytest.mark.slow
def test_cli_and_app_runs_are_listed_and_settings_open_on_count(tmp_path, count_batch):
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "classical-otsu", "--min-area-px", "33",
                 "--out", str(tmp_path / "c.csv"), "--no-progress", "-q"]) == 0
    at = open_page("pages/batch.py", batch_model="classical-otsu")
    at.file_uploader(key="batch_files").set_value(
        [("s01_sparse_small.png", (SAMPLES / "s01_sparse_small.png").read_bytes(), "image/png")])
    at.run()
    count_batch(at)
    assert not at.exception, at.exception
    runs = history.list_runs()
    assert list(runs["source"]) == ["app", "cli"]  # newest first
    assert list(runs["status"]) == ["done", "done"]

    at.switch_page("pages/runs.py")
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["source"]) == ["app", "cli"]
    cli_id = int(runs.loc[runs["source"] == "cli", "id"].iloc[0])
    at.selectbox(key="runs_run").set_value(cli_id)
    at.run()
    rows = at.dataframe[1].value
    assert list(rows["file"]) == [str(SAMPLES / "s01_sparse_small.png")]
    # settings by the app's names and values, the raw record behind a toggle
    shown = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert dict(zip(shown["setting"], shown["value"]))["Min. area (px)"] == "33"
    assert "min_area_px" not in set(shown["setting"]) and not at.json
    at.toggle(key="runs_raw").set_value(True).run()
    assert any("33" in str(j.value) for j in at.json)
    assert " UTC" in at.selectbox(key="runs_run").format_func(cli_id) and table["started_at"].iloc[0].endswith(" UTC")
    at.button(key="runs_to_count").click()
    at.run()
    assert not at.exception, at.exception
    store = at.session_state["_settings"]
    assert store["model"] == "classical-otsu"
    assert store["models"]["classical-otsu"]["values"]["min_area_px"] == 33
    assert f"run #{cli_id}" in store["models"]["classical-otsu"]["detail"]
    assert store["models"]["classical-otsu"]["detail"].endswith(" UTC"), "its time as the Runs table writes it"
    assert store["models"]["classical-otsu"]["origin"] == "run"


def test_a_run_counted_as_maximum_projections_reopens_with_that_plane_choice(tmp_path):
    """Reopening a batch counted with "maximum projection" showed "first plane" and kept the old table without
    a warning; the run's settings file had no plane either."""
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "classical-otsu", "--plane", "max",
                 "--out", str(tmp_path / "c.csv"), "--no-progress", "-q"]) == 0
    at = open_page("pages/runs.py")
    at.button(key="runs_to_batch").click()
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["plane_choice"] == "max"
    assert at.selectbox(key="batch_plane").value == "max"


def test_a_run_that_stopped_early_says_how_many_of_its_images_it_has():
    run_id = history.start_run(source="app", model="classical-otsu", model_sha256="", settings={},
                               inputs=["a.png", "b.png", "c.png"])
    history.add_rows(run_id, [{"file": "a.png", "status": "ok", "count": 4}])
    history.finish_run(run_id, "interrupted")
    at = open_page("pages/runs.py")
    label = at.selectbox(key="runs_run").format_func(run_id)
    assert "1 of 3 image(s)" in label and "interrupted" in label
    assert next(m.value for m in at.metric if m.label == "Images") == "1 of 3"
    # the two never reached are not counted, as a stopped app batch's skipped rows are (it said 0)
    listed = at.dataframe[0].value.set_index("id")
    assert listed.loc[run_id, "n_skipped"] == 2 and listed.loc[run_id, "n_ok"] == 1


def test_an_app_batchs_objects_download_again_from_the_runs_page():
    """The Batch page's objects CSV was lost with a reloaded tab; the run's objects are kept with its counts."""
    import pandas as pd

    recorder = history.Recorder(source="app", model="classical-otsu", model_sha256="", settings={}, inputs=["a.png"])
    recorder.add([{"file": "a.png", "status": "ok", "count": 2}])
    recorder.add_objects(pd.DataFrame({"file": ["a.png", "a.png"], "label": [1, 2], "area_px": [30, 41]}))
    recorder.finish("done")
    at = open_page("pages/runs.py")
    at.selectbox(key="runs_run").set_value(recorder.run_id).run()
    assert not at.exception, at.exception
    assert "Objects CSV" in {d.label for d in at.get("download_button")}
    # a CLI run's objects are in the file it wrote: no button
    cli = history.start_run(source="cli", model="classical-otsu", model_sha256="", settings={}, inputs=["b.png"])
    history.finish_run(cli, "done")
    at = open_page("pages/runs.py")
    at.selectbox(key="runs_run").set_value(cli).run()
    assert "Objects CSV" not in {d.label for d in at.get("download_button")}


def test_an_app_runs_per_image_csv_is_formula_safe_as_every_csv(monkeypatch):
    """The history keeps an app batch's file names as they are: the Runs page wrote ``=HYPERLINK.png`` bare into its
    per-image CSV (a formula in Excel) while Batch's own CSV and ``runs --export`` escaped it."""
    from pages import _shared as sh

    saved = {}

    def keep(label, data, file_name, *args, **kwargs):
        saved[label] = data

    monkeypatch.setattr(sh, "download_button", keep)
    recorder = history.Recorder(source="app", model="classical-otsu", model_sha256="", settings={},
                                inputs=["=HYPERLINK.png"])
    recorder.add([{"file": "=HYPERLINK.png", "status": "ok", "count": 2}])
    recorder.finish("done")
    at = open_page("pages/runs.py")
    at.selectbox(key="runs_run").set_value(recorder.run_id).run()
    assert not at.exception, at.exception
    text = saved["Per-image CSV"].decode("utf-8-sig")
    assert "\n'=HYPERLINK.png," in text and "\n=HYPERLINK" not in text


@pytest.mark.slow
def test_a_runs_settings_opened_for_a_model_replaced_since_say_so(tmp_path):
    """A run made with weights that another model has replaced under the same name: its settings still open, and
    the settings line on the page opened says the run counted with other weights."""
    import sqlite3

    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "unet-density",
                 "--out", str(tmp_path / "c.csv"), "--no-progress", "-q"]) == 0
    with sqlite3.connect(history.db_path()) as db:  # as if the model had been trained again since
        db.execute("UPDATE runs SET model_sha256 = 'feedface'")
    at = open_page("pages/runs.py")
    at.button(key="runs_to_count").click()
    at.run()
    assert not at.exception, at.exception
    detail = at.session_state["_settings"]["models"]["unet-density"]["detail"]
    assert "counted with other weights named unet-density (replaced since)" in detail
    assert any("replaced since" in c.value for c in [*at.caption, *at.markdown])


@pytest.mark.slow
def test_a_runs_settings_opened_in_a_session_on_another_backend_say_so(tmp_path):
    """Reopening a CLI run counted in bf16 counted in the session's backend, one object off, unsaid."""
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "unet-density", "--backend", "onnxruntime",
                 "--out", str(tmp_path / "c.csv"), "--no-progress", "-q"]) == 0
    at = open_page("pages/runs.py", inference_backend="torch")
    at.button(key="runs_to_count").click()
    at.run()
    assert not at.exception, at.exception
    detail = at.session_state["_settings"]["models"]["unet-density"]["detail"]
    assert "that run ran the onnxruntime backend and this session runs torch" in detail


def test_a_run_of_a_model_deleted_since_offers_its_settings_for_download_only(tmp_path):
    """A run counted with a model deleted since: the open buttons are disabled and the page says why (a tester's
    click gave "unknown model 'vgg-try'; valid models: ...")."""
    import sqlite3

    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "unet-density",
                 "--out", str(tmp_path / "c.csv"), "--no-progress", "-q"]) == 0
    with sqlite3.connect(history.db_path()) as db:  # as if it had been a fine-tune deleted since
        db.execute("UPDATE runs SET model = 'vgg-try'")
    at = open_page("pages/runs.py")
    assert not at.exception, at.exception
    assert at.button(key="runs_to_count").disabled and at.button(key="runs_to_batch").disabled
    assert any("vgg-try is no longer installed" in c.value for c in at.caption)
