"""The run history: records from the CLI, listing and export, concurrent writers, a damaged database."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import pytest

from cellcount import history
from cellcount.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def _record(path: str, source: str, n_rows: int) -> int:
    run_id = history.start_run(source=source, model="m", model_sha256="abc", settings={"params": {"x": 1}},
                               inputs=[f"{source}-{i}.png" for i in range(n_rows)], path=path)
    for i in range(n_rows):  # one short transaction per row, as a batch does
        history.add_rows(run_id, [{"file": f"{source}-{i}.png", "status": "ok", "count": i}], path=path)
    history.finish_run(run_id, "done", path=path)
    return run_id


def test_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLCOUNT_DATA_DIR", str(tmp_path / "d"))
    assert history.db_path() == tmp_path / "d" / "history.sqlite"
    monkeypatch.delenv("CELLCOUNT_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert history.db_path() == tmp_path / "x" / "cellcount" / "history.sqlite"


def test_a_cli_batch_is_recorded_and_exported_identically(tmp_path, capsys):
    out = tmp_path / "counts.csv"
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), str(SAMPLES / "s05_16bit.tif"),
                 "--model", "classical-otsu", "--out", str(out), "--no-progress", "-q"]) == 0
    runs = history.list_runs()
    assert len(runs) == 1
    run = runs.iloc[0]
    assert (run["source"], run["model"], run["status"], run["n_ok"], run["n_failed"]) == ("cli", "classical-otsu",
                                                                                        "done", 2, 0)
    assert run["total_count"] == int(pd.read_csv(out)["count"].sum())
    detail = history.get_run(int(run["id"]))
    # the run keeps every setting; the table's column only those that act on this model kind
    row = json.loads(pd.read_csv(out)["settings"].iloc[0])
    assert row == {k: detail["settings"]["params"][k] for k in row} and "peak_min_distance_px" not in row
    assert len(detail["inputs"]) == 2
    # traced back later: where it ran and what it was given (inputs are kept as typed, relative paths too)
    import os

    assert detail["settings"]["working_dir"] == os.getcwd() and len(detail["settings"]["paths"]) >= 1
    capsys.readouterr()
    exported = tmp_path / "again.csv"
    settings_out = tmp_path / "again.settings.json"
    assert main(["runs", "--export", str(run["id"]), "--out", str(exported), "--settings-out", str(settings_out)]) == 0
    assert exported.read_bytes() == out.read_bytes()
    # the exported settings count the same again
    out2 = tmp_path / "c2.csv"
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "classical-otsu", "--settings",
                 str(settings_out), "--out", str(out2), "--no-progress", "-q"]) == 0
    assert pd.read_csv(out2)["count"].iloc[0] == pd.read_csv(out)["count"].iloc[0]
    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert "classical-otsu" in listing and "cli" in listing
    assert str(out2) in listing.splitlines()[1], "which counts CSV the run wrote (a tester could not tell)"
    assert main(["runs", "--show", "999"]) == 2
    assert "no run 999" in capsys.readouterr().err


def test_a_failed_image_is_recorded_with_its_reason(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert main(["count", str(bad), str(SAMPLES / "s01_sparse_small.png"), "--model", "classical-otsu",
                 "--out", str(tmp_path / "c.csv"), "--no-progress", "-q"]) == 1
    run = history.list_runs().iloc[0]
    assert (run["n_ok"], run["n_failed"]) == (1, 1)
    rows = history.run_rows(int(run["id"]))
    assert rows.loc[rows["file"] == str(bad), "reason"].iloc[0].startswith(str(bad))
    again = tmp_path / "again.csv"  # the failed row's empty count made the column float: 76.0 for 76
    assert main(["runs", "--export", str(run["id"]), "--out", str(again)]) == 0
    assert again.read_bytes() == (tmp_path / "c.csv").read_bytes()


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(tmp_path):
    """Four processes (two 'app sessions', two 'CLIs') record runs at once into one database."""
    path = str(tmp_path / "h.sqlite")
    history.list_runs(path=path)  # created once, as a first use would
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        ids = pool.starmap(_record, [(path, src, 25) for src in ("app-a", "app-b", "cli-a", "cli-b")])
    assert len(set(ids)) == 4
    runs = history.list_runs(path=path)
    assert sorted(runs["n_rows"]) == [25, 25, 25, 25]
    assert set(runs["status"]) == {"done"}
    for run_id in ids:
        rows = history.run_rows(run_id, path=path)
        assert list(rows["count"]) == list(range(25))
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_damaged_database_is_set_aside_not_fatal(tmp_path, capsys, caplog):
    db = history.db_path()
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database at all" * 100)
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "classical-otsu",
                 "--out", str(tmp_path / "c.csv"), "--no-progress", "-q"]) == 0
    aside = list(db.parent.glob("history.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert "damaged" in caplog.text
    assert len(history.list_runs()) == 1  # the fresh database holds this run


def test_an_unwritable_history_does_not_stop_a_count(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("CELLCOUNT_DATA_DIR", str(blocker / "sub"))  # a folder below a file: cannot exist
    out = tmp_path / "c.csv"
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "classical-otsu", "--out", str(out),
                 "--no-progress", "-q"]) == 0
    assert len(pd.read_csv(out)) == 1
    assert "not recorded in the history" in caplog.text
    assert main(["runs"]) == 2


def test_finish_refuses_an_unknown_status(tmp_path):
    run_id = _record(str(tmp_path / "h.sqlite"), "x", 1)
    with pytest.raises(ValueError, match="done"):
        history.finish_run(run_id, "finished", path=tmp_path / "h.sqlite")


def test_a_run_without_rows_exports_the_header(tmp_path):
    run_id = history.start_run(source="cli", model="m", model_sha256="", settings={}, inputs=["a.png"])
    history.finish_run(run_id, "interrupted")
    assert main(["runs", "--export", str(run_id), "--out", str(tmp_path / "e.csv")]) == 0
    assert (tmp_path / "e.csv").read_text().startswith("file,model,backend,count,")


def test_ctrl_c_during_a_history_write_is_not_swallowed(tmp_path) -> None:
    """Ctrl-C inside sqlite's transaction makes its rollback fail; the recorder must let the interrupt through
    (the batch then exits 130 with its finished rows kept), not turn it into a "not recorded" warning."""
    recorder = history.Recorder(source="cli", model="m", model_sha256=None, settings={}, inputs=[],
                                   path=tmp_path / "history.sqlite")

    def interrupted_write():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")  # noqa: B904

    def interrupted_after_commit():  # the same through connect(), which wraps sqlite's error in HistoryError
        with history.connect(tmp_path / "history.sqlite") as con:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                con.execute("ROLLBACK")  # sqlite: cannot rollback - no transaction is active

    for write in (interrupted_write, interrupted_after_commit):
        with pytest.raises(KeyboardInterrupt):
            recorder._try(write)
    recorder._try(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")))
    assert recorder.warning and "disk I/O error" in recorder.warning


def test_a_run_whose_process_is_gone_shows_as_ended(tmp_path):
    """A batch killed outright (SIGKILL, a crash) never marks its run finished: the listing says it ended
    instead of showing it as running for ever; a run of a live process stays running."""
    import subprocess
    import sys

    db = tmp_path / "h.sqlite"
    code = (f"from cellcount import history; history.start_run(source='cli', model='m', model_sha256='', "
            f"settings={{}}, inputs=['a.png'], path={str(db)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)  # exits without finishing
    mine = history.start_run(source="app", model="m", model_sha256="", settings={}, inputs=["b.png"], path=db)
    runs = history.list_runs(path=db).set_index("id")
    assert runs.loc[mine, "status"] == "running"
    gone = [i for i in runs.index if i != mine]
    assert len(gone) == 1 and runs.loc[gone[0], "status"] == history.ENDED
    assert history.get_run(gone[0], path=db)["status"] == history.ENDED


def test_a_history_from_before_pids_is_read_and_extended(tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    old_schema = history._SCHEMA.replace(",\n    pid INTEGER,\n    proc TEXT", "")
    assert "pid" not in old_schema
    con.executescript(old_schema)
    con.execute("INSERT INTO runs (started_at, host, source, model, settings, inputs, n_inputs, status) "
                "VALUES ('t', 'elsewhere', 'cli', 'm', '{}', '[]', 0, 'running')")
    con.commit()
    con.close()
    runs = history.list_runs(path=db)
    assert list(runs["status"]) == ["running"] and runs["pid"].isna().all()  # nothing known: shown as recorded
    history.start_run(source="cli", model="m", model_sha256="", settings={}, inputs=[], path=db)
    assert history.list_runs(path=db)["pid"].notna().sum() == 1


def test_a_reused_pid_is_not_taken_for_the_run_that_recorded_it(tmp_path):
    import os

    db = tmp_path / "h.sqlite"
    run_id = history.start_run(source="cli", model="m", model_sha256="", settings={}, inputs=[], path=db)
    assert history.get_run(run_id, path=db)["status"] == "running"  # this process: alive
    namespace = history._proc_token(os.getpid()).split(":")[0]
    with sqlite3.connect(db) as con:  # as if an earlier process with this pid had recorded it
        con.execute("UPDATE runs SET proc = ? WHERE id = ?", (f"{namespace}:1", run_id))
    assert history.get_run(run_id, path=db)["status"] == history.ENDED
    with sqlite3.connect(db) as con:  # recorded in another pid namespace (a container with this host name)
        con.execute("UPDATE runs SET proc = ?, pid = ? WHERE id = ?", ("1:1", 2**22 + 7, run_id))
    assert history.get_run(run_id, path=db)["status"] == "running", "not ours to judge"


def test_two_processes_adding_the_new_columns_at_once_both_go_on(tmp_path):
    db = tmp_path / "h.sqlite"
    history.list_runs(path=db)  # a history with every column

    class SeesNoColumns:  # the other process added them between this one's look and its ALTER
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            return [] if sql.startswith("PRAGMA table_info") else self.con.execute(sql, *args)

    con = sqlite3.connect(db)
    history._add_columns(SeesNoColumns(con))  # "duplicate column name": no error
    con.close()


def test_a_recorder_writes_its_rows_on_one_connection_from_any_thread(tmp_path, monkeypatch):
    """The app's batch records its first rows from the page and the rest from a background job: both go on
    the one connection the recorder opened (opening one per image cost most of the writing), closed by finish."""
    import threading

    path = tmp_path / "h.sqlite"
    opened = []
    real_open = history._open
    monkeypatch.setattr(history, "_open", lambda p, **kw: opened.append(kw) or real_open(p, **kw))
    recorder = history.Recorder(source="app", model="m", model_sha256=None, settings={}, inputs=["a", "b", "c"],
                                path=path)
    recorder.add([{"file": "a", "status": "ok", "count": 1}])
    worker = threading.Thread(target=lambda: [recorder.add([{"file": f, "status": "ok", "count": n}])
                                              for f, n in (("b", 2), ("c", 3))])
    worker.start()
    worker.join()
    rows_opened = len(opened) - 1  # the first open is start_run's own
    recorder.finish("done")
    assert recorder.warning is None and rows_opened == 1 and opened[1] == {"shared": True}
    assert recorder._con is None  # closed by finish
    assert list(history.run_rows(recorder.run_id, path=path)["count"]) == [1, 2, 3]
    assert history.list_runs(path=path)["status"].tolist() == ["done"]


def test_a_runs_rows_come_back_in_the_order_of_its_inputs(tmp_path):
    """Workers finish in any order: the Runs page's table and its CSV list the images as the run named them."""
    path = str(tmp_path / "h.sqlite")
    run_id = history.start_run(source="cli", model="m", model_sha256=None, settings={}, inputs=["a", "b", "c"],
                               path=path)
    for name, n in (("c", 3), ("other", 9), ("a", 1), ("b", 2)):
        history.add_rows(run_id, [{"file": name, "status": "ok", "count": n}], path=path)
    assert history.run_rows(run_id, path=path)["file"].tolist() == ["a", "b", "c", "other"]


def test_rows_left_out_on_purpose_are_not_failures(tmp_path):
    """A zip's readme and a label image named like ground truth are listed, not failed: the run list kept them
    apart from the images that could not be read (a tester's batch of 2 broken images read "5 failed")."""
    path = str(tmp_path / "h.sqlite")
    run_id = history.start_run(source="app", model="m", model_sha256=None, settings={}, inputs=["a", "b", "c", "d"],
                               path=path)
    history.add_rows(run_id, [{"file": "a.png", "status": "ok", "count": 3},
                              {"file": "b.png", "status": "error", "count": None},
                              {"file": "z.zip/readme.txt", "status": "skipped", "count": None},
                              {"file": "a_labels.tif", "status": "skipped", "count": None}], path=path)
    history.finish_run(run_id, "done", path=path)
    run = history.list_runs(path=path).iloc[0]
    assert (run["n_ok"], run["n_failed"], run["n_skipped"], run["total_count"]) == (1, 1, 2, 3)


def test_an_app_runs_objects_are_kept_beside_the_history(tmp_path):
    import pandas as pd

    path = tmp_path / "h.sqlite"
    recorder = history.Recorder(source="app", model="m", model_sha256=None, settings={}, inputs=["a", "b"], path=path)
    recorder.add_objects(pd.DataFrame({"file": ["a", "a"], "label": [1, 2], "area_px": [10, 12]}))
    recorder.add_objects(pd.DataFrame(columns=["file", "label", "area_px"]))  # an image without objects
    recorder.add_objects(pd.DataFrame({"file": ["=b"], "label": [1], "area_px": [9]}))
    recorder.finish("done")
    kept = history.objects_path(recorder.run_id, path=path)
    table = pd.read_csv(kept)
    assert table["file"].tolist() == ["a", "a", "'=b"] and table["area_px"].tolist() == [10, 12, 9]  # formula-safe
    # a run given the same id later (a history set aside and begun anew) replaces the file, never adds to it
    again = history.Recorder(source="app", model="m", model_sha256=None, settings={}, inputs=["c"], path=path)
    again.run_id = recorder.run_id
    again.add_objects(pd.DataFrame({"file": ["c"], "label": [1], "area_px": [5]}))
    assert pd.read_csv(kept)["file"].tolist() == ["c"]


def test_an_objects_table_that_cannot_be_kept_leaves_the_counts_recorded(tmp_path):
    import pandas as pd

    path = tmp_path / "h.sqlite"
    recorder = history.Recorder(source="app", model="m", model_sha256=None, settings={}, inputs=["a"], path=path)
    (tmp_path / "objects").write_text("a file where the folder would go")
    recorder.add_objects(pd.DataFrame({"file": ["a"], "label": [1]}))
    recorder.add([{"file": "a", "status": "ok", "count": 1}])
    recorder.finish("done")
    assert "object table is not kept" in recorder.warning
    assert list(history.run_rows(recorder.run_id, path=path)["count"]) == [1]


def test_a_reader_that_leaves_early_ends_runs_quietly(tmp_path, capsys, monkeypatch):
    """`cellcount runs --export ID | head` ended with "error: [Errno 32] Broken pipe" (a tester): a history
    error's handler took the closed pipe for one."""
    out = tmp_path / "counts.csv"
    assert main(["count", str(SAMPLES / "s01_sparse_small.png"), "--model", "classical-otsu", "--out", str(out),
                 "--no-progress", "-q"]) == 0
    run_id = str(history.list_runs().iloc[0]["id"])

    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return os.open(os.devnull, os.O_WRONLY)

    capsys.readouterr()
    for argv in (["runs", "--export", run_id], ["runs", "--show", run_id], ["runs"]):
        with monkeypatch.context() as m:
            m.setattr(sys, "stdout", Closed())
            assert main(argv) == 0, argv
        assert "Broken pipe" not in capsys.readouterr().err
