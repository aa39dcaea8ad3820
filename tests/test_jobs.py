"""The background fine-tune job and its board: progress snapshots, result, cancel, errors, one at a time."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellcount.errors import CellcountError
from cellcount.groundtruth import GroundTruth
from cellcount.jobs import FinetuneJob, JobBoard
from cellcount.models import list_models, save_model


@pytest.fixture
def base_and_data(tiny_model, tmp_path, draw_disks):
    base = tiny_model(kind="mask")
    save_model(base.net, base.card, tmp_path / "base")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        labels = draw_disks((48, 48), [(12, 12), (30, 30 - 4 * i)], 6)
        Image.fromarray(np.where(labels > 0, 200, 20).astype(np.uint8)).save(data / f"im{i}.png")
        tifffile.imwrite(data / f"im{i}_labels.tif", labels.astype(np.uint16))
    return tmp_path / "base", data


@pytest.mark.slow
def test_job_reports_progress_and_result(base_and_data):
    base, data = base_and_data
    job = FinetuneJob(str(base), data, "job-model", {"steps": 3, "holdout": 1, "batch_size": 2, "crop": 32}).start()
    assert job.join(timeout=120)
    s = job.snapshot()
    assert s.status == "done" and s.error is None and s.fraction == 1.0
    assert s.result.name == "job-model" and s.result.steps == 3
    assert [step for step, _ in s.losses] == [1, 2, 3] and all(np.isfinite(v) for _, v in s.losses)
    assert s.progress.stage == "done" and "job-model" in list_models()
    assert len(s.result.holdout_counts) == 1 and set(s.result.holdout_counts[0]) == {"file", "true", "before", "after"}
    # the notes as the run made them, in its snapshot while it runs (the result alone said them, after the budget)
    assert s.notes and set(s.notes) <= set(s.result.notes), (s.notes, s.result.notes)


def test_board_runs_one_job_at_a_time_and_cancel_saves_nothing(base_and_data):
    base, data = base_and_data
    board = JobBoard()
    slow = board.start("a", FinetuneJob(str(base), data, "slow", {"steps": 100_000, "batch_size": 2, "crop": 32}))
    with pytest.raises(CellcountError, match="already running"):
        board.start("b", FinetuneJob(str(base), data, "other", {"steps": 1}))
    assert board.running() is slow and board.get("b") is None
    board.clear("a")
    assert board.get("a") is slow, "a running job is not cleared"
    slow.cancel()
    assert slow.join(timeout=120) and slow.snapshot().status == "cancelled"
    assert "slow" not in list_models() and board.running() is None
    board.clear("a")
    assert board.get("a") is None


def test_errors_become_the_jobs_message(base_and_data):
    """In-memory items (as the app passes them) with a count only: a clear message, no traceback, no model."""
    base, data = base_and_data
    items = [("im0.png", (data / "im0.png").read_bytes(), GroundTruth(kind="count", count=2, source="counts.csv"))]
    job = FinetuneJob(str(base), items, "nothing", {"steps": 1, "holdout": 0}).start()
    assert job.join(timeout=60)
    s = job.snapshot()
    assert s.status == "failed" and "count alone cannot teach" in s.error and s.result is None
    assert "nothing" not in list_models()


# --------------------------------------------------------------------------------------------------
# BatchJob: a batch in the background, its rows kept as they finish
# --------------------------------------------------------------------------------------------------
def _png(draw_disks, n: int) -> bytes:
    import io

    img = (draw_disks((64, 64), [(12 + 20 * (k % 3), 12 + 20 * (k // 3)) for k in range(n)], 6) > 0) * 200
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_batch_job_counts_in_the_background_and_records_the_run(draw_disks, tmp_path):
    from cellcount.batch import BatchItem
    from cellcount.history import Recorder, list_runs
    from cellcount.jobs import BatchJob
    from cellcount.models import CLASSICAL_NAME, load_model
    from cellcount.pipeline import resolve_params

    model = load_model(CLASSICAL_NAME)
    items = [("a.png", _png(draw_disks, 2)), ("broken.png", b"not an image"), ("b.png", _png(draw_disks, 5))]
    pre = [BatchItem("z.zip/x.png", "error", "unreadable zip member", None)]
    record = Recorder(source="app", model=model.name, model_sha256=None, settings={}, inputs=["z", "a", "b", "c"],
                      path=tmp_path / "h.sqlite")
    job = BatchJob(items, model, resolve_params(model), failed=pre, record=record).start()
    assert job.join(120)
    s = job.snapshot()
    assert s.status == "done" and s.total == 4 and not s.running
    # when it ended: the Batch page offers a finished batch no tab showed for an hour, then lets it go
    assert job.ended_at is not None and abs(job.ended_at - (job._t0 + s.elapsed_s)) < 1e-6
    assert [it.name for it in s.done] == ["z.zip/x.png", "a.png", "broken.png", "b.png"]
    assert [it.status for it in s.done] == ["error", "ok", "error", "ok"]
    assert [it.result.count for it in s.done if it.status == "ok"] == [2, 5]
    run = list_runs(path=tmp_path / "h.sqlite").iloc[0]
    assert run["status"] == "done" and (run["n_ok"], run["n_failed"]) == (2, 2)
    rows = [it.row() for it in s.done]  # the page's own failed row names the batch's model and settings too
    assert {r["model"] for r in rows} == {model.name} and len({r["settings"] for r in rows}) == 1
    # the objects too, beside the history: the Runs page offers them after the page that counted is gone
    import pandas as pd

    from cellcount.history import objects_path

    kept = pd.read_csv(objects_path(int(run["id"]), path=tmp_path / "h.sqlite"))
    assert kept.groupby("file").size().to_dict() == {"a.png": 2, "b.png": 5}


def test_a_batch_of_one_plane_records_which_plane_in_its_rows(draw_disks, tmp_path):
    """The Batch page's CSV said which plane of the stacks was counted; the run history's rows (the Runs page's and
    `cellcount runs --export`'s CSV) did not, so a projection's count looked like a first plane's. A 2-D image
    beside the stacks is counted as it is, and its row leaves the plane empty instead of saying "max"."""
    import io

    import pandas as pd

    from cellcount.history import Recorder, list_runs, run_rows
    from cellcount.jobs import BatchJob
    from cellcount.models import CLASSICAL_NAME, load_model
    from cellcount.pipeline import resolve_params

    model = load_model(CLASSICAL_NAME)
    plane = ((draw_disks((64, 64), [(12, 12), (40, 40)], 6) > 0) * 200).astype(np.uint8)
    stack = io.BytesIO()
    tifffile.imwrite(stack, np.stack([plane] * 3), photometric="minisblack", metadata={"axes": "ZYX"})
    record = Recorder(source="app", model=model.name, model_sha256=None, settings={}, inputs=["a", "s"],
                      path=tmp_path / "h.sqlite")
    job = BatchJob([("a.png", _png(draw_disks, 2)), ("s.tif", stack.getvalue())], model, resolve_params(model),
                   record=record, options={"page": "max"}).start()
    assert job.join(120)
    run = list_runs(path=tmp_path / "h.sqlite").iloc[0]
    rows = run_rows(int(run["id"]), path=tmp_path / "h.sqlite").set_index("file")
    assert rows.loc["s.tif", "plane"] == "max" and list(rows.reset_index().columns[:2]) == ["file", "plane"]
    assert pd.isna(rows.loc["a.png", "plane"]) or rows.loc["a.png", "plane"] == ""


def test_a_stopped_batch_keeps_what_it_counted(draw_disks, tmp_path):
    from cellcount.history import Recorder, list_runs, run_rows
    from cellcount.jobs import BatchJob
    from cellcount.models import CLASSICAL_NAME, load_model
    from cellcount.pipeline import resolve_params

    model = load_model(CLASSICAL_NAME)
    record = Recorder(source="app", model=model.name, model_sha256=None, settings={}, inputs=[f"{k}.png" for k in
                      range(6)], path=tmp_path / "h.sqlite")
    job = BatchJob([(f"{k}.png", _png(draw_disks, 3)) for k in range(6)], model, resolve_params(model), record=record)
    job.cancel()  # before it starts: it stops after its first image
    assert job.start().join(120)
    s = job.snapshot()
    assert s.status == "cancelled" and [it.name for it in s.done] == ["0.png"] and s.total == 6
    # the run's record lists the five never reached too, as the page's CSV does (the Runs page said "not counted 0")
    run = list_runs(path=tmp_path / "h.sqlite").iloc[0]
    # "stopped", the Batch page's word for it
    assert (run["status"], run["n_ok"], run["n_skipped"]) == ("stopped", 1, 5)
    rows = run_rows(int(run["id"]), path=tmp_path / "h.sqlite")
    assert list(rows["file"]) == [f"{k}.png" for k in range(6)]
    assert (rows["reason"][1:] == "not counted: the batch was stopped before this image").all()


def test_inputs_with_one_name_each_get_their_row_and_a_stop_at_the_end_is_no_stop(draw_disks):
    from cellcount.jobs import BatchJob
    from cellcount.models import CLASSICAL_NAME, load_model
    from cellcount.pipeline import resolve_params

    model = load_model(CLASSICAL_NAME)
    items = [("img.png", _png(draw_disks, 2)), ("img.png", _png(draw_disks, 3)), ("x.png", _png(draw_disks, 4))]
    job = BatchJob(items, model, resolve_params(model))
    job.cancel()  # it stops after the first image
    assert job.start().join(120)
    assert [it.name for it in job.not_counted()] == ["img.png", "x.png"]  # the second img.png too
    assert {it.row()["settings"] for it in job.not_counted()} == {it.row()["settings"] for it in job.snapshot().done}
    one = BatchJob(items[:1], model, resolve_params(model))
    one.cancel()  # pressed while its only image was being counted
    assert one.start().join(120)
    assert one.snapshot().status == "done" and one.not_counted() == []


def test_following_the_running_job_never_replaces_a_sessions_own_outcome():
    """A reloaded tab (no job of its own) follows the run that holds the CPU; a session whose finished result
    is still on screen keeps it when another session starts a run."""
    from types import SimpleNamespace

    def job(running: bool):
        return SimpleNamespace(snapshot=lambda: SimpleNamespace(running=running))

    board = JobBoard()
    finished, running = job(False), job(True)
    board._jobs.update({"b": finished, "a": running})
    assert board.follow("b") is finished, "b's own result is not swapped for a's run"
    assert board.follow("new-tab") is running and board.get("new-tab") is running
    board.clear("new-tab")
    assert board.get("new-tab") is running, "a running job is not cleared"
    assert board.get("a") is running


def test_a_fine_tune_cut_off_by_the_servers_stop_is_said_on_the_next_visits(base_and_data, monkeypatch):
    """A run going when the app's server was restarted vanished: the Train page said nothing of it, and no page
    recorded it. Its running mark, left behind with its process gone, says it once."""
    import json
    import os
    import socket

    from cellcount.jobs import RUNNING_MARK_GLOB, interrupted_finetunes
    from cellcount.models.loading import user_models_dir

    base, data = base_and_data
    slow = FinetuneJob(str(base), data, "slow", {"steps": 100_000, "batch_size": 2, "crop": 32}).start()
    marks = list(user_models_dir().glob(RUNNING_MARK_GLOB))
    for _ in range(100):  # written as the thread starts
        if marks:
            break
        slow.join(timeout=0.05)
        marks = list(user_models_dir().glob(RUNNING_MARK_GLOB))
    assert len(marks) == 1 and interrupted_finetunes(now=time.time()) == [], "running here: not cut off"
    slow.cancel()
    assert slow.join(timeout=120) and not list(user_models_dir().glob(RUNNING_MARK_GLOB)), "an ended run leaves none"
    t0 = time.time() - 60
    gone = {"name": "appR", "base": "unet-mask-varied", "started": t0, "pid": 2**22 + 12345,
            "host": socket.gethostname()}
    (user_models_dir() / RUNNING_MARK_GLOB.replace("*", "old")).write_text(json.dumps(gone))
    alive = {**gone, "name": "other-server", "pid": os.getppid()}
    (user_models_dir() / RUNNING_MARK_GLOB.replace("*", "live")).write_text(json.dumps(alive))
    # a live process of the same pid that is not the one that wrote it (a restarted container's server, pid 1 again)
    reused = {**gone, "name": "reused", "pid": os.getpid(), "process": "another-boot:1"}
    (user_models_dir() / RUNNING_MARK_GLOB.replace("*", "reused")).write_text(json.dumps(reused))
    assert [m["name"] for m in interrupted_finetunes()] == ["appR", "reused"]
    # to every visit (a reload or a colleague's tab took the only notice), for a day after its start
    assert [m["name"] for m in interrupted_finetunes(now=t0 + 3600)] == ["appR", "reused"]
    assert [p.name for p in user_models_dir().glob(RUNNING_MARK_GLOB)] == [".finetune-running-live.json"]
    assert interrupted_finetunes(now=t0 + 2 * 86400) == [], "forgotten a day after it was found"
    # a server down longer than a day after the run started: said from when it is found, not dropped unsaid
    weekend = {**gone, "name": "weekend", "started": t0 - 3 * 86400}
    (user_models_dir() / RUNNING_MARK_GLOB.replace("*", "weekend")).write_text(json.dumps(weekend))
    assert [m["name"] for m in interrupted_finetunes()] == ["weekend"]
