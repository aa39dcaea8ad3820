"""The background fine-tune job and its board: progress snapshots, result, cancel, errors, one at a time."""

from __future__ import annotations

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
